// Inbound filtering (RFC 4787 REQ-8, RFC 5382 REQ-3, RFC 6888 REQ-7): after
// X:x -> Y1:y1, who may reach X':x' under each mode.
#include <string>
#include <tuple>

#include <gtest/gtest.h>

#include "nat_harness.hpp"

namespace ephtest {
namespace {

using ephemera::FilteringMode;
using ephemera::kNoMapping;
using ephemera::NatConfig;

enum class Source { SameAddrSamePort, SameAddrOtherPort, OtherAddr };

const char* name(FilteringMode m)
{
    switch (m) {
    case FilteringMode::EndpointIndependent: return "EndpointIndependent";
    case FilteringMode::AddressDependent: return "AddressDependent";
    case FilteringMode::AddressAndPortDependent: return "AddressAndPortDependent";
    }
    return "?";
}
const char* name(Source s)
{
    switch (s) {
    case Source::SameAddrSamePort: return "SameAddrSamePort";
    case Source::SameAddrOtherPort: return "SameAddrOtherPort";
    case Source::OtherAddr: return "OtherAddr";
    }
    return "?";
}

bool passes(FilteringMode m, Source s)
{
    switch (m) {
    case FilteringMode::EndpointIndependent: return true;
    case FilteringMode::AddressDependent: return s != Source::OtherAddr;
    case FilteringMode::AddressAndPortDependent: return s == Source::SameAddrSamePort;
    }
    return false;
}

constexpr uint16_t kY1Port = 3478, kY2Port = 3479;

Bytes outbound(L4 l4, uint32_t y, uint16_t yp)
{
    return l4 == L4::Udp ? udp_packet(kSub1, 5000, y, yp, pattern(8)) : tcp_packet(kSub1, 5000, y, yp, kSyn);
}
Bytes inbound(L4 l4, uint32_t y, uint16_t yp, uint32_t ext, uint16_t ep)
{
    return l4 == L4::Udp ? udp_packet(y, yp, ext, ep, pattern(9)) : tcp_packet(y, yp, ext, ep, kSyn | kAck);
}

using Param = std::tuple<FilteringMode, Source, L4>;

class Rfc4787Req8_FilteringMatrix : public NatTest, public ::testing::WithParamInterface<Param> {};

TEST_P(Rfc4787Req8_FilteringMatrix, InboundPassesOrIsFiltered)
{
    const auto [mode, source, l4] = GetParam();
    NatConfig c = small_config();
    c.filtering = mode;
    Nat nat(c);
    const Outcome o = nat.out(outbound(l4, kRemote1, kY1Port));
    ASSERT_TRUE(forwarded(o));
    const uint32_t ext = o.parsed().src;
    const uint16_t ep = o.parsed().sport;
    uint32_t y = kRemote1;
    uint16_t yp = kY1Port;
    if (source == Source::SameAddrOtherPort) yp = kY2Port;
    if (source == Source::OtherAddr) y = kRemote2;
    nat.advance(10);
    const Bytes sent = inbound(l4, y, yp, ext, ep);
    const Outcome r = nat.in(sent);
    if (passes(mode, source)) {
        ASSERT_TRUE(forwarded(r));
        expect_rewritten(parse_ipv4(sent), r.parsed(), Dir::In, kSub1, 5000);
    } else {
        EXPECT_TRUE(dropped(r, Drop::Filtered));
    }
    // Either way the mapping is there and outbound keeps working.
    EXPECT_NE(nat.mapping_of(kSub1, 5000, l4), kNoMapping);
    const Outcome again = nat.out(outbound(l4, kRemote1, kY1Port));
    ASSERT_TRUE(forwarded(again));
    EXPECT_EQ(again.parsed().sport, ep);
}

INSTANTIATE_TEST_SUITE_P(
    Modes, Rfc4787Req8_FilteringMatrix,
    ::testing::Combine(::testing::Values(FilteringMode::EndpointIndependent, FilteringMode::AddressDependent,
                                         FilteringMode::AddressAndPortDependent),
                       ::testing::Values(Source::SameAddrSamePort, Source::SameAddrOtherPort, Source::OtherAddr),
                       ::testing::Values(L4::Udp, L4::Tcp)),
    [](const ::testing::TestParamInfo<Param>& i) {
        return std::string(name(std::get<0>(i.param))) + "_" + name(std::get<1>(i.param)) + "_" +
               (std::get<2>(i.param) == L4::Udp ? "Udp" : "Tcp");
    });

using Filtering = NatTest;

TEST_F(Filtering, Rfc7857Sec7_FilteredInboundDoesNotRefresh)
{
    for (FilteringMode mode : {FilteringMode::AddressDependent, FilteringMode::AddressAndPortDependent}) {
        SCOPED_TRACE(name(mode));
        NatConfig c = small_config();
        c.filtering = mode;
        Nat nat(c);
        const Tick t0 = nat.now();
        const Outcome o = nat.out(udp_packet(kSub1, 5000, kRemote1, kY1Port));
        ASSERT_TRUE(forwarded(o));
        const uint32_t idx = nat.mapping_of(kSub1, 5000, L4::Udp);
        for (Tick t : {t0 + 100, t0 + 200, last_alive(t0, 300)}) {
            nat.set_time(t);
            EXPECT_TRUE(dropped(nat.in(udp_packet(kRemote2, kY1Port, o.parsed().src, o.parsed().sport)),
                                Drop::Filtered));
        }
        EXPECT_FALSE(nat.tr.mapping_expired(idx, last_alive(t0, 300)));
        EXPECT_TRUE(nat.tr.mapping_expired(idx, gone_at(t0, 300))) << "a filtered packet kept the mapping alive";
        nat.set_time(gone_at(t0, 300));
        EXPECT_TRUE(dropped(nat.in(udp_packet(kRemote1, kY1Port, o.parsed().src, o.parsed().sport)), Drop::NoMapping));
    }
}

TEST_F(Filtering, EndpointIndependentInboundFromANewRemoteCreatesASession)
{
    Nat nat(small_config()); // EIF
    const Tick t0 = nat.now();
    const Outcome o = nat.out(udp_packet(kSub1, 5000, kRemote1, kY1Port));
    ASSERT_TRUE(forwarded(o));
    const uint32_t idx = nat.mapping_of(kSub1, 5000, L4::Udp);
    EXPECT_EQ(nat.tr.table().session_count(idx), 1u);
    nat.set_time(t0 + 200);
    ASSERT_TRUE(forwarded(nat.in(udp_packet(kRemote2, 9999, o.parsed().src, o.parsed().sport))));
    EXPECT_EQ(nat.tr.table().session_count(idx), 2u);
    // The new session (refreshed at t0+200) keeps the mapping beyond the first one's end.
    EXPECT_FALSE(nat.tr.mapping_expired(idx, gone_at(t0, 300)));
    EXPECT_FALSE(nat.tr.mapping_expired(idx, last_alive(t0 + 200, 300)));
    EXPECT_TRUE(nat.tr.mapping_expired(idx, gone_at(t0 + 200, 300)));
    nat.set_time(t0 + 450);
    EXPECT_TRUE(forwarded(nat.in(udp_packet(kRemote2, 9999, o.parsed().src, o.parsed().sport))));
}

TEST_F(Filtering, AcceptedInboundRefreshesTheSession)
{
    for (FilteringMode mode : {FilteringMode::EndpointIndependent, FilteringMode::AddressDependent,
                               FilteringMode::AddressAndPortDependent}) {
        SCOPED_TRACE(name(mode));
        NatConfig c = small_config();
        c.filtering = mode;
        Nat nat(c);
        const Tick t0 = nat.now();
        const Outcome o = nat.out(udp_packet(kSub1, 5000, kRemote1, kY1Port));
        ASSERT_TRUE(forwarded(o));
        nat.set_time(t0 + 250);
        ASSERT_TRUE(forwarded(nat.in(udp_packet(kRemote1, kY1Port, o.parsed().src, o.parsed().sport))));
        const uint32_t idx = nat.mapping_of(kSub1, 5000, L4::Udp);
        EXPECT_FALSE(nat.tr.mapping_expired(idx, last_alive(t0 + 250, 300)));
        EXPECT_TRUE(nat.tr.mapping_expired(idx, gone_at(t0 + 250, 300)));
    }
}

TEST_F(Filtering, FilteringConsultsOnlyLiveSessions)
{
    // X talks to Y1 at t0 and to Y2 at t0+200: the Y1 session is alive
    // through t0+300 and over at t0+301, while the mapping lives on through Y2's.
    for (FilteringMode mode : {FilteringMode::AddressDependent, FilteringMode::AddressAndPortDependent}) {
        SCOPED_TRACE(name(mode));
        NatConfig c = small_config();
        c.filtering = mode;
        Nat nat(c);
        const Tick t0 = nat.now();
        const Outcome o = nat.out(udp_packet(kSub1, 5000, kRemote1, kY1Port));
        ASSERT_TRUE(forwarded(o));
        nat.set_time(t0 + 200);
        ASSERT_TRUE(forwarded(nat.out(udp_packet(kSub1, 5000, kRemote2, kY2Port))));
        const Tick t1 = last_alive(t0, 300); // Y1's last second
        nat.set_time(t1);
        EXPECT_TRUE(forwarded(nat.in(udp_packet(kRemote1, kY1Port, o.parsed().src, o.parsed().sport))));
        // That refreshed Y1 through t1+300; let it lapse while Y2 is kept alive.
        nat.set_time(t0 + 450);
        ASSERT_TRUE(forwarded(nat.out(udp_packet(kSub1, 5000, kRemote2, kY2Port))));
        const uint32_t idx = nat.mapping_of(kSub1, 5000, L4::Udp);
        EXPECT_TRUE(nat.tr.table().has_remote_addr(idx, net32(kRemote1), last_alive(t1, 300)));
        EXPECT_FALSE(nat.tr.table().has_remote_addr(idx, net32(kRemote1), gone_at(t1, 300)));
        nat.set_time(gone_at(t1, 300));
        EXPECT_TRUE(dropped(nat.in(udp_packet(kRemote1, kY1Port, o.parsed().src, o.parsed().sport)), Drop::Filtered))
            << "an expired session still admitted its remote";
        EXPECT_TRUE(forwarded(nat.in(udp_packet(kRemote2, kY2Port, o.parsed().src, o.parsed().sport))));
    }
}

TEST_F(Filtering, Rfc5382Req2a_SimultaneousOpenSynIsTranslated)
{
    NatConfig c = small_config();
    c.filtering = FilteringMode::AddressAndPortDependent; // strictest mode still lets it through
    Nat nat(c);
    const Outcome o = nat.out(tcp_packet(kSub1, 5000, kRemote1, 80, kSyn));
    ASSERT_TRUE(forwarded(o));
    const Outcome syn = nat.in(tcp_packet(kRemote1, 80, o.parsed().src, o.parsed().sport, kSyn));
    ASSERT_TRUE(forwarded(syn));
    EXPECT_EQ(syn.parsed().tcp_flags, kSyn);
    EXPECT_EQ(syn.parsed().dst, kSub1);
}

} // namespace
} // namespace ephtest
