// A fixed-size array in DPDK memory (hugepages when the EAL has them), zeroed,
// cache-line aligned and freed with its owner. Tables live here so the per-packet
// path walks 2 MB pages instead of 4 KB ones.
#pragma once

#include <cstddef>
#include <new>
#include <type_traits>
#include <utility>

#include <rte_malloc.h>

namespace ephemera {

template <typename T>
class DpdkArray {
    static_assert(std::is_trivially_destructible_v<T>, "DpdkArray holds plain data");

public:
    DpdkArray() = default;
    explicit DpdkArray(size_t count, int socket = SOCKET_ID_ANY) : size_(count)
    {
        if (count == 0) return;
        data_ = static_cast<T*>(rte_zmalloc_socket("ephemera", count * sizeof(T), 64, socket));
        if (data_ == nullptr) throw std::bad_alloc();
        if constexpr (!std::is_trivially_default_constructible_v<T>)
            for (size_t i = 0; i < count; ++i) new (&data_[i]) T();
    }
    DpdkArray(const DpdkArray&) = delete;
    DpdkArray& operator=(const DpdkArray&) = delete;
    DpdkArray(DpdkArray&& o) noexcept : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
    DpdkArray& operator=(DpdkArray&& o) noexcept
    {
        if (this != &o) {
            rte_free(data_);
            data_ = std::exchange(o.data_, nullptr);
            size_ = std::exchange(o.size_, 0);
        }
        return *this;
    }
    ~DpdkArray() { rte_free(data_); }

    T& operator[](size_t i) { return data_[i]; }
    const T& operator[](size_t i) const { return data_[i]; }
    T* data() { return data_; }
    const T* data() const { return data_; }
    size_t size() const { return size_; }
    size_t bytes() const { return size_ * sizeof(T); }

private:
    T* data_ = nullptr;
    size_t size_ = 0;
};

} // namespace ephemera
