// Scaled dot-product attention, fused and blockwise (the flash-attention scheme), for
// F.scaled_dot_product_attention and nn.MultiheadAttention:  out = softmax(scale · q·kᵀ + bias, masked) · v
// per batch·head b.
//
// Operands are raw pointers with a layout each (SdpaLayout): b = n·heads + h, and row r of b in an operand
// starts at n·batch_stride + h·head_stride + r·row_stride. So (B, L, E) arrays (heads 1, row_stride E) and
// the heads of a (N, L, H·D) projection — even the q, k and v thirds of one (N, L, 3E) self-attention
// projection (row_stride 3E) — are read in place, with no (N, L, H, D) -> (N·H, L, D) copies: a b whose rows
// are not contiguous is gathered into a small per-thread buffer (and its output rows scattered back).
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

// C (n, m) (+)= op(A)·op(B) through batched_gemm's one product (the same Eigen GEMM code as F.matmul: no
// product of our own is compiled, which keeps each level's library small). A is (n, k) or stored (k, n) when
// trans_a; B (k, m) or stored (m, k) when trans_b; all contiguous row-major.
template <typename T>
void gemm(const T* a, const T* b, T* c, index_t n, index_t k, index_t m, bool trans_a, bool trans_b,
          bool accumulate) {
  batched_gemm(a, b, c, index_t(1), n, k, m, trans_a, trans_b, index_t(0), index_t(0), accumulate);
}

inline index_t offset(const SdpaLayout& lay, index_t heads, index_t b) {
  return (b / heads) * lay.batch_stride + (b % heads) * lay.head_stride;
}

// The rows (rows × width) of b as a contiguous block: in place when they are, else gathered into `scratch`.
template <typename T>
const T* read_rows(const T* base, const SdpaLayout& lay, index_t heads, index_t b, index_t rows, index_t width,
                   RowMatrix<T>& scratch) {
  const T* p = base + offset(lay, heads, b);
  if (lay.row_stride == width) return p;
  scratch = ConstStridedMatrixMap<T>(p, rows, width, Eigen::OuterStride<>(lay.row_stride));
  return scratch.data();
}

// Where to write the rows of b: in place when contiguous, else `scratch` (then write_back).
template <typename T>
T* write_rows(T* base, const SdpaLayout& lay, index_t heads, index_t b, index_t rows, index_t width,
              RowMatrix<T>& scratch) {
  if (lay.row_stride == width) return base + offset(lay, heads, b);
  scratch.resize(rows, width);
  return scratch.data();
}

template <typename T>
void write_back(T* base, const SdpaLayout& lay, index_t heads, index_t b, index_t rows, index_t width,
                const RowMatrix<T>& scratch) {
  if (lay.row_stride == width) return;
  StridedMatrixMap<T>(base + offset(lay, heads, b), rows, width, Eigen::OuterStride<>(lay.row_stride)) = scratch;
}

// Scores of rows [i0, i0 + rows) against keys [j0, j0 + cols): scale · qᵢ·kⱼ + bias, −∞ where masked.
template <typename T>
void scores(RowMatrix<T>& s, const T* qb, const T* kb, const T* bias_b, index_t i0, index_t rows, index_t j0,
            index_t cols, index_t S, index_t E, bool causal, T scale) {
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
    static thread_local RowMatrix<T> s, acc, bq, bk, bv, bo;
    const T* qb = read_rows(q, d.q, H, b, L, E, bq);
    const T* kb = read_rows(k, d.k, H, b, S, E, bk);
    const T* vb = read_rows(v, d.v, H, b, S, Ev, bv);
    T* ob = write_rows(out, d.out, H, b, L, Ev, bo);
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
        gemm(s.data(), vb + j0 * Ev, acc.data(), rows, cols, Ev, false, false, true);
      }
      MatrixMap<T> o(ob + i0 * Ev, rows, Ev);
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
    write_back(out, d.out, H, b, L, Ev, bo);
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
    static thread_local RowMatrix<T> bq, bk, bv, bo, bg, sq, sk, sv, p, dp, pd, dm;
    const T* qb = read_rows(q, d.q, H, b, L, E, bq);
    const T* kb = read_rows(k, d.k, H, b, S, E, bk);
    const T* vb = read_rows(v, d.v, H, b, S, Ev, bv);
    const T* ob = read_rows(out, d.out, H, b, L, Ev, bo);
    const T* gob = read_rows(dout, d.out, H, b, L, Ev, bg);
    const T* lb = lse + b * L;
    const T* bias_b = bias ? bias + ((b / d.bias_div) % d.bias_count) * L * S : nullptr;
    T* dqb = write_rows(dq, d.q, H, b, L, E, sq);
    T* dkb = write_rows(dk, d.k, H, b, S, E, sk);
    T* dvb = write_rows(dv, d.v, H, b, S, Ev, sv);
    T* dbias_b = dbias ? dbias + b * L * S : nullptr;
    MatrixMap<T>(dqb, L, E).setZero();
    MatrixMap<T>(dkb, S, E).setZero();
    MatrixMap<T>(dvb, S, Ev).setZero();
    if (dbias_b != nullptr) MatrixMap<T>(dbias_b, L, S).setZero();
    Eigen::Matrix<T, Eigen::Dynamic, 1> delta =
        (ConstMatrixMap<T>(ob, L, Ev).array() * ConstMatrixMap<T>(gob, L, Ev).array()).rowwise().sum();
    for (index_t j0 = 0; j0 < S; j0 += kSdpaBlockCols) {
      const index_t cols = std::min(kSdpaBlockCols, S - j0);
      const index_t istart = causal ? std::min(L, j0) / kSdpaBlockRows * kSdpaBlockRows : 0;
      for (index_t i0 = istart; i0 < L; i0 += kSdpaBlockRows) {
        const index_t rows = std::min(kSdpaBlockRows, L - i0);
        if (j0 >= key_end(causal, i0, rows, S)) continue;
        scores(p, qb, kb, bias_b, i0, rows, j0, cols, S, E, causal, scale);
        p.array().colwise() -= ConstMatrixMap<T>(lb + i0, rows, 1).array().col(0);
        exp_block(p, bias_b != nullptr || (causal && j0 + cols - 1 > i0));
        const T* dO = gob + i0 * Ev;
        dp.resize(rows, cols);
        gemm(dO, vb + j0 * Ev, dp.data(), rows, Ev, cols, false, true, false);  // dO·Vⱼᵀ
        if (mask.active()) {  // D (0 or 1/(1−p)) hashed once for the block, applied to P and to dP
          dm.setOnes(rows, cols);
          apply_dropout(dm, mask, b, i0, j0, L, S);
          pd = p.cwiseProduct(dm);
          gemm(pd.data(), dO, dvb + j0 * Ev, cols, rows, Ev, true, false, true);  // dVⱼ += (P∘D)ᵀ·dO
          dp.array() *= dm.array();
        } else {
          gemm(p.data(), dO, dvb + j0 * Ev, cols, rows, Ev, true, false, true);   // dVⱼ += Pᵀ·dO
        }
        // dS = P∘(dP − δ): the gradient of the scores (of an additive mask); scaled, that of q·kᵀ
        p.array() *= (dp.colwise() - delta.segment(i0, rows)).array();
        if (dbias_b != nullptr)
          StridedMatrixMap<T>(dbias_b + i0 * S + j0, rows, cols, Eigen::OuterStride<>(S)) = p;
        p *= scale;
        gemm(p.data(), kb + j0 * E, dqb + i0 * E, rows, cols, E, false, false, true);  // dQᵢ += dS·Kⱼ
        gemm(p.data(), qb + i0 * E, dkb + j0 * E, cols, rows, E, true, false, true);   // dKⱼ += dSᵀ·Qᵢ
      }
    }
    write_back(dq, d.q, H, b, L, E, sq);
    write_back(dk, d.k, H, b, S, E, sk);
    write_back(dv, d.v, H, b, S, Ev, sv);
  });
}

// Entry points, compiled once per CPU level (kernels/entry.hpp).
#define FASTNN_ATTENTION_SDPA_ENTRIES(X) X(sdpa_forward) X(sdpa_backward)
FASTNN_DECLARE_ENTRIES(FASTNN_ATTENTION_SDPA_ENTRIES)

}  // namespace fastnn
