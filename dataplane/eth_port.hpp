// One DPDK ethdev as the gateway uses it: found or hot-plugged from the
// configured string, configured with one RX and one TX queue per worker,
// started, promiscuous. Control plane only.
#pragma once

#include <cstdint>
#include <string>

#include <rte_ether.h>
#include <rte_mempool.h>

#include "hw_steering.hpp"

namespace ephemera {

// The receive offloads the gateway asks of a port that offers them: IPv4
// header checksum verification only (L4 checksums are updated, never checked).
uint64_t rx_offloads_for(uint64_t rx_offload_capa);

class EthPort {
public:
    // spec: "auto:IFACE" (net_af_xdp on IFACE, else net_af_packet), a vdev
    // string ("net_af_packet0,iface=eth1"), or an already-probed device name
    // such as a PCI address. `role` names it in messages ("inside").
    // source_rss: spread received packets over the queues by RSS on the IPv4
    // source alone, with a redirection table software can follow, where the
    // port can (source_rss() says whether it did, rss_why() why not).
    // mtu: the largest IPv4 packet the port must carry (the config's
    // `mtu`); above 1500 the port's MTU is raised to it (jumbo frames), and
    // `pool`'s buffers must be buffer_size(mtu) bytes.
    // Throws std::runtime_error with one clear line on failure.
    EthPort(const std::string& role, const std::string& spec, uint16_t queues, uint16_t rx_desc, uint16_t tx_desc,
            rte_mempool* pool, bool source_rss = false, uint16_t mtu = RTE_ETHER_MTU);

    // The mbuf data room (headroom included) a pool needs for frames of
    // this MTU on any port, net_af_packet's frame slots included: every
    // packet stays in one mbuf.
    static uint16_t buffer_size(uint16_t mtu);
    ~EthPort();
    EthPort(const EthPort&) = delete;
    EthPort& operator=(const EthPort&) = delete;

    uint16_t id() const { return id_; }
    const rte_ether_addr& mac() const { return mac_; }
    const std::string& driver() const { return driver_; }
    const std::string& name() const { return name_; }
    const hw::SourceRss* source_rss() const { return rss_on_ ? &rss_ : nullptr; }
    const std::string& rss_why() const { return rss_why_; }
    // The NIC verifies IPv4 header checksums (RX offload on).
    bool rx_ip_checksum() const { return rx_ip_checksum_; }

private:
    static std::string probe(const std::string& role, const std::string& spec, uint16_t queues, uint16_t mtu,
                             rte_mempool* pool);
    void raise_mtu(const std::string& role, const std::string& spec, uint16_t mtu);

    uint16_t id_ = 0;
    rte_ether_addr mac_{};
    std::string name_, driver_;
    hw::SourceRss rss_;
    bool rss_on_ = false;
    bool rx_ip_checksum_ = false;
    std::string rss_why_;
};

} // namespace ephemera
