// dx of a stride-2 convolution (dilation 1, one group) as four stride-1 direct convolutions of dy, one per phase
// of dx. Along one axis, dx position h = 2a + p (phase p) receives dy[oh] through the kernel taps i with
// 2·oh + i − pad = h, that is the taps i ≡ p + pad (mod 2), from dy row oh = a − e_i with e_i = (i − p − pad)/2.
// So phase p is a stride-1 correlation of dy with those taps in reverse order (correlation tap t is kernel index
// last − 2t, `last` the phase's largest) and dy padded by e_last rows in front. The four phase outputs are then
// interleaved into dx. This replaces dcol = Wᵀ·dY (a GEMM only O deep) and col2im's scatter: the same
// multiply-adds, run by the direct kernel (kernels/conv_direct.hpp), and one strided copy of dx.
#pragma once
#include <algorithm>
#include <vector>

#include "kernels/conv_direct.hpp"
#include "kernels/im2col.hpp"
#include "kernels/parallel.hpp"
#include "kernels/scratch.hpp"

namespace fastnn::detail {

// The taps of one axis that reach phase p of an input `size` long: `count` of them (at least one for a kernel
// 2 or more wide), correlation tap t being kernel index last − 2t; `front` rows of zeros before dy (e_last; negative
// when the padding exceeds what the taps reach: then this path does not apply); `positions` of the phase.
struct PhaseTaps {
  index_t count, last, front, positions;
};

inline PhaseTaps phase_taps(index_t p, index_t kernel, index_t pad, index_t size) {
  PhaseTaps t{0, -1, 0, (size - p + 1) / 2};
  for (index_t i = 0; i < kernel; ++i)
    if (((i - p - pad) & 1) == 0) ++t.count, t.last = i;
  if (t.count) t.front = (t.last - p - pad) / 2;  // exact: last − p − pad is even
  return t;
}

// The stride-1 convolution of dy [O, Ho, Wo] that gives phase (p, q) of dx [C, ...].
inline ConvGeometry phase_geometry(const ConvGeometry& g, index_t O, const PhaseTaps& rows, const PhaseTaps& cols) {
  ConvGeometry t{};
  t.batch = g.batch, t.channels = O, t.height = g.out_h, t.width = g.out_w;
  t.kernel_h = rows.count, t.kernel_w = cols.count, t.stride_h = t.stride_w = 1;
  t.pad_h = rows.front, t.pad_w = cols.front, t.dilation_h = t.dilation_w = 1;
  t.out_h = rows.positions, t.out_w = cols.positions;
  return t;
}

// Where it applies: stride 2 both ways, no dilation, one group, a kernel at least 2 × 2, and every phase with
// taps a direct convolution that the direct kernel takes (conv_direct.hpp's rule), with zeros only in front of
// dy, not cut from it. A 1 × 1 kernel reaches one phase only, a pointwise product: the GEMM path is faster there
// (ResNet-8's 16 → 32 projection, Zen 2, 2 threads, batch 32: dx 175 µs by GEMM and col2im, 263 µs by phases).
template <typename T>
bool dx_phases_apply(const ConvGeometry& g, index_t O, index_t groups) {
  if (groups != 1 || g.stride_h != 2 || g.stride_w != 2 || g.dilation_h != 1 || g.dilation_w != 1) return false;
  if (g.kernel_h < 2 || g.kernel_w < 2) return false;
  for (index_t p = 0; p < 2; ++p)
    for (index_t q = 0; q < 2; ++q) {
      const PhaseTaps rows = phase_taps(p, g.kernel_h, g.pad_h, g.height);
      const PhaseTaps cols = phase_taps(q, g.kernel_w, g.pad_w, g.width);
      if (rows.positions == 0 || cols.positions == 0) continue;  // a kernel ≥ 2 wide reaches every phase
      if (rows.front < 0 || cols.front < 0 || !direct_applies<T>(phase_geometry(g, O, rows, cols), 1)) return false;
    }
  return true;
}

// grad_x [N, C, H, W] = the input gradient of the convolution (dx_phases_apply must hold). Each image's dy is
// padded once, for all four phases: by the largest front of zeros (F); phase tap t then reads padded row
// a + t − front + F. Every kernel tap belongs to exactly one phase, so the phases' reordered weights
// ([C, O, rows.count, cols.count] each) and tap offsets ([O, rows.count, cols.count]) share one buffer each.
template <typename T>
void conv_dx_phases(const T* grad_y, const T* weight, T* grad_x, const ConvGeometry& g, index_t O) {
  const index_t C = g.channels, H = g.height, W = g.width, kh = g.kernel_h, kw = g.kernel_w;
  struct Phase {
    PhaseTaps rows, cols;
    ConvGeometry geometry;
    index_t at;  // offset of its weights (C·at) and taps (at) in the shared buffers
  };
  Phase phases[4];
  // The padded dy all phases read: a stride-1 geometry whose layout covers every phase's reach.
  ConvGeometry all{};
  all.batch = g.batch, all.channels = O, all.height = g.out_h, all.width = g.out_w;
  all.stride_h = all.stride_w = all.dilation_h = all.dilation_w = 1;
  index_t largest = 0, lanes = 0, at = 0;
  for (index_t f = 0; f < 4; ++f) {
    Phase& ph = phases[f];
    ph.rows = phase_taps(f / 2, kh, g.pad_h, H), ph.cols = phase_taps(f % 2, kw, g.pad_w, W);
    ph.geometry = phase_geometry(g, O, ph.rows, ph.cols);
    ph.at = at;
    at += O * ph.rows.count * ph.cols.count;
    all.pad_h = std::max(all.pad_h, ph.rows.front), all.pad_w = std::max(all.pad_w, ph.cols.front);
    all.out_h = std::max(all.out_h, ph.rows.positions), all.out_w = std::max(all.out_w, ph.cols.positions);
    largest = std::max(largest, ph.rows.positions * ph.cols.positions);
    lanes = std::max(lanes, DirectPacket<T>::width(ph.cols.positions));
  }
  all.kernel_h = all.kernel_w = 1;
  for (const Phase& ph : phases) {
    all.kernel_h = std::max(all.kernel_h, ph.rows.count - ph.rows.front + all.pad_h);
    all.kernel_w = std::max(all.kernel_w, ph.cols.count - ph.cols.front + all.pad_w);
  }
  const SplitLayout S = split_layout(all, lanes);
  std::vector<T> weights(C * at);
  std::vector<index_t> taps(at);
  for (const Phase& ph : phases) {
    const index_t nh = ph.rows.count, nw = ph.cols.count;
    for (index_t o = 0; o < O; ++o)
      for (index_t t = 0; t < nh; ++t)
        for (index_t u = 0; u < nw; ++u) {
          taps[ph.at + (o * nh + t) * nw + u] =
              o * S.channel() + (t - ph.rows.front + all.pad_h) * S.cols + u - ph.cols.front + all.pad_w;
          for (index_t c = 0; c < C; ++c)
            weights[C * ph.at + ((c * O + o) * nh + t) * nw + u] =
                weight[((o * C + c) * kh + ph.rows.last - 2 * t) * kw + ph.cols.last - 2 * u];
        }
  }
  const index_t dy_image = O * g.plane();
  parallel_for(g.batch, O * C * kh * kw * g.columns() >= kParallelMinMacs, [&](index_t n) {
    T* padded = scratch<T>(0, O * S.channel());
    pad_split(grad_y + n * dy_image, padded, all, S);
    T* out = scratch<T>(1, C * largest);
    T* dx = grad_x + n * C * H * W;
    for (index_t f = 0; f < 4; ++f) {
      const Phase& ph = phases[f];
      const index_t rows = ph.rows.positions, cols = ph.cols.positions;
      if (rows == 0 || cols == 0) continue;  // a plane one row or column long has no phase 1 there
      direct_conv_padded(padded, S.cols, taps.data() + ph.at, weights.data() + C * ph.at,
                         static_cast<const T*>(nullptr), out, ph.geometry, C);
      for (index_t c = 0; c < C; ++c)
        for (index_t a = 0; a < rows; ++a)
          scatter_strided(out + (c * rows + a) * cols, dx + (c * H + 2 * a + f / 2) * W + f % 2, cols, 2);
    }
  });
}

}  // namespace fastnn::detail
