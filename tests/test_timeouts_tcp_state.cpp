// Session timers with an injected clock: the TCP state machine of RFC 7857 §2,
// UDP/ICMP timers, refresh rules, and what expiry does to the port.
//
// Time is whole-second Ticks. A session refreshed at tick t with timeout T is
// alive through t+T and gone at t+T+1 (the tick of the last packet is a whole
// second, so the extra one makes it live at least T real seconds): see
// last_alive() and gone_at() in nat_harness.hpp. Every boundary below is
// asserted on both sides, so a timer one second short or long fails.
#include <gtest/gtest.h>

#include "ephemera/session_table.hpp"
#include "nat_harness.hpp"

namespace ephtest {
namespace {

using ephemera::kNoMapping;
using ephemera::NatConfig;

using Timeouts = NatTest;

constexpr uint16_t kX = 40000, kY = 443;

// The default timeouts (small_config()), seconds.
constexpr Tick kUdp = 300;
constexpr Tick kTransitory = 240;  // TCP before a SYN each way, after a FIN each way or a RST
constexpr Tick kEstablished = 7440; // RFC 5382 REQ-5: 2 h 4 min

// A TCP conversation X:40000 <-> Y1:443 through the NAT.
struct Tcp {
    explicit Tcp(Nat& n) : nat(n) {}
    Nat& nat;
    uint32_t ext = 0;
    uint16_t ep = 0;
    Outcome out(uint8_t flags) { return nat.out(tcp_packet(kSub1, kX, kRemote1, kY, flags)); }
    Outcome in(uint8_t flags) { return nat.in(tcp_packet(kRemote1, kY, ext, ep, flags)); }
    void syn()
    {
        const Outcome o = out(kSyn);
        ASSERT_TRUE(forwarded(o));
        ext = o.parsed().src;
        ep = o.parsed().sport;
    }
    void establish()
    {
        ASSERT_NO_FATAL_FAILURE(syn());
        ASSERT_TRUE(forwarded(in(kSyn | kAck)));
        ASSERT_TRUE(forwarded(out(kAck)));
    }
    uint32_t idx() const { return nat.mapping_of(kSub1, kX, L4::Tcp); }
    bool expired_at(Tick t) const { return nat.tr.mapping_expired(idx(), t); }
};

TEST_F(Timeouts, SessionTimeoutDefaults)
{
    Nat nat(small_config());
    // TcpSeen bits (ephemera::kRst is not the test's TCP flag kRst).
    using ephemera::kFinIn;
    using ephemera::kFinOut;
    using ephemera::kSynIn;
    using ephemera::kSynOut;
    constexpr uint8_t kRstSeen = ephemera::kRst;
    const auto tcp = uint8_t(L4::Tcp);
    EXPECT_EQ(nat.tr.session_timeout(uint8_t(L4::Udp), 0), 300u);
    EXPECT_EQ(nat.tr.session_timeout(uint8_t(L4::Icmp), 0), 60u);
    EXPECT_EQ(nat.tr.session_timeout(uint8_t(L4::Sctp), 0), 300u);
    EXPECT_EQ(nat.tr.session_timeout(tcp, 0), 240u);
    EXPECT_EQ(nat.tr.session_timeout(tcp, kSynOut), 240u);
    EXPECT_EQ(nat.tr.session_timeout(tcp, kSynIn), 240u);
    EXPECT_EQ(nat.tr.session_timeout(tcp, kSynOut | kSynIn), 7440u);
    EXPECT_EQ(nat.tr.session_timeout(tcp, kSynOut | kSynIn | kFinOut), 7440u);
    EXPECT_EQ(nat.tr.session_timeout(tcp, kSynOut | kSynIn | kFinOut | kFinIn), 240u);
    EXPECT_EQ(nat.tr.session_timeout(tcp, kSynOut | kSynIn | kRstSeen), 240u);
    EXPECT_EQ(nat.tr.session_timeout(tcp, kSynOut | kRstSeen), 240u);
}

TEST_F(Timeouts, ConfiguredTimeoutsAreUsed)
{
    NatConfig c = small_config();
    c.timeouts.udp = 130;
    c.timeouts.icmp = 61;
    c.timeouts.tcp_transitory = 100;
    c.timeouts.tcp_established = 1000;
    Nat nat(c);
    EXPECT_EQ(nat.tr.session_timeout(uint8_t(L4::Udp), 0), 130u);
    EXPECT_EQ(nat.tr.session_timeout(uint8_t(L4::Icmp), 0), 61u);
    EXPECT_EQ(nat.tr.session_timeout(uint8_t(L4::Tcp), ephemera::kSynOut), 100u);
    EXPECT_EQ(nat.tr.session_timeout(uint8_t(L4::Tcp), ephemera::kSynOut | ephemera::kSynIn), 1000u);
    const Tick t0 = nat.now();
    ASSERT_NE(nat.open_udp(kSub1, 1000), 0);
    const uint32_t idx = nat.mapping_of(kSub1, 1000, L4::Udp);
    EXPECT_FALSE(nat.tr.mapping_expired(idx, last_alive(t0, 130)));
    EXPECT_TRUE(nat.tr.mapping_expired(idx, gone_at(t0, 130)));
}

// --------------------------------------------------------------- TCP state

TEST_F(Timeouts, Rfc7857Sec2_SynOnlyExpiresAfterTransitoryTimeout)
{
    Nat nat(small_config());
    Tcp tcp(nat);
    const Tick t0 = nat.now();
    ASSERT_NO_FATAL_FAILURE(tcp.syn());
    EXPECT_FALSE(tcp.expired_at(last_alive(t0, kTransitory)));
    EXPECT_TRUE(tcp.expired_at(gone_at(t0, kTransitory)));
    nat.set_time(gone_at(t0, kTransitory));
    EXPECT_TRUE(dropped(tcp.in(kSyn | kAck), Drop::NoMapping));
}

TEST_F(Timeouts, Rfc5382Req5_SynAckWithinTransitoryTimeoutIsTranslated)
{
    Nat nat(small_config());
    Tcp tcp(nat);
    const Tick t0 = nat.now();
    ASSERT_NO_FATAL_FAILURE(tcp.syn());
    nat.set_time(last_alive(t0, kTransitory));
    EXPECT_TRUE(forwarded(tcp.in(kSyn | kAck)));
}

TEST_F(Timeouts, Rfc7857Sec2_SynBothWaysUsesEstablishedTimeout)
{
    Nat nat(small_config());
    Tcp tcp(nat);
    const Tick t0 = nat.now();
    ASSERT_NO_FATAL_FAILURE(tcp.establish());
    EXPECT_FALSE(tcp.expired_at(gone_at(t0, kTransitory))) << "established, yet the transitory timer";
    EXPECT_FALSE(tcp.expired_at(last_alive(t0, kEstablished)));
    EXPECT_TRUE(tcp.expired_at(gone_at(t0, kEstablished)));
    nat.set_time(last_alive(t0, kEstablished));
    EXPECT_TRUE(forwarded(tcp.in(kAck))) << "RFC 5382 REQ-5: established idle timeout >= 2 h 4 min";
}

TEST_F(Timeouts, Rfc5382Req5_EstablishedGoneAfter7440)
{
    Nat nat(small_config());
    Tcp tcp(nat);
    const Tick t0 = nat.now();
    ASSERT_NO_FATAL_FAILURE(tcp.establish());
    nat.set_time(gone_at(t0, kEstablished));
    EXPECT_TRUE(dropped(tcp.in(kAck), Drop::NoMapping));
}

TEST_F(Timeouts, Rfc5382Req2a_SimultaneousOpenEstablishes)
{
    // Both SYNs cross (no SYN-ACK yet): a SYN has been seen each way.
    Nat nat(small_config());
    Tcp tcp(nat);
    ASSERT_NO_FATAL_FAILURE(tcp.syn());
    ASSERT_TRUE(forwarded(tcp.in(kSyn)));
    const Tick t1 = nat.now();
    EXPECT_FALSE(tcp.expired_at(last_alive(t1, kEstablished)));
    EXPECT_TRUE(tcp.expired_at(gone_at(t1, kEstablished)));
}

TEST_F(Timeouts, Rfc7857Sec2_FinBothWaysIsTransitory)
{
    Nat nat(small_config());
    Tcp tcp(nat);
    ASSERT_NO_FATAL_FAILURE(tcp.establish());
    nat.advance(1000);
    const Tick t1 = nat.now();
    ASSERT_TRUE(forwarded(tcp.out(kFin | kAck)));
    ASSERT_TRUE(forwarded(tcp.in(kFin | kAck)));
    EXPECT_FALSE(tcp.expired_at(last_alive(t1, kTransitory)));
    EXPECT_TRUE(tcp.expired_at(gone_at(t1, kTransitory)));
}

TEST_F(Timeouts, Rfc7857Sec2_FinOneWayStaysEstablished)
{
    Nat nat(small_config());
    Tcp tcp(nat);
    ASSERT_NO_FATAL_FAILURE(tcp.establish());
    nat.advance(1000);
    const Tick t1 = nat.now();
    ASSERT_TRUE(forwarded(tcp.out(kFin | kAck)));
    EXPECT_FALSE(tcp.expired_at(gone_at(t1, kTransitory))) << "a half-close is not a close";
    EXPECT_FALSE(tcp.expired_at(last_alive(t1, kEstablished)));
    EXPECT_TRUE(tcp.expired_at(gone_at(t1, kEstablished)));
}

TEST_F(Timeouts, Rfc7857Sec2_InboundFinOneWayStaysEstablished)
{
    Nat nat(small_config());
    Tcp tcp(nat);
    ASSERT_NO_FATAL_FAILURE(tcp.establish());
    nat.advance(1000);
    const Tick t1 = nat.now();
    ASSERT_TRUE(forwarded(tcp.in(kFin | kAck)));
    EXPECT_FALSE(tcp.expired_at(gone_at(t1, kTransitory))) << "the remote's half-close is not a close";
    EXPECT_FALSE(tcp.expired_at(last_alive(t1, kEstablished)));
    EXPECT_TRUE(tcp.expired_at(gone_at(t1, kEstablished)));
}

TEST_F(Timeouts, Rfc7857Sec2_InboundWithoutSynDoesNotEstablish)
{
    // Only a SYN from the outside counts: ACKs and data from the remote before
    // its SYN leave the connection half-open, on the transitory timer.
    Nat nat(small_config());
    Tcp tcp(nat);
    ASSERT_NO_FATAL_FAILURE(tcp.syn());
    ASSERT_TRUE(forwarded(tcp.in(kAck)));
    ASSERT_TRUE(forwarded(tcp.in(kAck | kPsh)));
    const Tick t1 = nat.now();
    EXPECT_TRUE(tcp.expired_at(gone_at(t1, kTransitory)));
    nat.set_time(gone_at(t1, kTransitory));
    EXPECT_TRUE(dropped(tcp.in(kAck), Drop::NoMapping));
}

TEST_F(Timeouts, Rfc7857Sec2_OutboundRstIsTransitory)
{
    Nat nat(small_config());
    Tcp tcp(nat);
    ASSERT_NO_FATAL_FAILURE(tcp.establish());
    nat.advance(1000);
    const Tick t1 = nat.now();
    const Outcome rst = tcp.out(kRst);
    ASSERT_TRUE(forwarded(rst));
    EXPECT_EQ(rst.parsed().tcp_flags, kRst);
    EXPECT_FALSE(tcp.expired_at(last_alive(t1, kTransitory)));
    EXPECT_TRUE(tcp.expired_at(gone_at(t1, kTransitory)));
}

TEST_F(Timeouts, Rfc7857Sec2_2_InboundRstIsTranslatedAndKeptFourMinutes)
{
    Nat nat(small_config());
    Tcp tcp(nat);
    ASSERT_NO_FATAL_FAILURE(tcp.establish());
    nat.advance(1000);
    const Tick t1 = nat.now();
    const Bytes sent = tcp_packet(kRemote1, kY, tcp.ext, tcp.ep, kRst | kAck);
    const Outcome rst = nat.in(sent);
    ASSERT_TRUE(forwarded(rst)) << "RFC 7857 §2.2: a RST matching a mapping MUST be translated";
    expect_rewritten(parse_ipv4(sent), rst.parsed(), Dir::In, kSub1, kX);
    EXPECT_FALSE(tcp.expired_at(last_alive(t1, kTransitory)));
    EXPECT_TRUE(tcp.expired_at(gone_at(t1, kTransitory)));
    // 60 s later the same 5-tuple still uses the same mapping.
    nat.set_time(t1 + 60);
    const Outcome again = tcp.out(kSyn);
    ASSERT_TRUE(forwarded(again));
    EXPECT_EQ(again.parsed().sport, tcp.ep);
}

TEST_F(Timeouts, Rfc7857Sec2_RstOnOneOfTwoSessionsStillLetsTheMappingExpire)
{
    // Established to Y1, a second (transitory) session to Y2; then Y1 is
    // reset. Once both sessions are over the mapping is over: inbound is
    // NoMapping and expiry releases it, long before the old 7440 s.
    Nat nat(small_config());
    Tcp tcp(nat);
    const Tick t0 = nat.now();
    ASSERT_NO_FATAL_FAILURE(tcp.establish());
    ASSERT_TRUE(forwarded(nat.out(tcp_packet(kSub1, kX, kRemote2, kY, kSyn))));
    nat.set_time(t0 + 10);
    ASSERT_TRUE(forwarded(tcp.out(kRst)));
    const Tick end = gone_at(t0 + 10, kTransitory); // Y1 transitory after the RST; Y2 gone at t0+241
    EXPECT_FALSE(tcp.expired_at(end - 1));
    EXPECT_TRUE(tcp.expired_at(end));
    nat.set_time(end);
    EXPECT_TRUE(dropped(tcp.in(kAck), Drop::NoMapping)) << "an expired mapping took inbound traffic";
    EXPECT_EQ(nat.tr.expire(end, nat.tr.table().capacity()), 1u) << "the expired mapping was not released";
    EXPECT_EQ(nat.tr.partition(0, L4::Tcp).quarantined_count(), 1u);
}

TEST_F(Timeouts, Rfc7857Sec2_OutboundRstWithoutMappingIsNoMapping)
{
    Nat nat(small_config());
    EXPECT_TRUE(dropped(nat.out(tcp_packet(kSub1, kX, kRemote1, kY, kRst)), Drop::NoMapping));
    EXPECT_TRUE(dropped(nat.out(tcp_packet(kSub1, kX, kRemote1, kY, kRst | kAck)), Drop::NoMapping));
    EXPECT_EQ(nat.mapping_of(kSub1, kX, L4::Tcp), kNoMapping);
    EXPECT_EQ(nat.tr.table().mapping_count(), 0u);
    EXPECT_EQ(nat.tr.partition(0, L4::Tcp).in_use_count(), 0u) << "a port was taken for a RST";
}

TEST_F(Timeouts, OutboundNonSynWithoutMappingCreatesOneWithTransitoryTimeout)
{
    Nat nat(small_config());
    Tcp tcp(nat);
    const Tick t0 = nat.now();
    ASSERT_TRUE(forwarded(tcp.out(kAck | kPsh)));
    ASSERT_NE(tcp.idx(), kNoMapping);
    EXPECT_FALSE(tcp.expired_at(last_alive(t0, kTransitory)));
    EXPECT_TRUE(tcp.expired_at(gone_at(t0, kTransitory)));
}

// ------------------------------------------------------------- UDP / ICMP

TEST_F(Timeouts, Rfc4787Req5_UdpMappingLivesThreeHundredSeconds)
{
    Nat nat(small_config());
    const Tick t0 = nat.now();
    const uint16_t ep = nat.open_udp(kSub1, 1000, kRemote1, 5000);
    ASSERT_NE(ep, 0);
    const uint32_t idx = nat.mapping_of(kSub1, 1000, L4::Udp);
    EXPECT_FALSE(nat.tr.mapping_expired(idx, last_alive(t0, kUdp)));
    EXPECT_TRUE(nat.tr.mapping_expired(idx, gone_at(t0, kUdp)));
    nat.set_time(t0 + 295); // REQ-5c probe
    EXPECT_TRUE(forwarded(nat.in(udp_packet(kRemote1, 5000, nat.cfg.pool[0], ep))));
}

TEST_F(Timeouts, Rfc4787Req5_UdpInboundAfterTimeoutIsNoMapping)
{
    Nat nat(small_config());
    const Tick t0 = nat.now();
    const uint16_t ep = nat.open_udp(kSub1, 1000, kRemote1, 5000);
    ASSERT_NE(ep, 0);
    nat.set_time(gone_at(t0, kUdp));
    EXPECT_TRUE(dropped(nat.in(udp_packet(kRemote1, 5000, nat.cfg.pool[0], ep)), Drop::NoMapping));
}

TEST_F(Timeouts, Rfc4787Req6_OutboundRefreshesAndKeepsThePort)
{
    Nat nat(small_config());
    const Tick t0 = nat.now();
    const uint16_t ep = nat.open_udp(kSub1, 1000, kRemote1, 5000);
    for (Tick t = 100; t <= 600; t += 100) {
        nat.set_time(t0 + t);
        EXPECT_EQ(nat.open_udp(kSub1, 1000, kRemote1, 5000), ep) << "at +" << t;
    }
    const uint32_t idx = nat.mapping_of(kSub1, 1000, L4::Udp);
    EXPECT_FALSE(nat.tr.mapping_expired(idx, last_alive(t0 + 600, kUdp)));
    EXPECT_TRUE(nat.tr.mapping_expired(idx, gone_at(t0 + 600, kUdp)));
}

TEST_F(Timeouts, MappingLivesWhileAnySessionLives)
{
    Nat nat(small_config());
    const Tick t0 = nat.now();
    ASSERT_NE(nat.open_udp(kSub1, 1000, kRemote1, 5000), 0);
    nat.set_time(t0 + 100);
    ASSERT_NE(nat.open_udp(kSub1, 1000, kRemote2, 5000), 0);
    const uint32_t idx = nat.mapping_of(kSub1, 1000, L4::Udp);
    const uint32_t cap = nat.tr.table().capacity();
    EXPECT_EQ(nat.tr.expire(last_alive(t0, kUdp), cap), 0u);
    EXPECT_EQ(nat.tr.table().session_count(idx), 2u) << "the Y1 session was swept before its time";
    EXPECT_FALSE(nat.tr.mapping_expired(idx, gone_at(t0, kUdp)));
    EXPECT_EQ(nat.tr.expire(gone_at(t0, kUdp), cap), 0u);
    EXPECT_EQ(nat.mapping_of(kSub1, 1000, L4::Udp), idx);
    EXPECT_EQ(nat.tr.table().session_count(idx), 1u) << "the Y1 session should be swept";
    EXPECT_FALSE(nat.tr.mapping_expired(idx, last_alive(t0 + 100, kUdp)));
    EXPECT_TRUE(nat.tr.mapping_expired(idx, gone_at(t0 + 100, kUdp)));
}

// ------------------------------------------------------ expiry and release

TEST_F(Timeouts, ExpireReleasesTheMappingAndQuarantinesThePort)
{
    Nat nat(small_config());
    const Tick t0 = nat.now();
    const uint16_t a = nat.open_udp(kSub1, 1000), b = nat.open_udp(kSub1, 1001);
    nat.set_time(t0 + 100);
    const uint16_t c = nat.open_udp(kSub1, 1002);
    ASSERT_EQ(a, 50000);
    ASSERT_EQ(b, 50001);
    ASSERT_EQ(c, 50002);
    const uint32_t cap = nat.tr.table().capacity();
    EXPECT_EQ(nat.tr.expire(last_alive(t0, kUdp), cap), 0u) << "released before its time";
    EXPECT_EQ(nat.tr.table().mapping_count(), 3u);

    const Tick t1 = gone_at(t0, kUdp);
    nat.set_time(t1);
    EXPECT_EQ(nat.tr.expire(t1, cap), 2u);
    EXPECT_EQ(nat.tr.stats().mappings_released[unsigned(L4::Udp)], 2u);
    EXPECT_EQ(nat.tr.table().mapping_count(), 1u);
    EXPECT_EQ(nat.mapping_of(kSub1, 1000, L4::Udp), kNoMapping);
    EXPECT_EQ(nat.mapping_of(kSub1, 1001, L4::Udp), kNoMapping);
    EXPECT_NE(nat.mapping_of(kSub1, 1002, L4::Udp), kNoMapping);
    EXPECT_EQ(nat.tr.mapping_at(net32(nat.cfg.pool[0]), a, L4::Udp), kNoMapping);
    EXPECT_TRUE(nat.partition_consistent(0, L4::Udp));
    EXPECT_EQ(nat.tr.partition(0, L4::Udp).quarantined_count(), 2u);
    EXPECT_EQ(nat.tr.partition(0, L4::Udp).in_use_count(), 1u);
    EXPECT_EQ(nat.tr.expire(t1, cap), 0u) << "released twice";

    // RFC 6888 REQ-8: the same X:x comes back on a fresh port, not the quarantined one.
    const uint16_t again = nat.open_udp(kSub1, 1000);
    EXPECT_NE(again, a);
    EXPECT_NE(again, b);
    EXPECT_EQ(again, 50003);
    // Quarantined through t1 + quarantine...
    nat.set_time(last_quarantined(t1, nat.cfg.timeouts.quarantine));
    EXPECT_TRUE(nat.partition_consistent(0, L4::Udp));
    EXPECT_EQ(nat.tr.partition(0, L4::Udp).quarantined_count(), 2u);
    EXPECT_EQ(nat.tr.partition(0, L4::Udp).free_count(), 16u - 2u - 2u);
    // ...then the released ports are free again (at the back of the FIFO).
    nat.set_time(free_at(t1, nat.cfg.timeouts.quarantine));
    EXPECT_TRUE(nat.partition_consistent(0, L4::Udp));
    EXPECT_EQ(nat.tr.partition(0, L4::Udp).quarantined_count(), 0u);
    EXPECT_EQ(nat.tr.partition(0, L4::Udp).free_count(), 16u - 2u);
}

TEST_F(Timeouts, ExpireWithASmallBudgetGetsThereInSteps)
{
    Nat nat(small_config());
    const Tick t0 = nat.now();
    for (uint16_t i = 0; i < 10; ++i) ASSERT_NE(nat.open_udp(kSub1, uint16_t(1000 + i)), 0);
    for (uint32_t round = 0; round < nat.tr.table().capacity(); ++round)
        ASSERT_EQ(nat.tr.expire(last_alive(t0, kUdp), 4), 0u) << "released before its time";
    const Tick t1 = gone_at(t0, kUdp);
    uint32_t released = 0;
    for (uint32_t round = 0; round < nat.tr.table().capacity() && released < 10; ++round) {
        const uint32_t n = nat.tr.expire(t1, 4);
        EXPECT_LE(n, 4u) << "more released than slots visited";
        released += n;
    }
    EXPECT_EQ(released, 10u);
    EXPECT_EQ(nat.tr.table().mapping_count(), 0u);
}

TEST_F(Timeouts, ExpiryOfATcpMappingAfterRst)
{
    Nat nat(small_config());
    Tcp tcp(nat);
    ASSERT_NO_FATAL_FAILURE(tcp.establish());
    const Tick t1 = nat.now();
    ASSERT_TRUE(forwarded(tcp.out(kRst)));
    EXPECT_EQ(nat.tr.expire(last_alive(t1, kTransitory), nat.tr.table().capacity()), 0u);
    EXPECT_EQ(nat.tr.expire(gone_at(t1, kTransitory), nat.tr.table().capacity()), 1u);
    EXPECT_EQ(nat.tr.partition(0, L4::Tcp).quarantined_count(), 1u);
}

TEST_F(Timeouts, ReleaseMappingEndsItNow)
{
    Nat nat(small_config());
    const uint16_t ep = nat.open_udp(kSub1, 1000, kRemote1, 5000);
    const uint32_t idx = nat.mapping_of(kSub1, 1000, L4::Udp);
    nat.tr.release_mapping(idx, nat.now());
    EXPECT_EQ(nat.mapping_of(kSub1, 1000, L4::Udp), kNoMapping);
    EXPECT_EQ(nat.tr.stats().mappings_released[unsigned(L4::Udp)], 1u);
    EXPECT_TRUE(dropped(nat.in(udp_packet(kRemote1, 5000, nat.cfg.pool[0], ep)), Drop::NoMapping));
    EXPECT_EQ(nat.tr.partition(0, L4::Udp).quarantined_count(), 1u);
    EXPECT_TRUE(nat.partition_consistent(0, L4::Udp));
}

} // namespace
} // namespace ephtest
