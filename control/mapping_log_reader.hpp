// The "who" query over the text mapping log (format: mapping_log.hpp).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ephemera {

struct WhoMatch {
    uint64_t from_ms;     // create time; 0: the log holds only the delete (it began later)
    uint64_t to_ms;       // delete time; 0 = still held at the end of the log
    uint32_t inside_addr; // host order
    uint16_t inside_port;
    std::string protocol; // "tcp", "udp", "icmp", "sctp"
};

// Who held ext_addr:ext_port (host order) at time at_ms (Unix ms, bounds
// included), according to the log file. protocol "" = any. Creates and
// deletes are paired per (protocol, external address:port) in time order; a
// start or stop line (daemon restart) ends every mapping still open, at its
// time. Lines that do not parse are skipped. Throws std::runtime_error when
// the file cannot be read.
std::vector<WhoMatch> who_held(const std::string& log_path, uint32_t ext_addr, uint16_t ext_port, uint64_t at_ms,
                               const std::string& protocol = "");

} // namespace ephemera
