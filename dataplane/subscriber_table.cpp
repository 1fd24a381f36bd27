#include "ephemera/subscriber_table.hpp"

#include "ephemera/address_hash.hpp"

#include <stdexcept>
#include <string>

#include <rte_errno.h>
#include <rte_hash.h>
#include <rte_hash_crc.h>

namespace ephemera {

SubscriberTable::SubscriberTable(uint32_t max_subscribers, unsigned worker, int socket) : ports_(max_subscribers, socket)
{
    hash_ = create_address_hash("eph_sub", "subscriber table", worker, max_subscribers, socket);
}

SubscriberTable::~SubscriberTable() { rte_hash_free(hash_); }

uint32_t SubscriberTable::ports_of(uint32_t subscriber_net) const
{
    const int32_t pos = rte_hash_lookup(hash_, &subscriber_net);
    return pos < 0 ? 0 : ports_[uint32_t(pos)];
}

bool SubscriberTable::acquire(uint32_t subscriber_net)
{
    int32_t pos = rte_hash_lookup(hash_, &subscriber_net);
    if (pos < 0) {
        if (count_ >= ports_.size() || (pos = rte_hash_add_key(hash_, &subscriber_net)) < 0) return false;
        ports_[uint32_t(pos)] = 0;
        ++count_;
    }
    ++ports_[uint32_t(pos)];
    return true;
}

void SubscriberTable::release(uint32_t subscriber_net)
{
    const int32_t pos = rte_hash_lookup(hash_, &subscriber_net);
    if (pos < 0) return;
    if (--ports_[uint32_t(pos)] == 0) {
        rte_hash_del_key(hash_, &subscriber_net);
        --count_;
    }
}

} // namespace ephemera
