#include "modes.hpp"

#include <algorithm>
#include <cstdio>

namespace bench {

namespace {

Load data_load(const Options& o) { return o.proto == Proto::Udp ? Load::UdpData : Load::TcpData; }

TrialSpec spec_for(const Options& o, std::string label, double rate)
{
    TrialSpec s;
    s.label = std::move(label);
    s.load = data_load(o);
    s.rate = rate;
    s.duration = o.duration;
    s.first_flow = 0;
    s.flow_count = o.flows;
    s.max_packets = o.packets;
    return s;
}

// Runs --repeat trials of `spec`; returns the index of the one with the median rx rate.
size_t run_repeated(const Options& o, Engine& engine, const TrialSpec& spec, Outcome& out)
{
    const size_t first = out.trials.size();
    for (unsigned i = 0; i < o.repeat; ++i) out.trials.push_back(engine.run(spec));
    std::vector<size_t> idx(o.repeat);
    for (unsigned i = 0; i < o.repeat; ++i) idx[i] = first + i;
    std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return out.trials[a].rx_pps() < out.trials[b].rx_pps(); });
    return idx[idx.size() / 2];
}

void search_ndr(const Options& o, Engine& engine, Outcome& out)
{
    double hi = o.rate;
    if (hi <= 0) { // the upper bound: what gets through unpaced (median of --repeat), plus a margin
        out.bound = run_repeated(o, engine, spec_for(o, "ndr bound", 0), out);
        hi = out.trials[out.bound].rx_pps() * 1.05;
    }
    double lo = 0;
    int best = -1;
    const double tolerance = o.loss_tolerance;
    for (unsigned i = 0; i < o.ndr_iterations && hi > 0; ++i) {
        // First the upper bound itself; then halve the interval.
        const double rate = i == 0 ? hi : (lo + hi) / 2;
        char label[64];
        std::snprintf(label, sizeof label, "ndr %.3f Mpps", rate / 1e6);
        out.trials.push_back(engine.run(spec_for(o, label, rate)));
        const TrialResult& t = out.trials.back();
        const bool pass = t.loss_pct() <= tolerance;
        if (!o.quiet)
            std::fprintf(stderr, "ephemera-bench: %s: loss %.4f %% -> %s\n", label, t.loss_pct(),
                         pass ? "pass" : "fail");
        if (pass) {
            lo = rate;
            best = int(out.trials.size() - 1);
            if (i == 0) break;
        } else {
            hi = rate;
        }
        if ((hi - lo) / hi * 100 < o.ndr_resolution) break;
    }
    if (best >= 0) {
        out.result = &out.trials[size_t(best)];
        out.ndr_pps = out.result->offered_pps();
        out.ndr_found = true;
    }
}

} // namespace

Outcome run_mode(const Options& o, Engine& engine)
{
    Outcome out;
    out.trials.reserve(o.ndr_iterations + o.repeat + 2); // result points into it
    const Load warm = o.proto == Proto::Udp ? Load::UdpData : Load::TcpSyn;
    switch (o.mode) {
    case Mode::Rate:
        out.trials.push_back(engine.run(spec_for(o, "rate", o.rate)));
        out.result = &out.trials.back();
        break;
    case Mode::Established:
        out.warmup = engine.warm_up(warm, 0, o.flows);
        out.result = &out.trials[run_repeated(o, engine, spec_for(o, "established", o.rate), out)];
        break;
    case Mode::Ndr:
        out.warmup = engine.warm_up(warm, 0, o.flows);
        search_ndr(o, engine, out);
        break;
    case Mode::Cps: {
        TrialSpec s = spec_for(o, "cps", o.rate);
        s.load = o.proto == Proto::Udp ? Load::UdpData : Load::TcpSyn;
        s.flow_count = 0; // never wrap: every packet (UDP) or SYN (TCP) opens a new flow
        out.trials.push_back(engine.run(s));
        out.result = &out.trials.back();
        break;
    }
    }
    return out;
}

} // namespace bench
