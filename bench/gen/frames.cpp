#include "frames.hpp"

namespace bench {

namespace {

void finish_tcp(rte_mbuf* m, uint16_t frame_len)
{
    auto* ip = rte_pktmbuf_mtod_offset(m, rte_ipv4_hdr*, sizeof(rte_ether_hdr));
    auto* tcp = reinterpret_cast<rte_tcp_hdr*>(ip + 1);
    tcp->cksum = 0;
    tcp->cksum = rte_ipv4_udptcp_cksum(ip, tcp);
    m->data_len = frame_len;
    m->pkt_len = frame_len;
}

// A 20-byte TCP header without options (ports as they go on the wire).
void fill_tcp(rte_tcp_hdr* tcp, uint16_t sport_be, uint16_t dport_be, uint8_t flags, uint32_t seq, uint32_t ack)
{
    tcp->src_port = sport_be;
    tcp->dst_port = dport_be;
    tcp->sent_seq = rte_cpu_to_be_32(seq);
    tcp->recv_ack = rte_cpu_to_be_32(ack);
    tcp->data_off = uint8_t((sizeof(rte_tcp_hdr) / 4) << 4);
    tcp->tcp_flags = flags;
    tcp->rx_win = rte_cpu_to_be_16(65535);
    tcp->tcp_urp = 0;
}

} // namespace

void write_tcp(rte_mbuf* m, uint16_t frame_len, const rte_ether_addr& dst_mac, const rte_ether_addr& src_mac,
               const FlowTuple& t, uint8_t flags, uint32_t seq, uint32_t ack, const Stamp* s)
{
    uint8_t* p = rte_pktmbuf_mtod(m, uint8_t*);
    if (s == nullptr) frame_len = kMinFrame;
    const uint16_t ip_len = s ? uint16_t(frame_len - sizeof(rte_ether_hdr)) : uint16_t(sizeof(rte_ipv4_hdr) + sizeof(rte_tcp_hdr));
    write_eth_ipv4(p, dst_mac, src_mac, IPPROTO_TCP, ip_len, t.src, t.dst);
    fill_tcp(reinterpret_cast<rte_tcp_hdr*>(p + kEthIpBytes), rte_cpu_to_be_16(t.sport), rte_cpu_to_be_16(t.dport),
             flags, seq, ack);
    if (s) write_stamp(p + kTcpHeadBytes, *s);
    else std::memset(p + kTcpHeadBytes, 0, kMinFrame - kTcpHeadBytes); // padding
    finish_tcp(m, frame_len);
}

void answer_tcp(rte_mbuf* m, uint8_t flags, uint32_t seq, uint32_t ack)
{
    auto* eth = rte_pktmbuf_mtod(m, rte_ether_hdr*);
    // The caller checked that the IP header has no options (IHL 5).
    const rte_ether_addr mac = eth->src_addr;
    eth->src_addr = eth->dst_addr;
    eth->dst_addr = mac;
    auto* ip = reinterpret_cast<rte_ipv4_hdr*>(eth + 1);
    const uint32_t addr = ip->src_addr;
    ip->src_addr = ip->dst_addr;
    ip->dst_addr = addr;
    ip->time_to_live = 64;
    ip->total_length = rte_cpu_to_be_16(uint16_t(sizeof(rte_ipv4_hdr) + sizeof(rte_tcp_hdr)));
    ip->hdr_checksum = 0;
    ip->hdr_checksum = rte_ipv4_cksum(ip);
    auto* tcp = reinterpret_cast<rte_tcp_hdr*>(ip + 1);
    fill_tcp(tcp, tcp->dst_port, tcp->src_port, flags, seq, ack);
    std::memset(reinterpret_cast<uint8_t*>(tcp + 1), 0, kMinFrame - kTcpHeadBytes);
    finish_tcp(m, kMinFrame);
}

void write_arp_request(rte_mbuf* m, const rte_ether_addr& mac, uint32_t addr, uint32_t target)
{
    auto* eth = rte_pktmbuf_mtod(m, rte_ether_hdr*);
    std::memset(&eth->dst_addr, 0xFF, RTE_ETHER_ADDR_LEN);
    rte_ether_addr_copy(&mac, &eth->src_addr);
    eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_ARP);
    auto* arp = reinterpret_cast<rte_arp_hdr*>(eth + 1);
    arp->arp_hardware = rte_cpu_to_be_16(RTE_ARP_HRD_ETHER);
    arp->arp_protocol = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
    arp->arp_hlen = RTE_ETHER_ADDR_LEN;
    arp->arp_plen = 4;
    arp->arp_opcode = rte_cpu_to_be_16(RTE_ARP_OP_REQUEST);
    rte_ether_addr_copy(&mac, &arp->arp_data.arp_sha);
    arp->arp_data.arp_sip = rte_cpu_to_be_32(addr);
    std::memset(&arp->arp_data.arp_tha, 0, RTE_ETHER_ADDR_LEN);
    arp->arp_data.arp_tip = rte_cpu_to_be_32(target);
    const uint16_t len = kMinFrame;
    std::memset(reinterpret_cast<uint8_t*>(arp + 1), 0, len - sizeof(rte_ether_hdr) - sizeof(rte_arp_hdr));
    m->data_len = len;
    m->pkt_len = len;
}

void answer_arp(rte_mbuf* m, const rte_ether_addr& mac)
{
    auto* eth = rte_pktmbuf_mtod(m, rte_ether_hdr*);
    auto* arp = reinterpret_cast<rte_arp_hdr*>(eth + 1);
    rte_ether_addr_copy(&eth->src_addr, &eth->dst_addr);
    rte_ether_addr_copy(&mac, &eth->src_addr);
    arp->arp_opcode = rte_cpu_to_be_16(RTE_ARP_OP_REPLY);
    arp->arp_data.arp_tha = arp->arp_data.arp_sha;
    const uint32_t sip = arp->arp_data.arp_sip;
    arp->arp_data.arp_sip = arp->arp_data.arp_tip;
    arp->arp_data.arp_tip = sip;
    rte_ether_addr_copy(&mac, &arp->arp_data.arp_sha);
}

} // namespace bench
