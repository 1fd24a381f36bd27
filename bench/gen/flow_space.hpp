// The flows ephemera-bench sends: flow i is (subscriber i mod S, source port
// base + (i div S) mod P, destination i mod D, destination port i mod DP).
// Every i below S * P is a distinct (inside address, inside port) pair, so a
// distinct NAT mapping. A cursor walks the flows without dividing per packet.
#pragma once

#include <cstdint>

namespace bench {

struct FlowTuple {
    uint32_t src, dst;     // host order
    uint16_t sport, dport; // host order
};

struct FlowSpace {
    uint32_t sub_base = 0, subs = 1;
    uint16_t sport_base = 1024;
    uint32_t sport_span = 1;  // 65536 - sport_base
    uint32_t dst_base = 0, dsts = 1;
    uint16_t dport_base = 0, dports = 1;

    uint64_t size() const { return uint64_t(subs) * sport_span; }
};

class FlowCursor {
public:
    explicit FlowCursor(const FlowSpace& s) : s_(s) {}

    void seek(uint32_t i)
    {
        index_ = i;
        sub_ = i % s_.subs;
        port_ = (i / s_.subs) % s_.sport_span;
        dst_ = i % s_.dsts;
        dport_ = i % s_.dports;
    }
    uint32_t index() const { return index_; }
    FlowTuple tuple() const
    {
        return {s_.sub_base + sub_, s_.dst_base + dst_, uint16_t(s_.sport_base + port_), uint16_t(s_.dport_base + dport_)};
    }
    void next()
    {
        ++index_;
        if (++sub_ == s_.subs) {
            sub_ = 0;
            if (++port_ == s_.sport_span) port_ = 0;
        }
        if (++dst_ == s_.dsts) dst_ = 0;
        if (++dport_ == s_.dports) dport_ = 0;
    }

private:
    const FlowSpace& s_;
    uint32_t index_ = 0, sub_ = 0, port_ = 0, dst_ = 0, dport_ = 0;
};

} // namespace bench
