// Direct (im2col-free) weight gradient of an ungrouped convolution, any stride and dilation:
//   dW[o, c, i, j] = Σ_n Σ_oh Σ_ow dy[n, o, oh, ow] · xpad[n, c, oh·sh + i·dh, ow·sw + j·dw].
// The padded input is split into stride phases once per image: phase (a, b) holds xpad[a + sh·r, b + sw·q], so
// tap (i, j) reads phase ((i·dh) mod sh, (j·dw) mod sw) at row oh + ⌊i·dh / sh⌋ and column ow + ⌊j·dw / sw⌋:
// contiguous rows, whatever the stride. A register tile of kBlockO output channels × 3 taps (consecutive in
// the flattened kernel: (c, i, j) in weight order) accumulates packets of dy · x along the output rows of a chunk of images, and each lane sum is reduced
// once per chunk. The blocked im2col + GEMM path builds a K × columns matrix and packs it again for a GEMM only
// O wide; this reads dy and the input where they lie.
//
// Applies when output rows are whole packets (weight_grad_direct_applies): no tails, no masks.
// Reproducibility: images are dealt to a fixed number of chunks (by the shape only); each chunk sums its images
// in order into its own partial, and the partials are added in chunk order — the same bits at any thread count.
#pragma once
#include <Eigen/Core>
#include <algorithm>
#include <memory>

#include "kernels/conv_direct.hpp"
#include "kernels/im2col.hpp"
#include "kernels/parallel.hpp"
#include "kernels/scratch.hpp"

namespace fastnn::detail {

// Chunks of images the weight gradient is summed in (fixed: the partial sums never depend on threads), and the
// bytes of phase-split input plus output gradient one pass over a chunk's images keeps in cache.
constexpr index_t kWeightGradDirectChunks = 8;
constexpr index_t kWeightGradPassBytes = index_t(384) << 10;

// Where it runs: stride 1, rows of at least 16 outputs, a whole number of full packets. Measured at 1 thread on
// Zen 4 (AVX-512), batch 32, against the im2col + GEMM path: 3×3 16→16 on 32×32 1.7 ms vs 2.9, 32→32 on 16×16
// 1.7–2.0 vs 2.2, 3→16 on 32×32 0.3 vs 0.6–0.8; but 64→64 on 8×8 (half packets, one per row) 2.2–3.7 vs 2.1,
// and the stride-2 layers (3×3 and 1×1: the phase split is a scalar gather) were slower, so those keep im2col.
template <typename T>
bool weight_grad_direct_applies(const ConvGeometry& g, index_t groups) {
  return groups == 1 && g.stride_h == 1 && g.stride_w == 1 && g.out_h > 0 && g.out_w >= 16 &&
         g.out_w % DirectPacket<T>::full == 0;
}

// Phase-split layout of one image: channel c, phase (a, b) is a [rows, cols] plane.
struct PhaseLayout {
  index_t sh, sw, rows, cols;
  index_t plane() const { return rows * cols; }
  index_t channel() const { return sh * sw * plane(); }
  index_t offset(index_t c, index_t a, index_t b) const { return c * channel() + (a * sw + b) * plane(); }
};

inline PhaseLayout phase_layout(const ConvGeometry& g) {
  return {g.stride_h, g.stride_w, g.out_h + g.dilation_h * (g.kernel_h - 1) / g.stride_h,
          g.out_w + g.dilation_w * (g.kernel_w - 1) / g.stride_w};
}

// dst[c, a, b, r, q] = x[c, a + sh·r − pad_h, b + sw·q − pad_w], zero outside the image.
template <typename T>
void split_phases(const T* x, T* dst, const ConvGeometry& g, const PhaseLayout& L) {
  for (index_t c = 0; c < g.channels; ++c)
    for (index_t a = 0; a < L.sh; ++a)
      for (index_t b = 0; b < L.sw; ++b) {
        T* plane = dst + L.offset(c, a, b);
        for (index_t r = 0; r < L.rows; ++r) {
          T* row = plane + r * L.cols;
          const index_t h = a + L.sh * r - g.pad_h;
          if (h < 0 || h >= g.height) {
            std::fill(row, row + L.cols, T(0));
            continue;
          }
          const T* src = x + (c * g.height + h) * g.width;
          if (L.sw == 1) {
            // Columns q read w = b + q − pad_w: zeros, a run of the row, zeros.
            const index_t lo = std::clamp<index_t>(g.pad_w - b, 0, L.cols);
            const index_t hi = std::clamp<index_t>(g.width + g.pad_w - b, lo, L.cols);
            std::fill(row, row + lo, T(0));
            std::copy(src + lo + b - g.pad_w, src + hi + b - g.pad_w, row + lo);
            std::fill(row + hi, row + L.cols, T(0));
          } else {
            for (index_t q = 0; q < L.cols; ++q) {
              const index_t w = b + L.sw * q - g.pad_w;
              row[q] = w >= 0 && w < g.width ? src[w] : T(0);
            }
          }
        }
      }
}

// One register tile: output channels o0 .. o0 + kBlockO × taps k0 .. k0 + kTaps of the flattened kernel
// (k = (c·kh + i)·kw + j), summed over `count` images (phases at stride `phase_image`, dy at stride O·P) and
// written (or added, `add`) into dw[O, K].
template <typename T, typename Pk, int kBlockO, int kTaps>
void weight_grad_tile(const T* dy, const T* phases, T* dw, const ConvGeometry& g, const PhaseLayout& L,
                      index_t O, index_t count, index_t phase_image, index_t o0, index_t k0, bool add) {
  namespace pk = Eigen::internal;
  constexpr index_t kLanes = pk::unpacket_traits<Pk>::size;
  const index_t Ho = g.out_h, Wo = g.out_w, P = Ho * Wo, kk = g.kernel_h * g.kernel_w, K = g.channels * kk;
  const T* x_tap[kTaps];
  for (int t = 0; t < kTaps; ++t) {
    const index_t k = k0 + t, c = k / kk, i = k % kk / g.kernel_w, j = k % g.kernel_w;
    const index_t ti = i * g.dilation_h, tj = j * g.dilation_w;
    x_tap[t] = phases + L.offset(c, ti % g.stride_h, tj % g.stride_w) + ti / g.stride_h * L.cols + tj / g.stride_w;
  }
  const T* dy_o = dy + o0 * P;
  Pk acc[kBlockO][kTaps];
#pragma GCC unroll 8
  for (int q = 0; q < kBlockO; ++q)
#pragma GCC unroll 3
    for (int t = 0; t < kTaps; ++t) acc[q][t] = pk::pset1<Pk>(T(0));
  for (index_t m = 0; m < count; ++m)
    for (index_t oh = 0; oh < Ho; ++oh) {
      const index_t dr = m * O * P + oh * Wo, xr = m * phase_image + oh * L.cols;
      for (index_t ow = 0; ow < Wo; ow += kLanes) {
        Pk xv[kTaps];
#pragma GCC unroll 3
        for (int t = 0; t < kTaps; ++t) xv[t] = pk::ploadu<Pk>(x_tap[t] + xr + ow);
#pragma GCC unroll 8
        for (int q = 0; q < kBlockO; ++q) {
          Pk d = pk::ploadu<Pk>(dy_o + q * P + dr + ow);
          // One load per dy packet: without this the compiler folds it into each of the kTaps FMAs.
          __asm__("" : "+v"(d));
#pragma GCC unroll 3
          for (int t = 0; t < kTaps; ++t) acc[q][t] = pk::pmadd(d, xv[t], acc[q][t]);
        }
      }
    }
#pragma GCC unroll 8
  for (int q = 0; q < kBlockO; ++q)
#pragma GCC unroll 3
    for (int t = 0; t < kTaps; ++t) {
      T* dst = dw + (o0 + q) * K + k0 + t;
      const T s = pk::predux(acc[q][t]);
      *dst = add ? *dst + s : s;
    }
}

// Output channels per register tile: 3·kBlockO accumulators, 3 input packets and one of dy in registers.
constexpr int kWeightGradBlockO = EIGEN_ARCH_DEFAULT_NUMBER_OF_REGISTERS >= 32 ? 8 : 4;

template <typename T, typename Pk, int kTaps>
void weight_grad_taps(const T* dy, const T* phases, T* dw, const ConvGeometry& g, const PhaseLayout& L, index_t O,
                      index_t count, index_t phase_image, index_t k0, bool add) {
  index_t o = 0;
  for (; o + kWeightGradBlockO <= O; o += kWeightGradBlockO)
    weight_grad_tile<T, Pk, kWeightGradBlockO, kTaps>(dy, phases, dw, g, L, O, count, phase_image, o, k0, add);
  for (; o + 2 <= O; o += 2) weight_grad_tile<T, Pk, 2, kTaps>(dy, phases, dw, g, L, O, count, phase_image, o, k0, add);
  for (; o < O; ++o) weight_grad_tile<T, Pk, 1, kTaps>(dy, phases, dw, g, L, O, count, phase_image, o, k0, add);
}

// Σ over `count` images (x at image stride C·H·W, dy at O·P) of their weight gradient, into dw (or added).
template <typename T, typename Pk>
void weight_grad_images(const T* x, const T* dy, T* dw, const ConvGeometry& g, index_t O, index_t count, bool add) {
  const PhaseLayout L = phase_layout(g);
  const index_t image_in = g.channels * g.height * g.width, P = g.plane(), K = g.rows();
  const index_t phase_image = g.channels * L.channel();
  const index_t pass = std::max<index_t>(
      1, kWeightGradPassBytes / std::max<index_t>(1, (phase_image + O * P) * index_t(sizeof(T))));
  T* phases = scratch<T>(0, std::min(pass, count) * phase_image);
  for (index_t first = 0; first < count; first += pass) {
    const index_t n = std::min(pass, count - first);
    for (index_t m = 0; m < n; ++m) split_phases(x + (first + m) * image_in, phases + m * phase_image, g, L);
    const T* dy_pass = dy + first * O * P;
    const bool acc = add || first > 0;
    index_t k = 0;
    for (; k + 3 <= K; k += 3) weight_grad_taps<T, Pk, 3>(dy_pass, phases, dw, g, L, O, n, phase_image, k, acc);
    if (K - k == 2)
      weight_grad_taps<T, Pk, 2>(dy_pass, phases, dw, g, L, O, n, phase_image, k, acc);
    else if (K - k == 1)
      weight_grad_taps<T, Pk, 1>(dy_pass, phases, dw, g, L, O, n, phase_image, k, acc);
  }
}

// grad_weight [O, C, kh, kw] (+)= the weight gradient over the batch (weight_grad_direct_applies must hold).
template <typename T>
void conv_weight_grad_direct(const T* x, const T* grad_y, T* grad_weight, const ConvGeometry& g, index_t O,
                             bool accumulate) {
  using P = DirectPacket<T>;
  const index_t K = g.rows(), image_in = g.channels * g.height * g.width, image_out = O * g.plane();
  const index_t chunks = std::min(g.batch, kWeightGradDirectChunks);
  auto chunk_start = [&](index_t c) { return c * g.batch / chunks; };
  auto partial = uninitialized<T>(chunks * O * K);
  parallel_for(chunks, O * K * g.columns() >= kParallelMinMacs, [&](index_t c) {
    const index_t first = chunk_start(c), count = chunk_start(c + 1) - first;
    T* dw = partial.get() + c * O * K;
    weight_grad_images<T, typename P::Full>(x + first * image_in, grad_y + first * image_out, dw, g, O, count,
                                            false);
  });
  for (index_t i = 0; i < O * K; ++i) {
    T s = partial[i];
    for (index_t c = 1; c < chunks; ++c) s += partial[c * O * K + i];
    grad_weight[i] = accumulate ? grad_weight[i] + s : s;
  }
}

}  // namespace fastnn::detail
