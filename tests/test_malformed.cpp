// Hostile and broken input: every packet here is dropped under exactly one
// reason, freed, and leaves the translator's state as it was. Each test ends
// with the mbuf pool full again (NatTest::TearDown and explicit checks).
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "nat_harness.hpp"

namespace ephtest {
namespace {

using ephemera::kNoMapping;
using ephemera::NatConfig;
using ephemera::total;
using ephemera::WorkerStats;

using Malformed = NatTest;

// A translator with live UDP, TCP, ICMP and SCTP mappings for kSub1, so that
// inbound packets would be translated if they were well-formed.
struct Primed {
    Nat nat{small_config()};
    uint32_t ext = 0;
    uint16_t udp = 0, tcp = 0, icmp = 0, sctp = 0;
    Parsed udp_out; // how the UDP flow left, for quoting in ICMP errors

    Primed()
    {
        const Outcome u = nat.out(udp_packet(kSub1, 5000, kRemote1, 53, pattern(10)));
        const Outcome t = nat.out(tcp_packet(kSub1, 40000, kRemote1, 80, kSyn));
        const Outcome i = nat.out(echo_packet(kSub1, kRemote1, false, 0x77, 1));
        const Outcome s = nat.out(sctp_ip_packet(kSub1, 6000, kRemote1, 6001, 0, sctp_init_chunk(5)));
        EXPECT_TRUE(forwarded(u) && forwarded(t) && forwarded(i) && forwarded(s));
        if (!u.frame || !t.frame || !i.frame || !s.frame) return;
        udp_out = u.parsed();
        ext = udp_out.src;
        udp = udp_out.sport;
        tcp = t.parsed().sport;
        icmp = i.parsed().icmp_id;
        sctp = s.parsed().sport;
    }
};

struct Case {
    std::string name;
    Dir dir;
    Bytes frame;
};

std::vector<Case> well_formed_cases(const Primed& p)
{
    TcpOpts mss;
    mss.options = {0x02, 0x04, 0x05, 0xb4};
    const Bytes quoted_in = udp_packet(kRemote1, 53, kSub1, 5000, pattern(12));
    return {
        {"udp out", Dir::Out, Nat::inside_frame(udp_packet(kSub1, 5000, kRemote1, 53, pattern(9)))},
        {"tcp out", Dir::Out, Nat::inside_frame(tcp_packet(kSub1, 40000, kRemote1, 80, kAck, pattern(5), {}, mss))},
        {"echo out", Dir::Out, Nat::inside_frame(echo_packet(kSub1, kRemote1, false, 0x77, 2, pattern(6)))},
        {"sctp out", Dir::Out, Nat::inside_frame(sctp_ip_packet(kSub1, 6000, kRemote1, 6001, 9, sctp_data_chunk(1, pattern(3))))},
        {"udp+options out", Dir::Out,
         Nat::inside_frame(udp_packet(kSub1, 5000, kRemote1, 53, pattern(4), with_ip_options({0x94, 4, 0, 0})))},
        {"vlan tcp out", Dir::Out, Nat::inside_frame(tcp_packet(kSub1, 40000, kRemote1, 80, kAck), uint16_t(5))},
        {"icmp error out", Dir::Out, Nat::inside_frame(icmp_error_packet(kSub1, kRemote1, 3, 3, quoted_in))},
        {"udp in", Dir::In, Nat::outside_frame(udp_packet(kRemote1, 53, p.ext, p.udp, pattern(9)))},
        {"tcp in", Dir::In, Nat::outside_frame(tcp_packet(kRemote1, 80, p.ext, p.tcp, kSyn | kAck, {}, {}, mss))},
        {"echo in", Dir::In, Nat::outside_frame(echo_packet(kRemote1, p.ext, true, p.icmp, 1, pattern(6)))},
        {"sctp in", Dir::In, Nat::outside_frame(sctp_ip_packet(kRemote1, 6001, p.ext, p.sctp, 9, sctp_init_chunk(1)))},
        {"udp+options in", Dir::In,
         Nat::outside_frame(udp_packet(kRemote1, 53, p.ext, p.udp, pattern(4), with_ip_options({0x01, 0x01, 0x01, 0x00})))},
        {"vlan udp in", Dir::In, Nat::outside_frame(udp_packet(kRemote1, 53, p.ext, p.udp, pattern(2)), uint16_t(9))},
        {"icmp error in", Dir::In, Nat::outside_frame(icmp_error_packet(kRouter, p.ext, 11, 0, p.udp_out.ip_packet))},
    };
}

Outcome send(Nat& nat, Dir dir, const Bytes& frame)
{
    return dir == Dir::Out ? nat.out_frame(frame) : nat.in_frame(frame);
}

TEST_F(Malformed, TruncatedAtEveryLengthIsMalformed)
{
    Primed p;
    ASSERT_NE(p.ext, 0u);
    const uint32_t mappings = p.nat.tr.table().mapping_count();
    for (const Case& c : well_formed_cases(p)) {
        SCOPED_TRACE(c.name);
        for (size_t len = 0; len < c.frame.size(); ++len) {
            const Bytes cut(c.frame.begin(), c.frame.begin() + long(len));
            const Outcome o = send(p.nat, c.dir, cut);
            EXPECT_TRUE(dropped(o, Drop::Malformed)) << "cut to " << len << " of " << c.frame.size() << " bytes";
            ASSERT_EQ(mbufs_available(), kMbufPoolSize) << "cut to " << len;
        }
        // Whole, it goes through: the cut was the only fault.
        EXPECT_TRUE(forwarded(send(p.nat, c.dir, c.frame)));
    }
    EXPECT_EQ(p.nat.tr.table().mapping_count(), mappings) << "a truncated packet made a mapping";
}

TEST_F(Malformed, IhlBelowFiveIsMalformed)
{
    Primed p;
    for (uint8_t ihl = 0; ihl < 5; ++ihl) {
        SCOPED_TRACE(int(ihl));
        Ipv4Opts o;
        o.ihl = ihl;
        EXPECT_TRUE(dropped(p.nat.out(udp_packet(kSub1, 5000, kRemote1, 53, pattern(8), o)), Drop::Malformed));
        EXPECT_TRUE(dropped(p.nat.in(udp_packet(kRemote1, 53, p.ext, p.udp, pattern(8), o)), Drop::Malformed));
    }
    EXPECT_EQ(mbufs_available(), kMbufPoolSize);
}

TEST_F(Malformed, IhlBeyondTheDataIsMalformed)
{
    Primed p;
    // IHL 15 (60 bytes) on a 28-byte packet; IHL 7 on a 24-byte packet (header longer than total length).
    for (auto [ihl, payload] : std::vector<std::pair<uint8_t, size_t>>{{15, 0}, {7, 0}, {6, 0}}) {
        SCOPED_TRACE(int(ihl));
        Ipv4Opts o;
        o.ihl = ihl;
        EXPECT_TRUE(dropped(p.nat.out(udp_packet(kSub1, 5000, kRemote1, 53, pattern(payload), o)), Drop::Malformed));
        EXPECT_TRUE(dropped(p.nat.in(udp_packet(kRemote1, 53, p.ext, p.udp, pattern(payload), o)), Drop::Malformed));
    }
    EXPECT_EQ(mbufs_available(), kMbufPoolSize);
}

TEST_F(Malformed, TotalLengthBeyondTheMbufIsMalformed)
{
    Primed p;
    for (uint16_t extra : {1, 2, 100, 1000}) {
        SCOPED_TRACE(extra);
        Ipv4Opts o;
        o.total_length = uint16_t(20 + 8 + 9 + extra);
        EXPECT_TRUE(dropped(p.nat.out(udp_packet(kSub1, 5000, kRemote1, 53, pattern(9), o)), Drop::Malformed));
        EXPECT_TRUE(dropped(p.nat.in(udp_packet(kRemote1, 53, p.ext, p.udp, pattern(9), o)), Drop::Malformed));
    }
    // Padding counts as data: a 60-byte frame holds 46 bytes after Ethernet, and 47 is beyond them.
    Ipv4Opts o;
    o.total_length = 60 - 14 + 1;
    EXPECT_TRUE(dropped(p.nat.out_frame(Nat::inside_frame(udp_packet(kSub1, 5000, kRemote1, 53, {}, o), {}, 60)),
                        Drop::Malformed));
    EXPECT_EQ(mbufs_available(), kMbufPoolSize);
}

TEST_F(Malformed, TotalLengthBelowTheHeaderIsMalformed)
{
    Primed p;
    for (uint16_t tl : {0, 1, 19}) {
        SCOPED_TRACE(tl);
        Ipv4Opts o;
        o.total_length = tl;
        EXPECT_TRUE(dropped(p.nat.out(udp_packet(kSub1, 5000, kRemote1, 53, pattern(9), o)), Drop::Malformed));
        EXPECT_TRUE(dropped(p.nat.in(udp_packet(kRemote1, 53, p.ext, p.udp, pattern(9), o)), Drop::Malformed));
    }
    // With options: IHL 6 (24 bytes) but total length 23.
    Ipv4Opts o = with_ip_options({0x01, 0x01, 0x01, 0x00});
    o.total_length = 23;
    EXPECT_TRUE(dropped(p.nat.out(udp_packet(kSub1, 5000, kRemote1, 53, pattern(9), o)), Drop::Malformed));
    EXPECT_EQ(mbufs_available(), kMbufPoolSize);
}

TEST_F(Malformed, BadIpOptionsAreMalformed)
{
    Primed p;
    const std::vector<std::pair<std::string, Bytes>> bad = {
        {"length past the header", {0x07, 0x10, 0x04, 0x00}},         // RR claims 16 bytes in 4
        {"length past the header, later option", {0x01, 0x01, 0x44, 0x08}}, // TS claims 8 bytes from offset 2
        {"length one", {0x83, 0x01, 0x00, 0x00}},                     // LSRR length < 2
        {"length zero", {0x01, 0x44, 0x00, 0x00}},                    // TS length 0
        {"length byte missing", {0x01, 0x01, 0x01, 0x07}},            // RR type in the last byte
    };
    for (const auto& [what, opts] : bad) {
        SCOPED_TRACE(what);
        EXPECT_TRUE(dropped(p.nat.out(udp_packet(kSub1, 5000, kRemote1, 53, pattern(8), with_ip_options(opts))),
                            Drop::Malformed));
        EXPECT_TRUE(dropped(p.nat.in(udp_packet(kRemote1, 53, p.ext, p.udp, pattern(8), with_ip_options(opts))),
                            Drop::Malformed));
        EXPECT_TRUE(dropped(p.nat.out(tcp_packet(kSub1, 40000, kRemote1, 80, kAck, {}, with_ip_options(opts))),
                            Drop::Malformed));
    }
    // Options that end with EOL followed by garbage are fine: nothing after EOL is parsed.
    EXPECT_TRUE(forwarded(p.nat.out(udp_packet(kSub1, 5000, kRemote1, 53, pattern(8),
                                               with_ip_options({0x01, 0x00, 0x07, 0x55})))));
    EXPECT_EQ(mbufs_available(), kMbufPoolSize);
}

// RFC 7126 §4.3-4.4: loose and strict source routes are dropped (counted as
// unsupported), both ways; record route and timestamp pass unchanged.
TEST_F(Malformed, Rfc7126_SourceRoutedPacketsAreDroppedAsUnsupported)
{
    Primed p;
    const std::vector<std::pair<std::string, Bytes>> routed = {
        {"LSRR", {0x83, 0x07, 0x04, 203, 0, 113, 9, 0x00}},
        {"SSRR", {0x89, 0x07, 0x04, 203, 0, 113, 9, 0x00}},
        {"LSRR after a NOP", {0x01, 0x83, 0x07, 0x04, 203, 0, 113, 9}},
    };
    for (const auto& [what, opts] : routed) {
        SCOPED_TRACE(what);
        EXPECT_TRUE(dropped(p.nat.out(udp_packet(kSub1, 5000, kRemote1, 53, pattern(8), with_ip_options(opts))),
                            Drop::Unsupported));
        EXPECT_TRUE(dropped(p.nat.in(udp_packet(kRemote1, 53, p.ext, p.udp, pattern(8), with_ip_options(opts))),
                            Drop::Unsupported));
    }
    const Bytes record_route = {0x07, 0x07, 0x04, 0, 0, 0, 0, 0x00};
    const Outcome o = p.nat.out(udp_packet(kSub1, 5000, kRemote1, 53, pattern(8), with_ip_options(record_route)));
    ASSERT_TRUE(forwarded(o));
    EXPECT_EQ(o.parsed().options, record_route) << "other options pass unchanged";
    EXPECT_EQ(mbufs_available(), kMbufPoolSize);
}

TEST_F(Malformed, L4HeaderCutShortIsMalformed)
{
    Primed p;
    struct L4Case {
        const char* what;
        uint8_t proto;
        size_t keep; // bytes of L4 header kept, and the IP total length says so
    };
    for (const L4Case& c : {L4Case{"udp", 17, 4}, L4Case{"udp", 17, 7}, L4Case{"tcp", 6, 12}, L4Case{"tcp", 6, 19},
                            L4Case{"icmp", 1, 4}, L4Case{"icmp", 1, 7}, L4Case{"sctp", 132, 8},
                            L4Case{"sctp", 132, 11}}) {
        SCOPED_TRACE(::testing::Message() << c.what << " with " << c.keep << " bytes");
        Bytes out_l4, in_l4;
        switch (c.proto) {
        case 17:
            out_l4 = udp_datagram(kSub1, kRemote1, 5000, 53);
            in_l4 = udp_datagram(kRemote1, p.ext, 53, p.udp);
            break;
        case 6:
            out_l4 = tcp_segment(kSub1, kRemote1, 40000, 80, kAck);
            in_l4 = tcp_segment(kRemote1, p.ext, 80, p.tcp, kAck);
            break;
        case 1:
            out_l4 = icmp_echo(false, 0x77, 1);
            in_l4 = icmp_echo(true, p.icmp, 1);
            break;
        default:
            out_l4 = sctp_packet(6000, 6001, 1, {});
            in_l4 = sctp_packet(6001, p.sctp, 1, {});
        }
        out_l4.resize(c.keep);
        in_l4.resize(c.keep);
        EXPECT_TRUE(dropped(p.nat.out(ipv4_packet(kSub1, kRemote1, c.proto, out_l4)), Drop::Malformed));
        EXPECT_TRUE(dropped(p.nat.in(ipv4_packet(kRemote1, p.ext, c.proto, in_l4)), Drop::Malformed));
    }
    EXPECT_EQ(mbufs_available(), kMbufPoolSize);
}

TEST_F(Malformed, TcpDataOffsetBelowFiveIsMalformed)
{
    Primed p;
    for (uint8_t doff = 0; doff < 5; ++doff) {
        SCOPED_TRACE(int(doff));
        TcpOpts o;
        o.data_offset = doff;
        EXPECT_TRUE(dropped(p.nat.out(tcp_packet(kSub1, 40000, kRemote1, 80, kAck, pattern(8), {}, o)), Drop::Malformed));
        EXPECT_TRUE(dropped(p.nat.in(tcp_packet(kRemote1, 80, p.ext, p.tcp, kAck, pattern(8), {}, o)), Drop::Malformed));
    }
    EXPECT_EQ(mbufs_available(), kMbufPoolSize);
}

TEST_F(Malformed, TcpDataOffsetBeyondTheSegmentIsMalformed)
{
    Primed p;
    TcpOpts o;
    o.data_offset = 15; // 60 bytes of header in a 20-byte segment
    EXPECT_TRUE(dropped(p.nat.out(tcp_packet(kSub1, 40000, kRemote1, 80, kAck, {}, {}, o)), Drop::Malformed));
    EXPECT_TRUE(dropped(p.nat.in(tcp_packet(kRemote1, 80, p.ext, p.tcp, kAck, {}, {}, o)), Drop::Malformed));
    EXPECT_EQ(mbufs_available(), kMbufPoolSize);
}

TEST_F(Malformed, BadIpv4HeaderChecksumIsBadChecksum)
{
    Primed p;
    Ipv4Opts o;
    o.bad_checksum = true;
    EXPECT_TRUE(dropped(p.nat.out(udp_packet(kSub1, 5001, kRemote1, 53, pattern(8), o)), Drop::BadChecksum));
    EXPECT_TRUE(dropped(p.nat.out(tcp_packet(kSub1, 40001, kRemote1, 80, kSyn, {}, o)), Drop::BadChecksum));
    EXPECT_TRUE(dropped(p.nat.in(udp_packet(kRemote1, 53, p.ext, p.udp, pattern(8), o)), Drop::BadChecksum));
    EXPECT_TRUE(dropped(p.nat.in(echo_packet(kRemote1, p.ext, true, p.icmp, 1, {}, o)), Drop::BadChecksum));
    Ipv4Opts oo = with_ip_options({0x94, 4, 0, 0});
    oo.bad_checksum = true;
    EXPECT_TRUE(dropped(p.nat.out(udp_packet(kSub1, 5001, kRemote1, 53, pattern(8), oo)), Drop::BadChecksum));
    EXPECT_EQ(p.nat.mapping_of(kSub1, 5001, L4::Udp), kNoMapping);
    EXPECT_EQ(mbufs_available(), kMbufPoolSize);
}

// With RX checksum offload the NIC's verdict decides: BAD is dropped like a
// failed software check, GOOD is not summed again (that is the saving).
TEST_F(Malformed, AHeaderTheNicFoundBadIsBadChecksum)
{
    Primed p;
    EXPECT_TRUE(dropped(p.nat.out_flagged(udp_packet(kSub1, 5001, kRemote1, 53, pattern(8)), RTE_MBUF_F_RX_IP_CKSUM_BAD),
                        Drop::BadChecksum));
    EXPECT_TRUE(dropped(p.nat.in_flagged(udp_packet(kRemote1, 53, p.ext, p.udp, pattern(8)), RTE_MBUF_F_RX_IP_CKSUM_BAD),
                        Drop::BadChecksum));
    EXPECT_EQ(p.nat.mapping_of(kSub1, 5001, L4::Udp), kNoMapping);
    EXPECT_EQ(mbufs_available(), kMbufPoolSize);
}

TEST_F(Malformed, AHeaderTheNicVouchedForIsNotCheckedAgainButAnUnknownVerdictIs)
{
    Primed p;
    Ipv4Opts o;
    o.bad_checksum = true; // only software would notice
    EXPECT_TRUE(forwarded(p.nat.out_flagged(udp_packet(kSub1, 5001, kRemote1, 53, pattern(8), o),
                                            RTE_MBUF_F_RX_IP_CKSUM_GOOD)));
    EXPECT_TRUE(dropped(p.nat.out_flagged(udp_packet(kSub1, 5002, kRemote1, 53, pattern(8), o),
                                          RTE_MBUF_F_RX_IP_CKSUM_UNKNOWN),
                        Drop::BadChecksum));
    EXPECT_EQ(mbufs_available(), kMbufPoolSize);
}

// RTE_MBUF_F_RX_IP_CKSUM_NONE: the header is sound but its checksum field is
// not filled in. Incremental updates from that field would leave a wrong sum,
// so the packet goes out with the header summed afresh, both ways.
TEST_F(Malformed, AHeaderTheNicVerifiedWithAnUnfilledChecksumLeavesWithAValidOne)
{
    Primed p;
    Ipv4Opts o;
    o.bad_checksum = true;
    const Outcome out = p.nat.out_flagged(udp_packet(kSub1, 5001, kRemote1, 53, pattern(8), o),
                                          RTE_MBUF_F_RX_IP_CKSUM_NONE);
    ASSERT_TRUE(forwarded(out));
    EXPECT_TRUE(ip_checksum_ok(out.parsed()));
    EXPECT_TRUE(l4_checksum_ok(out.parsed()));
    const Outcome in = p.nat.in_flagged(udp_packet(kRemote1, 53, p.ext, p.udp, pattern(8), o),
                                        RTE_MBUF_F_RX_IP_CKSUM_NONE);
    ASSERT_TRUE(forwarded(in));
    EXPECT_TRUE(ip_checksum_ok(in.parsed()));
    EXPECT_TRUE(l4_checksum_ok(in.parsed()));
    EXPECT_EQ(mbufs_available(), kMbufPoolSize);
}

TEST_F(Malformed, FragmentsAreDroppedAsFragment)
{
    Primed p;
    struct Frag {
        const char* what;
        bool mf;
        uint16_t offset;
        size_t payload;
    };
    for (const Frag& f : {Frag{"first", true, 0, 16}, Frag{"middle", true, 3, 16}, Frag{"last", false, 5, 16},
                          Frag{"last, tiny", false, 5, 0}}) {
        SCOPED_TRACE(f.what);
        Ipv4Opts o;
        o.mf = f.mf;
        o.frag_offset = f.offset;
        EXPECT_TRUE(dropped(p.nat.out(udp_packet(kSub1, 5002, kRemote1, 53, pattern(f.payload), o)), Drop::Fragment));
        EXPECT_TRUE(dropped(p.nat.in(udp_packet(kRemote1, 53, p.ext, p.udp, pattern(f.payload), o)), Drop::Fragment));
        EXPECT_TRUE(dropped(p.nat.out(tcp_packet(kSub1, 40002, kRemote1, 80, kSyn, pattern(f.payload), o)),
                            Drop::Fragment));
        if (f.offset != 0) {
            // A later fragment carries no L4 header at all: still a fragment.
            EXPECT_TRUE(dropped(p.nat.out(ipv4_packet(kSub1, kRemote1, 17, pattern(3), o)), Drop::Fragment));
        }
    }
    EXPECT_EQ(p.nat.mapping_of(kSub1, 5002, L4::Udp), kNoMapping) << "a fragment made a mapping";
    EXPECT_EQ(p.nat.mapping_of(kSub1, 40002, L4::Tcp), kNoMapping);
    EXPECT_EQ(mbufs_available(), kMbufPoolSize);
}

TEST_F(Malformed, NonIpv4EthertypesAreUnsupported)
{
    Primed p;
    for (uint16_t type : {kEtherArp, kEtherIpv6, uint16_t(0x88cc) /* LLDP */}) {
        for (std::optional<uint16_t> vlan : {std::optional<uint16_t>{}, std::optional<uint16_t>{uint16_t(3)}}) {
            SCOPED_TRACE(::testing::Message() << "ethertype 0x" << std::hex << type << (vlan ? " tagged" : ""));
            L2 in_l2;
            in_l2.dst = kGwInsideMac;
            in_l2.src = subscriber_mac(kSub1);
            in_l2.vlan_tci = vlan;
            L2 out_l2;
            out_l2.dst = kGwOutsideMac;
            out_l2.src = kUpstreamMac;
            out_l2.vlan_tci = vlan;
            EXPECT_TRUE(dropped(p.nat.out_frame(ether_frame(in_l2, type, pattern(46))), Drop::Unsupported));
            EXPECT_TRUE(dropped(p.nat.in_frame(ether_frame(out_l2, type, pattern(46))), Drop::Unsupported));
        }
    }
    EXPECT_EQ(mbufs_available(), kMbufPoolSize);
}

TEST_F(Malformed, OtherIpProtocolsAreUnsupported)
{
    Primed p;
    for (uint8_t proto : {47 /* GRE */, 50 /* ESP */, 41 /* IPv6 in IPv4 */, 2 /* IGMP */}) {
        SCOPED_TRACE(int(proto));
        EXPECT_TRUE(dropped(p.nat.out(ipv4_packet(kSub1, kRemote1, proto, pattern(24))), Drop::Unsupported));
        EXPECT_TRUE(dropped(p.nat.in(ipv4_packet(kRemote1, p.ext, proto, pattern(24))), Drop::Unsupported));
    }
    EXPECT_EQ(mbufs_available(), kMbufPoolSize);
}

TEST_F(Malformed, MalformedBurstLeavesStateAndPoolIntact)
{
    Primed p;
    const WorkerStats before = p.nat.tr.stats();
    std::vector<Bytes> frames;
    Ipv4Opts ihl3;
    ihl3.ihl = 3;
    TcpOpts doff2;
    doff2.data_offset = 2;
    for (int i = 0; i < 4; ++i) {
        frames.push_back(Bytes(13, 0xff));
        frames.push_back(Nat::inside_frame(udp_packet(kSub1, uint16_t(7000 + i), kRemote1, 53, {}, ihl3)));
        frames.push_back(Nat::inside_frame(tcp_packet(kSub1, uint16_t(7000 + i), kRemote1, 80, kSyn, {}, {}, doff2)));
        frames.push_back(Nat::inside_frame(ipv4_packet(kSub1, kRemote1, 17, pattern(5))));
    }
    frames.push_back(Nat::inside_frame(udp_packet(kSub1, 5000, kRemote1, 53, pattern(1)))); // the one good packet
    const auto out = p.nat.burst(Dir::Out, frames);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(parse_frame(out[0]).payload, pattern(1));
    const WorkerStats& after = p.nat.tr.stats();
    EXPECT_EQ(after.rx[0] - before.rx[0], frames.size());
    EXPECT_EQ(after.drops[0][unsigned(Drop::Malformed)] - before.drops[0][unsigned(Drop::Malformed)], 16u);
    EXPECT_EQ(total(after.mappings_created), total(before.mappings_created));
    EXPECT_EQ(mbufs_available(), kMbufPoolSize);
}

} // namespace
} // namespace ephtest
