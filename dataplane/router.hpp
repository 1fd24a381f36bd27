// The gateway's own duties as a router: ARP for its addresses, ARP requests
// for the next hop, ICMP echo replies, ICMP time exceeded. Not translation.
#pragma once

#include <cstdint>

#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

namespace ephemera {

class Pool;
class Neighbor;

namespace router {

// Answers an ARP request for `own` (or, when `pool` is set, for any pool
// address) by turning m into the reply: returns true, send m back out the same
// port. Learns `learn`'s MAC from any ARP it sends. Returns false when m is
// to be freed.
bool arp_input(rte_mbuf* m, uint32_t own_net, const Pool* pool, const rte_ether_addr& own_mac, Neighbor* learn,
               uint64_t tsc);

// A broadcast who-has for target, from (mac, addr). Null when out of mbufs.
rte_mbuf* arp_request(rte_mempool* mp, const rte_ether_addr& mac, uint32_t addr_net, uint32_t target_net);

// Turns a valid echo request addressed to us into its reply in place (true),
// or says it is not one (false: free it).
bool icmp_echo_reply(rte_mbuf* m, uint16_t l3);

// A new ICMP error (type/code) from `src_net` back to the sender of m, quoting
// m's IP header and the start of its payload (RFC 1812 §4.3.2.3: up to 576
// bytes in all). Null when m is not worth an error (not IPv4, an ICMP error,
// a fragment but the first) or no mbuf is free. next_hop_mtu goes into
// "fragmentation needed" (3/4) errors (RFC 1191).
rte_mbuf* icmp_error(rte_mempool* mp, const rte_mbuf* m, uint16_t l3, uint8_t type, uint8_t code, uint32_t src_net,
                     const rte_ether_addr& src_mac, uint16_t next_hop_mtu = 0);
// The same about an IPv4 packet of which `avail` bytes are at `packet` (a
// copy kept after its mbuf was freed), sent to `to_mac`.
rte_mbuf* icmp_error_quoting(rte_mempool* mp, const uint8_t* packet, unsigned avail, const rte_ether_addr& to_mac,
                             uint8_t type, uint8_t code, uint32_t src_net, const rte_ether_addr& src_mac,
                             uint16_t next_hop_mtu = 0);

// A 20-byte IPv4 header for a packet the gateway originates (TTL 64, no
// options, checksum filled in); total_len counts the header.
void write_ipv4_header(rte_ipv4_hdr* ip, uint8_t proto, uint32_t src_net, uint32_t dst_net, uint16_t total_len);

// Token bucket for generated ICMP errors (RFC 1812 §4.3.2.8), per worker.
class RateLimit {
public:
    RateLimit(uint32_t per_second, uint64_t tsc_hz);
    bool allow(uint64_t tsc);

private:
    uint64_t tokens_, capacity_, tsc_per_token_, last_;
};

} // namespace router
} // namespace ephemera
