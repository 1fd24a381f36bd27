// The mapping log writer; format and behaviour in mapping_log.hpp.
#include "mapping_log.hpp"

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
    return with_iso_time ? format_iso_ms(e.time_ms) + " " + buf : std::string(buf);
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
    if (file_ || syslog_) marker("start");
    flush();
}

MappingLog::~MappingLog()
{
    if (file_ || syslog_) marker("stop");
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

void MappingLog::marker(const char* what)
{
    const uint64_t now = wall_ms();
    write_line(std::to_string(now) + " " + what + " pid=" + std::to_string(getpid()), now);
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
    if (exporter_ && (e.type == uint8_t(MappingEventType::Create) || e.type == uint8_t(MappingEventType::Delete))) {
        ipfix::NatRecord r;
        r.time_ms = e.time_ms;
        r.nat_event = e.type == uint8_t(MappingEventType::Create) ? ipfix::kNat44BibCreate : ipfix::kNat44BibDelete;
        r.protocol = ip_protocol(e.l4);
        r.src_addr = ntohl(e.in_addr);
        r.src_port = ntohs(e.in_port);
        r.post_addr = ntohl(e.ext_addr);
        r.post_port = ntohs(e.ext_port);
        exporter_->add(r, wall_ms());
    }
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
