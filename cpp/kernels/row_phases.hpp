// Input rows split into their column phases for a stride s: phase q, column t holds the zero-padded row's
// column t·s + q (input column t·s + q − pad). Every strided convolution kernel that reads rows as contiguous
// runs goes through this split: im2col's phased rows, the direct forward's padded scratch and the direct weight
// gradient's shifted copies (kernels/im2col.hpp, conv_direct.hpp, conv_weight_grad.hpp).
#pragma once
#include <algorithm>

#include "kernels/packet_map.hpp"
#include "kernels/parallel.hpp"  // index_t

namespace fastnn::detail {

inline index_t div_ceil(index_t a, index_t b) { return (a + b - 1) / b; }

// Output positions o in [lo, hi) read input o·stride + offset inside [0, size); the others read padding.
inline void valid_range(index_t offset, index_t stride, index_t size, index_t out, index_t& lo, index_t& hi) {
  lo = offset >= 0 ? 0 : div_ceil(-offset, stride);
  hi = size - offset <= 0 ? 0 : div_ceil(size - offset, stride);
  lo = std::min(lo, out);
  hi = std::max(lo, std::min(hi, out));
}

// dst[o] = src[o·stride], o < n, the two arrays apart: a loop of its own (inlined into im2col's nest, GCC kept
// the bounds on the stack and re-read them for every element).
template <typename T>
[[gnu::noinline]] void copy_strided(const T* __restrict src, T* __restrict dst, index_t n, index_t stride) {
  if (stride == 2) {
    for (index_t o = 0; o < n; ++o) dst[o] = src[2 * o];
  } else {
    for (index_t o = 0; o < n; ++o) dst[o] = src[o * stride];
  }
}

// even[u] = src[2u], odd[u] = src[2u + 1], u < n: a row split into its two column phases (vectorised: GCC
// permutes whole packets). Inline: a call from AVX code costs a vzeroupper per row.
template <typename T>
[[gnu::always_inline]] inline void deinterleave(const T* __restrict src, T* __restrict even, T* __restrict odd,
                                                index_t n) {
  for (index_t u = 0; u < n; ++u) even[u] = src[2 * u], odd[u] = src[2 * u + 1];
}

// The split of rows `width` wide, padded by `pad` on the left, into `stride` phases of `cols` columns each.
// Where each phase's columns fall inside the input is worked out once, here, not per row.
class RowPhases {
 public:
  RowPhases(index_t width, index_t pad, index_t stride, index_t cols)
      : width_(width), pad_(pad), stride_(stride), cols_(cols) {
    if (stride == 1) {
      valid_range(-pad, 1, width, cols, lo_, hi_);
    } else if (stride == 2) {
      // Input column 2u goes to phase pad mod 2 at u + even_at, column 2u + 1 to the other phase at u + odd_at.
      even_phase_ = pad % 2;
      even_at_ = (pad - even_phase_) / 2;
      odd_at_ = (1 + pad - (1 - even_phase_)) / 2;
      n_even_ = std::max<index_t>(0, std::min((width + 1) / 2, cols - even_at_));  // columns past cols: never read
      n_odd_ = std::max<index_t>(0, std::min(width / 2, cols - odd_at_));
    }
  }

  // Phase q of row `src` to dst + q·phase_stride, columns t that fall inside the input only: the caller zeroes
  // the scratch once, and the padding columns keep their zeros from row to row.
  template <typename T>
  void split(const T* src, T* dst, index_t phase_stride) const {
    if (stride_ == 1) {
      packet_copy(hi_ - lo_, dst + lo_, src + (lo_ - pad_));
    } else if (stride_ == 2) {
      T* even = dst + even_phase_ * phase_stride + even_at_;
      T* odd = dst + (1 - even_phase_) * phase_stride + odd_at_;
      const index_t pairs = std::min(n_even_, n_odd_);
      deinterleave(src, even, odd, pairs);
      for (index_t u = pairs; u < n_even_; ++u) even[u] = src[2 * u];
      for (index_t u = pairs; u < n_odd_; ++u) odd[u] = src[2 * u + 1];
    } else {
      for (index_t q = 0; q < stride_; ++q) {
        index_t lo, hi;
        valid_range(q - pad_, stride_, width_, cols_, lo, hi);
        copy_strided(src + (lo * stride_ + q - pad_), dst + q * phase_stride + lo, hi - lo, stride_);
      }
    }
  }

 private:
  index_t width_, pad_, stride_, cols_;
  index_t lo_ = 0, hi_ = 0;                                             // stride 1
  index_t even_phase_ = 0, even_at_ = 0, odd_at_ = 0, n_even_ = 0, n_odd_ = 0;  // stride 2
};

}  // namespace fastnn::detail
