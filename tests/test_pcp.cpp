// The PCP server (RFC 6887; RFC 6888 REQ-9: a CGN must let subscribers
// control their mappings): requests built here byte by byte from the RFC's
// layout, answered by pcp::answer against a real Translator, and the explicit
// mappings they make checked with packets through it.
#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <vector>

#include "../dataplane/pcp.hpp"
#include "nat_harness.hpp"

namespace ephtest {
namespace {

using ephemera::FilteringMode;
using ephemera::NatConfig;
namespace pcp = ephemera::pcp;

constexpr uint32_t kPool = ip(198, 51, 100, 1); // small_config(): ports 50000-50015

NatConfig pcp_config(FilteringMode filtering = FilteringMode::AddressAndPortDependent)
{
    NatConfig c = small_config();
    c.filtering = filtering; // the strictest: only an explicit mapping lets strangers in
    c.explicit_mappings = true;
    return c;
}

void put16(Bytes& b, size_t at, uint16_t v)
{
    b[at] = uint8_t(v >> 8);
    b[at + 1] = uint8_t(v);
}
void put32(Bytes& b, size_t at, uint32_t v)
{
    for (int i = 0; i < 4; ++i) b[at + i] = uint8_t(v >> (24 - 8 * i));
}
uint16_t get16(const Bytes& b, size_t at) { return uint16_t(b[at] << 8 | b[at + 1]); }
uint32_t get32(const Bytes& b, size_t at)
{
    return uint32_t(b[at]) << 24 | uint32_t(b[at + 1]) << 16 | uint32_t(b[at + 2]) << 8 | b[at + 3];
}
void put_mapped(Bytes& b, size_t at, uint32_t host_addr)
{
    std::fill(b.begin() + long(at), b.begin() + long(at) + 10, 0);
    b[at + 10] = b[at + 11] = 0xff;
    put32(b, at + 12, host_addr);
}

struct MapRequest {
    uint32_t client = kSub1;
    uint32_t lifetime = 600;
    std::array<uint8_t, 12> nonce{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    uint8_t protocol = 17;
    uint16_t internal_port = 6000;
    uint16_t suggested_port = 0;
    uint32_t suggested_addr = 0;
    bool prefer_failure = false;
};

Bytes header(uint8_t opcode, uint32_t lifetime, uint32_t client)
{
    Bytes b(24, 0);
    b[0] = 2;
    b[1] = opcode;
    put32(b, 4, lifetime);
    put_mapped(b, 8, client);
    return b;
}

Bytes map_request(const MapRequest& r)
{
    Bytes b = header(pcp::kMap, r.lifetime, r.client);
    b.resize(60, 0);
    std::memcpy(&b[24], r.nonce.data(), 12);
    b[36] = r.protocol;
    put16(b, 40, r.internal_port);
    put16(b, 42, r.suggested_port);
    if (r.suggested_addr) put_mapped(b, 44, r.suggested_addr);
    if (r.prefer_failure) b.insert(b.end(), {pcp::kPreferFailure, 0, 0, 0});
    return b;
}

struct Response {
    Bytes bytes;
    uint8_t result() const { return bytes.at(3); }
    uint32_t lifetime() const { return get32(bytes, 4); }
    uint32_t epoch() const { return get32(bytes, 8); }
    uint16_t port() const { return get16(bytes, 42); }
    uint32_t addr() const { return get32(bytes, 56); }
};

class Pcp : public NatTest {
protected:
    Nat nat{pcp_config()};
    pcp::Limits limits{};

    // The server's answer to `req` from `client` (its MAC derived from it, as
    // the harness's inside frames are); an empty response: dropped.
    Response ask(const Bytes& req, uint32_t client = kSub1) { return ask_of(nat, req, client); }
    Response ask_of(Nat& server, const Bytes& req, uint32_t client = kSub1)
    {
        uint8_t out[pcp::kMaxMessage];
        pcp::Outcome o;
        const Mac mac = subscriber_mac(client);
        rte_ether_addr m;
        std::memcpy(m.addr_bytes, mac.data(), 6);
        const size_t n = pcp::answer(req.data(), req.size(), net32(client), m, server.tr, server.now(), 77, limits, out, o);
        EXPECT_EQ(o.answered, n != 0);
        Response r{Bytes(out, out + n)};
        if (n) {
            EXPECT_EQ(r.bytes[0], 2) << "version";
            EXPECT_EQ(r.bytes[1], 0x80 | (req[1] & 0x7f)) << "R bit and the request's opcode";
            EXPECT_EQ(r.epoch(), 77u);
            EXPECT_EQ(n % 4, 0u);
        }
        return r;
    }
    Response map(const MapRequest& r) { return ask(map_request(r), r.client); }
    // kSub1:6000 mapped with `port` suggested; the port granted.
    uint16_t sub1_suggests(uint16_t port)
    {
        MapRequest q;
        q.suggested_port = port;
        q.suggested_addr = kPool;
        const Response r = map(q);
        EXPECT_EQ(r.result(), pcp::kSuccess);
        return r.port();
    }
};

TEST_F(Pcp, Rfc6887_MapMakesAMappingThatAdmitsAnyRemote)
{
    const Response r = map({});
    ASSERT_EQ(r.result(), pcp::kSuccess);
    EXPECT_EQ(r.bytes.size(), 60u);
    EXPECT_EQ(r.lifetime(), 600u);
    EXPECT_EQ(r.addr(), kPool);
    EXPECT_GE(r.port(), 50000);
    EXPECT_LE(r.port(), 50015);
    EXPECT_EQ(get16(r.bytes, 40), 6000) << "internal port copied";
    EXPECT_EQ(r.bytes[24], 1) << "nonce copied";
    // No outbound packet ever: under address-and-port-dependent filtering a
    // stranger still gets in, to the inside endpoint, from the host's MAC.
    const Outcome in = nat.in(udp_packet(kRemote2, 4444, kPool, r.port(), pattern(16)));
    ASSERT_TRUE(forwarded(in)) << describe(in);
    EXPECT_EQ(in.parsed().dst, kSub1);
    EXPECT_EQ(in.parsed().dport, 6000);
    EXPECT_EQ(in.parsed().eth_dst, subscriber_mac(kSub1));
    // And the inside endpoint's own traffic leaves through it (one mapping).
    const Outcome out = nat.out(udp_packet(kSub1, 6000, kRemote1, 53, pattern(8)));
    ASSERT_TRUE(forwarded(out));
    EXPECT_EQ(out.parsed().sport, r.port());
}

TEST_F(Pcp, Rfc6887_SuggestedPortIsGrantedWhenFree) { EXPECT_EQ(sub1_suggests(50011), 50011); }

TEST_F(Pcp, Rfc6887_PreferFailureRefusesAnotherPortAndIsEchoed)
{
    ASSERT_EQ(sub1_suggests(50011), 50011);
    MapRequest second;
    second.client = kSub2;
    second.suggested_port = 50011;
    second.prefer_failure = true;
    const Response refused = map(second);
    EXPECT_EQ(refused.result(), pcp::kCannotProvideExternal);
    EXPECT_EQ(refused.lifetime(), 30u) << "a short-lifetime error";
    EXPECT_EQ(nat.mapping_of(kSub2, 6000, L4::Udp), ephemera::kNoMapping) << "no other port made instead";
    second.suggested_port = 50012;
    const Response granted = map(second);
    ASSERT_EQ(granted.result(), pcp::kSuccess);
    EXPECT_EQ(granted.port(), 50012);
    ASSERT_EQ(granted.bytes.size(), 64u);
    EXPECT_EQ(granted.bytes[60], pcp::kPreferFailure) << "a processed option is returned";
}

TEST_F(Pcp, Rfc6887_WithoutPreferFailureATakenSuggestionGetsAnotherPort)
{
    ASSERT_EQ(sub1_suggests(50011), 50011);
    MapRequest second;
    second.client = kSub2;
    second.suggested_port = 50011;
    const Response r = map(second);
    ASSERT_EQ(r.result(), pcp::kSuccess);
    EXPECT_NE(r.port(), 50011);
}

// small_config()'s 16 ports, deterministic over 100.64.0.0/30: kSub1
// (100.64.0.2) has 50008-50011, kSub2 50012-50015.
TEST_F(Pcp, Rfc6887_InDeterministicModeASuggestionInTheHostsRangeIsGranted)
{
    NatConfig c = pcp_config();
    c.deterministic = true;
    c.deterministic_prefix = ip(100, 64, 0, 0);
    c.deterministic_len = 30;
    Nat det(c);
    MapRequest q;
    q.suggested_port = 50010;
    Response r = ask_of(det, map_request(q));
    ASSERT_EQ(r.result(), pcp::kSuccess);
    EXPECT_EQ(r.port(), 50010);
    q.internal_port = 6001;
    q.suggested_port = 50013; // kSub2's
    q.prefer_failure = true;
    EXPECT_EQ(ask_of(det, map_request(q)).result(), pcp::kCannotProvideExternal) << "another host's range";
    q.prefer_failure = false;
    r = ask_of(det, map_request(q));
    ASSERT_EQ(r.result(), pcp::kSuccess);
    EXPECT_GE(r.port(), 50008);
    EXPECT_LE(r.port(), 50011) << "instead, a port of its own range";
}

// Blocks of 4 of small_config()'s 16 ports: a suggestion in a block the
// subscriber holds is granted; one in a block it does not hold is not.
TEST_F(Pcp, Rfc6887_InPortBlockModeASuggestionInAHeldBlockIsGranted)
{
    NatConfig c = pcp_config();
    c.port_block_size = 4;
    Nat blocks(c);
    const uint16_t first = blocks.open_udp(kSub1, 1000); // its first block, first port
    ASSERT_NE(first, 0);
    const uint16_t block_first = uint16_t(first - (first - 50000) % 4);
    MapRequest q;
    q.suggested_port = uint16_t(block_first + 3);
    Response r = ask_of(blocks, map_request(q));
    ASSERT_EQ(r.result(), pcp::kSuccess);
    EXPECT_EQ(r.port(), block_first + 3);
    q.internal_port = 6001;
    q.suggested_port = uint16_t(block_first == 50000 ? 50004 : 50000); // a block nobody holds
    q.prefer_failure = true;
    EXPECT_EQ(ask_of(blocks, map_request(q)).result(), pcp::kCannotProvideExternal);
}

TEST_F(Pcp, Rfc6887_LifetimeIsClampedToTheConfiguredRange)
{
    MapRequest q;
    q.lifetime = 10;
    EXPECT_EQ(map(q).lifetime(), 120u);
    q.lifetime = 10000000;
    EXPECT_EQ(map(q).lifetime(), 86400u) << "a refresh may lengthen it";
}

TEST_F(Pcp, Rfc6887_MappingLivesItsLifetimeThenGoes)
{
    MapRequest q;
    q.lifetime = 200;
    const uint16_t port = map(q).port();
    const uint32_t index = nat.mapping_of(kSub1, 6000, L4::Udp);
    ASSERT_NE(index, ephemera::kNoMapping);
    nat.advance(200);
    EXPECT_FALSE(nat.tr.mapping_expired(index, nat.now()));
    EXPECT_EQ(nat.tr.expire(nat.now(), 1024), 0u);
    ASSERT_TRUE(forwarded(nat.in(udp_packet(kRemote2, 4444, kPool, port, pattern(4)))));
    nat.advance(2);
    // The stranger's packet made a session of its own (300 s): the mapping
    // outlives the lifetime with it, but no longer admits anyone new.
    EXPECT_EQ(nat.tr.expire(nat.now(), 1024), 0u);
    EXPECT_TRUE(dropped(nat.in(udp_packet(kRemote1, 4444, kPool, port, pattern(4))), Drop::Filtered));
    EXPECT_TRUE(forwarded(nat.in(udp_packet(kRemote2, 4444, kPool, port, pattern(4)))));
    nat.advance(301);
    EXPECT_EQ(nat.tr.expire(nat.now(), 1024), 1u);
    EXPECT_FALSE(nat.is_live(kSub1, 6000, L4::Udp));
}

TEST_F(Pcp, Rfc6887_DeleteWithTheSameNonceEndsTheMapping)
{
    const uint16_t port = map({}).port();
    MapRequest del;
    del.lifetime = 0;
    const Response r = map(del);
    EXPECT_EQ(r.result(), pcp::kSuccess);
    EXPECT_EQ(r.lifetime(), 0u);
    EXPECT_FALSE(nat.is_live(kSub1, 6000, L4::Udp));
    EXPECT_TRUE(dropped(nat.in(udp_packet(kRemote2, 4444, kPool, port, pattern(4))), Drop::NoMapping));
    EXPECT_EQ(map(del).result(), pcp::kSuccess) << "deleting what is not there succeeds";
}

TEST_F(Pcp, Rfc6887_AnotherNonceIsNotAuthorized)
{
    ASSERT_EQ(map({}).result(), pcp::kSuccess);
    MapRequest other;
    other.nonce[0] = 99;
    const Response refresh = map(other);
    EXPECT_EQ(refresh.result(), pcp::kNotAuthorized);
    EXPECT_GT(refresh.lifetime(), 590u) << "the mapping's remaining lifetime";
    other.lifetime = 0;
    EXPECT_EQ(map(other).result(), pcp::kNotAuthorized);
    EXPECT_TRUE(nat.is_live(kSub1, 6000, L4::Udp));
}

TEST_F(Pcp, Rfc6887_ImplicitMappingBecomesExplicitAndKeepsItsPort)
{
    const Outcome out = nat.out(udp_packet(kSub1, 6000, kRemote1, 53, pattern(8)));
    ASSERT_TRUE(forwarded(out));
    EXPECT_TRUE(dropped(nat.in(udp_packet(kRemote2, 4444, kPool, out.parsed().sport, pattern(4))), Drop::Filtered));
    MapRequest del;
    del.lifetime = 0;
    EXPECT_EQ(map(del).result(), pcp::kNotAuthorized) << "PCP does not end what traffic made";
    MapRequest q;
    q.suggested_port = uint16_t(out.parsed().sport == 50011 ? 50012 : 50011);
    const Response r = map(q);
    ASSERT_EQ(r.result(), pcp::kSuccess);
    EXPECT_EQ(r.port(), out.parsed().sport);
    EXPECT_TRUE(forwarded(nat.in(udp_packet(kRemote2, 4444, kPool, r.port(), pattern(4)))));
}

TEST_F(Pcp, Rfc6888Req4_SubscriberLimitAppliesToPcp)
{
    NatConfig c = pcp_config();
    c.max_ports_per_subscriber = 1;
    Nat limited(c);
    ASSERT_TRUE(forwarded(limited.out(udp_packet(kSub1, 7000, kRemote1, 53, pattern(8)))));
    EXPECT_EQ(ask_of(limited, map_request({})).result(), pcp::kUserExQuota);
}

TEST_F(Pcp, Rfc6887_ClientAddressMustBeTheSource)
{
    MapRequest q;
    q.client = kSub2; // claims kSub2, sent from kSub1: a NAT in between
    const Response r = ask(map_request(q), kSub1);
    EXPECT_EQ(r.result(), pcp::kAddressMismatch);
    EXPECT_EQ(r.lifetime(), 1800u) << "a long-lifetime error";
    EXPECT_EQ(nat.tr.table().mapping_count(), 0u);
}

TEST_F(Pcp, Rfc6887_OtherVersionsGetUnsupportedVersionWithVersion2)
{
    Bytes req = map_request({});
    req[0] = 1;
    const Response r = ask(req);
    EXPECT_EQ(r.result(), pcp::kUnsuppVersion);
    EXPECT_EQ(r.bytes.size(), 24u);
}

TEST_F(Pcp, Rfc6887_ResponsesAndRuntsAreDroppedSilently)
{
    Bytes resp = map_request({});
    resp[1] |= 0x80;
    EXPECT_TRUE(ask(resp).bytes.empty());
    EXPECT_TRUE(ask(Bytes{2}).bytes.empty());
    EXPECT_TRUE(ask(Bytes(20, 0x02)).bytes.empty()) << "version 2 but shorter than a header";
}

TEST_F(Pcp, Rfc6887_MalformedRequests)
{
    Bytes odd = map_request({});
    odd.push_back(0);
    EXPECT_EQ(ask(odd).result(), pcp::kMalformedRequest) << "not a multiple of 4";
    Bytes big = map_request({});
    big.resize(1104, 0x80); // optional options would fill it: too long anyway
    EXPECT_EQ(ask(big).result(), pcp::kMalformedRequest);
    Bytes short_map = header(pcp::kMap, 600, kSub1);
    short_map.resize(40, 0);
    EXPECT_EQ(ask(short_map).result(), pcp::kMalformedRequest);
    MapRequest all;
    all.protocol = 0;
    EXPECT_EQ(map(all).result(), pcp::kMalformedRequest) << "all protocols with a port";
    EXPECT_EQ(nat.tr.table().mapping_count(), 0u);
}

TEST_F(Pcp, Rfc6887_UnsupportedOpcodesProtocolsAndOptions)
{
    EXPECT_EQ(ask(header(pcp::kPeer, 600, kSub1)).result(), pcp::kUnsuppOpcode);
    MapRequest icmp;
    icmp.protocol = 1;
    EXPECT_EQ(map(icmp).result(), pcp::kUnsuppProtocol);
    MapRequest all_ports;
    all_ports.internal_port = 0;
    EXPECT_EQ(map(all_ports).result(), pcp::kUnsuppProtocol);
    Bytes third_party = map_request({});
    third_party.insert(third_party.end(), {pcp::kThirdParty, 0, 0, 16});
    third_party.resize(third_party.size() + 16, 0);
    EXPECT_EQ(ask(third_party).result(), pcp::kUnsuppOption);
    Bytes optional = map_request({});
    optional.insert(optional.end(), {200, 0, 0, 2, 0xab, 0xcd, 0, 0}); // optional range: ignored
    EXPECT_EQ(ask(optional).result(), pcp::kSuccess);
    EXPECT_EQ(nat.tr.table().mapping_count(), 1u);
}

TEST_F(Pcp, Rfc6887_MalformedOptions)
{
    Bytes twice = map_request({});
    twice.insert(twice.end(), {pcp::kPreferFailure, 0, 0, 0, pcp::kPreferFailure, 0, 0, 0});
    EXPECT_EQ(ask(twice).result(), pcp::kMalformedOption);
    Bytes overrun = map_request({});
    overrun.insert(overrun.end(), {200, 0, 0, 40}); // says 40 bytes follow, none do
    EXPECT_EQ(ask(overrun).result(), pcp::kMalformedOption);
    MapRequest del;
    del.lifetime = 0;
    del.prefer_failure = true;
    EXPECT_EQ(map(del).result(), pcp::kMalformedOption) << "PREFER_FAILURE makes no sense in a delete";
}

TEST_F(Pcp, Rfc6887_AnnounceIsAnsweredWithTheEpoch)
{
    const Response r = ask(header(pcp::kAnnounce, 0, kSub1));
    EXPECT_EQ(r.result(), pcp::kSuccess);
    EXPECT_EQ(r.bytes.size(), 24u);
    EXPECT_EQ(r.lifetime(), 0u);
}

TEST_F(Pcp, WithoutPcpConfiguredMapIsNotAuthorized)
{
    Nat plain(small_config());
    EXPECT_EQ(ask_of(plain, map_request({})).result(), pcp::kNotAuthorized);
    EXPECT_EQ(plain.tr.table().mapping_count(), 0u);
}

} // namespace
} // namespace ephtest
