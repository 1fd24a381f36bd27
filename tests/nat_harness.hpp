// One translator under test, fed single frames or bursts as real mbufs, with
// what each call did to the counters. Time is a FakeClock the test moves.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <rte_ring.h>
#include <rte_ring_elem.h>

#include "ephemera/clock.hpp"
#include "ephemera/config.hpp"
#include "ephemera/port_allocator.hpp"
#include "ephemera/stats.hpp"
#include "ephemera/translator.hpp"
#include "packet_builder.hpp"

namespace ephtest {

using ephemera::Dir;
using ephemera::Drop;
using ephemera::L4;
using ephemera::Tick;

// Time is whole-second Ticks, and a packet seen at tick t arrived somewhere
// inside second t. So a session refreshed at tick t with timeout T is alive
// through tick t+T and gone at t+T+1: it lives at least T real seconds (RFC
// 4787 REQ-5, RFC 5382 REQ-5 and RFC 5508 REQ-2 give minimums) and at most
// one more. Tests assert both sides of that boundary.
constexpr Tick last_alive(Tick t, Tick timeout) { return t + timeout; }
constexpr Tick gone_at(Tick t, Tick timeout) { return t + timeout + 1; }
// Likewise a port released at tick r with quarantine Q (RFC 6888 REQ-8) is
// still quarantined at r+Q and free at r+Q+1; a quarantine of 0 is none.
constexpr Tick last_quarantined(Tick r, Tick quarantine) { return r + quarantine; }
constexpr Tick free_at(Tick r, Tick quarantine) { return quarantine == 0 ? r : r + quarantine + 1; }

// Link layer of the lab, as the translator is told it.
inline constexpr Mac kGwInsideMac{0x02, 0x00, 0x00, 0x00, 0x00, 0x01};  // set_inside_l2 src
inline constexpr Mac kGwOutsideMac{0x02, 0x00, 0x00, 0x00, 0x01, 0x01}; // set_outside_l2 src
inline constexpr Mac kNextHopMac{0x02, 0x00, 0x00, 0x00, 0x01, 0x02};   // set_outside_l2 next hop
inline constexpr Mac kUpstreamMac{0x02, 0x00, 0x00, 0x00, 0x02, 0x02};  // source of inbound frames
// Each subscriber's frames come from a MAC derived from its address.
Mac subscriber_mac(uint32_t inside_addr);

// Addresses of the lab (host order).
inline constexpr uint32_t kPoolNet = ip(198, 51, 100, 0); // 198.51.100.0/28
inline constexpr uint32_t kSub1 = ip(100, 64, 0, 2);
inline constexpr uint32_t kSub2 = ip(100, 64, 0, 3);
inline constexpr uint32_t kRemote1 = ip(203, 0, 113, 10);
inline constexpr uint32_t kRemote2 = ip(203, 0, 113, 20);
inline constexpr uint32_t kRouter = ip(203, 0, 113, 254); // an unrelated router sending errors

// A small deterministic configuration: one pool address (198.51.100.1),
// ports 50000-50015, ascending FIFO, small tables.
ephemera::NatConfig small_config();
// The whole /28 as the pool.
std::vector<uint32_t> pool_28();

// What one translator call did.
struct Outcome {
    Dir dir = Dir::Out;
    std::optional<Bytes> frame;     // the forwarded frame
    std::vector<Drop> drops;        // reasons whose counter rose, once per increment
    uint64_t rx = 0, tx = 0;        // counter deltas
    uint64_t icmp_errors = 0;       // icmp_errors[dir] delta
    Parsed parsed() const;          // parse_frame(*frame), a failure when none
};

::testing::AssertionResult forwarded(const Outcome& o);
::testing::AssertionResult dropped(const Outcome& o, Drop why);
std::string describe(const Outcome& o);

class Nat {
public:
    explicit Nat(const ephemera::NatConfig& cfg, unsigned worker = 0, Tick start = 1000);
    Nat(const Nat&) = delete;
    Nat& operator=(const Nat&) = delete;

    ephemera::NatConfig cfg;
    ephemera::PortLayout layout;
    ephemera::Translator tr;
    ephemera::FakeClock clock;

    Tick now() const { return clock.now(); }
    void advance(Tick s) { clock.advance(s); }
    void set_time(Tick t) { clock.set(t); }

    // Frames as they arrive on each side: inside from the subscriber's MAC
    // (derived from the IPv4 source) to the gateway; outside from the upstream
    // router to the gateway.
    static Bytes inside_frame(const Bytes& ip_packet, std::optional<uint16_t> vlan = {}, size_t pad_to = 0);
    static Bytes outside_frame(const Bytes& ip_packet, std::optional<uint16_t> vlan = {}, size_t pad_to = 0);

    // One frame through the translator at now().
    Outcome out_frame(const Bytes& frame);
    Outcome in_frame(const Bytes& frame);
    // One IPv4 packet wrapped by inside_frame / outside_frame.
    Outcome out(const Bytes& ip_packet) { return out_frame(inside_frame(ip_packet)); }
    Outcome in(const Bytes& ip_packet) { return in_frame(outside_frame(ip_packet)); }
    // Inbound as handed over by another worker, with the mapping index it read.
    Outcome in_carried(const Bytes& ip_packet, uint32_t carried)
    {
        return run(Dir::In, make_mbuf(outside_frame(ip_packet)), &carried);
    }
    // As received by a NIC that left its IPv4 checksum verdict in ol_flags.
    Outcome out_flagged(const Bytes& ip_packet, uint64_t ol_flags)
    {
        rte_mbuf* m = make_mbuf(inside_frame(ip_packet));
        m->ol_flags = ol_flags;
        return run(Dir::Out, m);
    }
    Outcome in_flagged(const Bytes& ip_packet, uint64_t ol_flags)
    {
        rte_mbuf* m = make_mbuf(outside_frame(ip_packet));
        m->ol_flags = ol_flags;
        return run(Dir::In, m);
    }
    // The same in a chain of mbufs whose first holds first_len bytes (a datagram the gateway reassembled).
    Outcome out_chained(const Bytes& ip_packet, size_t first_len)
    {
        return run(Dir::Out, make_chained_mbuf(inside_frame(ip_packet), first_len));
    }
    Outcome in_chained(const Bytes& ip_packet, size_t first_len)
    {
        return run(Dir::In, make_chained_mbuf(outside_frame(ip_packet), first_len));
    }

    // Opens a UDP flow X:x -> Y:y; returns the external port it left with, 0 when dropped.
    uint16_t open_udp(uint32_t inside, uint16_t port, uint32_t remote = kRemote1, uint16_t rport = 5000);

    // A burst; returns the forwarded frames in the order the translator left them.
    std::vector<Bytes> burst(Dir dir, const std::vector<Bytes>& frames);

    // The pool address (host order) a subscriber is paired with.
    uint32_t paired_addr(uint32_t inside) const;
    // The nth subscriber in 100.64.0.0/16 (from 100.64.0.2 on) paired with pool index `idx`.
    uint32_t subscriber_paired_with(unsigned idx, unsigned nth = 0) const;

    // The mapping index (or kNoMapping) and its external endpoint (host order).
    uint32_t mapping_of(uint32_t inside, uint16_t port, L4 l4) const { return tr.mapping_of(net32(inside), port, l4); }
    uint16_t ext_port_of(uint32_t inside, uint16_t port, L4 l4) const;
    uint32_t ext_addr_of(uint32_t inside, uint16_t port, L4 l4) const;
    bool is_live(uint32_t inside, uint16_t port, L4 l4) const;

    // free + quarantined + in use == size, after promote(now).
    ::testing::AssertionResult partition_consistent(unsigned pool_index, L4 l4);

private:
    Outcome run(Dir dir, const Bytes& frame) { return run(dir, make_mbuf(frame)); }
    Outcome run(Dir dir, rte_mbuf* m, const uint32_t* carried = nullptr);
};

// Asserts (EXPECT_*) that `got` is `sent` translated: outbound, the source
// address and port (echo identifier for ICMP) became new_addr:new_port;
// inbound, the destination did. Everything else is as sent, TTL one less,
// MACs as the translator was told, VLAN tag kept, every checksum valid
// (UDP zero checksum allowed only when it was zero on the way in).
void expect_rewritten(const Parsed& sent, const Parsed& got, Dir dir, uint32_t new_addr, uint16_t new_port);

// The events a translator put on its ring, in order.
class EventRing {
public:
    explicit EventRing(ephemera::Translator& tr)
    {
        static unsigned serial = 0;
        ring_ = rte_ring_create_elem(("harness_ev" + std::to_string(serial++)).c_str(), sizeof(ephemera::MappingEvent), 1024,
                                     SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ);
        tr.set_event_ring(ring_);
    }
    ~EventRing() { rte_ring_free(ring_); }
    std::vector<ephemera::MappingEvent> take()
    {
        std::vector<ephemera::MappingEvent> out;
        ephemera::MappingEvent e;
        while (rte_ring_sc_dequeue_elem(ring_, &e, sizeof e) == 0) out.push_back(e);
        return out;
    }

private:
    rte_ring* ring_ = nullptr;
};

// Every test checks on the way out that each mbuf it made went back to the pool.
class NatTest : public ::testing::Test {
protected:
    void TearDown() override;
};

} // namespace ephtest
