// Mapping create/delete events, for the abuse-tracing log (RFC 6888 REQ-12:
// who held pool-addr:port when; no destination). Workers put them on a ring to
// the control plane; a full ring is counted, never waited on.
#pragma once

#include <cstdint>

namespace ephemera {

// Create/Delete: one mapping. BlockAlloc/BlockFree (port-block mode, RFC
// 7422-style bulk allocation): a subscriber got or gave back a block of
// ports on one pool address, the same numbers in every protocol; mappings
// inside a block are not logged one by one.
enum class MappingEventType : uint8_t { Create = 1, Delete = 2, BlockAlloc = 3, BlockFree = 4 };

struct MappingEvent {
    uint64_t time_ms;   // Unix time in milliseconds
    uint32_t in_addr;   // network order (block events: the subscriber)
    uint32_t ext_addr;  // network order (block events: the pool address)
    uint16_t in_port;   // network order (block events: the block's last port)
    uint16_t ext_port;  // network order (block events: the block's first port)
    uint8_t l4;         // L4 (block events: 0, the block holds every protocol)
    uint8_t type;       // MappingEventType
    uint16_t worker;
};
static_assert(sizeof(MappingEvent) == 24);

} // namespace ephemera
