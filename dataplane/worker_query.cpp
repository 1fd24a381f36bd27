#include "worker_query.hpp"

#include <rte_byteorder.h>

namespace ephemera {

namespace {

bool mapping_matches(const Query& q, const Mapping& m)
{
    if (q.l4 != 0xff && m.l4 != q.l4) return false;
    if (q.inside_addr && m.in_addr != q.inside_addr) return false;
    if (q.pool_addr && m.ext_addr != q.pool_addr) return false;
    if (q.ext_port && m.ext_port != q.ext_port) return false;
    return true;
}

void add_row(Query& q, const Mapping& m, const SessionState* s, uint16_t worker, uint32_t sessions, Tick now)
{
    ++q.matched;
    if (q.rows.size() >= q.limit || q.rows.size() == q.rows.capacity()) return;
    const Tick expires = s ? s->expires : m.is_static ? now : m.expires;
    const QueryRow::Kind kind = m.is_static     ? QueryRow::Kind::Static
                                : m.is_explicit ? QueryRow::Kind::Pcp
                                                : QueryRow::Kind::Dynamic;
    q.rows.push_back(QueryRow{m.in_addr, m.ext_addr, s ? s->remote_addr : 0, m.in_port, m.ext_port,
                              s ? s->remote_port : uint16_t(0), m.l4, s ? s->tcp : uint8_t(0), worker,
                              expires > now ? expires - now : 0, sessions, kind});
}

} // namespace

bool answer_query_step(Translator& nat, Query& q, Tick now, uint32_t slice)
{
    const SessionTable& table = nat.table();
    const uint16_t worker = uint16_t(nat.worker());
    if (q.kind == Query::Kind::StaticAdd) {
        q.static_result = nat.statics() ? nat.add_static(nat.statics()->slot(q.static_slot), now, q.mapping)
                                        : Translator::StaticResult::TableFull;
        return true;
    }
    if (q.kind == Query::Kind::SetTimeouts) {
        nat.set_timeouts(q.timeouts);
        return true;
    }
    if (q.kind == Query::Kind::StaticDel) {
        nat.remove_static(q.mapping, now);
        return true;
    }
    if (q.kind == Query::Kind::Ports && q.sum_over_pool) {
        for (unsigned l4 = 0; l4 < kL4Count; ++l4) {
            if (q.l4 != 0xff && l4 != q.l4) continue;
            PortUse sum{0, uint8_t(l4), worker, 0, 0, 0};
            for (unsigned p = 0; p < nat.pool().size(); ++p) {
                const PortBlocks::Use u = nat.port_use(p, L4(l4), now);
                sum.free += u.free;
                sum.quarantined += u.quarantined;
                sum.in_use += u.in_use;
            }
            ++q.matched;
            if (q.ports.size() < q.ports.capacity()) q.ports.push_back(sum);
        }
        return true;
    }
    if (q.kind == Query::Kind::Ports) {
        for (unsigned p = 0; p < nat.pool().size(); ++p)
            for (unsigned l4 = 0; l4 < kL4Count; ++l4) {
                if (q.l4 != 0xff && l4 != q.l4) continue;
                if (q.pool_addr && nat.pool().addr(p) != q.pool_addr) continue;
                ++q.matched;
                if (q.ports.size() == q.ports.capacity()) continue; // the asker's limit
                const PortBlocks::Use u = nat.port_use(p, L4(l4), now);
                q.ports.push_back(PortUse{nat.pool().addr(p), uint8_t(l4), worker, u.free, u.quarantined, u.in_use});
            }
        return true;
    }
    // A mapping by its external port: one look in the partition, no scan.
    if (q.pool_addr && q.ext_port && q.l4 != 0xff) {
        const uint32_t i = nat.mapping_at(q.pool_addr, rte_be_to_cpu_16(q.ext_port), L4(q.l4));
        if (i != kNoMapping && !nat.mapping_expired(i, now)) {
            const Mapping& m = table.mapping(i);
            if (q.kind == Query::Kind::Mappings) add_row(q, m, nullptr, worker, table.session_count(i), now);
            else table.for_each_session(i, [&](const SessionState& s) { add_row(q, m, &s, worker, 0, now); });
        }
        return true;
    }
    const uint32_t cap = table.capacity();
    const uint32_t end = slice < cap - q.cursor ? q.cursor + slice : cap; // slice may be UINT32_MAX
    for (; q.cursor < end; ++q.cursor) {
        const Mapping& m = table.mapping(q.cursor);
        if (!m.live || nat.mapping_expired(q.cursor, now) || !mapping_matches(q, m)) continue;
        if (q.kind == Query::Kind::Mappings)
            add_row(q, m, nullptr, worker, table.session_count(q.cursor), now);
        else
            table.for_each_session(q.cursor, [&](const SessionState& s) {
                if (now < s.expires) add_row(q, m, &s, worker, 0, now);
            });
    }
    return q.cursor >= cap;
}

} // namespace ephemera
