#include "engine.hpp"

#include <algorithm>
#include <cstdio>

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_prefetch.h>

#include "frames.hpp"

namespace bench {

namespace {

constexpr uint16_t kBurst = 32;
constexpr unsigned kMaxRxBursts = 4;        // per port per loop, while bursts come full
constexpr uint32_t kSinkIsn = 0x5EED0000;    // the sink's initial sequence number
constexpr uint32_t kProbeFlow = 0xFFFFFFFF;
constexpr uint8_t kTcpSyn = RTE_TCP_SYN_FLAG, kTcpAck = RTE_TCP_ACK_FLAG;

uint64_t tsc_of(double seconds, double hz) { return uint64_t(seconds * hz); }

} // namespace

Engine::Engine(const Options& o, BenchPort& tx, BenchPort& rx, rte_mempool* pool)
    : o_(o), tx_(tx), rx_(rx), same_port_(&tx == &rx), pool_(pool), hz_(double(rte_get_tsc_hz()))
{
    flows_.sub_base = o.subscriber_base;
    flows_.subs = o.subscriber_count();
    flows_.sport_base = o.src_port_base;
    flows_.sport_span = 65536u - o.src_port_base;
    flows_.dst_base = o.dst_base;
    flows_.dsts = o.destinations;
    flows_.dport_base = o.dst_port_base;
    flows_.dports = o.dst_ports;
    uint16_t size = o.size;
    if (o.proto == Proto::Tcp && size < kMinTcpDataSize) size = kMinTcpDataSize; // room for the stamp
    frame_len_ = uint16_t(size - 4);
    if (o.gateway_mac) {
        gateway_mac_ = *o.gateway_mac;
        gateway_known_ = true;
    }
    seen_.assign((uint64_t(o.flows) + 63) / 64, 0);
}

// ---------------------------------------------------------------- sink

void Engine::mark_flow(uint32_t flow)
{
    if (flow < o_.flows) seen_[flow / 64] |= uint64_t(1) << (flow % 64);
}

void Engine::count_stamp(const uint8_t* payload, uint64_t now)
{
    const Stamp s = read_stamp(payload);
    if ((s.magic & 0xFF00) != kMagic) {
        ++sink_.other;
        return;
    }
    const uint8_t trial = uint8_t(s.magic);
    if (trial != trial_) {
        if (trial == 0) probe_seen_ = true;
        else ++sink_.stale;
        return;
    }
    ++received_;
    if (trial_ == 1) mark_flow(s.flow);
    if (s.seq < last_seq_) ++reordered_;
    else last_seq_ = s.seq;
    if (now >= s.tsc) latency_.record(uint64_t(double(now - s.tsc) * 1e9 / hz_));
}

bool Engine::handle(rte_mbuf* m, bool outside_role, bool inside_role, ReplyBuffer& out, uint64_t now)
{
    const auto* eth = rte_pktmbuf_mtod(m, const rte_ether_hdr*);
    const uint16_t type = rte_be_to_cpu_16(eth->ether_type);
    if (type == RTE_ETHER_TYPE_ARP && m->data_len >= sizeof(rte_ether_hdr) + sizeof(rte_arp_hdr)) {
        const auto* arp = reinterpret_cast<const rte_arp_hdr*>(eth + 1);
        const uint32_t tip = rte_be_to_cpu_32(arp->arp_data.arp_tip);
        const uint32_t sip = rte_be_to_cpu_32(arp->arp_data.arp_sip);
        if (arp->arp_opcode == rte_cpu_to_be_16(RTE_ARP_OP_REQUEST)) {
            if ((outside_role && is_destination(tip)) || (inside_role && is_subscriber(tip))) {
                if (out.n == RTE_DIM(out.pkts)) return false;
                answer_arp(m, outside_role && is_destination(tip) ? rx_.mac() : tx_.mac());
                out.pkts[out.n++] = m;
                ++sink_.arp_answered;
                return true;
            }
        } else if (inside_role && sip == o_.gateway_ip && !o_.gateway_mac) {
            gateway_mac_ = arp->arp_data.arp_sha;
            gateway_known_ = true;
        }
        return false;
    }
    if (type != RTE_ETHER_TYPE_IPV4 || m->data_len < kEthIpBytes) {
        ++sink_.other;
        return false;
    }
    const auto* ip = reinterpret_cast<const rte_ipv4_hdr*>(eth + 1);
    if (ip->version_ihl != RTE_IPV4_VHL_DEF) { // no options: nothing here sends them
        ++sink_.other;
        return false;
    }
    const uint32_t dst = rte_be_to_cpu_32(ip->dst_addr);
    const uint8_t* l4 = reinterpret_cast<const uint8_t*>(ip + 1);
    const uint16_t l4_len = uint16_t(rte_be_to_cpu_16(ip->total_length) - sizeof(rte_ipv4_hdr));
    if (ip->next_proto_id == IPPROTO_UDP) {
        if (outside_role && is_destination(dst) && m->data_len >= kUdpHeadBytes + kStampBytes)
            count_stamp(l4 + sizeof(rte_udp_hdr), now);
        else
            ++sink_.other;
        return false;
    }
    if (ip->next_proto_id != IPPROTO_TCP || m->data_len < kTcpHeadBytes) {
        ++sink_.other;
        return false;
    }
    const auto* tcp = reinterpret_cast<const rte_tcp_hdr*>(l4);
    const uint8_t flags = tcp->tcp_flags & (RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG | RTE_TCP_FIN_FLAG | RTE_TCP_RST_FLAG);
    const uint16_t doff = uint16_t((tcp->data_off >> 4) * 4);
    const uint32_t seq = rte_be_to_cpu_32(tcp->sent_seq);
    const uint32_t ack = rte_be_to_cpu_32(tcp->recv_ack);
    if (outside_role && is_destination(dst)) {
        if (flags == kTcpSyn) { // the server's half of the handshake
            if (out.n == RTE_DIM(out.pkts)) return false;
            answer_tcp(m, kTcpSyn | kTcpAck, kSinkIsn, seq + 1);
            out.pkts[out.n++] = m;
            ++sink_.syn_answered;
            return true;
        }
        if (l4_len > doff && m->data_len >= kEthIpBytes + doff + kStampBytes) {
            count_stamp(l4 + doff, now);
        } else if (flags == kTcpAck && ack == kSinkIsn + 1) { // the handshake's last segment
            if (count_handshakes_) ++handshakes_;
            if (trial_ == 1) mark_flow(seq - 1); // the generator's ISN is the flow index
        } else {
            ++sink_.other;
        }
        return false;
    }
    if (inside_role && is_subscriber(dst) && flags == (kTcpSyn | kTcpAck)) { // the client's last step
        if (out.n == RTE_DIM(out.pkts)) return false;
        answer_tcp(m, kTcpAck, ack, seq + 1);
        rte_ether_addr_copy(&gateway_mac_, &rte_pktmbuf_mtod(m, rte_ether_hdr*)->dst_addr);
        out.pkts[out.n++] = m;
        ++synacks_;
        ++sink_.acks_sent;
        return true;
    }
    ++sink_.other;
    return false;
}

void Engine::flush_backlog(uint16_t port_id, Backlog& b)
{
    if (b.n == 0) return;
    const uint16_t sent = rte_eth_tx_burst(port_id, 0, b.pkts, b.n);
    std::copy(b.pkts + sent, b.pkts + b.n, b.pkts);
    b.n = uint16_t(b.n - sent);
}

unsigned Engine::poll_port(BenchPort& port, Backlog& backlog, bool outside_role, bool inside_role, uint64_t now)
{
    flush_backlog(port.id(), backlog);
    // No room for another round of replies: leave the packets in the RX
    // queue (back-pressure towards the gateway) rather than drop answers.
    if (backlog.n + RTE_DIM(ReplyBuffer{}.pkts) > RTE_DIM(backlog.pkts)) return 0;
    unsigned total = 0;
    ReplyBuffer replies;
    for (unsigned b = 0; b < kMaxRxBursts; ++b) {
        rte_mbuf* pkts[kBurst];
        rte_mbuf* done[kBurst];
        uint16_t nd = 0;
        const uint16_t n = rte_eth_rx_burst(port.id(), 0, pkts, kBurst);
        if (n) now = rte_rdtsc(); // the arrival time of this burst, for the latency
        for (uint16_t i = 0; i < n; ++i) rte_prefetch0(rte_pktmbuf_mtod(pkts[i], void*));
        for (uint16_t i = 0; i < n; ++i)
            if (!handle(pkts[i], outside_role, inside_role, replies, now)) done[nd++] = pkts[i];
        if (nd) rte_pktmbuf_free_bulk(done, nd);
        total += n;
        if (n < kBurst || replies.n > RTE_DIM(replies.pkts) - kBurst) break;
    }
    if (replies.n) {
        const uint16_t sent = backlog.n ? 0 : rte_eth_tx_burst(port.id(), 0, replies.pkts, replies.n);
        const uint16_t keep = std::min<uint16_t>(uint16_t(replies.n - sent), uint16_t(RTE_DIM(backlog.pkts) - backlog.n));
        std::copy(replies.pkts + sent, replies.pkts + sent + keep, backlog.pkts + backlog.n);
        backlog.n = uint16_t(backlog.n + keep);
        if (sent + keep < replies.n) {
            sink_.replies_dropped += replies.n - sent - keep;
            rte_pktmbuf_free_bulk(replies.pkts + sent + keep, replies.n - sent - keep);
        }
    }
    return total;
}

void Engine::poll(uint64_t now)
{
    if (same_port_) {
        // --no-rx: the port answers ARP for the subscribers but counts nothing.
        poll_port(rx_, backlog_rx_, !o_.tx_only, true, now);
    } else {
        poll_port(rx_, backlog_rx_, true, false, now);
        poll_port(tx_, backlog_tx_, false, true, now);
    }
}

void Engine::drain_for(double seconds)
{
    const uint64_t end = rte_rdtsc() + tsc_of(seconds, hz_);
    for (uint64_t now = rte_rdtsc(); now < end; now = rte_rdtsc()) poll(now);
}

// ---------------------------------------------------------------- generator

uint16_t Engine::build(rte_mbuf** m, uint16_t n, Load load, FlowCursor& c, const TrialSpec* spec, uint64_t tsc)
{
    const rte_ether_addr& src_mac = tx_.mac();
    for (uint16_t i = 0; i < n; ++i) {
        const FlowTuple t = c.tuple();
        const uint32_t flow = c.index();
        switch (load) {
        case Load::UdpData:
            write_udp(m[i], frame_len_, gateway_mac_, src_mac, t, Stamp{uint16_t(kMagic | trial_), flow, seq_++, tsc});
            break;
        case Load::TcpData: {
            const Stamp s{uint16_t(kMagic | trial_), flow, seq_++, tsc};
            write_tcp(m[i], frame_len_, gateway_mac_, src_mac, t, RTE_TCP_ACK_FLAG | RTE_TCP_PSH_FLAG, flow + 1,
                      kSinkIsn + 1, &s);
            break;
        }
        case Load::TcpSyn:
            write_tcp(m[i], frame_len_, gateway_mac_, src_mac, t, kTcpSyn, flow, 0, nullptr);
            break;
        }
        c.next();
        if (spec && spec->flow_count && c.index() - spec->first_flow >= spec->flow_count) c.seek(spec->first_flow);
    }
    return n;
}

void Engine::send_probe(uint64_t tsc)
{
    rte_mbuf* m = rte_pktmbuf_alloc(pool_);
    if (m == nullptr) return;
    const FlowTuple t{flows_.sub_base, flows_.dst_base, 65535, flows_.dport_base};
    write_udp(m, uint16_t(std::max<uint16_t>(frame_len_, kMinFrame)), gateway_mac_, tx_.mac(), t,
              Stamp{kMagic, kProbeFlow, 0, tsc});
    if (rte_eth_tx_burst(tx_.id(), 0, &m, 1) == 0) rte_pktmbuf_free(m);
}

bool Engine::connect()
{
    const uint64_t start = rte_rdtsc(), limit = start + tsc_of(o_.link_timeout, hz_);
    uint64_t last = 0;
    const uint64_t every = tsc_of(0.05, hz_);
    while (!(tx_.link_up() && rx_.link_up())) {
        if (rte_rdtsc() > limit) {
            error_ = "link down on " + (tx_.link_up() ? rx_.name() : tx_.name()) + " after " +
                     std::to_string(o_.link_timeout) + " s (is the peer up? memif: is the server running?)";
            return false;
        }
        rte_delay_ms(10);
    }
    for (uint64_t now = rte_rdtsc(); !gateway_known_; now = rte_rdtsc()) {
        if (now > limit) {
            char ip[16];
            std::snprintf(ip, sizeof ip, "%u.%u.%u.%u", o_.gateway_ip >> 24, (o_.gateway_ip >> 16) & 255,
                          (o_.gateway_ip >> 8) & 255, o_.gateway_ip & 255);
            error_ = std::string("the gateway ") + ip + " did not answer ARP on " + tx_.name() +
                     " (give --gateway-mac to skip ARP)";
            return false;
        }
        if (now - last > every) {
            if (rte_mbuf* m = rte_pktmbuf_alloc(pool_)) {
                write_arp_request(m, tx_.mac(), flows_.sub_base, o_.gateway_ip);
                if (rte_eth_tx_burst(tx_.id(), 0, &m, 1) == 0) rte_pktmbuf_free(m);
            }
            last = now;
        }
        poll(now);
    }
    if (o_.tx_only) return true; // no sink to see a probe
    last = 0;
    for (uint64_t now = rte_rdtsc(); !probe_seen_; now = rte_rdtsc()) {
        if (now > limit) {
            error_ = "no packet came through from " + tx_.name() + " to " + rx_.name() + " in " +
                     std::to_string(o_.link_timeout) + " s";
            return false;
        }
        if (now - last > every) {
            send_probe(now);
            last = now;
        }
        poll(now);
    }
    drain_for(0.05);
    return true;
}

void Engine::progress(const TrialSpec& spec, uint64_t now, uint64_t start)
{
    const double dt = double(now - prog_tsc_) / hz_;
    const uint64_t rx = count_handshakes_ ? handshakes_ : received_;
    const double tx_rate = double(*prog_sent_src_ - prog_sent_) / dt, rx_rate = double(rx - prog_rx_) / dt;
    std::fprintf(stderr, "ephemera-bench: %s %5.1fs  tx %8.3f Mpps  rx %8.3f Mpps  p50 %7.1f us\n",
                 spec.label.c_str(), double(now - start) / hz_, tx_rate / 1e6, rx_rate / 1e6,
                 double(latency_.percentile(0.5)) / 1e3);
    prog_tsc_ = now;
    prog_sent_ = *prog_sent_src_;
    prog_rx_ = rx;
}

TrialResult Engine::run(const TrialSpec& spec)
{
    trial_ = uint8_t(trial_ < 2 || trial_ == 255 ? 2 : trial_ + 1);
    received_ = handshakes_ = synacks_ = reordered_ = 0;
    last_seq_ = seq_ = 0;
    latency_.clear();
    count_handshakes_ = spec.load == Load::TcpSyn;

    TrialResult r;
    r.label = spec.label;
    r.rate = spec.rate;
    FlowCursor cursor(flows_);
    cursor.seek(spec.first_flow);
    const uint64_t start = rte_rdtsc(), end = start + tsc_of(spec.duration, hz_);
    const uint64_t limit = spec.max_packets ? spec.max_packets : UINT64_MAX;
    const double per_tsc = spec.rate / hz_;
    const uint64_t second = uint64_t(hz_);
    prog_tsc_ = start;
    prog_sent_ = prog_rx_ = 0;
    prog_sent_src_ = &r.sent;
    rte_mbuf* burst[kBurst];
    uint64_t now = start;
    for (; now < end && r.attempted < limit; now = rte_rdtsc()) {
        uint64_t want = std::min<uint64_t>(kBurst, limit - r.attempted);
        if (spec.rate > 0) {
            const uint64_t due = uint64_t(double(now - start) * per_tsc);
            want = due > r.attempted ? std::min<uint64_t>(want, due - r.attempted) : 0;
        }
        Backlog& replies = same_port_ ? backlog_rx_ : backlog_tx_;
        if (replies.n) flush_backlog(tx_.id(), replies);
        if (want && replies.n == 0) {
            if (rte_pktmbuf_alloc_bulk(pool_, burst, unsigned(want)) != 0) {
                ++r.alloc_failed;
            } else {
                build(burst, uint16_t(want), spec.load, cursor, &spec, now);
                const uint16_t sent = rte_eth_tx_burst(tx_.id(), 0, burst, uint16_t(want));
                if (sent < want) rte_pktmbuf_free_bulk(burst + sent, unsigned(want - sent));
                r.sent += sent;
                r.refused += want - sent;
                if (spec.rate > 0) r.attempted += want;
                else r.attempted += sent; // unpaced: a full port is back-pressure, not loss
            }
        }
        poll(now);
        if (!o_.quiet && now - prog_tsc_ >= second) progress(spec, now, start);
    }
    r.seconds = double(now - start) / hz_;
    drain_for(o_.drain);
    prog_sent_src_ = nullptr;

    r.received = count_handshakes_ ? handshakes_ : received_;
    r.synacks = synacks_;
    r.reordered = reordered_;
    r.lat_samples = latency_.count();
    r.lat_min = latency_.min();
    r.lat_p50 = latency_.percentile(0.5);
    r.lat_p99 = latency_.percentile(0.99);
    r.lat_p999 = latency_.percentile(0.999);
    r.lat_max = latency_.max();
    count_handshakes_ = false;
    return r;
}

WarmupResult Engine::warm_up(Load load, uint32_t first, uint32_t count)
{
    trial_ = 1;
    std::fill(seen_.begin(), seen_.end(), 0);
    received_ = 0;
    WarmupResult w;
    w.flows = count;
    const uint64_t start = rte_rdtsc();
    const double per_tsc = o_.warmup_rate / hz_;
    FlowCursor cursor(flows_);
    auto is_seen = [this](uint32_t f) { return (seen_[f / 64] >> (f % 64)) & 1; };
    for (w.rounds = 1; w.rounds <= 5; ++w.rounds) {
        const uint64_t round_start = rte_rdtsc();
        uint64_t attempted = 0;
        uint32_t f = first;
        // What the TX port did not take yet: retried before anything new, so
        // that back-pressure from a slow gateway slows the warm-up down
        // instead of losing flows.
        rte_mbuf* pending[kBurst];
        uint16_t npending = 0;
        while (f < first + count || npending) {
            const uint64_t now = rte_rdtsc();
            const uint64_t due = uint64_t(double(now - round_start) * per_tsc);
            if (npending == 0 && due > attempted && rte_pktmbuf_alloc_bulk(pool_, pending, kBurst) == 0) {
                // The flows still missing, up to a burst and up to what is due.
                uint16_t n = 0;
                for (; f < first + count && n < kBurst && attempted + n < due; ++f) {
                    if (f < o_.flows && is_seen(f)) continue;
                    cursor.seek(f);
                    build(pending + n, 1, load, cursor, nullptr, now);
                    ++n;
                }
                rte_pktmbuf_free_bulk(pending + n, kBurst - n);
                npending = n;
                attempted += n;
            }
            if (npending) {
                const uint16_t sent = rte_eth_tx_burst(tx_.id(), 0, pending, npending);
                std::copy(pending + sent, pending + npending, pending);
                npending = uint16_t(npending - sent);
            }
            poll(now);
        }
        drain_for(std::max(0.2, o_.drain));
        w.established = 0;
        for (uint32_t i = first; i < first + count && i < o_.flows; ++i) w.established += uint32_t(is_seen(i));
        if (!o_.quiet)
            std::fprintf(stderr, "ephemera-bench: warm-up round %u: %u of %u flows through\n", w.rounds,
                         w.established, count);
        if (w.established == count) break;
    }
    if (w.rounds > 5) w.rounds = 5;
    w.seconds = double(rte_rdtsc() - start) / hz_;
    return w;
}

} // namespace bench
