// The gateway's counters for Prometheus: the text exposition format 0.0.4 of
// gateway_stats()'s JSON, and a small HTTP/1.1 server (a few clients at a
// time, a thread each) answering GET /metrics with it.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace ephemera {

class Translator;

// Prometheus text exposition format 0.0.4 of the gateway's counters.
// `stats` is gateway_stats()'s object; keys it lacks (or that are not numbers)
// give no samples, and a family without samples is left out entirely.
// `ports` is null or an array of
//   {"pool": "198.51.100.11", "protocol": "udp", "worker": 0, "free": N, "quarantined": N, "in_use": N}
// giving ephemera_pool_ports{pool, protocol, worker, state="free|quarantined|in_use"}
// (entries that are not objects or lack pool/protocol/worker are skipped;
// entries with the same pool, protocol and worker are summed).
std::string prometheus_text(const nlohmann::json& stats, const nlohmann::json& ports);

// The `ports` entries of one translator: one per (pool address, protocol).
// Read from another thread while the worker runs, the counts are a snapshot
// that may be a few ports off (never more than the partition's size).
// Quarantined counts ports whose quarantine is over but that the worker has
// not yet looked at again (it promotes them lazily, when it allocates).
// Reads the partitions directly: only for a translator the caller owns (tests,
// tools). The daemon asks its workers instead: port_use() in control_api.hpp.
nlohmann::json pool_ports(const Translator& translator);

// An HTTP/1.1 server: GET (and HEAD) /metrics answers 200 with render()'s
// text; other paths 404, other methods 405, anything unparsable 400. One
// request per connection (Connection: close). Requests are bounded (8 KiB of
// head), slow clients time out (5 s to send the request, 10 s to take the
// answer). Up to 8 clients are served at once, each on its own thread, so that
// clients that connect and send nothing do not hold back a scrape: a ninth
// ends the oldest connection that has not sent its request within a second,
// or waits for one to be answered. render() is called for each scrape, one call at a time (the
// server serializes them). An exception from it answers 500.
class MetricsServer {
public:
    // listen: "ADDR:PORT", IPv4; PORT 0 picks a free port (see port()).
    // Throws std::runtime_error("metrics.listen = \"ADDR:PORT\": <why>") when
    // it cannot parse or bind it.
    MetricsServer(const std::string& listen, std::function<std::string()> render);
    ~MetricsServer(); // wakes the thread through a pipe, joins it, closes the sockets
    MetricsServer(const MetricsServer&) = delete;
    MetricsServer& operator=(const MetricsServer&) = delete;

    uint16_t port() const { return port_; } // the bound port

private:
    // A client being served. Its socket is closed by run(), after the thread
    // is joined, so that no other thread's descriptor can take its number
    // while run() may still shut it down.
    struct Client {
        int fd;
        std::thread thread;
        std::chrono::steady_clock::time_point since; // accepted
        std::atomic<bool> reading{true};               // its request is not in yet
        std::atomic<bool> done{false};
    };

    void run();
    void serve(int fd, std::atomic<bool>& reading);
    void reap(bool all);
    bool make_room(); // false: the server is stopping

    std::function<std::string()> render_;
    std::mutex render_mutex_;
    std::vector<std::unique_ptr<Client>> clients_; // oldest first; run()'s thread only
    int listen_fd_ = -1;
    int wake_[2] = {-1, -1}; // self-pipe: the destructor writes, every thread polls
    uint16_t port_ = 0;
    std::thread thread_;
};

} // namespace ephemera
