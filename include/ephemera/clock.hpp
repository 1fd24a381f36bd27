// Time as the translation core sees it: whole seconds on a monotonic clock.
// The caller passes "now" into every burst, so tests move time by passing a
// different number and the workers read the real clock once per burst.
#pragma once

#include <cstdint>

namespace ephemera {

using Tick = uint32_t; // seconds since an arbitrary epoch

// A clock that tests move by hand.
class FakeClock {
public:
    explicit FakeClock(Tick start = 1000) : now_(start) {}
    Tick now() const { return now_; }
    void advance(Tick seconds) { now_ += seconds; }
    void set(Tick t) { now_ = t; }

private:
    Tick now_;
};

// Monotonic seconds from the TSC; cheap enough to read once per burst.
class TscClock {
public:
    TscClock();
    Tick now() const;

private:
    uint64_t start_;
    uint64_t hz_;
};

} // namespace ephemera
