// One DPDK port of the generator: found by name, hot-plugged from a vdev
// string or probed by PCI address, configured with one RX and one TX queue,
// started promiscuous (the sink stands for addresses that are not its own).
#pragma once

#include <cstdint>
#include <string>

#include <rte_ether.h>
#include <rte_mempool.h>

namespace bench {

class BenchPort {
public:
    // Throws std::runtime_error with one line saying what is wrong.
    BenchPort(const std::string& spec, uint16_t descriptors, rte_mempool* pool);
    ~BenchPort();
    BenchPort(const BenchPort&) = delete;
    BenchPort& operator=(const BenchPort&) = delete;

    uint16_t id() const { return id_; }
    const rte_ether_addr& mac() const { return mac_; }
    const std::string& name() const { return name_; }
    const std::string& driver() const { return driver_; }
    bool link_up() const;

private:
    uint16_t id_ = 0;
    rte_ether_addr mac_{};
    std::string name_, driver_;
};

} // namespace bench
