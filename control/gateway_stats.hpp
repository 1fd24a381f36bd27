// The gateway's counters summed over workers, as JSON: for the stats file,
// the final report, and (later) the telemetry commands.
#pragma once

#include <memory>
#include <vector>

#include <nlohmann/json.hpp>

namespace ephemera {

class Worker;

nlohmann::json gateway_stats(const std::vector<std::unique_ptr<Worker>>& workers);

} // namespace ephemera
