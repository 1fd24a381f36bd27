#include "exclusions.hpp"

#include <stdexcept>

#include <rte_errno.h>
#include <rte_hash.h>
#include <rte_hash_crc.h>

#include "ephemera/address_hash.hpp"
#include "ephemera/config.hpp"

namespace ephemera {

Exclusions::Exclusions(const std::vector<std::pair<uint32_t, uint8_t>>& prefixes, int socket)
{
    static unsigned serial = 0;
    const std::string name = "eph_excl" + std::to_string(serial++);
    rte_lpm_config cfg{};
    cfg.max_rules = uint32_t(prefixes.size());
    cfg.number_tbl8s = 256; // prefixes longer than /24 each take one
    lpm_ = rte_lpm_create(name.c_str(), socket, &cfg);
    if (lpm_ == nullptr)
        throw std::runtime_error(std::string("nat.exclude: cannot create its table: ") + rte_strerror(rte_errno));
    for (const auto& [addr, len] : prefixes)
        if (int rc = rte_lpm_add(lpm_, addr, len, 1); rc != 0) {
            rte_lpm_free(lpm_);
            throw std::runtime_error("nat.exclude = \"" + format_ipv4(addr) + "/" + std::to_string(len) +
                                     "\": cannot be added: " + rte_strerror(-rc) +
                                     " (more than 256 prefixes longer than /24?)");
        }
}

Exclusions::~Exclusions() { rte_lpm_free(lpm_); }

LearnedMacs::LearnedMacs(uint32_t capacity, unsigned worker, int socket)
    : hash_(create_address_hash("eph_lmac", "table of inside MACs for nat.exclude", worker, capacity, socket)),
      macs_(capacity, socket)
{
}

LearnedMacs::~LearnedMacs() { rte_hash_free(hash_); }

bool LearnedMacs::learn(uint32_t addr_net, const rte_ether_addr& mac)
{
    const int32_t pos = rte_hash_add_key(hash_, &addr_net);
    if (pos < 0) return false;
    macs_[uint32_t(pos)] = mac;
    return true;
}

const rte_ether_addr* LearnedMacs::find(uint32_t addr_net) const
{
    const int32_t pos = rte_hash_lookup(hash_, &addr_net);
    return pos < 0 ? nullptr : &macs_[uint32_t(pos)];
}

} // namespace ephemera
