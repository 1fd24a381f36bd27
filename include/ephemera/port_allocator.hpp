// Ephemeral external ports: the dynamic range split among workers, and per
// worker a FIFO of free ports with a quarantine in front of it.
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

#include "ephemera/clock.hpp"
#include "ephemera/config.hpp"
#include "ephemera/dpdk_array.hpp"

namespace ephemera {

inline constexpr uint32_t kNoMapping = UINT32_MAX;

// Which worker owns which external port. The range is cut into one contiguous
// block per worker (so port parity survives inside a block); the first
// size % workers workers get one port more. Read-only once built and shared.
class PortLayout {
public:
    PortLayout(PortRange range, unsigned workers);

    PortRange range() const { return range_; }
    unsigned workers() const { return workers_; }
    uint16_t first_of(unsigned worker) const { return first_[worker]; }
    uint32_t size_of(unsigned worker) const { return size_[worker]; }
    bool in_range(uint16_t port) const { return port >= range_.first && port <= range_.last; }
    // Only for ports in_range().
    unsigned owner_of(uint16_t port) const { return owner_[port - range_.first]; }

private:
    PortRange range_;
    unsigned workers_;
    std::vector<uint16_t> first_;
    std::vector<uint32_t> size_;
    std::vector<uint8_t> owner_;
};

// One FIFO ring holding a partition's free ports followed by its quarantined
// ports, both in the order they were released:
//
//   head ....... qhead ....... tail
//   [ free, FIFO  ][ quarantined, oldest first ]
//
// A freed port joins at the tail; when its quarantine ends it simply becomes
// part of the free segment, which is exactly "back of the FIFO". Ports out on
// loan are not in the ring, so free + quarantined + in use == capacity always.
class PortFifo {
public:
    PortFifo() = default;
    explicit PortFifo(uint32_t capacity);

    void push_initial(uint16_t port); // before first use: a free port
    bool pop(uint16_t& port);         // oldest free port
    // Port preservation: remembers where each of the ports base..base+span-1
    // sits in the ring, so that take() finds one without a search.
    void track_positions(uint16_t base, uint32_t span);
    // Takes `port` itself when it is free (not in use, not quarantined); the
    // oldest free port moves into its place, so that one is handed out a
    // little later than strict FIFO order. Needs track_positions().
    bool take(uint16_t port);
    void release(uint16_t port, Tick now);
    void promote(Tick now, Tick quarantine); // ends quarantines that are over

    uint32_t capacity() const { return capacity_; }
    uint32_t free_count() const { return qhead_ - head_; }
    uint32_t quarantined_count() const { return tail_ - qhead_; }
    uint32_t in_use_count() const { return capacity_ - (tail_ - head_); }

private:
    uint32_t index(uint32_t pos) const { return pos % capacity_; }

    DpdkArray<uint16_t> ports_;
    DpdkArray<Tick> released_at_;
    DpdkArray<uint32_t> pos_; // [port - base_]: its ring position (port preservation only)
    uint16_t base_ = 0;
    uint32_t capacity_ = 0;
    // Monotonic positions; the ring index is position % capacity. 2^32 wraps
    // are harmless because only differences are used.
    uint32_t head_ = 0, qhead_ = 0, tail_ = 0;
};

// The ports one worker hands out for one (pool address, protocol): its block of
// the range, as one FIFO, or two (even, odd) when port parity is preserved.
// Also the outside->inside index: external port -> mapping, with no hashing.
class PortPartition {
public:
    PortPartition() = default;
    // with_fifo = false: the index only (port-block mode hands ports out of
    // PortBlocks; a FIFO here would be 10 unused bytes per port).
    // preserve: take() may hand out a requested port (port preservation),
    // at 4 more bytes per port.
    PortPartition(uint16_t first, uint32_t size, bool parity, bool shuffle, uint64_t seed, bool with_fifo = true,
                  bool preserve = false);

    // Hands out the oldest free port, of the same parity as want_like when
    // parity is preserved (falling back to the other parity, reported through
    // parity_fallback). Returns false when no port is free: the caller counts
    // the drop; a live port is never reused.
    bool allocate(Tick now, Tick quarantine, uint16_t want_like, uint16_t& port, bool& parity_fallback);
    void release(uint16_t port, Tick now);
    // Port preservation: `port` itself, if it is this partition's and free.
    bool take(Tick now, Tick quarantine, uint16_t port);

    bool owns(uint16_t port) const { return uint32_t(uint16_t(port - first_)) < size_; }
    // The index is written by the owning worker only, and read by it and by
    // the other workers (software handoff carries what they read, see
    // Translator::inbound): relaxed atomics, plain moves on x86-64.
    void set_mapping(uint16_t port, uint32_t index)
    {
        std::atomic_ref<uint32_t>(mapping_[uint16_t(port - first_)]).store(index, std::memory_order_relaxed);
    }
    uint32_t mapping_of(uint16_t port) const { return mapping_[uint16_t(port - first_)]; }
    uint32_t mapping_seen_elsewhere(uint16_t port) const
    {
        return std::atomic_ref<uint32_t>(const_cast<uint32_t&>(mapping_[uint16_t(port - first_)]))
            .load(std::memory_order_relaxed);
    }
    const uint32_t* mapping_slot(uint16_t port) const { return &mapping_[uint16_t(port - first_)]; }

    uint16_t first() const { return first_; }
    uint32_t size() const { return size_; }
    bool has_fifo() const { return fifo_[0].capacity() + fifo_[1].capacity() != 0; }
    size_t memory_bytes() const
    {
        return size_ * (sizeof(uint32_t) + (has_fifo() ? sizeof(uint16_t) + sizeof(Tick) : 0) +
                        (preserve_ ? sizeof(uint32_t) : 0));
    }
    void promote(Tick now, Tick quarantine);
    uint32_t free_count() const;
    uint32_t quarantined_count() const;
    uint32_t in_use_count() const;

private:
    PortFifo& fifo_for(uint16_t port) { return fifo_[parity_ ? (port & 1) : 0]; }

    PortFifo fifo_[2];
    DpdkArray<uint32_t> mapping_;
    uint16_t first_ = 0;
    uint32_t size_ = 0;
    bool parity_ = false;
    bool preserve_ = false;
};

} // namespace ephemera
