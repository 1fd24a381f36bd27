// Mapping create/delete events, for the abuse-tracing log (RFC 6888 REQ-12:
// who held pool-addr:port when; no destination). Workers put them on a ring to
// the control plane; a full ring is counted, never waited on.
#pragma once

#include <cstdint>

namespace ephemera {

enum class MappingEventType : uint8_t { Create = 1, Delete = 2 };

struct MappingEvent {
    uint64_t time_ms;   // Unix time in milliseconds
    uint32_t in_addr;   // network order
    uint32_t ext_addr;  // network order
    uint16_t in_port;   // network order
    uint16_t ext_port;  // network order
    uint8_t l4;         // L4
    uint8_t type;       // MappingEventType
    uint16_t worker;
};
static_assert(sizeof(MappingEvent) == 24);

} // namespace ephemera
