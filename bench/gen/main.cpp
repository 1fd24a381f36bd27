// ephemera-bench: a DPDK traffic generator and sink for NAT gateways. See
// options.hpp for the command line, modes.hpp for the measurements and
// engine.hpp for the loop. Exit status: 0 measured, 1 could not (a port,
// the link, ARP, nothing through), 2 bad arguments.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <unistd.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>

#include "bench_port.hpp"
#include "engine.hpp"
#include "frames.hpp"
#include "modes.hpp"
#include "options.hpp"
#include "report.hpp"

using namespace bench;

namespace {

std::string g_own_runtime_dir; // set when the EAL runs under our own per-process prefix

// Our own per-process prefix: leave nothing behind in /var/run/dpdk.
void remove_own_runtime_dir()
{
    std::error_code ec;
    if (!g_own_runtime_dir.empty()) std::filesystem::remove_all(g_own_runtime_dir, ec);
}

[[noreturn]] void die(const std::string& why)
{
    std::fprintf(stderr, "ephemera-bench: error: %s\n", why.c_str());
    remove_own_runtime_dir();
    std::exit(1);
}

} // namespace

int main(int argc, char** argv)
{
    const Options o = parse_options(argc, argv);
    if (o.proto == Proto::Tcp && o.size < kMinTcpDataSize && o.mode != Mode::Cps)
        std::fprintf(stderr, "ephemera-bench: note: TCP data frames carry the stamp: %u bytes, not %u\n",
                     unsigned(kMinTcpDataSize), unsigned(o.size));

    // No EAL arguments: a small, private, hugepage-free EAL on one lcore.
    std::vector<std::string> eal = {"ephemera-bench"};
    const bool own_prefix = o.eal_args.empty();
    if (own_prefix) {
        for (const char* a : {"--no-huge", "-m", "512", "--no-pci", "--no-shconf", "-l", "0", "--log-level=*:warning"})
            eal.emplace_back(a);
        eal.push_back("--file-prefix=hbgen-bench-" + std::to_string(getpid()));
    } else {
        eal.insert(eal.end(), o.eal_args.begin(), o.eal_args.end());
    }
    std::vector<char*> eal_argv;
    for (auto& s : eal) eal_argv.push_back(s.data());
    if (rte_eal_init(int(eal_argv.size()), eal_argv.data()) < 0)
        die(std::string("EAL initialisation failed: ") + rte_strerror(rte_errno));
    if (own_prefix) g_own_runtime_dir = rte_eal_get_runtime_dir();

    rte_mempool* pool = rte_pktmbuf_pool_create("bench_mbufs", o.mbufs, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                                int(rte_socket_id()));
    if (pool == nullptr) die("cannot allocate " + std::to_string(o.mbufs) + " mbufs: " + rte_strerror(rte_errno));

    int rc = 0;
    {
        std::unique_ptr<BenchPort> tx, rx;
        try {
            tx = std::make_unique<BenchPort>(o.tx_port, o.descriptors, pool);
            if (!o.same_port()) rx = std::make_unique<BenchPort>(o.rx_port, o.descriptors, pool);
        } catch (const std::exception& e) {
            die(e.what());
        }
        BenchPort& rx_port = rx ? *rx : *tx;
        Engine engine(o, *tx, rx_port, pool);
        if (!engine.connect()) die(engine.error());
        const Outcome out = run_mode(o, engine);
        if (o.json) {
            print_table(stderr, o, *tx, rx_port, engine, out);
            std::printf("%s\n", report_json(o, *tx, rx_port, engine, out).dump(2).c_str());
        } else {
            print_table(stdout, o, *tx, rx_port, engine, out);
        }
        // Something was measured, but nothing arrived (--no-rx: nothing was sent): say so in the status.
        if (out.result == nullptr || (o.tx_only ? out.result->sent : out.result->received) == 0) rc = 1;
        if (o.mode == Mode::Ndr && !out.ndr_found) rc = 1;
        if (o.max_loss >= 0 && out.result && out.result->loss_pct() > o.max_loss) {
            std::fprintf(stderr, "ephemera-bench: loss %.4f %% is above --max-loss %.4f %%\n", out.result->loss_pct(),
                         o.max_loss);
            rc = 1;
        }
    }
    rte_mempool_free(pool);
    rte_eal_cleanup();
    remove_own_runtime_dir();
    return rc;
}
