// ICMP error translation (RFC 5508 REQ-3..6, RFC 4787 REQ-12, RFC 5382
// REQ-9/10): the quoted packet is translated back, every checksum fixed.
#include <tuple>

#include <gtest/gtest.h>

#include "nat_harness.hpp"

namespace ephtest {
namespace {

using ephemera::kNoMapping;
using ephemera::NatConfig;

using IcmpErrors = NatTest;

// Equal as one's-complement checksums: 0x0000 and 0xffff are both zero.
bool same_checksum(uint16_t a, uint16_t b) { return a == b || (a == 0 && b == 0xffff) || (a == 0xffff && b == 0); }

// The packet X sends and the packet that leaves the NAT for it.
struct Flow {
    Bytes inside;  // as X sent it (IPv4)
    Bytes outside; // as it left (IPv4)
    Parsed in_p, out_p;
};

Flow send_out(Nat& nat, const Bytes& ipp)
{
    Flow f;
    f.inside = ipp;
    f.in_p = parse_ipv4(ipp);
    const Outcome o = nat.out(ipp);
    EXPECT_TRUE(forwarded(o));
    if (o.frame) {
        f.out_p = o.parsed();
        f.outside = f.out_p.ip_packet;
    }
    return f;
}

// An error from outside about `f`, checked as RFC 5508 REQ-4 asks.
void expect_inbound_error_translated(const Bytes& error_ip, const Outcome& o, const Flow& f, size_t quote)
{
    ASSERT_TRUE(forwarded(o));
    EXPECT_EQ(o.icmp_errors, 1u);
    const Parsed sent = parse_ipv4(error_ip);
    const Parsed got = o.parsed();
    // Outer header: only the destination (and TTL) change.
    EXPECT_EQ(mac_str(got.eth_src), mac_str(kGwInsideMac));
    EXPECT_EQ(mac_str(got.eth_dst), mac_str(subscriber_mac(f.in_p.src)));
    EXPECT_EQ(ip_str(got.src), ip_str(sent.src));
    EXPECT_EQ(ip_str(got.dst), ip_str(f.in_p.src)) << "outer destination = embedded source after translation";
    EXPECT_EQ(int(got.ttl), int(sent.ttl) - 1);
    EXPECT_EQ(got.id, sent.id);
    EXPECT_EQ(got.total_length, sent.total_length);
    EXPECT_EQ(got.options, sent.options);
    EXPECT_EQ(got.icmp_type, sent.icmp_type);
    EXPECT_EQ(got.icmp_code, sent.icmp_code);
    EXPECT_EQ(got.icmp_rest, sent.icmp_rest) << "unused / next-hop MTU field";
    EXPECT_EQ(got.payload.size(), sent.payload.size());
    ASSERT_TRUE(got.embedded);
    const Parsed& e = *got.embedded;
    const Parsed& se = *sent.embedded;
    // The embedded packet is the inside view again.
    EXPECT_EQ(ip_str(e.src), ip_str(f.in_p.src)) << "embedded source";
    EXPECT_EQ(ip_str(e.dst), ip_str(f.in_p.dst)) << "embedded destination";
    EXPECT_EQ(e.ihl, se.ihl);
    EXPECT_EQ(e.options, se.options);
    EXPECT_EQ(e.ttl, se.ttl);
    EXPECT_EQ(e.id, se.id);
    EXPECT_EQ(e.total_length, se.total_length);
    EXPECT_EQ(e.proto, se.proto);
    if (e.proto == 1) {
        EXPECT_EQ(e.icmp_id, f.in_p.icmp_id) << "embedded echo identifier";
        EXPECT_EQ(e.icmp_type, se.icmp_type);
    } else {
        EXPECT_EQ(e.sport, f.in_p.sport) << "embedded source port";
        EXPECT_EQ(e.dport, f.in_p.dport) << "embedded destination port";
    }
    if (e.proto == 6 && e.l4.size() >= 8) {
        EXPECT_EQ(e.seq, f.in_p.seq);
    }
    // Beyond the rewritten fields the quote is unchanged.
    const size_t l4_fixed = e.proto == 6 ? 20 : 8;
    if (e.l4.size() > l4_fixed) {
        EXPECT_EQ(Bytes(e.l4.begin() + long(l4_fixed), e.l4.end()),
                  Bytes(se.l4.begin() + long(l4_fixed), se.l4.end()))
            << "quoted bytes after the L4 header";
    }
    // The embedded L4 checksum, where the quote holds it, is X's original one.
    if (e.l4_checksum_present && !(e.proto == 17 && se.l4_checksum == 0)) {
        EXPECT_TRUE(same_checksum(e.l4_checksum, f.in_p.l4_checksum))
            << "embedded L4 checksum 0x" << std::hex << e.l4_checksum << ", X sent 0x" << f.in_p.l4_checksum
            << " (quote " << std::dec << quote << " bytes)";
    }
    if (e.proto == 17 && se.l4_checksum == 0) {
        EXPECT_EQ(e.l4_checksum, 0);
    }
    // Outer IP, ICMP (over the whole message), embedded IP and, when the whole
    // offending packet is quoted, its L4 checksum: all recomputed.
    EXPECT_TRUE(checksums_ok(got));
}

// --------------------------------------------------------------- inbound

struct ErrorKind {
    uint8_t type, code;
    uint32_t rest;
};

class InboundErrorTypes : public NatTest, public ::testing::WithParamInterface<ErrorKind> {};

TEST_P(InboundErrorTypes, Rfc5508Req4_UdpErrorFromOutsideIsTranslatedBack)
{
    const ErrorKind k = GetParam();
    Nat nat(small_config());
    const Flow f = send_out(nat, udp_packet(kSub1, 5353, kRemote1, 53, pattern(40)));
    for (size_t quote : {size_t(28), size_t(0)}) { // header + 8 bytes, and the whole datagram
        for (uint32_t from : {kRemote1, kRouter}) { // RFC 4787 REQ-12: not filtered by source
            SCOPED_TRACE(::testing::Message() << "quote " << quote << " from " << ip_str(from));
            Ipv4Opts eo;
            eo.ttl = 250;
            const Bytes err = icmp_error_packet(from, f.out_p.src, k.type, k.code, f.outside, quote, k.rest, eo);
            expect_inbound_error_translated(err, nat.in(err), f, quote);
        }
    }
    // RFC 4787 REQ-12 / RFC 5382 REQ-10: no ICMP message ends the mapping.
    EXPECT_TRUE(forwarded(nat.in(udp_packet(kRemote1, 53, f.out_p.src, f.out_p.sport))));
    EXPECT_EQ(nat.tr.stats().icmp_errors[unsigned(Dir::In)], 4u);
}

INSTANTIATE_TEST_SUITE_P(Types, InboundErrorTypes,
                         ::testing::Values(ErrorKind{3, 3, 0}, ErrorKind{3, 1, 0}, ErrorKind{3, 4, 1400},
                                           ErrorKind{3, 13, 0}, ErrorKind{11, 0, 0}, ErrorKind{12, 0, 0x14000000}),
                         [](const ::testing::TestParamInfo<ErrorKind>& i) {
                             return "Type" + std::to_string(i.param.type) + "Code" + std::to_string(i.param.code);
                         });

// RFC 5508 REQ-3d, RFC 4884: an error may carry extensions after the quoted
// datagram (padded to 128 bytes, its length in 32-bit words in the header). The
// embedded L4 checksum is adjusted without them; they pass unchanged, and the
// ICMP checksum covers the whole message again.
TEST_F(IcmpErrors, Rfc5508Req3d_Rfc4884ExtensionsPassUnchanged)
{
    Nat nat(small_config());
    const Flow f = send_out(nat, udp_packet(kSub1, 5353, kRemote1, 53, pattern(40)));
    Bytes extension{0x20, 0x00, 0x00, 0x00,  // version 2, reserved, checksum (below)
                    0x00, 0x08, 0x02, 0x01,  // object: 8 bytes, class 2 (interface information), c-type 1
                    0x00, 0x00, 0x00, 0x07}; // ifIndex 7
    const uint16_t ext_sum = inet_checksum(extension.data(), extension.size());
    extension[2] = uint8_t(ext_sum >> 8);
    extension[3] = uint8_t(ext_sum);
    Bytes body = f.outside; // the whole offending datagram (68 bytes) ...
    body.resize(128, 0);    // ... padded to 128
    body.insert(body.end(), extension.begin(), extension.end());
    const uint32_t rest = uint32_t(128 / 4) << 16; // type 3: unused, length, next-hop MTU
    const Bytes err = ipv4_packet(kRouter, f.out_p.src, 1, icmp_message(3, 3, rest, body));

    const Outcome o = nat.in(err);
    ASSERT_TRUE(forwarded(o)) << describe(o);
    const Parsed got = o.parsed();
    EXPECT_EQ(ip_str(got.dst), ip_str(kSub1));
    EXPECT_EQ(got.icmp_rest, rest);
    ASSERT_TRUE(got.embedded);
    EXPECT_EQ(ip_str(got.embedded->src), ip_str(kSub1));
    EXPECT_EQ(got.embedded->sport, 5353);
    EXPECT_TRUE(same_checksum(got.embedded->l4_checksum, f.in_p.l4_checksum)) << "embedded UDP checksum";
    ASSERT_EQ(got.payload.size(), body.size());
    EXPECT_EQ(Bytes(got.payload.begin() + 68, got.payload.end()), Bytes(body.begin() + 68, body.end()))
        << "padding and extensions";
    EXPECT_EQ(inet_checksum(got.l4.data(), got.l4.size()), 0) << "ICMP checksum over the whole message";
    EXPECT_TRUE(checksums_ok(got));
}

TEST_F(IcmpErrors, Rfc5508Req4_UdpZeroChecksumQuotedStaysZero)
{
    Nat nat(small_config());
    const Flow f = send_out(nat, udp_packet(kSub1, 5353, kRemote1, 53, pattern(10), {}, true));
    const Bytes err = icmp_error_packet(kRemote1, f.out_p.src, 3, 3, f.outside);
    expect_inbound_error_translated(err, nat.in(err), f, 0);
}

TEST_F(IcmpErrors, Rfc5382Req9_TcpErrorFromOutsideIsTranslatedBack)
{
    Nat nat(small_config());
    TcpOpts to;
    to.seq = 0xdeadbeef;
    const Flow syn = send_out(nat, tcp_packet(kSub1, 40000, kRemote1, 443, kSyn, {}, {}, to));
    // 8 bytes (ports + sequence number, no checksum), the whole SYN, and 24
    // bytes of a data segment (checksum field quoted, data not).
    for (size_t quote : {size_t(28), size_t(0)}) {
        SCOPED_TRACE(quote);
        const Bytes err = icmp_error_packet(kRouter, syn.out_p.src, 3, 1, syn.outside, quote);
        expect_inbound_error_translated(err, nat.in(err), syn, quote);
    }
    const Flow data = send_out(nat, tcp_packet(kSub1, 40000, kRemote1, 443, kAck | kPsh, pattern(300), {}, to));
    const Bytes err = icmp_error_packet(kRouter, data.out_p.src, 3, 4, data.outside, 20 + 24, 1280);
    expect_inbound_error_translated(err, nat.in(err), data, 44);
    // RFC 5382 REQ-10: the connection goes on.
    EXPECT_TRUE(forwarded(nat.in(tcp_packet(kRemote1, 443, syn.out_p.src, syn.out_p.sport, kSyn | kAck))));
}

TEST_F(IcmpErrors, Rfc5508Req4_ErrorAboutAnEchoRequestIsTranslatedBack)
{
    Nat nat(small_config());
    const Flow f = send_out(nat, echo_packet(kSub1, kRemote1, false, 0x3131, 5, pattern(32)));
    for (size_t quote : {size_t(28), size_t(0)}) {
        SCOPED_TRACE(quote);
        const Bytes err = icmp_error_packet(kRouter, f.out_p.src, 11, 0, f.outside, quote);
        expect_inbound_error_translated(err, nat.in(err), f, quote);
    }
}

TEST_F(IcmpErrors, Rfc5508Req4_ErrorAboutSctpRestoresThePorts)
{
    Nat nat(small_config());
    const Flow f = send_out(nat, sctp_ip_packet(kSub1, 6000, kRemote1, 6001, 0, sctp_init_chunk(0x42)));
    // The first 8 bytes: ports and verification tag (the CRC32c is not quoted).
    const Bytes err = icmp_error_packet(kRemote1, f.out_p.src, 3, 3, f.outside, 28);
    expect_inbound_error_translated(err, nat.in(err), f, 28);
}

TEST_F(IcmpErrors, Rfc5508Req3b_EmbeddedIpOptionsAreSkipped)
{
    Nat nat(small_config());
    Bytes rr{0x07, 15, 4};
    rr.resize(15, 0); // Record Route, 3 slots: IHL 9
    const Flow u = send_out(nat, udp_packet(kSub1, 5353, kRemote1, 53, pattern(16), with_ip_options(rr)));
    ASSERT_EQ(u.out_p.ihl, 9);
    for (size_t quote : {size_t(36 + 8), size_t(0)}) {
        SCOPED_TRACE(quote);
        const Bytes err = icmp_error_packet(kRemote1, u.out_p.src, 3, 3, u.outside, quote);
        expect_inbound_error_translated(err, nat.in(err), u, quote);
    }
    const Flow t = send_out(nat, tcp_packet(kSub1, 40000, kRemote1, 80, kSyn, {}, with_ip_options(rr)));
    const Bytes err = icmp_error_packet(kRouter, t.out_p.src, 11, 0, t.outside);
    expect_inbound_error_translated(err, nat.in(err), t, 0);
}

TEST_F(IcmpErrors, OuterIpOptionsOnTheErrorItself)
{
    Nat nat(small_config());
    const Flow f = send_out(nat, udp_packet(kSub1, 5353, kRemote1, 53, pattern(16)));
    const Bytes err = icmp_error_packet(kRouter, f.out_p.src, 3, 3, f.outside, 0, 0,
                                        with_ip_options({0x94, 0x04, 0x00, 0x00}));
    expect_inbound_error_translated(err, nat.in(err), f, 0);
}

TEST_F(IcmpErrors, Rfc5508Req3c_BadEmbeddedL4ChecksumIsStillTranslated)
{
    Nat nat(small_config());
    const Flow f = send_out(nat, udp_packet(kSub1, 5353, kRemote1, 53, pattern(16)));
    Bytes quoted = f.outside;
    quoted[20 + 6] ^= 0x11; // the embedded UDP checksum, now wrong
    const Bytes err = icmp_error_packet(kRemote1, f.out_p.src, 3, 3, quoted);
    const Outcome o = nat.in(err);
    ASSERT_TRUE(forwarded(o));
    EXPECT_EQ(o.parsed().dst, kSub1);
    EXPECT_TRUE(ip_checksum_ok(o.parsed()));
    EXPECT_TRUE(l4_checksum_ok(o.parsed())) << "the ICMP checksum must still be right";
}

TEST_F(IcmpErrors, ErrorWithVlanTag)
{
    Nat nat(small_config());
    const Flow f = send_out(nat, udp_packet(kSub1, 5353, kRemote1, 53, pattern(16)));
    const Bytes err = icmp_error_packet(kRemote1, f.out_p.src, 3, 3, f.outside);
    const Outcome o = nat.in_frame(Nat::outside_frame(err, uint16_t(42)));
    expect_inbound_error_translated(err, o, f, 0);
    EXPECT_EQ(o.parsed().vlan_tci, std::optional<uint16_t>(42));
}

TEST_F(IcmpErrors, Rfc5508Req4_InboundErrorAboutUnknownFlowIsNoMapping)
{
    Nat nat(small_config());
    const Flow f = send_out(nat, udp_packet(kSub1, 5353, kRemote1, 53, pattern(16)));
    // Same pool address, a port with no mapping; and a TCP quote where only UDP is mapped.
    const Bytes ghost = udp_packet(f.out_p.src, 50007, kRemote1, 53, pattern(16));
    EXPECT_TRUE(dropped(nat.in(icmp_error_packet(kRemote1, f.out_p.src, 3, 3, ghost)), Drop::NoMapping));
    const Bytes tcp_ghost = tcp_packet(f.out_p.src, f.out_p.sport, kRemote1, 53, kSyn);
    EXPECT_TRUE(dropped(nat.in(icmp_error_packet(kRemote1, f.out_p.src, 3, 3, tcp_ghost)), Drop::NoMapping));
    // An error to an address that is not ours.
    const Bytes elsewhere = udp_packet(ip(192, 0, 2, 9), 50000, kRemote1, 53, pattern(16));
    EXPECT_TRUE(dropped(nat.in(icmp_error_packet(kRemote1, ip(192, 0, 2, 9), 3, 3, elsewhere)), Drop::NoMapping));
    EXPECT_EQ(nat.tr.stats().icmp_errors[unsigned(Dir::In)], 0u);
}

TEST_F(IcmpErrors, InboundErrorAboutAnotherWorkersPortIsWrongWorker)
{
    NatConfig c = small_config();
    c.workers = 2; // worker 0: 50000-50007, worker 1: 50008-50015
    Nat nat(c, 0);
    const Bytes theirs = udp_packet(c.pool[0], 50010, kRemote1, 53, pattern(16));
    EXPECT_TRUE(dropped(nat.in(icmp_error_packet(kRemote1, c.pool[0], 3, 3, theirs)), Drop::WrongWorker));
}

TEST_F(IcmpErrors, Rfc5508Req3_BadIcmpChecksumIsDropped)
{
    Nat nat(small_config());
    const Flow f = send_out(nat, udp_packet(kSub1, 5353, kRemote1, 53, pattern(16)));
    Bytes err = icmp_error_packet(kRemote1, f.out_p.src, 3, 3, f.outside);
    err[20 + 2] ^= 0x01; // ICMP checksum
    EXPECT_TRUE(dropped(nat.in(err), Drop::BadChecksum));
    Bytes err2 = icmp_error_packet(kRemote1, f.out_p.src, 3, 3, f.outside);
    err2.back() ^= 0x80; // a quoted payload byte: the ICMP checksum no longer matches
    EXPECT_TRUE(dropped(nat.in(err2), Drop::BadChecksum));
    EXPECT_EQ(nat.tr.stats().icmp_errors[unsigned(Dir::In)], 0u);
}

TEST_F(IcmpErrors, Rfc5508Req3a_BadEmbeddedIpChecksumIsDropped)
{
    Nat nat(small_config());
    const Flow f = send_out(nat, udp_packet(kSub1, 5353, kRemote1, 53, pattern(16)));
    Bytes quoted = f.outside;
    quoted[10] ^= 0x01; // the embedded IPv4 header checksum
    // icmp_error_packet computes the ICMP checksum over the tampered quote,
    // so only the embedded header is wrong.
    EXPECT_TRUE(dropped(nat.in(icmp_error_packet(kRemote1, f.out_p.src, 3, 3, quoted)), Drop::BadChecksum));
}

TEST_F(IcmpErrors, TruncatedQuoteIsMalformed)
{
    Nat nat(small_config());
    const Flow f = send_out(nat, udp_packet(kSub1, 5353, kRemote1, 53, pattern(16)));
    // The quoted IPv4 header itself cut short, then the quoted ports cut short.
    for (size_t quote : {size_t(12), size_t(19), size_t(22)}) {
        SCOPED_TRACE(quote);
        EXPECT_TRUE(dropped(nat.in(icmp_error_packet(kRemote1, f.out_p.src, 3, 3, f.outside, quote)), Drop::Malformed));
    }
}

TEST_F(IcmpErrors, Rfc5508Req6_ErrorDoesNotRefreshTheSession)
{
    Nat nat(small_config());
    const Tick t0 = nat.now();
    const Flow f = send_out(nat, udp_packet(kSub1, 5353, kRemote1, 53, pattern(16)));
    const uint32_t idx = nat.mapping_of(kSub1, 5353, L4::Udp);
    nat.set_time(t0 + 250);
    const Bytes err = icmp_error_packet(kRemote1, f.out_p.src, 3, 3, f.outside);
    ASSERT_TRUE(forwarded(nat.in(err)));
    EXPECT_FALSE(nat.tr.mapping_expired(idx, last_alive(t0, 300)));
    EXPECT_TRUE(nat.tr.mapping_expired(idx, gone_at(t0, 300))) << "the error refreshed the mapping";
    nat.set_time(gone_at(t0, 300));
    EXPECT_TRUE(dropped(nat.in(udp_packet(kRemote1, 53, f.out_p.src, f.out_p.sport)), Drop::NoMapping));
}

TEST_F(IcmpErrors, Rfc5508Req6_ErrorDoesNotRefreshAQuerySession)
{
    Nat nat(small_config());
    const Tick t0 = nat.now();
    const Flow f = send_out(nat, echo_packet(kSub1, kRemote1, false, 0x55, 1, pattern(8)));
    nat.set_time(t0 + 55);
    ASSERT_TRUE(forwarded(nat.in(icmp_error_packet(kRouter, f.out_p.src, 11, 0, f.outside))));
    const uint32_t idx = nat.mapping_of(kSub1, 0x55, L4::Icmp);
    EXPECT_FALSE(nat.tr.mapping_expired(idx, last_alive(t0, 60)));
    EXPECT_TRUE(nat.tr.mapping_expired(idx, gone_at(t0, 60))) << "the error refreshed the query mapping";
    nat.set_time(gone_at(t0, 60));
    EXPECT_TRUE(dropped(nat.in(echo_packet(kRemote1, f.out_p.src, true, f.out_p.icmp_id, 1, pattern(8))),
                        Drop::NoMapping));
}

// -------------------------------------------------------------- outbound

// X:x <-> X':x' exists (X sent to Y); Y's packet reaches X; X answers with
// an error quoting that packet as it received it.
void expect_outbound_error_translated(Nat& nat, const Bytes& inbound_as_outside, uint8_t type, uint8_t code,
                                      size_t quote)
{
    const Outcome delivered = nat.in(inbound_as_outside);
    ASSERT_TRUE(forwarded(delivered));
    const Parsed at_x = delivered.parsed();
    const Parsed outside_view = parse_ipv4(inbound_as_outside);
    const Bytes err = icmp_error_packet(at_x.dst, at_x.src, type, code, at_x.ip_packet, quote);
    const Parsed sent = parse_ipv4(err);
    const Outcome o = nat.out(err);
    ASSERT_TRUE(forwarded(o));
    EXPECT_EQ(o.icmp_errors, 1u);
    const Parsed got = o.parsed();
    EXPECT_EQ(mac_str(got.eth_src), mac_str(kGwOutsideMac));
    EXPECT_EQ(mac_str(got.eth_dst), mac_str(kNextHopMac));
    EXPECT_EQ(ip_str(got.src), ip_str(outside_view.dst)) << "RFC 5508 REQ-5c: outer source is the pool address";
    EXPECT_EQ(ip_str(got.dst), ip_str(sent.dst));
    EXPECT_EQ(int(got.ttl), int(sent.ttl) - 1);
    EXPECT_EQ(got.id, sent.id);
    EXPECT_EQ(got.total_length, sent.total_length);
    EXPECT_EQ(got.options, sent.options);
    EXPECT_EQ(got.icmp_type, type);
    EXPECT_EQ(got.icmp_code, code);
    EXPECT_EQ(got.icmp_rest, sent.icmp_rest) << "unused / next-hop MTU field";
    EXPECT_EQ(got.payload.size(), sent.payload.size());
    ASSERT_TRUE(got.embedded);
    ASSERT_TRUE(sent.embedded);
    const Parsed& e = *got.embedded;
    const Parsed& se = *sent.embedded;
    // The embedded packet is the outside view again: Y -> X':x'.
    EXPECT_EQ(ip_str(e.src), ip_str(outside_view.src));
    EXPECT_EQ(ip_str(e.dst), ip_str(outside_view.dst)) << "embedded destination back to X'";
    EXPECT_EQ(e.ihl, se.ihl);
    EXPECT_EQ(e.options, se.options);
    EXPECT_EQ(e.ttl, at_x.ttl);
    EXPECT_EQ(e.id, se.id);
    EXPECT_EQ(e.total_length, se.total_length);
    EXPECT_EQ(e.proto, se.proto);
    if (e.proto == 1) {
        EXPECT_EQ(e.icmp_id, outside_view.icmp_id) << "embedded identifier back to the external one";
        EXPECT_EQ(e.icmp_type, se.icmp_type);
    } else {
        EXPECT_EQ(e.sport, outside_view.sport);
        EXPECT_EQ(e.dport, outside_view.dport) << "embedded destination port back to x'";
    }
    if (e.proto == 6 && e.l4.size() >= 8) {
        EXPECT_EQ(e.seq, outside_view.seq);
    }
    // Beyond the rewritten fields the quote is unchanged.
    const size_t l4_fixed = e.proto == 6 ? 20 : 8;
    if (e.l4.size() > l4_fixed) {
        EXPECT_EQ(Bytes(e.l4.begin() + long(l4_fixed), e.l4.end()), Bytes(se.l4.begin() + long(l4_fixed), se.l4.end()))
            << "quoted bytes after the L4 header";
    }
    // The embedded L4 checksum, where the quote holds it, is the one Y sent.
    if (e.l4_checksum_present && outside_view.l4_checksum != 0) {
        EXPECT_TRUE(same_checksum(e.l4_checksum, outside_view.l4_checksum))
            << "embedded L4 checksum 0x" << std::hex << e.l4_checksum << ", Y sent 0x" << outside_view.l4_checksum;
    }
    if (e.proto == 17 && se.l4_checksum_present && se.l4_checksum == 0) {
        EXPECT_EQ(e.l4_checksum, 0) << "a zero UDP checksum stays zero";
    }
    EXPECT_TRUE(checksums_ok(got));
}

TEST_F(IcmpErrors, Rfc5508Req5_UdpErrorFromInsideIsTranslated)
{
    Nat nat(small_config());
    const Flow f = send_out(nat, udp_packet(kSub1, 5353, kRemote1, 53, pattern(16)));
    for (size_t quote : {size_t(28), size_t(0)}) {
        SCOPED_TRACE(quote);
        expect_outbound_error_translated(nat, udp_packet(kRemote1, 53, f.out_p.src, f.out_p.sport, pattern(30)), 3, 3,
                                         quote);
    }
    EXPECT_EQ(nat.tr.stats().icmp_errors[unsigned(Dir::Out)], 2u);
}

TEST_F(IcmpErrors, Rfc5508Req5_UdpZeroChecksumQuotedFromInsideStaysZero)
{
    Nat nat(small_config());
    const Flow f = send_out(nat, udp_packet(kSub1, 5353, kRemote1, 53, pattern(16)));
    expect_outbound_error_translated(nat, udp_packet(kRemote1, 53, f.out_p.src, f.out_p.sport, pattern(30), {}, true), 3,
                                     3, 0);
}

TEST_F(IcmpErrors, Rfc5508Req5_TcpErrorFromInsideIsTranslated)
{
    Nat nat(small_config());
    const Flow f = send_out(nat, tcp_packet(kSub1, 40000, kRemote1, 443, kSyn));
    for (size_t quote : {size_t(28), size_t(0)}) {
        SCOPED_TRACE(quote);
        expect_outbound_error_translated(
            nat, tcp_packet(kRemote1, 443, f.out_p.src, f.out_p.sport, kAck | kPsh, pattern(10)), 3, 3, quote);
    }
}

TEST_F(IcmpErrors, Rfc5508Req5_ErrorAboutAnEchoReplyFromInsideIsTranslated)
{
    Nat nat(small_config());
    const Flow f = send_out(nat, echo_packet(kSub1, kRemote1, false, 0x6060, 1, pattern(8)));
    expect_outbound_error_translated(nat, echo_packet(kRemote1, f.out_p.src, true, f.out_p.icmp_id, 1, pattern(8)),
                                     3, 1, 0);
}

TEST_F(IcmpErrors, Rfc5508Req5_OutboundErrorWithEmbeddedIpOptions)
{
    Nat nat(small_config());
    const Flow f = send_out(nat, udp_packet(kSub1, 5353, kRemote1, 53, pattern(16)));
    expect_outbound_error_translated(
        nat, udp_packet(kRemote1, 53, f.out_p.src, f.out_p.sport, pattern(30), with_ip_options({0x94, 4, 0, 0})), 3,
        3, 0);
}

TEST_F(IcmpErrors, Rfc5508Req5_OutboundErrorAboutUnknownFlowIsNoMapping)
{
    Nat nat(small_config());
    const Bytes never = udp_packet(kRemote1, 53, kSub1, 6000, pattern(8));
    EXPECT_TRUE(dropped(nat.out(icmp_error_packet(kSub1, kRemote1, 3, 3, never)), Drop::NoMapping));
    EXPECT_EQ(nat.tr.table().mapping_count(), 0u) << "an error made a mapping";
}

TEST_F(IcmpErrors, Rfc5508Req3_OutboundBadIcmpChecksumIsDropped)
{
    Nat nat(small_config());
    const Flow f = send_out(nat, udp_packet(kSub1, 5353, kRemote1, 53, pattern(16)));
    const Bytes quoted = udp_packet(kRemote1, 53, kSub1, 5353, pattern(8));
    Bytes err = icmp_error_packet(kSub1, kRemote1, 3, 3, quoted);
    err[22] ^= 0x10;
    EXPECT_TRUE(dropped(nat.out(err), Drop::BadChecksum));
    Bytes qbad = quoted;
    qbad[10] ^= 0x10; // embedded IPv4 header checksum
    EXPECT_TRUE(dropped(nat.out(icmp_error_packet(kSub1, kRemote1, 3, 3, qbad)), Drop::BadChecksum));
    // The good one passes.
    EXPECT_TRUE(forwarded(nat.out(icmp_error_packet(kSub1, kRemote1, 3, 3, quoted))));
}

TEST_F(IcmpErrors, Rfc7857Sec7_1_OutboundErrorDoesNotRefresh)
{
    Nat nat(small_config());
    const Tick t0 = nat.now();
    const Flow f = send_out(nat, udp_packet(kSub1, 5353, kRemote1, 53, pattern(16)));
    nat.set_time(t0 + 200);
    const Bytes quoted = udp_packet(kRemote1, 53, kSub1, 5353, pattern(8));
    ASSERT_TRUE(forwarded(nat.out(icmp_error_packet(kSub1, kRemote1, 3, 3, quoted))));
    const uint32_t idx = nat.mapping_of(kSub1, 5353, L4::Udp);
    EXPECT_FALSE(nat.tr.mapping_expired(idx, last_alive(t0, 300)));
    EXPECT_TRUE(nat.tr.mapping_expired(idx, gone_at(t0, 300))) << "the error refreshed the mapping";
}

// RFC 5508 REQ-7: an error between two inside hosts through their mappings is
// hairpinned, its outer destination the embedded source after translation. In
// the gateway a packet to a pool address goes out, then back in: the same two
// translator passes here.
TEST_F(IcmpErrors, Rfc5508Req7_HairpinnedErrorReachesTheOtherInsideHostTranslated)
{
    Nat nat(small_config());
    // I1 -> X2':x2' (I2's mapping), hairpinned: I2 sees it from X1':x1'.
    const Flow to_i2 = send_out(nat, udp_packet(kSub2, 6000, kRemote1, 7000, pattern(8)));
    const uint32_t x2 = to_i2.out_p.src;
    const uint16_t x2p = to_i2.out_p.sport;
    const Outcome out1 = nat.out(udp_packet(kSub1, 6001, x2, x2p, pattern(12)));
    ASSERT_TRUE(forwarded(out1));
    const Outcome in1 = nat.in(out1.parsed().ip_packet);
    ASSERT_TRUE(forwarded(in1));
    const Parsed at_i2 = in1.parsed();
    ASSERT_EQ(at_i2.dst, kSub2);
    const uint32_t x1 = at_i2.src;
    const uint16_t x1p = at_i2.sport;

    // I2 answers with port unreachable quoting what it received (X1':x1' -> I2:6000).
    const Bytes err = icmp_error_packet(kSub2, x1, 3, 3, at_i2.ip_packet);
    const Outcome eo = nat.out(err);
    ASSERT_TRUE(forwarded(eo)) << describe(eo);
    const Parsed mid = eo.parsed();
    EXPECT_EQ(mid.dst, x1) << "towards I1's mapping: a pool address, so back in";
    const Outcome ei = nat.in(mid.ip_packet);
    ASSERT_TRUE(forwarded(ei)) << describe(ei);
    const Parsed at_i1 = ei.parsed();
    EXPECT_EQ(at_i1.dst, kSub1) << "outer destination: the embedded source after translation";
    EXPECT_EQ(at_i1.icmp_type, 3);
    EXPECT_EQ(at_i1.icmp_code, 3);
    ASSERT_TRUE(at_i1.embedded);
    EXPECT_EQ(at_i1.embedded->src, kSub1) << "I1 sees the packet as it sent it";
    EXPECT_EQ(at_i1.embedded->sport, 6001);
    EXPECT_EQ(at_i1.embedded->dst, x2);
    EXPECT_EQ(at_i1.embedded->dport, x2p);
    EXPECT_NE(x1p, 0);
    EXPECT_TRUE(checksums_ok(at_i1));
}

} // namespace
} // namespace ephtest
