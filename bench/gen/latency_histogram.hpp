// Latency histogram in nanoseconds: log-linear buckets (16 per power of two,
// so within 6.25 % of the value), fixed size, no allocation when recording.
#pragma once

#include <array>
#include <bit>
#include <cstdint>

namespace bench {

class LatencyHistogram {
public:
    void record(uint64_t ns)
    {
        ++counts_[bucket(ns)];
        ++total_;
        if (ns < min_) min_ = ns;
        if (ns > max_) max_ = ns;
    }
    void clear() { *this = LatencyHistogram{}; }
    uint64_t count() const { return total_; }
    uint64_t min() const { return total_ ? min_ : 0; }
    uint64_t max() const { return max_; }

    // The value below which a fraction q of the samples lie (upper bound of its bucket).
    uint64_t percentile(double q) const
    {
        if (total_ == 0) return 0;
        const uint64_t rank = uint64_t(q * double(total_ - 1)) + 1;
        uint64_t seen = 0;
        for (unsigned b = 0; b < kBuckets; ++b) {
            seen += counts_[b];
            if (seen >= rank) {
                const uint64_t upper = upper_of(b);
                return upper < max_ ? upper : max_;
            }
        }
        return max_;
    }

private:
    static constexpr unsigned kSub = 4; // log2 of the buckets per power of two
    static constexpr unsigned kBuckets = (64 - kSub + 1) << kSub;

    static unsigned bucket(uint64_t v)
    {
        if (v < (1u << kSub)) return unsigned(v);
        const unsigned e = unsigned(std::bit_width(v)) - 1 - kSub; // v >> e has kSub + 1 bits
        return ((e + 1) << kSub) + unsigned((v >> e) & ((1u << kSub) - 1));
    }
    static uint64_t upper_of(unsigned b)
    {
        if (b < (1u << kSub)) return b;
        const unsigned e = (b >> kSub) - 1;
        const uint64_t mant = (1u << kSub) | (b & ((1u << kSub) - 1));
        return ((mant + 1) << e) - 1;
    }

    std::array<uint64_t, kBuckets> counts_{};
    uint64_t total_ = 0, min_ = UINT64_MAX, max_ = 0;
};

} // namespace bench
