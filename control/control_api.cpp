#include "control_api.hpp"

#include <atomic>
#include <chrono>
#include <cstring>
#include <charconv>
#include <mutex>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>

#include <rte_ring.h>
#include <rte_telemetry.h>

#include "../dataplane/gateway_worker.hpp"
#include "../dataplane/router.hpp"
#include "../dataplane/steering.hpp"
#include "ephemera/gateway_config.hpp"
#include "gateway_stats.hpp"
#include "static_changes.hpp"

namespace ephemera {

namespace {

struct Context {
    const GatewayConfig* config;
    GatewayShared* shared;
    const std::vector<std::unique_ptr<Worker>>* workers;
};
Context g_ctx{}; // telemetry callbacks carry no user pointer

// DPDK's telemetry threads go on calling the commands until the process ends
// (a command cannot be unregistered), while what g_ctx points to ends with
// the gateway: after stop_control_api() a command touches none of it.
std::atomic<unsigned> g_in_flight{0};
std::atomic<bool> g_stopping{false};

constexpr size_t kTelemetryReadMax = 1023; // DPDK 22.11 telemetry's read() of a command
constexpr uint32_t kMaxRows = 200; // and fewer where they would not fit the 16 KB reply (ReplyBudget)

// A decimal number min-max that is the whole of text: no sign, no spaces, no
// trailing letters ("5x" is not 5, "-1" not 18446744073709551615).
bool parse_decimal(std::string_view text, uint64_t min, uint64_t max, uint64_t& out)
{
    uint64_t v = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || v < min || v > max) return false;
    out = v;
    return true;
}

// The filters a command takes.
constexpr unsigned kInside = 1, kPool = 2, kPort = 4, kProto = 8, kLimit = 16, kAllFilters = 31;

// "inside=100.64.0.2 pool=198.51.100.3 port=50000 proto=udp limit=20" (spaces,
// commas or & between pairs), of the filters `allowed`. Returns false with
// `why` on anything unknown, repeated or not a value of its key.
bool parse_filters(const char* params, Query& q, std::string& why, unsigned allowed = kAllFilters)
{
    std::string text = params ? params : "";
    for (char& c : text)
        if (c == ',' || c == '&') c = ' ';
    std::istringstream in(text);
    std::string item;
    unsigned seen = 0;
    while (in >> item) {
        const auto eq = item.find('=');
        const std::string key = item.substr(0, eq), value = eq == std::string::npos ? "" : item.substr(eq + 1);
        const unsigned filter = key == "inside" ? kInside
                                : key == "pool" ? kPool
                                : key == "port" ? kPort
                                : key == "proto" ? kProto
                                : key == "limit" ? kLimit
                                                 : 0u;
        if ((filter & allowed) == 0) {
            std::string names;
            for (const auto& [f, name] : {std::pair{kInside, "inside"}, {kPool, "pool"}, {kPort, "port"},
                                          {kProto, "proto"}, {kLimit, "limit"}})
                if (allowed & f) names += (names.empty() ? "" : ", ") + std::string(name);
            why = "unknown filter '" + key + "' (" + names + ")";
            return false;
        }
        if (seen & filter) {
            why = key + " given twice";
            return false;
        }
        seen |= filter;
        bool ok = true;
        uint64_t n = 0;
        try {
            if (filter == kInside) q.inside_addr = rte_cpu_to_be_32(parse_ipv4(value));
            else if (filter == kPool) q.pool_addr = rte_cpu_to_be_32(parse_ipv4(value));
            else if (filter == kPort) ok = parse_decimal(value, 1, 65535, n), q.ext_port = rte_cpu_to_be_16(uint16_t(n));
            else if (filter == kLimit) ok = parse_decimal(value, 1, kMaxRows, n), q.limit = uint32_t(n);
            else {
                ok = false;
                for (unsigned i = 0; i < kL4Count; ++i)
                    if (value == to_string(L4(i))) q.l4 = uint8_t(i), ok = true;
            }
        } catch (const std::exception&) {
            ok = false;
        }
        if (!ok) {
            why = "bad value for " + key + ": '" + value + "'" +
                  (filter == kPort    ? " (1-65535)"
                   : filter == kLimit ? " (1-" + std::to_string(kMaxRows) + ")"
                   : filter == kProto ? " (tcp, udp, icmp or sctp)"
                                      : " (an IPv4 address)");
            return false;
        }
    }
    return true;
}

// Waits until `deadline` for the worker to answer q. True: answered, q is the
// caller's to read and delete. False: abandoned, the worker will delete it.
bool wait_for_answer(Query* q, std::chrono::steady_clock::time_point deadline)
{
    wait_until_answered(*q, deadline);
    int expected = Query::Pending;
    return !q->state.compare_exchange_strong(expected, Query::Abandoned, std::memory_order_acq_rel);
}

// Asks every worker; returns the answered queries (the caller deletes them).
std::vector<Query*> ask_workers(const Query& proto)
{
    std::vector<Query*> posted;
    for (rte_ring* ring : g_ctx.shared->queries) {
        auto* q = new Query();
        q->kind = proto.kind;
        q->inside_addr = proto.inside_addr;
        q->pool_addr = proto.pool_addr;
        q->ext_port = proto.ext_port;
        q->l4 = proto.l4;
        q->limit = proto.limit;
        q->sum_over_pool = proto.sum_over_pool;
        q->timeouts = proto.timeouts;
        if (proto.kind == Query::Kind::Ports) q->ports.reserve(proto.limit);
        else q->rows.reserve(proto.limit);
        if (rte_ring_mp_enqueue(ring, q) != 0) {
            delete q;
            continue;
        }
        posted.push_back(q);
    }
    std::vector<Query*> answered;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    for (Query* q : posted)
        if (wait_for_answer(q, deadline)) answered.push_back(q);
    return answered;
}

std::string endpoint(uint32_t addr_net, uint16_t port_net)
{
    return format_ipv4(rte_be_to_cpu_32(addr_net)) + ":" + std::to_string(rte_be_to_cpu_16(port_net));
}

std::string tcp_state(uint8_t seen)
{
    if (seen & kRst) return "rst";
    if ((seen & (kFinOut | kFinIn)) == (kFinOut | kFinIn)) return "closing";
    if (tcp_established(seen)) return (seen & (kFinOut | kFinIn)) ? "fin-wait" : "established";
    if (seen & kSynOut) return "syn-out";
    if (seen & kSynIn) return "syn-in";
    return "-";
}

// A command's parameters, split at spaces and commas.
std::vector<std::string> words(const char* params)
{
    std::string text = params ? params : "";
    for (char& c : text)
        if (c == ',') c = ' ';
    std::istringstream in(text);
    std::vector<std::string> out;
    for (std::string w; in >> w;) out.push_back(w);
    return out;
}

// What fits a telemetry string: printable ASCII only (DPDK 22.11's JSON
// escaping reads out of bounds on bytes >= 0x80 and passes them through
// unescaped), at most RTE_TEL_MAX_STRING_LEN - 1 bytes, a cut marked "...".
std::string tel_text(const std::string& text)
{
    std::string out;
    for (char c : text) out += c >= 0x20 && c < 0x7f ? c : '?';
    constexpr size_t kMax = RTE_TEL_MAX_STRING_LEN - 1;
    if (out.size() > kMax) out = out.substr(0, kMax - 3) + "...";
    return out;
}

// {"error": why} and, where given, {"usage": usage}: two strings, so that
// neither is cut at DPDK's 127 bytes where together they would be.
int error_reply(rte_tel_data* d, const std::string& why, const char* usage = nullptr)
{
    rte_tel_data_start_dict(d);
    rte_tel_data_add_dict_string(d, "error", tel_text(why).c_str());
    if (usage) rte_tel_data_add_dict_string(d, "usage", usage);
    return 0;
}

// A command that takes no parameters refuses any: a typo is not taken for a filter.
bool has_params(const char* params) { return params != nullptr && *params != '\0'; }
int no_params_reply(const char* cmd, rte_tel_data* d) { return error_reply(d, std::string(cmd) + " takes no parameters"); }

// Columns of a table: one telemetry array per column, so that the reply
// stays within what DPDK telemetry can nest.
struct Columns {
    std::vector<std::pair<std::string, rte_tel_data*>> cols;
    rte_tel_data* add(const std::string& name, rte_tel_value_type type)
    {
        rte_tel_data* c = rte_tel_data_alloc();
        rte_tel_data_start_array(c, type);
        cols.emplace_back(name, c);
        return c;
    }
    void attach(rte_tel_data* d)
    {
        for (auto& [name, c] : cols) rte_tel_data_add_dict_container(d, name.c_str(), c, 0);
    }
};

// DPDK telemetry's reply is at most 16 KB, and what does not fit is left out
// silently, a whole column at a time: a table stops adding rows before that.
// A row's cost is what it adds to the JSON: each string quoted, each value
// followed by a comma.
class ReplyBudget {
public:
    bool fits(std::initializer_list<std::string_view> strings, std::initializer_list<uint64_t> numbers)
    {
        size_t row = 0;
        for (std::string_view t : strings) row += t.size() + 3;
        for (uint64_t v : numbers) row += std::to_string(v).size() + 1;
        if (used_ + row > kLimit) return false;
        used_ += row;
        return true;
    }

private:
    // 16 KB less what the rest of the reply takes: the command, column names,
    // the counts beside the table.
    static constexpr size_t kLimit = 16 * 1024 - 1024;
    size_t used_ = 0;
};

const char* kind_name(QueryRow::Kind k)
{
    return k == QueryRow::Kind::Static ? "static" : k == QueryRow::Kind::Pcp ? "pcp" : "dynamic";
}

int table_reply(rte_tel_data* d, Query::Kind kind, const char* params)
{
    Query proto;
    proto.kind = kind;
    proto.limit = 50;
    std::string why;
    if (!parse_filters(params, proto, why)) return error_reply(d, why);
    std::vector<Query*> answers = ask_workers(proto);
    rte_tel_data_start_dict(d);
    Columns t;
    rte_tel_data* proto_c = t.add("protocol", RTE_TEL_STRING_VAL);
    rte_tel_data* inside_c = t.add("inside", RTE_TEL_STRING_VAL);
    rte_tel_data* ext_c = t.add("external", RTE_TEL_STRING_VAL);
    rte_tel_data* remote_c = kind == Query::Kind::Sessions ? t.add("remote", RTE_TEL_STRING_VAL) : nullptr;
    rte_tel_data* state_c = kind == Query::Kind::Sessions ? t.add("state", RTE_TEL_STRING_VAL) : nullptr;
    const bool mappings = kind == Query::Kind::Mappings;
    rte_tel_data* sess_c = mappings ? t.add("sessions", RTE_TEL_U64_VAL) : nullptr;
    rte_tel_data* kind_c = mappings ? t.add("kind", RTE_TEL_STRING_VAL) : nullptr;
    rte_tel_data* exp_c = t.add("expires_in", RTE_TEL_U64_VAL);
    rte_tel_data* worker_c = t.add("worker", RTE_TEL_U64_VAL);
    uint64_t matched = 0, shown = 0;
    ReplyBudget budget;
    bool full = false;
    for (Query* q : answers) {
        matched += q->matched;
        for (const QueryRow& r : q->rows) {
            if (full || shown == proto.limit) break;
            const char* protocol = to_string(L4(r.l4));
            const std::string inside = endpoint(r.in_addr, r.in_port), ext = endpoint(r.ext_addr, r.ext_port);
            const std::string remote = remote_c ? endpoint(r.remote_addr, r.remote_port) : "";
            const std::string state = remote_c ? (L4(r.l4) == L4::Tcp ? tcp_state(r.tcp) : "-") : "";
            const char* kind_text = kind_name(r.kind);
            if (!budget.fits({protocol, inside, ext, remote, state, mappings ? kind_text : ""},
                             {r.sessions, r.expires_in, r.worker})) {
                full = true;
                break;
            }
            ++shown;
            rte_tel_data_add_array_string(proto_c, protocol);
            rte_tel_data_add_array_string(inside_c, inside.c_str());
            rte_tel_data_add_array_string(ext_c, ext.c_str());
            if (remote_c) {
                rte_tel_data_add_array_string(remote_c, remote.c_str());
                rte_tel_data_add_array_string(state_c, state.c_str());
            }
            if (sess_c) {
                rte_tel_data_add_array_u64(sess_c, r.sessions);
                rte_tel_data_add_array_string(kind_c, kind_text);
            }
            rte_tel_data_add_array_u64(exp_c, r.expires_in);
            rte_tel_data_add_array_u64(worker_c, r.worker);
        }
        delete q;
    }
    t.attach(d);
    rte_tel_data_add_dict_u64(d, "matched", matched);
    rte_tel_data_add_dict_u64(d, "shown", shown);
    rte_tel_data_add_dict_u64(d, "workers_answered", answers.size());
    return 0;
}

int cmd_mappings(const char*, const char* params, rte_tel_data* d) { return table_reply(d, Query::Kind::Mappings, params); }
int cmd_sessions(const char*, const char* params, rte_tel_data* d) { return table_reply(d, Query::Kind::Sessions, params); }

std::pair<uint32_t, uint16_t> parse_endpoint(const std::string& text, const char* what);

// POOLADDR:PORT[/proto]: who holds that external endpoint now.
int cmd_lookup(const char*, const char* params, rte_tel_data* d)
{
    const char* usage = "/ephemera/lookup,POOLADDR:PORT[/PROTO]";
    const std::string text = params ? params : "";
    const auto slash = text.find('/');
    std::pair<uint32_t, uint16_t> ext;
    try {
        ext = parse_endpoint(text.substr(0, slash), "endpoint");
    } catch (const std::exception& e) {
        return error_reply(d, e.what(), usage);
    }
    // Rebuilt from the parsed values: nothing of the text but them reaches the filters.
    std::string filters = "pool=" + format_ipv4(rte_be_to_cpu_32(ext.first)) + " port=" + std::to_string(ext.second);
    if (slash != std::string::npos) {
        const std::string proto = text.substr(slash + 1);
        bool known = false;
        for (unsigned i = 0; i < kL4Count; ++i) known |= proto == to_string(L4(i));
        if (!known) return error_reply(d, "protocol '" + proto + "': expected tcp, udp, icmp or sctp", usage);
        filters += " proto=" + proto;
    }
    return table_reply(d, Query::Kind::Mappings, filters.c_str());
}

int cmd_ports(const char*, const char* params, rte_tel_data* d)
{
    Query proto;
    proto.kind = Query::Kind::Ports;
    proto.limit = kMaxRows;
    std::string why;
    if (!parse_filters(params, proto, why, kPool | kProto | kLimit)) return error_reply(d, why);
    std::vector<Query*> answers = ask_workers(proto);
    rte_tel_data_start_dict(d);
    Columns t;
    rte_tel_data* pool_c = t.add("pool", RTE_TEL_STRING_VAL);
    rte_tel_data* proto_c = t.add("protocol", RTE_TEL_STRING_VAL);
    rte_tel_data* worker_c = t.add("worker", RTE_TEL_U64_VAL);
    rte_tel_data* free_c = t.add("free", RTE_TEL_U64_VAL);
    rte_tel_data* quar_c = t.add("quarantined", RTE_TEL_U64_VAL);
    rte_tel_data* use_c = t.add("in_use", RTE_TEL_U64_VAL);
    uint64_t matched = 0, shown = 0;
    ReplyBudget budget;
    bool full = false;
    for (Query* q : answers) {
        matched += q->matched; // a large pool: filter by pool= or proto=
        for (const PortUse& u : q->ports) {
            if (full || shown == proto.limit) break;
            const std::string pool = format_ipv4(rte_be_to_cpu_32(u.pool_addr));
            if (!budget.fits({pool, to_string(L4(u.l4))}, {u.worker, u.free, u.quarantined, u.in_use})) {
                full = true;
                break;
            }
            ++shown;
            rte_tel_data_add_array_string(pool_c, pool.c_str());
            rte_tel_data_add_array_string(proto_c, to_string(L4(u.l4)));
            rte_tel_data_add_array_u64(worker_c, u.worker);
            rte_tel_data_add_array_u64(free_c, u.free);
            rte_tel_data_add_array_u64(quar_c, u.quarantined);
            rte_tel_data_add_array_u64(use_c, u.in_use);
        }
        delete q;
    }
    t.attach(d);
    rte_tel_data_add_dict_u64(d, "matched", matched);
    rte_tel_data_add_dict_u64(d, "shown", shown);
    rte_tel_data_add_dict_u64(d, "workers_answered", answers.size());
    return 0;
}

// Flattens {"drops": {"in": {"ttl": 3}}} into "drops_in_ttl": 3 (telemetry
// names allow letters, digits, '_' and '/' only).
void flatten(rte_tel_data* d, const nlohmann::json& j, const std::string& prefix)
{
    for (auto it = j.begin(); it != j.end(); ++it) {
        const std::string key = prefix.empty() ? it.key() : prefix + "_" + it.key();
        if (it->is_object()) flatten(d, *it, key);
        else if (it->is_number_unsigned() || it->is_number_integer()) rte_tel_data_add_dict_u64(d, key.c_str(), it->get<uint64_t>());
    }
}

int cmd_stats(const char* cmd, const char* params, rte_tel_data* d)
{
    if (has_params(params)) return no_params_reply(cmd, d);
    rte_tel_data_start_dict(d);
    flatten(d, gateway_stats(*g_ctx.workers), "");
    return 0;
}

// The timeouts in force: the configuration's until timeouts_set changes them.
std::mutex g_timeouts_mutex;
Timeouts g_timeouts;

int cmd_timeouts(const char* cmd, const char* params, rte_tel_data* d)
{
    if (has_params(params)) return no_params_reply(cmd, d);
    std::lock_guard<std::mutex> lock(g_timeouts_mutex);
    const Timeouts& t = g_timeouts;
    rte_tel_data_start_dict(d);
    rte_tel_data_add_dict_u64(d, "udp", t.udp);
    rte_tel_data_add_dict_u64(d, "tcp_established", t.tcp_established);
    rte_tel_data_add_dict_u64(d, "tcp_transitory", t.tcp_transitory);
    rte_tel_data_add_dict_u64(d, "icmp", t.icmp);
    rte_tel_data_add_dict_u64(d, "sctp", t.sctp);
    rte_tel_data_add_dict_u64(d, "quarantine", t.quarantine);
    return 0;
}

// KEY SECONDS: every worker takes the new value for the mappings and sessions
// it creates or refreshes from then on (what is live keeps the expiry it has
// until its next packet); the configuration's limits apply.
int cmd_timeouts_set(const char*, const char* params, rte_tel_data* d)
{
    const auto w = words(params);
    const char* usage = "/ephemera/timeouts_set,KEY SECONDS (udp, tcp_established, tcp_transitory, icmp, sctp: "
                        "1-2678400; quarantine: 0-3600)";
    if (w.size() != 2) return error_reply(d, "expected KEY SECONDS", usage);
    uint64_t v = 0;
    auto [end, ec] = std::from_chars(w[1].data(), w[1].data() + w[1].size(), v);
    if (ec != std::errc{} || end != w[1].data() + w[1].size()) return error_reply(d, "\"" + w[1] + "\": not a number", usage);
    std::lock_guard<std::mutex> lock(g_timeouts_mutex);
    Timeouts t = g_timeouts;
    uint32_t* field = w[0] == "udp"               ? &t.udp
                      : w[0] == "tcp_established" ? &t.tcp_established
                      : w[0] == "tcp_transitory"  ? &t.tcp_transitory
                      : w[0] == "icmp"            ? &t.icmp
                      : w[0] == "sctp"            ? &t.sctp
                      : w[0] == "quarantine"      ? &t.quarantine
                                                  : nullptr;
    if (field == nullptr) return error_reply(d, "unknown timeout \"" + w[0] + "\"", usage);
    const bool quarantine = field == &t.quarantine;
    if (v > (quarantine ? kMaxQuarantine : kMaxTimeout) || (!quarantine && v == 0))
        return error_reply(d, w[0] + " = " + w[1] + ": out of range", usage);
    *field = uint32_t(v);
    Query proto;
    proto.kind = Query::Kind::SetTimeouts;
    proto.timeouts = t;
    proto.limit = 0;
    const std::vector<Query*> answered = ask_workers(proto);
    for (Query* q : answered) delete q;
    if (answered.size() != g_ctx.shared->queries.size())
        return error_reply(d, std::to_string(answered.size()) + " of " + std::to_string(g_ctx.shared->queries.size()) +
                                  " workers took the change: ask again");
    g_timeouts = t;
    rte_tel_data_start_dict(d);
    rte_tel_data_add_dict_u64(d, w[0].c_str(), v);
    return 0;
}

int cmd_config(const char* cmd, const char* params, rte_tel_data* d)
{
    if (has_params(params)) return no_params_reply(cmd, d);
    const GatewayConfig& c = *g_ctx.config;
    rte_tel_data_start_dict(d);
    auto s = [&](const char* k, const std::string& v) { rte_tel_data_add_dict_string(d, k, v.c_str()); };
    s("inside_port", c.inside.port);
    s("inside_address", format_ipv4(c.inside.address) + "/" + std::to_string(c.inside.prefix_len));
    s("outside_port", c.outside.port);
    s("outside_address", format_ipv4(c.outside.address) + "/" + std::to_string(c.outside.prefix_len));
    s("outside_next_hop", format_ipv4(c.next_hop));
    s("nat_pool", format_ipv4(c.nat.pool.front()) + (c.nat.pool.size() > 1 ? " .. " + format_ipv4(c.nat.pool.back()) : ""));
    rte_tel_data_add_dict_u64(d, "nat_pool_size", c.nat.pool.size());
    s("nat_ports", std::to_string(c.nat.ports.first) + "-" + std::to_string(c.nat.ports.last));
    s("nat_filtering", to_string(c.nat.filtering));
    rte_tel_data_add_dict_u64(d, "nat_port_parity", c.nat.port_parity);
    rte_tel_data_add_dict_u64(d, "nat_port_preservation", c.nat.port_preservation);
    rte_tel_data_add_dict_u64(d, "nat_max_mappings", c.nat.max_mappings);
    rte_tel_data_add_dict_u64(d, "nat_max_sessions_per_mapping", c.nat.max_sessions_per_mapping);
    rte_tel_data_add_dict_u64(d, "dataplane_workers", c.nat.workers);
    s("dataplane_steering", g_ctx.shared->steering);
    rte_tel_data_add_dict_u64(d, "inside_mtu", c.inside.mtu);
    rte_tel_data_add_dict_u64(d, "outside_mtu", c.outside.mtu);
    rte_tel_data_add_dict_u64(d, "dataplane_reassembly", c.reassembly);
    rte_tel_data_add_dict_u64(d, "dataplane_mss_clamp", c.mss_clamp);
    std::string excluded;
    for (const auto& [addr, len] : c.exclude) {
        if (!excluded.empty()) excluded += ' ';
        excluded += format_ipv4(addr);
        excluded += '/';
        excluded += std::to_string(len);
    }
    s("nat_exclude", excluded);
    s("nat_deterministic", c.nat.deterministic ? format_ipv4(c.nat.deterministic_prefix) + "/" +
                                                     std::to_string(c.nat.deterministic_len)
                                               : "");
    rte_tel_data_add_dict_u64(d, "nat_deterministic_overflow", c.nat.deterministic_overflow);
    s("log_file", c.log.file);
    s("log_ipfix_collector", c.log.ipfix_collector);
    s("metrics_listen", c.metrics.listen);
    return 0;
}

// ---- static mappings (port forwards) ----

std::mutex g_static_mutex; // one change at a time: the table has one writer
std::unique_ptr<StaticChanges> g_static_changes; // under g_static_mutex

std::string static_name(const StaticSlot& s);

// Completes the static changes whose worker answered after the command that
// asked had stopped waiting; says so on stderr, since nobody is waiting now.
void settle_static_changes_locked()
{
    if (g_static_changes == nullptr) return;
    g_static_changes->settle([](uint32_t slot, StaticChanges::Kind kind, Translator::StaticResult r) {
        const StaticSlot& s = g_ctx.shared->statics->slot(slot);
        const char* what = kind == StaticChanges::Kind::Removing ? "removed"
                           : r == Translator::StaticResult::Ok   ? "added"
                           : r == Translator::StaticResult::InsideTaken
                               ? "not added: the inside endpoint has a dynamic mapping"
                               : "not added: the worker's mapping table is full";
        std::fprintf(stderr, "ephemera: static mapping %s: %s (worker %u answered late)\n", static_name(s).c_str(),
                     what, unsigned(s.worker));
    });
}

// "ADDR:PORT" -> network-order address, host-order port; throws with a reason.
std::pair<uint32_t, uint16_t> parse_endpoint(const std::string& text, const char* what)
{
    const auto colon = text.rfind(':');
    if (colon == std::string::npos) throw std::invalid_argument(std::string(what) + " '" + text + "': expected ADDR:PORT");
    uint64_t port = 0;
    if (!parse_decimal(std::string_view(text).substr(colon + 1), 1, 65535, port))
        throw std::invalid_argument(std::string(what) + " '" + text + "': the port must be 1-65535");
    return {rte_cpu_to_be_32(parse_ipv4(text.substr(0, colon))), uint16_t(port)};
}

L4 parse_static_proto(const std::string& text)
{
    if (text == "tcp") return L4::Tcp;
    if (text == "udp") return L4::Udp;
    if (text == "sctp") return L4::Sctp;
    throw std::invalid_argument("protocol '" + text + "': expected tcp, udp or sctp");
}

std::string static_name(const StaticSlot& s)
{
    return format_ipv4(rte_be_to_cpu_32(s.pool_addr)) + ":" + std::to_string(s.ext_port) + "/" + to_string(s.l4);
}

// Adds the static mapping "PROTO INSIDE:PORT POOLADDR:PORT": "" when done or
// under way (with `added`, `worker` and `pending` set), else why not.
std::string add_static(const std::vector<std::string>& w, std::string& added, unsigned& worker, bool& pending)
{
    pending = false;
    if (w.size() != 3) return "expected PROTO INSIDE:PORT POOLADDR:PORT";
    StaticSlot s;
    try {
        s.l4 = parse_static_proto(w[0]);
        std::tie(s.in_addr, s.in_port) = parse_endpoint(w[1], "inside");
        std::tie(s.pool_addr, s.ext_port) = parse_endpoint(w[2], "external");
    } catch (const std::exception& e) {
        return e.what();
    }
    const GatewayConfig& c = *g_ctx.config;
    const uint32_t in_host = rte_be_to_cpu_32(s.in_addr);
    const uint32_t mask = prefix_mask(c.inside.prefix_len);
    if ((in_host & mask) != (c.inside.address & mask) || in_host == c.inside.address)
        return ("inside " + w[1] + ": not a host on the inside subnet " + format_ipv4(c.inside.address) +
                                  "/" + std::to_string(c.inside.prefix_len) + " (its MAC is found by ARP there)");
    if (g_ctx.shared->pool->index_of(s.pool_addr) == Pool::kNotInPool)
        return ("external " + w[2] + ": " + format_ipv4(rte_be_to_cpu_32(s.pool_addr)) +
                                  " is not a pool address");
    if (s.ext_port >= c.nat.ports.first && s.ext_port <= c.nat.ports.last)
        return ("external " + w[2] + ": port inside the dynamic range " +
                                  std::to_string(c.nat.ports.first) + "-" + std::to_string(c.nat.ports.last) +
                                  " (static mappings take ports outside it)");
    s.worker = uint16_t(g_ctx.shared->subscriber_worker(s.in_addr));

    std::lock_guard<std::mutex> lock(g_static_mutex);
    settle_static_changes_locked();
    StaticTable& table = *g_ctx.shared->statics;
    if (const int32_t taken = table.slot_of(s.pool_addr, s.ext_port, s.l4); taken >= 0) {
        const StaticSlot& t = table.slot(uint32_t(taken));
        const std::string to = format_ipv4(rte_be_to_cpu_32(t.in_addr)) + ":" + std::to_string(t.in_port);
        switch (g_static_changes->in_flight(uint32_t(taken))) {
        case StaticChanges::Kind::Adding:
            return static_name(s) + " is being forwarded to " + to + " (worker " + std::to_string(t.worker) +
                   " has not confirmed it yet)";
        case StaticChanges::Kind::Removing:
            return static_name(s) + " is being removed (worker " + std::to_string(t.worker) +
                   " has not confirmed it yet): add it again when `static list` no longer shows it";
        case StaticChanges::Kind::None:
            break;
        }
        return static_name(s) + " is already forwarded to " + to;
    }
    for (uint32_t i : table.used_slots()) { // one inside endpoint, one mapping (RFC 4787 REQ-1)
        const StaticSlot& t = table.slot(i);
        if (t.in_addr == s.in_addr && t.in_port == s.in_port && t.l4 == s.l4)
            return "inside " + w[1] + "/" + w[0] + " is already forwarded from " + static_name(t) +
                   " (static del that one first)";
    }
    const int32_t slot = table.reserve(s);
    if (slot < 0)
        return ("the static mapping table is full (nat.max_static_mappings = " +
                                  std::to_string(table.capacity()) + ")");
    Translator::StaticResult r = Translator::StaticResult::Ok;
    switch (g_static_changes->add(uint32_t(slot), r)) {
    case StaticChanges::Status::NotPosted:
        return "worker " + std::to_string(s.worker) + " has too many requests queued; try again";
    case StaticChanges::Status::InFlight:
        // Completed by settle_static_changes_locked() once the worker answers.
        pending = true;
        break;
    case StaticChanges::Status::Done:
        if (r == Translator::StaticResult::InsideTaken)
            return ("inside " + w[1] + "/" + w[0] +
                                      " has a dynamic mapping now: add the static one when it has expired");
        if (r != Translator::StaticResult::Ok)
            return ("the mapping table of worker " + std::to_string(s.worker) + " is full");
        resolve_static_neighbors_locked();
        break;
    }
    added = static_name(s) + " -> " + w[1];
    worker = s.worker;
    return "";
}

int cmd_static_add(const char*, const char* params, rte_tel_data* d)
{
    std::string added;
    unsigned worker = 0;
    bool pending = false;
    const std::string why = add_static(words(params), added, worker, pending);
    if (!why.empty()) return error_reply(d, why, "/ephemera/static_add,PROTO INSIDE:PORT POOLADDR:PORT");
    rte_tel_data_start_dict(d);
    rte_tel_data_add_dict_string(d, "added", added.c_str());
    rte_tel_data_add_dict_u64(d, "worker", worker);
    rte_tel_data_add_dict_string(d, "state", pending ? "adding" : "active");
    return 0;
}

// PROTO POOL:PORT
int cmd_static_del(const char*, const char* params, rte_tel_data* d)
{
    const auto w = words(params);
    if (w.size() != 2) return error_reply(d, "expected PROTO POOLADDR:PORT", "/ephemera/static_del,PROTO POOLADDR:PORT");
    L4 l4;
    std::pair<uint32_t, uint16_t> ext;
    try {
        l4 = parse_static_proto(w[0]);
        ext = parse_endpoint(w[1], "external");
    } catch (const std::exception& e) {
        return error_reply(d, e.what());
    }
    std::lock_guard<std::mutex> lock(g_static_mutex);
    settle_static_changes_locked();
    StaticTable& table = *g_ctx.shared->statics;
    const int32_t slot = table.slot_of(ext.first, ext.second, l4);
    if (slot < 0) return error_reply(d, "no static mapping " + w[1] + "/" + w[0]);
    const StaticSlot& s = table.slot(uint32_t(slot));
    const std::string name = static_name(s);
    const std::string owner = "worker " + std::to_string(s.worker);
    if (g_static_changes->in_flight(uint32_t(slot)) != StaticChanges::Kind::None)
        return error_reply(d, name + " is still being added or removed (" + owner + " has not confirmed it yet)");
    const char* state = "deleted";
    switch (g_static_changes->remove(uint32_t(slot))) {
    case StaticChanges::Status::NotPosted:
        return error_reply(d, owner + " has too many requests queued; try again");
    case StaticChanges::Status::InFlight:
        state = "removing"; // no longer forwarded; the slot is freed when the worker answers
        break;
    case StaticChanges::Status::Done:
        break;
    }
    rte_tel_data_start_dict(d);
    rte_tel_data_add_dict_string(d, "deleted", name.c_str());
    rte_tel_data_add_dict_string(d, "state", state);
    return 0;
}

int cmd_static_list(const char*, const char* params, rte_tel_data* d)
{
    Query filter;
    filter.limit = kMaxRows;
    std::string why;
    if (!parse_filters(params, filter, why)) return error_reply(d, why);
    std::lock_guard<std::mutex> lock(g_static_mutex);
    settle_static_changes_locked();
    const StaticTable& table = *g_ctx.shared->statics;
    rte_tel_data_start_dict(d);
    Columns t;
    rte_tel_data* proto = t.add("protocol", RTE_TEL_STRING_VAL);
    rte_tel_data* inside = t.add("inside", RTE_TEL_STRING_VAL);
    rte_tel_data* external = t.add("external", RTE_TEL_STRING_VAL);
    rte_tel_data* mac = t.add("inside_mac", RTE_TEL_STRING_VAL);
    rte_tel_data* worker = t.add("worker", RTE_TEL_U64_VAL);
    rte_tel_data* state = t.add("state", RTE_TEL_STRING_VAL);
    uint64_t matched = 0, shown = 0;
    ReplyBudget budget;
    bool full = false;
    for (uint32_t i : table.used_slots()) {
        const StaticSlot& s = table.slot(i);
        if ((filter.l4 != 0xff && uint8_t(s.l4) != filter.l4) || (filter.inside_addr && s.in_addr != filter.inside_addr) ||
            (filter.pool_addr && s.pool_addr != filter.pool_addr) ||
            (filter.ext_port && rte_cpu_to_be_16(s.ext_port) != filter.ext_port))
            continue;
        ++matched;
        if (full || shown == filter.limit) continue;
        const StaticChanges::Kind k = g_static_changes->in_flight(i);
        const char* state_text = k == StaticChanges::Kind::Adding     ? "adding"
                                 : k == StaticChanges::Kind::Removing ? "removing"
                                                                      : "active";
        const std::string in = endpoint(s.in_addr, rte_cpu_to_be_16(s.in_port));
        const std::string ext = endpoint(s.pool_addr, rte_cpu_to_be_16(s.ext_port));
        const uint64_t m = s.mac.load(std::memory_order_relaxed);
        char text[RTE_ETHER_ADDR_FMT_SIZE] = "unresolved";
        if (m) {
            const rte_ether_addr a = StaticTable::unpack(m);
            rte_ether_format_addr(text, sizeof text, &a);
        }
        if (!budget.fits({state_text, to_string(s.l4), in, ext, text}, {s.worker})) {
            full = true;
            continue;
        }
        ++shown;
        rte_tel_data_add_array_string(state, state_text);
        rte_tel_data_add_array_string(proto, to_string(s.l4));
        rte_tel_data_add_array_string(inside, in.c_str());
        rte_tel_data_add_array_string(external, ext.c_str());
        rte_tel_data_add_array_string(mac, text);
        rte_tel_data_add_array_u64(worker, s.worker);
    }
    t.attach(d);
    rte_tel_data_add_dict_u64(d, "matched", matched);
    rte_tel_data_add_dict_u64(d, "shown", shown);
    return 0;
}

} // namespace

std::string add_static_mapping(const std::string& spec)
{
    std::string added;
    unsigned worker = 0;
    bool pending = false;
    return add_static(words(spec.c_str()), added, worker, pending);
}

void resolve_static_neighbors_locked()
{
    GatewayShared& sh = *g_ctx.shared;
    if (sh.statics == nullptr || sh.control_inside == nullptr) return;
    for (uint32_t i : sh.statics->used_slots()) {
        const StaticSlot& s = sh.statics->slot(i);
        if (s.mac.load(std::memory_order_relaxed) != 0) continue;
        if (rte_mbuf* req = router::arp_request(sh.mbufs, sh.mac[0], sh.addr[0], s.in_addr))
            if (rte_ring_mp_enqueue(sh.control_inside, req) != 0) rte_pktmbuf_free(req);
    }
}

void resolve_static_neighbors()
{
    if (g_ctx.shared == nullptr) return;
    std::lock_guard<std::mutex> lock(g_static_mutex);
    settle_static_changes_locked();
    resolve_static_neighbors_locked();
}

nlohmann::json port_use()
{
    Query proto;
    proto.kind = Query::Kind::Ports;
    // Per pool address up to kMetricsPoolAddresses; beyond, one series per
    // protocol and worker (a /16 would be 786432 series per worker).
    proto.sum_over_pool = g_ctx.config->nat.pool.size() > kMetricsPoolAddresses;
    proto.limit = uint32_t((proto.sum_over_pool ? 1 : g_ctx.config->nat.pool.size()) * kL4Count);
    nlohmann::json out = nlohmann::json::array();
    for (Query* q : ask_workers(proto)) {
        for (const PortUse& u : q->ports)
            out.push_back({{"pool", proto.sum_over_pool ? std::string("all") : format_ipv4(rte_be_to_cpu_32(u.pool_addr))},
                           {"protocol", to_string(L4(u.l4))},
                           {"worker", u.worker},
                           {"free", u.free},
                           {"quarantined", u.quarantined},
                           {"in_use", u.in_use}});
        delete q;
    }
    return out;
}

// Runs the command unless the gateway is stopping. Sequentially consistent:
// either stop_control_api() sees the command in flight and waits for it, or
// the command sees the stop.
template <int (*Command)(const char*, const char*, rte_tel_data*)>
int guarded(const char* cmd, const char* params, rte_tel_data* d)
{
    g_in_flight.fetch_add(1);
    struct Leave {
        ~Leave() { g_in_flight.fetch_sub(1); }
    } leave;
    if (g_stopping.load()) return error_reply(d, "the daemon is stopping");
    // DPDK telemetry reads at most 1023 bytes of a command and drops the rest
    // unseen: "limit=200" could arrive as "limit=2".
    if (params != nullptr && std::strlen(cmd) + 1 + std::strlen(params) >= kTelemetryReadMax)
        return error_reply(d, "the command is " + std::to_string(kTelemetryReadMax) +
                                  " bytes or longer: DPDK telemetry reads only the first " +
                                  std::to_string(kTelemetryReadMax) + ", so it may have been cut");
    return Command(cmd, params, d);
}

void register_control_api(const GatewayConfig& config, GatewayShared& shared,
                          const std::vector<std::unique_ptr<Worker>>& workers)
{
    g_ctx = Context{&config, &shared, &workers};
    if (shared.statics)
        g_static_changes = std::make_unique<StaticChanges>(*shared.statics, shared.queries, std::chrono::seconds(2));
    rte_telemetry_register_cmd("/ephemera/stats", guarded<cmd_stats>, "Gateway counters. No parameters");
    rte_telemetry_register_cmd("/ephemera/mappings", guarded<cmd_mappings>,
                               "Mappings. Parameters: inside=ADDR pool=ADDR port=N proto=tcp|udp|icmp|sctp limit=N");
    rte_telemetry_register_cmd("/ephemera/sessions", guarded<cmd_sessions>,
                               "Sessions. Parameters: inside=ADDR pool=ADDR port=N proto=tcp|udp|icmp|sctp limit=N");
    rte_telemetry_register_cmd("/ephemera/ports", guarded<cmd_ports>,
                               "Port use per pool address, protocol and worker. Parameters: pool=ADDR proto=P limit=N");
    rte_telemetry_register_cmd("/ephemera/lookup", guarded<cmd_lookup>, "Who holds POOLADDR:PORT[/PROTO] now");
    g_timeouts = config.nat.timeouts;
    rte_telemetry_register_cmd("/ephemera/timeouts", guarded<cmd_timeouts>, "Timeouts in seconds. No parameters");
    rte_telemetry_register_cmd("/ephemera/timeouts_set", guarded<cmd_timeouts_set>,
                               "Changes one timeout for what is created or refreshed from now on. "
                               "Parameters: KEY SECONDS");
    rte_telemetry_register_cmd("/ephemera/config", guarded<cmd_config>, "The running configuration. No parameters");
    rte_telemetry_register_cmd("/ephemera/static_add", guarded<cmd_static_add>,
                               "Adds a static mapping (port forward). Parameters: PROTO INSIDE:PORT POOLADDR:PORT");
    rte_telemetry_register_cmd("/ephemera/static_del", guarded<cmd_static_del>,
                               "Removes a static mapping. Parameters: PROTO POOLADDR:PORT");
    rte_telemetry_register_cmd("/ephemera/static_list", guarded<cmd_static_list>,
                               "Static mappings. Parameters: inside=ADDR pool=ADDR port=N proto=tcp|udp|sctp limit=N");
}

void stop_control_api()
{
    g_stopping.store(true);
    // A command waits at most 2 s for a worker's answer; the workers still run.
    while (g_in_flight.load() != 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

} // namespace ephemera
