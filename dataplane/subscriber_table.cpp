#include "ephemera/subscriber_table.hpp"

#include <stdexcept>
#include <string>

#include <rte_errno.h>
#include <rte_hash.h>
#include <rte_hash_crc.h>

namespace ephemera {

SubscriberTable::SubscriberTable(uint32_t max_subscribers, unsigned worker, int socket) : ports_(max_subscribers, socket)
{
    static unsigned serial = 0;
    const std::string name = "eph_sub" + std::to_string(worker) + "_" + std::to_string(serial++);
    rte_hash_parameters p{};
    p.name = name.c_str();
    p.entries = max_subscribers;
    p.key_len = sizeof(uint32_t);
    p.hash_func = rte_hash_crc;
    p.socket_id = socket;
    p.extra_flag = RTE_HASH_EXTRA_FLAGS_EXT_TABLE;
    hash_ = rte_hash_create(&p);
    if (hash_ == nullptr)
        throw std::runtime_error("cannot create the subscriber table of " + std::to_string(max_subscribers) +
                                 " entries: " + rte_strerror(rte_errno));
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
