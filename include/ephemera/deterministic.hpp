// Deterministic NAT (RFC 7422): every address of one inside prefix gets, by
// arithmetic alone, one pool address and one fixed range of ports, so that
// "who held pool address X' port x' at time t" is answered from the
// configuration, without a log of mappings or blocks.
//
// The ranges follow the gateway's port partitions, so that the worker owning
// a host's range owns the host too and the return path needs no new steering:
//
//   H hosts (every address of the prefix), A pool addresses, W workers,
//   k = ceil(H / (A * W)) hosts per (pool address, worker),
//   B = floor(smallest partition / (k + V)) ports per host,
//   host h = address - prefix:
//     pool address  p = h / (W * k)
//     worker        w = (h % (W * k)) % W        (neighbours on different workers)
//     range number  j = (h % (W * k)) / W
//     ports         first_of(w) + j * B  ..  first_of(w) + (j + 1) * B - 1
//
// V (nat.deterministic_overflow, 0 by default) more ranges of B ports follow
// the k ranges in each partition: RFC 7422 §2.3's overflow, lent to a host
// of that partition whose own range is full, and logged, since arithmetic
// alone no longer names their holder. Ports beyond them are never used.
#pragma once

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "ephemera/port_allocator.hpp"

namespace ephemera {

class DeterministicMap {
public:
    struct Slot {
        unsigned pool;   // index of the pool address
        unsigned worker; // the worker owning the ports (and so the host)
        uint32_t range;  // j: the range's number in the worker's partition
        uint16_t first, last;
    };

    // prefix: host order. Throws ConfigError naming nat.deterministic when
    // the prefix's hosts do not all get at least one port.
    DeterministicMap(uint32_t prefix, uint8_t prefix_len, uint32_t pool_size, const PortLayout& layout,
                     uint32_t overflow = 0);

    bool contains(uint32_t addr) const { return addr - prefix_ < hosts_; } // host order
    // Only for addresses contains() accepts.
    Slot slot_of(uint32_t addr) const;
    // slot_of(addr).worker alone: inside steering asks it for every packet.
    unsigned worker_of(uint32_t addr) const { return (addr - prefix_) % (workers_ * per_partition_) % workers_; }
    // The inside address (host order) that (pool address index, port) belongs
    // to; none for a port outside every host's range (overflow ranges included).
    std::optional<uint32_t> host_of(unsigned pool, uint16_t port) const;
    // The overflow range (first, last) a port of the pool address lies in, if any.
    std::optional<std::pair<uint16_t, uint16_t>> overflow_range_of(unsigned pool, uint16_t port) const;

    uint32_t hosts() const { return hosts_; }
    uint32_t ports_per_host() const { return ports_per_host_; }
    uint32_t hosts_per_partition() const { return per_partition_; } // k
    uint32_t overflow_ranges() const { return overflow_; }           // V

private:
    // Where a port of the range lies: its worker and the index of its
    // ports_per_host()-wide range within that worker's share.
    struct RangeAt {
        unsigned worker;
        uint32_t range;
    };
    std::optional<RangeAt> range_at(unsigned pool, uint16_t port) const;

    uint32_t prefix_, hosts_, pool_size_, per_partition_, ports_per_host_, overflow_;
    unsigned workers_;
    std::vector<uint16_t> first_; // first port of each worker's partition
    PortLayout layout_;
};

} // namespace ephemera
