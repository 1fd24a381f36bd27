// The CGNAT mapping log, for abuse tracing: who held pool address:port when
// (RFC 6888 REQ-12, RFC 8158). Fed on the control plane (main thread) with
// the MappingEvents the workers put on their rings; writes any of a text
// file, syslog and IPFIX (control/ipfix.hpp).
//
// Text format: one line per event, fields separated by one space, UTC.
//
//   2025-11-21T16:30:00.123Z 1763742600123 create udp inside=100.64.0.2:40001 external=198.51.100.11:60966 worker=0
//   2025-11-21T16:35:12.007Z 1763742912007 delete udp inside=100.64.0.2:40001 external=198.51.100.11:60966 worker=0
//
//   field 1  ISO 8601 time of the event, milliseconds, UTC ("Z")
//   field 2  the same time in milliseconds since the Unix epoch (for scripts)
//   field 3  "create" (a mapping, i.e. an endpoint-independent binding, was
//            made: the subscriber holds the external address:port from now)
//            or "delete" (it ended; the port then sits in quarantine)
//   field 4  protocol: tcp, udp, icmp, sctp (each has its own port space;
//            for icmp the "port" is the echo query identifier)
//   field 5  inside=ADDR:PORT   the subscriber's address and port
//   field 6  external=ADDR:PORT the pool address and port it was given
//   field 7  worker=N           the worker that owns the mapping
//
// Port-block mode (RFC 7422-style bulk allocation) logs one line per block
// instead of one per mapping: a subscriber got, or gave back, the block of
// consecutive ports FIRST-LAST on a pool address, the same numbers in every
// protocol. The mappings made inside a block are not logged.
//
//   2025-11-21T16:30:00.123Z 1763742600123 block-alloc all inside=100.64.0.2 external=198.51.100.3:50000-50063 worker=0
//   2025-11-21T17:10:04.500Z 1763745004500 block-free all inside=100.64.0.2 external=198.51.100.3:50000-50063 worker=0
//
//   field 3  "block-alloc" (the subscriber holds every port of the block
//            from now) or "block-free" (it gave the block back; its ports
//            then sit in quarantine)
//   field 4  "all": the block holds its ports in every protocol
//   field 5  inside=ADDR                the subscriber (no port: all of its
//            flows share the block, whatever their inside ports)
//   field 6  external=ADDR:FIRST-LAST   the pool address and the block's
//            first and last port, both included (FIRST <= LAST)
//   field 7  worker=N                   the worker that reported it
//
// Fields 5 and 6 are where a mapping line has them, and a block line is told
// from a mapping line by field 3 alone (no "-" in a mapping's port).
//
// No destination address or port is ever written (RFC 6888 REQ-12: the
// events do not carry one). Two more kinds of line mark the daemon's life,
// so that a reader can close mappings and blocks a restart ended without a
// delete or block-free:
//
//   2025-11-21T16:29:58.001Z 1763742598001 start pid=4242
//   2025-11-21T17:00:00.250Z 1763744400250 stop pid=4242
//
// Scripts: `awk '$3=="create" || $3=="delete"'`, `awk '$3 ~ /^block-/'`;
// the who-held query, over mappings and blocks, is who_held() in
// mapping_log_reader.hpp. IPFIX sends blocks with their own template (257,
// RFC 8158 natEvent 16/17; control/ipfix.hpp). Syslog gets the same line without
// field 1 (syslog stamps its own time), as ident "ephemera", LOG_DAEMON,
// LOG_INFO. The file is appended to and flushed by flush() (about ten times
// a second); reopen() (e.g. on SIGHUP, after logrotate) opens the path anew.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

#include "ephemera/gateway_config.hpp"
#include "ephemera/mapping_event.hpp"
#include "mapping_log_reader.hpp" // WhoMatch, who_held()

namespace ephemera {

namespace ipfix {
class Exporter;
}

// One event as a text line, without the newline; with_iso_time false: the
// syslog form, from field 2 on.
std::string format_mapping_event(const MappingEvent& e, bool with_iso_time = true);
// "2025-11-21T16:30:00.123Z"
std::string format_iso_ms(uint64_t unix_ms);

class MappingLog {
public:
    // Opens the file (append, created 0640 if missing), syslog and the IPFIX
    // socket, as configured. Throws std::runtime_error with one line,
    // `log.file = "PATH": why` or `log.ipfix_collector = "ADDR:PORT": why`.
    // Opens the outputs and writes nothing yet: a daemon that fails to start
    // must not write a start line into the log of one that runs.
    explicit MappingLog(const MappingLogConfig& config);
    ~MappingLog(); // writes the stop line if start() wrote a start line, flushes
    // Writes the start line: the gateway is about to create mappings, and a
    // reader may end every mapping an earlier run left open.
    void start();
    MappingLog(const MappingLog&) = delete;
    MappingLog& operator=(const MappingLog&) = delete;

    void record(const MappingEvent& e); // main thread only
    void flush();                       // sends pending IPFIX, flushes the file
    void reopen();                      // the file again (after rotation); throws as the constructor

    bool active() const { return file_ || syslog_ || exporter_; } // anything configured
    uint64_t events() const { return events_; }
    uint64_t ipfix_messages() const;
    uint64_t ipfix_errors() const;   // messages the kernel refused (collector unreachable...)
    uint64_t file_errors() const { return file_errors_; } // failed writes/flushes (disk full...)

private:
    void write_line(const std::string& line_without_iso, uint64_t time_ms);
    void open_file();
    void marker(const char* what, const std::string& note = ""); // the start and stop lines

    MappingLogConfig config_;
    std::FILE* file_ = nullptr;
    bool syslog_ = false;
    std::unique_ptr<ipfix::Exporter> exporter_;
    uint64_t events_ = 0;
    uint64_t file_errors_ = 0;
    bool started_ = false;
};

} // namespace ephemera
