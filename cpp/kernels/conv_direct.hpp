// Direct (im2col-free) convolution of one image (or one group of it), stride 1 or 2, any dilation: for shallow
// layers (and inference), where building a column matrix would cost more than the arithmetic.
#pragma once
#include <Eigen/Core>
#include <algorithm>
#include <memory>
#include <type_traits>

#include "kernels/im2col.hpp"
#include "kernels/packet_map.hpp"
#include "kernels/parallel.hpp"
#include "kernels/row_phases.hpp"
#include "kernels/scratch.hpp"

namespace fastnn::detail {

// The SIMD packet a direct convolution runs on for output rows Wo wide: the full packet, or, on AVX-512, the
// half packet (8 floats) when rows are narrower than a full one, so strips stay whole packets on small planes.
// Below AVX-512 rows narrower than a packet go through the bounce buffer instead: a second copy of the kernels
// for 4-wide rows would not fit the wheel's 2 MB.
template <typename T>
struct DirectPacket {
  using Full = typename Eigen::internal::packet_traits<T>::type;
  using Half = typename Eigen::internal::packet_traits<T>::half;
  static constexpr index_t full = index_t(sizeof(Full) / sizeof(T));
  static constexpr index_t half = index_t(sizeof(Half) / sizeof(T));
  static constexpr bool has_half = sizeof(Full) == 64 && half < full;
  static bool use_half(index_t Wo) { return has_half && Wo < full && Wo >= half; }
  static index_t width(index_t Wo) { return use_half(Wo) ? half : full; }
};

// Direct convolution of one output plane for stride 1 or 2 (any dilation), one group (inference and first
// layers: no column matrix at all), on packets Pk of L lanes. The input planes were copied once into a
// zero-padded scratch (SplitLayout below): for stride s, each channel as s×s phase planes, phase (p, q) holding
// the padded input's rows p, p + s, ... and columns q, q + s, ..., so that every kernel tap reads a contiguous run
// of one phase plane for a run of outputs; rows are long enough for whole packets. `taps[k]` is tap k's offset
// from an output position's own, k = (c·kh + i)·kw + j.
//
// The plane is a list of packet positions: each row covered by full packets, the last one moved left to end at
// Wo, overlapping its neighbour (those columns are computed twice, the same way, so the same bits); rows
// narrower than one packet are one position each, stored through a bounce buffer. A strip is kPackets
// positions (wherever they lie: the end of one row and the start of the next), accumulated in registers for
// kBlockO output channels, summing taps in k order with FMA. The last strip repeats its last position where
// the list runs out. Every output is the same sum whichever strip computed it.
template <typename T, typename Pk, int kBlockO, int kPackets>
struct DirectStrips {
  static constexpr index_t L = Eigen::internal::unpacket_traits<Pk>::size;

  // Packets at input offsets in[p] (row·Wp + column of the padded plane) and output offsets out[p]; n_out > 0:
  // only the first n_out lanes are outputs (rows narrower than a packet).
  static void strip(const T* padded, const index_t* taps, const T* weight, const T* bias, T* y, index_t K,
                    index_t plane, index_t o0, const index_t* in, const index_t* out, index_t n_out) {
    namespace pk = Eigen::internal;
    Pk acc[kBlockO][kPackets];
#pragma GCC unroll 8
    for (int q = 0; q < kBlockO; ++q)
#pragma GCC unroll 3
      for (int p = 0; p < kPackets; ++p) acc[q][p] = pk::pset1<Pk>(bias ? bias[o0 + q] : T(0));
    const T* base[kPackets];
#pragma GCC unroll 3
    for (int p = 0; p < kPackets; ++p) base[p] = padded + in[p];
    const T* w0 = weight + o0 * K;
    for (index_t k = 0; k < K; ++k) {
      Pk x[kPackets];
#pragma GCC unroll 3
      for (int p = 0; p < kPackets; ++p) x[p] = pk::ploadu<Pk>(base[p] + taps[k]);
#pragma GCC unroll 8
      for (int q = 0; q < kBlockO; ++q) {
        const Pk wq = pk::pset1<Pk>(w0[q * K + k]);
#pragma GCC unroll 3
        for (int p = 0; p < kPackets; ++p) acc[q][p] = pk::pmadd(wq, x[p], acc[q][p]);
      }
    }
#pragma GCC unroll 8
    for (int q = 0; q < kBlockO; ++q) {
      T* dst = y + (o0 + q) * plane;
#pragma GCC unroll 3
      for (int p = 0; p < kPackets; ++p) {
        if (n_out == 0) {
          pk::pstoreu(dst + out[p], acc[q][p]);
        } else {
          alignas(64) T tmp[L];
          pk::pstoreu(tmp, acc[q][p]);
          std::copy(tmp, tmp + n_out, dst + out[p]);
        }
      }
    }
  }

  // Every position of channels o0 .. o0 + kBlockO, in order: the k-th packet of row oh lies at column
  // min(k·L, Wo − L) (0 on rows narrower than a packet); the last strip repeats the last position.
  static void plane(const T* padded, index_t Wp, const index_t* taps, const T* weight, const T* bias, T* y,
                    const ConvGeometry& g, index_t o0) {
    const index_t Wo = g.out_w, K = g.channels * g.kernel_h * g.kernel_w, n_out = Wo < L ? Wo : 0;
    const index_t per_row = Wo > L ? (Wo + L - 1) / L : 1, count = g.out_h * per_row;
    index_t oh = 0, k = 0;  // the next position: row oh, k-th packet of the row
    for (index_t s = 0; s < count; s += kPackets) {
      index_t in[kPackets], out[kPackets];
      for (int p = 0; p < kPackets; ++p) {
        const index_t ow = n_out ? 0 : std::min(k * L, Wo - L);
        in[p] = oh * Wp + ow, out[p] = oh * Wo + ow;
        if (s + p + 1 < count && ++k == per_row) k = 0, ++oh;  // past the end: the last position again
      }
      strip(padded, taps, weight, bias, y, K, g.plane(), o0, in, out, n_out);
    }
  }
};

// Output channels × packets per register block: 8 × 2 where there are registers for 16 accumulators
// (AVX-512's 32), 4 × 3 on AVX2 (16 registers: 12 accumulators, 3 input packets and the weight; 4 × 2 ran 17%
// slower, 3×3 16→16 on 32×32, Zen 2: forward 1104 → 916 µs). The SSE baseline builds no direct kernels
// (kDirectKernels below).
constexpr int kDirectPackets = EIGEN_ARCH_DEFAULT_NUMBER_OF_REGISTERS >= 32 ? 2 : 3;
constexpr int kDirectBlockO = EIGEN_ARCH_DEFAULT_NUMBER_OF_REGISTERS >= 32 ? 8 : 4;

template <typename T, typename Pk>
void direct_conv_channels(const T* padded, index_t Wp, const index_t* taps, const T* weight, const T* bias, T* y,
                          const ConvGeometry& g, index_t O) {
  // Output channels split over threads in register blocks when this image is all the work there is (batch 1:
  // otherwise the caller's loop over images is the parallel one, and this runs inline).
  const index_t K = g.channels * g.kernel_h * g.kernel_w;
  for_each_slice(O, kDirectBlockO, O * K * g.plane(), kParallelMinMacs, [&](index_t begin, index_t n) {
    index_t o = begin;
    for (; o + kDirectBlockO <= begin + n; o += kDirectBlockO)
      DirectStrips<T, Pk, kDirectBlockO, kDirectPackets>::plane(padded, Wp, taps, weight, bias, y, g, o);
    if constexpr (kDirectBlockO == 8)
      for (; o + 4 <= begin + n; o += 4)
        DirectStrips<T, Pk, 4, kDirectPackets>::plane(padded, Wp, taps, weight, bias, y, g, o);
    for (; o < begin + n; ++o) DirectStrips<T, Pk, 1, kDirectPackets>::plane(padded, Wp, taps, weight, bias, y, g, o);
  });
}

// The padded scratch of one image for stride s = (sh, sw): per channel, sh·sw phase planes of rows × cols,
// phase (p, q) row r column t = padded input (r·sh + p, t·sw + q). Output (oh, ow) reads tap (i, j) at phase
// ((i·dh) mod sh, (j·dw) mod sw), row oh + ⌊i·dh / sh⌋, column ow + ⌊j·dw / sw⌋. Stride 1: one plane, the
// padded input itself. Columns: Wo rounded up to whole packets, plus the taps' reach.
struct SplitLayout {
  index_t rows, cols, phases;
  index_t phase_plane() const { return rows * cols; }
  index_t channel() const { return phases * phase_plane(); }
};

inline SplitLayout split_layout(const ConvGeometry& g, index_t L) {
  const index_t Wo_padded = (g.out_w + L - 1) / L * L;
  return {g.out_h + g.dilation_h * (g.kernel_h - 1) / g.stride_h,
          Wo_padded + g.dilation_w * (g.kernel_w - 1) / g.stride_w, g.stride_h * g.stride_w};
}

// Writes one image's padded scratch (layout S, zeros where the input has none) into `padded`: each input row
// split once into its column phases (RowPhases).
template <typename T>
void pad_split(const T* x, T* padded, const ConvGeometry& g, const SplitLayout& S) {
  const index_t sh = g.stride_h, sw = g.stride_w;
  const RowPhases rows(g.width, g.pad_w, sw, S.cols);
  std::fill(padded, padded + g.channels * S.channel(), T(0));
  for (index_t c = 0; c < g.channels; ++c)
    for (index_t p = 0; p < sh; ++p)
      for (index_t r = 0; r < S.rows; ++r) {
        const index_t h = r * sh + p - g.pad_h;
        if (h < 0 || h >= g.height) continue;
        rows.split(x + (c * g.height + h) * g.width,
                   padded + c * S.channel() + p * sw * S.phase_plane() + r * S.cols, S.phase_plane());
      }
}

// direct_conv_channels on the packet that rows g.out_w wide take (DirectPacket). Not inlined: its callers
// (the forward, the stride-2 dx's phases) share one copy of the kernels.
template <typename T>
[[gnu::noinline]] void direct_conv_padded(const T* padded, index_t Wp, const index_t* taps, const T* weight,
                                          const T* bias, T* y, const ConvGeometry& g, index_t O) {
  using P = DirectPacket<T>;
  if constexpr (P::has_half)
    if (P::use_half(g.out_w))
      return direct_conv_channels<T, typename P::Half>(padded, Wp, taps, weight, bias, y, g, O);
  direct_conv_channels<T, typename P::Full>(padded, Wp, taps, weight, bias, y, g, O);
}

// Not inlined into the caller's loop over images: inlined (with the row split of kernels/row_phases.hpp) it
// ran 1–2% slower (register pressure in the caller's lambda).
template <typename T>
[[gnu::noinline]] void direct_conv_image(const T* x, const T* weight, const T* bias, T* y, const ConvGeometry& g,
                                         index_t O) {
  const index_t sh = g.stride_h, sw = g.stride_w, kk = g.kernel_h * g.kernel_w, K = g.channels * kk;
  const SplitLayout S = split_layout(g, DirectPacket<T>::width(g.out_w));
  T* padded = scratch<T>(0, g.channels * S.channel());
  pad_split(x, padded, g, S);
  auto taps = std::make_unique<index_t[]>(K);
  for (index_t c = 0; c < g.channels; ++c)
    for (index_t i = 0; i < g.kernel_h; ++i)
      for (index_t j = 0; j < g.kernel_w; ++j) {
        const index_t di = i * g.dilation_h, dj = j * g.dilation_w;
        taps[c * kk + i * g.kernel_w + j] = c * S.channel() + (di % sh * sw + dj % sw) * S.phase_plane() +
                                            di / sh * S.cols + dj / sw;
      }
  direct_conv_padded(padded, S.cols, taps.get(), weight, bias, y, g, O);
}

// Direct (im2col-free) forward for stride-1 or stride-2 convolutions. It wins while the input rows
// one output row reads (C·kh of them, padded width) stay in L1 (≤ kDirectMaxRowBytes), and while its strips
// are whole packets (rows at least two packets wide, or exactly one, as the strips were measured) or the depth
// K = C·kh·kw is small (≤ kDirectMaxDepth: the column matrix would cost more than the arithmetic). Measured
// on a grid of 3×3 convolutions (C = O = 16..128, planes 8..56) at 2 threads on AVX2: where this rule picks
// the direct kernel it ran at 110–170 GFLOP/s against im2col's 50–150; elsewhere im2col was ahead.
constexpr index_t kDirectMaxDepth = 256;
constexpr index_t kDirectMaxRowBytes = index_t(24) << 10;

// The direct kernels (this forward, the stride-1 and stride-2 dx, kernels/conv_weight_grad.hpp and the pooled
// inference kernel) are float32's alone, on AVX2 and above: float64 convolutions (for checking results, not for
// speed) and the SSE baseline library (CPUs from before 2013, a fallback) take im2col + GEMM. Their copies
// would cost SPEC P10's 2 MB wheel 16 kB (float64) and 15 kB (the baseline, gzip -9 of its library).
template <typename T>
#ifdef __AVX2__
constexpr bool kDirectKernels = std::is_same_v<T, float>;
#else
constexpr bool kDirectKernels = false;
#endif

// With groups, each group is its own convolution over C/groups input channels (depthwise: one).
template <typename T>
bool direct_applies(const ConvGeometry& g, index_t groups) {
  const index_t L = DirectPacket<T>::width(g.out_w);
  const index_t group_channels = g.channels / groups, K = group_channels * g.kernel_h * g.kernel_w;
  const index_t row_bytes = group_channels * g.kernel_h * split_layout(g, L).cols * index_t(sizeof(T));
  const bool whole_strips = g.out_w >= 2 * L || g.out_w == L;
  // Strided: only kernels that reach every phase (a 1×1 stride-2 kernel would copy 4 phases to read one).
  const bool strides = (g.stride_h == 1 || (g.stride_h == 2 && g.kernel_h >= 2)) &&
                       (g.stride_w == 1 || (g.stride_w == 2 && g.kernel_w >= 2));
  return kDirectKernels<T> && strides && row_bytes <= kDirectMaxRowBytes &&
         (whole_strips || K <= kDirectMaxDepth);
}

}  // namespace fastnn::detail
