// One worker's NAPT: translates bursts of mbufs inside->outside and
// outside->inside, owning its mapping/session tables, its port partitions
// and its counters. Nothing here is shared with another worker; nothing on the
// burst path locks, allocates, throws or calls virtually.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include <rte_ether.h>
#include <rte_mbuf.h>

struct rte_ring;

#include "ephemera/clock.hpp"
#include "ephemera/config.hpp"
#include "ephemera/deterministic.hpp"
#include "ephemera/dpdk_array.hpp"
#include "ephemera/flow_key.hpp"
#include "ephemera/mapping_event.hpp"
#include "ephemera/pool.hpp"
#include "ephemera/port_allocator.hpp"
#include "ephemera/port_blocks.hpp"
#include "ephemera/session_table.hpp"
#include "ephemera/static_table.hpp"
#include "ephemera/stats.hpp"
#include "ephemera/subscriber_table.hpp"

namespace ephemera {

inline constexpr uint16_t kBurst = 32;

class Translator {
public:
    Translator(const NatConfig& config, const PortLayout& layout, unsigned worker, int socket = SOCKET_ID_ANY);

    // Translate pkts[0..n) in place. Forwarded packets are moved to the front
    // of pkts in arrival order and their count returned; every other packet
    // is freed and counted under its drop reason. n <= kBurst.
    //
    // Outbound only: when `refused` is given, packets dropped because no
    // mapping could be made for them (subscriber limit, ports exhausted, table
    // full) are counted but not freed: they go to refused[0..*nrefused) so the
    // caller can answer them with ICMP 3/13 (RFC 6888 REQ-11, RFC 5508 REQ-8)
    // and then free them. Room for kBurst.
    uint16_t outbound(rte_mbuf** pkts, uint16_t n, Tick now, rte_mbuf** refused = nullptr,
                      uint16_t* nrefused = nullptr); // inside -> outside
    // Inbound only: carried[i], when given, is the mapping index another
    // worker read for pkts[i] from this worker's partition when it handed the
    // packet over (mapping_seen_by_other_worker), or kNoMapping. It saves the
    // partition read here; one that no longer holds the packet's external
    // endpoint (the mapping ended meanwhile) is counted and looked up again.
    //
    // Inbound only: when `syns` is given, TCP SYNs dropped as unsolicited (no
    // mapping, or refused by the filtering mode) are counted but not freed:
    // they go to syns[0..*nsyns) for the caller to hold and answer later
    // (RFC 5382 REQ-4), then free. Room for kBurst.
    uint16_t inbound(rte_mbuf** pkts, uint16_t n, Tick now, const uint32_t* carried = nullptr,
                     rte_mbuf** syns = nullptr, uint16_t* nsyns = nullptr); // outside -> inside

    // Ethernet addresses written on forwarded packets. Outbound: our outside
    // MAC and the next hop's. Inbound: our inside MAC; the destination is the
    // MAC the mapping's subscriber traffic came from.
    void set_outside_l2(const rte_ether_addr& src, const rte_ether_addr& next_hop);
    void set_inside_l2(const rte_ether_addr& src);

    // Mapping create/delete events go to `ring` (elements of MappingEvent,
    // single producer: this worker), stamped with the time last set here
    // (the worker sets it once per loop). Null ring: no events.
    void set_event_ring(rte_ring* ring) { events_ = ring; }
    void set_event_time(uint64_t unix_ms) { event_ms_ = unix_ms; }

    // Static mappings: the gateway's table, read for inbound packets to ports
    // outside the dynamic range. Null: none.
    void set_statics(const StaticTable* statics) { statics_ = statics; }
    const StaticTable* statics() const { return statics_; }

    // --- control plane (never per packet) ---
    // Creates the static mapping `s` describes (this worker owns s.in_addr).
    // It never expires and admits inbound traffic in every filtering mode.
    enum class StaticResult : uint8_t { Ok, InsideTaken, NotInPool, TableFull };
    StaticResult add_static(const StaticSlot& s, Tick now, uint32_t& index);
    // Ends a static mapping: its sessions go; its port is no one's to reuse.
    void remove_static(uint32_t index, Tick now);
    // PCP (RFC 6887 MAP, RFC 6888 REQ-9): an explicit mapping of an inside
    // endpoint. It admits inbound traffic from anyone whatever the filtering
    // mode, and lives until its lifetime ends or its last session does,
    // whichever is later: a session with the remote endpoint 0.0.0.0:0 (which
    // no packet has) carries the lifetime, so expiry treats it like any other.
    // Needs NatConfig::explicit_mappings.
    using Nonce = std::array<uint8_t, 12>;
    struct ExplicitRequest {
        uint32_t in_addr = 0;        // network order
        uint16_t in_port = 0;        // network order
        L4 l4 = L4::Udp;
        uint16_t suggested_port = 0; // host order; 0: none
        uint32_t suggested_addr = 0; // network order; 0: none
        bool prefer_failure = false; // the suggestion or nothing
        Tick lifetime = 0;           // seconds; 0: delete the mapping
        Nonce nonce{};
        rte_ether_addr inside_mac{}; // where inbound traffic goes
    };
    enum class ExplicitResult : uint8_t { Ok, NotAuthorized, NoResources, UserExQuota, CannotProvideExternal };
    struct ExplicitMapping {
        uint32_t ext_addr = 0; // network order
        uint16_t ext_port = 0; // host order
        Tick lifetime = 0;     // granted
    };
    ExplicitResult map_explicit(const ExplicitRequest& r, Tick now, ExplicitMapping& granted);
    // Visits up to `budget` mapping slots from a rolling cursor, ends expired
    // sessions and releases mappings left without one. Returns mappings released.
    uint32_t expire(Tick now, uint32_t budget);
    // Re-checks one mapping against `now` (the caller's view may be stale):
    // ends its expired sessions and releases it when none is left. Returns 1
    // when it released the mapping. This is what the control plane's expiry
    // commands ask the owning worker to do.
    uint32_t expire_mapping(uint32_t index, Tick now);
    // Ends a mapping now: its sessions go, its port enters quarantine.
    void release_mapping(uint32_t index, Tick now);
    bool mapping_expired(uint32_t index, Tick now) const;
    Tick session_timeout(uint8_t l4, uint8_t tcp_seen) const
    {
        switch (L4(l4)) {
        case L4::Tcp: return tcp_established(tcp_seen) ? timeouts_.tcp_established : timeouts_.tcp_transitory;
        case L4::Udp: return timeouts_.udp;
        case L4::Icmp: return timeouts_.icmp;
        case L4::Sctp: return timeouts_.sctp;
        }
        return timeouts_.udp;
    }
    void set_timeouts(const Timeouts& t) { timeouts_ = t; }
    const Timeouts& timeouts() const { return timeouts_; }
    Tick quarantine() const { return timeouts_.quarantine; }

    const WorkerStats& stats() const { return stats_; }
    // Ports (mappings) a subscriber holds here; 0 when no limit is configured.
    uint32_t ports_of_subscriber(uint32_t inside_addr_net) const
    {
        return subscribers_ ? subscribers_->ports_of(inside_addr_net) : 0;
    }
    const SessionTable& table() const { return table_; }
    const Pool& pool() const { return pool_; }
    const PortLayout& layout() const { return layout_; }
    unsigned worker() const { return worker_; }
    // Port-block mode only (nat.port_block_size): the blocks; null otherwise.
    PortBlocks* blocks() { return blocks_.get(); }
    const PortBlocks* blocks() const { return blocks_.get(); }
    // Free, quarantined and in-use ports of this worker on (pool address,
    // protocol), whichever way ports are handed out.
    PortBlocks::Use port_use(unsigned pool_index, L4 l4, Tick now);
    PortPartition& partition(unsigned pool_index, L4 l4) { return parts_[part_index(pool_index, l4)]; }
    const PortPartition& partition(unsigned pool_index, L4 l4) const { return parts_[part_index(pool_index, l4)]; }
    // The live mapping holding (pool address, port) for l4, or kNoMapping.
    uint32_t mapping_at(uint32_t pool_addr_net, uint16_t port_host, L4 l4) const;
    // The same, read from another worker's thread (software handoff), by the
    // pool address's index; kNoMapping for a port that is not this worker's.
    uint32_t mapping_seen_by_other_worker(unsigned pool_index, uint16_t port_host, L4 l4) const
    {
        if (pool_index >= pool_.size()) return kNoMapping;
        const PortPartition& part = partition(pool_index, l4);
        return part.owns(port_host) ? part.mapping_seen_elsewhere(port_host) : kNoMapping;
    }
    // RFC 5382 REQ-4: whether the inside has opened the TCP connection between
    // (pool address, port) and (remote address, port) — all network order —
    // with a SYN translated outbound, so that an unsolicited SYN held for it
    // is to be dropped silently rather than answered.
    bool tcp_opened_from_inside(uint32_t pool_addr_net, uint16_t port_net, uint32_t remote_addr_net,
                                uint16_t remote_port_net, Tick now) const;
    // The mapping of (inside addr, inside port) for l4, or kNoMapping.
    uint32_t mapping_of(uint32_t inside_addr_net, uint16_t inside_port_host, L4 l4) const;
    size_t memory_bytes() const;

    struct Parsed; // per-packet parse result, defined in dataplane/packet_parse.hpp

private:

    unsigned part_index(unsigned pool_index, L4 l4) const { return unsigned(l4) * pool_.size() + pool_index; }
    void drop(rte_mbuf* m, Dir dir, Drop reason);
    template <bool with_carried>
    uint16_t inbound_burst(rte_mbuf** pkts, uint16_t n, Tick now, const uint32_t* carried, rte_mbuf** syns,
                           uint16_t* nsyns);
    void drop_inbound(rte_mbuf* m, const Parsed& p, Drop reason, rte_mbuf** syns, uint16_t* nsyns);
    const uint32_t* inbound_slot(const Parsed& p, int32_t& static_slot, uint32_t& static_index, Drop& why) const;
    // wanted: an external port asked for (PCP), else 0; wanted_only: that or none.
    int32_t create_mapping(const Parsed& p, const uint8_t* inside_mac, Tick now, Drop& why, uint16_t wanted = 0,
                           bool wanted_only = false);
    SessionState* new_session(uint32_t index, uint32_t remote_addr, uint16_t remote_port, Tick now);
    // Removes the mapping's sessions that ended by `now`, counting them.
    void expire_sessions(uint32_t index, Tick now);
    void refresh(Mapping& map, uint32_t index, SessionState& s, Tick now);
    bool outbound_session(uint32_t index, const Parsed& p, Tick now, Drop& why);
    bool inbound_session(uint32_t index, const Parsed& p, Tick now, Drop& why);
    bool outbound_icmp_error(rte_mbuf* m, const Parsed& p, Tick now, Drop& why);
    bool inbound_icmp_error(rte_mbuf* m, const Parsed& p, Tick now, Drop& why);
    void rewrite_outbound(rte_mbuf* m, const Parsed& p, const Mapping& map);
    void rewrite_inbound(rte_mbuf* m, const Parsed& p, const Mapping& map);
    void emit(MappingEventType type, const Mapping& map);
    bool static_neighbor(Mapping& map, uint32_t slot);
    void emit_block(MappingEventType type, uint32_t block, uint32_t subscriber);
    // The pool address a new mapping of `subscriber` takes: paired pooling's,
    // or the deterministic map's (then `block` is the host's range too); false
    // (with why) when it may have none.
    bool pool_index_of(uint32_t subscriber_net, unsigned& pool_index, uint32_t& block, Drop& why) const;
    // In deterministic mode `block` comes in as the host's; in port-block mode
    // it goes out as the block the port came from.
    bool allocate_port(const Parsed& p, unsigned pool_index, Tick now, uint16_t& port, uint32_t& block, Drop& why,
                       uint16_t wanted, bool wanted_only);
    void end_explicit(uint32_t index, Tick now);
    // The remote address of the session that carries an explicit mapping's
    // lifetime (port 0): 0.0.0.0, never the source or destination of a packet.
    static constexpr uint32_t kLifetimeHolder = 0;
    void release_port(uint32_t subscriber, unsigned pool_index, L4 l4, uint16_t port, uint32_t block, Tick now);

    Timeouts timeouts_;
    FilteringMode filtering_;
    bool parity_;
    bool preserve_ports_; // nat.port_preservation
    uint32_t max_sessions_per_mapping_;
    uint32_t max_ports_per_subscriber_;
    const PortLayout& layout_;
    unsigned worker_;
    Pool pool_;
    SessionTable table_;
    std::vector<PortPartition> parts_; // [l4][pool index]
    std::unique_ptr<SubscriberTable> subscribers_; // only with a per-subscriber limit
    std::unique_ptr<PortBlocks> blocks_;           // only in port-block and deterministic mode
    std::unique_ptr<DeterministicMap> det_;        // only in deterministic mode (RFC 7422)
    DpdkArray<Nonce> nonces_;                      // by mapping index, with explicit mappings only
    const StaticTable* statics_ = nullptr;
    rte_ether_addr out_src_{}, out_dst_{}, in_src_{};
    uint32_t sweep_cursor_ = 0;
    rte_ring* events_ = nullptr;
    uint64_t event_ms_ = 0;
    WorkerStats stats_;
};

} // namespace ephemera
