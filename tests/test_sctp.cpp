// SCTP through NAPT: ports rewritten like TCP/UDP, verification tag kept, and
// the CRC32c recomputed over the whole SCTP packet (RFC 9260 has no
// pseudo-header; the test's CRC is its own bitwise implementation).
#include <gtest/gtest.h>

#include "nat_harness.hpp"

namespace ephtest {
namespace {

using ephemera::kNoMapping;
using ephemera::NatConfig;

using Sctp = NatTest;

Bytes init_ack_chunk(uint32_t tag)
{
    Bytes c = sctp_init_chunk(tag);
    c[0] = 2; // INIT ACK
    return c;
}

TEST_F(Sctp, OutboundInitRewritesSourcePortAndRecomputesCrc32c)
{
    Nat nat(small_config());
    const Bytes sent = sctp_ip_packet(kSub1, 5000, kRemote1, 5001, 0, sctp_init_chunk(0xa1b2c3d4));
    const Outcome o = nat.out(sent);
    ASSERT_TRUE(forwarded(o));
    const Parsed got = o.parsed();
    expect_rewritten(parse_ipv4(sent), got, Dir::Out, nat.paired_addr(kSub1), 50000);
    EXPECT_TRUE(l4_checksum_ok(got)) << "CRC32c";
    EXPECT_EQ(got.sctp_vtag, 0u);
    EXPECT_EQ(nat.ext_port_of(kSub1, 5000, L4::Sctp), 50000);
}

TEST_F(Sctp, InboundInitAckRestoresInsidePortAndRecomputesCrc32c)
{
    Nat nat(small_config());
    ASSERT_TRUE(forwarded(nat.out(sctp_ip_packet(kSub1, 5000, kRemote1, 5001, 0, sctp_init_chunk(0xa1b2c3d4)))));
    const Bytes sent = sctp_ip_packet(kRemote1, 5001, nat.paired_addr(kSub1), 50000, 0xa1b2c3d4, init_ack_chunk(0x55667788));
    const Outcome o = nat.in(sent);
    ASSERT_TRUE(forwarded(o));
    expect_rewritten(parse_ipv4(sent), o.parsed(), Dir::In, kSub1, 5000);
    EXPECT_TRUE(l4_checksum_ok(o.parsed()));
}

TEST_F(Sctp, DataChunksOfManySizesKeepAValidCrc32c)
{
    Nat nat(small_config());
    const uint32_t ext = nat.paired_addr(kSub1);
    ASSERT_TRUE(forwarded(nat.out(sctp_ip_packet(kSub1, 5000, kRemote1, 5001, 0, sctp_init_chunk(1)))));
    for (size_t len : {1u, 3u, 4u, 5u, 100u, 1399u}) {
        SCOPED_TRACE(len);
        Bytes chunks = sctp_data_chunk(uint32_t(len), pattern(len, uint8_t(len)));
        const Bytes more = sctp_data_chunk(uint32_t(len + 1), pattern(7));
        chunks.insert(chunks.end(), more.begin(), more.end()); // two chunks
        const Bytes out = sctp_ip_packet(kSub1, 5000, kRemote1, 5001, 0x01020304, chunks);
        const Outcome o = nat.out(out);
        ASSERT_TRUE(forwarded(o));
        expect_rewritten(parse_ipv4(out), o.parsed(), Dir::Out, ext, 50000);
        const Bytes in = sctp_ip_packet(kRemote1, 5001, ext, 50000, 0x0a0b0c0d, chunks);
        const Outcome i = nat.in(in);
        ASSERT_TRUE(forwarded(i));
        expect_rewritten(parse_ipv4(in), i.parsed(), Dir::In, kSub1, 5000);
    }
}

TEST_F(Sctp, Crc32cCoversTheIpTotalLengthNotTheEthernetPadding)
{
    Nat nat(small_config());
    // 20 + 12 + 16 + 1 (+3 chunk padding) = 52 bytes of IP in a 100-byte frame.
    const Bytes out = sctp_ip_packet(kSub1, 5000, kRemote1, 5001, 7, sctp_data_chunk(1, {0x99}));
    const Outcome o = nat.out_frame(Nat::inside_frame(out, {}, 100));
    ASSERT_TRUE(forwarded(o));
    expect_rewritten(parse_ipv4(out), o.parsed(), Dir::Out, nat.paired_addr(kSub1), 50000);
    const Bytes in = sctp_ip_packet(kRemote1, 5001, nat.paired_addr(kSub1), 50000, 7, sctp_data_chunk(2, {0x98}));
    const Outcome i = nat.in_frame(Nat::outside_frame(in, {}, 100));
    ASSERT_TRUE(forwarded(i));
    expect_rewritten(parse_ipv4(in), i.parsed(), Dir::In, kSub1, 5000);
}

TEST_F(Sctp, VlanAndIpOptions)
{
    Nat nat(small_config());
    const Bytes out = sctp_ip_packet(kSub1, 5000, kRemote1, 5001, 0, sctp_init_chunk(3),
                                     with_ip_options({0x94, 0x04, 0x00, 0x00, 0x01, 0x00}));
    const Bytes frame = Nat::inside_frame(out, uint16_t(7));
    const Outcome o = nat.out_frame(frame);
    ASSERT_TRUE(forwarded(o));
    expect_rewritten(parse_frame(frame), o.parsed(), Dir::Out, nat.paired_addr(kSub1), 50000);
}

TEST_F(Sctp, EndpointIndependentMappingAndNoOverloading)
{
    Nat nat(small_config());
    const Outcome a = nat.out(sctp_ip_packet(kSub1, 5000, kRemote1, 5001, 0, sctp_init_chunk(1)));
    const Outcome b = nat.out(sctp_ip_packet(kSub1, 5000, kRemote2, 6001, 0, sctp_init_chunk(2)));
    const Outcome c = nat.out(sctp_ip_packet(kSub2, 5000, kRemote1, 5001, 0, sctp_init_chunk(3)));
    ASSERT_TRUE(forwarded(a));
    ASSERT_TRUE(forwarded(b));
    ASSERT_TRUE(forwarded(c));
    EXPECT_EQ(a.parsed().sport, b.parsed().sport);
    EXPECT_NE(a.parsed().sport, c.parsed().sport);
}

TEST_F(Sctp, SessionTimeoutIs300Seconds)
{
    Nat nat(small_config());
    EXPECT_EQ(nat.tr.session_timeout(uint8_t(L4::Sctp), 0), 300u);
    const Tick t0 = nat.now();
    ASSERT_TRUE(forwarded(nat.out(sctp_ip_packet(kSub1, 5000, kRemote1, 5001, 0, sctp_init_chunk(1)))));
    const uint32_t idx = nat.mapping_of(kSub1, 5000, L4::Sctp);
    ASSERT_NE(idx, kNoMapping);
    EXPECT_FALSE(nat.tr.mapping_expired(idx, last_alive(t0, 300)));
    EXPECT_TRUE(nat.tr.mapping_expired(idx, gone_at(t0, 300)));
    nat.set_time(gone_at(t0, 300));
    EXPECT_TRUE(dropped(nat.in(sctp_ip_packet(kRemote1, 5001, nat.cfg.pool[0], 50000, 1, init_ack_chunk(9))),
                        Drop::NoMapping));
}

TEST_F(Sctp, InboundWithoutMappingIsNoMapping)
{
    Nat nat(small_config());
    EXPECT_TRUE(dropped(nat.in(sctp_ip_packet(kRemote1, 5001, nat.cfg.pool[0], 50000, 0, sctp_init_chunk(1))),
                        Drop::NoMapping));
}

} // namespace
} // namespace ephtest
