// Expiry and port reuse running concurrently with translation (built and run
// under AddressSanitizer): a worker thread translates new flows as fast as it
// can and carries out expiry commands between bursts, while a control thread
// moves the clock and scans the worker's table for expired mappings. After
// every drain the worker checks its port partitions: no port lost, none handed
// out twice, every port in use owned by exactly one live mapping.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <random>
#include <thread>

#include <rte_mbuf.h>
#include <rte_ring.h>

#include "ephemera/expiry.hpp"
#include "ephemera/translator.hpp"
#include "packet_builder.hpp"

using namespace ephemera;
using namespace ephtest;

namespace {

constexpr uint16_t kFirst = 50000, kLast = 50255; // 256 ports per pool address

NatConfig small_config()
{
    NatConfig c;
    c.pool = {ip(198, 51, 100, 1), ip(198, 51, 100, 2)};
    c.ports = PortRange{kFirst, kLast};
    c.timeouts.udp = 2;
    c.timeouts.quarantine = 1;
    c.max_mappings = 1024;
    c.max_extra_sessions = 256;
    return c;
}

// Partition invariants for UDP on every pool address; returns the number broken.
unsigned check_partitions(Translator& nat, Tick now, Tick quarantine)
{
    unsigned broken = 0;
    for (unsigned p = 0; p < nat.pool().size(); ++p) {
        PortPartition& part = nat.partition(p, L4::Udp);
        part.promote(now, quarantine);
        if (part.free_count() + part.quarantined_count() + part.in_use_count() != part.size()) ++broken;
        uint32_t owned = 0;
        for (uint32_t port = kFirst; port <= kLast; ++port) {
            const uint32_t idx = part.mapping_of(uint16_t(port));
            if (idx == kNoMapping) continue;
            ++owned;
            const Mapping& m = nat.table().mapping(idx);
            if (!m.live || rte_be_to_cpu_16(m.ext_port) != port || m.pool != p) ++broken;
        }
        if (owned != part.in_use_count()) ++broken;
    }
    return broken;
}

} // namespace

TEST(ExpiryConcurrency, WorkersTranslateWhileExpiryReleasesAndReusesPorts)
{
    const NatConfig config = small_config();
    const PortLayout layout(config.ports, 1);
    Translator nat(config, layout, 0);
    rte_ring* commands = create_expiry_ring("expiry_conc", 256, SOCKET_ID_ANY);
    ExpiryScanner scanner(nat, commands);

    std::atomic<Tick> clock{100};
    std::atomic<bool> done{false};
    unsigned violations = 0, checks = 0;
    uint64_t released_by_commands = 0, bursts = 0;

    std::thread worker([&] {
        std::mt19937 rng(7);
        const L2 l2{};
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(6);
        while (bursts < 4000 && std::chrono::steady_clock::now() < deadline) {
            rte_mbuf* pkts[kBurst];
            for (auto& m : pkts) {
                const uint32_t flow = rng() % 3000; // more flows than ports: exhaustion happens too
                m = make_mbuf(ether_frame(l2, 0x0800,
                                          udp_packet(ip(100, 64, flow / 100, 2 + flow % 100), uint16_t(10000 + flow % 7),
                                                     ip(203, 0, 113, 2), 443)));
            }
            const Tick now = clock.load();
            const uint16_t sent = nat.outbound(pkts, kBurst, now);
            rte_pktmbuf_free_bulk(pkts, sent);
            released_by_commands += drain_expiry_commands(nat, commands, 64, now);
            violations += check_partitions(nat, now, config.timeouts.quarantine);
            ++checks;
            ++bursts;
        }
        done = true;
    });
    std::thread control([&] {
        auto next_tick = std::chrono::steady_clock::now();
        while (!done) {
            if (std::chrono::steady_clock::now() >= next_tick) {
                clock.fetch_add(1);
                next_tick += std::chrono::milliseconds(20);
            }
            scanner.scan(clock.load(), 128);
        }
    });
    worker.join();
    control.join();

    const WorkerStats& s = nat.stats();
    EXPECT_EQ(0u, violations) << "over " << checks << " checks";
    EXPECT_GT(released_by_commands, 0u);
    EXPECT_EQ(total(s.mappings_created) - total(s.mappings_released), nat.table().mapping_count());
    // Ports came back through quarantine and were handed out again.
    EXPECT_GT(total(s.mappings_created), 2u * (kLast - kFirst + 1));
    EXPECT_GT(s.drop(Dir::Out, Drop::PortsExhausted), 0u) << "the run should also have hit exhaustion";
    EXPECT_GT(scanner.queued(), 0u);

    // Everything can be expired in the end, and then every port is free again.
    // Ticks are whole seconds: a session last refreshed at t is alive through
    // t + udp and gone at t + udp + 1; a port released at r is quarantined
    // through r + quarantine and free at r + quarantine + 1.
    const Tick q = config.timeouts.quarantine;
    const Tick later = clock.load() + config.timeouts.udp + 1; // no packet was translated after clock.load()
    const uint32_t left = nat.table().mapping_count();
    ASSERT_GT(left, 0u) << "the run should end with live mappings";
    for (unsigned i = 0; i < 20 && nat.table().mapping_count() > 0; ++i) {
        scanner.scan(later, nat.table().capacity());
        drain_expiry_commands(nat, commands, 1u << 20, later);
    }
    EXPECT_EQ(0u, nat.table().mapping_count());
    // Released at `later`: still quarantined at later + q (every earlier release is free by then)...
    EXPECT_EQ(0u, check_partitions(nat, later + q, q));
    uint32_t quarantined = 0;
    for (unsigned p = 0; p < nat.pool().size(); ++p) quarantined += nat.partition(p, L4::Udp).quarantined_count();
    EXPECT_EQ(left, quarantined);
    // ...and free at later + q + 1.
    EXPECT_EQ(0u, check_partitions(nat, later + q + 1, q));
    for (unsigned p = 0; p < nat.pool().size(); ++p)
        EXPECT_EQ(nat.partition(p, L4::Udp).size(), nat.partition(p, L4::Udp).free_count());
    rte_ring_free(commands);
    EXPECT_EQ(kMbufPoolSize, mbufs_available());
}
