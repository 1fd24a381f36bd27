#include "ephemera/mapping_index.hpp"

#include <stdexcept>
#include <string>

namespace ephemera {

namespace {

uint32_t buckets_for(uint32_t capacity, uint32_t requested)
{
    if (requested != 0) {
        if ((requested & (requested - 1)) != 0)
            throw std::invalid_argument("mapping index: bucket count " + std::to_string(requested) +
                                        " is not a power of two");
        return requested;
    }
    // Two buckets' worth of ways per entry: at most half full at capacity, so
    // that a bucket rarely overflows (4 entries per bucket on average, more
    // than 8 in about 2 % of them).
    uint32_t buckets = 1;
    while (buckets * (MappingIndex::kWays / 2) < capacity) buckets <<= 1;
    return buckets;
}

} // namespace

MappingIndex::MappingIndex(uint32_t capacity, int socket, uint32_t buckets)
    : buckets_(buckets_for(capacity, buckets), socket),
      // Dense chains: a bucket's k-th overflow bucket exists only while its chain
      // holds more than 8k entries, so capacity / 8 of them always suffice.
      overflow_(capacity / kWays + 1, socket), free_overflow_(capacity / kWays + 1, socket),
      mask_(uint32_t(buckets_.size()) - 1), capacity_(capacity)
{
    for (size_t b = 0; b < buckets_.size(); ++b) buckets_[b].next = kNone;
    // Handed out from the top of the stack: lowest-numbered first.
    for (size_t i = 0; i < overflow_.size(); ++i) {
        overflow_[i].next = kNone;
        free_overflow_[i] = uint32_t(overflow_.size() - 1 - i);
    }
    free_top_ = uint32_t(overflow_.size());
}

bool MappingIndex::insert(uint32_t sig, uint32_t index)
{
    if (size_ >= capacity_) return false;
    Bucket* b = &buckets_[sig & mask_];
    while (b->next != kNone) b = &overflow_[b->next];
    if (b->used == kWays) {
        if (free_top_ == 0) return false; // cannot happen below capacity (see the constructor)
        const uint32_t o = free_overflow_[--free_top_];
        b->next = o;
        b = &overflow_[o];
        b->used = 0;
        b->next = kNone;
    }
    b->tag[b->used] = tag_of(sig);
    b->index[b->used] = index;
    ++b->used;
    ++size_;
    return true;
}

bool MappingIndex::erase(uint32_t sig, uint32_t index)
{
    Bucket* head = &buckets_[sig & mask_];
    Bucket* hole = nullptr;
    unsigned hole_way = 0;
    // Walk the whole chain: find the entry, and the last bucket with the one
    // that fills its place.
    Bucket* before_last = nullptr;
    Bucket* last = head;
    for (Bucket* b = head;; b = &overflow_[b->next]) {
        if (hole == nullptr)
            for (unsigned w = 0; w < b->used; ++w)
                if (b->index[w] == index) {
                    hole = b;
                    hole_way = w;
                    break;
                }
        if (b->next == kNone) {
            last = b;
            break;
        }
        before_last = b;
    }
    if (hole == nullptr) return false;
    const unsigned tail = last->used - 1u;
    hole->tag[hole_way] = last->tag[tail];
    hole->index[hole_way] = last->index[tail];
    last->used = uint8_t(tail);
    if (tail == 0 && before_last != nullptr) {
        // An emptied overflow bucket leaves the chain.
        const uint32_t o = before_last->next;
        before_last->next = kNone;
        free_overflow_[free_top_++] = o;
    }
    --size_;
    return true;
}

} // namespace ephemera
