// Questions the control plane asks a worker about its tables (ephemeractl
// sessions, mappings, ports, lookup). The telemetry thread posts a Query on
// the worker's query ring and waits; the worker answers between bursts, a
// bounded slice of its table per loop, into rows the asker reserved (no
// allocation on the worker). Whoever finishes last frees the query, so an
// asker that gave up waiting never leaves the worker a dangling pointer.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include "ephemera/translator.hpp"

namespace ephemera {

struct QueryRow {
    uint32_t in_addr, ext_addr, remote_addr; // network order
    uint16_t in_port, ext_port, remote_port; // network order
    uint8_t l4;
    uint8_t tcp;        // TcpSeen bits of the session
    uint16_t worker;
    uint32_t expires_in; // seconds; 0 for a static mapping, which never expires
    uint32_t sessions;   // sessions of the mapping
    enum class Kind : uint8_t { Dynamic, Static, Pcp } kind; // of the mapping
};

struct PortUse {
    uint32_t pool_addr; // network order
    uint8_t l4;
    uint16_t worker;
    uint32_t free, quarantined, in_use;
};

struct Query {
    // StaticAdd/StaticDel: the control plane has the worker create or end a
    // static mapping (the worker stays its table's only writer). SetTimeouts:
    // the worker takes new timeouts for what it refreshes from then on.
    enum class Kind : uint8_t { Mappings, Sessions, Ports, StaticAdd, StaticDel, SetTimeouts };
    enum State : int { Pending = 0, Done = 1, Abandoned = 2 };

    Kind kind = Kind::Mappings;
    // Filters (0 / 0xff: any), network order.
    uint32_t inside_addr = 0, pool_addr = 0;
    uint16_t ext_port = 0;
    uint8_t l4 = 0xff;
    uint32_t limit = 100;
    // Kind::Ports: one row per protocol, summed over the pool (pool_addr 0),
    // instead of one per pool address and protocol.
    bool sum_over_pool = false;

    std::vector<QueryRow> rows;   // reserved to `limit` by the asker
    std::vector<PortUse> ports;   // Kind::Ports: filled up to the capacity the asker reserved
    uint64_t matched = 0;         // matches seen, beyond `limit` too
    uint32_t cursor = 0;          // worker's progress through its table
    uint32_t static_slot = 0;     // StaticAdd: the StaticTable slot describing it
    uint32_t mapping = 0;         // StaticAdd: the index made; StaticDel: the index to end
    Translator::StaticResult static_result = Translator::StaticResult::Ok;
    Timeouts timeouts{};          // SetTimeouts
    std::atomic<int> state{Pending};
};

// One slice of work on q by the worker owning `nat`. True when q is complete.
bool answer_query_step(Translator& nat, Query& q, Tick now, uint32_t slice);

// Control side: true once the worker has answered q (or q was abandoned).
inline bool answered(const Query& q) { return q.state.load(std::memory_order_acquire) != Query::Pending; }

// Control side: waits (polling) until q is answered or `deadline` passes;
// true when answered. The query stays the asker's either way.
inline bool wait_until_answered(const Query& q, std::chrono::steady_clock::time_point deadline)
{
    while (!answered(q) && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    return answered(q);
}

// Worker side, after answer_query_step() returned true: publishes or frees.
inline void finish_query(Query* q)
{
    int expected = Query::Pending;
    if (!q->state.compare_exchange_strong(expected, Query::Done, std::memory_order_acq_rel)) delete q; // abandoned
}

} // namespace ephemera
