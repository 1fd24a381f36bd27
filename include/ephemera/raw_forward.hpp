// The floor every NAT figure is measured against: parse Ethernet (+802.1Q) and
// IPv4 just enough to know it is IPv4, rewrite the MAC addresses, forward.
#pragma once

#include <cstdint>

#include <rte_ether.h>
#include <rte_mbuf.h>

namespace ephemera {

// Rewrites src/dst MACs of IPv4 packets in pkts[0..n) and compacts them to the
// front; frees anything else. Returns how many are left to transmit.
uint16_t raw_forward(rte_mbuf** pkts, uint16_t n, const rte_ether_addr& src, const rte_ether_addr& dst);

} // namespace ephemera
