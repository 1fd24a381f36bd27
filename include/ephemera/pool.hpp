// The NAT pool: its addresses, which one a subscriber is paired with, and the
// reverse look-up from a packet's destination address to the pool index.
#pragma once

#include <cstdint>
#include <vector>

namespace ephemera {

class Pool {
public:
    static constexpr int kNotInPool = -1;

    explicit Pool(const std::vector<uint32_t>& host_order_addrs);

    unsigned size() const { return unsigned(addrs_.size()); }
    uint32_t addr(unsigned index) const { return addrs_[index]; } // network order

    // Paired pooling (RFC 4787 REQ-2, RFC 6888 REQ-2): every flow of one
    // subscriber, whatever its protocol, uses the same pool address. The choice
    // is a pure function of the subscriber, so it survives restarts.
    unsigned paired_index(uint32_t subscriber_net) const;

    // Index of a network-order address in the pool, or kNotInPool. An
    // open-addressed flat table: no hashing library, two probes typically.
    int index_of(uint32_t addr_net) const
    {
        for (uint32_t slot = hash(addr_net);; slot = (slot + 1) & mask_) {
            const Slot& s = slots_[slot];
            if (s.index < 0) return kNotInPool;
            if (s.addr == addr_net) return s.index;
        }
    }

private:
    struct Slot {
        uint32_t addr;
        int32_t index;
    };
    // Fibonacci hashing: the product's top bits mix every input bit, so a
    // prefix of consecutive addresses (which differ in the top byte of a
    // network-order integer on x86) still spreads over the table.
    uint32_t hash(uint32_t v) const { return (v * 0x9e3779b1u) >> shift_; }

    std::vector<uint32_t> addrs_;
    std::vector<Slot> slots_;
    uint32_t mask_ = 0;
    unsigned shift_ = 32;
};

} // namespace ephemera
