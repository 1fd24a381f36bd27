// Which worker owns a packet, decided in software from the headers: inside
// packets by subscriber (so EIM, paired pooling and quotas stay worker-local),
// outside packets by the owner of their external port. Reads only; a packet
// too short to say goes to the receiving worker, whose translator counts it.
#pragma once

#include <cstdint>

#include <rte_byteorder.h>
#include <rte_ether.h>
#include <rte_hash_crc.h>
#include <rte_ip.h>
#include <rte_mbuf.h>

#include "ephemera/flow_key.hpp"

namespace ephemera::steer {

// Where the IPv4 header starts, or 0 for anything that is not IPv4.
inline uint16_t ipv4_offset(const rte_mbuf* m)
{
    const auto* eth = rte_pktmbuf_mtod(m, const rte_ether_hdr*);
    if (m->data_len < sizeof(rte_ether_hdr) + sizeof(rte_ipv4_hdr)) return 0;
    if (eth->ether_type == rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4)) return sizeof(rte_ether_hdr);
    if (eth->ether_type == rte_cpu_to_be_16(RTE_ETHER_TYPE_VLAN) &&
        m->data_len >= sizeof(rte_ether_hdr) + sizeof(rte_vlan_hdr) + sizeof(rte_ipv4_hdr) &&
        reinterpret_cast<const rte_vlan_hdr*>(eth + 1)->eth_proto == rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4))
        return sizeof(rte_ether_hdr) + sizeof(rte_vlan_hdr);
    return 0;
}

inline unsigned subscriber_owner(uint32_t subscriber_net, unsigned workers)
{
    return rte_hash_crc_4byte(subscriber_net, 0x73746565) % workers;
}

// The header an ICMP error quotes, if the error is long enough to hold it.
inline const rte_ipv4_hdr* quoted_ipv4(const uint8_t* l4, const uint8_t* end)
{
    const uint8_t* q = l4 + 8;
    if (q + sizeof(rte_ipv4_hdr) > end) return nullptr;
    const auto* ip = reinterpret_cast<const rte_ipv4_hdr*>(q);
    if (q + (ip->version_ihl & 0x0f) * 4u + 8 > end) return nullptr;
    return ip;
}

inline bool is_icmp_error_type(uint8_t t) { return t == 3 || t == 11 || t == 12; }

// The header of the packet an ICMP error quotes; null when the packet at l3
// is no ICMP error or too short to quote one.
inline const rte_ipv4_hdr* quoted_by_error(const uint8_t* data, uint16_t l3, uint32_t len)
{
    const auto* ip = reinterpret_cast<const rte_ipv4_hdr*>(data + l3);
    const uint8_t* l4 = data + l3 + (ip->version_ihl & 0x0f) * 4u;
    const uint8_t* end = data + len;
    if (ip->next_proto_id != kIpProtoIcmp || l4 + 8 > end || !is_icmp_error_type(l4[0])) return nullptr;
    return quoted_ipv4(l4, end);
}

// Inside: the subscriber a packet belongs to. ICMP errors belong to the host
// the quoted packet was sent to, whoever inside reports it.
inline uint32_t subscriber_of(const uint8_t* data, uint16_t l3, uint32_t len)
{
    if (const rte_ipv4_hdr* q = quoted_by_error(data, l3, len)) return q->dst_addr;
    return reinterpret_cast<const rte_ipv4_hdr*>(data + l3)->src_addr;
}

// Outside: the external port (host order) a packet is addressed to, or -1.
// ICMP queries use the identifier; ICMP errors the source port they quote
// (and set *quoted, when given).
inline int external_port_of(const uint8_t* data, uint16_t l3, uint32_t len, bool* quoted = nullptr)
{
    const auto* ip = reinterpret_cast<const rte_ipv4_hdr*>(data + l3);
    const uint8_t* l4 = data + l3 + (ip->version_ihl & 0x0f) * 4u;
    const uint8_t* end = data + len;
    if (l4 + 8 > end) return -1;
    auto be16 = [](const uint8_t* p) { return int(p[0]) << 8 | p[1]; };
    switch (ip->next_proto_id) {
    case kIpProtoTcp:
    case kIpProtoUdp:
    case kIpProtoSctp: return be16(l4 + 2);
    case kIpProtoIcmp:
        if (!is_icmp_error_type(l4[0])) return be16(l4 + 4);
        if (quoted) *quoted = true;
        if (const rte_ipv4_hdr* q = quoted_ipv4(l4, end)) {
            const uint8_t* ql4 = reinterpret_cast<const uint8_t*>(q) + (q->version_ihl & 0x0f) * 4u;
            return q->next_proto_id == kIpProtoIcmp ? be16(ql4 + 4) : be16(ql4);
        }
        return -1;
    default: return -1;
    }
}

} // namespace ephemera::steer
