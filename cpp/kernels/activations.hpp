// Activations: element-wise forward/derivative, softmax/log-softmax along an axis,
// PReLU (shared or per channel) and the max over maxout pieces. Row-major raw pointers, float or double.
//
// Element-wise loops run over fixed blocks of Eigen packets (AVX2: 8 floats, 4 doubles): Eigen array
// expressions where Eigen vectorises the whole function, explicit packet code (packet_map) for piecewise
// functions and where Eigen 3.4 falls back to scalar code. Blocks go to OpenMP threads only above
// kParallelMinElements. Derivatives at a kink take the left limit (ReLU'(0) = 0).
// Reductions (softmax sums, PReLU's weight gradient) add partials in a fixed order, so results do not
// depend on the thread count.
#pragma once
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "kernels/entry.hpp"
#include "kernels/packet_map.hpp"
#include "kernels/parallel.hpp"
#include "kernels/reductions.hpp"

namespace fastnn {

// Two scalar parameters a, b per kind:
enum class Activation : int {
  relu,         // x > 0 ? min(x, b) : a·x          (a: negative slope, b: cap, +inf for none)
  threshold,    // x <= a ? b : x                    (a: threshold, b: value)
  elu,          // b·(x > 0 ? x : a·(eˣ − 1))        (a: alpha, b: scale; ELU b=1, SELU b=λ)
  sigmoid,      // 1 / (1 + e⁻ˣ)                     derivative from the output: y(1 − y)
  hardsigmoid,  // 0 for x < −2.5, 1 for x > 2.5, else 0.2x + 0.5
  tanh,         // derivative from the output: 1 − y²
  softplus,     // log(1 + e^(a·x)) / a, x where a·x > b   (a: beta, b: threshold)
  softsign,     // x / (1 + |x|)
  silu,         // x·σ(x)
  gelu,         // x·Φ(x) (a = 0), or PyTorch's tanh form 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³))) (a = 1)
};

// One element-wise activation with its parameters: a step of the fused inference paths.
struct ActivationStep {
  Activation kind;
  double a, b;
};

// Whether activation_backward wants the forward output (true) or the forward input (false).
inline bool activation_backward_uses_output(Activation kind) {
  return kind == Activation::sigmoid || kind == Activation::tanh;
}

namespace detail {

template <typename T>
using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
template <typename T>
using ArrMap = Eigen::Map<Arr<T>>;
template <typename T>
using ConstArrMap = Eigen::Map<const Arr<T>>;

constexpr index_t kBlock = 4096;  // elements per work item: x, y and dy of a block fit in L1/L2

// fn(begin, count) over [0, n) in blocks; threaded only for large n. Small n never enters an OpenMP region
// (even an if(false) one costs about a microsecond: the fused conv block calls this once per image).
template <typename Fn>
void for_each_block(index_t n, Fn&& fn) {
  const index_t blocks = (n + kBlock - 1) / kBlock;
  parallel_for(blocks, n > kParallelMinElements, [&](index_t b) {
    const index_t begin = b * kBlock;
    fn(begin, std::min(kBlock, n - begin));
  });
}

template <typename T, int N>
struct InverseFactorials {  // 1/k! for k = 0..N
  T v[N + 1];
  constexpr InverseFactorials() : v() {
    v[0] = 1;
    for (int k = 1; k <= N; ++k) v[k] = v[k - 1] / T(k);
  }
};

// eˣ − 1 on packets with full relative accuracy near 0: eˣ − 1 where |x| ≥ 0.5 (no cancellation there),
// its Taylor series below (remainder under the unit roundoff). Eigen 3.4's expm1 is 8× slower in float
// (it goes through log) and scalar in double.
template <typename P>
P expm1(const P& x) {
  namespace pk = Eigen::internal;
  using T = typename pk::unpacket_traits<P>::type;
  constexpr int terms = sizeof(T) == 4 ? 8 : 16;
  static constexpr InverseFactorials<T, terms> c{};
  P poly = pk::pset1<P>(c.v[terms]);
  for (int k = terms - 1; k >= 1; --k) poly = pk::pmadd(poly, x, pk::pset1<P>(c.v[k]));
  const P small = pk::pmul(poly, x);
  const P large = pk::psub(pk::pexp(x), pk::pset1<P>(T(1)));
  return pk::pselect(pk::pcmp_lt(pk::pabs(x), pk::pset1<P>(T(0.5))), small, large);
}

// log(1 + eᶻ) = max(z, 0) + log1p(e^−|z|): never overflows, exact for very negative z. (Eigen's generic
// log1p goes through log, which Eigen vectorises for float and double alike.)
template <typename P>
P softplus(const P& z) {
  namespace pk = Eigen::internal;
  return pk::padd(pk::pmax(z, pk::pzero(z)), pk::generic_plog1p(pk::pexp(pk::pnegate(pk::pabs(z)))));
}

// The standard normal CDF Φ(x) in float packets, with relative error about 1e-7 on both tails: Φ(x) =
// erfc(−x/√2)/2, erfc(z) for z ≥ 0 from the Chebyshev-fitted form t·exp(−z² + c(t)), t = 1/(1 + z/2),
// whose fractional error stays under 1.2e-7 for every z (Numerical Recipes' erfcc), and Φ(x) = 1 − Φ(−x)
// for x > 0. (Double precision goes through std::erfc element by element: full accuracy for the oracles.)
template <typename P>
P normal_cdf(const P& x) {
  namespace pk = Eigen::internal;
  using T = typename pk::unpacket_traits<P>::type;
  static constexpr T c[10] = {T(-1.26551223), T(1.00002368), T(0.37409196), T(0.09678418), T(-0.18628806),
                              T(0.27886807), T(-1.13520398), T(1.48851587), T(-0.82215223), T(0.17087277)};
  const P z = pk::pmul(pk::pabs(x), pk::pset1<P>(T(0.70710678118654752)));
  const P t = pk::pdiv(pk::pset1<P>(T(1)), pk::pmadd(z, pk::pset1<P>(T(0.5)), pk::pset1<P>(T(1))));
  P poly = pk::pset1<P>(c[9]);
  for (int k = 8; k >= 0; --k) poly = pk::pmadd(poly, t, pk::pset1<P>(c[k]));
  const P half_erfc = pk::pmul(pk::pset1<P>(T(0.5)), pk::pmul(t, pk::pexp(pk::psub(poly, pk::pmul(z, z)))));
  return pk::pselect(pk::pcmp_lt(pk::pzero(x), x), pk::psub(pk::pset1<P>(T(1)), half_erfc), half_erfc);
}

constexpr double kSqrt2OverPi = 0.79788456080286535588;  // √(2/π)
constexpr double kGeluCubic = 0.044715;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;   // 1/√(2π)

// e^(−2u) for the tanh form of GELU, u = √(2/π)(x + 0.044715x³); the exponent is capped below the overflow
// point (where σ(2u) is far under any float's resolution of the result) so that e·σ never becomes inf·0.
template <typename P>
P gelu_tanh_exp(const P& v) {
  namespace pk = Eigen::internal;
  using T = typename pk::unpacket_traits<P>::type;
  const P u = pk::pmul(pk::pset1<P>(T(kSqrt2OverPi)), pk::pmadd(pk::pmul(pk::pset1<P>(T(kGeluCubic)), v), pk::pmul(v, v), v));
  return pk::pexp(pk::pmin(pk::pmul(pk::pset1<P>(T(-2)), u), pk::pset1<P>(T(sizeof(T) == 4 ? 87 : 700))));
}

template <typename P>
P gelu_tanh_sigmoid(const P& v) {  // σ(2u)
  namespace pk = Eigen::internal;
  using T = typename pk::unpacket_traits<P>::type;
  return pk::pdiv(pk::pset1<P>(T(1)), pk::padd(pk::pset1<P>(T(1)), gelu_tanh_exp(v)));
}

// GELU forward and backward, in packets (float) or elements (double, where Φ comes from std::erfc).
template <typename T>
void gelu_forward(const T* x, T* y, index_t m, bool tanh_form) {
  namespace pk = Eigen::internal;
  if (tanh_form) {  // 0.5·x·(1 + tanh u) = x·σ(2u): no cancellation in 1 + tanh u for negative x
    packet_map(m, y, [](auto v) { return pk::pmul(v, gelu_tanh_sigmoid(v)); }, x);
  } else if constexpr (sizeof(T) == 4) {
    packet_map(m, y, [](auto v) { return pk::pmul(v, normal_cdf(v)); }, x);
  } else {
    for (index_t i = 0; i < m; ++i) y[i] = x[i] * T(0.5) * std::erfc(-x[i] * T(0.70710678118654752440));
  }
}

template <typename T>
void gelu_backward(const T* x, const T* dy, T* dx, index_t m, bool tanh_form) {
  namespace pk = Eigen::internal;
  if (tanh_form) {
    packet_map(m, dx, [](auto v, auto g) {  // s + 2x·s(1 − s)·u′ with s = σ(2u), 1 − s = e·s, e = e^(−2u)
      const auto x2 = pk::pmul(v, v);
      const auto e = gelu_tanh_exp(v);
      const auto s = pk::pdiv(splat(v, T(1)), pk::padd(splat(v, T(1)), e));
      const auto du2 = pk::pmul(splat(v, T(2 * kSqrt2OverPi)), pk::pmadd(splat(v, T(3 * kGeluCubic)), x2, splat(v, T(1))));
      return pk::pmul(g, pk::pmadd(pk::pmul(v, du2), pk::pmul(s, pk::pmul(e, s)), s));
    }, x, dy);
  } else if constexpr (sizeof(T) == 4) {
    packet_map(m, dx, [](auto v, auto g) {  // Φ(x) + x·φ(x)
      const auto pdf = pk::pmul(splat(v, T(kInvSqrt2Pi)), pk::pexp(pk::pmul(splat(v, T(-0.5)), pk::pmul(v, v))));
      return pk::pmul(g, pk::pmadd(v, pdf, normal_cdf(v)));
    }, x, dy);
  } else {
    for (index_t i = 0; i < m; ++i) {
      const T v = x[i];
      const T cdf = T(0.5) * std::erfc(-v * T(0.70710678118654752440));
      dx[i] = dy[i] * (cdf + v * T(kInvSqrt2Pi) * std::exp(T(-0.5) * v * v));
    }
  }
}

}  // namespace detail

template <typename T>
void activation_forward(Activation kind, const T* x, T* y, index_t n, T a, T b) {
  namespace pk = Eigen::internal;
  using detail::ArrMap;
  using detail::ConstArrMap;
  using detail::packet_map;
  using detail::splat;
  auto run = [&](auto&& body) { detail::for_each_block(n, body); };
  switch (kind) {
    case Activation::relu:
      run([&](index_t s, index_t m) {
        packet_map(m, y + s, [a, b](auto v) {
          // a·x + 0: a zero slope gives +0 for negative x, as PyTorch's relu does, not 0·x = −0
          const auto below = pk::padd(pk::pmul(splat(v, a), v), splat(v, T(0)));
          return pk::pselect(pk::pcmp_lt(splat(v, T(0)), v), pk::pmin(v, splat(v, b)), below);
        }, x + s);
      });
      break;
    case Activation::threshold:
      run([&](index_t s, index_t m) {
        packet_map(m, y + s, [a, b](auto v) { return pk::pselect(pk::pcmp_le(v, splat(v, a)), splat(v, b), v); },
                   x + s);  // PyTorch's form x <= θ ? value : x, which keeps NaN
      });
      break;
    case Activation::hardsigmoid:
      run([&](index_t s, index_t m) {
        // Clamping 0.2x + 0.5 to [0, 1] is the piecewise form, and keeps rounding at ±2.5 (0.2 is inexact)
        // from leaving [0, 1].
        packet_map(m, y + s, [](auto v) {
          const auto linear = pk::pmadd(splat(v, T(0.2)), v, splat(v, T(0.5)));
          return pk::pmin(pk::pmax(linear, splat(v, T(0))), splat(v, T(1)));
        }, x + s);
      });
      break;
    case Activation::softsign:
      run([&](index_t s, index_t m) {
        ConstArrMap<T> X(x + s, m);
        ArrMap<T>(y + s, m) = X / (T(1) + X.abs());
      });
      break;
    case Activation::elu:
      run([&](index_t s, index_t m) {
        packet_map(m, y + s, [a, b](auto v) {  // min(x, 0) keeps exp from overflowing on the unused side
          const auto neg = pk::pmul(splat(v, a * b), detail::expm1(pk::pmin(v, splat(v, T(0)))));
          return pk::pselect(pk::pcmp_lt(splat(v, T(0)), v), pk::pmul(splat(v, b), v), neg);
        }, x + s);
      });
      break;
    case Activation::sigmoid:
      run([&](index_t s, index_t m) {
        // e⁻ˣ overflowing to inf for very negative x gives 1/inf = 0: no NaN either way.
        packet_map(m, y + s, [](auto v) {
          return pk::pdiv(splat(v, T(1)), pk::padd(splat(v, T(1)), pk::pexp(pk::pnegate(v))));
        }, x + s);
      });
      break;
    case Activation::tanh:
      if constexpr (sizeof(T) == 4) {  // Eigen vectorises float tanh only
        run([&](index_t s, index_t m) { packet_map(m, y + s, [](auto v) { return pk::ptanh(v); }, x + s); });
      } else {
        run([&](index_t s, index_t m) {
          packet_map(m, y + s, [](auto v) {  // tanh|x| = −e/(2 + e) with e = expm1(−2|x|) ∈ (−1, 0]
            const auto e = detail::expm1(pk::pmul(splat(v, T(-2)), pk::pabs(v)));
            const auto t = pk::pdiv(pk::pnegate(e), pk::padd(splat(v, T(2)), e));
            return pk::pselect(pk::pcmp_lt(v, splat(v, T(0))), pk::pnegate(t), t);
          }, x + s);
        });
      }
      break;
    case Activation::softplus:
      run([&](index_t s, index_t m) {
        packet_map(m, y + s, [a, b](auto v) {  // linear above the threshold
          const auto z = pk::pmul(splat(v, a), v);
          return pk::pselect(pk::pcmp_lt(splat(v, b), z), v, pk::pdiv(detail::softplus(z), splat(v, a)));
        }, x + s);
      });
      break;
    case Activation::silu:
      run([&](index_t s, index_t m) {
        packet_map(m, y + s, [](auto v) {
          return pk::pdiv(v, pk::padd(splat(v, T(1)), pk::pexp(pk::pnegate(v))));
        }, x + s);
      });
      break;
    case Activation::gelu:
      run([&](index_t s, index_t m) { detail::gelu_forward(x + s, y + s, m, a != T(0)); });
      break;
  }
}

// dx = dy ⊙ f'(·). `saved` is the forward output for sigmoid and tanh, the forward input otherwise.
template <typename T>
void activation_backward(Activation kind, const T* saved, const T* dy, T* dx, index_t n, T a, T b) {
  namespace pk = Eigen::internal;
  using detail::ArrMap;
  using detail::ConstArrMap;
  using detail::packet_map;
  using detail::splat;
  const T* x = saved;
  auto run = [&](auto&& body) { detail::for_each_block(n, body); };
  switch (kind) {
    case Activation::relu:
      run([&](index_t s, index_t m) {
        packet_map(m, dx + s, [a, b](auto v, auto g) {
          const auto pass = pk::pandnot(g, pk::pcmp_lt(splat(v, b), v));  // 0 above the cap, 1 at it
          return pk::pselect(pk::pcmp_lt(splat(v, T(0)), v), pass, pk::pmul(splat(v, a), g));
        }, x + s, dy + s);
      });
      break;
    case Activation::threshold:
      run([&](index_t s, index_t m) {
        packet_map(m, dx + s, [a](auto v, auto g) { return pk::pand(g, pk::pcmp_lt(splat(v, a), v)); }, x + s,
                   dy + s);
      });
      break;
    case Activation::hardsigmoid:
      run([&](index_t s, index_t m) {
        packet_map(m, dx + s, [](auto v, auto g) {
          const auto inside = pk::pand(pk::pcmp_lt(splat(v, T(-2.5)), v), pk::pcmp_le(v, splat(v, T(2.5))));
          return pk::pand(pk::pmul(splat(v, T(0.2)), g), inside);
        }, x + s, dy + s);
      });
      break;
    case Activation::softsign:
      run([&](index_t s, index_t m) {
        ConstArrMap<T> X(x + s, m), G(dy + s, m);
        ArrMap<T>(dx + s, m) = G / (T(1) + X.abs()).square();
      });
      break;
    case Activation::elu:
      run([&](index_t s, index_t m) {
        // From x, not y + a·b: that difference cancels catastrophically for very negative x.
        packet_map(m, dx + s, [a, b](auto v, auto g) {
          const auto neg = pk::pmul(pk::pmul(splat(v, a * b), pk::pexp(pk::pmin(v, splat(v, T(0))))), g);
          return pk::pselect(pk::pcmp_lt(splat(v, T(0)), v), pk::pmul(splat(v, b), g), neg);
        }, x + s, dy + s);
      });
      break;
    case Activation::sigmoid:
      run([&](index_t s, index_t m) {
        ConstArrMap<T> Y(saved + s, m), G(dy + s, m);
        ArrMap<T>(dx + s, m) = G * Y * (T(1) - Y);
      });
      break;
    case Activation::tanh:
      run([&](index_t s, index_t m) {
        ConstArrMap<T> Y(saved + s, m), G(dy + s, m);
        ArrMap<T>(dx + s, m) = G * (T(1) - Y.square());
      });
      break;
    case Activation::softplus:
      run([&](index_t s, index_t m) {
        packet_map(m, dx + s, [a, b](auto v, auto g) {  // g·σ(z), g above the threshold
          const auto z = pk::pmul(splat(v, a), v);
          const auto sig = pk::pdiv(g, pk::padd(splat(v, T(1)), pk::pexp(pk::pnegate(z))));
          return pk::pselect(pk::pcmp_lt(splat(v, b), z), g, sig);
        }, x + s, dy + s);
      });
      break;
    case Activation::silu:
      run([&](index_t s, index_t m) {
        ConstArrMap<T> X(x + s, m), G(dy + s, m);
        const detail::Arr<T> S = T(1) / (T(1) + (-X).exp());  // σ(x), used twice
        ArrMap<T>(dx + s, m) = G * S * (T(1) + X * (T(1) - S));
      });
      break;
    case Activation::gelu:
      run([&](index_t s, index_t m) { detail::gelu_backward(x + s, dy + s, dx + s, m, a != T(0)); });
      break;
  }
}

// ---- softmax / log-softmax over the middle axis of a [outer, dim, inner] array -----------------------

namespace detail {

constexpr index_t kSoftmaxColumns = 256;  // inner positions handled together when the axis is strided

// Runs fn(offset, width) over work items: one per row when inner == 1, else blocks of inner columns.
template <typename Fn>
void for_each_softmax_item(index_t outer, index_t dim, index_t inner, Fn&& fn) {
  const index_t width = inner == 1 ? 1 : std::min(inner, kSoftmaxColumns);
  const index_t chunks = (inner + width - 1) / width;
  const index_t items = outer * chunks;
  parallel_for(items, outer * dim * inner > kParallelMinElements, [&](index_t u) {
    const index_t o = u / chunks, j0 = (u % chunks) * width;
    fn(o * dim * inner + j0, std::min(width, inner - j0));
  });
}

}  // namespace detail

// Numerically stable: subtracts the maximum along the axis before exponentiating.
// exp and log go through packet_map, never Eigen array expressions on these unaligned buffers: Eigen peels
// unaligned heads through scalar std::exp, which differs from its vector exp in the last bit, so results
// would depend on where the array sits in memory. Sums are plain loops in a fixed order.
template <typename T>
void softmax_forward(const T* x, T* y, index_t outer, index_t dim, index_t inner, bool log) {
  namespace pk = Eigen::internal;
  using detail::packet_map;
  using detail::splat;
  if (outer == 0 || dim == 0 || inner == 0) return;
  detail::for_each_softmax_item(outer, dim, inner, [&](index_t off, index_t w) {
    if (inner == 1) {  // contiguous row
      const T* xr = x + off;
      T* yr = y + off;
      const T mx = detail::fixed_order_max(xr, dim);
      packet_map(dim, yr, [mx](const auto& v) { return pk::pexp(pk::psub(v, splat(v, mx))); }, xr);
      const T sum = detail::fixed_order_sum(yr, dim);
      if (log) {
        const T lse = mx + std::log(sum);
        for (index_t i = 0; i < dim; ++i) yr[i] = xr[i] - lse;
      } else {
        const T inv = T(1) / sum;
        for (index_t i = 0; i < dim; ++i) yr[i] *= inv;
      }
      return;
    }
    // Strided axis: w columns at a time, each row of the block contiguous, so loops vectorise over columns.
    T mx[detail::kSoftmaxColumns], sum[detail::kSoftmaxColumns];
    std::copy(x + off, x + off + w, mx);
    for (index_t d = 1; d < dim; ++d)
      for (index_t j = 0; j < w; ++j) mx[j] = std::max(mx[j], x[off + d * inner + j]);
    std::fill(sum, sum + w, T(0));
    for (index_t d = 0; d < dim; ++d) {
      T* yr = y + off + d * inner;
      packet_map(w, yr, [](const auto& v, const auto& m) { return pk::pexp(pk::psub(v, m)); },
                 x + off + d * inner, static_cast<const T*>(mx));
      for (index_t j = 0; j < w; ++j) sum[j] += yr[j];
    }
    if (log) {
      packet_map(w, sum, [](const auto& s, const auto& m) { return pk::padd(m, pk::plog(s)); },
                 static_cast<const T*>(sum), static_cast<const T*>(mx));  // sum now holds log-sum-exp
      for (index_t d = 0; d < dim; ++d)
        for (index_t j = 0; j < w; ++j) y[off + d * inner + j] = x[off + d * inner + j] - sum[j];
    } else {
      for (index_t j = 0; j < w; ++j) sum[j] = T(1) / sum[j];
      for (index_t d = 0; d < dim; ++d)
        for (index_t j = 0; j < w; ++j) y[off + d * inner + j] *= sum[j];
    }
  });
}

// softmax: dx = y ⊙ (dy − Σ dy⊙y); log-softmax: dx = dy − eʸ·Σ dy. y is the forward output.
template <typename T>
void softmax_backward(const T* y, const T* dy, T* dx, index_t outer, index_t dim, index_t inner, bool log) {
  namespace pk = Eigen::internal;
  using detail::packet_map;
  using detail::splat;
  if (outer == 0 || dim == 0 || inner == 0) return;
  detail::for_each_softmax_item(outer, dim, inner, [&](index_t off, index_t w) {
    if (inner == 1) {  // contiguous row; see softmax_forward for why exp goes through packet_map
      const T *yr = y + off, *gr = dy + off;
      T* dr = dx + off;
      if (log) {
        const T sum = detail::fixed_order_sum(gr, dim);
        packet_map(dim, dr, [sum](const auto& g, const auto& v) { return pk::psub(g, pk::pmul(pk::pexp(v), splat(v, sum))); },
                   gr, yr);
      } else {
        const T sum = detail::fixed_order_dot(gr, yr, dim);
        for (index_t i = 0; i < dim; ++i) dr[i] = yr[i] * (gr[i] - sum);
      }
      return;
    }
    T sum[detail::kSoftmaxColumns];
    std::fill(sum, sum + w, T(0));
    for (index_t d = 0; d < dim; ++d) {
      const T *gr = dy + off + d * inner, *yr = y + off + d * inner;
      if (log)
        for (index_t j = 0; j < w; ++j) sum[j] += gr[j];
      else
        for (index_t j = 0; j < w; ++j) sum[j] += gr[j] * yr[j];
    }
    for (index_t d = 0; d < dim; ++d) {
      const T *gr = dy + off + d * inner, *yr = y + off + d * inner;
      T* dr = dx + off + d * inner;
      if (log)
        packet_map(w, dr, [](const auto& g, const auto& v, const auto& s) { return pk::psub(g, pk::pmul(pk::pexp(v), s)); },
                   gr, yr, static_cast<const T*>(sum));
      else
        for (index_t j = 0; j < w; ++j) dr[j] = yr[j] * (gr[j] - sum[j]);
    }
  });
}

// ---- PReLU: y = x > 0 ? x : w_c·x over [outer, channels, inner]; channels == 1 means one shared weight ----

template <typename T>
void prelu_forward(const T* x, const T* weight, T* y, index_t outer, index_t channels, index_t inner) {
  if (channels == 1) {
    const T w = weight[0];
    activation_forward(Activation::relu, x, y, outer * inner, w, std::numeric_limits<T>::infinity());
    return;
  }
  const index_t rows = outer * channels;
  parallel_for(rows, rows * inner > kParallelMinElements, [&](index_t r) {
    const T w = weight[r % channels];
    const T* xs = x + r * inner;
    T* ys = y + r * inner;
#pragma omp simd
    for (index_t i = 0; i < inner; ++i) ys[i] = xs[i] > T(0) ? xs[i] : w * xs[i];
  });
}

namespace detail {

// dx over one contiguous segment of a single channel (if dx is non-null); returns Σ dy·x over x ≤ 0.
template <typename T>
T prelu_segment_backward(const T* x, const T* dy, T* dx, T w, index_t m, bool want_weight) {
  T acc = 0;
  if (dx) {
#pragma omp simd
    for (index_t i = 0; i < m; ++i) dx[i] = x[i] > T(0) ? dy[i] : w * dy[i];
  }
  if (want_weight) {
#pragma omp simd reduction(+ : acc)
    for (index_t i = 0; i < m; ++i) acc += x[i] > T(0) ? T(0) : dy[i] * x[i];
  }
  return acc;
}

}  // namespace detail

// dx (may be null) and grad_weight += ∂L/∂w (may be null). Partial sums are added in a fixed order.
template <typename T>
void prelu_backward(const T* x, const T* weight, const T* dy, T* dx, T* grad_weight, index_t outer,
                    index_t channels, index_t inner) {
  const bool want_weight = grad_weight != nullptr;
  const index_t n = outer * channels * inner;
  if (channels == 1) {
    const index_t blocks = (n + detail::kBlock - 1) / detail::kBlock;
    std::vector<T> partial(static_cast<size_t>(blocks), T(0));
    parallel_for(blocks, n > kParallelMinElements, [&](index_t blk) {
      const index_t s = blk * detail::kBlock, m = std::min(detail::kBlock, n - s);
      partial[blk] = detail::prelu_segment_backward(x + s, dy + s, dx ? dx + s : nullptr, weight[0], m, want_weight);
    });
    if (want_weight)
      for (T p : partial) grad_weight[0] += p;
    return;
  }
  // Per channel: the batch is split into a fixed number of chunks, each with its own row of partials.
  const index_t chunks = std::max<index_t>(1, std::min<index_t>(outer, 64));
  std::vector<T> partial(want_weight ? static_cast<size_t>(chunks * channels) : 0, T(0));
  parallel_for(chunks, n > kParallelMinElements, [&](index_t k) {
    const index_t o0 = outer * k / chunks, o1 = outer * (k + 1) / chunks;
    for (index_t o = o0; o < o1; ++o)
      for (index_t c = 0; c < channels; ++c) {
        const index_t s = (o * channels + c) * inner;
        const T p = detail::prelu_segment_backward(x + s, dy + s, dx ? dx + s : nullptr, weight[c], inner,
                                                   want_weight);
        if (want_weight) partial[k * channels + c] += p;
      }
  });
  if (want_weight)
    for (index_t k = 0; k < chunks; ++k)
      for (index_t c = 0; c < channels; ++c) grad_weight[c] += partial[k * channels + c];
}

// ---- maxout: max over consecutive groups of `pieces` values (z [rows, pieces] -> y [rows]) ------------------

template <typename T>
void maxout_forward(const T* z, T* y, std::int32_t* argmax, index_t rows, index_t pieces) {
  parallel_for(rows, rows * pieces > kParallelMinElements, [&](index_t r) {
    const T* zr = z + r * pieces;
    std::int32_t best = 0;
    for (index_t p = 1; p < pieces; ++p)
      if (zr[p] > zr[best]) best = static_cast<std::int32_t>(p);  // first maximum wins ties
    y[r] = zr[best];
    argmax[r] = best;
  });
}

// dz [rows, pieces]: dy routed to each group's argmax, zeros elsewhere.
template <typename T>
void maxout_backward(const T* dy, const std::int32_t* argmax, T* dz, index_t rows, index_t pieces) {
  parallel_for(rows, rows * pieces > kParallelMinElements, [&](index_t r) {
    T* dr = dz + r * pieces;
    for (index_t p = 0; p < pieces; ++p) dr[p] = T(0);
    dr[argmax[r]] = dy[r];
  });
}

// Entry points, compiled once per CPU level (kernels/entry.hpp).
#define FASTNN_ACTIVATIONS_ENTRIES(X) X(activation_forward) X(activation_backward) X(softmax_forward) \
  X(softmax_backward) X(prelu_forward) X(prelu_backward) X(maxout_forward) X(maxout_backward)
FASTNN_DECLARE_ENTRIES(FASTNN_ACTIVATIONS_ENTRIES)

}  // namespace fastnn
