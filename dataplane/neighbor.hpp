// The outside next hop's MAC address, learned by whichever worker sees the
// ARP reply and read by every worker: one 64-bit word, so it needs no lock.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>

#include <rte_ether.h>

namespace ephemera {

class Neighbor {
public:
    explicit Neighbor(uint32_t addr_net) : addr_(addr_net) {}

    uint32_t addr() const { return addr_; }
    void set(const rte_ether_addr& mac, uint64_t now_tsc)
    {
        uint64_t v = 0;
        std::memcpy(&v, mac.addr_bytes, 6);
        word_.store(v | kValid, std::memory_order_release);
        seen_tsc_.store(now_tsc, std::memory_order_relaxed);
    }
    // Returns false until the first ARP answer (or a static MAC) arrived.
    bool get(rte_ether_addr& mac) const
    {
        const uint64_t v = word_.load(std::memory_order_acquire);
        if (!(v & kValid)) return false;
        std::memcpy(mac.addr_bytes, &v, 6);
        return true;
    }
    uint64_t version() const { return word_.load(std::memory_order_acquire); }
    uint64_t seen_tsc() const { return seen_tsc_.load(std::memory_order_relaxed); }

private:
    static constexpr uint64_t kValid = uint64_t(1) << 63;
    const uint32_t addr_;
    std::atomic<uint64_t> word_{0};
    std::atomic<uint64_t> seen_tsc_{0};
};

} // namespace ephemera
