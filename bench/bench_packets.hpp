// Crafting the UDP/IPv4 packets the micro-benchmarks feed the translator, and
// the synthetic flow population they come from. Benchmark support only.
#pragma once

#include <cstdint>

#include <rte_byteorder.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_udp.h>

namespace ephbench {

inline constexpr uint16_t kPayload = 18; // Ethernet 14 + IPv4 20 + UDP 8 + 18 = 60 bytes (64 on the wire)
inline constexpr uint16_t kIpLen = sizeof(rte_ipv4_hdr) + sizeof(rte_udp_hdr) + kPayload;
inline constexpr uint16_t kFrameLen = sizeof(rte_ether_hdr) + kIpLen;

// Host-order constants.
inline constexpr uint32_t kSubscriberBase = 0x64400000u; // 100.64.0.0 (RFC 6598 shared space)
inline constexpr uint32_t kServerAddr = 0xcb007102u;     // 203.0.113.2
inline constexpr uint16_t kServerPort = 443;
inline constexpr uint16_t kFlowsPerSubscriber = 16;
inline constexpr uint16_t kFirstSubscriberPort = 10000;

// Flow number -> inside endpoint: 16 source ports per subscriber address.
inline uint32_t flow_addr_host(uint32_t flow) { return kSubscriberBase + flow / kFlowsPerSubscriber; }
inline uint16_t flow_port_host(uint32_t flow) { return uint16_t(kFirstSubscriberPort + flow % kFlowsPerSubscriber); }

inline const rte_ether_addr kInsideMac{{0x02, 0x00, 0x00, 0x00, 0x00, 0x01}};  // our inside port
inline const rte_ether_addr kOutsideMac{{0x02, 0x00, 0x00, 0x00, 0x00, 0x02}}; // our outside port
inline const rte_ether_addr kNextHopMac{{0x02, 0x00, 0x00, 0x00, 0x00, 0x03}}; // outside router
inline const rte_ether_addr kSubscriberMac{{0x02, 0x00, 0x00, 0x00, 0x00, 0x04}}; // inside L2 next hop

// Writes a complete Ethernet/IPv4/UDP frame into m (one segment, data at the
// default headroom) with valid IPv4 header and UDP checksums. Addresses and
// ports are in network order. The payload bytes are whatever m holds; the
// checksum covers them, so a packet written twice is the same packet.
inline void write_udp(rte_mbuf* m, const rte_ether_addr& eth_src, const rte_ether_addr& eth_dst, uint32_t src_net,
                      uint16_t sport_net, uint32_t dst_net, uint16_t dport_net)
{
    m->data_off = RTE_PKTMBUF_HEADROOM;
    m->data_len = kFrameLen;
    m->pkt_len = kFrameLen;
    m->nb_segs = 1;
    m->next = nullptr;
    m->ol_flags = 0;
    m->packet_type = 0;
    m->vlan_tci = 0;

    auto* eth = rte_pktmbuf_mtod(m, rte_ether_hdr*);
    eth->dst_addr = eth_dst;
    eth->src_addr = eth_src;
    eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);

    auto* ip = reinterpret_cast<rte_ipv4_hdr*>(eth + 1);
    ip->version_ihl = RTE_IPV4_VHL_DEF;
    ip->type_of_service = 0;
    ip->total_length = rte_cpu_to_be_16(kIpLen);
    ip->packet_id = 0;
    ip->fragment_offset = rte_cpu_to_be_16(RTE_IPV4_HDR_DF_FLAG);
    ip->time_to_live = 64;
    ip->next_proto_id = IPPROTO_UDP;
    ip->hdr_checksum = 0;
    ip->src_addr = src_net;
    ip->dst_addr = dst_net;

    auto* udp = reinterpret_cast<rte_udp_hdr*>(ip + 1);
    udp->src_port = sport_net;
    udp->dst_port = dport_net;
    udp->dgram_len = rte_cpu_to_be_16(uint16_t(sizeof(rte_udp_hdr) + kPayload));
    udp->dgram_cksum = 0;
    udp->dgram_cksum = rte_ipv4_udptcp_cksum(ip, udp);
    ip->hdr_checksum = rte_ipv4_cksum(ip);
}

// The subscriber's packet of `flow` towards the server, as it arrives inside.
inline void write_inside(rte_mbuf* m, uint32_t flow)
{
    write_udp(m, kSubscriberMac, kInsideMac, rte_cpu_to_be_32(flow_addr_host(flow)),
              rte_cpu_to_be_16(flow_port_host(flow)), rte_cpu_to_be_32(kServerAddr), rte_cpu_to_be_16(kServerPort));
}

// The server's reply to a mapping's external endpoint, as it arrives outside.
inline void write_reply(rte_mbuf* m, uint32_t ext_addr_net, uint16_t ext_port_net)
{
    write_udp(m, kNextHopMac, kOutsideMac, rte_cpu_to_be_32(kServerAddr), rte_cpu_to_be_16(kServerPort),
              ext_addr_net, ext_port_net);
}

inline const rte_ipv4_hdr* ipv4_of(const rte_mbuf* m)
{
    return rte_pktmbuf_mtod_offset(m, const rte_ipv4_hdr*, sizeof(rte_ether_hdr));
}
inline const rte_udp_hdr* udp_of(const rte_mbuf* m)
{
    return rte_pktmbuf_mtod_offset(m, const rte_udp_hdr*, sizeof(rte_ether_hdr) + sizeof(rte_ipv4_hdr));
}

} // namespace ephbench
