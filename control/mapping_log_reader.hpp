// The "who" query over the text mapping log (format: mapping_log.hpp).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ephemera {

struct WhoMatch {
    uint64_t from_ms;     // create / block-alloc time; 0: the log holds only the end (it began later)
    uint64_t to_ms;       // delete / block-free time; 0 = still held at the end of the log
    uint32_t inside_addr; // host order
    uint16_t inside_port; // 0 for a block (the subscriber's flows share it whatever their ports)
    std::string protocol; // "tcp", "udp", "icmp", "sctp"; "all" for a block
    // Port-block mode: the block that holds the port (is_block), on the pool
    // address that was asked about.
    bool is_block = false;
    uint16_t block_first = 0;
    uint16_t block_last = 0;
};

// Who held ext_addr:ext_port (host order) at time at_ms (Unix ms, bounds
// included), according to the log files, read as one log in the order given
// (a rotated log oldest first: a mapping created before a rotation and
// deleted after it has both times): the mappings of that port, and the
// port blocks that contain it. protocol "" = any; a block matches every
// protocol. Creates and deletes are paired per (protocol, external
// address:port), block-allocs and block-frees per block (address, first,
// last), in time order: a second create/alloc closes an open one (its end
// was lost), a delete/free without its start is held from an unknown time
// (from_ms 0), and a start or stop line (daemon restart) ends every mapping
// and block still open, at its time. Lines that do not parse, and lines over
// 4 KB (read a piece at a time, never held), are skipped.
// Throws std::runtime_error, naming the file, when one cannot be read.
std::vector<WhoMatch> who_held(const std::vector<std::string>& log_paths, uint32_t ext_addr, uint16_t ext_port,
                               uint64_t at_ms, const std::string& protocol = "");

} // namespace ephemera
