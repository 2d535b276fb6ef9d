// Batched matrix products for F.matmul / F.bmm and their gradients: C[i] (+)= op(A[i]) · op(B[i]).
// Row-major raw pointers. A[i] is (n, k), or stored (k, n) when trans_a; B[i] is (k, m), or stored (m, k) when
// trans_b; C[i] is (n, m). A batch stride of 0 repeats one operand for every product (a 2-D operand broadcast
// over a batch). Many products run one per thread; one product is split over rows of C on Eigen's register
// panels (kernels/dense.hpp): either way each output is summed as by one unsplit single-threaded GEMM, so the
// bits never depend on the thread count.
#pragma once
#include "kernels/dense.hpp"
#include "kernels/entry.hpp"

namespace fastnn {

// C (n, m) (+)= op(A)·op(B), one single-threaded Eigen GEMM on row-major operands whose rows lie lda, ldb, ldc
// elements apart: A is (n, k), or stored (k, n) when trans_a; B is (k, m), or stored (m, k) when trans_b. (A
// transposed operand is a column-major view of its rows; Eigen's packing reads any stride.)
template <typename T>
void gemm_strided(const T* a, index_t lda, const T* b, index_t ldb, T* c, index_t ldc, index_t n, index_t k,
                  index_t m, bool trans_a, bool trans_b, bool accumulate) {
  StridedMatrixMap<T> C(c, n, m, Eigen::OuterStride<>(ldc));
  auto finish = [&](const auto& A, const auto& B) {
    if (accumulate)
      C.noalias() += A * B;
    else
      C.noalias() = A * B;
  };
  auto with_b = [&](const auto& A) {
    if (trans_b)
      finish(A, ConstStridedMatrixMap<T>(b, m, k, Eigen::OuterStride<>(ldb)).transpose());
    else
      finish(A, ConstStridedMatrixMap<T>(b, k, m, Eigen::OuterStride<>(ldb)));
  };
  if (trans_a)
    with_b(ConstStridedMatrixMap<T>(a, k, n, Eigen::OuterStride<>(lda)).transpose());
  else
    with_b(ConstStridedMatrixMap<T>(a, n, k, Eigen::OuterStride<>(lda)));
}

template <typename T>
void batched_gemm(const T* a, const T* b, T* c, index_t batch, index_t n, index_t k, index_t m, bool trans_a,
                  bool trans_b, index_t stride_a, index_t stride_b, bool accumulate) {
  // Rows [row0, row0 + rows) of C[i].
  auto product = [&](index_t i, index_t row0, index_t rows) {
    const T* ai = a + i * stride_a;
    gemm_strided(trans_a ? ai + row0 : ai + row0 * k, trans_a ? n : k, b + i * stride_b, trans_b ? k : m,
                 c + i * n * m + row0 * m, m, rows, k, m, trans_a, trans_b, accumulate);
  };
  const index_t macs = n * k * m;
  if (batch >= 2) {
    parallel_for(batch, batch * macs >= kParallelMinMacs, [&](index_t i) { product(i, 0, n); });
    return;
  }
  for (index_t i = 0; i < batch; ++i)
    for_each_slice(n, kLhsPanel<T>, macs, kParallelMinMacs,
                   [&](index_t begin, index_t count) { product(i, begin, count); });
}

// Entry points, compiled once per CPU level (kernels/entry.hpp).
#define FASTNN_BATCHED_GEMM_ENTRIES(X) X(batched_gemm)
FASTNN_DECLARE_ENTRIES(FASTNN_BATCHED_GEMM_ENTRIES)

}  // namespace fastnn
