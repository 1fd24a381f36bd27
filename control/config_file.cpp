// TOML -> GatewayConfig. Every key is known here; an unknown key, a wrong type
// or an unusable value is an error that names the key, so a typo never turns
// silently into a default.
#include "ephemera/gateway_config.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <random>
#include <set>

#define TOML_EXCEPTIONS 1
// toml++ 3.3.0 asserts on some malformed input (a key that starts with a
// backslash, as in [\cp]) that its parser goes on to report as a parse error when the
// assertion is compiled out. Its internal checks stay off in every build, so
// that a damaged configuration gets an error message, never an abort (the
// fuzz test in test_gateway_config.cpp found it).
#define TOML_ASSERT(expr) static_cast<void>(0)
#include <toml++/toml.h>

namespace ephemera {

const char* to_string(Steering s)
{
    switch (s) {
    case Steering::Auto: return "auto";
    case Steering::FlowRules: return "flow";
    case Steering::Handoff: return "handoff";
    }
    return "?";
}

namespace {

class Reader {
public:
    explicit Reader(const toml::table& root) : root_(root) {}

    // Fails on any key that was never asked for.
    void reject_unknown() const
    {
        for (auto&& [section, node] : root_) {
            const std::string s(section.str());
            if (!node.is_table()) {
                if (!known_.count(s)) fail(s, "unknown key");
                continue;
            }
            if (!sections_.count(s)) fail(s, "unknown section");
            for (auto&& [key, value] : *node.as_table()) {
                (void)value;
                const std::string full = s + "." + std::string(key.str());
                if (!known_.count(full)) fail(full, "unknown key");
            }
        }
    }

    template <typename T>
    std::optional<T> get(const std::string& section, const std::string& key, const char* type_name)
    {
        sections_.insert(section);
        const std::string full = section + "." + key;
        known_.insert(full);
        const toml::node* node = root_.at_path(full).node();
        if (node == nullptr) return std::nullopt;
        if (auto v = node->value_exact<T>()) return *v;
        fail(full, std::string("expected ") + type_name);
    }

    std::optional<uint64_t> number(const std::string& section, const std::string& key, uint64_t min, uint64_t max)
    {
        auto v = get<int64_t>(section, key, "an integer");
        if (!v) return std::nullopt;
        if (*v < int64_t(min) || uint64_t(*v) > max)
            fail(section + "." + key, std::to_string(*v),
                 "expected " + std::to_string(min) + "-" + std::to_string(max));
        return uint64_t(*v);
    }

    std::vector<std::string> strings(const std::string& section, const std::string& key)
    {
        sections_.insert(section);
        const std::string full = section + "." + key;
        known_.insert(full);
        std::vector<std::string> out;
        const toml::node* node = root_.at_path(full).node();
        if (node == nullptr) return out;
        if (node->is_string()) return {*node->value<std::string>()};
        const toml::array* arr = node->as_array();
        if (arr == nullptr) fail(full, "expected a string or an array of strings");
        for (auto&& item : *arr) {
            auto s = item.value_exact<std::string>();
            if (!s) fail(full, "expected an array of strings");
            out.push_back(*s);
        }
        return out;
    }

    void section(const std::string& s) { sections_.insert(s); }

    [[noreturn]] static void fail(const std::string& key, const std::string& why) { throw ConfigError(key + ": " + why); }
    [[noreturn]] static void fail(const std::string& key, const std::string& value, const std::string& why)
    {
        throw ConfigError(key + " = " + value + ": " + why);
    }

private:
    const toml::table& root_;
    std::set<std::string> sections_, known_;
};

// Rethrows an address/prefix parse error under the config key that held it
// (the parser names the value only: "\"300.1.1.1\": not an IPv4 address").
template <typename Fn>
auto under_key(const std::string& key, const std::string& text, Fn&& fn)
{
    try {
        return fn();
    } catch (const ConfigError& e) {
        std::string why = e.what();
        const std::string same = "\"" + text + "\": ";
        if (why.rfind(same, 0) == 0) why.erase(0, same.size());
        Reader::fail(key, "\"" + text + "\"", why);
    }
}

// "A.B.C.D[/LEN]" under `key`: the address (host order) and the length,
// default_len when absent; a length outside min_len-32 names the key.
std::pair<uint32_t, unsigned> parse_cidr(const std::string& key, const std::string& text, unsigned min_len,
                                         unsigned default_len)
{
    const auto slash = text.find('/');
    const uint32_t addr = under_key(key, text, [&] { return parse_ipv4(text.substr(0, slash)); });
    unsigned len = default_len;
    if (slash != std::string::npos) {
        const std::string l = text.substr(slash + 1);
        auto [end, ec] = std::from_chars(l.data(), l.data() + l.size(), len);
        if (ec != std::errc{} || end != l.data() + l.size() || len < min_len || len > 32)
            Reader::fail(key, "\"" + text + "\"", "prefix length must be " + std::to_string(min_len) + "-32");
    }
    return {addr, len};
}

// A network prefix under `key`: as parse_cidr, and no host bits set.
std::pair<uint32_t, unsigned> parse_prefix(const std::string& key, const std::string& text, unsigned min_len)
{
    const auto [addr, len] = parse_cidr(key, text, min_len, 32);
    if (addr & ~prefix_mask(len)) Reader::fail(key, "\"" + text + "\"", "host bits set: not a prefix");
    return {addr, len};
}

Interface read_interface(Reader& r, const std::string& section)
{
    Interface itf;
    auto port = r.get<std::string>(section, "port", "a string");
    if (!port || port->empty()) Reader::fail(section + ".port", "missing: a PCI address, a vdev string or auto:IFACE");
    itf.port = *port;
    auto addr = r.get<std::string>(section, "address", "a string");
    if (!addr) Reader::fail(section + ".address", "missing: the gateway's address/prefix on this side");
    const auto [address, len] = parse_cidr(section + ".address", *addr, 8, itf.prefix_len);
    itf.address = address;
    itf.prefix_len = uint8_t(len);
    if (auto v = r.number(section, "mtu", 576, 9000)) itf.mtu = uint16_t(*v);
    return itf;
}

// Exactly aa:bb:cc:dd:ee:ff (or with '-'): one host's address, not a group's.
std::array<uint8_t, 6> parse_mac(const std::string& key, const std::string& text)
{
    const std::string value = "\"" + text + "\"";
    std::array<uint8_t, 6> mac{};
    auto hex = [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; };
    bool shaped = text.size() == 17;
    for (size_t i = 0; shaped && i < 17; ++i)
        shaped = i % 3 == 2 ? text[i] == text[2] && (text[i] == ':' || text[i] == '-') : hex(text[i]);
    if (!shaped) Reader::fail(key, value, "not a MAC address (aa:bb:cc:dd:ee:ff)");
    for (size_t i = 0; i < 6; ++i) mac[i] = uint8_t(std::stoul(text.substr(i * 3, 2), nullptr, 16));
    if (mac[0] & 1) Reader::fail(key, value, "a group (multicast or broadcast) MAC address, not a router's");
    if (mac == std::array<uint8_t, 6>{}) Reader::fail(key, value, "the all-zero MAC address");
    return mac;
}

// "ADDR:PORT" with an IPv4 address and a port 1-65535.
void check_endpoint(const std::string& key, const std::string& text)
{
    const auto colon = text.rfind(':');
    unsigned port = 0;
    const std::string p = colon == std::string::npos ? "" : text.substr(colon + 1);
    auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), port);
    if (colon == std::string::npos || ec != std::errc{} || end != p.data() + p.size() || port == 0 || port > 65535)
        Reader::fail(key, "\"" + text + "\"", "expected ADDR:PORT, e.g. \"127.0.0.1:4739\"");
    under_key(key, text, [&] { return parse_ipv4(text.substr(0, colon)); });
}

std::string subnet_text(const Interface& i) { return format_ipv4(i.address & prefix_mask(i.prefix_len)) + "/" + std::to_string(i.prefix_len); }

bool on_subnet(uint32_t a, const Interface& i) { return (a & prefix_mask(i.prefix_len)) == (i.address & prefix_mask(i.prefix_len)); }

// Whether a is the network or broadcast address of the interface's subnet
// (a /31 or /32 has neither, RFC 3021).
const char* subnet_edge(uint32_t a, const Interface& i)
{
    if (i.prefix_len >= 31 || !on_subnet(a, i)) return nullptr;
    const uint32_t m = prefix_mask(i.prefix_len);
    if (a == (a & m)) return "the network address of the subnet ";
    if (a == (a | ~m)) return "the broadcast address of the subnet ";
    return nullptr;
}

// "\"ADDR/LEN\"", as the file writes an interface address (appended piece by
// piece: GCC 12 at -O3 warns falsely of an overlapping memcpy in
// "\"" + std::string, bug 105329).
std::string quoted_cidr(uint32_t addr, unsigned len)
{
    std::string s = "\"";
    s += format_ipv4(addr);
    s += '/';
    s += std::to_string(len);
    s += '"';
    return s;
}

// What each address is for, against the others: a gateway that would answer
// ARP for its next hop, route its own subnets into each other or hand out a
// broadcast address as a source fails at once with the key to fix, not later
// with traffic that goes nowhere.
void check_addresses(const GatewayConfig& g)
{
    for (const auto& [key, itf] : {std::pair{"inside.address", &g.inside}, std::pair{"outside.address", &g.outside}}) {
        const std::string value = quoted_cidr(itf->address, itf->prefix_len);
        if (const char* why = unusable_address(itf->address)) Reader::fail(key, value, std::string("not usable: ") + why);
        if (const char* edge = subnet_edge(itf->address, *itf)) Reader::fail(key, value, edge + subnet_text(*itf));
    }
    const unsigned shorter = std::min(g.inside.prefix_len, g.outside.prefix_len);
    if ((g.inside.address & prefix_mask(shorter)) == (g.outside.address & prefix_mask(shorter)))
        Reader::fail("outside.address", quoted_cidr(g.outside.address, g.outside.prefix_len),
                     "the outside subnet " + subnet_text(g.outside) + " overlaps the inside subnet " + subnet_text(g.inside));
    const std::string hop = "\"" + format_ipv4(g.next_hop) + "\"";
    if (g.next_hop == g.outside.address) Reader::fail("outside.next_hop", hop, "the gateway's own outside.address");
    if (const char* edge = subnet_edge(g.next_hop, g.outside)) Reader::fail("outside.next_hop", hop, edge + subnet_text(g.outside));
    if (const char* why = unusable_address(g.next_hop)) Reader::fail("outside.next_hop", hop, std::string("not usable: ") + why);
    for (uint32_t a : g.nat.pool) {
        const std::string addr = format_ipv4(a);
        if (a == g.inside.address || a == g.outside.address)
            Reader::fail("nat.pool", addr, "a pool address is also a gateway interface address");
        if (a == g.next_hop) Reader::fail("nat.pool", addr, "a pool address is also outside.next_hop");
        if (on_subnet(a, g.inside))
            Reader::fail("nat.pool", addr, "on the inside subnet " + subnet_text(g.inside) + ": the pool faces outside");
        if (const char* edge = subnet_edge(a, g.outside)) Reader::fail("nat.pool", addr, edge + subnet_text(g.outside));
    }
}

} // namespace

GatewayConfig parse_gateway_config(const std::string& text, const std::string& source)
{
    toml::table root;
    try {
        root = toml::parse(text, source);
    } catch (const toml::parse_error& e) {
        const auto& where = e.source().begin;
        // The description quotes what the parser saw, which may run over a
        // line end: the error stays one line, control characters escaped.
        std::string why;
        for (const char c : e.description()) {
            if (static_cast<unsigned char>(c) >= 0x20 && c != 0x7f) {
                why += c;
            } else {
                char escaped[8];
                std::snprintf(escaped, sizeof escaped, "\\x%02x", unsigned(static_cast<unsigned char>(c)));
                why += escaped;
            }
        }
        throw ConfigError(source + ":" + std::to_string(where.line) + ":" + std::to_string(where.column) + ": " + why);
    }
    try {
        Reader r(root);
        GatewayConfig g;

        g.eal_args = r.strings("eal", "args");
        if (auto v = r.get<std::string>("eal", "lcores", "a string")) g.lcores = *v;

        g.inside = read_interface(r, "inside");
        g.outside = read_interface(r, "outside");
        if (g.outside.port == g.inside.port)
            Reader::fail("outside.port", "\"" + g.outside.port + "\"", "the same port as inside.port: two ports are needed");
        auto hop = r.get<std::string>("outside", "next_hop", "a string");
        if (!hop) Reader::fail("outside.next_hop", "missing: the outside router's address");
        g.next_hop = under_key("outside.next_hop", *hop, [&] { return parse_ipv4(*hop); });
        const uint32_t out_mask = prefix_mask(g.outside.prefix_len);
        if ((g.next_hop & out_mask) != (g.outside.address & out_mask))
            Reader::fail("outside.next_hop", "\"" + *hop + "\"", "not on the outside subnet " + format_ipv4(g.outside.address) + "/" +
                                                       std::to_string(g.outside.prefix_len));
        if (auto mac = r.get<std::string>("outside", "next_hop_mac", "a string"))
            g.next_hop_mac = parse_mac("outside.next_hop_mac", *mac);

        NatConfig& n = g.nat;
        for (const std::string& p : r.strings("nat", "pool")) {
            auto addrs = under_key("nat.pool", p, [&] { return parse_ipv4_prefix(p); });
            n.pool.insert(n.pool.end(), addrs.begin(), addrs.end());
        }
        if (n.pool.empty()) Reader::fail("nat.pool", "missing: at least one address or prefix");
        if (auto ports = r.get<std::string>("nat", "ports", "a string like \"49152-65535\"")) {
            unsigned first = 0, last = 0;
            const auto dash = ports->find('-');
            const std::string a = ports->substr(0, dash), b = dash == std::string::npos ? "" : ports->substr(dash + 1);
            auto r1 = std::from_chars(a.data(), a.data() + a.size(), first);
            auto r2 = std::from_chars(b.data(), b.data() + b.size(), last);
            if (dash == std::string::npos || r1.ec != std::errc{} || r2.ec != std::errc{} ||
                r1.ptr != a.data() + a.size() || r2.ptr != b.data() + b.size())
                Reader::fail("nat.ports", "\"" + *ports + "\"", "expected FIRST-LAST, e.g. \"49152-65535\"");
            validate_port_range(first, last); // names nat.ports
            n.ports = PortRange{uint16_t(first), uint16_t(last)};
        }
        if (auto f = r.get<std::string>("nat", "filtering", "a string"))
            n.filtering = parse_filtering_mode(*f); // names nat.filtering
        if (auto v = r.get<bool>("nat", "port_parity", "true or false")) n.port_parity = *v;
        if (auto v = r.get<bool>("nat", "port_preservation", "true or false")) n.port_preservation = *v;
        if (auto v = r.get<bool>("nat", "randomize_ports", "true or false")) n.randomize_ports = *v;
        // Ports hard to guess (RFC 6888 REQ-15, RFC 7857 §9): a fresh shuffle at
        // every start unless the operator pins it.
        if (auto v = r.number("nat", "port_seed", 0, INT64_MAX)) n.port_seed = *v;
        else n.port_seed = (uint64_t(std::random_device{}()) << 32) ^ std::random_device{}();
        if (auto v = r.number("nat", "max_mappings", 8, 1u << 26)) n.max_mappings = uint32_t(*v);
        if (auto v = r.number("nat", "max_extra_sessions", 8, 1u << 26)) n.max_extra_sessions = uint32_t(*v);
        if (auto v = r.number("nat", "max_sessions_per_mapping", 1, 65535)) n.max_sessions_per_mapping = uint32_t(*v);
        if (auto v = r.number("nat", "max_ports_per_subscriber", 0, 4u * 65536)) n.max_ports_per_subscriber = uint32_t(*v);
        if (auto v = r.number("nat", "max_subscribers", 8, 1u << 24)) n.max_subscribers = uint32_t(*v);
        if (auto v = r.number("nat", "port_block_size", 0, 65535)) n.port_block_size = uint32_t(*v);
        if (auto v = r.number("nat", "max_blocks_per_subscriber", 1, 1024)) n.max_blocks_per_subscriber = uint32_t(*v);
        if (auto v = r.number("nat", "max_static_mappings", 1, 65536)) n.max_static_mappings = uint32_t(*v);
        if (auto d = r.get<std::string>("nat", "deterministic", "a string like \"100.64.0.0/22\"")) {
            const auto [addr, len] = parse_prefix("nat.deterministic", *d, 8);
            n.deterministic = true;
            n.deterministic_prefix = addr;
            n.deterministic_len = uint8_t(len);
        }
        if (auto v = r.number("nat", "deterministic_overflow", 0, 4096)) n.deterministic_overflow = uint32_t(*v);
        if (auto v = r.get<bool>("nat", "icmp_on_limit", "true or false")) g.icmp_on_limit = *v;
        if (auto v = r.get<bool>("nat", "icmp_on_unsolicited_syn", "true or false")) g.icmp_on_unsolicited_syn = *v;
        // Port forwards: checked in full when made at start (they need the pool,
        // the inside subnet and the range); the shape is checked here.
        for (const std::string& text : r.strings("nat", "exclude")) {
            const auto [addr, len] = parse_prefix("nat.exclude", text, 1);
            for (uint32_t a : n.pool)
                if ((a & prefix_mask(len)) == addr)
                    Reader::fail("nat.exclude", "\"" + text + "\"", "covers the pool address " + format_ipv4(a));
            g.exclude.emplace_back(addr, uint8_t(len));
        }
        for (const std::string& spec : r.strings("nat", "static")) {
            std::istringstream in(spec);
            std::string proto, inside, external, extra;
            if (!(in >> proto >> inside >> external) || (in >> extra))
                Reader::fail("nat.static", "\"" + spec + "\"", "expected \"PROTO INSIDE:PORT POOLADDR:PORT\"");
            g.static_mappings.push_back(spec);
        }

        const uint64_t month = kMaxTimeout;
        Timeouts& t = n.timeouts;
        r.section("timeouts");
        if (auto v = r.number("timeouts", "udp", 1, month)) t.udp = uint32_t(*v);
        if (auto v = r.number("timeouts", "tcp_established", 1, month)) t.tcp_established = uint32_t(*v);
        if (auto v = r.number("timeouts", "tcp_transitory", 1, month)) t.tcp_transitory = uint32_t(*v);
        if (auto v = r.number("timeouts", "icmp", 1, month)) t.icmp = uint32_t(*v);
        if (auto v = r.number("timeouts", "sctp", 1, month)) t.sctp = uint32_t(*v);
        if (auto v = r.number("timeouts", "quarantine", 0, kMaxQuarantine)) t.quarantine = uint32_t(*v);

        if (auto v = r.number("dataplane", "workers", 1, 64)) n.workers = unsigned(*v);
        if (auto s = r.get<std::string>("dataplane", "steering", "a string")) {
            if (*s == "auto") g.steering = Steering::Auto;
            else if (*s == "flow") g.steering = Steering::FlowRules;
            else if (*s == "handoff") g.steering = Steering::Handoff;
            else Reader::fail("dataplane.steering", "\"" + *s + "\"", "expected auto, flow or handoff");
        }
        if (auto v = r.number("dataplane", "mbufs", 1024, 1u << 22)) g.mbufs = uint32_t(*v);
        if (auto v = r.number("dataplane", "rx_descriptors", 64, 16384)) g.rx_descriptors = uint16_t(*v);
        if (auto v = r.number("dataplane", "tx_descriptors", 64, 16384)) g.tx_descriptors = uint16_t(*v);
        if (auto v = r.number("dataplane", "handoff_ring", 64, 1u << 16)) {
            if (*v & (*v - 1)) Reader::fail("dataplane.handoff_ring", std::to_string(*v), "must be a power of two");
            g.handoff_ring = uint32_t(*v);
        }
        if (auto v = r.number("dataplane", "icmp_rate", 0, 1000000)) g.icmp_rate = uint32_t(*v);
        if (auto v = r.number("dataplane", "reassembly", 0, 16384)) g.reassembly = uint32_t(*v);
        if (auto v = r.number("dataplane", "reassembly_timeout", 1, 30)) g.reassembly_timeout = uint32_t(*v);
        if (auto v = r.get<bool>("dataplane", "mss_clamp", "true or false")) g.mss_clamp = *v;

        if (auto v = r.get<std::string>("log", "file", "a path")) g.log.file = *v;
        if (auto v = r.get<bool>("log", "syslog", "true or false")) g.log.syslog = *v;
        if (auto v = r.get<std::string>("log", "ipfix_collector", "\"ADDR:PORT\"")) {
            check_endpoint("log.ipfix_collector", *v);
            g.log.ipfix_collector = *v;
        }
        if (auto v = r.number("log", "ipfix_domain", 0, UINT32_MAX)) g.log.ipfix_domain = uint32_t(*v);
        if (auto v = r.get<bool>("log", "destinations", "true or false")) g.log.destinations = *v;
        if (auto v = r.number("log", "ring", 1024, 1u << 24)) {
            if (*v & (*v - 1)) Reader::fail("log.ring", std::to_string(*v), "must be a power of two");
            g.log.ring = uint32_t(*v);
        }
        if (auto v = r.get<std::string>("metrics", "listen", "\"ADDR:PORT\" or \"\"")) {
            if (!v->empty()) check_endpoint("metrics.listen", *v);
            g.metrics.listen = *v;
        }
        if (auto v = r.get<bool>("pcp", "enabled", "true or false")) g.pcp.enabled = *v;
        if (auto v = r.number("pcp", "min_lifetime", 1, 7u * 86400)) g.pcp.min_lifetime = uint32_t(*v);
        if (auto v = r.number("pcp", "max_lifetime", 1, 7u * 86400)) g.pcp.max_lifetime = uint32_t(*v);
        if (g.pcp.min_lifetime > g.pcp.max_lifetime)
            Reader::fail("pcp.min_lifetime", std::to_string(g.pcp.min_lifetime), "exceeds pcp.max_lifetime");
        n.explicit_mappings = g.pcp.enabled;

        r.reject_unknown();
        validate(n);
        check_addresses(g);
        return g;
    } catch (const ConfigError& e) {
        throw ConfigError(source + ": " + e.what());
    }
}

GatewayConfig load_gateway_config(const std::string& path)
{
    std::string text;
    if (FILE* f = std::fopen(path.c_str(), "rb")) {
        char buf[4096];
        size_t n;
        while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
        std::fclose(f);
    } else {
        throw ConfigError(path + ": cannot read the configuration file");
    }
    return parse_gateway_config(text, path);
}

} // namespace ephemera
