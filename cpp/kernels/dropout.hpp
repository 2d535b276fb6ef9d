// Dropout masks computed, not stored: element i of a call keeps its value when a hash of (seed, i) clears a
// threshold, so the backward regenerates the same mask from the seed alone (no mask array, no random stream
// in the loop), every element is independent of the others (vectorised, and the same bits on any thread count),
// and NumPy can reproduce a mask exactly (fastnn.nn.function_ops.dropout_keep). In 32-bit lanes, as floats:
//
//   a, b = low, high 32 bits of seed;  lo, hi = low, high 32 bits of i;  fmix = MurmurHash3's finaliser
//   z = fmix(fmix(lo·0x9E3779B9 + a) ^ (b + hi·0x7FEB352D));   keep  <=>  (z >> 8) >= round(p · 2^24)
//
// (the seed enters both rounds, so two seeds give unrelated masks, not shifted copies of one). p is honoured
// to 2^-24. Kept elements are scaled by 1/(1−p) (inverted dropout); p = 1 keeps nothing.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/entry.hpp"
#include "kernels/parallel.hpp"

namespace fastnn {

namespace dropout_detail {

inline std::uint32_t fmix(std::uint32_t z) {
  z ^= z >> 16;
  z *= 0x85EBCA6Bu;
  z ^= z >> 13;
  z *= 0xC2B2AE35u;
  z ^= z >> 16;
  return z;
}

inline std::uint32_t hash(std::uint32_t a, std::uint32_t b, std::uint32_t lo, std::uint32_t hi) {
  return fmix(fmix(lo * 0x9E3779B9u + a) ^ (b + hi * 0x7FEB352Du));
}

}  // namespace dropout_detail

// What a kernel needs to apply a dropout mask: keep element i (of its own numbering) when its hash clears
// `threshold`, scaled by `scale`. threshold 0: no dropout.
struct DropoutMask {
  std::uint32_t a = 0, b = 0;
  std::uint32_t threshold = 0;
  double scale = 1.0;

  DropoutMask() = default;
  DropoutMask(std::uint64_t seed, double p)
      : a(static_cast<std::uint32_t>(seed)), b(static_cast<std::uint32_t>(seed >> 32)) {
    threshold = static_cast<std::uint32_t>(std::llround(p * double(1 << 24)));
    scale = p < 1.0 ? 1.0 / (1.0 - p) : 0.0;
  }
  bool active() const { return threshold != 0; }
  bool keep(std::uint64_t i) const {
    return (dropout_detail::hash(a, b, static_cast<std::uint32_t>(i), static_cast<std::uint32_t>(i >> 32)) >> 8) >=
           threshold;
  }

  // y[k] = (add ? add[k] : 0) + (keep(first + k) ? x[k] · scale : 0) for k in [0, n); x, add and y may alias.
  template <typename T>
  void apply(const T* x, const T* add, T* y, index_t n, std::uint64_t first) const {
    const T s = static_cast<T>(scale);
    const std::uint32_t ka = a, kb = b, thr = threshold;
    index_t k = 0;
    while (k < n) {  // runs of indices with one high half: the inner loop is all 32-bit lanes
      const std::uint64_t i = first + std::uint64_t(k);
      const std::uint32_t hi = static_cast<std::uint32_t>(i >> 32), lo0 = static_cast<std::uint32_t>(i);
      const std::uint64_t room = (std::uint64_t(1) << 32) - lo0;
      const index_t run = static_cast<index_t>(std::min<std::uint64_t>(room, std::uint64_t(n - k)));
      const std::uint32_t kbh = kb + hi * 0x7FEB352Du;
      const T* xs = x + k;
      T* ys = y + k;
      if (add != nullptr) {
        const T* as = add + k;
        for (index_t j = 0; j < run; ++j) {
          const std::uint32_t z = dropout_detail::fmix(dropout_detail::fmix((lo0 + std::uint32_t(j)) * 0x9E3779B9u + ka) ^ kbh);
          ys[j] = as[j] + ((z >> 8) >= thr ? xs[j] * s : T(0));
        }
      } else {
        for (index_t j = 0; j < run; ++j) {
          const std::uint32_t z = dropout_detail::fmix(dropout_detail::fmix((lo0 + std::uint32_t(j)) * 0x9E3779B9u + ka) ^ kbh);
          ys[j] = (z >> 8) >= thr ? xs[j] * s : T(0);
        }
      }
      k += run;
    }
  }
};

// y[i] = (add ? add[i] : 0) + (keep(i) ? x[i] · 1/(1−p) : 0) for i in [0, n). x, add and y may alias
// (element-wise). The backward of dropout is the same call on the gradient, with the same seed.
template <typename T>
void dropout_apply(const T* x, const T* add, T* y, index_t n, double p, std::uint64_t seed) {
  const DropoutMask mask(seed, p);
  for_each_slice(n, 64, n, kParallelMinElements, [&](index_t begin, index_t count) {
    mask.apply(x + begin, add ? add + begin : nullptr, y + begin, count, std::uint64_t(begin));
  });
}

// Entry points, compiled once per CPU level (kernels/entry.hpp).
#define FASTNN_DROPOUT_ENTRIES(X) X(dropout_apply)
FASTNN_DECLARE_ENTRIES(FASTNN_DROPOUT_ENTRIES)

}  // namespace fastnn
