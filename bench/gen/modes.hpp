// The four measurements, each a sequence of trials on an Engine:
//   rate        one trial at --rate over the flows (no warm-up)
//   established RFC 9693 throughput: warm up --flows sessions, then one trial at --rate
//   ndr         RFC 2544 no-drop rate: warm up, then a binary search on the rate
//               for the highest with loss <= --loss-tolerance
//   cps         RFC 9693 connections per second: UDP, every packet a new flow;
//               TCP, SYN -> SYN-ACK -> ACK, counted when the sink gets the ACK
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "engine.hpp"
#include "options.hpp"

namespace bench {

struct Outcome {
    std::optional<WarmupResult> warmup;
    std::vector<TrialResult> trials;
    const TrialResult* result = nullptr; // the trial that is the answer (ndr: the best passing one)
    size_t bound = SIZE_MAX;             // ndr: the unpaced trial (median of --repeat) that bounded the search
    double ndr_pps = 0;                  // ndr only
    bool ndr_found = false;
};

Outcome run_mode(const Options& o, Engine& engine);

} // namespace bench
