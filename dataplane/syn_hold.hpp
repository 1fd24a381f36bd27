// Unsolicited inbound TCP SYNs, held for RFC 5382 REQ-4: a NAT must not answer
// one for at least 6 seconds; if the inside host opens that very connection
// meanwhile (simultaneous open), the SYN is dropped silently; otherwise it
// should be answered with ICMP port unreachable (3/3).
//
// A SYN waits here as a copy of its first bytes, enough to quote in the ICMP
// error, not as an mbuf: a SYN scan of the pool cannot drain the mbuf pool.
// Every SYN waits the same time, so arrival order is due order and a FIFO is
// the whole schedule. When full, a new SYN is dropped silently, counted: the
// MUST is the wait, the answer only a SHOULD, so none is ever answered early.
#pragma once

#include <cstdint>
#include <cstring>

#include <rte_byteorder.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_tcp.h>

#include "ephemera/dpdk_array.hpp"
#include "ephemera/translator.hpp"

namespace ephemera {

class SynHold {
public:
    // The IPv4 header (options included) and the TCP header (with options)
    // fit: 60 + 52; RFC 792 asks for the IP header and 8 bytes.
    static constexpr unsigned kQuote = 112;
    struct Entry {
        uint64_t due;         // TSC
        rte_ether_addr from;  // the frame's source: the answer goes there
        uint8_t len;          // bytes of ip[] held
        uint8_t pad;
        uint8_t ip[kQuote];   // the SYN from its IPv4 header on
    };
    static_assert(sizeof(Entry) == 128);

    // capacity: SYNs held at once (rounded up to a power of two).
    SynHold(uint32_t capacity, int socket);

    // Copies the SYN m (IPv4 header at l3, already validated by the
    // translator), to be due at `due`. False when full.
    bool hold(const rte_mbuf* m, uint16_t l3, uint64_t due);

    // Takes up to `budget` SYNs due by tsc, oldest first: each one whose
    // connection the inside has since opened through `nat` is dropped (counted
    // in superseded), each other goes to answer(const Entry&). Returns how
    // many were taken.
    template <typename Answer>
    unsigned take_due(uint64_t tsc, unsigned budget, const Translator& nat, Tick now, Answer&& answer)
    {
        unsigned taken = 0;
        for (; taken < budget && head_ != tail_; ++taken) {
            const Entry& e = entries_[head_ & mask_];
            if (e.due > tsc) break;
            if (opened_from_inside(e, nat, now)) ++superseded_;
            else answer(e);
            ++head_;
        }
        return taken;
    }

    uint32_t size() const { return tail_ - head_; }
    uint32_t capacity() const { return mask_ + 1; }
    uint64_t superseded() const { return superseded_; }

    // The held SYN's endpoints (network order): the remote sender, and the
    // pool address and port it was sent to.
    struct Endpoints {
        uint32_t remote_addr, pool_addr;
        uint16_t remote_port, pool_port;
    };
    static Endpoints endpoints_of(const Entry& e)
    {
        const auto* ip = reinterpret_cast<const rte_ipv4_hdr*>(e.ip);
        const unsigned ihl = (ip->version_ihl & 0x0f) * 4u;
        uint16_t ports[2]; // source, destination: hold() kept at least ihl + 20 bytes
        std::memcpy(ports, e.ip + ihl, sizeof ports);
        return Endpoints{ip->src_addr, ip->dst_addr, ports[0], ports[1]};
    }

private:
    static bool opened_from_inside(const Entry& e, const Translator& nat, Tick now)
    {
        const Endpoints p = endpoints_of(e);
        return nat.tcp_opened_from_inside(p.pool_addr, p.pool_port, p.remote_addr, p.remote_port, now);
    }

    DpdkArray<Entry> entries_;
    uint32_t mask_;
    uint32_t head_ = 0, tail_ = 0; // free-running; entries [head_, tail_) are held
    uint64_t superseded_ = 0;
};

} // namespace ephemera
