// Scaled dot-product attention, fused and blockwise (the flash-attention scheme), for
// F.scaled_dot_product_attention and nn.MultiheadAttention:  out = softmax(scale · q·kᵀ + bias, masked) · v
// per batch·head b.
//
// Operands are raw pointers with a layout each (SdpaLayout): b = n·heads + h, and row r of b in an operand
// starts at n·batch_stride + h·head_stride + r·row_stride. So (B, L, E) arrays (heads 1, row_stride E) and
// the heads of a (N, L, H·D) projection — even the q, k and v thirds of one (N, L, 3E) self-attention
// projection (row_stride 3E) — are read in place, with no (N, L, H, D) -> (N·H, L, D) copies: the GEMMs
// read (and the gradients accumulate into) the strided rows directly.
// dq, dk, dv and dout share the layouts of q, k, v and out; lse (batch, L) and dbias (batch, L, S) are
// contiguous.
//
// bias: an additive (float) mask, nullptr or (bias_count, L, S); batch b reads bias[(b / bias_div) % bias_count]
// (so a mask shared by every head, or by every batch, is not repeated). A boolean mask arrives as 0 / −inf.
// Dropout of the weights (dropout_p > 0) draws no array: weight (b, i, j) is kept when the hash of
// (seed, (b·L + i)·S + j) clears p (kernels/dropout.hpp), in the forward and again in the backward.
// causal: key j is masked for query i when j > i (PyTorch's is_causal, aligned top-left).
//
// The L×S score matrix is never formed beyond one kBlockRows × kBlockCols block: the forward keeps a running
// row max m and sum l per query row, rescales its accumulator when m grows, and saves only the log-sum-exp
// lse = m + log l per row; the backward recomputes each block's weights exp(s − lse). Blocks wholly above the
// diagonal are skipped when causal. A query row whose every key is masked gets a zero output, lse = +∞ and
// zero gradients (no NaN). Batch·heads run in parallel, one per thread; each is summed in a fixed order, so
// results do not depend on the thread count. The backward can also return dbias, the gradient of the scores
// (before `scale` is applied, i.e. of an additive float mask), per b: (batch, L, S).
#pragma once
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "kernels/batched_gemm.hpp"
#include "kernels/dense.hpp"
#include "kernels/dropout.hpp"
#include "kernels/entry.hpp"
#include "kernels/parallel.hpp"

namespace fastnn {

constexpr index_t kSdpaBlockRows = 64;
constexpr index_t kSdpaBlockCols = 64;

// Where the rows of batch·head b = n·heads + h lie in an operand (in elements).
struct SdpaLayout {
  index_t batch_stride = 0, head_stride = 0, row_stride = 0;
};

// Sizes, layouts and options of one attention call.
struct SdpaDims {
  index_t batch = 0, heads = 1, L = 0, S = 0, E = 0, Ev = 0;
  SdpaLayout q, k, v, out;
  index_t bias_div = 1, bias_count = 1;
  bool causal = false;
  double scale = 1.0;
  double dropout_p = 0.0;
  std::uint64_t seed = 0;
};

namespace sdpa_detail {

// A row-major operand block: its first element and the distance between its rows.
template <typename T>
struct Rows {
  T* p;
  index_t stride;
  Rows at(index_t row) const { return {p + row * stride, stride}; }
  auto map(index_t rows, index_t width) const {
    using Map = std::conditional_t<std::is_const_v<T>, ConstStridedMatrixMap<std::remove_const_t<T>>,
                                   StridedMatrixMap<T>>;
    return Map(p, rows, width, Eigen::OuterStride<>(stride));
  }
};

// The rows of batch·head b in an operand, read and written in place (the heads of a (N, L, H·D) projection
// included: a GEMM's packing reads the strided rows directly, so no gather into a buffer and no scatter back).
template <typename T>
Rows<T> rows_of(T* base, const SdpaLayout& lay, index_t heads, index_t b) {
  return {base + (b / heads) * lay.batch_stride + (b % heads) * lay.head_stride, lay.row_stride};
}

// C (n, m) (+)= op(A)·op(B) on strided operands (batched_gemm.hpp's product, as F.matmul runs it).
template <typename T>
void gemm(Rows<const T> a, Rows<const T> b, Rows<T> c, index_t n, index_t k, index_t m, bool trans_a, bool trans_b,
          bool accumulate) {
  gemm_strided(a.p, a.stride, b.p, b.stride, c.p, c.stride, n, k, m, trans_a, trans_b, accumulate);
}

// A per-thread block as a GEMM operand (rows_in) or result (rows_out).
template <typename T>
Rows<const T> rows_in(const RowMatrix<T>& x) {
  return {x.data(), x.cols()};
}
template <typename T>
Rows<T> rows_out(RowMatrix<T>& x) {
  return {x.data(), x.cols()};
}

// Scores of rows [i0, i0 + rows) against keys [j0, j0 + cols): scale · qᵢ·kⱼ + bias, −∞ where masked.
template <typename T>
void scores(RowMatrix<T>& s, Rows<const T> qb, Rows<const T> kb, const T* bias_b, index_t i0, index_t rows,
            index_t j0, index_t cols, index_t S, index_t E, bool causal, T scale) {
  s.resize(rows, cols);
  gemm(qb.at(i0), kb.at(j0), rows_out(s), rows, E, cols, false, true, false);
  s *= scale;
  if (bias_b != nullptr)
    s += ConstStridedMatrixMap<T>(bias_b + i0 * S + j0, rows, cols, Eigen::OuterStride<>(S));
  if (causal && j0 + cols - 1 > i0) {
    const T ninf = -std::numeric_limits<T>::infinity();
    for (index_t r = 0; r < rows; ++r)
      for (index_t c = std::max<index_t>(0, i0 + r + 1 - j0); c < cols; ++c) s(r, c) = ninf;
  }
}

// exp(x) over a block, in place, exactly 0 where x = −∞ when `masked` (a vectorised exp clamps its argument and
// would leave a denormal); without masks no −∞ occurs and the plain exp serves.
template <typename T>
void exp_block(RowMatrix<T>& x, bool masked) {
  if (masked) {
    const T ninf = -std::numeric_limits<T>::infinity();
    x = (x.array() == ninf).select(T(0), x.array().exp()).matrix();
  } else {
    x = x.array().exp().matrix();
  }
}

// Multiplies block (rows × cols at (i0, j0)) of b's weights by its dropout multipliers (0 or 1/(1−p)).
template <typename T>
void apply_dropout(RowMatrix<T>& w, const DropoutMask& mask, index_t b, index_t i0, index_t j0, index_t L,
                   index_t S) {
  const index_t rows = w.rows(), cols = w.cols();
  for (index_t r = 0; r < rows; ++r) {
    T* row = w.data() + r * cols;
    mask.apply(row, static_cast<const T*>(nullptr), row, cols, std::uint64_t((b * L + i0 + r) * S + j0));
  }
}

// One past the last key that a block of rows [i0, i0 + rows) can see.
inline index_t key_end(bool causal, index_t i0, index_t rows, index_t S) {
  return causal ? std::min(S, i0 + rows) : S;
}

}  // namespace sdpa_detail

// out (layout d.out) and lse (batch, L) from q, k, v (layouts d.q, d.k, d.v).
template <typename T>
void sdpa_forward(const T* q, const T* k, const T* v, const T* bias, T* out, T* lse, const SdpaDims& d) {
  using namespace sdpa_detail;
  const T ninf = -std::numeric_limits<T>::infinity(), inf = std::numeric_limits<T>::infinity();
  const index_t L = d.L, S = d.S, E = d.E, Ev = d.Ev, H = d.heads;
  const bool causal = d.causal;
  const T scale = static_cast<T>(d.scale);
  const DropoutMask mask(d.seed, d.dropout_p);
  const index_t macs = L * S * (E + Ev);
  parallel_for(d.batch, d.batch * macs >= kParallelMinMacs, [&](index_t b) {
    // per-thread buffers, kept from one b (and one call) to the next: no allocation per batch·head
    static thread_local RowMatrix<T> s, acc;
    const Rows<const T> qb = rows_of(q, d.q, H, b), kb = rows_of(k, d.k, H, b), vb = rows_of(v, d.v, H, b);
    const Rows<T> ob = rows_of(out, d.out, H, b);
    const T* bias_b = bias ? bias + ((b / d.bias_div) % d.bias_count) * L * S : nullptr;
    static thread_local Eigen::Matrix<T, Eigen::Dynamic, 1> m, l, bmax, shift, alpha;
    for (index_t i0 = 0; i0 < L; i0 += kSdpaBlockRows) {
      const index_t rows = std::min(kSdpaBlockRows, L - i0);
      acc.setZero(rows, Ev);
      m.setConstant(rows, ninf);
      l.setZero(rows);
      shift.resize(rows);
      alpha.resize(rows);
      const index_t jend = key_end(causal, i0, rows, S);
      for (index_t j0 = 0; j0 < jend; j0 += kSdpaBlockCols) {
        const index_t cols = std::min(kSdpaBlockCols, jend - j0);
        scores(s, qb, kb, bias_b, i0, rows, j0, cols, S, E, causal, scale);
        const bool masked = bias_b != nullptr || (causal && j0 + cols - 1 > i0);
        // the whole block at once: new row maxima, the rescale of what was summed so far, exp, row sums
        bmax = s.rowwise().maxCoeff();
        for (index_t r = 0; r < rows; ++r) {
          const T mn = std::max(m[r], bmax[r]);
          if (mn == ninf) {  // nothing visible in this row yet: its scores are all −∞, exp(−∞ − 0) = 0
            alpha[r] = T(0);
            shift[r] = T(0);
          } else {
            alpha[r] = m[r] == ninf ? T(0) : (m[r] == mn ? T(1) : std::exp(m[r] - mn));
            shift[r] = mn;
            m[r] = mn;
          }
        }
        s.array().colwise() -= shift.array();
        exp_block(s, masked);
        l = l.cwiseProduct(alpha) + s.rowwise().sum();
        acc.array().colwise() *= alpha.array();
        if (mask.active()) apply_dropout(s, mask, b, i0, j0, L, S);
        gemm(rows_in(s), vb.at(j0), rows_out(acc), rows, cols, Ev, false, false, true);
      }
      auto o = ob.at(i0).map(rows, Ev);
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

// Gradients dq, dk, dv (layouts d.q, d.k, d.v; every row of every b overwritten) from dout (layout d.out),
// given the forward's out and lse; dbias (batch, L, S) too unless nullptr. Blocks are recomputed:
// P = exp(s − lse); dV += (P∘D)ᵀ·dO; dP = (dO·Vᵀ)∘D; dS = P∘(dP − δ) with δᵢ = dOᵢ·Oᵢ (= dbias);
// dQ += scale·dS·K; dK += scale·dSᵀ·Q.
template <typename T>
void sdpa_backward(const T* q, const T* k, const T* v, const T* bias, const T* out, const T* dout, const T* lse,
                   T* dq, T* dk, T* dv, T* dbias, const SdpaDims& d) {
  using namespace sdpa_detail;
  const index_t L = d.L, S = d.S, E = d.E, Ev = d.Ev, H = d.heads;
  const bool causal = d.causal;
  const T scale = static_cast<T>(d.scale);
  const DropoutMask mask(d.seed, d.dropout_p);
  const index_t macs = 2 * L * S * (E + Ev);
  parallel_for(d.batch, d.batch * macs >= kParallelMinMacs, [&](index_t b) {
    static thread_local RowMatrix<T> p, dp, pd, dm;
    const Rows<const T> qb = rows_of(q, d.q, H, b), kb = rows_of(k, d.k, H, b), vb = rows_of(v, d.v, H, b);
    const Rows<const T> ob = rows_of(out, d.out, H, b), gob = rows_of(dout, d.out, H, b);
    const T* lb = lse + b * L;
    const T* bias_b = bias ? bias + ((b / d.bias_div) % d.bias_count) * L * S : nullptr;
    const Rows<T> dqb = rows_of(dq, d.q, H, b), dkb = rows_of(dk, d.k, H, b), dvb = rows_of(dv, d.v, H, b);
    T* dbias_b = dbias ? dbias + b * L * S : nullptr;
    dqb.map(L, E).setZero();
    dkb.map(S, E).setZero();
    dvb.map(S, Ev).setZero();
    if (dbias_b != nullptr) MatrixMap<T>(dbias_b, L, S).setZero();
    Eigen::Matrix<T, Eigen::Dynamic, 1> delta =
        (ob.map(L, Ev).array() * gob.map(L, Ev).array()).rowwise().sum();
    for (index_t j0 = 0; j0 < S; j0 += kSdpaBlockCols) {
      const index_t cols = std::min(kSdpaBlockCols, S - j0);
      const index_t istart = causal ? std::min(L, j0) / kSdpaBlockRows * kSdpaBlockRows : 0;
      for (index_t i0 = istart; i0 < L; i0 += kSdpaBlockRows) {
        const index_t rows = std::min(kSdpaBlockRows, L - i0);
        if (j0 >= key_end(causal, i0, rows, S)) continue;
        scores(p, qb, kb, bias_b, i0, rows, j0, cols, S, E, causal, scale);
        p.array().colwise() -= ConstMatrixMap<T>(lb + i0, rows, 1).array().col(0);
        exp_block(p, bias_b != nullptr || (causal && j0 + cols - 1 > i0));
        const Rows<const T> dO = gob.at(i0);
        dp.resize(rows, cols);
        gemm(dO, vb.at(j0), rows_out(dp), rows, Ev, cols, false, true, false);  // dO·Vⱼᵀ
        if (mask.active()) {  // D (0 or 1/(1−p)) hashed once for the block, applied to P and to dP
          dm.setOnes(rows, cols);
          apply_dropout(dm, mask, b, i0, j0, L, S);
          pd = p.cwiseProduct(dm);
          gemm(rows_in(pd), dO, dvb.at(j0), cols, rows, Ev, true, false, true);  // dVⱼ += (P∘D)ᵀ·dO
          dp.array() *= dm.array();
        } else {
          gemm(rows_in(p), dO, dvb.at(j0), cols, rows, Ev, true, false, true);  // dVⱼ += Pᵀ·dO
        }
        // dS = P∘(dP − δ): the gradient of the scores (of an additive mask); scaled, that of q·kᵀ
        p.array() *= (dp.colwise() - delta.segment(i0, rows)).array();
        if (dbias_b != nullptr)
          StridedMatrixMap<T>(dbias_b + i0 * S + j0, rows, cols, Eigen::OuterStride<>(S)) = p;
        p *= scale;
        gemm(rows_in(p), kb.at(j0), dqb.at(i0), rows, cols, E, false, false, true);  // dQᵢ += dS·Kⱼ
        gemm(rows_in(p), qb.at(i0), dkb.at(j0), cols, rows, E, true, false, true);   // dKⱼ += dSᵀ·Qᵢ
      }
    }
  });
}

// Entry points, compiled once per CPU level (kernels/entry.hpp).
#define FASTNN_ATTENTION_SDPA_ENTRIES(X) X(sdpa_forward) X(sdpa_backward)
FASTNN_DECLARE_ENTRIES(FASTNN_ATTENTION_SDPA_ENTRIES)

}  // namespace fastnn
