// TCP MSS clamping (dataplane/mss_clamp.hpp): SYNs announce no more than the
// links carry, the TCP checksum stays valid wherever the option sits.
#include <gtest/gtest.h>

#include <rte_mbuf.h>

#include "../dataplane/mss_clamp.hpp"
#include "nat_harness.hpp"

namespace ephtest {
namespace {

using MssClamp = NatTest;

constexpr uint16_t kL3 = 14;

struct Clamped {
    bool changed;
    Parsed p;
};

Clamped clamp(const Bytes& ip_packet, uint16_t max_mss)
{
    rte_mbuf* m = make_mbuf(Nat::inside_frame(ip_packet));
    const bool changed = ephemera::mss::clamp(m, kL3, max_mss);
    Clamped c{changed, parse_frame(mbuf_bytes(m))};
    rte_pktmbuf_free(m);
    return c;
}

uint16_t mss_at(const Parsed& p, size_t at) { return uint16_t(p.l4[at] << 8 | p.l4[at + 1]); }

TcpOpts with_options(Bytes options)
{
    TcpOpts o;
    o.options = std::move(options);
    return o;
}

TEST_F(MssClamp, SynAboveTheLimitIsLoweredWithAValidChecksum)
{
    const Bytes syn = tcp_packet(kSub1, 40000, kRemote1, 443, kSyn, {}, {}, with_options({2, 4, 0x05, 0xb4}));
    const Clamped c = clamp(syn, 1360);
    EXPECT_TRUE(c.changed);
    EXPECT_EQ(mss_at(c.p, 22), 1360);
    EXPECT_TRUE(checksums_ok(c.p));
}

TEST_F(MssClamp, OptionAtAnOddOffsetKeepsTheChecksumValid)
{
    // NOP, then MSS at TCP offset 21 (its value at 23-24), then SACK permitted.
    const Bytes syn = tcp_packet(kSub1, 40001, kRemote1, 443, kSyn | kAck, {}, {},
                                 with_options({1, 2, 4, 0x23, 0x28, 4, 2, 1}));
    const Clamped c = clamp(syn, 1400);
    EXPECT_TRUE(c.changed);
    EXPECT_EQ(mss_at(c.p, 23), 1400);
    EXPECT_TRUE(checksums_ok(c.p));
}

TEST_F(MssClamp, SmallerMssNonSynAndMalformedOptionsAreLeftAlone)
{
    const Bytes small = tcp_packet(kSub1, 40002, kRemote1, 443, kSyn, {}, {}, with_options({2, 4, 0x04, 0x00}));
    EXPECT_FALSE(clamp(small, 1360).changed);
    const Bytes ack = tcp_packet(kSub1, 40002, kRemote1, 443, kAck, {}, {}, with_options({2, 4, 0x05, 0xb4}));
    EXPECT_FALSE(clamp(ack, 1360).changed);
    const Bytes bad = tcp_packet(kSub1, 40002, kRemote1, 443, kSyn, {}, {}, with_options({8, 0, 2, 4, 0x05, 0xb4}));
    const Clamped c = clamp(bad, 1360);
    EXPECT_FALSE(c.changed) << "an option of length 0 ends the walk";
    EXPECT_TRUE(checksums_ok(c.p));
    EXPECT_FALSE(clamp(udp_packet(kSub1, 40002, kRemote1, 53, pattern(8)), 1360).changed);
}

} // namespace
} // namespace ephtest
