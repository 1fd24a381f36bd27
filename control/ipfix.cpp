// IPFIX encoder and UDP exporter; see ipfix.hpp.
#include "ipfix.hpp"

#include <cerrno>
#include <charconv>
#include <cstring>
#include <stdexcept>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace ephemera::ipfix {

namespace {

struct Field {
    uint16_t id;
    uint16_t length;
};
constexpr Field kFields[] = {
    {kIeObservationTimeMilliseconds, 8}, {kIeNatEvent, 1},
    {kIeProtocolIdentifier, 1},          {kIeSourceIPv4Address, 4},
    {kIeSourceTransportPort, 2},         {kIePostNatSourceIPv4Address, 4},
    {kIePostNaptSourceTransportPort, 2},
};
constexpr size_t kFieldCount = sizeof kFields / sizeof kFields[0];

// Big-endian writers appending to a byte vector.
void put8(std::vector<uint8_t>& b, uint8_t v) { b.push_back(v); }
void put16(std::vector<uint8_t>& b, uint16_t v)
{
    b.push_back(uint8_t(v >> 8));
    b.push_back(uint8_t(v));
}
void put32(std::vector<uint8_t>& b, uint32_t v)
{
    put16(b, uint16_t(v >> 16));
    put16(b, uint16_t(v));
}
void put64(std::vector<uint8_t>& b, uint64_t v)
{
    put32(b, uint32_t(v >> 32));
    put32(b, uint32_t(v));
}
void patch16(std::vector<uint8_t>& b, size_t at, uint16_t v)
{
    b[at] = uint8_t(v >> 8);
    b[at + 1] = uint8_t(v);
}

[[noreturn]] void fail(const std::string& collector, const std::string& why)
{
    throw std::runtime_error("log.ipfix_collector = \"" + collector + "\": " + why);
}

} // namespace

size_t template_set_bytes() { return 4 + 4 + 4 * kFieldCount; }

size_t records_per_message(bool with_template)
{
    return (kMaxMessage - kHeaderBytes - (with_template ? template_set_bytes() : 0) - 4) / kRecordBytes;
}

std::vector<uint8_t> encode_message(uint32_t export_time_s, uint32_t sequence, uint32_t domain, bool with_template,
                                    std::span<const NatRecord> records)
{
    std::vector<uint8_t> b;
    b.reserve(kMaxMessage);
    // Message header (RFC 7011 §3.1); the length is patched at the end.
    put16(b, kVersion);
    put16(b, 0);
    put32(b, export_time_s);
    put32(b, sequence);
    put32(b, domain);
    if (with_template) { // §3.3.2, §3.4.1
        put16(b, kTemplateSetId);
        put16(b, uint16_t(template_set_bytes()));
        put16(b, kNatTemplateId);
        put16(b, uint16_t(kFieldCount));
        for (const Field& f : kFields) {
            put16(b, f.id); // enterprise bit clear: IANA elements
            put16(b, f.length);
        }
    }
    if (!records.empty()) { // §3.3.2: a data set's id is its template's id
        const size_t start = b.size();
        put16(b, kNatTemplateId);
        put16(b, 0);
        for (const NatRecord& r : records) {
            put64(b, r.time_ms);
            put8(b, r.nat_event);
            put8(b, r.protocol);
            put32(b, r.src_addr);
            put16(b, r.src_port);
            put32(b, r.post_addr);
            put16(b, r.post_port);
        }
        patch16(b, start + 2, uint16_t(b.size() - start));
    }
    patch16(b, 2, uint16_t(b.size()));
    return b;
}

Exporter::Exporter(const std::string& collector, uint32_t domain) : domain_(domain)
{
    const auto colon = collector.rfind(':');
    if (colon == std::string::npos) fail(collector, "expected ADDR:PORT, e.g. \"127.0.0.1:4739\"");
    const std::string host = collector.substr(0, colon), port_text = collector.substr(colon + 1);
    unsigned port = 0;
    auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    if (ec != std::errc{} || end != port_text.data() + port_text.size() || port == 0 || port > 65535)
        fail(collector, "expected ADDR:PORT, e.g. \"127.0.0.1:4739\"");
    if (inet_pton(AF_INET, host.c_str(), &sa.sin_addr) != 1) fail(collector, "\"" + host + "\" is not an IPv4 address");
    sa.sin_port = htons(uint16_t(port));

    fd_ = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) fail(collector, std::string("cannot create a UDP socket: ") + std::strerror(errno));
    // Connected, the kernel reports an unreachable collector (ICMP port
    // unreachable) on a later send, which is counted. connect() fails only
    // without a route; then sendto() per message, and every failure counted.
    connected_ = connect(fd_, reinterpret_cast<const sockaddr*>(&sa), sizeof sa) == 0;
    addr_.assign(reinterpret_cast<const uint8_t*>(&sa), reinterpret_cast<const uint8_t*>(&sa) + sizeof sa);
    pending_.reserve(records_per_message(false));
}

Exporter::~Exporter()
{
    if (fd_ >= 0) close(fd_);
}

bool Exporter::template_due(uint64_t now_ms) const
{
    return !template_sent_ || since_template_ >= kTemplateRefreshMessages || now_ms >= template_ms_ + kTemplateRefreshMs ||
           now_ms < template_ms_; // the clock went back: resend rather than wait
}

void Exporter::add(const NatRecord& r, uint64_t now_ms)
{
    pending_.push_back(r);
    if (pending_.size() >= records_per_message(template_due(now_ms))) flush(now_ms);
}

void Exporter::flush(uint64_t now_ms)
{
    size_t done = 0;
    while (done < pending_.size()) {
        const bool with_template = template_due(now_ms);
        const size_t n = std::min(records_per_message(with_template), pending_.size() - done);
        send(std::span<const NatRecord>(pending_).subspan(done, n), with_template, now_ms);
        done += n;
    }
    pending_.clear();
}

void Exporter::send(std::span<const NatRecord> records, bool with_template, uint64_t now_ms)
{
    const std::vector<uint8_t> msg = encode_message(uint32_t(now_ms / 1000), sequence_, domain_, with_template, records);
    sequence_ += uint32_t(records.size()); // modulo 2^32
    records_ += records.size();
    ssize_t sent;
    do {
        sent = connected_ ? ::send(fd_, msg.data(), msg.size(), MSG_DONTWAIT | MSG_NOSIGNAL)
                          : ::sendto(fd_, msg.data(), msg.size(), MSG_DONTWAIT | MSG_NOSIGNAL,
                                     reinterpret_cast<const sockaddr*>(addr_.data()), socklen_t(addr_.size()));
    } while (sent < 0 && errno == EINTR);
    if (sent != ssize_t(msg.size())) {
        ++send_errors_; // EAGAIN, ECONNREFUSED, ENETUNREACH...: dropped, the template stays due
        return;
    }
    ++messages_;
    if (with_template) {
        template_sent_ = true;
        template_ms_ = now_ms;
        since_template_ = 0;
    }
    ++since_template_;
}

} // namespace ephemera::ipfix
