#include "ephemera/port_allocator.hpp"

#include <algorithm>
#include <random>

namespace ephemera {

PortLayout::PortLayout(PortRange range, unsigned workers)
    : range_(range), workers_(workers), first_(workers), size_(workers), owner_(range.size())
{
    validate_port_range(range.first, range.last);
    if (workers == 0 || workers > range.size() || workers > 255)
        throw ConfigError("workers = " + std::to_string(workers) + ": cannot split ports " +
                          std::to_string(range.first) + "-" + std::to_string(range.last) + " that way");
    const uint32_t base = range.size() / workers, extra = range.size() % workers;
    uint32_t next = range.first;
    for (unsigned w = 0; w < workers; ++w) {
        first_[w] = uint16_t(next);
        size_[w] = base + (w < extra ? 1 : 0);
        std::fill_n(owner_.begin() + (next - range.first), size_[w], uint8_t(w));
        next += size_[w];
    }
}

PortFifo::PortFifo(uint32_t capacity) : ports_(capacity), released_at_(capacity), capacity_(capacity) {}

void PortFifo::push_initial(uint16_t port)
{
    if (pos_.size()) pos_[uint16_t(port - base_)] = tail_;
    ports_[index(tail_)] = port;
    ++tail_;
    qhead_ = tail_;
}

void PortFifo::track_positions(uint16_t base, uint32_t span)
{
    base_ = base;
    pos_ = DpdkArray<uint32_t>(span);
    for (uint32_t p = head_; p != tail_; ++p) pos_[uint16_t(ports_[index(p)] - base_)] = p;
}

bool PortFifo::take(uint16_t port)
{
    const uint32_t p = pos_[uint16_t(port - base_)];
    // Free: inside [head, qhead) and really there (a port in use is in no slot;
    // its remembered position may hold another port by now).
    if (p - head_ >= qhead_ - head_ || ports_[index(p)] != port) return false;
    const uint16_t oldest = ports_[index(head_)];
    ports_[index(p)] = oldest;
    released_at_[index(p)] = released_at_[index(head_)];
    pos_[uint16_t(oldest - base_)] = p;
    ++head_;
    return true;
}

bool PortFifo::pop(uint16_t& port)
{
    if (head_ == qhead_) return false;
    port = ports_[index(head_)];
    ++head_;
    return true;
}

void PortFifo::release(uint16_t port, Tick now)
{
    if (pos_.size()) pos_[uint16_t(port - base_)] = tail_;
    const uint32_t i = index(tail_);
    ports_[i] = port;
    released_at_[i] = now;
    ++tail_;
}

void PortFifo::promote(Tick now, Tick quarantine)
{
    // Released somewhere inside second released_at: waiting one second more
    // than the quarantine makes the wait at least the whole quarantine (RFC
    // 6888 REQ-8); a quarantine of 0 is none at all.
    const Tick wait = quarantine == 0 ? 0 : quarantine + 1;
    while (qhead_ != tail_ && now - released_at_[index(qhead_)] >= wait) ++qhead_;
}

PortPartition::PortPartition(uint16_t first, uint32_t size, bool parity, bool shuffle, uint64_t seed, bool with_fifo,
                             bool preserve)
    : mapping_(size), first_(first), size_(size), parity_(parity), preserve_(preserve && with_fifo)
{
    for (uint32_t i = 0; i < size; ++i) mapping_[i] = kNoMapping;
    if (!with_fifo) return;
    std::vector<uint16_t> order(size);
    for (uint32_t i = 0; i < size; ++i) order[i] = uint16_t(first + i);
    if (shuffle) std::shuffle(order.begin(), order.end(), std::mt19937_64(seed));

    if (parity) {
        const uint32_t odd = uint32_t(std::count_if(order.begin(), order.end(), [](uint16_t p) { return p & 1; }));
        fifo_[0] = PortFifo(size - odd);
        fifo_[1] = PortFifo(odd);
    } else {
        fifo_[0] = PortFifo(size);
    }
    if (preserve_)
        for (PortFifo& f : fifo_)
            if (f.capacity()) f.track_positions(first, size);
    for (uint16_t p : order) fifo_for(p).push_initial(p);
}

bool PortPartition::take(Tick now, Tick quarantine, uint16_t port)
{
    if (!preserve_ || !owns(port)) return false;
    PortFifo& f = fifo_for(port);
    f.promote(now, quarantine);
    return f.take(port);
}

bool PortPartition::allocate(Tick now, Tick quarantine, uint16_t want_like, uint16_t& port, bool& parity_fallback)
{
    parity_fallback = false;
    PortFifo& wanted = parity_ ? fifo_[want_like & 1] : fifo_[0];
    wanted.promote(now, quarantine);
    if (wanted.pop(port)) return true;
    if (!parity_) return false;
    PortFifo& other = fifo_[(want_like & 1) ^ 1];
    other.promote(now, quarantine);
    if (!other.pop(port)) return false;
    parity_fallback = true;
    return true;
}

void PortPartition::release(uint16_t port, Tick now)
{
    set_mapping(port, kNoMapping);
    if (has_fifo()) fifo_for(port).release(port, now);
}

void PortPartition::promote(Tick now, Tick quarantine)
{
    fifo_[0].promote(now, quarantine);
    if (parity_) fifo_[1].promote(now, quarantine);
}

uint32_t PortPartition::free_count() const
{
    return fifo_[0].free_count() + (parity_ ? fifo_[1].free_count() : 0);
}

uint32_t PortPartition::quarantined_count() const
{
    return fifo_[0].quarantined_count() + (parity_ ? fifo_[1].quarantined_count() : 0);
}

uint32_t PortPartition::in_use_count() const
{
    return fifo_[0].in_use_count() + (parity_ ? fifo_[1].in_use_count() : 0);
}

} // namespace ephemera
