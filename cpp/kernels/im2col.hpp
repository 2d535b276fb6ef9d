// im2col / col2im over a whole batch, NCHW; 1-D convolution is the case H = 1, kernel_h = 1.
// The column matrix is [C·kh·kw, N·Ho·Wo], row-major: row (c·kh + i)·kw + j holds, for every image n and
// output position p, the input value under kernel tap (i, j) of channel c (0 in the zero padding). Its
// rows follow the weight layout [O, C/groups, kh, kw], so group g's rows are one block and a convolution
// is one GEMM per group over all N·Ho·Wo columns (Caffe does one small GEMM per image instead).
#pragma once
#include <algorithm>
#include <cstring>

#include "kernels/entry.hpp"
#include "kernels/parallel.hpp"
#include "kernels/row_phases.hpp"

namespace fastnn {

struct ConvGeometry {
  index_t batch, channels, height, width;  // input N, C, H, W
  index_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
  index_t out_h, out_w;

  // Output size (H + 2P − D·(K − 1) − 1) / S + 1, rounded down; ≤ 0 when the dilated kernel does not fit.
  static index_t output_size(index_t in, index_t kernel, index_t stride, index_t pad, index_t dilation) {
    const index_t span = in + 2 * pad - dilation * (kernel - 1) - 1;
    return span < 0 ? 0 : span / stride + 1;
  }
  void set_output_size() {
    out_h = output_size(height, kernel_h, stride_h, pad_h, dilation_h);
    out_w = output_size(width, kernel_w, stride_w, pad_w, dilation_w);
  }
  index_t plane() const { return out_h * out_w; }                      // P = Ho·Wo
  index_t columns() const { return batch * plane(); }                  // N·P
  index_t rows() const { return channels * kernel_h * kernel_w; }      // C·kh·kw
  // A 1×1, stride-1, unpadded convolution reads the input as it is: column matrix of image n = x[n].
  bool is_pointwise() const {
    return kernel_h == 1 && kernel_w == 1 && stride_h == 1 && stride_w == 1 && pad_h == 0 && pad_w == 0;
  }
};

namespace detail {

// fn(n, c) for every image and channel; threaded over (n, c) pairs when the work is large. Each pair
// writes its own memory, so the thread count never changes a result.
template <typename Fn>
void for_each_plane(index_t batch, index_t channels, index_t work, Fn&& fn) {
  parallel_for(batch * channels, work >= kParallelMinElements, [&](index_t t) { fn(t / channels, t % channels); });
}

// dst[o·stride] = src[o], o < n: the inverse of copy_strided (kernels/conv_dx_phases.hpp interleaves its phases
// into dx with it).
template <typename T>
[[gnu::noinline]] void scatter_strided(const T* __restrict src, T* __restrict dst, index_t n, index_t stride) {
  if (stride == 2) {
    for (index_t o = 0; o < n; ++o) dst[2 * o] = src[o];
  } else {
    for (index_t o = 0; o < n; ++o) dst[o * stride] = src[o];
  }
}

// dst[o·stride] += src[o], o < n, the two arrays apart: a loop of its own, as copy_strided (inlined into
// col2im's nest, GCC kept the bounds on the stack and re-read them for every element). ResNet-8's 16 → 32
// stride-2 dx 811 → 673 µs, its 1×1 projection's 137 → 121 µs (best of 6, 2 threads, Zen 4; both loops).
template <typename T>
[[gnu::noinline]] void add_strided(const T* __restrict src, T* __restrict dst, index_t n, index_t stride) {
  if (stride == 2) {
    for (index_t o = 0; o < n; ++o) dst[2 * o] += src[o];
  } else {
    for (index_t o = 0; o < n; ++o) dst[o * stride] += src[o];
  }
}

// One kernel tap's values for output rows [row_begin, row_end) of one plane, written from dst on: zeros where
// the tap reads padding. Output columns [lo, hi) read inside the input.
template <typename T>
void im2col_tap_rows(const T* plane, T* dst, const ConvGeometry& g, index_t row_offset, index_t col_offset,
                     index_t lo, index_t hi, index_t row_begin, index_t row_end) {
  const index_t Wo = g.out_w;
  for (index_t oh = row_begin; oh < row_end; ++oh, dst += Wo) {
    const index_t ih = oh * g.stride_h + row_offset;
    if (ih < 0 || ih >= g.height) {
      std::fill(dst, dst + Wo, T(0));
      continue;
    }
    const T* src = plane + ih * g.width + col_offset;
    std::fill(dst, dst + lo, T(0));
    if (g.stride_w == 1) {
      std::memcpy(dst + lo, src + lo, sizeof(T) * (hi - lo));
    } else {
      copy_strided(src + lo * g.stride_w, dst + lo, hi - lo, g.stride_w);
    }
    std::fill(dst + hi, dst + Wo, T(0));
  }
}

// The adjoint of im2col_tap_rows: adds one tap's values for output rows [row_begin, row_end) (from src on)
// into the input plane.
template <typename T>
void col2im_tap_rows(const T* src, T* plane, const ConvGeometry& g, index_t row_offset, index_t col_offset,
                     index_t lo, index_t hi, index_t row_begin, index_t row_end) {
  for (index_t oh = row_begin; oh < row_end; ++oh, src += g.out_w) {
    const index_t ih = oh * g.stride_h + row_offset;
    if (ih < 0 || ih >= g.height) continue;
    T* dst = plane + ih * g.width + col_offset;
    if (g.stride_w == 1) {
      for (index_t ow = lo; ow < hi; ++ow) dst[ow] += src[ow];
    } else {
      add_strided(src + lo, dst + lo * g.stride_w, hi - lo, g.stride_w);
    }
  }
}

// A strided tap's row gathers every stride_w-th input value, one element at a time, with its padding filled
// around it: on small planes (16 columns) those per-row loops cost more than the GEMM that reads them. Where
// several taps read each row (kw > 1), each input row is instead split once into its stride_w phases,
// zero-padded (phase q, column t = the padded row's column t·stride_w + q), and every tap's row is then one
// contiguous copy out of a phase: tap j of output column ow reads padded column ow·sw + j·dw, phase
// (j·dw) mod sw at t = ow + ⌊j·dw / sw⌋. The phases of one row live in a stack buffer of kPhaseRowMax values.
// Measured on ResNet-8's 16 → 32 stride-2 3×3 convolution (32 × 32 input, batch 32, 2 threads, Zen 4): weight
// gradient 845 → 725 µs (im2col was 41% of it). col2im through phases was slower (the 32 → 64 one's dx
// 0.72–0.87 → 1.17 ms: two splits and merges per row of 8 outputs), so col2im keeps its scatter.
constexpr index_t kPhaseRowMax = 2048;

inline index_t phase_span(const ConvGeometry& g) {
  return g.out_w + (g.kernel_w - 1) * g.dilation_w / g.stride_w;
}

inline bool phase_rows_apply(const ConvGeometry& g) {
  return g.stride_w > 1 && g.kernel_w > 1 && g.stride_w * phase_span(g) <= kPhaseRowMax;
}

// Every tap of one channel for output rows [row_begin, row_end): tap (i, j) goes to dst + (i·kw + j)·tap_stride,
// its rows Wo apart from there (im2col_tap_rows' layout, through the phases above).
template <typename T>
void im2col_channel_phased(const T* plane, T* dst, index_t tap_stride, const ConvGeometry& g, index_t row_begin,
                           index_t row_end) {
  const index_t sw = g.stride_w, Wo = g.out_w, span = phase_span(g);
  const RowPhases rows(g.width, g.pad_w, sw, span);
  alignas(64) T phases[kPhaseRowMax];
  std::fill(phases, phases + sw * span, T(0));
  for (index_t i = 0; i < g.kernel_h; ++i) {
    const index_t row_offset = i * g.dilation_h - g.pad_h;
    T* d = dst + i * g.kernel_w * tap_stride;
    for (index_t oh = row_begin; oh < row_end; ++oh, d += Wo) {
      const index_t ih = oh * g.stride_h + row_offset;
      if (ih < 0 || ih >= g.height) {
        for (index_t j = 0; j < g.kernel_w; ++j) std::fill(d + j * tap_stride, d + j * tap_stride + Wo, T(0));
        continue;
      }
      rows.split(plane + ih * g.width, phases, span);
      for (index_t j = 0; j < g.kernel_w; ++j) {
        const index_t u = j * g.dilation_w;
        packet_copy(Wo, d + j * tap_stride, phases + u % sw * span + u / sw);
      }
    }
  }
}

}  // namespace detail

// col [C·kh·kw, N·P] from x [N, C, H, W]. The block form fills the columns of images
// [first, first + count) only, into a matrix whose row stride is `ld` (column 0 = image `first`).
template <typename T>
void im2col(const T* x, T* col, const ConvGeometry& g, index_t first, index_t count, index_t ld) {
  const index_t P = g.plane(), Wo = g.out_w;
  detail::for_each_plane(count, g.channels, g.rows() * count * P, [&](index_t m, index_t c) {
    const index_t n = first + m;
    const T* plane = x + (n * g.channels + c) * g.height * g.width;
    if (detail::phase_rows_apply(g)) {
      detail::im2col_channel_phased(plane, col + c * g.kernel_h * g.kernel_w * ld + m * P, ld, g, 0, g.out_h);
      return;
    }
    for (index_t i = 0; i < g.kernel_h; ++i) {
      const index_t row_offset = i * g.dilation_h - g.pad_h;
      for (index_t j = 0; j < g.kernel_w; ++j) {
        const index_t col_offset = j * g.dilation_w - g.pad_w;
        index_t lo, hi;
        detail::valid_range(col_offset, g.stride_w, g.width, Wo, lo, hi);
        T* dst = col + ((c * g.kernel_h + i) * g.kernel_w + j) * ld + m * P;
        if (g.stride_h == 1 && g.stride_w == 1 && Wo == g.width) {
          // 'same'-style geometry: this tap's whole block is the plane shifted by one offset; copy it in one
          // piece, then zero what fell in the padding (row ends, rows above and below).
          index_t top, bottom;
          detail::valid_range(row_offset, 1, g.height, g.out_h, top, bottom);
          const index_t start = (top + row_offset) * g.width + col_offset, span = (bottom - top) * Wo;
          const index_t k0 = std::min(span, std::max<index_t>(0, -start));
          const index_t k1 = std::max(k0, std::min(span, g.height * g.width - start));
          std::fill(dst, dst + top * Wo + k0, T(0));
          std::memcpy(dst + top * Wo + k0, plane + start + k0, sizeof(T) * (k1 - k0));
          std::fill(dst + top * Wo + k1, dst + P, T(0));
          for (index_t oh = top; oh < bottom; ++oh) {
            for (index_t ow = 0; ow < lo; ++ow) dst[oh * Wo + ow] = T(0);
            for (index_t ow = hi; ow < Wo; ++ow) dst[oh * Wo + ow] = T(0);
          }
          continue;
        }
        detail::im2col_tap_rows(plane, dst, g, row_offset, col_offset, lo, hi, 0, g.out_h);
      }
    }
  });
}

// The columns of output rows [row_begin, row_end) of image n only (a band of one image, for work on images
// too large for the cache): col [C·kh·kw, (row_end − row_begin)·Wo] with row stride ld.
template <typename T>
void im2col_rows(const T* x, T* col, const ConvGeometry& g, index_t n, index_t row_begin, index_t row_end,
                 index_t ld) {
  for (index_t c = 0; c < g.channels; ++c) {
    const T* plane = x + (n * g.channels + c) * g.height * g.width;
    if (detail::phase_rows_apply(g)) {
      detail::im2col_channel_phased(plane, col + c * g.kernel_h * g.kernel_w * ld, ld, g, row_begin, row_end);
      continue;
    }
    for (index_t i = 0; i < g.kernel_h; ++i)
      for (index_t j = 0; j < g.kernel_w; ++j) {
        const index_t row_offset = i * g.dilation_h - g.pad_h, col_offset = j * g.dilation_w - g.pad_w;
        index_t lo, hi;
        detail::valid_range(col_offset, g.stride_w, g.width, g.out_w, lo, hi);
        detail::im2col_tap_rows(plane, col + ((c * g.kernel_h + i) * g.kernel_w + j) * ld, g, row_offset,
                                col_offset, lo, hi, row_begin, row_end);
      }
  }
}

// The whole batch: col [C·kh·kw, N·P].
template <typename T>
void im2col_batch(const T* x, T* col, const ConvGeometry& g) {
  im2col(x, col, g, 0, g.batch, g.columns());
}

// x [N, C, H, W] = the sum, over the taps that read each input value, of col [C·kh·kw, N·P] (the adjoint of
// im2col). Overwrites x (in the block form: images [first, first + count) from a block with row stride ld).
// Each (n, c) plane is summed in a fixed tap order: the same bits on any thread count.
template <typename T>
void col2im(const T* col, T* x, const ConvGeometry& g, index_t first, index_t count, index_t ld) {
  const index_t P = g.plane(), Wo = g.out_w;
  detail::for_each_plane(count, g.channels, g.rows() * count * P, [&](index_t m, index_t c) {
    const index_t n = first + m;
    T* plane = x + (n * g.channels + c) * g.height * g.width;
    std::fill(plane, plane + g.height * g.width, T(0));
    for (index_t i = 0; i < g.kernel_h; ++i) {
      const index_t row_offset = i * g.dilation_h - g.pad_h;
      for (index_t j = 0; j < g.kernel_w; ++j) {
        const index_t col_offset = j * g.dilation_w - g.pad_w;
        index_t lo, hi;
        detail::valid_range(col_offset, g.stride_w, g.width, Wo, lo, hi);
        detail::col2im_tap_rows(col + ((c * g.kernel_h + i) * g.kernel_w + j) * ld + m * P, plane, g, row_offset,
                                col_offset, lo, hi, 0, g.out_h);
      }
    }
  });
}

// Adds the columns of output rows [row_begin, row_end) of image n (col [C·kh·kw, (row_end − row_begin)·Wo],
// row stride ld) into x: one band of col2im, for images too large for the cache. Unlike col2im it does not
// clear x first: the caller zeroes the image, then adds its bands in order.
template <typename T>
void col2im_rows_add(const T* col, T* x, const ConvGeometry& g, index_t n, index_t row_begin, index_t row_end,
                     index_t ld) {
  for (index_t c = 0; c < g.channels; ++c) {
    T* plane = x + (n * g.channels + c) * g.height * g.width;
    for (index_t i = 0; i < g.kernel_h; ++i)
      for (index_t j = 0; j < g.kernel_w; ++j) {
        const index_t row_offset = i * g.dilation_h - g.pad_h, col_offset = j * g.dilation_w - g.pad_w;
        index_t lo, hi;
        detail::valid_range(col_offset, g.stride_w, g.width, g.out_w, lo, hi);
        detail::col2im_tap_rows(col + ((c * g.kernel_h + i) * g.kernel_w + j) * ld, plane, g, row_offset,
                                col_offset, lo, hi, row_begin, row_end);
      }
  }
}

template <typename T>
void col2im_batch(const T* col, T* x, const ConvGeometry& g) {
  col2im(col, x, g, 0, g.batch, g.columns());
}

// Entry points, compiled once per CPU level (kernels/entry.hpp).
#define FASTNN_IM2COL_ENTRIES(X) X(im2col_batch) X(col2im_batch)
FASTNN_DECLARE_ENTRIES(FASTNN_IM2COL_ENTRIES)

}  // namespace fastnn
