#include "static_changes.hpp"

#include <rte_ring.h>

#include "../dataplane/worker_query.hpp"

namespace ephemera {

StaticChanges::StaticChanges(StaticTable& table, std::vector<rte_ring*> queries, std::chrono::milliseconds wait)
    : table_(table), queries_(std::move(queries)), wait_(wait)
{
}

StaticChanges::~StaticChanges()
{
    // The daemon destroys this after its workers stopped, and a stopping
    // worker answers every query left on its ring: none is still being read.
    for (const Flight& f : flight_) delete f.query;
}

bool StaticChanges::post(uint32_t worker, Query* q)
{
    if (worker >= queries_.size() || rte_ring_mp_enqueue(queries_[worker], q) != 0) {
        delete q;
        return false;
    }
    return true;
}

void StaticChanges::complete(const Flight& f)
{
    if (f.kind == Kind::Removing) {
        table_.release(f.slot);
        return;
    }
    if (f.query->static_result != Translator::StaticResult::Ok) {
        table_.release(f.slot);
        return;
    }
    table_.set_mapping(f.slot, f.query->mapping);
    // Cannot be refused: the slot was reserved after slot_of() found no other
    // slot for its external endpoint, and reserved slots count for slot_of().
    table_.publish(f.slot);
}

StaticChanges::Status StaticChanges::add(uint32_t slot, Translator::StaticResult& result)
{
    auto* q = new Query();
    q->kind = Query::Kind::StaticAdd;
    q->static_slot = slot;
    if (!post(table_.slot(slot).worker, q)) {
        table_.release(slot);
        return Status::NotPosted;
    }
    return await(Flight{q, slot, Kind::Adding}, &result);
}

StaticChanges::Status StaticChanges::remove(uint32_t slot)
{
    auto* q = new Query();
    q->kind = Query::Kind::StaticDel;
    q->mapping = table_.slot(slot).mapping;
    table_.unpublish(slot); // returns once no worker can still find it
    if (!post(table_.slot(slot).worker, q)) {
        table_.publish(slot); // nothing changed: it forwards as before
        return Status::NotPosted;
    }
    return await(Flight{q, slot, Kind::Removing}, nullptr);
}

StaticChanges::Status StaticChanges::await(const Flight& f, Translator::StaticResult* result)
{
    // Never abandoned: the query stays ours, whenever the worker answers.
    if (!wait_until_answered(*f.query, std::chrono::steady_clock::now() + wait_)) {
        flight_.push_back(f);
        return Status::InFlight;
    }
    if (result) *result = f.query->static_result;
    complete(f);
    delete f.query;
    return Status::Done;
}

void StaticChanges::settle(const Late& late)
{
    for (size_t i = 0; i < flight_.size();) {
        const Flight f = flight_[i];
        if (!answered(*f.query)) {
            ++i;
            continue;
        }
        if (late) late(f.slot, f.kind, f.query->static_result);
        complete(f);
        delete f.query;
        flight_.erase(flight_.begin() + std::ptrdiff_t(i));
    }
}

StaticChanges::Kind StaticChanges::in_flight(uint32_t slot) const
{
    for (const Flight& f : flight_)
        if (f.slot == slot) return f.kind;
    return Kind::None;
}

} // namespace ephemera
