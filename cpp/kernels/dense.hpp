// Dense (fully connected) layer as GEMMs, Caffe's split: y = x·Wᵀ + b, dx = dy·W, dW += dyᵀ·x, db += Σ dy.
// Row-major raw pointers; x [N, I], W [O, I], b [O], y/dy [N, O]. Parameter gradients are added to the
// buffers (accumulate=true, PyTorch's semantics) or overwrite them (after a lazy zero_grad).
#pragma once
#include <omp.h>

#include <Eigen/Core>
#include <algorithm>

#include "kernels/parallel.hpp"

namespace fastnn {

template <typename T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using MatrixMap = Eigen::Map<RowMatrix<T>>;
template <typename T>
using ConstMatrixMap = Eigen::Map<const RowMatrix<T>>;
template <typename T>
using VectorMap = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, 1>>;
template <typename T>
using ConstVectorMap = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>>;
template <typename T>
using ConstRowVectorMap = Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>;

// At batch sizes this small the product is a GEMV, bound by reading W, and Eigen runs it on one thread.
// Splitting W's rows over the threads halves the traffic per core, and each core's slice stays in its own
// L2 cache from one call to the next (inference latency at batch 1).
constexpr index_t kRowSplitMaxBatch = 4;

template <typename T>
void dense_forward_split_rows(const T* x, const T* weight, const T* bias, T* y, index_t batch,
                              index_t in_features, index_t out_features) {
#pragma omp parallel
  {
    const index_t threads = omp_get_num_threads(), t = omp_get_thread_num();
    const index_t chunk = ((out_features + threads - 1) / threads + 7) / 8 * 8;  // whole SIMD vectors
    const index_t begin = std::min(out_features, t * chunk);
    const index_t rows = std::min(out_features, begin + chunk) - begin;
    if (rows > 0) {
      ConstMatrixMap<T> X(x, batch, in_features);
      ConstMatrixMap<T> W(weight + begin * in_features, rows, in_features);
      Eigen::Map<RowMatrix<T>, 0, Eigen::OuterStride<>> Y(y + begin, batch, rows,
                                                           Eigen::OuterStride<>(out_features));
      if (bias) {
        Y.rowwise() = ConstRowVectorMap<T>(bias + begin, rows);
        Y.noalias() += X * W.transpose();
      } else {
        Y.noalias() = X * W.transpose();
      }
    }
  }
}

template <typename T>
void dense_forward(const T* x, const T* weight, const T* bias, T* y, index_t batch, index_t in_features,
                   index_t out_features) {
  if (batch <= kRowSplitMaxBatch && in_features * out_features >= 2 * kParallelMinElements &&
      omp_get_max_threads() > 1) {
    dense_forward_split_rows(x, weight, bias, y, batch, in_features, out_features);
    return;
  }
  ConstMatrixMap<T> X(x, batch, in_features);
  ConstMatrixMap<T> W(weight, out_features, in_features);
  MatrixMap<T> Y(y, batch, out_features);
  if (bias) {
    // Start from the broadcast bias so the GEMM accumulates onto it: one pass over y instead of two.
    Y.rowwise() = ConstRowVectorMap<T>(bias, out_features);
    Y.noalias() += X * W.transpose();
  } else {
    Y.noalias() = X * W.transpose();
  }
}

template <typename T>
void dense_backward_input(const T* grad_y, const T* weight, T* grad_x, index_t batch, index_t in_features,
                          index_t out_features) {
  ConstMatrixMap<T> dY(grad_y, batch, out_features);
  ConstMatrixMap<T> W(weight, out_features, in_features);
  MatrixMap<T> dX(grad_x, batch, in_features);
  dX.noalias() = dY * W;
}

template <typename T>
void dense_backward_weight(const T* grad_y, const T* x, T* grad_weight, index_t batch, index_t in_features,
                           index_t out_features, bool accumulate) {
  ConstMatrixMap<T> dY(grad_y, batch, out_features);
  ConstMatrixMap<T> X(x, batch, in_features);
  MatrixMap<T> dW(grad_weight, out_features, in_features);
  if (accumulate)
    dW.noalias() += dY.transpose() * X;
  else
    dW.noalias() = dY.transpose() * X;
}

// Row by row, each output summed in batch order: vectorised across features, and (unlike Eigen's colwise
// reduction, whose order follows the buffer's alignment) the same bits wherever the arrays sit in memory.
template <typename T>
void dense_backward_bias(const T* grad_y, T* grad_bias, index_t batch, index_t out_features, bool accumulate) {
  if (!accumulate) std::fill(grad_bias, grad_bias + out_features, T(0));
  for (index_t n = 0; n < batch; ++n) {
    const T* row = grad_y + n * out_features;
    for (index_t o = 0; o < out_features; ++o) grad_bias[o] += row[o];
  }
}

}  // namespace fastnn
