#include "eth_port.hpp"

#include <stdexcept>

#include <rte_bus.h>
#include <rte_dev.h>
#include <rte_errno.h>
#include <rte_ethdev.h>

namespace ephemera {

namespace {

bool find_port(const std::string& name, uint16_t& id) { return rte_eth_dev_get_port_by_name(name.c_str(), &id) == 0; }

// The device name a vdev string creates: the part before the first comma.
std::string vdev_name(const std::string& devargs) { return devargs.substr(0, devargs.find(',')); }

bool hotplug(const std::string& devargs, uint16_t& id)
{
    if (rte_dev_probe(devargs.c_str()) != 0) return false;
    return find_port(vdev_name(devargs), id);
}

} // namespace

std::string EthPort::probe(const std::string& role, const std::string& spec, uint16_t queues, std::string& driver)
{
    static unsigned serial = 0;
    uint16_t id = 0;
    if (spec.rfind("auto:", 0) == 0) {
        const std::string iface = spec.substr(5);
        const std::string n = std::to_string(serial++);
        const std::string q = std::to_string(queues);
        const std::string xdp = "net_af_xdp" + n + ",iface=" + iface + ",start_queue=0,queue_count=" + q;
        if (hotplug(xdp, id)) return vdev_name(xdp);
        const std::string pkt =
            "net_af_packet" + n + ",iface=" + iface + ",qpairs=" + q + ",blocksz=4096,framesz=2048,framecnt=4096";
        if (hotplug(pkt, id)) return vdev_name(pkt);
        throw std::runtime_error(role + ".port = \"" + spec + "\": neither net_af_xdp nor net_af_packet could open " +
                                 iface + " (does the interface exist in this namespace?)");
    }
    if (find_port(spec, id)) return spec;
    if (spec.rfind("net_", 0) == 0 && hotplug(spec, id)) return vdev_name(spec);
    (void)driver;
    throw std::runtime_error(role + ".port = \"" + spec + "\": no such DPDK port (" +
                             (rte_errno ? std::string(rte_strerror(rte_errno)) : "not probed") +
                             "); for a NIC bind it with dpdk-devbind.py and give its PCI address");
}

EthPort::EthPort(const std::string& role, const std::string& spec, uint16_t queues, uint16_t rx_desc,
                 uint16_t tx_desc, rte_mempool* pool, bool source_rss)
{
    name_ = probe(role, spec, queues, driver_);
    if (!find_port(name_, id_)) throw std::runtime_error(role + ".port: " + name_ + " vanished after probing");

    rte_eth_dev_info info{};
    if (int rc = rte_eth_dev_info_get(id_, &info); rc != 0)
        throw std::runtime_error(role + ".port: " + name_ + ": cannot read device info: " + rte_strerror(-rc));
    driver_ = info.driver_name ? info.driver_name : "?";
    if (info.max_rx_queues < queues || info.max_tx_queues < queues)
        throw std::runtime_error(role + ".port: " + name_ + " (" + driver_ + ") has " +
                                 std::to_string(info.max_rx_queues) + " RX queues, " + std::to_string(queues) +
                                 " workers need one each");

    rte_eth_conf conf{};
    hw::RssPlan rss;
    if (source_rss) {
        rss = hw::plan_source_rss(info, queues);
        rss_why_ = rss.why;
    }
    if (rss.on) {
        conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
        conf.rx_adv_conf.rss_conf.rss_key = rss.key.data();
        conf.rx_adv_conf.rss_conf.rss_key_len = uint8_t(rss.key.size());
        conf.rx_adv_conf.rss_conf.rss_hf = rss.hash_functions;
        if (int rc = rte_eth_dev_configure(id_, queues, queues, &conf); rc != 0) {
            // Offered but refused in this combination: software steering.
            rss.on = false;
            rss_why_ = std::string("the port refused RSS on the IPv4 source: ") + rte_strerror(-rc);
            conf = rte_eth_conf{};
        }
    }
    if (!rss.on)
        if (int rc = rte_eth_dev_configure(id_, queues, queues, &conf); rc != 0)
            throw std::runtime_error(role + ".port: " + name_ + ": configure failed: " + rte_strerror(-rc));
    uint16_t nrx = rx_desc, ntx = tx_desc;
    rte_eth_dev_adjust_nb_rx_tx_desc(id_, &nrx, &ntx);
    const int socket = rte_eth_dev_socket_id(id_);
    for (uint16_t q = 0; q < queues; ++q) {
        if (int rc = rte_eth_rx_queue_setup(id_, q, nrx, unsigned(socket < 0 ? SOCKET_ID_ANY : socket), nullptr, pool);
            rc != 0)
            throw std::runtime_error(role + ".port: " + name_ + ": RX queue " + std::to_string(q) + ": " +
                                     rte_strerror(-rc));
        if (int rc = rte_eth_tx_queue_setup(id_, q, ntx, unsigned(socket < 0 ? SOCKET_ID_ANY : socket), nullptr);
            rc != 0)
            throw std::runtime_error(role + ".port: " + name_ + ": TX queue " + std::to_string(q) + ": " +
                                     rte_strerror(-rc));
    }
    if (int rc = rte_eth_dev_start(id_); rc != 0)
        throw std::runtime_error(role + ".port: " + name_ + ": start failed: " + rte_strerror(-rc));
    rte_eth_promiscuous_enable(id_); // the pool is routed to us under other addresses
    rss_on_ = rss.on && hw::program_reta(id_, info, queues, rss, rss_, rss_why_);
    rte_eth_macaddr_get(id_, &mac_);
}

EthPort::~EthPort()
{
    rte_eth_dev_stop(id_);
    rte_eth_dev_close(id_);
}

} // namespace ephemera
