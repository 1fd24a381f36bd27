// Steering by the NIC (dataplane/hw_steering.hpp): the flow rules that send
// each external port to its owner, the source-address RSS hash software must
// agree with, and what a port without either makes of them.
#include <cstring>
#include <random>
#include <set>

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <rte_byteorder.h>
#include <rte_dev.h>
#include <rte_ethdev.h>

#include "../dataplane/eth_port.hpp"
#include "../dataplane/hw_steering.hpp"

using namespace ephemera;
using namespace ephemera::hw;

namespace {

// Toeplitz, bit by bit as Microsoft's RSS specification writes it: for every
// set input bit (first byte, most significant bit first), XOR in the 32 key
// bits that start at that bit's position.
uint32_t toeplitz(const uint8_t* input, size_t len, const uint8_t* key)
{
    uint32_t result = 0;
    for (size_t bit = 0; bit < len * 8; ++bit) {
        if (!(input[bit / 8] & (0x80 >> (bit % 8)))) continue;
        uint32_t window = 0;
        for (unsigned k = 0; k < 32; ++k) {
            const size_t kb = bit + k;
            window = window << 1 | ((key[kb / 8] >> (7 - kb % 8)) & 1);
        }
        result ^= window;
    }
    return result;
}

uint32_t net_addr(uint8_t a, uint8_t b, uint8_t c, uint8_t d) { return rte_cpu_to_be_32(RTE_IPV4(a, b, c, d)); }

void expect_exact_cover(uint16_t first, uint16_t last)
{
    const auto prefixes = port_prefixes(first, last);
    EXPECT_LE(prefixes.size(), 30u);
    for (uint32_t p = 0; p <= 0xFFFF; ++p) {
        unsigned hits = 0;
        for (const PortPrefix& x : prefixes) hits += x.matches(uint16_t(p));
        ASSERT_EQ(hits, (p >= first && p <= last) ? 1u : 0u) << "port " << p << " in " << first << "-" << last;
    }
}

} // namespace

// A NIC that can verify IPv4 header checksums is asked to (the parser then
// takes its verdict); nothing else is asked of it, whatever it offers.
TEST(RxOffloads, OnlyIpv4HeaderChecksumsAreAskedOfANicThatOffersThem)
{
    EXPECT_EQ(ephemera::rx_offloads_for(~uint64_t(0)), RTE_ETH_RX_OFFLOAD_IPV4_CKSUM);
    EXPECT_EQ(ephemera::rx_offloads_for(RTE_ETH_RX_OFFLOAD_IPV4_CKSUM | RTE_ETH_RX_OFFLOAD_VLAN_STRIP),
              RTE_ETH_RX_OFFLOAD_IPV4_CKSUM);
    EXPECT_EQ(ephemera::rx_offloads_for(RTE_ETH_RX_OFFLOAD_UDP_CKSUM | RTE_ETH_RX_OFFLOAD_TCP_CKSUM), 0u);
    EXPECT_EQ(ephemera::rx_offloads_for(0), 0u);
}

TEST(PortPrefixes, CoverExactlyTheRange)
{
    expect_exact_cover(1024, 65535);
    expect_exact_cover(49152, 65535);
    expect_exact_cover(50000, 50009);
    expect_exact_cover(1024, 1024);
    expect_exact_cover(65535, 65535);
    expect_exact_cover(1025, 65534); // the worst case: 30 prefixes
    std::mt19937 rng(7);
    for (int i = 0; i < 20; ++i) {
        uint16_t a = uint16_t(1024 + rng() % 64512), b = uint16_t(1024 + rng() % 64512);
        expect_exact_cover(std::min(a, b), std::max(a, b));
    }
}

TEST(PortPrefixes, AnAlignedBlockIsOneRule)
{
    const auto p = port_prefixes(49152, 65535);
    ASSERT_EQ(p.size(), 1u);
    EXPECT_EQ(p[0].value, 0xC000);
    EXPECT_EQ(p[0].mask, 0xC000);
    EXPECT_EQ(port_prefixes(1024, 65535).size(), 6u); // 1024/6, 2048/5, ... 32768/1
}

TEST(OutsideRules, EveryExternalPortGoesToItsOwnerForEveryProtocol)
{
    for (unsigned workers : {1u, 2u, 3u, 4u, 7u}) {
        const PortLayout layout(PortRange{1024, 65535}, workers);
        const auto rules = outside_rules(layout);
        for (uint8_t proto : {uint8_t(IPPROTO_TCP), uint8_t(IPPROTO_UDP), uint8_t(IPPROTO_SCTP), uint8_t(IPPROTO_ICMP)})
            for (uint32_t p = 0; p <= 0xFFFF; ++p) {
                unsigned hits = 0, queue = 0;
                for (const OutsideRule& r : rules)
                    if (r.proto == proto && r.port.matches(uint16_t(p))) ++hits, queue = r.queue;
                if (!layout.in_range(uint16_t(p))) {
                    ASSERT_EQ(hits, 0u) << p; // left to the default queue and software
                    continue;
                }
                ASSERT_EQ(hits, 1u) << "port " << p << " proto " << int(proto) << " workers " << workers;
                ASSERT_EQ(queue, layout.owner_of(uint16_t(p))) << p;
            }
    }
}

TEST(SourceHash, ReferenceToeplitzMatchesTheRssSpecificationVector)
{
    // Microsoft's RSS verification suite, IPv4 without ports:
    // 66.9.149.187 -> 161.142.100.80 hashes to 0x323e8fc2.
    const uint8_t input[8] = {66, 9, 149, 187, 161, 142, 100, 80};
    EXPECT_EQ(toeplitz(input, 8, SourceHash::default_key().data()), 0x323e8fc2u);
}

TEST(SourceHash, IsTheToeplitzHashOfTheSourceAddressAlone)
{
    const SourceHash h;
    std::mt19937 rng(11);
    for (int i = 0; i < 10000; ++i) {
        const uint32_t host = rng();
        const uint32_t net = rte_cpu_to_be_32(host);
        uint8_t bytes[4];
        std::memcpy(bytes, &net, 4);
        ASSERT_EQ(h(net), toeplitz(bytes, 4, SourceHash::default_key().data())) << std::hex << host;
    }
}

TEST(SourceRss, OwnerIsTheRedirectionTableEntryOfTheLowHashBits)
{
    SourceRss rss;
    for (unsigned i = 0; i < 128; ++i) rss.reta.push_back(uint16_t(i % 3));
    std::set<unsigned> seen;
    for (unsigned host = 2; host < 1024; ++host) {
        const uint32_t src = net_addr(100, 64, uint8_t(host >> 8), uint8_t(host));
        EXPECT_EQ(rss.owner(src), (rss.hash(src) & 127) % 3);
        seen.insert(rss.owner(src));
    }
    EXPECT_EQ(seen.size(), 3u); // subscribers spread over every worker
}

TEST(SourceRssPlan, NeedsAPortThatHashesTheSourceAlone)
{
    rte_eth_dev_info info{};
    info.reta_size = 128;
    info.hash_key_size = 40;
    info.flow_type_rss_offloads = RTE_ETH_RSS_IPV4 | RTE_ETH_RSS_NONFRAG_IPV4_TCP; // no L3_SRC_ONLY
    RssPlan p = plan_source_rss(info, 4);
    EXPECT_FALSE(p.on);
    EXPECT_NE(p.why.find("IPv4 source"), std::string::npos) << p.why;

    info.flow_type_rss_offloads |= RTE_ETH_RSS_L3_SRC_ONLY;
    EXPECT_FALSE(plan_source_rss(info, 1).on); // one queue: nothing to spread

    p = plan_source_rss(info, 4);
    ASSERT_TRUE(p.on) << p.why;
    EXPECT_EQ(p.hash_functions, RTE_ETH_RSS_IPV4 | RTE_ETH_RSS_L3_SRC_ONLY);
    ASSERT_EQ(p.key.size(), 40u);
    EXPECT_TRUE(std::equal(p.key.begin(), p.key.end(), SourceHash::default_key().begin()));
}

TEST(SourceRssPlan, ALongerKeyKeepsTheHashSoftwareComputes)
{
    rte_eth_dev_info info{};
    info.reta_size = 64;
    info.hash_key_size = 52; // ice
    info.flow_type_rss_offloads = RTE_ETH_RSS_IPV4 | RTE_ETH_RSS_L3_SRC_ONLY;
    const RssPlan p = plan_source_rss(info, 2);
    ASSERT_TRUE(p.on) << p.why;
    ASSERT_EQ(p.key.size(), 52u);
    const SourceHash ours;
    const uint8_t addr[4] = {100, 64, 3, 7};
    uint32_t net;
    std::memcpy(&net, addr, 4);
    EXPECT_EQ(ours(net), toeplitz(addr, 4, p.key.data()));
}

TEST(SourceRssPlan, ARedirectionTableThatIsNotAPowerOfTwoIsRefused)
{
    rte_eth_dev_info info{};
    info.reta_size = 96;
    info.hash_key_size = 40;
    info.flow_type_rss_offloads = RTE_ETH_RSS_IPV4 | RTE_ETH_RSS_L3_SRC_ONLY;
    const RssPlan p = plan_source_rss(info, 4);
    EXPECT_FALSE(p.on);
    EXPECT_NE(p.why.find("96"), std::string::npos) << p.why;
}

TEST(FlowRules, APortWithoutFlowRulesInstallsNoneAndSaysWhy)
{
    ASSERT_EQ(rte_dev_probe("net_null_hwsteer"), 0);
    uint16_t port = 0;
    ASSERT_EQ(rte_eth_dev_get_port_by_name("net_null_hwsteer", &port), 0);
    const PortLayout layout(PortRange{1024, 65535}, 2);
    {
        FlowRules rules(port, outside_rules(layout));
        EXPECT_FALSE(rules.ok());
        EXPECT_EQ(rules.installed(), 0u);
        EXPECT_NE(rules.error().find("no flow rules"), std::string::npos) << rules.error();
    }
    rte_eth_dev_close(port);
}
