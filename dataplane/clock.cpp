#include "ephemera/clock.hpp"

#include <rte_cycles.h>

namespace ephemera {

TscClock::TscClock() : start_(rte_get_tsc_cycles()), hz_(rte_get_tsc_hz()) {}

Tick TscClock::now() const
{
    // Start at 1 so that 0 can mean "never" in tables.
    return Tick((rte_get_tsc_cycles() - start_) / hz_) + 1;
}

} // namespace ephemera
