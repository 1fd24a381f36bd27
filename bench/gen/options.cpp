#include "options.hpp"

#include <arpa/inet.h>

#include <cstdio>
#include <cstdlib>
#include <map>

#include <CLI/CLI.hpp>

namespace bench {

const char* to_string(Mode m)
{
    switch (m) {
    case Mode::Rate: return "rate";
    case Mode::Ndr: return "ndr";
    case Mode::Cps: return "cps";
    case Mode::Established: return "established";
    }
    return "?";
}

const char* to_string(Proto p) { return p == Proto::Udp ? "udp" : "tcp"; }

namespace {

constexpr const char* kUsage =
    "usage: ephemera-bench --tx-port PORT [--rx-port PORT] [--mode rate|ndr|cps|established] [--proto udp|tcp]\n"
    "                      [--flows N] [--size 64..1500] [--rate PPS] [--duration S] [--packets N] [--no-rx] [--json]\n"
    "                      [options] -- [EAL args]";

uint32_t parse_ipv4(const std::string& text, const char* what)
{
    in_addr a{};
    if (inet_pton(AF_INET, text.c_str(), &a) != 1) throw CLI::ValidationError(what, "not an IPv4 address: " + text);
    return ntohl(a.s_addr);
}

[[noreturn]] void usage_error(const std::string& why)
{
    std::fprintf(stderr, "%s\nephemera-bench: error: %s\n", kUsage, why.c_str());
    std::exit(2);
}

} // namespace

Options parse_options(int argc, char** argv)
{
    Options o;
    for (int i = 0; i < argc; ++i) o.command_line += (i ? " " : "") + std::string(argv[i]);
    // EAL arguments follow "--"; CLI11 sees only what comes before.
    int ours = argc;
    for (int i = 1; i < argc; ++i)
        if (std::string(argv[i]) == "--") {
            ours = i;
            for (int j = i + 1; j < argc; ++j) o.eal_args.emplace_back(argv[j]);
            break;
        }

    CLI::App app{"ephemera-bench: DPDK traffic generator and sink for NAT gateways (RFC 2544 / RFC 9693)"};
    app.footer("EAL arguments follow \"--\" (default: --no-huge -m 512 --no-pci --no-shconf -l 0).");
    std::string subscriber = "100.64.0.2", dst = "203.0.113.2", gateway = "100.64.0.1", gateway_mac;
    const std::map<std::string, Mode> modes{
        {"rate", Mode::Rate}, {"ndr", Mode::Ndr}, {"cps", Mode::Cps}, {"established", Mode::Established}};
    const std::map<std::string, Proto> protos{{"udp", Proto::Udp}, {"tcp", Proto::Tcp}};

    app.add_option("--tx-port", o.tx_port, "inside port: EAL device name, vdev string (net_memif0,role=client,...) or PCI address")
        ->required();
    app.add_option("--rx-port", o.rx_port, "outside port (the sink); default: the TX port");
    // Read as text: CLI11 would print the uint8_t enums' values as characters in --help.
    std::string mode = "rate", proto = "udp";
    app.add_option("--mode", mode, "rate | ndr (RFC 2544 no-drop rate) | cps (RFC 9693 connections/s) | "
                                   "established (RFC 9693 throughput over established sessions)")
        ->check(CLI::IsMember({"rate", "ndr", "cps", "established"}))
        ->capture_default_str();
    app.add_option("--proto", proto, "udp | tcp")->check(CLI::IsMember({"udp", "tcp"}))->capture_default_str();
    app.add_option("--flows", o.flows, "flows (sessions) to send over")->check(CLI::Range(1u, 1u << 26));
    app.add_option("--subscriber", subscriber, "first subscriber address (inside source), in 100.64.0.0/10");
    app.add_option("--subscribers", o.subscribers, "subscriber addresses (default: min(flows, 1024))")
        ->check(CLI::Range(1u, 1u << 22));
    app.add_option("--src-port", o.src_port_base, "first inside source port")->check(CLI::Range(1, 65535));
    app.add_option("--dst", dst, "first destination address");
    app.add_option("--destinations", o.destinations, "destination addresses")->check(CLI::Range(1u, 65536u));
    app.add_option("--dst-port", o.dst_port_base, "first destination port")->check(CLI::Range(1, 65535));
    app.add_option("--dst-ports", o.dst_ports, "destination ports")->check(CLI::Range(1, 65535));
    app.add_option("--size", o.size, "frame size in bytes, FCS included (RFC 2544)")->check(CLI::Range(64, 1500));
    app.add_option("--rate", o.rate, "offered packets (cps: connections) per second; 0: as fast as possible")
        ->check(CLI::Range(0.0, 1e9));
    app.add_option("--duration", o.duration, "seconds per trial")->check(CLI::Range(0.1, 3600.0));
    app.add_option("--warmup-rate", o.warmup_rate, "packets per second while warming up flows")
        ->check(CLI::Range(1.0, 1e9));
    app.add_option("--repeat", o.repeat, "established (and ndr's unpaced bound): trials to run; the median counts")
        ->check(CLI::Range(1u, 99u));
    app.add_option("--loss-tolerance", o.loss_tolerance, "ndr: loss allowed, percent")->check(CLI::Range(0.0, 100.0));
    app.add_option("--ndr-iterations", o.ndr_iterations, "ndr: most trials of the binary search")
        ->check(CLI::Range(1u, 64u));
    app.add_option("--ndr-resolution", o.ndr_resolution, "ndr: stop when the interval is below this percent")
        ->check(CLI::Range(0.01, 50.0));
    app.add_option("--drain", o.drain, "seconds to wait for packets in flight after a trial")
        ->check(CLI::Range(0.0, 10.0));
    app.add_option("--gateway", gateway, "gateway's inside address, resolved by ARP");
    app.add_option("--gateway-mac", gateway_mac, "gateway's inside MAC (no ARP)");
    app.add_option("--link-timeout", o.link_timeout, "seconds to wait for link, ARP and the first packet through")
        ->check(CLI::Range(0.1, 600.0));
    app.add_option("--mbufs", o.mbufs, "mbuf pool size")->check(CLI::Range(1024u, 1u << 24));
    app.add_option("--descriptors", o.descriptors, "RX/TX descriptors per queue")->check(CLI::Range(64, 16384));
    app.add_flag("--json", o.json, "print the results as JSON on stdout (the table goes to stderr)");
    app.add_option("--max-loss", o.max_loss, "exit 1 if the result lost more than this percent (self-tests)")
        ->check(CLI::Range(0.0, 100.0));
    app.add_flag("-q,--quiet", o.quiet, "no progress line every second");
    app.add_flag("--no-rx", o.tx_only,
                 "transmit only (UDP, rate or cps): no sink, no probe through the gateway; the result is what "
                 "was offered, delivery is counted elsewhere (another namespace, a switch); give --gateway-mac "
                 "or let ARP resolve --gateway on the TX port");
    app.add_option("--packets", o.packets, "most packets (cps: new flows) per trial; 0: no limit")
        ->check(CLI::Range(uint64_t(0), uint64_t(1) << 40));

    try {
        app.parse(ours, argv);
        o.mode = modes.at(mode);
        o.proto = protos.at(proto);
        o.subscriber_base = parse_ipv4(subscriber, "--subscriber");
        o.dst_base = parse_ipv4(dst, "--dst");
        o.gateway_ip = parse_ipv4(gateway, "--gateway");
        if (!gateway_mac.empty()) {
            rte_ether_addr mac;
            if (rte_ether_unformat_addr(gateway_mac.c_str(), &mac) != 0)
                throw CLI::ValidationError("--gateway-mac", "not a MAC address: " + gateway_mac);
            o.gateway_mac = mac;
        }
    } catch (const CLI::CallForHelp&) {
        std::printf("%s", app.help().c_str());
        std::exit(0);
    } catch (const CLI::Error& e) {
        usage_error(e.what());
    }

    if (o.tx_only) {
        if (!o.rx_port.empty()) usage_error("--no-rx: no --rx-port");
        if (o.proto != Proto::Udp || (o.mode != Mode::Rate && o.mode != Mode::Cps))
            usage_error("--no-rx: --proto udp with --mode rate or cps only (the others need the sink)");
        if (o.max_loss >= 0) usage_error("--no-rx: no loss to check (--max-loss)");
    }

    // 100.64.0.0/10, the shared address space: subscribers stay inside it.
    const uint64_t last = uint64_t(o.subscriber_base) + o.subscriber_count() - 1;
    if ((o.subscriber_base & 0xFFC00000u) != 0x64400000u || last > 0x647FFFFFu)
        usage_error("--subscriber/--subscribers: the subscribers must lie in 100.64.0.0/10");
    if (uint64_t(o.dst_base) + o.destinations - 1 > 0xFFFFFFFFu) usage_error("--destinations: past 255.255.255.255");
    if (uint32_t(o.dst_port_base) + o.dst_ports - 1 > 65535) usage_error("--dst-ports: past port 65535");
    const uint64_t tuples = uint64_t(o.subscriber_count()) * (65536u - o.src_port_base);
    if (o.flows > tuples)
        usage_error("--flows " + std::to_string(o.flows) + ": only " + std::to_string(tuples) +
                    " distinct (subscriber, source port) pairs; raise --subscribers");
    return o;
}

} // namespace bench
