// The generator and the sink on one lcore: each loop transmits at most one
// burst of 32 on the TX port (paced by the TSC), then drains the RX port(s)
// and answers what the sink stands for (ARP for the subscribers on the inside
// and the destinations on the outside, SYN-ACK for SYNs, the ACK that
// completes a handshake). Mbufs come from rte_pktmbuf_alloc_bulk and are
// written in place: no allocation, no lock, no exception in the loop.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <rte_ether.h>
#include <rte_mempool.h>

#include "bench_port.hpp"
#include "flow_space.hpp"
#include "latency_histogram.hpp"
#include "options.hpp"

namespace bench {

enum class Load : uint8_t { UdpData, TcpData, TcpSyn };

struct TrialSpec {
    std::string label;          // for progress lines and the report
    Load load = Load::UdpData;
    double rate = 0;            // pps; 0: as fast as the TX port takes them
    double duration = 1;        // seconds of transmission
    uint32_t first_flow = 0;
    uint32_t flow_count = 0;    // flows cycled through; 0: never wrap (every packet a new flow)
    uint64_t max_packets = 0;   // the trial ends after this many (attempted); 0: only the duration ends it
};

struct TrialResult {
    std::string label;
    double rate = 0, seconds = 0;
    uint64_t attempted = 0;     // packets the pacing asked for
    uint64_t sent = 0;          // taken by the TX port
    uint64_t refused = 0;       // the TX port was full (lost when paced: the device under test did not keep up)
    uint64_t alloc_failed = 0;
    uint64_t received = 0;      // stamped packets of this trial at the sink (TCP SYN loads: completed handshakes)
    uint64_t synacks = 0;       // SYN-ACKs that reached the inside (TCP SYN loads)
    uint64_t reordered = 0;
    uint64_t lat_samples = 0, lat_min = 0, lat_p50 = 0, lat_p99 = 0, lat_p999 = 0, lat_max = 0; // ns

    double offered_pps() const { return seconds > 0 ? double(rate > 0 ? attempted : sent) / seconds : 0; }
    double rx_pps() const { return seconds > 0 ? double(received) / seconds : 0; }
    // RFC 2544: (offered - received) / offered. Unpaced, what the port refused is not offered.
    double loss_pct() const
    {
        const double offered = double(rate > 0 ? attempted : sent);
        if (offered <= 0) return 100;
        const double l = (offered - double(received)) / offered * 100;
        return l < 0 ? 0 : l;
    }
};

struct WarmupResult {
    uint32_t flows = 0, established = 0, rounds = 0;
    double seconds = 0;
};

// Whatever the sink saw outside any trial's accounting.
struct SinkCounters {
    uint64_t arp_answered = 0, syn_answered = 0, acks_sent = 0, stale = 0, other = 0;
    uint64_t replies_dropped = 0; // the reply backlog was full
};

class Engine {
public:
    Engine(const Options& o, BenchPort& tx, BenchPort& rx, rte_mempool* pool);

    // Waits for both links, resolves the gateway's MAC (unless given), then
    // sends a probe every 50 ms until one crosses to the sink (not with
    // --no-rx: there is no sink). False, with the reason in error(), if that
    // does not happen within link_timeout.
    bool connect();
    // Sends every flow of [first, first + count) once (UDP: a datagram; TCP:
    // a handshake) and resends those the sink did not see, up to 5 rounds.
    WarmupResult warm_up(Load load, uint32_t first, uint32_t count);
    TrialResult run(const TrialSpec& spec);

    const SinkCounters& sink() const { return sink_; }
    const rte_ether_addr& gateway_mac() const { return gateway_mac_; }
    const std::string& error() const { return error_; }

private:
    struct ReplyBuffer {
        rte_mbuf* pkts[64];
        uint16_t n = 0;
    };
    // Replies (SYN-ACK, ACK, ARP) the TX queue refused, sent again before
    // anything new: an unpaced load must not starve the handshakes it measures.
    struct Backlog {
        rte_mbuf* pkts[256];
        uint16_t n = 0;
    };
    void flush_backlog(uint16_t port_id, Backlog& b);

    uint16_t build(rte_mbuf** m, uint16_t n, Load load, FlowCursor& c, const TrialSpec* spec, uint64_t tsc);
    void poll(uint64_t now);
    unsigned poll_port(BenchPort& port, Backlog& backlog, bool outside_role, bool inside_role, uint64_t now);
    // True when m was turned into a reply (queued on `out`), false: free it.
    bool handle(rte_mbuf* m, bool outside_role, bool inside_role, ReplyBuffer& out, uint64_t now);
    void count_stamp(const uint8_t* payload, uint64_t now);
    void mark_flow(uint32_t flow);
    bool is_subscriber(uint32_t a) const { return a - flows_.sub_base < flows_.subs; }
    bool is_destination(uint32_t a) const { return a - flows_.dst_base < flows_.dsts; }
    void drain_for(double seconds);
    void send_probe(uint64_t tsc);
    void progress(const TrialSpec& spec, uint64_t now, uint64_t start);

    const Options& o_;
    BenchPort& tx_;
    BenchPort& rx_;
    const bool same_port_;
    rte_mempool* pool_;
    const double hz_;
    FlowSpace flows_;
    rte_ether_addr gateway_mac_{};
    bool gateway_known_ = false;
    uint16_t frame_len_;   // data frames, without the FCS
    std::string error_;

    // Accounting of the running trial (written by the sink, read between trials).
    uint8_t trial_ = 1;    // 0: probe, 1: warm-up, then 2..255
    bool probe_seen_ = false;
    bool count_handshakes_ = false;
    uint64_t received_ = 0, handshakes_ = 0, synacks_ = 0, reordered_ = 0;
    uint32_t last_seq_ = 0;
    uint32_t seq_ = 0;
    LatencyHistogram latency_;
    std::vector<uint64_t> seen_; // warm-up: one bit per flow
    SinkCounters sink_;
    Backlog backlog_tx_, backlog_rx_; // by port: replies waiting for room
    // Last progress line's counters.
    uint64_t prog_tsc_ = 0, prog_sent_ = 0, prog_rx_ = 0;
    uint64_t* prog_sent_src_ = nullptr;
};

} // namespace bench
