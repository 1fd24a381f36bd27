// IPFIX (RFC 7011) export of NAT mapping events with the RFC 8158
// information elements, over UDP. Control plane only (one thread).
//
// Two templates, sent together in one template set in the first message and
// again at least every 60 s or every 100 messages, and in the next message
// after a send error (UDP has no session, so a collector that starts late or
// loses a datagram learns them again).
//
// Template 256, one mapping (RFC 8158 §4.4, NAT44 BIB create/delete), in
// this order:
//
//   IE 323 observationTimeMilliseconds   8 bytes  event time, ms since the Unix epoch
//   IE 230 natEvent                      1 byte   8 = NAT44 BIB create, 9 = NAT44 BIB delete
//   IE   4 protocolIdentifier            1 byte   6, 17, 1 or 132
//   IE   8 sourceIPv4Address             4 bytes  inside address
//   IE   7 sourceTransportPort           2 bytes  inside port (ICMP: query identifier)
//   IE 225 postNATSourceIPv4Address      4 bytes  pool address
//   IE 227 postNAPTSourceTransportPort   2 bytes  external port (ICMP: identifier)
//
// Template 257, one port block (port-block mode; RFC 8158 §4.4, NAT44 port
// block allocation/de-allocation: the mandatory fields, then the two
// optional ones that say the block is contiguous), in this order:
//
//   IE 323 observationTimeMilliseconds   8 bytes  event time, ms since the Unix epoch
//   IE 230 natEvent                      1 byte   16 = port block allocation, 17 = de-allocation
//   IE   8 sourceIPv4Address             4 bytes  the subscriber
//   IE 225 postNATSourceIPv4Address      4 bytes  pool address
//   IE 361 portRangeStart                2 bytes  the block's first port
//   IE 362 portRangeEnd                  2 bytes  the block's last port
//   IE 363 portRangeStepSize             2 bytes  1 (consecutive ports)
//   IE 364 portRangeNumPorts             2 bytes  end - start + 1
//
// A block holds its port numbers in every protocol, so template 257 has no
// protocolIdentifier. natEvent values are IANA's "NAT Event Type" registry
// (RFC 8158 §4.1): a mapping is endpoint-independent, i.e. a BIB entry,
// hence 8/9, not the NAT44 session events 4/5. No destination is exported
// (RFC 6888 REQ-12).
//
// Messages are at most 1400 bytes. A message holds the template set when
// due, then a data set of template 256 and/or one of template 257 (mapping
// records first): 59 mapping records with the templates, 62 without; 52 /
// 55 block records. The header's sequence number counts the data records
// (of both templates) of every earlier message of this exporter (RFC 7011
// §3.1), including messages the kernel refused, so that a collector sees
// the gap. Export time is the caller's `now_ms` (the wall clock) in seconds
// when the message is sent.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace ephemera::ipfix {

inline constexpr uint16_t kVersion = 10;
inline constexpr uint16_t kTemplateSetId = 2;
inline constexpr uint16_t kNatTemplateId = 256;
inline constexpr uint16_t kPortBlockTemplateId = 257;
inline constexpr size_t kMaxMessage = 1400;
inline constexpr size_t kHeaderBytes = 16;
inline constexpr size_t kSetHeaderBytes = 4;
inline constexpr uint64_t kTemplateRefreshMs = 60'000;
inline constexpr uint32_t kTemplateRefreshMessages = 100;

// Information element ids (IANA IPFIX registry).
inline constexpr uint16_t kIeProtocolIdentifier = 4;
inline constexpr uint16_t kIeSourceTransportPort = 7;
inline constexpr uint16_t kIeSourceIPv4Address = 8;
inline constexpr uint16_t kIePostNatSourceIPv4Address = 225;
inline constexpr uint16_t kIePostNaptSourceTransportPort = 227;
inline constexpr uint16_t kIeNatEvent = 230;
inline constexpr uint16_t kIeObservationTimeMilliseconds = 323;
inline constexpr uint16_t kIePortRangeStart = 361;
inline constexpr uint16_t kIePortRangeEnd = 362;
inline constexpr uint16_t kIePortRangeStepSize = 363;
inline constexpr uint16_t kIePortRangeNumPorts = 364;

// natEvent values (IANA "NAT Event Type").
inline constexpr uint8_t kNat44BibCreate = 8;
inline constexpr uint8_t kNat44BibDelete = 9;
inline constexpr uint8_t kPortBlockAllocation = 16;
inline constexpr uint8_t kPortBlockDeallocation = 17;

// One mapping record (template 256); addresses and ports in host order.
struct NatRecord {
    uint64_t time_ms = 0;
    uint8_t nat_event = 0;
    uint8_t protocol = 0; // IP protocol number
    uint32_t src_addr = 0;
    uint16_t src_port = 0;
    uint32_t post_addr = 0;
    uint16_t post_port = 0;
};
inline constexpr size_t kRecordBytes = 8 + 1 + 1 + 4 + 2 + 4 + 2;

// One port-block record (template 257); addresses and ports in host order.
struct PortBlockRecord {
    uint64_t time_ms = 0;
    uint8_t nat_event = 0; // kPortBlockAllocation / kPortBlockDeallocation
    uint32_t src_addr = 0;  // the subscriber
    uint32_t post_addr = 0; // the pool address
    uint16_t port_start = 0;
    uint16_t port_end = 0;
    uint16_t step_size = 1;
    uint16_t num_ports = 0;
};
inline constexpr size_t kPortBlockRecordBytes = 8 + 1 + 4 + 4 + 2 + 2 + 2 + 2;

// Bytes of the template set (set header, both template records).
size_t template_set_bytes();
// How many records of one kind fit in a message of at most kMaxMessage
// bytes that holds only those.
size_t records_per_message(bool with_template);
size_t block_records_per_message(bool with_template);
// Whether a message with this many records of each kind fits in kMaxMessage.
bool message_fits(size_t nat_records, size_t block_records, bool with_template);

// One complete IPFIX message: header, the template set when with_template,
// then a data set of template 256 holding `records` and one of template 257
// holding `blocks` (none: no such set). The counts must pass message_fits().
std::vector<uint8_t> encode_message(uint32_t export_time_s, uint32_t sequence, uint32_t domain, bool with_template,
                                    std::span<const NatRecord> records, std::span<const PortBlockRecord> blocks = {});

// The UDP exporting process. Never blocks: the socket is non-blocking and a
// message the kernel does not take is counted in send_errors() and dropped.
class Exporter {
public:
    // collector: "ADDR:PORT" (IPv4). Throws std::runtime_error
    // ("log.ipfix_collector = \"...\": why") when it cannot be parsed or no
    // socket can be made; an unreachable collector is not an error here.
    Exporter(const std::string& collector, uint32_t domain);
    ~Exporter();
    Exporter(const Exporter&) = delete;
    Exporter& operator=(const Exporter&) = delete;

    // Queue a record; a message goes out as soon as one is full.
    void add(const NatRecord& r, uint64_t now_ms);
    void add_block(const PortBlockRecord& r, uint64_t now_ms);
    // Sends everything queued (in as many messages as needed).
    void flush(uint64_t now_ms);

    uint64_t messages() const { return messages_; }       // handed to the kernel
    uint64_t send_errors() const { return send_errors_; } // refused by the kernel (dropped)
    uint64_t records() const { return records_; }         // data records exported (sent or dropped), both kinds
    uint32_t sequence() const { return sequence_; }       // the next message's sequence number
    size_t pending() const { return pending_.size() + pending_blocks_.size(); }

private:
    // Makes room for one more record (sends the queue when it would not fit
    // in one message), and sends a queue that cannot grow any more.
    void before_add(size_t more_nat, size_t more_blocks, uint64_t now_ms);
    void after_add(uint64_t now_ms);
    void send(std::span<const NatRecord> records, std::span<const PortBlockRecord> blocks, bool with_template,
              uint64_t now_ms);
    bool template_due(uint64_t now_ms) const;

    int fd_ = -1;
    bool connected_ = false;
    std::vector<uint8_t> addr_; // sockaddr_in, for sendto when connect() failed
    uint32_t domain_;
    std::vector<NatRecord> pending_;
    std::vector<PortBlockRecord> pending_blocks_;
    uint32_t sequence_ = 0;
    bool template_sent_ = false;
    uint64_t template_ms_ = 0;         // when the templates were last sent
    uint32_t since_template_ = 0;      // messages sent since
    uint64_t messages_ = 0, send_errors_ = 0, records_ = 0;
};

} // namespace ephemera::ipfix
