// Direct (im2col-free) weight gradient of an ungrouped convolution of stride 1 or 2, any padding and dilation:
//   dW[o, c, i, j] = Σ_n Σ_p dy[n, o, p] · xpad[n, c, oh·sh + i·dh, ow·sw + j·dw],  p = oh·Wo + ow.
// Each image's padded input is copied sh·kw times, copy (a, j) holding rows a, a + sh, ... and columns
// j·dw, j·dw + sw, ... cut to Wo columns: tap (c, i, j) is then the contiguous run of Ho·Wo values from row
// ⌊i·dh / sh⌋ of channel c in copy ((i·dh) mod sh, j), laid out exactly as dy's plane. So every tap is a dot
// product of two contiguous runs of P values (sh·kw copies of the input instead of im2col's kh·kw). A register
// tile of kBlockO output channels × 3 taps (consecutive in the flattened kernel, k = (c·kh + i)·kw + j)
// accumulates packets of dy · x over a chunk of images, and each lane sum is reduced once per chunk. The blocked
// im2col + GEMM path builds a K × columns matrix and packs it again for a GEMM only O wide; this reads dy where
// it lies.
//
// Applies when a plane is whole packets (P a multiple of the full packet): no tails, no masks.
// Reproducibility: images are dealt to a fixed number of chunks (by the shape only); each chunk sums its images
// in order into its own partial, and the partials are added in chunk order — the same bits at any thread count.
#pragma once
#include <Eigen/Core>
#include <algorithm>
#include <memory>

#include "kernels/conv_direct.hpp"
#include "kernels/im2col.hpp"
#include "kernels/packet_map.hpp"
#include "kernels/parallel.hpp"
#include "kernels/row_phases.hpp"
#include "kernels/scratch.hpp"

namespace fastnn::detail {

// Chunks of images the weight gradient is summed in (fixed: the partial sums never depend on threads), and the
// bytes of shifted input plus output gradient one pass over a chunk's images keeps in cache.
constexpr index_t kWeightGradDirectChunks = 8;
constexpr index_t kWeightGradPassBytes = index_t(384) << 10;

// Where it runs: stride 1 or 2, planes of whole full packets, rows at least 16 wide (8 at stride 2). Measured at
// 1 thread on Zen 4 (AVX-512, a loaded machine), batch 32, against im2col + GEMM: 3×3 16→16 on 32×32 1.7–2.3 ms
// vs 2.9–3.9, 32→32 on 16×16 1.7–2.4 vs 2.2–3.4, 3→16 on 32×32 0.3–0.4 vs 0.6–0.7; 64→64 on 8×8 was no faster
// (2.5–3.3 vs 2.2–2.5: few packets per lane sum). Stride 2, 2 threads, ResNet-8's layers (best of 3–4 runs
// each, a loaded machine): 3×3 16→32 from 32×32 1.16–1.31 → 0.88–1.02 ms, 32→64 from 16×16 1.11–1.46 →
// 1.01–1.13 ms, 1×1 16→32 0.15–0.18 → 0.12–0.13 ms (im2col then already split rows into phases).
template <typename T>
bool weight_grad_direct_applies(const ConvGeometry& g, index_t groups) {
  return kDirectKernels<T> && groups == 1 && g.stride_h <= 2 && g.stride_w <= 2 && g.out_h > 0 &&
         (g.out_w >= 16 || (g.stride_w == 2 && g.out_w >= 8)) && g.plane() % DirectPacket<T>::full == 0;
}

// Layout of one image's shifted copies: copy (a, j), a < sh (a row phase), j < kw, channel c is a [rows, Wo]
// plane, rows = Ho + ⌊dh·(kh − 1) / sh⌋. Planes lie kPlaneSkew values further apart than their size: a tile's
// three taps and four dy planes were otherwise all a multiple of 4 kB apart at 32×32 (one L1 set for all seven
// streams). Zen 2, 2 threads, batch 32: dW 3×3 16→16 on 32×32 1092–1095 → 1081–1083 µs, 32→32 on 16×16
// 1202–1203 → 1183–1186 µs.
struct ShiftedLayout {
  static constexpr index_t kPlaneSkew = 16;
  index_t channels, rows, cols, copies;
  index_t plane() const { return rows * cols + kPlaneSkew; }
  index_t image() const { return copies * channels * plane(); }
  index_t offset(index_t copy, index_t c) const { return (copy * channels + c) * plane(); }
};

inline ShiftedLayout shifted_layout(const ConvGeometry& g) {
  return {g.channels, g.out_h + g.dilation_h * (g.kernel_h - 1) / g.stride_h, g.out_w, g.stride_h * g.kernel_w};
}

// Columns of one padded input row that a row of the shifted copies reads: padded column j·dw + q·sw for
// q < Wo, j < kw (padded column u is input column u − pad_w), rounded up to whole stride phases.
inline index_t shifted_row_span(const ConvGeometry& g, const ShiftedLayout& L) {
  const index_t span = (L.cols - 1) * g.stride_w + (g.kernel_w - 1) * g.dilation_w + 1;
  return div_ceil(span, g.stride_w) * g.stride_w;
}

// dst[a·kw + j, c, r, q] = x[c, r·sh + a − pad_h, q·sw + j·dw − pad_w], zero outside the image: tap (c, i, j)
// reads copy ((i·dh) mod sh, j) from row ⌊i·dh / sh⌋ on, Ho·Wo values in a row, laid out as dy's plane.
// Each input row is split once into its sw column phases, zero-padded (`phases`, shifted_row_span values);
// every copy's row is then a contiguous run of one phase, moved in whole packets (row by row, calls to
// memmove and memset cost more than the copying). At stride 2 the split goes straight from the input row into
// the phases (it was a copy into a padded row, then a split of that): Zen 2, 2 threads, batch 32, dW 3×3
// 16→32 from 32×32 803–806 → 753–761 µs, 32→64 from 16×16 1022–1031 → 979–984 µs.
template <typename T>
void shifted_copies(const T* x, T* dst, const ConvGeometry& g, const ShiftedLayout& L, T* phases) {
  const index_t sw = g.stride_w, cols = shifted_row_span(g, L) / sw;
  const RowPhases rows(g.width, g.pad_w, sw, cols);
  std::fill(phases, phases + sw * cols, T(0));
  for (index_t a = 0; a < g.stride_h; ++a) {
    bool read = false;  // whether any tap row reads this row phase (a 1×1 kernel reads phase 0 only)
    for (index_t i = 0; i < g.kernel_h; ++i) read = read || i * g.dilation_h % g.stride_h == a;
    if (!read) continue;
    for (index_t c = 0; c < g.channels; ++c) {
      for (index_t r = 0; r < L.rows; ++r) {
        const index_t h = r * g.stride_h + a - g.pad_h;
        const bool inside = h >= 0 && h < g.height;
        if (inside) rows.split(x + (c * g.height + h) * g.width, phases, cols);
        for (index_t j = 0; j < g.kernel_w; ++j) {
          T* out = dst + L.offset(a * g.kernel_w + j, c) + r * L.cols;
          const index_t u = j * g.dilation_w;  // the copy's first padded column (sw is 1 or 2: no division)
          if (inside)
            packet_copy(L.cols, out, phases + (sw == 1 ? u : (u & 1) * cols + (u >> 1)));
          else
            std::fill(out, out + L.cols, T(0));
        }
      }
    }
  }
}

// One register tile: output channels o0 .. o0 + kBlockO × taps k0 .. k0 + kTaps of the flattened kernel,
// summed over `count` images (shifted copies at stride `image`, dy at stride O·P) and written (or added, `add`)
// into dw[O, K].
template <typename T, typename Pk, int kBlockO, int kTaps>
void weight_grad_tile(const T* dy, const T* shifted, T* dw, const ConvGeometry& g, const ShiftedLayout& L,
                      index_t O, index_t count, index_t image, index_t o0, index_t k0, bool add) {
  namespace pk = Eigen::internal;
  constexpr index_t kLanes = pk::unpacket_traits<Pk>::size;
  const index_t P = g.plane(), kk = g.kernel_h * g.kernel_w, K = g.channels * kk;
  const T* x_tap[kTaps];
  for (int t = 0; t < kTaps; ++t) {
    const index_t k = k0 + t, c = k / kk, u = k % kk / g.kernel_w * g.dilation_h, j = k % g.kernel_w;
    x_tap[t] = shifted + L.offset(u % g.stride_h * g.kernel_w + j, c) + u / g.stride_h * L.cols;
  }
  const T* dy_o = dy + o0 * P;
  Pk acc[kBlockO][kTaps];
#pragma GCC unroll 8
  for (int q = 0; q < kBlockO; ++q)
#pragma GCC unroll 3
    for (int t = 0; t < kTaps; ++t) acc[q][t] = pk::pset1<Pk>(T(0));
  for (index_t m = 0; m < count; ++m) {
    const index_t dm = m * O * P, xm = m * image;
    for (index_t p = 0; p < P; p += kLanes) {
      Pk xv[kTaps];
#pragma GCC unroll 3
      for (int t = 0; t < kTaps; ++t) xv[t] = pk::ploadu<Pk>(x_tap[t] + xm + p);
#pragma GCC unroll 8
      for (int q = 0; q < kBlockO; ++q) {
        Pk d = pk::ploadu<Pk>(dy_o + q * P + dm + p);
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
void weight_grad_taps(const T* dy, const T* shifted, T* dw, const ConvGeometry& g, const ShiftedLayout& L, index_t O,
                      index_t count, index_t image, index_t k0, bool add) {
  index_t o = 0;
  for (; o + kWeightGradBlockO <= O; o += kWeightGradBlockO)
    weight_grad_tile<T, Pk, kWeightGradBlockO, kTaps>(dy, shifted, dw, g, L, O, count, image, o, k0, add);
  for (; o + 2 <= O; o += 2) weight_grad_tile<T, Pk, 2, kTaps>(dy, shifted, dw, g, L, O, count, image, o, k0, add);
  for (; o < O; ++o) weight_grad_tile<T, Pk, 1, kTaps>(dy, shifted, dw, g, L, O, count, image, o, k0, add);
}

// Σ over `count` images (x at image stride C·H·W, dy at O·P) of their weight gradient, into dw (or added).
template <typename T, typename Pk>
void weight_grad_images(const T* x, const T* dy, T* dw, const ConvGeometry& g, index_t O, index_t count, bool add) {
  const ShiftedLayout L = shifted_layout(g);
  const index_t image_in = g.channels * g.height * g.width, P = g.plane(), K = g.rows();
  const index_t image = L.image();
  const index_t pass = std::max<index_t>(
      1, kWeightGradPassBytes / std::max<index_t>(1, (image + O * P) * index_t(sizeof(T))));
  const index_t copies = std::min(pass, count) * image;
  T* shifted = scratch<T>(0, copies + shifted_row_span(g, L));
  for (index_t first = 0; first < count; first += pass) {
    const index_t n = std::min(pass, count - first);
    for (index_t m = 0; m < n; ++m)
      shifted_copies(x + (first + m) * image_in, shifted + m * image, g, L, shifted + copies);
    const T* dy_pass = dy + first * O * P;
    const bool acc = add || first > 0;
    index_t k = 0;
    for (; k + 3 <= K; k += 3) weight_grad_taps<T, Pk, 3>(dy_pass, shifted, dw, g, L, O, n, image, k, acc);
    if (K - k == 2)
      weight_grad_taps<T, Pk, 2>(dy_pass, shifted, dw, g, L, O, n, image, k, acc);
    else if (K - k == 1)
      weight_grad_taps<T, Pk, 1>(dy_pass, shifted, dw, g, L, O, n, image, k, acc);
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
