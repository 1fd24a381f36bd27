#include "ephemera/expiry.hpp"

#include <stdexcept>

#include <rte_errno.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>

#include "ephemera/translator.hpp"

namespace ephemera {

rte_ring* create_expiry_ring(const std::string& name, unsigned size, int socket)
{
    rte_ring* r = rte_ring_create_elem(name.c_str(), sizeof(uint32_t), size, socket, RING_F_SP_ENQ | RING_F_SC_DEQ);
    if (r == nullptr) throw std::runtime_error("cannot create expiry ring " + name + ": " + rte_strerror(rte_errno));
    return r;
}

uint32_t ExpiryScanner::scan(Tick now, uint32_t budget)
{
    const SessionTable& table = nat_.table();
    const uint32_t cap = table.capacity();
    uint32_t found[64];
    uint32_t nfound = 0, queued = 0;
    auto flush = [&]() {
        const unsigned n = rte_ring_sp_enqueue_burst_elem(commands_, found, sizeof(uint32_t), nfound, nullptr);
        queued += n;
        const bool full = n < nfound;
        ring_full_ += full;
        nfound = 0;
        return !full;
    };
    for (uint32_t visited = 0; visited < budget && visited < cap; ++visited) {
        const Mapping& m = table.mapping(cursor_);
        if (observe_live(m) && now >= observe_expires(m)) {
            found[nfound++] = cursor_;
            if (nfound == 64 && !flush()) break; // the worker is behind: the rest wait for the next pass
        }
        if (++cursor_ == cap) {
            cursor_ = 0;
            ++passes_;
        }
    }
    if (nfound) flush();
    queued_ += queued;
    return queued;
}

uint32_t drain_expiry_commands(Translator& nat, rte_ring* commands, unsigned max, Tick now)
{
    uint32_t idx[64];
    uint32_t released = 0;
    while (max > 0) {
        const unsigned n = rte_ring_sc_dequeue_burst_elem(commands, idx, sizeof(uint32_t), max < 64 ? max : 64,
                                                          nullptr);
        if (n == 0) break;
        for (unsigned i = 0; i < n; ++i) released += nat.expire_mapping(idx[i], now);
        max -= n;
    }
    return released;
}

} // namespace ephemera
