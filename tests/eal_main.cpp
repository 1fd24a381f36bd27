// main() of every test binary: GoogleTest's flags first, then a small EAL
// without hugepages, PCI or shared config, so tests run anywhere, as many at
// once as meson likes (each process has its own --file-prefix).
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <unistd.h>

#include <gtest/gtest.h>
#include <rte_eal.h>
#include <rte_errno.h>

#include "packet_builder.hpp"

int main(int argc, char** argv)
{
    ::testing::InitGoogleTest(&argc, argv);

    std::vector<std::string> args = {
        argc > 0 ? argv[0] : "ephemera-test",
        "--no-huge",
        "-m",
        "512",
        "--no-shconf",
        "--no-pci",
        "--no-telemetry",
        "-l",
        "0",
        "--log-level=*:error",
        "--file-prefix=ephemera-test-" + std::to_string(getpid()),
    };
    std::vector<char*> eal_argv;
    for (std::string& a : args) eal_argv.push_back(a.data());
    eal_argv.push_back(nullptr);

    if (rte_eal_init(int(args.size()), eal_argv.data()) < 0) {
        std::fprintf(stderr, "rte_eal_init failed: %s\n", rte_strerror(rte_errno));
        return 1;
    }
    ephtest::mbuf_pool(); // created once, before any test counts its mbufs

    const int rc = RUN_ALL_TESTS();
    // Each run has its own prefix: its runtime directory would only pile up.
    const std::string runtime_dir = rte_eal_get_runtime_dir();
    rte_eal_cleanup();
    std::error_code ignored;
    std::filesystem::remove_all(runtime_dir, ignored);
    return rc;
}
