#include "metrics.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstring>
#include <ctime>
#include <map>
#include <stdexcept>
#include <string_view>
#include <tuple>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ephemera/config.hpp"
#include "ephemera/flow_key.hpp"
#include "ephemera/translator.hpp"

namespace ephemera {

// ---------------------------------------------------------------------------
// Text format
// ---------------------------------------------------------------------------

namespace {

// One metric family drawn from one key of the stats object. A number gives
// one sample; an object gives one sample per key, labelled labels[0] = key,
// recursively (drops: direction, then reason). Deeper objects than labels,
// strings, booleans and nulls give nothing.
struct Family {
    const char* name;
    const char* type;
    const char* key;
    std::vector<const char*> labels;
    const char* help;
};

const std::vector<Family>& families()
{
    static const std::vector<Family> table = {
        {"ephemera_packets_received_total", "counter", "rx", {"port"}, "Packets received on each port."},
        {"ephemera_packets_transmitted_total", "counter", "tx", {"port"}, "Packets transmitted on each port."},
        {"ephemera_tx_dropped_total", "counter", "tx_dropped", {"port"},
         "Packets dropped on each port because its TX queue was full."},
        {"ephemera_packets_translated_total", "counter", "translated", {"direction"},
         "Packets translated and forwarded, by direction (out: inside to outside)."},
        {"ephemera_icmp_errors_translated_total", "counter", "icmp_errors_translated", {"direction"},
         "ICMP error messages translated, by direction."},
        {"ephemera_packets_dropped_total", "counter", "drops", {"direction", "reason"},
         "Packets the translator dropped, by direction and reason."},
        {"ephemera_mappings", "gauge", "by_protocol.mappings", {"protocol"}, "Live mappings (inside endpoint to external port), by protocol."},
        {"ephemera_sessions", "gauge", "by_protocol.sessions", {"protocol"}, "Live sessions (mapping and remote endpoint), by protocol."},
        {"ephemera_mappings_created_total", "counter", "by_protocol.mappings_created", {"protocol"}, "Mappings created."},
        {"ephemera_mappings_released_total", "counter", "by_protocol.mappings_released", {"protocol"}, "Mappings released."},
        {"ephemera_mappings_expired_total", "counter", "mappings_expired", {},
         "Mappings released because they expired."},
        {"ephemera_sessions_created_total", "counter", "by_protocol.sessions_created", {"protocol"}, "Sessions created."},
        {"ephemera_sessions_released_total", "counter", "by_protocol.sessions_released", {"protocol"}, "Sessions released."},
        {"ephemera_port_parity_fallbacks_total", "counter", "parity_fallbacks", {},
         "Ports allocated with the other parity because none of the wanted parity was free."},
        {"ephemera_ports_preserved_total", "counter", "ports_preserved", {},
         "Mappings that kept the inside source port (nat.port_preservation)."},
        {"ephemera_mapping_events_lost_total", "counter", "events_lost", {},
         "Mapping log events dropped because the log ring was full."},
        {"ephemera_mapping_log_events_total", "counter", "log.events", {},
         "Mapping events taken off the workers' rings by the mapping log."},
        {"ephemera_ipfix_messages_total", "counter", "log.ipfix_messages", {}, "IPFIX messages sent to the collector."},
        {"ephemera_mapping_log_errors_total", "counter", "log.errors", {"sink"},
         "Mapping log output that failed: IPFIX messages the kernel refused (collector unreachable), "
         "failed writes to the log file (disk full)."},
        {"ephemera_nic_missed_total", "counter", "nic.missed", {"port"},
         "Packets the port dropped before a worker took them (RX ring full)."},
        {"ephemera_nic_rx_errors_total", "counter", "nic.rx_errors", {"port"}, "Erroneous packets received (port)."},
        {"ephemera_nic_tx_errors_total", "counter", "nic.tx_errors", {"port"}, "Failed transmissions (port)."},
        {"ephemera_nic_rx_no_mbuf_total", "counter", "nic.rx_no_mbuf", {"port"},
         "Receive failures for want of an mbuf (port)."},
        {"ephemera_handoff_total", "counter", "handoff", {"direction"},
         "Packets handed off to the worker owning their flow, by direction."},
        {"ephemera_handoff_full_drops_total", "counter", "handoff_full", {"direction"},
         "Packets dropped because the owning worker's handoff ring was full, by direction."},
        {"ephemera_handoff_index_total", "counter", "handoff_index", {"result"},
         "Inbound handoffs by what became of the mapping index they carried: used, or stale (looked up again)."},
        {"ephemera_hairpinned_total", "counter", "hairpinned", {},
         "Packets from the inside to a pool address, sent back to the inside."},
        {"ephemera_arp_replies_total", "counter", "arp_replies", {}, "ARP replies sent."},
        {"ephemera_arp_ignored_total", "counter", "arp_ignored", {},
         "ARP frames not answered: replies, requests for other addresses, malformed."},
        {"ephemera_arp_requests_sent_total", "counter", "arp_requests_sent", {}, "ARP requests sent for the next hop."},
        {"ephemera_echo_replies_total", "counter", "echo_replies", {},
         "ICMP echo replies sent for the gateway's addresses."},
        {"ephemera_time_exceeded_sent_total", "counter", "time_exceeded_sent", {}, "ICMP time exceeded messages sent."},
        {"ephemera_prohibited_sent_total", "counter", "prohibited_sent", {},
         "ICMP 3/13 sent for new flows refused a mapping (subscriber limit, ports exhausted, table full)."},
        {"ephemera_frag_needed_sent_total", "counter", "frag_needed_sent", {},
         "ICMP 3/4 (fragmentation needed, with the next-hop MTU) sent for packets too big with DF set."},
        {"ephemera_too_big_total", "counter", "too_big", {},
         "Packets dropped because they were bigger than the next link's MTU and carried DF."},
        {"ephemera_fragmented_total", "counter", "fragmented", {},
         "Packets bigger than the next link's MTU without DF, sent as fragments."},
        {"ephemera_fragments_sent_total", "counter", "fragments_sent", {}, "Fragments those packets became."},
        {"ephemera_fragment_failed_total", "counter", "fragment_failed", {},
         "Packets or fragments dropped because fragmenting them failed (out of mbufs)."},
        {"ephemera_fragments_received_total", "counter", "fragments_received", {},
         "IPv4 fragments received and given to reassembly."},
        {"ephemera_reassembled_total", "counter", "reassembled", {}, "Datagrams reassembled from fragments."},
        {"ephemera_reassembly_dropped_total", "counter", "reassembly_dropped", {},
         "Fragments dropped by reassembly: timed out, no room in the table, or inconsistent."},
        {"ephemera_untranslated_total", "counter", "untranslated", {"direction"},
         "Packets routed without translation to or from excluded destinations (nat.exclude), by direction."},
        {"ephemera_untranslated_dropped_total", "counter", "untranslated_dropped", {},
         "Packets for excluded destinations (nat.exclude) dropped: TTL, no next hop, inside host's MAC unknown."},
        {"ephemera_mss_clamped_total", "counter", "mss_clamped", {},
         "TCP SYNs whose MSS option was lowered to fit the links (dataplane.mss_clamp)."},
        {"ephemera_unsolicited_syns_total", "counter", "unsolicited_syn", {"result"},
         "Unsolicited inbound TCP SYNs (RFC 5382 REQ-4) by outcome: held for 6 s, not held (hold full), "
         "superseded (the inside opened the connection meanwhile), answered with ICMP 3/3."},
        {"ephemera_pcp_requests_total", "counter", "pcp", {"outcome"},
         "PCP requests (RFC 6887): answered (errors included), answered with an error, dropped unanswered."},
        {"ephemera_icmp_rate_limited_total", "counter", "icmp_rate_limited", {},
         "ICMP errors not sent because of the rate limit."},
        {"ephemera_no_next_hop_total", "counter", "no_next_hop", {},
         "Outbound packets dropped because the next hop's MAC address was not known yet."},
        {"ephemera_not_for_us_total", "counter", "not_for_us", {},
         "Outside packets dropped because they were for no pool or gateway address."},
        {"ephemera_local_dropped_total", "counter", "local_dropped", {},
         "Packets to a gateway address dropped (not an ARP or echo request)."},
        {"ephemera_workers", "gauge", "workers", {}, "Worker lcores translating."},
    };
    return table;
}

void append_help(std::string& out, const char* text)
{
    for (const char* p = text; *p; ++p) {
        if (*p == '\\') out += "\\\\";
        else if (*p == '\n') out += "\\n";
        else out += *p;
    }
}

void append_label_value(std::string& out, const std::string& v)
{
    for (char c : v) {
        if (c == '\\') out += "\\\\";
        else if (c == '"') out += "\\\"";
        else if (c == '\n') out += "\\n";
        else out += c;
    }
}

// The sample value of a JSON number; false for anything else.
bool format_value(const nlohmann::json& v, std::string& out)
{
    if (v.is_number_unsigned()) {
        out = std::to_string(v.get<uint64_t>());
    } else if (v.is_number_integer()) {
        out = std::to_string(v.get<int64_t>());
    } else if (v.is_number_float()) {
        const double d = v.get<double>();
        if (std::isnan(d)) {
            out = "NaN";
        } else if (std::isinf(d)) {
            out = d > 0 ? "+Inf" : "-Inf";
        } else {
            char buf[64];
            auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d);
            if (ec != std::errc{}) return false;
            out.assign(buf, end);
        }
    } else {
        return false;
    }
    return true;
}

using Labels = std::vector<std::pair<std::string, std::string>>;

void append_sample(std::string& out, const char* name, const Labels& labels, const std::string& value)
{
    out += name;
    if (!labels.empty()) {
        out += '{';
        for (size_t i = 0; i < labels.size(); ++i) {
            if (i) out += ',';
            out += labels[i].first;
            out += "=\"";
            append_label_value(out, labels[i].second);
            out += '"';
        }
        out += '}';
    }
    out += ' ';
    out += value;
    out += '\n';
}

void collect(const Family& f, const nlohmann::json& v, Labels& labels, std::string& samples)
{
    std::string value;
    if (format_value(v, value)) {
        append_sample(samples, f.name, labels, value);
    } else if (v.is_object() && labels.size() < f.labels.size()) {
        for (const auto& [key, child] : v.items()) {
            labels.emplace_back(f.labels[labels.size()], key);
            collect(f, child, labels, samples);
            labels.pop_back();
        }
    }
}

void append_family(std::string& out, const char* name, const char* type, const char* help, const std::string& samples)
{
    if (samples.empty()) return;
    out += "# HELP ";
    out += name;
    out += ' ';
    append_help(out, help);
    out += "\n# TYPE ";
    out += name;
    out += ' ';
    out += type;
    out += '\n';
    out += samples;
}

// stats["a"]["b"] for the key "a.b"; null where a step is missing.
const nlohmann::json* at_path(const nlohmann::json& stats, std::string_view key)
{
    const nlohmann::json* v = &stats;
    while (v->is_object()) {
        const size_t dot = key.find('.');
        const auto it = v->find(std::string(key.substr(0, dot)));
        if (it == v->end()) return nullptr;
        v = &*it;
        if (dot == std::string_view::npos) return v;
        key.remove_prefix(dot + 1);
    }
    return nullptr;
}

// A label value from a JSON string or integer; false for anything else.
bool label_text(const nlohmann::json& v, std::string& out)
{
    if (v.is_string()) {
        out = v.get<std::string>();
        return true;
    }
    if (v.is_number_unsigned() || v.is_number_integer()) return format_value(v, out);
    return false;
}

std::string pool_ports_samples(const nlohmann::json& ports)
{
    if (!ports.is_array()) return {};
    static constexpr const char* kStates[] = {"free", "quarantined", "in_use"};
    // Entries with the same labels are summed (Prometheus refuses a series
    // twice); exactly while every part is an unsigned integer.
    struct Sum {
        uint64_t exact = 0;
        double other = 0;
        bool inexact = false;
    };
    // (pool, protocol, worker, state) -> sum, ordered for a stable output.
    std::map<std::tuple<std::string, std::string, std::string, unsigned>, Sum> sums;
    for (const auto& e : ports) {
        if (!e.is_object()) continue;
        std::string pool, protocol, worker;
        const auto p = e.find("pool"), pr = e.find("protocol"), w = e.find("worker");
        if (p == e.end() || pr == e.end() || w == e.end()) continue;
        if (!label_text(*p, pool) || !label_text(*pr, protocol) || !label_text(*w, worker)) continue;
        for (unsigned s = 0; s < 3; ++s) {
            const auto v = e.find(kStates[s]);
            if (v == e.end() || !v->is_number()) continue;
            Sum& sum = sums[std::make_tuple(pool, protocol, worker, s)];
            if (v->is_number_unsigned()) {
                sum.exact += v->get<uint64_t>();
            } else {
                sum.other += v->get<double>();
                sum.inexact = true;
            }
        }
    }
    std::string samples, value;
    for (const auto& [k, sum] : sums) {
        const auto& [pool, protocol, worker, s] = k;
        if (sum.inexact) format_value(nlohmann::json(double(sum.exact) + sum.other), value);
        else value = std::to_string(sum.exact);
        append_sample(samples, "ephemera_pool_ports",
                      {{"pool", pool}, {"protocol", protocol}, {"worker", worker}, {"state", kStates[s]}}, value);
    }
    return samples;
}

} // namespace

std::string prometheus_text(const nlohmann::json& stats, const nlohmann::json& ports)
{
    std::string out;
    out.reserve(8192);
    if (stats.is_object()) {
        for (const Family& f : families()) {
            const nlohmann::json* v = at_path(stats, f.key);
            if (v == nullptr) continue;
            std::string samples;
            Labels labels;
            collect(f, *v, labels, samples);
            append_family(out, f.name, f.type, f.help, samples);
        }
    }
    append_family(out, "ephemera_pool_ports", "gauge",
                  "Ports of each pool address, protocol and worker partition, by state.", pool_ports_samples(ports));
    return out;
}

nlohmann::json pool_ports(const Translator& t)
{
    nlohmann::json out = nlohmann::json::array();
    const Pool& pool = t.pool();
    for (unsigned i = 0; i < pool.size(); ++i) {
        const std::string addr = format_ipv4(ntohl(pool.addr(i)));
        for (unsigned l4 = 0; l4 < kL4Count; ++l4) {
            const PortPartition& part = t.partition(i, L4(l4));
            // Read while the worker may be changing them: keep free +
            // quarantined + in use == size, as it is for the worker.
            const uint32_t size = part.size();
            const uint32_t free = std::min(part.free_count(), size);
            const uint32_t quarantined = std::min(part.quarantined_count(), size - free);
            out.push_back({{"pool", addr},
                           {"protocol", to_string(L4(l4))},
                           {"worker", t.worker()},
                           {"free", free},
                           {"quarantined", quarantined},
                           {"in_use", size - free - quarantined}});
        }
    }
    return out;
}

// ---------------------------------------------------------------------------
// HTTP server
// ---------------------------------------------------------------------------

namespace {

constexpr size_t kMaxRequestHead = 8192;
constexpr int kReadTimeoutMs = 5000;
constexpr int kWriteTimeoutMs = 10000;
constexpr int kLingerMs = 200;          // reading what the client still sends after our answer
constexpr size_t kMaxLingerBytes = 1 << 20;
constexpr int kAcceptBackoffMs = 100;   // after EMFILE and the like
constexpr size_t kMaxClients = 8;       // served at once
constexpr std::chrono::milliseconds kSilentGrace{1000}; // to send the request before a newcomer may end it

using Clock = std::chrono::steady_clock;

[[noreturn]] void listen_error(const std::string& listen, const std::string& why)
{
    throw std::runtime_error("metrics.listen = \"" + listen + "\": " + why);
}

int remaining_ms(Clock::time_point deadline)
{
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    return left <= 0 ? 0 : int(std::min<long long>(left, 60000));
}

// Waits until fd has `events` or the deadline passes or the server is
// stopping. Returns 1 ready, 0 timed out, -1 stop (or a poll failure).
int wait_for(int fd, short events, int wake_fd, Clock::time_point deadline)
{
    for (;;) {
        pollfd p[2] = {{fd, events, 0}, {wake_fd, POLLIN, 0}};
        const int n = ::poll(p, 2, remaining_ms(deadline));
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (p[1].revents) return -1;
        if (n == 0) return 0;
        return 1; // ready, or an error/hangup that the next recv/send reports
    }
}

bool send_all(int fd, const std::string& data, int wake_fd)
{
    const auto deadline = Clock::now() + std::chrono::milliseconds(kWriteTimeoutMs);
    size_t done = 0;
    while (done < data.size()) {
        const ssize_t n = ::send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            done += size_t(n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (wait_for(fd, POLLOUT, wake_fd, deadline) != 1) return false;
            continue;
        }
        return false; // EPIPE, ECONNRESET, ...
    }
    return true;
}

std::string http_date()
{
    const std::time_t t = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[64];
    const size_t n = std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    return std::string(buf, n);
}

std::string response(int status, const char* reason, const char* content_type, const std::string& body,
                     bool head_only, const char* extra_headers = "")
{
    std::string r = "HTTP/1.1 " + std::to_string(status) + " " + reason + "\r\n";
    r += "Date: " + http_date() + "\r\n";
    r += "Server: ephemera\r\n";
    r += std::string("Content-Type: ") + content_type + "\r\n";
    r += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    r += extra_headers;
    r += "Connection: close\r\n\r\n";
    if (!head_only) r += body;
    return r;
}

std::string error_response(int status, const char* reason, bool head_only = false, const char* extra = "")
{
    return response(status, reason, "text/plain; charset=utf-8", std::string(reason) + "\n", head_only, extra);
}

bool is_token_char(char c)
{
    // RFC 9110 tchar
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    return std::strchr("!#$%&'*+-.^_`|~", c) != nullptr && c != '\0';
}

} // namespace

MetricsServer::MetricsServer(const std::string& listen, std::function<std::string()> render)
    : render_(std::move(render))
{
    const auto colon = listen.rfind(':');
    if (colon == std::string::npos) listen_error(listen, "expected ADDR:PORT, e.g. \"127.0.0.1:9469\"");
    const std::string host = listen.substr(0, colon), port_text = listen.substr(colon + 1);
    unsigned port = 0;
    auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (port_text.empty() || ec != std::errc{} || end != port_text.data() + port_text.size() || port > 65535)
        listen_error(listen, "expected ADDR:PORT with PORT 0-65535");
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(uint16_t(port));
    if (::inet_pton(AF_INET, host.c_str(), &sa.sin_addr) != 1)
        listen_error(listen, "\"" + host + "\" is not an IPv4 address");

    auto fail = [&](const std::string& what) {
        const std::string why = what + ": " + std::strerror(errno);
        if (listen_fd_ >= 0) ::close(listen_fd_);
        for (int& fd : wake_)
            if (fd >= 0) ::close(fd);
        listen_error(listen, why);
    };
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (listen_fd_ < 0) fail("socket");
    const int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(listen_fd_, reinterpret_cast<const sockaddr*>(&sa), sizeof sa) != 0) fail("cannot bind");
    if (::listen(listen_fd_, 16) != 0) fail("cannot listen");
    sockaddr_in bound{};
    socklen_t len = sizeof bound;
    if (::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&bound), &len) != 0) fail("getsockname");
    port_ = ntohs(bound.sin_port);
    if (::pipe2(wake_, O_CLOEXEC | O_NONBLOCK) != 0) fail("pipe");

    // Signals (SIGINT, SIGTERM) stay with the daemon's other threads: the
    // server thread starts with all of them blocked.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    try {
        thread_ = std::thread([this] { run(); });
    } catch (const std::system_error& e) {
        pthread_sigmask(SIG_SETMASK, &old, nullptr);
        ::close(listen_fd_);
        ::close(wake_[0]);
        ::close(wake_[1]);
        listen_error(listen, std::string("cannot start the server thread: ") + e.what());
    }
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

MetricsServer::~MetricsServer()
{
    const char b = 1;
    while (::write(wake_[1], &b, 1) < 0 && errno == EINTR) {
    }
    if (thread_.joinable()) thread_.join(); // run() joins the clients' threads before it returns
    ::close(listen_fd_);
    ::close(wake_[0]);
    ::close(wake_[1]);
}

// Joins the clients that are done (all: every client, after the wake-up).
void MetricsServer::reap(bool all)
{
    for (auto it = clients_.begin(); it != clients_.end();) {
        if (all || (*it)->done.load(std::memory_order_acquire)) {
            (*it)->thread.join();
            ::close((*it)->fd);
            it = clients_.erase(it);
        } else {
            ++it;
        }
    }
}

// With kMaxClients served, frees a place. A client that has not sent its
// request a second after it connected is not a scraper (those send it at
// once): the oldest such is ended, which wakes its thread at once. Otherwise
// one of them finishes soon (answers go out within the write timeout, and a
// silent client passes its second): look again every 10 ms.
bool MetricsServer::make_room()
{
    for (;;) {
        reap(false);
        if (clients_.size() < kMaxClients) return true;
        const auto now = Clock::now();
        for (auto it = clients_.begin(); it != clients_.end(); ++it) {
            Client& c = **it;
            if (c.reading.load(std::memory_order_acquire) && now - c.since >= kSilentGrace) {
                ::shutdown(c.fd, SHUT_RDWR);
                c.thread.join();
                ::close(c.fd);
                clients_.erase(it);
                return true;
            }
        }
        pollfd w{wake_[0], POLLIN, 0};
        if (::poll(&w, 1, 10) > 0) return false;
    }
}

void MetricsServer::run()
{
    struct JoinAll {
        MetricsServer& s;
        ~JoinAll() { s.reap(true); } // the wake-up pipe ends every client's waits
    } join_all{*this};
    for (;;) {
        pollfd p[2] = {{listen_fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
        // While clients are served, look again now and then to join those done.
        const int n = ::poll(p, 2, clients_.empty() ? -1 : 100);
        if (n < 0) {
            if (errno == EINTR) continue;
            return;
        }
        if (p[1].revents) return;
        reap(false);
        if (!(p[0].revents & POLLIN)) continue;
        const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED) continue;
            // EMFILE, ENFILE, ENOBUFS, ENOMEM, ...: the listening socket stays
            // readable, so back off instead of spinning.
            pollfd w{wake_[0], POLLIN, 0};
            if (::poll(&w, 1, kAcceptBackoffMs) > 0) return;
            continue;
        }
        if (clients_.size() == kMaxClients && !make_room()) {
            ::close(fd);
            return;
        }
        auto c = std::make_unique<Client>();
        c->fd = fd;
        c->since = Clock::now();
        Client* raw = c.get();
        try {
            c->thread = std::thread([this, raw] {
                serve(raw->fd, raw->reading);
                raw->done.store(true, std::memory_order_release);
            });
        } catch (const std::system_error&) {
            ::close(fd); // no thread to be had: this client goes unanswered
            continue;
        }
        clients_.push_back(std::move(c));
    }
}

void MetricsServer::serve(int fd, std::atomic<bool>& reading)
{
    const int wake = wake_[0];
    // Read the request head: up to an empty line, at most kMaxRequestHead bytes.
    std::string req;
    const auto read_deadline = Clock::now() + std::chrono::milliseconds(kReadTimeoutMs);
    size_t head_end = std::string::npos;
    bool eof = false;
    std::string answer;
    for (;;) {
        size_t crlf = req.find("\r\n\r\n"), lf = req.find("\n\n");
        if (crlf != std::string::npos || lf != std::string::npos) {
            head_end = std::min(crlf, lf);
            break;
        }
        if (req.size() >= kMaxRequestHead) {
            answer = error_response(431, "Request Header Fields Too Large");
            break;
        }
        if (eof) break;
        char buf[2048];
        const ssize_t n = ::recv(fd, buf, std::min(sizeof buf, kMaxRequestHead - req.size()), MSG_DONTWAIT);
        if (n > 0) {
            req.append(buf, size_t(n));
            continue;
        }
        if (n == 0) {
            if (req.empty()) return; // connected and closed: nothing to answer
            eof = true;              // half-closed after an incomplete head: answer 400
            continue;
        }
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) return;
        const int w = wait_for(fd, POLLIN, wake, read_deadline);
        if (w < 0) return;
        if (w == 0) {
            if (req.empty()) return;
            answer = error_response(408, "Request Timeout");
            break;
        }
    }

    reading.store(false, std::memory_order_release); // from here on it is being answered
    if (answer.empty() && head_end == std::string::npos) answer = error_response(400, "Bad Request");
    if (answer.empty()) {
        // Request line: METHOD SP TARGET SP HTTP/1.x
        const size_t eol = req.find('\n');
        std::string line = req.substr(0, eol);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        const size_t s1 = line.find(' ');
        const size_t s2 = s1 == std::string::npos ? s1 : line.find(' ', s1 + 1);
        bool ok = s1 != std::string::npos && s2 != std::string::npos && s1 > 0 && s2 > s1 + 1 &&
                  line.find(' ', s2 + 1) == std::string::npos;
        std::string method, target, version;
        if (ok) {
            method = line.substr(0, s1);
            target = line.substr(s1 + 1, s2 - s1 - 1);
            version = line.substr(s2 + 1);
            ok = std::all_of(method.begin(), method.end(), is_token_char) &&
                 (version == "HTTP/1.1" || version == "HTTP/1.0") && target[0] == '/' &&
                 std::none_of(target.begin(), target.end(),
                              [](char c) { return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f; });
        }
        if (!ok) {
            answer = error_response(400, "Bad Request");
        } else if (method != "GET" && method != "HEAD") {
            answer = error_response(405, "Method Not Allowed", false, "Allow: GET, HEAD\r\n");
        } else {
            const bool head = method == "HEAD";
            const std::string path = target.substr(0, target.find('?'));
            if (path != "/metrics") {
                answer = error_response(404, "Not Found", head);
            } else {
                try {
                    std::string text;
                    {
                        const std::lock_guard<std::mutex> lock(render_mutex_);
                        text = render_();
                    }
                    answer = response(200, "OK", "text/plain; version=0.0.4; charset=utf-8", text, head);
                } catch (...) {
                    answer = error_response(500, "Internal Server Error", head);
                }
            }
        }
    }

    if (!send_all(fd, answer, wake)) return;
    // Close gracefully: stop sending, then read (and drop) what the client
    // still sends for a moment, so that unread data does not turn our close
    // into a reset that could destroy the answer before the client reads it.
    ::shutdown(fd, SHUT_WR);
    const auto linger_deadline = Clock::now() + std::chrono::milliseconds(kLingerMs);
    size_t drained = 0;
    while (drained < kMaxLingerBytes) {
        char buf[4096];
        const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) {
            drained += size_t(n);
            continue;
        }
        if (n == 0) return;
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) return;
        if (wait_for(fd, POLLIN, wake, linger_deadline) != 1) return;
    }
}

} // namespace ephemera
