// Writes the two pcap files of the daemon fuzz test (test_daemon_fuzz.py):
// what the inside and the outside port of a gateway receive. Each file holds
// well-formed frames for every path a worker has (translation both ways, ICMP
// errors, hairpinning, an excluded destination, fragments, too big for the
// outside MTU, TTL expiry, ARP, ping to the gateway, PCP, an unsolicited SYN)
// and, for each of them, mutants: cut at a random length, random bytes
// changed, a header field set to an extreme. The well-formed frames keep
// mappings alive while the mutants go through the same code.
//
// Usage: fuzz-frames SEED MUTANTS INSIDE.pcap OUTSIDE.pcap
// The addresses are those of the configuration test_daemon_fuzz.py writes.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "packet_builder.hpp"

using namespace ephtest;

namespace {

// net_pcap names its ports' MACs after their order of creation.
constexpr Mac kGatewayInsideMac{0x02, 0x70, 0x63, 0x61, 0x70, 0x00};
constexpr Mac kGatewayOutsideMac{0x02, 0x70, 0x63, 0x61, 0x70, 0x01};
constexpr Mac kNextHopMac{0x02, 0x00, 0x00, 0x00, 0x00, 0x02};
constexpr uint32_t kGatewayInside = ip(100, 64, 0, 1);
constexpr uint32_t kGatewayOutside = ip(203, 0, 113, 1);
constexpr uint32_t kNextHop = ip(203, 0, 113, 2);
constexpr uint32_t kPoolFirst = ip(198, 51, 100, 0); // a /30: four addresses
constexpr uint32_t kServer = ip(203, 0, 113, 50);
constexpr uint32_t kExcluded = ip(203, 0, 113, 200); // inside nat.exclude = 203.0.113.128/25

Mac host_mac(uint32_t host) { return {0x02, 0x00, 0x00, 0x01, uint8_t(host >> 8), uint8_t(host)}; }

Bytes inside_frame(uint32_t host, const Bytes& ip_packet, std::optional<uint16_t> vlan = {})
{
    L2 l2;
    l2.dst = kGatewayInsideMac;
    l2.src = host_mac(host);
    l2.vlan_tci = vlan;
    return ether_frame(l2, kEtherIpv4, ip_packet);
}

Bytes outside_frame(const Bytes& ip_packet)
{
    L2 l2;
    l2.dst = kGatewayOutsideMac;
    l2.src = kNextHopMac;
    return ether_frame(l2, kEtherIpv4, ip_packet);
}

Bytes arp(const Mac& dst, const Mac& src, uint16_t op, uint32_t sender, uint32_t target)
{
    Bytes b(28, 0);
    b[1] = 1;    // Ethernet
    b[2] = 0x08; // IPv4
    b[4] = 6;
    b[5] = 4;
    b[7] = uint8_t(op);
    for (size_t i = 0; i < 6; ++i) {
        b[8 + i] = src[i];
        b[18 + i] = op == 2 ? dst[i] : 0;
    }
    for (size_t i = 0; i < 4; ++i) {
        b[14 + i] = uint8_t(sender >> (24 - 8 * i));
        b[24 + i] = uint8_t(target >> (24 - 8 * i));
    }
    L2 l2;
    l2.dst = dst;
    l2.src = src;
    l2.pad_to = 60;
    return ether_frame(l2, kEtherArp, b);
}

// RFC 6887 MAP request (version 2) for `port`, nonce from the port.
Bytes pcp_map(uint32_t client, uint16_t port, uint32_t lifetime, uint8_t opcode = 1)
{
    Bytes b(60, 0);
    b[0] = 2;
    b[1] = opcode;
    for (int i = 0; i < 4; ++i) b[size_t(4 + i)] = uint8_t(lifetime >> (24 - 8 * i));
    b[18] = b[19] = 0xff;
    for (int i = 0; i < 4; ++i) b[size_t(20 + i)] = uint8_t(client >> (24 - 8 * i));
    b[24] = uint8_t(port);
    b[36] = 17;
    b[40] = uint8_t(port >> 8);
    b[41] = uint8_t(port);
    b[42] = uint8_t(port >> 8);
    b[43] = uint8_t(port);
    return b;
}

// RFC 6887 ANNOUNCE request.
Bytes pcp_announce(uint32_t client)
{
    Bytes b(24, 0);
    b[0] = 2;
    b[18] = b[19] = 0xff;
    for (int i = 0; i < 4; ++i) b[size_t(20 + i)] = uint8_t(client >> (24 - 8 * i));
    return b;
}

// IPv4 fragments carrying `l4`, `piece` bytes each (a multiple of 8).
std::vector<Bytes> fragments(uint32_t src, uint32_t dst, uint8_t proto, const Bytes& l4, size_t piece, uint16_t id)
{
    std::vector<Bytes> out;
    for (size_t off = 0; off < l4.size(); off += piece) {
        Ipv4Opts o;
        o.id = id;
        o.frag_offset = uint16_t(off / 8);
        o.mf = off + piece < l4.size();
        out.push_back(ipv4_packet(src, dst, proto, Bytes(l4.begin() + long(off), l4.begin() + long(std::min(l4.size(), off + piece))), o));
    }
    return out;
}

struct Corpus {
    std::vector<Bytes> inside, outside;
};

Corpus seeds()
{
    Corpus c;
    auto in = [&](uint32_t host, const Bytes& pkt) { c.inside.push_back(inside_frame(host, pkt)); };
    auto out = [&](const Bytes& pkt) { c.outside.push_back(outside_frame(pkt)); };

    for (unsigned h = 10; h < 14; ++h) {
        const uint32_t host = ip(100, 64, 0, h);
        const uint16_t port = uint16_t(50000 + h); // port preservation keeps it: the outside seeds hit it
        in(host, udp_packet(host, port, kServer, 53, pattern(40)));
        in(host, tcp_packet(host, port, kServer, 80, kSyn, {}, {}, [] {
               TcpOpts o;
               o.options = {2, 4, 0x05, 0xb4, 1, 1, 4, 2};
               return o;
           }()));
        in(host, tcp_packet(host, port, kServer, 80, kAck | kPsh, pattern(100)));
        in(host, tcp_packet(host, port, kServer, 80, kFin | kAck));
        in(host, tcp_packet(host, uint16_t(port + 100), kServer, 443, kRst));
        in(host, echo_packet(host, kServer, false, port, 1, pattern(56)));
        in(host, echo_packet(host, kGatewayInside, false, 7, 1, pattern(56)));
        in(host, sctp_ip_packet(host, port, kServer, 9899, 0, sctp_init_chunk(0x11223344)));
        in(host, udp_packet(host, port, kExcluded, 53, pattern(20)));
        in(host, udp_packet(host, port, kServer, 33434, pattern(20), with_ttl(1)));
        c.inside.push_back(inside_frame(host, udp_packet(host, port, kServer, 123, pattern(48)), uint16_t(100)));
        in(host, udp_packet(host, port, kServer, 53, pattern(20), with_ip_options({0x94, 0x04, 0, 0})));
        // Hairpinning: to another subscriber's mapping, on each pool address.
        for (uint32_t a = 0; a < 4; ++a) in(host, udp_packet(host, port, kPoolFirst + a, uint16_t(50010 + a), pattern(8)));
        // Too big for the 1280-byte outside: with DF answered 3/4, without it fragmented.
        Ipv4Opts df;
        df.df = true;
        in(host, udp_packet(host, port, kServer, 9000, pattern(1400), df));
        in(host, udp_packet(host, port, kServer, 9000, pattern(1400)));
        for (const Bytes& f : fragments(host, kServer, 17, udp_datagram(host, kServer, port, 9001, pattern(2000)), 1000,
                                        uint16_t(0x4000 + h)))
            in(host, f);
        // An ICMP error from the inside host about an inbound datagram.
        in(host, icmp_error_packet(host, kServer, 3, 3, udp_packet(kServer, 53, host, port, pattern(8))));
        // PCP: MAP, a delete, ANNOUNCE, PEER (refused).
        in(host, udp_packet(host, 5351, kGatewayInside, 5351, pcp_map(host, uint16_t(port + 200), 600)));
        in(host, udp_packet(host, 5351, kGatewayInside, 5351, pcp_map(host, uint16_t(port + 200), 0)));
        in(host, udp_packet(host, 5351, kGatewayInside, 5351, pcp_announce(host)));
        in(host, udp_packet(host, 5351, kGatewayInside, 5351, pcp_map(host, uint16_t(port + 200), 600, 2)));
        c.inside.push_back(arp(Mac{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, host_mac(host), 1, host, kGatewayInside));
    }
    c.inside.push_back(arp(kGatewayInsideMac, host_mac(ip(100, 64, 0, 10)), 2, ip(100, 64, 0, 10), kGatewayInside));
    // A host with many flows: beyond a small per-subscriber limit.
    const uint32_t busy = ip(100, 64, 0, 30);
    for (uint16_t port = 30000; port < 30020; ++port) in(busy, udp_packet(busy, port, kServer, 53, pattern(10)));
    // A subscriber beyond 100.64.0.0/20 (outside the deterministic prefix of one configuration).
    const uint32_t far = ip(100, 64, 64, 5);
    in(far, udp_packet(far, 40000, kServer, 53, pattern(10)));
    // The host of a port forward (a static mapping in one of the configurations).
    const uint32_t forwarded = ip(100, 64, 0, 20);
    c.inside.push_back(arp(Mac{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, host_mac(forwarded), 1, forwarded, kGatewayInside));
    in(forwarded, udp_packet(forwarded, 5000, kServer, 53, pattern(30)));
    in(forwarded, tcp_packet(forwarded, 5000, kServer, 40000, kSyn | kAck));

    for (uint32_t a = 0; a < 4; ++a) {
        const uint32_t pool = kPoolFirst + a;
        for (unsigned h = 10; h < 14; ++h) {
            const uint16_t port = uint16_t(50000 + h);
            out(udp_packet(kServer, 53, pool, port, pattern(40)));
            out(tcp_packet(kServer, 80, pool, port, kSyn | kAck));
            out(tcp_packet(kServer, 80, pool, port, kAck, pattern(200)));
            out(tcp_packet(kServer, 80, pool, port, kFin | kAck));
            out(echo_packet(kServer, pool, true, port, 1, pattern(56)));
            out(sctp_ip_packet(kServer, 9899, pool, port, 0x11223344, sctp_data_chunk(1, pattern(16))));
            // ICMP errors about translated flows, from the server and from a router.
            out(icmp_error_packet(kServer, pool, 3, 3, udp_packet(pool, port, kServer, 53, pattern(40))));
            out(icmp_error_packet(kNextHop, pool, 11, 0, tcp_packet(pool, port, kServer, 80, kAck), 28));
            out(icmp_error_packet(kNextHop, pool, 3, 4, udp_packet(pool, port, kServer, 9000, pattern(8)), 0, 1200));
            out(icmp_error_packet(kNextHop, pool, 3, 1, echo_packet(pool, kServer, false, port, 1, pattern(8))));
            for (const Bytes& f : fragments(kServer, pool, 17, udp_datagram(kServer, pool, 53, port, pattern(1800)),
                                            712, uint16_t(0x5000 + h)))
                out(f);
        }
        out(tcp_packet(ip(198, 51, 100, 77), 40000, pool, 60000, kSyn)); // unsolicited: held 6 s
        out(echo_packet(kServer, pool, false, 9, 1, pattern(56)));
        c.outside.push_back(arp(Mac{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, kNextHopMac, 1, kNextHop, pool));
    }
    out(echo_packet(kServer, kGatewayOutside, false, 9, 1, pattern(56)));
    out(udp_packet(kServer, 53, kPoolFirst + 1, 5000, pattern(30)));    // to the port forward
    out(tcp_packet(kServer, 40000, kPoolFirst + 1, 5000, kSyn));
    out(udp_packet(kExcluded, 53, ip(100, 64, 0, 10), 50010, pattern(20))); // routed in untranslated
    out(udp_packet(kServer, 53, ip(100, 64, 0, 10), 50010, pattern(20)));   // not for us
    c.outside.push_back(arp(Mac{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, kNextHopMac, 1, kNextHop, kGatewayOutside));
    c.outside.push_back(arp(kGatewayOutsideMac, kNextHopMac, 2, kNextHop, kGatewayOutside));
    return c;
}

// A mutant of `frame`: most changes land in the first 80 bytes, where the
// headers are.
Bytes mutate(Bytes frame, std::mt19937& rng)
{
    auto pick = [&](size_t n) { return size_t(std::uniform_int_distribution<size_t>(0, n - 1)(rng)); };
    auto header_offset = [&] { return pick(std::min<size_t>(frame.size(), rng() % 4 == 0 ? frame.size() : 80)); };
    switch (rng() % 6) {
    case 0: // cut short (never below an Ethernet header: the PMD would not deliver it)
        frame.resize(14 + pick(frame.size() - 13));
        break;
    case 1: // a few random bytes
        for (size_t k = 1 + pick(4); k > 0; --k) frame[header_offset()] = uint8_t(rng());
        break;
    case 2: // one bit
        frame[header_offset()] ^= uint8_t(1u << (rng() % 8));
        break;
    case 3: // a 16-bit field at its extremes
    {
        const size_t at = header_offset() & ~size_t(1);
        const uint8_t v = rng() % 2 ? 0xff : 0x00;
        frame[at] = v;
        if (at + 1 < frame.size()) frame[at + 1] = v;
        break;
    }
    case 4: // grown with trailing bytes
        for (size_t k = 1 + pick(64); k > 0; --k) frame.push_back(uint8_t(rng()));
        break;
    default: // cut and changed
        frame.resize(14 + pick(frame.size() - 13));
        frame[header_offset()] = uint8_t(rng());
        break;
    }
    return frame;
}

void write_pcap(const std::string& path, const std::vector<Bytes>& frames)
{
    std::ofstream f(path, std::ios::binary);
    auto put32 = [&](uint32_t v) { f.write(reinterpret_cast<const char*>(&v), 4); };
    auto put16 = [&](uint16_t v) { f.write(reinterpret_cast<const char*>(&v), 2); };
    put32(0xa1b2c3d4); // microsecond timestamps, this machine's byte order
    put16(2);
    put16(4);
    put32(0);
    put32(0);
    put32(65535);
    put32(1); // Ethernet
    uint32_t usec = 0;
    for (const Bytes& frame : frames) {
        put32(0);
        put32(usec++);
        put32(uint32_t(frame.size()));
        put32(uint32_t(frame.size()));
        f.write(reinterpret_cast<const char*>(frame.data()), long(frame.size()));
    }
    if (!f) {
        std::fprintf(stderr, "fuzz-frames: cannot write %s\n", path.c_str());
        std::exit(1);
    }
}

std::vector<Bytes> with_mutants(const std::vector<Bytes>& seeds, unsigned mutants, std::mt19937& rng)
{
    std::vector<Bytes> all;
    for (const Bytes& s : seeds) {
        all.push_back(s);
        for (unsigned k = 0; k < mutants; ++k) all.push_back(mutate(s, rng));
    }
    std::shuffle(all.begin(), all.end(), rng);
    return all;
}

} // namespace

int main(int argc, char** argv)
{
    if (argc != 5) {
        std::fprintf(stderr, "usage: fuzz-frames SEED MUTANTS INSIDE.pcap OUTSIDE.pcap\n");
        return 2;
    }
    std::mt19937 rng(uint32_t(std::strtoul(argv[1], nullptr, 10)));
    const unsigned mutants = unsigned(std::strtoul(argv[2], nullptr, 10));
    const Corpus c = seeds();
    const std::vector<Bytes> inside = with_mutants(c.inside, mutants, rng);
    const std::vector<Bytes> outside = with_mutants(c.outside, mutants, rng);
    write_pcap(argv[3], inside);
    write_pcap(argv[4], outside);
    std::printf("fuzz-frames: %zu inside frames (%zu well-formed), %zu outside frames (%zu well-formed)\n",
                inside.size(), c.inside.size(), outside.size(), c.outside.size());
    return 0;
}
