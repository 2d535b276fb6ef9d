// Dense (fully connected) layer as GEMMs, Caffe's split: y = x·Wᵀ + b, dx = dy·W, dW (+)= dyᵀ·x, db (+)= Σ dy.
// Row-major raw pointers; x [N, I], W [O, I], b [O], y/dy [N, O]. Parameter gradients are added to the
// buffers (accumulate=true, PyTorch's semantics) or overwrite them (after a lazy zero_grad).
// Each GEMM is split over threads by output slices (kernels/parallel.hpp); each slice is one Eigen GEMM.
#pragma once
#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <limits>
#include <utility>

#include "kernels/activations.hpp"
#include "kernels/dropout.hpp"
#include "kernels/entry.hpp"
#include "kernels/parallel.hpp"

namespace fastnn {

template <typename T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using MatrixMap = Eigen::Map<RowMatrix<T>>;
template <typename T>
using ConstMatrixMap = Eigen::Map<const RowMatrix<T>>;
// A block of columns of a row-major matrix: rows keep the full matrix's stride.
template <typename T>
using StridedMatrixMap = Eigen::Map<RowMatrix<T>, 0, Eigen::OuterStride<>>;
template <typename T>
using ConstStridedMatrixMap = Eigen::Map<const RowMatrix<T>, 0, Eigen::OuterStride<>>;
template <typename T>
using ConstRowVectorMap = Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>;

// Slice boundaries fall on Eigen's register panels, so every row and column of a slice goes through the same
// micro-kernel path (with the same summation order) as in the unsplit product: the lhs is consumed mr rows at
// a time (3 SIMD packets with FMA, 2 without: it depends on the CPU level), the rhs 4 columns at a time (we
// use 8). Other boundaries change the last bits.
template <typename T>
constexpr index_t kLhsPanel = Eigen::internal::gebp_traits<T, T>::mr;
constexpr index_t kRhsPanel = 8;

// Which way to split a GEMM over the threads, in Eigen's column-major view C [m, n] = A [m, k] · B [k, n]:
// by rows of A (kLhsPanel panels) or by columns of B (kRhsPanel panels). Each thread computes its share of the
// multiply-adds and packs its share of the split operand and all of the other; the split with the smaller
// cost on the slowest thread wins (dW of a 256 -> 128 layer: its 256 inputs split 144 : 112 on 48-row panels, its
// 128 outputs 64 : 64 on 8-column ones). Either split sums every entry as the unsplit product does, so the
// choice changes no bit. The column split wins ties and up to 10% more cost: see dense_backward_weight.
constexpr double kPackCost = 16;  // packing one element, in multiply-adds (fitted on Zen 4 to Eigen's GEMMs)
constexpr double kColumnSplitMargin = 1.1;
template <typename T>
bool split_columns(index_t m, index_t n, index_t k) {
  const int threads = runtime::max_threads();
  const index_t macs = m * n * k;
  const double by_rows = largest_share(m, kLhsPanel<T>, macs, kParallelMinMacs, threads);
  const double by_cols = largest_share(n, kRhsPanel, macs, kParallelMinMacs, threads);
  const double rows_cost = by_rows * double(macs) + kPackCost * (by_rows * double(m * k) + double(k * n));
  const double cols_cost = by_cols * double(macs) + kPackCost * (double(m * k) + by_cols * double(k * n));
  return cols_cost < rows_cost * kColumnSplitMargin;
}

// y = x·Wᵀ + b, split over output features: each thread reads only its rows of W. At batch 1 this is a
// GEMV bound by reading W, and each core's slice of W stays in its own L2 cache from one call to the next.
// Layers too narrow to split (a classifier's last layer) are split over the batch instead.
template <typename T>
void dense_forward(const T* x, const T* weight, const T* bias, T* y, index_t batch, index_t in_features,
                   index_t out_features) {
  auto slice = [&](index_t row0, index_t rows, index_t begin, index_t count) {
    ConstMatrixMap<T> X(x + row0 * in_features, rows, in_features);
    ConstMatrixMap<T> W(weight + begin * in_features, count, in_features);
    StridedMatrixMap<T> Y(y + row0 * out_features + begin, rows, count, Eigen::OuterStride<>(out_features));
    if (bias) {
      // Start from the broadcast bias so the GEMM accumulates onto it: one pass over y instead of two.
      Y.rowwise() = ConstRowVectorMap<T>(bias + begin, count);
      Y.noalias() += X * W.transpose();
    } else {
      Y.noalias() = X * W.transpose();
    }
  };
  const index_t macs = batch * in_features * out_features;
  // Eigen's view yᵀ = W·xᵀ: output features are its lhs rows, the batch its rhs columns.
  // A long batch through a small W (a Transformer's projections over batch × tokens rows) is split over the
  // batch too, evenly: each thread packing all of a small W costs little. Otherwise each thread keeps to its
  // own rows of W, which the optimizer update then writes on that same core (split over the batch at batch 64,
  // both cores read all of W and the update pays for every line the other core holds).
  // At batch 1 Eigen runs a GEMV, whose rows go in blocks of 8 (4 when a row is over 32000 bytes): slices of
  // 8 rows keep every row in its block, and 256 outputs split 128 : 128 instead of 144 : 112.
  const index_t rows = batch == 1 ? 8 : kLhsPanel<T>;
  const bool long_batch = batch >= 512 && out_features * in_features * index_t(sizeof(T)) <= (index_t(1) << 20);
  if (out_features < 2 * rows || long_batch) {
    for_each_slice(batch, kRhsPanel, macs, kParallelMinMacs,
                   [&](index_t begin, index_t count) { slice(begin, count, 0, out_features); });
    return;
  }
  for_each_slice(out_features, rows, macs, kParallelMinMacs,
                 [&](index_t begin, index_t count) { slice(0, batch, begin, count); });
}

// dx = dy·W, split over the batch, or over input features when W is large and wider than the batch is long:
// each thread then packs only its columns of W (split over the batch, every thread packs all of W).
template <typename T>
void dense_backward_input(const T* grad_y, const T* weight, T* grad_x, index_t batch, index_t in_features,
                          index_t out_features) {
  const index_t macs = batch * in_features * out_features;
  // Eigen runs row-major products transposed (dxᵀ = Wᵀ·dyᵀ): input features are its lhs rows, the batch its
  // rhs columns (split on 8-column panels: batch 64 goes 32 : 32).
  if (in_features > batch && out_features * in_features * index_t(sizeof(T)) > (index_t(512) << 10)) {
    for_each_slice(in_features, kLhsPanel<T>, macs, kParallelMinMacs, [&](index_t begin, index_t count) {
      ConstMatrixMap<T> dY(grad_y, batch, out_features);
      ConstStridedMatrixMap<T> W(weight + begin, out_features, count, Eigen::OuterStride<>(in_features));
      StridedMatrixMap<T> dX(grad_x + begin, batch, count, Eigen::OuterStride<>(in_features));
      dX.noalias() = dY * W;
    });
    return;
  }
  for_each_slice(batch, kRhsPanel, macs, kParallelMinMacs, [&](index_t begin, index_t count) {
    ConstMatrixMap<T> dY(grad_y + begin * out_features, count, out_features);
    ConstMatrixMap<T> W(weight, out_features, in_features);
    MatrixMap<T> dX(grad_x + begin * in_features, count, in_features);
    dX.noalias() = dY * W;
  });
}

// dW (+)= dyᵀ·x, split over output features (rows of dW) or input features (its columns; Eigen's lhs rows in
// its view dWᵀ = xᵀ·dy): no partial sums to combine either way. Each thread packs its share of the split
// operand and all of the other; split_columns weighs that against how evenly each split shares the work.
// Eigen's depth blocking depends on the batch only, so either split sums every entry in the same order.
// The split over output features (columns, for split_columns) is preferred (up to 10% more modelled cost): each
// thread then keeps to the rows of W that dense_forward gave it, and the optimizer update's even split of the
// parameters mostly reads the rows of dW its own core wrote. The 784-256-128-10 MLP's one-call step at batch 64
// took 0.47–0.49 ms so against 0.49–0.51 ms split over its 784 inputs (2 threads, Zen 4, best of 16–30
// interleaved runs).
template <typename T>
void dense_backward_weight(const T* grad_y, const T* x, T* grad_weight, index_t batch, index_t in_features,
                           index_t out_features, bool accumulate) {
  auto slice = [&](index_t row0, index_t rows, index_t col0, index_t cols) {
    ConstStridedMatrixMap<T> dY(grad_y + row0, batch, rows, Eigen::OuterStride<>(out_features));
    ConstStridedMatrixMap<T> X(x + col0, batch, cols, Eigen::OuterStride<>(in_features));
    StridedMatrixMap<T> dW(grad_weight + row0 * in_features + col0, rows, cols, Eigen::OuterStride<>(in_features));
    if (accumulate)
      dW.noalias() += dY.transpose() * X;
    else
      dW.noalias() = dY.transpose() * X;
  };
  const index_t macs = batch * in_features * out_features;
  if (!split_columns<T>(in_features, out_features, batch)) {  // Eigen's view dWᵀ = xᵀ·dy
    for_each_slice(in_features, kLhsPanel<T>, macs, kParallelMinMacs,
                   [&](index_t begin, index_t count) { slice(0, out_features, begin, count); });
    return;
  }
  for_each_slice(out_features, kRhsPanel, macs, kParallelMinMacs,
                 [&](index_t begin, index_t count) { slice(begin, count, 0, in_features); });
}

// Row by row, each output summed in batch order: vectorised across features, and (unlike Eigen's colwise
// reduction, whose order follows the buffer's alignment) the same bits wherever the arrays sit in memory.
// Threads take slices of the features: each output is still summed in batch order.
template <typename T>
void dense_backward_bias(const T* grad_y, T* grad_bias, index_t batch, index_t out_features, bool accumulate) {
  for_each_slice(out_features, 16, batch * out_features, kParallelMinElements, [&](index_t begin, index_t count) {
    T* sums = grad_bias + begin;
    if (!accumulate) std::fill(sums, sums + count, T(0));
    for (index_t n = 0; n < batch; ++n) {
      const T* row = grad_y + n * out_features + begin;
      for (index_t o = 0; o < count; ++o) sums[o] += row[o];
    }
  });
}

// ---- A dense layer fused with its activation and dropout: y = dropout(act(x·Wᵀ + b)) ------------------------
// The first half of a Transformer's feed-forward block. As three ops, the activation and the dropout each make
// a pass over the (batch, out) activations, forward and backward; here one pass forward turns the GEMM's output
// z = x·Wᵀ + b (kept for the backward) into y, and one pass backward turns dy into dz = act'(z) ⊙ dropout(dy)
// for the GEMMs. Each pass runs the three ops' element-wise code (kernels/activations.hpp, kernels/dropout.hpp)
// block by block, in activation_forward's blocks: the results are the same bits.
namespace detail {

inline std::pair<double, double> fused_activation_params(Activation kind, bool tanh_form) {
  // activation_forward's (a, b): ReLU with slope 0 and no cap; GELU with a = 1 for the tanh form
  return kind == Activation::relu ? std::pair<double, double>(0.0, std::numeric_limits<double>::infinity())
                                  : std::pair<double, double>(tanh_form ? 1.0 : 0.0, 0.0);
}

}  // namespace detail

// y [N, O] = dropout(act(x·Wᵀ + b)), with z = x·Wᵀ + b in `pre` [N, O] for the backward (nullptr: not kept, as
// in eval). kind: any element-wise Activation whose backward reads its input (ReLU and GELU are the ones the
// layers fuse: tanh_form selects GELU's tanh approximation, ReLU is plain). dropout_p = 0: no dropout; otherwise
// element i is kept as DropoutMask(seed, dropout_p) says.
template <typename T>
void dense_activation_forward(const T* x, const T* weight, const T* bias, T* y, T* pre, index_t batch,
                              index_t in_features, index_t out_features, Activation kind, bool tanh_form,
                              double dropout_p, std::uint64_t seed) {
  const DropoutMask mask(seed, dropout_p);
  const auto [a, b] = detail::fused_activation_params(kind, tanh_form);
  const T* z = pre ? pre : y;
  dense_forward(x, weight, bias, pre ? pre : y, batch, in_features, out_features);
  detail::for_each_block(batch * out_features, [&](index_t s, index_t m) {
    activation_forward(kind, z + s, y + s, m, T(a), T(b));
    if (mask.active()) mask.apply(y + s, static_cast<const T*>(nullptr), y + s, m, std::uint64_t(s));
  });
}

// grad_pre[i] = act'(pre[i]) · dropout(grad_y)[i] over n elements: the gradient of z = x·Wᵀ + b, which
// dense_backward_* then take (the forward's kind, seed and p).
template <typename T>
void dense_activation_backward(const T* grad_y, const T* pre, T* grad_pre, index_t n, Activation kind,
                               bool tanh_form, double dropout_p, std::uint64_t seed) {
  const DropoutMask mask(seed, dropout_p);
  const auto [a, b] = detail::fused_activation_params(kind, tanh_form);
  detail::for_each_block(n, [&](index_t s, index_t m) {
    const T* g = grad_y + s;
    if (mask.active()) {
      mask.apply(g, static_cast<const T*>(nullptr), grad_pre + s, m, std::uint64_t(s));
      g = grad_pre + s;
    }
    activation_backward(kind, pre + s, g, grad_pre + s, m, T(a), T(b));
  });
}

// Entry points, compiled once per CPU level (kernels/entry.hpp).
#define FASTNN_DENSE_ENTRIES(X) X(dense_forward) X(dense_backward_input) X(dense_backward_weight) \
  X(dense_backward_bias) X(dense_activation_forward) X(dense_activation_backward)
FASTNN_DECLARE_ENTRIES(FASTNN_DENSE_ENTRIES)

}  // namespace fastnn
