// Convolution, NCHW; groups; 1-D is H = 1. K = C/G·kh·kw, P = Ho·Wo.
//   forward:  stride-1 convolutions whose rows fit L1 run the direct kernel (kernels/conv_direct.hpp); the
//             others im2col [G·K, cols] and Yg [Og, cols] = Wg [Og, K] · colg, on blocks of whole images sized
//             so a block's column matrix fits in L2 (blocks in parallel; one block alone splits its GEMM
//             over output channels). A 1×1, stride-1, unpadded convolution reads x[n] as its column matrix.
//   backward: db = Σ dy;  per block (or band of output rows of one large image): dWg (+)= dYg · colgᵀ with
//             im2col recomputed in cache (cheaper than keeping a whole-batch column matrix), and
//             dx = col2im(Wgᵀ · dYg) — or, for stride 1, dx as a direct convolution of dy, and for stride 2
//             as four, one per phase of dx (kernels/conv_dx_phases.hpp).
//
// Reproducibility (kernels/parallel.hpp): blocks and bands depend on the shape only, never on the thread
// count; the weight gradient, a reduction over N·P, is summed into a fixed number of chunks of blocks whose
// partials are added in chunk order; every other sum runs in a fixed order. So the bits never depend on the
// thread count or on where the arrays sit in memory.
#pragma once
#include <Eigen/Core>
#include <algorithm>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

#include "kernels/entry.hpp"
#include "kernels/conv_direct.hpp"
#include "kernels/conv_dx_phases.hpp"
#include "kernels/conv_weight_grad.hpp"
#include "kernels/dense.hpp"
#include "kernels/im2col.hpp"
#include "kernels/parallel.hpp"
#include "kernels/reductions.hpp"
#include "kernels/scratch.hpp"

namespace fastnn {

namespace detail {

// Images per block: about 128 KB of column matrix, but at least kMinBandColumns columns (small planes: the
// GEMMs need some depth) and at least one image.
constexpr index_t kBlockBytes = index_t(128) << 10;
constexpr index_t kMinBandColumns = 256;
inline index_t images_per_block(index_t rows, index_t plane, index_t elem_size) {
  const index_t by_bytes = kBlockBytes / std::max<index_t>(1, rows * plane * elem_size);
  const index_t by_depth = (kMinBandColumns + plane - 1) / std::max<index_t>(1, plane);
  return std::max<index_t>(1, std::max(by_bytes, by_depth));
}

// Output rows per band of one image's column matrix: about kBlockBytes of it, but at least kMinBandColumns
// columns (the depth of the weight-gradient GEMM: shallower, the GEMM loses more than the cache gains).
inline index_t band_rows(index_t rows, index_t out_w, index_t elem_size) {
  const index_t by_bytes = kBlockBytes / std::max<index_t>(1, rows * out_w * elem_size);
  const index_t by_depth = (kMinBandColumns + out_w - 1) / out_w;
  return std::max<index_t>(1, std::max(by_bytes, by_depth));
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
    // One (image, group) pair per work item: a group is a convolution over Cg channels into Og.
    ConvGeometry group = g;
    group.channels = Cg;
    parallel_for(g.batch * groups, O * K * NP >= kParallelMinMacs, [&](index_t item) {
      const index_t n = item / groups, gi = item % groups;
      detail::direct_conv_image(x + (n * g.channels + gi * Cg) * g.height * g.width, weight + gi * Og * K,
                                bias ? bias + gi * Og : nullptr, y + (n * O + gi * Og) * P, group, Og);
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
  // The weight gradient straight from x and dy (kernels/conv_weight_grad.hpp) where output rows are whole
  // packets; the blocked im2col path below then runs for dx only, if at all. float32 only: a float64 copy of
  // the kernel in every CPU level's library would not fit SPEC P10's 2 MB wheel (float64 takes im2col).
  if constexpr (detail::kDirectKernels<T>) {
    if (grad_weight && !col && detail::weight_grad_direct_applies<T>(g, groups)) {
      detail::conv_weight_grad_direct(x, grad_y, grad_weight, g, O, accumulate_weight);
      grad_weight = nullptr;
      if (!grad_x) return;
    }
  }
  // dx of a stride-2 convolution: four stride-1 direct convolutions of dy, one per phase of dx (float32 only,
  // as the direct kernels it runs).
  if constexpr (detail::kDirectKernels<T>) {
    if (grad_x && detail::dx_phases_apply<T>(g, O, groups)) {
      detail::conv_dx_phases(grad_y, weight, grad_x, g, O);
      grad_x = nullptr;  // done
      if (!grad_weight) return;
    }
  }
  // dx of a stride-1 convolution is itself a stride-1 convolution: of dy, padded by d·(k − 1) − pad, with the
  // weights' channel axes swapped and their taps flipped. When that one is shallow enough for the direct
  // kernel, it beats dcol = Wᵀ·dY (a GEMM only O deep) followed by col2im.
  ConvGeometry transposed = g;
  transposed.channels = O, transposed.height = g.out_h, transposed.width = g.out_w;
  transposed.pad_h = g.dilation_h * (g.kernel_h - 1) - g.pad_h;
  transposed.pad_w = g.dilation_w * (g.kernel_w - 1) - g.pad_w;
  transposed.out_h = g.height, transposed.out_w = g.width;
  if (grad_x && g.stride_h == 1 && g.stride_w == 1 && transposed.pad_h >= 0 && transposed.pad_w >= 0 &&
      detail::direct_applies<T>(transposed, groups)) {
    // Group gi's flipped weights are [Cg, Og, kh, kw]: output channel gi·Cg + c of the transposed convolution.
    const index_t kk = g.kernel_h * g.kernel_w, C = g.channels;
    auto flipped = detail::uninitialized<T>(C * Og * kk);
    for (index_t gi = 0; gi < groups; ++gi)
      for (index_t c = 0; c < Cg; ++c)
        for (index_t o = 0; o < Og; ++o)
          for (index_t t = 0; t < kk; ++t)
            flipped[((gi * Cg + c) * Og + o) * kk + t] = weight[((gi * Og + o) * Cg + c) * kk + kk - 1 - t];
    conv2d_forward(grad_y, flipped.get(), static_cast<const T*>(nullptr), grad_x, transposed, C, groups,
                   static_cast<T*>(nullptr));
    grad_x = nullptr;  // done
    if (!grad_weight) return;
  }
  // Blocks of whole images (as in the forward), each run start to finish in cache: dY as [O, cols],
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
      // Bands of output rows: the whole block, or, for an image whose column matrix outgrows the cache
      // budget, enough rows to fill it.
      const index_t image_band_rows = count > 1 ? g.out_h : detail::band_rows(groups * K, g.out_w, sizeof(T));
      if (grad_weight) {
        // dW (+)= dY[:, band] · col[:, band]ᵀ per band (im2col of just those rows; the caller's col is whole).
        const index_t band_rows = col ? g.out_h : image_band_rows;
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
        const index_t band_rows = image_band_rows;
        if (band_rows < g.out_h)
          std::fill(grad_x + first * g.channels * HW, grad_x + (first + 1) * g.channels * HW, T(0));
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

// Entry points, compiled once per CPU level (kernels/entry.hpp).
#define FASTNN_CONV_ENTRIES(X) X(conv2d_forward) X(conv2d_backward)
FASTNN_DECLARE_ENTRIES(FASTNN_CONV_ENTRIES)

}  // namespace fastnn
