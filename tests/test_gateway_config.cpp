// The daemon's TOML configuration: defaults, and errors that name the key.
#include <gtest/gtest.h>

#include <array>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "ephemera/gateway_config.hpp"

using namespace ephemera;

namespace {

const std::string kMinimal = R"(
[inside]
port = "auto:gw-in"
address = "100.64.0.1/24"
[outside]
port = "auto:gw-out"
address = "203.0.113.1/24"
next_hop = "203.0.113.2"
[nat]
pool = ["198.51.100.0/28"]
)";

// The error message for a config, or "" when it loads.
std::string error_of(const std::string& text)
{
    try {
        parse_gateway_config(text, "lab.toml");
    } catch (const ConfigError& e) {
        return e.what();
    }
    return "";
}

} // namespace

TEST(GatewayConfig, MinimalConfigGetsTheRfcDefaults)
{
    const GatewayConfig g = parse_gateway_config(kMinimal, "lab.toml");
    EXPECT_EQ(g.inside.address, parse_ipv4("100.64.0.1"));
    EXPECT_EQ(g.inside.prefix_len, 24);
    EXPECT_EQ(g.next_hop, parse_ipv4("203.0.113.2"));
    EXPECT_EQ(g.nat.pool.size(), 16u);
    EXPECT_EQ(g.nat.ports.first, 49152);
    EXPECT_EQ(g.nat.ports.last, 65535);
    EXPECT_EQ(g.nat.filtering, FilteringMode::EndpointIndependent);
    EXPECT_EQ(g.nat.timeouts.udp, 300u);
    EXPECT_EQ(g.nat.timeouts.tcp_established, 7440u);
    EXPECT_EQ(g.nat.timeouts.tcp_transitory, 240u);
    EXPECT_EQ(g.nat.timeouts.icmp, 60u);
    EXPECT_EQ(g.nat.timeouts.quarantine, 120u);
    EXPECT_EQ(g.nat.workers, 1u);
    EXPECT_EQ(g.steering, Steering::Auto);
    EXPECT_TRUE(g.icmp_on_unsolicited_syn); // RFC 5382 REQ-4: SHOULD answer, after 6 s
}

TEST(GatewayConfig, EveryKeyIsRead)
{
    const GatewayConfig g = parse_gateway_config(kMinimal + R"(
ports = "1024-65535"
filtering = "address-dependent"
port_parity = true
max_mappings = 4096
max_ports_per_subscriber = 64
icmp_on_limit = false
icmp_on_unsolicited_syn = false
[timeouts]
udp = 30
tcp_established = 600
tcp_transitory = 60
icmp = 10
sctp = 20
quarantine = 0
[dataplane]
workers = 4
steering = "handoff"
handoff_ring = 512
reassembly = 64
reassembly_timeout = 5
mss_clamp = true
[eal]
args = ["--in-memory"]
lcores = "0@0,1@1"
)", "lab.toml");
    EXPECT_EQ(g.nat.ports.first, 1024);
    EXPECT_EQ(g.nat.filtering, FilteringMode::AddressDependent);
    EXPECT_TRUE(g.nat.port_parity);
    EXPECT_EQ(g.nat.max_mappings, 4096u);
    EXPECT_EQ(g.nat.max_ports_per_subscriber, 64u);
    EXPECT_FALSE(g.icmp_on_limit);
    EXPECT_FALSE(g.icmp_on_unsolicited_syn);
    EXPECT_EQ(g.nat.timeouts.udp, 30u);
    EXPECT_EQ(g.nat.timeouts.sctp, 20u);
    EXPECT_EQ(g.nat.timeouts.quarantine, 0u);
    EXPECT_EQ(g.nat.workers, 4u);
    EXPECT_EQ(g.steering, Steering::Handoff);
    EXPECT_EQ(g.handoff_ring, 512u);
    EXPECT_EQ(g.reassembly, 64u);
    EXPECT_EQ(g.reassembly_timeout, 5u);
    EXPECT_TRUE(g.mss_clamp);
    ASSERT_EQ(g.eal_args.size(), 1u);
    EXPECT_EQ(g.lcores, "0@0,1@1");
}

TEST(GatewayConfig, PortBlockAndStaticKeysAreRead)
{
    const GatewayConfig g = parse_gateway_config(kMinimal + R"(
port_block_size = 64
max_blocks_per_subscriber = 4
max_static_mappings = 16
static = ["tcp 100.64.0.5:443 198.51.100.1:443", "udp 100.64.0.6:53 198.51.100.2:53"]
)", "lab.toml");
    EXPECT_EQ(g.static_mappings,
              (std::vector<std::string>{"tcp 100.64.0.5:443 198.51.100.1:443", "udp 100.64.0.6:53 198.51.100.2:53"}));
    EXPECT_EQ(g.nat.port_block_size, 64u);
    EXPECT_EQ(g.nat.max_blocks_per_subscriber, 4u);
    EXPECT_EQ(g.nat.max_static_mappings, 16u);
}

TEST(GatewayConfig, BadPortBlockValuesNameTheKey)
{
    // 49152-65535 over 4 workers: 4096 ports each.
    const std::string big = error_of(kMinimal + "port_block_size = 5000\n[dataplane]\nworkers = 4\n");
    EXPECT_NE(big.find("port_block_size"), std::string::npos) << big;
    EXPECT_NE(big.find("4096"), std::string::npos) << big;
    EXPECT_NE(error_of(kMinimal + "port_block_size = 8\nport_parity = true\n").find("port_parity"),
              std::string::npos);
    EXPECT_NE(error_of(kMinimal + "max_blocks_per_subscriber = 0\n").find("max_blocks_per_subscriber"),
              std::string::npos);
    EXPECT_NE(error_of(kMinimal + "max_static_mappings = 0\n").find("max_static_mappings"), std::string::npos);
    EXPECT_NE(error_of(kMinimal + "static = [\"tcp 100.64.0.5:443\"]\n").find("nat.static"), std::string::npos);
}

TEST(GatewayConfig, UnknownKeyIsAnErrorNamingIt)
{
    EXPECT_NE(error_of(kMinimal + "[timeouts]\nudp_timeout = 30\n").find("timeouts.udp_timeout"), std::string::npos);
    EXPECT_NE(error_of(kMinimal + "[natt]\nx = 1\n").find("natt"), std::string::npos);
}

TEST(GatewayConfig, BadPortRangeNamesTheKeyAndValue)
{
    const std::string e = error_of(kMinimal + "ports = \"80-90\"\n");
    EXPECT_NE(e.find("nat.ports"), std::string::npos) << e;
    EXPECT_NE(e.find("80-90"), std::string::npos) << e;
    EXPECT_NE(error_of(kMinimal + "ports = \"60000-50000\"\n").find("nat.ports"), std::string::npos);
    EXPECT_NE(error_of(kMinimal + "ports = \"lots\"\n").find("nat.ports"), std::string::npos);
}

TEST(GatewayConfig, BadAddressNamesTheKeyAndValue)
{
    std::string text = kMinimal;
    text.replace(text.find("100.64.0.1/24"), 13, "100.64.0.300/24");
    const std::string e = error_of(text);
    EXPECT_NE(e.find("inside.address"), std::string::npos) << e;
    EXPECT_NE(e.find("100.64.0.300"), std::string::npos) << e;
}

TEST(GatewayConfig, NextHopOffTheOutsideSubnetIsRefused)
{
    std::string text = kMinimal;
    text.replace(text.find("203.0.113.2"), 11, "198.51.100.99");
    EXPECT_NE(error_of(text).find("outside.next_hop"), std::string::npos);
}

TEST(GatewayConfig, WrongTypeAndOutOfRangeValuesNameTheKey)
{
    EXPECT_NE(error_of(kMinimal + "[timeouts]\nudp = \"long\"\n").find("timeouts.udp"), std::string::npos);
    EXPECT_NE(error_of(kMinimal + "[timeouts]\nudp = 0\n").find("timeouts.udp"), std::string::npos);
    EXPECT_NE(error_of(kMinimal + "[dataplane]\nworkers = 0\n").find("dataplane.workers"), std::string::npos);
    EXPECT_NE(error_of(kMinimal + "[dataplane]\nsteering = \"magic\"\n").find("dataplane.steering"),
              std::string::npos);
    EXPECT_NE(error_of(kMinimal + "filtering = \"strict\"\n").find("filtering"), std::string::npos);
}

// TOML types are taken exactly: 2 is not true, 0 not false, 1500.0 not 1500.
TEST(GatewayConfig, ANumberForABooleanOrAFloatForAnIntegerIsAnErrorNamingTheKey)
{
    const std::string parity = error_of(kMinimal + "port_parity = 2\n");
    EXPECT_NE(parity.find("nat.port_parity"), std::string::npos) << parity;
    EXPECT_NE(parity.find("true or false"), std::string::npos) << parity;
    EXPECT_NE(error_of(kMinimal + "randomize_ports = 0\n").find("nat.randomize_ports"), std::string::npos);
    std::string mtu = kMinimal;
    mtu.replace(mtu.find("next_hop ="), 0, "mtu = 1500.0\n");
    EXPECT_NE(error_of(mtu).find("outside.mtu"), std::string::npos) << error_of(mtu);
    EXPECT_NE(error_of(kMinimal + "[dataplane]\nworkers = true\n").find("dataplane.workers"), std::string::npos);
    EXPECT_NE(error_of(kMinimal + "exclude = [\"192.0.2.0/24\", 7]\n").find("nat.exclude"), std::string::npos);
}

TEST(GatewayConfig, OneDevicePortForBothSidesIsRefused)
{
    std::string text = kMinimal;
    const size_t at = text.find("port = ", text.find("[outside]"));
    text.replace(at, text.find('\n', at) - at, "port = \"" + parse_gateway_config(kMinimal, "lab.toml").inside.port + "\"");
    const std::string e = error_of(text);
    EXPECT_NE(e.find("outside.port"), std::string::npos) << e;
    EXPECT_NE(e.find("inside.port"), std::string::npos) << e;
}

TEST(GatewayConfig, MissingRequiredKeysAreNamed)
{
    std::string no_pool = kMinimal;
    no_pool.erase(no_pool.find("pool ="));
    EXPECT_NE(error_of(no_pool).find("nat.pool"), std::string::npos);
    std::string no_port = kMinimal;
    no_port.erase(no_port.find("port = \"auto:gw-in\""), 19);
    EXPECT_NE(error_of(no_port).find("inside.port"), std::string::npos);
}

TEST(GatewayConfig, TomlSyntaxErrorGivesFileAndLine)
{
    const std::string e = error_of("[nat\npool = 1\n");
    EXPECT_NE(e.find("lab.toml:1"), std::string::npos) << e;
}

TEST(GatewayConfig, LinkMtuDefaultsTo1500AndIsReadPerSide)
{
    EXPECT_EQ(parse_gateway_config(kMinimal, "lab.toml").outside.mtu, 1500);
    std::string text = kMinimal;
    text.replace(text.find("next_hop ="), 0, "mtu = 1400\n");
    const GatewayConfig g = parse_gateway_config(text, "lab.toml");
    EXPECT_EQ(g.outside.mtu, 1400);
    EXPECT_EQ(g.inside.mtu, 1500);
}

TEST(GatewayConfig, LinkMtuOutside576To9000NamesTheKey)
{
    std::string text = kMinimal;
    text.replace(text.find("next_hop ="), 0, "mtu = 500\n");
    EXPECT_NE(error_of(text).find("outside.mtu"), std::string::npos) << error_of(text);
}

TEST(GatewayConfig, ExcludedDestinationsAreReadAsPrefixes)
{
    std::string text = kMinimal;
    text += "exclude = [\"203.0.113.48/29\", \"192.0.2.53\"]\n";
    const GatewayConfig g = parse_gateway_config(text, "lab.toml");
    ASSERT_EQ(g.exclude.size(), 2u);
    EXPECT_EQ(g.exclude[0], std::make_pair(parse_ipv4("203.0.113.48"), uint8_t(29)));
    EXPECT_EQ(g.exclude[1], std::make_pair(parse_ipv4("192.0.2.53"), uint8_t(32)));
}

TEST(GatewayConfig, BadExclusionsNameTheKey)
{
    for (const char* bad : {"203.0.113.49/29", "198.51.100.0/24", "203.0.113.0/33", "nonsense"}) {
        const std::string e = error_of(kMinimal + "exclude = [\"" + bad + "\"]\n");
        EXPECT_NE(e.find("nat.exclude"), std::string::npos) << bad << ": " << e;
    }
    EXPECT_NE(error_of(kMinimal + "exclude = [\"198.51.100.0/24\"]\n").find("pool address"), std::string::npos);
}

TEST(GatewayConfig, PortPreservationIsReadAndOffByDefault)
{
    EXPECT_TRUE(parse_gateway_config(kMinimal + "port_preservation = true\n", "lab.toml").nat.port_preservation);
    EXPECT_FALSE(parse_gateway_config(kMinimal, "lab.toml").nat.port_preservation);
    EXPECT_NE(error_of(kMinimal + "port_preservation = true\nport_block_size = 8\n").find("port_preservation"),
              std::string::npos);
}

TEST(GatewayConfig, PcpIsOffByDefaultAndItsLifetimesAreRead)
{
    const GatewayConfig off = parse_gateway_config(kMinimal, "lab.toml");
    EXPECT_FALSE(off.pcp.enabled);
    EXPECT_FALSE(off.nat.explicit_mappings);
    const GatewayConfig on =
        parse_gateway_config(kMinimal + "[pcp]\nenabled = true\nmin_lifetime = 60\nmax_lifetime = 3600\n", "lab.toml");
    EXPECT_TRUE(on.pcp.enabled);
    EXPECT_TRUE(on.nat.explicit_mappings) << "the translators keep PCP nonces";
    EXPECT_EQ(on.pcp.min_lifetime, 60u);
    EXPECT_EQ(on.pcp.max_lifetime, 3600u);
    EXPECT_NE(error_of(kMinimal + "[pcp]\nmin_lifetime = 7200\nmax_lifetime = 3600\n").find("pcp.min_lifetime"),
              std::string::npos);
    EXPECT_NE(error_of(kMinimal + "[pcp]\nport = 5351\n").find("pcp.port"), std::string::npos);
}

TEST(GatewayConfig, DeterministicPrefixIsRead)
{
    const GatewayConfig g = parse_gateway_config(kMinimal + "deterministic = \"100.64.0.0/22\"\n", "lab.toml");
    EXPECT_TRUE(g.nat.deterministic);
    EXPECT_EQ(g.nat.deterministic_prefix, parse_ipv4("100.64.0.0"));
    EXPECT_EQ(g.nat.deterministic_len, 22);
    EXPECT_FALSE(parse_gateway_config(kMinimal, "lab.toml").nat.deterministic) << "off by default";
    EXPECT_EQ(g.nat.deterministic_overflow, 0u) << "no overflow by default";
    EXPECT_EQ(parse_gateway_config(kMinimal + "deterministic = \"100.64.0.0/22\"\ndeterministic_overflow = 4\n",
                                   "lab.toml")
                  .nat.deterministic_overflow,
              4u);
}

TEST(GatewayConfig, BadDeterministicValuesNameTheKey)
{
    // Host bits set; not a prefix; more hosts than the pool's ports can serve
    // (4 M hosts on 16 addresses x 16384 ports leave no port per host).
    for (const char* bad : {"100.64.0.1/22", "nonsense", "100.64.0.0/4", "100.0.0.0/10"}) {
        const std::string e = error_of(kMinimal + "deterministic = \"" + std::string(bad) + "\"\n");
        EXPECT_NE(e.find("nat.deterministic"), std::string::npos) << bad << ": " << e;
    }
    const std::string e = error_of(kMinimal + "deterministic = \"100.64.0.0/22\"\nport_block_size = 8\n");
    EXPECT_NE(e.find("deterministic"), std::string::npos) << e;
    // Overflow: without deterministic; out of range; one range too many (2^18 hosts on 16
    // addresses x 16384 ports leave one port per host, and none with an overflow range).
    for (const std::string& bad : {std::string("deterministic_overflow = 2\n"),
                                   std::string("deterministic = \"100.64.0.0/22\"\ndeterministic_overflow = 5000\n"),
                                   std::string("deterministic = \"100.64.0.0/14\"\ndeterministic_overflow = 1\n")}) {
        const std::string why = error_of(kMinimal + bad);
        EXPECT_NE(why.find("deterministic"), std::string::npos) << bad << ": " << why;
    }
}

TEST(GatewayConfig, ReassemblyLimitsNameTheKey)
{
    EXPECT_NE(error_of(kMinimal + "[dataplane]\nreassembly = 100000\n").find("dataplane.reassembly"), std::string::npos);
    EXPECT_NE(error_of(kMinimal + "[dataplane]\nreassembly_timeout = 0\n").find("dataplane.reassembly_timeout"),
              std::string::npos);
    const GatewayConfig g = parse_gateway_config(kMinimal, "lab.toml");
    EXPECT_EQ(g.reassembly, 256u);
    EXPECT_EQ(g.reassembly_timeout, 2u);
    EXPECT_FALSE(g.mss_clamp);
}

namespace {

// Every key the README documents, with a value that loads.
const std::string kFull = R"([eal]
args = ["--no-huge", "-m", "512", "--no-pci"]
lcores = "0@0,1@1"
[inside]
port = "auto:gw-in"
address = "100.64.0.1/24"
mtu = 1500
[outside]
port = "auto:gw-out"
address = "203.0.113.1/24"
next_hop = "203.0.113.2"
next_hop_mac = "02:00:00:00:00:02"
mtu = 1500
[nat]
pool = ["198.51.100.0/28", "198.51.100.77"]
ports = "49152-65535"
filtering = "endpoint-independent"
port_parity = false
port_preservation = false
randomize_ports = true
port_seed = 7
max_mappings = 4096
max_extra_sessions = 4096
max_sessions_per_mapping = 64
max_ports_per_subscriber = 100
max_subscribers = 1024
max_static_mappings = 16
static = ["tcp 100.64.0.5:443 198.51.100.1:443"]
icmp_on_limit = true
icmp_on_unsolicited_syn = true
exclude = ["192.0.2.0/24"]
[timeouts]
udp = 300
tcp_established = 7440
tcp_transitory = 240
icmp = 60
sctp = 300
quarantine = 120
[dataplane]
workers = 1
steering = "auto"
rx_descriptors = 1024
tx_descriptors = 1024
mbufs = 16384
handoff_ring = 1024
icmp_rate = 100
reassembly = 256
reassembly_timeout = 2
mss_clamp = false
[log]
file = "/tmp/ephemera-test-mappings.log"
syslog = false
ipfix_collector = "127.0.0.1:4739"
ipfix_domain = 1
destinations = false
ring = 65536
[metrics]
listen = "127.0.0.1:9469"
[pcp]
enabled = false
min_lifetime = 120
max_lifetime = 86400
)";

// A value no key expects, or one at an edge of what some key accepts.
const char* const kOddValues[] = {
    "", "-1", "0", "1", "65535", "65536", "4294967296", "99999999999999999999999", "1e309", "-0.5", "nan", "inf",
    "true", "\"\"", "\"x\"", "\"0-0\"", "\"65535-1024\"", "\"1.2.3.4/33\"", "\"999.1.1.1\"", "\"100.64.0.0/0\"",
    "\"::1\"", "\"02:00:00:00:00\"", "\"auto:\"", "\"net_\"", "\"127.0.0.1:0\"", "\"127.0.0.1:99999\"", "[]",
    "[1, 2]", "[\"\"]", "[\"tcp\"]", "{}", "{ a = 1 }", "1979-05-27T07:32:00Z", "\"\\u0000\"", "'''x'''",
};

std::vector<std::string> lines_of(const std::string& text)
{
    std::vector<std::string> lines;
    size_t at = 0;
    for (size_t nl; (nl = text.find('\n', at)) != std::string::npos; at = nl + 1) lines.push_back(text.substr(at, nl - at));
    if (at < text.size()) lines.push_back(text.substr(at)); // cut short: no newline at the end
    return lines;
}

std::string mutate(const std::string& text, std::mt19937& rng)
{
    std::vector<std::string> lines = lines_of(text);
    if (lines.empty()) return "[eal]\n" + text;
    const size_t i = rng() % lines.size();
    std::string& line = lines[i];
    const size_t eq = line.find(" = ");
    switch (rng() % 6) {
    case 0: lines.erase(lines.begin() + long(i)); break;                          // a key or a section missing
    case 1: lines.insert(lines.begin() + long(i), line); break;                   // given twice
    case 2: lines.insert(lines.begin() + long(i), "nonsense_key = 1"); break;     // unknown
    case 3: if (eq != std::string::npos) line = line.substr(0, eq + 3) + kOddValues[rng() % std::size(kOddValues)]; break;
    case 4: if (!line.empty()) line[rng() % line.size()] = char(" =[]\"'#.,-0aZ\\"[rng() % 15]); break;
    default: return text.substr(0, rng() % (text.size() + 1));                   // cut short
    }
    std::string out;
    for (const std::string& l : lines) out += l + "\n";
    return out;
}

} // namespace

TEST(GatewayConfig, EveryDocumentedKeyLoads) { EXPECT_EQ(error_of(kFull), ""); }

// A damaged configuration file loads, or fails with one ConfigError whose
// message is one line naming where: never another exception, never a crash.
TEST(GatewayConfig, DamagedFilesGiveOneClearErrorNeverACrash)
{
    std::mt19937 rng(20261122);
    unsigned failed = 0;
    for (int n = 0; n < 3000; ++n) {
        std::string text = mutate(kFull, rng);
        if (rng() % 3 == 0) text = mutate(text, rng);
        try {
            parse_gateway_config(text, "fuzz.toml");
        } catch (const ConfigError& e) {
            const std::string why = e.what();
            ++failed;
            EXPECT_FALSE(why.empty()) << text;
            EXPECT_EQ(why.find('\n'), std::string::npos) << "one line: " << why;
        } catch (const std::exception& e) {
            ADD_FAILURE() << "not a ConfigError: " << e.what() << "\n" << text;
        }
    }
    EXPECT_GT(failed, 1000u) << "the mutants are meant to be mostly wrong";
}

TEST(GatewayConfig, KeyStartingWithABackslashIsAParseErrorNotAnAbort)
{
    const std::string why = error_of(kMinimal + "[\\cp]\nx = 1\n");
    EXPECT_NE(why.find("lab.toml:11:2:"), std::string::npos) << why;
}

TEST(GatewayConfig, ParseErrorQuotingPastTheLineEndStaysOneLine)
{
    const std::string why = error_of(kMinimal + "[pcp]\nenabled = fal\nmin_lifetime = 120\n");
    EXPECT_NE(why.find("lab.toml:12:14:"), std::string::npos) << why;
    EXPECT_EQ(why.find('\n'), std::string::npos) << why;
    EXPECT_NE(why.find("\\x0a"), std::string::npos) << "the line end, escaped: " << why;
}

namespace {

// kMinimal with `from` replaced by `to` (once).
std::string with(std::string text, const std::string& from, const std::string& to)
{
    text.replace(text.find(from), from.size(), to);
    return text;
}

// The error names every needle.
::testing::AssertionResult refused_naming(const std::string& text, std::initializer_list<std::string> needles)
{
    const std::string e = error_of(text);
    if (e.empty()) return ::testing::AssertionFailure() << "accepted:\n" << text;
    for (const std::string& n : needles)
        if (e.find(n) == std::string::npos) return ::testing::AssertionFailure() << "'" << n << "' not in: " << e;
    return ::testing::AssertionSuccess();
}

} // namespace

TEST(GatewayConfig, InsideAndOutsideSubnetsMayNotOverlap)
{
    const std::string text = with(with(kMinimal, "203.0.113.1/24", "100.64.0.9/16"), "\"203.0.113.2\"", "\"100.64.0.10\"");
    EXPECT_TRUE(refused_naming(text, {"outside.address", "100.64.0.0/16", "100.64.0.0/24"}));
    const std::string same = with(with(kMinimal, "203.0.113.1/24", "100.64.0.1/24"), "\"203.0.113.2\"", "\"100.64.0.2\"");
    EXPECT_TRUE(refused_naming(same, {"outside.address"}));
}

TEST(GatewayConfig, NextHopMayNotBeTheGatewayItselfOrTheSubnetBroadcast)
{
    EXPECT_TRUE(refused_naming(with(kMinimal, "\"203.0.113.2\"", "\"203.0.113.1\""), {"outside.next_hop", "outside.address"}));
    EXPECT_TRUE(refused_naming(with(kMinimal, "\"203.0.113.2\"", "\"203.0.113.255\""), {"outside.next_hop", "broadcast"}));
    EXPECT_TRUE(refused_naming(with(kMinimal, "\"203.0.113.2\"", "\"203.0.113.0\""), {"outside.next_hop", "network address"}));
}

TEST(GatewayConfig, InterfaceAddressMayNotBeItsSubnetsNetworkOrBroadcastAddress)
{
    EXPECT_TRUE(refused_naming(with(kMinimal, "100.64.0.1/24", "100.64.0.0/24"), {"inside.address", "network address"}));
    EXPECT_TRUE(refused_naming(with(kMinimal, "100.64.0.1/24", "100.64.0.255/24"), {"inside.address", "broadcast"}));
    EXPECT_TRUE(refused_naming(with(kMinimal, "100.64.0.1/24", "224.0.0.1/24"), {"inside.address", "multicast"}));
    // A point-to-point /31 has no network or broadcast address (RFC 3021).
    const std::string p2p = with(with(kMinimal, "203.0.113.1/24", "203.0.113.1/31"), "\"203.0.113.2\"", "\"203.0.113.0\"");
    EXPECT_EQ(error_of(p2p), "");
}

TEST(GatewayConfig, PoolMayNotHoldTheNextHopAnInsideAddressOrASpecialAddress)
{
    EXPECT_TRUE(refused_naming(with(kMinimal, "198.51.100.0/28", "203.0.113.2"), {"nat.pool", "203.0.113.2", "next_hop"}));
    EXPECT_TRUE(refused_naming(with(kMinimal, "198.51.100.0/28", "100.64.0.7"), {"nat.pool", "100.64.0.7", "inside subnet"}));
    EXPECT_TRUE(refused_naming(with(kMinimal, "198.51.100.0/28", "203.0.113.255"), {"nat.pool", "broadcast"}));
    EXPECT_TRUE(refused_naming(with(kMinimal, "198.51.100.0/28", "224.0.0.1"), {"nat.pool", "224.0.0.1", "multicast"}));
    EXPECT_TRUE(refused_naming(with(kMinimal, "198.51.100.0/28", "127.0.0.1"), {"nat.pool", "loopback"}));
    EXPECT_TRUE(refused_naming(with(kMinimal, "198.51.100.0/28", "203.0.113.1"), {"nat.pool", "interface"}));
    // A routed pool uses all its addresses, its first and last included.
    EXPECT_EQ(error_of(kMinimal), "");
}

TEST(GatewayConfig, NextHopMacIsOneUnicastAddressWrittenInFull)
{
    auto mac = [](const std::string& m) { return with(kMinimal, "next_hop = \"203.0.113.2\"", "next_hop = \"203.0.113.2\"\nnext_hop_mac = \"" + m + "\""); };
    EXPECT_EQ(error_of(mac("02:00:00:00:00:0a")), "");
    EXPECT_EQ(parse_gateway_config(mac("02-00-00-00-00-0A"), "lab.toml").next_hop_mac,
              (std::array<uint8_t, 6>{2, 0, 0, 0, 0, 10}));
    for (const std::string bad : {"2:0:0:0:0:a", "0x2:00:00:00:00:0a", " 02:00:00:00:00:0a", "02:00:00:00:00:0g",
                                  "02:00:00:00:00:0a:", "02:00-00:00:00:0a", "+2:00:00:00:00:0a"})
        EXPECT_TRUE(refused_naming(mac(bad), {"outside.next_hop_mac", "not a MAC address"})) << bad;
    EXPECT_TRUE(refused_naming(mac("ff:ff:ff:ff:ff:ff"), {"outside.next_hop_mac", "group"}));
    EXPECT_TRUE(refused_naming(mac("01:00:5e:00:00:01"), {"outside.next_hop_mac", "group"}));
    EXPECT_TRUE(refused_naming(mac("00:00:00:00:00:00"), {"outside.next_hop_mac", "all-zero"}));
}

// The file's own spelling of the key, once: "nat.ports", not "ports.first"
// or the key twice over.
TEST(GatewayConfig, ValidationErrorsNameTheKeyAsTheFileSpellsIt)
{
    const std::string low = error_of(kMinimal + "ports = \"1000-2000\"\n");
    EXPECT_NE(low.find("nat.ports = \"1000-2000\""), std::string::npos) << low;
    EXPECT_EQ(low.find("ports.first"), std::string::npos) << low;
    const std::string filtering = error_of(kMinimal + "filtering = \"strict\"\n");
    EXPECT_NE(filtering.find("nat.filtering"), std::string::npos) << filtering;
    EXPECT_EQ(filtering.find("filtering"), filtering.rfind("filtering")) << filtering; // named once
    EXPECT_TRUE(refused_naming(kMinimal + "ports = \"1024-1024\"\n[dataplane]\nworkers = 2\n", {"nat.ports", "dataplane.workers"}));
    EXPECT_TRUE(refused_naming(kMinimal + "ports = \"60000-65535\"\nport_block_size = 9000\n", {"nat.port_block_size"}));
    EXPECT_TRUE(refused_naming(kMinimal + "port_block_size = 8\nport_parity = true\n", {"nat.port_parity", "nat.port_block_size"}));
    const std::string prefix = error_of(with(kMinimal, "198.51.100.0/28", "198.51.100.1/28"));
    EXPECT_NE(prefix.find("nat.pool = \"198.51.100.1/28\": host bits"), std::string::npos) << prefix;
}
