// Fragments (RFC 4787 REQ-14: a NAT must accept them, in and out of order):
// the gateway's reassembly makes the datagram whole before translation, and
// the translator takes a whole datagram in a chain of mbufs, rewriting its
// headers with incremental checksums that stay valid over every segment.
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include <rte_cycles.h>

#include "../dataplane/reassembly.hpp"
#include "nat_harness.hpp"

namespace ephtest {
namespace {

using ephemera::Reassembly;

using Reassembled = NatTest;

constexpr uint16_t kL3 = 14; // untagged frames

// The IPv4 fragments of ip_packet (DF clear), `chunk` payload bytes each
// (a multiple of 8), as frames from the inside.
std::vector<Bytes> fragment(const Bytes& ip_packet, size_t chunk)
{
    const Parsed whole = parse_ipv4(ip_packet);
    const Bytes payload(ip_packet.begin() + whole.ihl * 4, ip_packet.end());
    std::vector<Bytes> frames;
    for (size_t at = 0; at < payload.size(); at += chunk) {
        Ipv4Opts o;
        o.id = whole.id;
        o.ttl = whole.ttl;
        o.mf = at + chunk < payload.size();
        o.frag_offset = uint16_t(at / 8);
        const Bytes part(payload.begin() + long(at), payload.begin() + long(std::min(payload.size(), at + chunk)));
        frames.push_back(Nat::inside_frame(ipv4_packet(whole.src, whole.dst, whole.proto, part, o)));
    }
    return frames;
}

Bytes l4_of(const Bytes& frame) { return parse_frame(frame).l4; }

class Table {
public:
    explicit Table(uint32_t slots = 16, double timeout_s = 2.0)
        : r(slots, uint64_t(timeout_s * double(rte_get_tsc_hz())), SOCKET_ID_ANY)
    {
    }
    // Adds the frames in the given order at time tsc; returns what came out whole.
    std::vector<rte_mbuf*> feed(const std::vector<Bytes>& frames, const std::vector<size_t>& order, uint64_t tsc)
    {
        std::vector<rte_mbuf*> out;
        for (size_t i : order)
            if (rte_mbuf* m = make_mbuf(frames[i]))
                if (rte_mbuf* whole = r.add(m, kL3, tsc)) out.push_back(whole);
        return out;
    }
    Reassembly r;
};

TEST_F(Reassembled, Rfc4787Req14FragmentsInAnyOrderMakeTheWholeDatagram)
{
    const Bytes sent = udp_packet(kSub1, 40000, kRemote1, 53, pattern(3000));
    const std::vector<Bytes> frames = fragment(sent, 1200); // 3 fragments
    ASSERT_EQ(frames.size(), 3u);
    for (const std::vector<size_t>& order : {std::vector<size_t>{0, 1, 2}, {2, 1, 0}, {1, 2, 0}}) {
        Table t;
        const uint64_t now = rte_rdtsc();
        const auto out = t.feed(frames, order, now);
        ASSERT_EQ(out.size(), 1u);
        const Parsed p = parse_frame(mbuf_bytes(out[0]));
        EXPECT_EQ(p.l4, l4_of(Nat::inside_frame(sent))) << "payload in order";
        EXPECT_FALSE(p.mf);
        EXPECT_EQ(p.frag_offset, 0);
        EXPECT_EQ(p.total_length, sent.size());
        EXPECT_TRUE(checksums_ok(p)) << "header and UDP checksum of the whole datagram";
        EXPECT_EQ(t.r.reassembled(), 1u);
        EXPECT_EQ(t.r.dropped(), 0u);
        rte_pktmbuf_free(out[0]);
    }
}

TEST_F(Reassembled, IncompleteDatagramIsHeldThenDroppedAndCountedAfterTheTimeout)
{
    const unsigned before = mbufs_available();
    {
        Table t(16, 0.001);
        const std::vector<Bytes> frames = fragment(udp_packet(kSub1, 40001, kRemote1, 53, pattern(3000)), 1200);
        const uint64_t now = rte_rdtsc();
        EXPECT_TRUE(t.feed(frames, {0, 2}, now).empty()); // the middle one never comes
        EXPECT_EQ(mbufs_available(), before - 2) << "the fragments are held";
        t.r.expire(now + rte_get_tsc_hz()); // a second later
        EXPECT_EQ(t.r.dropped(), 2u);
        EXPECT_EQ(mbufs_available(), before) << "and freed when their time is up";
    }
    EXPECT_EQ(mbufs_available(), before);
}

TEST_F(Reassembled, Rfc4787Req14AFloodOfIncompleteDatagramsIsBoundedAndCounted)
{
    const unsigned before = mbufs_available();
    {
        Table t(8); // 8 datagrams at once
        const uint64_t now = rte_rdtsc();
        for (uint16_t i = 0; i < 40; ++i) {
            Ipv4Opts o;
            o.id = uint16_t(1000 + i);
            o.mf = true; // a first fragment whose rest never comes
            t.feed({Nat::inside_frame(ipv4_packet(kSub1, kRemote1, 17, pattern(800), o))}, {0}, now);
        }
        EXPECT_EQ(t.r.fragments(), 40u);
        EXPECT_LE(before - mbufs_available(), 8u) << "no more than the table's slots are held";
        EXPECT_GE(t.r.dropped(), 32u);
        // A complete datagram still gets through once older ones have timed out.
        t.r.expire(now + 3 * rte_get_tsc_hz());
        const auto out = t.feed(fragment(udp_packet(kSub2, 40002, kRemote1, 53, pattern(2000)), 1200), {0, 1},
                                now + 3 * rte_get_tsc_hz());
        ASSERT_EQ(out.size(), 1u);
        rte_pktmbuf_free(out[0]);
    }
    EXPECT_EQ(mbufs_available(), before);
}

TEST_F(Reassembled, Rfc4787Req14ADamagedCopyOfAFragmentDoesNotSpoilItsDatagram)
{
    const Bytes sent = udp_packet(kSub1, 40003, kRemote1, 53, pattern(3000));
    const std::vector<Bytes> frames = fragment(sent, 1200);
    Bytes damaged = frames[0];
    damaged[kL3 + 8] ^= 0x20; // the TTL: the header checksum no longer holds
    Table t;
    const auto out = t.feed({frames[0], damaged, frames[1], frames[2]}, {0, 1, 2, 3}, rte_rdtsc());
    ASSERT_EQ(out.size(), 1u) << "taken for a second first fragment, the copy would drop the datagram";
    EXPECT_EQ(parse_frame(mbuf_bytes(out[0])).l4, l4_of(Nat::inside_frame(sent)));
    EXPECT_EQ(t.r.dropped(), 1u);
    rte_pktmbuf_free(out[0]);
}

TEST_F(Reassembled, MalformedFragmentsAreDroppedAndCountedNeverHeld)
{
    auto frag = [](auto&& set) {
        Ipv4Opts o;
        o.id = 0x7777;
        o.mf = true;
        set(o);
        return Nat::inside_frame(ipv4_packet(kSub1, kRemote1, 17, pattern(800), o));
    };
    const std::vector<std::pair<const char*, Bytes>> cases = {
        {"total length beyond the frame", frag([](Ipv4Opts& o) { o.total_length = 1500; })},
        {"IHL below 5", frag([](Ipv4Opts& o) { o.ihl = 4; })},
        {"IHL beyond the total length", frag([](Ipv4Opts& o) { o.ihl = 15; o.total_length = 40; })},
        {"no payload", frag([](Ipv4Opts& o) { o.total_length = 20; })},
        {"not the last, payload not a multiple of 8", frag([](Ipv4Opts& o) { o.total_length = 20 + 801; })},
        {"beyond 65535 bytes", frag([](Ipv4Opts& o) { o.frag_offset = 8100; })},
        {"version 6", frag([](Ipv4Opts& o) { o.version = 6; })},
        {"bad header checksum", frag([](Ipv4Opts& o) { o.bad_checksum = true; })},
    };
    const unsigned before = mbufs_available();
    Table t;
    uint64_t dropped = 0;
    for (const auto& [what, frame] : cases) {
        EXPECT_TRUE(t.feed({frame}, {0}, rte_rdtsc()).empty()) << what;
        EXPECT_EQ(t.r.dropped(), ++dropped) << what;
        EXPECT_EQ(mbufs_available(), before) << what << ": not held";
    }
    // The well-formed one of the same kind is held.
    EXPECT_TRUE(t.feed({frag([](Ipv4Opts&) {})}, {0}, rte_rdtsc()).empty());
    EXPECT_EQ(t.r.dropped(), dropped);
    EXPECT_EQ(mbufs_available(), before - 1);
}

TEST_F(Reassembled, UdpDatagramInSegmentsIsTranslatedBothWaysWithValidChecksums)
{
    Nat nat(small_config());
    const Bytes sent = udp_packet(kSub1, 40000, kRemote1, 53, pattern(3000));
    const Outcome o = nat.out_chained(sent, 1000);
    ASSERT_TRUE(forwarded(o)) << describe(o);
    const uint32_t ext = nat.paired_addr(kSub1);
    expect_rewritten(parse_ipv4(sent), o.parsed(), Dir::Out, ext, 50000);
    EXPECT_TRUE(checksums_ok(o.parsed()));

    const Bytes reply = udp_packet(kRemote1, 53, ext, 50000, pattern(2500, 0x41));
    const Outcome i = nat.in_chained(reply, 700);
    ASSERT_TRUE(forwarded(i)) << describe(i);
    expect_rewritten(parse_ipv4(reply), i.parsed(), Dir::In, kSub1, 40000);
    EXPECT_TRUE(checksums_ok(i.parsed()));
}

TEST_F(Reassembled, TcpSegmentAndEchoInSegmentsAreTranslated)
{
    Nat nat(small_config());
    const Bytes syn = tcp_packet(kSub1, 40010, kRemote1, 80, kSyn);
    ASSERT_TRUE(forwarded(nat.out(syn)));
    const Bytes data = tcp_packet(kSub1, 40010, kRemote1, 80, kAck | kPsh, pattern(2800));
    const Outcome t = nat.out_chained(data, 600);
    ASSERT_TRUE(forwarded(t)) << describe(t);
    EXPECT_TRUE(checksums_ok(t.parsed()));

    const Outcome e = nat.out_chained(echo_packet(kSub1, kRemote1, false, 0x4242, 1, pattern(2000)), 300);
    ASSERT_TRUE(forwarded(e)) << describe(e);
    EXPECT_TRUE(checksums_ok(e.parsed()));
}

TEST_F(Reassembled, SctpAndIcmpErrorsInSegmentsAreUnsupportedNotMisTranslated)
{
    Nat nat(small_config());
    const Bytes sctp = sctp_ip_packet(kSub1, 5000, kRemote1, 5000, 7, sctp_data_chunk(1, pattern(2000)));
    EXPECT_TRUE(dropped(nat.out_chained(sctp, 600), Drop::Unsupported)); // its CRC32c needs the whole payload
    ASSERT_NE(nat.open_udp(kSub1, 40020), 0);
    const Bytes quoted = udp_packet(kSub1, 40020, kRemote1, 5000, pattern(1400));
    const Bytes err = icmp_error_packet(kSub1, kRemote1, 3, 3, quoted, 0);
    EXPECT_TRUE(dropped(nat.out_chained(err, 200), Drop::Unsupported));
}

TEST_F(Reassembled, HeadersThatDoNotFitTheFirstSegmentAreUnsupported)
{
    Nat nat(small_config());
    const Bytes sent = udp_packet(kSub1, 40030, kRemote1, 53, pattern(1000));
    EXPECT_TRUE(dropped(nat.out_chained(sent, 14 + 20 + 4), Drop::Unsupported)); // half a UDP header
    EXPECT_EQ(nat.mapping_of(kSub1, 40030, L4::Udp), ephemera::kNoMapping);
}

} // namespace
} // namespace ephtest
