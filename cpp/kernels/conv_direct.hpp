// Direct (im2col-free) convolution of one image (or one group of it), stride 1, any dilation: for shallow
// layers (and inference), where building a column matrix would cost more than the arithmetic.
#pragma once
#include <Eigen/Core>
#include <algorithm>

#include "kernels/im2col.hpp"
#include "kernels/parallel.hpp"
#include "kernels/scratch.hpp"

namespace fastnn::detail {

// Direct convolution of one image for stride 1 (any dilation), one group (inference and first layers: no column
// matrix at all). The input planes are copied once into a zero-padded scratch whose rows are long enough for
// whole SIMD packets; each strip of an output row is accumulated in registers for kBlockO output channels × 2
// packets of columns, summing taps in (c, i, j) order with FMA. A strip's two packets start at columns
// first and second (normally first + L). Rows are covered with full packets only: the last strip moves left
// to end at Wo, overlapping its neighbour (those columns are computed twice, the same way, so the same bits),
// and rows narrower than 2 packets overlap the strip's own two packets. Only rows narrower than one packet go
// through a bounce buffer.
template <typename T, int kBlockO>
void direct_row(const T* padded, index_t Wp, index_t plane_p, const T* weight, const T* bias, T* y,
                const ConvGeometry& g, index_t o0, index_t oh) {
  namespace pk = Eigen::internal;
  using Pk = typename pk::packet_traits<T>::type;
  constexpr index_t L = pk::packet_traits<T>::size;
  const index_t C = g.channels, kh = g.kernel_h, kw = g.kernel_w, Wo = g.out_w, K = C * kh * kw;
  const index_t dh = g.dilation_h, dw = g.dilation_w;
  auto init = [&](int q) { return pk::pset1<Pk>(bias ? bias[o0 + q] : T(0)); };
  auto strip = [&](index_t oh, index_t first, index_t second, index_t n_out) {
    // Named accumulators (an array would live on the stack across the tap loops).
    Pk a0 = init(0), a1 = a0, b0, b1, c0, c1, d0, d1;
    if constexpr (kBlockO == 4) b0 = b1 = init(1), c0 = c1 = init(2), d0 = d1 = init(3);
    const T* w0 = weight + o0 * K;
    for (index_t c = 0; c < C; ++c)
      for (index_t i = 0; i < kh; ++i) {
        const T* row = padded + c * plane_p + (oh + i * dh) * Wp;
        const index_t tap0 = (c * kh + i) * kw;
        for (index_t j = 0; j < kw; ++j) {
          const Pk x0 = pk::ploadu<Pk>(row + first + j * dw), x1 = pk::ploadu<Pk>(row + second + j * dw);
          const T* wt = w0 + tap0 + j;
          Pk wq = pk::pset1<Pk>(wt[0]);
          a0 = pk::pmadd(wq, x0, a0), a1 = pk::pmadd(wq, x1, a1);
          if constexpr (kBlockO == 4) {
            wq = pk::pset1<Pk>(wt[K]);
            b0 = pk::pmadd(wq, x0, b0), b1 = pk::pmadd(wq, x1, b1);
            wq = pk::pset1<Pk>(wt[2 * K]);
            c0 = pk::pmadd(wq, x0, c0), c1 = pk::pmadd(wq, x1, c1);
            wq = pk::pset1<Pk>(wt[3 * K]);
            d0 = pk::pmadd(wq, x0, d0), d1 = pk::pmadd(wq, x1, d1);
          }
        }
      }
    auto store = [&](int q, const Pk& v0, const Pk& v1) {
      T* dst = y + ((o0 + q) * g.out_h + oh) * Wo;
      if (n_out == 0) {  // full packets
        pk::pstoreu(dst + first, v0);
        pk::pstoreu(dst + second, v1);
      } else {
        alignas(64) T tmp[2 * L];
        pk::pstore(tmp, v0);
        pk::pstore(tmp + L, v1);
        std::copy(tmp, tmp + n_out, dst);
      }
    };
    store(0, a0, a1);
    if constexpr (kBlockO == 4) store(1, b0, b1), store(2, c0, c1), store(3, d0, d1);
  };
  if (Wo < L) {
    strip(oh, 0, L, Wo);
  } else if (Wo < 2 * L) {
    strip(oh, 0, Wo - L, 0);
  } else {
    index_t ow = 0;
    for (; ow + 2 * L <= Wo; ow += 2 * L) strip(oh, ow, ow + L, 0);
    if (ow < Wo) strip(oh, Wo - 2 * L, Wo - L, 0);
  }
}

template <typename T>
void direct_conv_image(const T* x, const T* weight, const T* bias, T* y, const ConvGeometry& g, index_t O) {
  constexpr index_t L = Eigen::internal::packet_traits<T>::size;
  const index_t Wo = g.out_w, Wo_padded = (Wo + 2 * L - 1) / (2 * L) * (2 * L);
  const index_t Wp = Wo_padded + g.dilation_w * (g.kernel_w - 1), Hp = g.out_h + g.dilation_h * (g.kernel_h - 1);
  const index_t plane_p = Hp * Wp;
  T* padded = scratch<T>(0, g.channels * plane_p);
  std::fill(padded, padded + g.channels * plane_p, T(0));
  for (index_t c = 0; c < g.channels; ++c)
    for (index_t h = 0; h < g.height; ++h) {
      const index_t ph = h + g.pad_h;
      if (ph >= Hp) break;
      const index_t w_count = std::min(g.width, Wp - g.pad_w);
      std::copy(x + (c * g.height + h) * g.width, x + (c * g.height + h) * g.width + w_count,
                padded + c * plane_p + ph * Wp + g.pad_w);
    }
  // Output channels split over threads in blocks of 4 when this image is all the work there is (batch 1:
  // otherwise the caller's loop over images is the parallel one, and this runs inline).
  const index_t K = g.channels * g.kernel_h * g.kernel_w;
  for_each_slice(O, 4, O * K * g.plane(), kParallelMinMacs, [&](index_t begin, index_t count) {
    index_t o = begin;
    for (; o + 4 <= begin + count; o += 4)
      for (index_t oh = 0; oh < g.out_h; ++oh) direct_row<T, 4>(padded, Wp, plane_p, weight, bias, y, g, o, oh);
    for (; o < begin + count; ++o)
      for (index_t oh = 0; oh < g.out_h; ++oh) direct_row<T, 1>(padded, Wp, plane_p, weight, bias, y, g, o, oh);
  });
}

// Direct (im2col-free) forward for stride-1, undilated, ungrouped convolutions. It wins while the input rows
// one output row reads (C·kh of them, padded width) stay in L1 (≤ kDirectMaxRowBytes), and while its strips
// are whole packets (Wo ≥ 2 packets) or the depth K = C·kh·kw is small (≤ kDirectMaxDepth: the column matrix
// would cost more than the arithmetic). Measured on a grid of 3×3 convolutions (C = O = 16..128, planes 8..56)
// at 2 threads: where this rule picks the direct kernel it ran at 110–170 GFLOP/s against im2col's 50–150;
// elsewhere im2col was ahead.
constexpr index_t kDirectMaxDepth = 256;
constexpr index_t kDirectMaxRowBytes = index_t(24) << 10;

// With groups, each group is its own convolution over C/groups input channels (depthwise: one).
template <typename T>
bool direct_applies(const ConvGeometry& g, index_t groups) {
  constexpr index_t L = Eigen::internal::packet_traits<T>::size;
  const index_t group_channels = g.channels / groups, K = group_channels * g.kernel_h * g.kernel_w;
  const index_t padded_width = (g.out_w + 2 * L - 1) / (2 * L) * (2 * L) + g.dilation_w * (g.kernel_w - 1);
  const index_t row_bytes = group_channels * g.kernel_h * padded_width * index_t(sizeof(T));
  return g.stride_h == 1 && g.stride_w == 1 &&
         row_bytes <= kDirectMaxRowBytes && (g.out_w >= 2 * L || K <= kDirectMaxDepth);
}

}  // namespace fastnn::detail
