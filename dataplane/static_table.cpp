#include "ephemera/static_table.hpp"

#include <cstring>
#include <stdexcept>
#include <string>

#include <rte_errno.h>
#include <rte_hash.h>
#include <rte_hash_crc.h>
#include <rte_malloc.h>
#include <rte_rcu_qsbr.h>

namespace ephemera {

namespace {

struct Key {
    uint32_t pool_addr; // network order
    uint16_t port;      // host order
    uint8_t l4;
    uint8_t zero;
};
static_assert(sizeof(Key) == 8);

Key key_of(uint32_t pool_addr, uint16_t port, L4 l4) { return Key{pool_addr, port, uint8_t(l4), 0}; }

} // namespace

StaticTable::StaticTable(uint32_t capacity, unsigned readers, int socket) : slots_(capacity)
{
    if (capacity == 0) throw std::invalid_argument("static mappings: capacity 0");
    free_.reserve(capacity);
    for (uint32_t i = capacity; i-- > 0;) free_.push_back(i);
    const size_t qsize = rte_rcu_qsbr_get_memsize(readers);
    qsbr_ = static_cast<rte_rcu_qsbr*>(rte_zmalloc_socket("eph_static_qsbr", qsize, RTE_CACHE_LINE_SIZE, socket));
    if (qsbr_ == nullptr || rte_rcu_qsbr_init(qsbr_, readers) != 0) {
        rte_free(qsbr_);
        throw std::runtime_error("cannot create the static mappings' RCU variable");
    }
    static unsigned serial = 0;
    const std::string name = "eph_static" + std::to_string(serial++);
    rte_hash_parameters p{};
    p.name = name.c_str();
    p.entries = capacity < 8 ? 8 : capacity;
    p.key_len = sizeof(Key);
    p.hash_func = rte_hash_crc;
    p.socket_id = socket;
    p.extra_flag = RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF;
    hash_ = rte_hash_create(&p);
    rte_hash_rcu_config rcu{};
    rcu.v = qsbr_;
    rcu.mode = RTE_HASH_QSBR_MODE_SYNC; // a delete returns once the readers moved on
    if (hash_ == nullptr || rte_hash_rcu_qsbr_add(hash_, &rcu) != 0) {
        rte_hash_free(hash_);
        rte_free(qsbr_);
        throw std::runtime_error("cannot create the static mapping table of " + std::to_string(capacity) +
                                 " entries: " + rte_strerror(rte_errno));
    }
}

StaticTable::~StaticTable()
{
    rte_hash_free(hash_);
    rte_free(qsbr_);
}

uint64_t StaticTable::pack(const rte_ether_addr& mac)
{
    uint64_t v = 0;
    std::memcpy(&v, mac.addr_bytes, RTE_ETHER_ADDR_LEN);
    return v | uint64_t(1) << 63; // never 0, even for 00:00:00:00:00:00
}

rte_ether_addr StaticTable::unpack(uint64_t v)
{
    rte_ether_addr mac;
    std::memcpy(mac.addr_bytes, &v, RTE_ETHER_ADDR_LEN);
    return mac;
}

void StaticTable::learn(uint32_t in_addr, const rte_ether_addr& mac)
{
    if (!rte_is_unicast_ether_addr(&mac)) return;
    const uint64_t v = pack(mac);
    for (StaticSlot& s : slots_)
        if (s.used.load(std::memory_order_acquire) && s.in_addr == in_addr) s.mac.store(v, std::memory_order_relaxed);
}

int32_t StaticTable::lookup(uint32_t pool_addr, uint16_t port, L4 l4) const
{
    const Key k = key_of(pool_addr, port, l4);
    void* data = nullptr;
    if (rte_hash_lookup_data(hash_, &k, &data) < 0) return -1;
    return int32_t(reinterpret_cast<uintptr_t>(data));
}

int32_t StaticTable::reserve(const StaticSlot& s)
{
    if (free_.empty()) return -1;
    const uint32_t i = free_.back();
    free_.pop_back();
    StaticSlot& d = slots_[i];
    d.pool_addr = s.pool_addr;
    d.in_addr = s.in_addr;
    d.ext_port = s.ext_port;
    d.in_port = s.in_port;
    d.l4 = s.l4;
    d.worker = s.worker;
    d.mapping = s.mapping;
    d.mac.store(0, std::memory_order_relaxed);
    d.used.store(1, std::memory_order_release);
    return int32_t(i);
}

bool StaticTable::publish(uint32_t i)
{
    const StaticSlot& s = slots_[i];
    const Key k = key_of(s.pool_addr, s.ext_port, s.l4);
    if (rte_hash_lookup(hash_, &k) >= 0) return false;
    if (rte_hash_add_key_data(hash_, &k, reinterpret_cast<void*>(uintptr_t(i))) != 0) return false;
    count_.fetch_add(1, std::memory_order_release);
    return true;
}

void StaticTable::unpublish(uint32_t i)
{
    const StaticSlot& s = slots_[i];
    const Key k = key_of(s.pool_addr, s.ext_port, s.l4);
    if (rte_hash_del_key(hash_, &k) >= 0) count_.fetch_sub(1, std::memory_order_release);
}

void StaticTable::release(uint32_t i)
{
    slots_[i].used.store(0, std::memory_order_release);
    // ARP learners may still be looking at the slot: wait them out before it
    // can be filled with another mapping.
    rte_rcu_qsbr_synchronize(qsbr_, RTE_QSBR_THRID_INVALID);
    free_.push_back(i);
}

int32_t StaticTable::slot_of(uint32_t pool_addr, uint16_t port, L4 l4) const
{
    for (uint32_t i = 0; i < slots_.size(); ++i) {
        const StaticSlot& s = slots_[i];
        if (s.used.load(std::memory_order_acquire) && s.pool_addr == pool_addr && s.ext_port == port && s.l4 == l4)
            return int32_t(i);
    }
    return -1;
}

std::vector<uint32_t> StaticTable::used_slots() const
{
    std::vector<uint32_t> out;
    for (uint32_t i = 0; i < slots_.size(); ++i)
        if (slots_[i].used.load(std::memory_order_acquire)) out.push_back(i);
    return out;
}

} // namespace ephemera
