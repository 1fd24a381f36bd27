// A worker lcore of the gateway: polls its RX queue on both ports, steers
// each packet to the worker that owns it (software handoff rings), answers
// what is addressed to the gateway itself, translates its own packets with
// its Translator and transmits in batches on its own TX queues.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <rte_ethdev.h>
#include <rte_ring.h>

#include "ephemera/gateway_config.hpp"
#include "ephemera/static_table.hpp"
#include "ephemera/translator.hpp"
#include "hw_steering.hpp"
#include "exclusions.hpp"
#include "neighbor.hpp"
#include "reassembly.hpp"
#include "router.hpp"
#include "steering.hpp"
#include "syn_hold.hpp"
#include "worker_query.hpp"

namespace ephemera {

// What the gateway counts besides translation (per worker, by its owner only).
struct alignas(64) GatewayCounters {
    uint64_t rx[2] = {};            // by port: 0 inside, 1 outside
    uint64_t tx[2] = {};
    uint64_t tx_dropped[2] = {};    // TX queue full
    uint64_t handed_off[2] = {};    // by Dir: packets sent to their owner worker
    uint64_t handoff_full[2] = {};  // by Dir: owner's ring full, dropped
    uint64_t hairpinned = 0;
    uint64_t arp_replies = 0;
    uint64_t arp_ignored = 0;       // ARP not answered: replies (learnt or not), requests for others, malformed
    uint64_t arp_requests_sent = 0;
    uint64_t echo_replies = 0;
    uint64_t time_exceeded_sent = 0;
    uint64_t prohibited_sent = 0;   // ICMP 3/13 for flows refused a mapping
    uint64_t frag_needed_sent = 0;  // ICMP 3/4: too big for the next link, DF set (RFC 4787 REQ-13)
    uint64_t too_big = 0;           // packets too big for the next link with DF set (answered or not)
    uint64_t fragmented = 0;        // packets too big without DF, sent as fragments
    uint64_t fragments_sent = 0;    // the fragments they became
    uint64_t fragment_failed = 0;   // could not be fragmented (no mbufs): dropped
    uint64_t fragments_received = 0; // IPv4 fragments given to reassembly (RFC 4787 REQ-14)
    uint64_t reassembled = 0;       // datagrams they made whole
    uint64_t reassembly_dropped = 0; // fragments dropped: timed out, no room in the table, inconsistent
    uint64_t untranslated[2] = {};  // by Dir: routed without translation (nat.exclude, RFC 6888 REQ-6)
    uint64_t untranslated_dropped = 0; // of those: TTL, no MAC learnt for the inside host, no next hop
    uint64_t mss_clamped = 0;       // TCP SYNs whose MSS was lowered (dataplane.mss_clamp)
    uint64_t icmp_rate_limited = 0;
    uint64_t no_next_hop = 0;       // outbound before the next hop answered ARP
    uint64_t not_for_us = 0;        // outside packets to no pool or gateway address
    uint64_t local_dropped = 0;     // to a gateway address, but not an echo request
    uint64_t mappings_expired = 0;
    // RFC 5382 REQ-4 (nat.icmp_on_unsolicited_syn): unsolicited inbound SYNs
    uint64_t syns_held = 0;         // held to be answered after 6 s
    uint64_t syns_not_held = 0;     // hold full (or too short to quote): dropped silently
    uint64_t syns_superseded = 0;   // the inside opened the connection meanwhile: dropped silently
    uint64_t port_unreachable_sent = 0; // ICMP 3/3 for held SYNs whose time was up
    // PCP server (pcp.enabled): requests to the inside address, UDP 5351
    uint64_t pcp_requests = 0;      // answered by this worker (the subscriber's)
    uint64_t pcp_errors = 0;        // ... with a result other than SUCCESS
    uint64_t pcp_dropped = 0;       // not answered: malformed UDP, too short, a response
};

// What a handoff ring carries: the packet and, for an outside packet, the
// mapping index the receiving worker read from the owner's partition
// (kNoMapping: none), so that the owner does not look it up again.
struct Handoff {
    rte_mbuf* m;
    uint32_t mapping;
    uint32_t pad;
};
static_assert(sizeof(Handoff) == 16); // rte_ring elements: a multiple of 4 bytes
// Handoff::mapping of an inside packet that is a PCP request for the
// receiving worker to answer (the subscriber's worker owns its mappings).
inline constexpr uint32_t kPcpRequest = kNoMapping - 1;

// Everything the workers share: read-only after start, except the atomics.
struct GatewayShared {
    const GatewayConfig* config = nullptr;
    const PortLayout* layout = nullptr;
    const Pool* pool = nullptr;
    rte_mempool* mbufs = nullptr;
    rte_mempool* indirect = nullptr;  // data-less mbufs for fragments (rte_ipv4_fragment_packet)
    uint16_t mtu[2] = {1500, 1500};   // largest IPv4 packet sent on each port
    uint16_t port[2] = {};            // 0 inside, 1 outside
    rte_ether_addr mac[2] = {};
    uint32_t addr[2] = {};            // gateway addresses, network order
    Neighbor* next_hop = nullptr;
    unsigned workers = 1;
    // The inside port's RSS on the IPv4 source, when it has it: then the
    // subscriber's worker is the queue the NIC picks; else a CRC in software.
    const hw::SourceRss* inside_rss = nullptr;
    const Exclusions* exclusions = nullptr; // nat.exclude; null when none
    std::string steering = "handoff";  // what was chosen at start, for `ephemeractl config`
    // Deterministic mode: a host of the prefix belongs to the worker owning its ports.
    const DeterministicMap* deterministic = nullptr;
    unsigned subscriber_worker(uint32_t subscriber_net) const
    {
        if (deterministic && deterministic->contains(rte_be_to_cpu_32(subscriber_net)))
            return deterministic->worker_of(rte_be_to_cpu_32(subscriber_net));
        return inside_rss ? inside_rss->owner(subscriber_net) : steer::subscriber_owner(subscriber_net, workers);
    }
    // handoff[dir][from * workers + to]: single producer, single consumer,
    // elements of Handoff.
    std::vector<rte_ring*> handoff[2];
    // Each worker's translator, for the partition reads behind Handoff::mapping.
    std::vector<const Translator*> translators;
    rte_ring* control = nullptr;      // main lcore -> worker 0: frames to send outside
    rte_ring* control_inside = nullptr; // control plane -> worker 0: frames to send inside (ARP)
    StaticTable* statics = nullptr;   // static mappings; workers read it, learn MACs into it
    std::vector<rte_ring*> expiry;    // main lcore -> worker w: expired mapping indices
    std::vector<rte_ring*> queries;   // control -> worker w: Query* (ephemeractl)
    const TscClock* clock = nullptr;  // one clock for all, so the control plane's "now" is theirs
    std::vector<rte_ring*> events;    // worker w -> control: MappingEvent (mapping log)
    uint64_t start_unix_ms = 0, start_tsc = 0, tsc_hz = 1;
    uint64_t unix_ms_at(uint64_t tsc) const
    {
        const uint64_t d = tsc - start_tsc; // split so that d * 1000 cannot overflow
        return start_unix_ms + d / tsc_hz * 1000 + d % tsc_hz * 1000 / tsc_hz;
    }
    std::atomic<bool> stop{false};
    // Set once the configuration's static mappings are made: until then the
    // workers answer the control plane but leave the ports alone, so that no
    // early packet takes a port forward's inside endpoint with a dynamic mapping.
    std::atomic<bool> forwarding{false};
    // The mapping log's counters, copied by the main lcore after each flush
    // so that the telemetry and metrics threads can read them.
    struct LogCounters {
        std::atomic<uint64_t> events{0}, ipfix_messages{0}, ipfix_errors{0}, file_errors{0};
    } log;
};

class Worker {
public:
    Worker(GatewayShared& shared, unsigned id);
    ~Worker();
    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;

    void run(); // returns when shared.stop is set

    unsigned id() const { return id_; }
    const Translator& translator() const { return nat_; }
    const GatewayCounters& counters() const { return counters_; }
    const GatewayShared& shared() const { return shared_; }

private:
    enum Port : unsigned { kInside = 0, kOutside = 1 };

    void poll_inside(Tick now, uint64_t tsc);
    void poll_outside(Tick now, uint64_t tsc);
    void drain_handoff(Tick now);
    bool local_or_expired(rte_mbuf* m, uint16_t l3, Port port, uint64_t tsc);
    void outbound(rte_mbuf** pkts, uint16_t n, Tick now);
    void inbound(rte_mbuf** pkts, uint16_t n, Tick now, const uint32_t* carried = nullptr);
    void steer_inbound(rte_mbuf** pkts, const int* pool_index, uint16_t n, Tick now);
    void hand_off(Dir dir, unsigned owner, rte_mbuf* m, uint32_t mapping = kNoMapping);
    void send_handoffs(unsigned dir, unsigned owner);
    void flush_handoffs();
    void send(Port port, rte_mbuf* m);
    void send_fragments(Port port, rte_mbuf* m, uint16_t link_mtu);
    bool too_big(rte_mbuf* m, uint16_t l3, Port in, uint64_t tsc);
    rte_mbuf* reassemble(rte_mbuf* m, uint16_t l3, uint64_t tsc);
    bool whole_and_fits(rte_mbuf*& m, uint16_t l3, Port in, uint64_t tsc);
    uint16_t route_excluded_out(rte_mbuf** pkts, uint16_t n);
    void route_in_untranslated(rte_mbuf* m, uint16_t l3);
    uint16_t route_handed_in_untranslated(rte_mbuf** pkts, uint32_t* carried, uint16_t n);
    bool route_untranslated(rte_mbuf* m, uint16_t l3, Port out, const rte_ether_addr& dst);
    void answer_icmp_error(const rte_mbuf* m, uint16_t l3, Port port, uint8_t type, uint8_t code, uint64_t tsc,
                           uint64_t& sent, uint16_t next_hop_mtu = 0);
    void learn_inside_neighbor(const rte_mbuf* m);
    void sync_next_hop();
    void answer_queries(Tick now, bool stopping);
    void hold_syns(rte_mbuf** syns, uint16_t n);
    bool pcp_request(rte_mbuf* m, uint16_t l3);
    void answer_pcp(rte_mbuf* m);
    void answer_held_syns(Tick now, uint64_t tsc);

    GatewayShared& shared_;
    const unsigned id_;
    Translator nat_;
    router::RateLimit icmp_limit_;
    std::unique_ptr<Reassembly> reassembly_; // null: reassembly off, fragments go on to be dropped
    std::unique_ptr<LearnedMacs> learned_;   // with nat.exclude: inside hosts' MACs
    std::unique_ptr<SynHold> syn_hold_;      // null: unsolicited SYNs dropped silently (RFC 5382 REQ-4a)
    rte_ether_addr next_hop_mac_{};
    uint16_t mss_max_ = 0; // dataplane.mss_clamp: the largest MSS a SYN may announce; 0: off
    GatewayCounters counters_;
    rte_eth_dev_tx_buffer* tx_[2] = {};
    Query* query_ = nullptr; // being answered, a slice per loop
    uint64_t next_hop_version_ = 0;
    bool next_hop_known_ = false;
    // Packets waiting to be handed to each owner, flushed once per poll.
    struct Pending {
        Handoff entries[kBurst];
        uint16_t n = 0;
    };
    std::vector<Pending> pending_[2];
};

} // namespace ephemera
