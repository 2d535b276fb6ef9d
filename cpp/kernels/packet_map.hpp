// Element-wise maps over explicit Eigen packets: the loops that GCC will not vectorise by itself (piecewise
// functions: comparisons and selects over floats), written once so that every CPU level runs them in SIMD.
#pragma once
#include <Eigen/Core>

#include "kernels/parallel.hpp"  // index_t

namespace fastnn::detail {

// out[i] = f(in[i]...) with f a generic lambda over Eigen packets, applied to whole SIMD packets and then
// to the scalar tail (Eigen's packet functions also take scalars). Piecewise functions need this: Eigen
// 3.4's select() is not vectorised, and GCC gives up on chains of ?: over floats (trapping math).
template <typename T, typename F, typename... In>
void packet_map(index_t m, T* out, F&& f, const In*... in) {
  using P = typename Eigen::internal::packet_traits<T>::type;
  constexpr index_t L = Eigen::internal::packet_traits<T>::size;
  index_t i = 0;
  for (; i + L <= m; i += L) Eigen::internal::pstoreu(out + i, f(Eigen::internal::ploadu<P>(in + i)...));
  for (; i < m; ++i) out[i] = f(in[i]...);
}

// dst[i] = src[i] for i < n in whole packets, inline: for runs of a few dozen values (rows of a small plane)
// a call to memmove costs more than the copy.
template <typename T>
void packet_copy(index_t n, T* dst, const T* src) {
  packet_map(n, dst, [](auto v) { return v; }, src);
}

// A constant as a packet (or scalar) of the same type as `like`.
template <typename P, typename T>
P splat(const P&, T value) {
  return Eigen::internal::pset1<P>(value);
}

}  // namespace fastnn::detail
