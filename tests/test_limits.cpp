// State limits (RFC 6888 REQ-5, REQ-11): full tables drop new state as
// TableFull, never evict what lives, and expired state gives room back.
#include <gtest/gtest.h>

#include "nat_harness.hpp"

namespace ephtest {
namespace {

using ephemera::kNoMapping;
using ephemera::NatConfig;

using Limits = NatTest;

NatConfig roomy_ports()
{
    NatConfig c = small_config();
    c.ports = {50000, 50255};
    return c;
}

TEST_F(Limits, Rfc6888Req11_FullMappingTableDropsNewMappingsWithoutEviction)
{
    NatConfig c = roomy_ports();
    c.max_mappings = 8;
    Nat nat(c);
    std::vector<uint16_t> ext;
    for (uint16_t i = 0; i < 8; ++i) {
        ext.push_back(nat.open_udp(kSub1, uint16_t(1000 + i)));
        ASSERT_NE(ext.back(), 0) << "mapping " << i << " of 8";
    }
    EXPECT_TRUE(dropped(nat.out(udp_packet(kSub1, 2000, kRemote1, 5000)), Drop::TableFull));
    EXPECT_TRUE(dropped(nat.out(tcp_packet(kSub2, 2000, kRemote1, 80, kSyn)), Drop::TableFull));
    EXPECT_TRUE(dropped(nat.out(echo_packet(kSub2, kRemote1, false, 1, 1)), Drop::TableFull));
    EXPECT_TRUE(nat.partition_consistent(0, L4::Udp));
    EXPECT_EQ(nat.tr.partition(0, L4::Udp).in_use_count(), 8u) << "a port leaked with the refused mapping";
    EXPECT_EQ(nat.tr.partition(0, L4::Udp).quarantined_count(), 0u) << "a port never used went into quarantine";
    EXPECT_EQ(nat.tr.partition(0, L4::Tcp).in_use_count(), 0u);
    for (uint16_t i = 0; i < 8; ++i) {
        EXPECT_EQ(nat.open_udp(kSub1, uint16_t(1000 + i)), ext[i]);
        EXPECT_TRUE(forwarded(nat.in(udp_packet(kRemote1, 5000, nat.cfg.pool[0], ext[i]))));
    }
}

TEST_F(Limits, ReleasedMappingMakesRoom)
{
    NatConfig c = roomy_ports();
    c.max_mappings = 8;
    Nat nat(c);
    for (uint16_t i = 0; i < 8; ++i) ASSERT_NE(nat.open_udp(kSub1, uint16_t(1000 + i)), 0);
    ASSERT_TRUE(dropped(nat.out(udp_packet(kSub1, 2000, kRemote1, 5000)), Drop::TableFull));
    nat.tr.release_mapping(nat.mapping_of(kSub1, 1003, L4::Udp), nat.now());
    EXPECT_NE(nat.open_udp(kSub1, 2000), 0);
}

TEST_F(Limits, Rfc6888Req5_PerMappingSessionLimit)
{
    NatConfig c = roomy_ports();
    c.max_sessions_per_mapping = 3;
    Nat nat(c);
    const uint16_t ep = nat.open_udp(kSub1, 1000, kRemote1, 1);
    ASSERT_EQ(nat.open_udp(kSub1, 1000, kRemote1, 2), ep);
    ASSERT_EQ(nat.open_udp(kSub1, 1000, kRemote2, 1), ep);
    EXPECT_TRUE(dropped(nat.out(udp_packet(kSub1, 1000, kRemote2, 2)), Drop::TableFull));
    // EIF would admit a new remote, but there is no room for its session.
    EXPECT_TRUE(dropped(nat.in(udp_packet(ip(192, 0, 2, 1), 7, nat.cfg.pool[0], ep)), Drop::TableFull));
    // The three sessions are untouched.
    EXPECT_EQ(nat.open_udp(kSub1, 1000, kRemote1, 1), ep);
    EXPECT_TRUE(forwarded(nat.in(udp_packet(kRemote2, 1, nat.cfg.pool[0], ep))));
    EXPECT_EQ(nat.tr.table().session_count(nat.mapping_of(kSub1, 1000, L4::Udp)), 3u);
}

TEST_F(Limits, FullExtraSessionTableIsTableFull)
{
    NatConfig c = roomy_ports();
    c.max_extra_sessions = 8;
    Nat nat(c);
    const uint16_t ep = nat.open_udp(kSub1, 1000, kRemote1, 0);
    for (uint16_t r = 1; r <= 8; ++r) ASSERT_EQ(nat.open_udp(kSub1, 1000, kRemote1, r), ep) << "session " << r;
    EXPECT_TRUE(dropped(nat.out(udp_packet(kSub1, 1000, kRemote1, 9)), Drop::TableFull));
    // Another mapping still gets its inline first session.
    EXPECT_NE(nat.open_udp(kSub1, 1001, kRemote1, 9), 0);
}

TEST_F(Limits, ExpiredSessionsDoNotCountAgainstTheLimit)
{
    NatConfig c = roomy_ports();
    c.max_sessions_per_mapping = 2;
    Nat nat(c);
    const Tick t0 = nat.now();
    const Tick udp = nat.cfg.timeouts.udp;
    const uint16_t ep = nat.open_udp(kSub1, 1000, kRemote1, 1); // Y1 session: through t0+300
    ASSERT_EQ(nat.open_udp(kSub1, 1000, kRemote2, 1), ep);       // Y2 session
    nat.set_time(t0 + 250);
    ASSERT_EQ(nat.open_udp(kSub1, 1000, kRemote2, 1), ep); // Y2 now through t0+550
    ASSERT_TRUE(dropped(nat.out(udp_packet(kSub1, 1000, ip(192, 0, 2, 1), 1)), Drop::TableFull));
    nat.set_time(last_alive(t0, udp)); // Y1's session lives through this second
    nat.tr.expire(nat.now(), nat.tr.table().capacity());
    ASSERT_TRUE(dropped(nat.out(udp_packet(kSub1, 1000, ip(192, 0, 2, 1), 1)), Drop::TableFull));
    nat.set_time(gone_at(t0, udp)); // Y1's session is over, the mapping lives on through Y2
    nat.tr.expire(nat.now(), nat.tr.table().capacity());
    EXPECT_EQ(nat.open_udp(kSub1, 1000, ip(192, 0, 2, 1), 1), ep) << "an expired session still holds its place";
}

} // namespace
} // namespace ephtest
