// Per-subscriber port limit (RFC 6888 REQ-4, REQ-11): at the limit a
// subscriber's new flows are dropped and counted, its existing mappings keep
// working and are never evicted, other subscribers are not affected, and a
// released mapping gives the subscriber room again. Refused packets can be
// handed back for an ICMP 3/13 answer.
#include <gtest/gtest.h>

#include <rte_mbuf.h>

#include "nat_harness.hpp"

namespace ephtest {
namespace {

using ephemera::NatConfig;

using SubscriberLimit = NatTest;

NatConfig limited(uint32_t ports)
{
    NatConfig c = small_config();
    c.ports = {50000, 50255};
    c.max_ports_per_subscriber = ports;
    return c;
}

TEST_F(SubscriberLimit, Rfc6888Req4_NewFlowsBeyondTheLimitAreDroppedAndCounted)
{
    Nat nat(limited(3));
    for (uint16_t i = 0; i < 3; ++i) ASSERT_NE(nat.open_udp(kSub1, uint16_t(1000 + i)), 0) << "flow " << i;
    EXPECT_TRUE(dropped(nat.out(udp_packet(kSub1, 2000, kRemote1, 5000)), Drop::SubscriberLimit));
    // The limit counts every protocol together (ICMP identifiers included).
    EXPECT_TRUE(dropped(nat.out(tcp_packet(kSub1, 2001, kRemote1, 80, kSyn)), Drop::SubscriberLimit));
    EXPECT_TRUE(dropped(nat.out(echo_packet(kSub1, kRemote1, false, 7, 1)), Drop::SubscriberLimit));
    EXPECT_EQ(nat.tr.ports_of_subscriber(net32(kSub1)), 3u);
    EXPECT_EQ(nat.tr.partition(0, L4::Udp).in_use_count(), 3u) << "a refused flow must not hold a port";
}

TEST_F(SubscriberLimit, Rfc6888Req11_ExistingMappingsKeepWorkingAtTheLimit)
{
    Nat nat(limited(2));
    const uint16_t a = nat.open_udp(kSub1, 1000), b = nat.open_udp(kSub1, 1001);
    ASSERT_TRUE(dropped(nat.out(udp_packet(kSub1, 1002, kRemote1, 5000)), Drop::SubscriberLimit));
    EXPECT_EQ(nat.open_udp(kSub1, 1000), a);
    EXPECT_EQ(nat.open_udp(kSub1, 1001), b);
    EXPECT_TRUE(forwarded(nat.in(udp_packet(kRemote1, 5000, nat.cfg.pool[0], a))));
    // A new session under an existing mapping needs no new port: allowed.
    EXPECT_EQ(nat.open_udp(kSub1, 1000, kRemote2, 53), a);
}

TEST_F(SubscriberLimit, Rfc6888Req4_OtherSubscribersAreNotAffected)
{
    Nat nat(limited(2));
    ASSERT_NE(nat.open_udp(kSub1, 1000), 0);
    ASSERT_NE(nat.open_udp(kSub1, 1001), 0);
    ASSERT_TRUE(dropped(nat.out(udp_packet(kSub1, 1002, kRemote1, 5000)), Drop::SubscriberLimit));
    EXPECT_NE(nat.open_udp(kSub2, 1000), 0);
    EXPECT_NE(nat.open_udp(kSub2, 1001), 0);
    EXPECT_EQ(nat.tr.ports_of_subscriber(net32(kSub2)), 2u);
}

TEST_F(SubscriberLimit, ReleasedMappingGivesTheSubscriberRoomAgain)
{
    Nat nat(limited(2));
    ASSERT_NE(nat.open_udp(kSub1, 1000), 0);
    ASSERT_NE(nat.open_udp(kSub1, 1001), 0);
    ASSERT_TRUE(dropped(nat.out(udp_packet(kSub1, 1002, kRemote1, 5000)), Drop::SubscriberLimit));
    nat.tr.release_mapping(nat.mapping_of(kSub1, 1000, L4::Udp), nat.now());
    EXPECT_EQ(nat.tr.ports_of_subscriber(net32(kSub1)), 1u);
    EXPECT_NE(nat.open_udp(kSub1, 1002), 0);
    // Expiry counts the same way, once the mappings (both last used now) are gone.
    const Tick t0 = nat.now();
    const uint32_t cap = nat.tr.table().capacity();
    nat.set_time(last_alive(t0, nat.cfg.timeouts.udp));
    EXPECT_EQ(nat.tr.expire(nat.now(), cap), 0u);
    EXPECT_EQ(nat.tr.ports_of_subscriber(net32(kSub1)), 2u);
    nat.set_time(gone_at(t0, nat.cfg.timeouts.udp));
    EXPECT_EQ(nat.tr.expire(nat.now(), cap), 2u);
    EXPECT_EQ(nat.tr.ports_of_subscriber(net32(kSub1)), 0u);
    EXPECT_NE(nat.open_udp(kSub1, 1003), 0);
}

TEST_F(SubscriberLimit, PortOfAFlowRefusedForTooManySubscribersSkipsTheQuarantine)
{
    // max_subscribers is reached only after the port was taken: that port was
    // never used, so it is released as if a whole quarantine (plus the extra
    // second) had passed, and is free again at once.
    NatConfig c = limited(4);
    c.max_subscribers = 8; // the least allowed
    Nat nat(c);
    for (uint32_t i = 0; i < 8; ++i) ASSERT_NE(nat.open_udp(ip(100, 64, 1, i + 1), 1000), 0) << i;
    const uint32_t ninth = ip(100, 64, 1, 9);
    EXPECT_TRUE(dropped(nat.out(udp_packet(ninth, 1000, kRemote1, 5000)), Drop::TableFull));
    EXPECT_EQ(nat.mapping_of(ninth, 1000, L4::Udp), ephemera::kNoMapping);
    EXPECT_TRUE(nat.partition_consistent(0, L4::Udp));
    EXPECT_EQ(nat.tr.partition(0, L4::Udp).in_use_count(), 8u);
    EXPECT_EQ(nat.tr.partition(0, L4::Udp).quarantined_count(), 0u) << "a port never used went into quarantine";
}

TEST_F(SubscriberLimit, NoLimitConfiguredMeansNoCount)
{
    Nat nat(limited(0));
    for (uint16_t i = 0; i < 40; ++i) ASSERT_NE(nat.open_udp(kSub1, uint16_t(1000 + i)), 0);
    EXPECT_EQ(nat.tr.ports_of_subscriber(net32(kSub1)), 0u);
}

TEST_F(SubscriberLimit, Rfc5508Req8_RefusedPacketsAreHandedBackForAnIcmpAnswer)
{
    Nat nat(limited(1));
    ASSERT_NE(nat.open_udp(kSub1, 1000), 0);
    rte_mbuf* pkts[1] = {make_mbuf(Nat::inside_frame(udp_packet(kSub1, 1001, kRemote1, 5000)))};
    rte_mbuf* refused[ephemera::kBurst];
    uint16_t nrefused = 0;
    const uint64_t before = nat.tr.stats().drop(Dir::Out, Drop::SubscriberLimit);
    EXPECT_EQ(nat.tr.outbound(pkts, 1, nat.now(), refused, &nrefused), 0);
    ASSERT_EQ(nrefused, 1);
    EXPECT_EQ(refused[0], pkts[0]) << "the refused packet itself, untouched, for the ICMP quote";
    EXPECT_EQ(nat.tr.stats().drop(Dir::Out, Drop::SubscriberLimit), before + 1);
    const Parsed p = parse_frame(mbuf_bytes(refused[0]));
    EXPECT_EQ(p.src, kSub1);
    rte_pktmbuf_free(refused[0]);
}

} // namespace
} // namespace ephtest
