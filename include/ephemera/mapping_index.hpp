// The inside->outside index of a worker's mappings: a hash of
// (inside addr, inside port, protocol) to the mapping's index.
//
// Why not rte_hash, which this replaced: rte_hash keeps its keys in a key
// store apart from its buckets, so a lookup makes two dependent trips to
// memory (bucket, key slot) before the caller's third one to the mapping
// entry. At 1 M mappings its bulk lookup alone cost 74 of the 100 cycles per
// packet the established path may take (bench/RESULTS.md). Here a bucket holds
// a 16-bit tag and the mapping index per entry, and the key is confirmed in the
// mapping entry itself, which the packet needs anyway: one trip fewer.
//
// A bucket's entries are kept dense (entries [0, used) of each bucket, and
// every bucket of a chain is full but its last), so overflow buckets never
// exceed capacity / 8: an insert below capacity cannot fail, whatever the hash
// values. Single writer and single reader: the owning worker.
#pragma once

#include <cstddef>
#include <cstdint>

#include <rte_prefetch.h>

#include "ephemera/dpdk_array.hpp"

namespace ephemera {

class MappingIndex {
public:
    static constexpr uint32_t kNone = UINT32_MAX;
    static constexpr unsigned kWays = 8;

    // Room for `capacity` entries. `buckets` (a power of two) 0 sizes the
    // bucket array so that it is at most half full at capacity; tests pass a
    // small count to force long chains.
    explicit MappingIndex(uint32_t capacity, int socket = SOCKET_ID_ANY, uint32_t buckets = 0);

    void prefetch(uint32_t sig) const { rte_prefetch0(&buckets_[sig & mask_]); }

    // The first entry of sig's own bucket whose tag matches, or kNone: what
    // the caller prefetches and confirms against the mapping's key.
    uint32_t candidate(uint32_t sig) const
    {
        const Bucket& b = buckets_[sig & mask_];
        const uint16_t t = tag_of(sig);
        for (unsigned w = 0; w < b.used; ++w)
            if (b.tag[w] == t) return b.index[w];
        return kNone;
    }

    // Every entry whose tag matches, along the whole chain, until is_it(index)
    // says it is the one; kNone when none is.
    template <typename IsIt>
    uint32_t find(uint32_t sig, IsIt&& is_it) const
    {
        const uint16_t t = tag_of(sig);
        for (const Bucket* b = &buckets_[sig & mask_];; b = &overflow_[b->next]) {
            for (unsigned w = 0; w < b->used; ++w)
                if (b->tag[w] == t && is_it(b->index[w])) return b->index[w];
            if (b->next == kNone) return kNone;
        }
    }

    // Adds an entry; false only at capacity. The caller keeps keys unique.
    bool insert(uint32_t sig, uint32_t index);
    // Removes the entry of `index` filed under sig; false when there is none.
    bool erase(uint32_t sig, uint32_t index);

    uint32_t size() const { return size_; }
    uint32_t capacity() const { return capacity_; }
    // Overflow buckets in use now (for tests: the bound above).
    uint32_t overflow_in_use() const { return uint32_t(overflow_.size()) - free_top_; }
    size_t bytes() const { return buckets_.bytes() + overflow_.bytes() + free_overflow_.bytes(); }

private:
    struct alignas(64) Bucket {
        uint16_t tag[kWays];
        uint32_t index[kWays];
        uint32_t next; // overflow bucket, kNone at the end of the chain
        uint8_t used;  // entries [0, used) are taken
    };
    static_assert(sizeof(Bucket) == 64);

    // The bucket bits are the signature's low ones; the tag its high half.
    static uint16_t tag_of(uint32_t sig) { return uint16_t(sig >> 16); }

    DpdkArray<Bucket> buckets_;
    DpdkArray<Bucket> overflow_;
    DpdkArray<uint32_t> free_overflow_; // [0, free_top_) are free
    uint32_t free_top_ = 0;
    uint32_t mask_ = 0;
    uint32_t size_ = 0;
    uint32_t capacity_ = 0;
};

} // namespace ephemera
