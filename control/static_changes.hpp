// Static mappings are made and ended by the worker that owns them (its table
// has one writer), on the control plane's request through the worker's query
// ring. A worker busy with traffic may answer after the operator's command has
// stopped waiting; then the change stays here, in flight, until the answer
// comes, and is completed from it: the slot is published or released exactly
// as the worker's table says. Abandoning such a query instead would leave a
// reserved slot with no mapping index, or a mapping the table never learnt of.
//
// Not thread-safe: the caller serialises commands (one writer of the table).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <vector>

#include "ephemera/static_table.hpp"
#include "ephemera/translator.hpp"

struct rte_ring;

namespace ephemera {

struct Query;

class StaticChanges {
public:
    enum class Status {
        Done,      // the worker answered in time; the change is complete
        InFlight,  // not answered yet: completed by a later settle()
        NotPosted, // the worker's query ring is full; nothing changed
    };
    enum class Kind : uint8_t { None, Adding, Removing };

    // queries[w]: worker w's query ring. `wait`: how long a command waits.
    StaticChanges(StaticTable& table, std::vector<rte_ring*> queries, std::chrono::milliseconds wait);
    ~StaticChanges();
    StaticChanges(const StaticChanges&) = delete;
    StaticChanges& operator=(const StaticChanges&) = delete;

    // Has the owner of reserved slot `slot` create its mapping; when done,
    // `result` says how it went and the slot is published (Ok) or released.
    Status add(uint32_t slot, Translator::StaticResult& result);
    // Withdraws published slot `slot` and has its owner end the mapping;
    // the slot is released when the owner has done so.
    Status remove(uint32_t slot);

    // Completes every change whose worker has answered since. `late` is told
    // of each, before a released slot can be reused (for the daemon's log).
    using Late = std::function<void(uint32_t slot, Kind, Translator::StaticResult)>;
    void settle(const Late& late = {});

    Kind in_flight(uint32_t slot) const;
    size_t in_flight_count() const { return flight_.size(); }

private:
    struct Flight {
        Query* query;
        uint32_t slot;
        Kind kind;
    };
    bool post(uint32_t worker, Query* q);
    Status await(const Flight& f, Translator::StaticResult* result);
    void complete(const Flight& f);

    StaticTable& table_;
    std::vector<rte_ring*> queries_;
    std::chrono::milliseconds wait_;
    std::vector<Flight> flight_;
};

} // namespace ephemera
