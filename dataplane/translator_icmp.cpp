// ICMP error translation (RFC 5508 REQ-3/4/5, RFC 5382 REQ-9): an error
// refers to a translated flow through the IP header and first L4 bytes it
// embeds. Those are translated back (or forth), and every checksum involved
// stays valid. Errors are rare, so this path verifies and recomputes in full.
#include <cstring>

#include "checksum.hpp"
#include "packet_parse.hpp"

namespace ephemera {

namespace {

// The packet an ICMP error quotes, located and validated.
struct Embedded {
    rte_icmp_hdr* icmp;  // the outer ICMP header
    unsigned icmp_len;   // ICMP header + data, as far as the outer IP says
    rte_ipv4_hdr* ip;    // the quoted IP header
    uint8_t* l4;         // its first L4 bytes (at least 8)
    unsigned l4_avail;   // how many L4 bytes the error carries
    L4 space;
};

bool locate(uint8_t* data, const Translator::Parsed& p, Embedded& e, Drop& why)
{
    e.icmp = reinterpret_cast<rte_icmp_hdr*>(data + p.l4);
    e.icmp_len = p.ip_len - unsigned(p.l4 - p.l3);
    // RFC 5508 REQ-3: a bad ICMP checksum is not worth translating.
    if (!csum::verify(e.icmp, e.icmp_len)) { why = Drop::BadChecksum; return false; }
    const unsigned quoted = e.icmp_len - unsigned(sizeof(rte_icmp_hdr));
    if (quoted < sizeof(rte_ipv4_hdr)) { why = Drop::Malformed; return false; }
    e.ip = reinterpret_cast<rte_ipv4_hdr*>(reinterpret_cast<uint8_t*>(e.icmp) + sizeof(rte_icmp_hdr));
    const unsigned ihl = (e.ip->version_ihl & 0x0f) * 4u;
    // REQ-3b: quoted options are skipped by honouring the quoted IHL.
    if ((e.ip->version_ihl >> 4) != 4 || ihl < sizeof(rte_ipv4_hdr) || quoted < ihl + 8) {
        why = Drop::Malformed;
        return false;
    }
    if (!csum::verify(e.ip, ihl)) { why = Drop::BadChecksum; return false; } // REQ-3a
    if (e.ip->fragment_offset & rte_cpu_to_be_16(RTE_IPV4_HDR_OFFSET_MASK)) {
        why = Drop::Unsupported; // a later fragment quotes no ports
        return false;
    }
    if (!l4_from_ip_proto(e.ip->next_proto_id, e.space)) { why = Drop::Unsupported; return false; }
    e.l4 = reinterpret_cast<uint8_t*>(e.ip) + ihl;
    e.l4_avail = quoted - ihl;
    if (e.space == L4::Icmp && !parse::is_icmp_query(reinterpret_cast<rte_icmp_hdr*>(e.l4)->icmp_type)) {
        why = Drop::Unsupported; // an error about an error is never sent
        return false;
    }
    return true;
}

// The quoted L4 header's port on one side: which = 0 source, 1 destination.
// TCP, UDP and SCTP start with the two ports; ICMP queries carry their
// identifier at offset 4 in the place of both.
uint8_t* quoted_port_at(const Embedded& e, int which)
{
    return e.l4 + (e.space == L4::Icmp ? offsetof(rte_icmp_hdr, icmp_ident) : 2u * unsigned(which));
}
uint16_t quoted_port(const Embedded& e, int which)
{
    uint16_t v;
    std::memcpy(&v, quoted_port_at(e, which), 2);
    return v;
}
void set_quoted_port(const Embedded& e, int which, uint16_t v) { std::memcpy(quoted_port_at(e, which), &v, 2); }

// Adjusts the quoted L4 checksum for a change of `l4_delta` (addresses and
// port) or `port_delta` (ICMP identifier), when the field was quoted.
void fix_quoted_l4(const Embedded& e, uint16_t l4_delta, uint16_t port_delta)
{
    switch (e.space) {
    case L4::Tcp:
        if (e.l4_avail >= offsetof(rte_tcp_hdr, cksum) + 2) {
            auto* th = reinterpret_cast<rte_tcp_hdr*>(e.l4);
            th->cksum = csum::apply(th->cksum, l4_delta);
        }
        break;
    case L4::Udp: {
        auto* uh = reinterpret_cast<rte_udp_hdr*>(e.l4);
        uh->dgram_cksum = csum::apply_udp(uh->dgram_cksum, l4_delta);
        break;
    }
    case L4::Icmp: {
        auto* ic = reinterpret_cast<rte_icmp_hdr*>(e.l4);
        ic->icmp_cksum = csum::apply(ic->icmp_cksum, port_delta);
        break;
    }
    case L4::Sctp:
        break; // CRC32c over a truncated quote cannot be recomputed; ports suffice
    }
}

void finish_icmp(Embedded& e)
{
    e.icmp->icmp_cksum = 0;
    e.icmp->icmp_cksum = csum::compute(e.icmp, e.icmp_len);
}

} // namespace

// From outside: the error quotes a packet we sent, X':x' -> Y:y.
bool Translator::inbound_icmp_error(rte_mbuf* m, const Parsed& p, Tick now, Drop& why)
{
    uint8_t* data = rte_pktmbuf_mtod(m, uint8_t*);
    Embedded e;
    if (!locate(data, p, e, why)) return false;

    const uint16_t ext_port = rte_be_to_cpu_16(quoted_port(e, 0));
    const int pool_index = pool_.index_of(e.ip->src_addr);
    if (pool_index < 0) { why = Drop::NoMapping; return false; }
    if (layout_.in_range(ext_port) && layout_.owner_of(ext_port) != worker_) { why = Drop::WrongWorker; return false; }
    const uint32_t index = mapping_at(e.ip->src_addr, ext_port, e.space); // static mappings too
    if (index == kNoMapping) { why = Drop::NoMapping; return false; }
    const Mapping& map = table_.mapping(index);
    if (map.is_static && rte_is_zero_ether_addr(reinterpret_cast<const rte_ether_addr*>(map.inside_mac))) {
        why = Drop::NoNeighbor; // its host never answered ARP nor sent anything
        return false;
    }
    // REQ-6: the error neither refreshes nor ends the mapping; an expired one is gone.
    if (now >= map.expires || p.dst != map.ext_addr) { why = Drop::NoMapping; return false; }

    // The quoted packet: X':x' becomes X:x again.
    e.ip->src_addr = map.in_addr;
    e.ip->hdr_checksum = csum::apply(e.ip->hdr_checksum, csum::negate(map.ip_delta));
    set_quoted_port(e, 0, map.in_port);
    fix_quoted_l4(e, csum::negate(map.l4_delta), csum::negate(map.port_delta));
    finish_icmp(e);

    // The outer header goes to X (REQ-4: destination = quoted source, translated).
    auto* ip = reinterpret_cast<rte_ipv4_hdr*>(data + p.l3);
    ip->dst_addr = map.in_addr;
    ip->time_to_live -= 1;
    ip->hdr_checksum = csum::apply(ip->hdr_checksum, csum::add(csum::negate(map.ip_delta), csum::kTtlDecrement));

    auto* eth = reinterpret_cast<rte_ether_hdr*>(data);
    std::memcpy(eth->dst_addr.addr_bytes, map.inside_mac, RTE_ETHER_ADDR_LEN);
    eth->src_addr = in_src_;
    return true;
}

// From inside: X (or a router inside) reports on a packet it received, Y:y -> X:x.
bool Translator::outbound_icmp_error(rte_mbuf* m, const Parsed& p, Tick now, Drop& why)
{
    uint8_t* data = rte_pktmbuf_mtod(m, uint8_t*);
    Embedded e;
    if (!locate(data, p, e, why)) return false;

    const int32_t found = table_.lookup(MappingKey{e.ip->dst_addr, quoted_port(e, 1), uint8_t(e.space)});
    if (found < 0 || now >= table_.mapping(uint32_t(found)).expires) { why = Drop::NoMapping; return false; }
    const Mapping& map = table_.mapping(uint32_t(found));

    e.ip->dst_addr = map.ext_addr;
    e.ip->hdr_checksum = csum::apply(e.ip->hdr_checksum, map.ip_delta);
    set_quoted_port(e, 1, map.ext_port);
    fix_quoted_l4(e, map.l4_delta, map.port_delta);
    finish_icmp(e);

    // REQ-5c: the error leaves from the public address, whoever inside sent it.
    auto* ip = reinterpret_cast<rte_ipv4_hdr*>(data + p.l3);
    const uint16_t src_delta = csum::delta32(ip->src_addr, map.ext_addr);
    ip->src_addr = map.ext_addr;
    ip->time_to_live -= 1;
    ip->hdr_checksum = csum::apply(ip->hdr_checksum, csum::add(src_delta, csum::kTtlDecrement));

    auto* eth = reinterpret_cast<rte_ether_hdr*>(data);
    eth->dst_addr = out_dst_;
    eth->src_addr = out_src_;
    return true;
}

} // namespace ephemera
