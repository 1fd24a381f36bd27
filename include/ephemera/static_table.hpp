// Static mappings (port forwards): (protocol, inside addr:port) <-> (pool
// addr:port) fixed by the operator, never expiring, open to unsolicited
// inbound traffic whatever the filtering mode. Their external ports lie
// outside the dynamic range, so no dynamic mapping can collide with one and
// the external port alone cannot say which worker owns it: this table does.
//
// One table for the gateway. Workers only read it (steering, the owner's
// inbound lookup) and store inside MACs learnt from ARP into its slots;
// the control plane adds and removes entries, one command at a time. The
// lookup is DPDK's lock-free rte_hash (RW_CONCURRENCY_LF) with its
// integrated rte_rcu_qsbr: a removed entry is reclaimed only after every
// worker has passed a quiescent state, so no worker reads a slot that is
// being reused under it.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include <rte_ether.h>

#include "ephemera/flow_key.hpp"

struct rte_hash;
struct rte_rcu_qsbr;

namespace ephemera {

struct StaticSlot {
    uint32_t pool_addr = 0; // network order
    uint32_t in_addr = 0;   // network order
    uint16_t ext_port = 0;  // host order
    uint16_t in_port = 0;   // host order
    L4 l4 = L4::Udp;
    uint16_t worker = 0;    // owner: the inside subscriber's worker
    uint32_t mapping = 0;   // its index in that worker's table
    std::atomic<uint8_t> used{0};
    std::atomic<uint64_t> mac{0}; // the inside host, 0 until ARP told us
};

class StaticTable {
public:
    // `readers`: workers 0..readers-1 report quiescent states on qsbr().
    StaticTable(uint32_t capacity, unsigned readers, int socket);
    ~StaticTable();
    StaticTable(const StaticTable&) = delete;
    StaticTable& operator=(const StaticTable&) = delete;

    // --- workers ---
    // The slot of (pool address, external port, protocol), or -1. Costs an
    // atomic load when no static mapping exists.
    int32_t find(uint32_t pool_addr_net, uint16_t port_host, L4 l4) const
    {
        return count_.load(std::memory_order_acquire) == 0 ? -1 : lookup(pool_addr_net, port_host, l4);
    }
    const StaticSlot& slot(uint32_t i) const { return slots_[i]; }
    // ARP from the inside: remember the sender's MAC for its static mappings.
    void learn(uint32_t in_addr_net, const rte_ether_addr& mac);
    static uint64_t pack(const rte_ether_addr& mac);
    static rte_ether_addr unpack(uint64_t mac);
    rte_rcu_qsbr* qsbr() const { return qsbr_; }

    // --- control plane (serialised by the caller) ---
    // A free slot holding `s`, not findable yet; -1 when the table is full.
    int32_t reserve(const StaticSlot& s);
    void set_mapping(uint32_t i, uint32_t mapping) { slots_[i].mapping = mapping; }
    bool publish(uint32_t i);   // findable by workers; false when the key is taken
    void unpublish(uint32_t i); // not findable; returns once no worker can still hold it
    void release(uint32_t i);   // the slot back to the free list
    // The slot of a key whether published or not; -1 when none.
    int32_t slot_of(uint32_t pool_addr_net, uint16_t port_host, L4 l4) const;
    uint32_t size() const { return count_.load(std::memory_order_relaxed); }
    uint32_t capacity() const { return uint32_t(slots_.size()); }
    std::vector<uint32_t> used_slots() const;

private:
    int32_t lookup(uint32_t pool_addr_net, uint16_t port_host, L4 l4) const;

    rte_hash* hash_ = nullptr;
    rte_rcu_qsbr* qsbr_ = nullptr;
    std::vector<StaticSlot> slots_;
    std::vector<uint32_t> free_;
    std::atomic<uint32_t> count_{0}; // published entries
};

} // namespace ephemera
