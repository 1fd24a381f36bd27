// Explicit mappings for PCP (RFC 6887 MAP; RFC 6888 REQ-9): made, refreshed
// and deleted on a subscriber's request rather than by its traffic. A rare,
// per-request path on the owning worker; the translation loops only read
// Mapping::is_explicit (inbound filtering).
#include <cstring>

#include "packet_parse.hpp"

namespace ephemera {

// Ends an explicit mapping's own lifetime; the mapping goes when its last
// session does (now, if it has none).
void Translator::end_explicit(uint32_t index, Tick now)
{
    Mapping& map = table_.mapping(index);
    map.is_explicit = 0;
    if (SessionState* s = table_.find_session(index, kLifetimeHolder, 0)) s->expires = now;
    expire_sessions(index, now);
    if (table_.session_count(index) == 0) release_mapping(index, now);
}

Translator::ExplicitResult Translator::map_explicit(const ExplicitRequest& r, Tick now, ExplicitMapping& granted)
{
    granted = ExplicitMapping{};
    if (nonces_.size() == 0) return ExplicitResult::NotAuthorized; // PCP is not on
    const MappingKey key{r.in_addr, r.in_port, uint8_t(r.l4)};
    int32_t found = table_.lookup(key);
    if (found >= 0 && now >= table_.mapping(uint32_t(found)).expires) {
        expire_mapping(uint32_t(found), now); // expired but not swept yet: gone for PCP too
        found = table_.lookup(key);
    }
    if (found >= 0) {
        const uint32_t index = uint32_t(found);
        const Mapping& map = table_.mapping(index);
        granted.ext_addr = map.ext_addr;
        granted.ext_port = rte_be_to_cpu_16(map.ext_port);
        const Tick remaining = map.expires - now;
        // Another client's (or an earlier life's) mapping, or one its traffic
        // made: PCP may not take or end it (RFC 6887 §11.3, §15).
        if (map.is_static || (map.is_explicit && nonces_[index] != r.nonce) || (!map.is_explicit && r.lifetime == 0)) {
            granted.lifetime = map.is_static ? 0 : remaining;
            return ExplicitResult::NotAuthorized;
        }
        if (r.lifetime == 0) {
            end_explicit(index, now);
            return ExplicitResult::Ok;
        }
        if (r.prefer_failure && ((r.suggested_port != 0 && r.suggested_port != granted.ext_port) ||
                                 (r.suggested_addr != 0 && r.suggested_addr != map.ext_addr)))
            return ExplicitResult::CannotProvideExternal;
    } else {
        if (r.lifetime == 0) return ExplicitResult::Ok; // nothing to delete
        Parsed p{};
        p.src = r.in_addr;
        p.sport = r.in_port;
        p.space = r.l4;
        Drop why = Drop::NoMapping;
        unsigned pool_index = 0;
        uint32_t block = 0;
        // Paired pooling decides the address (RFC 6888 REQ-2): a suggested
        // other one is only a hint, unless the client would rather fail.
        if (r.prefer_failure && r.suggested_addr != 0 &&
            (!pool_index_of(r.in_addr, pool_index, block, why) || pool_.addr(pool_index) != r.suggested_addr))
            return ExplicitResult::CannotProvideExternal;
        found = create_mapping(p, r.inside_mac.addr_bytes, now, why, r.suggested_port,
                               r.prefer_failure && r.suggested_port != 0);
        if (found < 0) {
            switch (why) {
            case Drop::SubscriberLimit: return ExplicitResult::UserExQuota;
            case Drop::PortsExhausted:
                return r.prefer_failure ? ExplicitResult::CannotProvideExternal : ExplicitResult::NoResources;
            default: return ExplicitResult::NoResources;
            }
        }
        granted.ext_addr = table_.mapping(uint32_t(found)).ext_addr;
        granted.ext_port = rte_be_to_cpu_16(table_.mapping(uint32_t(found)).ext_port);
    }
    const uint32_t index = uint32_t(found);
    Mapping& map = table_.mapping(index);
    SessionState* holder = table_.find_session(index, kLifetimeHolder, 0);
    if (holder == nullptr && (holder = new_session(index, kLifetimeHolder, 0, now)) == nullptr) {
        if (!map.is_explicit && table_.session_count(index) == 0) release_mapping(index, now); // just made
        return ExplicitResult::NoResources;
    }
    map.is_explicit = 1;
    nonces_[index] = r.nonce;
    // Whole seconds, as for sessions: alive through `lifetime` full seconds.
    holder->expires = now + r.lifetime + 1;
    publish_expires(map, table_.latest_expiry(index));
    granted.lifetime = r.lifetime;
    return ExplicitResult::Ok;
}

} // namespace ephemera
