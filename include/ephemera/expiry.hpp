// Expiry off the fast path. The control plane scans a worker's mapping table
// (reading only the published `live` and `expires` fields) and sends the
// indices it finds expired down a command ring; the owning worker drains the
// ring between bursts and re-checks each one with its own clock before it
// releases anything. So the worker stays the only writer of its tables, never
// waits for the control plane, and a stale candidate (refreshed, or replaced
// by a new mapping at the same index) is simply left alone.
#pragma once

#include <cstdint>
#include <string>

#include "ephemera/clock.hpp"

struct rte_ring;

namespace ephemera {

class Translator;

// A single-producer/single-consumer ring of mapping indices (4 bytes each).
rte_ring* create_expiry_ring(const std::string& name, unsigned size, int socket);

class ExpiryScanner {
public:
    ExpiryScanner(const Translator& nat, rte_ring* commands) : nat_(nat), commands_(commands) {}

    // Looks at up to `budget` mapping slots from a rolling cursor and queues
    // the expired ones. Stops early, at the same slot, when the ring is full.
    // Returns how many commands it queued.
    uint32_t scan(Tick now, uint32_t budget);

    uint64_t queued() const { return queued_; }
    uint64_t ring_full() const { return ring_full_; }
    uint64_t passes() const { return passes_; } // complete passes over the table

private:
    const Translator& nat_;
    rte_ring* commands_;
    uint32_t cursor_ = 0;
    uint64_t queued_ = 0, ring_full_ = 0, passes_ = 0;
};

// Worker side: carries out up to `max` queued commands. Returns mappings released.
uint32_t drain_expiry_commands(Translator& nat, rte_ring* commands, unsigned max, Tick now);

} // namespace ephemera
