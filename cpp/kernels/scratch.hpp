// Work buffers of the convolution kernels.
#pragma once
#include <algorithm>
#include <memory>
#include <vector>

#include "kernels/parallel.hpp"

namespace fastnn::detail {

template <typename T>
std::unique_ptr<T[]> uninitialized(index_t n) {
  return std::unique_ptr<T[]>(new T[std::max<index_t>(n, 1)]);
}

// Per-thread work buffers kept from call to call (grow-only): fresh multi-megabyte allocations cost a page
// fault per 4 KB on every call, more than the convolution itself.
template <typename T>
T* scratch(int slot, index_t n) {
  thread_local std::vector<T> buffers[3];
  std::vector<T>& b = buffers[slot];
  if (static_cast<index_t>(b.size()) < n) {
    b = std::vector<T>();
    b.resize(n);
  }
  return b.data();
}

}  // namespace fastnn::detail
