// A worker's mappings (bindings) and the sessions under them.
//
// Mappings live in a flat array of 64-byte entries. The inside->outside path
// finds a mapping's index through a MappingIndex keyed by (inside addr,
// inside port, protocol) and confirms the key in the entry itself; the
// outside->inside path reaches the same index through the port partition
// without hashing. A mapping carries its first session inline:
// most mappings only ever talk to one remote endpoint, so the common packet
// touches one cache line of table state. Further sessions (EIF peers, a client
// port reused towards many servers) go into a second rte_hash keyed by
// (mapping, remote addr, remote port) and are chained per mapping for sweeping.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>

#include <rte_hash_crc.h>
#include <rte_prefetch.h>

#include "ephemera/clock.hpp"
#include "ephemera/dpdk_array.hpp"
#include "ephemera/flow_key.hpp"
#include "ephemera/mapping_index.hpp"

struct rte_hash;

namespace ephemera {

// TCP observations per RFC 7857 §2 (state machine adapted from RFC 6146).
enum TcpSeen : uint8_t {
    kSynOut = 1, kSynIn = 2, kFinOut = 4, kFinIn = 8, kRst = 16,
};

inline bool tcp_established(uint8_t seen)
{
    const bool closing = (seen & kRst) || ((seen & (kFinOut | kFinIn)) == (kFinOut | kFinIn));
    return !closing && (seen & (kSynOut | kSynIn)) == (kSynOut | kSynIn);
}

struct SessionState {
    uint32_t remote_addr; // network order
    uint16_t remote_port; // network order (0 for ICMP queries)
    uint8_t tcp;          // TcpSeen bits
    uint8_t live;
    Tick expires;         // first second at which the session is gone
};
static_assert(sizeof(SessionState) == 12);

struct alignas(64) Mapping {
    uint32_t in_addr;    // network order
    uint32_t ext_addr;   // network order
    uint16_t in_port;    // network order
    uint16_t ext_port;   // network order
    // RFC 1624 deltas for inside->outside (~old + new, one's complement);
    // outside->inside uses their complement.
    uint16_t ip_delta;   // addresses: IPv4 header checksum
    uint16_t l4_delta;   // addresses + port: TCP/UDP (pseudo-header)
    uint16_t port_delta; // port alone: ICMP echo identifier
    uint8_t l4;          // L4
    uint8_t live;
    uint16_t pool;       // index of ext_addr in the pool
    uint8_t inside_mac[6]; // where return traffic goes: the sender's L2 next hop
    uint16_t extra_count;  // sessions beyond `first`
    uint16_t pad0;
    uint32_t extra_head;   // chain of those sessions (kNone when empty)
    Tick expires;          // no session of this mapping outlives this second
    Tick created;
    SessionState first;
    uint32_t block;        // port-block mode: the block the port came from
    uint8_t is_static;     // a static mapping (port forward): never expires
    uint8_t is_explicit;   // made by PCP (RFC 6887 MAP): admits inbound from anyone
    uint8_t pad1[2];
};
static_assert(sizeof(Mapping) == 64);

// Mapping::live and Mapping::expires are the two fields the control plane
// reads while the owning worker runs (to find expired mappings). The worker
// writes them through these, the control plane reads them through these:
// relaxed atomics, plain moves on x86-64, and no data race.
inline void publish_expires(Mapping& m, Tick t) { std::atomic_ref<Tick>(m.expires).store(t, std::memory_order_relaxed); }
inline void publish_live(Mapping& m, uint8_t v) { std::atomic_ref<uint8_t>(m.live).store(v, std::memory_order_relaxed); }
inline Tick observe_expires(const Mapping& m)
{
    return std::atomic_ref<Tick>(const_cast<Tick&>(m.expires)).load(std::memory_order_relaxed);
}
inline bool observe_live(const Mapping& m)
{
    return std::atomic_ref<uint8_t>(const_cast<uint8_t&>(m.live)).load(std::memory_order_relaxed) != 0;
}

struct ExtraSession {
    SessionState s;
    uint32_t mapping;
    uint32_t next;
    uint32_t prev;
};

class SessionTable {
public:
    static constexpr uint32_t kNone = UINT32_MAX;

    SessionTable(uint32_t max_mappings, uint32_t max_extra_sessions, unsigned worker, int socket);
    ~SessionTable();
    SessionTable(const SessionTable&) = delete;
    SessionTable& operator=(const SessionTable&) = delete;

    // A mapping key's hash (seeded per table, so that which keys share a
    // bucket cannot be worked out from outside).
    uint32_t signature(const MappingKey& key) const
    {
        uint64_t k;
        std::memcpy(&k, &key, sizeof k);
        return rte_hash_crc_8byte(k, seed_);
    }
    // The burst pipeline of a lookup, one step per loop over the burst so that
    // the cache misses of all its packets overlap: prefetch the key's bucket;
    // take the candidate from it and prefetch that mapping; confirm it.
    void prefetch_bucket(uint32_t sig) const { index_.prefetch(sig); }
    uint32_t candidate(uint32_t sig) const
    {
        const uint32_t c = index_.candidate(sig);
        if (c != MappingIndex::kNone) rte_prefetch0(&mappings_[c]);
        return c;
    }
    // The mapping index of key (negative when absent), given its candidate.
    int32_t confirm(const MappingKey& key, uint32_t sig, uint32_t candidate) const
    {
        if (candidate != MappingIndex::kNone && holds_key(mappings_[candidate], key)) return int32_t(candidate);
        return find(key, sig); // another entry of the bucket, its overflow chain, or none
    }
    // positions[i] is the mapping index of keys[i], or negative when absent.
    void lookup_bulk(const MappingKey* keys, unsigned n, int32_t* positions) const;
    int32_t lookup(const MappingKey& key) const { return find(key, signature(key)); }
    // Index of a new, zeroed, live mapping; -ENOSPC when the table is full,
    // -EEXIST when the key has one.
    int32_t add_mapping(const MappingKey& key);
    // Forgets the mapping and all its sessions. The caller releases the port.
    void remove_mapping(uint32_t index);

    Mapping& mapping(uint32_t index) { return mappings_[index]; }
    const Mapping& mapping(uint32_t index) const { return mappings_[index]; }
    uint32_t capacity() const { return uint32_t(mappings_.size()); }
    uint32_t mapping_count() const { return index_.size(); }
    uint32_t extra_capacity() const { return uint32_t(extras_.size()); }
    uint32_t extra_count() const { return extra_count_; }

    // The live session of mapping `index` with that remote endpoint, or null.
    // The inline first session is checked here, on the caller's fast path.
    SessionState* find_session(uint32_t index, uint32_t remote_addr, uint16_t remote_port)
    {
        Mapping& m = mappings_[index];
        if (m.first.live && m.first.remote_addr == remote_addr && m.first.remote_port == remote_port) return &m.first;
        return m.extra_count == 0 ? nullptr : find_extra(index, remote_addr, remote_port);
    }
    // True when some live session of the mapping has that remote address.
    bool has_remote_addr(uint32_t index, uint32_t remote_addr, Tick now) const;
    // A new live session (inline when free, else chained); null when full.
    SessionState* add_session(uint32_t index, uint32_t remote_addr, uint16_t remote_port);
    // Ends every session that expired by `now`; returns how many. Recomputes
    // the mapping's `expires` from what is left.
    uint32_t expire_sessions(uint32_t index, Tick now);
    uint32_t session_count(uint32_t index) const
    {
        const Mapping& m = mappings_[index];
        return (m.first.live ? 1u : 0u) + m.extra_count;
    }

    // The last second any session of the mapping is alive in (0: none).
    Tick latest_expiry(uint32_t index) const
    {
        Tick latest = 0;
        for_each_session(index, [&](const SessionState& s) { latest = s.expires > latest ? s.expires : latest; });
        return latest;
    }
    // Calls fn(const SessionState&) for each live session of a mapping.
    template <typename Fn>
    void for_each_session(uint32_t index, Fn&& fn) const
    {
        const Mapping& m = mappings_[index];
        if (m.first.live) fn(m.first);
        for (uint32_t e = m.extra_head; e != kNone; e = extras_[e].next) fn(extras_[e].s);
    }

    size_t memory_bytes() const;

private:
    static bool holds_key(const Mapping& m, const MappingKey& key)
    {
        return m.in_addr == key.addr && m.in_port == key.port && m.l4 == key.l4;
    }
    int32_t find(const MappingKey& key, uint32_t sig) const
    {
        const uint32_t i = index_.find(sig, [&](uint32_t c) { return holds_key(mappings_[c], key); });
        return i == MappingIndex::kNone ? -1 : int32_t(i);
    }
    SessionState* find_extra(uint32_t index, uint32_t remote_addr, uint16_t remote_port);
    void remove_extra(uint32_t extra_index);

    rte_hash* session_hash_ = nullptr;
    DpdkArray<Mapping> mappings_;
    MappingIndex index_;
    // Unused mapping indices: the first capacity() - mapping_count() entries.
    DpdkArray<uint32_t> free_mappings_;
    uint32_t seed_ = 0;
    DpdkArray<ExtraSession> extras_;
    uint32_t extra_count_ = 0;
};

} // namespace ephemera
