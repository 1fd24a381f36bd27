// The Prometheus endpoint: the text format of the counters (parsed back line by
// line, values compared with the JSON), the port use of real partitions, and
// the HTTP server over real TCP sockets on 127.0.0.1 (status codes, garbage,
// slow clients, prompt shutdown).
#include <atomic>
#include <chrono>
#include <functional>
#include <limits>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <tuple>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "../control/metrics.hpp"
#include "ephemera/config.hpp"
#include "ephemera/stats.hpp"
#include "nat_harness.hpp"

namespace {

using nlohmann::json;
using namespace std::chrono_literals;

// ---------------------------------------------------------------------------
// A strict reader of the text format 0.0.4
// ---------------------------------------------------------------------------

using LabelSet = std::map<std::string, std::string>;

struct Sample {
    std::string name;
    LabelSet labels;
    std::string value;
};

struct FamilyInfo {
    std::string help, type;
    std::vector<Sample> samples;
};

struct Exposition {
    std::map<std::string, FamilyInfo> families;
    std::vector<std::string> order; // families in the order they appear
    std::vector<Sample> samples;

    std::optional<std::string> value(const std::string& name, const LabelSet& labels = {}) const
    {
        for (const Sample& s : samples)
            if (s.name == name && s.labels == labels) return s.value;
        return std::nullopt;
    }
    size_t count(const std::string& name) const
    {
        const auto it = families.find(name);
        return it == families.end() ? 0 : it->second.samples.size();
    }
};

bool valid_name(const std::string& n, bool metric)
{
    if (n.empty()) return false;
    for (size_t i = 0; i < n.size(); ++i) {
        const char c = n[i];
        const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (metric && c == ':');
        if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
    }
    return true;
}

bool valid_value(const std::string& v)
{
    if (v == "NaN" || v == "+Inf" || v == "-Inf") return true;
    if (v.empty()) return false;
    size_t used = 0;
    try {
        (void)std::stod(v, &used);
    } catch (...) {
        return false;
    }
    return used == v.size();
}

// Parses `text` as the exposition format into e; every violation is a test
// failure (a fatal one ends the parse).
void parse_into(const std::string& text, Exposition& e)
{
    EXPECT_TRUE(text.empty() || text.back() == '\n') << "the text must end with a newline";
    std::string current; // family whose samples may follow
    std::set<std::string> closed;
    size_t pos = 0;
    while (pos < text.size()) {
        const size_t eol = text.find('\n', pos);
        const std::string line = text.substr(pos, eol - pos);
        pos = eol == std::string::npos ? text.size() : eol + 1;
        SCOPED_TRACE("line: " + line);
        EXPECT_FALSE(line.empty()) << "no empty lines expected";
        if (line.empty()) continue;
        if (line[0] == '#') {
            const bool help = line.rfind("# HELP ", 0) == 0, type = line.rfind("# TYPE ", 0) == 0;
            EXPECT_TRUE(help || type) << "only HELP and TYPE comments are written";
            if (!help && !type) continue;
            const std::string rest = line.substr(7);
            const size_t sp = rest.find(' ');
            EXPECT_NE(sp, std::string::npos);
            if (sp == std::string::npos) continue;
            const std::string name = rest.substr(0, sp), arg = rest.substr(sp + 1);
            EXPECT_TRUE(valid_name(name, true)) << name;
            EXPECT_EQ(closed.count(name), 0u) << name << " appears twice";
            if (help) {
                // HELP opens a family: the previous one is over.
                if (!current.empty() && current != name) closed.insert(current);
                EXPECT_EQ(e.families.count(name), 0u) << name << " has two HELP lines";
                e.families[name].help = arg;
                e.order.push_back(name);
                current = name;
                EXPECT_FALSE(arg.empty());
            } else {
                EXPECT_EQ(current, name) << "TYPE right after the family's HELP";
                EXPECT_TRUE(e.families[name].type.empty()) << name << " has two TYPE lines";
                EXPECT_TRUE(arg == "counter" || arg == "gauge" || arg == "untyped") << arg;
                EXPECT_TRUE(e.families[name].samples.empty()) << "TYPE before the samples";
                e.families[name].type = arg;
            }
            continue;
        }
        // name{label="value",...} value
        Sample s;
        size_t i = 0;
        while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
        s.name = line.substr(0, i);
        EXPECT_TRUE(valid_name(s.name, true)) << s.name;
        if (i < line.size() && line[i] == '{') {
            ++i;
            while (i < line.size() && line[i] != '}') {
                const size_t eq = line.find('=', i);
                ASSERT_NE(eq, std::string::npos) << "label without =";
                const std::string lname = line.substr(i, eq - i);
                EXPECT_TRUE(valid_name(lname, false)) << lname;
                EXPECT_NE(lname.rfind("__", 0), 0u) << "reserved label name";
                i = eq + 1;
                ASSERT_LT(i, line.size());
                ASSERT_EQ(line[i], '"');
                ++i;
                std::string lvalue;
                bool closed_quote = false;
                while (i < line.size()) {
                    const char c = line[i++];
                    if (c == '"') {
                        closed_quote = true;
                        break;
                    }
                    if (c == '\\') {
                        ASSERT_LT(i, line.size());
                        const char x = line[i++];
                        ASSERT_TRUE(x == '\\' || x == '"' || x == 'n') << "bad escape \\" << x;
                        lvalue += x == 'n' ? '\n' : x;
                    } else {
                        lvalue += c;
                    }
                }
                ASSERT_TRUE(closed_quote);
                EXPECT_EQ(s.labels.count(lname), 0u) << "label " << lname << " twice";
                s.labels[lname] = lvalue;
                if (i < line.size() && line[i] == ',') ++i;
            }
            ASSERT_LT(i, line.size()) << "unterminated labels";
            ++i; // '}'
        }
        ASSERT_LT(i, line.size());
        ASSERT_EQ(line[i], ' ') << "one space before the value";
        s.value = line.substr(i + 1);
        EXPECT_TRUE(valid_value(s.value)) << "value '" << s.value << "'";
        EXPECT_EQ(s.name, current) << "a sample belongs to the family whose HELP/TYPE precede it";
        EXPECT_FALSE(e.families[s.name].type.empty()) << s.name << ": TYPE before the samples";
        for (const Sample& o : e.families[s.name].samples)
            EXPECT_FALSE(o.labels == s.labels) << s.name << ": the same series twice";
        e.families[s.name].samples.push_back(s);
        e.samples.push_back(s);
    }
    for (const auto& [name, f] : e.families) {
        EXPECT_FALSE(f.samples.empty()) << name << ": a family without samples";
        EXPECT_EQ(name.rfind("ephemera_", 0), 0u) << name;
        if (f.type == "counter") EXPECT_TRUE(name.size() > 6 && name.substr(name.size() - 6) == "_total") << name;
        else EXPECT_FALSE(name.size() > 6 && name.substr(name.size() - 6) == "_total") << name;
    }
}

Exposition parse_exposition(const std::string& text)
{
    Exposition e;
    parse_into(text, e);
    return e;
}

std::string num(uint64_t v) { return std::to_string(v); }

// A stats object of the shape gateway_stats() writes, every value distinct.
json sample_stats()
{
    uint64_t n = 1000;
    json drops;
    for (ephemera::Dir d : {ephemera::Dir::Out, ephemera::Dir::In}) {
        json by_reason = json::object();
        for (unsigned r = 0; r < ephemera::kDropCount; ++r) by_reason[ephemera::to_string(ephemera::Drop(r))] = n++;
        drops[ephemera::to_string(d)] = by_reason;
    }
    json by_protocol;
    for (const char* key :
         {"mappings", "sessions", "mappings_created", "mappings_released", "sessions_created", "sessions_released"})
        for (unsigned l = 0; l < ephemera::kL4Count; ++l) by_protocol[key][ephemera::to_string(ephemera::L4(l))] = n++;
    return {
        {"rx", {{"inside", 1}, {"outside", 2}}},
        {"tx", {{"inside", 3}, {"outside", 4}}},
        {"tx_dropped", {{"inside", 5}, {"outside", 6}}},
        {"translated", {{"out", 7}, {"in", 8}}},
        {"icmp_errors_translated", {{"out", 9}, {"in", 10}}},
        {"drops", drops},
        {"mappings", 11},
        {"sessions", 12},
        {"mappings_created", 13},
        {"mappings_released", 14},
        {"sessions_created", 15},
        {"sessions_released", 16},
        {"by_protocol", by_protocol},
        {"handoff", {{"out", 17}, {"in", 18}}},
        {"handoff_full", {{"out", 19}, {"in", 20}}},
        {"handoff_index", {{"used", 61}, {"stale", 62}}},
        {"hairpinned", 21},
        {"arp_replies", 22},
        {"arp_ignored", 63},
        {"arp_requests_sent", 23},
        {"echo_replies", 24},
        {"time_exceeded_sent", 25},
        {"icmp_rate_limited", 26},
        {"no_next_hop", 27},
        {"not_for_us", 28},
        {"local_dropped", 29},
        {"workers", 4},
    };
}

TEST(MetricsText, MappingLogEventsAndErrorsBySink)
{
    json stats = sample_stats();
    stats["log"] = {{"events", 31}, {"ipfix_messages", 32}, {"errors", {{"ipfix", 33}, {"file", 34}}}};
    const Exposition e = parse_exposition(ephemera::prometheus_text(stats, nullptr));
    EXPECT_EQ(e.families.at("ephemera_mapping_log_events_total").type, "counter");
    EXPECT_EQ(e.value("ephemera_mapping_log_events_total"), "31");
    EXPECT_EQ(e.value("ephemera_ipfix_messages_total"), "32");
    EXPECT_EQ(e.count("ephemera_mapping_log_errors_total"), 2u);
    EXPECT_EQ(e.value("ephemera_mapping_log_errors_total", {{"sink", "ipfix"}}), "33");
    EXPECT_EQ(e.value("ephemera_mapping_log_errors_total", {{"sink", "file"}}), "34");
}

TEST(MetricsText, UnsolicitedSynsByOutcome)
{
    json stats = sample_stats();
    stats["unsolicited_syn"] = {{"held", 71}, {"not_held", 72}, {"superseded", 73}, {"answered", 74}};
    const Exposition e = parse_exposition(ephemera::prometheus_text(stats, nullptr));
    EXPECT_EQ(e.families.at("ephemera_unsolicited_syns_total").type, "counter");
    EXPECT_EQ(e.count("ephemera_unsolicited_syns_total"), 4u);
    EXPECT_EQ(e.value("ephemera_unsolicited_syns_total", {{"result", "held"}}), "71");
    EXPECT_EQ(e.value("ephemera_unsolicited_syns_total", {{"result", "not_held"}}), "72");
    EXPECT_EQ(e.value("ephemera_unsolicited_syns_total", {{"result", "superseded"}}), "73");
    EXPECT_EQ(e.value("ephemera_unsolicited_syns_total", {{"result", "answered"}}), "74");
}

TEST(MetricsText, PortDropsArePerPort)
{
    json stats = sample_stats();
    stats["nic"] = {{"missed", {{"inside", 41}, {"outside", 42}}},
                    {"rx_errors", {{"inside", 43}, {"outside", 44}}},
                    {"tx_errors", {{"inside", 45}, {"outside", 46}}},
                    {"rx_no_mbuf", {{"inside", 47}, {"outside", 48}}}};
    const Exposition e = parse_exposition(ephemera::prometheus_text(stats, nullptr));
    EXPECT_EQ(e.value("ephemera_nic_missed_total", {{"port", "inside"}}), "41");
    EXPECT_EQ(e.value("ephemera_nic_missed_total", {{"port", "outside"}}), "42");
    EXPECT_EQ(e.value("ephemera_nic_rx_errors_total", {{"port", "outside"}}), "44");
    EXPECT_EQ(e.value("ephemera_nic_tx_errors_total", {{"port", "inside"}}), "45");
    EXPECT_EQ(e.value("ephemera_nic_rx_no_mbuf_total", {{"port", "outside"}}), "48");
}

TEST(MetricsText, EveryLineParsesAndEveryValueMatchesTheJson)
{
    const json stats = sample_stats();
    const Exposition e = parse_exposition(ephemera::prometheus_text(stats, nullptr));

    const std::pair<const char*, const char*> by_port[] = {{"ephemera_packets_received_total", "rx"},
                                                           {"ephemera_packets_transmitted_total", "tx"},
                                                           {"ephemera_tx_dropped_total", "tx_dropped"}};
    for (const auto& [name, key] : by_port) {
        EXPECT_EQ(e.families.at(name).type, "counter");
        EXPECT_EQ(e.count(name), 2u) << name;
        for (const char* port : {"inside", "outside"})
            EXPECT_EQ(e.value(name, {{"port", port}}), num(stats[key][port].get<uint64_t>())) << name << " " << port;
    }
    const std::pair<const char*, const char*> by_dir[] = {{"ephemera_packets_translated_total", "translated"},
                                                          {"ephemera_icmp_errors_translated_total",
                                                           "icmp_errors_translated"},
                                                          {"ephemera_handoff_total", "handoff"},
                                                          {"ephemera_handoff_full_drops_total", "handoff_full"}};
    for (const auto& [name, key] : by_dir) {
        EXPECT_EQ(e.families.at(name).type, "counter");
        EXPECT_EQ(e.count(name), 2u) << name;
        for (const char* dir : {"out", "in"})
            EXPECT_EQ(e.value(name, {{"direction", dir}}), num(stats[key][dir].get<uint64_t>())) << name << " " << dir;
    }

    EXPECT_EQ(e.families.at("ephemera_handoff_index_total").type, "counter");
    EXPECT_EQ(e.value("ephemera_handoff_index_total", {{"result", "used"}}), num(61));
    EXPECT_EQ(e.value("ephemera_handoff_index_total", {{"result", "stale"}}), num(62));

    EXPECT_EQ(e.count("ephemera_packets_dropped_total"), 2 * ephemera::kDropCount);
    for (const char* dir : {"out", "in"})
        for (unsigned r = 0; r < ephemera::kDropCount; ++r) {
            const char* reason = ephemera::to_string(ephemera::Drop(r));
            EXPECT_EQ(e.value("ephemera_packets_dropped_total", {{"direction", dir}, {"reason", reason}}),
                      num(stats["drops"][dir][reason].get<uint64_t>()))
                << dir << " " << reason;
        }

    EXPECT_EQ(e.families.at("ephemera_workers").type, "gauge");
    EXPECT_EQ(e.value("ephemera_workers"), num(stats["workers"].get<uint64_t>()));
    const std::tuple<const char*, const char*, const char*> by_protocol[] = {
        {"ephemera_mappings", "gauge", "mappings"},
        {"ephemera_sessions", "gauge", "sessions"},
        {"ephemera_mappings_created_total", "counter", "mappings_created"},
        {"ephemera_mappings_released_total", "counter", "mappings_released"},
        {"ephemera_sessions_created_total", "counter", "sessions_created"},
        {"ephemera_sessions_released_total", "counter", "sessions_released"},
    };
    for (const auto& [name, type, key] : by_protocol) {
        EXPECT_EQ(e.families.at(name).type, type) << name;
        EXPECT_EQ(e.count(name), ephemera::kL4Count) << name;
        for (unsigned l = 0; l < ephemera::kL4Count; ++l) {
            const char* protocol = ephemera::to_string(ephemera::L4(l));
            EXPECT_EQ(e.value(name, {{"protocol", protocol}}),
                      num(stats["by_protocol"][key][protocol].get<uint64_t>()))
                << name << " " << protocol;
        }
    }
    const std::pair<const char*, const char*> counters[] = {
        {"ephemera_hairpinned_total", "hairpinned"},
        {"ephemera_arp_replies_total", "arp_replies"},
        {"ephemera_arp_ignored_total", "arp_ignored"},
        {"ephemera_arp_requests_sent_total", "arp_requests_sent"},
        {"ephemera_echo_replies_total", "echo_replies"},
        {"ephemera_time_exceeded_sent_total", "time_exceeded_sent"},
        {"ephemera_icmp_rate_limited_total", "icmp_rate_limited"},
        {"ephemera_no_next_hop_total", "no_next_hop"},
        {"ephemera_not_for_us_total", "not_for_us"},
        {"ephemera_local_dropped_total", "local_dropped"},
    };
    for (const auto& [name, key] : counters) {
        EXPECT_EQ(e.families.at(name).type, "counter") << name;
        EXPECT_EQ(e.value(name), num(stats[key].get<uint64_t>())) << name;
    }
    // Nothing else: every sample was accounted for above (the 2: handoff_index).
    EXPECT_EQ(e.samples.size(), 3 * 2 + 4 * 2 + 2 + 2 * ephemera::kDropCount + 1 + 6 * ephemera::kL4Count + 10);
    EXPECT_EQ(e.count("ephemera_pool_ports"), 0u) << "no ports given: no family";
}

TEST(MetricsText, MissingAndOddValuesGiveNoSamplesAndNoEmptyFamilies)
{
    EXPECT_EQ(ephemera::prometheus_text(json::object(), nullptr), "");
    EXPECT_EQ(ephemera::prometheus_text(nullptr, nullptr), "");
    EXPECT_EQ(ephemera::prometheus_text(json::array({1, 2}), json::object()), "");

    json stats = {
        {"rx", {{"inside", 5}, {"outside", "many"}}},      // a string: skipped
        {"tx", json::object()},                             // empty: no family at all
        {"hairpinned", true},                               // a boolean: skipped
        {"echo_replies", nullptr},                          // null: skipped
        {"drops", {{"out", {{"ttl", 3}, {"odd", {{"deeper", 1}}}}}, {"in", 7}}}, // too deep: skipped
        {"by_protocol", {{"mappings", {{"tcp", 2}, {"udp", 3}}}, {"sessions", -4}}}, // a number: no label
        {"workers", 1.5},
        {"unknown_key", 99},
    };
    const std::string text = ephemera::prometheus_text(stats, nullptr);
    const Exposition e = parse_exposition(text);
    EXPECT_EQ(e.value("ephemera_packets_received_total", {{"port", "inside"}}), "5");
    EXPECT_EQ(e.count("ephemera_packets_received_total"), 1u);
    EXPECT_EQ(e.families.count("ephemera_packets_transmitted_total"), 0u);
    EXPECT_EQ(e.families.count("ephemera_hairpinned_total"), 0u);
    EXPECT_EQ(e.families.count("ephemera_echo_replies_total"), 0u);
    EXPECT_EQ(e.value("ephemera_packets_dropped_total", {{"direction", "out"}, {"reason", "ttl"}}), "3");
    EXPECT_EQ(e.value("ephemera_packets_dropped_total", {{"direction", "in"}}), "7");
    EXPECT_EQ(e.count("ephemera_packets_dropped_total"), 2u);
    EXPECT_EQ(e.value("ephemera_mappings", {{"protocol", "tcp"}}), "2");
    EXPECT_EQ(e.value("ephemera_mappings", {{"protocol", "udp"}}), "3");
    EXPECT_EQ(e.value("ephemera_sessions"), "-4");
    EXPECT_EQ(e.value("ephemera_workers"), "1.5");
    EXPECT_EQ(text.find("unknown_key"), std::string::npos);
}

TEST(MetricsText, LargeCountersAreExactAndSpecialFloatsAreSpelledOut)
{
    const json stats = {{"hairpinned", UINT64_MAX}, {"arp_replies", uint64_t(1) << 53 | 1},
                        {"by_protocol",
                         {{"mappings", std::numeric_limits<double>::quiet_NaN()},
                          {"sessions", std::numeric_limits<double>::infinity()}}}};
    const Exposition e = parse_exposition(ephemera::prometheus_text(stats, nullptr));
    EXPECT_EQ(e.value("ephemera_hairpinned_total"), "18446744073709551615");
    EXPECT_EQ(e.value("ephemera_arp_replies_total"), "9007199254740993");
    EXPECT_EQ(e.value("ephemera_mappings"), "NaN");
    EXPECT_EQ(e.value("ephemera_sessions"), "+Inf");
}

TEST(MetricsText, PoolPortsAreGaugesPerPoolProtocolWorkerAndState)
{
    const json ports = json::array({
        {{"pool", "198.51.100.11"}, {"protocol", "udp"}, {"worker", 0}, {"free", 100}, {"quarantined", 2},
         {"in_use", 3}},
        {{"pool", "198.51.100.11"}, {"protocol", "tcp"}, {"worker", 1}, {"free", 50}, {"quarantined", 0},
         {"in_use", 55}},
        // same labels as the first: summed, never the same series twice
        {{"pool", "198.51.100.11"}, {"protocol", "udp"}, {"worker", 0}, {"free", 1}, {"quarantined", 1},
         {"in_use", 1}},
        // label values that need escaping
        {{"pool", "a\"b\\c\nd"}, {"protocol", "sctp"}, {"worker", "7"}, {"free", 9}},
        // not usable: skipped
        {{"protocol", "udp"}, {"worker", 0}, {"free", 1}},
        {{"pool", "198.51.100.12"}, {"protocol", "udp"}, {"worker", json::array()}, {"free", 1}},
        42,
        "x",
        nullptr,
    });
    const Exposition e = parse_exposition(ephemera::prometheus_text(json::object(), ports));
    ASSERT_EQ(e.order, std::vector<std::string>{"ephemera_pool_ports"});
    EXPECT_EQ(e.families.at("ephemera_pool_ports").type, "gauge");
    auto v = [&](const char* pool, const char* proto, const char* worker, const char* state) {
        return e.value("ephemera_pool_ports",
                       {{"pool", pool}, {"protocol", proto}, {"worker", worker}, {"state", state}});
    };
    EXPECT_EQ(v("198.51.100.11", "udp", "0", "free"), "101");
    EXPECT_EQ(v("198.51.100.11", "udp", "0", "quarantined"), "3");
    EXPECT_EQ(v("198.51.100.11", "udp", "0", "in_use"), "4");
    EXPECT_EQ(v("198.51.100.11", "tcp", "1", "free"), "50");
    EXPECT_EQ(v("198.51.100.11", "tcp", "1", "quarantined"), "0");
    EXPECT_EQ(v("198.51.100.11", "tcp", "1", "in_use"), "55");
    EXPECT_EQ(v("a\"b\\c\nd", "sctp", "7", "free"), "9");
    EXPECT_EQ(e.count("ephemera_pool_ports"), 7u);

    // Not an array: nothing.
    EXPECT_EQ(ephemera::prometheus_text(json::object(), json::object()), "");
    EXPECT_EQ(ephemera::prometheus_text(json::object(), json::array()), "");
}

TEST(MetricsText, StatsAndPortsTogether)
{
    const json ports = json::array(
        {{{"pool", "198.51.100.1"}, {"protocol", "icmp"}, {"worker", 2}, {"free", 1}, {"quarantined", 2},
          {"in_use", 3}}});
    const Exposition e = parse_exposition(ephemera::prometheus_text(sample_stats(), ports));
    EXPECT_EQ(e.order.back(), "ephemera_pool_ports");
    EXPECT_EQ(e.count("ephemera_pool_ports"), 3u);
    EXPECT_EQ(e.value("ephemera_hairpinned_total"), "21");
}

// The port use of a real translator's partitions, as the daemon gives it.
class MetricsPorts : public ephtest::NatTest {};

TEST_F(MetricsPorts, PoolPortsOfATranslatorFollowAllocationAndQuarantine)
{
    using ephemera::L4;
    ephtest::Nat nat(ephtest::small_config());
    auto find = [](const json& ports, const std::string& proto) {
        for (const json& p : ports)
            if (p["protocol"] == proto) return p;
        return json();
    };
    json ports = ephemera::pool_ports(nat.tr);
    ASSERT_EQ(ports.size(), nat.cfg.pool.size() * ephemera::kL4Count);
    const uint32_t size = nat.tr.partition(0, L4::Udp).size();
    for (const json& p : ports) {
        EXPECT_EQ(p["pool"], ephemera::format_ipv4(nat.cfg.pool[0]));
        EXPECT_EQ(p["worker"], 0);
        EXPECT_EQ(p["free"].get<uint32_t>() + p["quarantined"].get<uint32_t>() + p["in_use"].get<uint32_t>(), size);
        EXPECT_EQ(p["in_use"], 0);
    }
    std::set<std::string> protocols;
    for (const json& p : ports) protocols.insert(p["protocol"].get<std::string>());
    EXPECT_EQ(protocols, (std::set<std::string>{"tcp", "udp", "icmp", "sctp"}));

    ASSERT_NE(nat.open_udp(ephtest::kSub1, 40000), 0);
    ASSERT_NE(nat.open_udp(ephtest::kSub1, 40001), 0);
    ports = ephemera::pool_ports(nat.tr);
    EXPECT_EQ(find(ports, "udp")["in_use"], 2);
    EXPECT_EQ(find(ports, "udp")["free"], size - 2);
    EXPECT_EQ(find(ports, "tcp")["in_use"], 0);

    nat.tr.release_mapping(nat.mapping_of(ephtest::kSub1, 40000, L4::Udp), nat.now());
    ports = ephemera::pool_ports(nat.tr);
    EXPECT_EQ(find(ports, "udp")["in_use"], 1);
    EXPECT_EQ(find(ports, "udp")["quarantined"], 1);
    EXPECT_EQ(find(ports, "udp")["free"], size - 2);

    const Exposition e = parse_exposition(ephemera::prometheus_text(json::object(), ports));
    EXPECT_EQ(e.value("ephemera_pool_ports", {{"pool", ephemera::format_ipv4(nat.cfg.pool[0])},
                                              {"protocol", "udp"},
                                              {"worker", "0"},
                                              {"state", "quarantined"}}),
              "1");
    EXPECT_EQ(e.count("ephemera_pool_ports"), 3 * ports.size());
}

// ---------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------

struct Reply {
    bool ok = false; // got a complete answer and the server closed
    int status = 0;
    mutable std::map<std::string, std::string> headers; // names lowercased
    std::string body;
    std::string raw;
};

int connect_to(uint16_t port)
{
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval tv{10, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

// Reads to EOF (10 s at most) and parses an HTTP/1.1 answer.
Reply read_reply(int fd)
{
    Reply r;
    char buf[4096];
    for (;;) {
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n > 0) {
            r.raw.append(buf, size_t(n));
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return r; // timed out or reset
        break;
    }
    const size_t head_end = r.raw.find("\r\n\r\n");
    if (head_end == std::string::npos || r.raw.rfind("HTTP/1.1 ", 0) != 0) return r;
    r.status = std::stoi(r.raw.substr(9, 3));
    size_t pos = r.raw.find("\r\n") + 2;
    while (pos < head_end) {
        const size_t eol = r.raw.find("\r\n", pos);
        const std::string line = r.raw.substr(pos, eol - pos);
        const size_t colon = line.find(':');
        if (colon != std::string::npos) {
            std::string name = line.substr(0, colon);
            for (char& c : name) c = char(std::tolower(static_cast<unsigned char>(c)));
            std::string value = line.substr(colon + 1);
            while (!value.empty() && value.front() == ' ') value.erase(0, 1);
            r.headers[name] = value;
        }
        pos = eol + 2;
    }
    r.body = r.raw.substr(head_end + 4);
    r.ok = true;
    return r;
}

Reply http_exchange(uint16_t port, const std::string& request, bool half_close = false)
{
    const int fd = connect_to(port);
    if (fd < 0) return {};
    size_t done = 0;
    while (done < request.size()) {
        const ssize_t n = ::send(fd, request.data() + done, request.size() - done, MSG_NOSIGNAL);
        if (n <= 0) break; // the server may answer (and close) before reading it all
        done += size_t(n);
    }
    if (half_close) ::shutdown(fd, SHUT_WR);
    Reply r = read_reply(fd);
    ::close(fd);
    return r;
}

Reply get(uint16_t port, const std::string& path)
{
    return http_exchange(port,
                         "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: test\r\nAccept: */*\r\n\r\n");
}

struct Scraped {
    std::atomic<int> renders{0};
    std::string text = ephemera::prometheus_text(sample_stats(), nullptr);
    std::function<std::string()> render()
    {
        return [this] {
            ++renders;
            return text;
        };
    }
};

TEST(MetricsServer, ScrapeOverTcpAnswers200WithTheTextFormat)
{
    Scraped s;
    ephemera::MetricsServer server("127.0.0.1:0", s.render());
    ASSERT_NE(server.port(), 0);
    const Reply r = get(server.port(), "/metrics");
    ASSERT_TRUE(r.ok) << r.raw;
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.headers["content-type"].rfind("text/plain; version=0.0.4", 0), 0u) << r.headers["content-type"];
    EXPECT_EQ(r.headers["content-length"], std::to_string(s.text.size()));
    EXPECT_EQ(r.headers["connection"], "close");
    EXPECT_EQ(r.body, s.text);
    EXPECT_EQ(s.renders.load(), 1);
    const Exposition e = parse_exposition(r.body);
    EXPECT_EQ(e.value("ephemera_packets_translated_total", {{"direction", "out"}}), "7");

    // A query string is fine; HTTP/1.0 too.
    EXPECT_EQ(get(server.port(), "/metrics?name[]=x").status, 200);
    EXPECT_EQ(http_exchange(server.port(), "GET /metrics HTTP/1.0\r\n\r\n").status, 200);
    // Bare LF line ends are tolerated.
    EXPECT_EQ(http_exchange(server.port(), "GET /metrics HTTP/1.1\nHost: x\n\n").status, 200);
}

TEST(MetricsServer, RenderIsCalledForEveryScrape)
{
    int n = 0;
    ephemera::MetricsServer server("127.0.0.1:0", [&n] { return "ephemera_workers " + std::to_string(++n) + "\n"; });
    for (int i = 1; i <= 20; ++i) {
        const Reply r = get(server.port(), "/metrics");
        ASSERT_EQ(r.status, 200) << i;
        EXPECT_EQ(r.body, "ephemera_workers " + std::to_string(i) + "\n");
    }
}

TEST(MetricsServer, OtherPathsMethodsAndHead)
{
    Scraped s;
    ephemera::MetricsServer server("127.0.0.1:0", s.render());
    const uint16_t port = server.port();
    for (const char* path : {"/", "/metrics/", "/metricsx", "/favicon.ico", "/Metrics"}) {
        const Reply r = get(port, path);
        EXPECT_EQ(r.status, 404) << path;
        EXPECT_TRUE(r.ok) << path;
    }
    for (const char* method : {"POST", "PUT", "DELETE", "OPTIONS", "PATCH", "BREW"}) {
        const Reply r =
            http_exchange(port, std::string(method) + " /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
        EXPECT_EQ(r.status, 405) << method;
        EXPECT_EQ(r.headers["allow"], "GET, HEAD") << method;
    }
    // A POST with a body the server never reads still gets its answer.
    const Reply post = http_exchange(port, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" +
                                          std::string(100000, 'x'));
    EXPECT_EQ(post.status, 405) << post.raw.substr(0, 200);

    const Reply head = http_exchange(port, "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_EQ(head.status, 200);
    EXPECT_EQ(head.headers["content-length"], std::to_string(s.text.size()));
    EXPECT_TRUE(head.body.empty());
    EXPECT_EQ(s.renders.load(), 1);
}

TEST(MetricsServer, GarbageNeverCrashesAndTheServerStillAnswers)
{
    Scraped s;
    ephemera::MetricsServer server("127.0.0.1:0", s.render());
    const uint16_t port = server.port();
    std::string binary;
    for (int i = 0; i < 3000; ++i) binary += char((i * 7919) & 0xff);
    const std::vector<std::string> garbage = {
        "\r\n\r\n",
        "GET\r\n\r\n",
        "GET /metrics\r\n\r\n",
        "GET /metrics HTTP/2.0\r\n\r\n",
        "GET  /metrics HTTP/1.1\r\n\r\n",
        "GET metrics HTTP/1.1\r\n\r\n",
        "GET /met\x01rics HTTP/1.1\r\n\r\n",
        "G(T /metrics HTTP/1.1\r\n\r\n",
        std::string("GET /metrics\0 HTTP/1.1\r\n\r\n", 26),
        "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", // a TLS client hello
        binary + "\r\n\r\n",
    };
    for (const std::string& g : garbage) {
        const Reply r = http_exchange(port, g, true);
        EXPECT_TRUE(r.ok) << "request: " << testing::PrintToString(g).substr(0, 80);
        EXPECT_EQ(r.status, 400) << "request: " << testing::PrintToString(g).substr(0, 80);
    }
    // A request head over the limit.
    const Reply big = http_exchange(port, "GET /metrics HTTP/1.1\r\nX-Big: " + std::string(20000, 'a') + "\r\n\r\n");
    EXPECT_EQ(big.status, 431);
    // Random bytes without an end.
    http_exchange(port, binary + binary + binary);
    // Connect and go without a word; connect and reset.
    for (int i = 0; i < 5; ++i) {
        const int fd = connect_to(port);
        ASSERT_GE(fd, 0);
        if (i % 2) {
            linger l{1, 0};
            ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
            ::send(fd, "GET /met", 8, MSG_NOSIGNAL);
        }
        ::close(fd);
    }
    // A client that sends its request and disappears before the answer.
    {
        const int fd = connect_to(port);
        ASSERT_GE(fd, 0);
        linger l{1, 0};
        ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        const std::string req = "GET /metrics HTTP/1.1\r\n\r\n";
        ::send(fd, req.data(), req.size(), MSG_NOSIGNAL);
        ::close(fd);
    }
    const Reply r = get(port, "/metrics");
    ASSERT_TRUE(r.ok);
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, s.text);
}

TEST(MetricsServer, RenderThrowingAnswers500)
{
    bool fail = true;
    ephemera::MetricsServer server("127.0.0.1:0", [&fail]() -> std::string {
        if (fail) throw std::runtime_error("no stats yet");
        return "ok\n";
    });
    EXPECT_EQ(get(server.port(), "/metrics").status, 500);
    fail = false;
    EXPECT_EQ(get(server.port(), "/metrics").status, 200);
}

TEST(MetricsServer, SlowClientTimesOutWhileOthersAreServed)
{
    Scraped s;
    ephemera::MetricsServer server("127.0.0.1:0", s.render());
    const int slow = connect_to(server.port());
    ASSERT_GE(slow, 0);
    ASSERT_EQ(::send(slow, "GET /metr", 9, MSG_NOSIGNAL), 9);
    // Served beside the slow one, not after its 5 s.
    const auto t0 = std::chrono::steady_clock::now();
    const Reply r = get(server.port(), "/metrics");
    const auto waited = std::chrono::steady_clock::now() - t0;
    EXPECT_EQ(r.status, 200);
    EXPECT_LT(waited, 4s);
    // The slow client was told it took too long.
    const Reply timed_out = read_reply(slow);
    EXPECT_EQ(timed_out.status, 408);
    ::close(slow);
}

// Clients that connect and send nothing (a port scan, a stuck exporter, a
// slowloris) cannot hold back a scrape: past 8 at once the oldest of them is
// ended. Served one at a time, the scrape behind 20 of them would wait 20 x 5 s.
TEST(MetricsServer, ManyIdleClientsDoNotHoldBackAScrape)
{
    Scraped s;
    ephemera::MetricsServer server("127.0.0.1:0", s.render());
    std::vector<int> idle;
    for (int i = 0; i < 20; ++i) {
        const int fd = connect_to(server.port());
        ASSERT_GE(fd, 0) << i;
        idle.push_back(fd);
    }
    const auto t0 = std::chrono::steady_clock::now();
    const Reply r = get(server.port(), "/metrics");
    EXPECT_EQ(r.status, 200);
    // Each silent client is given a second before a newcomer may end it:
    // a few seconds here, where one at a time would be 100.
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 8s);
    // The first ones were ended to make room: their connections are closed
    // without an answer.
    char b;
    EXPECT_EQ(::recv(idle.front(), &b, 1, 0), 0);
    for (int fd : idle) ::close(fd);
}

// More scrapers at once than clients served at once: a scrape whose request
// is in is never ended for a newcomer, which waits for it instead.
TEST(MetricsServer, ConcurrentScrapesEachGetTheWholeText)
{
    Scraped s;
    s.text += std::string(1 << 20, '#') + "\n"; // a megabyte: each answer takes a while to send
    ephemera::MetricsServer server("127.0.0.1:0", s.render());
    std::vector<std::thread> scrapers;
    std::atomic<int> whole{0};
    for (int i = 0; i < 20; ++i)
        scrapers.emplace_back([&] {
            const Reply each = get(server.port(), "/metrics");
            if (each.status == 200 && each.body == s.text) ++whole;
        });
    for (auto& t : scrapers) t.join();
    EXPECT_EQ(whole.load(), 20);
    EXPECT_EQ(s.renders.load(), 20);
}

TEST(MetricsServer, DestructorReturnsPromptlyIdleOrWithAClientStuck)
{
    Scraped s;
    for (int stuck = 0; stuck < 2; ++stuck) {
        std::optional<ephemera::MetricsServer> server;
        server.emplace("127.0.0.1:0", s.render());
        int fd = -1;
        if (stuck) {
            fd = connect_to(server->port());
            ASSERT_GE(fd, 0);
            ASSERT_EQ(::send(fd, "GET /", 5, MSG_NOSIGNAL), 5);
            std::this_thread::sleep_for(100ms); // the server is now in this client's read
        }
        const auto t0 = std::chrono::steady_clock::now();
        server.reset();
        EXPECT_LT(std::chrono::steady_clock::now() - t0, 500ms) << "stuck client: " << stuck;
        if (fd >= 0) ::close(fd);
    }
    // Created and destroyed at once, many times.
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 50; ++i) ephemera::MetricsServer server("127.0.0.1:0", s.render());
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
}

TEST(MetricsServer, ThePortIsFreeAgainAfterTheDestructor)
{
    Scraped s;
    uint16_t port;
    {
        ephemera::MetricsServer server("127.0.0.1:0", s.render());
        port = server.port();
        EXPECT_EQ(get(port, "/metrics").status, 200);
    }
    EXPECT_LT(connect_to(port), 0) << "nothing listens any more";
    ephemera::MetricsServer again("127.0.0.1:" + std::to_string(port), s.render());
    EXPECT_EQ(again.port(), port);
    EXPECT_EQ(get(port, "/metrics").status, 200);
}

std::string construction_error(const std::string& listen)
{
    try {
        ephemera::MetricsServer server(listen, [] { return std::string(); });
    } catch (const std::runtime_error& e) {
        return e.what();
    }
    return "";
}

TEST(MetricsServer, BadOrBusyListenThrowsNamingTheKey)
{
    Scraped s;
    ephemera::MetricsServer busy("127.0.0.1:0", s.render());
    const std::string taken = "127.0.0.1:" + std::to_string(busy.port());
    const std::string e = construction_error(taken);
    EXPECT_EQ(e.rfind("metrics.listen = \"" + taken + "\": ", 0), 0u) << e;
    EXPECT_NE(e.find("in use"), std::string::npos) << e;

    for (const char* bad : {"", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:9x",
                            "localhost:9469", "::1:9469", "[::1]:9469", "300.0.0.1:9469", ":9469"}) {
        const std::string msg = construction_error(bad);
        EXPECT_EQ(msg.rfind("metrics.listen = \"" + std::string(bad) + "\": ", 0), 0u) << bad << " -> " << msg;
    }
    // The busy server still works.
    EXPECT_EQ(get(busy.port(), "/metrics").status, 200);
}

} // namespace
