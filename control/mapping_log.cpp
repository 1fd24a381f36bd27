// The mapping log writer; format and behaviour in mapping_log.hpp.
#include "mapping_log.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <stdexcept>

#include <arpa/inet.h>
#include <fcntl.h>
#include <syslog.h>
#include <unistd.h>

#include "ephemera/config.hpp"
#include "ephemera/flow_key.hpp"
#include "ipfix.hpp"

namespace ephemera {

namespace {

uint64_t wall_ms()
{
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return uint64_t(ts.tv_sec) * 1000 + uint64_t(ts.tv_nsec) / 1'000'000;
}

const char* event_name(uint8_t type)
{
    switch (MappingEventType(type)) {
    case MappingEventType::Create: return "create";
    case MappingEventType::Delete: return "delete";
    case MappingEventType::BlockAlloc: return "block-alloc";
    case MappingEventType::BlockFree: return "block-free";
    }
    return "unknown";
}

uint8_t ip_protocol(uint8_t l4)
{
    switch (L4(l4)) {
    case L4::Tcp: return kIpProtoTcp;
    case L4::Udp: return kIpProtoUdp;
    case L4::Icmp: return kIpProtoIcmp;
    case L4::Sctp: return kIpProtoSctp;
    }
    return 0;
}

bool is_block_event(const MappingEvent& e)
{
    return e.type == uint8_t(MappingEventType::BlockAlloc) || e.type == uint8_t(MappingEventType::BlockFree);
}

bool is_mapping_event(const MappingEvent& e)
{
    return e.type == uint8_t(MappingEventType::Create) || e.type == uint8_t(MappingEventType::Delete);
}

// "create udp inside=ADDR:PORT external=ADDR:PORT worker=N".
std::string format_single_mapping(const MappingEvent& e)
{
    char proto[16];
    if (e.l4 < kL4Count)
        std::snprintf(proto, sizeof proto, "%s", to_string(L4(e.l4)));
    else
        std::snprintf(proto, sizeof proto, "l4-%u", unsigned(e.l4));
    char buf[200];
    std::snprintf(buf, sizeof buf, "%llu %s %s inside=%s:%u external=%s:%u worker=%u",
                  static_cast<unsigned long long>(e.time_ms), event_name(e.type), proto,
                  format_ipv4(ntohl(e.in_addr)).c_str(), unsigned(ntohs(e.in_port)),
                  format_ipv4(ntohl(e.ext_addr)).c_str(), unsigned(ntohs(e.ext_port)), unsigned(e.worker));
    return buf;
}

// "block-alloc all inside=ADDR external=ADDR:FIRST-LAST worker=N": the same
// fields as a mapping line, so scripts find inside= and external= in the
// same places; "all" because a block holds its ports in every protocol, and
// no inside port because the subscriber's own ports are not in the event.
std::string format_block_event(const MappingEvent& e)
{
    char buf[200];
    std::snprintf(buf, sizeof buf, "%llu %s all inside=%s external=%s:%u-%u worker=%u",
                  static_cast<unsigned long long>(e.time_ms), event_name(e.type), format_ipv4(ntohl(e.in_addr)).c_str(),
                  format_ipv4(ntohl(e.ext_addr)).c_str(), unsigned(ntohs(e.ext_port)), unsigned(ntohs(e.in_port)),
                  unsigned(e.worker));
    return buf;
}

ipfix::NatRecord nat_record(const MappingEvent& e)
{
    ipfix::NatRecord r;
    r.time_ms = e.time_ms;
    r.nat_event = e.type == uint8_t(MappingEventType::Create) ? ipfix::kNat44BibCreate : ipfix::kNat44BibDelete;
    r.protocol = ip_protocol(e.l4);
    r.src_addr = ntohl(e.in_addr);
    r.src_port = ntohs(e.in_port);
    r.post_addr = ntohl(e.ext_addr);
    r.post_port = ntohs(e.ext_port);
    return r;
}

ipfix::PortBlockRecord port_block_record(const MappingEvent& e)
{
    ipfix::PortBlockRecord r;
    r.time_ms = e.time_ms;
    r.nat_event = e.type == uint8_t(MappingEventType::BlockAlloc) ? ipfix::kPortBlockAllocation
                                                                  : ipfix::kPortBlockDeallocation;
    r.src_addr = ntohl(e.in_addr);
    r.post_addr = ntohl(e.ext_addr);
    r.port_start = ntohs(e.ext_port);
    r.port_end = ntohs(e.in_port);
    r.step_size = 1;
    // Port 0 is never handed out, so a block has at most 65535 ports; a
    // reversed range (a producer's bug) is exported as it came, with 0 ports.
    r.num_ports = r.port_end >= r.port_start ? uint16_t(std::min(r.port_end - r.port_start + 1, 65535)) : 0;
    return r;
}

} // namespace

std::string format_iso_ms(uint64_t unix_ms)
{
    const time_t secs = time_t(unix_ms / 1000);
    tm t{};
    gmtime_r(&secs, &t);
    char buf[40];
    const size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &t);
    std::snprintf(buf + n, sizeof buf - n, ".%03uZ", unsigned(unix_ms % 1000));
    return buf;
}

std::string format_mapping_event(const MappingEvent& e, bool with_iso_time)
{
    const std::string line = is_block_event(e) ? format_block_event(e) : format_single_mapping(e);
    return with_iso_time ? format_iso_ms(e.time_ms) + " " + line : line;
}

MappingLog::MappingLog(const MappingLogConfig& config) : config_(config)
{
    if (!config_.ipfix_collector.empty())
        exporter_ = std::make_unique<ipfix::Exporter>(config_.ipfix_collector, config_.ipfix_domain);
    open_file();
    if (config_.syslog) {
        openlog("ephemera", LOG_PID, LOG_DAEMON);
        syslog_ = true;
    }
}

void MappingLog::start()
{
    if (started_) return;
    started_ = true;
    if (file_ || syslog_) marker("start", config_.start_note);
    flush();
}

MappingLog::~MappingLog()
{
    if (started_ && (file_ || syslog_)) marker("stop");
    flush();
    if (file_) std::fclose(file_);
    if (syslog_) closelog();
}

void MappingLog::open_file()
{
    if (config_.file.empty()) return;
    const int fd = ::open(config_.file.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
    std::FILE* f = fd >= 0 ? fdopen(fd, "a") : nullptr;
    if (f == nullptr) {
        const int err = errno;
        if (fd >= 0) ::close(fd);
        throw std::runtime_error("log.file = \"" + config_.file + "\": cannot open for appending: " +
                                 std::strerror(err));
    }
    std::setvbuf(f, nullptr, _IOFBF, 1 << 16);
    if (file_) {
        std::fflush(file_);
        std::fclose(file_);
    }
    file_ = f;
}

void MappingLog::reopen() { open_file(); }

void MappingLog::marker(const char* what, const std::string& note)
{
    const uint64_t now = wall_ms();
    write_line(std::to_string(now) + " " + what + " pid=" + std::to_string(getpid()) + (note.empty() ? "" : " " + note),
               now);
}

void MappingLog::write_line(const std::string& line, uint64_t time_ms)
{
    if (file_) {
        const std::string full = format_iso_ms(time_ms) + " " + line + "\n";
        if (std::fwrite(full.data(), 1, full.size(), file_) != full.size()) {
            ++file_errors_;
            std::clearerr(file_);
        }
    }
    if (syslog_) ::syslog(LOG_INFO, "%s", line.c_str());
}

void MappingLog::record(const MappingEvent& e)
{
    ++events_;
    if (file_ || syslog_) write_line(format_mapping_event(e, false), e.time_ms);
    if (!exporter_) return;
    if (is_mapping_event(e)) exporter_->add(nat_record(e), wall_ms());
    else if (is_block_event(e)) exporter_->add_block(port_block_record(e), wall_ms());
}

void MappingLog::flush()
{
    if (exporter_) exporter_->flush(wall_ms());
    if (file_ && std::fflush(file_) != 0) {
        ++file_errors_;
        std::clearerr(file_);
    }
}

uint64_t MappingLog::ipfix_messages() const { return exporter_ ? exporter_->messages() : 0; }
uint64_t MappingLog::ipfix_errors() const { return exporter_ ? exporter_->send_errors() : 0; }

} // namespace ephemera
