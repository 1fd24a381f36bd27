// Configuration validation and parsing: every refusal is a ConfigError whose
// message names the key and the offending value.
#include <functional>
#include <string>

#include <gtest/gtest.h>

#include "ephemera/config.hpp"
#include "ephemera/port_allocator.hpp"
#include "packet_builder.hpp"

namespace ephtest {
namespace {

using ephemera::ConfigError;
using ephemera::FilteringMode;
using ephemera::NatConfig;

NatConfig valid_config()
{
    NatConfig c;
    c.pool = {ip(198, 51, 100, 1), ip(198, 51, 100, 2)};
    return c;
}

// Runs fn, expects a ConfigError, and checks its message names every needle.
::testing::AssertionResult throws_naming(const std::function<void()>& fn, const std::vector<std::string>& needles)
{
    try {
        fn();
    } catch (const ConfigError& e) {
        const std::string what = e.what();
        for (const std::string& n : needles)
            if (what.find(n) == std::string::npos)
                return ::testing::AssertionFailure() << "message \"" << what << "\" does not name \"" << n << "\"";
        return ::testing::AssertionSuccess();
    } catch (const std::exception& e) {
        return ::testing::AssertionFailure() << "threw something else than ConfigError: " << e.what();
    }
    return ::testing::AssertionFailure() << "did not throw";
}

::testing::AssertionResult config_refused(const NatConfig& c, const std::vector<std::string>& needles)
{
    return throws_naming([&] { ephemera::validate(c); }, needles);
}

TEST(Config, DefaultsWithAPoolAreValid)
{
    EXPECT_NO_THROW(ephemera::validate(valid_config()));
    const NatConfig d;
    // RFC 4787 REQ-5c, RFC 5382 REQ-5, RFC 5508 REQ-2, RFC 6888 REQ-8 defaults.
    EXPECT_EQ(d.timeouts.udp, 300u);
    EXPECT_EQ(d.timeouts.tcp_established, 7440u);
    EXPECT_EQ(d.timeouts.tcp_transitory, 240u);
    EXPECT_EQ(d.timeouts.icmp, 60u);
    EXPECT_EQ(d.timeouts.sctp, 300u);
    EXPECT_EQ(d.timeouts.quarantine, 120u);
    EXPECT_EQ(d.filtering, FilteringMode::EndpointIndependent); // RFC 6888 REQ-7
    EXPECT_EQ(d.ports.first, 49152);                               // IANA dynamic range
    EXPECT_EQ(d.ports.last, 65535);
}

TEST(Config, PortRangeBelow1024IsRefusedNamingKeyAndValue)
{
    NatConfig c = valid_config();
    c.ports.first = 1023;
    EXPECT_TRUE(config_refused(c, {"ports", "1023"}));
    EXPECT_TRUE(throws_naming([] { ephemera::validate_port_range(80, 2000); }, {"ports", "80"}));
    EXPECT_TRUE(throws_naming([] { ephemera::validate_port_range(0, 65535); }, {"ports", "0"}));
}

TEST(Config, PortRangeAbove65535IsRefusedNamingKeyAndValue)
{
    EXPECT_TRUE(throws_naming([] { ephemera::validate_port_range(1024, 65536); }, {"ports", "65536"}));
    EXPECT_TRUE(throws_naming([] { ephemera::validate_port_range(70000, 70001); }, {"ports", "70000"}));
}

TEST(Config, PortRangeFirstAboveLastIsRefused)
{
    NatConfig c = valid_config();
    c.ports = {50001, 50000};
    EXPECT_TRUE(config_refused(c, {"ports", "50001", "50000"}));
}

TEST(Config, PortRangeEdgesAreAccepted)
{
    EXPECT_NO_THROW(ephemera::validate_port_range(1024, 65535));
    EXPECT_NO_THROW(ephemera::validate_port_range(50000, 50000));
    EXPECT_NO_THROW(ephemera::validate_port_range(32768, 60999)); // Linux ip_local_port_range
}

TEST(Config, EmptyPoolIsRefused)
{
    NatConfig c = valid_config();
    c.pool.clear();
    EXPECT_TRUE(config_refused(c, {"pool"}));
}

TEST(Config, DuplicatePoolAddressIsRefusedNamingIt)
{
    NatConfig c = valid_config();
    c.pool.push_back(ip(198, 51, 100, 2));
    EXPECT_TRUE(config_refused(c, {"pool", "198.51.100.2"}));
}

TEST(Config, ZeroWorkersIsRefused)
{
    NatConfig c = valid_config();
    c.workers = 0;
    EXPECT_TRUE(config_refused(c, {"workers", "0"}));
}

TEST(Config, FewerPortsThanWorkersIsRefused)
{
    NatConfig c = valid_config();
    c.workers = 4;
    c.ports = {50000, 50002};
    EXPECT_TRUE(config_refused(c, {"ports", "50000", "50002"}));
}

TEST(Config, ZeroTimeoutIsRefusedNamingTheKey)
{
    NatConfig c = valid_config();
    c.timeouts.udp = 0;
    EXPECT_TRUE(config_refused(c, {"udp", "0"}));
    c = valid_config();
    c.timeouts.tcp_established = 0;
    EXPECT_TRUE(config_refused(c, {"tcp_established", "0"}));
    c = valid_config();
    c.timeouts.icmp = 0;
    EXPECT_TRUE(config_refused(c, {"icmp", "0"}));
}

TEST(Config, OverlongQuarantineIsRefusedNamingKeyAndValue)
{
    NatConfig c = valid_config();
    c.timeouts.quarantine = 3601;
    EXPECT_TRUE(config_refused(c, {"quarantine", "3601"}));
    c.timeouts.quarantine = 0; // no quarantine at all is the operator's choice
    EXPECT_NO_THROW(ephemera::validate(c));
}

TEST(Config, TableSizesOutOfBoundsAreRefused)
{
    NatConfig c = valid_config();
    c.max_mappings = 0;
    EXPECT_TRUE(config_refused(c, {"max_mappings", "0"}));
    c = valid_config();
    c.max_sessions_per_mapping = 0;
    EXPECT_TRUE(config_refused(c, {"max_sessions_per_mapping", "0"}));
}

TEST(Config, ParseIpv4)
{
    EXPECT_EQ(ephemera::parse_ipv4("198.51.100.7"), ip(198, 51, 100, 7));
    EXPECT_EQ(ephemera::parse_ipv4("0.0.0.1"), 1u);
    EXPECT_EQ(ephemera::format_ipv4(ip(203, 0, 113, 254)), "203.0.113.254");
}

TEST(Config, ParseIpv4RefusesBadTextNamingIt)
{
    for (const std::string bad : {"198.51.100.256", "abc", "1.2.3", "", "1.2.3.4.5", "198.51.100.7 "})
        EXPECT_TRUE(throws_naming([&] { ephemera::parse_ipv4(bad); }, {"\"" + bad + "\""})) << bad;
}

TEST(Config, ParsePrefixSlash28GivesSixteenAddressesInOrder)
{
    const std::vector<uint32_t> v = ephemera::parse_ipv4_prefix("198.51.100.0/28");
    ASSERT_EQ(v.size(), 16u);
    for (uint32_t i = 0; i < 16; ++i) EXPECT_EQ(v[i], ip(198, 51, 100, 0) + i);
}

TEST(Config, ParsePrefixSingleAddress)
{
    EXPECT_EQ(ephemera::parse_ipv4_prefix("198.51.100.9"), std::vector<uint32_t>{ip(198, 51, 100, 9)});
    EXPECT_EQ(ephemera::parse_ipv4_prefix("198.51.100.9/32"), std::vector<uint32_t>{ip(198, 51, 100, 9)});
}

TEST(Config, ParsePrefixRefusesBadTextNamingIt)
{
    for (const std::string bad : {"198.51.100.0/33", "198.51.100.0/abc", "198.51.100.0/", "198.51.100/28"})
        EXPECT_TRUE(throws_naming([&] { ephemera::parse_ipv4_prefix(bad); }, {bad})) << bad;
}

TEST(Config, ParseFilteringModes)
{
    EXPECT_EQ(ephemera::parse_filtering_mode("endpoint-independent"), FilteringMode::EndpointIndependent);
    EXPECT_EQ(ephemera::parse_filtering_mode("address-dependent"), FilteringMode::AddressDependent);
    EXPECT_EQ(ephemera::parse_filtering_mode("address-and-port-dependent"), FilteringMode::AddressAndPortDependent);
    for (auto m : {FilteringMode::EndpointIndependent, FilteringMode::AddressDependent,
                   FilteringMode::AddressAndPortDependent})
        EXPECT_EQ(ephemera::parse_filtering_mode(ephemera::to_string(m)), m);
}

TEST(Config, ParseFilteringModeRefusesUnknownNamingIt)
{
    EXPECT_TRUE(throws_naming([] { ephemera::parse_filtering_mode("full-cone"); }, {"filtering", "full-cone"}));
    EXPECT_TRUE(throws_naming([] { ephemera::parse_filtering_mode("Endpoint-Independent"); },
                              {"filtering", "Endpoint-Independent"}));
}

} // namespace
} // namespace ephtest
