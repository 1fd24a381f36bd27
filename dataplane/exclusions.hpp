// Destinations translation is turned off for (RFC 6888 REQ-6: it MUST be
// possible to do so administratively): inside traffic to them is routed out
// with its own source address, and their traffic to inside hosts is routed in.
//
// Exclusions: the prefixes, one rte_lpm shared read-only by every worker.
// LearnedMacs: per worker, the MAC each inside host sent from when it last
// reached an excluded destination, so that the answer can be routed back to
// it (the worker that owns the subscriber learns it and routes the answer).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <rte_ether.h>
#include <rte_lpm.h>

#include "ephemera/dpdk_array.hpp"

struct rte_hash;

namespace ephemera {

class Exclusions {
public:
    // prefixes: (address host order, length). Throws std::runtime_error.
    Exclusions(const std::vector<std::pair<uint32_t, uint8_t>>& prefixes, int socket);
    ~Exclusions();
    Exclusions(const Exclusions&) = delete;
    Exclusions& operator=(const Exclusions&) = delete;

    bool contains(uint32_t addr_net) const
    {
        uint32_t hop;
        return rte_lpm_lookup(lpm_, rte_be_to_cpu_32(addr_net), &hop) == 0;
    }

private:
    rte_lpm* lpm_ = nullptr;
};

class LearnedMacs {
public:
    LearnedMacs(uint32_t capacity, unsigned worker, int socket);
    ~LearnedMacs();
    LearnedMacs(const LearnedMacs&) = delete;
    LearnedMacs& operator=(const LearnedMacs&) = delete;

    // False when the table is full (the host's answers cannot be routed in).
    bool learn(uint32_t addr_net, const rte_ether_addr& mac);
    const rte_ether_addr* find(uint32_t addr_net) const;

private:
    rte_hash* hash_ = nullptr;
    DpdkArray<rte_ether_addr> macs_;
};

} // namespace ephemera
