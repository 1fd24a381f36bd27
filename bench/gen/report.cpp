#include "report.hpp"

#include <string>

namespace bench {

namespace {

std::string mac_text(const rte_ether_addr& mac)
{
    char buf[RTE_ETHER_ADDR_FMT_SIZE];
    rte_ether_format_addr(buf, sizeof buf, &mac);
    return buf;
}

nlohmann::json port_json(const BenchPort& p)
{
    return {{"name", p.name()}, {"driver", p.driver()}, {"mac", mac_text(p.mac())}};
}

// --no-rx: nothing was counted at a sink, so received, rx_pps and loss_pct are null.
nlohmann::json trial_json(const TrialResult& t, bool tx_only)
{
    nlohmann::json j = {{"label", t.label},
            {"target_pps", t.rate},
            {"seconds", t.seconds},
            {"attempted", t.attempted},
            {"sent", t.sent},
            {"refused", t.refused},
            {"alloc_failed", t.alloc_failed},
            {"received", t.received},
            {"synacks", t.synacks},
            {"reordered", t.reordered},
            {"offered_pps", t.offered_pps()},
            {"rx_pps", t.rx_pps()},
            {"loss_pct", t.loss_pct()},
            {"latency_ns",
             {{"samples", t.lat_samples},
              {"min", t.lat_min},
              {"p50", t.lat_p50},
              {"p99", t.lat_p99},
              {"p99.9", t.lat_p999},
              {"max", t.lat_max}}}};
    if (tx_only)
        for (const char* k : {"received", "rx_pps", "loss_pct"}) j[k] = nullptr;
    return j;
}

// What the mode's answer is called and worth, per second.
std::pair<const char*, double> headline(const Options& o, const Outcome& out)
{
    if (o.tx_only) return {"offered_pps", out.result ? out.result->offered_pps() : 0};
    if (o.mode == Mode::Ndr) return {"ndr_pps", out.ndr_pps};
    if (o.mode == Mode::Cps) return {"cps", out.result ? out.result->rx_pps() : 0};
    return {"rx_pps", out.result ? out.result->rx_pps() : 0};
}

} // namespace

nlohmann::json report_json(const Options& o, const BenchPort& tx, const BenchPort& rx, const Engine& e,
                           const Outcome& out)
{
    nlohmann::json j;
    j["tool"] = "ephemera-bench";
    j["command"] = o.command_line;
    j["mode"] = to_string(o.mode);
    j["proto"] = to_string(o.proto);
    j["flows"] = o.flows;
    j["subscribers"] = o.subscriber_count();
    j["size"] = o.size;
    j["tx_only"] = o.tx_only;
    j["tx_port"] = port_json(tx);
    j["rx_port"] = port_json(rx);
    j["gateway_mac"] = mac_text(e.gateway_mac());
    if (out.warmup)
        j["warmup"] = {{"flows", out.warmup->flows},
                       {"established", out.warmup->established},
                       {"rounds", out.warmup->rounds},
                       {"seconds", out.warmup->seconds}};
    j["trials"] = nlohmann::json::array();
    for (const auto& t : out.trials) j["trials"].push_back(trial_json(t, o.tx_only));
    const auto [name, value] = headline(o, out);
    j["result"] = out.result ? trial_json(*out.result, o.tx_only) : nlohmann::json(nullptr);
    j[name] = value;
    if (o.mode == Mode::Ndr) {
        j["ndr_found"] = out.ndr_found;
        j["bound"] = out.bound < out.trials.size() ? trial_json(out.trials[out.bound], o.tx_only) : nlohmann::json(nullptr);
        j["loss_tolerance_pct"] = o.loss_tolerance;
    }
    const SinkCounters& s = e.sink();
    j["sink"] = {{"arp_answered", s.arp_answered},
                 {"syn_answered", s.syn_answered},
                 {"acks_sent", s.acks_sent},
                 {"stale", s.stale},
                 {"replies_dropped", s.replies_dropped},
                 {"other", s.other}};
    return j;
}

void print_table(std::FILE* f, const Options& o, const BenchPort& tx, const BenchPort& rx, const Engine& e,
                 const Outcome& out)
{
    std::fprintf(f, "\nephemera-bench: %s, %s, %u flows from %u subscribers, %u-byte frames; tx %s (%s), rx %s (%s)\n",
                 to_string(o.mode), to_string(o.proto), o.flows, o.subscriber_count(), unsigned(o.size),
                 tx.name().c_str(), tx.driver().c_str(), o.tx_only ? "none (--no-rx)" : rx.name().c_str(),
                 o.tx_only ? "-" : rx.driver().c_str());
    if (out.warmup)
        std::fprintf(f, "warm-up: %u of %u flows through the gateway in %u round(s), %.2f s\n",
                     out.warmup->established, out.warmup->flows, out.warmup->rounds, out.warmup->seconds);
    std::fprintf(f, "%-18s %12s %12s %12s %9s %9s %9s %9s\n", "trial", "target Mpps", "offered Mpps", "rx Mpps",
                 "loss %", "p50 us", "p99 us", "p99.9 us");
    for (const auto& t : out.trials)
        if (o.tx_only)
            std::fprintf(f, "%-18s %12.4f %12.4f %12s %9s %9s %9s %9s\n", t.label.c_str(), t.rate / 1e6,
                         t.offered_pps() / 1e6, "-", "-", "-", "-", "-");
        else
            std::fprintf(f, "%-18s %12.4f %12.4f %12.4f %9.4f %9.1f %9.1f %9.1f\n", t.label.c_str(), t.rate / 1e6,
                         t.offered_pps() / 1e6, t.rx_pps() / 1e6, t.loss_pct(), double(t.lat_p50) / 1e3,
                         double(t.lat_p99) / 1e3, double(t.lat_p999) / 1e3);
    const auto [name, value] = headline(o, out);
    if (o.mode == Mode::Ndr && !out.ndr_found)
        std::fprintf(f, "result: no rate passed with loss <= %.3f %%\n", o.loss_tolerance);
    else
        std::fprintf(f, "result: %s = %.4f M/s%s\n", name, value / 1e6,
                     o.mode == Mode::Cps && o.proto == Proto::Tcp ? " (completed handshakes)" : "");
    const SinkCounters& s = e.sink();
    std::fprintf(f, "sink: %llu ARP answered, %llu SYN answered, %llu ACK sent, %llu stale, %llu other\n",
                 (unsigned long long)s.arp_answered, (unsigned long long)s.syn_answered,
                 (unsigned long long)s.acks_sent, (unsigned long long)s.stale, (unsigned long long)s.other);
}

} // namespace bench
