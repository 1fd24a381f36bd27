// Keys of the translation tables. Addresses and ports are kept in network byte
// order exactly as they appear in the packet, so the hot path never swaps bytes.
#pragma once

#include <cstdint>

namespace ephemera {

// The protocols that own a port space. Each has its own partitions and mappings
// (RFC 7857 §5/§6: EIM and EIF are protocol-dependent).
enum class L4 : uint8_t { Tcp = 0, Udp = 1, Icmp = 2, Sctp = 3 };
inline constexpr unsigned kL4Count = 4;

inline constexpr uint8_t kIpProtoIcmp = 1;
inline constexpr uint8_t kIpProtoTcp = 6;
inline constexpr uint8_t kIpProtoUdp = 17;
inline constexpr uint8_t kIpProtoSctp = 132;

// Maps an IPv4 protocol number to its port space; returns false for the rest.
inline bool l4_from_ip_proto(uint8_t ip_proto, L4& out)
{
    switch (ip_proto) {
    case kIpProtoTcp: out = L4::Tcp; return true;
    case kIpProtoUdp: out = L4::Udp; return true;
    case kIpProtoIcmp: out = L4::Icmp; return true;
    case kIpProtoSctp: out = L4::Sctp; return true;
    default: return false;
    }
}

const char* to_string(L4 l4);

// The binding's inside half: (protocol, inside address, inside port). For ICMP
// queries the "port" is the echo identifier (RFC 5508 REQ-1).
struct MappingKey {
    uint32_t addr;  // network order
    uint16_t port;  // network order
    uint8_t l4;     // L4
    uint8_t pad = 0;
};
static_assert(sizeof(MappingKey) == 8);

// A session under a mapping beyond its first: (mapping, remote address, remote port).
struct SessionKey {
    uint32_t mapping;
    uint32_t remote_addr; // network order
    uint16_t remote_port; // network order
    uint16_t pad = 0;
};
static_assert(sizeof(SessionKey) == 12);

} // namespace ephemera
