#include "ephemera/deterministic.hpp"

#include <algorithm>
#include <string>

#include "ephemera/config.hpp"

namespace ephemera {

DeterministicMap::DeterministicMap(uint32_t prefix, uint8_t prefix_len, uint32_t pool_size, const PortLayout& layout,
                                   uint32_t overflow)
    : prefix_(prefix), overflow_(overflow), workers_(layout.workers()), layout_(layout)
{
    const std::string key = "nat.deterministic = \"" + format_ipv4(prefix) + "/" + std::to_string(prefix_len) + "\"";
    if (prefix_len < 8 || prefix_len > 32) throw ConfigError(key + ": the prefix length must be 8-32");
    if (prefix & ~prefix_mask(prefix_len)) throw ConfigError(key + ": host bits set: not a prefix");
    if (pool_size == 0) throw ConfigError(key + ": the pool is empty");
    hosts_ = prefix_len == 32 ? 1 : 1u << (32 - prefix_len);
    pool_size_ = pool_size;
    const uint64_t partitions = uint64_t(pool_size) * workers_;
    per_partition_ = uint32_t((hosts_ + partitions - 1) / partitions);
    uint32_t smallest = UINT32_MAX;
    for (unsigned w = 0; w < workers_; ++w) {
        first_.push_back(layout.first_of(w));
        smallest = std::min(smallest, layout.size_of(w));
    }
    ports_per_host_ = smallest / (per_partition_ + overflow_);
    if (ports_per_host_ == 0)
        throw ConfigError(key + ": " + std::to_string(hosts_) + " hosts on " + std::to_string(pool_size) +
                          " pool addresses and " + std::to_string(workers_) + " workers make " +
                          std::to_string(per_partition_) + " hosts per worker's share of the ports" +
                          (overflow_ ? " (and " + std::to_string(overflow_) + " nat.deterministic_overflow ranges)"
                                     : std::string()) +
                          ", which is only " + std::to_string(smallest) +
                          " ports: a longer prefix, more pool addresses or a wider nat.ports");
}

DeterministicMap::Slot DeterministicMap::slot_of(uint32_t addr) const
{
    const uint32_t h = addr - prefix_;
    const uint32_t per_pool = workers_ * per_partition_;
    const uint32_t r = h % per_pool;
    Slot s{};
    s.pool = h / per_pool;
    s.worker = r % workers_;
    s.range = r / workers_;
    s.first = uint16_t(first_[s.worker] + s.range * ports_per_host_);
    s.last = uint16_t(s.first + ports_per_host_ - 1);
    return s;
}

std::optional<DeterministicMap::RangeAt> DeterministicMap::range_at(unsigned pool, uint16_t port) const
{
    if (pool >= pool_size_ || !layout_.in_range(port)) return std::nullopt;
    const unsigned w = layout_.owner_of(port);
    return RangeAt{w, (port - first_[w]) / ports_per_host_};
}

std::optional<uint32_t> DeterministicMap::host_of(unsigned pool, uint16_t port) const
{
    const auto at = range_at(pool, port);
    if (!at || at->range >= per_partition_) return std::nullopt; // overflow ranges, then the partition's unused tail
    const uint64_t h = uint64_t(pool) * workers_ * per_partition_ + uint64_t(at->range) * workers_ + at->worker;
    if (h >= hosts_) return std::nullopt; // a range no host of the prefix falls on
    return prefix_ + uint32_t(h);
}

std::optional<std::pair<uint16_t, uint16_t>> DeterministicMap::overflow_range_of(unsigned pool, uint16_t port) const
{
    const auto at = range_at(pool, port);
    if (!at || at->range < per_partition_ || at->range >= per_partition_ + overflow_) return std::nullopt;
    const uint16_t first = uint16_t(first_[at->worker] + at->range * ports_per_host_);
    return std::pair<uint16_t, uint16_t>{first, uint16_t(first + ports_per_host_ - 1)};
}

} // namespace ephemera
