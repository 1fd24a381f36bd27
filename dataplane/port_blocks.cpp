#include "ephemera/port_blocks.hpp"

#include "ephemera/address_hash.hpp"

#include <stdexcept>
#include <string>
#include <utility>

#include <rte_errno.h>
#include <rte_hash.h>
#include <rte_hash_crc.h>

namespace ephemera {

PortBlocks::PortBlocks(const Shape& s, unsigned worker, int socket)
    : first_(s.first),
      size_(s.block_size),
      per_pool_(s.block_size ? s.partition / s.block_size : 0),
      max_blocks_(s.max_blocks),
      max_subscribers_(s.max_subscribers),
      owner_(size_t(s.pools) * per_pool_, socket),
      live_(size_t(s.pools) * per_pool_, socket),
      ring_(size_t(s.pools) * per_pool_ * kL4Count * s.block_size, socket),
      head_(size_t(s.pools) * per_pool_ * kL4Count, socket),
      count_(size_t(s.pools) * per_pool_ * kL4Count, socket),
      // Deterministic blocks are found by arithmetic: a subscriber table only
      // for the blocks handed out.
      held_(s.fixed_blocks < per_pool_ ? size_t(s.max_subscribers) * s.max_blocks : 0, socket),
      held_count_(s.fixed_blocks < per_pool_ ? s.max_subscribers : 0, socket),
      fixed_(s.fixed_blocks)
{
    if (per_pool_ == 0 || per_pool_ > 65536 || fixed_ > per_pool_ || max_blocks_ == 0 || max_subscribers_ == 0)
        throw std::invalid_argument("port blocks: a block must fit the partition (" + std::to_string(s.partition) +
                                    " ports, blocks of " + std::to_string(s.block_size) + ")");
    free_blocks_.reserve(s.pools);
    for (unsigned p = 0; p < s.pools; ++p) {
        // Deterministic blocks are never handed out from the queue.
        PortFifo& f = free_blocks_.emplace_back(per_pool_ - fixed_);
        for (uint32_t b = fixed_; b < per_pool_; ++b) f.push_initial(uint16_t(b));
    }
    if (fixed_ < per_pool_)
        hash_ = create_address_hash("eph_blk", "port-block subscriber table", worker, s.max_subscribers, socket);
}

PortBlocks::~PortBlocks() { rte_hash_free(hash_); }

void PortBlocks::take_block(uint32_t block, uint32_t subscriber)
{
    owner_[block] = subscriber;
    live_[block] = 0;
    // Every protocol starts with the whole block free, in port order.
    for (unsigned l4 = 0; l4 < kL4Count; ++l4) {
        const uint32_t base = ring_base(block, L4(l4));
        for (uint32_t i = 0; i < size_; ++i) ring_[base + i] = uint16_t(i);
        head_[slot(block, L4(l4))] = 0;
        count_[slot(block, L4(l4))] = size_;
    }
}

bool PortBlocks::pop_port(uint32_t block, L4 l4, uint16_t& port)
{
    const uint32_t s = slot(block, l4);
    if (count_[s] == 0) return false;
    port = uint16_t(first_port(block) + ring_[ring_base(block, l4) + head_[s]]);
    head_[s] = head_[s] + 1 == size_ ? 0 : head_[s] + 1;
    --count_[s];
    ++live_[block];
    return true;
}

PortBlocks::Result PortBlocks::allocate(uint32_t subscriber, unsigned pool, L4 l4, Tick now, Tick quarantine,
                                        uint16_t& port, uint32_t& block)
{
    int32_t pos = rte_hash_lookup(hash_, &subscriber);
    if (pos >= 0) {
        const uint32_t n = held_count_[uint32_t(pos)];
        for (uint32_t i = 0; i < n; ++i) {
            block = held_[uint32_t(pos) * max_blocks_ + i];
            if (pop_port(block, l4, port)) return Result::Ok;
        }
        if (n >= max_blocks_) return Result::SubscriberFull;
    } else if (in_table_ >= max_subscribers_) {
        return Result::TableFull;
    }
    PortFifo& blocks = free_blocks_[pool];
    blocks.promote(now, quarantine);
    uint16_t b;
    if (!blocks.pop(b)) return Result::Exhausted;
    if (pos < 0) {
        pos = rte_hash_add_key(hash_, &subscriber);
        if (pos < 0) {
            blocks.release(b, now - quarantine - 1); // never held: free at once, first in line again later
            return Result::TableFull;
        }
        held_count_[uint32_t(pos)] = 0;
        ++in_table_;
        subscribers_ += fixed_ == 0; // a deterministic host holds its own block already
    }
    block = pool * per_pool_ + b;
    take_block(block, subscriber);
    held_[uint32_t(pos) * max_blocks_ + held_count_[uint32_t(pos)]++] = block;
    pop_port(block, l4, port);
    return Result::NewBlock;
}

void PortBlocks::claim(uint32_t subscriber, uint32_t block)
{
    if (owner_[block] != 0) return;
    take_block(block, subscriber); // its first use: every port free, in port order
    ++subscribers_;
}

PortBlocks::Result PortBlocks::allocate_fixed(uint32_t subscriber, uint32_t block, L4 l4, uint16_t& port)
{
    claim(subscriber, block);
    return pop_port(block, l4, port) ? Result::Ok : Result::SubscriberFull;
}

bool PortBlocks::take(uint32_t subscriber, unsigned pool, L4 l4, uint16_t port, uint32_t& block)
{
    if (port < first_ || uint32_t(port - first_) >= per_pool_ * size_) return false;
    const uint32_t b = pool * per_pool_ + (port - first_) / size_;
    if (owner_[b] != subscriber) return false;
    // Move the port to the head of the block's free ring, then pop it.
    const uint32_t s = slot(b, l4);
    const uint32_t base = ring_base(b, l4);
    const uint16_t offset = uint16_t(port - first_port(b));
    for (uint32_t i = 0; i < count_[s]; ++i) {
        uint32_t at = head_[s] + i;
        if (at >= size_) at -= size_;
        if (ring_[base + at] != offset) continue;
        std::swap(ring_[base + at], ring_[base + head_[s]]);
        uint16_t got = 0;
        pop_port(b, l4, got);
        block = b;
        return true;
    }
    return false; // in use for l4
}

bool PortBlocks::release(uint32_t block, L4 l4, uint16_t port, Tick now)
{
    const uint32_t s = slot(block, l4);
    uint32_t tail = head_[s] + count_[s];
    if (tail >= size_) tail -= size_;
    ring_[ring_base(block, l4) + tail] = uint16_t(port - first_port(block));
    ++count_[s];
    if (--live_[block] != 0 || is_fixed(block)) return false;

    // The block is empty: it leaves its subscriber and waits out the
    // quarantine before another subscriber may get it (RFC 6888 REQ-8).
    const uint32_t subscriber = owner_[block];
    owner_[block] = 0;
    const int32_t pos = rte_hash_lookup(hash_, &subscriber);
    if (pos >= 0) {
        uint32_t* held = &held_[uint32_t(pos) * max_blocks_];
        uint32_t& n = held_count_[uint32_t(pos)];
        uint32_t i = 0;
        while (i < n && held[i] != block) ++i;
        for (; i + 1 < n; ++i) held[i] = held[i + 1]; // keep the order it got them in
        if (i < n) --n;
        if (n == 0) {
            rte_hash_del_key(hash_, &subscriber);
            --in_table_;
            subscribers_ -= fixed_ == 0;
        }
    }
    free_blocks_[pool_of(block)].release(uint16_t(block % per_pool_), now);
    return true;
}

uint32_t PortBlocks::blocks_of(uint32_t subscriber, uint32_t* out, uint32_t max) const
{
    if (hash_ == nullptr) return 0; // deterministic without overflow: DeterministicMap names the block
    const int32_t pos = rte_hash_lookup(hash_, &subscriber);
    if (pos < 0) return 0;
    const uint32_t n = held_count_[uint32_t(pos)];
    for (uint32_t i = 0; i < n && i < max; ++i) out[i] = held_[uint32_t(pos) * max_blocks_ + i];
    return n;
}

PortBlocks::Use PortBlocks::use(unsigned pool, L4 l4, Tick now, Tick quarantine)
{
    PortFifo& blocks = free_blocks_[pool];
    blocks.promote(now, quarantine);
    Use u{blocks.free_count() * size_, blocks.quarantined_count() * size_, 0};
    for (uint32_t b = pool * per_pool_; b < (pool + 1) * per_pool_; ++b) {
        if (owner_[b] == 0) {
            if (is_fixed(b)) u.free += size_; // not used yet: all its ports free
            continue;
        }
        u.free += count_[slot(b, l4)];
        u.in_use += size_ - count_[slot(b, l4)];
    }
    return u;
}

size_t PortBlocks::memory_bytes() const
{
    return (owner_.size() + live_.size() + head_.size() + count_.size() + held_.size() + held_count_.size()) *
               sizeof(uint32_t) +
           ring_.size() * sizeof(uint16_t);
}

} // namespace ephemera
