// Fused optimizer updates: one call updates every parameter tensor of a model (llm.c's "the optimizer is
// one loop"), with torch.optim's single-tensor algorithms written element-wise, in the same operation order
// as PyTorch's CPU kernels (lerp, addcmul, addcdiv), so float32 results agree with PyTorch to rounding.
//
// Threading: below kParallelMinElements in total, one thread walks the tensors in order. Above it, every
// tensor is cut into blocks of kOptimizerBlock elements and an OpenMP loop runs over the blocks. Updates are
// element-wise, the blocks do not depend on the thread count, so results are bitwise identical for any
// number of threads.
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "kernels/entry.hpp"
#include "kernels/parallel.hpp"

namespace fastnn {

constexpr index_t kOptimizerBlock = 1 << 13;  // a multiple of every SIMD width: blocks split no vector

// The tensors of one fused step as raw pointers: tensor k has size[k] elements in param[k] and grad[k],
// state[j][k] is its j-th state buffer (state[j] is empty when the options do not use buffer j), and
// step[k] counts its updates (incremented by every step).
template <typename T>
struct OptimizerTensors {
  std::vector<T*> param;
  std::vector<const T*> grad;
  std::array<std::vector<T*>, 3> state;
  std::vector<index_t> size;
  std::int64_t* step = nullptr;
};

// Calls fn(k, begin, end) on element ranges that together cover every tensor exactly once.
template <typename Fn>
void for_each_range(const std::vector<index_t>& size, Fn&& fn) {
  index_t total = 0;
  for (index_t n : size) total += n;
  if (total < kParallelMinElements) {
    for (std::size_t k = 0; k < size.size(); ++k) fn(static_cast<index_t>(k), index_t(0), size[k]);
    return;
  }
  std::vector<std::array<index_t, 3>> blocks;
  for (std::size_t k = 0; k < size.size(); ++k)
    for (index_t b = 0; b < size[k]; b += kOptimizerBlock)
      blocks.push_back({static_cast<index_t>(k), b, std::min(b + kOptimizerBlock, size[k])});
  const index_t nblocks = static_cast<index_t>(blocks.size());
  parallel_for(nblocks, true, [&](index_t i) { fn(blocks[i][0], blocks[i][1], blocks[i][2]); });
}

// fn(std::true_type) or fn(std::false_type): options become template arguments of the range kernels, so
// their loops are branch-free. (Range kernels take everything by value: values a loop reads through a
// lambda's reference captures could alias its stores, which stops GCC from vectorising.)
template <typename Fn>
void with_flag(bool flag, Fn&& fn) {
  if (flag) fn(std::true_type{});
  else fn(std::false_type{});
}

// torch.lerp(a, b, w): a + w·(b − a) for |w| < 0.5, else b − (b − a)·(1 − w), which is bitwise
// b + (1 − w)·(a − b). Written as from + c·(to − from) with a select of operands, so loops stay vectorisable.
template <typename T>
inline T lerp(T a, T b, T c, bool small) {
  const T from = small ? a : b, to = small ? b : a;
  return from + c * (to - from);
}
// lerp()'s c for weight w, rounded as PyTorch rounds it (in T): w when |w| < 0.5, else 1 − w.
template <typename T>
inline T lerp_coefficient(T w) {
  return std::abs(w) < T(0.5) ? w : T(1) - w;
}

struct SgdOptions {
  double lr, momentum, dampening, weight_decay;
  bool nesterov, maximize;
};

template <typename T>
struct SgdScalars {
  T lr, momentum, keep, wd, sign;  // keep = 1 − dampening; sign = −1 to maximize
  bool nesterov, first;            // first: the momentum buffer becomes the gradient
};

template <bool kDecay, bool kMomentum, typename T>
void sgd_range(T* p, const T* g, T* buf, index_t n, SgdScalars<T> s) {
  for (index_t i = 0; i < n; ++i) {
    T d = g[i] * s.sign;
    if constexpr (kDecay) d = d + s.wd * p[i];
    if constexpr (kMomentum) {
      const T m = s.first ? d : buf[i] * s.momentum + s.keep * d;
      buf[i] = m;
      d = s.nesterov ? d + s.momentum * m : m;
    }
    p[i] = p[i] + (-s.lr) * d;
  }
}

// torch.optim.SGD. state[0]: momentum buffers (when momentum != 0); step[k] == 0 means buffer k is new.
template <typename T>
void sgd_update(OptimizerTensors<T>& t, const SgdOptions& o) {
  const std::size_t n = t.size.size();
  std::vector<char> first(n);
  for (std::size_t k = 0; k < n; ++k) first[k] = t.step[k]++ == 0;
  const SgdScalars<T> base{T(o.lr), T(o.momentum), T(1 - o.dampening), T(o.weight_decay),
                           o.maximize ? T(-1) : T(1), o.nesterov, false};
  for_each_range(t.size, [&](index_t k, index_t b, index_t e) {
    SgdScalars<T> s = base;
    s.first = first[k];
    T* buf = o.momentum != 0 ? t.state[0][k] + b : nullptr;
    with_flag(o.weight_decay != 0, [&](auto decay) {
      with_flag(buf != nullptr, [&](auto momentum) {
        sgd_range<decltype(decay)::value, decltype(momentum)::value>(t.param[k] + b, t.grad[k] + b, buf, e - b, s);
      });
    });
  });
}

struct AdamOptions {
  double lr, beta1, beta2, eps, weight_decay;
  bool amsgrad, maximize, decoupled;  // decoupled: AdamW's p ← p·(1 − lr·wd) instead of g ← g + wd·p
};

template <typename T>
struct AdamScalars {
  T neg_step, bias2_sqrt;  // −lr/(1 − β1ᵗ) and √(1 − β2ᵗ), per tensor
  T c1, beta2, w2, eps, wd, shrink, sign;
  bool small_w1;
};

template <bool kDecay, bool kAmsgrad, typename T>
void adam_range(T* p, const T* g, T* m, T* v, T* vmax, index_t n, AdamScalars<T> s) {
  for (index_t i = 0; i < n; ++i) {
    T d = g[i] * s.sign;
    if constexpr (kDecay) d = d + s.wd * p[i];
    const T mi = lerp(m[i], d, s.c1, s.small_w1);
    T vi = v[i] * s.beta2 + s.w2 * d * d;
    m[i] = mi;
    v[i] = vi;
    if constexpr (kAmsgrad) {
      vi = std::max(vmax[i], vi);
      vmax[i] = vi;
    }
    const T denom = std::sqrt(vi) / s.bias2_sqrt + s.eps;
    p[i] = p[i] * s.shrink + s.neg_step * mi / denom;
  }
}

// torch.optim.Adam / AdamW. state: exp_avg, exp_avg_sq, max_exp_avg_sq (amsgrad only).
template <typename T>
void adam_update(OptimizerTensors<T>& t, const AdamOptions& o) {
  const std::size_t n = t.size.size();
  std::vector<T> neg_step(n), bias2_sqrt(n);
  for (std::size_t k = 0; k < n; ++k) {
    const double step = static_cast<double>(++t.step[k]);
    neg_step[k] = -T(o.lr / (1 - std::pow(o.beta1, step)));
    bias2_sqrt[k] = T(std::sqrt(1 - std::pow(o.beta2, step)));
  }
  const T w1 = T(1 - o.beta1);
  // AdamW's p·(1 − lr·wd); ×1 is exact, so Adam (and AdamW with wd = 0) multiplies by 1.
  const T shrink = o.decoupled && o.weight_decay != 0 ? T(1 - o.lr * o.weight_decay) : T(1);
  const AdamScalars<T> base{T(0), T(0), lerp_coefficient(w1), T(o.beta2), T(1 - o.beta2), T(o.eps),
                            T(o.weight_decay), shrink, o.maximize ? T(-1) : T(1), std::abs(w1) < T(0.5)};
  for_each_range(t.size, [&](index_t k, index_t b, index_t e) {
    AdamScalars<T> s = base;
    s.neg_step = neg_step[k];
    s.bias2_sqrt = bias2_sqrt[k];
    T* vmax = o.amsgrad ? t.state[2][k] + b : nullptr;
    with_flag(o.weight_decay != 0 && !o.decoupled, [&](auto decay) {
      with_flag(o.amsgrad, [&](auto amsgrad) {
        adam_range<decltype(decay)::value, decltype(amsgrad)::value>(
            t.param[k] + b, t.grad[k] + b, t.state[0][k] + b, t.state[1][k] + b, vmax, e - b, s);
      });
    });
  });
}

struct RmspropOptions {
  double lr, alpha, eps, weight_decay, momentum;
  bool centered, maximize;
};

template <typename T>
struct RmspropScalars {
  T lr, alpha, w, c, eps, wd, momentum, sign;  // w = 1 − α, c its lerp coefficient
  bool small_w;
};

template <bool kDecay, bool kCentered, bool kMomentum, typename T>
void rmsprop_range(T* p, const T* g, T* sq, T* buf, T* ga, index_t n, RmspropScalars<T> s) {
  for (index_t i = 0; i < n; ++i) {
    T d = g[i] * s.sign;
    if constexpr (kDecay) d = d + s.wd * p[i];
    const T sqi = sq[i] * s.alpha + s.w * d * d;
    sq[i] = sqi;
    T avg;
    if constexpr (kCentered) {
      const T a = lerp(ga[i], d, s.c, s.small_w);
      ga[i] = a;
      avg = std::sqrt(sqi + T(-1) * a * a) + s.eps;
    } else {
      avg = std::sqrt(sqi) + s.eps;
    }
    if constexpr (kMomentum) {
      const T bi = buf[i] * s.momentum + d / avg;
      buf[i] = bi;
      p[i] = p[i] + (-s.lr) * bi;
    } else {
      p[i] = p[i] + (-s.lr) * d / avg;
    }
  }
}

// torch.optim.RMSprop. state: square_avg, momentum_buffer (momentum > 0), grad_avg (centered).
template <typename T>
void rmsprop_update(OptimizerTensors<T>& t, const RmspropOptions& o) {
  for (std::size_t k = 0; k < t.size.size(); ++k) ++t.step[k];
  const T w = T(1 - o.alpha);
  const RmspropScalars<T> s{T(o.lr), T(o.alpha), w, lerp_coefficient(w), T(o.eps), T(o.weight_decay),
                            T(o.momentum), o.maximize ? T(-1) : T(1), std::abs(w) < T(0.5)};
  for_each_range(t.size, [&](index_t k, index_t b, index_t e) {
    T* buf = o.momentum > 0 ? t.state[1][k] + b : nullptr;
    T* ga = o.centered ? t.state[2][k] + b : nullptr;
    with_flag(o.weight_decay != 0, [&](auto decay) {
      with_flag(o.centered, [&](auto centered) {
        with_flag(buf != nullptr, [&](auto momentum) {
          rmsprop_range<decltype(decay)::value, decltype(centered)::value, decltype(momentum)::value>(
              t.param[k] + b, t.grad[k] + b, t.state[0][k] + b, buf, ga, e - b, s);
        });
      });
    });
  });
}

struct AdagradOptions {
  double lr, lr_decay, weight_decay, eps;
  bool maximize;
};

template <bool kDecay, typename T>
void adagrad_range(T* p, const T* g, T* sum, index_t n, T neg_clr, T eps, T wd, T sign) {
  for (index_t i = 0; i < n; ++i) {
    T d = g[i] * sign;
    if constexpr (kDecay) d = d + wd * p[i];
    const T s = sum[i] + d * d;
    sum[i] = s;
    p[i] = p[i] + neg_clr * d / (std::sqrt(s) + eps);
  }
}

// torch.optim.Adagrad. state[0]: sum of squared gradients (starts at initial_accumulator_value).
template <typename T>
void adagrad_update(OptimizerTensors<T>& t, const AdagradOptions& o) {
  const std::size_t n = t.size.size();
  std::vector<T> neg_clr(n);
  for (std::size_t k = 0; k < n; ++k) {
    const double step = static_cast<double>(++t.step[k]);
    neg_clr[k] = -T(o.lr / (1 + (step - 1) * o.lr_decay));
  }
  const T eps = T(o.eps), wd = T(o.weight_decay), sign = o.maximize ? T(-1) : T(1);
  for_each_range(t.size, [&](index_t k, index_t b, index_t e) {
    with_flag(o.weight_decay != 0, [&](auto decay) {
      adagrad_range<decltype(decay)::value>(t.param[k] + b, t.grad[k] + b, t.state[0][k] + b, e - b, neg_clr[k],
                                            eps, wd, sign);
    });
  });
}

struct RpropOptions {
  double eta_minus, eta_plus, step_size_min, step_size_max;
  bool maximize;
};

template <typename T>
void rprop_range(T* p, const T* g, T* prev, T* step, index_t n, T eta_minus, T eta_plus, T lo, T hi, T sign) {
  for (index_t i = 0; i < n; ++i) {
    T d = g[i] * sign;
    const T prod = d * prev[i];
    const T factor = prod > 0 ? eta_plus : (prod < 0 ? eta_minus : T(1));
    T s = step[i] * factor;
    s = s < lo ? lo : (s > hi ? hi : s);  // NaN stays NaN, like torch.clamp
    step[i] = s;
    if (factor == eta_minus) d = T(0);
    const T sgn = T(d > 0) - T(d < 0);
    p[i] = p[i] + T(-1) * sgn * s;
    prev[i] = d;
  }
}

// torch.optim.Rprop. state: prev (last gradient, zeroed where its sign flipped), step_size (starts at lr).
// sign() is 0 for NaN as in PyTorch, so a NaN gradient leaves the parameter and its step size unchanged.
template <typename T>
void rprop_update(OptimizerTensors<T>& t, const RpropOptions& o) {
  for (std::size_t k = 0; k < t.size.size(); ++k) ++t.step[k];
  const T eta_minus = T(o.eta_minus), eta_plus = T(o.eta_plus), lo = T(o.step_size_min), hi = T(o.step_size_max);
  const T sign = o.maximize ? T(-1) : T(1);
  for_each_range(t.size, [&](index_t k, index_t b, index_t e) {
    rprop_range(t.param[k] + b, t.grad[k] + b, t.state[0][k] + b, t.state[1][k] + b, e - b, eta_minus, eta_plus, lo,
                hi, sign);
  });
}

// Entry points, compiled once per CPU level (kernels/entry.hpp).
#define FASTNN_OPTIMIZERS_ENTRIES(X) X(sgd_update) X(adam_update) X(rmsprop_update) X(adagrad_update) \
  X(rprop_update)
FASTNN_DECLARE_ENTRIES(FASTNN_OPTIMIZERS_ENTRIES)

}  // namespace fastnn
