// IPv4 reassembly for the gateway (RFC 4787 REQ-14: a NAT must accept
// fragments, in and out of order). A worker gives every fragment it receives
// to its own table (DPDK's rte_ip_frag) before steering: the whole datagram,
// in a chain of mbufs, then goes to the translator like any packet, and is
// fragmented again on the way out if it is bigger than that link's MTU.
//
// Against fragment floods the table is bounded (slots datagrams at once, at
// most RTE_LIBRTE_IP_FRAG_MAX_FRAG fragments each, so slots * 8 mbufs held at
// most) and an incomplete datagram is dropped after the timeout; fragments
// that do not fit are dropped and counted, never waited for.
#pragma once

#include <cstdint>

#include <rte_ip_frag.h>
#include <rte_mbuf.h>

namespace ephemera {

class Reassembly {
public:
    // slots: datagrams being reassembled at once; timeout in TSC cycles.
    Reassembly(uint32_t slots, uint64_t timeout_tsc, int socket);
    ~Reassembly();
    Reassembly(const Reassembly&) = delete;
    Reassembly& operator=(const Reassembly&) = delete;

    static bool is_fragment(const rte_ipv4_hdr* ip)
    {
        return (ip->fragment_offset & rte_cpu_to_be_16(RTE_IPV4_HDR_MF_FLAG | RTE_IPV4_HDR_OFFSET_MASK)) != 0;
    }

    // Takes the fragment m (its IPv4 header at l3). Returns the whole datagram
    // (header checksum recomputed, its L2 header the first fragment's) once
    // every fragment is in, else nullptr: m is held, or dropped and counted
    // (also when not well_formed).
    rte_mbuf* add(rte_mbuf* m, uint16_t l3, uint64_t tsc);
    // Drops the datagrams whose time is up (bounded work: the oldest first).
    void expire(uint64_t tsc);

    uint64_t fragments() const { return fragments_; }     // received
    uint64_t reassembled() const { return reassembled_; } // datagrams made whole
    uint64_t dropped() const { return dropped_; }         // fragments freed unused: timeout, no room, bad

    // A fragment whose header rte_ip_frag may use: version 4, IHL 5-15 and
    // within the total length, the total length within the `available` bytes
    // from the header on, a payload (a multiple of 8 but in the last), the
    // datagram within 65535 bytes, a valid header checksum.
    static bool well_formed(const rte_ipv4_hdr* ip, uint32_t available);

private:
    void free_dropped();

    rte_ip_frag_tbl* table_ = nullptr;
    rte_ip_frag_death_row death_row_{};
    uint64_t fragments_ = 0, reassembled_ = 0, dropped_ = 0;
};

} // namespace ephemera
