// The test's own checksum and CRC code against published vectors, and the
// builder/parser against each other: the other suites trust these to judge
// the translator, so they are checked first.
#include <gtest/gtest.h>

#include "packet_builder.hpp"

namespace ephtest {
namespace {

TEST(IndependentChecksum, Rfc1071WorkedExample)
{
    // RFC 1071 §3: the bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2.
    const Bytes b{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
    EXPECT_EQ(ones_fold(ones_sum(b.data(), b.size())), 0xddf2);
    EXPECT_EQ(inet_checksum(b.data(), b.size()), 0x220d);
}

TEST(IndependentChecksum, KnownIpv4Header)
{
    // A well-known header (192.168.0.1 -> 192.168.0.199, UDP) whose checksum is b861.
    Bytes h{0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
            0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7};
    EXPECT_EQ(inet_checksum(h.data(), h.size()), 0xb861);
}

TEST(IndependentChecksum, OddLengthPadsWithZero)
{
    const Bytes b{0x01, 0x02, 0x03};
    EXPECT_EQ(ones_fold(ones_sum(b.data(), b.size())), 0x0102 + 0x0300);
}

TEST(IndependentCrc32c, PublishedVectors)
{
    const std::string s = "123456789";
    EXPECT_EQ(crc32c(reinterpret_cast<const uint8_t*>(s.data()), s.size()), 0xE3069283u);
    // RFC 3720 appendix B.4.
    const Bytes zeros(32, 0x00), ones(32, 0xff);
    EXPECT_EQ(crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);
    EXPECT_EQ(crc32c(ones.data(), ones.size()), 0x62A8AB43u);
    Bytes inc(32);
    for (size_t i = 0; i < 32; ++i) inc[i] = uint8_t(i);
    EXPECT_EQ(crc32c(inc.data(), inc.size()), 0x46DD794Eu);
}

TEST(PacketBuilder, BuiltPacketsVerifyAndTamperedOnesDoNot)
{
    const uint32_t a = ip(100, 64, 0, 2), b = ip(203, 0, 113, 10);
    const std::vector<Bytes> packets = {
        tcp_packet(a, 40000, b, 443, kSyn, pattern(11)),
        udp_packet(a, 40000, b, 53, pattern(13)),
        echo_packet(a, b, false, 0x4242, 7, pattern(17)),
        sctp_ip_packet(a, 5000, b, 5001, 0, sctp_init_chunk(0xabcdef01)),
    };
    for (const Bytes& ipp : packets) {
        const Parsed p = parse_ipv4(ipp);
        EXPECT_TRUE(checksums_ok(p)) << "proto " << int(p.proto);
        for (size_t at : {size_t(1), ipp.size() - 1}) { // a header byte, a payload byte
            Bytes bad = ipp;
            bad[at] ^= 0x40;
            EXPECT_FALSE(checksums_ok(parse_ipv4(bad))) << "proto " << int(p.proto) << " byte " << at;
        }
    }
}

TEST(PacketBuilder, IcmpErrorQuotesAndParsesTheOffendingPacket)
{
    const Bytes inner = udp_packet(ip(198, 51, 100, 1), 50000, ip(203, 0, 113, 10), 53, pattern(20),
                                   with_ip_options({0x01, 0x01, 0x01, 0x00}));
    const Bytes err = icmp_error_packet(ip(203, 0, 113, 254), ip(198, 51, 100, 1), 3, 3, inner);
    const Parsed p = parse_ipv4(err);
    ASSERT_TRUE(p.embedded);
    EXPECT_EQ(p.embedded->src, ip(198, 51, 100, 1));
    EXPECT_EQ(p.embedded->sport, 50000);
    EXPECT_EQ(p.embedded->ihl, 6);
    EXPECT_TRUE(p.embedded->l4_complete);
    EXPECT_TRUE(checksums_ok(p));

    const Parsed shortq = parse_ipv4(icmp_error_packet(ip(203, 0, 113, 254), ip(198, 51, 100, 1), 11, 0, inner, 24 + 8));
    ASSERT_TRUE(shortq.embedded);
    EXPECT_FALSE(shortq.embedded->l4_complete);
    EXPECT_EQ(shortq.embedded->dport, 53);
    EXPECT_TRUE(checksums_ok(shortq));
}

TEST(PacketBuilder, VlanAndPaddingParse)
{
    const Bytes ipp = udp_packet(ip(100, 64, 0, 2), 1, ip(203, 0, 113, 10), 2, {}, {}, true);
    L2 l2;
    l2.vlan_tci = 0x2064;
    l2.pad_to = 64;
    const Bytes f = ether_frame(l2, kEtherIpv4, ipp);
    EXPECT_EQ(f.size(), 64u);
    const Parsed p = parse_frame(f);
    EXPECT_EQ(p.vlan_tci, std::optional<uint16_t>(0x2064));
    EXPECT_EQ(p.l4.size(), 8u); // padding is not part of the IP packet
    EXPECT_EQ(p.l4_checksum, 0);
}

} // namespace
} // namespace ephtest
