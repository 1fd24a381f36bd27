// The rte_hash of one worker's table: a name no other table has, CRC32c,
// extendable buckets so that `entries` keys always fit (a full table is a
// count the caller decides, not a cuckoo failure by chance), no locks (the
// worker is its only writer). Throws std::runtime_error naming `what`.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include <rte_errno.h>
#include <rte_hash.h>
#include <rte_hash_crc.h>

namespace ephemera {

inline rte_hash* create_worker_hash(const char* prefix, const char* what, unsigned worker, uint32_t entries,
                                   uint32_t key_len, int socket)
{
    static unsigned serial = 0;
    const std::string name = prefix + std::to_string(worker) + "_" + std::to_string(serial++);
    rte_hash_parameters p{};
    p.name = name.c_str();
    p.entries = entries;
    p.key_len = key_len;
    p.hash_func = rte_hash_crc;
    p.socket_id = socket;
    p.extra_flag = RTE_HASH_EXTRA_FLAGS_EXT_TABLE;
    rte_hash* h = rte_hash_create(&p);
    if (h == nullptr)
        throw std::runtime_error(std::string("cannot create the ") + what + " of " + std::to_string(entries) +
                                 " entries: " + rte_strerror(rte_errno));
    return h;
}

// Keyed by an IPv4 address (4 bytes, network order).
inline rte_hash* create_address_hash(const char* prefix, const char* what, unsigned worker, uint32_t entries,
                                     int socket)
{
    return create_worker_hash(prefix, what, worker, entries, sizeof(uint32_t), socket);
}

} // namespace ephemera
