// Scaled dot-product attention, fused and blockwise (the flash-attention scheme), for
// F.scaled_dot_product_attention:  out = softmax(scale · q·kᵀ + bias, masked) · v  per batch·head b.
//
// Row-major raw pointers: q (B, L, E), k (B, S, E), v (B, S, Ev), out (B, L, Ev), lse (B, L).
// bias: an additive (float) mask, nullptr or (bias_count, L, S); batch b reads bias[(b / bias_div) % bias_count]
// (so a mask shared by every head, or by every batch, is not repeated). A boolean mask arrives as 0 / −inf.
// drop: nullptr or (B, L, S) multipliers applied to the softmax weights (dropout: 0 or 1/(1−p)).
// causal: key j is masked for query i when j > i (PyTorch's is_causal, aligned top-left).
//
// The L×S score matrix is never formed beyond one kBlockRows × kBlockCols block: the forward keeps a running
// row max m and sum l per query row, rescales its accumulator when m grows, and saves only the log-sum-exp
// lse = m + log l per row; the backward recomputes each block's weights exp(s − lse). Blocks wholly above the
// diagonal are skipped when causal. A query row whose every key is masked gets a zero output, lse = +∞ and
// zero gradients (no NaN). Batch·heads run in parallel, one per thread; each is summed in a fixed order, so
// results do not depend on the thread count.
#pragma once
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/batched_gemm.hpp"
#include "kernels/dense.hpp"
#include "kernels/entry.hpp"
#include "kernels/parallel.hpp"

namespace fastnn {

constexpr index_t kSdpaBlockRows = 64;
constexpr index_t kSdpaBlockCols = 64;

namespace sdpa_detail {

// C (n, m) (+)= op(A)·op(B) through batched_gemm's one product (the same Eigen GEMM code as F.matmul: no
// product of our own is compiled, which keeps each level's library small). A is (n, k) or stored (k, n) when
// trans_a; B (k, m) or stored (m, k) when trans_b; all contiguous row-major.
template <typename T>
void gemm(const T* a, const T* b, T* c, index_t n, index_t k, index_t m, bool trans_a, bool trans_b,
          bool accumulate) {
  batched_gemm(a, b, c, index_t(1), n, k, m, trans_a, trans_b, index_t(0), index_t(0), accumulate);
}

// Scores of rows [i0, i0 + rows) against keys [j0, j0 + cols): scale · qᵢ·kⱼ + bias, −∞ where masked.
template <typename T>
void scores(RowMatrix<T>& s, const T* qb, const T* kb, const T* bias_b, index_t i0, index_t rows, index_t j0,
            index_t cols, index_t L, index_t S, index_t E, bool causal, T scale) {
  (void)L;
  s.resize(rows, cols);
  gemm(qb + i0 * E, kb + j0 * E, s.data(), rows, E, cols, false, true, false);
  s *= scale;
  if (bias_b != nullptr)
    s += ConstStridedMatrixMap<T>(bias_b + i0 * S + j0, rows, cols, Eigen::OuterStride<>(S));
  if (causal && j0 + cols - 1 > i0) {
    const T ninf = -std::numeric_limits<T>::infinity();
    for (index_t r = 0; r < rows; ++r)
      for (index_t c = std::max<index_t>(0, i0 + r + 1 - j0); c < cols; ++c) s(r, c) = ninf;
  }
}

// exp(x), exactly 0 where x = −∞ (a vectorised exp clamps its argument and would leave a denormal).
template <typename T, typename Row>
void exp_masked(Row&& row) {
  const T ninf = -std::numeric_limits<T>::infinity();
  row = (row.array() == ninf).select(T(0), row.array().exp()).matrix();
}

// One past the last key that a block of rows [i0, i0 + rows) can see.
inline index_t key_end(bool causal, index_t i0, index_t rows, index_t S) {
  return causal ? std::min(S, i0 + rows) : S;
}

}  // namespace sdpa_detail

template <typename T>
void sdpa_forward(const T* q, const T* k, const T* v, const T* bias, const T* drop, T* out, T* lse, index_t batch,
                  index_t L, index_t S, index_t E, index_t Ev, index_t bias_div, index_t bias_count, bool causal,
                  T scale) {
  using namespace sdpa_detail;
  const T ninf = -std::numeric_limits<T>::infinity(), inf = std::numeric_limits<T>::infinity();
  const index_t macs = L * S * (E + Ev);
  parallel_for(batch, batch * macs >= kParallelMinMacs, [&](index_t b) {
    const T* qb = q + b * L * E;
    const T* kb = k + b * S * E;
    const T* vb = v + b * S * Ev;
    const T* bias_b = bias ? bias + ((b / bias_div) % bias_count) * L * S : nullptr;
    const T* drop_b = drop ? drop + b * L * S : nullptr;
    RowMatrix<T> s, acc;
    Eigen::Matrix<T, Eigen::Dynamic, 1> m, l;
    for (index_t i0 = 0; i0 < L; i0 += kSdpaBlockRows) {
      const index_t rows = std::min(kSdpaBlockRows, L - i0);
      acc.setZero(rows, Ev);
      m.setConstant(rows, ninf);
      l.setZero(rows);
      const index_t jend = key_end(causal, i0, rows, S);
      for (index_t j0 = 0; j0 < jend; j0 += kSdpaBlockCols) {
        const index_t cols = std::min(kSdpaBlockCols, jend - j0);
        scores(s, qb, kb, bias_b, i0, rows, j0, cols, L, S, E, causal, scale);
        for (index_t r = 0; r < rows; ++r) {
          const T mnew = std::max(m[r], s.row(r).maxCoeff());
          if (mnew == ninf) {  // nothing visible in this row yet
            s.row(r).setZero();
            continue;
          }
          const T alpha = m[r] == ninf ? T(0) : std::exp(m[r] - mnew);
          s.row(r).array() -= mnew;
          exp_masked<T>(s.row(r));
          l[r] = l[r] * alpha + s.row(r).sum();
          acc.row(r) *= alpha;
          m[r] = mnew;
        }
        if (drop_b != nullptr)
          s.array() *= ConstStridedMatrixMap<T>(drop_b + i0 * S + j0, rows, cols, Eigen::OuterStride<>(S)).array();
        gemm(s.data(), vb + j0 * Ev, acc.data(), rows, cols, Ev, false, false, true);
      }
      MatrixMap<T> o(out + (b * L + i0) * Ev, rows, Ev);
      for (index_t r = 0; r < rows; ++r) {
        if (l[r] > T(0)) {
          o.row(r) = acc.row(r) / l[r];
          lse[b * L + i0 + r] = m[r] + std::log(l[r]);
        } else {  // every key masked: zero output, zero gradient
          o.row(r).setZero();
          lse[b * L + i0 + r] = inf;
        }
      }
    }
  });
}

// Gradients dq (B, L, E), dk (B, S, E), dv (B, S, Ev) (overwritten) from dout (B, L, Ev), given the forward's
// out and lse. Blocks are recomputed: P = exp(s − lse); dV += (P∘D)ᵀ·dO; dP = (dO·Vᵀ)∘D;
// dS = P∘(dP − δ) with δᵢ = dOᵢ·Oᵢ; dQ += scale·dS·K; dK += scale·dSᵀ·Q.
template <typename T>
void sdpa_backward(const T* q, const T* k, const T* v, const T* bias, const T* drop, const T* out, const T* dout,
                   const T* lse, T* dq, T* dk, T* dv, index_t batch, index_t L, index_t S, index_t E, index_t Ev,
                   index_t bias_div, index_t bias_count, bool causal, T scale) {
  using namespace sdpa_detail;
  const index_t macs = 2 * L * S * (E + Ev);
  parallel_for(batch, batch * macs >= kParallelMinMacs, [&](index_t b) {
    const T* qb = q + b * L * E;
    const T* kb = k + b * S * E;
    const T* vb = v + b * S * Ev;
    const T* ob = out + b * L * Ev;
    const T* gob = dout + b * L * Ev;
    const T* lb = lse + b * L;
    const T* bias_b = bias ? bias + ((b / bias_div) % bias_count) * L * S : nullptr;
    const T* drop_b = drop ? drop + b * L * S : nullptr;
    MatrixMap<T> gq(dq + b * L * E, L, E), gk(dk + b * S * E, S, E), gv(dv + b * S * Ev, S, Ev);
    gq.setZero();
    gk.setZero();
    gv.setZero();
    Eigen::Matrix<T, Eigen::Dynamic, 1> delta =
        (ConstMatrixMap<T>(ob, L, Ev).array() * ConstMatrixMap<T>(gob, L, Ev).array()).rowwise().sum();
    RowMatrix<T> p, dp, pd;
    for (index_t j0 = 0; j0 < S; j0 += kSdpaBlockCols) {
      const index_t cols = std::min(kSdpaBlockCols, S - j0);
      const index_t istart = causal ? std::min(L, j0) / kSdpaBlockRows * kSdpaBlockRows : 0;
      for (index_t i0 = istart; i0 < L; i0 += kSdpaBlockRows) {
        const index_t rows = std::min(kSdpaBlockRows, L - i0);
        if (j0 >= key_end(causal, i0, rows, S)) continue;
        scores(p, qb, kb, bias_b, i0, rows, j0, cols, L, S, E, causal, scale);
        for (index_t r = 0; r < rows; ++r) {
          p.row(r).array() -= lb[i0 + r];
          exp_masked<T>(p.row(r));
        }
        const T* dO = gob + i0 * Ev;
        dp.resize(rows, cols);
        gemm(dO, vb + j0 * Ev, dp.data(), rows, Ev, cols, false, true, false);  // dO·Vⱼᵀ
        if (drop_b != nullptr) {
          auto D = ConstStridedMatrixMap<T>(drop_b + i0 * S + j0, rows, cols, Eigen::OuterStride<>(S));
          pd = p.array() * D.array();
          gemm(pd.data(), dO, dv + (b * S + j0) * Ev, cols, rows, Ev, true, false, true);  // dVⱼ += (P∘D)ᵀ·dO
          dp.array() *= D.array();
        } else {
          gemm(p.data(), dO, dv + (b * S + j0) * Ev, cols, rows, Ev, true, false, true);   // dVⱼ += Pᵀ·dO
        }
        // dS = P∘(dP − δ), scaled: the gradient of the scores before `scale`
        p.array() *= (dp.colwise() - delta.segment(i0, rows)).array();
        p *= scale;
        gemm(p.data(), kb + j0 * E, dq + (b * L + i0) * E, rows, cols, E, false, false, true);  // dQᵢ += dS·Kⱼ
        gemm(p.data(), qb + i0 * E, dk + (b * S + j0) * E, cols, rows, E, true, false, true);   // dKⱼ += dSᵀ·Qᵢ
      }
    }
  });
}

// Entry points, compiled once per CPU level (kernels/entry.hpp).
#define FASTNN_ATTENTION_SDPA_ENTRIES(X) X(sdpa_forward) X(sdpa_backward)
FASTNN_DECLARE_ENTRIES(FASTNN_ATTENTION_SDPA_ENTRIES)

}  // namespace fastnn
