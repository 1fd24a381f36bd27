// Port-block allocation: a subscriber gets blocks of N consecutive ports on
// its paired pool address, the same numbers in every protocol; its mappings
// take ports from its blocks; the mapping log gets one event per block
// (RFC 8158 natEvent 16/17) instead of one per mapping; a block emptied of
// mappings is quarantined before another subscriber gets it (RFC 6888
// REQ-8); at its block limit a subscriber's new flows are refused and its
// existing mappings are never evicted (RFC 6888 REQ-4, REQ-11).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "nat_harness.hpp"

namespace ephtest {
namespace {

using ephemera::MappingEvent;
using ephemera::MappingEventType;
using ephemera::NatConfig;

using PortBlocksTest = NatTest;

// 64 ports, blocks of 8: 8 blocks on the one pool address.
NatConfig blocks_of(uint32_t n, uint32_t max_blocks = 2)
{
    NatConfig c = small_config();
    c.ports = {50000, 50063};
    c.port_block_size = n;
    c.max_blocks_per_subscriber = max_blocks;
    return c;
}

NatConfig small_config_ports(uint16_t first, uint16_t last)
{
    NatConfig c = small_config();
    c.ports = {first, last};
    return c;
}

uint16_t host16(uint16_t be) { return rte_be_to_cpu_16(be); }

TEST_F(PortBlocksTest, BlockModeKeepsNoPerPortFifoBesideItsBlocks)
{
    // The partitions only index external ports to mappings in this mode:
    // their free-port FIFO (2 B ring + 4 B release time per port) would never be used.
    Nat blocks(blocks_of(8));
    Nat plain(small_config_ports(50000, 50063));
    EXPECT_FALSE(blocks.tr.partition(0, ephemera::L4::Udp).has_fifo());
    EXPECT_TRUE(plain.tr.partition(0, ephemera::L4::Udp).has_fifo());
    const size_t ports = 64 * ephemera::kL4Count * blocks.cfg.pool.size();
    // 10 B per port without blocks; 4 B of index + 2 B of block ring with them.
    EXPECT_EQ(plain.tr.memory_bytes() - blocks.tr.memory_bytes() + blocks.tr.blocks()->memory_bytes(),
              ports * (10 - 4));
    ASSERT_NE(blocks.open_udp(kSub1, 40000), 0); // and it still translates
}

TEST_F(PortBlocksTest, FirstMappingTakesABlockAndLaterOnesFillItInOrder)
{
    Nat nat(blocks_of(8));
    std::vector<uint16_t> got;
    for (uint16_t i = 0; i < 8; ++i) got.push_back(nat.open_udp(kSub1, uint16_t(1000 + i)));
    EXPECT_EQ(got, (std::vector<uint16_t>{50000, 50001, 50002, 50003, 50004, 50005, 50006, 50007}));
    EXPECT_EQ(nat.tr.blocks()->blocks_of(net32(kSub1)), 1u);
    // The ninth mapping needs a second block: the next one in FIFO order.
    EXPECT_EQ(nat.open_udp(kSub1, 1008), 50008);
    EXPECT_EQ(nat.tr.blocks()->blocks_of(net32(kSub1)), 2u);
}

TEST_F(PortBlocksTest, ABlockHoldsTheSameNumbersInEveryProtocol)
{
    Nat nat(blocks_of(8));
    const uint16_t u = nat.open_udp(kSub1, 1000);
    const Outcome syn = nat.out(tcp_packet(kSub1, 2000, kRemote1, 80, kSyn));
    ASSERT_TRUE(forwarded(syn));
    EXPECT_EQ(u, 50000);
    EXPECT_EQ(syn.parsed().sport, 50000) << "TCP starts at the block's first port too";
    EXPECT_EQ(nat.tr.blocks()->blocks_of(net32(kSub1)), 1u) << "one block serves every protocol";
}

TEST_F(PortBlocksTest, SubscribersGetSeparateBlocks)
{
    Nat nat(blocks_of(8));
    EXPECT_EQ(nat.open_udp(kSub1, 1000), 50000);
    EXPECT_EQ(nat.open_udp(kSub2, 1000), 50008);
    EXPECT_EQ(nat.open_udp(kSub1, 1001), 50001);
    EXPECT_EQ(nat.open_udp(kSub2, 1001), 50009);
}

TEST_F(PortBlocksTest, OneLogEventPerBlockNotPerMapping)
{
    Nat nat(blocks_of(8));
    EventRing ring(nat.tr);
    for (uint16_t i = 0; i < 9; ++i) ASSERT_NE(nat.open_udp(kSub1, uint16_t(1000 + i)), 0);
    const auto events = ring.take();
    ASSERT_EQ(events.size(), 2u) << "9 mappings in 2 blocks";
    for (size_t b = 0; b < 2; ++b) {
        EXPECT_EQ(events[b].type, uint8_t(MappingEventType::BlockAlloc));
        EXPECT_EQ(events[b].in_addr, net32(kSub1));
        EXPECT_EQ(events[b].ext_addr, net32(nat.cfg.pool[0]));
        EXPECT_EQ(host16(events[b].ext_port), 50000 + 8 * b) << "first port";
        EXPECT_EQ(host16(events[b].in_port), 50007 + 8 * b) << "last port";
        EXPECT_EQ(events[b].l4, 0) << "a block is every protocol's";
    }
}

TEST_F(PortBlocksTest, BlockFreedWhenItsLastMappingGoesAndLogged)
{
    Nat nat(blocks_of(8));
    EventRing ring(nat.tr);
    ASSERT_EQ(nat.open_udp(kSub1, 1000), 50000);
    ASSERT_EQ(nat.open_udp(kSub1, 1001), 50001);
    ring.take();
    nat.tr.release_mapping(nat.mapping_of(kSub1, 1000, L4::Udp), nat.now());
    EXPECT_TRUE(ring.take().empty()) << "the block still holds 50001";
    EXPECT_EQ(nat.tr.blocks()->blocks_of(net32(kSub1)), 1u);
    nat.tr.release_mapping(nat.mapping_of(kSub1, 1001, L4::Udp), nat.now());
    const auto events = ring.take();
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(events[0].type, uint8_t(MappingEventType::BlockFree));
    EXPECT_EQ(events[0].in_addr, net32(kSub1));
    EXPECT_EQ(host16(events[0].ext_port), 50000);
    EXPECT_EQ(host16(events[0].in_port), 50007);
    EXPECT_EQ(nat.tr.blocks()->blocks_of(net32(kSub1)), 0u);
}

TEST_F(PortBlocksTest, Rfc6888Req8_FreedBlockGoesToAnotherSubscriberOnlyAfterQuarantine)
{
    NatConfig c = blocks_of(32, 1); // 2 blocks in all
    Nat nat(c);
    const Tick t0 = nat.now();
    ASSERT_EQ(nat.open_udp(kSub1, 1000), 50000);
    ASSERT_EQ(nat.open_udp(kSub2, 1000), 50032);
    nat.tr.release_mapping(nat.mapping_of(kSub1, 1000, L4::Udp), t0);
    const uint32_t kSub3 = ip(100, 64, 0, 4);
    nat.set_time(last_quarantined(t0, c.timeouts.quarantine));
    EXPECT_TRUE(dropped(nat.out(udp_packet(kSub3, 1000, kRemote1, 5000)), Drop::PortsExhausted))
        << "the only free block is still in quarantine";
    nat.set_time(free_at(t0, c.timeouts.quarantine));
    EXPECT_EQ(nat.open_udp(kSub3, 1000), 50000);
}

TEST_F(PortBlocksTest, PortReusedInsideItsBlockOnlyAfterTheBlocksOtherFreePorts)
{
    Nat nat(blocks_of(4, 1));
    ASSERT_EQ(nat.open_udp(kSub1, 1000), 50000);
    ASSERT_EQ(nat.open_udp(kSub1, 1001), 50001);
    nat.tr.release_mapping(nat.mapping_of(kSub1, 1000, L4::Udp), nat.now());
    EXPECT_EQ(nat.open_udp(kSub1, 1002), 50002);
    EXPECT_EQ(nat.open_udp(kSub1, 1003), 50003);
    EXPECT_EQ(nat.open_udp(kSub1, 1004), 50000) << "FIFO inside the block";
}

TEST_F(PortBlocksTest, Rfc6888Req4_AtItsBlockLimitNewFlowsAreRefusedAndCounted)
{
    Nat nat(blocks_of(4, 2));
    std::vector<uint16_t> ports;
    for (uint16_t i = 0; i < 8; ++i) ports.push_back(nat.open_udp(kSub1, uint16_t(1000 + i)));
    EXPECT_TRUE(dropped(nat.out(udp_packet(kSub1, 2000, kRemote1, 5000)), Drop::SubscriberLimit));
    EXPECT_EQ(nat.tr.blocks()->blocks_of(net32(kSub1)), 2u);
    // RFC 6888 REQ-11: nothing it holds was taken away.
    for (uint16_t i = 0; i < 8; ++i) {
        EXPECT_EQ(nat.open_udp(kSub1, uint16_t(1000 + i)), ports[i]);
        EXPECT_TRUE(forwarded(nat.in(udp_packet(kRemote1, 5000, nat.cfg.pool[0], ports[i]))));
    }
    // Another protocol has its own ports in the same blocks.
    EXPECT_TRUE(forwarded(nat.out(tcp_packet(kSub1, 3000, kRemote1, 80, kSyn))));
    EXPECT_NE(nat.open_udp(kSub2, 1000), 0) << "another subscriber is not affected";
}

TEST_F(PortBlocksTest, NoFreeBlockIsPortsExhausted)
{
    Nat nat(blocks_of(32, 4)); // 2 blocks
    ASSERT_NE(nat.open_udp(kSub1, 1000), 0);
    ASSERT_NE(nat.open_udp(kSub2, 1000), 0);
    const uint32_t kSub3 = ip(100, 64, 0, 4);
    EXPECT_TRUE(dropped(nat.out(udp_packet(kSub3, 1000, kRemote1, 5000)), Drop::PortsExhausted));
}

TEST_F(PortBlocksTest, ExpiryReleasesPortsIntoTheirBlocks)
{
    Nat nat(blocks_of(8));
    const Tick t0 = nat.now();
    ASSERT_EQ(nat.open_udp(kSub1, 1000), 50000);
    ASSERT_EQ(nat.open_udp(kSub1, 1001), 50001);
    const uint32_t cap = nat.tr.table().capacity();
    EXPECT_EQ(nat.tr.expire(gone_at(t0, nat.cfg.timeouts.udp), cap), 2u);
    EXPECT_EQ(nat.tr.blocks()->blocks_of(net32(kSub1)), 0u);
    const auto u = nat.tr.port_use(0, L4::Udp, gone_at(t0, nat.cfg.timeouts.udp));
    EXPECT_EQ(u.in_use, 0u);
    EXPECT_EQ(u.quarantined, 8u) << "the block, not single ports, is quarantined";
    EXPECT_EQ(u.free + u.quarantined + u.in_use, 64u);
}

TEST_F(PortBlocksTest, PortUseAddsUpToThePartition)
{
    Nat nat(blocks_of(8));
    for (uint16_t i = 0; i < 10; ++i) ASSERT_NE(nat.open_udp(kSub1, uint16_t(1000 + i)), 0);
    ASSERT_NE(nat.open_udp(kSub2, 1000), 0);
    const auto u = nat.tr.port_use(0, L4::Udp, nat.now());
    EXPECT_EQ(u.in_use, 11u);
    EXPECT_EQ(u.quarantined, 0u);
    EXPECT_EQ(u.free, 64u - 11u);
    const auto t = nat.tr.port_use(0, L4::Tcp, nat.now());
    EXPECT_EQ(t.in_use, 0u);
    EXPECT_EQ(t.free, 64u);
}

TEST_F(PortBlocksTest, InboundReachesAMappingInABlock)
{
    Nat nat(blocks_of(8));
    const uint16_t ep = nat.open_udp(kSub1, 1000);
    const Outcome back = nat.in(udp_packet(kRemote1, 5000, nat.cfg.pool[0], ep));
    ASSERT_TRUE(forwarded(back));
    EXPECT_EQ(back.parsed().dst, kSub1);
}

TEST(PortBlocksConfig, BlockLargerThanAWorkersShareIsRefused)
{
    NatConfig c = small_config();
    c.ports = {50000, 50063};
    c.workers = 2;
    c.port_block_size = 33;
    try {
        ephemera::validate(c);
        FAIL() << "accepted";
    } catch (const ephemera::ConfigError& e) {
        EXPECT_NE(std::string(e.what()).find("port_block_size"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("32 ports"), std::string::npos) << e.what();
    }
}

TEST(PortBlocksConfig, PortParityCannotBeCombinedWithBlocks)
{
    NatConfig c = small_config();
    c.port_block_size = 4;
    c.port_parity = true;
    EXPECT_THROW(ephemera::validate(c), ephemera::ConfigError);
}

} // namespace
} // namespace ephtest
