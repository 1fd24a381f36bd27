#include "ephemera/pool.hpp"

#include <rte_byteorder.h>
#include <rte_hash_crc.h>

namespace ephemera {

Pool::Pool(const std::vector<uint32_t>& host_order_addrs)
{
    addrs_.reserve(host_order_addrs.size());
    for (uint32_t a : host_order_addrs) addrs_.push_back(rte_cpu_to_be_32(a));

    uint32_t slots = 4;
    shift_ = 30;
    while (slots < 2 * addrs_.size()) {
        slots <<= 1;
        --shift_;
    }
    mask_ = slots - 1;
    slots_.assign(slots, Slot{0, -1});
    for (size_t i = 0; i < addrs_.size(); ++i) {
        uint32_t slot = hash(addrs_[i]);
        while (slots_[slot].index >= 0) slot = (slot + 1) & mask_;
        slots_[slot] = Slot{addrs_[i], int32_t(i)};
    }
}

unsigned Pool::paired_index(uint32_t subscriber_net) const
{
    return rte_hash_crc_4byte(subscriber_net, 0x70616972) % addrs_.size();
}

} // namespace ephemera
