#include "ephemera/session_table.hpp"

#include "ephemera/address_hash.hpp"

#include <cstring>

#include <rte_hash.h>
#include <rte_random.h>

namespace ephemera {

namespace {

int equal_session_key(const void* a, const void* b, size_t)
{
    return std::memcmp(a, b, sizeof(SessionKey));
}

} // namespace

SessionTable::SessionTable(uint32_t max_mappings, uint32_t max_extra_sessions, unsigned worker, int socket)
    : mappings_(max_mappings, socket), index_(max_mappings, socket), free_mappings_(max_mappings, socket),
      seed_(uint32_t(rte_rand())), extras_(max_extra_sessions, socket)
{
    // Handed out from the top of the stack: index 0 first.
    for (uint32_t i = 0; i < max_mappings; ++i) free_mappings_[i] = max_mappings - 1 - i;
    session_hash_ = create_worker_hash("eph_ses", "session table", worker, max_extra_sessions, sizeof(SessionKey),
                                       socket);
    rte_hash_set_cmp_func(session_hash_, equal_session_key);
}

SessionTable::~SessionTable() { rte_hash_free(session_hash_); }

void SessionTable::lookup_bulk(const MappingKey* keys, unsigned n, int32_t* positions) const
{
    uint32_t sigs[64];
    uint32_t candidates[64];
    for (unsigned done = 0; done < n; done += 64) {
        const unsigned m = n - done < 64 ? n - done : 64;
        for (unsigned i = 0; i < m; ++i) {
            sigs[i] = signature(keys[done + i]);
            prefetch_bucket(sigs[i]);
        }
        for (unsigned i = 0; i < m; ++i) candidates[i] = candidate(sigs[i]);
        for (unsigned i = 0; i < m; ++i) positions[done + i] = confirm(keys[done + i], sigs[i], candidates[i]);
    }
}

int32_t SessionTable::add_mapping(const MappingKey& key)
{
    const uint32_t unused = capacity() - mapping_count();
    if (unused == 0) return -ENOSPC;
    const uint32_t sig = signature(key);
    if (find(key, sig) >= 0) return -EEXIST;
    const uint32_t pos = free_mappings_[unused - 1];
    if (!index_.insert(sig, pos)) return -ENOSPC;
    Mapping& m = mappings_[pos];
    // Field by field: live and expires may be read by the control plane.
    m.in_addr = key.addr;
    m.ext_addr = 0;
    m.in_port = key.port;
    m.ext_port = 0;
    m.ip_delta = m.l4_delta = m.port_delta = 0;
    m.l4 = key.l4;
    m.pool = 0;
    std::memset(m.inside_mac, 0, sizeof m.inside_mac);
    m.extra_count = 0;
    m.extra_head = kNone;
    m.created = 0;
    m.first = SessionState{};
    m.block = 0;
    m.is_static = 0;
    m.is_explicit = 0;
    publish_expires(m, 0);
    publish_live(m, 1);
    return int32_t(pos);
}

void SessionTable::remove_mapping(uint32_t index)
{
    Mapping& m = mappings_[index];
    if (!m.live) return;
    while (m.extra_head != kNone) remove_extra(m.extra_head);
    index_.erase(signature(MappingKey{m.in_addr, m.in_port, m.l4}), index);
    free_mappings_[capacity() - mapping_count() - 1] = index;
    publish_live(m, 0);
    m.first.live = 0;
}

SessionState* SessionTable::find_extra(uint32_t index, uint32_t remote_addr, uint16_t remote_port)
{
    const SessionKey key{index, remote_addr, remote_port};
    const int32_t pos = rte_hash_lookup(session_hash_, &key);
    return pos < 0 ? nullptr : &extras_[uint32_t(pos)].s;
}

bool SessionTable::has_remote_addr(uint32_t index, uint32_t remote_addr, Tick now) const
{
    const Mapping& m = mappings_[index];
    if (m.first.live && m.first.remote_addr == remote_addr && now < m.first.expires) return true;
    for (uint32_t e = m.extra_head; e != kNone; e = extras_[e].next)
        if (extras_[e].s.remote_addr == remote_addr && now < extras_[e].s.expires) return true;
    return false;
}

SessionState* SessionTable::add_session(uint32_t index, uint32_t remote_addr, uint16_t remote_port)
{
    Mapping& m = mappings_[index];
    SessionState* s = nullptr;
    if (!m.first.live) {
        s = &m.first;
    } else {
        if (extra_count_ >= extras_.size()) return nullptr;
        const SessionKey key{index, remote_addr, remote_port};
        const int32_t pos = rte_hash_add_key(session_hash_, &key);
        if (pos < 0) return nullptr;
        ExtraSession& e = extras_[uint32_t(pos)];
        e.mapping = index;
        e.prev = kNone;
        e.next = m.extra_head;
        if (m.extra_head != kNone) extras_[m.extra_head].prev = uint32_t(pos);
        m.extra_head = uint32_t(pos);
        ++m.extra_count;
        ++extra_count_;
        s = &e.s;
    }
    *s = SessionState{remote_addr, remote_port, 0, 1, 0};
    return s;
}

void SessionTable::remove_extra(uint32_t extra_index)
{
    ExtraSession& e = extras_[extra_index];
    Mapping& m = mappings_[e.mapping];
    if (e.prev != kNone) extras_[e.prev].next = e.next; else m.extra_head = e.next;
    if (e.next != kNone) extras_[e.next].prev = e.prev;
    const SessionKey key{e.mapping, e.s.remote_addr, e.s.remote_port};
    rte_hash_del_key(session_hash_, &key);
    e.s.live = 0;
    --m.extra_count;
    --extra_count_;
}

uint32_t SessionTable::expire_sessions(uint32_t index, Tick now)
{
    Mapping& m = mappings_[index];
    uint32_t ended = 0;
    Tick latest = 0;
    if (m.first.live) {
        if (now >= m.first.expires) { m.first.live = 0; ++ended; }
        else latest = m.first.expires;
    }
    for (uint32_t e = m.extra_head; e != kNone;) {
        const uint32_t next = extras_[e].next;
        if (now >= extras_[e].s.expires) { remove_extra(e); ++ended; }
        else if (extras_[e].s.expires > latest) latest = extras_[e].s.expires;
        e = next;
    }
    publish_expires(m, latest);
    return ended;
}

size_t SessionTable::memory_bytes() const
{
    // The session rte_hash: buckets of 8 (64 B) for the next power of two of
    // entries, the extendable buckets as many again, and one key slot (16 B
    // aligned + the data pointer) per entry.
    size_t pow2 = 1;
    while (pow2 < extras_.size()) pow2 <<= 1;
    const size_t buckets = pow2 / 8;
    const size_t key_slot = (sizeof(void*) + sizeof(SessionKey) + 15) / 16 * 16;
    const size_t session_hash = 2 * buckets * 64 + (extras_.size() + 1) * key_slot + 2 * buckets * 4;
    return mappings_.bytes() + index_.bytes() + free_mappings_.bytes() + extras_.bytes() + session_hash;
}

} // namespace ephemera
