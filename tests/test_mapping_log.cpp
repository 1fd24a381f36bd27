// The CGNAT mapping log (RFC 6888 REQ-12, RFC 8158): the text lines, the
// IPFIX messages (decoded here by the test's own decoder, against a UDP
// collector on 127.0.0.1), and the who-held query over the text file.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../control/ipfix.hpp"
#include "../control/mapping_log.hpp"
#include "ephemera/flow_key.hpp"

using namespace ephemera;

namespace {

uint32_t ip(const char* text)
{
    in_addr a{};
    EXPECT_EQ(inet_pton(AF_INET, text, &a), 1) << text;
    return ntohl(a.s_addr);
}

MappingEvent event(uint64_t t, MappingEventType type, L4 l4, const char* in, uint16_t in_port, const char* ext,
                   uint16_t ext_port, uint16_t worker = 0)
{
    MappingEvent e{};
    e.time_ms = t;
    e.in_addr = htonl(ip(in));
    e.ext_addr = htonl(ip(ext));
    e.in_port = htons(in_port);
    e.ext_port = htons(ext_port);
    e.l4 = uint8_t(l4);
    e.type = uint8_t(type);
    e.worker = worker;
    return e;
}

// A port-block event as mapping_event.hpp has it: in_port carries the last
// port, ext_port the first, l4 0.
MappingEvent block_event(uint64_t t, MappingEventType type, const char* subscriber, const char* pool, uint16_t first,
                         uint16_t last, uint16_t worker = 0)
{
    MappingEvent e{};
    e.time_ms = t;
    e.in_addr = htonl(ip(subscriber));
    e.ext_addr = htonl(ip(pool));
    e.in_port = htons(last);
    e.ext_port = htons(first);
    e.l4 = 0;
    e.type = uint8_t(type);
    e.worker = worker;
    return e;
}

uint64_t wall_ms()
{
    return uint64_t(
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count());
}

// A scratch directory per test, removed with its files.
class TempDir {
public:
    TempDir()
    {
        char tmpl[] = "/tmp/ephemera-maplog-XXXXXX";
        path_ = mkdtemp(tmpl);
    }
    ~TempDir() { std::filesystem::remove_all(path_); }
    std::string file(const std::string& name) const { return path_ + "/" + name; }

private:
    std::string path_;
};

std::vector<std::string> read_lines(const std::string& path)
{
    std::ifstream in(path);
    std::vector<std::string> lines;
    for (std::string l; std::getline(in, l);) lines.push_back(l);
    return lines;
}

std::vector<std::string> fields(const std::string& line)
{
    std::istringstream in(line);
    std::vector<std::string> out;
    for (std::string f; in >> f;) out.push_back(f);
    return out;
}

// The lines about mappings (not the daemon's start/stop lines, nor blocks).
std::vector<std::string> event_lines(const std::string& path)
{
    std::vector<std::string> out;
    for (const std::string& l : read_lines(path)) {
        const auto f = fields(l);
        if (f.size() > 2 && (f[2] == "create" || f[2] == "delete")) out.push_back(l);
    }
    return out;
}

// The lines about port blocks.
std::vector<std::string> block_lines(const std::string& path)
{
    std::vector<std::string> out;
    for (const std::string& l : read_lines(path)) {
        const auto f = fields(l);
        if (f.size() > 2 && (f[2] == "block-alloc" || f[2] == "block-free")) out.push_back(l);
    }
    return out;
}

// ---------------------------------------------------------------------------
// The test's own IPFIX decoder (RFC 7011), independent of control/ipfix.cpp.

struct Decoded {
    uint16_t version = 0, length = 0;
    uint32_t export_time = 0, sequence = 0, domain = 0;
    bool has_template = false;
    std::vector<std::pair<uint16_t, uint16_t>> template_fields; // (IE, length) of template 256 in this message
    std::map<uint16_t, std::vector<std::pair<uint16_t, uint16_t>>> templates; // id -> fields, in this message
    std::vector<std::map<uint16_t, uint64_t>> records;           // IE -> value, every data record in order
    std::vector<uint16_t> record_templates;                      // the template of each of records
    std::vector<uint16_t> data_sets;                             // the set ids of the data sets, in order
    std::string error;                                           // "" when well formed

    // The records of one template, in order.
    std::vector<std::map<uint16_t, uint64_t>> records_of(uint16_t template_id) const
    {
        std::vector<std::map<uint16_t, uint64_t>> out;
        for (size_t i = 0; i < records.size(); ++i)
            if (record_templates[i] == template_id) out.push_back(records[i]);
        return out;
    }
};

uint64_t be(const uint8_t* p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v = v << 8 | p[i];
    return v;
}

class Decoder {
public:
    Decoded decode(const std::vector<uint8_t>& m)
    {
        Decoded d;
        if (m.size() < 16) return d.error = "short header", d;
        d.version = uint16_t(be(&m[0], 2));
        d.length = uint16_t(be(&m[2], 2));
        d.export_time = uint32_t(be(&m[4], 4));
        d.sequence = uint32_t(be(&m[8], 4));
        d.domain = uint32_t(be(&m[12], 4));
        if (d.length != m.size()) return d.error = "length field != datagram size", d;
        size_t at = 16;
        while (at < m.size()) {
            if (m.size() - at < 4) return d.error = "truncated set header", d;
            const uint16_t set_id = uint16_t(be(&m[at], 2)), set_len = uint16_t(be(&m[at + 2], 2));
            if (set_len < 4 || at + set_len > m.size()) return d.error = "bad set length", d;
            const size_t end = at + set_len;
            size_t p = at + 4;
            if (set_id == 2) { // template set
                while (end - p >= 4) {
                    const uint16_t tid = uint16_t(be(&m[p], 2)), count = uint16_t(be(&m[p + 2], 2));
                    p += 4;
                    std::vector<std::pair<uint16_t, uint16_t>> f;
                    for (unsigned i = 0; i < count; ++i, p += 4) {
                        if (end - p < 4) return d.error = "truncated template", d;
                        const uint16_t id = uint16_t(be(&m[p], 2)), len = uint16_t(be(&m[p + 2], 2));
                        if (id & 0x8000) return d.error = "enterprise element", d;
                        f.emplace_back(id, len);
                    }
                    templates_[{d.domain, tid}] = f;
                    d.has_template = true;
                    d.templates[tid] = f;
                    if (tid == 256) d.template_fields = f;
                }
            } else if (set_id >= 256) { // data set
                auto t = templates_.find({d.domain, set_id});
                if (t == templates_.end()) return d.error = "data set before its template", d;
                d.data_sets.push_back(set_id);
                size_t rec_len = 0;
                for (auto& [id, len] : t->second) rec_len += len;
                while (end - p >= rec_len && rec_len > 0) {
                    std::map<uint16_t, uint64_t> r;
                    for (auto& [id, len] : t->second) {
                        r[id] = be(&m[p], len);
                        p += len;
                    }
                    d.records.push_back(r);
                    d.record_templates.push_back(set_id);
                }
                if (end - p >= 4) return d.error = "leftover bytes in data set", d;
            } else {
                return d.error = "unexpected set id " + std::to_string(set_id), d;
            }
            at = end;
        }
        return d;
    }

private:
    std::map<std::pair<uint32_t, uint16_t>, std::vector<std::pair<uint16_t, uint16_t>>> templates_;
};

// A UDP collector on 127.0.0.1, ephemeral port.
class Collector {
public:
    explicit Collector(uint16_t port = 0) // 0: any free port
    {
        fd_ = socket(AF_INET, SOCK_DGRAM, 0);
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sa.sin_port = htons(port);
        EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
        socklen_t len = sizeof sa;
        getsockname(fd_, reinterpret_cast<sockaddr*>(&sa), &len);
        port_ = ntohs(sa.sin_port);
        const int big = 8 << 20;
        setsockopt(fd_, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big); // as root; else the default
    }
    ~Collector() { close(fd_); }
    std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
    uint16_t port() const { return port_; }

    // Every datagram waiting now, plus those arriving within wait_ms of the
    // last; or just the first `expect` of them.
    std::vector<std::vector<uint8_t>> receive(int wait_ms = 200, size_t expect = 0)
    {
        std::vector<std::vector<uint8_t>> out;
        while (expect == 0 || out.size() < expect) {
            pollfd p{fd_, POLLIN, 0};
            if (poll(&p, 1, wait_ms) <= 0) break;
            std::vector<uint8_t> buf(65536);
            const ssize_t n = recv(fd_, buf.data(), buf.size(), 0);
            if (n < 0) break;
            buf.resize(size_t(n));
            out.push_back(std::move(buf));
            wait_ms = 50;
        }
        return out;
    }

private:
    int fd_ = -1;
    uint16_t port_ = 0;
};

MappingLogConfig ipfix_config(const Collector& c, uint32_t domain = 1)
{
    MappingLogConfig cfg;
    cfg.ipfix_collector = c.address();
    cfg.ipfix_domain = domain;
    return cfg;
}

// Writes these lines as the text log would (format_mapping_event), plus raw
// lines, into path.
void write_log(const std::string& path, const std::vector<MappingEvent>& events,
               const std::vector<std::string>& raw_after = {})
{
    std::ofstream out(path);
    for (const MappingEvent& e : events) out << format_mapping_event(e) << "\n";
    for (const std::string& l : raw_after) out << l << "\n";
}

constexpr auto C = MappingEventType::Create;
constexpr auto D = MappingEventType::Delete;

// ---------------------------------------------------------------------------
// Text log

TEST(MappingLogText, LineFormatParsesBack)
{
    TempDir dir;
    MappingLogConfig cfg;
    cfg.file = dir.file("map.log");
    {
        MappingLog log(cfg);
        log.start();
        log.record(event(1763742600123, C, L4::Udp, "100.64.0.2", 40001, "198.51.100.11", 60966, 0));
        log.record(event(1763742912007, D, L4::Icmp, "100.64.0.3", 7, "198.51.100.12", 50000, 3));
        log.flush();
        EXPECT_EQ(log.events(), 2u);
        const auto lines = event_lines(cfg.file); // visible after flush(), before the destructor
        ASSERT_EQ(lines.size(), 2u);
        EXPECT_EQ(lines[0], "2025-11-21T16:30:00.123Z 1763742600123 create udp inside=100.64.0.2:40001 "
                            "external=198.51.100.11:60966 worker=0");

        // Parse the second line back, field by field.
        const auto f = fields(lines[1]);
        ASSERT_EQ(f.size(), 7u);
        tm t{};
        const char* rest = strptime(f[0].c_str(), "%Y-%m-%dT%H:%M:%S", &t);
        ASSERT_NE(rest, nullptr);
        EXPECT_STREQ(rest, ".007Z");
        EXPECT_EQ(uint64_t(timegm(&t)) * 1000 + 7, 1763742912007u);
        EXPECT_EQ(std::stoull(f[1]), 1763742912007u);
        EXPECT_EQ(f[2], "delete");
        EXPECT_EQ(f[3], "icmp");
        EXPECT_EQ(f[4], "inside=100.64.0.3:7");
        EXPECT_EQ(f[5], "external=198.51.100.12:50000");
        EXPECT_EQ(f[6], "worker=3");
    }
    // start and stop lines around them; a second run appends.
    {
        MappingLog again(cfg);
        again.start();
    }
    { MappingLog never_started(cfg); } // a daemon that failed to start: no line at all
    const auto all = read_lines(cfg.file);
    ASSERT_EQ(all.size(), 6u);
    EXPECT_EQ(fields(all[0])[2], "start");
    EXPECT_EQ(fields(all[3])[2], "stop");
    EXPECT_EQ(fields(all[4])[2], "start");
    EXPECT_EQ(fields(all[5])[2], "stop");
    EXPECT_EQ(fields(all[0])[3], "pid=" + std::to_string(getpid()));
}

// logrotate renames the file and signals the daemon (SIGHUP), which reopens
// the path: what came before stays in the renamed file, what comes after
// goes to a new file at the configured path, nothing is written twice.
TEST(MappingLogText, ReopenAfterARenameWritesToANewFileAtThePath)
{
    TempDir dir;
    MappingLogConfig cfg;
    cfg.file = dir.file("map.log");
    const std::string rotated = dir.file("map.log.1");
    {
        MappingLog log(cfg);
        log.start();
        log.record(event(1763742600123, C, L4::Udp, "100.64.0.2", 40001, "198.51.100.11", 60966, 0));
        log.flush();
        ASSERT_EQ(std::rename(cfg.file.c_str(), rotated.c_str()), 0);
        log.record(event(1763742600200, C, L4::Udp, "100.64.0.3", 40002, "198.51.100.11", 60967, 0));
        log.reopen(); // the line recorded before the reopen still belongs to the old file
        log.record(event(1763742600300, D, L4::Udp, "100.64.0.2", 40001, "198.51.100.11", 60966, 0));
        log.flush();
    }
    const auto old_lines = event_lines(rotated);
    ASSERT_EQ(old_lines.size(), 2u);
    EXPECT_NE(old_lines[0].find("inside=100.64.0.2:40001"), std::string::npos);
    EXPECT_NE(old_lines[1].find("inside=100.64.0.3:40002"), std::string::npos);
    const auto new_lines = event_lines(cfg.file);
    ASSERT_EQ(new_lines.size(), 1u);
    EXPECT_EQ(fields(new_lines[0])[2], "delete");
    EXPECT_EQ(fields(read_lines(cfg.file).back())[2], "stop"); // the stop line goes to the file open at the end
    EXPECT_EQ(fields(read_lines(rotated).front())[2], "start");
}

TEST(MappingLogText, AReopenThatCannotOpenThePathKeepsTheOldFile)
{
    TempDir dir;
    MappingLogConfig cfg;
    cfg.file = dir.file("sub/map.log");
    ASSERT_EQ(::mkdir(dir.file("sub").c_str(), 0755), 0);
    MappingLog log(cfg);
    const std::string rotated = dir.file("map.log.moved");
    ASSERT_EQ(std::rename(cfg.file.c_str(), rotated.c_str()), 0);
    ASSERT_EQ(::rmdir(dir.file("sub").c_str()), 0); // the path can no longer be created
    try {
        log.reopen();
        FAIL() << "reopen should have thrown";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("log.file = \"" + cfg.file + "\""), std::string::npos) << e.what();
    }
    log.record(event(1763742600300, C, L4::Udp, "100.64.0.2", 40001, "198.51.100.11", 60966, 0));
    log.flush();
    EXPECT_EQ(event_lines(rotated).size(), 1u);
    EXPECT_EQ(log.file_errors(), 0u);
}

TEST(MappingLogText, Rfc6888Req12_NoDestinationInLines)
{
    TempDir dir;
    MappingLogConfig cfg;
    cfg.file = dir.file("map.log");
    cfg.destinations = true; // even when asked: the events carry none
    {
        MappingLog log(cfg);
        for (L4 l4 : {L4::Tcp, L4::Udp, L4::Icmp, L4::Sctp}) {
            log.record(event(1000, C, l4, "100.64.0.2", 40001, "198.51.100.11", 60966));
            log.record(event(2000, D, l4, "100.64.0.2", 40001, "198.51.100.11", 60966));
        }
    }
    const auto lines = event_lines(cfg.file);
    ASSERT_EQ(lines.size(), 8u);
    for (const std::string& l : lines) {
        const auto f = fields(l);
        ASSERT_EQ(f.size(), 7u) << l;
        EXPECT_TRUE(f[4].starts_with("inside=")) << l;
        EXPECT_TRUE(f[5].starts_with("external=")) << l;
        EXPECT_TRUE(f[6].starts_with("worker=")) << l;
        // Exactly two addresses on the line: the subscriber's and the pool's.
        size_t dots = 0;
        for (char c : l) dots += c == '.';
        EXPECT_EQ(dots, 3u + 3u + 1u /* .mmm of the time */) << l;
        EXPECT_EQ(l.find("dst"), std::string::npos) << l;
        EXPECT_EQ(l.find("remote"), std::string::npos) << l;
    }
}

constexpr auto BA = MappingEventType::BlockAlloc;
constexpr auto BF = MappingEventType::BlockFree;

TEST(MappingLogText, PortBlockLinesParseBack)
{
    TempDir dir;
    MappingLogConfig cfg;
    cfg.file = dir.file("map.log");
    {
        MappingLog log(cfg);
        log.record(block_event(1763742600123, BA, "100.64.0.2", "198.51.100.3", 50000, 50063, 1));
        log.record(block_event(1763745004500, BF, "100.64.0.2", "198.51.100.3", 50000, 50063, 1));
        log.flush();
        EXPECT_EQ(log.events(), 2u);
    }
    EXPECT_TRUE(event_lines(cfg.file).empty()); // not taken for mapping lines
    const auto lines = block_lines(cfg.file);
    ASSERT_EQ(lines.size(), 2u);
    EXPECT_EQ(lines[0], "2025-11-21T16:30:00.123Z 1763742600123 block-alloc all inside=100.64.0.2 "
                        "external=198.51.100.3:50000-50063 worker=1");

    // Parse the free back, field by field: the same positions as a mapping line.
    const auto f = fields(lines[1]);
    ASSERT_EQ(f.size(), 7u);
    EXPECT_EQ(f[0], "2025-11-21T17:10:04.500Z");
    EXPECT_EQ(std::stoull(f[1]), 1763745004500u);
    EXPECT_EQ(f[2], "block-free");
    EXPECT_EQ(f[3], "all");
    EXPECT_EQ(f[4], "inside=100.64.0.2");
    ASSERT_TRUE(f[5].starts_with("external="));
    const std::string ext = f[5].substr(9);
    const auto colon = ext.rfind(':'), dash = ext.find('-', colon);
    ASSERT_NE(dash, std::string::npos);
    EXPECT_EQ(ip(ext.substr(0, colon).c_str()), ip("198.51.100.3"));
    EXPECT_EQ(std::stoul(ext.substr(colon + 1, dash - colon - 1)), 50000u);
    EXPECT_EQ(std::stoul(ext.substr(dash + 1)), 50063u);
    EXPECT_EQ(f[6], "worker=1");
}

TEST(MappingLogText, Rfc6888Req12_NoDestinationInBlockLines)
{
    TempDir dir;
    MappingLogConfig cfg;
    cfg.file = dir.file("map.log");
    cfg.destinations = true; // even when asked: the events carry none
    {
        MappingLog log(cfg);
        log.record(block_event(1000, BA, "100.64.0.2", "198.51.100.3", 1024, 1087));
        log.record(block_event(2000, BF, "100.64.0.2", "198.51.100.3", 1024, 1087));
    }
    for (const std::string& l : block_lines(cfg.file)) {
        size_t dots = 0;
        for (char c : l) dots += c == '.';
        EXPECT_EQ(dots, 3u + 3u + 1u) << l; // the subscriber, the pool address, the ms of the time
    }
}

TEST(MappingLogText, SyslogFormOfABlockLineHasNoIsoTime)
{
    const std::string line = format_mapping_event(block_event(1000, BA, "100.64.0.2", "198.51.100.3", 1024, 1087), false);
    EXPECT_EQ(line, "1000 block-alloc all inside=100.64.0.2 external=198.51.100.3:1024-1087 worker=0");
}

TEST(MappingLogText, UnwritableFileIsAClearError)
{
    MappingLogConfig cfg;
    cfg.file = "/nonexistent-ephemera-dir/map.log";
    try {
        MappingLog log(cfg);
        FAIL() << "no error";
    } catch (const std::runtime_error& e) {
        EXPECT_EQ(std::string(e.what()),
                  "log.file = \"/nonexistent-ephemera-dir/map.log\": cannot open for appending: No such file or "
                  "directory");
    }
    TempDir dir;
    cfg.file = dir.file(""); // the directory itself
    EXPECT_THROW(MappingLog{cfg}, std::runtime_error);
}

TEST(MappingLogText, NothingConfiguredOnlyCounts)
{
    MappingLog log(MappingLogConfig{});
    EXPECT_FALSE(log.active());
    log.record(event(1000, C, L4::Udp, "100.64.0.2", 40001, "198.51.100.11", 60966));
    log.flush();
    EXPECT_EQ(log.events(), 1u);
    EXPECT_EQ(log.ipfix_messages(), 0u);
}

// ---------------------------------------------------------------------------
// IPFIX

TEST(MappingLogIpfix, Rfc8158_RecordsMatchEvents)
{
    Collector collector;
    const std::vector<MappingEvent> events = {
        event(1763742600123, C, L4::Udp, "100.64.0.2", 40001, "198.51.100.11", 60966, 0),
        event(1763742600124, C, L4::Tcp, "100.64.0.3", 51000, "198.51.100.12", 49152, 1),
        event(1763742600200, D, L4::Icmp, "100.64.0.4", 77, "198.51.100.13", 65535, 2),
        event(1763742600300, D, L4::Sctp, "100.64.0.5", 5000, "198.51.100.14", 50001, 3),
    };
    const uint64_t before = wall_ms() / 1000;
    {
        MappingLog log(ipfix_config(collector, 4242));
        for (const auto& e : events) log.record(e);
        log.flush();
        EXPECT_EQ(log.ipfix_messages(), 1u);
        EXPECT_EQ(log.ipfix_errors(), 0u);
    }
    const uint64_t after = wall_ms() / 1000;
    const auto msgs = collector.receive();
    ASSERT_EQ(msgs.size(), 1u);
    Decoder dec;
    const Decoded d = dec.decode(msgs[0]);
    ASSERT_EQ(d.error, "");
    EXPECT_EQ(d.version, 10);
    EXPECT_EQ(d.length, msgs[0].size());
    EXPECT_EQ(d.domain, 4242u);
    EXPECT_EQ(d.sequence, 0u);
    EXPECT_GE(d.export_time, before);
    EXPECT_LE(d.export_time, after);
    ASSERT_TRUE(d.has_template);
    const std::vector<std::pair<uint16_t, uint16_t>> expect_fields = {
        {323, 8}, {230, 1}, {4, 1}, {8, 4}, {7, 2}, {225, 4}, {227, 2}};
    EXPECT_EQ(d.template_fields, expect_fields);
    // Template id >= 256, and the data set uses it.
    EXPECT_GE(be(&msgs[0][16 + 4], 2), 256u);
    const size_t template_set_len = be(&msgs[0][16 + 2], 2);
    EXPECT_EQ(be(&msgs[0][16 + 4], 2), be(&msgs[0][16 + template_set_len], 2));
    EXPECT_EQ(d.data_sets, (std::vector<uint16_t>{256})); // no empty block set

    ASSERT_EQ(d.records.size(), events.size());
    const uint8_t protos[] = {17, 6, 1, 132};
    for (size_t i = 0; i < events.size(); ++i) {
        auto& r = d.records[i];
        const MappingEvent& e = events[i];
        EXPECT_EQ(r.at(323), e.time_ms);
        EXPECT_EQ(r.at(230), e.type == uint8_t(C) ? 8u : 9u); // NAT44 BIB create / delete (IANA)
        EXPECT_EQ(r.at(4), protos[i]);
        EXPECT_EQ(r.at(8), ntohl(e.in_addr));
        EXPECT_EQ(r.at(7), ntohs(e.in_port));
        EXPECT_EQ(r.at(225), ntohl(e.ext_addr));
        EXPECT_EQ(r.at(227), ntohs(e.ext_port));
        // RFC 6888 REQ-12: no destination elements.
        for (uint16_t dst : {11, 12, 226, 228}) EXPECT_EQ(r.count(dst), 0u);
    }
}

TEST(MappingLogIpfix, Rfc7011_BatchedUnder1400BytesWithSequenceNumbers)
{
    Collector collector;
    const size_t n = 500;
    {
        MappingLog log(ipfix_config(collector, 7));
        for (size_t i = 0; i < n; ++i)
            log.record(event(1000 + i, i % 2 ? D : C, L4::Udp, "100.64.0.2", uint16_t(1024 + i), "198.51.100.11",
                             uint16_t(50000 + i)));
        log.flush();
        EXPECT_EQ(log.ipfix_errors(), 0u);
    }
    const auto msgs = collector.receive();
    ASSERT_GE(msgs.size(), 9u); // 500 records of 22 bytes cannot fit in fewer
    Decoder dec;
    uint32_t expected_seq = 0;
    size_t i = 0;
    for (size_t m = 0; m < msgs.size(); ++m) {
        EXPECT_LE(msgs[m].size(), 1400u);
        const Decoded d = dec.decode(msgs[m]);
        ASSERT_EQ(d.error, "") << "message " << m;
        EXPECT_EQ(d.sequence, expected_seq) << "message " << m; // data records sent before it
        EXPECT_EQ(d.has_template, m == 0) << "message " << m;
        EXPECT_GT(d.records.size(), 0u);
        expected_seq += uint32_t(d.records.size());
        for (const auto& r : d.records) { // all of them, in order
            EXPECT_EQ(r.at(7), 1024 + i);
            EXPECT_EQ(r.at(227), 50000 + i);
            EXPECT_EQ(r.at(323), 1000 + i);
            ++i;
        }
    }
    EXPECT_EQ(i, n);
    // Messages are filled: all but the last carry as many records as fit.
    for (size_t m = 0; m + 1 < msgs.size(); ++m) EXPECT_GT(msgs[m].size(), 1400u - 22) << "message " << m;
    EXPECT_EQ(msgs.size(), 1 + (n - 59 + 62 - 1) / 62); // 59 with the two templates, then 62 each
}

TEST(MappingLogIpfix, Rfc7011_TemplateResentEvery100Messages)
{
    Collector collector;
    ipfix::Exporter exporter(collector.address(), 1);
    Decoder dec;
    std::vector<size_t> with_template;
    const uint64_t now = 1'000'000;
    for (size_t m = 0; m < 205; ++m) {
        exporter.add({now, 8, 17, 1, 2, 3, uint16_t(m)}, now);
        exporter.flush(now); // the clock stands still: only the count can trigger it
        if (m % 20 == 19 || m == 204)
            for (const auto& msg : collector.receive(1000, m % 20 + 1)) {
                const Decoded d = dec.decode(msg);
                ASSERT_EQ(d.error, "");
                ASSERT_EQ(d.records.size(), 1u);
                if (d.has_template) with_template.push_back(d.records[0].at(227));
            }
    }
    EXPECT_TRUE(collector.receive(20).empty()); // no template-only or extra messages
    EXPECT_EQ(exporter.messages(), 205u);
    EXPECT_EQ(with_template, (std::vector<size_t>{0, 100, 200}));
}

TEST(MappingLogIpfix, Rfc7011_TemplateResentAfter60Seconds)
{
    Collector collector;
    ipfix::Exporter exporter(collector.address(), 1);
    Decoder dec;
    const uint64_t t0 = 1'763'742'600'000;
    const std::pair<uint64_t, bool> steps[] = {
        {t0, true}, {t0 + 30'000, false}, {t0 + 59'999, false}, {t0 + 60'000, true}, {t0 + 61'000, false}};
    for (auto [now, expect_template] : steps) {
        exporter.add({now, 8, 6, 1, 2, 3, 4}, now);
        exporter.flush(now);
        const auto msgs = collector.receive(1000, 1);
        ASSERT_EQ(msgs.size(), 1u);
        const Decoded d = dec.decode(msgs[0]);
        ASSERT_EQ(d.error, "");
        EXPECT_EQ(d.has_template, expect_template) << "at +" << (now - t0) << " ms";
        EXPECT_EQ(d.export_time, now / 1000);
    }
}

TEST(MappingLogIpfix, Rfc8158_PortBlockRecordsMatchEvents)
{
    Collector collector;
    const std::vector<MappingEvent> blocks = {
        block_event(1763742600123, BA, "100.64.0.2", "198.51.100.3", 50000, 50063, 0),
        block_event(1763742600200, BA, "100.64.0.3", "198.51.100.4", 1024, 1024, 1), // a block of one port
        block_event(1763742700300, BF, "100.64.0.2", "198.51.100.3", 50000, 50063, 0),
    };
    {
        MappingLog log(ipfix_config(collector, 9));
        log.record(event(1763742600100, C, L4::Udp, "100.64.0.9", 40001, "198.51.100.11", 60966));
        for (const auto& e : blocks) log.record(e);
        log.flush();
        EXPECT_EQ(log.ipfix_messages(), 1u);
    }
    const auto msgs = collector.receive();
    ASSERT_EQ(msgs.size(), 1u);
    Decoder dec;
    const Decoded d = dec.decode(msgs[0]);
    ASSERT_EQ(d.error, "");
    EXPECT_EQ(d.sequence, 0u);
    // RFC 8158 §4.4, NAT44 port block allocation/de-allocation.
    const std::vector<std::pair<uint16_t, uint16_t>> expect_fields = {{323, 8}, {230, 1}, {8, 4},   {225, 4},
                                                                      {361, 2}, {362, 2}, {363, 2}, {364, 2}};
    ASSERT_EQ(d.templates.count(257), 1u);
    EXPECT_EQ(d.templates.at(257), expect_fields);
    EXPECT_EQ(d.data_sets, (std::vector<uint16_t>{256, 257})); // one message, a data set of each

    ASSERT_EQ(d.records_of(256).size(), 1u);
    const auto recs = d.records_of(257);
    ASSERT_EQ(recs.size(), blocks.size());
    for (size_t i = 0; i < blocks.size(); ++i) {
        const auto& r = recs[i];
        const MappingEvent& e = blocks[i];
        const uint16_t first = ntohs(e.ext_port), last = ntohs(e.in_port);
        EXPECT_EQ(r.at(323), e.time_ms);
        EXPECT_EQ(r.at(230), e.type == uint8_t(BA) ? 16u : 17u); // port block allocation / de-allocation
        EXPECT_EQ(r.at(8), ntohl(e.in_addr));
        EXPECT_EQ(r.at(225), ntohl(e.ext_addr));
        EXPECT_EQ(r.at(361), first);
        EXPECT_EQ(r.at(362), last);
        EXPECT_EQ(r.at(363), 1u);
        EXPECT_EQ(r.at(364), last - first + 1u);
        // A block is every protocol's; and RFC 6888 REQ-12: no destination.
        for (uint16_t absent : {4, 7, 227, 11, 12, 226, 228}) EXPECT_EQ(r.count(absent), 0u) << absent;
    }
}

TEST(MappingLogIpfix, Rfc7011_BothTemplatesGoOutTogetherWhenDue)
{
    Collector collector;
    ipfix::Exporter exporter(collector.address(), 1);
    Decoder dec;
    const uint64_t t0 = 1'763'742'600'000;
    // First message; then by count (100 messages, the clock standing still);
    // then by time (60 s). Blocks only: the mapping template must come too.
    std::vector<size_t> with_template;
    for (size_t m = 0; m < 102; ++m) {
        const uint64_t now = m == 101 ? t0 + 60'000 : t0;
        exporter.add_block({now, 16, 1, 2, uint16_t(m + 1), uint16_t(m + 1), 1, 1}, now);
        exporter.flush(now);
        const auto msgs = collector.receive(1000, 1);
        ASSERT_EQ(msgs.size(), 1u) << m;
        const Decoded d = dec.decode(msgs[0]);
        ASSERT_EQ(d.error, "");
        ASSERT_EQ(d.records_of(257).size(), 1u);
        if (!d.has_template) continue;
        with_template.push_back(m);
        EXPECT_EQ(d.templates.size(), 2u) << m;
        EXPECT_EQ(d.templates.count(256) + d.templates.count(257), 2u) << m;
    }
    EXPECT_EQ(with_template, (std::vector<size_t>{0, 100, 101}));
}

TEST(MappingLogIpfix, Rfc7011_MixedMessagesUnder1400BytesWithSequenceNumbers)
{
    Collector collector;
    const size_t n = 400; // every third a block event
    {
        MappingLog log(ipfix_config(collector, 7));
        for (size_t i = 0; i < n; ++i) {
            if (i % 3 == 2)
                log.record(block_event(1000 + i, BA, "100.64.0.2", "198.51.100.3", uint16_t(1024 + i), uint16_t(1087 + i)));
            else
                log.record(event(1000 + i, C, L4::Udp, "100.64.0.2", uint16_t(1024 + i), "198.51.100.11",
                                 uint16_t(50000 + i)));
        }
        log.flush();
        EXPECT_EQ(log.ipfix_errors(), 0u);
    }
    const auto msgs = collector.receive();
    Decoder dec;
    uint32_t expected_seq = 0;
    std::vector<uint64_t> nat_times, block_times;
    for (size_t m = 0; m < msgs.size(); ++m) {
        EXPECT_LE(msgs[m].size(), 1400u) << "message " << m;
        const Decoded d = dec.decode(msgs[m]);
        ASSERT_EQ(d.error, "") << "message " << m;
        EXPECT_EQ(d.sequence, expected_seq) << "message " << m; // data records of both templates before it
        expected_seq += uint32_t(d.records.size());
        for (const auto& r : d.records_of(256)) nat_times.push_back(r.at(323));
        for (const auto& r : d.records_of(257)) {
            block_times.push_back(r.at(323));
            EXPECT_EQ(r.at(362) - r.at(361), 63u);
        }
    }
    // All of them, each kind in order.
    ASSERT_EQ(nat_times.size() + block_times.size(), n);
    for (size_t i = 1; i < nat_times.size(); ++i) EXPECT_LT(nat_times[i - 1], nat_times[i]);
    for (size_t i = 1; i < block_times.size(); ++i) EXPECT_LT(block_times[i - 1], block_times[i]);
    EXPECT_EQ(block_times.size(), n / 3);
}

TEST(MappingLogIpfix, CollectorUnreachableIsCountedNeverFatal)
{
    uint16_t port;
    {
        Collector gone; // bound, then closed: nothing listens on the port
        port = gone.port();
    }
    MappingLogConfig cfg;
    cfg.ipfix_collector = "127.0.0.1:" + std::to_string(port);
    MappingLog log(cfg);
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < 50 && log.ipfix_errors() == 0; ++i) {
        log.record(event(1000 + i, C, L4::Udp, "100.64.0.2", uint16_t(1024 + i), "198.51.100.11", 60966));
        log.flush();
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    EXPECT_GE(log.ipfix_errors(), 1u); // ICMP port unreachable, reported on a later send
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
    log.flush(); // still fine
}

TEST(MappingLogIpfix, Rfc7011_TemplateResentWhenTheCollectorComesBack)
{
    // The template went out while nobody listened; the kernel reports that
    // on a later send. A collector started afterwards cannot decode data
    // without the template, so the next message must carry it again.
    uint16_t port;
    {
        Collector gone;
        port = gone.port();
    }
    ipfix::Exporter exporter("127.0.0.1:" + std::to_string(port), 1);
    const uint64_t now = 1'763'742'600'000;
    for (int i = 0; i < 50 && exporter.send_errors() == 0; ++i) {
        exporter.add({now, 8, 17, 1, 2, 3, uint16_t(i)}, now);
        exporter.flush(now);
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    ASSERT_GE(exporter.send_errors(), 1u);
    Collector back(port);
    exporter.add({now + 1000, 8, 17, 1, 2, 3, 4}, now + 1000); // well inside the 60 s refresh
    exporter.flush(now + 1000);
    const auto msgs = back.receive(1000, 1);
    ASSERT_EQ(msgs.size(), 1u);
    Decoder dec;
    const Decoded d = dec.decode(msgs[0]);
    EXPECT_EQ(d.error, "");
    EXPECT_TRUE(d.has_template) << "a collector that came back got data it cannot decode";
    EXPECT_EQ(d.templates.size(), 2u) << "both templates, for the blocks that come next";
}

TEST(MappingLogIpfix, BadCollectorIsAClearError)
{
    MappingLogConfig cfg;
    cfg.ipfix_collector = "collector.example:4739";
    try {
        MappingLog log(cfg);
        FAIL() << "no error";
    } catch (const std::runtime_error& e) {
        EXPECT_EQ(std::string(e.what()),
                  "log.ipfix_collector = \"collector.example:4739\": \"collector.example\" is not an IPv4 address");
    }
}

// ---------------------------------------------------------------------------
// who_held

const uint32_t kExt = ip("198.51.100.11");
const uint16_t kPort = 60966;

TEST(WhoHeld, HeldAtT)
{
    TempDir dir;
    const std::string path = dir.file("map.log");
    write_log(path, {event(1000, C, L4::Udp, "100.64.0.9", 5000, "198.51.100.11", 1111),
                     event(1500, C, L4::Udp, "100.64.0.2", 40001, "198.51.100.11", kPort)});
    for (uint64_t at : {1500u, 2000u, 99'999'999u}) {
        const auto m = who_held({path}, kExt, kPort, at);
        ASSERT_EQ(m.size(), 1u) << at;
        EXPECT_EQ(m[0].inside_addr, ip("100.64.0.2"));
        EXPECT_EQ(m[0].inside_port, 40001);
        EXPECT_EQ(m[0].protocol, "udp");
        EXPECT_EQ(m[0].from_ms, 1500u);
        EXPECT_EQ(m[0].to_ms, 0u); // still held
    }
    EXPECT_TRUE(who_held({path}, kExt, kPort, 1499).empty()); // not yet
}

// Junk without line ends (a damaged file, a binary one given by mistake) is
// skipped a bounded piece at a time; the lines around it are still read,
// the last one even without its line end.
TEST(WhoHeld, OverlongJunkIsSkippedAndTheLinesAroundItRead)
{
    TempDir dir;
    const std::string path = dir.file("map.log");
    const std::string create = format_mapping_event(event(1000, C, L4::Tcp, "100.64.0.2", 40001, "198.51.100.11", kPort));
    const std::string remove = format_mapping_event(event(2000, D, L4::Tcp, "100.64.0.2", 40001, "198.51.100.11", kPort));
    const std::string again = format_mapping_event(event(3000, C, L4::Udp, "100.64.0.7", 4444, "198.51.100.11", kPort));
    {
        std::ofstream out(path, std::ios::binary);
        out << create << "\n"
            << std::string(1 << 20, '\0') << "\n" // 1 MiB without a line end
            << std::string(4096, 'x') << "\n"     // exactly the longest line kept
            << remove << "\n"
            << again; // no line end at the end of the file
    }
    const auto held = who_held({path}, kExt, kPort, 1500);
    ASSERT_EQ(held.size(), 1u);
    EXPECT_EQ(held[0].to_ms, 2000u); // the delete after the junk was read
    const auto later = who_held({path}, kExt, kPort, 3500);
    ASSERT_EQ(later.size(), 1u);
    EXPECT_EQ(later[0].inside_addr, ip("100.64.0.7"));
}

TEST(WhoHeld, ReleasedBeforeT)
{
    TempDir dir;
    const std::string path = dir.file("map.log");
    write_log(path, {event(1000, C, L4::Tcp, "100.64.0.2", 40001, "198.51.100.11", kPort),
                     event(2000, D, L4::Tcp, "100.64.0.2", 40001, "198.51.100.11", kPort)});
    EXPECT_TRUE(who_held({path}, kExt, kPort, 2500).empty());
    const auto m = who_held({path}, kExt, kPort, 1500);
    ASSERT_EQ(m.size(), 1u);
    EXPECT_EQ(m[0].from_ms, 1000u);
    EXPECT_EQ(m[0].to_ms, 2000u);
}

// A mapping that outlived a rotation: created in the old file, deleted in
// the new one. Both files, oldest first, give both times; the new file
// alone knows only the end.
TEST(WhoHeld, ARotatedLogReadOldestFirstAnswersAcrossTheRotation)
{
    TempDir dir;
    const std::string older = dir.file("map.log.1"), newer = dir.file("map.log");
    write_log(older, {event(1000, C, L4::Udp, "100.64.0.2", 40001, "198.51.100.11", kPort)});
    write_log(newer, {event(5000, D, L4::Udp, "100.64.0.2", 40001, "198.51.100.11", kPort),
                      event(6000, C, L4::Udp, "100.64.0.3", 40002, "198.51.100.11", kPort)});
    const auto both = who_held({older, newer}, kExt, kPort, 3000);
    ASSERT_EQ(both.size(), 1u);
    EXPECT_EQ(both[0].inside_addr, ip("100.64.0.2"));
    EXPECT_EQ(both[0].from_ms, 1000u);
    EXPECT_EQ(both[0].to_ms, 5000u);
    const auto later = who_held({older, newer}, kExt, kPort, 7000);
    ASSERT_EQ(later.size(), 1u);
    EXPECT_EQ(later[0].inside_addr, ip("100.64.0.3"));
    const auto alone = who_held({newer}, kExt, kPort, 3000);
    ASSERT_EQ(alone.size(), 1u);
    EXPECT_EQ(alone[0].from_ms, 0u); // began before this file
    EXPECT_EQ(alone[0].to_ms, 5000u);
}

TEST(WhoHeld, AnUnreadableFileAmongSeveralIsNamed)
{
    TempDir dir;
    const std::string present = dir.file("map.log"), missing = dir.file("map.log.1");
    write_log(present, {event(1000, C, L4::Udp, "100.64.0.2", 40001, "198.51.100.11", kPort)});
    try {
        who_held({missing, present}, kExt, kPort, 3000);
        FAIL() << "a missing file should throw";
    } catch (const std::runtime_error& e) {
        EXPECT_EQ(std::string(e.what()).rfind(missing + ": cannot read", 0), 0u) << e.what();
    }
}

TEST(WhoHeld, Rfc6888Req8_ReusedByAnotherSubscriberAfterQuarantine)
{
    TempDir dir;
    const std::string path = dir.file("map.log");
    const uint64_t t = 1'763'742'600'000;
    // A holds the port, releases it; 120 s of quarantine; B gets it. Worker
    // lines interleave in the file (another port's lines in between).
    write_log(path, {event(t, C, L4::Udp, "100.64.0.2", 40001, "198.51.100.11", kPort, 1),
                     event(t + 10, C, L4::Udp, "100.64.0.7", 40001, "198.51.100.11", 50000, 0),
                     event(t + 60'000, D, L4::Udp, "100.64.0.2", 40001, "198.51.100.11", kPort, 1),
                     event(t + 180'000, C, L4::Udp, "100.64.0.3", 33333, "198.51.100.11", kPort, 1),
                     event(t + 240'000, D, L4::Udp, "100.64.0.3", 33333, "198.51.100.11", kPort, 1)});
    auto a = who_held({path}, kExt, kPort, t + 30'000);
    ASSERT_EQ(a.size(), 1u);
    EXPECT_EQ(a[0].inside_addr, ip("100.64.0.2"));
    EXPECT_EQ(a[0].to_ms, t + 60'000);
    EXPECT_TRUE(who_held({path}, kExt, kPort, t + 120'000).empty()); // in quarantine: nobody
    auto b = who_held({path}, kExt, kPort, t + 200'000);
    ASSERT_EQ(b.size(), 1u);
    EXPECT_EQ(b[0].inside_addr, ip("100.64.0.3"));
    EXPECT_EQ(b[0].inside_port, 33333);
    EXPECT_EQ(b[0].from_ms, t + 180'000);
    EXPECT_EQ(b[0].to_ms, t + 240'000);
}

TEST(WhoHeld, UnknownPortOrAddress)
{
    TempDir dir;
    const std::string path = dir.file("map.log");
    write_log(path, {event(1000, C, L4::Udp, "100.64.0.2", 40001, "198.51.100.11", kPort)});
    EXPECT_TRUE(who_held({path}, kExt, kPort + 1, 1500).empty());
    EXPECT_TRUE(who_held({path}, ip("198.51.100.12"), kPort, 1500).empty());
    EXPECT_THROW(who_held({dir.file("missing.log")}, kExt, kPort, 1500), std::runtime_error);
}

TEST(WhoHeld, ProtocolsHaveSeparatePortSpaces)
{
    TempDir dir;
    const std::string path = dir.file("map.log");
    write_log(path, {event(1000, C, L4::Udp, "100.64.0.2", 40001, "198.51.100.11", kPort),
                     event(1100, C, L4::Tcp, "100.64.0.5", 50001, "198.51.100.11", kPort)});
    EXPECT_EQ(who_held({path}, kExt, kPort, 1500).size(), 2u);
    const auto tcp = who_held({path}, kExt, kPort, 1500, "tcp");
    ASSERT_EQ(tcp.size(), 1u);
    EXPECT_EQ(tcp[0].inside_addr, ip("100.64.0.5"));
    EXPECT_TRUE(who_held({path}, kExt, kPort, 1500, "icmp").empty());
}

TEST(WhoHeld, RestartEndsOpenMappings)
{
    TempDir dir;
    const std::string path = dir.file("map.log");
    write_log(path, {event(1000, C, L4::Udp, "100.64.0.2", 40001, "198.51.100.11", kPort)},
              {"1970-01-01T00:00:02.000Z 2000 stop pid=1", "garbage line", "1970-01-01T00:00:03.000Z 3000 start pid=2"});
    EXPECT_TRUE(who_held({path}, kExt, kPort, 2500).empty());
    const auto m = who_held({path}, kExt, kPort, 1500);
    ASSERT_EQ(m.size(), 1u);
    EXPECT_EQ(m[0].to_ms, 2000u);
}

TEST(WhoHeld, Rfc7422_StartLineCarriesTheDeterministicMappingAndStillEndsOpenMappings)
{
    TempDir dir;
    MappingLogConfig cfg;
    cfg.file = dir.file("map.log");
    cfg.start_note = "deterministic=100.64.0.0/22 pool=198.51.100.0-198.51.100.15 ports=49152-65535 workers=2 "
                     "ports_per_host=256";
    const uint64_t t = wall_ms();
    {
        MappingLogConfig plain;
        plain.file = cfg.file;
        MappingLog before(plain); // a daemon without the note, with one mapping
        before.start();
        before.record(event(t, C, L4::Udp, "100.64.0.2", 40001, "198.51.100.11", kPort));
    }
    {
        MappingLog deterministic(cfg); // restarted in deterministic mode
        deterministic.start();
    }
    std::ifstream in(cfg.file);
    std::vector<std::string> lines;
    for (std::string l; std::getline(in, l);) lines.push_back(l);
    const auto start = std::find_if(lines.rbegin(), lines.rend(), [](const std::string& l) {
        return l.find(" start pid=") != std::string::npos;
    });
    ASSERT_NE(start, lines.rend());
    EXPECT_TRUE(start->ends_with(" " + cfg.start_note)) << *start;
    const auto m = who_held({cfg.file}, kExt, kPort, t);
    ASSERT_EQ(m.size(), 1u);
    EXPECT_NE(m[0].to_ms, 0u) << "ended by the first daemon's stop, whatever the next start line says";
}

TEST(WhoHeld, ReadsWhatMappingLogWrote)
{
    TempDir dir;
    MappingLogConfig cfg;
    cfg.file = dir.file("map.log");
    const uint64_t t = wall_ms();
    {
        MappingLog log(cfg);
        log.start();
        log.record(event(t + 1, C, L4::Udp, "100.64.0.2", 40001, "198.51.100.11", kPort));
        log.flush();
        const auto m = who_held({cfg.file}, kExt, kPort, t + 2);
        ASSERT_EQ(m.size(), 1u);
        EXPECT_EQ(m[0].to_ms, 0u); // the daemon still runs
    }
    // Stopped: the mapping ended with the daemon.
    const auto m = who_held({cfg.file}, kExt, kPort, t + 1);
    ASSERT_EQ(m.size(), 1u);
    EXPECT_GE(m[0].to_ms, t + 1);
}

// ---------------------------------------------------------------------------
// who_held over port blocks

const uint32_t kPool = ip("198.51.100.3");

TEST(WhoHeldBlock, PortInsideTheBlockAtTAnyProtocol)
{
    TempDir dir;
    const std::string path = dir.file("map.log");
    write_log(path, {block_event(1000, BA, "100.64.0.9", "198.51.100.3", 1024, 1087),
                     block_event(1500, BA, "100.64.0.2", "198.51.100.3", 50000, 50063)});
    for (const std::string proto : {"", "tcp", "udp", "icmp", "sctp"}) {
        const auto m = who_held({path}, kPool, 50010, 2000, proto);
        ASSERT_EQ(m.size(), 1u) << proto;
        EXPECT_TRUE(m[0].is_block);
        EXPECT_EQ(m[0].inside_addr, ip("100.64.0.2"));
        EXPECT_EQ(m[0].inside_port, 0);
        EXPECT_EQ(m[0].protocol, "all");
        EXPECT_EQ(m[0].block_first, 50000);
        EXPECT_EQ(m[0].block_last, 50063);
        EXPECT_EQ(m[0].from_ms, 1500u);
        EXPECT_EQ(m[0].to_ms, 0u); // still held
    }
    EXPECT_TRUE(who_held({path}, kPool, 50010, 1499).empty()); // not yet
    EXPECT_TRUE(who_held({path}, ip("198.51.100.4"), 50010, 2000).empty()); // another pool address
}

TEST(WhoHeldBlock, NobodyAfterTheBlockIsFreed)
{
    TempDir dir;
    const std::string path = dir.file("map.log");
    write_log(path, {block_event(1000, BA, "100.64.0.2", "198.51.100.3", 50000, 50063),
                     block_event(2000, BF, "100.64.0.2", "198.51.100.3", 50000, 50063)});
    EXPECT_TRUE(who_held({path}, kPool, 50063, 2500).empty());
    const auto m = who_held({path}, kPool, 50063, 2000); // bounds included
    ASSERT_EQ(m.size(), 1u);
    EXPECT_EQ(m[0].from_ms, 1000u);
    EXPECT_EQ(m[0].to_ms, 2000u);
}

TEST(WhoHeldBlock, Rfc6888Req8_ReusedByAnotherSubscriberAfterQuarantine)
{
    TempDir dir;
    const std::string path = dir.file("map.log");
    const uint64_t t = 1'763'742'600'000;
    // A holds the block and frees it; 120 s of quarantine; B gets the same
    // block. Another block's lines in between.
    write_log(path, {block_event(t, BA, "100.64.0.2", "198.51.100.3", 50000, 50063, 1),
                     block_event(t + 10, BA, "100.64.0.7", "198.51.100.3", 50064, 50127, 0),
                     block_event(t + 60'000, BF, "100.64.0.2", "198.51.100.3", 50000, 50063, 1),
                     block_event(t + 180'000, BA, "100.64.0.3", "198.51.100.3", 50000, 50063, 1),
                     block_event(t + 240'000, BF, "100.64.0.3", "198.51.100.3", 50000, 50063, 1)});
    const auto a = who_held({path}, kPool, 50001, t + 30'000);
    ASSERT_EQ(a.size(), 1u);
    EXPECT_EQ(a[0].inside_addr, ip("100.64.0.2"));
    EXPECT_EQ(a[0].to_ms, t + 60'000);
    EXPECT_TRUE(who_held({path}, kPool, 50001, t + 120'000).empty()); // in quarantine: nobody
    const auto b = who_held({path}, kPool, 50001, t + 200'000);
    ASSERT_EQ(b.size(), 1u);
    EXPECT_EQ(b[0].inside_addr, ip("100.64.0.3"));
    EXPECT_EQ(b[0].from_ms, t + 180'000);
    EXPECT_EQ(b[0].to_ms, t + 240'000);
}

TEST(WhoHeldBlock, PortJustOutsideTheBlockIsNobodys)
{
    TempDir dir;
    const std::string path = dir.file("map.log");
    write_log(path, {block_event(1000, BA, "100.64.0.2", "198.51.100.3", 50000, 50063)});
    EXPECT_TRUE(who_held({path}, kPool, 49999, 1500).empty());
    EXPECT_TRUE(who_held({path}, kPool, 50064, 1500).empty());
    EXPECT_EQ(who_held({path}, kPool, 50000, 1500).size(), 1u); // both ends belong to it
    EXPECT_EQ(who_held({path}, kPool, 50063, 1500).size(), 1u);
}

TEST(WhoHeldBlock, AllocOverAnOpenAllocEndsIt)
{
    // The free was lost: the first holder cannot have held past the second alloc.
    TempDir dir;
    const std::string path = dir.file("map.log");
    write_log(path, {block_event(1000, BA, "100.64.0.2", "198.51.100.3", 50000, 50063),
                     block_event(3000, BA, "100.64.0.3", "198.51.100.3", 50000, 50063)});
    const auto before = who_held({path}, kPool, 50000, 2000);
    ASSERT_EQ(before.size(), 1u);
    EXPECT_EQ(before[0].inside_addr, ip("100.64.0.2"));
    EXPECT_EQ(before[0].to_ms, 3000u);
    const auto after = who_held({path}, kPool, 50000, 3500);
    ASSERT_EQ(after.size(), 1u);
    EXPECT_EQ(after[0].inside_addr, ip("100.64.0.3"));
}

TEST(WhoHeldBlock, FreeWithoutAllocHeldSinceTheLogBegan)
{
    // The log was rotated after the alloc: held from an unknown time.
    TempDir dir;
    const std::string path = dir.file("map.log");
    write_log(path, {block_event(2000, BF, "100.64.0.2", "198.51.100.3", 50000, 50063)});
    const auto m = who_held({path}, kPool, 50000, 1500);
    ASSERT_EQ(m.size(), 1u);
    EXPECT_EQ(m[0].from_ms, 0u);
    EXPECT_EQ(m[0].to_ms, 2000u);
    EXPECT_TRUE(who_held({path}, kPool, 50000, 2500).empty());
}

TEST(WhoHeldBlock, RestartEndsOpenBlocks)
{
    TempDir dir;
    const std::string path = dir.file("map.log");
    write_log(path, {block_event(1000, BA, "100.64.0.2", "198.51.100.3", 50000, 50063)},
              {"1970-01-01T00:00:02.000Z 2000 stop pid=1", "1970-01-01T00:00:03.000Z 3000 start pid=2"});
    EXPECT_TRUE(who_held({path}, kPool, 50000, 2500).empty());
    const auto m = who_held({path}, kPool, 50000, 1500);
    ASSERT_EQ(m.size(), 1u);
    EXPECT_EQ(m[0].to_ms, 2000u);
}

TEST(WhoHeldBlock, GarbledBlockLinesAreSkipped)
{
    TempDir dir;
    const std::string path = dir.file("map.log");
    write_log(path, {block_event(1000, BA, "100.64.0.2", "198.51.100.3", 50000, 50063)},
              {"x 1100 block-free all inside=100.64.0.2 external=198.51.100.3:50063-50000 worker=0", // reversed
               "x 1100 block-free all inside=100.64.0.2 external=198.51.100.3:50000- worker=0",
               "x 1100 block-free all inside=100.64.0.2 external=198.51.100.3:-50063 worker=0",
               "x 1100 block-free all inside=100.64.0.2 external=198.51.100.3:50000 worker=0", // no range
               "x 1100 block-free all inside=100.64.0.2 external=198.51.100.3:50000-70000 worker=0",
               "x 1100 block-free all inside=100.64.0.2 external=198.51.100.3:50000--50063 worker=0",
               "x 1100 block-free all inside=100.64.0.2 external=198.51.100.999:50000-50063 worker=0",
               "x 1100 block-free all inside=100.64.0.2:7 external=198.51.100.3:50000-50063 worker=0",
               "x 1100 block-free udp inside=100.64.0.2 external=198.51.100.3:50000-50063 worker=0",
               "x 1100 block-free all inside=100.64.0.2",
               "x 1100 block-free",
               "x 11x0 block-free all inside=100.64.0.2 external=198.51.100.3:50000-50063 worker=0",
               "x 1100 block-freed all inside=100.64.0.2 external=198.51.100.3:50000-50063 worker=0",
               "x 1100 block-free all inside=100.64.0.2 external=198.51.100.3:50000-50063" + std::string(5000, '9'),
               std::string(10000, '-') + " block- external=198.51.100.3:"});
    const auto m = who_held({path}, kPool, 50000, 1500);
    ASSERT_EQ(m.size(), 1u); // none of those ended the block
    EXPECT_EQ(m[0].to_ms, 0u);
}

TEST(WhoHeldBlock, ReadsWhatMappingLogWrote)
{
    TempDir dir;
    MappingLogConfig cfg;
    cfg.file = dir.file("map.log");
    const uint64_t t = wall_ms();
    {
        MappingLog log(cfg);
        log.record(block_event(t + 1, BA, "100.64.0.2", "198.51.100.3", 50000, 50063));
        log.record(block_event(t + 2, BF, "100.64.0.2", "198.51.100.3", 50000, 50063));
    }
    const auto m = who_held({cfg.file}, kPool, 50030, t + 1, "udp");
    ASSERT_EQ(m.size(), 1u);
    EXPECT_TRUE(m[0].is_block);
    EXPECT_EQ(m[0].to_ms, t + 2);
}

TEST(WhoHeldBlock, MappingsAndBlocksOfOnePortAreBothAnswered)
{
    // Port-block mode switched on across a restart: the mapping before it
    // and the block after it are told apart by their times.
    TempDir dir;
    const std::string path = dir.file("map.log");
    write_log(path, {event(1000, C, L4::Udp, "100.64.0.5", 40001, "198.51.100.3", 50000)},
              {"1970-01-01T00:00:02.000Z 2000 stop pid=1", "1970-01-01T00:00:03.000Z 3000 start pid=2",
               format_mapping_event(block_event(4000, BA, "100.64.0.2", "198.51.100.3", 50000, 50063))});
    const auto before = who_held({path}, kPool, 50000, 1500);
    ASSERT_EQ(before.size(), 1u);
    EXPECT_FALSE(before[0].is_block);
    EXPECT_EQ(before[0].inside_addr, ip("100.64.0.5"));
    const auto after = who_held({path}, kPool, 50000, 4500);
    ASSERT_EQ(after.size(), 1u);
    EXPECT_TRUE(after[0].is_block);
    EXPECT_EQ(after[0].inside_addr, ip("100.64.0.2"));
}

} // namespace

// ---------------------------------------------------------------------------
// who_held over a damaged log

namespace {

// A line with a few of its characters changed, cut short, doubled, or one of
// the shapes a rotated, truncated or hand-edited file can hold.
std::string damaged(const std::string& line, std::mt19937& rng)
{
    std::string l = line;
    switch (rng() % 7) {
    case 0: return l.substr(0, rng() % (l.size() + 1));
    case 1:
        for (unsigned k = 1 + rng() % 3; k > 0 && !l.empty(); --k) l[rng() % l.size()] = char(rng() % 256);
        return l;
    case 2: return l + " " + l;
    case 3: return l.empty() ? l : l.substr(rng() % l.size());
    case 4: return std::string(1 + rng() % 300, char(rng() % 256));
    case 5: return l + "\r";
    default: {
        const char* odd[] = {"", " ", "99999999999999999999999999 create udp", "1 2 3 4 5 6 7 8 9",
                             "x create udp inside=100.64.0.2:99999 external=198.51.100.11:60966",
                             "5 create udp inside=300.1.1.1:1 external=198.51.100.11:60966",
                             "5 block-alloc all inside=100.64.0.2 external=198.51.100.11:70000-1",
                             "5 block-alloc all inside=100.64.0.2 external=198.51.100.11:60970-60960",
                             "5 create udp inside=100.64.0.2:1 external=198.51.100.11:",
                             "5 delete inside= external=", "5 start", "5 stop pid="};
        return odd[rng() % std::size(odd)];
    }
    }
}

} // namespace

// Lines that do not parse are skipped, wherever they are: the mapping that
// the well-formed lines describe is still found, and nothing crashes.
TEST(WhoHeld, DamagedLinesAreSkippedAndTheRestStillAnswers)
{
    TempDir dir;
    const std::string clean = dir.file("clean.log");
    std::vector<MappingEvent> events;
    for (uint16_t i = 0; i < 40; ++i) {
        events.push_back(event(1000 + i, C, L4::Udp, "100.64.0.9", uint16_t(5000 + i), "198.51.100.11", uint16_t(1100 + i)));
        events.push_back(block_event(1000 + i, BA, "100.64.0.8", "198.51.100.11", uint16_t(2000 + 64 * i),
                                     uint16_t(2063 + 64 * i)));
    }
    write_log(clean, events);
    std::vector<std::string> lines;
    {
        std::ifstream in(clean);
        for (std::string l; std::getline(in, l);) lines.push_back(l);
    }
    const std::string wanted = format_mapping_event(event(5000, C, L4::Udp, "100.64.0.2", 40001, "198.51.100.11", kPort));
    std::mt19937 rng(20261122);
    for (int round = 0; round < 200; ++round) {
        const std::string path = dir.file("damaged.log");
        {
            std::ofstream out(path, std::ios::binary);
            for (const std::string& l : lines) out << (rng() % 3 == 0 ? damaged(l, rng) : l) << "\n";
            out << wanted << "\n";
            for (int k = 0; k < 5; ++k) out << damaged(lines[rng() % lines.size()], rng) << "\n";
        }
        std::vector<WhoMatch> m;
        ASSERT_NO_THROW(m = who_held({path}, kExt, kPort, 6000)) << "round " << round;
        ASSERT_FALSE(m.empty()) << "round " << round;
        EXPECT_EQ(m.back().inside_addr, ip("100.64.0.2")) << "round " << round;
        EXPECT_EQ(m.back().inside_port, 40001) << "round " << round;
        for (uint16_t port : {uint16_t(1105), uint16_t(2100), uint16_t(65535), uint16_t(0)})
            ASSERT_NO_THROW(who_held({path}, kExt, port, rng() % 3000, rng() % 2 ? "" : "udp")) << "round " << round;
    }
}
