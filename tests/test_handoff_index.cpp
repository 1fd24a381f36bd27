// Software handoff of outside packets: the receiving worker reads the mapping
// index from the owner's partition and the ring carries it, so that the owner
// does not look it up again (design.md, steering). The owner checks it against
// the packet first: between the read and the packet's turn the mapping may
// have ended, or its slot gone to another mapping.
#include <gtest/gtest.h>

#include "nat_harness.hpp"

namespace ephtest {
namespace {

using ephemera::kNoMapping;
using ephemera::NatConfig;

using HandoffIndex = NatTest;

constexpr uint16_t kInPort = 40000;
constexpr uint16_t kRemotePort = 5000;

Bytes reply(uint32_t ext_addr, uint16_t ext_port)
{
    return udp_packet(kRemote1, kRemotePort, ext_addr, ext_port, pattern(12));
}

// kSub1's UDP mapping, opened and then ended: its external port and the index it had.
struct Ended {
    uint16_t ext_port;
    uint32_t index;
};
Ended open_and_end(Nat& nat)
{
    const uint16_t ext = nat.open_udp(kSub1, kInPort, kRemote1, kRemotePort);
    const uint32_t idx = nat.mapping_of(kSub1, kInPort, L4::Udp);
    nat.tr.release_mapping(idx, nat.now());
    return {ext, idx};
}

TEST_F(HandoffIndex, AnotherWorkerReadsTheIndexThePartitionHolds)
{
    Nat nat(small_config());
    const uint16_t ext = nat.open_udp(kSub1, kInPort, kRemote1, kRemotePort);
    ASSERT_NE(ext, 0);
    const unsigned pool = 0; // small_config(): one pool address
    const uint32_t idx = nat.mapping_of(kSub1, kInPort, L4::Udp);
    ASSERT_NE(idx, kNoMapping);
    EXPECT_EQ(nat.tr.mapping_seen_by_other_worker(pool, ext, L4::Udp), idx);
    EXPECT_EQ(nat.tr.mapping_seen_by_other_worker(pool, ext, L4::Tcp), kNoMapping);                  // per protocol
    EXPECT_EQ(nat.tr.mapping_seen_by_other_worker(pool, uint16_t(ext + 1), L4::Udp), kNoMapping);    // free port
    EXPECT_EQ(nat.tr.mapping_seen_by_other_worker(pool + 1, ext, L4::Udp), kNoMapping);              // no such pool address
    EXPECT_EQ(nat.tr.mapping_seen_by_other_worker(pool, 1024, L4::Udp), kNoMapping);                 // outside the range
    nat.tr.release_mapping(idx, nat.now());
    EXPECT_EQ(nat.tr.mapping_seen_by_other_worker(pool, ext, L4::Udp), kNoMapping);
}

TEST_F(HandoffIndex, PortOfAnotherWorkerReadsNoIndex)
{
    NatConfig cfg = small_config();
    cfg.workers = 2; // worker 0: 50000-50007, worker 1: 50008-50015
    Nat nat(cfg, 0);
    ASSERT_NE(nat.open_udp(kSub1, kInPort, kRemote1, kRemotePort), 0);
    EXPECT_EQ(nat.tr.mapping_seen_by_other_worker(0, 50008, L4::Udp), kNoMapping);
}

TEST_F(HandoffIndex, CarriedIndexIsUsedInsteadOfTheLookup)
{
    Nat nat(small_config());
    const uint16_t ext = nat.open_udp(kSub1, kInPort, kRemote1, kRemotePort);
    const uint32_t idx = nat.mapping_of(kSub1, kInPort, L4::Udp);
    const Bytes sent = reply(nat.paired_addr(kSub1), ext);
    const Outcome o = nat.in_carried(sent, idx);
    ASSERT_TRUE(forwarded(o));
    expect_rewritten(parse_ipv4(sent), o.parsed(), Dir::In, kSub1, kInPort);
    EXPECT_EQ(nat.tr.stats().carried_used, 1u);
    EXPECT_EQ(nat.tr.stats().carried_stale, 0u);
}

TEST_F(HandoffIndex, CarriedIndexOfAnotherMappingIsLookedUpAgain)
{
    Nat nat(small_config());
    const uint16_t ext1 = nat.open_udp(kSub1, kInPort, kRemote1, kRemotePort);
    ASSERT_NE(nat.open_udp(kSub2, kInPort, kRemote1, kRemotePort), 0);
    const uint32_t idx2 = nat.mapping_of(kSub2, kInPort, L4::Udp);
    const Bytes sent = reply(nat.paired_addr(kSub1), ext1);
    const Outcome o = nat.in_carried(sent, idx2);
    ASSERT_TRUE(forwarded(o));
    expect_rewritten(parse_ipv4(sent), o.parsed(), Dir::In, kSub1, kInPort); // to its holder, not to kSub2
    EXPECT_EQ(nat.tr.stats().carried_used, 0u);
    EXPECT_EQ(nat.tr.stats().carried_stale, 1u);
}

TEST_F(HandoffIndex, CarriedIndexOfAnEndedMappingIsDroppedAsNoMapping)
{
    Nat nat(small_config());
    const Ended ended = open_and_end(nat);
    EXPECT_TRUE(dropped(nat.in_carried(reply(nat.paired_addr(kSub1), ended.ext_port), ended.index), Drop::NoMapping));
    EXPECT_EQ(nat.tr.stats().carried_stale, 1u);
}

// The receiving worker read the slot before the mapping ended, and the index
// it carries has since gone to another subscriber's mapping (given here as
// that mapping's index): the packet is for the old port, which nobody holds,
// and must not reach the index's new holder.
TEST_F(HandoffIndex, IndexReusedForAnotherSubscriberNeverDeliversToIt)
{
    Nat nat(small_config());
    const uint16_t ext1 = open_and_end(nat).ext_port;
    const uint16_t ext2 = nat.open_udp(kSub2, kInPort, kRemote1, kRemotePort);
    ASSERT_NE(ext2, ext1); // the old port waits in quarantine
    const uint32_t idx2 = nat.mapping_of(kSub2, kInPort, L4::Udp);
    EXPECT_TRUE(dropped(nat.in_carried(reply(nat.paired_addr(kSub1), ext1), idx2), Drop::NoMapping));
    EXPECT_EQ(nat.tr.stats().carried_stale, 1u);
}

TEST_F(HandoffIndex, IndexBeyondTheTableIsLookedUpHere)
{
    Nat nat(small_config());
    const uint16_t ext = nat.open_udp(kSub1, kInPort, kRemote1, kRemotePort);
    const Bytes sent = reply(nat.paired_addr(kSub1), ext);
    const Outcome o = nat.in_carried(sent, nat.tr.table().capacity() + 7);
    ASSERT_TRUE(forwarded(o));
    expect_rewritten(parse_ipv4(sent), o.parsed(), Dir::In, kSub1, kInPort);
    EXPECT_EQ(nat.tr.stats().carried_used + nat.tr.stats().carried_stale, 0u); // not a carried index at all
}

} // namespace
} // namespace ephtest
