#include "router.hpp"

#include <algorithm>
#include <cstring>

#include <rte_arp.h>
#include <rte_icmp.h>
#include <rte_ip.h>

#include "checksum.hpp"
#include "ephemera/pool.hpp"
#include "neighbor.hpp"

namespace ephemera::router {

bool arp_input(rte_mbuf* m, uint32_t own_net, const Pool* pool, const rte_ether_addr& own_mac, Neighbor* learn,
               uint64_t tsc)
{
    auto* eth = rte_pktmbuf_mtod(m, rte_ether_hdr*);
    if (m->data_len < sizeof(rte_ether_hdr) + sizeof(rte_arp_hdr)) return false;
    auto* arp = reinterpret_cast<rte_arp_hdr*>(eth + 1);
    if (arp->arp_hardware != rte_cpu_to_be_16(RTE_ARP_HRD_ETHER) ||
        arp->arp_protocol != rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4) || arp->arp_hlen != 6 || arp->arp_plen != 4)
        return false;
    rte_arp_ipv4& a = arp->arp_data;
    if (learn != nullptr && a.arp_sip == learn->addr() && rte_is_unicast_ether_addr(&a.arp_sha))
        learn->set(a.arp_sha, tsc);
    if (arp->arp_opcode != rte_cpu_to_be_16(RTE_ARP_OP_REQUEST)) return false;
    const bool ours = a.arp_tip == own_net || (pool != nullptr && pool->index_of(a.arp_tip) != Pool::kNotInPool);
    if (!ours) return false;

    arp->arp_opcode = rte_cpu_to_be_16(RTE_ARP_OP_REPLY);
    a.arp_tha = a.arp_sha;
    const uint32_t asked = a.arp_tip;
    a.arp_tip = a.arp_sip;
    a.arp_sip = asked;
    a.arp_sha = own_mac;
    eth->dst_addr = a.arp_tha;
    eth->src_addr = own_mac;
    return true;
}

rte_mbuf* arp_request(rte_mempool* mp, const rte_ether_addr& mac, uint32_t addr_net, uint32_t target_net)
{
    rte_mbuf* m = rte_pktmbuf_alloc(mp);
    if (m == nullptr) return nullptr;
    const uint16_t len = sizeof(rte_ether_hdr) + sizeof(rte_arp_hdr);
    auto* eth = reinterpret_cast<rte_ether_hdr*>(rte_pktmbuf_append(m, len));
    std::memset(eth->dst_addr.addr_bytes, 0xff, RTE_ETHER_ADDR_LEN);
    eth->src_addr = mac;
    eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_ARP);
    auto* arp = reinterpret_cast<rte_arp_hdr*>(eth + 1);
    arp->arp_hardware = rte_cpu_to_be_16(RTE_ARP_HRD_ETHER);
    arp->arp_protocol = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
    arp->arp_hlen = 6;
    arp->arp_plen = 4;
    arp->arp_opcode = rte_cpu_to_be_16(RTE_ARP_OP_REQUEST);
    arp->arp_data.arp_sha = mac;
    arp->arp_data.arp_sip = addr_net;
    std::memset(arp->arp_data.arp_tha.addr_bytes, 0, RTE_ETHER_ADDR_LEN);
    arp->arp_data.arp_tip = target_net;
    return m;
}

bool icmp_echo_reply(rte_mbuf* m, uint16_t l3)
{
    uint8_t* data = rte_pktmbuf_mtod(m, uint8_t*);
    auto* ip = reinterpret_cast<rte_ipv4_hdr*>(data + l3);
    const unsigned ihl = (ip->version_ihl & 0x0f) * 4u;
    const unsigned ip_len = rte_be_to_cpu_16(ip->total_length);
    if (ihl < sizeof(rte_ipv4_hdr) || ip_len < ihl + sizeof(rte_icmp_hdr) || l3 + ip_len > m->data_len ||
        ip->next_proto_id != IPPROTO_ICMP || (ip->fragment_offset & rte_cpu_to_be_16(0x3fff)) ||
        !csum::verify(ip, ihl))
        return false;
    auto* icmp = reinterpret_cast<rte_icmp_hdr*>(data + l3 + ihl);
    if (icmp->icmp_type != RTE_IP_ICMP_ECHO_REQUEST || icmp->icmp_code != 0 || !csum::verify(icmp, ip_len - ihl))
        return false;

    icmp->icmp_type = RTE_IP_ICMP_ECHO_REPLY;
    icmp->icmp_cksum = csum::apply(icmp->icmp_cksum, csum::delta16(rte_cpu_to_be_16(RTE_IP_ICMP_ECHO_REQUEST << 8),
                                                                   rte_cpu_to_be_16(RTE_IP_ICMP_ECHO_REPLY << 8)));
    const uint32_t from = ip->src_addr;
    ip->src_addr = ip->dst_addr;
    ip->dst_addr = from;
    ip->time_to_live = 64;
    ip->hdr_checksum = 0;
    ip->hdr_checksum = csum::compute(ip, ihl);
    auto* eth = reinterpret_cast<rte_ether_hdr*>(data);
    const rte_ether_addr peer = eth->src_addr;
    eth->src_addr = eth->dst_addr;
    eth->dst_addr = peer;
    return true;
}

rte_mbuf* icmp_error(rte_mempool* mp, const rte_mbuf* m, uint16_t l3, uint8_t type, uint8_t code, uint32_t src_net,
                     const rte_ether_addr& src_mac, uint16_t next_hop_mtu)
{
    if (l3 >= m->data_len) return nullptr;
    const uint8_t* data = rte_pktmbuf_mtod(m, const uint8_t*);
    return icmp_error_quoting(mp, data + l3, unsigned(m->data_len - l3),
                              reinterpret_cast<const rte_ether_hdr*>(data)->src_addr, type, code, src_net, src_mac,
                              next_hop_mtu);
}

rte_mbuf* icmp_error_quoting(rte_mempool* mp, const uint8_t* packet, unsigned avail, const rte_ether_addr& to_mac,
                             uint8_t type, uint8_t code, uint32_t src_net, const rte_ether_addr& src_mac,
                             uint16_t next_hop_mtu)
{
    if (avail < sizeof(rte_ipv4_hdr)) return nullptr;
    const auto* ip = reinterpret_cast<const rte_ipv4_hdr*>(packet);
    const unsigned ihl = (ip->version_ihl & 0x0f) * 4u;
    if (ihl < sizeof(rte_ipv4_hdr) || ihl > avail) return nullptr;
    if (ip->fragment_offset & rte_cpu_to_be_16(RTE_IPV4_HDR_OFFSET_MASK)) return nullptr;
    avail = std::min<unsigned>(avail, rte_be_to_cpu_16(ip->total_length));
    if (ip->next_proto_id == IPPROTO_ICMP && avail >= ihl + 1) {
        const uint8_t t = packet[ihl];
        if (t != RTE_IP_ICMP_ECHO_REQUEST && t != RTE_IP_ICMP_ECHO_REPLY) return nullptr; // never an error about an error
    }
    const unsigned quote = std::min<unsigned>(avail, 576 - sizeof(rte_ipv4_hdr) - sizeof(rte_icmp_hdr));
    if (quote < ihl) return nullptr;

    rte_mbuf* e = rte_pktmbuf_alloc(mp);
    if (e == nullptr) return nullptr;
    const uint16_t len = uint16_t(sizeof(rte_ether_hdr) + sizeof(rte_ipv4_hdr) + sizeof(rte_icmp_hdr) + quote);
    auto* out = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(e, len));
    if (out == nullptr) {
        rte_pktmbuf_free(e);
        return nullptr;
    }
    auto* eth = reinterpret_cast<rte_ether_hdr*>(out);
    eth->dst_addr = to_mac;
    eth->src_addr = src_mac;
    eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);

    auto* eip = reinterpret_cast<rte_ipv4_hdr*>(eth + 1);
    write_ipv4_header(eip, IPPROTO_ICMP, src_net, ip->src_addr, uint16_t(len - sizeof(rte_ether_hdr)));

    auto* icmp = reinterpret_cast<rte_icmp_hdr*>(eip + 1);
    std::memset(icmp, 0, sizeof *icmp);
    icmp->icmp_type = type;
    icmp->icmp_code = code;
    icmp->icmp_seq_nb = rte_cpu_to_be_16(next_hop_mtu); // RFC 1191: the low 16 bits of the "unused" word
    std::memcpy(icmp + 1, ip, quote);
    icmp->icmp_cksum = csum::compute(icmp, sizeof *icmp + quote);
    return e;
}

void write_ipv4_header(rte_ipv4_hdr* ip, uint8_t proto, uint32_t src_net, uint32_t dst_net, uint16_t total_len)
{
    std::memset(ip, 0, sizeof *ip);
    ip->version_ihl = 0x45;
    ip->total_length = rte_cpu_to_be_16(total_len);
    ip->time_to_live = 64;
    ip->next_proto_id = proto;
    ip->src_addr = src_net;
    ip->dst_addr = dst_net;
    ip->hdr_checksum = csum::compute(ip, sizeof *ip);
}

RateLimit::RateLimit(uint32_t per_second, uint64_t tsc_hz)
    : tokens_(per_second), capacity_(per_second), tsc_per_token_(per_second ? tsc_hz / per_second : 0), last_(0)
{
}

bool RateLimit::allow(uint64_t tsc)
{
    if (capacity_ == 0) return false;
    if (last_ == 0) last_ = tsc;
    const uint64_t earned = (tsc - last_) / tsc_per_token_;
    if (earned > 0) {
        tokens_ = std::min(capacity_, tokens_ + earned);
        last_ += earned * tsc_per_token_;
    }
    if (tokens_ == 0) return false;
    --tokens_;
    return true;
}

} // namespace ephemera::router
