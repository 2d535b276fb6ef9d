// GELU, element-wise, for F.gelu and the Transformer feed-forward blocks:
//   exact ("none"):  y = x·Φ(x) = x·(1 + erf(x/√2))/2,           dy/dx = Φ(x) + x·φ(x)
//   "tanh":          y = x·(1 + tanh(u))/2, u = √(2/π)·(x + 0.044715·x³),
//                    dy/dx = (1 + tanh u)/2 + x·(1 − tanh² u)·√(2/π)·(1 + 3·0.044715·x²)/2
// Split over threads in contiguous slices (each element computed alone: bits do not depend on the split).
#pragma once
#include <cmath>

#include "kernels/entry.hpp"
#include "kernels/parallel.hpp"

namespace fastnn {

namespace gelu_detail {
template <typename T>
constexpr T kSqrtHalf = T(0.70710678118654752440);
template <typename T>
constexpr T kInvSqrt2Pi = T(0.39894228040143267794);
template <typename T>
constexpr T kSqrt2OverPi = T(0.79788456080286535588);
constexpr double kCubic = 0.044715;
}  // namespace gelu_detail

template <typename T>
void gelu_forward(const T* x, T* y, index_t n, bool tanh_approx) {
  using namespace gelu_detail;
  for_each_slice(n, 64, n * 16, kParallelMinElements, [&](index_t begin, index_t count) {
    for (index_t i = begin; i < begin + count; ++i) {
      const T v = x[i];
      if (tanh_approx)
        y[i] = T(0.5) * v * (T(1) + std::tanh(kSqrt2OverPi<T> * (v + T(kCubic) * v * v * v)));
      else
        y[i] = T(0.5) * v * (T(1) + std::erf(v * kSqrtHalf<T>));
    }
  });
}

// dx = g · dy/dx at x.
template <typename T>
void gelu_backward(const T* x, const T* g, T* dx, index_t n, bool tanh_approx) {
  using namespace gelu_detail;
  for_each_slice(n, 64, n * 16, kParallelMinElements, [&](index_t begin, index_t count) {
    for (index_t i = begin; i < begin + count; ++i) {
      const T v = x[i];
      T d;
      if (tanh_approx) {
        const T t = std::tanh(kSqrt2OverPi<T> * (v + T(kCubic) * v * v * v));
        d = T(0.5) * (T(1) + t) + T(0.5) * v * (T(1) - t * t) * kSqrt2OverPi<T> * (T(1) + T(3 * kCubic) * v * v);
      } else {
        d = T(0.5) * (T(1) + std::erf(v * kSqrtHalf<T>)) + v * kInvSqrt2Pi<T> * std::exp(T(-0.5) * v * v);
      }
      dx[i] = g[i] * d;
    }
  });
}

// Entry points, compiled once per CPU level (kernels/entry.hpp).
#define FASTNN_GELU_ENTRIES(X) X(gelu_forward) X(gelu_backward)
FASTNN_DECLARE_ENTRIES(FASTNN_GELU_ENTRIES)

}  // namespace fastnn
