// Static mappings (port forwards): the operator fixes (protocol, inside
// endpoint) <-> (pool address, port outside the dynamic range). They never
// expire, admit unsolicited inbound traffic whatever the filtering mode,
// serve the inside endpoint's outbound traffic too (endpoint-independent),
// and deliver only once ARP has told the gateway the inside host's MAC.
#include <gtest/gtest.h>

#include <rte_lcore.h>

#include "nat_harness.hpp"

namespace ephtest {
namespace {

using ephemera::FilteringMode;
using ephemera::NatConfig;
using ephemera::StaticSlot;
using ephemera::StaticTable;
using ephemera::Translator;

using StaticMappingTest = NatTest;

constexpr uint16_t kExtPort = 8081;  // outside 50000-50015
constexpr uint16_t kInPort = 8080;

// A translator with a static table beside it, as the gateway wires them.
struct StaticNat {
    explicit StaticNat(FilteringMode f = FilteringMode::EndpointIndependent) : nat(config(f)), table(16, 1, SOCKET_ID_ANY)
    {
        nat.tr.set_statics(&table);
    }
    static NatConfig config(FilteringMode f)
    {
        NatConfig c = small_config();
        c.filtering = f;
        return c;
    }
    // What the control plane does: reserve, have the worker create, publish.
    Translator::StaticResult add(L4 l4 = L4::Tcp, uint32_t inside = kSub1, uint16_t port = kExtPort)
    {
        StaticSlot s;
        s.pool_addr = net32(nat.cfg.pool[0]);
        s.in_addr = net32(inside);
        s.ext_port = port;
        s.in_port = kInPort;
        s.l4 = l4;
        s.worker = 0;
        slot = table.reserve(s);
        EXPECT_GE(slot, 0);
        uint32_t index = 0;
        const auto r = nat.tr.add_static(table.slot(uint32_t(slot)), nat.now(), index);
        if (r != Translator::StaticResult::Ok) {
            table.release(uint32_t(slot));
            return r;
        }
        mapping = index;
        table.set_mapping(uint32_t(slot), index);
        EXPECT_TRUE(table.publish(uint32_t(slot)));
        return r;
    }
    void learn_mac(uint32_t inside = kSub1)
    {
        const Mac m = subscriber_mac(inside);
        rte_ether_addr a;
        std::copy(m.begin(), m.end(), a.addr_bytes);
        table.learn(net32(inside), a);
    }
    Outcome syn_from_outside(uint32_t remote = kRemote1, uint16_t rport = 40000)
    {
        return nat.in(tcp_packet(remote, rport, nat.cfg.pool[0], kExtPort, kSyn));
    }

    Nat nat;
    StaticTable table;
    int32_t slot = -1;
    uint32_t mapping = 0;
};

TEST_F(StaticMappingTest, UnsolicitedInboundReachesTheInsideEndpointOnceItsMacIsKnown)
{
    StaticNat s;
    ASSERT_EQ(s.add(), Translator::StaticResult::Ok);
    EXPECT_TRUE(dropped(s.syn_from_outside(), Drop::NoNeighbor)) << "no MAC yet: nowhere to send it";
    s.learn_mac();
    const Outcome o = s.syn_from_outside();
    ASSERT_TRUE(forwarded(o));
    const Parsed p = o.parsed();
    EXPECT_EQ(p.dst, kSub1);
    EXPECT_EQ(p.dport, kInPort);
    EXPECT_EQ(p.src, kRemote1) << "only the destination is translated";
    EXPECT_EQ(p.eth_dst, subscriber_mac(kSub1));
}

TEST_F(StaticMappingTest, RepliesLeaveFromTheStaticExternalEndpoint)
{
    StaticNat s;
    ASSERT_EQ(s.add(), Translator::StaticResult::Ok);
    s.learn_mac();
    ASSERT_TRUE(forwarded(s.syn_from_outside()));
    const Outcome o = s.nat.out(tcp_packet(kSub1, kInPort, kRemote1, 40000, kSyn | kAck));
    ASSERT_TRUE(forwarded(o));
    EXPECT_EQ(o.parsed().src, s.nat.cfg.pool[0]);
    EXPECT_EQ(o.parsed().sport, kExtPort);
}

TEST_F(StaticMappingTest, Rfc4787Req1_OutboundFromTheInsideEndpointUsesTheStaticPort)
{
    StaticNat s;
    ASSERT_EQ(s.add(L4::Udp), Translator::StaticResult::Ok);
    const Outcome o = s.nat.out(udp_packet(kSub1, kInPort, kRemote2, 53));
    ASSERT_TRUE(forwarded(o));
    EXPECT_EQ(o.parsed().sport, kExtPort);
    EXPECT_EQ(s.nat.tr.partition(0, L4::Udp).in_use_count(), 0u) << "no dynamic port was taken";
}

TEST_F(StaticMappingTest, AdmittedInEveryFilteringMode)
{
    for (FilteringMode f : {FilteringMode::AddressDependent, FilteringMode::AddressAndPortDependent}) {
        StaticNat s(f);
        ASSERT_EQ(s.add(), Translator::StaticResult::Ok);
        s.learn_mac();
        EXPECT_TRUE(forwarded(s.syn_from_outside())) << ephemera::to_string(f);
    }
}

TEST_F(StaticMappingTest, NeverExpiresThoughItsSessionsDo)
{
    StaticNat s;
    ASSERT_EQ(s.add(L4::Udp), Translator::StaticResult::Ok);
    s.learn_mac();
    ASSERT_TRUE(forwarded(s.nat.in(udp_packet(kRemote1, 5000, s.nat.cfg.pool[0], kExtPort))));
    const Tick later = gone_at(s.nat.now(), s.nat.cfg.timeouts.udp) + 86400;
    EXPECT_EQ(s.nat.tr.expire(later, s.nat.tr.table().capacity()), 0u);
    EXPECT_FALSE(s.nat.tr.mapping_expired(s.mapping, later));
    s.nat.set_time(later);
    EXPECT_TRUE(forwarded(s.nat.in(udp_packet(kRemote2, 5000, s.nat.cfg.pool[0], kExtPort))));
}

TEST_F(StaticMappingTest, RemovedMappingNoLongerAdmitsInbound)
{
    StaticNat s;
    ASSERT_EQ(s.add(), Translator::StaticResult::Ok);
    s.learn_mac();
    ASSERT_TRUE(forwarded(s.syn_from_outside()));
    s.table.unpublish(uint32_t(s.slot));
    s.nat.tr.remove_static(s.mapping, s.nat.now());
    s.table.release(uint32_t(s.slot));
    EXPECT_TRUE(dropped(s.syn_from_outside(), Drop::NoMapping));
    EXPECT_EQ(s.nat.tr.table().mapping_count(), 0u);
    EXPECT_EQ(s.nat.mapping_of(kSub1, kInPort, L4::Tcp), ephemera::kNoMapping);
}

TEST_F(StaticMappingTest, InsideEndpointWithALiveDynamicMappingIsRefused)
{
    StaticNat s;
    ASSERT_NE(s.nat.open_udp(kSub1, kInPort), 0);
    EXPECT_EQ(s.add(L4::Udp), Translator::StaticResult::InsideTaken);
    EXPECT_EQ(s.table.used_slots().size(), 0u);
}

TEST_F(StaticMappingTest, OtherPortsOutsideTheRangeStayClosed)
{
    StaticNat s;
    ASSERT_EQ(s.add(), Translator::StaticResult::Ok);
    s.learn_mac();
    EXPECT_TRUE(dropped(s.nat.in(tcp_packet(kRemote1, 40000, s.nat.cfg.pool[0], kExtPort + 1, kSyn)), Drop::NoMapping));
    EXPECT_TRUE(dropped(s.nat.in(udp_packet(kRemote1, 40000, s.nat.cfg.pool[0], kExtPort)), Drop::NoMapping))
        << "a TCP forward is not a UDP one";
}

TEST(StaticTable, OneEntryPerExternalEndpoint)
{
    StaticTable t(4, 1, SOCKET_ID_ANY);
    StaticSlot s;
    s.pool_addr = net32(ip(198, 51, 100, 1));
    s.ext_port = 80;
    s.l4 = L4::Tcp;
    const int32_t a = t.reserve(s), b = t.reserve(s);
    ASSERT_GE(a, 0);
    ASSERT_GE(b, 0);
    EXPECT_TRUE(t.publish(uint32_t(a)));
    EXPECT_FALSE(t.publish(uint32_t(b)));
    EXPECT_EQ(t.find(s.pool_addr, 80, L4::Tcp), a);
    EXPECT_EQ(t.find(s.pool_addr, 80, L4::Udp), -1);
    t.unpublish(uint32_t(a));
    EXPECT_EQ(t.find(s.pool_addr, 80, L4::Tcp), -1);
}

} // namespace
} // namespace ephtest
