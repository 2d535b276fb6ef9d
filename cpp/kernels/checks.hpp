// Input checks that run inside kernels, so validating a batch costs one vectorised pass, not a NumPy call.
#pragma once
#include <atomic>
#include <cmath>

#include "kernels/entry.hpp"
#include "kernels/parallel.hpp"
#include "kernels/reductions.hpp"

namespace fastnn {

namespace detail {

// x*0 is 0 for finite x and NaN for NaN/±inf; sums keep the NaN. Independent lanes (several SIMD
// accumulators), so the pass runs at memory speed rather than at one add's latency per vector.
template <typename T>
bool finite_span(const T* x, index_t n) {
  LaneSum<T> acc;
  acc.add(n, [x](index_t i) { return x[i] * T(0); });
  return acc.total() == T(0);
}

}  // namespace detail

// True when every value is finite. Large arrays are checked on all threads.
template <typename T>
bool all_finite(const T* x, index_t n) {
  std::atomic<bool> finite{true};
  for_each_slice(n, 64, n, 4 * kParallelMinElements, [&](index_t begin, index_t count) {
    if (!detail::finite_span(x + begin, count)) finite.store(false, std::memory_order_relaxed);
  });
  return finite.load(std::memory_order_relaxed);
}

// Entry points, compiled once per CPU level (kernels/entry.hpp).
#define FASTNN_CHECKS_ENTRIES(X) X(all_finite)
FASTNN_DECLARE_ENTRIES(FASTNN_CHECKS_ENTRIES)

}  // namespace fastnn
