// TCP MSS clamping: a SYN or SYN-ACK whose MSS option announces more than the
// links through the gateway carry gets the smaller value (RFC 879/6691: MSS =
// MTU - 40), so that hosts behind a smaller MTU need no path MTU discovery,
// which networks that filter ICMP break. The TCP checksum is updated
// incrementally (RFC 1624), also when the option sits at an odd offset.
#pragma once

#include <cstdint>
#include <cstring>

#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_tcp.h>

#include "checksum.hpp"

namespace ephemera::mss {

// The 16-bit word of the TCP header (counted from its start) at even offset `at`.
inline uint16_t word_at(const uint8_t* tcp, unsigned at)
{
    uint16_t w;
    std::memcpy(&w, tcp + at, 2);
    return w;
}

// True when m's MSS was lowered to max_mss. m's IPv4 header is at l3.
inline bool clamp(rte_mbuf* m, uint16_t l3, uint16_t max_mss)
{
    auto* data = rte_pktmbuf_mtod(m, uint8_t*);
    const auto* ip = reinterpret_cast<const rte_ipv4_hdr*>(data + l3);
    if (ip->next_proto_id != IPPROTO_TCP || (ip->fragment_offset & rte_cpu_to_be_16(RTE_IPV4_HDR_OFFSET_MASK)))
        return false;
    const unsigned l4 = l3 + (ip->version_ihl & 0x0f) * 4u;
    if (l4 + sizeof(rte_tcp_hdr) > m->data_len) return false;
    auto* th = reinterpret_cast<rte_tcp_hdr*>(data + l4);
    if (!(th->tcp_flags & RTE_TCP_SYN_FLAG)) return false;
    const unsigned hlen = (th->data_off >> 4) * 4u;
    if (hlen < sizeof(rte_tcp_hdr) || l4 + hlen > m->data_len) return false;
    uint8_t* tcp = data + l4;
    for (unsigned i = sizeof(rte_tcp_hdr); i < hlen;) {
        const uint8_t kind = tcp[i];
        if (kind == 0) break;                    // end of options
        if (kind == 1) { ++i; continue; }        // no-op
        if (i + 1 >= hlen || tcp[i + 1] < 2 || i + tcp[i + 1] > hlen) break; // malformed: leave it
        if (kind == 2 && tcp[i + 1] == 4) {
            const unsigned at = i + 2;           // the MSS value, 2 bytes
            const uint16_t mss = uint16_t(tcp[at] << 8 | tcp[at + 1]);
            if (mss <= max_mss) return false;
            const unsigned first = at & ~1u, words = (at & 1) ? 2 : 1; // the aligned words it touches
            uint16_t before[2] = {word_at(tcp, first), words == 2 ? word_at(tcp, first + 2) : uint16_t(0)};
            tcp[at] = uint8_t(max_mss >> 8);
            tcp[at + 1] = uint8_t(max_mss);
            uint16_t delta = csum::delta16(before[0], word_at(tcp, first));
            if (words == 2) delta = csum::add(delta, csum::delta16(before[1], word_at(tcp, first + 2)));
            th->cksum = csum::apply(th->cksum, delta);
            return true;
        }
        i += tcp[i + 1];
    }
    return false;
}

} // namespace ephemera::mss
