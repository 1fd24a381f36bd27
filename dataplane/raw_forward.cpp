#include "ephemera/raw_forward.hpp"

#include <rte_prefetch.h>

namespace ephemera {

uint16_t raw_forward(rte_mbuf** pkts, uint16_t n, const rte_ether_addr& src, const rte_ether_addr& dst)
{
    for (uint16_t i = 0; i < n; ++i) rte_prefetch0(rte_pktmbuf_mtod(pkts[i], void*));
    uint16_t out = 0;
    for (uint16_t i = 0; i < n; ++i) {
        rte_mbuf* m = pkts[i];
        auto* eth = rte_pktmbuf_mtod(m, rte_ether_hdr*);
        uint16_t type = eth->ether_type;
        if (type == rte_cpu_to_be_16(RTE_ETHER_TYPE_VLAN) && m->data_len >= sizeof(*eth) + sizeof(rte_vlan_hdr))
            type = reinterpret_cast<rte_vlan_hdr*>(eth + 1)->eth_proto;
        if (m->data_len < sizeof(*eth) || type != rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4)) {
            rte_pktmbuf_free(m);
            continue;
        }
        eth->src_addr = src;
        eth->dst_addr = dst;
        pkts[out++] = m;
    }
    return out;
}

} // namespace ephemera
