#include "bench_port.hpp"

#include <stdexcept>

#include <rte_dev.h>
#include <rte_errno.h>
#include <rte_ethdev.h>

namespace bench {

namespace {

bool find_port(const std::string& name, uint16_t& id) { return rte_eth_dev_get_port_by_name(name.c_str(), &id) == 0; }

// A vdev string names its device before the first comma ("net_memif0,role=...").
std::string device_name(const std::string& spec) { return spec.substr(0, spec.find(',')); }

} // namespace

BenchPort::BenchPort(const std::string& spec, uint16_t descriptors, rte_mempool* pool)
{
    name_ = device_name(spec);
    if (!find_port(name_, id_)) {
        // Not probed by the EAL arguments: hot-plug it (vdev string or PCI address).
        if (rte_dev_probe(spec.c_str()) != 0 || !find_port(name_, id_))
            throw std::runtime_error("no such DPDK port: \"" + spec + "\" (" +
                                     (rte_errno ? rte_strerror(rte_errno) : "cannot probe it") +
                                     "); give an EAL device name, a vdev string or the PCI address of a bound NIC");
    }
    rte_eth_dev_info info{};
    if (int rc = rte_eth_dev_info_get(id_, &info); rc != 0)
        throw std::runtime_error(name_ + ": cannot read device info: " + rte_strerror(-rc));
    driver_ = info.driver_name ? info.driver_name : "?";
    rte_eth_conf conf{};
    if (int rc = rte_eth_dev_configure(id_, 1, 1, &conf); rc != 0)
        throw std::runtime_error(name_ + ": configure failed: " + rte_strerror(-rc));
    uint16_t nrx = descriptors, ntx = descriptors;
    rte_eth_dev_adjust_nb_rx_tx_desc(id_, &nrx, &ntx);
    const int socket = rte_eth_dev_socket_id(id_);
    const unsigned sock = socket < 0 ? unsigned(SOCKET_ID_ANY) : unsigned(socket);
    if (int rc = rte_eth_rx_queue_setup(id_, 0, nrx, sock, nullptr, pool); rc != 0)
        throw std::runtime_error(name_ + ": RX queue: " + rte_strerror(-rc));
    if (int rc = rte_eth_tx_queue_setup(id_, 0, ntx, sock, nullptr); rc != 0)
        throw std::runtime_error(name_ + ": TX queue: " + rte_strerror(-rc));
    if (int rc = rte_eth_dev_start(id_); rc != 0)
        throw std::runtime_error(name_ + ": start failed: " + rte_strerror(-rc));
    rte_eth_promiscuous_enable(id_);
    rte_eth_macaddr_get(id_, &mac_);
}

BenchPort::~BenchPort()
{
    rte_eth_dev_stop(id_);
    rte_eth_dev_close(id_);
}

bool BenchPort::link_up() const
{
    rte_eth_link link{};
    return rte_eth_link_get_nowait(id_, &link) == 0 && link.link_status == RTE_ETH_LINK_UP;
}

} // namespace bench
