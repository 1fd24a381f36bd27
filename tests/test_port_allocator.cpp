// External port allocation seen through packets: the per-worker blocks, the
// FIFO of free ports, quarantine, exhaustion and parity. The partition is
// small (50000-50015) so whole-partition behaviour is visible.
#include <algorithm>
#include <set>
#include <vector>

#include <gtest/gtest.h>

#include "nat_harness.hpp"

namespace ephtest {
namespace {

using ephemera::kNoMapping;
using ephemera::NatConfig;
using ephemera::PortLayout;
using ephemera::PortRange;

using PortAllocation = NatTest;

constexpr uint16_t kFirst = 50000;
constexpr uint32_t kSize = 16;

// ------------------------------------------------------------------ layout

TEST(PortLayoutSplit, ContiguousBlocksFirstWorkersGetTheRemainder)
{
    const PortLayout l(PortRange{50000, 50009}, 3); // 10 ports: 4, 3, 3
    ASSERT_EQ(l.workers(), 3u);
    EXPECT_EQ(l.first_of(0), 50000);
    EXPECT_EQ(l.size_of(0), 4u);
    EXPECT_EQ(l.first_of(1), 50004);
    EXPECT_EQ(l.size_of(1), 3u);
    EXPECT_EQ(l.first_of(2), 50007);
    EXPECT_EQ(l.size_of(2), 3u);
    for (uint16_t p = 50000; p <= 50009; ++p) EXPECT_EQ(l.owner_of(p), p < 50004 ? 0u : p < 50007 ? 1u : 2u) << p;
    EXPECT_FALSE(l.in_range(49999));
    EXPECT_FALSE(l.in_range(50010));
}

TEST(PortLayoutSplit, WholeCgnRangeCoversEveryPortOnce)
{
    const PortRange r{1024, 65535};
    for (unsigned workers : {1u, 2u, 5u, 7u, 16u}) {
        const PortLayout l(r, workers);
        uint32_t total = 0;
        uint32_t expected_next = r.first;
        for (unsigned w = 0; w < workers; ++w) {
            const uint32_t want = r.size() / workers + (w < r.size() % workers ? 1 : 0);
            EXPECT_EQ(l.size_of(w), want) << workers << " workers, worker " << w;
            EXPECT_EQ(l.first_of(w), expected_next) << workers << " workers, worker " << w;
            EXPECT_EQ(l.owner_of(l.first_of(w)), w);
            EXPECT_EQ(l.owner_of(uint16_t(l.first_of(w) + l.size_of(w) - 1)), w);
            expected_next += l.size_of(w);
            total += l.size_of(w);
        }
        EXPECT_EQ(total, r.size());
    }
}

// ---------------------------------------------------------- worker blocks

TEST_F(PortAllocation, WorkerAllocatesOnlyFromItsOwnBlock)
{
    NatConfig c = small_config();
    c.workers = 3;
    c.ports = {50000, 50009}; // worker 1 owns 50004-50006
    Nat nat(c, 1);
    EXPECT_EQ(nat.open_udp(kSub1, 1000), 50004);
    EXPECT_EQ(nat.open_udp(kSub1, 1001), 50005);
    EXPECT_EQ(nat.open_udp(kSub1, 1002), 50006);
    EXPECT_TRUE(dropped(nat.out(udp_packet(kSub1, 1003, kRemote1, 5000)), Drop::PortsExhausted))
        << "worker 1 must not take ports of another worker's block";
    EXPECT_EQ(nat.tr.stats().drop(Dir::Out, Drop::PortsExhausted), 1u);
}

TEST_F(PortAllocation, InboundToAnotherWorkersBlockIsWrongWorker)
{
    NatConfig c = small_config();
    c.workers = 3;
    c.ports = {50000, 50009};
    Nat nat(c, 1);
    const uint32_t pool = c.pool[0];
    ASSERT_EQ(nat.open_udp(kSub1, 1000), 50004);
    EXPECT_TRUE(dropped(nat.in(udp_packet(kRemote1, 5000, pool, 50000)), Drop::WrongWorker));
    EXPECT_TRUE(dropped(nat.in(udp_packet(kRemote1, 5000, pool, 50003)), Drop::WrongWorker));
    EXPECT_TRUE(dropped(nat.in(udp_packet(kRemote1, 5000, pool, 50009)), Drop::WrongWorker));
    EXPECT_TRUE(dropped(nat.in(tcp_packet(kRemote1, 5000, pool, 50007, kSyn | kAck)), Drop::WrongWorker));
    // Its own block, but no mapping there.
    EXPECT_TRUE(dropped(nat.in(udp_packet(kRemote1, 5000, pool, 50006)), Drop::NoMapping));
    // Outside the range, or not a pool address at all.
    EXPECT_TRUE(dropped(nat.in(udp_packet(kRemote1, 5000, pool, 49999)), Drop::NoMapping));
    EXPECT_TRUE(dropped(nat.in(udp_packet(kRemote1, 5000, pool, 50010)), Drop::NoMapping));
    EXPECT_TRUE(dropped(nat.in(udp_packet(kRemote1, 5000, ip(198, 51, 100, 99), 50004)), Drop::NoMapping));
    // The mapped one passes.
    EXPECT_TRUE(forwarded(nat.in(udp_packet(kRemote1, 5000, pool, 50004))));
}

TEST_F(PortAllocation, TwoWorkersSideBySideUseDisjointBlocks)
{
    NatConfig c = small_config();
    c.workers = 2; // worker 0: 50000-50007, worker 1: 50008-50015
    Nat w0(c, 0), w1(c, 1);
    std::set<uint16_t> p0, p1;
    for (uint16_t i = 0; i < 8; ++i) {
        p0.insert(w0.open_udp(kSub1, uint16_t(1000 + i)));
        p1.insert(w1.open_udp(kSub2, uint16_t(1000 + i)));
    }
    EXPECT_EQ(p0, (std::set<uint16_t>{50000, 50001, 50002, 50003, 50004, 50005, 50006, 50007}));
    EXPECT_EQ(p1, (std::set<uint16_t>{50008, 50009, 50010, 50011, 50012, 50013, 50014, 50015}));
    // Each answers for its own block only.
    EXPECT_TRUE(forwarded(w1.in(udp_packet(kRemote1, 5000, c.pool[0], 50008))));
    EXPECT_TRUE(dropped(w0.in(udp_packet(kRemote1, 5000, c.pool[0], 50008)), Drop::WrongWorker));
    EXPECT_TRUE(dropped(w1.in(udp_packet(kRemote1, 5000, c.pool[0], 50000)), Drop::WrongWorker));
}

// ------------------------------------------------------------------- FIFO

TEST_F(PortAllocation, InitialOrderIsAscendingWhenNotRandomized)
{
    Nat nat(small_config());
    for (uint32_t i = 0; i < kSize; ++i) EXPECT_EQ(nat.open_udp(kSub1, uint16_t(10000 + i)), kFirst + i);
    EXPECT_TRUE(nat.partition_consistent(0, L4::Udp));
    EXPECT_EQ(nat.tr.partition(0, L4::Udp).in_use_count(), kSize);
    EXPECT_EQ(nat.tr.partition(0, L4::Udp).free_count(), 0u);
}

TEST_F(PortAllocation, Rfc7857Sec9_RandomizedOrderIsASeededPermutationOfTheBlock)
{
    NatConfig c = small_config();
    c.randomize_ports = true;
    c.port_seed = 12345;
    std::vector<uint16_t> first_run, second_run;
    for (auto* run : {&first_run, &second_run}) {
        Nat nat(c);
        for (uint32_t i = 0; i < kSize; ++i) run->push_back(nat.open_udp(kSub1, uint16_t(10000 + i)));
    }
    EXPECT_EQ(first_run, second_run) << "same seed, same order";
    EXPECT_FALSE(std::is_sorted(first_run.begin(), first_run.end())) << "randomized order is ascending";
    std::vector<uint16_t> sorted = first_run;
    std::sort(sorted.begin(), sorted.end());
    for (uint32_t i = 0; i < kSize; ++i) EXPECT_EQ(sorted[i], kFirst + i) << "not a permutation of the block";
}

TEST_F(PortAllocation, FifoReuseFollowsReleaseOrderAfterQuarantine)
{
    Nat nat(small_config());
    std::vector<uint32_t> idx(kSize);
    for (uint32_t i = 0; i < kSize; ++i) {
        ASSERT_EQ(nat.open_udp(kSub1, uint16_t(10000 + i)), kFirst + i);
        idx[i] = nat.mapping_of(kSub1, uint16_t(10000 + i), L4::Udp);
        ASSERT_NE(idx[i], kNoMapping);
    }
    // Release in a scrambled order, one second apart.
    const std::vector<uint32_t> order = {5, 12, 0, 15, 3, 9, 1, 14, 7, 2, 11, 6, 13, 4, 10, 8};
    for (uint32_t i : order) {
        nat.tr.release_mapping(idx[i], nat.now());
        EXPECT_TRUE(nat.partition_consistent(0, L4::Udp));
        nat.advance(1);
    }
    EXPECT_EQ(nat.mapping_of(kSub1, 10005, L4::Udp), kNoMapping);
    const Tick last_release = nat.now() - 1;
    nat.set_time(last_quarantined(last_release, nat.cfg.timeouts.quarantine));
    EXPECT_TRUE(nat.partition_consistent(0, L4::Udp));
    EXPECT_EQ(nat.tr.partition(0, L4::Udp).free_count(), kSize - 1) << "the last port released left quarantine early";
    nat.set_time(free_at(last_release, nat.cfg.timeouts.quarantine)); // every quarantine over
    EXPECT_TRUE(nat.partition_consistent(0, L4::Udp));
    EXPECT_EQ(nat.tr.partition(0, L4::Udp).free_count(), kSize);
    for (uint32_t k = 0; k < kSize; ++k)
        EXPECT_EQ(nat.open_udp(kSub2, uint16_t(20000 + k)), kFirst + order[k]) << "allocation " << k;
}

TEST_F(PortAllocation, FreedPortComesBackOnlyAfterAllOthers)
{
    Nat nat(small_config());
    ASSERT_EQ(nat.open_udp(kSub1, 10000), kFirst);
    const Tick released = nat.now();
    nat.tr.release_mapping(nat.mapping_of(kSub1, 10000, L4::Udp), released);
    nat.set_time(last_quarantined(released, nat.cfg.timeouts.quarantine));
    EXPECT_TRUE(nat.partition_consistent(0, L4::Udp));
    EXPECT_EQ(nat.tr.partition(0, L4::Udp).quarantined_count(), 1u);
    nat.set_time(free_at(released, nat.cfg.timeouts.quarantine));
    EXPECT_TRUE(nat.partition_consistent(0, L4::Udp));
    EXPECT_EQ(nat.tr.partition(0, L4::Udp).quarantined_count(), 0u);
    for (uint32_t k = 1; k < kSize; ++k) EXPECT_EQ(nat.open_udp(kSub2, uint16_t(20000 + k)), kFirst + k);
    EXPECT_EQ(nat.open_udp(kSub2, 30000), kFirst) << "the freed port is the last one handed out again";
    EXPECT_TRUE(nat.partition_consistent(0, L4::Udp));
}

TEST_F(PortAllocation, Rfc6888Req8_QuarantineHoldsEvenTheOnlyFreePort)
{
    Nat nat(small_config());
    for (uint32_t i = 0; i < kSize; ++i) ASSERT_EQ(nat.open_udp(kSub1, uint16_t(10000 + i)), kFirst + i);
    const Tick released = nat.now();
    nat.tr.release_mapping(nat.mapping_of(kSub1, 10007, L4::Udp), released);
    EXPECT_TRUE(nat.partition_consistent(0, L4::Udp));
    EXPECT_EQ(nat.tr.partition(0, L4::Udp).quarantined_count(), 1u);
    EXPECT_EQ(nat.tr.partition(0, L4::Udp).free_count(), 0u);
    EXPECT_EQ(nat.tr.partition(0, L4::Udp).in_use_count(), kSize - 1);

    const Tick q = nat.cfg.timeouts.quarantine;
    for (Tick t : {released, released + 1, released + 60, last_quarantined(released, q)}) {
        nat.set_time(t);
        EXPECT_TRUE(dropped(nat.out(udp_packet(kSub2, 20000, kRemote1, 5000)), Drop::PortsExhausted))
            << "port reused " << t - released << " s after release, quarantine " << q;
    }
    nat.set_time(free_at(released, q));
    EXPECT_EQ(nat.open_udp(kSub2, 20000), 50007);
    EXPECT_TRUE(nat.partition_consistent(0, L4::Udp));
}

TEST_F(PortAllocation, QuarantineZeroReusesAtOnce)
{
    NatConfig c = small_config();
    c.timeouts.quarantine = 0;
    Nat nat(c);
    for (uint32_t i = 0; i < kSize; ++i) ASSERT_EQ(nat.open_udp(kSub1, uint16_t(10000 + i)), kFirst + i);
    nat.tr.release_mapping(nat.mapping_of(kSub1, 10003, L4::Udp), nat.now());
    EXPECT_EQ(nat.open_udp(kSub2, 20000), 50003);
    EXPECT_TRUE(nat.partition_consistent(0, L4::Udp));
}

// -------------------------------------------------------------- exhaustion

TEST_F(PortAllocation, Rfc6888Req11_ExhaustionDropsCountsAndKeepsLiveMappings)
{
    Nat nat(small_config());
    std::vector<uint16_t> ext(kSize);
    for (uint32_t i = 0; i < kSize; ++i) ext[i] = nat.open_udp(kSub1, uint16_t(10000 + i));
    for (int k = 0; k < 3; ++k)
        EXPECT_TRUE(dropped(nat.out(udp_packet(kSub2, uint16_t(20000 + k), kRemote1, 5000)), Drop::PortsExhausted));
    EXPECT_EQ(nat.tr.stats().drop(Dir::Out, Drop::PortsExhausted), 3u);
    EXPECT_EQ(nat.mapping_of(kSub2, 20000, L4::Udp), kNoMapping) << "a mapping was made without a port";
    EXPECT_TRUE(nat.partition_consistent(0, L4::Udp));
    // No live mapping was taken away or changed; each still works both ways.
    for (uint32_t i = 0; i < kSize; ++i) {
        const uint16_t x = uint16_t(10000 + i);
        EXPECT_EQ(nat.ext_port_of(kSub1, x, L4::Udp), ext[i]);
        const Outcome o = nat.out(udp_packet(kSub1, x, kRemote1, 5000));
        ASSERT_TRUE(forwarded(o));
        EXPECT_EQ(o.parsed().sport, ext[i]);
        const Outcome back = nat.in(udp_packet(kRemote1, 5000, nat.cfg.pool[0], ext[i]));
        ASSERT_TRUE(forwarded(back));
        EXPECT_EQ(back.parsed().dport, x);
        EXPECT_EQ(back.parsed().dst, kSub1);
    }
    // Other protocols have their own ports.
    EXPECT_TRUE(forwarded(nat.out(tcp_packet(kSub2, 20000, kRemote1, 80, kSyn))));
}

// RFC 4787 REQ-11: mapping and filtering behave the same when ports run out.
TEST_F(PortAllocation, Rfc4787Req11_MappingAndFilteringStayTheSameAtExhaustion)
{
    Nat nat(small_config()); // endpoint-independent filtering
    const uint16_t x1 = nat.open_udp(kSub1, 9000, kRemote1, 5000);
    ASSERT_NE(x1, 0);
    for (uint32_t i = 1; i < kSize; ++i) ASSERT_NE(nat.open_udp(kSub2, uint16_t(10000 + i)), 0);
    ASSERT_TRUE(dropped(nat.out(udp_packet(kSub2, 30000, kRemote1, 5000)), Drop::PortsExhausted));
    // EIM (REQ-1): new destinations still leave from the same external endpoint.
    for (uint32_t remote : {kRemote1, kRemote2})
        for (uint16_t rport : {uint16_t(5000), uint16_t(6000)}) {
            const Outcome o = nat.out(udp_packet(kSub1, 9000, remote, rport));
            ASSERT_TRUE(forwarded(o));
            EXPECT_EQ(o.parsed().sport, x1);
        }
    // EIF (REQ-8): a remote X never sent to is still let in.
    const Outcome in = nat.in(udp_packet(ip(203, 0, 113, 77), 4444, nat.cfg.pool[0], x1));
    ASSERT_TRUE(forwarded(in));
    EXPECT_EQ(in.parsed().dst, kSub1);
}

TEST_F(PortAllocation, Rfc7857Sec4_ExhaustedPairedAddressDoesNotSpillOver)
{
    NatConfig c = small_config();
    c.pool = {ip(198, 51, 100, 1), ip(198, 51, 100, 2)};
    Nat nat(c);
    const uint32_t a0 = nat.subscriber_paired_with(0, 0), b0 = nat.subscriber_paired_with(0, 1);
    const uint32_t a1 = nat.subscriber_paired_with(1, 0);
    for (uint32_t i = 0; i < kSize; ++i) ASSERT_NE(nat.open_udp(a0, uint16_t(10000 + i)), 0);
    const Outcome o = nat.out(udp_packet(b0, 20000, kRemote1, 5000));
    EXPECT_TRUE(dropped(o, Drop::PortsExhausted)) << "the flow went out from another pool address";
    // A subscriber of the other pool address is unaffected.
    const Outcome other = nat.out(udp_packet(a1, 20000, kRemote1, 5000));
    ASSERT_TRUE(forwarded(other));
    EXPECT_EQ(other.parsed().src, c.pool[1]);
}

// ------------------------------------------------------------------ parity

TEST_F(PortAllocation, Rfc4787Req4_PortParityPreserved)
{
    NatConfig c = small_config();
    c.port_parity = true;
    Nat nat(c);
    std::set<uint16_t> seen;
    for (uint16_t x : {40001, 40002, 40003, 40004, 40006, 40011, 40013, 40020}) {
        const uint16_t e = nat.open_udp(kSub1, x);
        ASSERT_NE(e, 0);
        EXPECT_EQ(e % 2, x % 2) << "inside " << x << " left as " << e;
        EXPECT_TRUE(seen.insert(e).second) << "port " << e << " handed out twice";
        EXPECT_TRUE(e >= kFirst && e < kFirst + kSize);
    }
    EXPECT_EQ(nat.tr.stats().parity_fallbacks, 0u);
    EXPECT_TRUE(nat.partition_consistent(0, L4::Udp));
}

TEST_F(PortAllocation, Rfc4787Req4_ParityFallsBackWhenOneParityIsExhausted)
{
    NatConfig c = small_config();
    c.port_parity = true;
    Nat nat(c);
    for (uint16_t k = 0; k < 8; ++k) {
        const uint16_t e = nat.open_udp(kSub1, uint16_t(40000 + 2 * k)); // even inside ports
        EXPECT_EQ(e % 2, 0) << e;
    }
    EXPECT_EQ(nat.tr.stats().parity_fallbacks, 0u);
    const uint16_t e9 = nat.open_udp(kSub1, 40100); // even, but no even port left
    ASSERT_NE(e9, 0) << "parity exhaustion must fall back, not drop";
    EXPECT_EQ(e9 % 2, 1);
    EXPECT_EQ(nat.tr.stats().parity_fallbacks, 1u);
    const uint16_t odd = nat.open_udp(kSub1, 40101);
    EXPECT_EQ(odd % 2, 1);
    EXPECT_EQ(nat.tr.stats().parity_fallbacks, 1u) << "an odd port for an odd inside port is no fallback";
    EXPECT_TRUE(nat.partition_consistent(0, L4::Udp));
}

// ------------------------------------------------------------------ port preservation

NatConfig preserving()
{
    NatConfig c = small_config();
    c.port_preservation = true;
    return c;
}

TEST_F(PortAllocation, PortPreservation_TheInsidePortIsKeptWhenItIsFreeInThePartition)
{
    Nat nat(preserving());
    EXPECT_EQ(nat.open_udp(kSub1, 50007), 50007);
    EXPECT_EQ(nat.open_udp(kSub1, 50012), 50012);
    EXPECT_EQ(nat.tr.stats().ports_preserved, 2u);
    EXPECT_TRUE(nat.partition_consistent(0, L4::Udp));
}

TEST_F(PortAllocation, PortPreservation_OtherwiseTheFifoDecides)
{
    Nat nat(preserving());
    EXPECT_EQ(nat.open_udp(kSub1, 40000), kFirst) << "outside the partition: the oldest free port";
    EXPECT_EQ(nat.open_udp(kSub1, 50001), 50001);
    EXPECT_EQ(nat.open_udp(kSub2, 50001), kFirst + 2) << "RFC 4787 REQ-3: held by another, never shared";
    EXPECT_EQ(nat.tr.stats().ports_preserved, 1u);
    EXPECT_TRUE(nat.partition_consistent(0, L4::Udp));
}

TEST_F(PortAllocation, PortPreservation_Rfc6888Req8_AQuarantinedPortIsNotPreserved)
{
    Nat nat(preserving());
    ASSERT_EQ(nat.open_udp(kSub1, 50009), 50009);
    const Tick released = nat.now();
    nat.tr.release_mapping(nat.mapping_of(kSub1, 50009, L4::Udp), released);
    nat.set_time(last_quarantined(released, nat.cfg.timeouts.quarantine));
    EXPECT_NE(nat.open_udp(kSub2, 50009), 50009) << "another subscriber within the quarantine";
    nat.set_time(free_at(released, nat.cfg.timeouts.quarantine));
    EXPECT_EQ(nat.open_udp(ip(100, 64, 0, 4), 50009), 50009) << "free again after it";
    EXPECT_TRUE(nat.partition_consistent(0, L4::Udp));
}

TEST_F(PortAllocation, PortPreservation_EveryPortIsStillHandedOutOnce)
{
    // Preserved ports taken out of the middle of the FIFO: the rest still come
    // out of it, each once, until the partition is exhausted.
    Nat nat(preserving());
    std::set<uint16_t> seen;
    for (uint16_t x : {50003, 50015, 50000, 40000, 40001, 50010, 40002}) {
        const uint16_t e = nat.open_udp(kSub1, x);
        ASSERT_NE(e, 0);
        EXPECT_TRUE(seen.insert(e).second) << e << " handed out twice";
    }
    while (seen.size() < kSize) {
        const uint16_t e = nat.open_udp(kSub2, uint16_t(30000 + seen.size()));
        ASSERT_NE(e, 0) << seen.size() << " ports out of " << kSize;
        EXPECT_TRUE(seen.insert(e).second) << e << " handed out twice";
    }
    EXPECT_EQ(nat.open_udp(kSub2, 50011), 0) << "exhausted: nothing is preserved from a full partition";
    EXPECT_TRUE(nat.partition_consistent(0, L4::Udp));
}

TEST_F(PortAllocation, PortPreservation_CannotBeCombinedWithBlocks)
{
    NatConfig c = preserving();
    c.port_block_size = 4;
    EXPECT_THROW(ephemera::validate(c), ephemera::ConfigError);
}

} // namespace
} // namespace ephtest
