// ephemera: the NAT gateway daemon. Loads the configuration, brings up EAL,
// the two ports and one worker lcore per configured worker, then stays on the
// main lcore for the control plane: next-hop ARP, the stats file, signals.
#include <climits>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>

#include "../dataplane/eth_port.hpp"
#include "../dataplane/gateway_worker.hpp"
#include "ephemera/expiry.hpp"
#include "ephemera/gateway_config.hpp"
#include "control_api.hpp"
#include "gateway_stats.hpp"
#include "mapping_log.hpp"
#include "metrics.hpp"

using namespace ephemera;

namespace {

volatile std::sig_atomic_t g_signal = 0;
void on_signal(int sig) { g_signal = sig; }
// SIGHUP: open the mapping log's path anew (logrotate's postrotate), not stop.
volatile std::sig_atomic_t g_reopen_log = 0;
void on_hangup(int) { g_reopen_log = 1; }

// After a rotation the daemon must write to the file now at the path; when
// that cannot be opened it keeps the old one, and says so.
void reopen_mapping_log(MappingLog& log, const std::string& path)
{
    if (path.empty()) {
        std::printf("ephemera: SIGHUP: no log.file to reopen\n");
    } else {
        try {
            log.reopen();
            std::printf("ephemera: SIGHUP: mapping log %s reopened\n", path.c_str());
        } catch (const std::exception& e) {
            std::fprintf(stderr, "ephemera: SIGHUP: %s; still writing to the file open before\n", e.what());
            std::fflush(stderr);
        }
    }
    std::fflush(stdout);
}

// What DPDK memory is left, for an allocation that failed: the EAL has only
// what -m or the hugepages gave it.
std::string dpdk_memory_left()
{
    rte_malloc_socket_stats st{};
    if (rte_malloc_get_socket_stats(int(rte_socket_id()), &st) != 0) return "";
    return " (DPDK memory: " + std::to_string(st.heap_freesz_bytes >> 20) + " MiB free of " +
           std::to_string(st.heap_totalsz_bytes >> 20) + " MiB; more with hugepages or the EAL's -m)";
}

[[noreturn]] void die(const std::string& message, int code = 1)
{
    std::fprintf(stderr, "ephemera: error: %s\n", message.c_str());
    std::fflush(stderr);
    std::exit(code);
}

std::string mac_text(const rte_ether_addr& mac)
{
    char buf[RTE_ETHER_ADDR_FMT_SIZE];
    rte_ether_format_addr(buf, sizeof buf, &mac);
    return buf;
}

int worker_main(void* arg)
{
    static_cast<Worker*>(arg)->run();
    return 0;
}

void write_stats(const std::string& path, const nlohmann::json& stats)
{
    if (path.empty()) return;
    const std::string tmp = path + ".tmp";
    {
        std::ofstream out(tmp, std::ios::trunc);
        out << stats.dump() << "\n";
    }
    std::rename(tmp.c_str(), path.c_str()); // readers never see half a file
}

// Frees what is left in a ring (handoff or control) at shutdown.
void drain_ring(rte_ring* r)
{
    void* m = nullptr;
    while (rte_ring_dequeue(r, &m) == 0) rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
    rte_ring_free(r);
}

void drain_handoff_ring(rte_ring* r)
{
    Handoff h{};
    while (rte_ring_dequeue_elem(r, &h, sizeof(h)) == 0) rte_pktmbuf_free(h.m);
    rte_ring_free(r);
}

// Moves up to `budget` events per worker ring into the log (main thread only).
void publish_log_counters(const MappingLog& log, GatewayShared::LogCounters& out)
{
    out.events.store(log.events(), std::memory_order_relaxed);
    out.ipfix_messages.store(log.ipfix_messages(), std::memory_order_relaxed);
    out.ipfix_errors.store(log.ipfix_errors(), std::memory_order_relaxed);
    out.file_errors.store(log.file_errors(), std::memory_order_relaxed);
}

void drain_events(const std::vector<rte_ring*>& rings, MappingLog& log, unsigned budget)
{
    MappingEvent buf[256];
    for (rte_ring* r : rings) {
        unsigned n = 0;
        for (unsigned done = 0;
             done < budget && (n = rte_ring_sc_dequeue_burst_elem(r, buf, sizeof(MappingEvent), 256, nullptr)) > 0;
             done += n)
            for (unsigned i = 0; i < n; ++i) log.record(buf[i]);
    }
}

// Deterministic mode's parameters, for the mapping log's start line: with
// them, a log answers "who held POOLADDR:PORT" across configuration changes.
std::string deterministic_note(const GatewayConfig& config)
{
    const NatConfig& n = config.nat;
    const DeterministicMap map(n.deterministic_prefix, n.deterministic_len, uint32_t(n.pool.size()),
                               PortLayout(n.ports, n.workers), n.deterministic_overflow);
    // The pool in its order (the formula numbers its addresses), runs of consecutive addresses as A-B.
    std::string pool;
    for (size_t i = 0; i < n.pool.size();) {
        size_t j = i;
        while (j + 1 < n.pool.size() && n.pool[j + 1] == n.pool[j] + 1) ++j;
        pool += (pool.empty() ? "" : ",") + format_ipv4(n.pool[i]) + (j > i ? "-" + format_ipv4(n.pool[j]) : "");
        i = j + 1;
    }
    return "deterministic=" + format_ipv4(n.deterministic_prefix) + "/" + std::to_string(n.deterministic_len) +
           " pool=" + pool + " ports=" + std::to_string(n.ports.first) + "-" + std::to_string(n.ports.last) +
           " workers=" + std::to_string(n.workers) + " ports_per_host=" + std::to_string(map.ports_per_host()) +
           (n.deterministic_overflow ? " overflow=" + std::to_string(n.deterministic_overflow) : std::string());
}

} // namespace

int main(int argc, char** argv)
{
    CLI::App app{"ephemera: a DPDK NAT port mapper (carrier-grade NAPT44 gateway)"};
    std::string config_path, stats_path;
    app.add_option("-c,--config", config_path, "TOML configuration file")->required();
    app.add_option("--stats-file", stats_path, "rewrite this file with the counters (JSON) every second");
    bool check_mbufs = false;
    app.add_flag("--check-mbufs", check_mbufs,
                 "after stopping, fail (exit 3) if an mbuf is not back in its pool (for tests, with ports that give "
                 "their buffers back at close, as net_pcap does; net_af_xdp keeps its fill ring's)");
    CLI11_PARSE(app, argc, argv);

    GatewayConfig config;
    try {
        config = load_gateway_config(config_path);
    } catch (const std::exception& e) {
        die(e.what(), 2);
    }
    const unsigned workers = config.nat.workers;
    if (config.nat.deterministic) config.log.start_note = deterministic_note(config);
    // The mapping log opens first: a path it cannot write is a start-up error.
    std::unique_ptr<MappingLog> mapping_log;
    try {
        mapping_log = std::make_unique<MappingLog>(config.log);
    } catch (const std::exception& e) {
        die(e.what(), 2);
    }

    // EAL: the configured arguments, and lcores for main + workers.
    std::vector<std::string> eal = {"ephemera"};
    eal.insert(eal.end(), config.eal_args.begin(), config.eal_args.end());
    if (!config.lcores.empty()) {
        eal.push_back("--lcores");
        eal.push_back(config.lcores);
    } else {
        eal.push_back("-l");
        eal.push_back("0-" + std::to_string(workers));
    }
    std::vector<char*> eal_argv;
    for (auto& s : eal) eal_argv.push_back(s.data());
    if (rte_eal_init(int(eal_argv.size()), eal_argv.data()) < 0)
        die(std::string("EAL initialisation failed: ") + rte_strerror(rte_errno) + " (check [eal] args and hugepages)");
    if (rte_lcore_count() < workers + 1)
        die("dataplane.workers = " + std::to_string(workers) + ": needs " + std::to_string(workers + 1) +
            " lcores (main + workers), EAL has " + std::to_string(rte_lcore_count()) + "; set [eal] lcores",
            2);

    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    std::signal(SIGHUP, on_hangup);

    const uint32_t ring = config.handoff_ring;
    const uint32_t mbufs = config.mbufs ? config.mbufs
                                        : 2 * workers * (config.rx_descriptors + config.tx_descriptors) +
                                              2 * workers * (workers - 1) * ring + 4096 * workers +
                                              workers * config.reassembly * RTE_LIBRTE_IP_FRAG_MAX_FRAG;
    // One pool for both ports: buffers for the larger MTU (jumbo frames stay one mbuf).
    const uint16_t max_mtu = std::max(config.inside.mtu, config.outside.mtu);
    rte_mempool* pool = rte_pktmbuf_pool_create("ephemera_mbufs", mbufs, 256, 0, EthPort::buffer_size(max_mtu),
                                                int(rte_socket_id()));
    if (pool == nullptr)
        die((config.mbufs ? "dataplane.mbufs = " + std::to_string(mbufs) + ": cannot allocate them"
                          : "cannot allocate " + std::to_string(mbufs) +
                                " mbufs (the default for these workers, descriptors, handoff rings and reassembly; "
                                "dataplane.mbufs sets it)") +
            ": " + rte_strerror(rte_errno) + dpdk_memory_left());
    // Fragments of packets too big for a link point into the original's data.
    rte_mempool* indirect = rte_pktmbuf_pool_create("ephemera_indirect", 1024 * workers, 32, 0, 0, int(rte_socket_id()));
    if (indirect == nullptr)
        die(std::string("cannot allocate the fragment mbufs: ") + rte_strerror(rte_errno) + dpdk_memory_left());

    int exit_code = 0;
    {
        // Steering by the NIC where it can (hw_steering.hpp), software handoff
        // for the rest; with one worker there is nothing to steer.
        const bool nic_steering = workers > 1 && config.steering != Steering::Handoff;
        // Deterministic mode decides a host's worker by its port range, which
        // the NIC's hash of the source address cannot follow.
        const bool source_rss = nic_steering && !config.nat.deterministic;
        std::unique_ptr<EthPort> inside, outside;
        try {
            inside = std::make_unique<EthPort>("inside", config.inside.port, uint16_t(workers),
                                               config.rx_descriptors, config.tx_descriptors, pool, source_rss,
                                               config.inside.mtu);
            outside = std::make_unique<EthPort>("outside", config.outside.port, uint16_t(workers),
                                                config.rx_descriptors, config.tx_descriptors, pool, false,
                                                config.outside.mtu);
        } catch (const std::exception& e) {
            die(e.what());
        }

        PortLayout layout(config.nat.ports, workers);
        std::unique_ptr<hw::FlowRules> flow_rules;
        std::string steering_outside = workers == 1 ? "none (one worker)" : "software handoff (steering = \"handoff\")";
        std::string steering_inside = steering_outside;
        if (nic_steering) {
            flow_rules = std::make_unique<hw::FlowRules>(outside->id(), hw::outside_rules(layout));
            if (!flow_rules->ok()) {
                if (config.steering == Steering::FlowRules)
                    die("dataplane.steering = \"flow\": outside port " + outside->name() + " (" + outside->driver() +
                        "): " + flow_rules->error());
                steering_outside = "software handoff (" + flow_rules->error() + ")";
                flow_rules.reset();
            } else {
                steering_outside = "flow rules (" + std::to_string(flow_rules->installed()) +
                                   " rules on the external port";
                for (const std::string& p : flow_rules->skipped()) steering_outside += "; " + p + " handed off";
                steering_outside += ")";
            }
            steering_inside = inside->source_rss()
                                  ? "RSS on the IPv4 source (" + std::to_string(inside->source_rss()->reta.size()) +
                                        "-entry redirection table)"
                              : config.nat.deterministic
                                  ? "software handoff to the worker owning the subscriber's deterministic ports"
                                  : "software handoff by subscriber (" + inside->rss_why() + ")";
        }
        std::unique_ptr<DeterministicMap> deterministic;
        if (config.nat.deterministic)
            deterministic = std::make_unique<DeterministicMap>(config.nat.deterministic_prefix,
                                                               config.nat.deterministic_len,
                                                               uint32_t(config.nat.pool.size()), layout,
                                                               config.nat.deterministic_overflow);
        Pool nat_pool(config.nat.pool);
        Neighbor next_hop(rte_cpu_to_be_32(config.next_hop));
        if (config.next_hop_mac) {
            rte_ether_addr mac;
            std::copy(config.next_hop_mac->begin(), config.next_hop_mac->end(), mac.addr_bytes);
            next_hop.set(mac, rte_rdtsc());
        }

        std::unique_ptr<Exclusions> exclusions;
        if (!config.exclude.empty()) {
            try {
                exclusions = std::make_unique<Exclusions>(config.exclude, int(rte_socket_id()));
            } catch (const std::exception& e) {
                die(e.what());
            }
        }
        std::unique_ptr<StaticTable> statics;
        try {
            statics = std::make_unique<StaticTable>(config.nat.max_static_mappings, workers, int(rte_socket_id()));
        } catch (const std::exception& e) {
            die(e.what());
        }
        GatewayShared shared;
        shared.statics = statics.get();
        shared.config = &config;
        shared.layout = &layout;
        shared.pool = &nat_pool;
        shared.mbufs = pool;
        shared.indirect = indirect;
        shared.mtu[0] = config.inside.mtu;
        shared.mtu[1] = config.outside.mtu;
        shared.port[0] = inside->id();
        shared.port[1] = outside->id();
        shared.mac[0] = inside->mac();
        shared.mac[1] = outside->mac();
        shared.addr[0] = rte_cpu_to_be_32(config.inside.address);
        shared.addr[1] = rte_cpu_to_be_32(config.outside.address);
        shared.next_hop = &next_hop;
        shared.workers = workers;
        shared.inside_rss = inside->source_rss();
        shared.deterministic = deterministic.get();
        shared.exclusions = exclusions.get();
        shared.steering = "inside: " + steering_inside + "; outside: " + steering_outside;
        for (unsigned d = 0; d < 2; ++d)
            for (unsigned i = 0; i < workers * workers; ++i) {
                const std::string name = "eph_ho" + std::to_string(d) + "_" + std::to_string(i);
                rte_ring* r = nullptr;
                if (i / workers != i % workers &&
                    (r = rte_ring_create_elem(name.c_str(), sizeof(Handoff), ring, int(rte_socket_id()),
                                              RING_F_SP_ENQ | RING_F_SC_DEQ)) == nullptr)
                    die("cannot create handoff ring " + name + ": " + rte_strerror(rte_errno));
                shared.handoff[d].push_back(r);
            }
        const TscClock clock;
        shared.clock = &clock;
        shared.tsc_hz = rte_get_tsc_hz();
        shared.start_tsc = rte_rdtsc();
        shared.start_unix_ms = uint64_t(std::chrono::duration_cast<std::chrono::milliseconds>(
                                            std::chrono::system_clock::now().time_since_epoch())
                                            .count());
        try {
            for (unsigned w = 0; w < workers; ++w) {
                shared.expiry.push_back(create_expiry_ring("eph_exp" + std::to_string(w), 4096, int(rte_socket_id())));
                rte_ring* q = rte_ring_create(("eph_query" + std::to_string(w)).c_str(), 64, int(rte_socket_id()),
                                              RING_F_SC_DEQ);
                if (q == nullptr) throw std::runtime_error("cannot create the query rings");
                shared.queries.push_back(q);
                if (mapping_log->active()) {
                    rte_ring* ev = rte_ring_create_elem(("eph_ev" + std::to_string(w)).c_str(), sizeof(MappingEvent),
                                                        config.log.ring, int(rte_socket_id()),
                                                        RING_F_SP_ENQ | RING_F_SC_DEQ);
                    if (ev == nullptr) throw std::runtime_error("log.ring: cannot create the mapping event rings");
                    shared.events.push_back(ev);
                }
            }
        } catch (const std::exception& e) {
            die(e.what());
        }
        shared.control = rte_ring_create("eph_control", 64, int(rte_socket_id()), RING_F_SC_DEQ);
        shared.control_inside = rte_ring_create("eph_control_in", 64, int(rte_socket_id()), RING_F_SC_DEQ);
        if (shared.control_inside == nullptr) die("cannot create the inside control ring");
        if (shared.control == nullptr) die(std::string("cannot create the control ring: ") + rte_strerror(rte_errno));

        std::vector<std::unique_ptr<Worker>> pool_of_workers;
        try {
            for (unsigned w = 0; w < workers; ++w) {
                pool_of_workers.push_back(std::make_unique<Worker>(shared, w));
                shared.translators.push_back(&pool_of_workers.back()->translator());
            }
        } catch (const std::bad_alloc&) {
            die("cannot set up worker " + std::to_string(pool_of_workers.size()) +
                ": not enough DPDK memory for its tables, sized by nat.max_mappings, nat.max_extra_sessions, "
                "nat.max_subscribers and the pool's ports (README \"Memory\")" + dpdk_memory_left());
        } catch (const std::exception& e) {
            die("cannot set up worker " + std::to_string(pool_of_workers.size()) + ": " + e.what() + dpdk_memory_left());
        }

        register_control_api(config, shared, pool_of_workers);
        std::unique_ptr<MetricsServer> metrics;
        if (!config.metrics.listen.empty()) {
            try {
                // On the metrics thread: counters are read like the stats file
                // reads them; port use is asked of the workers.
                metrics = std::make_unique<MetricsServer>(config.metrics.listen, [&pool_of_workers] {
                    return prometheus_text(gateway_stats(pool_of_workers), port_use());
                });
            } catch (const std::exception& e) {
                die(e.what());
            }
        }

        // Expiry: the control plane scans each worker's table, a tenth of it
        // per 100 ms tick (a full pass a second); the workers release.
        std::vector<ExpiryScanner> scanners;
        for (unsigned i = 0; i < workers; ++i) scanners.emplace_back(pool_of_workers[i]->translator(), shared.expiry[i]);
        const uint32_t scan_budget = std::max<uint32_t>(1, config.nat.max_mappings / 10);

        mapping_log->start(); // only now: a start that failed before here must not end a running daemon's mappings
        unsigned w = 0;
        unsigned lcore;
        RTE_LCORE_FOREACH_WORKER(lcore)
        {
            if (w == workers) break;
            rte_eal_remote_launch(worker_main, pool_of_workers[w++].get(), lcore);
        }
        // Static mappings of the configuration, made as `ephemeractl static add`
        // makes them (by the running workers, which forward nothing before
        // they are made); one that cannot be made stops the start.
        for (const std::string& spec : config.static_mappings)
            if (const std::string why = add_static_mapping(spec); !why.empty()) {
                std::fprintf(stderr, "ephemera: error: nat.static = \"%s\": %s\n", spec.c_str(), why.c_str());
                exit_code = 2;
                break;
            }
        if (exit_code == 0) {
            shared.forwarding.store(true, std::memory_order_release);
            std::printf("ephemera: forwarding: inside=%s (%s) outside=%s (%s) workers=%u steering=%s/%s pool=%zu "
                        "addresses ports=%u-%u filtering=%s\n",
                        inside->driver().c_str(), mac_text(inside->mac()).c_str(), outside->driver().c_str(),
                        mac_text(outside->mac()).c_str(), workers, shared.inside_rss ? "rss" : "sw",
                        flow_rules ? "flow" : "sw", config.nat.pool.size(), config.nat.ports.first,
                        config.nat.ports.last, to_string(config.nat.filtering));
            std::printf("ephemera: steering: %s\n", shared.steering.c_str());
            std::printf("ephemera: IPv4 header checksums verified by: inside %s, outside %s\n",
                        inside->rx_ip_checksum() ? "the NIC" : "software",
                        outside->rx_ip_checksum() ? "the NIC" : "software");
            if (deterministic)
                std::printf("ephemera: deterministic (RFC 7422): %u hosts of %s/%u, %u ports each%s; "
                            "`ephemeractl who POOLADDR:PORT --config FILE` names the holder\n",
                            deterministic->hosts(), format_ipv4(config.nat.deterministic_prefix).c_str(),
                            unsigned(config.nat.deterministic_len), deterministic->ports_per_host(),
                            deterministic->overflow_ranges()
                                ? (", " + std::to_string(deterministic->overflow_ranges()) +
                                   " overflow ranges per worker and pool address, logged when lent")
                                      .c_str()
                                : "");
            std::fflush(stdout);
        }

        // The control plane: next-hop ARP and the stats file, ten times a second.
        const uint64_t hz = rte_get_tsc_hz();
        uint64_t last_arp = 0, last_stats = 0;
        bool announced = false;
        while (g_signal == 0 && exit_code == 0) {
            const uint64_t now = rte_rdtsc();
            rte_ether_addr mac;
            const bool known = next_hop.get(mac);
            if (known && !announced) {
                std::printf("ephemera: next hop %s is at %s\n", format_ipv4(config.next_hop).c_str(),
                            mac_text(mac).c_str());
                std::fflush(stdout);
                announced = true;
            }
            // Ask every second until answered, then every 30 s to follow changes.
            if (!config.next_hop_mac && now - last_arp > (known ? 30 : 1) * hz) {
                if (rte_mbuf* req = router::arp_request(pool, outside->mac(), shared.addr[1],
                                                        rte_cpu_to_be_32(config.next_hop)))
                    if (rte_ring_mp_enqueue(shared.control, req) != 0) rte_pktmbuf_free(req);
                last_arp = now;
            }
            for (auto& scanner : scanners) scanner.scan(clock.now(), scan_budget);
            if (now - last_stats > hz) {
                resolve_static_neighbors(); // ARP for port-forward hosts not heard from yet
                write_stats(stats_path, gateway_stats(pool_of_workers));
                last_stats = now;
            }
            drain_events(shared.events, *mapping_log, config.log.ring);
            if (g_reopen_log) { // the events above still go to the old file
                g_reopen_log = 0;
                reopen_mapping_log(*mapping_log, config.log.file);
            }
            mapping_log->flush();
            publish_log_counters(*mapping_log, shared.log);
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }

        stop_control_api(); // no command from here on, none under way
        metrics.reset();    // no scrape while the workers stop
        shared.stop.store(true);
        rte_eal_mp_wait_lcore();
        drain_events(shared.events, *mapping_log, UINT_MAX);
        mapping_log->flush();
        publish_log_counters(*mapping_log, shared.log);
        mapping_log.reset(); // writes the "stop" line
        for (rte_ring* r : shared.events) rte_ring_free(r);
        const nlohmann::json final_stats = gateway_stats(pool_of_workers);
        write_stats(stats_path, final_stats);
        if (exit_code == 0)
            std::printf("ephemera: stopped by signal %d; final counters: %s\n", int(g_signal),
                        final_stats.dump().c_str());
        std::fflush(stdout);

        for (unsigned d = 0; d < 2; ++d)
            for (rte_ring* r : shared.handoff[d])
                if (r) drain_handoff_ring(r);
        drain_ring(shared.control);
        drain_ring(shared.control_inside);
        for (rte_ring* r : shared.expiry) rte_ring_free(r);
        // Queries posted after the workers stopped: answer "nothing" and free.
        for (rte_ring* r : shared.queries) {
            void* q = nullptr;
            while (rte_ring_dequeue(r, &q) == 0) finish_query(static_cast<Query*>(q));
            rte_ring_free(r);
        }
        pool_of_workers.clear();
        inside.reset();
        outside.reset();
    }
    // With ports that give their buffers back at close, every mbuf is back
    // by now (the workers freed what they held): one that is not was lost.
    for (rte_mempool* mp : {pool, indirect})
        if (const unsigned lost = rte_mempool_in_use_count(mp); check_mbufs && lost != 0) {
            std::fprintf(stderr, "ephemera: error: %u mbufs of %s not back in the pool at exit\n", lost, mp->name);
            exit_code = exit_code != 0 ? exit_code : 3;
        }
    rte_mempool_free(indirect);
    rte_mempool_free(pool);
    rte_eal_cleanup();
    return exit_code;
}
