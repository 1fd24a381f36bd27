#include "syn_hold.hpp"

#include <algorithm>

#include <rte_common.h>

namespace ephemera {

SynHold::SynHold(uint32_t capacity, int socket)
    : entries_(rte_align32pow2(std::max<uint32_t>(capacity, 1)), socket),
      mask_(uint32_t(entries_.size()) - 1)
{
}

bool SynHold::hold(const rte_mbuf* m, uint16_t l3, uint64_t due)
{
    if (tail_ - head_ > mask_) return false;
    const auto* ip = rte_pktmbuf_mtod_offset(m, const rte_ipv4_hdr*, l3);
    const unsigned ihl = (ip->version_ihl & 0x0f) * 4u;
    const unsigned len = std::min<unsigned>({kQuote, unsigned(m->data_len - l3), rte_be_to_cpu_16(ip->total_length)});
    if (len < ihl + sizeof(rte_tcp_hdr)) return false; // not a SYN the translator let through
    Entry& e = entries_[tail_ & mask_];
    e.due = due;
    e.from = rte_pktmbuf_mtod(m, const rte_ether_hdr*)->src_addr;
    e.len = uint8_t(len);
    std::memcpy(e.ip, ip, len);
    ++tail_;
    return true;
}

} // namespace ephemera
