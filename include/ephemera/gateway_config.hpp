// The daemon's configuration: the translation core's NatConfig plus the
// ports, addresses and threads of a running gateway. Loaded from TOML.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ephemera/config.hpp"

namespace ephemera {

// How return traffic reaches the worker that owns its external port.
enum class Steering : uint8_t { Auto, FlowRules, Handoff };
const char* to_string(Steering s);

struct Interface {
    std::string port;      // "auto:IFACE", a vdev string ("net_af_packet0,iface=x") or a PCI address
    uint32_t address = 0;  // host order
    uint8_t prefix_len = 24;
    // The largest IPv4 packet sent on this side (RFC 4787 REQ-13): bigger
    // ones are fragmented, or answered with ICMP 3/4 when they forbid it.
    uint16_t mtu = 1500;
};

// The mapping log for abuse tracing (RFC 6888 REQ-12, RFC 8158).
struct MappingLogConfig {
    std::string file;            // text log, one line per event; empty: none
    bool syslog = false;         // the same lines to syslog (LOG_DAEMON)
    std::string ipfix_collector; // "ADDR:PORT" (UDP); empty: no IPFIX
    uint32_t ipfix_domain = 1;   // observation domain id
    bool destinations = false;   // RFC 6888 REQ-12: off by default
    uint32_t ring = 65536;       // events queued per worker before they are counted lost
    // Appended to the log's start line by the daemon (not a config key): in
    // deterministic mode the mapping in force, so that the log keeps the
    // configuration's history that RFC 7422 answers "who held it" from.
    std::string start_note;
};

struct MetricsConfig {
    std::string listen = "127.0.0.1:9469"; // Prometheus text endpoint; "" to turn off
};

// PCP server for the subscribers (RFC 6887, RFC 6888 REQ-9) on the inside address, UDP 5351.
struct PcpConfig {
    bool enabled = false;
    uint32_t min_lifetime = 120;   // seconds granted at least (RFC 6887 §15)
    uint32_t max_lifetime = 86400; // and at most
};

struct GatewayConfig {
    std::vector<std::string> eal_args;
    std::string lcores;                 // --lcores value; empty: one core per lcore from 0
    Interface inside, outside;
    uint32_t next_hop = 0;              // outside next hop, host order
    std::optional<std::array<uint8_t, 6>> next_hop_mac; // static instead of ARP
    Steering steering = Steering::Auto;
    uint32_t mbufs = 0;                 // 0: sized from workers and descriptors
    uint16_t rx_descriptors = 1024;
    uint16_t tx_descriptors = 1024;
    uint32_t handoff_ring = 1024;       // per worker pair and direction
    uint32_t icmp_rate = 100;           // ICMP errors generated per second per worker
    uint32_t reassembly = 256;          // datagrams reassembled at once per worker; 0: fragments dropped
    uint32_t reassembly_timeout = 2;    // seconds an incomplete datagram is kept
    bool mss_clamp = false;             // lower TCP SYNs' MSS to min(inside, outside mtu) - 40
    bool icmp_on_limit = true;          // answer a refused new flow with ICMP 3/13 (RFC 6888 REQ-11)
    bool icmp_on_unsolicited_syn = true; // answer an unsolicited inbound SYN with ICMP 3/3 after 6 s (RFC 5382 REQ-4)
    std::vector<std::string> static_mappings; // "PROTO INSIDE:PORT POOLADDR:PORT", made at start
    // nat.exclude: destinations not translated (RFC 6888 REQ-6), (address host order, prefix length)
    std::vector<std::pair<uint32_t, uint8_t>> exclude;
    NatConfig nat;
    MappingLogConfig log;
    MetricsConfig metrics;
    PcpConfig pcp;
};

// Reads and validates FILE. Throws ConfigError with "FILE: key = value: why"
// (unknown keys included) for anything that cannot be used.
GatewayConfig load_gateway_config(const std::string& path);
GatewayConfig parse_gateway_config(const std::string& toml_text, const std::string& source_name);

} // namespace ephemera
