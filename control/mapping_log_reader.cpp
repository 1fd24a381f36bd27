// who_held(): reads the text mapping log (format: mapping_log.hpp).
#include "mapping_log_reader.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string_view>

#include <arpa/inet.h>

namespace ephemera {

namespace {

enum class Kind : uint8_t { Create, Delete, Restart };

struct Line {
    uint64_t time_ms;
    Kind kind;
    std::string protocol;
    uint32_t in_addr = 0; // host order
    uint16_t in_port = 0;
};

// Splits "ADDR:PORT" (host order out). False when it does not parse.
bool parse_endpoint(std::string_view text, uint32_t& addr, uint16_t& port)
{
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos || colon > 15) return false;
    char host[16] = {};
    text.copy(host, colon);
    in_addr a{};
    if (inet_pton(AF_INET, host, &a) != 1) return false;
    const std::string_view p = text.substr(colon + 1);
    unsigned v = 0;
    auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), v);
    if (ec != std::errc{} || end != p.data() + p.size() || p.empty() || v > 65535) return false;
    addr = ntohl(a.s_addr);
    port = uint16_t(v);
    return true;
}

// The whitespace-separated fields of a line, up to max.
size_t split(std::string_view s, std::string_view* out, size_t max)
{
    size_t n = 0, i = 0;
    while (n < max) {
        while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r')) ++i;
        if (i == s.size()) break;
        const size_t start = i;
        while (i < s.size() && s[i] != ' ' && s[i] != '\t' && s[i] != '\r') ++i;
        out[n++] = s.substr(start, i - start);
    }
    return n;
}

} // namespace

std::vector<WhoMatch> who_held(const std::string& log_path, uint32_t ext_addr, uint16_t ext_port, uint64_t at_ms,
                               const std::string& protocol)
{
    std::ifstream in(log_path);
    if (!in) throw std::runtime_error(log_path + ": cannot read: " + std::strerror(errno));

    // The lines about this external address:port (and restarts), in file order.
    // Cheap filter first (logs get large): the line must name the endpoint.
    char needle[48];
    std::snprintf(needle, sizeof needle, "external=%u.%u.%u.%u:%u ", ext_addr >> 24, (ext_addr >> 16) & 255,
                  (ext_addr >> 8) & 255, ext_addr & 255, unsigned(ext_port));
    std::vector<Line> lines;
    std::string text;
    while (std::getline(in, text)) {
        if (text.find(needle) == std::string::npos && text.find(" start ") == std::string::npos &&
            text.find(" stop ") == std::string::npos)
            continue;
        std::string_view f[8];
        const size_t n = split(text, f, 8);
        if (n < 3) continue;
        uint64_t t = 0;
        auto [end, ec] = std::from_chars(f[1].data(), f[1].data() + f[1].size(), t);
        if (ec != std::errc{} || end != f[1].data() + f[1].size()) continue;
        if (f[2] == "start" || f[2] == "stop") {
            lines.push_back({t, Kind::Restart, {}});
            continue;
        }
        const bool create = f[2] == "create";
        if ((!create && f[2] != "delete") || n < 6) continue;
        if (!protocol.empty() && f[3] != protocol) continue;
        if (!f[4].starts_with("inside=") || !f[5].starts_with("external=")) continue;
        uint32_t xa = 0, ia = 0;
        uint16_t xp = 0, ip = 0;
        if (!parse_endpoint(f[5].substr(9), xa, xp) || xa != ext_addr || xp != ext_port) continue;
        if (!parse_endpoint(f[4].substr(7), ia, ip)) continue;
        lines.push_back({t, create ? Kind::Create : Kind::Delete, std::string(f[3]), ia, ip});
    }
    if (in.bad()) throw std::runtime_error(log_path + ": read error: " + std::strerror(errno));

    // Workers' lines interleave; one external port belongs to one worker, but
    // sort by time anyway (stable: equal times keep the file's order). Start
    // and stop lines stay where they are: the daemon writes them before its
    // workers start and after they stop, whatever the clocks say.
    for (auto seg = lines.begin(); seg != lines.end();) {
        auto end = std::find_if(seg, lines.end(), [](const Line& l) { return l.kind == Kind::Restart; });
        std::stable_sort(seg, end, [](const Line& a, const Line& b) { return a.time_ms < b.time_ms; });
        seg = end == lines.end() ? end : end + 1;
    }

    // Pair them per protocol: at most one holder at a time in each.
    std::vector<WhoMatch> held, open;
    auto close_open = [&](std::vector<WhoMatch>::iterator it, uint64_t to) {
        it->to_ms = std::max<uint64_t>({to, it->from_ms, 1}); // 0 means "still held"
        held.push_back(*it);
        open.erase(it);
    };
    for (const Line& l : lines) {
        if (l.kind == Kind::Restart) {
            while (!open.empty()) close_open(open.begin(), l.time_ms);
            continue;
        }
        auto it = std::find_if(open.begin(), open.end(), [&](const WhoMatch& m) { return m.protocol == l.protocol; });
        if (l.kind == Kind::Create) {
            // A create over an open mapping: its delete is missing (lost
            // event); it cannot have lasted past this create.
            if (it != open.end()) close_open(it, l.time_ms);
            open.push_back({l.time_ms, 0, l.in_addr, l.in_port, l.protocol});
        } else if (it != open.end() && it->inside_addr == l.in_addr && it->inside_port == l.in_port) {
            close_open(it, l.time_ms);
        } else {
            // A delete without its create: the log starts after it (rotation),
            // or the create was lost. Held from an unknown time until now.
            if (it != open.end()) close_open(it, l.time_ms);
            held.push_back({0, std::max<uint64_t>(l.time_ms, 1), l.in_addr, l.in_port, l.protocol});
        }
    }
    held.insert(held.end(), open.begin(), open.end());

    std::vector<WhoMatch> out;
    for (const WhoMatch& m : held)
        if (m.from_ms <= at_ms && (m.to_ms == 0 || at_ms <= m.to_ms)) out.push_back(m);
    std::sort(out.begin(), out.end(), [](const WhoMatch& a, const WhoMatch& b) { return a.from_ms < b.from_ms; });
    return out;
}

} // namespace ephemera
