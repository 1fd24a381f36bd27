// Parsing and validation of one frame for translation: Ethernet with an
// optional 802.1Q tag, IPv4 (options allowed and checked), then the L4 header
// that carries the "port". Anything that does not pass says why, as a Drop.
#pragma once

#include <rte_ether.h>
#include <rte_icmp.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_sctp.h>
#include <rte_tcp.h>
#include <rte_udp.h>

#include "checksum.hpp"
#include "ephemera/translator.hpp"

namespace ephemera {

struct Translator::Parsed {
    uint32_t src, dst;     // IPv4 addresses, network order
    uint16_t sport, dport; // network order; ICMP queries: the identifier in both
    uint16_t l3;           // offset of the IPv4 header
    uint16_t l4;           // offset of the L4 header
    uint16_t ip_len;       // IPv4 total length
    L4 space;
    uint8_t tcp_flags;
    uint8_t icmp_type;
    bool icmp_error;       // ICMP 3/11/12: translated by its embedded header
};

namespace parse {

inline constexpr uint16_t kFragMask = RTE_IPV4_HDR_MF_FLAG | RTE_IPV4_HDR_OFFSET_MASK;

inline bool is_icmp_error(uint8_t type)
{
    return type == 3 /* destination unreachable */ || type == 11 /* time exceeded */ ||
           type == 12 /* parameter problem */;
}
inline bool is_icmp_query(uint8_t type) { return type == RTE_IP_ICMP_ECHO_REQUEST || type == RTE_IP_ICMP_ECHO_REPLY; }

// For RTE_MBUF_F_RX_IP_CKSUM_NONE: the NIC vouched for the header but says
// the field in the data is not its sum (left to a checksum offload upstream).
// The real one goes in, or every incremental update after this would start
// from a wrong value; the only write the parser makes. Out of line: rare.
[[gnu::cold, gnu::noinline]] inline void refill_ipv4_checksum(rte_ipv4_hdr* ip)
{
    ip->hdr_checksum = 0;
    ip->hdr_checksum = rte_ipv4_cksum(ip);
}

// IPv4 options are TLVs after the fixed header: one that runs past it is
// malformed. Source routing (LSRR 131, SSRR 137) would let a sender choose
// the path past the NAT: dropped, as RFC 7126 §4.3-4.4 advise by default
// (and Linux's accept_source_route = 0 does). Other options pass unchanged.
enum class IpOptions : uint8_t { Ok, Malformed, SourceRoute };

inline IpOptions check_ip_options(const uint8_t* opt, unsigned len)
{
    unsigned i = 0;
    while (i < len) {
        const uint8_t type = opt[i];
        if (type == 0) return IpOptions::Ok; // end of option list
        if (type == 1) { ++i; continue; } // no-operation
        if (i + 1 >= len) return IpOptions::Malformed;
        const uint8_t olen = opt[i + 1];
        if (olen < 2 || i + olen > len) return IpOptions::Malformed;
        if (type == 131 || type == 137) return IpOptions::SourceRoute;
        i += olen;
    }
    return IpOptions::Ok;
}

// Fills p from m. On failure returns false with `why` set; m is untouched.
__attribute__((always_inline)) inline bool frame(const rte_mbuf* m, Translator::Parsed& p, Drop& why)
{
    // Headers are read from the first segment (len); a datagram the gateway
    // reassembled continues in further segments (pkt_len).
    const uint8_t* data = rte_pktmbuf_mtod(m, const uint8_t*);
    const uint32_t len = m->data_len;
    const bool chained = m->nb_segs != 1;

    if (len < sizeof(rte_ether_hdr)) { why = Drop::Malformed; return false; }
    uint16_t type = reinterpret_cast<const rte_ether_hdr*>(data)->ether_type;
    uint16_t l3 = sizeof(rte_ether_hdr);
    if (type == rte_cpu_to_be_16(RTE_ETHER_TYPE_VLAN)) {
        if (len < l3 + sizeof(rte_vlan_hdr)) { why = Drop::Malformed; return false; }
        type = reinterpret_cast<const rte_vlan_hdr*>(data + l3)->eth_proto;
        l3 += sizeof(rte_vlan_hdr);
    }
    if (type != rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4)) { why = Drop::Unsupported; return false; }

    if (len < l3 + sizeof(rte_ipv4_hdr)) { why = Drop::Malformed; return false; }
    const auto* ip = reinterpret_cast<const rte_ipv4_hdr*>(data + l3);
    const unsigned ihl = (ip->version_ihl & 0x0f) * 4u;
    if ((ip->version_ihl >> 4) != 4 || ihl < sizeof(rte_ipv4_hdr) || l3 + ihl > len) {
        why = Drop::Malformed;
        return false;
    }
    const uint16_t ip_len = rte_be_to_cpu_16(ip->total_length);
    if (ip_len < ihl || l3 + uint32_t(ip_len) > m->pkt_len) { why = Drop::Malformed; return false; }
    // The NIC's verdict where it gave one: GOOD; BAD; NONE (the header is
    // sound, its checksum field was never filled in). UNKNOWN: software sums.
    const uint64_t cksum_flags = m->ol_flags & RTE_MBUF_F_RX_IP_CKSUM_MASK;
    bool header_ok;
    if (cksum_flags == RTE_MBUF_F_RX_IP_CKSUM_UNKNOWN) {
        header_ok = csum::verify_ipv4_header(ip, ihl);
    } else {
        header_ok = cksum_flags != RTE_MBUF_F_RX_IP_CKSUM_BAD;
        if (cksum_flags == RTE_MBUF_F_RX_IP_CKSUM_NONE) [[unlikely]]
            refill_ipv4_checksum(const_cast<rte_ipv4_hdr*>(ip));
    }
    if (!header_ok) {
        why = Drop::BadChecksum;
        return false;
    }
    if (ihl > sizeof(rte_ipv4_hdr)) [[unlikely]] {
        const IpOptions o = check_ip_options(reinterpret_cast<const uint8_t*>(ip + 1), ihl - unsigned(sizeof(rte_ipv4_hdr)));
        if (o != IpOptions::Ok) {
            why = o == IpOptions::Malformed ? Drop::Malformed : Drop::Unsupported;
            return false;
        }
    }
    if (ip->fragment_offset & rte_cpu_to_be_16(kFragMask)) { why = Drop::Fragment; return false; }
    if (!l4_from_ip_proto(ip->next_proto_id, p.space)) { why = Drop::Unsupported; return false; }

    const uint16_t l4 = uint16_t(l3 + ihl);
    const unsigned l4_len = ip_len - ihl;
    const uint8_t* h = data + l4;
    // In segments: the L4 header must be whole in the first one, and only
    // header rewrites with incremental checksums are done on such datagrams
    // (SCTP's CRC32c and ICMP errors' quotes would need the payload).
    if (chained) [[unlikely]] {
        unsigned need = 8; // UDP, ICMP; TCP: its whole header, options included
        if (p.space == L4::Tcp) need = l4 + 20u <= len ? (h[12] >> 4) * 4u : 20u;
        if (l4 + need > len || p.space == L4::Sctp || (p.space == L4::Icmp && is_icmp_error(h[0]))) {
            why = Drop::Unsupported;
            return false;
        }
    }
    p.tcp_flags = 0;
    p.icmp_type = 0;
    p.icmp_error = false;
    switch (p.space) {
    case L4::Tcp: {
        const auto* th = reinterpret_cast<const rte_tcp_hdr*>(h);
        if (l4_len < sizeof(rte_tcp_hdr) || (th->data_off >> 4) < 5 || (th->data_off >> 4) * 4u > l4_len) {
            why = Drop::Malformed;
            return false;
        }
        p.sport = th->src_port;
        p.dport = th->dst_port;
        p.tcp_flags = th->tcp_flags;
        break;
    }
    case L4::Udp: {
        const auto* uh = reinterpret_cast<const rte_udp_hdr*>(h);
        if (l4_len < sizeof(rte_udp_hdr)) { why = Drop::Malformed; return false; }
        const uint16_t ulen = rte_be_to_cpu_16(uh->dgram_len);
        if (ulen < sizeof(rte_udp_hdr) || ulen > l4_len) { why = Drop::Malformed; return false; }
        p.sport = uh->src_port;
        p.dport = uh->dst_port;
        break;
    }
    case L4::Sctp: {
        if (l4_len < sizeof(rte_sctp_hdr)) { why = Drop::Malformed; return false; }
        const auto* sh = reinterpret_cast<const rte_sctp_hdr*>(h);
        p.sport = sh->src_port;
        p.dport = sh->dst_port;
        break;
    }
    case L4::Icmp: {
        if (l4_len < sizeof(rte_icmp_hdr)) { why = Drop::Malformed; return false; }
        const auto* ic = reinterpret_cast<const rte_icmp_hdr*>(h);
        p.icmp_type = ic->icmp_type;
        if (is_icmp_query(ic->icmp_type)) {
            p.sport = p.dport = ic->icmp_ident;
        } else if (is_icmp_error(ic->icmp_type)) {
            p.icmp_error = true;
            p.sport = p.dport = 0;
        } else {
            why = Drop::Unsupported;
            return false;
        }
        break;
    }
    }
    if (ip->time_to_live <= 1) { why = Drop::Ttl; return false; }

    p.src = ip->src_addr;
    p.dst = ip->dst_addr;
    p.l3 = l3;
    p.l4 = l4;
    p.ip_len = ip_len;
    return true;
}

} // namespace parse
} // namespace ephemera
