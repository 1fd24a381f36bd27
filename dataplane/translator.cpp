// The burst paths of the translator. Each burst runs in stages over all its
// packets (parse, look up, prefetch, translate) so that the cache misses of
// 32 packets overlap instead of being paid one after another.
#include "ephemera/translator.hpp"

#include <cstring>

#include <rte_prefetch.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>

#include "checksum.hpp"
#include "packet_parse.hpp"

namespace ephemera {

Translator::Translator(const NatConfig& config, const PortLayout& layout, unsigned worker, int socket)
    : timeouts_(config.timeouts),
      filtering_(config.filtering),
      parity_(config.port_parity),
      preserve_ports_(config.port_preservation),
      max_sessions_per_mapping_(config.max_sessions_per_mapping),
      max_ports_per_subscriber_(config.max_ports_per_subscriber),
      layout_(layout),
      worker_(worker),
      pool_((validate(config), config.pool)),
      table_(config.max_mappings, config.max_extra_sessions, worker, socket)
{
    if (layout.range().first != config.ports.first || layout.range().last != config.ports.last ||
        layout.workers() != config.workers)
        throw ConfigError("ports/workers: the port layout was built for another range or worker count");
    if (worker >= layout.workers())
        throw ConfigError("worker = " + std::to_string(worker) + ": only " + std::to_string(layout.workers()) +
                          " workers configured");
    if (max_ports_per_subscriber_ != 0)
        subscribers_ = std::make_unique<SubscriberTable>(config.max_subscribers, worker, socket);
    if (config.deterministic) {
        det_ = std::make_unique<DeterministicMap>(config.deterministic_prefix, config.deterministic_len,
                                                  uint32_t(pool_.size()), layout, config.deterministic_overflow);
        // One block per host, its range, for the k ranges hosts fall on; then
        // the overflow ranges, handed out as port blocks.
        const uint32_t b = det_->ports_per_host();
        const uint32_t k = det_->hosts_per_partition();
        blocks_ = std::make_unique<PortBlocks>(
            PortBlocks::Shape{unsigned(pool_.size()), layout.first_of(worker), (k + det_->overflow_ranges()) * b, b,
                              config.max_blocks_per_subscriber, config.max_subscribers, /*fixed_blocks=*/k},
            worker, socket);
    } else if (config.port_block_size != 0) {
        blocks_ = std::make_unique<PortBlocks>(
            PortBlocks::Shape{unsigned(pool_.size()), layout.first_of(worker), layout.size_of(worker),
                              config.port_block_size, config.max_blocks_per_subscriber, config.max_subscribers},
            worker, socket);
    }
    parts_.reserve(kL4Count * pool_.size());
    for (unsigned l4 = 0; l4 < kL4Count; ++l4)
        for (unsigned p = 0; p < pool_.size(); ++p)
            parts_.emplace_back(layout.first_of(worker), layout.size_of(worker), config.port_parity,
                                config.randomize_ports,
                                config.port_seed ^ (uint64_t(worker) << 48) ^ (uint64_t(l4) << 40) ^ p,
                                /*with_fifo=*/blocks_ == nullptr,
                                /*preserve=*/config.port_preservation || config.explicit_mappings);
    if (config.explicit_mappings) nonces_ = DpdkArray<Nonce>(table_.capacity(), socket);
}

void Translator::set_outside_l2(const rte_ether_addr& src, const rte_ether_addr& next_hop)
{
    out_src_ = src;
    out_dst_ = next_hop;
}

void Translator::set_inside_l2(const rte_ether_addr& src) { in_src_ = src; }

void Translator::emit(MappingEventType type, const Mapping& map)
{
    // Port-block mode logs blocks, not mappings: one event per block; a
    // static mapping is logged either way (its port is in no block).
    if (events_ == nullptr || (blocks_ && !map.is_static)) return;
    MappingEvent e{event_ms_, map.in_addr, map.ext_addr, map.in_port, map.ext_port, map.l4, uint8_t(type),
                         uint16_t(worker_)};
    if (rte_ring_sp_enqueue_elem(events_, &e, sizeof e) != 0) ++stats_.events_lost;
}

void Translator::emit_block(MappingEventType type, uint32_t block, uint32_t subscriber)
{
    if (events_ == nullptr) return;
    MappingEvent e{event_ms_,
                   subscriber,
                   pool_.addr(blocks_->pool_of(block)),
                   rte_cpu_to_be_16(blocks_->last_port(block)),
                   rte_cpu_to_be_16(blocks_->first_port(block)),
                   0,
                   uint8_t(type),
                   uint16_t(worker_)};
    if (rte_ring_sp_enqueue_elem(events_, &e, sizeof e) != 0) ++stats_.events_lost;
}

bool Translator::allocate_port(const Parsed& p, unsigned pool_index, Tick now, uint16_t& port, uint32_t& block,
                               Drop& why, uint16_t wanted, bool wanted_only)
{
    if (blocks_ == nullptr) {
        PortPartition& part = partition(pool_index, p.space);
        if (wanted != 0 && part.take(now, timeouts_.quarantine, wanted)) { // PCP's suggestion
            port = wanted;
            return true;
        }
        if (wanted_only) {
            why = Drop::PortsExhausted;
            return false;
        }
        const uint16_t sport = rte_be_to_cpu_16(p.sport);
        if (preserve_ports_ && part.take(now, timeouts_.quarantine, sport)) { // port preservation
            port = sport;
            ++stats_.ports_preserved;
            return true;
        }
        bool fallback = false;
        if (!part.allocate(now, timeouts_.quarantine, sport, port, fallback)) {
            why = Drop::PortsExhausted;
            return false;
        }
        stats_.parity_fallbacks += fallback;
        return true;
    }
    // PCP's suggestion, when it lies in a block the subscriber has (its
    // deterministic range, or a block it holds): other blocks are others'.
    if (wanted != 0) {
        if (det_) blocks_->claim(p.src, block); // `block` is the host's, from pool_index_of()
        if (blocks_->take(p.src, pool_index, p.space, wanted, block)) {
            port = wanted;
            return true;
        }
    }
    if (wanted_only) {
        why = Drop::PortsExhausted;
        return false;
    }
    if (det_) { // `block` is the host's, from pool_index_of()
        if (blocks_->allocate_fixed(p.src, block, p.space, port) == PortBlocks::Result::Ok) return true;
        if (det_->overflow_ranges() == 0) {
            why = Drop::SubscriberLimit; // every port of its range in use (RFC 7422: nothing beyond it)
            return false;
        }
        // RFC 7422 §2.3: an overflow range of the same pool address and worker, logged.
    }
    switch (blocks_->allocate(p.src, pool_index, p.space, now, timeouts_.quarantine, port, block)) {
    case PortBlocks::Result::Ok: return true;
    case PortBlocks::Result::NewBlock: emit_block(MappingEventType::BlockAlloc, block, p.src); return true;
    case PortBlocks::Result::SubscriberFull: why = Drop::SubscriberLimit; return false; // RFC 6888 REQ-4
    case PortBlocks::Result::Exhausted: why = Drop::PortsExhausted; return false;
    case PortBlocks::Result::TableFull: why = Drop::TableFull; return false;
    }
    return false;
}

// A port that never carried traffic goes back at once (no quarantine).
void Translator::release_port(uint32_t subscriber, unsigned pool_index, L4 l4, uint16_t port, uint32_t block, Tick now)
{
    if (blocks_ == nullptr) {
        partition(pool_index, l4).release(port, now - timeouts_.quarantine - 1);
        return;
    }
    // Its block may empty: then it is quarantined like any released block,
    // since its allocation was already logged.
    if (blocks_->release(block, l4, port, now)) emit_block(MappingEventType::BlockFree, block, subscriber);
}

PortBlocks::Use Translator::port_use(unsigned pool_index, L4 l4, Tick now)
{
    if (blocks_) return blocks_->use(pool_index, l4, now, timeouts_.quarantine);
    PortPartition& part = partition(pool_index, l4);
    part.promote(now, timeouts_.quarantine);
    return {part.free_count(), part.quarantined_count(), part.in_use_count()};
}

void Translator::drop(rte_mbuf* m, Dir dir, Drop reason)
{
    ++stats_.drops[unsigned(dir)][unsigned(reason)];
    rte_pktmbuf_free(m);
}

namespace {

// RFC 7857 §2: record what each direction has shown of the connection.
inline void track_tcp(SessionState& s, uint8_t flags, Dir dir)
{
    const bool out = dir == Dir::Out;
    if (flags & RTE_TCP_SYN_FLAG) {
        // A SYN on a closed connection starts a new one on the same 5-tuple.
        if (out && ((s.tcp & kRst) || (s.tcp & (kFinOut | kFinIn)) == (kFinOut | kFinIn))) s.tcp = 0;
        s.tcp |= out ? kSynOut : kSynIn;
    }
    if (flags & RTE_TCP_FIN_FLAG) s.tcp |= out ? kFinOut : kFinIn;
    if (flags & RTE_TCP_RST_FLAG) s.tcp |= kRst;
}

inline uint16_t remote_port_of(const Translator::Parsed&, L4 space, uint16_t port)
{
    return space == L4::Icmp ? 0 : port;
}

} // namespace

bool Translator::pool_index_of(uint32_t subscriber_net, unsigned& pool_index, uint32_t& block, Drop& why) const
{
    if (det_ == nullptr) {
        pool_index = pool_.paired_index(subscriber_net); // RFC 6888 REQ-2
        return true;
    }
    const uint32_t host = rte_be_to_cpu_32(subscriber_net);
    if (!det_->contains(host)) {
        why = Drop::SubscriberLimit; // outside nat.deterministic: it has no ports
        return false;
    }
    const DeterministicMap::Slot s = det_->slot_of(host);
    if (s.worker != worker_) {
        why = Drop::WrongWorker; // steering sends a host to the worker owning its range
        return false;
    }
    pool_index = s.pool;
    block = s.pool * blocks_->blocks_per_pool() + s.range;
    return true;
}

int32_t Translator::create_mapping(const Parsed& p, const uint8_t* inside_mac, Tick now, Drop& why, uint16_t wanted,
                                   bool wanted_only)
{
    // The callers looked the key up just before (the burst loop after any
    // mapping an earlier packet of the burst made): it has none.
    const MappingKey key{p.src, p.sport, uint8_t(p.space)};

    // Only what opens a flow may create a mapping.
    if ((p.space == L4::Tcp && (p.tcp_flags & RTE_TCP_RST_FLAG)) ||
        (p.space == L4::Icmp && p.icmp_type != RTE_IP_ICMP_ECHO_REQUEST)) {
        why = Drop::NoMapping;
        return -1;
    }
    if (table_.mapping_count() >= table_.capacity()) {
        why = Drop::TableFull;
        return -1;
    }
    // RFC 6888 REQ-4/REQ-11: at its limit a subscriber gets no new port, and
    // nothing it holds is taken away to make room.
    if (subscribers_ && subscribers_->ports_of(p.src) >= max_ports_per_subscriber_) {
        why = Drop::SubscriberLimit;
        return -1;
    }
    unsigned pool_index = 0;
    uint32_t block = 0;
    if (!pool_index_of(p.src, pool_index, block, why)) return -1;
    PortPartition& part = partition(pool_index, p.space);
    uint16_t port = 0;
    if (!allocate_port(p, pool_index, now, port, block, why, wanted, wanted_only)) return -1;
    const int32_t index = table_.add_mapping(key);
    if (index >= 0 && subscribers_ && !subscribers_->acquire(p.src)) {
        table_.remove_mapping(uint32_t(index));
        release_port(p.src, pool_index, p.space, port, block, now);
        why = Drop::TableFull; // more subscribers than max_subscribers
        return -1;
    }
    if (index < 0) {
        release_port(p.src, pool_index, p.space, port, block, now);
        why = Drop::TableFull;
        return -1;
    }
    Mapping& map = table_.mapping(uint32_t(index));
    map.ext_addr = pool_.addr(pool_index);
    map.ext_port = rte_cpu_to_be_16(port);
    map.pool = uint16_t(pool_index);
    map.ip_delta = csum::delta32(map.in_addr, map.ext_addr);
    map.port_delta = csum::delta16(map.in_port, map.ext_port);
    map.l4_delta = csum::add(map.ip_delta, map.port_delta);
    std::memcpy(map.inside_mac, inside_mac, RTE_ETHER_ADDR_LEN);
    map.created = now;
    map.block = block;
    publish_expires(map, now);
    part.set_mapping(port, uint32_t(index));
    stats_.mappings_created[map.l4] += 1;
    emit(MappingEventType::Create, map);
    return index;
}

SessionState* Translator::new_session(uint32_t index, uint32_t remote_addr, uint16_t remote_port, Tick now)
{
    // At the per-mapping limit, sessions that expired but were not swept yet
    // make room first: only live state counts against the limit.
    if (table_.session_count(index) >= max_sessions_per_mapping_) expire_sessions(index, now);
    if (table_.session_count(index) >= max_sessions_per_mapping_) return nullptr;
    SessionState* s = table_.add_session(index, remote_addr, remote_port);
    if (s == nullptr) {
        expire_sessions(index, now);
        s = table_.add_session(index, remote_addr, remote_port);
    }
    stats_.sessions_created[table_.mapping(index).l4] += s != nullptr;
    return s;
}

void Translator::expire_sessions(uint32_t index, Tick now)
{
    stats_.sessions_released[table_.mapping(index).l4] += table_.expire_sessions(index, now);
}

[[gnu::always_inline]] inline void Translator::refresh(Mapping& map, uint32_t index, SessionState& s, Tick now)
{
    const Tick before = s.expires;
    // Ticks are whole seconds and this packet came somewhere inside second `now`:
    // one more second makes every session live at least its full timeout
    // (RFC 4787 REQ-5's two minutes are a minimum), at most a second more.
    s.expires = now + session_timeout(map.l4, s.tcp) + 1;
    if (map.is_static) return; // the mapping outlives all its sessions
    if (map.extra_count == 0 || s.expires >= map.expires) {
        publish_expires(map, s.expires); // with no extra sessions, s is the only one
    } else if (before == map.expires) {
        // This session set the mapping's lifetime and just shortened it (RST,
        // FIN both ways): the mapping lives as long as its longest session.
        publish_expires(map, table_.latest_expiry(index));
    }
}

[[gnu::always_inline]] inline bool Translator::outbound_session(uint32_t index, const Parsed& p, Tick now, Drop& why)
{
    Mapping& map = table_.mapping(index);
    const uint16_t rport = remote_port_of(p, p.space, p.dport);
    SessionState* s = table_.find_session(index, p.dst, rport);
    if (s == nullptr && (s = new_session(index, p.dst, rport, now)) == nullptr) {
        why = Drop::TableFull;
        return false;
    }
    if (p.space == L4::Tcp) track_tcp(*s, p.tcp_flags, Dir::Out);
    refresh(map, index, *s, now);
    return true;
}

[[gnu::always_inline]] inline bool Translator::inbound_session(uint32_t index, const Parsed& p, Tick now, Drop& why)
{
    Mapping& map = table_.mapping(index);
    const uint16_t rport = remote_port_of(p, p.space, p.sport);
    SessionState* s = table_.find_session(index, p.src, rport);
    if (s == nullptr || now >= s->expires) {
        // Not a live session: the filtering mode decides (RFC 4787 REQ-8).
        const bool admit = map.is_static || map.is_explicit || filtering_ == FilteringMode::EndpointIndependent ||
                           (filtering_ == FilteringMode::AddressDependent && table_.has_remote_addr(index, p.src, now));
        if (!admit) {
            why = Drop::Filtered;
            return false;
        }
        if (s == nullptr) {
            if ((s = new_session(index, p.src, rport, now)) == nullptr) {
                why = Drop::TableFull;
                return false;
            }
        } else {
            s->tcp = 0; // an expired session reopened from outside starts afresh
        }
    }
    if (p.space == L4::Tcp) track_tcp(*s, p.tcp_flags, Dir::In);
    refresh(map, index, *s, now);
    return true;
}

[[gnu::always_inline]] inline void Translator::rewrite_outbound(rte_mbuf* m, const Parsed& p, const Mapping& map)
{
    uint8_t* data = rte_pktmbuf_mtod(m, uint8_t*);
    auto* eth = reinterpret_cast<rte_ether_hdr*>(data);
    eth->dst_addr = out_dst_;
    eth->src_addr = out_src_;

    auto* ip = reinterpret_cast<rte_ipv4_hdr*>(data + p.l3);
    ip->src_addr = map.ext_addr;
    ip->time_to_live -= 1;
    ip->hdr_checksum = csum::apply(ip->hdr_checksum, csum::add(map.ip_delta, csum::kTtlDecrement));

    uint8_t* l4 = data + p.l4;
    switch (p.space) {
    case L4::Tcp: {
        auto* th = reinterpret_cast<rte_tcp_hdr*>(l4);
        th->src_port = map.ext_port;
        th->cksum = csum::apply(th->cksum, map.l4_delta);
        break;
    }
    case L4::Udp: {
        auto* uh = reinterpret_cast<rte_udp_hdr*>(l4);
        uh->src_port = map.ext_port;
        uh->dgram_cksum = csum::apply_udp(uh->dgram_cksum, map.l4_delta);
        break;
    }
    case L4::Icmp: {
        auto* ic = reinterpret_cast<rte_icmp_hdr*>(l4);
        ic->icmp_ident = map.ext_port;
        ic->icmp_cksum = csum::apply(ic->icmp_cksum, map.port_delta);
        break;
    }
    case L4::Sctp:
        reinterpret_cast<rte_sctp_hdr*>(l4)->src_port = map.ext_port;
        csum::sctp_recompute(l4, p.ip_len - (p.l4 - p.l3));
        break;
    }
}

[[gnu::always_inline]] inline void Translator::rewrite_inbound(rte_mbuf* m, const Parsed& p, const Mapping& map)
{
    uint8_t* data = rte_pktmbuf_mtod(m, uint8_t*);
    auto* eth = reinterpret_cast<rte_ether_hdr*>(data);
    std::memcpy(eth->dst_addr.addr_bytes, map.inside_mac, RTE_ETHER_ADDR_LEN);
    eth->src_addr = in_src_;

    auto* ip = reinterpret_cast<rte_ipv4_hdr*>(data + p.l3);
    ip->dst_addr = map.in_addr;
    ip->time_to_live -= 1;
    ip->hdr_checksum = csum::apply(ip->hdr_checksum, csum::add(csum::negate(map.ip_delta), csum::kTtlDecrement));

    uint8_t* l4 = data + p.l4;
    switch (p.space) {
    case L4::Tcp: {
        auto* th = reinterpret_cast<rte_tcp_hdr*>(l4);
        th->dst_port = map.in_port;
        th->cksum = csum::apply(th->cksum, csum::negate(map.l4_delta));
        break;
    }
    case L4::Udp: {
        auto* uh = reinterpret_cast<rte_udp_hdr*>(l4);
        uh->dst_port = map.in_port;
        uh->dgram_cksum = csum::apply_udp(uh->dgram_cksum, csum::negate(map.l4_delta));
        break;
    }
    case L4::Icmp: {
        auto* ic = reinterpret_cast<rte_icmp_hdr*>(l4);
        ic->icmp_ident = map.in_port;
        ic->icmp_cksum = csum::apply(ic->icmp_cksum, csum::negate(map.port_delta));
        break;
    }
    case L4::Sctp:
        reinterpret_cast<rte_sctp_hdr*>(l4)->dst_port = map.in_port;
        csum::sctp_recompute(l4, p.ip_len - (p.l4 - p.l3));
        break;
    }
}

uint16_t Translator::outbound(rte_mbuf** pkts, uint16_t n, Tick now, rte_mbuf** refused, uint16_t* nrefused)
{
    if (nrefused) *nrefused = 0;
    Parsed parsed[kBurst];
    Drop why[kBurst];
    bool ok[kBurst];
    MappingKey keys[kBurst];
    uint32_t sigs[kBurst];
    uint32_t candidates[kBurst];
    uint8_t key_of[kBurst];

    stats_.rx[unsigned(Dir::Out)] += n;
    for (uint16_t i = 0; i < n; ++i) rte_prefetch0(rte_pktmbuf_mtod(pkts[i], void*));

    unsigned nkeys = 0;
    for (uint16_t i = 0; i < n; ++i) {
        ok[i] = parse::frame(pkts[i], parsed[i], why[i]);
        if (ok[i] && !parsed[i].icmp_error) {
            keys[nkeys] = MappingKey{parsed[i].src, parsed[i].sport, uint8_t(parsed[i].space)};
            sigs[nkeys] = table_.signature(keys[nkeys]);
            table_.prefetch_bucket(sigs[nkeys]);
            key_of[i] = uint8_t(nkeys++);
        }
    }
    for (unsigned k = 0; k < nkeys; ++k) candidates[k] = table_.candidate(sigs[k]); // prefetches the mapping

    uint16_t out = 0;
    for (uint16_t i = 0; i < n; ++i) {
        rte_mbuf* m = pkts[i];
        const Parsed& p = parsed[i];
        Drop reason = why[i];
        if (!ok[i]) {
            drop(m, Dir::Out, reason);
            continue;
        }
        if (p.icmp_error) {
            if (outbound_icmp_error(m, p, now, reason)) {
                ++stats_.icmp_errors[unsigned(Dir::Out)];
                pkts[out++] = m;
            } else {
                drop(m, Dir::Out, reason);
            }
            continue;
        }
        const unsigned k = key_of[i];
        int32_t index = table_.confirm(keys[k], sigs[k], candidates[k]);
        if (index < 0 &&
            (index = create_mapping(p, rte_pktmbuf_mtod(m, const rte_ether_hdr*)->src_addr.addr_bytes, now, reason)) <
                0) {
            if (refused && reason != Drop::NoMapping) {
                ++stats_.drops[unsigned(Dir::Out)][unsigned(reason)];
                refused[(*nrefused)++] = m; // the caller answers and frees it
            } else {
                drop(m, Dir::Out, reason);
            }
            continue;
        }
        if (!outbound_session(uint32_t(index), p, now, reason)) {
            drop(m, Dir::Out, reason);
            continue;
        }
        rewrite_outbound(m, p, table_.mapping(uint32_t(index)));
        pkts[out++] = m;
    }
    stats_.tx[unsigned(Dir::Out)] += out;
    return out;
}

// Where an inbound packet's mapping is named: its slot in this worker's
// partition, or for a port forward the static table's entry (copied into
// static_index). Null, with why, when there is none here.
inline const uint32_t* Translator::inbound_slot(const Parsed& p, int32_t& static_slot, uint32_t& static_index,
                                                Drop& why) const
{
    static_slot = -1;
    const int pool_index = pool_.index_of(p.dst);
    const uint16_t port = rte_be_to_cpu_16(p.dport);
    if (pool_index >= 0 && !layout_.in_range(port) && statics_ != nullptr &&
        (static_slot = statics_->find(p.dst, port, p.space)) >= 0) {
        // A port forward: outside the dynamic range, found in the table.
        const StaticSlot& s = statics_->slot(uint32_t(static_slot));
        if (s.worker != worker_) {
            why = Drop::WrongWorker;
            return nullptr;
        }
        static_index = s.mapping;
        return &static_index;
    }
    if (pool_index < 0 || !layout_.in_range(port)) {
        why = Drop::NoMapping;
        return nullptr;
    }
    if (layout_.owner_of(port) != worker_) {
        why = Drop::WrongWorker;
        return nullptr;
    }
    return partition(unsigned(pool_index), p.space).mapping_slot(port);
}

// A mapping index another worker read for this packet may have ended (or
// been reused) before the packet got here: it counts only if it still holds
// the packet's external endpoint.
inline bool holds(const Mapping& map, const Translator::Parsed& p)
{
    return map.live && !map.is_static && map.ext_addr == p.dst && map.ext_port == p.dport &&
           map.l4 == uint8_t(p.space);
}

uint16_t Translator::inbound(rte_mbuf** pkts, uint16_t n, Tick now, const uint32_t* carried, rte_mbuf** syns,
                             uint16_t* nsyns)
{
    if (nsyns) *nsyns = 0;
    // Two instances, so that a burst without carried indices pays nothing for them.
    return carried ? inbound_burst<true>(pkts, n, now, carried, syns, nsyns)
                   : inbound_burst<false>(pkts, n, now, nullptr, syns, nsyns);
}

// A TCP SYN (not a SYN-ACK, not with RST) refused for want of a mapping or by
// the filtering mode is unsolicited (RFC 5382 REQ-4): the caller may hold it.
void Translator::drop_inbound(rte_mbuf* m, const Parsed& p, Drop reason, rte_mbuf** syns, uint16_t* nsyns)
{
    if (syns != nullptr && (reason == Drop::NoMapping || reason == Drop::Filtered) && p.space == L4::Tcp &&
        !p.icmp_error && (p.tcp_flags & (RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG | RTE_TCP_RST_FLAG)) == RTE_TCP_SYN_FLAG) {
        ++stats_.drops[unsigned(Dir::In)][unsigned(reason)];
        syns[(*nsyns)++] = m;
        return;
    }
    drop(m, Dir::In, reason);
}

template <bool with_carried>
uint16_t Translator::inbound_burst(rte_mbuf** pkts, uint16_t n, Tick now, const uint32_t* carried, rte_mbuf** syns,
                                   uint16_t* nsyns)
{
    Parsed parsed[kBurst];
    Drop why[kBurst];
    bool ok[kBurst];
    bool was_carried[kBurst];
    const uint32_t* slot[kBurst];
    uint32_t static_index[kBurst]; // slot[] points here for static mappings
    int32_t static_slot[kBurst];
    uint32_t index[kBurst];

    stats_.rx[unsigned(Dir::In)] += n;
    for (uint16_t i = 0; i < n; ++i) rte_prefetch0(rte_pktmbuf_mtod(pkts[i], void*));

    // Stage 1: parse and find the partition slot of (pool address, port),
    // unless the handoff brought the mapping index along.
    for (uint16_t i = 0; i < n; ++i) {
        slot[i] = nullptr;
        static_slot[i] = -1;
        if (with_carried) was_carried[i] = false;
        ok[i] = parse::frame(pkts[i], parsed[i], why[i]);
        if (!ok[i] || parsed[i].icmp_error) continue;
        if (with_carried && carried[i] < table_.capacity()) {
            was_carried[i] = true;
            continue;
        }
        slot[i] = inbound_slot(parsed[i], static_slot[i], static_index[i], why[i]);
        ok[i] = slot[i] != nullptr;
        if (ok[i]) rte_prefetch0(slot[i]);
    }
    // Stage 2: the slot names the mapping; fetch it for stage 3.
    for (uint16_t i = 0; i < n; ++i) {
        index[i] = with_carried && was_carried[i] ? carried[i] : slot[i] ? *slot[i] : kNoMapping;
        if (index[i] != kNoMapping) rte_prefetch0(&table_.mapping(index[i]));
    }

    uint16_t out = 0;
    for (uint16_t i = 0; i < n; ++i) {
        rte_mbuf* m = pkts[i];
        const Parsed& p = parsed[i];
        Drop reason = why[i];
        if (with_carried && was_carried[i]) {
            if (holds(table_.mapping(index[i]), p)) {
                ++stats_.carried_used;
            } else { // look it up here after all
                ++stats_.carried_stale;
                const uint32_t* s = inbound_slot(p, static_slot[i], static_index[i], reason);
                ok[i] = s != nullptr;
                index[i] = s ? *s : kNoMapping;
            }
        }
        if (!ok[i]) {
            if (reason == Drop::NoMapping) drop_inbound(m, p, reason, syns, nsyns); // parsed: the rest is not
            else drop(m, Dir::In, reason);
            continue;
        }
        if (p.icmp_error) {
            if (inbound_icmp_error(m, p, now, reason)) {
                ++stats_.icmp_errors[unsigned(Dir::In)];
                pkts[out++] = m;
            } else {
                drop(m, Dir::In, reason);
            }
            continue;
        }
        if (index[i] == kNoMapping || now >= table_.mapping(index[i]).expires) {
            drop_inbound(m, p, Drop::NoMapping, syns, nsyns);
            continue;
        }
        if (static_slot[i] >= 0 && !static_neighbor(table_.mapping(index[i]), uint32_t(static_slot[i]))) {
            drop(m, Dir::In, Drop::NoNeighbor);
            continue;
        }
        if (!inbound_session(index[i], p, now, reason)) {
            drop_inbound(m, p, reason, syns, nsyns);
            continue;
        }
        rewrite_inbound(m, p, table_.mapping(index[i]));
        pkts[out++] = m;
    }
    stats_.tx[unsigned(Dir::In)] += out;
    return out;
}

// ---- control plane ----

void Translator::release_mapping(uint32_t index, Tick now)
{
    if (index >= table_.capacity()) return;
    Mapping& map = table_.mapping(index);
    if (!map.live) return;
    stats_.sessions_released[map.l4] += table_.session_count(index);
    stats_.mappings_released[map.l4] += 1;
    emit(MappingEventType::Delete, map);
    if (map.is_static) { // no port of the range, no subscriber count
        table_.remove_mapping(index);
        return;
    }
    if (subscribers_) subscribers_->release(map.in_addr);
    const uint16_t port = rte_be_to_cpu_16(map.ext_port);
    partition(map.pool, L4(map.l4)).set_mapping(port, kNoMapping);
    if (!blocks_) partition(map.pool, L4(map.l4)).release(port, now);
    else if (blocks_->release(map.block, L4(map.l4), port, now)) emit_block(MappingEventType::BlockFree, map.block, map.in_addr);
    table_.remove_mapping(index);
}

bool Translator::mapping_expired(uint32_t index, Tick now) const
{
    if (index >= table_.capacity() || !table_.mapping(index).live) return true;
    if (table_.mapping(index).is_static) return false;
    bool alive = false;
    table_.for_each_session(index, [&](const SessionState& s) { alive |= now < s.expires; });
    return !alive;
}

uint32_t Translator::expire_mapping(uint32_t index, Tick now)
{
    if (index >= table_.capacity()) return 0;
    Mapping& map = table_.mapping(index);
    // A live mapping may still hold sessions that ended: sweep those too.
    if (!map.live || (now < map.expires && map.extra_count == 0)) return 0;
    expire_sessions(index, now);
    // A PCP mapping whose lifetime ran out while it still carries traffic
    // goes on as an ordinary one: filtered again (its lifetime holder, remote
    // 0.0.0.0:0, is the session that just ended).
    if (map.is_explicit && table_.find_session(index, kLifetimeHolder, 0) == nullptr) map.is_explicit = 0;
    if (table_.session_count(index) != 0 || map.is_static) return 0;
    release_mapping(index, now);
    return 1;
}

uint32_t Translator::expire(Tick now, uint32_t budget)
{
    const uint32_t cap = table_.capacity();
    uint32_t released = 0;
    for (uint32_t visited = 0; visited < budget && visited < cap; ++visited) {
        released += expire_mapping(sweep_cursor_, now);
        sweep_cursor_ = sweep_cursor_ + 1 == cap ? 0 : sweep_cursor_ + 1;
    }
    return released;
}

// A static mapping learns its inside host's MAC from ARP (the host may never
// have sent anything); until then its inbound traffic cannot be delivered.
bool Translator::static_neighbor(Mapping& map, uint32_t slot)
{
    const uint64_t mac = statics_->slot(slot).mac.load(std::memory_order_relaxed);
    if (mac == 0) return false;
    const rte_ether_addr a = StaticTable::unpack(mac);
    std::memcpy(map.inside_mac, a.addr_bytes, RTE_ETHER_ADDR_LEN);
    return true;
}

Translator::StaticResult Translator::add_static(const StaticSlot& s, Tick now, uint32_t& index)
{
    const int pool_index = pool_.index_of(s.pool_addr);
    if (pool_index < 0) return StaticResult::NotInPool;
    const MappingKey key{s.in_addr, rte_cpu_to_be_16(s.in_port), uint8_t(s.l4)};
    if (table_.lookup(key) >= 0) return StaticResult::InsideTaken;
    if (table_.mapping_count() >= table_.capacity()) return StaticResult::TableFull;
    const int32_t i = table_.add_mapping(key);
    if (i < 0) return StaticResult::TableFull;
    Mapping& map = table_.mapping(uint32_t(i));
    map.ext_addr = s.pool_addr;
    map.ext_port = rte_cpu_to_be_16(s.ext_port);
    map.pool = uint16_t(pool_index);
    map.ip_delta = csum::delta32(map.in_addr, map.ext_addr);
    map.port_delta = csum::delta16(map.in_port, map.ext_port);
    map.l4_delta = csum::add(map.ip_delta, map.port_delta);
    map.created = now;
    map.is_static = 1;
    publish_expires(map, UINT32_MAX);
    stats_.mappings_created[map.l4] += 1;
    emit(MappingEventType::Create, map);
    index = uint32_t(i);
    return StaticResult::Ok;
}

void Translator::remove_static(uint32_t index, Tick now)
{
    if (index < table_.capacity() && table_.mapping(index).live && table_.mapping(index).is_static)
        release_mapping(index, now);
}

uint32_t Translator::mapping_at(uint32_t pool_addr_net, uint16_t port_host, L4 l4) const
{
    if (!layout_.in_range(port_host) && statics_ != nullptr) {
        const int32_t s = statics_->find(pool_addr_net, port_host, l4);
        return s >= 0 && statics_->slot(uint32_t(s)).worker == worker_ ? statics_->slot(uint32_t(s)).mapping
                                                                       : kNoMapping;
    }
    const int pool_index = pool_.index_of(pool_addr_net);
    if (pool_index < 0 || !layout_.in_range(port_host) || layout_.owner_of(port_host) != worker_) return kNoMapping;
    return partition(unsigned(pool_index), l4).mapping_of(port_host);
}

bool Translator::tcp_opened_from_inside(uint32_t pool_addr_net, uint16_t port_net, uint32_t remote_addr_net,
                                        uint16_t remote_port_net, Tick now) const
{
    const uint32_t index = mapping_at(pool_addr_net, rte_be_to_cpu_16(port_net), L4::Tcp);
    if (index == kNoMapping || !table_.mapping(index).live) return false;
    bool opened = false;
    table_.for_each_session(index, [&](const SessionState& s) {
        opened |= s.remote_addr == remote_addr_net && s.remote_port == remote_port_net && now < s.expires &&
                  (s.tcp & kSynOut) != 0;
    });
    return opened;
}

uint32_t Translator::mapping_of(uint32_t inside_addr_net, uint16_t inside_port_host, L4 l4) const
{
    const int32_t pos = table_.lookup(MappingKey{inside_addr_net, rte_cpu_to_be_16(inside_port_host), uint8_t(l4)});
    return pos < 0 ? kNoMapping : uint32_t(pos);
}

size_t Translator::memory_bytes() const
{
    size_t bytes = table_.memory_bytes();
    for (const auto& part : parts_) bytes += part.memory_bytes();
    if (blocks_) bytes += blocks_->memory_bytes();
    return bytes + nonces_.bytes();
}

} // namespace ephemera
