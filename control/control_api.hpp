// The daemon's control API: DPDK telemetry commands under /ephemera/, so
// that ephemeractl and dpdk-telemetry.py both work. Answers come from the
// workers through their query rings, never by reading their tables directly.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ephemera {

struct GatewayConfig;
struct GatewayShared;
class Worker;

// Registers the commands. The objects must outlive the commands' use of them:
// until stop_control_api() returns.
void register_control_api(const GatewayConfig& config, GatewayShared& shared,
                          const std::vector<std::unique_ptr<Worker>>& workers);

// Makes every command answer "the daemon is stopping" from now on and waits
// for those under way to finish. Call it while the workers still run, before
// anything the commands use goes away.
void stop_control_api();

// Pools larger than this get their port use summed over the pool in the
// metrics ("pool": "all"): one series per address would swamp Prometheus.
constexpr size_t kMetricsPoolAddresses = 256;

// Port use of every worker's partitions, asked through their query rings (so
// exact and race-free): [{"pool", "protocol", "worker", "free", "quarantined",
// "in_use"}], the shape prometheus_text() takes; "pool" is "all" for a pool of
// more than kMetricsPoolAddresses. Needs register_control_api().
nlohmann::json port_use();

// Adds a static mapping, "PROTO INSIDE:PORT POOLADDR:PORT", as `ephemeractl static
// add` does (the workers must be running): "" when done, else why not.
std::string add_static_mapping(const std::string& spec);

// ARP requests, on the inside, for the hosts of static mappings whose MAC no
// ARP has told us yet. The control plane calls it every second.
void resolve_static_neighbors();
void resolve_static_neighbors_locked(); // the caller holds the static-mapping lock

} // namespace ephemera
