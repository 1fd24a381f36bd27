// ephemeractl: the operator's client of a running ephemera. It speaks DPDK
// telemetry (the /ephemera/... commands on the daemon's telemetry socket), so
// everything it shows is also available to dpdk-telemetry.py. `who` answers
// from a mapping log file and needs no daemon.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "ephemera/config.hpp"
#include "ephemera/deterministic.hpp"
#include "ephemera/gateway_config.hpp"
#include "mapping_log_reader.hpp"

using nlohmann::json;

namespace {

struct Failure {
    std::string message;
    int code;
};

std::string cell(const json& v)
{
    if (v.is_string()) return v.get<std::string>();
    return v.dump();
}

// AF_UNIX paths are at most 107 bytes; a longer one would be cut silently.
void check_socket_path(const std::string& path)
{
    if (path.size() >= sizeof(sockaddr_un::sun_path))
        throw Failure{"socket path too long (" + std::to_string(path.size()) + " bytes, at most " +
                          std::to_string(sizeof(sockaddr_un::sun_path) - 1) + "): " + path,
                      2};
}

// A connected telemetry socket, or -1 with errno; a receive waits at most
// `wait_s` seconds.
int connect_telemetry(const std::string& path, int wait_s)
{
    const int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    if (fd < 0) return -1;
    const timeval tv{wait_s, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        const int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

std::string find_socket(const std::string& socket_path, const std::string& prefix)
{
    if (!socket_path.empty()) return socket_path;
    const std::filesystem::path base = "/var/run/dpdk";
    if (!prefix.empty()) return (base / prefix / "dpdk_telemetry.v2").string();
    // A process that was killed leaves its socket file behind: only the
    // sockets something answers on count.
    std::vector<std::string> live, stale;
    std::error_code ec;
    for (const auto& dir : std::filesystem::directory_iterator(base, ec)) {
        const std::string sock = (dir.path() / "dpdk_telemetry.v2").string();
        if (!std::filesystem::exists(sock, ec) || sock.size() >= sizeof(sockaddr_un::sun_path)) continue;
        // Live: it greets. (Reading the greeting before closing also spares
        // the daemon a write to a closed socket.)
        const int fd = connect_telemetry(sock, 2);
        char greeting[1024];
        const bool greets = fd >= 0 && recv(fd, greeting, sizeof greeting, 0) > 0;
        if (fd >= 0) close(fd);
        (greets ? live : stale).push_back(sock);
    }
    if (live.size() == 1) return live.front();
    std::string list;
    for (const auto& f : live) list += " " + f;
    if (live.size() > 1) throw Failure{"several DPDK processes; choose one with --file-prefix or --socket:" + list, 2};
    std::string left;
    for (const auto& f : stale) left += " " + f;
    throw Failure{"no running DPDK process found under /var/run/dpdk (is ephemera running?)" +
                      (stale.empty() ? std::string() : "; nothing answers on the sockets left behind:" + left),
                  2};
}

// One telemetry command; returns the value under the command's key.
json telemetry(const std::string& path, const std::string& command)
{
    check_socket_path(path);
    // DPDK telemetry reads 1023 bytes of a command and drops the rest unseen.
    if (command.size() > 1023)
        throw Failure{"the command is " + std::to_string(command.size()) + " bytes, DPDK telemetry takes at most 1023", 1};
    constexpr int kWait = 10; // a command waits 2 s at most for the workers
    const int fd = connect_telemetry(path, kWait);
    if (fd < 0) throw Failure{"cannot connect to " + path + ": " + strerror(errno) + " (is ephemera running?)", 2};
    std::vector<char> buf(1 << 17);
    auto receive = [&](const char* what) {
        const ssize_t n = recv(fd, buf.data(), buf.size() - 1, 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            close(fd);
            throw Failure{path + ": no answer within " + std::to_string(kWait) + " s", 2};
        }
        if (n <= 0) {
            close(fd);
            throw Failure{std::string("the daemon closed the telemetry connection ") + what, 2};
        }
        return json::parse(std::string(buf.data(), size_t(n)), nullptr, false);
    };
    // The greeting (version, pid, max output length). DPDK 22.11 serves at most
    // 10 clients at a time and closes the 11th's connection before it.
    receive("before greeting: DPDK telemetry serves at most 10 clients at a time (are 10 connected?)");
    if (send(fd, command.data(), command.size(), 0) < 0) {
        const std::string why = strerror(errno);
        close(fd);
        throw Failure{"send: " + why, 2};
    }
    json reply = receive("without answering");
    close(fd);
    const std::string key = command.substr(0, command.find(','));
    if (reply.is_discarded() || !reply.is_object() || !reply.contains(key) || reply[key].is_null())
        throw Failure{"the daemon did not answer " + key + " (an older ephemera, or not ephemera?)", 2};
    json value = reply[key];
    if (value.is_object() && value.contains("error"))
        throw Failure{key + ": " + cell(value["error"]) + (value.contains("usage") ? " (usage: " + cell(value["usage"]) + ")" : ""),
                      1};
    return value;
}

// A dict of equal-length arrays, printed as aligned columns.
void print_table(const json& t, const std::vector<std::string>& columns)
{
    std::vector<size_t> width;
    size_t rows = 0;
    for (const auto& c : columns) {
        size_t w = c.size();
        if (t.contains(c))
            for (const auto& v : t[c]) w = std::max(w, cell(v).size());
        width.push_back(w);
        if (t.contains(c)) rows = std::max(rows, t[c].size());
    }
    for (size_t i = 0; i < columns.size(); ++i) std::printf("%-*s  ", int(width[i]), columns[i].c_str());
    std::printf("\n");
    for (size_t r = 0; r < rows; ++r) {
        for (size_t i = 0; i < columns.size(); ++i) {
            const std::string v = t.contains(columns[i]) && r < t[columns[i]].size() ? cell(t[columns[i]][r]) : "";
            std::printf("%-*s  ", int(width[i]), v.c_str());
        }
        std::printf("\n");
    }
}

// --at: Unix seconds or milliseconds, or an ISO 8601 time: UTC unless it
// ends in an offset (+02:00, -0500); a trailing Z is UTC too.
uint64_t parse_time_ms(const std::string& text)
{
    const Failure bad{"--at '" + text +
                          "': expected 2026-11-21T16:30:00[.123][Z|+02:00] (UTC without an offset) or Unix seconds/ms",
                      1};
    if (!text.empty() && std::all_of(text.begin(), text.end(), ::isdigit)) {
        uint64_t v = 0;
        auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
        if (ec != std::errc{} || v > 253402300799999ull) throw bad; // past 9999-12-31
        return v < 100000000000ull ? v * 1000 : v; // seconds or milliseconds since the epoch
    }
    std::tm tm{};
    const char* rest = strptime(text.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
    if (rest == nullptr) rest = strptime(text.c_str(), "%Y-%m-%d %H:%M:%S", &tm);
    if (rest == nullptr) throw bad;
    const time_t utc = timegm(&tm);
    if (utc < 0) throw bad;
    int64_t ms = int64_t(utc) * 1000;
    if (*rest == '.') {
        ++rest;
        unsigned frac = 0, digits = 0;
        while (std::isdigit(static_cast<unsigned char>(*rest))) {
            if (digits < 3) frac = frac * 10 + unsigned(*rest - '0'); // finer than a millisecond: cut
            ++rest, ++digits;
        }
        if (digits == 0) throw bad;
        for (unsigned d = digits; d < 3; ++d) frac *= 10;
        ms += frac;
    }
    if (*rest == 'Z' || *rest == 'z') {
        ++rest;
    } else if (*rest == '+' || *rest == '-') {
        const int sign = *rest++ == '+' ? 1 : -1;
        auto two = [&]() {
            if (!std::isdigit(static_cast<unsigned char>(rest[0])) || !std::isdigit(static_cast<unsigned char>(rest[1])))
                throw bad;
            const int v = (rest[0] - '0') * 10 + (rest[1] - '0');
            rest += 2;
            return v;
        };
        const int hours = two();
        if (*rest == ':') ++rest;
        const int minutes = two();
        if (hours > 23 || minutes > 59) throw bad;
        ms -= sign * int64_t(hours * 60 + minutes) * 60000; // local time minus its offset is UTC
    }
    if (*rest != '\0' || ms < 0) throw bad;
    return uint64_t(ms);
}

std::string format_ms(uint64_t ms)
{
    const std::time_t s = std::time_t(ms / 1000);
    std::tm tm{};
    gmtime_r(&s, &tm);
    char buf[40];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    char out[48];
    std::snprintf(out, sizeof out, "%s.%03uZ", buf, unsigned(ms % 1000));
    return out;
}

std::pair<uint32_t, uint16_t> parse_endpoint(const std::string& text)
{
    const auto colon = text.rfind(':');
    if (colon == std::string::npos) throw Failure{"expected POOLADDR:PORT, got '" + text + "'", 1};
    uint32_t addr = 0;
    try {
        addr = ephemera::parse_ipv4(text.substr(0, colon));
    } catch (const std::exception&) {
        throw Failure{"not an IPv4 address: '" + text.substr(0, colon) + "'", 1};
    }
    const std::string p = text.substr(colon + 1);
    unsigned port = 0;
    auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), port);
    if (p.empty() || ec != std::errc{} || end != p.data() + p.size() || port == 0 || port > 65535)
        throw Failure{"not a port (1-65535): '" + p + "'", 1};
    return {addr, uint16_t(port)};
}

// `who` answers: the inside endpoint (a block's holder has no port: all its
// flows share the block), and the block that held the port, if it was one.
std::string who_inside(const ephemera::WhoMatch& m)
{
    const std::string addr = ephemera::format_ipv4(m.inside_addr);
    return m.is_block ? addr : addr + ":" + std::to_string(m.inside_port);
}

std::string who_block(const ephemera::WhoMatch& m, uint32_t pool_addr)
{
    return ephemera::format_ipv4(pool_addr) + ":" + std::to_string(m.block_first) + "-" + std::to_string(m.block_last);
}

std::string who_line(const ephemera::WhoMatch& m, uint32_t pool_addr)
{
    std::string line = m.protocol + " " + who_inside(m);
    if (m.is_block) line += "  block " + who_block(m, pool_addr);
    line += "  from " + (m.from_ms ? format_ms(m.from_ms) : std::string("(before the log begins)"));
    line += "  to " + (m.to_ms ? format_ms(m.to_ms) : std::string("(still held at the end of the log)"));
    return line;
}

// `who --config`: in deterministic mode the configuration alone names the
// holder of a pool port (RFC 7422), whatever the time. Exit 1: nobody.
int who_deterministic(const std::string& endpoint, const std::string& config_path, bool as_json)
{
    const auto [addr, port] = parse_endpoint(endpoint);
    const ephemera::GatewayConfig c = ephemera::load_gateway_config(config_path);
    if (!c.nat.deterministic)
        throw Failure{config_path + " sets no nat.deterministic: ports are given out as flows come; ask a "
                                    "mapping log (--log FILE --at TIME)",
                      2};
    const auto at = std::find(c.nat.pool.begin(), c.nat.pool.end(), addr);
    if (at == c.nat.pool.end())
        throw Failure{ephemera::format_ipv4(addr) + " is not a pool address of " + config_path, 1};
    const unsigned pool = unsigned(at - c.nat.pool.begin());
    const ephemera::DeterministicMap map(c.nat.deterministic_prefix, c.nat.deterministic_len,
                                         uint32_t(c.nat.pool.size()), ephemera::PortLayout(c.nat.ports, c.nat.workers),
                                         c.nat.deterministic_overflow);
    const std::optional<uint32_t> host = map.host_of(pool, port);
    const auto overflow = map.overflow_range_of(pool, port);
    auto range_text = [&](uint16_t first, uint16_t last) {
        return ephemera::format_ipv4(addr) + ":" + std::to_string(first) + "-" + std::to_string(last);
    };
    std::string range;
    if (host) {
        const auto slot = map.slot_of(*host);
        range = range_text(slot.first, slot.last);
    } else if (overflow) {
        range = range_text(overflow->first, overflow->second);
    }
    if (as_json) {
        json out = json::array();
        if (host) out.push_back({{"inside", ephemera::format_ipv4(*host)}, {"block", range}, {"deterministic", true}});
        if (overflow) out.push_back({{"block", range}, {"overflow", true}});
        std::cout << out.dump(2) << "\n";
    } else if (overflow) {
        // RFC 7422 §2.3: lent as flows need it, so only the log knows to whom.
        std::printf("an overflow range: %s is lent to hosts whose own range is full; the mapping log names "
                    "the holder (who %s --log FILE --at TIME)\n",
                    range.c_str(), endpoint.c_str());
    } else if (!host) {
        std::printf("nobody: %s is in no host's range under %s\n", endpoint.c_str(), config_path.c_str());
    } else {
        std::printf("%s  block %s  (deterministic: every protocol, for as long as %s is in force)\n",
                    ephemera::format_ipv4(*host).c_str(), range.c_str(), config_path.c_str());
    }
    return host ? 0 : 1;
}

} // namespace

int main(int argc, char** argv)
{
    CLI::App app{"ephemeractl: inspect and control a running ephemera NAT gateway"};
    app.require_subcommand(1);
    app.fallthrough(); // --json, --socket and --file-prefix after the command too
    std::string socket_path, prefix;
    bool as_json = false;
    app.add_option("--socket", socket_path, "the daemon's telemetry socket (default: the only one under /var/run/dpdk)");
    app.add_option("--file-prefix", prefix, "the daemon's EAL --file-prefix (ephemera-lab in the lab)");
    app.add_flag("--json", as_json, "print the answer as JSON");

    // An address filter is checked here: the daemon splits its parameters at
    // ',' and spaces, so "--inside 100.64.0.2,limit=1" must not reach it whole.
    const CLI::Validator ipv4(
        [](std::string& text) -> std::string {
            try {
                ephemera::parse_ipv4(text);
                return "";
            } catch (const std::exception&) {
                return "not an IPv4 address: '" + text + "'";
            }
        },
        "IPV4");
    std::string inside, pool, proto;
    unsigned port = 0, limit = 50;
    auto add_filters = [&](CLI::App* c) {
        c->add_option("--inside", inside, "inside (subscriber) address")->check(ipv4);
        c->add_option("--pool", pool, "pool address")->check(ipv4);
        c->add_option("--port", port, "external port")->check(CLI::Range(1, 65535));
        c->add_option("--proto", proto, "tcp, udp, icmp or sctp")->check(CLI::IsMember({"tcp", "udp", "icmp", "sctp"}));
        c->add_option("--limit", limit, "at most this many rows (1-200)")->check(CLI::Range(1, 200));
    };
    auto* stats = app.add_subcommand("stats", "counters: packets, translations, drops by reason, mappings");
    auto* sessions = app.add_subcommand("sessions", "sessions, with remote endpoint and TCP state");
    add_filters(sessions);
    auto* mappings = app.add_subcommand("mappings", "mappings (inside endpoint -> external endpoint)");
    add_filters(mappings);
    auto* ports = app.add_subcommand("ports", "port use per pool address, protocol and worker");
    ports->add_option("--pool", pool, "pool address")->check(ipv4);
    ports->add_option("--proto", proto, "tcp, udp, icmp or sctp")->check(CLI::IsMember({"tcp", "udp", "icmp", "sctp"}));
    ports->add_option("--limit", limit, "at most this many rows (1-200)")->check(CLI::Range(1, 200));
    std::string endpoint;
    auto* lookup = app.add_subcommand("lookup", "who holds POOLADDR:PORT now");
    lookup->add_option("endpoint", endpoint, "POOLADDR:PORT")->required();
    lookup->add_option("--proto", proto, "tcp, udp, icmp or sctp")->check(CLI::IsMember({"tcp", "udp", "icmp", "sctp"}));
    auto* timeouts = app.add_subcommand("timeouts", "the timeouts in force (seconds); `timeouts set KEY SECONDS`");
    std::string timeout_key;
    unsigned timeout_seconds = 0;
    auto* timeouts_set = timeouts->add_subcommand(
        "set", "change one for what is created or refreshed from now on (live entries keep theirs until then)");
    timeouts_set->add_option("key", timeout_key, "udp, tcp_established, tcp_transitory, icmp, sctp or quarantine")
        ->required()
        ->check(CLI::IsMember({"udp", "tcp_established", "tcp_transitory", "icmp", "sctp", "quarantine"}));
    timeouts_set->add_option("seconds", timeout_seconds, "seconds (quarantine: 0-3600, others 1-2678400)")
        ->required()
        ->check(CLI::Range(0u, ephemera::kMaxTimeout));
    auto* config = app.add_subcommand("config", "the running configuration");
    std::string at, config_path;
    std::vector<std::string> log_paths;
    auto* who = app.add_subcommand(
        "who", "who held POOLADDR:PORT at a time, from a mapping log file (or, in deterministic mode, the config)");
    who->add_option("endpoint", endpoint, "POOLADDR:PORT")->required();
    auto* who_at = who->add_option("--at", at, "time: 2026-11-21T16:30:00.123Z or Unix seconds/milliseconds");
    // A file or a pipe (<(zcat log.1.gz)); not a device such as /dev/zero,
    // which would be read forever.
    const CLI::Validator log_file(
        [](std::string& path) -> std::string {
            std::error_code ec;
            const auto st = std::filesystem::status(path, ec);
            if (ec || !std::filesystem::exists(st)) return "no such file: " + path;
            if (!std::filesystem::is_regular_file(st) && !std::filesystem::is_fifo(st))
                return "not a file or a pipe: " + path;
            return "";
        },
        "FILE");
    auto* who_log = who->add_option("--log", log_paths, "the mapping log: one file, or a rotated one's files oldest first")
                        ->check(log_file);
    auto* who_config = who->add_option("--config", config_path, "the gateway's configuration (nat.deterministic)")
                           ->check(CLI::ExistingFile);
    who_log->needs(who_at);
    who_log->excludes(who_config);
    who->add_option("--proto", proto, "tcp, udp, icmp or sctp")->check(CLI::IsMember({"tcp", "udp", "icmp", "sctp"}));

    std::string static_proto, static_inside, static_external;
    auto* statics = app.add_subcommand("static", "static mappings (port forwards): add, del, list");
    statics->require_subcommand(1);
    auto* static_add = statics->add_subcommand("add", "forward POOLADDR:PORT to INSIDE:PORT (port outside the dynamic range)");
    static_add->add_option("proto", static_proto, "tcp, udp or sctp")->required()->check(CLI::IsMember({"tcp", "udp", "sctp"}));
    static_add->add_option("inside", static_inside, "INSIDE:PORT, a host on the inside subnet")->required();
    static_add->add_option("external", static_external, "POOLADDR:PORT")->required();
    auto* static_del = statics->add_subcommand("del", "remove the static mapping of POOLADDR:PORT");
    static_del->add_option("proto", static_proto, "tcp, udp or sctp")->required()->check(CLI::IsMember({"tcp", "udp", "sctp"}));
    static_del->add_option("external", static_external, "POOLADDR:PORT")->required();
    auto* static_list = statics->add_subcommand("list", "the static mappings, with the inside host's MAC once ARP found it");
    add_filters(static_list);

    CLI11_PARSE(app, argc, argv);

    try {
        auto filters = [&]() {
            std::string f;
            if (!inside.empty()) f += " inside=" + inside;
            if (!pool.empty()) f += " pool=" + pool;
            if (port) f += " port=" + std::to_string(port);
            if (!proto.empty()) f += " proto=" + proto;
            f += " limit=" + std::to_string(limit);
            return f;
        };
        if (who->parsed() && !config_path.empty()) return who_deterministic(endpoint, config_path, as_json);
        if (who->parsed() && log_paths.empty()) throw Failure{"who: --log FILE --at TIME, or --config FILE", 2};
        if (who->parsed()) {
            const auto [addr, p] = parse_endpoint(endpoint);
            const auto matches = ephemera::who_held(log_paths, addr, p, parse_time_ms(at), proto);
            if (as_json) {
                json out = json::array();
                for (const auto& m : matches)
                    out.push_back({{"inside", who_inside(m)},
                                   {"protocol", m.protocol},
                                   {"block", m.is_block ? json(who_block(m, addr)) : json(nullptr)},
                                   {"from_ms", m.from_ms},
                                   {"to_ms", m.to_ms}});
                std::cout << out.dump(2) << "\n";
            } else if (matches.empty()) {
                std::string files;
                for (const auto& path : log_paths) files += (files.empty() ? "" : ", ") + path;
                std::printf("nobody held %s at %s according to %s\n", endpoint.c_str(), format_ms(parse_time_ms(at)).c_str(),
                            files.c_str());
            } else {
                for (const auto& m : matches) std::printf("%s\n", who_line(m, addr).c_str());
            }
            return matches.empty() ? 1 : 0;
        }

        const std::string sock = find_socket(socket_path, prefix);
        json answer;
        if (stats->parsed()) answer = telemetry(sock, "/ephemera/stats");
        else if (sessions->parsed()) answer = telemetry(sock, "/ephemera/sessions," + filters());
        else if (mappings->parsed()) answer = telemetry(sock, "/ephemera/mappings," + filters());
        else if (ports->parsed()) {
            std::string f;
            if (!pool.empty()) f += " pool=" + pool;
            if (!proto.empty()) f += " proto=" + proto;
            answer = telemetry(sock, "/ephemera/ports," + f + " limit=" + std::to_string(limit));
        } else if (lookup->parsed()) {
            parse_endpoint(endpoint);
            answer = telemetry(sock, "/ephemera/lookup," + endpoint + (proto.empty() ? "" : "/" + proto));
        } else if (static_add->parsed()) {
            parse_endpoint(static_inside);
            parse_endpoint(static_external);
            answer = telemetry(sock, "/ephemera/static_add," + static_proto + " " + static_inside + " " + static_external);
        } else if (static_del->parsed()) {
            parse_endpoint(static_external);
            answer = telemetry(sock, "/ephemera/static_del," + static_proto + " " + static_external);
        } else if (static_list->parsed()) {
            answer = telemetry(sock, "/ephemera/static_list," + filters());
        } else if (timeouts_set->parsed()) {
            answer = telemetry(sock, "/ephemera/timeouts_set," + timeout_key + " " + std::to_string(timeout_seconds));
        } else if (timeouts->parsed()) answer = telemetry(sock, "/ephemera/timeouts");
        else if (config->parsed()) answer = telemetry(sock, "/ephemera/config");

        const bool nobody = lookup->parsed() && answer["shown"] == 0;
        if (as_json) {
            std::cout << answer.dump(2) << "\n";
            return nobody ? 1 : 0;
        }
        if (timeouts_set->parsed()) {
            std::printf("%s = %s s for what is created or refreshed from now on\n", timeout_key.c_str(),
                        cell(answer[timeout_key]).c_str());
        } else if (stats->parsed() || timeouts->parsed() || config->parsed()) {
            size_t w = 0;
            for (auto it = answer.begin(); it != answer.end(); ++it) w = std::max(w, it.key().size());
            for (auto it = answer.begin(); it != answer.end(); ++it)
                std::printf("%-*s  %s\n", int(w), it.key().c_str(), cell(*it).c_str());
        } else if (ports->parsed()) {
            print_table(answer, {"pool", "protocol", "worker", "free", "quarantined", "in_use"});
            if (answer.value("shown", 0) != answer.value("matched", 0))
                std::printf("(%s of %s rows: narrow with --pool or --proto)\n", cell(answer["shown"]).c_str(),
                            cell(answer["matched"]).c_str());
        } else if (static_add->parsed()) {
            if (answer.value("state", "active") == "adding")
                std::printf("adding %s (worker %s has not confirmed it yet: see `static list`)\n",
                            cell(answer["added"]).c_str(), cell(answer["worker"]).c_str());
            else
                std::printf("added %s (worker %s)\n", cell(answer["added"]).c_str(), cell(answer["worker"]).c_str());
        } else if (static_del->parsed()) {
            if (answer.value("state", "deleted") == "removing")
                std::printf("removing %s: no longer forwarded (its worker has not confirmed it yet: see `static list`)\n",
                            cell(answer["deleted"]).c_str());
            else
                std::printf("deleted %s\n", cell(answer["deleted"]).c_str());
        } else if (static_list->parsed()) {
            print_table(answer, {"protocol", "external", "inside", "inside_mac", "worker", "state"});
            if (answer["shown"] != answer["matched"])
                std::printf("(%s of %s matching static mappings)\n", cell(answer["shown"]).c_str(),
                            cell(answer["matched"]).c_str());
        } else if (sessions->parsed()) {
            print_table(answer, {"protocol", "inside", "external", "remote", "state", "expires_in", "worker"});
            std::printf("(%s of %s matching sessions)\n", cell(answer["shown"]).c_str(), cell(answer["matched"]).c_str());
        } else {
            print_table(answer, {"protocol", "inside", "external", "sessions", "kind", "expires_in", "worker"});
            if (nobody) {
                std::printf("nobody holds %s now\n", endpoint.c_str());
                return 1;
            }
            if (!lookup->parsed())
                std::printf("(%s of %s matching mappings)\n", cell(answer["shown"]).c_str(), cell(answer["matched"]).c_str());
        }
        return 0;
    } catch (const Failure& f) {
        std::fprintf(stderr, "ephemeractl: %s\n", f.message.c_str());
        return f.code;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ephemeractl: %s\n", e.what());
        return 1;
    }
}
