// Pooling, NCHW, one (n, c) plane per work item; 1-D is H = 1. Geometry as convolution
// (kernels/im2col.hpp): windows start at o·stride − pad. The caller sets g.out_h/out_w (pool_output_size:
// floor or ceil mode); a window that runs past the input's end is clipped. g's dilation fields are not read:
// dilation and the average-pool options come in PoolOptions, whose defaults are the plain case (dilation 1,
// count_include_pad, no divisor override), so callers that never name options keep the original meaning.
//   max:      taps at start + i·dilation; padding never wins (PyTorch pads with −inf); the first maximum in
//             window order is kept, NaN propagates; argmax is the flat index h·W + w in the plane, and backward
//             adds dy there.
//   average:  the sum over the window's in-bounds values / divisor. The divisor is divisor_override when set,
//             else with count_include_pad the window clipped to the padded input (PyTorch: in floor mode
//             kh·kw, smaller for a ceil-mode window past the right padding), else the in-bounds count.
//   adaptive: output cell i spans [⌊i·H/Ho⌋, ⌈(i+1)·H/Ho⌉), averaged over its size; output 1×1 is the global
//             average pool.
// Every output and every input gradient is summed in a fixed order on one thread: reproducible bits.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "kernels/entry.hpp"
#include "kernels/conv.hpp"
#include "kernels/im2col.hpp"

namespace fastnn {

// Options beyond the plain case; the defaults are PyTorch's.
struct PoolOptions {
  index_t dilation_h = 1, dilation_w = 1;  // max pooling: taps at start + i·dilation
  bool count_include_pad = true;            // average pooling: padding counts in the divisor
  index_t divisor_override = 0;             // average pooling: the divisor when nonzero (PyTorch rejects 0)
};

// PyTorch's pooling output size: (in + 2·pad − dilation·(kernel − 1) − 1) / stride + 1, rounded down, or up in
// ceil mode, where a last window that would start in the right padding is dropped. Can be 1 in ceil mode
// with a kernel longer than the padded input (the window is clipped, as in PyTorch); 0 when nothing fits.
inline index_t pool_output_size(index_t in, index_t kernel, index_t stride, index_t pad, index_t dilation,
                                bool ceil_mode) {
  const index_t span = in + 2 * pad - dilation * (kernel - 1) - 1 + (ceil_mode ? stride - 1 : 0);
  if (span < 0) return 0;
  index_t out = span / stride + 1;
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;
  return out;
}

namespace detail {

// Average-pool window of output o along one axis: [begin, end) clipped to the input, and its length clipped
// to the padded input only (PyTorch's count_include_pad length; kernel except for a ceil-mode last window).
inline void avg_window(index_t o, index_t kernel, index_t stride, index_t pad, index_t size, index_t& begin,
                       index_t& end, index_t& padded_length) {
  begin = o * stride - pad;
  end = std::min(begin + kernel, size + pad);
  padded_length = end - begin;
  begin = std::max(begin, index_t(0));
  end = std::min(end, size);
}

// Dilated max-pool taps of output o along one axis: input positions first, first + dilation, … below end,
// the taps of the window that fall inside the input. first ≥ end when none does (taps straddling a small
// input).
inline void dilated_taps(index_t o, index_t kernel, index_t stride, index_t pad, index_t dilation, index_t size,
                         index_t& first, index_t& end) {
  const index_t start = o * stride - pad;
  first = start >= 0 ? start : start + div_ceil(-start, dilation) * dilation;
  end = std::min(start + (kernel - 1) * dilation + 1, size);
}

template <typename T>
T avg_divisor_reciprocal(index_t in_bounds, index_t padded, const PoolOptions& opt) {
  const index_t divisor = opt.divisor_override ? opt.divisor_override : opt.count_include_pad ? padded : in_bounds;
  return T(1) / T(divisor);
}

#if defined(__AVX2__)
// Values only (inference, no argmax), 8 outputs at a time: the rule applied to each row's pairs (a, b) and
// (c, d), then to the two results; that is the same choice as the rule over a, b, c, d in order, NaN
// included. Lanes stay in shuffle order (one permutation for both rows) until the single final permute.
inline void max_pool_2x2_values_avx2(const float* r0, const float* r1, index_t Wo, float* y) {
  auto rule = [](__m256 best, __m256 v) {
    const __m256 take = _mm256_or_ps(_mm256_cmp_ps(best, v, _CMP_LT_OQ), _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    return _mm256_blendv_ps(best, v, take);
  };
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  auto load = [&](const float* p, index_t count) {  // masked loads never touch memory past the row
    if (count >= 8) return _mm256_loadu_ps(p);
    return _mm256_maskload_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(int(count)), lane));
  };
  for (index_t ow = 0; ow < Wo; ow += 8) {
    const index_t count = std::min<index_t>(8, Wo - ow), inputs = 2 * count;
    const __m256 lo0 = load(r0 + 2 * ow, inputs), hi0 = load(r0 + 2 * ow + 8, inputs - 8);
    const __m256 lo1 = load(r1 + 2 * ow, inputs), hi1 = load(r1 + 2 * ow + 8, inputs - 8);
    const __m256 top = rule(_mm256_shuffle_ps(lo0, hi0, _MM_SHUFFLE(2, 0, 2, 0)),
                            _mm256_shuffle_ps(lo0, hi0, _MM_SHUFFLE(3, 1, 3, 1)));
    const __m256 bottom = rule(_mm256_shuffle_ps(lo1, hi1, _MM_SHUFFLE(2, 0, 2, 0)),
                               _mm256_shuffle_ps(lo1, hi1, _MM_SHUFFLE(3, 1, 3, 1)));
    const __m256 best = _mm256_castpd_ps(
        _mm256_permute4x64_pd(_mm256_castps_pd(rule(top, bottom)), _MM_SHUFFLE(3, 1, 2, 0)));
    if (count == 8) {
      _mm256_storeu_ps(y + ow, best);
    } else {  // through a bounce buffer: masked stores are microcoded and slow on AMD cores
      alignas(32) float lanes[8];
      _mm256_store_ps(lanes, best);
      std::copy(lanes, lanes + count, y + ow);
    }
  }
}

// 2×2/2 max pooling of 8 outputs at a time (float): deinterleave each row's pairs, then the same rule as the
// scalar loop (a, b, c, d in order; v replaces the best when v > best or v is NaN). Returns the outputs done.
inline index_t max_pool_2x2_avx2(const float* r0, const float* r1, index_t W, index_t Wo, float* y,
                                 std::int32_t* argmax, index_t base) {
  // Lanes below `count` of each 8-float half are read (masked loads never touch memory past the row).
  auto split = [](const float* p, index_t count, __m256& even, __m256& odd) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256 lo = count >= 16 ? _mm256_loadu_ps(p)
                                  : _mm256_maskload_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(int(count)), lane));
    const __m256 hi = count >= 16 ? _mm256_loadu_ps(p + 8)
                                  : _mm256_maskload_ps(p + 8, _mm256_cmpgt_epi32(_mm256_set1_epi32(int(count) - 8), lane));
    const __m256 e = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0));
    const __m256 o = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1));
    even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), _MM_SHUFFLE(3, 1, 2, 0)));
    odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), _MM_SHUFFLE(3, 1, 2, 0)));
  };
  auto replaces = [](__m256 best, __m256 v) {
    return _mm256_or_ps(_mm256_cmp_ps(best, v, _CMP_LT_OQ), _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  };
  const __m256i step = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
  const __m256i one = _mm256_set1_epi32(1), down = _mm256_set1_epi32(static_cast<std::int32_t>(W));
  for (index_t ow = 0; ow < Wo; ow += 8) {
    const index_t count = std::min<index_t>(8, Wo - ow);  // outputs in this step; a short last step is masked
    __m256 a, b, c, d;
    split(r0 + 2 * ow, 2 * count, a, b);
    split(r1 + 2 * ow, 2 * count, c, d);
    const __m256i at = _mm256_add_epi32(_mm256_set1_epi32(static_cast<std::int32_t>(base + 2 * ow)), step);
    __m256 best = a;
    __m256 t = replaces(best, b);
    best = _mm256_blendv_ps(best, b, t);
    __m256i off = _mm256_and_si256(_mm256_castps_si256(t), one);
    t = replaces(best, c);
    best = _mm256_blendv_ps(best, c, t);
    off = _mm256_blendv_epi8(off, down, _mm256_castps_si256(t));
    t = replaces(best, d);
    best = _mm256_blendv_ps(best, d, t);
    off = _mm256_blendv_epi8(off, _mm256_add_epi32(down, one), _mm256_castps_si256(t));
    if (count == 8) {
      _mm256_storeu_ps(y + ow, best);
      if (argmax) _mm256_storeu_si256(reinterpret_cast<__m256i*>(argmax + ow), _mm256_add_epi32(at, off));
    } else {
      // Through a bounce buffer: masked stores are microcoded and slow on AMD cores.
      alignas(32) float best_lanes[8];
      _mm256_store_ps(best_lanes, best);
      std::copy(best_lanes, best_lanes + count, y + ow);
      if (argmax) {
        alignas(32) std::int32_t at_lanes[8];
        _mm256_store_si256(reinterpret_cast<__m256i*>(at_lanes), _mm256_add_epi32(at, off));
        std::copy(at_lanes, at_lanes + count, argmax + ow);
      }
    }
  }
  return Wo;
}
#endif

inline void adaptive_window(index_t o, index_t out, index_t size, index_t& begin, index_t& end) {
  begin = o * size / out;
  end = ((o + 1) * size + out - 1) / out;
}

}  // namespace detail

// argmax may be null (inference: no backward to route). A window with no tap inside the input (possible with
// dilation: its taps straddle a small input) gives −inf and argmax −1: no input gets its gradient.
template <typename T>
void max_pool2d_forward(const T* x, T* y, std::int32_t* argmax, const ConvGeometry& g, const PoolOptions& opt = {}) {
  const index_t H = g.height, W = g.width, Ho = g.out_h, Wo = g.out_w;
  const index_t dh = opt.dilation_h, dw = opt.dilation_w;
  // Every window whole and inside the input (floor mode, or a ceil mode that adds no clipped window).
  const bool pairs = g.kernel_h == 2 && g.kernel_w == 2 && g.stride_h == 2 && g.stride_w == 2 && g.pad_h == 0 &&
                     g.pad_w == 0 && dh == 1 && dw == 1 && 2 * Ho <= H && 2 * Wo <= W;
  detail::for_each_plane(g.batch, g.channels, g.batch * g.channels * H * W, [&](index_t n, index_t c) {
    const index_t plane = n * g.channels + c;
    const T* xp = x + plane * H * W;
    T* yp = y + plane * Ho * Wo;
    std::int32_t* ap = argmax ? argmax + plane * Ho * Wo : nullptr;
    if (pairs) {  // the common 2×2/2 case, without the window bookkeeping
      for (index_t oh = 0; oh < Ho; ++oh) {
        const T* r0 = xp + 2 * oh * W;
        const T* r1 = r0 + W;
        std::int32_t* arow = ap ? ap + oh * Wo : nullptr;
        T* yrow = yp + oh * Wo;
        const std::int32_t base = static_cast<std::int32_t>(2 * oh * W);
        const std::int32_t down = static_cast<std::int32_t>(W);
        // Branch-free (random data would mispredict every other compare); the same choices as the general loop.
        index_t ow = 0;
#if defined(__AVX2__)
        if constexpr (std::is_same_v<T, float>) {
          if (arow)
            ow = detail::max_pool_2x2_avx2(r0, r1, W, Wo, yrow, arow, 2 * oh * W);
          else
            detail::max_pool_2x2_values_avx2(r0, r1, Wo, yrow), ow = Wo;
        }
#endif
        for (; ow < Wo; ++ow) {
          const T a = r0[2 * ow], b = r0[2 * ow + 1], c = r1[2 * ow], d = r1[2 * ow + 1];
          T best = a;
          std::int32_t at = 0;
          bool take = (b > best) | (b != b);
          best = take ? b : best, at = take ? 1 : at;
          take = (c > best) | (c != c);
          best = take ? c : best, at = take ? down : at;
          take = (d > best) | (d != d);
          best = take ? d : best, at = take ? down + 1 : at;
          yrow[ow] = best;
          if (arow) arow[ow] = base + static_cast<std::int32_t>(2 * ow) + at;
        }
      }
      return;
    }
    for (index_t oh = 0; oh < Ho; ++oh) {
      index_t h0, h1;
      detail::dilated_taps(oh, g.kernel_h, g.stride_h, g.pad_h, dh, H, h0, h1);
      for (index_t ow = 0; ow < Wo; ++ow) {
        index_t w0, w1;
        detail::dilated_taps(ow, g.kernel_w, g.stride_w, g.pad_w, dw, W, w0, w1);
        T best = -std::numeric_limits<T>::infinity();
        index_t at = h0 < h1 && w0 < w1 ? h0 * W + w0 : -1;
        for (index_t h = h0; h < h1; h += dh)
          for (index_t w = w0; w < w1; w += dw) {
            const T v = xp[h * W + w];
            if (v > best || std::isnan(v)) best = v, at = h * W + w;
          }
        yp[oh * Wo + ow] = best;
        if (ap) ap[oh * Wo + ow] = static_cast<std::int32_t>(at);
      }
    }
  });
}

// dx (overwritten) from dy and the forward's argmax (−1: the window had no input, no gradient to route).
template <typename T>
void max_pool2d_backward(const T* grad_y, const std::int32_t* argmax, T* grad_x, const ConvGeometry& g) {
  const index_t HW = g.height * g.width, P = g.plane();
  detail::for_each_plane(g.batch, g.channels, g.batch * g.channels * HW, [&](index_t n, index_t c) {
    const index_t plane = n * g.channels + c;
    T* dx = grad_x + plane * HW;
    std::fill(dx, dx + HW, T(0));
    const T* dy = grad_y + plane * P;
    const std::int32_t* a = argmax + plane * P;
    for (index_t p = 0; p < P; ++p)
      if (a[p] >= 0) dx[a[p]] += dy[p];
  });
}

template <typename T>
void avg_pool2d_forward(const T* x, T* y, const ConvGeometry& g, const PoolOptions& opt = {}) {
  const index_t H = g.height, W = g.width, Ho = g.out_h, Wo = g.out_w;
  detail::for_each_plane(g.batch, g.channels, g.batch * g.channels * H * W, [&](index_t n, index_t c) {
    const index_t plane = n * g.channels + c;
    const T* xp = x + plane * H * W;
    T* yp = y + plane * Ho * Wo;
    for (index_t oh = 0; oh < Ho; ++oh) {
      index_t h0, h1, ph;
      detail::avg_window(oh, g.kernel_h, g.stride_h, g.pad_h, H, h0, h1, ph);
      for (index_t ow = 0; ow < Wo; ++ow) {
        index_t w0, w1, pw;
        detail::avg_window(ow, g.kernel_w, g.stride_w, g.pad_w, W, w0, w1, pw);
        if (h0 >= h1 || w0 >= w1) {  // unreachable with padding ≤ kernel / 2; PyTorch writes 0
          yp[oh * Wo + ow] = T(0);
          continue;
        }
        T s = 0;
        for (index_t h = h0; h < h1; ++h)
          for (index_t w = w0; w < w1; ++w) s += xp[h * W + w];
        yp[oh * Wo + ow] = s * detail::avg_divisor_reciprocal<T>((h1 - h0) * (w1 - w0), ph * pw, opt);
      }
    }
  });
}

template <typename T>
void avg_pool2d_backward(const T* grad_y, T* grad_x, const ConvGeometry& g, const PoolOptions& opt = {}) {
  const index_t H = g.height, W = g.width, Ho = g.out_h, Wo = g.out_w;
  detail::for_each_plane(g.batch, g.channels, g.batch * g.channels * H * W, [&](index_t n, index_t c) {
    const index_t plane = n * g.channels + c;
    T* dx = grad_x + plane * H * W;
    std::fill(dx, dx + H * W, T(0));
    const T* dy = grad_y + plane * Ho * Wo;
    for (index_t oh = 0; oh < Ho; ++oh) {
      index_t h0, h1, ph;
      detail::avg_window(oh, g.kernel_h, g.stride_h, g.pad_h, H, h0, h1, ph);
      for (index_t ow = 0; ow < Wo; ++ow) {
        index_t w0, w1, pw;
        detail::avg_window(ow, g.kernel_w, g.stride_w, g.pad_w, W, w0, w1, pw);
        if (h0 >= h1 || w0 >= w1) continue;
        const T d = dy[oh * Wo + ow] * detail::avg_divisor_reciprocal<T>((h1 - h0) * (w1 - w0), ph * pw, opt);
        for (index_t h = h0; h < h1; ++h)
          for (index_t w = w0; w < w1; ++w) dx[h * W + w] += d;
      }
    }
  });
}

// Output size g.out_h × g.out_w; kernel/stride/pad fields are unused.
template <typename T>
void adaptive_avg_pool2d_forward(const T* x, T* y, const ConvGeometry& g) {
  const index_t H = g.height, W = g.width, Ho = g.out_h, Wo = g.out_w;
  detail::for_each_plane(g.batch, g.channels, g.batch * g.channels * H * W, [&](index_t n, index_t c) {
    const index_t plane = n * g.channels + c;
    const T* xp = x + plane * H * W;
    T* yp = y + plane * Ho * Wo;
    if (Ho == 1 && Wo == 1) {  // global average pool: one vectorised fixed-order sum
      yp[0] = detail::fixed_order_sum(xp, H * W) / T(H * W);
      return;
    }
    for (index_t oh = 0; oh < Ho; ++oh) {
      index_t h0, h1;
      detail::adaptive_window(oh, Ho, H, h0, h1);
      for (index_t ow = 0; ow < Wo; ++ow) {
        index_t w0, w1;
        detail::adaptive_window(ow, Wo, W, w0, w1);
        T s = 0;
        for (index_t h = h0; h < h1; ++h)
          for (index_t w = w0; w < w1; ++w) s += xp[h * W + w];
        yp[oh * Wo + ow] = s / T((h1 - h0) * (w1 - w0));
      }
    }
  });
}

template <typename T>
void adaptive_avg_pool2d_backward(const T* grad_y, T* grad_x, const ConvGeometry& g) {
  const index_t H = g.height, W = g.width, Ho = g.out_h, Wo = g.out_w;
  detail::for_each_plane(g.batch, g.channels, g.batch * g.channels * H * W, [&](index_t n, index_t c) {
    const index_t plane = n * g.channels + c;
    T* dx = grad_x + plane * H * W;
    std::fill(dx, dx + H * W, T(0));
    const T* dy = grad_y + plane * Ho * Wo;
    for (index_t oh = 0; oh < Ho; ++oh) {
      index_t h0, h1;
      detail::adaptive_window(oh, Ho, H, h0, h1);
      for (index_t ow = 0; ow < Wo; ++ow) {
        index_t w0, w1;
        detail::adaptive_window(ow, Wo, W, w0, w1);
        const T d = dy[oh * Wo + ow] / T((h1 - h0) * (w1 - w0));
        for (index_t h = h0; h < h1; ++h)
          for (index_t w = w0; w < w1; ++w) dx[h * W + w] += d;
      }
    }
  });
}

// Entry points, compiled once per CPU level (kernels/entry.hpp).
#define FASTNN_POOLING_ENTRIES(X) X(max_pool2d_forward) X(max_pool2d_backward) X(avg_pool2d_forward) \
  X(avg_pool2d_backward) X(adaptive_avg_pool2d_forward) X(adaptive_avg_pool2d_backward)
FASTNN_DECLARE_ENTRIES(FASTNN_POOLING_ENTRIES)

}  // namespace fastnn
