// ephemera-bench's command line: what to send, where, how fast, and which
// measurement to make. Parsed once at start; read-only afterwards.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <rte_ether.h>

namespace bench {

enum class Mode : uint8_t { Rate, Ndr, Cps, Established };
enum class Proto : uint8_t { Udp, Tcp };

const char* to_string(Mode m);
const char* to_string(Proto p);

struct Options {
    std::string tx_port;          // inside: towards the gateway's inside port
    std::string rx_port;          // outside: the sink behind the gateway (empty: the TX port)
    Mode mode = Mode::Rate;
    Proto proto = Proto::Udp;

    uint32_t flows = 1024;
    uint32_t subscriber_base = 0x64400002; // 100.64.0.2, host order
    uint32_t subscribers = 0;              // 0: min(flows, 1024)
    uint16_t src_port_base = 1024;
    uint32_t dst_base = 0xCB007102;        // 203.0.113.2
    uint32_t destinations = 1;
    uint16_t dst_port_base = 5001;
    uint16_t dst_ports = 1;
    uint16_t size = 64;                    // frame size with the FCS, RFC 2544 style

    double rate = 0;                       // packets (cps: connections) per second; 0: as fast as it goes
    double duration = 5;                   // seconds per trial
    double warmup_rate = 1e6;              // pps while the NAT learns the flows
    double loss_tolerance = 0.1;           // percent (ndr)
    unsigned repeat = 1;                   // established, and ndr's unpaced bound: trials, the median is the result
    unsigned ndr_iterations = 10;
    double ndr_resolution = 1.0;           // percent of the upper bound: the search stops below it
    double drain = 0.2;                    // seconds polled after TX stops, for packets in flight

    uint32_t gateway_ip = 0x64400001;      // 100.64.0.1: ARP-resolved unless gateway_mac
    std::optional<rte_ether_addr> gateway_mac;
    double link_timeout = 10;              // seconds: link up, ARP, first packet through
    uint32_t mbufs = 16383;
    uint16_t descriptors = 1024;
    bool json = false;
    bool quiet = false;                    // no progress lines
    double max_loss = -1;                  // exit 1 when the result's loss (percent) is above; < 0: never
    bool tx_only = false;                  // --no-rx: transmit only, nothing counted (the sink is elsewhere)
    uint64_t packets = 0;                  // most packets (cps: connections) per trial; 0: no limit

    std::vector<std::string> eal_args;     // everything after "--"
    std::string command_line;              // for the report

    uint32_t subscriber_count() const { return subscribers ? subscribers : (flows < 1024 ? flows : 1024); }
    bool same_port() const { return rx_port.empty() || rx_port == tx_port; }
};

// Parses argv. On bad arguments prints the usage line and the reason to
// stderr and exits 2; --help prints the help and exits 0.
Options parse_options(int argc, char** argv);

} // namespace bench
