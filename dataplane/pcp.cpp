#include "pcp.hpp"

#include <algorithm>
#include <cstring>

#include <rte_byteorder.h>
#include <rte_ip.h>

namespace ephemera::pcp {

namespace {

constexpr size_t kHeader = 24;
constexpr size_t kMapPayload = 36;
constexpr uint32_t kLongError = 1800; // seconds (RFC 6887 §7.4: 30 minutes)
constexpr uint32_t kShortError = 30;

uint32_t get32(const uint8_t* p) { uint32_t v; std::memcpy(&v, p, 4); return rte_be_to_cpu_32(v); }
uint16_t get16(const uint8_t* p) { uint16_t v; std::memcpy(&v, p, 2); return rte_be_to_cpu_16(v); }
void put32(uint8_t* p, uint32_t host) { const uint32_t v = rte_cpu_to_be_32(host); std::memcpy(p, &v, 4); }
void put16(uint8_t* p, uint16_t host) { const uint16_t v = rte_cpu_to_be_16(host); std::memcpy(p, &v, 2); }

constexpr uint8_t kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

// An IPv4-mapped IPv6 address: the IPv4 address (network order) in `addr`.
bool mapped_ipv4(const uint8_t* p, uint32_t& addr)
{
    if (std::memcmp(p, kMappedPrefix, sizeof kMappedPrefix) != 0) return false;
    std::memcpy(&addr, p + 12, 4);
    return true;
}
void put_mapped(uint8_t* p, uint32_t addr_net)
{
    std::memcpy(p, kMappedPrefix, sizeof kMappedPrefix);
    std::memcpy(p + 12, &addr_net, 4);
}

uint32_t lifetime_of(uint8_t result)
{
    return result == kNoResources || result == kUserExQuota || result == kNetworkFailure ||
                   result == kCannotProvideExternal
               ? kShortError
               : kLongError;
}

// The response as a copy of the request (up to kMaxMessage) with the header
// turned round; `parsed`: the request was understood, so the reserved bytes
// are zero rather than the end of the client address (RFC 6887 §7.2).
size_t respond(const uint8_t* req, size_t len, uint8_t result, uint32_t lifetime, uint32_t epoch, bool parsed,
               uint8_t* resp)
{
    const size_t n = std::max(kHeader, (std::min(len, kMaxMessage) + 3) & ~size_t(3)); // whole 32-bit words
    std::memset(resp, 0, n);
    std::memcpy(resp, req, std::min(len, n));
    resp[0] = kVersion;
    resp[1] = uint8_t(0x80 | (req[1] & 0x7f));
    resp[2] = 0;
    resp[3] = result;
    put32(resp + 4, lifetime);
    put32(resp + 8, epoch);
    if (parsed) std::memset(resp + 12, 0, 12);
    return n;
}

struct MapOptions {
    bool prefer_failure = false;
    uint8_t error = kSuccess;
};

// Options from `p` to `end`: mandatory ones (codes 0-127) must be understood.
MapOptions read_options(const uint8_t* p, const uint8_t* end, bool map)
{
    MapOptions o;
    while (p < end) {
        if (end - p < 4) return {false, kMalformedOption};
        const uint8_t code = p[0];
        const size_t length = get16(p + 2);
        const size_t padded = (length + 3) & ~size_t(3);
        if (size_t(end - p) - 4 < padded) return {false, kMalformedOption};
        if (map && code == kPreferFailure) {
            if (length != 0 || o.prefer_failure) return {false, kMalformedOption};
            o.prefer_failure = true;
        } else if (code < 128) {
            return {false, kUnsuppOption}; // THIRD_PARTY, FILTER, and what we do not know
        }
        p += 4 + padded;
    }
    return o;
}

bool l4_of_protocol(uint8_t proto, L4& l4)
{
    switch (proto) {
    case IPPROTO_TCP: l4 = L4::Tcp; return true;
    case IPPROTO_UDP: l4 = L4::Udp; return true;
    case IPPROTO_SCTP: l4 = L4::Sctp; return true;
    default: return false;
    }
}

uint8_t result_of(Translator::ExplicitResult r)
{
    switch (r) {
    case Translator::ExplicitResult::Ok: return kSuccess;
    case Translator::ExplicitResult::NotAuthorized: return kNotAuthorized;
    case Translator::ExplicitResult::NoResources: return kNoResources;
    case Translator::ExplicitResult::UserExQuota: return kUserExQuota;
    case Translator::ExplicitResult::CannotProvideExternal: return kCannotProvideExternal;
    }
    return kNoResources;
}

} // namespace

size_t answer(const uint8_t* req, size_t len, uint32_t client, const rte_ether_addr& client_mac, Translator& nat,
              Tick now, uint32_t epoch, const Limits& limits, uint8_t* resp, Outcome& outcome)
{
    outcome = Outcome{};
    // RFC 6887 §8.2: too short to know what it is, or a response: dropped.
    if (len < 2 || (req[1] & 0x80)) return 0;
    outcome.opcode = req[1] & 0x7f;
    const auto reply = [&](uint8_t result, uint32_t lifetime, bool parsed, size_t upto) {
        outcome.answered = true;
        outcome.result = result;
        return respond(req, std::min(len, upto), result, lifetime, epoch, parsed, resp);
    };
    if (req[0] != kVersion) return reply(kUnsuppVersion, kLongError, false, kHeader); // 2 is all we speak
    if (len < kHeader) return 0;
    if (len > kMaxMessage || len % 4 != 0) return reply(kMalformedRequest, kLongError, false, kMaxMessage);
    uint32_t claimed = 0;
    if (!mapped_ipv4(req + 8, claimed) || claimed != client)
        return reply(kAddressMismatch, kLongError, true, len); // a NAT between client and server

    if (outcome.opcode == kAnnounce) {
        const MapOptions o = read_options(req + kHeader, req + len, false);
        if (o.error != kSuccess) return reply(o.error, lifetime_of(o.error), true, len);
        return reply(kSuccess, 0, true, kHeader);
    }
    if (outcome.opcode != kMap) return reply(kUnsuppOpcode, kLongError, true, len);
    if (len < kHeader + kMapPayload) return reply(kMalformedRequest, kLongError, false, len);

    const uint8_t* map = req + kHeader;
    const MapOptions o = read_options(map + kMapPayload, req + len, true);
    if (o.error != kSuccess) return reply(o.error, lifetime_of(o.error), true, len);
    const uint32_t requested = get32(req + 4);
    const uint8_t proto = map[12];
    const uint16_t internal_port = get16(map + 16);
    L4 l4 = L4::Udp;
    if (proto == 0 && internal_port != 0) return reply(kMalformedRequest, kLongError, true, len);
    // "All protocols" and "all ports" mappings are not made here.
    if (!l4_of_protocol(proto, l4) || internal_port == 0) return reply(kUnsuppProtocol, kLongError, true, len);
    if (o.prefer_failure && requested == 0) return reply(kMalformedOption, kLongError, true, len);

    Translator::ExplicitRequest r;
    r.in_addr = client;
    r.in_port = rte_cpu_to_be_16(internal_port);
    r.l4 = l4;
    r.lifetime = requested == 0 ? 0 : std::clamp<uint32_t>(requested, limits.min_lifetime, limits.max_lifetime);
    r.prefer_failure = o.prefer_failure;
    if (requested != 0) { // a delete's suggestions are to be ignored
        r.suggested_port = get16(map + 18);
        uint32_t suggested = 0;
        if (mapped_ipv4(map + 20, suggested)) r.suggested_addr = suggested;
    }
    std::memcpy(r.nonce.data(), map, r.nonce.size());
    r.inside_mac = client_mac;
    Translator::ExplicitMapping granted;
    const uint8_t result = result_of(nat.map_explicit(r, now, granted));
    if (result != kSuccess) {
        const uint32_t lifetime = result == kNotAuthorized && granted.lifetime != 0 ? granted.lifetime
                                                                                     : lifetime_of(result);
        return reply(result, lifetime, true, len);
    }
    const size_t n = reply(kSuccess, granted.lifetime, true, kHeader + kMapPayload);
    if (requested != 0) { // a delete echoes the suggestions (RFC 6887 erratum 3621)
        put16(resp + kHeader + 18, granted.ext_port);
        put_mapped(resp + kHeader + 20, granted.ext_addr);
    }
    if (!o.prefer_failure) return n;
    const uint8_t echo[4] = {kPreferFailure, 0, 0, 0}; // processed, so returned
    std::memcpy(resp + n, echo, sizeof echo);
    return n + sizeof echo;
}

} // namespace ephemera::pcp
