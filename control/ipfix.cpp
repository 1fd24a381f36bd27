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
constexpr Field kNatFields[] = {
    {kIeObservationTimeMilliseconds, 8}, {kIeNatEvent, 1},
    {kIeProtocolIdentifier, 1},          {kIeSourceIPv4Address, 4},
    {kIeSourceTransportPort, 2},         {kIePostNatSourceIPv4Address, 4},
    {kIePostNaptSourceTransportPort, 2},
};
// RFC 8158 §4.4, NAT44 port block allocation/de-allocation.
constexpr Field kPortBlockFields[] = {
    {kIeObservationTimeMilliseconds, 8}, {kIeNatEvent, 1},     {kIeSourceIPv4Address, 4},
    {kIePostNatSourceIPv4Address, 4},    {kIePortRangeStart, 2}, {kIePortRangeEnd, 2},
    {kIePortRangeStepSize, 2},           {kIePortRangeNumPorts, 2},
};

constexpr size_t template_record_bytes(std::span<const Field> fields) { return 4 + 4 * fields.size(); }

constexpr size_t data_set_bytes(size_t count, size_t record_bytes)
{
    return count == 0 ? 0 : kSetHeaderBytes + count * record_bytes;
}

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

void put_template(std::vector<uint8_t>& b, uint16_t template_id, std::span<const Field> fields)
{
    put16(b, template_id);
    put16(b, uint16_t(fields.size()));
    for (const Field& f : fields) {
        put16(b, f.id); // enterprise bit clear: IANA elements
        put16(b, f.length);
    }
}

void put_record(std::vector<uint8_t>& b, const NatRecord& r)
{
    put64(b, r.time_ms);
    put8(b, r.nat_event);
    put8(b, r.protocol);
    put32(b, r.src_addr);
    put16(b, r.src_port);
    put32(b, r.post_addr);
    put16(b, r.post_port);
}

void put_record(std::vector<uint8_t>& b, const PortBlockRecord& r)
{
    put64(b, r.time_ms);
    put8(b, r.nat_event);
    put32(b, r.src_addr);
    put32(b, r.post_addr);
    put16(b, r.port_start);
    put16(b, r.port_end);
    put16(b, r.step_size);
    put16(b, r.num_ports);
}

// A data set (RFC 7011 §3.3.2: its id is its template's id); none when empty.
template <typename Record>
void put_data_set(std::vector<uint8_t>& b, uint16_t template_id, std::span<const Record> records)
{
    if (records.empty()) return;
    const size_t start = b.size();
    put16(b, template_id);
    put16(b, 0);
    for (const Record& r : records) put_record(b, r);
    patch16(b, start + 2, uint16_t(b.size() - start));
}

[[noreturn]] void fail(const std::string& collector, const std::string& why)
{
    throw std::runtime_error("log.ipfix_collector = \"" + collector + "\": " + why);
}

} // namespace

size_t template_set_bytes()
{
    return kSetHeaderBytes + template_record_bytes(kNatFields) + template_record_bytes(kPortBlockFields);
}

bool message_fits(size_t nat_records, size_t block_records, bool with_template)
{
    return kHeaderBytes + (with_template ? template_set_bytes() : 0) + data_set_bytes(nat_records, kRecordBytes) +
               data_set_bytes(block_records, kPortBlockRecordBytes) <=
           kMaxMessage;
}

size_t records_per_message(bool with_template)
{
    return (kMaxMessage - kHeaderBytes - (with_template ? template_set_bytes() : 0) - kSetHeaderBytes) / kRecordBytes;
}

size_t block_records_per_message(bool with_template)
{
    return (kMaxMessage - kHeaderBytes - (with_template ? template_set_bytes() : 0) - kSetHeaderBytes) /
           kPortBlockRecordBytes;
}

std::vector<uint8_t> encode_message(uint32_t export_time_s, uint32_t sequence, uint32_t domain, bool with_template,
                                    std::span<const NatRecord> records, std::span<const PortBlockRecord> blocks)
{
    std::vector<uint8_t> b;
    b.reserve(kMaxMessage);
    // Message header (RFC 7011 §3.1); the length is patched at the end.
    put16(b, kVersion);
    put16(b, 0);
    put32(b, export_time_s);
    put32(b, sequence);
    put32(b, domain);
    if (with_template) { // §3.3.2, §3.4.1: both templates in one set, so neither is ever missing alone
        put16(b, kTemplateSetId);
        put16(b, uint16_t(template_set_bytes()));
        put_template(b, kNatTemplateId, kNatFields);
        put_template(b, kPortBlockTemplateId, kPortBlockFields);
    }
    put_data_set(b, kNatTemplateId, records);
    put_data_set(b, kPortBlockTemplateId, blocks);
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
    pending_blocks_.reserve(block_records_per_message(false));
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

void Exporter::before_add(size_t more_nat, size_t more_blocks, uint64_t now_ms)
{
    if (!message_fits(pending_.size() + more_nat, pending_blocks_.size() + more_blocks, template_due(now_ms)))
        flush(now_ms);
}

void Exporter::after_add(uint64_t now_ms)
{
    const bool with_template = template_due(now_ms);
    const size_t n = pending_.size(), m = pending_blocks_.size();
    if (!message_fits(n + 1, m, with_template) && !message_fits(n, m + 1, with_template)) flush(now_ms);
}

void Exporter::add(const NatRecord& r, uint64_t now_ms)
{
    before_add(1, 0, now_ms);
    pending_.push_back(r);
    after_add(now_ms);
}

void Exporter::add_block(const PortBlockRecord& r, uint64_t now_ms)
{
    before_add(0, 1, now_ms);
    pending_blocks_.push_back(r);
    after_add(now_ms);
}

void Exporter::flush(uint64_t now_ms)
{
    // Fill each message: mapping records first, then blocks in what is left.
    size_t nat_done = 0, blocks_done = 0;
    while (nat_done < pending_.size() || blocks_done < pending_blocks_.size()) {
        const bool with_template = template_due(now_ms);
        size_t n = 0, m = 0;
        while (nat_done + n < pending_.size() && message_fits(n + 1, 0, with_template)) ++n;
        while (blocks_done + m < pending_blocks_.size() && message_fits(n, m + 1, with_template)) ++m;
        send(std::span<const NatRecord>(pending_).subspan(nat_done, n),
             std::span<const PortBlockRecord>(pending_blocks_).subspan(blocks_done, m), with_template, now_ms);
        nat_done += n;
        blocks_done += m;
    }
    pending_.clear();
    pending_blocks_.clear();
}

void Exporter::send(std::span<const NatRecord> records, std::span<const PortBlockRecord> blocks, bool with_template,
                    uint64_t now_ms)
{
    const std::vector<uint8_t> msg =
        encode_message(uint32_t(now_ms / 1000), sequence_, domain_, with_template, records, blocks);
    const size_t count = records.size() + blocks.size();
    sequence_ += uint32_t(count); // modulo 2^32
    records_ += count;
    ssize_t sent;
    do {
        sent = connected_ ? ::send(fd_, msg.data(), msg.size(), MSG_DONTWAIT | MSG_NOSIGNAL)
                          : ::sendto(fd_, msg.data(), msg.size(), MSG_DONTWAIT | MSG_NOSIGNAL,
                                     reinterpret_cast<const sockaddr*>(addr_.data()), socklen_t(addr_.size()));
    } while (sent < 0 && errno == EINTR);
    if (sent != ssize_t(msg.size())) {
        // EAGAIN, ECONNREFUSED, ENETUNREACH...: dropped and counted. On a
        // connected socket ECONNREFUSED reports an ICMP unreachable for an
        // earlier message, perhaps the one that carried the template: a
        // collector that comes back must get the template with the next one.
        ++send_errors_;
        template_sent_ = false;
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
