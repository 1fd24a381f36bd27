// who_held(): reads the text mapping log (format: mapping_log.hpp).
#include "mapping_log_reader.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string_view>

#include <arpa/inet.h>

namespace ephemera {

namespace {

// Begin: create or block-alloc; End: delete or block-free; Restart: start or
// stop (the daemon's life).
enum class Kind : uint8_t { Begin, End, Restart };

struct Line {
    uint64_t time_ms;
    Kind kind;
    WhoMatch holder; // from_ms and to_ms unused; what the line is about
};

// A decimal number that is the whole of text and at most max.
bool parse_number(std::string_view text, uint64_t max, uint64_t& out)
{
    uint64_t v = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || v > max) return false;
    out = v;
    return true;
}

bool parse_port(std::string_view text, uint16_t& port)
{
    uint64_t v = 0;
    if (!parse_number(text, 65535, v)) return false;
    port = uint16_t(v);
    return true;
}

// A dotted IPv4 address (host order out).
bool parse_addr(std::string_view text, uint32_t& addr)
{
    if (text.size() > 15) return false;
    char host[16] = {};
    text.copy(host, text.size());
    in_addr a{};
    if (inet_pton(AF_INET, host, &a) != 1) return false;
    addr = ntohl(a.s_addr);
    return true;
}

// "ADDR:PORT" (host order out).
bool parse_endpoint(std::string_view text, uint32_t& addr, uint16_t& port)
{
    const auto colon = text.rfind(':');
    return colon != std::string_view::npos && parse_addr(text.substr(0, colon), addr) &&
           parse_port(text.substr(colon + 1), port);
}

// "ADDR:FIRST-LAST", FIRST <= LAST (host order out).
bool parse_block(std::string_view text, uint32_t& addr, uint16_t& first, uint16_t& last)
{
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return false;
    const std::string_view range = text.substr(colon + 1);
    const auto dash = range.find('-');
    return dash != std::string_view::npos && parse_addr(text.substr(0, colon), addr) &&
           parse_port(range.substr(0, dash), first) && parse_port(range.substr(dash + 1), last) && first <= last;
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

// What who_held() looks for.
struct Query {
    uint32_t ext_addr;
    uint16_t ext_port;
    std::string protocol; // "" = any
};

// "create|delete PROTO inside=ADDR:PORT external=ADDR:PORT ..." from field 3 on.
std::optional<Line> parse_mapping(const std::string_view* f, size_t n, uint64_t t, const Query& q)
{
    const bool create = f[2] == "create";
    if ((!create && f[2] != "delete") || n < 6) return std::nullopt;
    if (!q.protocol.empty() && f[3] != q.protocol) return std::nullopt;
    if (!f[4].starts_with("inside=") || !f[5].starts_with("external=")) return std::nullopt;
    uint32_t xa = 0;
    uint16_t xp = 0;
    if (!parse_endpoint(f[5].substr(9), xa, xp) || xa != q.ext_addr || xp != q.ext_port) return std::nullopt;
    Line l{t, create ? Kind::Begin : Kind::End, {}};
    if (!parse_endpoint(f[4].substr(7), l.holder.inside_addr, l.holder.inside_port)) return std::nullopt;
    l.holder.protocol = std::string(f[3]);
    return l;
}

// "block-alloc|block-free all inside=ADDR external=ADDR:FIRST-LAST ..." from
// field 3 on; only a block that holds the port asked about. Any protocol:
// a block holds its ports in all of them.
std::optional<Line> parse_block_line(const std::string_view* f, size_t n, uint64_t t, const Query& q)
{
    const bool alloc = f[2] == "block-alloc";
    if ((!alloc && f[2] != "block-free") || n < 6 || f[3] != "all") return std::nullopt;
    if (!f[4].starts_with("inside=") || !f[5].starts_with("external=")) return std::nullopt;
    Line l{t, alloc ? Kind::Begin : Kind::End, {}};
    WhoMatch& h = l.holder;
    uint32_t xa = 0;
    if (!parse_block(f[5].substr(9), xa, h.block_first, h.block_last) || xa != q.ext_addr ||
        q.ext_port < h.block_first || q.ext_port > h.block_last)
        return std::nullopt;
    if (!parse_addr(f[4].substr(7), h.inside_addr)) return std::nullopt;
    h.protocol = "all";
    h.is_block = true;
    return l;
}

// One log line, when it is about the query's port or is a restart marker.
std::optional<Line> parse_line(std::string_view text, const Query& q)
{
    std::string_view f[8];
    const size_t n = split(text, f, 8);
    uint64_t t = 0;
    if (n < 3 || !parse_number(f[1], UINT64_MAX, t)) return std::nullopt;
    if (f[2] == "start" || f[2] == "stop") return Line{t, Kind::Restart, {}};
    if (f[2].starts_with("block-")) return parse_block_line(f, n, t, q);
    return parse_mapping(f, n, t, q);
}

// Cheap filter first (logs get large): could the line be about the port?
class Prefilter {
public:
    explicit Prefilter(const Query& q)
    {
        char addr[24];
        std::snprintf(addr, sizeof addr, "%u.%u.%u.%u", q.ext_addr >> 24, (q.ext_addr >> 16) & 255,
                      (q.ext_addr >> 8) & 255, q.ext_addr & 255);
        mapping_ = "external=" + std::string(addr) + ":" + std::to_string(q.ext_port) + " ";
        block_ = "external=" + std::string(addr) + ":";
    }
    bool may_match(const std::string& text) const
    {
        return text.find(mapping_) != std::string::npos ||
               (text.find(" block-") != std::string::npos && text.find(block_) != std::string::npos) ||
               text.find(" start ") != std::string::npos || text.find(" stop ") != std::string::npos;
    }

private:
    std::string mapping_, block_;
};

void read_lines(const std::string& log_path, const Query& q, std::vector<Line>& lines)
{
    std::ifstream in(log_path);
    if (!in) throw std::runtime_error(log_path + ": cannot read: " + std::strerror(errno));
    const Prefilter filter(q);
    // A log line is under 200 bytes; a longer one is not ours and is skipped
    // without being held, so that a file without line ends costs no memory.
    constexpr std::streamsize kMaxLine = 4096;
    std::vector<char> buf(size_t(kMaxLine) + 1);
    for (;;) {
        in.getline(buf.data(), kMaxLine + 1);
        const std::streamsize got = in.gcount();
        if (in.fail() && !in.bad() && got == kMaxLine) { // no line end within kMaxLine bytes
            in.clear();
            in.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
            continue;
        }
        if (got == 0 && !in) break;
        const std::string text(buf.data());
        if (filter.may_match(text))
            if (auto l = parse_line(text, q)) lines.push_back(std::move(*l));
        if (!in) break;
    }
    if (in.bad()) throw std::runtime_error(log_path + ": read error: " + std::strerror(errno));
}

// Workers' lines interleave; one external port (or block) belongs to one
// worker, but sort by time anyway (stable: equal times keep the file's
// order). Start and stop lines stay where they are: the daemon writes them
// before its workers start and after they stop, whatever the clocks say.
void sort_between_restarts(std::vector<Line>& lines)
{
    for (auto seg = lines.begin(); seg != lines.end();) {
        auto end = std::find_if(seg, lines.end(), [](const Line& l) { return l.kind == Kind::Restart; });
        std::stable_sort(seg, end, [](const Line& a, const Line& b) { return a.time_ms < b.time_ms; });
        seg = end == lines.end() ? end : end + 1;
    }
}

// One protocol's port, or one block: at most one holder at a time in each.
bool same_slot(const WhoMatch& a, const WhoMatch& b)
{
    return a.protocol == b.protocol && a.is_block == b.is_block && a.block_first == b.block_first &&
           a.block_last == b.block_last;
}

bool same_holder(const WhoMatch& a, const WhoMatch& b)
{
    return a.inside_addr == b.inside_addr && a.inside_port == b.inside_port;
}

// Every holding the lines tell of, with its times; those still open at the
// end have to_ms 0.
std::vector<WhoMatch> pair_up(const std::vector<Line>& lines)
{
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
        auto it = std::find_if(open.begin(), open.end(), [&](const WhoMatch& m) { return same_slot(m, l.holder); });
        WhoMatch m = l.holder;
        if (l.kind == Kind::Begin) {
            // A begin over an open holding: its end is missing (lost event);
            // it cannot have lasted past this begin.
            if (it != open.end()) close_open(it, l.time_ms);
            m.from_ms = l.time_ms;
            m.to_ms = 0;
            open.push_back(m);
        } else if (it != open.end() && same_holder(*it, l.holder)) {
            close_open(it, l.time_ms);
        } else {
            // An end without its begin: the log starts after it (rotation),
            // or the begin was lost. Held from an unknown time until now.
            if (it != open.end()) close_open(it, l.time_ms);
            m.from_ms = 0;
            m.to_ms = std::max<uint64_t>(l.time_ms, 1);
            held.push_back(m);
        }
    }
    held.insert(held.end(), open.begin(), open.end());
    return held;
}

} // namespace

std::vector<WhoMatch> who_held(const std::vector<std::string>& log_paths, uint32_t ext_addr, uint16_t ext_port,
                               uint64_t at_ms, const std::string& protocol)
{
    const Query q{ext_addr, ext_port, protocol};
    std::vector<Line> lines;
    for (const std::string& path : log_paths) read_lines(path, q, lines);
    sort_between_restarts(lines);
    std::vector<WhoMatch> out;
    for (const WhoMatch& m : pair_up(lines))
        if (m.from_ms <= at_ms && (m.to_ms == 0 || at_ms <= m.to_ms)) out.push_back(m);
    std::sort(out.begin(), out.end(), [](const WhoMatch& a, const WhoMatch& b) { return a.from_ms < b.from_ms; });
    return out;
}

} // namespace ephemera
