// Ports held per subscriber on one worker, for the per-subscriber limit
// (RFC 6888 REQ-4). Inside steering sends every flow of a subscriber to one
// worker, so the count is worker-local and exact.
#pragma once

#include <cstdint>

#include "ephemera/dpdk_array.hpp"

struct rte_hash;

namespace ephemera {

class SubscriberTable {
public:
    SubscriberTable(uint32_t max_subscribers, unsigned worker, int socket);
    ~SubscriberTable();
    SubscriberTable(const SubscriberTable&) = delete;
    SubscriberTable& operator=(const SubscriberTable&) = delete;

    uint32_t ports_of(uint32_t subscriber_net) const;
    // Counts one more port; false when the table of subscribers is full.
    bool acquire(uint32_t subscriber_net);
    void release(uint32_t subscriber_net);
    uint32_t subscribers() const { return count_; }

private:
    rte_hash* hash_ = nullptr;
    DpdkArray<uint32_t> ports_;
    uint32_t count_ = 0;
};

} // namespace ephemera
