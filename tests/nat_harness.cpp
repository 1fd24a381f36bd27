#include "nat_harness.hpp"

#include <cstring>
#include <sstream>

#include <rte_ether.h>
#include <rte_mbuf.h>

namespace ephtest {

using namespace ephemera;

namespace {

rte_ether_addr ether(const Mac& m)
{
    rte_ether_addr a;
    std::memcpy(a.addr_bytes, m.data(), 6);
    return a;
}

WorkerStats snapshot(const Translator& tr) { return tr.stats(); }

} // namespace

Mac subscriber_mac(uint32_t a)
{
    return Mac{0x02, 0x64, uint8_t(a >> 24), uint8_t(a >> 16), uint8_t(a >> 8), uint8_t(a)};
}

NatConfig small_config()
{
    NatConfig c;
    c.pool = {ip(198, 51, 100, 1)};
    c.ports = PortRange{50000, 50015};
    c.randomize_ports = false;
    c.workers = 1;
    c.max_mappings = 1024;
    c.max_extra_sessions = 1024;
    c.max_sessions_per_mapping = 64;
    return c;
}

std::vector<uint32_t> pool_28()
{
    std::vector<uint32_t> v;
    for (uint32_t i = 0; i < 16; ++i) v.push_back(kPoolNet + i);
    return v;
}

Parsed Outcome::parsed() const
{
    if (!frame) {
        ADD_FAILURE() << "no frame was forwarded: " << describe(*this);
        return Parsed{};
    }
    return parse_frame(*frame);
}

std::string describe(const Outcome& o)
{
    std::ostringstream s;
    s << (o.dir == Dir::Out ? "outbound" : "inbound") << ": " << (o.frame ? "forwarded" : "not forwarded")
      << ", rx+" << o.rx << " tx+" << o.tx << ", drops {";
    for (size_t i = 0; i < o.drops.size(); ++i) s << (i ? ", " : "") << to_string(o.drops[i]);
    s << "}";
    return s.str();
}

::testing::AssertionResult forwarded(const Outcome& o)
{
    if (o.frame && o.drops.empty() && o.rx == 1 && o.tx == 1) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "expected the packet forwarded; " << describe(o);
}

::testing::AssertionResult dropped(const Outcome& o, Drop why)
{
    if (!o.frame && o.drops.size() == 1 && o.drops[0] == why && o.rx == 1 && o.tx == 0)
        return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "expected a drop counted once as " << to_string(why) << "; "
                                         << describe(o);
}

Nat::Nat(const NatConfig& c, unsigned worker, Tick start)
    : cfg(c), layout(c.ports, c.workers), tr(cfg, layout, worker), clock(start)
{
    tr.set_outside_l2(ether(kGwOutsideMac), ether(kNextHopMac));
    tr.set_inside_l2(ether(kGwInsideMac));
}

Bytes Nat::inside_frame(const Bytes& ipp, std::optional<uint16_t> vlan, size_t pad_to)
{
    uint32_t src = 0;
    if (ipp.size() >= 16) src = uint32_t(ipp[12]) << 24 | uint32_t(ipp[13]) << 16 | uint32_t(ipp[14]) << 8 | ipp[15];
    L2 l2;
    l2.dst = kGwInsideMac;
    l2.src = subscriber_mac(src);
    l2.vlan_tci = vlan;
    l2.pad_to = pad_to;
    return ether_frame(l2, kEtherIpv4, ipp);
}

Bytes Nat::outside_frame(const Bytes& ipp, std::optional<uint16_t> vlan, size_t pad_to)
{
    L2 l2;
    l2.dst = kGwOutsideMac;
    l2.src = kUpstreamMac;
    l2.vlan_tci = vlan;
    l2.pad_to = pad_to;
    return ether_frame(l2, kEtherIpv4, ipp);
}

Outcome Nat::run(Dir dir, rte_mbuf* m, const uint32_t* carried)
{
    Outcome o;
    o.dir = dir;
    if (m == nullptr) return o;
    const WorkerStats before = snapshot(tr);
    rte_mbuf* pkts[kBurst] = {m};
    const uint16_t n = dir == Dir::Out ? tr.outbound(pkts, 1, now()) : tr.inbound(pkts, 1, now(), carried);
    const WorkerStats& after = tr.stats();
    const unsigned d = unsigned(dir);
    o.rx = after.rx[d] - before.rx[d];
    o.tx = after.tx[d] - before.tx[d];
    o.icmp_errors = after.icmp_errors[d] - before.icmp_errors[d];
    for (unsigned dd = 0; dd < 2; ++dd)
        for (unsigned r = 0; r < kDropCount; ++r)
            for (uint64_t k = before.drops[dd][r]; k < after.drops[dd][r]; ++k) {
                if (dd != d) ADD_FAILURE() << "a drop was counted under the other direction";
                o.drops.push_back(Drop(r));
            }
    if (n > 1) ADD_FAILURE() << "one packet in, " << n << " out";
    if (n >= 1) {
        o.frame = mbuf_bytes(pkts[0]);
        rte_pktmbuf_free(pkts[0]);
    }
    return o;
}

Outcome Nat::out_frame(const Bytes& frame) { return run(Dir::Out, frame); }
Outcome Nat::in_frame(const Bytes& frame) { return run(Dir::In, frame); }

uint16_t Nat::open_udp(uint32_t inside, uint16_t port, uint32_t remote, uint16_t rport)
{
    const Outcome o = out(udp_packet(inside, port, remote, rport, pattern(8)));
    if (!o.frame) return 0;
    return parse_frame(*o.frame).sport;
}

std::vector<Bytes> Nat::burst(Dir dir, const std::vector<Bytes>& frames)
{
    std::vector<Bytes> outv;
    if (frames.size() > kBurst) {
        ADD_FAILURE() << "burst larger than kBurst";
        return outv;
    }
    rte_mbuf* pkts[kBurst] = {};
    uint16_t n = 0;
    for (const Bytes& f : frames) {
        rte_mbuf* m = make_mbuf(f);
        if (m == nullptr) {
            for (uint16_t i = 0; i < n; ++i) rte_pktmbuf_free(pkts[i]);
            return outv;
        }
        pkts[n++] = m;
    }
    const uint16_t fwd = dir == Dir::Out ? tr.outbound(pkts, n, now()) : tr.inbound(pkts, n, now());
    for (uint16_t i = 0; i < fwd; ++i) {
        outv.push_back(mbuf_bytes(pkts[i]));
        rte_pktmbuf_free(pkts[i]);
    }
    return outv;
}

uint32_t Nat::paired_addr(uint32_t inside) const
{
    return host32(tr.pool().addr(tr.pool().paired_index(net32(inside))));
}

uint32_t Nat::subscriber_paired_with(unsigned idx, unsigned nth) const
{
    for (uint32_t a = ip(100, 64, 0, 2); a < ip(100, 65, 0, 0); ++a) {
        if ((a & 0xff) == 0 || (a & 0xff) == 255) continue;
        if (tr.pool().paired_index(net32(a)) == idx && nth-- == 0) return a;
    }
    ADD_FAILURE() << "no subscriber in 100.64.0.0/16 pairs with pool index " << idx;
    return 0;
}

uint16_t Nat::ext_port_of(uint32_t inside, uint16_t port, L4 l4) const
{
    const uint32_t i = mapping_of(inside, port, l4);
    if (i == kNoMapping) {
        ADD_FAILURE() << "no mapping for " << ip_str(inside) << ":" << port;
        return 0;
    }
    return host16(tr.table().mapping(i).ext_port);
}

uint32_t Nat::ext_addr_of(uint32_t inside, uint16_t port, L4 l4) const
{
    const uint32_t i = mapping_of(inside, port, l4);
    if (i == kNoMapping) {
        ADD_FAILURE() << "no mapping for " << ip_str(inside) << ":" << port;
        return 0;
    }
    return host32(tr.table().mapping(i).ext_addr);
}

bool Nat::is_live(uint32_t inside, uint16_t port, L4 l4) const
{
    const uint32_t i = mapping_of(inside, port, l4);
    return i != kNoMapping && !tr.mapping_expired(i, now());
}

::testing::AssertionResult Nat::partition_consistent(unsigned pool_index, L4 l4)
{
    PortPartition& p = tr.partition(pool_index, l4);
    p.promote(now(), cfg.timeouts.quarantine);
    const uint32_t f = p.free_count(), q = p.quarantined_count(), u = p.in_use_count();
    if (f + q + u == p.size()) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "free " << f << " + quarantined " << q << " + in use " << u
                                         << " != size " << p.size();
}

void expect_rewritten(const Parsed& sent, const Parsed& got, Dir dir, uint32_t new_addr, uint16_t new_port)
{
    const bool out = dir == Dir::Out;
    // Link layer.
    EXPECT_EQ(mac_str(got.eth_src), mac_str(out ? kGwOutsideMac : kGwInsideMac)) << "source MAC";
    EXPECT_EQ(mac_str(got.eth_dst), mac_str(out ? kNextHopMac : subscriber_mac(new_addr))) << "destination MAC";
    EXPECT_EQ(got.vlan_tci, sent.vlan_tci) << "802.1Q tag";
    EXPECT_EQ(got.ethertype, kEtherIpv4);
    // IPv4.
    EXPECT_EQ(got.version, 4);
    EXPECT_EQ(got.ihl, sent.ihl);
    EXPECT_EQ(got.tos, sent.tos);
    EXPECT_EQ(got.total_length, sent.total_length);
    EXPECT_EQ(got.id, sent.id);
    EXPECT_EQ(got.df, sent.df);
    EXPECT_EQ(got.mf, sent.mf);
    EXPECT_EQ(got.frag_offset, sent.frag_offset);
    EXPECT_EQ(int(got.ttl), int(sent.ttl) - 1) << "TTL";
    EXPECT_EQ(got.proto, sent.proto);
    EXPECT_EQ(got.options, sent.options) << "IP options";
    EXPECT_EQ(ip_str(got.src), ip_str(out ? new_addr : sent.src)) << "source address";
    EXPECT_EQ(ip_str(got.dst), ip_str(out ? sent.dst : new_addr)) << "destination address";
    // L4.
    if (got.proto == 1) {
        EXPECT_EQ(got.icmp_type, sent.icmp_type);
        EXPECT_EQ(got.icmp_code, sent.icmp_code);
        EXPECT_EQ(got.icmp_id, new_port) << "echo identifier";
        EXPECT_EQ(got.icmp_seq, sent.icmp_seq);
    } else {
        EXPECT_EQ(got.sport, out ? new_port : sent.sport) << "source port";
        EXPECT_EQ(got.dport, out ? sent.dport : new_port) << "destination port";
    }
    if (got.proto == 6) {
        EXPECT_EQ(got.seq, sent.seq);
        EXPECT_EQ(got.ack, sent.ack);
        EXPECT_EQ(got.tcp_flags, sent.tcp_flags);
        EXPECT_EQ(got.data_offset, sent.data_offset);
        EXPECT_EQ(got.window, sent.window);
        EXPECT_EQ(got.urgent, sent.urgent);
        const size_t gh = size_t(got.data_offset) * 4, sh = size_t(sent.data_offset) * 4;
        if (gh >= 20 && sh >= 20 && gh <= got.l4.size() && sh <= sent.l4.size()) {
            EXPECT_EQ(Bytes(got.l4.begin() + 20, got.l4.begin() + long(gh)),
                      Bytes(sent.l4.begin() + 20, sent.l4.begin() + long(sh)))
                << "TCP options";
        }
    }
    if (got.proto == 17) {
        EXPECT_EQ(got.udp_length, sent.udp_length);
        if (sent.l4_checksum == 0) {
            EXPECT_EQ(got.l4_checksum, 0) << "a zero UDP checksum must stay zero";
        } else {
            EXPECT_NE(got.l4_checksum, 0) << "a UDP checksum became zero (absent)";
        }
    }
    if (got.proto == 132) {
        EXPECT_EQ(got.sctp_vtag, sent.sctp_vtag) << "verification tag";
    }
    EXPECT_EQ(got.payload, sent.payload) << "payload bytes";
    // Checksums, recomputed in full.
    EXPECT_TRUE(ip_checksum_ok(got));
    if (!(got.proto == 17 && sent.l4_checksum == 0)) {
        EXPECT_TRUE(checksums_ok(got));
    }
}

void NatTest::TearDown()
{
    EXPECT_EQ(mbufs_available(), kMbufPoolSize) << "mbufs leaked (or freed twice) by this test";
}

} // namespace ephtest
