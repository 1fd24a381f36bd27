#include "packet_builder.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include <rte_mbuf.h>
#include <rte_errno.h>
#include <rte_mempool.h>

namespace ephtest {

namespace {

void put8(Bytes& b, uint8_t v) { b.push_back(v); }
void put16(Bytes& b, uint16_t v)
{
    b.push_back(uint8_t(v >> 8));
    b.push_back(uint8_t(v));
}
void put32(Bytes& b, uint32_t v)
{
    put16(b, uint16_t(v >> 16));
    put16(b, uint16_t(v));
}
void append(Bytes& b, const Bytes& more) { b.insert(b.end(), more.begin(), more.end()); }
uint16_t get16(const Bytes& b, size_t at) { return uint16_t((b[at] << 8) | b[at + 1]); }
uint32_t get32(const Bytes& b, size_t at) { return (uint32_t(get16(b, at)) << 16) | get16(b, at + 2); }
void set16(Bytes& b, size_t at, uint16_t v)
{
    b[at] = uint8_t(v >> 8);
    b[at + 1] = uint8_t(v);
}
Bytes padded4(Bytes options)
{
    while (options.size() % 4 != 0) options.push_back(0); // EOL
    return options;
}
Bytes slice(const Bytes& b, size_t from, size_t to)
{
    if (from > b.size()) from = b.size();
    if (to > b.size()) to = b.size();
    if (to < from) to = from;
    return Bytes(b.begin() + long(from), b.begin() + long(to));
}

} // namespace

std::string ip_str(uint32_t a)
{
    char buf[20];
    std::snprintf(buf, sizeof buf, "%u.%u.%u.%u", a >> 24, (a >> 16) & 0xff, (a >> 8) & 0xff, a & 0xff);
    return buf;
}

std::string mac_str(const Mac& m)
{
    char buf[24];
    std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
    return buf;
}

// ------------------------------------------------------------- checksums

uint32_t ones_sum(const uint8_t* data, size_t len, uint32_t acc)
{
    uint64_t sum = acc;
    size_t i = 0;
    for (; i + 1 < len; i += 2) sum += uint32_t(data[i]) << 8 | data[i + 1];
    if (i < len) sum += uint32_t(data[i]) << 8;
    while (sum >> 32) sum = (sum & 0xffffffffu) + (sum >> 32);
    return uint32_t(sum);
}

uint16_t ones_fold(uint32_t acc)
{
    uint64_t s = acc;
    while (s >> 16) s = (s & 0xffff) + (s >> 16);
    return uint16_t(s);
}

uint16_t inet_checksum(const uint8_t* data, size_t len, uint32_t acc)
{
    return uint16_t(~ones_fold(ones_sum(data, len, acc)));
}

uint32_t pseudo_header_sum(uint32_t src, uint32_t dst, uint8_t proto, uint16_t l4_len)
{
    uint64_t s = (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + proto + l4_len;
    return ones_fold(uint32_t(s));
}

uint32_t crc32c(const uint8_t* data, size_t len)
{
    uint32_t crc = 0xffffffffu;
    for (size_t i = 0; i < len; ++i) {
        crc ^= data[i];
        for (int bit = 0; bit < 8; ++bit) crc = (crc & 1) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
    }
    return ~crc;
}

// -------------------------------------------------------------- building

Bytes pattern(size_t n, uint8_t seed)
{
    Bytes b(n);
    for (size_t i = 0; i < n; ++i) b[i] = uint8_t(seed + i * 7);
    return b;
}

Bytes tcp_segment(uint32_t src, uint32_t dst, uint16_t sport, uint16_t dport, uint8_t flags, const Bytes& payload,
                  const TcpOpts& o)
{
    const Bytes opts = padded4(o.options);
    Bytes b;
    put16(b, sport);
    put16(b, dport);
    put32(b, o.seq);
    put32(b, o.ack);
    const uint8_t doff = o.data_offset ? *o.data_offset : uint8_t((20 + opts.size()) / 4);
    put8(b, uint8_t(doff << 4));
    put8(b, flags);
    put16(b, o.window);
    put16(b, 0); // checksum
    put16(b, o.urgent);
    append(b, opts);
    append(b, payload);
    const uint16_t ck =
        inet_checksum(b.data(), b.size(), pseudo_header_sum(src, dst, 6, uint16_t(b.size())));
    set16(b, 16, ck);
    return b;
}

Bytes udp_datagram(uint32_t src, uint32_t dst, uint16_t sport, uint16_t dport, const Bytes& payload,
                   bool zero_checksum)
{
    Bytes b;
    put16(b, sport);
    put16(b, dport);
    put16(b, uint16_t(8 + payload.size()));
    put16(b, 0);
    append(b, payload);
    if (!zero_checksum) {
        uint16_t ck = inet_checksum(b.data(), b.size(), pseudo_header_sum(src, dst, 17, uint16_t(b.size())));
        if (ck == 0) ck = 0xffff; // RFC 768: a computed zero is sent as all ones
        set16(b, 6, ck);
    }
    return b;
}

Bytes icmp_message(uint8_t type, uint8_t code, uint32_t rest, const Bytes& body)
{
    Bytes b;
    put8(b, type);
    put8(b, code);
    put16(b, 0);
    put32(b, rest);
    append(b, body);
    set16(b, 2, inet_checksum(b.data(), b.size()));
    return b;
}

Bytes icmp_echo(bool reply, uint16_t id, uint16_t seq, const Bytes& payload)
{
    return icmp_message(reply ? 0 : 8, 0, (uint32_t(id) << 16) | seq, payload);
}

Bytes sctp_packet(uint16_t sport, uint16_t dport, uint32_t vtag, const Bytes& chunks)
{
    Bytes b;
    put16(b, sport);
    put16(b, dport);
    put32(b, vtag);
    put32(b, 0);
    append(b, chunks);
    const uint32_t crc = crc32c(b.data(), b.size());
    b[8] = uint8_t(crc);
    b[9] = uint8_t(crc >> 8);
    b[10] = uint8_t(crc >> 16);
    b[11] = uint8_t(crc >> 24);
    return b;
}

Bytes sctp_init_chunk(uint32_t initiate_tag)
{
    Bytes b;
    put8(b, 1);   // INIT
    put8(b, 0);   // flags
    put16(b, 20); // length
    put32(b, initiate_tag);
    put32(b, 65535); // a_rwnd
    put16(b, 10);    // outbound streams
    put16(b, 10);    // inbound streams
    put32(b, 0x11223344); // initial TSN
    return b;
}

Bytes sctp_data_chunk(uint32_t tsn, const Bytes& user_data)
{
    Bytes b;
    put8(b, 0);    // DATA
    put8(b, 0x03); // B and E
    put16(b, uint16_t(16 + user_data.size()));
    put32(b, tsn);
    put16(b, 0); // stream
    put16(b, 0); // stream sequence
    put32(b, 0); // PPID
    append(b, user_data);
    while (b.size() % 4) b.push_back(0);
    return b;
}

Bytes ipv4_packet(uint32_t src, uint32_t dst, uint8_t proto, const Bytes& l4, const Ipv4Opts& o)
{
    const Bytes opts = padded4(o.options);
    const size_t hlen = 20 + opts.size();
    Bytes b;
    const uint8_t version = o.version ? *o.version : 4;
    const uint8_t ihl = o.ihl ? *o.ihl : uint8_t(hlen / 4);
    put8(b, uint8_t(version << 4 | (ihl & 0x0f)));
    put8(b, o.tos);
    put16(b, o.total_length ? *o.total_length : uint16_t(hlen + l4.size()));
    put16(b, o.id);
    put16(b, uint16_t((o.df ? 0x4000 : 0) | (o.mf ? 0x2000 : 0) | (o.frag_offset & 0x1fff)));
    put8(b, o.ttl);
    put8(b, proto);
    put16(b, 0);
    put32(b, src);
    put32(b, dst);
    append(b, opts);
    append(b, l4);
    // The checksum covers the header as the IHL says (so a packet with a
    // wrong IHL is still "valid" as far as the checksum goes): ihl*4 bytes
    // when they are there, else all there is; never less than 20.
    size_t ck_len = std::max<size_t>(20, size_t(ihl) * 4);
    if (ck_len > b.size()) ck_len = b.size();
    uint16_t ck = inet_checksum(b.data(), ck_len);
    if (o.bad_checksum) ck ^= 0x5a5a;
    set16(b, 10, ck);
    return b;
}

Bytes tcp_packet(uint32_t src, uint16_t sport, uint32_t dst, uint16_t dport, uint8_t flags, const Bytes& payload,
                 const Ipv4Opts& ipo, const TcpOpts& tcpo)
{
    return ipv4_packet(src, dst, 6, tcp_segment(src, dst, sport, dport, flags, payload, tcpo), ipo);
}

Bytes udp_packet(uint32_t src, uint16_t sport, uint32_t dst, uint16_t dport, const Bytes& payload,
                 const Ipv4Opts& ipo, bool zero_checksum)
{
    return ipv4_packet(src, dst, 17, udp_datagram(src, dst, sport, dport, payload, zero_checksum), ipo);
}

Bytes echo_packet(uint32_t src, uint32_t dst, bool reply, uint16_t id, uint16_t seq, const Bytes& payload,
                  const Ipv4Opts& ipo)
{
    return ipv4_packet(src, dst, 1, icmp_echo(reply, id, seq, payload), ipo);
}

Bytes sctp_ip_packet(uint32_t src, uint16_t sport, uint32_t dst, uint16_t dport, uint32_t vtag, const Bytes& chunks,
                     const Ipv4Opts& ipo)
{
    return ipv4_packet(src, dst, 132, sctp_packet(sport, dport, vtag, chunks), ipo);
}

Bytes icmp_error_packet(uint32_t src, uint32_t dst, uint8_t type, uint8_t code, const Bytes& offending, size_t quote,
                        uint32_t rest, const Ipv4Opts& ipo)
{
    const Bytes quoted = quote == 0 ? offending : slice(offending, 0, quote);
    return ipv4_packet(src, dst, 1, icmp_message(type, code, rest, quoted), ipo);
}

Bytes ether_frame(const L2& l2, uint16_t ethertype, const Bytes& payload)
{
    Bytes b(l2.dst.begin(), l2.dst.end());
    b.insert(b.end(), l2.src.begin(), l2.src.end());
    if (l2.vlan_tci) {
        put16(b, kEtherVlan);
        put16(b, *l2.vlan_tci);
    }
    put16(b, ethertype);
    append(b, payload);
    while (b.size() < l2.pad_to) b.push_back(l2.pad_byte);
    return b;
}

// --------------------------------------------------------------- parsing

Parsed parse_ipv4(const Bytes& ipb, bool embedded)
{
    Parsed p;
    if (ipb.size() < 20) {
        ADD_FAILURE() << "IPv4 header cut short: " << ipb.size() << " bytes";
        return p;
    }
    p.version = ipb[0] >> 4;
    p.ihl = ipb[0] & 0x0f;
    p.tos = ipb[1];
    p.total_length = get16(ipb, 2);
    p.id = get16(ipb, 4);
    const uint16_t ff = get16(ipb, 6);
    p.df = ff & 0x4000;
    p.mf = ff & 0x2000;
    p.frag_offset = ff & 0x1fff;
    p.ttl = ipb[8];
    p.proto = ipb[9];
    p.ip_checksum = get16(ipb, 10);
    p.src = get32(ipb, 12);
    p.dst = get32(ipb, 16);
    const size_t hlen = size_t(p.ihl) * 4;
    if (p.version != 4 || p.ihl < 5 || hlen > ipb.size()) {
        ADD_FAILURE() << "bad IPv4 header: version " << int(p.version) << " ihl " << int(p.ihl) << " with "
                      << ipb.size() << " bytes";
        return p;
    }
    if (!embedded && p.total_length > ipb.size()) {
        ADD_FAILURE() << "IPv4 total length " << p.total_length << " beyond the " << ipb.size() << " bytes present";
        return p;
    }
    p.ip_header = slice(ipb, 0, hlen);
    p.options = slice(ipb, 20, hlen);
    const size_t end = std::min<size_t>(p.total_length, ipb.size());
    p.ip_packet = slice(ipb, 0, end);
    p.l4 = slice(ipb, hlen, end);
    p.l4_complete = ipb.size() >= p.total_length && p.total_length >= hlen;
    const Bytes& l4 = p.l4;
    const size_t n = l4.size();
    switch (p.proto) {
    case 6: // TCP
        if (n >= 4) p.sport = get16(l4, 0), p.dport = get16(l4, 2);
        if (n >= 8) p.seq = get32(l4, 4);
        if (n >= 12) p.ack = get32(l4, 8);
        if (n >= 14) p.data_offset = l4[12] >> 4, p.tcp_flags = l4[13];
        if (n >= 16) p.window = get16(l4, 14);
        if (n >= 18) p.l4_checksum = get16(l4, 16), p.l4_checksum_present = true;
        if (n >= 20) p.urgent = get16(l4, 18);
        if (n >= 20 && size_t(p.data_offset) * 4 <= n) p.payload = slice(l4, size_t(p.data_offset) * 4, n);
        break;
    case 17: // UDP
        if (n >= 4) p.sport = get16(l4, 0), p.dport = get16(l4, 2);
        if (n >= 6) p.udp_length = get16(l4, 4);
        if (n >= 8) p.l4_checksum = get16(l4, 6), p.l4_checksum_present = true;
        p.payload = slice(l4, 8, n);
        break;
    case 132: // SCTP
        if (n >= 4) p.sport = get16(l4, 0), p.dport = get16(l4, 2);
        if (n >= 8) p.sctp_vtag = get32(l4, 4);
        p.payload = slice(l4, 12, n);
        break;
    case 1: // ICMP
        if (n >= 2) p.icmp_type = l4[0], p.icmp_code = l4[1];
        if (n >= 4) p.l4_checksum = get16(l4, 2), p.l4_checksum_present = true;
        if (n >= 8) {
            p.icmp_rest = get32(l4, 4);
            p.icmp_id = get16(l4, 4);
            p.icmp_seq = get16(l4, 6);
        }
        p.payload = slice(l4, 8, n);
        if (!embedded && (p.icmp_type == 3 || p.icmp_type == 11 || p.icmp_type == 12) && !p.payload.empty())
            p.embedded = std::make_shared<Parsed>(parse_ipv4(p.payload, true));
        break;
    default:
        break;
    }
    return p;
}

Parsed parse_frame(const Bytes& f)
{
    Parsed p;
    if (f.size() < 14) {
        ADD_FAILURE() << "frame cut short: " << f.size() << " bytes";
        return p;
    }
    std::copy(f.begin(), f.begin() + 6, p.eth_dst.begin());
    std::copy(f.begin() + 6, f.begin() + 12, p.eth_src.begin());
    size_t off = 12;
    uint16_t type = get16(f, off);
    if (type == kEtherVlan) {
        if (f.size() < 18) {
            ADD_FAILURE() << "VLAN tag cut short";
            return p;
        }
        p.vlan_tci = get16(f, 14);
        off = 16;
        type = get16(f, off);
    }
    p.ethertype = type;
    p.l3_offset = off + 2;
    if (type != kEtherIpv4) return p;
    Parsed ipp = parse_ipv4(slice(f, p.l3_offset, f.size()), false);
    ipp.eth_dst = p.eth_dst;
    ipp.eth_src = p.eth_src;
    ipp.vlan_tci = p.vlan_tci;
    ipp.ethertype = p.ethertype;
    ipp.l3_offset = p.l3_offset;
    return ipp;
}

::testing::AssertionResult ip_checksum_ok(const Parsed& p)
{
    if (p.ip_header.size() < 20) return ::testing::AssertionFailure() << "no IPv4 header";
    const uint16_t folded = ones_fold(ones_sum(p.ip_header.data(), p.ip_header.size()));
    if (folded != 0xffff) {
        Bytes h = p.ip_header;
        set16(h, 10, 0);
        return ::testing::AssertionFailure() << "IPv4 header checksum 0x" << std::hex << p.ip_checksum
                                             << ", recomputed 0x" << inet_checksum(h.data(), h.size()) << " ("
                                             << ip_str(p.src) << " -> " << ip_str(p.dst) << ")";
    }
    return ::testing::AssertionSuccess();
}

::testing::AssertionResult l4_checksum_ok(const Parsed& p)
{
    if (!p.l4_complete) return ::testing::AssertionFailure() << "L4 not wholly present, checksum not verifiable";
    const Bytes& l4 = p.l4;
    auto fail = [&](const char* what, uint16_t stored, Bytes zeroed, size_t at, uint32_t acc) {
        set16(zeroed, at, 0);
        return ::testing::AssertionFailure() << what << " checksum 0x" << std::hex << stored << ", recomputed 0x"
                                             << inet_checksum(zeroed.data(), zeroed.size(), acc);
    };
    switch (p.proto) {
    case 6: {
        if (l4.size() < 20) return ::testing::AssertionFailure() << "TCP header cut short";
        const uint32_t acc = pseudo_header_sum(p.src, p.dst, 6, uint16_t(l4.size()));
        if (ones_fold(ones_sum(l4.data(), l4.size(), acc)) != 0xffff) return fail("TCP", p.l4_checksum, l4, 16, acc);
        return ::testing::AssertionSuccess();
    }
    case 17: {
        if (l4.size() < 8) return ::testing::AssertionFailure() << "UDP header cut short";
        if (p.udp_length != l4.size())
            return ::testing::AssertionFailure() << "UDP length " << p.udp_length << " but " << l4.size() << " bytes";
        if (p.l4_checksum == 0) return ::testing::AssertionFailure() << "UDP checksum is zero (absent)";
        const uint32_t acc = pseudo_header_sum(p.src, p.dst, 17, uint16_t(l4.size()));
        if (ones_fold(ones_sum(l4.data(), l4.size(), acc)) != 0xffff) return fail("UDP", p.l4_checksum, l4, 6, acc);
        return ::testing::AssertionSuccess();
    }
    case 1: {
        if (l4.size() < 8) return ::testing::AssertionFailure() << "ICMP header cut short";
        if (ones_fold(ones_sum(l4.data(), l4.size())) != 0xffff) return fail("ICMP", p.l4_checksum, l4, 2, 0);
        return ::testing::AssertionSuccess();
    }
    case 132: {
        if (l4.size() < 12) return ::testing::AssertionFailure() << "SCTP header cut short";
        Bytes z = l4;
        const uint32_t stored = uint32_t(z[8]) | uint32_t(z[9]) << 8 | uint32_t(z[10]) << 16 | uint32_t(z[11]) << 24;
        z[8] = z[9] = z[10] = z[11] = 0;
        const uint32_t want = crc32c(z.data(), z.size());
        if (stored != want)
            return ::testing::AssertionFailure() << "SCTP CRC32c 0x" << std::hex << stored << " (LSB first), recomputed 0x"
                                                 << want;
        return ::testing::AssertionSuccess();
    }
    default:
        return ::testing::AssertionFailure() << "no checksum known for IP protocol " << int(p.proto);
    }
}

::testing::AssertionResult checksums_ok(const Parsed& p)
{
    if (auto r = ip_checksum_ok(p); !r) return ::testing::AssertionFailure() << "outer: " << r.message();
    if (auto r = l4_checksum_ok(p); !r) return ::testing::AssertionFailure() << "outer: " << r.message();
    if (p.embedded) {
        const Parsed& e = *p.embedded;
        if (auto r = ip_checksum_ok(e); !r) return ::testing::AssertionFailure() << "embedded: " << r.message();
        const bool udp_without = e.proto == 17 && e.l4_checksum == 0;
        if (e.l4_complete && !udp_without) {
            if (auto r = l4_checksum_ok(e); !r) return ::testing::AssertionFailure() << "embedded: " << r.message();
        }
    }
    return ::testing::AssertionSuccess();
}

// ------------------------------------------------------------------ mbufs

rte_mempool* mbuf_pool()
{
    static rte_mempool* pool = [] {
        rte_mempool* mp = rte_pktmbuf_pool_create("ephtest_mbufs", kMbufPoolSize, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                                  SOCKET_ID_ANY);
        if (mp == nullptr) {
            std::fprintf(stderr, "rte_pktmbuf_pool_create: %s\n", rte_strerror(rte_errno));
            std::abort();
        }
        return mp;
    }();
    return pool;
}

unsigned mbufs_available() { return rte_mempool_avail_count(mbuf_pool()); }

rte_mbuf* make_mbuf(const Bytes& frame)
{
    rte_mbuf* m = rte_pktmbuf_alloc(mbuf_pool());
    if (m == nullptr) {
        ADD_FAILURE() << "mbuf pool empty";
        return nullptr;
    }
    if (!frame.empty()) {
        char* d = rte_pktmbuf_append(m, uint16_t(frame.size()));
        if (d == nullptr) {
            ADD_FAILURE() << "frame of " << frame.size() << " bytes does not fit an mbuf";
            rte_pktmbuf_free(m);
            return nullptr;
        }
        std::memcpy(d, frame.data(), frame.size());
    }
    return m;
}

rte_mbuf* make_chained_mbuf(const Bytes& frame, size_t first_len, size_t rest_len)
{
    rte_mbuf* head = make_mbuf(Bytes(frame.begin(), frame.begin() + std::min(first_len, frame.size())));
    for (size_t at = first_len; head != nullptr && at < frame.size(); at += rest_len) {
        rte_mbuf* seg = make_mbuf(Bytes(frame.begin() + at, frame.begin() + std::min(frame.size(), at + rest_len)));
        if (seg == nullptr || rte_pktmbuf_chain(head, seg) != 0) {
            ADD_FAILURE() << "cannot chain a segment";
            rte_pktmbuf_free(seg);
            rte_pktmbuf_free(head);
            return nullptr;
        }
    }
    return head;
}

Bytes mbuf_bytes(const rte_mbuf* m)
{
    Bytes b;
    uint32_t total = 0;
    for (const rte_mbuf* s = m; s != nullptr; s = s->next) {
        const auto* d = rte_pktmbuf_mtod(s, const uint8_t*);
        b.insert(b.end(), d, d + s->data_len);
        total += s->data_len;
    }
    EXPECT_EQ(total, m->pkt_len) << "mbuf pkt_len disagrees with its segments";
    return b;
}

} // namespace ephtest
