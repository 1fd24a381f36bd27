// Steering done by the NIC where the port can: outside packets to the worker
// that owns their external port by rte_flow rules on the L4 destination port
// (value/mask rules covering each worker's block of the range), inside packets
// by RSS over the IPv4 source alone with a key and redirection table we set,
// so that software computes the same owner.
//
// Either is a shortcut, never the guarantee: workers still work out each
// packet's owner and hand off what the NIC put elsewhere. A NIC that matches
// differently from what it accepted costs handoffs (counted), never a packet
// translated by the wrong worker.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <rte_ethdev.h>

#include "ephemera/port_allocator.hpp"

struct rte_flow;

namespace ephemera::hw {

// A rule's match on a 16-bit field: (field & mask) == value.
struct PortPrefix {
    uint16_t value;
    uint16_t mask;
    bool matches(uint16_t port) const { return (port & mask) == value; }
};

// The fewest prefixes whose matches are exactly [first, last] (at most 30).
std::vector<PortPrefix> port_prefixes(uint16_t first, uint16_t last);

// The Toeplitz hash a NIC computes over an IPv4 source address alone (RSS
// with L3_SRC_ONLY). The hash is linear in its input bits, so it is the XOR
// of each input byte's contribution: four table reads per packet.
class SourceHash {
public:
    static constexpr unsigned kKeyBytes = 40;
    using Key = std::array<uint8_t, kKeyBytes>;
    static const Key& default_key(); // the one ephemera programs into NICs

    explicit SourceHash(const Key& key = default_key());
    uint32_t operator()(uint32_t src_net) const
    {
        const auto* b = reinterpret_cast<const uint8_t*>(&src_net); // network order: b[0] first on the wire
        return t_[0][b[0]] ^ t_[1][b[1]] ^ t_[2][b[2]] ^ t_[3][b[3]];
    }

private:
    uint32_t t_[4][256];
};

// Inside steering by the NIC's RSS: the owner of a subscriber is the queue its
// source hash selects in the redirection table (entry = hash mod table size).
struct SourceRss {
    SourceHash hash;
    std::vector<uint16_t> reta; // queue per entry; size a power of two
    unsigned owner(uint32_t src_net) const { return reta[hash(src_net) & (reta.size() - 1)]; }
};

// One outside rule: L4 protocol (IPPROTO_*; ICMP matches echo replies by
// identifier), destination port prefix, queue.
struct OutsideRule {
    uint8_t proto;
    PortPrefix port;
    uint16_t queue;
};

// Every rule that sends a worker's external ports to its queue, TCP, UDP and
// SCTP by destination port, ICMP echo replies by identifier.
std::vector<OutsideRule> outside_rules(const PortLayout& layout);

// The rules installed on a started port; destroyed with the object.
class FlowRules {
public:
    // Validates every rule first and installs none unless the port accepts
    // all its TCP and UDP rules: error() then says which one it refused and
    // why. SCTP or ICMP rules it refuses are left out, that protocol handed
    // off in software, as skipped() reports.
    FlowRules(uint16_t port_id, const std::vector<OutsideRule>& rules);
    ~FlowRules();
    FlowRules(const FlowRules&) = delete;
    FlowRules& operator=(const FlowRules&) = delete;

    bool ok() const { return error_.empty(); }
    const std::string& error() const { return error_; }
    size_t installed() const { return flows_.size(); }
    const std::vector<std::string>& skipped() const { return skipped_; }

private:
    uint16_t port_;
    std::vector<rte_flow*> flows_;
    std::string error_;
    std::vector<std::string> skipped_;
};

// RSS over the IPv4 source alone, if the port offers it: the key and hash
// functions to configure it with (before rte_eth_dev_configure), or why not.
struct RssPlan {
    bool on = false;
    std::string why;                 // when !on
    std::vector<uint8_t> key;        // programmed into the port (its key size)
    uint64_t hash_functions = 0;     // rss_hf
};
RssPlan plan_source_rss(const rte_eth_dev_info& info, uint16_t queues);
// After configure: programs the redirection table (entry i -> queue i % queues)
// and returns the SourceRss software uses; false, with why, if the port refuses.
bool program_reta(uint16_t port_id, const rte_eth_dev_info& info, uint16_t queues, const RssPlan& plan,
                  SourceRss& out, std::string& why);

} // namespace ephemera::hw
