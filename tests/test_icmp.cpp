// ICMP queries (echo): the identifier is the "port" (RFC 5508 REQ-1).
#include <set>

#include <gtest/gtest.h>

#include "nat_harness.hpp"

namespace ephtest {
namespace {

using ephemera::kNoMapping;
using ephemera::NatConfig;

using IcmpEcho = NatTest;

TEST_F(IcmpEcho, Rfc5508Req1_EchoRequestOutboundRewritesIdentifier)
{
    Nat nat(small_config());
    for (size_t len : {0u, 1u, 56u, 57u}) { // odd lengths exercise the checksum's last byte
        SCOPED_TRACE(len);
        Ipv4Opts ipo;
        ipo.id = uint16_t(0x1000 + len);
        const Bytes sent = echo_packet(kSub1, kRemote1, false, 0x1234, uint16_t(7 + len), pattern(len), ipo);
        const Outcome o = nat.out(sent);
        ASSERT_TRUE(forwarded(o));
        EXPECT_EQ(o.parsed().icmp_type, 8);
        expect_rewritten(parse_ipv4(sent), o.parsed(), Dir::Out, nat.paired_addr(kSub1), 50000);
    }
    const uint32_t idx = nat.mapping_of(kSub1, 0x1234, L4::Icmp);
    ASSERT_NE(idx, kNoMapping);
    EXPECT_EQ(host16(nat.tr.table().mapping(idx).ext_port), 50000);
    EXPECT_EQ(nat.tr.table().mapping_count(), 1u);
}

TEST_F(IcmpEcho, Rfc5508Req1_EchoReplyInboundRestoresIdentifier)
{
    Nat nat(small_config());
    ASSERT_TRUE(forwarded(nat.out(echo_packet(kSub1, kRemote1, false, 0x1234, 1, pattern(56)))));
    for (size_t len : {56u, 57u}) {
        const Bytes sent = echo_packet(kRemote1, nat.paired_addr(kSub1), true, 50000, 1, pattern(len));
        const Outcome o = nat.in(sent);
        ASSERT_TRUE(forwarded(o));
        EXPECT_EQ(o.parsed().icmp_type, 0);
        expect_rewritten(parse_ipv4(sent), o.parsed(), Dir::In, kSub1, 0x1234);
    }
}

TEST_F(IcmpEcho, EchoWithIpOptionsAndVlan)
{
    Nat nat(small_config());
    const Bytes opts{0x94, 0x04, 0x00, 0x00};
    const Bytes sent = echo_packet(kSub1, kRemote1, false, 0x0001, 9, pattern(20), with_ip_options(opts));
    const Bytes frame = Nat::inside_frame(sent, uint16_t(100));
    const Outcome o = nat.out_frame(frame);
    ASSERT_TRUE(forwarded(o));
    expect_rewritten(parse_frame(frame), o.parsed(), Dir::Out, nat.paired_addr(kSub1), 50000);
    const Bytes reply = echo_packet(kRemote1, nat.paired_addr(kSub1), true, 50000, 9, pattern(20), with_ip_options(opts));
    const Bytes rframe = Nat::outside_frame(reply, uint16_t(200));
    const Outcome i = nat.in_frame(rframe);
    ASSERT_TRUE(forwarded(i));
    expect_rewritten(parse_frame(rframe), i.parsed(), Dir::In, kSub1, 0x0001);
}

TEST_F(IcmpEcho, Rfc5508Req1a_IdentifierMappedIndependentlyOfTheRemote)
{
    NatConfig c = small_config();
    c.pool = pool_28();
    Nat nat(c);
    std::set<std::pair<uint32_t, uint16_t>> seen;
    for (uint32_t y : {kRemote1, kRemote2, ip(192, 0, 2, 33), kRemote1}) {
        const Outcome o = nat.out(echo_packet(kSub1, y, false, 0x7777, 3, pattern(8)));
        ASSERT_TRUE(forwarded(o));
        seen.insert({o.parsed().src, o.parsed().icmp_id});
    }
    EXPECT_EQ(seen.size(), 1u);
    // Replies from each remote reach X with its identifier.
    const auto [xa, xid] = *seen.begin();
    for (uint32_t y : {kRemote1, kRemote2}) {
        const Outcome r = nat.in(echo_packet(y, xa, true, xid, 3, pattern(8)));
        ASSERT_TRUE(forwarded(r));
        EXPECT_EQ(r.parsed().icmp_id, 0x7777);
        EXPECT_EQ(r.parsed().dst, kSub1);
    }
}

TEST_F(IcmpEcho, IdentifiersAreNotOverloaded)
{
    Nat nat(small_config());
    const Outcome a = nat.out(echo_packet(kSub1, kRemote1, false, 0x4242, 1));
    const Outcome b = nat.out(echo_packet(kSub2, kRemote1, false, 0x4242, 1));
    const Outcome c = nat.out(echo_packet(kSub1, kRemote1, false, 0x4243, 1));
    ASSERT_TRUE(forwarded(a));
    ASSERT_TRUE(forwarded(b));
    ASSERT_TRUE(forwarded(c));
    const std::set<uint16_t> ids{a.parsed().icmp_id, b.parsed().icmp_id, c.parsed().icmp_id};
    EXPECT_EQ(ids.size(), 3u);
    const Outcome rb = nat.in(echo_packet(kRemote1, b.parsed().src, true, b.parsed().icmp_id, 1));
    ASSERT_TRUE(forwarded(rb));
    EXPECT_EQ(rb.parsed().dst, kSub2);
    EXPECT_EQ(rb.parsed().icmp_id, 0x4242);
}

TEST_F(IcmpEcho, ReplyToUnknownIdentifierIsNoMapping)
{
    Nat nat(small_config());
    ASSERT_TRUE(forwarded(nat.out(echo_packet(kSub1, kRemote1, false, 1, 1))));
    EXPECT_TRUE(dropped(nat.in(echo_packet(kRemote1, nat.cfg.pool[0], true, 50001, 1)), Drop::NoMapping));
    EXPECT_TRUE(dropped(nat.in(echo_packet(kRemote1, ip(198, 51, 100, 77), true, 50000, 1)), Drop::NoMapping));
}

TEST_F(IcmpEcho, Rfc5508Req2_QueryTimeoutIsSixtySeconds)
{
    Nat nat(small_config());
    EXPECT_EQ(nat.tr.session_timeout(uint8_t(L4::Icmp), 0), 60u);
    const Tick t0 = nat.now();
    ASSERT_TRUE(forwarded(nat.out(echo_packet(kSub1, kRemote1, false, 9, 1))));
    const uint32_t idx = nat.mapping_of(kSub1, 9, L4::Icmp);
    ASSERT_NE(idx, kNoMapping);
    EXPECT_FALSE(nat.tr.mapping_expired(idx, last_alive(t0, 60)));
    EXPECT_TRUE(nat.tr.mapping_expired(idx, gone_at(t0, 60)));
    nat.set_time(t0 + 58); // RFC 5508 REQ-2's probe: a reply 58 s later is delivered
    EXPECT_TRUE(forwarded(nat.in(echo_packet(kRemote1, nat.cfg.pool[0], true, 50000, 1))));
}

TEST_F(IcmpEcho, Rfc5508Req2_ReplyAfterTheQueryTimeoutIsNoMapping)
{
    Nat nat(small_config());
    const Tick t0 = nat.now();
    ASSERT_TRUE(forwarded(nat.out(echo_packet(kSub1, kRemote1, false, 9, 1))));
    nat.set_time(gone_at(t0, 60));
    EXPECT_TRUE(dropped(nat.in(echo_packet(kRemote1, nat.cfg.pool[0], true, 50000, 1)), Drop::NoMapping));
}

TEST_F(IcmpEcho, EchoRequestRefreshesTheQueryMapping)
{
    Nat nat(small_config());
    const Tick t0 = nat.now();
    ASSERT_TRUE(forwarded(nat.out(echo_packet(kSub1, kRemote1, false, 9, 1))));
    nat.set_time(t0 + 50);
    const Outcome again = nat.out(echo_packet(kSub1, kRemote1, false, 9, 2));
    ASSERT_TRUE(forwarded(again));
    EXPECT_EQ(again.parsed().icmp_id, 50000);
    const uint32_t idx = nat.mapping_of(kSub1, 9, L4::Icmp);
    EXPECT_FALSE(nat.tr.mapping_expired(idx, gone_at(t0, 60))) << "the second request did not refresh";
    EXPECT_FALSE(nat.tr.mapping_expired(idx, last_alive(t0 + 50, 60)));
    EXPECT_TRUE(nat.tr.mapping_expired(idx, gone_at(t0 + 50, 60)));
    nat.set_time(last_alive(t0 + 50, 60));
    EXPECT_TRUE(forwarded(nat.in(echo_packet(kRemote1, nat.cfg.pool[0], true, 50000, 2))));
}

TEST_F(IcmpEcho, OtherIcmpTypesAreUnsupported)
{
    Nat nat(small_config());
    ASSERT_TRUE(forwarded(nat.out(echo_packet(kSub1, kRemote1, false, 9, 1))));
    // Timestamp (13/14), information (15/16), router advertisement (9), address mask (17).
    for (uint8_t type : {13, 14, 15, 16, 9, 17}) {
        SCOPED_TRACE(int(type));
        EXPECT_TRUE(dropped(nat.out(ipv4_packet(kSub1, kRemote1, 1, icmp_message(type, 0, 9u << 16 | 1, pattern(12)))),
                            Drop::Unsupported));
        EXPECT_TRUE(dropped(
            nat.in(ipv4_packet(kRemote1, nat.cfg.pool[0], 1, icmp_message(type, 0, 50000u << 16 | 1, pattern(12)))),
            Drop::Unsupported));
    }
}

} // namespace
} // namespace ephtest
