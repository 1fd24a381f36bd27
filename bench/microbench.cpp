// Micro-benchmarks of the translation core: one iteration is one burst of
// ephemera::kBurst packets through raw_forward() or a Translator, timed with the
// TSC around the translate call only (manual time); writing the packets is not
// timed. Run with --help for the Google Benchmark flags; EAL arguments may be
// appended after "--". See bench/meson.build for the smoke test.
//
// EAL memory: 2 MB hugepages when enough are free (as root:
// `echo 2048 > /proc/sys/vm/nr_hugepages`), otherwise --no-huge; set
// EPHEMERA_BENCH_NO_HUGE=1 to force the latter, EPHEMERA_BENCH_MEM_MB=<n> to
// change the EAL's -m. The program never changes system settings itself.

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <exception>
#include <fstream>
#include <memory>
#include <numeric>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include <benchmark/benchmark.h>

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_ring.h>
#include <rte_version.h>

#include "ephemera/config.hpp"
#include "ephemera/expiry.hpp"
#include "ephemera/port_allocator.hpp"
#include "ephemera/raw_forward.hpp"
#include "ephemera/stats.hpp"
#include "ephemera/translator.hpp"

#include "bench_packets.hpp"

namespace {

using ephemera::kBurst;
using ephemera::Tick;

constexpr Tick kNow = 1000;             // constant: nothing expires during a run
constexpr uint64_t kSeed = 0x65706862;  // every random order is the same from run to run
constexpr const char* kPoolPrefix = "198.51.100.0/26";
// EAL memory (-m, MiB). The largest translator here takes about 300 MiB.
constexpr unsigned kHugeMemMb = 1024;   // preallocated 2 MB hugepages
constexpr unsigned kNoHugeMemMb = 4096; // anonymous memory without

const char* kNoHugeEnv = "EPHEMERA_BENCH_NO_HUGE";
const char* kMemEnv = "EPHEMERA_BENCH_MEM_MB"; // overrides -m in either mode

rte_mempool* g_mbufs = nullptr;
double g_tsc_hz = 0;

// ---------------------------------------------------------------- mbufs

// The kBurst mbufs a benchmark reuses from iteration to iteration. The
// translator compacts forwarded packets to the front and frees the rest, so
// after a call that forwarded k of them, pkts[0..k) are still ours.
class Burst {
public:
    Burst()
    {
        if (rte_pktmbuf_alloc_bulk(g_mbufs, pkts, kBurst) != 0) throw std::runtime_error("mbuf pool exhausted");
        for (rte_mbuf* m : pkts) clear_payload(m);
    }
    ~Burst() { rte_pktmbuf_free_bulk(pkts, held_); }
    Burst(const Burst&) = delete;
    Burst& operator=(const Burst&) = delete;

    // After a call forwarded only `kept` packets: the others are gone.
    void lost_after(uint16_t kept) { held_ = kept; }

    rte_mbuf* pkts[kBurst];

private:
    static void clear_payload(rte_mbuf* m)
    {
        std::memset(rte_pktmbuf_mtod(m, char*), 0, ephbench::kFrameLen);
    }
    unsigned held_ = kBurst;
};

// ---------------------------------------------------------------- timing

// rte_rdtsc_precise() is rte_rdtsc() behind a full barrier: the packet writes
// of the untimed preparation have drained before the clock starts, and the
// translator's own stores have drained before it stops.
inline uint64_t tsc_now() { return rte_rdtsc_precise(); }

uint64_t measure_timer_overhead()
{
    uint64_t best = UINT64_MAX;
    for (int i = 0; i < 10000; ++i) {
        const uint64_t t0 = tsc_now();
        const uint64_t t1 = tsc_now();
        best = std::min(best, t1 - t0);
    }
    return best;
}

struct BurstClock {
    uint64_t cycles = 0;

    void record(benchmark::State& state, uint64_t t0, uint64_t t1)
    {
        cycles += t1 - t0;
        state.SetIterationTime(double(t1 - t0) / g_tsc_hz);
    }
    void report(benchmark::State& state) const
    {
        const uint64_t packets = uint64_t(state.iterations()) * kBurst;
        state.SetItemsProcessed(int64_t(packets));
        state.counters["cycles_per_packet"] = packets ? double(cycles) / double(packets) : 0.0;
    }
};

// ---------------------------------------------------------------- translator set-up

std::string drop_summary(const ephemera::WorkerStats& s)
{
    std::string out;
    for (unsigned d = 0; d < 2; ++d)
        for (unsigned r = 0; r < ephemera::kDropCount; ++r)
            if (s.drops[d][r] != 0) {
                if (!out.empty()) out += ", ";
                out += std::string(ephemera::to_string(ephemera::Dir(d))) + " " +
                       ephemera::to_string(ephemera::Drop(r)) + "=" + std::to_string(s.drops[d][r]);
            }
    return out.empty() ? "no drops" : out;
}

// A single-worker translator with its port layout (which it references).
struct Nat {
    ephemera::NatConfig config;
    std::unique_ptr<ephemera::PortLayout> layout;
    std::unique_ptr<ephemera::Translator> nat;

    // Room for `flows` mappings plus 12.5 % headroom.
    Nat(uint32_t flows, uint32_t quarantine)
    {
        config.pool = ephemera::parse_ipv4_prefix(kPoolPrefix);
        config.ports = ephemera::PortRange{1024, 65535};
        config.timeouts.quarantine = quarantine;
        config.workers = 1;
        config.max_mappings = flows + flows / 8;
        config.max_extra_sessions = 1024;
        ephemera::validate(config);
        layout = std::make_unique<ephemera::PortLayout>(config.ports, config.workers);
        nat = std::make_unique<ephemera::Translator>(config, *layout, 0, int(rte_socket_id()));
        nat->set_outside_l2(ephbench::kOutsideMac, ephbench::kNextHopMac);
        nat->set_inside_l2(ephbench::kInsideMac);
    }
};

std::vector<uint32_t> random_order(uint32_t flows)
{
    std::vector<uint32_t> order(flows);
    std::iota(order.begin(), order.end(), 0u);
    std::mt19937_64 rng(kSeed ^ flows);
    std::shuffle(order.begin(), order.end(), rng);
    return order;
}

uint32_t mapping_of_flow(const ephemera::Translator& nat, uint32_t flow)
{
    return nat.mapping_of(rte_cpu_to_be_32(ephbench::flow_addr_host(flow)), ephbench::flow_port_host(flow),
                          ephemera::L4::Udp);
}

// `sessions` established UDP flows (flow i: subscriber 100.64.0.0 + i/16, port
// 10000 + i%16, towards 203.0.113.2:443), each with its own mapping, shared by
// the InToOut and OutToIn benchmarks of that size. One size is kept at a time:
// the benchmarks are registered so that both directions of a size run in a row.
struct Established {
    uint32_t sessions = 0;
    std::unique_ptr<Nat> nat;
    std::vector<uint32_t> ext_addr; // by flow, network order, read off the translated packets
    std::vector<uint16_t> ext_port; // by flow, network order
    std::vector<uint32_t> order;    // random permutation of the flows, walked cyclically
    double setup_seconds = 0;
};

std::unique_ptr<Established> g_established;

Established* established(uint32_t sessions, std::string& error)
{
    if (g_established && g_established->sessions == sessions) return g_established.get();
    g_established.reset(); // free the previous size's tables first
    const auto start = std::chrono::steady_clock::now();
    try {
        auto e = std::make_unique<Established>();
        e->sessions = sessions;
        e->nat = std::make_unique<Nat>(sessions, 120);
        ephemera::Translator& nat = *e->nat->nat;
        e->ext_addr.resize(sessions);
        e->ext_port.resize(sessions);

        Burst b;
        for (uint32_t base = 0; base < sessions; base += kBurst) {
            const uint16_t n = uint16_t(std::min<uint32_t>(kBurst, sessions - base));
            for (uint16_t j = 0; j < n; ++j) ephbench::write_inside(b.pkts[j], base + j);
            const uint16_t sent = nat.outbound(b.pkts, n, kNow);
            if (sent != n) {
                b.lost_after(sent);
                error = "setup: outbound() forwarded " + std::to_string(sent) + " of " + std::to_string(n) +
                        " new flows from flow " + std::to_string(base) + " (" + drop_summary(nat.stats()) + ")";
                return nullptr;
            }
            for (uint16_t j = 0; j < n; ++j) {
                e->ext_addr[base + j] = ephbench::ipv4_of(b.pkts[j])->src_addr;
                e->ext_port[base + j] = ephbench::udp_of(b.pkts[j])->src_port;
            }
        }
        const ephemera::WorkerStats& s = nat.stats();
        if (s.dropped(ephemera::Dir::Out) != 0 || s.dropped(ephemera::Dir::In) != 0) {
            error = "setup: " + drop_summary(s);
            return nullptr;
        }
        if (nat.table().mapping_count() != sessions) {
            error = "setup: " + std::to_string(nat.table().mapping_count()) + " mappings for " +
                    std::to_string(sessions) + " flows";
            return nullptr;
        }
        // The packets and the table must agree on every external endpoint.
        for (uint32_t f = 0; f < sessions; ++f) {
            const uint32_t index = mapping_of_flow(nat, f);
            if (index == ephemera::kNoMapping) {
                error = "setup: mapping_of() finds no mapping for flow " + std::to_string(f);
                return nullptr;
            }
            const ephemera::Mapping& m = nat.table().mapping(index);
            if (m.ext_addr != e->ext_addr[f] || m.ext_port != e->ext_port[f]) {
                error = "setup: flow " + std::to_string(f) + " left as " +
                        ephemera::format_ipv4(rte_be_to_cpu_32(e->ext_addr[f])) + ":" +
                        std::to_string(rte_be_to_cpu_16(e->ext_port[f])) + " but its mapping says " +
                        ephemera::format_ipv4(rte_be_to_cpu_32(m.ext_addr)) + ":" +
                        std::to_string(rte_be_to_cpu_16(m.ext_port));
                return nullptr;
            }
        }
        e->order = random_order(sessions);
        e->setup_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        g_established = std::move(e);
        return g_established.get();
    } catch (const std::exception& ex) {
        error = std::string("setup: ") + ex.what();
        return nullptr;
    }
}

// Steady-state churn at a fixed table occupancy: `live` mappings stay in the
// table; every burst first releases the 32 oldest (untimed, quarantine 0), then
// brings 32 new flows (timed). Flows come from a random permutation of 2 x live
// flow numbers walked cyclically, so a new flow is never one still live.
struct Churn {
    uint32_t live = 0;
    std::unique_ptr<Nat> nat;
    std::vector<uint32_t> order;
    uint64_t head = 0, tail = 0; // order positions (mod size) [tail, head) hold a mapping
    Tick now = kNow;
    double setup_seconds = 0;

    uint32_t flow_at(uint64_t pos) const { return order[pos % order.size()]; }

    // Creates the flows at [head, head + n).
    uint16_t create(Burst& b, uint16_t n)
    {
        for (uint16_t j = 0; j < n; ++j) ephbench::write_inside(b.pkts[j], flow_at(head + j));
        return nat->nat->outbound(b.pkts, n, now);
    }
    void created(uint16_t n)
    {
        const uint64_t before = head / order.size();
        head += n;
        // Once per pass over the flows: ports released at `now` are free at
        // `now` with quarantine 0 already, and certainly one second later.
        if (head / order.size() != before) ++now;
    }
    // Releases the n oldest mappings; false (with error) if one is missing.
    bool release(uint32_t n, std::string& error)
    {
        ephemera::Translator& t = *nat->nat;
        for (uint32_t i = 0; i < n; ++i, ++tail) {
            const uint32_t index = mapping_of_flow(t, flow_at(tail));
            if (index == ephemera::kNoMapping) {
                error = "release: no mapping for flow " + std::to_string(flow_at(tail));
                return false;
            }
            t.release_mapping(index, now);
        }
        return true;
    }
};

std::unique_ptr<Churn> g_churn;

Churn* churn(uint32_t live, std::string& error)
{
    if (g_churn && g_churn->live == live) return g_churn.get();
    g_churn.reset();
    g_established.reset();
    const auto start = std::chrono::steady_clock::now();
    try {
        auto c = std::make_unique<Churn>();
        c->live = live;
        c->nat = std::make_unique<Nat>(live, 0);
        c->order = random_order(2 * live);
        ephemera::Translator& nat = *c->nat->nat;
        Burst b;
        while (c->head < live) {
            const uint16_t n = uint16_t(std::min<uint64_t>(kBurst, live - c->head));
            const uint16_t sent = c->create(b, n);
            if (sent != n) {
                b.lost_after(sent);
                error = "setup: outbound() forwarded " + std::to_string(sent) + " of " + std::to_string(n) +
                        " new flows at table fill " + std::to_string(nat.table().mapping_count()) + " (" +
                        drop_summary(nat.stats()) + ")";
                return nullptr;
            }
            c->created(n);
        }
        if (nat.table().mapping_count() != live) {
            error = "setup: " + std::to_string(nat.table().mapping_count()) + " mappings for " +
                    std::to_string(live) + " flows";
            return nullptr;
        }
        c->setup_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        g_churn = std::move(c);
        return g_churn.get();
    } catch (const std::exception& ex) {
        error = std::string("setup: ") + ex.what();
        return nullptr;
    }
}

std::string g_error; // SkipWithError keeps a copy in newer versions only; keep ours alive
bool g_failed = false; // some benchmark was skipped with an error: the exit status says so

void fail(benchmark::State& state)
{
    g_failed = true;
    std::fprintf(stderr, "ephemera-microbench: %s\n", g_error.c_str());
    state.SkipWithError(g_error.c_str());
}

// ---------------------------------------------------------------- benchmarks

void BM_RawForward(benchmark::State& state)
{
    Burst b;
    for (rte_mbuf* m : b.pkts) ephbench::write_inside(m, 0);
    BurstClock clock;
    for (auto _ : state) {
        const uint64_t t0 = tsc_now();
        const uint16_t sent = ephemera::raw_forward(b.pkts, kBurst, ephbench::kOutsideMac, ephbench::kNextHopMac);
        const uint64_t t1 = tsc_now();
        if (sent != kBurst) {
            b.lost_after(sent);
            g_error = "raw_forward() forwarded " + std::to_string(sent) + " of " + std::to_string(kBurst);
            fail(state);
            break;
        }
        clock.record(state, t0, t1);
    }
    clock.report(state);
}

// The timed loop over established flows in a random order, shared by the
// plain run and the run beside an expiry sweep. handed_over (inbound only):
// each packet comes with the mapping index a receiving worker read for it
// (untimed), as software handoff brings it to the owner.
template <ephemera::Dir dir, bool handed_over = false>
void run_established(benchmark::State& state, Established* e)
{
    ephemera::Translator& nat = *e->nat->nat;
    const uint64_t drops_before = nat.stats().dropped(dir);
    const std::vector<uint32_t>& order = e->order;
    size_t cursor = 0;
    Burst b;
    uint32_t carried[kBurst];
    BurstClock clock;
    for (auto _ : state) {
        for (uint16_t i = 0; i < kBurst; ++i) {
            const uint32_t flow = order[cursor];
            if (++cursor == order.size()) cursor = 0;
            if constexpr (dir == ephemera::Dir::Out)
                ephbench::write_inside(b.pkts[i], flow);
            else
                ephbench::write_reply(b.pkts[i], e->ext_addr[flow], e->ext_port[flow]);
            if constexpr (handed_over)
                carried[i] = nat.mapping_seen_by_other_worker(unsigned(nat.pool().index_of(e->ext_addr[flow])),
                                                              rte_be_to_cpu_16(e->ext_port[flow]), ephemera::L4::Udp);
        }
        const uint64_t t0 = tsc_now();
        uint16_t sent;
        if constexpr (dir == ephemera::Dir::Out)
            sent = nat.outbound(b.pkts, kBurst, kNow);
        else
            sent = nat.inbound(b.pkts, kBurst, kNow, handed_over ? carried : nullptr);
        const uint64_t t1 = tsc_now();
        if (sent != kBurst) {
            b.lost_after(sent);
            g_error = std::string(dir == ephemera::Dir::Out ? "outbound" : "inbound") + "() forwarded " +
                      std::to_string(sent) + " of " + std::to_string(kBurst) + " (" + drop_summary(nat.stats()) +
                      ")";
            fail(state);
            break;
        }
        clock.record(state, t0, t1);
    }
    if (!state.error_occurred() && nat.stats().dropped(dir) != drops_before) {
        g_error = "drops during the run: " + drop_summary(nat.stats());
        fail(state);
    }
    clock.report(state);
}

template <ephemera::Dir dir, bool handed_over = false>
void BM_Established(benchmark::State& state)
{
    Established* e = established(uint32_t(state.range(0)), g_error);
    if (e == nullptr) {
        fail(state);
        return;
    }
    run_established<dir, handed_over>(state, e);
    state.counters["setup_s"] = e->setup_seconds;
    state.counters["nat_MiB"] = double(e->nat->nat->memory_bytes()) / (1 << 20);
}

// What bounds BM_EstablishedInToOut: its mapping lookup alone (signature,
// bucket, and the mapping entry the key is confirmed in; no packet), over the
// same table and flow order. The difference to BM_EstablishedInToOut of the
// same size is the packet work.
void BM_MappingLookup(benchmark::State& state)
{
    Established* e = established(uint32_t(state.range(0)), g_error);
    if (e == nullptr) {
        fail(state);
        return;
    }
    const ephemera::SessionTable& table = e->nat->nat->table();
    size_t cursor = 0;
    ephemera::MappingKey keys[kBurst];
    int32_t positions[kBurst];
    BurstClock clock;
    for (auto _ : state) {
        for (unsigned i = 0; i < kBurst; ++i) {
            const uint32_t flow = e->order[cursor];
            if (++cursor == e->order.size()) cursor = 0;
            keys[i] = ephemera::MappingKey{rte_cpu_to_be_32(ephbench::flow_addr_host(flow)),
                                           rte_cpu_to_be_16(ephbench::flow_port_host(flow)),
                                           uint8_t(ephemera::L4::Udp)};
        }
        const uint64_t t0 = tsc_now();
        table.lookup_bulk(keys, kBurst, positions);
        const uint64_t t1 = tsc_now();
        if (std::any_of(std::begin(positions), std::end(positions), [](int32_t p) { return p < 0; })) {
            g_error = "lookup_bulk() missed an established flow";
            fail(state);
            break;
        }
        clock.record(state, t0, t1);
    }
    clock.report(state);
}

// The workers' throughput while the control plane sweeps their table: the same
// loop as BM_EstablishedInToOut, with a second thread running ExpiryScanner
// over the same 1 M mappings at the daemon's pace — a hundredth of the table
// every 10 ms, a full pass a second (nothing is expired: this is the cost of
// the scan itself, its reads competing for the caches and memory).
void BM_EstablishedInToOutDuringSweep(benchmark::State& state)
{
    Established* e = established(uint32_t(state.range(0)), g_error);
    if (e == nullptr) {
        fail(state);
        return;
    }
    ephemera::Translator& nat = *e->nat->nat;
    rte_ring* ring = ephemera::create_expiry_ring("bench_sweep", 4096, int(rte_socket_id()));
    ephemera::ExpiryScanner scanner(nat, ring);
    std::atomic<bool> stop{false};
    std::thread sweeper([&] {
        const uint32_t slice = std::max<uint32_t>(1, nat.table().capacity() / 100);
        while (!stop.load(std::memory_order_relaxed)) {
            scanner.scan(kNow, slice);
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
    });
    run_established<ephemera::Dir::Out>(state, e);
    stop = true;
    sweeper.join();
    rte_ring_free(ring);
    state.counters["sweep_passes"] = double(scanner.passes());
}

// The control plane's cost of expiring 1 M mappings, and the worker's cost of
// carrying out the commands: all mappings idle past their timeout, the scanner
// finds them (control_cycles) and the worker releases them into quarantine
// (worker_cycles), alternating through a 64 K-entry ring. One iteration = 1 M
// expiries; the table is rebuilt, untimed, before each.
void BM_ExpireAll(benchmark::State& state)
{
    const uint32_t sessions = uint32_t(state.range(0));
    g_established.reset(); // its tables would double the memory
    uint64_t control = 0, worker = 0, expired = 0;
    for (auto _ : state) {
        auto nat_holder = std::make_unique<Nat>(sessions, 120);
        ephemera::Translator& nat = *nat_holder->nat;
        Burst b;
        for (uint32_t base = 0; base < sessions; base += kBurst) {
            const uint16_t n = uint16_t(std::min<uint32_t>(kBurst, sessions - base));
            for (uint16_t j = 0; j < n; ++j) ephbench::write_inside(b.pkts[j], base + j);
            if (nat.outbound(b.pkts, n, kNow) != n) {
                g_error = "setup: " + drop_summary(nat.stats());
                fail(state);
                return;
            }
        }
        rte_ring* ring = ephemera::create_expiry_ring("bench_expire", 1 << 16, int(rte_socket_id()));
        ephemera::ExpiryScanner scanner(nat, ring);
        const Tick later = kNow + nat_holder->config.timeouts.udp + 1;
        const uint64_t start = tsc_now();
        uint64_t c = 0, w = 0;
        while (scanner.passes() == 0 || nat.table().mapping_count() > 0) {
            const uint64_t t0 = tsc_now();
            scanner.scan(later, 1 << 15);
            const uint64_t t1 = tsc_now();
            expired += ephemera::drain_expiry_commands(nat, ring, 1 << 16, later);
            const uint64_t t2 = tsc_now();
            c += t1 - t0;
            w += t2 - t1;
            if (scanner.passes() > 2) break;
        }
        state.SetIterationTime(double(tsc_now() - start) / double(rte_get_tsc_hz()));
        control += c;
        worker += w;
        const bool all = nat.table().mapping_count() == 0;
        rte_ring_free(ring);
        if (!all) {
            g_error = "mappings left after the sweep";
            fail(state);
            return;
        }
    }
    const double n = double(expired ? expired : 1);
    state.counters["control_cycles_per_mapping"] = double(control) / n;
    state.counters["worker_cycles_per_mapping"] = double(worker) / n;
    state.counters["control_ms_per_1M"] = double(control) / n * 1e6 / double(rte_get_tsc_hz()) * 1e3;
    state.counters["expired"] = double(expired);
    state.SetItemsProcessed(int64_t(expired));
}

void BM_NewMapping(benchmark::State& state)
{
    const uint32_t live = uint32_t(state.range(0));
    Churn* c = churn(live, g_error);
    if (c == nullptr) {
        fail(state);
        return;
    }
    ephemera::Translator& nat = *c->nat->nat;
    Burst b;
    BurstClock clock;
    uint64_t release_cycles = 0;
    for (auto _ : state) {
        const uint64_t r0 = tsc_now();
        if (!c->release(kBurst, g_error)) {
            fail(state);
            break;
        }
        const uint64_t r1 = tsc_now();
        release_cycles += r1 - r0;
        for (unsigned j = 0; j < kBurst; ++j) ephbench::write_inside(b.pkts[j], c->flow_at(c->head + j));
        const uint64_t t0 = tsc_now();
        const uint16_t sent = nat.outbound(b.pkts, kBurst, c->now);
        const uint64_t t1 = tsc_now();
        if (sent != kBurst) {
            b.lost_after(sent);
            g_error = "outbound() forwarded " + std::to_string(sent) + " of " + std::to_string(kBurst) +
                      " new flows at table fill " + std::to_string(nat.table().mapping_count()) + " (" +
                      drop_summary(nat.stats()) + ")";
            fail(state);
            break;
        }
        c->created(kBurst);
        clock.record(state, t0, t1);
    }
    if (!state.error_occurred() && nat.table().mapping_count() != c->head - c->tail) {
        g_error = std::to_string(nat.table().mapping_count()) + " mappings where " +
                  std::to_string(c->head - c->tail) + " flows are live";
        fail(state);
    }
    clock.report(state);
    const uint64_t packets = uint64_t(state.iterations()) * kBurst;
    // Untimed, for information: mapping_of() + release_mapping() per mapping.
    state.counters["release_cycles"] = packets ? double(release_cycles) / double(packets) : 0.0;
    state.counters["setup_s"] = c->setup_seconds;
    state.counters["nat_MiB"] = double(nat.memory_bytes()) / (1 << 20);
}

// ---------------------------------------------------------------- EAL

bool env_set(const char* name)
{
    const char* v = std::getenv(name);
    return v != nullptr && *v != '\0' && std::strcmp(v, "0") != 0;
}

// Free 2 MB hugepage memory in MiB, or 0 when hugetlbfs is not mounted.
uint64_t free_hugepage_mb()
{
    bool mounted = false;
    {
        std::ifstream mounts("/proc/mounts");
        std::string dev, dir, type;
        std::string rest;
        while (mounts >> dev >> dir >> type && std::getline(mounts, rest))
            if (type == "hugetlbfs") mounted = true;
    }
    if (!mounted) return 0;
    std::ifstream meminfo("/proc/meminfo");
    std::string key;
    uint64_t value = 0, free_pages = 0, page_kb = 0;
    std::string line;
    while (std::getline(meminfo, line)) {
        std::istringstream in(line);
        if (!(in >> key >> value)) continue;
        if (key == "HugePages_Free:") free_pages = value;
        if (key == "Hugepagesize:") page_kb = value;
    }
    return free_pages * page_kb / 1024;
}

[[noreturn]] void reexec_without_hugepages(const std::vector<std::string>& original)
{
    std::fprintf(stderr, "ephemera-microbench: hugepage EAL init failed; restarting with %s=1\n", kNoHugeEnv);
    std::fflush(stderr);
    setenv(kNoHugeEnv, "1-after-failed-hugepage-init", 1);
    std::vector<char*> args;
    for (const std::string& a : original) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv("/proc/self/exe", args.data());
    std::fprintf(stderr, "ephemera-microbench: execv: %s\n", std::strerror(errno));
    std::exit(1);
}

// Returns whether the EAL runs on hugepages; exits when it cannot start at all.
bool init_eal(const std::vector<std::string>& original, const std::vector<std::string>& extra)
{
    const std::string prefix = "ephbench" + std::to_string(getpid());
    const char* mem_env = std::getenv(kMemEnv);
    const unsigned mem_mb = mem_env != nullptr && std::atoi(mem_env) > 0 ? unsigned(std::atoi(mem_env)) : 0;
    bool huge = !env_set(kNoHugeEnv);
    std::string why = huge ? "" : std::string(kNoHugeEnv) + "=" + std::getenv(kNoHugeEnv);
    if (huge) {
        const uint64_t need_mb = mem_mb != 0 ? mem_mb : kHugeMemMb;
        const uint64_t free_mb = free_hugepage_mb();
        if (free_mb < need_mb) {
            huge = false;
            why = std::to_string(free_mb) + " MiB of hugepages free, " + std::to_string(need_mb) +
                  " needed (as root: echo 2048 > /proc/sys/vm/nr_hugepages)";
        }
    }

    static std::vector<std::string> args; // the EAL may keep pointers into argv
    args = {"ephemera-microbench", "-l", "0", "--no-pci", "--no-telemetry", "--file-prefix", prefix,
            "--log-level", "*:error"};
    if (huge) {
        // --in-memory: no files in /var/run or /dev/hugepages, pages unlinked.
        args.insert(args.end(), {"--in-memory", "-m", std::to_string(mem_mb != 0 ? mem_mb : kHugeMemMb)});
    } else {
        // --in-memory would need hugepages; --no-shconf keeps the runtime files away.
        args.insert(args.end(), {"--no-huge", "--no-shconf", "-m", std::to_string(mem_mb != 0 ? mem_mb : kNoHugeMemMb)});
    }
    args.insert(args.end(), extra.begin(), extra.end());

    std::string line;
    for (const std::string& a : args) line += " " + a;
    std::fprintf(stderr, "ephemera-microbench: EAL memory: %s%s%s\nephemera-microbench: EAL args:%s\n",
                 huge ? "2 MB hugepages" : "no hugepages (--no-huge)", why.empty() ? "" : ": ", why.c_str(),
                 line.c_str());

    static std::vector<char*> argv;
    argv.clear();
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (rte_eal_init(int(args.size()), argv.data()) < 0) {
        const std::string err = rte_strerror(rte_errno);
        // The EAL cannot be initialised twice in one process: start afresh.
        if (huge) reexec_without_hugepages(original);
        std::fprintf(stderr, "ephemera-microbench: rte_eal_init failed: %s\n", err.c_str());
        std::exit(1);
    }
    return huge;
}

} // namespace

int main(int argc, char** argv)
{
    const std::vector<std::string> original(argv, argv + argc);
    benchmark::Initialize(&argc, argv);

    // What benchmark::Initialize left: nothing, or "--" and EAL arguments.
    std::vector<std::string> extra_eal;
    int own_argc = argc;
    for (int i = 1; i < argc; ++i)
        if (std::strcmp(argv[i], "--") == 0) {
            extra_eal.assign(argv + i + 1, argv + argc);
            own_argc = i;
            break;
        }
    if (benchmark::ReportUnrecognizedArguments(own_argc, argv)) return 1;

    const bool huge = init_eal(original, extra_eal);
    g_tsc_hz = double(rte_get_tsc_hz());
    g_mbufs = rte_pktmbuf_pool_create("ephbench_mbufs", 1023, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, int(rte_socket_id()));
    if (g_mbufs == nullptr) {
        std::fprintf(stderr, "ephemera-microbench: mbuf pool: %s\n", rte_strerror(rte_errno));
        return 1;
    }

    benchmark::AddCustomContext("dpdk", rte_version());
    benchmark::AddCustomContext("eal_memory", huge ? "hugepages-2MB" : "no-huge");
    benchmark::AddCustomContext("tsc_hz", std::to_string(rte_get_tsc_hz()));
    benchmark::AddCustomContext("timer", "rte_rdtsc_precise around the translate call; overhead " +
                                             std::to_string(measure_timer_overhead()) + " cycles per burst");
    benchmark::AddCustomContext("burst", std::to_string(kBurst) + " x " + std::to_string(ephbench::kFrameLen) +
                                             "-byte UDP/IPv4 frames");
    benchmark::AddCustomContext("nat_pool", std::string(kPoolPrefix) + ", ports 1024-65535, 1 worker");

    benchmark::RegisterBenchmark("BM_RawForward", BM_RawForward)->UseManualTime();
    // Both directions of one size in a row: they share one set-up (see established()).
    for (int64_t sessions : {int64_t(1) << 10, int64_t(1) << 16, int64_t(1) << 20}) {
        benchmark::RegisterBenchmark("BM_EstablishedInToOut", BM_Established<ephemera::Dir::Out>)
            ->Arg(sessions)
            ->UseManualTime();
        benchmark::RegisterBenchmark("BM_EstablishedOutToIn", BM_Established<ephemera::Dir::In>)
            ->Arg(sessions)
            ->UseManualTime();
        // The owner's side of a software handoff that carried the mapping index.
        benchmark::RegisterBenchmark("BM_HandedOverOutToIn", BM_Established<ephemera::Dir::In, true>)
            ->Arg(sessions)
            ->UseManualTime();
        benchmark::RegisterBenchmark("BM_MappingLookup", BM_MappingLookup)->Arg(sessions)->UseManualTime();
    }
    benchmark::RegisterBenchmark("BM_EstablishedInToOutDuringSweep", BM_EstablishedInToOutDuringSweep)
        ->Arg(int64_t(1) << 20)
        ->UseManualTime();
    benchmark::RegisterBenchmark("BM_ExpireAll", BM_ExpireAll)->Arg(int64_t(1) << 20)->Iterations(3)->UseManualTime();
    benchmark::RegisterBenchmark("BM_NewMapping", BM_NewMapping)
        ->Arg(int64_t(1) << 16)
        ->Arg(int64_t(1) << 20)
        ->UseManualTime();

    const size_t ran = benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();

    g_established.reset();
    g_churn.reset();
    rte_mempool_free(g_mbufs);
    const std::string runtime_dir = rte_eal_get_runtime_dir(); // per-run prefix: nothing to keep
    rte_eal_cleanup();
    std::error_code ignored;
    std::filesystem::remove_all(runtime_dir, ignored);
    if (ran == 0) std::fprintf(stderr, "ephemera-microbench: no benchmark matched the filter\n");
    return g_failed || ran == 0 ? 1 : 0;
}
