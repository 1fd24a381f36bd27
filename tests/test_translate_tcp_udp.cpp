// TCP and UDP translation field by field, both directions, plus the mapping
// behaviour RFC 4787 / RFC 5382 ask for (EIM, no overloading, paired pooling).
#include <set>
#include <vector>

#include <gtest/gtest.h>

#include "nat_harness.hpp"

namespace ephtest {
namespace {

using ephemera::kNoMapping;
using ephemera::NatConfig;
using ephemera::total;

using Translate = NatTest;

const Bytes kMssOption{0x02, 0x04, 0x05, 0xb4}; // MSS 1460
// Router Alert (RFC 2113) then NOPs: 8 bytes of options, IHL 7.
const Bytes kRouterAlert{0x94, 0x04, 0x00, 0x00, 0x01, 0x01, 0x01, 0x00};
// Record Route with room for nine addresses: 39 bytes + EOL, IHL 15 (the maximum).
Bytes record_route()
{
    Bytes o{0x07, 39, 4};
    o.resize(39, 0);
    return o;
}

TcpOpts tcp_opts(uint32_t seq, uint32_t ack, Bytes options = {})
{
    TcpOpts o;
    o.seq = seq;
    o.ack = ack;
    o.window = 29200;
    o.options = std::move(options);
    return o;
}

// ------------------------------------------------------------------- TCP

TEST_F(Translate, TcpOutboundSynRewritesSourceOnly)
{
    Nat nat(small_config());
    Ipv4Opts ipo;
    ipo.tos = 0x28;
    ipo.id = 0xbeef;
    ipo.df = true;
    ipo.ttl = 64;
    const Bytes sent = tcp_packet(kSub1, 40000, kRemote1, 443, kSyn, {}, ipo, tcp_opts(0x11111111, 0, kMssOption));
    const Outcome o = nat.out(sent);
    ASSERT_TRUE(forwarded(o));
    const uint32_t ext = nat.paired_addr(kSub1);
    EXPECT_EQ(ext, nat.cfg.pool[0]);
    expect_rewritten(parse_ipv4(sent), o.parsed(), Dir::Out, ext, 50000);
    // The table agrees with the packet.
    const uint32_t idx = nat.mapping_of(kSub1, 40000, L4::Tcp);
    ASSERT_NE(idx, kNoMapping);
    const auto& m = nat.tr.table().mapping(idx);
    EXPECT_EQ(host32(m.in_addr), kSub1);
    EXPECT_EQ(host16(m.in_port), 40000);
    EXPECT_EQ(host32(m.ext_addr), ext);
    EXPECT_EQ(host16(m.ext_port), 50000);
    EXPECT_EQ(nat.tr.mapping_at(net32(ext), 50000, L4::Tcp), idx);
    EXPECT_EQ(total(nat.tr.stats().mappings_created), 1u);
    EXPECT_EQ(nat.tr.stats().mappings_created[unsigned(L4::Tcp)], 1u);
}

TEST_F(Translate, TcpInboundSynAckRestoresInsideEndpoint)
{
    Nat nat(small_config());
    ASSERT_TRUE(forwarded(nat.out(tcp_packet(kSub1, 40000, kRemote1, 443, kSyn, {}, {}, tcp_opts(1000, 0)))));
    const uint32_t ext = nat.paired_addr(kSub1);
    Ipv4Opts ipo;
    ipo.ttl = 57;
    ipo.id = 0x0707;
    const Bytes sent =
        tcp_packet(kRemote1, 443, ext, 50000, kSyn | kAck, {}, ipo, tcp_opts(9000, 1001, kMssOption));
    const Outcome o = nat.in(sent);
    ASSERT_TRUE(forwarded(o));
    expect_rewritten(parse_ipv4(sent), o.parsed(), Dir::In, kSub1, 40000);
}

TEST_F(Translate, TcpDataBothWaysKeepsPayloadAndChecksums)
{
    Nat nat(small_config());
    const uint32_t ext = nat.paired_addr(kSub1);
    ASSERT_TRUE(forwarded(nat.out(tcp_packet(kSub1, 40000, kRemote1, 80, kSyn))));
    ASSERT_TRUE(forwarded(nat.in(tcp_packet(kRemote1, 80, ext, 50000, kSyn | kAck))));
    for (size_t len : {1u, 2u, 3u, 511u, 1400u}) {
        const Bytes out = tcp_packet(kSub1, 40000, kRemote1, 80, kPsh | kAck, pattern(len, uint8_t(len)), {},
                                     tcp_opts(2000, 3000));
        const Outcome o = nat.out(out);
        ASSERT_TRUE(forwarded(o)) << len;
        expect_rewritten(parse_ipv4(out), o.parsed(), Dir::Out, ext, 50000);
        const Bytes in = tcp_packet(kRemote1, 80, ext, 50000, kPsh | kAck, pattern(len, uint8_t(len + 1)), {},
                                    tcp_opts(3000, 2000 + uint32_t(len)));
        const Outcome i = nat.in(in);
        ASSERT_TRUE(forwarded(i)) << len;
        expect_rewritten(parse_ipv4(in), i.parsed(), Dir::In, kSub1, 40000);
    }
}

// ------------------------------------------------------------------- UDP

TEST_F(Translate, UdpOutboundRewritesSourceOnly)
{
    Nat nat(small_config());
    Ipv4Opts ipo;
    ipo.id = 0x4321;
    ipo.ttl = 128;
    const Bytes sent = udp_packet(kSub1, 5353, kRemote1, 53, pattern(37), ipo);
    const Outcome o = nat.out(sent);
    ASSERT_TRUE(forwarded(o));
    expect_rewritten(parse_ipv4(sent), o.parsed(), Dir::Out, nat.paired_addr(kSub1), 50000);
    EXPECT_EQ(nat.ext_port_of(kSub1, 5353, L4::Udp), 50000);
}

TEST_F(Translate, UdpInboundRestoresInsideEndpoint)
{
    Nat nat(small_config());
    ASSERT_TRUE(forwarded(nat.out(udp_packet(kSub1, 5353, kRemote1, 53, pattern(4)))));
    const Bytes sent = udp_packet(kRemote1, 53, nat.paired_addr(kSub1), 50000, pattern(301));
    const Outcome o = nat.in(sent);
    ASSERT_TRUE(forwarded(o));
    expect_rewritten(parse_ipv4(sent), o.parsed(), Dir::In, kSub1, 5353);
}

TEST_F(Translate, UdpZeroChecksumStaysZeroBothWays)
{
    Nat nat(small_config());
    const Bytes out = udp_packet(kSub1, 4000, kRemote1, 4001, pattern(20), {}, true);
    const Outcome o = nat.out(out);
    ASSERT_TRUE(forwarded(o));
    EXPECT_EQ(o.parsed().l4_checksum, 0);
    expect_rewritten(parse_ipv4(out), o.parsed(), Dir::Out, nat.paired_addr(kSub1), 50000);
    const Bytes in = udp_packet(kRemote1, 4001, nat.paired_addr(kSub1), 50000, pattern(21), {}, true);
    const Outcome i = nat.in(in);
    ASSERT_TRUE(forwarded(i));
    EXPECT_EQ(i.parsed().l4_checksum, 0);
    expect_rewritten(parse_ipv4(in), i.parsed(), Dir::In, kSub1, 4000);
}

TEST_F(Translate, UdpChecksumThatWouldBecomeZeroIsSentAsAllOnes)
{
    // A 2-byte payload chosen so that the translated datagram's checksum
    // computes to zero: RFC 768 says it is then sent as 0xffff, never 0
    // (which would mean "no checksum").
    Nat nat(small_config());
    const uint32_t ext = nat.paired_addr(kSub1);
    Bytes probe = udp_datagram(ext, kRemote1, 50000, 53, {0, 0}, true);
    const uint16_t rest = ones_fold(ones_sum(probe.data(), probe.size(), pseudo_header_sum(ext, kRemote1, 17, 10)));
    const uint16_t v = uint16_t(0xffff - rest);
    const Bytes payload{uint8_t(v >> 8), uint8_t(v)};
    const Bytes after = udp_datagram(ext, kRemote1, 50000, 53, payload);
    ASSERT_EQ((uint16_t(after[6] << 8) | after[7]), 0xffff) << "the test's own arithmetic";
    const Bytes sent = udp_packet(kSub1, 6000, kRemote1, 53, payload);
    const Outcome o = nat.out(sent);
    ASSERT_TRUE(forwarded(o));
    EXPECT_EQ(o.parsed().l4_checksum, 0xffff);
    expect_rewritten(parse_ipv4(sent), o.parsed(), Dir::Out, ext, 50000);
}

// -------------------------------------------------------- framing variants

TEST_F(Translate, VlanTagIsKeptBothWays)
{
    Nat nat(small_config());
    const uint32_t ext = nat.paired_addr(kSub1);
    const Bytes out = tcp_packet(kSub1, 40000, kRemote1, 443, kSyn);
    const Outcome o = nat.out_frame(Nat::inside_frame(out, uint16_t(0x6064)));
    ASSERT_TRUE(forwarded(o));
    EXPECT_EQ(o.parsed().vlan_tci, std::optional<uint16_t>(0x6064));
    expect_rewritten(parse_frame(Nat::inside_frame(out, uint16_t(0x6064))), o.parsed(), Dir::Out, ext, 50000);

    ASSERT_EQ(nat.open_udp(kSub1, 5353, kRemote1, 53), 50000); // UDP has its own partition
    const Bytes in = udp_packet(kRemote1, 53, ext, 50000, pattern(9));
    const Outcome i = nat.in_frame(Nat::outside_frame(in, uint16_t(0x0123)));
    ASSERT_TRUE(forwarded(i));
    EXPECT_EQ(i.parsed().vlan_tci, std::optional<uint16_t>(0x0123));
    expect_rewritten(parse_frame(Nat::outside_frame(in, uint16_t(0x0123))), i.parsed(), Dir::In, kSub1, 5353);
}

TEST_F(Translate, IpOptionsAreKeptAndL4IsFoundAfterThem)
{
    Nat nat(small_config());
    const uint32_t ext = nat.paired_addr(kSub1);
    int n = 0;
    for (const Bytes& opts : {kRouterAlert, record_route()}) {
        SCOPED_TRACE(opts.size());
        const uint16_t x = uint16_t(41000 + n), ep = uint16_t(50000 + n);
        const Bytes tcp_out = tcp_packet(kSub1, x, kRemote1, 443, kSyn, {}, with_ip_options(opts));
        const Outcome o = nat.out(tcp_out);
        ASSERT_TRUE(forwarded(o));
        expect_rewritten(parse_ipv4(tcp_out), o.parsed(), Dir::Out, ext, ep);
        const Bytes tcp_in = tcp_packet(kRemote1, 443, ext, ep, kSyn | kAck, pattern(5), with_ip_options(opts));
        const Outcome i = nat.in(tcp_in);
        ASSERT_TRUE(forwarded(i));
        expect_rewritten(parse_ipv4(tcp_in), i.parsed(), Dir::In, kSub1, x);

        const Bytes udp_out = udp_packet(kSub1, x, kRemote1, 53, pattern(12), with_ip_options(opts));
        const Outcome uo = nat.out(udp_out);
        ASSERT_TRUE(forwarded(uo));
        expect_rewritten(parse_ipv4(udp_out), uo.parsed(), Dir::Out, ext, ep);
        const Bytes udp_in = udp_packet(kRemote1, 53, ext, ep, pattern(13), with_ip_options(opts));
        const Outcome ui = nat.in(udp_in);
        ASSERT_TRUE(forwarded(ui));
        expect_rewritten(parse_ipv4(udp_in), ui.parsed(), Dir::In, kSub1, x);
        ++n;
    }
}

TEST_F(Translate, EthernetPaddingIsNotPartOfThePacket)
{
    Nat nat(small_config());
    const uint32_t ext = nat.paired_addr(kSub1);
    // 20 + 8 + 1 bytes of IP in a 60-byte frame: 17 bytes of 0xA5 padding.
    const Bytes udp_out = udp_packet(kSub1, 7000, kRemote1, 7001, {0x42});
    const Outcome o = nat.out_frame(Nat::inside_frame(udp_out, {}, 60));
    ASSERT_TRUE(forwarded(o));
    expect_rewritten(parse_ipv4(udp_out), o.parsed(), Dir::Out, ext, 50000);
    const Bytes udp_in = udp_packet(kRemote1, 7001, ext, 50000, {0x43});
    const Outcome i = nat.in_frame(Nat::outside_frame(udp_in, {}, 60));
    ASSERT_TRUE(forwarded(i));
    expect_rewritten(parse_ipv4(udp_in), i.parsed(), Dir::In, kSub1, 7000);

    const Bytes tcp_out = tcp_packet(kSub1, 7000, kRemote1, 80, kSyn);
    const Outcome t = nat.out_frame(Nat::inside_frame(tcp_out, {}, 60));
    ASSERT_TRUE(forwarded(t));
    expect_rewritten(parse_ipv4(tcp_out), t.parsed(), Dir::Out, ext, 50000);
}

TEST_F(Translate, DfIsKeptAndNotTakenForAFragment)
{
    Nat nat(small_config());
    Ipv4Opts ipo;
    ipo.df = true;
    const Bytes sent = udp_packet(kSub1, 7000, kRemote1, 7001, pattern(3), ipo);
    const Outcome o = nat.out(sent);
    ASSERT_TRUE(forwarded(o));
    EXPECT_TRUE(o.parsed().df);
    expect_rewritten(parse_ipv4(sent), o.parsed(), Dir::Out, nat.paired_addr(kSub1), 50000);
}

TEST_F(Translate, Rfc4787Req10_PayloadNamingTheInsideAddressLeavesByteIdentical)
{
    Nat nat(small_config());
    const std::string text = "INVITE sip:100.64.0.2:5060 c=IN IP4 100.64.0.2 \x64\x40\x00\x02";
    const Bytes payload(text.begin(), text.end());
    const Bytes sent = udp_packet(kSub1, 5060, kRemote1, 5060, payload);
    const Outcome o = nat.out(sent);
    ASSERT_TRUE(forwarded(o));
    EXPECT_EQ(o.parsed().payload, payload);
    expect_rewritten(parse_ipv4(sent), o.parsed(), Dir::Out, nat.paired_addr(kSub1), 50000);
}

// --------------------------------------------------------------- TTL

TEST_F(Translate, TtlTwoLeavesWithOne)
{
    Nat nat(small_config());
    const Bytes sent = udp_packet(kSub1, 7000, kRemote1, 7001, {}, with_ttl(2));
    const Outcome o = nat.out(sent);
    ASSERT_TRUE(forwarded(o));
    EXPECT_EQ(o.parsed().ttl, 1);
    EXPECT_TRUE(checksums_ok(o.parsed()));
    const Outcome i = nat.in(udp_packet(kRemote1, 7001, nat.paired_addr(kSub1), 50000, {}, with_ttl(2)));
    ASSERT_TRUE(forwarded(i));
    EXPECT_EQ(i.parsed().ttl, 1);
}

TEST_F(Translate, TtlOneOrZeroIsDroppedBothWays)
{
    Nat nat(small_config());
    for (uint8_t ttl : {1, 0}) {
        EXPECT_TRUE(dropped(nat.out(udp_packet(kSub1, 7000, kRemote1, 7001, {}, with_ttl(ttl))), Drop::Ttl)) << int(ttl);
        EXPECT_TRUE(dropped(nat.out(tcp_packet(kSub1, 7000, kRemote1, 7001, kSyn, {}, with_ttl(ttl))), Drop::Ttl));
    }
    EXPECT_EQ(nat.mapping_of(kSub1, 7000, L4::Udp), kNoMapping) << "a TTL-expired packet made a mapping";
    ASSERT_NE(nat.open_udp(kSub1, 7000, kRemote1, 7001), 0);
    for (uint8_t ttl : {1, 0})
        EXPECT_TRUE(dropped(nat.in(udp_packet(kRemote1, 7001, nat.paired_addr(kSub1), 50000, {}, with_ttl(ttl))),
                            Drop::Ttl))
            << int(ttl);
}

// ------------------------------------------------------- mapping behaviour

TEST_F(Translate, Rfc4787Req1_EndpointIndependentMapping)
{
    NatConfig c = small_config();
    c.pool = pool_28();
    Nat nat(c);
    const uint32_t ext = nat.paired_addr(kSub1);
    std::set<std::pair<uint32_t, uint16_t>> seen;
    const std::vector<std::pair<uint32_t, uint16_t>> remotes = {
        {kRemote1, 3478}, {kRemote2, 3479}, {kRemote1, 3479}, {kRemote2, 3478}, {ip(192, 0, 2, 1), 53}};
    for (auto [y, yp] : remotes) {
        const Bytes sent = udp_packet(kSub1, 5000, y, yp, pattern(8));
        const Outcome o = nat.out(sent);
        ASSERT_TRUE(forwarded(o));
        expect_rewritten(parse_ipv4(sent), o.parsed(), Dir::Out, ext, o.parsed().sport);
        seen.insert({o.parsed().src, o.parsed().sport});
    }
    EXPECT_EQ(seen.size(), 1u) << "X:x left with more than one X':x'";
    EXPECT_EQ(nat.tr.table().mapping_count(), 1u);
}

TEST_F(Translate, Rfc5382Req1_EndpointIndependentMapping)
{
    NatConfig c = small_config();
    c.pool = pool_28();
    Nat nat(c);
    std::set<std::pair<uint32_t, uint16_t>> seen;
    for (auto [y, yp] : std::vector<std::pair<uint32_t, uint16_t>>{{kRemote1, 80}, {kRemote2, 80}, {kRemote1, 443}}) {
        const Outcome o = nat.out(tcp_packet(kSub1, 40000, y, yp, kSyn));
        ASSERT_TRUE(forwarded(o));
        seen.insert({o.parsed().src, o.parsed().sport});
    }
    EXPECT_EQ(seen.size(), 1u);
    EXPECT_EQ(seen.begin()->first, nat.paired_addr(kSub1));
}

TEST_F(Translate, Rfc4787Req3_NoPortOverloading)
{
    NatConfig c = small_config();
    c.pool = pool_28();
    Nat nat(c);
    // Two subscribers sharing one pool address, same source port, same destination.
    const uint32_t x1 = nat.subscriber_paired_with(3, 0), x2 = nat.subscriber_paired_with(3, 1);
    ASSERT_EQ(nat.paired_addr(x1), nat.paired_addr(x2));
    for (L4 l4 : {L4::Udp, L4::Tcp}) {
        SCOPED_TRACE(ephemera::to_string(l4));
        auto send = [&](uint32_t x) {
            return nat.out(l4 == L4::Udp ? udp_packet(x, 6000, kRemote1, 53) : tcp_packet(x, 6000, kRemote1, 80, kSyn));
        };
        const Outcome a = send(x1), b = send(x2);
        ASSERT_TRUE(forwarded(a));
        ASSERT_TRUE(forwarded(b));
        EXPECT_EQ(a.parsed().src, b.parsed().src);
        EXPECT_NE(a.parsed().sport, b.parsed().sport) << "two inside endpoints share X':x' (RFC 5382 REQ-7 too)";
        // Each return flow reaches its own subscriber.
        const Outcome ra = nat.in(l4 == L4::Udp ? udp_packet(kRemote1, 53, a.parsed().src, a.parsed().sport)
                                                : tcp_packet(kRemote1, 80, a.parsed().src, a.parsed().sport, kSyn | kAck));
        const Outcome rb = nat.in(l4 == L4::Udp ? udp_packet(kRemote1, 53, b.parsed().src, b.parsed().sport)
                                                : tcp_packet(kRemote1, 80, b.parsed().src, b.parsed().sport, kSyn | kAck));
        ASSERT_TRUE(forwarded(ra));
        ASSERT_TRUE(forwarded(rb));
        EXPECT_EQ(ra.parsed().dst, x1);
        EXPECT_EQ(rb.parsed().dst, x2);
        EXPECT_EQ(mac_str(ra.parsed().eth_dst), mac_str(subscriber_mac(x1)));
        EXPECT_EQ(mac_str(rb.parsed().eth_dst), mac_str(subscriber_mac(x2)));
    }
}

TEST_F(Translate, Rfc7857Sec5_MappingsAreProtocolDependent)
{
    Nat nat(small_config());
    const Outcome o = nat.out(tcp_packet(kSub1, 40000, kRemote1, 80, kSyn));
    ASSERT_TRUE(forwarded(o));
    const uint16_t xp = o.parsed().sport;
    EXPECT_TRUE(dropped(nat.in(udp_packet(kRemote1, 80, o.parsed().src, xp)), Drop::NoMapping))
        << "a TCP mapping admitted UDP";
    EXPECT_TRUE(dropped(nat.in(sctp_ip_packet(kRemote1, 80, o.parsed().src, xp, 1, sctp_init_chunk(7))),
                        Drop::NoMapping));
    EXPECT_EQ(nat.mapping_of(kSub1, 40000, L4::Udp), kNoMapping);
}

TEST_F(Translate, Rfc6888Req2_PairedPoolingAcrossProtocols)
{
    NatConfig c = small_config();
    c.pool = pool_28();
    Nat nat(c);
    const uint32_t a = nat.subscriber_paired_with(2), b = nat.subscriber_paired_with(9);
    ASSERT_NE(nat.paired_addr(a), nat.paired_addr(b)) << "pick subscribers that pair differently";
    for (uint32_t x : {a, b}) {
        SCOPED_TRACE(ip_str(x));
        const uint32_t want = nat.paired_addr(x);
        EXPECT_GE(want, kPoolNet);
        EXPECT_LT(want, kPoolNet + 16);
        for (int round = 0; round < 2; ++round) { // interleaved, twice
            const Outcome t = nat.out(tcp_packet(x, uint16_t(30000 + round), kRemote1, 80, kSyn));
            const Outcome u = nat.out(udp_packet(x, uint16_t(30000 + round), kRemote2, 53));
            const Outcome i = nat.out(echo_packet(x, kRemote1, false, uint16_t(0x100 + round), 1));
            for (const Outcome* o : {&t, &u, &i}) {
                ASSERT_TRUE(forwarded(*o));
                EXPECT_EQ(ip_str(o->parsed().src), ip_str(want));
            }
        }
    }
}

TEST_F(Translate, Rfc4787Req2_EverySubscriberUsesOnePoolAddress)
{
    NatConfig c = small_config();
    c.pool = pool_28();
    c.ports = {50000, 50999};
    Nat nat(c);
    std::set<uint32_t> used;
    for (uint32_t x = ip(100, 64, 1, 1); x < ip(100, 64, 1, 17); ++x) {
        std::set<uint32_t> mine;
        for (uint16_t p : {1000, 2000}) {
            const Outcome u = nat.out(udp_packet(x, p, kRemote1, 53));
            const Outcome t = nat.out(tcp_packet(x, p, kRemote2, 80, kSyn));
            ASSERT_TRUE(forwarded(u));
            ASSERT_TRUE(forwarded(t));
            mine.insert(u.parsed().src);
            mine.insert(t.parsed().src);
        }
        EXPECT_EQ(mine.size(), 1u) << ip_str(x) << " left from several pool addresses";
        used.insert(*mine.begin());
    }
    EXPECT_GT(used.size(), 1u) << "sixteen subscribers all on one pool address";
}

TEST_F(Translate, InboundGoesToTheMacOfTheSubscriber)
{
    Nat nat(small_config());
    const Outcome a = nat.out(udp_packet(kSub1, 5000, kRemote1, 53));
    const Outcome b = nat.out(udp_packet(kSub2, 5000, kRemote1, 53));
    ASSERT_TRUE(forwarded(a));
    ASSERT_TRUE(forwarded(b));
    const Outcome ra = nat.in(udp_packet(kRemote1, 53, a.parsed().src, a.parsed().sport));
    const Outcome rb = nat.in(udp_packet(kRemote1, 53, b.parsed().src, b.parsed().sport));
    ASSERT_TRUE(forwarded(ra));
    ASSERT_TRUE(forwarded(rb));
    EXPECT_EQ(mac_str(ra.parsed().eth_dst), mac_str(subscriber_mac(kSub1)));
    EXPECT_EQ(mac_str(rb.parsed().eth_dst), mac_str(subscriber_mac(kSub2)));
    EXPECT_EQ(mac_str(ra.parsed().eth_src), mac_str(kGwInsideMac));
}

// ------------------------------------------------------------------ bursts

TEST_F(Translate, BurstForwardsInArrivalOrderAndFreesTheRest)
{
    Nat nat(small_config());
    L2 arp_l2;
    arp_l2.dst = kGwInsideMac;
    arp_l2.src = subscriber_mac(kSub1);
    Ipv4Opts bad;
    bad.bad_checksum = true;
    Ipv4Opts frag;
    frag.mf = true;
    const std::vector<Bytes> frames = {
        Nat::inside_frame(udp_packet(kSub1, 1, kRemote1, 53, pattern(1))),
        ether_frame(arp_l2, kEtherArp, pattern(28)),
        Nat::inside_frame(udp_packet(kSub1, 2, kRemote1, 53, pattern(2))),
        Nat::inside_frame(udp_packet(kSub1, 3, kRemote1, 53, {}, bad)),
        Nat::inside_frame(tcp_packet(kSub1, 4, kRemote1, 80, kSyn)),
        Nat::inside_frame(udp_packet(kSub1, 5, kRemote1, 53, pattern(100), frag)),
        Nat::inside_frame(udp_packet(kSub1, 6, kRemote1, 53, {}, with_ttl(1))),
        Nat::inside_frame(echo_packet(kSub1, kRemote1, false, 7, 7)),
    };
    const auto out = nat.burst(Dir::Out, frames);
    ASSERT_EQ(out.size(), 4u);
    EXPECT_EQ(parse_frame(out[0]).payload, pattern(1));
    EXPECT_EQ(parse_frame(out[1]).payload, pattern(2));
    EXPECT_EQ(parse_frame(out[2]).proto, 6);
    EXPECT_EQ(parse_frame(out[3]).proto, 1);
    for (const Bytes& f : out) EXPECT_TRUE(checksums_ok(parse_frame(f)));
    const auto& s = nat.tr.stats();
    EXPECT_EQ(s.rx[0], 8u);
    EXPECT_EQ(s.tx[0], 4u);
    EXPECT_EQ(s.drop(Dir::Out, Drop::Unsupported), 1u);
    EXPECT_EQ(s.drop(Dir::Out, Drop::BadChecksum), 1u);
    EXPECT_EQ(s.drop(Dir::Out, Drop::Fragment), 1u);
    EXPECT_EQ(s.drop(Dir::Out, Drop::Ttl), 1u);
    EXPECT_EQ(s.dropped(Dir::Out), 4u);
}

TEST_F(Translate, Rfc4787Req1_NewFlowTwiceInOneBurstGetsOneMapping)
{
    Nat nat(small_config());
    const std::vector<Bytes> frames = {
        Nat::inside_frame(udp_packet(kSub1, 5000, kRemote1, 53, pattern(1))),
        Nat::inside_frame(udp_packet(kSub1, 5000, kRemote2, 53, pattern(2))),
        Nat::inside_frame(tcp_packet(kSub1, 5000, kRemote1, 80, kSyn)),
        Nat::inside_frame(udp_packet(kSub1, 5000, kRemote1, 53, pattern(3))),
        Nat::inside_frame(tcp_packet(kSub1, 5000, kRemote1, 80, kSyn)),
    };
    const auto out = nat.burst(Dir::Out, frames);
    ASSERT_EQ(out.size(), 5u);
    for (const Bytes& f : out) {
        const Parsed p = parse_frame(f);
        EXPECT_EQ(p.sport, 50000) << "proto " << int(p.proto);
        EXPECT_TRUE(checksums_ok(p));
    }
    EXPECT_EQ(nat.tr.table().mapping_count(), 2u);
    EXPECT_EQ(total(nat.tr.stats().mappings_created), 2u);
    EXPECT_EQ(nat.tr.partition(0, L4::Udp).in_use_count(), 1u) << "a port leaked";
    EXPECT_EQ(nat.tr.partition(0, L4::Tcp).in_use_count(), 1u);
    EXPECT_EQ(nat.tr.table().session_count(nat.mapping_of(kSub1, 5000, L4::Udp)), 2u);
}

TEST_F(Translate, MappingsAndSessionsAreCountedByProtocol)
{
    Nat nat(small_config());
    ASSERT_TRUE(forwarded(nat.out(udp_packet(kSub1, 5000, kRemote1, 53))));
    ASSERT_TRUE(forwarded(nat.out(udp_packet(kSub1, 5000, kRemote2, 53))));
    ASSERT_TRUE(forwarded(nat.out(udp_packet(kSub2, 5001, kRemote1, 53))));
    ASSERT_TRUE(forwarded(nat.out(tcp_packet(kSub1, 40000, kRemote1, 80, kSyn))));
    ASSERT_TRUE(forwarded(nat.out(ipv4_packet(kSub1, kRemote1, 1, icmp_echo(false, 77, 1)))));
    nat.tr.release_mapping(nat.mapping_of(kSub2, 5001, L4::Udp), nat.now());

    const auto& s = nat.tr.stats();
    const auto at = [](const uint64_t (&by_l4)[ephemera::kL4Count], L4 l4) { return by_l4[unsigned(l4)]; };
    EXPECT_EQ(at(s.mappings_created, L4::Udp), 2u);
    EXPECT_EQ(at(s.mappings_created, L4::Tcp), 1u);
    EXPECT_EQ(at(s.mappings_created, L4::Icmp), 1u);
    EXPECT_EQ(at(s.mappings_created, L4::Sctp), 0u);
    EXPECT_EQ(at(s.mappings_released, L4::Udp), 1u);
    EXPECT_EQ(total(s.mappings_released), 1u);
    EXPECT_EQ(at(s.sessions_created, L4::Udp), 3u) << "two remotes of one mapping, one of another";
    EXPECT_EQ(at(s.sessions_released, L4::Udp), 1u) << "the released mapping's session";
    EXPECT_EQ(at(s.sessions_created, L4::Tcp), 1u);
    EXPECT_EQ(at(s.sessions_created, L4::Icmp), 1u);
    EXPECT_EQ(total(s.sessions_released), 1u);
    EXPECT_EQ(total(s.mappings_created) - total(s.mappings_released), nat.tr.table().mapping_count());
}

TEST_F(Translate, FullBurstOfNewFlows)
{
    NatConfig c = small_config();
    c.ports = {50000, 50099};
    Nat nat(c);
    std::vector<Bytes> frames;
    for (uint16_t i = 0; i < ephemera::kBurst; ++i)
        frames.push_back(Nat::inside_frame(udp_packet(kSub1, uint16_t(1000 + i), kRemote1, 53, pattern(i))));
    const auto out = nat.burst(Dir::Out, frames);
    ASSERT_EQ(out.size(), size_t(ephemera::kBurst));
    std::set<uint16_t> ports;
    for (uint16_t i = 0; i < ephemera::kBurst; ++i) {
        const Parsed p = parse_frame(out[i]);
        EXPECT_EQ(p.payload, pattern(i)) << "order changed at " << i;
        EXPECT_TRUE(checksums_ok(p));
        EXPECT_EQ(nat.ext_port_of(kSub1, uint16_t(1000 + i), L4::Udp), p.sport);
        ports.insert(p.sport);
    }
    EXPECT_EQ(ports.size(), size_t(ephemera::kBurst));
    // And the replies, as one burst.
    std::vector<Bytes> replies;
    for (uint16_t i = 0; i < ephemera::kBurst; ++i)
        replies.push_back(Nat::outside_frame(udp_packet(kRemote1, 53, c.pool[0], parse_frame(out[i]).sport)));
    const auto back = nat.burst(Dir::In, replies);
    ASSERT_EQ(back.size(), size_t(ephemera::kBurst));
    for (uint16_t i = 0; i < ephemera::kBurst; ++i) EXPECT_EQ(parse_frame(back[i]).dport, 1000 + i);
}

// RFC 6888 REQ-3: a pool with gaps is accepted and only its addresses are used.
TEST_F(Translate, Rfc6888Req3_NonContiguousPoolUsesOnlyItsAddresses)
{
    NatConfig c = small_config();
    c.pool = {ip(198, 51, 100, 1), ip(198, 51, 100, 5), ip(198, 51, 100, 9)};
    c.ports = {50000, 50255};
    Nat nat(c);
    std::set<uint32_t> used;
    for (uint32_t h = 2; h < 60; ++h) {
        const Outcome o = nat.out(udp_packet(ip(100, 64, 0, uint8_t(h)), 7000, kRemote1, 53, pattern(4)));
        ASSERT_TRUE(forwarded(o));
        used.insert(o.parsed().src);
    }
    EXPECT_EQ(used, (std::set<uint32_t>{ip(198, 51, 100, 1), ip(198, 51, 100, 5), ip(198, 51, 100, 9)}));
}

} // namespace
} // namespace ephtest
