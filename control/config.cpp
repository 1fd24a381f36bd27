// Validation and small parsers for NatConfig. Every error names the key (as
// the configuration file spells it) and the value, so an operator can find
// the line to fix; the parsers of one value (an address, a prefix) name the
// value only, and their caller adds the key it came from.
#include "ephemera/config.hpp"
#include "ephemera/deterministic.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <string_view>

namespace ephemera {

namespace {

[[noreturn]] void fail(const std::string& key, const std::string& value, const std::string& why)
{
    throw ConfigError(key + " = " + value + ": " + why);
}

[[noreturn]] void bad_value(const std::string& text, const std::string& why)
{
    throw ConfigError("\"" + text + "\": " + why);
}

} // namespace

const char* to_string(FilteringMode mode)
{
    switch (mode) {
    case FilteringMode::EndpointIndependent: return "endpoint-independent";
    case FilteringMode::AddressDependent: return "address-dependent";
    case FilteringMode::AddressAndPortDependent: return "address-and-port-dependent";
    }
    return "?";
}

FilteringMode parse_filtering_mode(const std::string& text)
{
    for (auto mode : {FilteringMode::EndpointIndependent, FilteringMode::AddressDependent,
                      FilteringMode::AddressAndPortDependent})
        if (text == to_string(mode)) return mode;
    fail("nat.filtering", "\"" + text + "\"",
         "expected endpoint-independent, address-dependent or address-and-port-dependent");
}

// "\"FIRST-LAST\"", as the file writes nat.ports. Appended piece by piece:
// GCC 12 at -O3 takes "\"" + std::to_string(n) for an overlapping memcpy
// (a false -Wrestrict, GCC bug 105329).
static std::string range_text(uint32_t first, uint32_t last)
{
    std::string s = "\"";
    s += std::to_string(first);
    s += '-';
    s += std::to_string(last);
    s += '"';
    return s;
}

void validate_port_range(uint32_t first, uint32_t last)
{
    const std::string value = range_text(first, last);
    if (first < 1024 || first > 65535)
        fail("nat.ports", value, "the first port, " + std::to_string(first) + ", is outside 1024-65535");
    if (last < 1024 || last > 65535)
        fail("nat.ports", value, "the last port, " + std::to_string(last) + ", is outside 1024-65535");
    if (first > last) fail("nat.ports", value, "the first port is above the last");
}

void validate(const NatConfig& c)
{
    validate_port_range(c.ports.first, c.ports.last);
    if (c.pool.empty()) fail("nat.pool", "[]", "the NAT pool needs at least one address");
    if (c.pool.size() > 65535) fail("nat.pool", std::to_string(c.pool.size()) + " addresses", "at most 65535 addresses");
    for (uint32_t a : c.pool)
        if (const char* why = unusable_address(a)) fail("nat.pool", format_ipv4(a), std::string("not usable: ") + why);
    std::vector<uint32_t> sorted = c.pool;
    std::sort(sorted.begin(), sorted.end());
    if (auto twice = std::adjacent_find(sorted.begin(), sorted.end()); twice != sorted.end())
        fail("nat.pool", format_ipv4(*twice), "address listed twice");
    if (c.workers == 0 || c.workers > 128) fail("dataplane.workers", std::to_string(c.workers), "expected 1-128");
    if (c.ports.size() < c.workers * (c.port_parity ? 2u : 1u))
        fail("nat.ports", range_text(c.ports.first, c.ports.last),
             "fewer ports than dataplane.workers (" + std::to_string(c.workers) + ")" +
                 std::string(c.port_parity ? " x 2 (port parity)" : ""));
    auto positive = [](const char* key, uint32_t v) {
        if (v == 0) fail(key, "0", "must be at least 1 second");
        if (v > kMaxTimeout) fail(key, std::to_string(v), "longer than 31 days");
    };
    positive("timeouts.udp", c.timeouts.udp);
    positive("timeouts.tcp_established", c.timeouts.tcp_established);
    positive("timeouts.tcp_transitory", c.timeouts.tcp_transitory);
    positive("timeouts.icmp", c.timeouts.icmp);
    positive("timeouts.sctp", c.timeouts.sctp);
    if (c.timeouts.quarantine > kMaxQuarantine)
        fail("timeouts.quarantine", std::to_string(c.timeouts.quarantine), "longer than 3600 seconds");
    if (c.max_mappings < 8 || c.max_mappings > (1u << 26))
        fail("nat.max_mappings", std::to_string(c.max_mappings), "expected 8-67108864 per worker");
    if (c.max_extra_sessions < 8 || c.max_extra_sessions > (1u << 26))
        fail("nat.max_extra_sessions", std::to_string(c.max_extra_sessions), "expected 8-67108864 per worker");
    if (c.max_ports_per_subscriber > 4u * 65536)
        fail("nat.max_ports_per_subscriber", std::to_string(c.max_ports_per_subscriber), "expected 0 (no limit) to 262144");
    if (c.max_subscribers < 8 || c.max_subscribers > (1u << 24))
        fail("nat.max_subscribers", std::to_string(c.max_subscribers), "expected 8-16777216 per worker");
    if (c.port_block_size != 0) {
        const uint32_t share = c.ports.size() / c.workers; // the smallest worker partition
        if (c.port_block_size > share)
            fail("nat.port_block_size", std::to_string(c.port_block_size),
                 "larger than a worker's share of the port range (" + std::to_string(share) + " ports)");
        if (c.port_parity)
            fail("nat.port_parity", "true", "cannot be combined with nat.port_block_size (a block is consecutive ports)");
        if (c.max_blocks_per_subscriber == 0 || c.max_blocks_per_subscriber > 1024)
            fail("nat.max_blocks_per_subscriber", std::to_string(c.max_blocks_per_subscriber), "expected 1-1024");
    }
    if (c.port_preservation && (c.port_block_size != 0 || c.deterministic))
        fail("nat.port_preservation", "true",
             "cannot be combined with nat.port_block_size or nat.deterministic (their ports come from blocks)");
    if (c.deterministic) {
        if (c.port_block_size != 0)
            fail("nat.port_block_size", std::to_string(c.port_block_size),
                 "cannot be combined with nat.deterministic (each host has one fixed range of ports)");
        if (c.port_parity)
            fail("nat.port_parity", "true", "cannot be combined with nat.deterministic (a range is consecutive ports)");
        if (c.deterministic_overflow != 0 && (c.max_blocks_per_subscriber == 0 || c.max_blocks_per_subscriber > 1024))
            fail("nat.max_blocks_per_subscriber", std::to_string(c.max_blocks_per_subscriber), "expected 1-1024");
        DeterministicMap(c.deterministic_prefix, c.deterministic_len, uint32_t(c.pool.size()),
                         PortLayout(c.ports, c.workers),
                         c.deterministic_overflow); // throws when some host would get no port
    } else if (c.deterministic_overflow != 0) {
        fail("nat.deterministic_overflow", std::to_string(c.deterministic_overflow),
             "needs nat.deterministic (it lends ranges to deterministic hosts)");
    }
    if (c.max_sessions_per_mapping == 0 || c.max_sessions_per_mapping > 65535)
        fail("nat.max_sessions_per_mapping", std::to_string(c.max_sessions_per_mapping), "expected 1-65535");
}

const char* unusable_address(uint32_t a)
{
    if ((a >> 24) == 0) return "in 0.0.0.0/8 (this network)";
    if ((a >> 24) == 127) return "a loopback address (127.0.0.0/8)";
    if ((a >> 28) == 0xe) return "a multicast address (224.0.0.0/4)";
    if (a == 0xffffffffu) return "the limited broadcast address";
    if ((a >> 28) == 0xf) return "a reserved address (240.0.0.0/4)";
    return nullptr;
}

uint32_t parse_ipv4(const std::string& text)
{
    in_addr a{};
    if (inet_pton(AF_INET, text.c_str(), &a) != 1) bad_value(text, "not an IPv4 address");
    return ntohl(a.s_addr);
}

std::string format_ipv4(uint32_t host_order)
{
    char buf[INET_ADDRSTRLEN];
    in_addr a{htonl(host_order)};
    inet_ntop(AF_INET, &a, buf, sizeof buf);
    return buf;
}

std::vector<uint32_t> parse_ipv4_prefix(const std::string& text)
{
    const auto slash = text.find('/');
    if (slash == std::string::npos) return {parse_ipv4(text)};
    uint32_t base = 0;
    try {
        base = parse_ipv4(text.substr(0, slash));
    } catch (const ConfigError&) {
        bad_value(text, "not an IPv4 prefix (address/length)");
    }
    const std::string_view len_text = std::string_view(text).substr(slash + 1);
    unsigned len = 0;
    auto [end, ec] = std::from_chars(len_text.data(), len_text.data() + len_text.size(), len);
    if (ec != std::errc{} || end != len_text.data() + len_text.size() || len > 32 || len_text.empty())
        bad_value(text, "prefix length must be 0-32");
    if (len < 16) bad_value(text, "prefixes shorter than /16 are not accepted as a pool");
    if ((base & ~prefix_mask(len)) != 0) bad_value(text, "host bits set after the prefix length");
    std::vector<uint32_t> out;
    const uint64_t count = uint64_t(1) << (32 - len);
    out.reserve(count);
    for (uint64_t i = 0; i < count; ++i) out.push_back(base + uint32_t(i));
    return out;
}

} // namespace ephemera
