// Port-block allocation (the bulk allocation CGNs use to keep their logs
// small, RFC 6888 §5 / RFC 7422's spirit): a worker's partition of the range
// is cut into blocks of N consecutive ports; a subscriber gets whole blocks
// on its paired pool address, the same port numbers in every protocol, and
// its mappings take ports from them. The log records one event per block
// instead of one per mapping. Worker-local, like everything in a Translator.
#pragma once

#include <cstdint>

#include "ephemera/clock.hpp"
#include "ephemera/dpdk_array.hpp"
#include "ephemera/flow_key.hpp"
#include "ephemera/port_allocator.hpp"

struct rte_hash;

namespace ephemera {

class PortBlocks {
public:
    struct Shape {
        unsigned pools;               // pool addresses
        uint16_t first;               // the worker's partition: [first, first + partition)
        uint32_t partition;
        uint32_t block_size;          // N
        uint32_t max_blocks;          // per subscriber
        uint32_t max_subscribers;     // holding blocks at once, per worker
        // Deterministic mode (RFC 7422): the first fixed_blocks blocks of each
        // pool address belong each to one subscriber by arithmetic
        // (allocate_fixed) and never change hands; the blocks after them are
        // its overflow (RFC 7422 §2.3), handed out as in port-block mode.
        uint32_t fixed_blocks = 0;
    };
    PortBlocks(const Shape& shape, unsigned worker, int socket);
    ~PortBlocks();
    PortBlocks(const PortBlocks&) = delete;
    PortBlocks& operator=(const PortBlocks&) = delete;

    enum class Result : uint8_t {
        Ok,             // a port from a block the subscriber held
        NewBlock,       // a port from a block it just got: log the block
        SubscriberFull, // every port of its max_blocks blocks in use for this protocol
        Exhausted,      // no free block on the pool address
        TableFull,      // more subscribers than max_subscribers
    };
    // A port for a new mapping of `subscriber` (network order) on pool
    // address `pool`: the oldest free port, for l4, of the first block it
    // holds that has one; else a fresh block (oldest out of quarantine).
    Result allocate(uint32_t subscriber, unsigned pool, L4 l4, Tick now, Tick quarantine, uint16_t& port,
                    uint32_t& block);
    // Deterministic mode: a port of `block`, the one the subscriber's address
    // computes to (deterministic.hpp), taken on its first use. Ok, or
    // SubscriberFull when every port of it is in use for this protocol.
    Result allocate_fixed(uint32_t subscriber, uint32_t block, L4 l4, uint16_t& port);
    // Deterministic mode: the subscriber's own block, held from its first use.
    void claim(uint32_t subscriber, uint32_t block);
    // PCP's suggested port (RFC 6887 §11.3): `port` itself when it lies in a
    // block the subscriber holds and is free for l4; `block` is then its
    // block. A search of the block's ring: for PCP requests, not for packets.
    bool take(uint32_t subscriber, unsigned pool, L4 l4, uint16_t port, uint32_t& block);
    // The port goes back to its block (reused by the same subscriber only,
    // after the block's other free ports). True when that emptied the block:
    // it left the subscriber and is quarantined — log it. Never for a
    // deterministic block, which stays its subscriber's.
    bool release(uint32_t block, L4 l4, uint16_t port, Tick now);

    uint32_t block_size() const { return size_; }
    uint32_t blocks_per_pool() const { return per_pool_; }
    uint16_t first_port(uint32_t block) const { return uint16_t(first_ + (block % per_pool_) * size_); }
    uint16_t last_port(uint32_t block) const { return uint16_t(first_port(block) + size_ - 1); }
    unsigned pool_of(uint32_t block) const { return block / per_pool_; }
    uint32_t owner(uint32_t block) const { return owner_[block]; } // 0: not held
    // Blocks a subscriber holds now, and their ids (up to `max` of them).
    uint32_t blocks_of(uint32_t subscriber, uint32_t* out = nullptr, uint32_t max = 0) const;
    uint32_t subscribers() const { return subscribers_; }
    size_t memory_bytes() const; // its arrays (the subscriber hash not counted)

    // Port use on (pool, l4), as PortPartition reports it: free (in free
    // blocks and free in held ones), quarantined (in quarantined blocks), in
    // use; they add up to blocks_per_pool() * block_size().
    struct Use {
        uint32_t free, quarantined, in_use;
    };
    Use use(unsigned pool, L4 l4, Tick now, Tick quarantine);

private:
    uint32_t ring_base(uint32_t block, L4 l4) const { return (block * kL4Count + unsigned(l4)) * size_; }
    uint32_t slot(uint32_t block, L4 l4) const { return block * kL4Count + unsigned(l4); }
    void take_block(uint32_t block, uint32_t subscriber);
    bool pop_port(uint32_t block, L4 l4, uint16_t& port);
    bool is_fixed(uint32_t block) const { return block % per_pool_ < fixed_; }

    uint16_t first_;
    uint32_t size_, per_pool_, max_blocks_, max_subscribers_;
    std::vector<PortFifo> free_blocks_;  // per pool: block numbers, FIFO with quarantine
    DpdkArray<uint32_t> owner_;          // per block: the subscriber, 0 when free
    DpdkArray<uint32_t> live_;           // per block: mappings in it, every protocol
    // Per (block, protocol): a ring of the block's free port offsets, FIFO.
    DpdkArray<uint16_t> ring_;
    DpdkArray<uint32_t> head_, count_;
    // Subscriber -> the blocks it holds, in the order it got them.
    rte_hash* hash_ = nullptr;
    DpdkArray<uint32_t> held_;           // [position * max_blocks + i]
    DpdkArray<uint32_t> held_count_;     // [position]
    uint32_t subscribers_ = 0; // holding blocks
    uint32_t in_table_ = 0;    // in hash_: holding blocks handed out (port-block mode, overflow)
    uint32_t fixed_ = 0; // Shape::fixed_blocks
};

} // namespace ephemera
