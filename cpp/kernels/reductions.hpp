// Reductions summed in a fixed order of lanes (lane = index mod L), then the lanes combined pairwise: vectorised
// (a plain `s += p[i]` loop is one long dependency chain, never vectorised without -ffast-math), and the same
// bits wherever the data sits in memory (unlike Eigen's sum(), whose order follows the alignment) and on any
// thread count.
#pragma once
#include <algorithm>
#include <utility>

#include "kernels/parallel.hpp"

namespace fastnn::detail {

constexpr int kReductionLanes = 16;

// Σ term(i) over one or more ranges, accumulated into L partials by index (lane = i mod L), then combined as a
// pairwise tree of adjacent lanes.
template <typename T, int L = kReductionLanes>
struct LaneSum {
  static_assert((L & (L - 1)) == 0, "LaneSum: L must be a power of two");
  T v[L] = {};
  template <typename F>
  void add(index_t m, F&& term) {
    index_t i = 0;
    for (; i + L <= m; i += L)
      for (int k = 0; k < L; ++k) v[k] += term(i + k);
    for (int k = 0; i + k < m; ++k) v[k] += term(i + k);
  }
  T total() const {
    T w[L];
    std::copy(v, v + L, w);
    for (int width = L / 2; width >= 1; width /= 2)
      for (int k = 0; k < width; ++k) w[k] = w[2 * k] + w[2 * k + 1];
    return w[0];
  }
};

// Σ f(i) for i in [0, n).
template <typename T, typename F>
T fixed_order_reduce_sum(index_t n, F&& f) {
  LaneSum<T> acc;
  acc.add(n, std::forward<F>(f));
  return acc.total();
}

// Σ p[0..n).
template <typename T>
T fixed_order_sum(const T* p, index_t n) {
  return fixed_order_reduce_sum<T>(n, [p](index_t i) { return p[i]; });
}

// Σ a[i]·b[i].
template <typename T>
T fixed_order_dot(const T* a, const T* b, index_t n) {
  return fixed_order_reduce_sum<T>(n, [a, b](index_t i) { return a[i] * b[i]; });
}

// max p[0..n) (n ≥ 1), as a chain of std::max would give it: a NaN after p[0] is skipped (softmax, the user,
// turns a row holding NaN into NaN through its sum anyway).
template <typename T>
T fixed_order_max(const T* p, index_t n) {
  constexpr index_t L = kReductionLanes;
  T acc[L];
  std::fill(acc, acc + L, p[0]);
  index_t i = 0;
  for (; i + L <= n; i += L)
    for (index_t j = 0; j < L; ++j) acc[j] = acc[j] < p[i + j] ? p[i + j] : acc[j];
  for (index_t j = 0; i + j < n; ++j) acc[j] = acc[j] < p[i + j] ? p[i + j] : acc[j];
  T m = acc[0];
  for (index_t j = 1; j < L; ++j) m = m < acc[j] ? acc[j] : m;
  return m;
}

}  // namespace fastnn::detail
