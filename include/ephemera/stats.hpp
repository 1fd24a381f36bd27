// Per-worker counters. Each worker writes only its own cache-aligned block; the
// control plane reads them (torn 64-bit reads cannot happen on x86-64).
#pragma once

#include <cstdint>

#include "ephemera/flow_key.hpp"

namespace ephemera {

enum class Dir : uint8_t { Out = 0, In = 1 }; // Out: inside -> outside

// Why a packet was dropped. Every drop counts under exactly one reason.
enum class Drop : uint8_t {
    Malformed,       // truncated, bad IHL, bad length, bad options, bad ICMP error
    BadChecksum,     // IPv4 header or ICMP checksum wrong
    NoMapping,       // return traffic or ICMP error for which no mapping exists
    Filtered,        // a mapping exists but the filtering mode refuses the source
    PortsExhausted,  // no free port in the subscriber's partition
    TableFull,       // mapping or session table at capacity / per-mapping limit
    Ttl,             // TTL would reach zero
    Fragment,        // IPv4 fragments are not translated (yet)
    Unsupported,     // not IPv4, an L4 protocol or ICMP type we do not translate
    WrongWorker,     // the external port belongs to another worker's partition
    SubscriberLimit, // the subscriber holds its maximum of ports (RFC 6888 REQ-4)
    NoNeighbor,      // a static mapping's inside host has not answered ARP yet
    Count
};
inline constexpr unsigned kDropCount = unsigned(Drop::Count);

const char* to_string(Drop reason);
const char* to_string(Dir dir);

struct alignas(64) WorkerStats {
    uint64_t rx[2] = {};        // packets handed to the translator, by Dir
    uint64_t tx[2] = {};        // packets translated and forwarded, by Dir
    uint64_t drops[2][kDropCount] = {};
    uint64_t icmp_errors[2] = {}; // ICMP errors translated, by Dir
    // By protocol (L4), so that the control plane can show live mappings and
    // sessions per protocol as created minus released.
    uint64_t mappings_created[kL4Count] = {};
    uint64_t mappings_released[kL4Count] = {};
    uint64_t sessions_created[kL4Count] = {};
    uint64_t sessions_released[kL4Count] = {};
    uint64_t parity_fallbacks = 0; // port of the wanted parity was not available
    uint64_t ports_preserved = 0;  // mappings that kept the inside source port (nat.port_preservation)
    uint64_t events_lost = 0;      // mapping log ring full: event dropped, never waited for
    uint64_t carried_used = 0;     // inbound handoffs whose carried mapping index was used
    uint64_t carried_stale = 0;    // ... that had to be looked up again (the mapping had ended)

    uint64_t dropped(Dir d) const
    {
        uint64_t sum = 0;
        for (uint64_t v : drops[unsigned(d)]) sum += v;
        return sum;
    }
    uint64_t drop(Dir d, Drop r) const { return drops[unsigned(d)][unsigned(r)]; }
};

// All protocols together.
inline uint64_t total(const uint64_t (&by_l4)[kL4Count])
{
    uint64_t sum = 0;
    for (uint64_t v : by_l4) sum += v;
    return sum;
}

} // namespace ephemera
