// One's-complement arithmetic for incremental checksum updates (RFC 1624).
//
// Every value here is taken exactly as it sits in the packet (network byte
// order loaded as a native integer). The one's-complement sum does not care
// about byte order (RFC 1071 §2(B)), so deltas computed from such values apply
// directly to the checksum field as stored: no byte swaps on the hot path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include <rte_byteorder.h>
#include <rte_hash_crc.h>

namespace ephemera::csum {

inline uint16_t fold(uint32_t sum)
{
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    return uint16_t(sum);
}

// Two 16-bit values sum to at most 0x1fffe, which one end-around carry brings
// to at most 0xffff: half of fold(), on the per-packet path.
inline uint16_t fold2(uint32_t sum_of_two) { return uint16_t((sum_of_two & 0xffff) + (sum_of_two >> 16)); }

inline uint16_t add(uint16_t a, uint16_t b) { return fold2(uint32_t(a) + b); }

// The delta that replacing `from` by `to` adds to a one's-complement sum.
inline uint16_t delta16(uint16_t from, uint16_t to) { return fold2(uint32_t(uint16_t(~from)) + to); }
inline uint16_t delta32(uint32_t from, uint32_t to)
{
    const uint32_t nf = ~from;
    return fold((nf & 0xffff) + (nf >> 16) + (to & 0xffff) + (to >> 16));
}

// The delta that undoes `d`.
inline uint16_t negate(uint16_t d) { return uint16_t(~d); }

// RFC 1624 eqn. 3: HC' = ~(~HC + m_delta).
inline uint16_t apply(uint16_t checksum, uint16_t delta) { return uint16_t(~fold2(uint32_t(uint16_t(~checksum)) + delta)); }

// UDP: zero means "no checksum" and stays so; a computed zero is sent as 0xffff.
inline uint16_t apply_udp(uint16_t checksum, uint16_t delta)
{
    if (checksum == 0) return 0;
    const uint16_t c = apply(checksum, delta);
    return c == 0 ? 0xffff : c;
}

// TTL 1 lower: the header word (TTL, protocol) drops by 0x0100 in network order.
inline const uint16_t kTtlDecrement = rte_cpu_to_be_16(0xfeff);

// Full checksum over a buffer (slow paths: ICMP errors, verification).
inline uint16_t sum(const void* data, size_t len, uint32_t acc = 0)
{
    const auto* p = static_cast<const uint8_t*>(data);
    for (; len >= 2; p += 2, len -= 2) {
        uint16_t w;
        std::memcpy(&w, p, 2);
        acc += w;
    }
    if (len) {
        uint16_t w = 0;
        std::memcpy(&w, p, 1);
        acc += w;
    }
    return fold(acc);
}
// An IPv4 header: 20 bytes without options is the case worth unrolling.
inline bool verify_ipv4_header(const void* hdr, size_t len)
{
    if (len != 20) return sum(hdr, len) == 0xffff;
    uint32_t w[5];
    std::memcpy(w, hdr, 20);
    uint64_t acc = uint64_t(w[0]) + w[1] + w[2] + w[3] + w[4];
    acc = (acc & 0xffffffff) + (acc >> 32);
    acc = (acc & 0xffffffff) + (acc >> 32);
    acc = (acc & 0xffff) + (acc >> 16);
    return fold(uint32_t(acc)) == 0xffff;
}
inline uint16_t compute(const void* data, size_t len) { return uint16_t(~sum(data, len)); }
inline bool verify(const void* data, size_t len) { return sum(data, len) == 0xffff; }

// SCTP (RFC 9260 App. B): CRC32c over the packet with the checksum field zero,
// inverted, stored little-endian. rte_hash_crc is CRC32c (SSE4.2 when present).
inline void sctp_recompute(uint8_t* sctp, size_t len)
{
    std::memset(sctp + 8, 0, 4);
    const uint32_t crc = rte_cpu_to_le_32(~rte_hash_crc(sctp, uint32_t(len), 0xffffffffu));
    std::memcpy(sctp + 8, &crc, 4);
}

} // namespace ephemera::csum
