// Convolution (SPEC K2) as GEMMs over the whole batch, NCHW; groups; 1-D is H = 1.
//   forward:  col = im2col(x) [G·K, N·P];  Yg [Og, N·P] = Wg [Og, K] · colg;  y[n, o, :] = Y[o, n·P:(n+1)·P] + b
//   backward: dY [O, N·P] (dy regrouped);  db = Σ dY rows;  dWg = dYg · colgᵀ;  dcolg = Wgᵀ · dYg;  dx = col2im(dcol)
// with K = C/G·kh·kw, P = Ho·Wo. The N·P columns are streamed through the cache in blocks of whole images
// (a fixed number, chosen from the shape so a block's column matrix fits in L2): im2col, GEMM and regrouping
// of one block run back to back on one thread, blocks in parallel. A 1×1, stride-1, unpadded convolution skips
// im2col: image n's column matrix is x[n] itself, so each image is one GEMM straight into y.
//
// Reproducibility (kernels/parallel.hpp): blocks depend on the shape only, never on the thread count; the
// weight gradient, a reduction over N·P, is split into fixed chunks of columns whose partial products
// are added in chunk order; every other sum runs in a fixed order. So the bits never depend on the thread
// count or on where the arrays sit in memory.
#pragma once
#include <Eigen/Core>
#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "kernels/dense.hpp"
#include "kernels/im2col.hpp"
#include "kernels/parallel.hpp"

namespace fastnn {

namespace detail {

// Σ p[0..n) in 16 fixed lanes (lane = index mod 16), then the lanes in order: vectorised, and the same bits
// wherever p sits in memory (unlike Eigen's sum(), whose order follows the alignment).
template <typename T>
T fixed_order_sum(const T* p, index_t n) {
  constexpr index_t L = 16;
  T acc[L] = {};
  index_t i = 0;
  for (; i + L <= n; i += L)
    for (index_t j = 0; j < L; ++j) acc[j] += p[i + j];
  for (index_t j = 0; i + j < n; ++j) acc[j] += p[i + j];
  T s = 0;
  for (index_t j = 0; j < L; ++j) s += acc[j];
  return s;
}

template <typename T>
std::unique_ptr<T[]> uninitialized(index_t n) {
  return std::unique_ptr<T[]>(new T[std::max<index_t>(n, 1)]);
}

// Per-thread work buffers kept from call to call (grow-only): fresh multi-megabyte allocations cost a page
// fault per 4 KB on every call, more than the convolution itself.
template <typename T>
T* scratch(int slot, index_t n) {
  thread_local std::vector<T> buffers[3];
  std::vector<T>& b = buffers[slot];
  if (static_cast<index_t>(b.size()) < n) {
    b = std::vector<T>();
    b.resize(n);
  }
  return b.data();
}

// Images per block: about 128 KB of column matrix (at least one image).
constexpr index_t kBlockBytes = index_t(128) << 10;
constexpr index_t kMinBandColumns = 256;
inline index_t images_per_block(index_t rows, index_t plane, index_t elem_size) {
  return std::max<index_t>(1, kBlockBytes / std::max<index_t>(1, rows * plane * elem_size));
}

// Output rows per band of one image's column matrix: about kBlockBytes of it, but at least kMinBandColumns
// columns (the depth of the weight-gradient GEMM: shallower, the GEMM loses more than the cache gains).
inline index_t band_rows(index_t rows, index_t out_w, index_t elem_size) {
  const index_t by_bytes = kBlockBytes / std::max<index_t>(1, rows * out_w * elem_size);
  const index_t by_depth = (kMinBandColumns + out_w - 1) / out_w;
  return std::max<index_t>(1, std::max(by_bytes, by_depth));
}

// Direct convolution of one image for stride 1, dilation 1, one group (inference and first layers: no column
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
  auto init = [&](int q) { return pk::pset1<Pk>(bias ? bias[o0 + q] : T(0)); };
  auto strip = [&](index_t oh, index_t first, index_t second, index_t n_out) {
    // Named accumulators (an array would live on the stack across the tap loops).
    Pk a0 = init(0), a1 = a0, b0, b1, c0, c1, d0, d1;
    if constexpr (kBlockO == 4) b0 = b1 = init(1), c0 = c1 = init(2), d0 = d1 = init(3);
    const T* w0 = weight + o0 * K;
    for (index_t c = 0; c < C; ++c)
      for (index_t i = 0; i < kh; ++i) {
        const T* row = padded + c * plane_p + (oh + i) * Wp;
        const index_t tap0 = (c * kh + i) * kw;
        for (index_t j = 0; j < kw; ++j) {
          const Pk x0 = pk::ploadu<Pk>(row + first + j), x1 = pk::ploadu<Pk>(row + second + j);
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
  const index_t Wp = Wo_padded + g.kernel_w - 1, Hp = g.out_h + g.kernel_h - 1, plane_p = Hp * Wp;
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

template <typename T>
bool direct_applies(const ConvGeometry& g, index_t groups) {
  constexpr index_t L = Eigen::internal::packet_traits<T>::size;
  const index_t K = g.channels * g.kernel_h * g.kernel_w;
  const index_t padded_width = (g.out_w + 2 * L - 1) / (2 * L) * (2 * L) + g.kernel_w - 1;
  const index_t row_bytes = g.channels * g.kernel_h * padded_width * index_t(sizeof(T));
  return groups == 1 && g.stride_h == 1 && g.stride_w == 1 && g.dilation_h == 1 && g.dilation_w == 1 &&
         row_bytes <= kDirectMaxRowBytes && (g.out_w >= 2 * L || K <= kDirectMaxDepth);
}

// Columns per chunk of the pointwise weight-gradient reduction, and the number of chunks the blocks of the
// general one are dealt to: fixed, so partial sums never depend on threads.
constexpr index_t kDepthChunk = 4096;
constexpr index_t kWeightGradChunks = 16;

// dst[i] (+)= Σ_c partial[c][i], chunks added in order.
template <typename T>
void reduce_partials(const T* partial, index_t chunks, index_t size, T* dst, bool accumulate) {
  for (index_t i = 0; i < size; ++i) {
    T s = partial[i];
    for (index_t c = 1; c < chunks; ++c) s += partial[c * size + i];
    dst[i] = accumulate ? dst[i] + s : s;
  }
}

}  // namespace detail

// Shapes: x [N, C, H, W], weight [O, C/G, kh, kw], bias [O] or null, y [N, O, Ho, Wo]. `col` is a
// [G·K, N·P] buffer that receives im2col(x) (kept by the caller for the backward pass), or null.
template <typename T>
void conv2d_forward(const T* x, const T* weight, const T* bias, T* y, const ConvGeometry& g, index_t out_channels,
                    index_t groups, T* col) {
  const index_t P = g.plane(), NP = g.columns(), O = out_channels, Og = O / groups;
  const index_t Cg = g.channels / groups, K = Cg * g.kernel_h * g.kernel_w;
  if (P == 0 || g.batch == 0) return;
  if (g.is_pointwise()) {
    parallel_for(g.batch, O * K * NP >= kParallelMinMacs, [&](index_t n) {
      for (index_t gi = 0; gi < groups; ++gi) {
        ConstMatrixMap<T> W(weight + gi * Og * K, Og, K);
        ConstMatrixMap<T> X(x + (n * g.channels + gi * Cg) * P, Cg, P);
        MatrixMap<T> Y(y + (n * O + gi * Og) * P, Og, P);
        if (bias) {
          for (index_t o = 0; o < Og; ++o) Y.row(o).setConstant(bias[gi * Og + o]);
          Y.noalias() += W * X;
        } else {
          Y.noalias() = W * X;
        }
      }
    });
    return;
  }
  if (!col && detail::direct_applies<T>(g, groups)) {
    parallel_for(g.batch, O * K * NP >= kParallelMinMacs, [&](index_t n) {
      detail::direct_conv_image(x + n * g.channels * g.height * g.width, weight, bias, y + n * O * P, g, O);
    });
    return;
  }
  const index_t per_block = detail::images_per_block(groups * K, P, sizeof(T));
  const index_t blocks = (g.batch + per_block - 1) / per_block;
  auto run_block = [&](index_t blk) {
    const index_t first = blk * per_block, count = std::min(per_block, g.batch - first), cols = count * P;
    // The caller's col keeps the whole batch for backward; otherwise the block lives in scratch.
    T* c = col ? col + first * P : detail::scratch<T>(0, groups * K * cols);
    const index_t ld = col ? NP : cols;
    im2col(x, c, g, first, count, ld);
    // One image's [O, P] product is y[n] itself: no regrouping, the GEMM accumulates onto the bias.
    const bool in_place = count == 1;
    T* out = in_place ? y + first * O * P : detail::scratch<T>(1, O * cols);
    for (index_t gi = 0; gi < groups; ++gi) {
      // Split over output channels (Eigen's rhs panels: the bits never depend on the split) when this is the
      // only block; inside the parallel loop below it runs whole.
      for_each_slice(Og, kRhsPanel, Og * K * cols, kParallelMinMacs, [&](index_t o0, index_t rows) {
        ConstMatrixMap<T> W(weight + (gi * Og + o0) * K, rows, K);
        ConstStridedMatrixMap<T> C(c + gi * K * ld, K, cols, Eigen::OuterStride<>(ld));
        MatrixMap<T> Y(out + (gi * Og + o0) * cols, rows, cols);
        if (in_place && bias) {
          for (index_t o = 0; o < rows; ++o) Y.row(o).setConstant(bias[gi * Og + o0 + o]);
          Y.noalias() += W * C;
        } else {
          Y.noalias() = W * C;
        }
      });
    }
    if (in_place) return;
    // [O, block columns] -> y[n, o, :], adding the bias on the way.
    for (index_t m = 0; m < count; ++m) {
      for (index_t o = 0; o < O; ++o) {
        const T* src = out + o * cols + m * P;
        T* dst = y + ((first + m) * O + o) * P;
        if (bias) {
          const T b = bias[o];
          for (index_t p = 0; p < P; ++p) dst[p] = src[p] + b;
        } else {
          std::memcpy(dst, src, sizeof(T) * P);
        }
      }
    }
  };
  parallel_for(blocks, O * K * NP >= kParallelMinMacs, run_block);
}

// Gradients of conv2d_forward. grad_weight / grad_bias / grad_x may each be null (frozen, or the first layer);
// parameter gradients are added (accumulate) or overwritten. `col` holds im2col(x) from the forward pass, or
// is null (recomputed here when needed).
template <typename T>
void conv2d_backward(const T* grad_y, const T* x, const T* weight, T* grad_weight, T* grad_bias, T* grad_x,
                     const ConvGeometry& g, index_t out_channels, index_t groups, const T* col,
                     bool accumulate_weight, bool accumulate_bias) {
  const index_t P = g.plane(), NP = g.columns(), O = out_channels, Og = O / groups;
  const index_t Cg = g.channels / groups, K = Cg * g.kernel_h * g.kernel_w;
  const index_t HW = g.height * g.width;
  const bool pointwise = g.is_pointwise();

  if (grad_bias) {
    for (index_t o = 0; o < O; ++o) {
      T s = 0;
      for (index_t n = 0; n < g.batch; ++n) s += detail::fixed_order_sum(grad_y + (n * O + o) * P, P);
      grad_bias[o] = accumulate_bias ? grad_bias[o] + s : s;
    }
  }
  if (P == 0 || g.batch == 0) {
    if (grad_weight && !accumulate_weight) std::fill(grad_weight, grad_weight + O * K, T(0));
    if (grad_x) std::fill(grad_x, grad_x + g.batch * g.channels * HW, T(0));
    return;
  }

  if (pointwise) {
    if (grad_weight) {
      // Chunks of whole images; within a chunk the per-image products are added in image order.
      const index_t per_chunk = std::max<index_t>(1, detail::kDepthChunk / P);
      const index_t chunks = (g.batch + per_chunk - 1) / per_chunk;
      auto partial = detail::uninitialized<T>(chunks * O * K);
      parallel_for(chunks, O * K * NP >= kParallelMinMacs, [&](index_t c) {
        for (index_t gi = 0; gi < groups; ++gi) {
          MatrixMap<T> DW(partial.get() + c * O * K + gi * Og * K, Og, K);
          for (index_t n = c * per_chunk; n < std::min(g.batch, (c + 1) * per_chunk); ++n) {
            ConstMatrixMap<T> DY(grad_y + (n * O + gi * Og) * P, Og, P);
            ConstMatrixMap<T> X(x + (n * g.channels + gi * Cg) * P, Cg, P);
            if (n == c * per_chunk)
              DW.noalias() = DY * X.transpose();
            else
              DW.noalias() += DY * X.transpose();
          }
        }
      });
      detail::reduce_partials(partial.get(), chunks, O * K, grad_weight, accumulate_weight);
    }
    if (grad_x) {
      parallel_for(g.batch, O * K * NP >= kParallelMinMacs, [&](index_t n) {
        for (index_t gi = 0; gi < groups; ++gi) {
          ConstMatrixMap<T> W(weight + gi * Og * K, Og, K);
          ConstMatrixMap<T> DY(grad_y + (n * O + gi * Og) * P, Og, P);
          MatrixMap<T> DX(grad_x + (n * g.channels + gi * Cg) * P, Cg, P);
          DX.noalias() = W.transpose() * DY;
        }
      });
    }
    return;
  }

  if (!grad_weight && !grad_x) return;
  // dx of a stride-1 convolution is itself a stride-1 convolution: of dy, padded by k − 1 − pad, with the
  // weights' channel axes swapped and their taps flipped. When that one is shallow enough for the direct
  // kernel, it beats dcol = Wᵀ·dY (a GEMM only O deep) followed by col2im.
  ConvGeometry transposed = g;
  transposed.channels = O, transposed.height = g.out_h, transposed.width = g.out_w;
  transposed.pad_h = g.kernel_h - 1 - g.pad_h, transposed.pad_w = g.kernel_w - 1 - g.pad_w;
  transposed.out_h = g.height, transposed.out_w = g.width;
  if (grad_x && transposed.pad_h >= 0 && transposed.pad_w >= 0 && detail::direct_applies<T>(transposed, groups)) {
    const index_t kk = g.kernel_h * g.kernel_w, C = g.channels;
    auto flipped = detail::uninitialized<T>(C * O * kk);  // [C, O, kh, kw]
    for (index_t c = 0; c < C; ++c)
      for (index_t o = 0; o < O; ++o)
        for (index_t t = 0; t < kk; ++t) flipped[(c * O + o) * kk + t] = weight[(o * C + c) * kk + kk - 1 - t];
    conv2d_forward(grad_y, flipped.get(), static_cast<const T*>(nullptr), grad_x, transposed, C, index_t(1),
                   static_cast<T*>(nullptr));
    grad_x = nullptr;  // done
    if (!grad_weight) return;
  }
  // Blocks of whole images (as in the forward), each run start to finish in cache: dY regrouped to [O, cols],
  // the block's column matrix (the caller's, or im2col again: a copy is cheaper than keeping a whole-batch
  // column matrix in memory), its share of dW, dcol = Wᵀ·dY and col2im. Blocks are dealt to a fixed number of
  // chunks (fixed by the shape, not the thread count); each chunk sums its blocks' dW in order into its own
  // partial, and the partials are added in chunk order.
  const index_t per_block = detail::images_per_block(groups * K, P, sizeof(T));
  const index_t blocks = (g.batch + per_block - 1) / per_block;
  const index_t chunks = std::min(blocks, detail::kWeightGradChunks);
  // Chunk c holds blocks [c·blocks/chunks, (c + 1)·blocks/chunks): sizes differ by one at most, so the
  // threads' shares of chunks carry even work.
  auto chunk_start = [&](index_t c) { return c * blocks / chunks; };
  std::unique_ptr<T[]> partial = grad_weight ? detail::uninitialized<T>(chunks * O * K) : nullptr;
  parallel_for(chunks, O * K * NP >= kParallelMinMacs, [&](index_t chunk) {
    for (index_t blk = chunk_start(chunk); blk < chunk_start(chunk + 1); ++blk) {
      const index_t first = blk * per_block, count = std::min(per_block, g.batch - first), cols = count * P;
      // dY of the block as [O, cols]: one image's is grad_y[n] itself; several are regrouped.
      const T* dy_block = grad_y + first * O * P;
      if (count > 1) {
        T* regrouped = detail::scratch<T>(1, O * cols);
        for (index_t m = 0; m < count; ++m)
          for (index_t o = 0; o < O; ++o)
            std::memcpy(regrouped + o * cols + m * P, grad_y + ((first + m) * O + o) * P, sizeof(T) * P);
        dy_block = regrouped;
      }
      if (grad_weight) {
        // dW (+)= dY[:, band] · col[:, band]ᵀ over bands of output rows: the whole block, or, for an image whose
        // column matrix outgrows the cache budget, enough rows to fill it (im2col of just those rows).
        const index_t band_rows = col || count > 1 ? g.out_h : detail::band_rows(groups * K, g.out_w, sizeof(T));
        for (index_t row = 0; row < g.out_h; row += band_rows) {
          const index_t rows = std::min(band_rows, g.out_h - row), band = rows == g.out_h ? cols : rows * g.out_w;
          const T* c = col ? col + first * P : nullptr;
          const index_t ld = col ? NP : band;
          if (!col) {
            T* own = detail::scratch<T>(0, groups * K * band);
            if (band == cols)
              im2col(x, own, g, first, count, cols);
            else
              im2col_rows(x, own, g, first, row, row + rows, band);
            c = own;
          }
          for (index_t gi = 0; gi < groups; ++gi) {
            ConstStridedMatrixMap<T> DY(dy_block + gi * Og * cols + row * g.out_w, Og, band,
                                        Eigen::OuterStride<>(cols));
            ConstStridedMatrixMap<T> C(c + gi * K * ld, K, band, Eigen::OuterStride<>(ld));
            MatrixMap<T> DW(partial.get() + chunk * O * K + gi * Og * K, Og, K);
            if (blk == chunk_start(chunk) && row == 0)
              DW.noalias() = DY * C.transpose();
            else
              DW.noalias() += DY * C.transpose();
          }
        }
      }
      if (grad_x) {
        // dcol = Wᵀ·dY and col2im, over the same bands (one image's dx is cleared, then its bands added).
        const index_t band_rows = count > 1 ? g.out_h : detail::band_rows(groups * K, g.out_w, sizeof(T));
        if (band_rows < g.out_h) std::fill(grad_x + first * g.channels * HW, grad_x + (first + 1) * g.channels * HW, T(0));
        for (index_t row = 0; row < g.out_h; row += band_rows) {
          const index_t rows = std::min(band_rows, g.out_h - row), band = rows == g.out_h ? cols : rows * g.out_w;
          T* dcol = detail::scratch<T>(2, groups * K * band);
          for (index_t gi = 0; gi < groups; ++gi) {
            ConstMatrixMap<T> W(weight + gi * Og * K, Og, K);
            ConstStridedMatrixMap<T> DY(dy_block + gi * Og * cols + row * g.out_w, Og, band,
                                        Eigen::OuterStride<>(cols));
            MatrixMap<T> DC(dcol + gi * K * band, K, band);
            DC.noalias() = W.transpose() * DY;
          }
          if (band == cols)
            col2im(dcol, grad_x, g, first, count, cols);
          else
            col2im_rows_add(dcol, grad_x, g, first, row, row + rows, band);
        }
      }
    }
  });
  if (grad_weight) detail::reduce_partials(partial.get(), chunks, O * K, grad_weight, accumulate_weight);
}

}  // namespace fastnn
