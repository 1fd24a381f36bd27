// Static mappings are made and ended by their owning worker, asked through its
// query ring. When the worker answers after the operator's command stopped
// waiting, the change must still complete exactly as the worker made it: a
// mapping the worker created gets published, one it refused frees its slot, a
// removal frees the slot only once the worker has ended the mapping. Here the
// test plays the worker: it answers the ring when it chooses.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include <rte_ring.h>

#include "../control/static_changes.hpp"
#include "../dataplane/worker_query.hpp"
#include "nat_harness.hpp"

namespace ephtest {
namespace {

using ephemera::Query;
using ephemera::StaticChanges;
using ephemera::StaticSlot;
using ephemera::StaticTable;
using ephemera::Translator;
using Status = StaticChanges::Status;
using Kind = StaticChanges::Kind;

constexpr uint16_t kExtPort = 8081; // outside the dynamic range 50000-50015
constexpr uint16_t kInPort = 8080;

class StaticChangesTest : public NatTest {
protected:
    StaticChangesTest()
        : nat(small_config()), table(8, 1, SOCKET_ID_ANY), ring(make_ring()),
          changes(table, {ring}, std::chrono::milliseconds(20)), prompt(table, {ring}, std::chrono::seconds(30))
    {
        nat.tr.set_statics(&table);
    }
    ~StaticChangesTest() override
    {
        stop_worker();
        answer_all(); // nothing left on the ring
        rte_ring_free(ring);
    }

    static rte_ring* make_ring()
    {
        static std::atomic<unsigned> serial{0};
        const std::string name = "static_changes_" + std::to_string(serial++);
        return rte_ring_create(name.c_str(), 2, SOCKET_ID_ANY, RING_F_EXACT_SZ | RING_F_SC_DEQ);
    }

    int32_t reserve()
    {
        StaticSlot s;
        s.pool_addr = net32(nat.cfg.pool[0]);
        s.in_addr = net32(kSub1);
        s.ext_port = kExtPort;
        s.in_port = kInPort;
        s.l4 = L4::Tcp;
        s.worker = 0;
        return table.reserve(s);
    }

    // What a worker does between bursts: answers every query on its ring.
    unsigned answer_all()
    {
        unsigned n = 0;
        void* p = nullptr;
        while (rte_ring_sc_dequeue(ring, &p) == 0) {
            auto* q = static_cast<Query*>(p);
            while (!ephemera::answer_query_step(nat.tr, *q, nat.now(), UINT32_MAX)) {
            }
            ephemera::finish_query(q);
            ++n;
        }
        return n;
    }
    // A worker answering promptly, on its own thread.
    void start_worker()
    {
        worker = std::thread([this] {
            while (!stop.load()) {
                answer_all();
                std::this_thread::yield();
            }
        });
    }
    void stop_worker()
    {
        stop = true;
        if (worker.joinable()) worker.join();
        stop = false;
    }

    int32_t forwarded_slot() const { return table.find(net32(nat.cfg.pool[0]), kExtPort, L4::Tcp); }
    uint32_t worker_mapping() const { return nat.tr.mapping_at(net32(nat.cfg.pool[0]), kExtPort, L4::Tcp); }

    // A published static mapping, made the prompt way.
    int32_t add_answered()
    {
        const int32_t slot = reserve();
        start_worker();
        Translator::StaticResult r = Translator::StaticResult::TableFull;
        const Status st = prompt.add(uint32_t(slot), r);
        stop_worker();
        EXPECT_EQ(st, Status::Done);
        EXPECT_EQ(r, Translator::StaticResult::Ok);
        return slot;
    }

    Nat nat;
    StaticTable table;
    rte_ring* ring;
    StaticChanges changes; // nobody answers in its 20 ms unless the test does
    StaticChanges prompt;  // waits for the worker thread, however loaded the machine
    std::thread worker;
    std::atomic<bool> stop{false};
};

TEST_F(StaticChangesTest, AddAnsweredInTimeIsPublishedWithTheWorkersMappingIndex)
{
    const int32_t slot = add_answered();
    EXPECT_EQ(forwarded_slot(), slot);
    ASSERT_NE(worker_mapping(), ephemera::kNoMapping);
    EXPECT_EQ(table.slot(uint32_t(slot)).mapping, worker_mapping());
    EXPECT_EQ(prompt.in_flight_count(), 0u);
}

TEST_F(StaticChangesTest, AddAnsweredLateIsPublishedWhenTheWorkerAnswers)
{
    const int32_t slot = reserve();
    Translator::StaticResult r = Translator::StaticResult::Ok;
    ASSERT_EQ(changes.add(uint32_t(slot), r), Status::InFlight);
    EXPECT_EQ(changes.in_flight(uint32_t(slot)), Kind::Adding);
    EXPECT_EQ(forwarded_slot(), -1) << "not forwarded before the worker has made the mapping";
    EXPECT_EQ(table.slot_of(net32(nat.cfg.pool[0]), kExtPort, L4::Tcp), slot)
        << "the external endpoint stays taken meanwhile";

    changes.settle();
    EXPECT_EQ(changes.in_flight(uint32_t(slot)), Kind::Adding) << "nothing to settle before the answer";

    ASSERT_EQ(answer_all(), 1u);
    std::vector<std::pair<Kind, Translator::StaticResult>> late;
    changes.settle([&](uint32_t s, Kind k, Translator::StaticResult res) {
        EXPECT_EQ(s, uint32_t(slot));
        late.emplace_back(k, res);
    });
    ASSERT_EQ(late.size(), 1u);
    EXPECT_EQ(late[0].first, Kind::Adding);
    EXPECT_EQ(late[0].second, Translator::StaticResult::Ok);
    EXPECT_EQ(changes.in_flight(uint32_t(slot)), Kind::None);
    EXPECT_EQ(forwarded_slot(), slot);
    ASSERT_NE(worker_mapping(), ephemera::kNoMapping);
    EXPECT_EQ(table.slot(uint32_t(slot)).mapping, worker_mapping())
        << "the slot must name the mapping the worker made, not a default index";
}

TEST_F(StaticChangesTest, AddRefusedLateFreesTheSlot)
{
    nat.open_udp(kSub1, kInPort); // a UDP mapping does not stand in the way of TCP...
    ASSERT_TRUE(forwarded(nat.out(tcp_packet(kSub1, kInPort, kRemote1, 443, kSyn))))
        << "...but a dynamic TCP mapping of the same inside endpoint does";
    const int32_t slot = reserve();
    Translator::StaticResult r = Translator::StaticResult::Ok;
    ASSERT_EQ(changes.add(uint32_t(slot), r), Status::InFlight);
    ASSERT_EQ(answer_all(), 1u);
    Translator::StaticResult seen = Translator::StaticResult::Ok;
    changes.settle([&](uint32_t, Kind, Translator::StaticResult res) { seen = res; });
    EXPECT_EQ(seen, Translator::StaticResult::InsideTaken);
    EXPECT_EQ(table.slot_of(net32(nat.cfg.pool[0]), kExtPort, L4::Tcp), -1) << "the slot is free again";
    EXPECT_EQ(forwarded_slot(), -1);
    EXPECT_EQ(table.size(), 0u);
}

TEST_F(StaticChangesTest, RemoveAnsweredLateStopsForwardingAtOnceAndFreesTheSlotWhenTheWorkerAnswers)
{
    const int32_t slot = add_answered();
    const uint32_t mapping = table.slot(uint32_t(slot)).mapping;
    ASSERT_EQ(changes.remove(uint32_t(slot)), Status::InFlight);
    EXPECT_EQ(forwarded_slot(), -1) << "no longer forwarded";
    EXPECT_EQ(changes.in_flight(uint32_t(slot)), Kind::Removing);
    EXPECT_EQ(table.slot_of(net32(nat.cfg.pool[0]), kExtPort, L4::Tcp), slot)
        << "the external endpoint is not free while the worker still holds its mapping";
    EXPECT_TRUE(nat.tr.table().mapping(mapping).live);

    ASSERT_EQ(answer_all(), 1u);
    changes.settle();
    EXPECT_FALSE(nat.tr.table().mapping(mapping).live);
    EXPECT_EQ(table.slot_of(net32(nat.cfg.pool[0]), kExtPort, L4::Tcp), -1);
    EXPECT_EQ(changes.in_flight_count(), 0u);
}

TEST_F(StaticChangesTest, FullQueryRingChangesNothing)
{
    int dummy = 0;
    void* filler[2] = {&dummy, &dummy};
    const int32_t published = add_answered();
    ASSERT_EQ(rte_ring_enqueue_bulk(ring, filler, 2, nullptr), 2u);

    EXPECT_EQ(changes.remove(uint32_t(published)), Status::NotPosted);
    EXPECT_EQ(forwarded_slot(), published) << "still forwarded";

    StaticSlot other;
    other.pool_addr = net32(nat.cfg.pool[0]);
    other.in_addr = net32(kSub1);
    other.ext_port = kExtPort + 1;
    other.in_port = kInPort + 1;
    other.l4 = L4::Tcp;
    const int32_t slot = table.reserve(other);
    Translator::StaticResult r = Translator::StaticResult::Ok;
    EXPECT_EQ(changes.add(uint32_t(slot), r), Status::NotPosted);
    EXPECT_EQ(table.slot_of(other.pool_addr, other.ext_port, L4::Tcp), -1) << "its slot is released";
    EXPECT_EQ(changes.in_flight_count(), 0u);

    void* p = nullptr;
    while (rte_ring_sc_dequeue(ring, &p) == 0) {
    }
}

} // namespace
} // namespace ephtest
