// Test-side packet crafting and parsing, independent of the translation core.
//
// Everything here is written from the RFCs, not from ephemera's code: the
// Internet checksum is a plain RFC 1071 one's-complement sum and SCTP's CRC32c
// is computed bit by bit, so a test that verifies a translated packet with
// these functions checks the core against a second, separate implementation.
//
// Addresses are host byte order throughout this header (ip(198,51,100,1));
// net() converts for the core's network-order API.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

struct rte_mbuf;
struct rte_mempool;

namespace ephtest {

using Bytes = std::vector<uint8_t>;
using Mac = std::array<uint8_t, 6>;

// ---------------------------------------------------------------- addresses
constexpr uint32_t ip(unsigned a, unsigned b, unsigned c, unsigned d)
{
    return (uint32_t(a) << 24) | (uint32_t(b) << 16) | (uint32_t(c) << 8) | uint32_t(d);
}
constexpr uint32_t net32(uint32_t host) { return __builtin_bswap32(host); }
constexpr uint16_t net16(uint16_t host) { return __builtin_bswap16(host); }
constexpr uint32_t host32(uint32_t net) { return __builtin_bswap32(net); }
constexpr uint16_t host16(uint16_t net) { return __builtin_bswap16(net); }
std::string ip_str(uint32_t host_order);
std::string mac_str(const Mac& mac);

// --------------------------------------------------- independent checksums
// RFC 1071: 16-bit big-endian words summed into 32 bits (odd byte padded with 0).
uint32_t ones_sum(const uint8_t* data, size_t len, uint32_t acc = 0);
uint16_t ones_fold(uint32_t acc);
// The checksum to store: ~fold(sum).
uint16_t inet_checksum(const uint8_t* data, size_t len, uint32_t acc = 0);
// Sum of the TCP/UDP pseudo-header (addresses host order).
uint32_t pseudo_header_sum(uint32_t src, uint32_t dst, uint8_t proto, uint16_t l4_len);
// CRC32c (Castagnoli, reflected polynomial 0x82F63B78), bit by bit.
uint32_t crc32c(const uint8_t* data, size_t len);

// ---------------------------------------------------------------- building
inline constexpr uint16_t kEtherIpv4 = 0x0800;
inline constexpr uint16_t kEtherArp = 0x0806;
inline constexpr uint16_t kEtherIpv6 = 0x86DD;
inline constexpr uint16_t kEtherVlan = 0x8100;

inline constexpr uint8_t kFin = 0x01, kSyn = 0x02, kRst = 0x04, kPsh = 0x08, kAck = 0x10;

struct Ipv4Opts {
    uint8_t tos = 0;
    uint16_t id = 0x1234;
    uint8_t ttl = 64;
    bool df = false;
    bool mf = false;
    uint16_t frag_offset = 0; // in 8-byte units
    Bytes options;            // padded with EOL (0) to a multiple of 4
    // For malformed packets. The checksum is computed after these are applied,
    // so the header is "valid" as far as the checksum goes.
    std::optional<uint8_t> ihl;           // written as is
    std::optional<uint16_t> total_length; // written as is
    std::optional<uint8_t> version;
    bool bad_checksum = false; // stores the correct checksum xor 0x5a5a
};

// Shorthands (designated initializers would trip -Wmissing-field-initializers).
inline Ipv4Opts with_ip_options(Bytes options)
{
    Ipv4Opts o;
    o.options = std::move(options);
    return o;
}
inline Ipv4Opts with_ttl(uint8_t ttl)
{
    Ipv4Opts o;
    o.ttl = ttl;
    return o;
}

struct TcpOpts {
    uint32_t seq = 0x01020304;
    uint32_t ack = 0;
    uint16_t window = 64240;
    uint16_t urgent = 0;
    Bytes options; // padded with EOL (0) to a multiple of 4
    std::optional<uint8_t> data_offset; // written as is (malformed tests)
};

// L4 segments. TCP/UDP checksums include the pseudo-header of (src, dst).
Bytes tcp_segment(uint32_t src, uint32_t dst, uint16_t sport, uint16_t dport, uint8_t flags,
                  const Bytes& payload = {}, const TcpOpts& o = {});
Bytes udp_datagram(uint32_t src, uint32_t dst, uint16_t sport, uint16_t dport, const Bytes& payload = {},
                   bool zero_checksum = false);
Bytes icmp_message(uint8_t type, uint8_t code, uint32_t rest, const Bytes& body); // checksum filled
Bytes icmp_echo(bool reply, uint16_t id, uint16_t seq, const Bytes& payload = {});
// SCTP common header + chunks; CRC32c stored as the RFC 9260 appendix says
// (the CRC's least significant byte first, as Linux and scapy store it).
Bytes sctp_packet(uint16_t sport, uint16_t dport, uint32_t vtag, const Bytes& chunks);
// An INIT chunk (type 1) with the given initiate tag; a DATA chunk (type 0).
Bytes sctp_init_chunk(uint32_t initiate_tag);
Bytes sctp_data_chunk(uint32_t tsn, const Bytes& user_data);

// IPv4 packet around an L4 payload.
Bytes ipv4_packet(uint32_t src, uint32_t dst, uint8_t proto, const Bytes& l4, const Ipv4Opts& o = {});

// Whole IPv4 packets, the common cases.
Bytes tcp_packet(uint32_t src, uint16_t sport, uint32_t dst, uint16_t dport, uint8_t flags,
                 const Bytes& payload = {}, const Ipv4Opts& ipo = {}, const TcpOpts& tcpo = {});
Bytes udp_packet(uint32_t src, uint16_t sport, uint32_t dst, uint16_t dport, const Bytes& payload = {},
                 const Ipv4Opts& ipo = {}, bool zero_checksum = false);
Bytes echo_packet(uint32_t src, uint32_t dst, bool reply, uint16_t id, uint16_t seq,
                  const Bytes& payload = {}, const Ipv4Opts& ipo = {});
Bytes sctp_ip_packet(uint32_t src, uint16_t sport, uint32_t dst, uint16_t dport, uint32_t vtag,
                     const Bytes& chunks, const Ipv4Opts& ipo = {});
// ICMP error (type/code, 4 "rest" bytes e.g. next-hop MTU) quoting the first
// `quote` bytes of `offending` (an IPv4 packet); quote 0 quotes it whole.
Bytes icmp_error_packet(uint32_t src, uint32_t dst, uint8_t type, uint8_t code, const Bytes& offending,
                        size_t quote = 0, uint32_t rest = 0, const Ipv4Opts& ipo = {});

struct L2 {
    Mac dst{};
    Mac src{};
    std::optional<uint16_t> vlan_tci; // 802.1Q tag when set
    size_t pad_to = 0;                // Ethernet padding up to this frame length
    uint8_t pad_byte = 0xA5;          // non-zero on purpose: must not enter checksums
};
Bytes ether_frame(const L2& l2, uint16_t ethertype, const Bytes& payload);

// Payload of n recognisable bytes.
Bytes pattern(size_t n, uint8_t seed = 0x30);

// ----------------------------------------------------------------- parsing
struct Parsed {
    // Ethernet
    Mac eth_dst{}, eth_src{};
    std::optional<uint16_t> vlan_tci;
    uint16_t ethertype = 0;
    size_t l3_offset = 0;
    // IPv4
    uint8_t version = 0, ihl = 0, tos = 0;
    uint16_t total_length = 0, id = 0;
    bool df = false, mf = false;
    uint16_t frag_offset = 0;
    uint8_t ttl = 0, proto = 0;
    uint16_t ip_checksum = 0;
    uint32_t src = 0, dst = 0; // host order
    Bytes ip_packet;           // the IPv4 packet: total length (or what is present, embedded)
    Bytes ip_header;           // ihl*4 bytes, options included
    Bytes options;
    Bytes l4;                  // from the L4 header to total length (or what is present, embedded)
    bool l4_complete = false;  // l4 holds total_length - ihl*4 bytes
    // TCP / UDP / SCTP
    uint16_t sport = 0, dport = 0;
    uint32_t seq = 0, ack = 0;
    uint8_t tcp_flags = 0, data_offset = 0;
    uint16_t window = 0, urgent = 0;
    uint16_t udp_length = 0;
    uint16_t l4_checksum = 0; // TCP, UDP, ICMP (when present)
    bool l4_checksum_present = false;
    uint32_t sctp_vtag = 0;
    // ICMP
    uint8_t icmp_type = 0, icmp_code = 0;
    uint16_t icmp_id = 0, icmp_seq = 0;
    uint32_t icmp_rest = 0;
    std::shared_ptr<Parsed> embedded; // the offending packet an ICMP error quotes
    Bytes payload; // after the L4 header (TCP data offset, UDP 8, ICMP 8, SCTP 12)
};

// Parses an Ethernet frame; ADD_FAILURE()s and returns what it got on anything
// it cannot parse (the translated packets are expected to be well-formed).
Parsed parse_frame(const Bytes& frame);
// Parses an IPv4 packet; `embedded` allows the data to stop short of total length.
Parsed parse_ipv4(const Bytes& ip, bool embedded = false);

// Full recomputations, each returning why it failed.
::testing::AssertionResult ip_checksum_ok(const Parsed& p);
// TCP, UDP (non-zero), ICMP, SCTP over the whole L4 (requires l4_complete).
::testing::AssertionResult l4_checksum_ok(const Parsed& p);
// Outer IPv4 + L4, and for ICMP errors the embedded IPv4 header checksum and,
// when the quote holds the whole offending packet, its L4 checksum too.
::testing::AssertionResult checksums_ok(const Parsed& p);

// ------------------------------------------------------------------ mbufs
inline constexpr unsigned kMbufPoolSize = 1023;
// The test binary's mbuf pool (cache size 0, so rte_mempool_avail_count is exact).
rte_mempool* mbuf_pool();
unsigned mbufs_available();
rte_mbuf* make_mbuf(const Bytes& frame);
// The frame in a chain of mbufs: the first holds first_len bytes, the next
// ones the rest, at most `rest_len` bytes each (as a reassembled datagram).
rte_mbuf* make_chained_mbuf(const Bytes& frame, size_t first_len, size_t rest_len = 1024);
Bytes mbuf_bytes(const rte_mbuf* m);

} // namespace ephtest
