// Loss kernels. Each computes the loss and its gradient w.r.t. the prediction in one pass over the data.
//
// Conventions shared by every kernel here:
//  - `grad` receives `grad_scale` · ∂loss_i/∂pred for every row or element i, so the caller gets the gradient
//    of the reduced loss directly (grad_scale = 1/denominator for 'mean', 1 for 'sum' and 'none');
//  - `item_loss`, when not null, receives the unreduced loss of each row/element ('none');
//  - the return value is Σ_i loss_i in double, summed over fixed blocks and then in order, so the result does
//    not depend on the number of threads;
//  - invalid input (non-finite values, a probability outside [0, 1]) is reported through `ok`, never thrown:
//    kernels run without the GIL and must not touch Python.
#pragma once
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "kernels/entry.hpp"
#include "kernels/checks.hpp"
#include "kernels/parallel.hpp"
#include "kernels/reductions.hpp"

namespace fastnn {

template <typename T>
using ArrayMap = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <typename T>
using ConstArrayMap = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

// Σ_b f(begin_b, end_b, ok) over fixed blocks of [0, n) of about kLossBlock elements of work each: in parallel
// when the whole job is large, always summed in block order.
constexpr index_t kLossBlock = 4096;

template <typename F>
double blocked_sum(index_t n, index_t work_per_item, bool& ok, F&& f) {
  const index_t per_block = std::max<index_t>(1, kLossBlock / std::max<index_t>(1, work_per_item));
  const index_t blocks = (n + per_block - 1) / per_block;
  if (blocks <= 1) return n > 0 ? f(index_t(0), n, ok) : 0.0;
  std::vector<double> partial(blocks);
  std::vector<char> block_ok(blocks, 1);
  const bool parallel = n * work_per_item >= kParallelMinElements;
  parallel_for(blocks, parallel, [&](index_t b) {
    bool good = true;
    partial[b] = f(b * per_block, std::min(n, (b + 1) * per_block), good);
    block_ok[b] = good;
  });
  double sum = 0;
  for (index_t b = 0; b < blocks; ++b) {
    sum += partial[b];
    ok = ok && block_ok[b];
  }
  return sum;
}

// ---- class-index targets ---------------------------------------------------------------------------------

// Validates the labels and returns, through `weight_sum`, the denominator of a 'mean': Σ weight[label] over
// the labels that are not ignore_index (their count when weight is null). Returns the index of the first label
// outside [0, classes) other than ignore_index, or -1 when all are valid.
template <typename T>
index_t check_labels(const std::int64_t* labels, index_t n, index_t classes, std::int64_t ignore_index,
                     const T* weight, double* weight_sum) {
  double sum = 0;
  for (index_t i = 0; i < n; ++i) {
    const std::int64_t y = labels[i];
    if (y == ignore_index) continue;
    if (y < 0 || y >= classes) return i;
    sum += weight ? double(weight[y]) : 1.0;
  }
  *weight_sum = sum;
  return -1;
}

// Softmax of a block of `rows` rows of C logits, in phases that vectorise over the whole block rather than per
// row (C is often 10: per-row vector code would be mostly remainder loops):
//   e = exp(x − m), m_i = max_c x_ic, s_i = Σ_c e_ic, log_s_i = log s_i;   so log-sum-exp = m + log_s and
// lse − x_c = (m − x_c) + log_s, computed so for logits of ±1000 (never m + log_s − x_c: it cancels).
// Reproducibility: results must depend on the values only, never on where arrays sit in memory. Eigen runs
// the first elements of an unaligned destination through scalar code (std::exp differs from its vector exp in
// the last bit), so vector code writes only these buffers, which Eigen allocates aligned; sums and maxima run
// in fixed lane order (kernels/reductions.hpp).
template <typename T>
struct SoftmaxRows {
  Eigen::Array<T, Eigen::Dynamic, 1> e, m, s, log_s;

  // False, leaving the buffers unspecified, when a logit is not finite.
  bool compute(const T* x, index_t rows, index_t C) {
    if (!all_finite(x, rows * C)) return false;
    e.resize(rows * C);
    m.resize(rows);
    s.resize(rows);
    for (index_t i = 0; i < rows; ++i) {
      const T* xi = x + i * C;
      const T mi = detail::fixed_order_max(xi, C);  // logits are finite here
      m[i] = mi;
      T* ei = e.data() + i * C;
#pragma omp simd
      for (index_t c = 0; c < C; ++c) ei[c] = xi[c] - mi;
    }
    e = e.exp();
    for (index_t i = 0; i < rows; ++i) s[i] = detail::fixed_order_sum(e.data() + i * C, C);
    log_s = s.log();
    return true;
  }
};

// Fused log-softmax + cross-entropy with integer labels, PyTorch's semantics. For a row x with label y,
//   loss = (1−ε)·w_y·(lse − x_y) + ε/C · Σ_c w_c·(lse − x_c),   lse = log Σ_c exp(x_c)
//   ∂loss/∂x_j = p_j·((1−ε)·w_y + ε·W/C) − (1−ε)·w_y·δ_jy − ε/C·w_j,   p = softmax(x), W = Σ_c w_c,
// with w ≡ 1 when weight is null and ε the label smoothing. Rows labelled ignore_index have loss 0 and a zero
// gradient. Labels must have been validated by check_labels. ok becomes false on a non-finite logit.
template <typename T>
double softmax_cross_entropy_labels(const T* logits, const std::int64_t* labels, const T* weight, index_t n,
                                    index_t classes, std::int64_t ignore_index, T smoothing, T grad_scale,
                                    T* grad, T* item_loss, bool& ok) {
  const index_t C = classes;
  T total_weight = T(C);
  if (weight) {
    total_weight = 0;
    for (index_t c = 0; c < C; ++c) total_weight += weight[c];
  }
  const T smooth = smoothing / T(C);  // ε/C
  return blocked_sum(n, C, ok, [&](index_t begin, index_t end, bool& good) {
    const index_t rows = end - begin;
    const T* xb = logits + begin * C;
    SoftmaxRows<T> sm;
    if (!sm.compute(xb, rows, C)) {
      good = false;
      return 0.0;
    }
    double sum = 0;
    for (index_t r = 0; r < rows; ++r) {
      const T* x = xb + r * C;
      const T* e = sm.e.data() + r * C;
      T* g = grad + (begin + r) * C;
      const std::int64_t y = labels[begin + r];
      T loss = 0;
      if (y == ignore_index) {
        std::fill(g, g + C, T(0));
      } else {
        const T w_y = weight ? weight[y] : T(1), m = sm.m[r], log_s = sm.log_s[r];
        loss = (T(1) - smoothing) * w_y * ((m - x[y]) + log_s);
        const T p_factor = grad_scale * ((T(1) - smoothing) * w_y + smooth * total_weight) / sm.s[r];
        if (smoothing != T(0)) {
          const T step = grad_scale * smooth;
          T smooth_sum = 0;  // Σ_c w_c (lse − x_c): every term ≥ 0
          for (index_t c = 0; c < C; ++c) smooth_sum += (weight ? weight[c] : T(1)) * ((m - x[c]) + log_s);
          loss += smooth * smooth_sum;
          if (weight) {
#pragma omp simd
            for (index_t c = 0; c < C; ++c) g[c] = e[c] * p_factor - step * weight[c];
          } else {
#pragma omp simd
            for (index_t c = 0; c < C; ++c) g[c] = e[c] * p_factor - step;
          }
        } else {
#pragma omp simd
          for (index_t c = 0; c < C; ++c) g[c] = e[c] * p_factor;
        }
        g[y] -= grad_scale * (T(1) - smoothing) * w_y;
      }
      if (item_loss) item_loss[begin + r] = loss;
      sum += loss;
    }
    return sum;
  });
}

// Cross-entropy with class-probability targets t [n, C] (PyTorch: smoothing mixes t with the uniform
// distribution, t' = (1−ε)·t + ε/C):  loss = Σ_c w_c·t'_c·(lse − x_c),  ∂loss/∂x = p·Σ_c w_c·t'_c − w⊙t'.
// ok becomes false on a non-finite logit or target.
template <typename T>
double softmax_cross_entropy_probs(const T* logits, const T* target, const T* weight, index_t n, index_t classes,
                                   T smoothing, T grad_scale, T* grad, T* item_loss, bool& ok) {
  const index_t C = classes;
  const T keep = T(1) - smoothing, smooth = smoothing / T(C);
  return blocked_sum(n, C, ok, [&](index_t begin, index_t end, bool& good) {
    const index_t rows = end - begin;
    const T* xb = logits + begin * C;
    const T* tb = target + begin * C;
    SoftmaxRows<T> sm;
    if (!all_finite(tb, rows * C) || !sm.compute(xb, rows, C)) {
      good = false;
      return 0.0;
    }
    double sum = 0;
    for (index_t r = 0; r < rows; ++r) {
      const T *x = xb + r * C, *t = tb + r * C, *e = sm.e.data() + r * C;
      T* g = grad + (begin + r) * C;
      T loss = 0, mass = 0;  // mass = Σ_c w_c t'_c
      for (index_t c = 0; c < C; ++c) {
        const T wt = (weight ? weight[c] : T(1)) * (keep * t[c] + smooth);
        loss += wt * ((sm.m[r] - x[c]) + sm.log_s[r]);
        mass += wt;
      }
      const T p_factor = grad_scale * mass / sm.s[r];
      for (index_t c = 0; c < C; ++c)
        g[c] = e[c] * p_factor - grad_scale * (weight ? weight[c] : T(1)) * (keep * t[c] + smooth);
      if (item_loss) item_loss[begin + r] = loss;
      sum += loss;
    }
    return sum;
  });
}

// Negative log-likelihood on log-probabilities: loss = −w_y·x_y, gradient −w_y at the label, 0 elsewhere.
// Labels must have been validated by check_labels. ok becomes false on a NaN or +inf input (−inf is log 0).
template <typename T>
double nll_labels(const T* input, const std::int64_t* labels, const T* weight, index_t n, index_t classes,
                  std::int64_t ignore_index, T grad_scale, T* grad, T* item_loss, bool& ok) {
  const index_t C = classes;
  return blocked_sum(n, C, ok, [&](index_t begin, index_t end, bool& good) {
    double sum = 0;
    for (index_t i = begin; i < end; ++i) {
      ConstArrayMap<T> x(input + i * C, C);
      ArrayMap<T> g(grad + i * C, C);
      g.setZero();
      // NaN fails every comparison: this is false for NaN and +inf only.
      if (!(x < std::numeric_limits<T>::infinity()).all()) good = false;
      const std::int64_t y = labels[i];
      T loss = 0;
      if (y != ignore_index) {
        const T w_y = weight ? weight[y] : T(1);
        loss = -w_y * x[y];
        g[y] = -grad_scale * w_y;
      }
      if (item_loss) item_loss[i] = loss;
      sum += loss;
    }
    return sum;
  });
}

// ---- element-wise losses (pred and target of the same shape, n elements) ------------------------------------

// Squared error: loss_i = (p_i − t_i)², ∂/∂p_i = 2(p_i − t_i). ok becomes false on a non-finite value.
template <typename T>
double squared_error(const T* pred, const T* target, index_t n, T grad_scale, T* grad, T* item_loss, bool& ok) {
  return blocked_sum(n, 1, ok, [&](index_t begin, index_t end, bool& good) {
    if (!all_finite(pred + begin, end - begin) || !all_finite(target + begin, end - begin)) good = false;
    double sum = 0;
    for (index_t i = begin; i < end; ++i) {
      const T d = pred[i] - target[i];
      grad[i] = T(2) * grad_scale * d;
      if (item_loss) item_loss[i] = d * d;
      sum += d * d;
    }
    return sum;
  });
}

// Binary cross-entropy on probabilities, as PyTorch: logs clamped at −100, so p = 0 or 1 gives a finite loss;
// loss_i = −w_i·(t_i·log p_i + (1−t_i)·log(1−p_i)), ∂/∂p_i = w_i·(p_i − t_i)/max(p_i(1−p_i), 1e−12).
// ok becomes false when a p is outside [0, 1] (NaN included) or a target or weight is not finite.
template <typename T>
double binary_cross_entropy(const T* pred, const T* target, const T* weight, index_t n, T grad_scale, T* grad,
                            T* item_loss, bool& ok) {
  return blocked_sum(n, 1, ok, [&](index_t begin, index_t end, bool& good) {
    double sum = 0;
    for (index_t i = begin; i < end; ++i) {
      const T p = pred[i], t = target[i], w = weight ? weight[i] : T(1);
      if (!(p >= T(0) && p <= T(1)) || !std::isfinite(t) || !std::isfinite(w)) good = false;
      const T log_p = std::max(std::log(p), T(-100));
      const T log_1mp = std::max(std::log1p(-p), T(-100));
      const T loss = -w * (t * log_p + (T(1) - t) * log_1mp);
      grad[i] = grad_scale * w * (p - t) / std::max(p * (T(1) - p), T(1e-12));
      if (item_loss) item_loss[i] = loss;
      sum += loss;
    }
    return sum;
  });
}

// Binary cross-entropy on logits, stable for any finite x (PyTorch's formulation), with pos_weight q:
//   loss = w·((1−t)·x + (1 + (q−1)·t)·softplus(−x)),  softplus(−x) = log1p(exp(−|x|)) + max(−x, 0)
//   ∂/∂x = w·((1−t) − (1 + (q−1)·t)·σ(−x))     (= w·(σ(x) − t) when q = 1)
// ok becomes false on a non-finite logit, target or weight.
template <typename T>
double binary_cross_entropy_with_logits(const T* logits, const T* target, const T* weight, const T* pos_weight,
                                        index_t n, T grad_scale, T* grad, T* item_loss, bool& ok) {
  return blocked_sum(n, 1, ok, [&](index_t begin, index_t end, bool& good) {
    double sum = 0;
    for (index_t i = begin; i < end; ++i) {
      const T x = logits[i], t = target[i];
      const T w = weight ? weight[i] : T(1);
      const T log_weight = pos_weight ? T(1) + (pos_weight[i] - T(1)) * t : T(1);
      if (!std::isfinite(x) || !std::isfinite(t) || !std::isfinite(w) || !std::isfinite(log_weight)) good = false;
      const T e = std::exp(-std::abs(x));                  // in (0, 1]: never overflows
      const T softplus_neg = std::log1p(e) + std::max(-x, T(0));
      const T sigmoid_neg = x >= T(0) ? e / (T(1) + e) : T(1) / (T(1) + e);  // σ(−x)
      const T loss = w * ((T(1) - t) * x + log_weight * softplus_neg);
      grad[i] = grad_scale * w * ((T(1) - t) - log_weight * sigmoid_neg);
      if (item_loss) item_loss[i] = loss;
      sum += loss;
    }
    return sum;
  });
}

// Entry points, compiled once per CPU level (kernels/entry.hpp).
#define FASTNN_LOSSES_ENTRIES(X) X(softmax_cross_entropy_labels) X(softmax_cross_entropy_probs) X(nll_labels) \
  X(squared_error) X(binary_cross_entropy) X(binary_cross_entropy_with_logits)
FASTNN_DECLARE_ENTRIES(FASTNN_LOSSES_ENTRIES)

}  // namespace fastnn
