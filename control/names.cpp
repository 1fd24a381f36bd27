// Names of enums as they appear in logs, counters and the control API.
#include "ephemera/flow_key.hpp"
#include "ephemera/stats.hpp"

namespace ephemera {

const char* to_string(L4 l4)
{
    switch (l4) {
    case L4::Tcp: return "tcp";
    case L4::Udp: return "udp";
    case L4::Icmp: return "icmp";
    case L4::Sctp: return "sctp";
    }
    return "?";
}

const char* to_string(Dir dir) { return dir == Dir::Out ? "out" : "in"; }

const char* to_string(Drop reason)
{
    switch (reason) {
    case Drop::Malformed: return "malformed";
    case Drop::BadChecksum: return "bad_checksum";
    case Drop::NoMapping: return "no_mapping";
    case Drop::Filtered: return "filtered";
    case Drop::PortsExhausted: return "ports_exhausted";
    case Drop::TableFull: return "table_full";
    case Drop::Ttl: return "ttl";
    case Drop::Fragment: return "fragment";
    case Drop::Unsupported: return "unsupported";
    case Drop::WrongWorker: return "wrong_worker";
    case Drop::SubscriberLimit: return "subscriber_limit";
    case Drop::NoNeighbor: return "no_neighbor";
    case Drop::Count: break;
    }
    return "?";
}

} // namespace ephemera
