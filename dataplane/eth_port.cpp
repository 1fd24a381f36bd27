#include "eth_port.hpp"

#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include <rte_bus.h>
#include <rte_dev.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_string_fns.h>

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

// net_af_packet's slot for one frame (its header, then the frame), a
// multiple of 1 KB so that four make whole pages (a block): 2 KB up to MTU 1500.
uint32_t packet_frame_size(uint16_t mtu) { return mtu <= RTE_ETHER_MTU ? 2048 : RTE_ALIGN_CEIL(mtu + 128u, 1024u); }

// The slot net_af_packet gets on a port: as large as the pool's buffers, so
// that with jumbo frames on either side both ports take datagrams up to that
// size, including those the kernel reassembled for AF_PACKET's fanout.
uint32_t packet_frame_size(rte_mempool* pool)
{
    const uint32_t room = rte_pktmbuf_data_room_size(pool) - RTE_PKTMBUF_HEADROOM;
    return std::max(2048u, room / 1024 * 1024);
}

// The kernel interface's own MTU, raised to `mtu` if below it: what
// net_af_packet receives and sends is whatever the kernel lets through.
std::string raise_kernel_mtu(const std::string& iface, uint16_t mtu)
{
    const int s = socket(AF_INET, SOCK_DGRAM, 0);
    if (s < 0) return std::string("socket: ") + std::strerror(errno);
    ifreq ifr{};
    rte_strscpy(ifr.ifr_name, iface.c_str(), sizeof ifr.ifr_name);
    std::string why;
    if (ioctl(s, SIOCGIFMTU, &ifr) != 0) {
        why = std::string("cannot read its MTU: ") + std::strerror(errno);
    } else if (ifr.ifr_mtu < mtu) {
        ifr.ifr_mtu = mtu;
        if (ioctl(s, SIOCSIFMTU, &ifr) != 0) why = std::string("cannot set its MTU: ") + std::strerror(errno);
    }
    close(s);
    return why;
}

} // namespace

uint16_t EthPort::buffer_size(uint16_t mtu)
{
    const uint32_t frame = uint32_t(mtu) + RTE_ETHER_HDR_LEN + RTE_VLAN_HLEN + RTE_ETHER_CRC_LEN;
    const uint32_t room = std::max({uint32_t(RTE_MBUF_DEFAULT_DATAROOM), frame, packet_frame_size(mtu)});
    return uint16_t(RTE_PKTMBUF_HEADROOM + room);
}

std::string EthPort::probe(const std::string& role, const std::string& spec, uint16_t queues, uint16_t mtu,
                           rte_mempool* pool)
{
    static unsigned serial = 0;
    uint16_t id = 0;
    if (spec.rfind("auto:", 0) == 0) {
        const std::string iface = spec.substr(5);
        const std::string n = std::to_string(serial++);
        const std::string q = std::to_string(queues);
        const std::string xdp = "net_af_xdp" + n + ",iface=" + iface + ",start_queue=0,queue_count=" + q;
        // AF_XDP (DPDK 22.11) carries a frame in one page: jumbo frames go by AF_PACKET.
        if (mtu <= RTE_ETHER_MTU && hotplug(xdp, id)) return vdev_name(xdp);
        const uint32_t frame = packet_frame_size(pool);
        const std::string pkt = "net_af_packet" + n + ",iface=" + iface + ",qpairs=" + q +
                                ",blocksz=" + std::to_string(frame == 2048 ? 4096 : 4 * frame) + ",framesz=" + std::to_string(frame) +
                                ",framecnt=" + std::to_string(frame == 2048 ? 4096 : 1024);
        if (hotplug(pkt, id)) return vdev_name(pkt);
        throw std::runtime_error(role + ".port = \"" + spec + "\": neither net_af_xdp nor net_af_packet could open " +
                                 iface + " (does the interface exist in this namespace?)");
    }
    if (find_port(spec, id)) return spec;
    if (spec.rfind("net_", 0) == 0 && hotplug(spec, id)) return vdev_name(spec);
    throw std::runtime_error(role + ".port = \"" + spec + "\": no such DPDK port (" +
                             (rte_errno ? std::string(rte_strerror(rte_errno)) : "not probed") +
                             "); for a NIC bind it with dpdk-devbind.py and give its PCI address");
}

uint64_t rx_offloads_for(uint64_t rx_offload_capa) { return rx_offload_capa & RTE_ETH_RX_OFFLOAD_IPV4_CKSUM; }

EthPort::EthPort(const std::string& role, const std::string& spec, uint16_t queues, uint16_t rx_desc,
                 uint16_t tx_desc, rte_mempool* pool, bool source_rss, uint16_t mtu)
{
    name_ = probe(role, spec, queues, mtu, pool);
    if (!find_port(name_, id_)) throw std::runtime_error(role + ".port: " + name_ + " vanished after probing");

    rte_eth_dev_info info{};
    if (int rc = rte_eth_dev_info_get(id_, &info); rc != 0)
        throw std::runtime_error(role + ".port: " + name_ + ": cannot read device info: " + rte_strerror(-rc));
    driver_ = info.driver_name ? info.driver_name : "?";
    if (info.max_rx_queues < queues || info.max_tx_queues < queues)
        throw std::runtime_error(role + ".port: " + name_ + " (" + driver_ + ") has " +
                                 std::to_string(info.max_rx_queues) + " RX queues, " + std::to_string(queues) +
                                 " workers need one each");

    // Where the NIC can check IPv4 header checksums, it does, and the parser
    // takes its word (RTE_MBUF_F_RX_IP_CKSUM_GOOD/BAD) instead of summing the
    // header again: about a tenth of the instructions of an established packet.
    const uint64_t rx_offloads = rx_offloads_for(info.rx_offload_capa);
    rx_ip_checksum_ = rx_offloads != 0;
    rte_eth_conf conf{};
    conf.rxmode.offloads = rx_offloads;
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
            conf.rxmode.offloads = rx_offloads;
        }
    }
    if (!rss.on)
        if (int rc = rte_eth_dev_configure(id_, queues, queues, &conf); rc != 0)
            throw std::runtime_error(role + ".port: " + name_ + ": configure failed: " + rte_strerror(-rc));
    if (mtu > RTE_ETHER_MTU) raise_mtu(role, spec, mtu);
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

// Jumbo frames: the port's MTU up to `mtu`. net_af_packet announces 1518-byte
// frames to ethdev whatever its frame slots hold, so there the kernel
// interface's MTU is what counts.
void EthPort::raise_mtu(const std::string& role, const std::string& spec, uint16_t mtu)
{
    const std::string what = role + ".mtu = " + std::to_string(mtu) + ": port " + name_ + " (" + driver_ + ")";
    if (driver_ == "net_af_packet") {
        const std::string iface = spec.rfind("auto:", 0) == 0 ? spec.substr(5) : "";
        if (!iface.empty())
            if (const std::string why = raise_kernel_mtu(iface, mtu); !why.empty())
                throw std::runtime_error(what + ": interface " + iface + ": " + why);
        return; // a vdev string names its own framesz; the interface's MTU is the operator's
    }
    if (int rc = rte_eth_dev_set_mtu(id_, mtu); rc != 0) {
        if (rc == -ENOTSUP) throw std::runtime_error(what + " cannot change its MTU (its driver does not support it)");
        rte_eth_dev_info info{};
        rte_eth_dev_info_get(id_, &info);
        throw std::runtime_error(what + " refuses that MTU (" + rte_strerror(-rc) + "; it takes " +
                                 std::to_string(info.min_mtu) + "-" + std::to_string(info.max_mtu) + ")");
    }
}

EthPort::~EthPort()
{
    rte_eth_dev_stop(id_);
    rte_eth_dev_close(id_);
}

} // namespace ephemera
