#include "gateway_stats.hpp"

#include <rte_ethdev.h>

#include "../dataplane/gateway_worker.hpp"

namespace ephemera {

namespace {

// What the ports themselves count: packets the NIC (or the kernel ring under
// af_xdp/af_packet) dropped before a worker saw them, which no worker counter
// can show.
nlohmann::json nic_counters(const std::vector<std::unique_ptr<Worker>>& workers)
{
    nlohmann::json missed = nlohmann::json::object(), rx_errors = nlohmann::json::object(),
                   tx_errors = nlohmann::json::object(), no_mbuf = nlohmann::json::object();
    if (!workers.empty()) {
        const GatewayShared& sh = workers.front()->shared();
        const char* names[2] = {"inside", "outside"};
        for (unsigned p = 0; p < 2; ++p) {
            rte_eth_stats st{};
            if (rte_eth_stats_get(sh.port[p], &st) != 0) continue;
            missed[names[p]] = st.imissed;
            rx_errors[names[p]] = st.ierrors;
            tx_errors[names[p]] = st.oerrors;
            no_mbuf[names[p]] = st.rx_nombuf;
        }
    }
    return {{"missed", missed}, {"rx_errors", rx_errors}, {"tx_errors", tx_errors}, {"rx_no_mbuf", no_mbuf}};
}

nlohmann::json log_counters(const std::vector<std::unique_ptr<Worker>>& workers)
{
    if (workers.empty()) return nlohmann::json::object();
    const GatewayShared::LogCounters& c = workers.front()->shared().log;
    return {{"events", c.events.load(std::memory_order_relaxed)},
            {"ipfix_messages", c.ipfix_messages.load(std::memory_order_relaxed)},
            {"errors",
             {{"ipfix", c.ipfix_errors.load(std::memory_order_relaxed)},
              {"file", c.file_errors.load(std::memory_order_relaxed)}}}};
}

// Created minus released, read while workers go on counting: a release read
// after its creation was read could briefly make the difference negative.
uint64_t live(uint64_t created, uint64_t released) { return created > released ? created - released : 0; }

// Live mappings and sessions, creations and releases for each protocol.
nlohmann::json by_protocol(const WorkerStats& nat)
{
    nlohmann::json mappings, sessions, mappings_created, mappings_released, sessions_created, sessions_released;
    for (unsigned l = 0; l < kL4Count; ++l) {
        const char* name = to_string(L4(l));
        mappings[name] = live(nat.mappings_created[l], nat.mappings_released[l]);
        sessions[name] = live(nat.sessions_created[l], nat.sessions_released[l]);
        mappings_created[name] = nat.mappings_created[l];
        mappings_released[name] = nat.mappings_released[l];
        sessions_created[name] = nat.sessions_created[l];
        sessions_released[name] = nat.sessions_released[l];
    }
    return {{"mappings", mappings},
            {"sessions", sessions},
            {"mappings_created", mappings_created},
            {"mappings_released", mappings_released},
            {"sessions_created", sessions_created},
            {"sessions_released", sessions_released}};
}

} // namespace

nlohmann::json gateway_stats(const std::vector<std::unique_ptr<Worker>>& workers)
{
    WorkerStats nat;
    GatewayCounters gw;
    uint64_t mappings = 0;
    for (const auto& w : workers) {
        const WorkerStats& s = w->translator().stats();
        for (unsigned d = 0; d < 2; ++d) {
            nat.rx[d] += s.rx[d];
            nat.tx[d] += s.tx[d];
            nat.icmp_errors[d] += s.icmp_errors[d];
            for (unsigned r = 0; r < kDropCount; ++r) nat.drops[d][r] += s.drops[d][r];
        }
        for (unsigned l = 0; l < kL4Count; ++l) {
            nat.mappings_created[l] += s.mappings_created[l];
            nat.mappings_released[l] += s.mappings_released[l];
            nat.sessions_created[l] += s.sessions_created[l];
            nat.sessions_released[l] += s.sessions_released[l];
        }
        nat.parity_fallbacks += s.parity_fallbacks;
        nat.ports_preserved += s.ports_preserved;
        nat.events_lost += s.events_lost;
        nat.carried_used += s.carried_used;
        nat.carried_stale += s.carried_stale;
        const GatewayCounters& c = w->counters();
        for (unsigned p = 0; p < 2; ++p) {
            gw.rx[p] += c.rx[p];
            gw.tx[p] += c.tx[p];
            gw.tx_dropped[p] += c.tx_dropped[p];
            gw.handed_off[p] += c.handed_off[p];
            gw.handoff_full[p] += c.handoff_full[p];
        }
        gw.hairpinned += c.hairpinned;
        gw.arp_replies += c.arp_replies;
        gw.arp_ignored += c.arp_ignored;
        gw.arp_requests_sent += c.arp_requests_sent;
        gw.echo_replies += c.echo_replies;
        gw.time_exceeded_sent += c.time_exceeded_sent;
        gw.prohibited_sent += c.prohibited_sent;
        gw.frag_needed_sent += c.frag_needed_sent;
        gw.too_big += c.too_big;
        gw.fragmented += c.fragmented;
        gw.fragments_sent += c.fragments_sent;
        gw.fragment_failed += c.fragment_failed;
        gw.fragments_received += c.fragments_received;
        gw.reassembled += c.reassembled;
        gw.reassembly_dropped += c.reassembly_dropped;
        gw.untranslated[0] += c.untranslated[0];
        gw.untranslated[1] += c.untranslated[1];
        gw.untranslated_dropped += c.untranslated_dropped;
        gw.mss_clamped += c.mss_clamped;
        gw.icmp_rate_limited += c.icmp_rate_limited;
        gw.no_next_hop += c.no_next_hop;
        gw.not_for_us += c.not_for_us;
        gw.local_dropped += c.local_dropped;
        gw.mappings_expired += c.mappings_expired;
        gw.syns_held += c.syns_held;
        gw.syns_not_held += c.syns_not_held;
        gw.syns_superseded += c.syns_superseded;
        gw.port_unreachable_sent += c.port_unreachable_sent;
        gw.pcp_requests += c.pcp_requests;
        gw.pcp_errors += c.pcp_errors;
        gw.pcp_dropped += c.pcp_dropped;
        mappings += w->translator().table().mapping_count();
    }
    nlohmann::json drops;
    for (Dir d : {Dir::Out, Dir::In}) {
        nlohmann::json by_reason = nlohmann::json::object();
        for (unsigned r = 0; r < kDropCount; ++r) by_reason[to_string(Drop(r))] = nat.drops[unsigned(d)][r];
        drops[to_string(d)] = by_reason;
    }
    return {
        {"rx", {{"inside", gw.rx[0]}, {"outside", gw.rx[1]}}},
        {"tx", {{"inside", gw.tx[0]}, {"outside", gw.tx[1]}}},
        {"tx_dropped", {{"inside", gw.tx_dropped[0]}, {"outside", gw.tx_dropped[1]}}},
        {"translated", {{"out", nat.tx[0]}, {"in", nat.tx[1]}}},
        {"icmp_errors_translated", {{"out", nat.icmp_errors[0]}, {"in", nat.icmp_errors[1]}}},
        {"drops", drops},
        {"mappings", mappings},
        {"sessions", live(total(nat.sessions_created), total(nat.sessions_released))},
        {"mappings_created", total(nat.mappings_created)},
        {"mappings_released", total(nat.mappings_released)},
        {"sessions_created", total(nat.sessions_created)},
        {"sessions_released", total(nat.sessions_released)},
        {"by_protocol", by_protocol(nat)},
        {"handoff", {{"out", gw.handed_off[0]}, {"in", gw.handed_off[1]}}},
        {"handoff_full", {{"out", gw.handoff_full[0]}, {"in", gw.handoff_full[1]}}},
        {"handoff_index", {{"used", nat.carried_used}, {"stale", nat.carried_stale}}},
        {"hairpinned", gw.hairpinned},
        {"arp_replies", gw.arp_replies},
        {"arp_ignored", gw.arp_ignored},
        {"arp_requests_sent", gw.arp_requests_sent},
        {"echo_replies", gw.echo_replies},
        {"time_exceeded_sent", gw.time_exceeded_sent},
        {"prohibited_sent", gw.prohibited_sent},
        {"frag_needed_sent", gw.frag_needed_sent},
        {"too_big", gw.too_big},
        {"fragmented", gw.fragmented},
        {"fragments_sent", gw.fragments_sent},
        {"fragment_failed", gw.fragment_failed},
        {"fragments_received", gw.fragments_received},
        {"reassembled", gw.reassembled},
        {"reassembly_dropped", gw.reassembly_dropped},
        {"untranslated", {{"out", gw.untranslated[0]}, {"in", gw.untranslated[1]}}},
        {"untranslated_dropped", gw.untranslated_dropped},
        {"mss_clamped", gw.mss_clamped},
        {"icmp_rate_limited", gw.icmp_rate_limited},
        {"no_next_hop", gw.no_next_hop},
        {"not_for_us", gw.not_for_us},
        {"local_dropped", gw.local_dropped},
        {"mappings_expired", gw.mappings_expired},
        {"unsolicited_syn",
         {{"held", gw.syns_held},
          {"not_held", gw.syns_not_held},
          {"superseded", gw.syns_superseded},
          {"answered", gw.port_unreachable_sent}}},
        {"pcp", {{"answered", gw.pcp_requests}, {"errors", gw.pcp_errors}, {"dropped", gw.pcp_dropped}}},
        {"parity_fallbacks", nat.parity_fallbacks},
        {"ports_preserved", nat.ports_preserved},
        {"events_lost", nat.events_lost},
        {"log", log_counters(workers)},
        {"nic", nic_counters(workers)},
        {"workers", workers.size()},
    };
}

} // namespace ephemera
