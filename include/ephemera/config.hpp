// Translation-core configuration: everything the NAT needs to size its tables and
// decide behaviour. The daemon fills it from TOML (control/); tests fill it directly.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace ephemera {

// RFC 4787 REQ-8: which inbound packets a mapping admits.
enum class FilteringMode : uint8_t {
    EndpointIndependent,     // anyone may reach X':x' (RFC 6888 REQ-7 default)
    AddressDependent,        // only hosts X has sent to
    AddressAndPortDependent, // only host:port pairs X has sent to
};

const char* to_string(FilteringMode mode);
// Parses "endpoint-independent" | "address-dependent" | "address-and-port-dependent".
FilteringMode parse_filtering_mode(const std::string& text);

struct PortRange {
    uint16_t first = 49152; // IANA dynamic range by default (RFC 6335)
    uint16_t last = 65535;
    uint32_t size() const { return uint32_t(last) - first + 1; }
};

// All in seconds. Defaults are RFC 4787 REQ-5c, RFC 5382 REQ-5, RFC 5508 REQ-2,
// RFC 6888 REQ-8.
// Limits of the timeouts, in the configuration file and at run time alike.
inline constexpr uint32_t kMaxTimeout = 31u * 24 * 3600; // 2678400 s, 31 days
inline constexpr uint32_t kMaxQuarantine = 3600;

struct Timeouts {
    uint32_t udp = 300;
    uint32_t tcp_established = 7440;
    uint32_t tcp_transitory = 240;
    uint32_t icmp = 60;
    uint32_t sctp = 300;
    uint32_t quarantine = 120;
};

struct NatConfig {
    std::vector<uint32_t> pool;        // pool addresses, host byte order
    PortRange ports;
    Timeouts timeouts;
    FilteringMode filtering = FilteringMode::EndpointIndependent;
    unsigned workers = 1;
    bool port_parity = false;          // RFC 4787 REQ-4
    bool port_preservation = false;    // the inside source port itself, when free in the owner's partition
    bool randomize_ports = true;       // initial FIFO order shuffled (RFC 6056 spirit)
    uint64_t port_seed = 0x6570686d;   // seed of that shuffle: same seed, same order
    uint32_t max_mappings = 1u << 16;  // per worker
    uint32_t max_extra_sessions = 1u << 16; // per worker: sessions beyond a mapping's first
    uint32_t max_sessions_per_mapping = 1024; // RFC 6888 REQ-5
    uint32_t max_ports_per_subscriber = 0;    // RFC 6888 REQ-4, all protocols together; 0: no limit
    uint32_t max_subscribers = 1u << 16;      // per worker, when a port limit or port blocks are set
    uint32_t port_block_size = 0;             // ports per block (port-block mode); 0: one port at a time
    uint32_t max_blocks_per_subscriber = 8;   // port-block mode (and deterministic overflow): blocks one subscriber may hold
    uint32_t max_static_mappings = 1024;      // port forwards (ephemeractl static), for the gateway
    bool explicit_mappings = false;           // PCP (RFC 6887) may make mappings: keep their nonces
    // RFC 7422 deterministic mode (deterministic.hpp): every address of this
    // inside prefix (host order) has a fixed pool address and port range.
    bool deterministic = false;
    uint32_t deterministic_prefix = 0;
    uint8_t deterministic_len = 32;
    // RFC 7422 §2.3 overflow: ranges of each worker's share of a pool address
    // kept back from the hosts and lent, one at a time, to hosts whose own
    // range is full (logged as blocks; max_blocks_per_subscriber per host).
    uint32_t deterministic_overflow = 0;
};

// A configuration value that cannot be used. what() names the key and the value.
class ConfigError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Checks a port range on its own (errors name nat.ports).
void validate_port_range(uint32_t first, uint32_t last);
// Throws ConfigError for the first value that cannot be used.
void validate(const NatConfig& config);

// The netmask of a prefix length 0-32, host order.
constexpr uint32_t prefix_mask(unsigned len) { return len == 0 ? 0 : ~uint32_t(0) << (32 - len); }

// Why no host, gateway or pool can use this address (host order): "a
// multicast address" and the like; nullptr when it can.
const char* unusable_address(uint32_t host_order);

// "198.51.100.7" -> host-order address; throws ConfigError naming the text.
uint32_t parse_ipv4(const std::string& text);
std::string format_ipv4(uint32_t host_order);
// "198.51.100.0/28" or a single address -> the addresses it covers, in order.
std::vector<uint32_t> parse_ipv4_prefix(const std::string& text);

} // namespace ephemera
