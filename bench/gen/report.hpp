// The end of a run: a table for people, JSON for scripts.
#pragma once

#include <cstdio>

#include <nlohmann/json.hpp>

#include "bench_port.hpp"
#include "engine.hpp"
#include "modes.hpp"
#include "options.hpp"

namespace bench {

nlohmann::json report_json(const Options& o, const BenchPort& tx, const BenchPort& rx, const Engine& e,
                           const Outcome& out);
void print_table(std::FILE* f, const Options& o, const BenchPort& tx, const BenchPort& rx, const Engine& e,
                 const Outcome& out);

} // namespace bench
