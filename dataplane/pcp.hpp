// A PCP server (RFC 6887) for the subscribers, RFC 6888 REQ-9's mapping-control
// protocol: MAP requests make, refresh and delete explicit mappings through the
// subscriber's own worker's Translator; ANNOUNCE is answered; PEER and every
// other opcode get UNSUPP_OPCODE; of the options, PREFER_FAILURE is honoured,
// THIRD_PARTY and FILTER are refused (UNSUPP_OPTION), optional ones ignored.
// IPv4 only: addresses on the wire are IPv4-mapped IPv6 (::ffff:a.b.c.d).
#pragma once

#include <cstddef>
#include <cstdint>

#include <rte_ether.h>

#include "ephemera/translator.hpp"

namespace ephemera::pcp {

inline constexpr uint16_t kServerPort = 5351;
inline constexpr size_t kMaxMessage = 1100; // UDP payload, requests and responses
inline constexpr uint8_t kVersion = 2;

enum Opcode : uint8_t { kAnnounce = 0, kMap = 1, kPeer = 2 };
enum Result : uint8_t { // RFC 6887 §7.4
    kSuccess = 0, kUnsuppVersion = 1, kNotAuthorized = 2, kMalformedRequest = 3, kUnsuppOpcode = 4,
    kUnsuppOption = 5, kMalformedOption = 6, kNetworkFailure = 7, kNoResources = 8, kUnsuppProtocol = 9,
    kUserExQuota = 10, kCannotProvideExternal = 11, kAddressMismatch = 12,
};
enum Option : uint8_t { kThirdParty = 1, kPreferFailure = 2, kFilter = 3 };

struct Limits {
    Tick min_lifetime = 120;   // RFC 6887 §15: at least 120 s SHOULD be granted
    Tick max_lifetime = 86400;
};

// What a request did, for the counters.
struct Outcome {
    bool answered = false; // false: dropped silently (too short, a response, ...)
    uint8_t result = kSuccess;
    uint8_t opcode = 0;
};

// Answers the PCP request req[0..len) that `client` (network order; its MAC
// `client_mac`) sent to the server port: writes the response into resp (room
// for kMaxMessage bytes) and returns its length, 0 when the request is to be
// dropped silently. `epoch` is the server's epoch time (seconds since its
// mapping state began). MAP requests act on `nat`, which must be the worker
// owning the client.
size_t answer(const uint8_t* req, size_t len, uint32_t client, const rte_ether_addr& client_mac, Translator& nat,
              Tick now, uint32_t epoch, const Limits& limits, uint8_t* resp, Outcome& outcome);

} // namespace ephemera::pcp
