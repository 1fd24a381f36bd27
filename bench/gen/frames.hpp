// Frames ephemera-bench writes and reads: UDP and TCP packets carrying a
// stamp (flow, sequence, TSC) in their payload, TCP handshake segments, ARP.
// Writers fill an mbuf's first bytes in place: no allocation, no templates
// per flow (the payload beyond the stamp is left as the mbuf had it).
#pragma once

#include <cstdint>
#include <cstring>

#include <rte_arp.h>
#include <rte_byteorder.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_tcp.h>
#include <rte_udp.h>

#include "flow_space.hpp"

namespace bench {

// In the payload right after the L4 header: 18 bytes, so that it fits a
// 64-byte UDP frame (60 bytes without the FCS: 14 + 20 + 8 + 18).
struct Stamp {
    uint16_t magic; // kMagic | trial id: packets of an earlier trial are not counted
    uint32_t flow;
    uint32_t seq;
    uint64_t tsc;
};
constexpr uint16_t kStampBytes = 18;
constexpr uint16_t kMagic = 0xEB00;
constexpr uint16_t kEthIpBytes = sizeof(rte_ether_hdr) + sizeof(rte_ipv4_hdr);
constexpr uint16_t kUdpHeadBytes = kEthIpBytes + sizeof(rte_udp_hdr);
constexpr uint16_t kTcpHeadBytes = kEthIpBytes + sizeof(rte_tcp_hdr);
constexpr uint16_t kMinFrame = 60; // Ethernet minimum without the FCS
// A TCP data segment with its stamp, FCS included: 14 + 20 + 20 + 18 + 4.
constexpr uint16_t kMinTcpDataSize = kTcpHeadBytes + kStampBytes + 4;

inline void write_stamp(uint8_t* p, const Stamp& s)
{
    std::memcpy(p, &s.magic, 2);
    std::memcpy(p + 2, &s.flow, 4);
    std::memcpy(p + 6, &s.seq, 4);
    std::memcpy(p + 10, &s.tsc, 8);
}

inline Stamp read_stamp(const uint8_t* p)
{
    Stamp s;
    std::memcpy(&s.magic, p, 2);
    std::memcpy(&s.flow, p + 2, 4);
    std::memcpy(&s.seq, p + 6, 4);
    std::memcpy(&s.tsc, p + 10, 8);
    return s;
}

// Ethernet + IPv4 headers of one frame; the checksum is computed here.
inline void write_eth_ipv4(uint8_t* p, const rte_ether_addr& dst_mac, const rte_ether_addr& src_mac, uint8_t proto,
                           uint16_t ip_len, uint32_t src, uint32_t dst)
{
    auto* eth = reinterpret_cast<rte_ether_hdr*>(p);
    rte_ether_addr_copy(&dst_mac, &eth->dst_addr);
    rte_ether_addr_copy(&src_mac, &eth->src_addr);
    eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
    auto* ip = reinterpret_cast<rte_ipv4_hdr*>(eth + 1);
    ip->version_ihl = RTE_IPV4_VHL_DEF;
    ip->type_of_service = 0;
    ip->total_length = rte_cpu_to_be_16(ip_len);
    ip->packet_id = 0;
    ip->fragment_offset = 0;
    ip->time_to_live = 64;
    ip->next_proto_id = proto;
    ip->hdr_checksum = 0;
    ip->src_addr = rte_cpu_to_be_32(src);
    ip->dst_addr = rte_cpu_to_be_32(dst);
    ip->hdr_checksum = rte_ipv4_cksum(ip);
}

// A UDP datagram with a stamp; the UDP checksum is 0 (none, legal in IPv4),
// so the payload need not be summed per packet.
inline void write_udp(rte_mbuf* m, uint16_t frame_len, const rte_ether_addr& dst_mac, const rte_ether_addr& src_mac,
                      const FlowTuple& t, const Stamp& s)
{
    uint8_t* p = rte_pktmbuf_mtod(m, uint8_t*);
    const uint16_t ip_len = uint16_t(frame_len - sizeof(rte_ether_hdr));
    write_eth_ipv4(p, dst_mac, src_mac, IPPROTO_UDP, ip_len, t.src, t.dst);
    auto* udp = reinterpret_cast<rte_udp_hdr*>(p + kEthIpBytes);
    udp->src_port = rte_cpu_to_be_16(t.sport);
    udp->dst_port = rte_cpu_to_be_16(t.dport);
    udp->dgram_len = rte_cpu_to_be_16(uint16_t(ip_len - sizeof(rte_ipv4_hdr)));
    udp->dgram_cksum = 0;
    write_stamp(p + kUdpHeadBytes, s);
    m->data_len = frame_len;
    m->pkt_len = frame_len;
}

// A TCP segment: flags, seq, ack; a stamp when `s` is given (data), else no
// payload (handshake, padded to the Ethernet minimum). Checksum computed.
void write_tcp(rte_mbuf* m, uint16_t frame_len, const rte_ether_addr& dst_mac, const rte_ether_addr& src_mac,
               const FlowTuple& t, uint8_t flags, uint32_t seq, uint32_t ack, const Stamp* s);

// Turns a TCP segment received into the answer in place (addresses, ports and
// MACs swapped), with new flags, seq and ack, no payload; checksum computed.
void answer_tcp(rte_mbuf* m, uint8_t flags, uint32_t seq, uint32_t ack);

// ARP who-has `target` from (mac, addr), broadcast.
void write_arp_request(rte_mbuf* m, const rte_ether_addr& mac, uint32_t addr, uint32_t target);

// Turns an ARP request into the reply from `mac` in place.
void answer_arp(rte_mbuf* m, const rte_ether_addr& mac);

} // namespace bench
