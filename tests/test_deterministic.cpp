// Deterministic NAT (RFC 7422): every host of nat.deterministic has a pool
// address and a range of ports computed from the configuration alone; its
// mappings only ever take ports from that range, in every protocol; nothing is
// logged per mapping or block, because the configuration answers "who held
// pool address X' port x'"; only the optional overflow ranges (RFC 7422
// §2.3), lent to hosts whose range is full, are logged. The expected ranges
// below are worked out by hand from the formula in deterministic.hpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "ephemera/deterministic.hpp"
#include "nat_harness.hpp"

namespace ephtest {
namespace {

using ephemera::ConfigError;
using ephemera::DeterministicMap;
using ephemera::NatConfig;
using ephemera::PortLayout;
using ephemera::PortRange;

using DeterministicTest = NatTest;

// 100.64.0.0/24 (256 hosts), 2 pool addresses, ports 1024-65535, 4 workers:
// partitions of 16128 ports, k = 256 / 8 = 32 hosts each, 504 ports per host.
struct Lab24 {
    PortLayout layout{PortRange{1024, 65535}, 4};
    DeterministicMap map{ip(100, 64, 0, 0), 24, 2, layout};
};

TEST(DeterministicMap, Rfc7422_EachHostsPoolAddressAndRangeFollowFromTheConfiguration)
{
    Lab24 lab;
    EXPECT_EQ(lab.map.hosts(), 256u);
    EXPECT_EQ(lab.map.hosts_per_partition(), 32u);
    EXPECT_EQ(lab.map.ports_per_host(), 504u);
    struct Want {
        uint32_t host;
        unsigned pool, worker;
        uint16_t first, last;
    };
    // Neighbours go to different workers; the second half of the prefix to the second pool address.
    for (const Want& w : {Want{ip(100, 64, 0, 0), 0, 0, 1024, 1527}, Want{ip(100, 64, 0, 1), 0, 1, 17152, 17655},
                          Want{ip(100, 64, 0, 3), 0, 3, 49408, 49911}, Want{ip(100, 64, 0, 4), 0, 0, 1528, 2031},
                          Want{ip(100, 64, 0, 127), 0, 3, 65032, 65535}, Want{ip(100, 64, 0, 128), 1, 0, 1024, 1527},
                          Want{ip(100, 64, 0, 255), 1, 3, 65032, 65535}}) {
        const DeterministicMap::Slot s = lab.map.slot_of(w.host);
        EXPECT_EQ(s.pool, w.pool) << ephemera::format_ipv4(w.host);
        EXPECT_EQ(s.worker, w.worker) << ephemera::format_ipv4(w.host);
        EXPECT_EQ(s.first, w.first) << ephemera::format_ipv4(w.host);
        EXPECT_EQ(s.last, w.last) << ephemera::format_ipv4(w.host);
    }
    EXPECT_FALSE(lab.map.contains(ip(100, 64, 1, 0)));
    EXPECT_FALSE(lab.map.contains(ip(100, 63, 255, 255)));
}

TEST(DeterministicMap, Rfc7422_RangesAreDisjointAndEachLiesInItsHostsWorkersPartition)
{
    Lab24 lab;
    std::set<std::pair<unsigned, uint16_t>> taken; // (pool, port)
    for (uint32_t h = 0; h < 256; ++h) {
        const auto s = lab.map.slot_of(ip(100, 64, 0, 0) + h);
        EXPECT_EQ(lab.layout.owner_of(s.first), s.worker);
        EXPECT_EQ(lab.layout.owner_of(s.last), s.worker);
        for (uint32_t p = s.first; p <= s.last; ++p)
            EXPECT_TRUE(taken.insert({s.pool, uint16_t(p)}).second) << "port " << p << " given twice";
    }
    EXPECT_EQ(taken.size(), 256u * 504u);
}

TEST(DeterministicMap, Rfc7422_EveryPortOfARangeReversesToItsHostAndNoOtherPortDoes)
{
    // 3 workers: partitions of 21504 ports, k = ceil(256 / 6) = 43, 500 ports
    // each: a 4-port tail per partition, and 2 ranges of the last pool address
    // beyond the prefix's 256 hosts.
    const PortLayout layout(PortRange{1024, 65535}, 3);
    const DeterministicMap map(ip(100, 64, 0, 0), 24, 2, layout);
    ASSERT_EQ(map.ports_per_host(), 500u);
    uint32_t reversed = 0;
    for (unsigned pool = 0; pool < 2; ++pool)
        for (uint32_t port = 1024; port <= 65535; ++port) {
            const auto host = map.host_of(pool, uint16_t(port));
            if (!host) continue;
            ++reversed;
            const auto s = map.slot_of(*host);
            ASSERT_EQ(s.pool, pool);
            ASSERT_GE(port, s.first);
            ASSERT_LE(port, s.last);
        }
    EXPECT_EQ(reversed, 256u * 500u) << "exactly the ports of the hosts' ranges";
    EXPECT_FALSE(map.host_of(0, uint16_t(1024 + 21500))) << "a partition's tail belongs to nobody";
    EXPECT_FALSE(map.host_of(2, 1024)) << "no third pool address";
    EXPECT_FALSE(map.host_of(0, 1023)) << "below the range";
}

TEST(DeterministicMap, Rfc7422_OverflowRangesFollowTheHostsRangesAndBelongToNoHost)
{
    // Lab24 with 2 overflow ranges: 16128 / (32 + 2) = 474 ports per host.
    const PortLayout layout(PortRange{1024, 65535}, 4);
    const DeterministicMap map(ip(100, 64, 0, 0), 24, 2, layout, 2);
    ASSERT_EQ(map.ports_per_host(), 474u);
    EXPECT_EQ(map.overflow_ranges(), 2u);
    const uint16_t first = uint16_t(1024 + 32 * 474); // worker 0's partition, after its 32 hosts' ranges
    for (unsigned pool = 0; pool < 2; ++pool) {
        EXPECT_FALSE(map.host_of(pool, first));
        EXPECT_EQ(map.overflow_range_of(pool, first), (std::pair<uint16_t, uint16_t>{first, uint16_t(first + 473)}));
        EXPECT_EQ(map.overflow_range_of(pool, uint16_t(first + 474 + 10)),
                  (std::pair<uint16_t, uint16_t>{uint16_t(first + 474), uint16_t(first + 947)}));
    }
    EXPECT_FALSE(map.overflow_range_of(0, uint16_t(first - 1))) << "the last host's range";
    EXPECT_TRUE(map.host_of(0, uint16_t(first - 1)));
    EXPECT_FALSE(map.overflow_range_of(0, uint16_t(first + 948))) << "the partition's unused tail";
    EXPECT_FALSE(map.host_of(0, uint16_t(first + 948)));
}

TEST(DeterministicMap, TooManyHostsForThePortsIsAConfigErrorNamingTheKey)
{
    const PortLayout layout(PortRange{60000, 60099}, 2);
    try {
        DeterministicMap(ip(100, 64, 0, 0), 16, 1, layout); // 65536 hosts on 100 ports
        FAIL() << "accepted";
    } catch (const ConfigError& e) {
        EXPECT_NE(std::string(e.what()).find("nat.deterministic"), std::string::npos) << e.what();
    }
    EXPECT_THROW(DeterministicMap(ip(100, 64, 0, 1), 24, 1, layout), ConfigError) << "host bits set";
}

TEST(DeterministicMap, CannotBeCombinedWithPortBlocksOrParity)
{
    NatConfig c = small_config();
    c.deterministic = true;
    c.deterministic_prefix = ip(100, 64, 0, 0);
    c.deterministic_len = 30;
    EXPECT_NO_THROW(ephemera::validate(c));
    c.port_block_size = 4;
    EXPECT_THROW(ephemera::validate(c), ConfigError);
    c.port_block_size = 0;
    c.port_parity = true;
    EXPECT_THROW(ephemera::validate(c), ConfigError);
}

TEST(DeterministicMap, OverflowWithoutDeterministicIsAConfigErrorNamingTheKey)
{
    NatConfig c = small_config();
    c.deterministic_overflow = 1;
    try {
        ephemera::validate(c);
        FAIL() << "accepted";
    } catch (const ConfigError& e) {
        EXPECT_NE(std::string(e.what()).find("deterministic_overflow"), std::string::npos) << e.what();
    }
}

// small_config's 16 ports (50000-50015) for 100.64.0.0/30, one worker: 4
// hosts of 4 ports; 100.64.0.2 (kSub1) has 50008-50011, .3 (kSub2) 50012-50015.
NatConfig deterministic_config()
{
    NatConfig c = small_config();
    c.deterministic = true;
    c.deterministic_prefix = ip(100, 64, 0, 0);
    c.deterministic_len = 30;
    return c;
}

uint64_t drops(const Nat& nat, Drop why) { return nat.tr.stats().drops[unsigned(Dir::Out)][unsigned(why)]; }

TEST_F(DeterministicTest, Rfc7422_MappingsTakePortsOnlyFromTheHostsRangeAndNothingBeyondIt)
{
    Nat nat(deterministic_config());
    std::set<uint16_t> got;
    for (uint16_t i = 0; i < 4; ++i) got.insert(nat.open_udp(kSub1, uint16_t(1000 + i)));
    EXPECT_EQ(got, (std::set<uint16_t>{50008, 50009, 50010, 50011}));
    EXPECT_EQ(nat.ext_addr_of(kSub1, 1000, L4::Udp), nat.cfg.pool[0]);
    EXPECT_EQ(nat.open_udp(kSub1, 1004), 0) << "its range is full: no port of another host's";
    EXPECT_EQ(drops(nat, Drop::SubscriberLimit), 1u);
    EXPECT_EQ(nat.open_udp(kSub2, 1000), 50012) << "the next host has its own range";
}

TEST_F(DeterministicTest, Rfc7422_TheRangeIsTheHostsInEveryProtocol)
{
    Nat nat(deterministic_config());
    EXPECT_EQ(nat.open_udp(kSub1, 1000), 50008);
    const Outcome syn = nat.out(tcp_packet(kSub1, 2000, kRemote1, 80, kSyn));
    ASSERT_TRUE(forwarded(syn));
    EXPECT_EQ(syn.parsed().sport, 50008);
}

TEST_F(DeterministicTest, HostOutsideThePrefixGetsNoPort)
{
    Nat nat(deterministic_config());
    EXPECT_EQ(nat.open_udp(ip(100, 64, 0, 9), 1000), 0);
    EXPECT_EQ(drops(nat, Drop::SubscriberLimit), 1u);
}

TEST_F(DeterministicTest, Rfc7422_NothingIsLoggedPerMappingOrBlock)
{
    Nat nat(deterministic_config());
    EventRing ring(nat.tr);
    const Tick t0 = nat.now();
    ASSERT_NE(nat.open_udp(kSub1, 1000), 0);
    ASSERT_NE(nat.open_udp(kSub2, 1000), 0);
    EXPECT_EQ(nat.tr.expire(gone_at(t0, nat.cfg.timeouts.udp), nat.tr.table().capacity()), 2u);
    EXPECT_TRUE(ring.take().empty()) << "the configuration says who held what";
}

TEST_F(DeterministicTest, AFreedPortGoesBackToTheSameHostOnly)
{
    Nat nat(deterministic_config());
    const Tick t0 = nat.now();
    for (uint16_t i = 0; i < 4; ++i) ASSERT_NE(nat.open_udp(kSub1, uint16_t(1000 + i)), 0);
    ASSERT_EQ(nat.tr.expire(gone_at(t0, nat.cfg.timeouts.udp), nat.tr.table().capacity()), 4u);
    nat.set_time(gone_at(t0, nat.cfg.timeouts.udp));
    const uint16_t again = nat.open_udp(kSub1, 2000);
    EXPECT_GE(again, 50008);
    EXPECT_LE(again, 50011);
    EXPECT_EQ(nat.open_udp(kSub2, 2000), 50012);
    const auto u = nat.tr.port_use(0, L4::Udp, nat.now());
    EXPECT_EQ(u.in_use, 2u);
    EXPECT_EQ(u.free + u.quarantined + u.in_use, 16u);
}

TEST_F(DeterministicTest, InboundReachesTheHostThroughItsDeterministicPort)
{
    Nat nat(deterministic_config());
    const uint16_t ext = nat.open_udp(kSub1, 1000, kRemote1, 5000);
    ASSERT_EQ(ext, 50008);
    const Outcome back = nat.in(udp_packet(kRemote1, 5000, nat.cfg.pool[0], ext, Bytes{1, 2, 3}));
    ASSERT_TRUE(forwarded(back));
    EXPECT_EQ(back.parsed().dst, kSub1);
    EXPECT_EQ(back.parsed().dport, 1000);
}

// deterministic_config() with one overflow range: 16 / (4 + 1) = 3 ports per
// host; kSub1 has 50006-50008, kSub2 50009-50011, the overflow range is
// 50012-50014 (50015 is left over); one overflow range per host at a time.
NatConfig overflow_config()
{
    NatConfig c = deterministic_config();
    c.deterministic_overflow = 1;
    c.max_blocks_per_subscriber = 1;
    return c;
}

TEST_F(DeterministicTest, Rfc7422_AHostWhoseRangeIsFullBorrowsAnOverflowRangeAndTheLogSaysSo)
{
    Nat nat(overflow_config());
    EventRing ring(nat.tr);
    std::set<uint16_t> own, lent;
    for (uint16_t i = 0; i < 3; ++i) own.insert(nat.open_udp(kSub1, uint16_t(1000 + i)));
    EXPECT_EQ(own, (std::set<uint16_t>{50006, 50007, 50008}));
    EXPECT_TRUE(ring.take().empty()) << "its own range needs no log";
    for (uint16_t i = 3; i < 6; ++i) lent.insert(nat.open_udp(kSub1, uint16_t(1000 + i)));
    EXPECT_EQ(lent, (std::set<uint16_t>{50012, 50013, 50014}));
    EXPECT_EQ(nat.ext_addr_of(kSub1, 1005, L4::Udp), nat.cfg.pool[0]) << "paired pooling holds";
    const auto events = ring.take();
    ASSERT_EQ(events.size(), 1u) << "one event for the range, none per mapping";
    EXPECT_EQ(events[0].type, uint8_t(ephemera::MappingEventType::BlockAlloc));
    EXPECT_EQ(events[0].in_addr, net32(kSub1));
    EXPECT_EQ(host16(events[0].ext_port), 50012);
    EXPECT_EQ(host16(events[0].in_port), 50014);
    EXPECT_EQ(nat.open_udp(kSub1, 1006), 0) << "max_blocks_per_subscriber = 1";
    EXPECT_EQ(drops(nat, Drop::SubscriberLimit), 1u);
    const Outcome syn = nat.out(tcp_packet(kSub1, 1007, kRemote1, 80, kSyn));
    ASSERT_TRUE(forwarded(syn));
    EXPECT_EQ(syn.parsed().sport, 50006) << "TCP first takes its own range, whose TCP ports are free";
}

TEST_F(DeterministicTest, Rfc7422_OverflowRangeIsLentToOneHostAtATimeAndComesBackAfterQuarantine)
{
    Nat nat(overflow_config());
    EventRing ring(nat.tr);
    const Tick t0 = nat.now();
    for (uint16_t i = 0; i < 4; ++i) ASSERT_NE(nat.open_udp(kSub1, uint16_t(1000 + i)), 0); // the 4th borrows
    for (uint16_t i = 0; i < 3; ++i) ASSERT_NE(nat.open_udp(kSub2, uint16_t(1000 + i)), 0);
    EXPECT_EQ(nat.open_udp(kSub2, 1003), 0) << "the only overflow range is kSub1's";
    EXPECT_EQ(drops(nat, Drop::PortsExhausted), 1u);
    ring.take();

    const Tick gone = gone_at(t0, nat.cfg.timeouts.udp);
    ASSERT_EQ(nat.tr.expire(gone, nat.tr.table().capacity()), 7u);
    const auto events = ring.take();
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(events[0].type, uint8_t(ephemera::MappingEventType::BlockFree)) << "given back, logged";
    EXPECT_EQ(events[0].in_addr, net32(kSub1));
    nat.set_time(gone);
    for (uint16_t i = 0; i < 3; ++i) ASSERT_NE(nat.open_udp(kSub2, uint16_t(2000 + i)), 0);
    EXPECT_EQ(nat.open_udp(kSub2, 2003), 0) << "RFC 6888 REQ-8: quarantined before another host gets it";
    nat.set_time(free_at(gone, nat.cfg.timeouts.quarantine));
    EXPECT_EQ(nat.open_udp(kSub2, 2004), 50012) << "then lent to the next host that needs it";
    const auto u = nat.tr.port_use(0, L4::Udp, nat.now());
    EXPECT_EQ(u.free + u.quarantined + u.in_use, 15u) << "the hosts' ranges and the overflow range";
}

} // namespace
} // namespace ephtest
