#include "gateway_worker.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include <rte_cycles.h>
#include <rte_ip_frag.h>
#include <rte_malloc.h>
#include <rte_arp.h>
#include <rte_prefetch.h>
#include <rte_rcu_qsbr.h>

#include "checksum.hpp"
#include "mss_clamp.hpp"
#include "pcp.hpp"
#include "ephemera/expiry.hpp"
#include "steering.hpp"

namespace ephemera {

namespace {

constexpr uint16_t kIcmpTimeExceeded = 11;
// RFC 5382 REQ-4: an unsolicited SYN is not answered for at least 6 s.
constexpr uint64_t kSynHoldSeconds = 6;
// The largest packet is a reassembled one: 8 fragments (RTE_LIBRTE_IP_FRAG_MAX_FRAG)
// of at most 9000 bytes on the way in would be more at MTU 576; 64 covers a
// datagram of 35 KB even then, and fragmenting anything bigger fails, counted.
constexpr unsigned kMaxFragments = 64;

uint16_t ttl_of(const rte_mbuf* m, uint16_t l3)
{
    return rte_pktmbuf_mtod_offset(m, const rte_ipv4_hdr*, l3)->time_to_live;
}

// Inbound and addressed to an inside host: of an untranslated flow when it
// comes from an excluded source, or when it is an ICMP error from anywhere
// (a router on the way: time exceeded, fragmentation needed for path MTU
// discovery) about a packet that host sent to an excluded destination.
bool of_excluded_flow(const Exclusions& excluded, const rte_mbuf* m, uint16_t l3)
{
    const auto* ip = rte_pktmbuf_mtod_offset(m, const rte_ipv4_hdr*, l3);
    if (excluded.contains(ip->src_addr)) return true;
    const rte_ipv4_hdr* q = steer::quoted_by_error(rte_pktmbuf_mtod(m, const uint8_t*), l3, m->data_len);
    return q != nullptr && q->src_addr == ip->dst_addr && excluded.contains(q->dst_addr);
}

} // namespace

Worker::Worker(GatewayShared& shared, unsigned id)
    : shared_(shared),
      id_(id),
      nat_(shared.config->nat, *shared.layout, id, int(rte_socket_id())),
      icmp_limit_(shared.config->icmp_rate, rte_get_tsc_hz())
{
    if (shared.config->mss_clamp)
        mss_max_ = uint16_t(std::min(shared.mtu[kInside], shared.mtu[kOutside]) - 40); // IPv4 + TCP headers
    if (shared.exclusions)
        learned_ = std::make_unique<LearnedMacs>(shared.config->nat.max_subscribers, id, int(rte_socket_id()));
    // Room for what the ICMP rate lets through in a hold's time, and then some:
    // a SYN beyond it would be rate-limited anyway.
    if (shared.config->icmp_on_unsolicited_syn)
        syn_hold_ = std::make_unique<SynHold>(
            std::clamp<uint32_t>(shared.config->icmp_rate * (kSynHoldSeconds + 1), 64, 65536), int(rte_socket_id()));
    if (shared.config->reassembly)
        reassembly_ = std::make_unique<Reassembly>(shared.config->reassembly,
                                                   shared.config->reassembly_timeout * rte_get_tsc_hz(),
                                                   int(rte_socket_id()));
    for (unsigned p = 0; p < 2; ++p) {
        tx_[p] = static_cast<rte_eth_dev_tx_buffer*>(
            rte_zmalloc_socket("ephemera_tx", RTE_ETH_TX_BUFFER_SIZE(kBurst), 0, int(rte_socket_id())));
        if (tx_[p] == nullptr) throw std::runtime_error("out of memory for TX buffers");
        rte_eth_tx_buffer_init(tx_[p], kBurst);
        rte_eth_tx_buffer_set_err_callback(tx_[p], rte_eth_tx_buffer_count_callback, &counters_.tx_dropped[p]);
        pending_[p].resize(shared.workers);
    }
    nat_.set_inside_l2(shared.mac[kInside]);
    nat_.set_statics(shared.statics);
}

Worker::~Worker()
{
    for (auto* b : tx_) rte_free(b);
}

// ARP from an inside host tells us its MAC: static mappings need it before
// their host has sent anything through us.
void Worker::learn_inside_neighbor(const rte_mbuf* m)
{
    if (shared_.statics == nullptr || shared_.statics->size() == 0 ||
        m->data_len < sizeof(rte_ether_hdr) + sizeof(rte_arp_hdr))
        return;
    const auto* arp = rte_pktmbuf_mtod_offset(m, const rte_arp_hdr*, sizeof(rte_ether_hdr));
    if (arp->arp_hardware != rte_cpu_to_be_16(RTE_ARP_HRD_ETHER) ||
        arp->arp_protocol != rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4) || arp->arp_hlen != 6 || arp->arp_plen != 4)
        return;
    shared_.statics->learn(arp->arp_data.arp_sip, arp->arp_data.arp_sha);
}

void Worker::send(Port port, rte_mbuf* m)
{
    if (mss_max_) {
        if (const uint16_t l3 = steer::ipv4_offset(m); l3 && mss::clamp(m, l3, mss_max_)) ++counters_.mss_clamped;
    }
    // The L2 header is at most 18 bytes (one VLAN tag): only then can the IP
    // packet be too big. Chains are reassembled datagrams.
    if (m->pkt_len > uint32_t(shared_.mtu[port]) + sizeof(rte_ether_hdr) || m->nb_segs != 1) [[unlikely]] {
        const uint16_t l3 = steer::ipv4_offset(m);
        if (l3 && m->pkt_len - l3 > shared_.mtu[port]) {
            send_fragments(port, m, shared_.mtu[port]);
            return;
        }
        // Fits the link: one segment, as not every PMD transmits chains; a
        // chain too long for one buffer leaves as fragments that fit one.
        if (m->nb_segs != 1 && rte_pktmbuf_linearize(m) != 0) {
            if (l3) {
                send_fragments(port, m, uint16_t(rte_pktmbuf_data_room_size(shared_.mbufs) - RTE_PKTMBUF_HEADROOM - l3));
            } else {
                ++counters_.fragment_failed;
                rte_pktmbuf_free(m);
            }
            return;
        }
    }
    counters_.tx[port] += rte_eth_tx_buffer(shared_.port[port], uint16_t(id_), tx_[port], m);
}

// A translated packet bigger than the link's MTU (RFC 4787 REQ-13): with DF
// it was answered before translation (too_big), so only a hairpinned packet
// gets here with DF, and is dropped; without DF it goes out as fragments.
void Worker::send_fragments(Port port, rte_mbuf* m, uint16_t link_mtu)
{
    const uint16_t l3 = steer::ipv4_offset(m);
    const auto* ip = rte_pktmbuf_mtod_offset(m, const rte_ipv4_hdr*, l3);
    if (ip->fragment_offset & rte_cpu_to_be_16(RTE_IPV4_HDR_DF_FLAG)) {
        ++counters_.too_big;
        rte_pktmbuf_free(m);
        return;
    }
    uint8_t l2[sizeof(rte_ether_hdr) + sizeof(rte_vlan_hdr)];
    std::memcpy(l2, rte_pktmbuf_mtod(m, const void*), l3);
    // Every fragment but the last carries a multiple of 8 bytes of payload.
    const unsigned ihl = (ip->version_ihl & 0x0f) * 4u;
    const uint16_t mtu = uint16_t(ihl + ((link_mtu - ihl) & ~7u));
    rte_pktmbuf_adj(m, l3);
    rte_mbuf* frags[kMaxFragments];
    const int n = rte_ipv4_fragment_packet(m, frags, kMaxFragments, mtu, shared_.mbufs, shared_.indirect);
    rte_pktmbuf_free(m); // the fragments hold their own references to its data
    if (n <= 0) {
        ++counters_.fragment_failed;
        return;
    }
    ++counters_.fragmented;
    for (int i = 0; i < n; ++i) {
        rte_mbuf* f = frags[i];
        // One segment per frame: not every PMD transmits chains (net_af_xdp copies the first only).
        auto* fl2 = reinterpret_cast<uint8_t*>(rte_pktmbuf_prepend(f, l3));
        if (fl2 == nullptr || rte_pktmbuf_linearize(f) != 0) {
            ++counters_.fragment_failed;
            rte_pktmbuf_free(f);
            continue;
        }
        fl2 = rte_pktmbuf_mtod(f, uint8_t*);
        std::memcpy(fl2, l2, l3);
        auto* fip = reinterpret_cast<rte_ipv4_hdr*>(fl2 + l3);
        fip->hdr_checksum = 0;
        fip->hdr_checksum = rte_ipv4_cksum(fip);
        ++counters_.fragments_sent;
        counters_.tx[port] += rte_eth_tx_buffer(shared_.port[port], uint16_t(id_), tx_[port], f);
    }
}

// Fragments go to reassembly, then a packet too big for the link it leaves by
// is answered (too_big). False when m was consumed: held, dropped or answered;
// m may come back as the whole datagram.
bool Worker::whole_and_fits(rte_mbuf*& m, uint16_t l3, Port in, uint64_t tsc)
{
    if (reassembly_ && Reassembly::is_fragment(rte_pktmbuf_mtod_offset(m, const rte_ipv4_hdr*, l3)) &&
        (m = reassemble(m, l3, tsc)) == nullptr)
        return false;
    return !too_big(m, l3, in, tsc);
}

// A fragment goes to this worker's reassembly; the whole datagram comes back
// when its last fragment arrives (then it is steered and translated like any
// packet), else nullptr.
rte_mbuf* Worker::reassemble(rte_mbuf* m, uint16_t l3, uint64_t tsc)
{
    rte_mbuf* whole = reassembly_->add(m, l3, tsc);
    counters_.fragments_received = reassembly_->fragments();
    counters_.reassembled = reassembly_->reassembled();
    counters_.reassembly_dropped = reassembly_->dropped();
    return whole;
}

// Before translation, so that the error quotes the packet as its sender sent
// it: a packet too big for the port it will leave by, with DF set, is
// answered with ICMP 3/4 and the next-hop MTU (rate-limited) and dropped.
// True when m was consumed.
bool Worker::too_big(rte_mbuf* m, uint16_t l3, Port in, uint64_t tsc)
{
    const auto* ip = rte_pktmbuf_mtod_offset(m, const rte_ipv4_hdr*, l3);
    const uint16_t len = rte_be_to_cpu_16(ip->total_length);
    if (len <= shared_.mtu[kInside] && len <= shared_.mtu[kOutside]) [[likely]]
        return false;
    // Inside packets to a pool address are hairpinned: they leave inside.
    const Port out = in == kOutside || shared_.pool->index_of(ip->dst_addr) != Pool::kNotInPool ? kInside : kOutside;
    if (len <= shared_.mtu[out] || !(ip->fragment_offset & rte_cpu_to_be_16(RTE_IPV4_HDR_DF_FLAG)) ||
        ip->time_to_live <= 1) // the translator drops it for its TTL
        return false;
    ++counters_.too_big;
    answer_icmp_error(m, l3, in, 3, 4, tsc, counters_.frag_needed_sent, shared_.mtu[out]);
    rte_pktmbuf_free(m);
    return true;
}

// An ICMP error about m from the gateway's address on `port`, sent back out
// of it; rate-limited (RFC 1812 §4.3.2.8). `sent` counts those sent.
void Worker::answer_icmp_error(const rte_mbuf* m, uint16_t l3, Port port, uint8_t type, uint8_t code, uint64_t tsc,
                               uint64_t& sent, uint16_t next_hop_mtu)
{
    if (!icmp_limit_.allow(tsc)) {
        ++counters_.icmp_rate_limited;
        return;
    }
    if (rte_mbuf* e = router::icmp_error(shared_.mbufs, m, l3, type, code, shared_.addr[port], shared_.mac[port],
                                         next_hop_mtu)) {
        ++sent;
        send(port, e);
    }
}

void Worker::sync_next_hop()
{
    const uint64_t v = shared_.next_hop->version();
    if (v == next_hop_version_) return;
    next_hop_version_ = v;
    rte_ether_addr mac;
    next_hop_known_ = shared_.next_hop->get(mac);
    if (next_hop_known_) {
        nat_.set_outside_l2(shared_.mac[kOutside], mac);
        next_hop_mac_ = mac;
    }
}

// Packets for the gateway itself, and packets whose TTL runs out here. True
// when m was consumed (answered, or freed and counted).
bool Worker::local_or_expired(rte_mbuf* m, uint16_t l3, Port port, uint64_t tsc)
{
    const auto* ip = rte_pktmbuf_mtod_offset(m, const rte_ipv4_hdr*, l3);
    if (ip->dst_addr == shared_.addr[kInside] || ip->dst_addr == shared_.addr[kOutside]) {
        if (port == kInside && pcp_request(m, l3)) return true;
        if (router::icmp_echo_reply(m, l3)) {
            ++counters_.echo_replies;
            send(port, m);
        } else {
            ++counters_.local_dropped;
            rte_pktmbuf_free(m);
        }
        return true;
    }
    if (ttl_of(m, l3) > 1) return false;
    // RFC 1812: time exceeded from the interface the packet came in on.
    answer_icmp_error(m, l3, port, kIcmpTimeExceeded, 0, tsc, counters_.time_exceeded_sent);
    // The translator counts the TTL drop, so the NAT counters stay complete.
    return false;
}

void Worker::hand_off(Dir dir, unsigned owner, rte_mbuf* m, uint32_t mapping)
{
    Pending& p = pending_[unsigned(dir)][owner];
    p.entries[p.n++] = Handoff{m, mapping, 0};
    if (p.n == kBurst) send_handoffs(unsigned(dir), owner);
}

void Worker::send_handoffs(unsigned dir, unsigned owner)
{
    Pending& p = pending_[dir][owner];
    rte_ring* r = shared_.handoff[dir][id_ * shared_.workers + owner];
    const unsigned sent = rte_ring_sp_enqueue_burst_elem(r, p.entries, sizeof(Handoff), p.n, nullptr);
    counters_.handed_off[dir] += sent;
    counters_.handoff_full[dir] += p.n - sent;
    for (unsigned i = sent; i < p.n; ++i) rte_pktmbuf_free(p.entries[i].m);
    p.n = 0;
}

void Worker::flush_handoffs()
{
    for (unsigned d = 0; d < 2; ++d)
        for (unsigned w = 0; w < shared_.workers; ++w)
            if (pending_[d][w].n != 0) send_handoffs(d, w);
}

// RFC 6888 REQ-6: packets to excluded destinations leave untranslated (the
// sender's MAC learnt for the answer); returns how many of pkts remain, in order.
uint16_t Worker::route_excluded_out(rte_mbuf** pkts, uint16_t n)
{
    uint16_t k = 0;
    for (uint16_t i = 0; i < n; ++i) {
        rte_mbuf* m = pkts[i];
        const uint16_t l3 = steer::ipv4_offset(m);
        const auto* ip = l3 ? rte_pktmbuf_mtod_offset(m, const rte_ipv4_hdr*, l3) : nullptr;
        if (ip == nullptr || !shared_.exclusions->contains(ip->dst_addr)) {
            pkts[k++] = m;
            continue;
        }
        learned_->learn(ip->src_addr, rte_pktmbuf_mtod(m, const rte_ether_hdr*)->src_addr);
        if (!next_hop_known_) {
            ++counters_.untranslated_dropped;
            rte_pktmbuf_free(m);
        } else if (route_untranslated(m, l3, kOutside, next_hop_mac_)) {
            ++counters_.untranslated[unsigned(Dir::Out)];
        }
    }
    return k;
}

// Handed-off inbound packets addressed to an inside host rather than a pool
// address are of an excluded flow (poll_outside let only those through):
// routed in; returns how many of pkts remain for translation, in order.
uint16_t Worker::route_handed_in_untranslated(rte_mbuf** pkts, uint32_t* carried, uint16_t n)
{
    uint16_t k = 0;
    for (uint16_t i = 0; i < n; ++i) {
        const uint16_t l3 = steer::ipv4_offset(pkts[i]);
        if (l3 && shared_.pool->index_of(rte_pktmbuf_mtod_offset(pkts[i], const rte_ipv4_hdr*, l3)->dst_addr) ==
                      Pool::kNotInPool) {
            route_in_untranslated(pkts[i], l3);
        } else {
            carried[k] = carried[i];
            pkts[k++] = pkts[i];
        }
    }
    return k;
}

// From an excluded source to an inside host: to the MAC that host last sent
// from towards an excluded destination (this worker owns the host).
void Worker::route_in_untranslated(rte_mbuf* m, uint16_t l3)
{
    const rte_ether_addr* mac = learned_->find(rte_pktmbuf_mtod_offset(m, const rte_ipv4_hdr*, l3)->dst_addr);
    if (mac == nullptr) {
        ++counters_.untranslated_dropped;
        rte_pktmbuf_free(m);
    } else if (route_untranslated(m, l3, kInside, *mac)) {
        ++counters_.untranslated[unsigned(Dir::In)];
    }
}

// Plain routing: new MACs, TTL decremented (its expiry was answered on
// receipt), header checksum adjusted. False when m was dropped.
bool Worker::route_untranslated(rte_mbuf* m, uint16_t l3, Port out, const rte_ether_addr& dst)
{
    auto* ip = rte_pktmbuf_mtod_offset(m, rte_ipv4_hdr*, l3);
    if (ip->time_to_live <= 1) {
        ++counters_.untranslated_dropped;
        rte_pktmbuf_free(m);
        return false;
    }
    auto* eth = rte_pktmbuf_mtod(m, rte_ether_hdr*);
    eth->dst_addr = dst;
    eth->src_addr = shared_.mac[out];
    ip->time_to_live -= 1;
    ip->hdr_checksum = csum::apply(ip->hdr_checksum, csum::kTtlDecrement);
    send(out, m);
    return true;
}

void Worker::outbound(rte_mbuf** pkts, uint16_t n, Tick now)
{
    if (shared_.exclusions && (n = route_excluded_out(pkts, n)) == 0) return;
    rte_mbuf* refused[kBurst];
    uint16_t nrefused = 0;
    const bool answer = shared_.config->icmp_on_limit;
    const uint16_t done = nat_.outbound(pkts, n, now, answer ? refused : nullptr, answer ? &nrefused : nullptr);
    // No mapping could be made: ICMP 3/13, communication administratively
    // prohibited (RFC 6888 REQ-11, RFC 5508 REQ-8), rate-limited.
    const uint64_t tsc = nrefused ? rte_rdtsc() : 0;
    for (uint16_t i = 0; i < nrefused; ++i) {
        rte_mbuf* m = refused[i];
        if (const uint16_t l3 = steer::ipv4_offset(m))
            answer_icmp_error(m, l3, kInside, 3, 13, tsc, counters_.prohibited_sent);
        rte_pktmbuf_free(m);
    }
    rte_mbuf* hairpin[kBurst];
    int hairpin_pool[kBurst];
    uint16_t nh = 0;
    for (uint16_t i = 0; i < done; ++i) {
        rte_mbuf* m = pkts[i];
        const uint16_t l3 = steer::ipv4_offset(m);
        const int pool_index =
            l3 ? shared_.pool->index_of(rte_pktmbuf_mtod_offset(m, const rte_ipv4_hdr*, l3)->dst_addr)
               : Pool::kNotInPool;
        // RFC 4787 REQ-9: to another subscriber's mapping -> back in, translated.
        if (pool_index != Pool::kNotInPool) {
            hairpin_pool[nh] = pool_index;
            hairpin[nh++] = m;
        } else if (!next_hop_known_) {
            ++counters_.no_next_hop;
            rte_pktmbuf_free(m);
        } else {
            send(kOutside, m);
        }
    }
    if (nh) {
        counters_.hairpinned += nh;
        steer_inbound(hairpin, hairpin_pool, nh, now);
    }
}

void Worker::inbound(rte_mbuf** pkts, uint16_t n, Tick now, const uint32_t* carried)
{
    rte_mbuf* syns[kBurst];
    uint16_t nsyns = 0;
    const uint16_t done = nat_.inbound(pkts, n, now, carried, syn_hold_ ? syns : nullptr, &nsyns);
    for (uint16_t i = 0; i < done; ++i) send(kInside, pkts[i]);
    if (nsyns) hold_syns(syns, nsyns);
}

// Unsolicited SYNs from outside wait to be answered (RFC 5382 REQ-4); a
// hairpinned one (its source a pool address) is dropped silently, as an
// answer would have to be translated back in.
void Worker::hold_syns(rte_mbuf** syns, uint16_t n)
{
    const uint64_t due = rte_rdtsc() + kSynHoldSeconds * rte_get_tsc_hz();
    for (uint16_t i = 0; i < n; ++i) {
        rte_mbuf* m = syns[i];
        const uint16_t l3 = steer::ipv4_offset(m);
        if (l3 && shared_.pool->index_of(rte_pktmbuf_mtod_offset(m, const rte_ipv4_hdr*, l3)->src_addr) ==
                      Pool::kNotInPool) {
            if (syn_hold_->hold(m, l3, due)) ++counters_.syns_held;
            else ++counters_.syns_not_held;
        }
        rte_pktmbuf_free(m);
    }
}

// Held SYNs whose 6 s are up: dropped if the inside opened the connection
// meanwhile, else answered with ICMP port unreachable from the pool address
// they were sent to (rate-limited). A few per loop: never a stall.
void Worker::answer_held_syns(Tick now, uint64_t tsc)
{
    syn_hold_->take_due(tsc, kBurst, nat_, now, [&](const SynHold::Entry& e) {
        if (!icmp_limit_.allow(tsc)) {
            ++counters_.icmp_rate_limited;
            return;
        }
        const uint32_t pool_addr = SynHold::endpoints_of(e).pool_addr;
        if (rte_mbuf* m = router::icmp_error_quoting(shared_.mbufs, e.ip, e.len, e.from, 3, 3, pool_addr,
                                                     shared_.mac[kOutside])) {
            ++counters_.port_unreachable_sent;
            send(kOutside, m);
        }
    });
    counters_.syns_superseded = syn_hold_->superseded();
}

// Outside packets addressed to the pool (pool_index: of each destination;
// kNotInPool when not IPv4): to the owner of the external port.
void Worker::steer_inbound(rte_mbuf** pkts, const int* pool_index, uint16_t n, Tick now)
{
    rte_mbuf* mine[kBurst];
    uint16_t k = 0;
    for (uint16_t i = 0; i < n; ++i) {
        rte_mbuf* m = pkts[i];
        const uint16_t l3 = steer::ipv4_offset(m);
        unsigned owner = id_;
        uint32_t mapping = kNoMapping;
        if (l3) {
            const uint8_t* data = rte_pktmbuf_mtod(m, const uint8_t*);
            const auto* ip = reinterpret_cast<const rte_ipv4_hdr*>(data + l3);
            bool quoted = false;
            const int port = steer::external_port_of(data, l3, m->data_len, &quoted);
            L4 l4 = L4::Udp;
            const bool known_l4 = l4_from_ip_proto(ip->next_proto_id, l4);
            if (port >= 0 && shared_.layout->in_range(uint16_t(port))) {
                owner = shared_.layout->owner_of(uint16_t(port));
                // The owner's partition names the mapping: read it here (design:
                // the owner is spared the lookup); it checks the index before use.
                if (owner != id_ && known_l4 && !quoted && pool_index[i] != Pool::kNotInPool)
                    mapping = shared_.translators[owner]->mapping_seen_by_other_worker(unsigned(pool_index[i]),
                                                                                       uint16_t(port), l4);
            } else if (port >= 0 && shared_.statics != nullptr && known_l4 && l4 != L4::Icmp) { // a port forward?
                const int32_t s = shared_.statics->find(ip->dst_addr, uint16_t(port), l4);
                if (s >= 0) owner = shared_.statics->slot(uint32_t(s)).worker;
            }
        }
        if (owner == id_) mine[k++] = m;
        else hand_off(Dir::In, owner, m, mapping);
    }
    if (k) inbound(mine, k, now);
}

void Worker::poll_inside(Tick now, uint64_t tsc)
{
    rte_mbuf* pkts[kBurst];
    const uint16_t n = rte_eth_rx_burst(shared_.port[kInside], uint16_t(id_), pkts, kBurst);
    if (n == 0) return;
    counters_.rx[kInside] += n;
    for (uint16_t i = 0; i < n; ++i) rte_prefetch0(rte_pktmbuf_mtod(pkts[i], void*));

    rte_mbuf* mine[kBurst];
    uint16_t k = 0;
    for (uint16_t i = 0; i < n; ++i) {
        rte_mbuf* m = pkts[i];
        const auto* eth = rte_pktmbuf_mtod(m, const rte_ether_hdr*);
        if (m->data_len >= sizeof(*eth) && eth->ether_type == rte_cpu_to_be_16(RTE_ETHER_TYPE_ARP)) {
            learn_inside_neighbor(m);
            if (router::arp_input(m, shared_.addr[kInside], nullptr, shared_.mac[kInside], nullptr, tsc)) {
                ++counters_.arp_replies;
                send(kInside, m);
            } else {
                ++counters_.arp_ignored;
                rte_pktmbuf_free(m);
            }
            continue;
        }
        const uint16_t l3 = steer::ipv4_offset(m);
        if (l3 && (local_or_expired(m, l3, kInside, tsc) || !whole_and_fits(m, l3, kInside, tsc))) continue;
        unsigned owner = id_;
        if (l3 && shared_.workers > 1)
            owner = shared_.subscriber_worker(
                steer::subscriber_of(rte_pktmbuf_mtod(m, const uint8_t*), l3, m->data_len));
        if (owner == id_) mine[k++] = m;
        else hand_off(Dir::Out, owner, m);
    }
    if (k) outbound(mine, k, now);
}

void Worker::poll_outside(Tick now, uint64_t tsc)
{
    rte_mbuf* pkts[kBurst];
    const uint16_t n = rte_eth_rx_burst(shared_.port[kOutside], uint16_t(id_), pkts, kBurst);
    if (n == 0) return;
    counters_.rx[kOutside] += n;
    for (uint16_t i = 0; i < n; ++i) rte_prefetch0(rte_pktmbuf_mtod(pkts[i], void*));

    rte_mbuf* ours[kBurst];
    int ours_pool[kBurst];
    uint16_t k = 0;
    for (uint16_t i = 0; i < n; ++i) {
        rte_mbuf* m = pkts[i];
        const auto* eth = rte_pktmbuf_mtod(m, const rte_ether_hdr*);
        if (m->data_len >= sizeof(*eth) && eth->ether_type == rte_cpu_to_be_16(RTE_ETHER_TYPE_ARP)) {
            if (router::arp_input(m, shared_.addr[kOutside], shared_.pool, shared_.mac[kOutside], shared_.next_hop,
                                  tsc)) {
                ++counters_.arp_replies;
                send(kOutside, m);
            } else {
                ++counters_.arp_ignored;
                rte_pktmbuf_free(m);
            }
            continue;
        }
        const uint16_t l3 = steer::ipv4_offset(m);
        if (l3 && local_or_expired(m, l3, kOutside, tsc)) continue;
        const int pool_index =
            l3 ? shared_.pool->index_of(rte_pktmbuf_mtod_offset(m, const rte_ipv4_hdr*, l3)->dst_addr)
               : Pool::kNotInPool;
        if (l3 && pool_index == Pool::kNotInPool) {
            const auto* ip = rte_pktmbuf_mtod_offset(m, const rte_ipv4_hdr*, l3);
            if (shared_.exclusions && of_excluded_flow(*shared_.exclusions, m, l3)) {
                // To an inside host, of a flow that was not translated: its owner knows its MAC.
                if (too_big(m, l3, kOutside, tsc)) continue;
                const unsigned owner = shared_.subscriber_worker(ip->dst_addr);
                if (owner == id_) route_in_untranslated(m, l3);
                else hand_off(Dir::In, owner, m);
                continue;
            }
            ++counters_.not_for_us;
            rte_pktmbuf_free(m);
            continue;
        }
        if (l3 && !whole_and_fits(m, l3, kOutside, tsc)) continue;
        ours_pool[k] = pool_index;
        ours[k++] = m; // not IPv4 goes to the translator, which counts it
    }
    if (k) steer_inbound(ours, ours_pool, k, now);
}

void Worker::drain_handoff(Tick now)
{
    rte_mbuf* pkts[kBurst];
    uint32_t carried[kBurst];
    Handoff entries[kBurst];
    for (unsigned from = 0; from < shared_.workers; ++from) {
        if (from == id_) continue;
        const unsigned slot = from * shared_.workers + id_;
        const unsigned got = rte_ring_sc_dequeue_burst_elem(shared_.handoff[unsigned(Dir::Out)][slot], entries,
                                                            sizeof(Handoff), kBurst, nullptr);
        unsigned n = 0;
        for (unsigned i = 0; i < got; ++i) {
            if (entries[i].mapping == kPcpRequest) [[unlikely]] answer_pcp(entries[i].m);
            else pkts[n++] = entries[i].m;
        }
        if (n) outbound(pkts, uint16_t(n), now);
        n = rte_ring_sc_dequeue_burst_elem(shared_.handoff[unsigned(Dir::In)][slot], entries, sizeof(Handoff), kBurst,
                                           nullptr);
        for (unsigned i = 0; i < n; ++i) {
            pkts[i] = entries[i].m;
            carried[i] = entries[i].mapping;
        }
        if (n && shared_.exclusions) n = route_handed_in_untranslated(pkts, carried, uint16_t(n));
        if (n) inbound(pkts, uint16_t(n), now, carried);
    }
    if (id_ == 0 && shared_.control_inside != nullptr) {
        const unsigned n =
            rte_ring_sc_dequeue_burst(shared_.control_inside, reinterpret_cast<void**>(pkts), kBurst, nullptr);
        for (unsigned i = 0; i < n; ++i) send(kInside, pkts[i]);
    }
    if (id_ == 0 && shared_.control != nullptr) {
        const unsigned n = rte_ring_sc_dequeue_burst(shared_.control, reinterpret_cast<void**>(pkts), kBurst, nullptr);
        for (unsigned i = 0; i < n; ++i) {
            ++counters_.arp_requests_sent;
            send(kOutside, pkts[i]);
        }
    }
}

// A UDP datagram to the PCP server port of our inside address: answered by
// the subscriber's worker (handed over to it when that is another). True when
// m was taken.
bool Worker::pcp_request(rte_mbuf* m, uint16_t l3)
{
    const auto* ip = rte_pktmbuf_mtod_offset(m, const rte_ipv4_hdr*, l3);
    if (!shared_.config->pcp.enabled || ip->dst_addr != shared_.addr[kInside] || ip->next_proto_id != IPPROTO_UDP)
        return false;
    const unsigned ihl = (ip->version_ihl & 0x0f) * 4u;
    if (ihl < sizeof(rte_ipv4_hdr) || l3 + ihl + sizeof(rte_udp_hdr) > m->data_len ||
        rte_pktmbuf_mtod_offset(m, const rte_udp_hdr*, l3 + ihl)->dst_port != rte_cpu_to_be_16(pcp::kServerPort))
        return false;
    const unsigned owner = shared_.workers > 1 ? shared_.subscriber_worker(ip->src_addr) : id_;
    if (owner == id_) answer_pcp(m);
    else hand_off(Dir::Out, owner, m, kPcpRequest);
    return true;
}

// Turns the request m into its response, from our inside address and the
// server port back to the client (RFC 6887 §8.3), and sends it.
void Worker::answer_pcp(rte_mbuf* m)
{
    const uint16_t l3 = steer::ipv4_offset(m);
    auto* ip = l3 ? rte_pktmbuf_mtod_offset(m, rte_ipv4_hdr*, l3) : nullptr;
    const unsigned ihl = ip ? (ip->version_ihl & 0x0f) * 4u : 0;
    // pcp_request() saw the IP and UDP headers within the first segment.
    auto* udp = ip ? rte_pktmbuf_mtod_offset(m, rte_udp_hdr*, l3 + ihl) : nullptr;
    const unsigned udp_len = udp ? rte_be_to_cpu_16(udp->dgram_len) : 0;
    bool valid = udp != nullptr && m->nb_segs == 1 && udp_len >= sizeof(rte_udp_hdr) &&
                 l3 + ihl + udp_len <= m->data_len && rte_be_to_cpu_16(ip->total_length) == ihl + udp_len &&
                 !(ip->fragment_offset & rte_cpu_to_be_16(RTE_IPV4_HDR_MF_FLAG | RTE_IPV4_HDR_OFFSET_MASK)) &&
                 csum::verify(ip, ihl);
    if (valid && udp->dgram_cksum != 0) { // recomputed: the request is rewritten into the response anyway
        const uint16_t sent = udp->dgram_cksum;
        udp->dgram_cksum = 0;
        valid = rte_ipv4_udptcp_cksum(ip, udp) == sent;
    }
    if (!valid) {
        ++counters_.pcp_dropped;
        rte_pktmbuf_free(m);
        return;
    }
    const uint32_t client = ip->src_addr;
    const uint16_t client_port = udp->src_port;
    const rte_ether_addr client_mac = rte_pktmbuf_mtod(m, const rte_ether_hdr*)->src_addr;
    uint8_t resp[pcp::kMaxMessage];
    pcp::Outcome outcome;
    const Tick now = shared_.clock->now();
    const pcp::Limits limits{shared_.config->pcp.min_lifetime, shared_.config->pcp.max_lifetime};
    const size_t n = pcp::answer(reinterpret_cast<const uint8_t*>(udp + 1), udp_len - sizeof(rte_udp_hdr), client,
                                 client_mac, nat_, now, now, limits, resp, outcome);
    if (n == 0) {
        ++counters_.pcp_dropped;
        rte_pktmbuf_free(m);
        return;
    }
    ++counters_.pcp_requests;
    counters_.pcp_errors += outcome.result != pcp::kSuccess;
    // The response: L2 header as it came (a VLAN tag kept), then IPv4 without options, UDP, PCP.
    const uint32_t want = uint32_t(l3 + sizeof(rte_ipv4_hdr) + sizeof(rte_udp_hdr) + n);
    if (want > m->data_len ? rte_pktmbuf_append(m, uint16_t(want - m->data_len)) == nullptr
                           : rte_pktmbuf_trim(m, uint16_t(m->data_len - want)) != 0) {
        ++counters_.pcp_dropped;
        rte_pktmbuf_free(m);
        return;
    }
    auto* eth = rte_pktmbuf_mtod(m, rte_ether_hdr*);
    eth->dst_addr = client_mac;
    eth->src_addr = shared_.mac[kInside];
    ip = rte_pktmbuf_mtod_offset(m, rte_ipv4_hdr*, l3);
    router::write_ipv4_header(ip, IPPROTO_UDP, shared_.addr[kInside], client, uint16_t(want - l3));
    auto* out = reinterpret_cast<rte_udp_hdr*>(ip + 1);
    out->src_port = rte_cpu_to_be_16(pcp::kServerPort);
    out->dst_port = client_port;
    out->dgram_len = rte_cpu_to_be_16(uint16_t(sizeof(rte_udp_hdr) + n));
    out->dgram_cksum = 0;
    std::memcpy(out + 1, resp, n);
    out->dgram_cksum = rte_ipv4_udptcp_cksum(ip, out);
    m->ol_flags = 0;
    send(kInside, m);
}

void Worker::answer_queries(Tick now, bool stopping)
{
    do {
        if (query_ == nullptr && rte_ring_sc_dequeue(shared_.queries[id_], reinterpret_cast<void**>(&query_)) != 0)
            return;
        // 16 K mapping slots per loop: an operator's query never stalls traffic for long.
        if (answer_query_step(nat_, *query_, now, stopping ? UINT32_MAX : 16384)) {
            finish_query(query_);
            query_ = nullptr;
        }
    } while (stopping);
}

void Worker::run()
{
    const TscClock& clock = *shared_.clock;
    nat_.set_event_ring(shared_.events.empty() ? nullptr : shared_.events[id_]);
    // A reader of the static mapping table: reports a quiescent state once per
    // loop, when it holds nothing it looked up, so removals can complete.
    rte_rcu_qsbr* qsbr = shared_.statics ? shared_.statics->qsbr() : nullptr;
    if (qsbr) {
        rte_rcu_qsbr_thread_register(qsbr, id_);
        rte_rcu_qsbr_thread_online(qsbr, id_);
    }
    while (!shared_.stop.load(std::memory_order_relaxed)) {
        if (qsbr) rte_rcu_qsbr_quiescent(qsbr, id_);
        const uint64_t tsc = rte_rdtsc();
        const Tick now = clock.now();
        nat_.set_event_time(shared_.unix_ms_at(tsc)); // before forwarding too: the configuration's port forwards
        if (!shared_.forwarding.load(std::memory_order_acquire)) [[unlikely]] {
            answer_queries(now, false);
            rte_pause();
            continue;
        }
        sync_next_hop();
        poll_inside(now, tsc);
        poll_outside(now, tsc);
        // Packets handed over are flushed after the handed-over ones are
        // translated: those hand off too (hairpinning to another worker's
        // port), and nothing may wait in pending_ when the loop ends.
        drain_handoff(now);
        flush_handoffs();
        for (unsigned p = 0; p < 2; ++p)
            counters_.tx[p] += rte_eth_tx_buffer_flush(shared_.port[p], uint16_t(id_), tx_[p]);
        // Between bursts: what the control plane found expired (bounded work).
        counters_.mappings_expired += drain_expiry_commands(nat_, shared_.expiry[id_], 64, now);
        answer_queries(now, false);
        if (syn_hold_) answer_held_syns(now, tsc);
        if (reassembly_) {
            reassembly_->expire(tsc); // the oldest first: nothing to do most of the time
            counters_.reassembly_dropped = reassembly_->dropped();
        }
    }
    if (qsbr) {
        rte_rcu_qsbr_thread_offline(qsbr, id_);
        rte_rcu_qsbr_thread_unregister(qsbr, id_);
    }
    answer_queries(clock.now(), true); // nobody is left waiting on a stopped worker
    for (unsigned p = 0; p < 2; ++p) rte_eth_tx_buffer_flush(shared_.port[p], uint16_t(id_), tx_[p]);
}

} // namespace ephemera
