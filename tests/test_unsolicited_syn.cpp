// Unsolicited inbound SYNs (RFC 5382 REQ-4): the NAT must not answer one for
// at least 6 s; if the inside opens that connection meanwhile the SYN is
// dropped silently, otherwise it should get ICMP port unreachable (3/3).
// The translator hands such SYNs back instead of freeing them; the gateway
// holds a copy (SynHold) and, when its time is up, asks the translator
// whether the connection was opened from inside, and answers the rest with
// an error router::icmp_error_quoting builds from the copy.
#include <gtest/gtest.h>

#include <vector>

#include <rte_ether.h>
#include <rte_mbuf.h>

#include "../dataplane/router.hpp"
#include "../dataplane/syn_hold.hpp"
#include "nat_harness.hpp"

namespace ephtest {
namespace {

using ephemera::FilteringMode;
using ephemera::NatConfig;
using ephemera::SynHold;

using UnsolicitedSyn = NatTest;

constexpr uint32_t kPool = ip(198, 51, 100, 1); // small_config()'s one pool address
constexpr uint16_t kL3 = 14;                    // untagged frames
constexpr uint16_t kY1Port = 443, kY2Port = 40000;

// One inbound frame through the translator with the SYN output given.
struct InboundResult {
    uint16_t forwarded = 0;
    std::vector<rte_mbuf*> syns; // handed back: the test frees them
    uint64_t no_mapping = 0, filtered = 0;
};

InboundResult inbound_with_syns(Nat& nat, const Bytes& ip_packet)
{
    InboundResult r;
    const auto& st = nat.tr.stats();
    const uint64_t nm = st.drop(Dir::In, Drop::NoMapping), fi = st.drop(Dir::In, Drop::Filtered);
    rte_mbuf* pkts[ephemera::kBurst] = {make_mbuf(Nat::outside_frame(ip_packet))};
    rte_mbuf* syns[ephemera::kBurst];
    uint16_t nsyns = 99;
    r.forwarded = nat.tr.inbound(pkts, 1, nat.now(), nullptr, syns, &nsyns);
    for (uint16_t i = 0; i < r.forwarded; ++i) rte_pktmbuf_free(pkts[i]);
    r.syns.assign(syns, syns + nsyns);
    r.no_mapping = st.drop(Dir::In, Drop::NoMapping) - nm;
    r.filtered = st.drop(Dir::In, Drop::Filtered) - fi;
    return r;
}

void free_all(const std::vector<rte_mbuf*>& v)
{
    for (rte_mbuf* m : v) rte_pktmbuf_free(m);
}

NatConfig address_dependent()
{
    NatConfig c = small_config();
    c.filtering = FilteringMode::AddressDependent;
    return c;
}

// X:5000 -> Y1:443 with a SYN; the external port it left with.
uint16_t open_tcp_to_y1(Nat& nat)
{
    const Outcome o = nat.out(tcp_packet(kSub1, 5000, kRemote1, kY1Port, kSyn));
    EXPECT_TRUE(forwarded(o));
    return o.frame ? o.parsed().sport : 0;
}

TEST_F(UnsolicitedSyn, Rfc5382Req4_SynWithoutMappingIsCountedAndHandedBack)
{
    Nat nat(small_config());
    const InboundResult r = inbound_with_syns(nat, tcp_packet(kRemote1, kY2Port, kPool, 50003, kSyn));
    EXPECT_EQ(r.forwarded, 0);
    ASSERT_EQ(r.syns.size(), 1u);
    EXPECT_EQ(r.no_mapping, 1u) << "the SYN is a drop like any other, counted by its reason";
    EXPECT_EQ(parse_frame(mbuf_bytes(r.syns[0])).dport, 50003) << "handed back as it came";
    free_all(r.syns);
}

TEST_F(UnsolicitedSyn, Rfc5382Req4_SynToAPortOutsideTheRangeIsHandedBack)
{
    Nat nat(small_config()); // ports 50000-50015, no port forwards
    const InboundResult r = inbound_with_syns(nat, tcp_packet(kRemote1, kY2Port, kPool, 22, kSyn));
    EXPECT_EQ(r.no_mapping, 1u);
    EXPECT_EQ(r.syns.size(), 1u);
    free_all(r.syns);
}

TEST_F(UnsolicitedSyn, Rfc5382Req4_SynRefusedByFilteringIsHandedBack)
{
    Nat nat(address_dependent());
    const uint16_t x = open_tcp_to_y1(nat);
    const InboundResult r = inbound_with_syns(nat, tcp_packet(kRemote2, kY2Port, kPool, x, kSyn));
    EXPECT_EQ(r.forwarded, 0);
    EXPECT_EQ(r.filtered, 1u);
    EXPECT_EQ(r.syns.size(), 1u);
    free_all(r.syns);
}

TEST_F(UnsolicitedSyn, OnlyBareSynsAreHandedBack)
{
    Nat nat(small_config());
    const Bytes others[] = {
        tcp_packet(kRemote1, kY2Port, kPool, 50003, kSyn | kAck),
        tcp_packet(kRemote1, kY2Port, kPool, 50003, kSyn | kRst),
        tcp_packet(kRemote1, kY2Port, kPool, 50003, kAck),
        udp_packet(kRemote1, kY2Port, kPool, 50003, pattern(8)),
    };
    for (const Bytes& p : others) {
        const InboundResult r = inbound_with_syns(nat, p);
        EXPECT_EQ(r.no_mapping, 1u);
        EXPECT_TRUE(r.syns.empty()) << "freed and counted, not held";
        free_all(r.syns);
    }
}

TEST_F(UnsolicitedSyn, SolicitedSynPassesUnderEndpointIndependentFiltering)
{
    Nat nat(small_config()); // EIF: a mapping admits a SYN from anyone
    const uint16_t x = open_tcp_to_y1(nat);
    const InboundResult r = inbound_with_syns(nat, tcp_packet(kRemote2, kY2Port, kPool, x, kSyn));
    EXPECT_EQ(r.forwarded, 1);
    EXPECT_TRUE(r.syns.empty());
}

TEST_F(UnsolicitedSyn, Rfc5382Req4_NotDueBeforeItsTime)
{
    Nat nat(small_config());
    SynHold hold(64, SOCKET_ID_ANY);
    const InboundResult r = inbound_with_syns(nat, tcp_packet(kRemote1, kY2Port, kPool, 50003, kSyn));
    ASSERT_EQ(r.syns.size(), 1u);
    ASSERT_TRUE(hold.hold(r.syns[0], kL3, 6000));
    free_all(r.syns);
    unsigned answered = 0;
    EXPECT_EQ(hold.take_due(5999, 32, nat.tr, nat.now(), [&](const SynHold::Entry&) { ++answered; }), 0u);
    EXPECT_EQ(answered, 0u);
    EXPECT_EQ(hold.size(), 1u);
    EXPECT_EQ(hold.take_due(6000, 32, nat.tr, nat.now(), [&](const SynHold::Entry&) { ++answered; }), 1u);
    EXPECT_EQ(answered, 1u);
    EXPECT_EQ(hold.size(), 0u);
    EXPECT_EQ(hold.superseded(), 0u);
}

// Under address-dependent filtering: X opens X':x' to Y1, then Y2's SYN to
// X':x' is filtered and held, due at tick 100; two seconds pass. Returns x'
// (0 on failure).
uint16_t hold_syn_from_y2(Nat& nat, SynHold& hold)
{
    const uint16_t x = open_tcp_to_y1(nat);
    const InboundResult r = inbound_with_syns(nat, tcp_packet(kRemote2, kY2Port, kPool, x, kSyn));
    const bool held = r.syns.size() == 1 && hold.hold(r.syns[0], kL3, 100);
    free_all(r.syns);
    EXPECT_TRUE(held) << "Y2's SYN was not handed back and held";
    nat.advance(2);
    return held ? x : 0;
}

// The simultaneous-open variant: Y2 SYNs X':x' first (filtered, held); X then
// opens the same connection outbound; when the hold's time is up the SYN is
// dropped silently.
TEST_F(UnsolicitedSyn, Rfc5382Req4_OutboundSynForTheConnectionInTheWindowSilencesIt)
{
    Nat nat(address_dependent());
    SynHold hold(64, SOCKET_ID_ANY);
    const uint16_t x = hold_syn_from_y2(nat, hold);
    ASSERT_NE(x, 0);
    const Outcome o = nat.out(tcp_packet(kSub1, 5000, kRemote2, kY2Port, kSyn));
    ASSERT_TRUE(forwarded(o));
    ASSERT_EQ(o.parsed().sport, x) << "endpoint-independent mapping";
    unsigned answered = 0;
    EXPECT_EQ(hold.take_due(100, 32, nat.tr, nat.now(), [&](const SynHold::Entry&) { ++answered; }), 1u);
    EXPECT_EQ(answered, 0u);
    EXPECT_EQ(hold.superseded(), 1u);
}

TEST_F(UnsolicitedSyn, Rfc5382Req4_OutboundSynToAnotherEndpointDoesNotSilenceIt)
{
    Nat nat(address_dependent());
    SynHold hold(64, SOCKET_ID_ANY);
    ASSERT_NE(hold_syn_from_y2(nat, hold), 0);
    ASSERT_TRUE(forwarded(nat.out(tcp_packet(kSub1, 5000, kRemote2, kY2Port + 1, kSyn)))); // another port of Y2
    unsigned answered = 0;
    hold.take_due(100, 32, nat.tr, nat.now(), [&](const SynHold::Entry&) { ++answered; });
    EXPECT_EQ(answered, 1u);
    EXPECT_EQ(hold.superseded(), 0u);
}

TEST_F(UnsolicitedSyn, HoldIsBoundedAndAnswersOldestFirst)
{
    Nat nat(small_config());
    SynHold hold(64, SOCKET_ID_ANY);
    ASSERT_EQ(hold.capacity(), 64u);
    for (uint16_t i = 0; i <= 64; ++i) {
        const InboundResult r = inbound_with_syns(nat, tcp_packet(kRemote1, uint16_t(30000 + i), kPool, 50003, kSyn));
        ASSERT_EQ(r.syns.size(), 1u);
        EXPECT_EQ(hold.hold(r.syns[0], kL3, 1000 + i), i < 64) << "SYN " << i;
        free_all(r.syns);
    }
    std::vector<uint16_t> order;
    const auto note = [&](const SynHold::Entry& e) { order.push_back(host16(SynHold::endpoints_of(e).remote_port)); };
    EXPECT_EQ(hold.take_due(1009, 32, nat.tr, nat.now(), note), 10u);
    EXPECT_EQ(hold.take_due(UINT64_MAX, 32, nat.tr, nat.now(), note), 32u) << "a budget per call";
    EXPECT_EQ(hold.take_due(UINT64_MAX, 32, nat.tr, nat.now(), note), 22u);
    ASSERT_EQ(order.size(), 64u);
    for (uint16_t i = 0; i < 64; ++i) EXPECT_EQ(order[i], 30000 + i);
    // Room again once answered.
    const InboundResult r = inbound_with_syns(nat, tcp_packet(kRemote1, 31000, kPool, 50003, kSyn));
    EXPECT_TRUE(hold.hold(r.syns.at(0), kL3, 2000));
    free_all(r.syns);
}

TEST_F(UnsolicitedSyn, Rfc5382Req4_AnswerIsPortUnreachableFromThePoolAddressQuotingTheSyn)
{
    Nat nat(small_config());
    SynHold hold(64, SOCKET_ID_ANY);
    TcpOpts mss;
    mss.options = {2, 4, 0x05, 0xb4, 4, 2, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8}; // MSS, SACK-permitted, timestamps
    Ipv4Opts ipo = with_ip_options({7, 7, 4, 0, 0, 0, 0}); // record route: a 28-byte IP header
    const Bytes syn = tcp_packet(kRemote1, kY2Port, kPool, 50003, kSyn, {}, ipo, mss);
    const InboundResult r = inbound_with_syns(nat, syn);
    ASSERT_EQ(r.syns.size(), 1u);
    ASSERT_TRUE(hold.hold(r.syns[0], kL3, 0));
    free_all(r.syns);

    const rte_ether_addr gw_mac{{0x02, 0, 0, 0, 1, 1}};
    rte_mbuf* answer = nullptr;
    hold.take_due(0, 32, nat.tr, nat.now(), [&](const SynHold::Entry& e) {
        answer = ephemera::router::icmp_error_quoting(mbuf_pool(), e.ip, e.len, e.from, 3, 3,
                                                      SynHold::endpoints_of(e).pool_addr, gw_mac);
    });
    ASSERT_NE(answer, nullptr);
    const Parsed a = parse_frame(mbuf_bytes(answer));
    rte_pktmbuf_free(answer);
    EXPECT_EQ(a.eth_dst, kUpstreamMac) << "back to where the SYN came from";
    EXPECT_EQ(a.eth_src, (Mac{0x02, 0, 0, 0, 1, 1}));
    EXPECT_EQ(a.src, kPool) << "from the address the SYN was sent to";
    EXPECT_EQ(a.dst, kRemote1);
    EXPECT_EQ(a.proto, 1);
    EXPECT_EQ(a.icmp_type, 3);
    EXPECT_EQ(a.icmp_code, 3);
    EXPECT_TRUE(checksums_ok(a));
    ASSERT_NE(a.embedded, nullptr);
    EXPECT_EQ(a.embedded->sport, kY2Port);
    EXPECT_EQ(a.embedded->dport, 50003);
    EXPECT_EQ(a.embedded->ihl, 7);
    // The quote is the SYN as it arrived, headers and options whole.
    ASSERT_GE(syn.size(), 28u + 36u);
    const Bytes quoted(a.payload.begin(), a.payload.end());
    ASSERT_EQ(quoted.size(), syn.size());
    EXPECT_EQ(quoted, syn);
}

} // namespace
} // namespace ephtest
