// Normalisation layers: batch norm, group norm (layer norm is its special case) and local
// response norm, forward and backward. Row-major raw pointers, float or double; input viewed as
// x[N, C, S] (S = product of the spatial sizes, 1 for (N, C) input).
//
// Bit-identical for any thread count and memory alignment: every reduction is summed in a fixed order that
// depends only on the shapes — 8 partial sums by index (not by address) combined pairwise, in batch order —
// and threads split work over independent outputs (channels, rows), never over a reduced axis. Square roots
// and powers are scalar std:: calls (correctly rounded or at least deterministic), one per statistic.
#pragma once
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/entry.hpp"
#include "kernels/packet_map.hpp"
#include "kernels/parallel.hpp"
#include "kernels/reductions.hpp"
#include "kernels/scratch.hpp"

namespace fastnn {

namespace norm_detail {

// Per-row and per-channel sums (layer and group norm): one vector of floats, 16 lanes on AVX-512 and 8 below
// (8 on AVX-512 became shuffles between the halves of a 16-float vector, and 11 kB more code). The lane count
// changes the rounding, so the levels agree to rounding, not to the bit (as FMA already makes them).
#ifdef __AVX512F__
constexpr int kNormLanes = 16;
#else
constexpr int kNormLanes = 8;
#endif
template <typename T>
using Lanes = detail::LaneSum<T, kNormLanes>;

// Batch norm's per-channel sums over N·S values: 32 lanes of float (16 of double), two AVX-512 vectors (four
// AVX2, eight SSE), so every level has independent add chains to overlap. With 8 (one chain) batch norm ran at
// half the speed: 32 × 16 × 32 × 32 input, 2 threads, Zen 4, forward 194 → 111 µs, backward 330 → 216 µs
// (best of 6). Only there: 32 lanes everywhere added 18 kB to the compressed AVX2 library.
template <typename T>
using ChannelLanes = detail::LaneSum<T, int(128 / sizeof(T))>;

// out[c] = Σ_n Σ_s term(n, c, i) over x[N, C, S] with i = (n·C + c)·S + s, for every channel c; threads split
// the channels. S == 1 ((N, C) input): row by row, vectorised across channels, each channel summed in batch
// order (as dense_backward_bias).
template <typename T, typename F>
void channel_sums(index_t N, index_t C, index_t S, T* out, F&& term) {
  if (S == 1) {
    for_each_slice(C, 16, N * C, kParallelMinElements, [&](index_t c0, index_t cn) {
      std::fill(out + c0, out + c0 + cn, T(0));
      for (index_t n = 0; n < N; ++n)
        for (index_t c = c0; c < c0 + cn; ++c) out[c] += term(n, c, n * C + c);
    });
    return;
  }
  for_each_slice(C, 1, N * C * S, kParallelMinElements, [&](index_t c0, index_t cn) {
    for (index_t c = c0; c < c0 + cn; ++c) {
      Lanes<T> acc;
      for (index_t n = 0; n < N; ++n) {
        const index_t base = (n * C + c) * S;
        acc.add(S, [&](index_t s) { return term(n, c, base + s); });
      }
      out[c] = acc.total();
    }
  });
}

// fn(n, c, begin, count) over the (n, c) rows of S elements of x[N, C, S], split over threads.
template <typename F>
void for_each_row(index_t N, index_t C, index_t S, F&& fn) {
  if (S == 1) {  // rows of one element: hand out whole samples instead
    for_each_slice(N, 1, N * C, kParallelMinElements, [&](index_t n0, index_t nn) {
      for (index_t n = n0; n < n0 + nn; ++n)
        for (index_t c = 0; c < C; ++c) fn(n, c, (n * C + c), index_t(1));
    });
    return;
  }
  for_each_slice(N * C, 1, N * C * S, kParallelMinElements, [&](index_t r0, index_t rn) {
    for (index_t r = r0; r < r0 + rn; ++r) fn(r / C, r % C, r * S, S);
  });
}

// [v > 0]: 1 or 0, a packet or a scalar of T.
template <typename T, typename V>
V positive(const V& v) {
  namespace pk = Eigen::internal;
  return pk::pand(pk::pcmp_lt(detail::splat(v, T(0)), v), detail::splat(v, T(1)));
}

// One row of batch norm's output: y = x·scale + shift; with relu, then max(·, 0); with a residual r (relu
// too), relu(x·scale + shift + r). Each element's arithmetic is the separate ops' (the add kernel's v + r,
// the relu kernel's v > 0 ? v : 0·v + 0, here v·[v > 0] + 0: the same bits, NaN and -inf included), so a
// fused forward gives the unfused bits. On explicit packets (packet_map): GCC keeps a comparison over floats
// scalar and branchy wherever it has no masked instructions (AVX2), trapping math.
template <typename T>
void normalise_row(const T* x, const T* r, T* y, index_t n, T scale, T shift, bool relu) {
  namespace pk = Eigen::internal;
  using detail::splat;
  // x·scale + shift as one fused multiply-add where the level has FMA (as GCC contracts the scalar form)
  auto affine = [scale, shift](auto v) { return pk::pmadd(v, splat(v, scale), splat(v, shift)); };
  auto relu_of = [](auto v) { return pk::padd(pk::pmul(v, positive<T>(v)), splat(v, T(0))); };  // v·[v > 0] + 0
  if (r)
    detail::packet_map(n, y, [&](auto v, auto rv) { return relu_of(pk::padd(affine(v), rv)); }, x, r);
  else if (relu)
    detail::packet_map(n, y, [&](auto v) { return relu_of(affine(v)); }, x);
  else
    detail::packet_map(n, y, affine, x);
}

// Asks for the n values at p in cache ahead of their use.
template <typename T>
void prefetch_row(const T* p, index_t n) {
  for (index_t s = 0; s < n; s += index_t(64 / sizeof(T))) __builtin_prefetch(p + s);
}

// The relu backward's gradient (kernels/activations.hpp: y > 0 ? dy : 0·dy, the same bits as dy·[y > 0])
// from relu's output y.
template <typename T>
void relu_mask(const T* y, const T* dy, T* out, index_t n) {
  detail::packet_map(n, out, [](auto v, auto g) { return Eigen::internal::pmul(g, positive<T>(v)); }, y, dy);
}

}  // namespace norm_detail

// Batch norm forward. Training (or no running statistics): per-channel batch mean and biased variance;
// running statistics, when given, become (1 − m)·r + m·batch with the unbiased variance M/(M − 1)·σ²
// (M = N·S), as PyTorch. Otherwise the running statistics normalise. Writes the statistics used to
// mean_out[C] and invstd_out[C] = 1/√(var + eps) for backward. weight/bias may be null (affine=False).
// relu: y = relu(batch norm) (a network's BN-ReLU in one pass); residual (x's shape, relu required):
// y = relu(batch norm + residual) (a residual block's tail).
template <typename T>
void batch_norm_forward(const T* x, const T* weight, const T* bias, T* running_mean, T* running_var, T* y,
                        T* mean_out, T* invstd_out, index_t N, index_t C, index_t S, bool use_batch_stats,
                        T momentum, T eps, const T* residual, bool relu) {
  using namespace norm_detail;
  const index_t M = N * S;
  if (use_batch_stats && S > 1) {
    // Channel by channel, start to finish while its N·S values are in cache, in one parallel region (the sweeps
    // below take S == 1 input, and eval mode).
    for_each_slice(C, 1, N * C * S, kParallelMinElements, [&](index_t c0, index_t cn) {
      for (index_t c = c0; c < c0 + cn; ++c) {
        ChannelLanes<T> sum;
        for (index_t n = 0; n < N; ++n) {
          const T* xr = x + (n * C + c) * S;
          if (n + 1 < N) prefetch_row(xr + C * S, S);  // rows a channel stride apart (see the backward)
          sum.add(S, [&](index_t s) { return xr[s]; });
        }
        const T mean = sum.total() / T(M);
        ChannelLanes<T> sq;
        for (index_t n = 0; n < N; ++n) {
          const T* xr = x + (n * C + c) * S;
          sq.add(S, [&](index_t s) {
            const T d = xr[s] - mean;
            return d * d;
          });
        }
        const T var = sq.total() / T(M);
        mean_out[c] = mean;
        invstd_out[c] = T(1) / std::sqrt(var + eps);
        if (running_mean) running_mean[c] = (T(1) - momentum) * running_mean[c] + momentum * mean;
        if (running_var && M > 1)
          running_var[c] = (T(1) - momentum) * running_var[c] + momentum * (var * T(M) / T(M - 1));
        const T scale = weight ? weight[c] * invstd_out[c] : invstd_out[c];
        const T shift = (bias ? bias[c] : T(0)) - mean * scale;
        for (index_t n = 0; n < N; ++n) {
          const index_t row = (n * C + c) * S;
          normalise_row(x + row, residual ? residual + row : nullptr, y + row, S, scale, shift, relu);
        }
      }
    });
    return;
  }
  if (use_batch_stats) {
    channel_sums(N, C, S, mean_out, [&](index_t, index_t, index_t i) { return x[i]; });
    for (index_t c = 0; c < C; ++c) mean_out[c] /= T(M);
    std::vector<T> var(C);
    channel_sums(N, C, S, var.data(), [&](index_t, index_t c, index_t i) {
      const T d = x[i] - mean_out[c];
      return d * d;
    });
    for (index_t c = 0; c < C; ++c) {
      var[c] /= T(M);
      invstd_out[c] = T(1) / std::sqrt(var[c] + eps);
      if (running_mean) running_mean[c] = (T(1) - momentum) * running_mean[c] + momentum * mean_out[c];
      if (running_var && M > 1)
        running_var[c] = (T(1) - momentum) * running_var[c] + momentum * (var[c] * T(M) / T(M - 1));
    }
  } else {
    for (index_t c = 0; c < C; ++c) {
      mean_out[c] = running_mean[c];
      invstd_out[c] = T(1) / std::sqrt(running_var[c] + eps);
    }
  }
  for_each_row(N, C, S, [&](index_t, index_t c, index_t begin, index_t count) {
    const T scale = weight ? weight[c] * invstd_out[c] : invstd_out[c];
    const T shift = (bias ? bias[c] : T(0)) - mean_out[c] * scale;
    norm_detail::normalise_row(x + begin, residual ? residual + begin : nullptr, y + begin, count, scale, shift,
                               relu);
  });
}

// Batch norm backward from the statistics forward used (mean, invstd). dβ = Σ dy, dγ = Σ dy·x̂ with
// x̂ = (x − mean)·invstd. Training: the full derivative through the batch statistics,
// dx = γ·invstd·(dy − dβ/M − x̂·dγ/M); eval: dx = γ·invstd·dy. Parameter gradients are added
// (accumulate) or overwrite; null pointers skip them (frozen parameters, no input gradient).
// relu_out (a forward with relu and no residual): grad_y is the gradient of relu's output, masked here
// (y > 0 ? dy : 0·dy, the relu backward's arithmetic) with no array handed back in between.
template <typename T>
void batch_norm_backward(const T* grad_y, const T* x, const T* mean, const T* invstd, const T* weight,
                         T* grad_x, T* grad_weight, T* grad_bias, index_t N, index_t C, index_t S,
                         bool training, bool accumulate_weight, bool accumulate_bias, const T* relu_out) {
  using namespace norm_detail;
  const index_t M = N * S;
  const bool need_sums = grad_weight || grad_bias || (grad_x && training);
  if (need_sums && S > 1) {
    // Channel by channel while its values are in cache, one region (the sweeps below: S == 1, or no sums).
    // relu_out: each row is masked into a one-row buffer (L1), once for the sums and again for dx, rather
    // than into a whole masked array: the channel's dy, y and x then stay in L2 for the dx loop.
    for_each_slice(C, 1, N * C * S, kParallelMinElements, [&](index_t c0, index_t cn) {
      T* row_dy = relu_out ? detail::scratch<T>(2, S) : nullptr;
      for (index_t c = c0; c < c0 + cn; ++c) {
        const T mu = mean[c], is = invstd[c];
        // Both sums row by row while the row is in L1 (each in its own fixed order, as two sweeps would).
        ChannelLanes<T> dy_sum, dy_xhat_sum;
        for (index_t n = 0; n < N; ++n) {
          const index_t row = (n * C + c) * S;
          if (n + 1 < N) {  // rows lie a channel stride apart, and the hardware prefetchers stop at each page
            prefetch_row(x + row + C * S, S);
            prefetch_row(grad_y + row + C * S, S);
            if (relu_out) prefetch_row(relu_out + row + C * S, S);
          }
          const T *dy = grad_y + row, *xr = x + row;
          if (relu_out) relu_mask(relu_out + row, dy, row_dy, S), dy = row_dy;
          dy_sum.add(S, [&](index_t s) { return dy[s]; });
          dy_xhat_sum.add(S, [&](index_t s) { return dy[s] * (xr[s] - mu); });
        }
        const T sdy = dy_sum.total(), sdx = dy_xhat_sum.total() * is;
        if (grad_weight) grad_weight[c] = (accumulate_weight ? grad_weight[c] : T(0)) + sdx;
        if (grad_bias) grad_bias[c] = (accumulate_bias ? grad_bias[c] : T(0)) + sdy;
        if (!grad_x) continue;
        const T g = (weight ? weight[c] : T(1)) * is, db = sdy / T(M), dg = sdx / T(M);
        for (index_t n = 0; n < N; ++n) {
          const index_t row = (n * C + c) * S;
          const T *dy = grad_y + row, *xr = x + row;
          if (relu_out) relu_mask(relu_out + row, dy, row_dy, S), dy = row_dy;
          T* dx = grad_x + row;
          if (training)
            for (index_t s = 0; s < S; ++s) dx[s] = g * (dy[s] - db - (xr[s] - mu) * is * dg);
          else
            for (index_t s = 0; s < S; ++s) dx[s] = g * dy[s];
        }
      }
    });
    return;
  }
  if (relu_out) {  // the whole masked gradient first, into a kept buffer
    T* masked = detail::scratch<T>(2, N * C * S);
    relu_mask(relu_out, grad_y, masked, N * C * S);
    grad_y = masked;
  }
  std::vector<T> sum_dy(C), sum_dy_xhat(C);
  if (need_sums) {
    channel_sums(N, C, S, sum_dy.data(), [&](index_t, index_t, index_t i) { return grad_y[i]; });
    channel_sums(N, C, S, sum_dy_xhat.data(),
                 [&](index_t, index_t c, index_t i) { return grad_y[i] * (x[i] - mean[c]); });
    for (index_t c = 0; c < C; ++c) sum_dy_xhat[c] *= invstd[c];
  }
  for (index_t c = 0; c < C; ++c) {
    if (grad_weight) grad_weight[c] = (accumulate_weight ? grad_weight[c] : T(0)) + sum_dy_xhat[c];
    if (grad_bias) grad_bias[c] = (accumulate_bias ? grad_bias[c] : T(0)) + sum_dy[c];
  }
  if (!grad_x) return;
  for_each_row(N, C, S, [&](index_t, index_t c, index_t begin, index_t count) {
    const T g = (weight ? weight[c] : T(1)) * invstd[c];
    const T* dy = grad_y + begin;
    const T* xr = x + begin;
    T* dx = grad_x + begin;
    if (!training) {
      for (index_t s = 0; s < count; ++s) dx[s] = g * dy[s];
      return;
    }
    const T mu = mean[c], is = invstd[c], db = sum_dy[c] / T(M), dg = sum_dy_xhat[c] / T(M);
    for (index_t s = 0; s < count; ++s) dx[s] = g * (dy[s] - db - (xr[s] - mu) * is * dg);
  });
}

// Group norm over x[N, C, S] with G groups of C/G channels: each (sample, group) block of (C/G)·S contiguous
// values is normalised by its own mean and biased variance, then scaled per channel by γ[c], shifted by
// β[c]. Layer norm is the case N = rows, C = normalised size, S = 1, G = 1 (γ, β per element).
// mean_out, invstd_out: [N, G].
template <typename T>
void group_norm_forward(const T* x, const T* weight, const T* bias, T* y, T* mean_out, T* invstd_out,
                        index_t N, index_t C, index_t S, index_t G, T eps) {
  using namespace norm_detail;
  const index_t Cg = C / G, M = Cg * S;
  for_each_slice(N * G, 1, N * C * S, kParallelMinElements, [&](index_t r0, index_t rn) {
    for (index_t r = r0; r < r0 + rn; ++r) {
      const T* xr = x + r * M;
      Lanes<T> sum;
      sum.add(M, [&](index_t i) { return xr[i]; });
      const T mu = sum.total() / T(M);
      Lanes<T> sq;
      sq.add(M, [&](index_t i) {
        const T d = xr[i] - mu;
        return d * d;
      });
      const T is = T(1) / std::sqrt(sq.total() / T(M) + eps);
      mean_out[r] = mu;
      invstd_out[r] = is;
      T* yr = y + r * M;
      const index_t c0 = (r % G) * Cg;
      if (S == 1) {  // one value per channel (layer norm): γ and β vary along the row
        const T* w = weight ? weight + c0 : nullptr;
        const T* b = bias ? bias + c0 : nullptr;
        if (w && b)
          for (index_t i = 0; i < M; ++i) yr[i] = (xr[i] - mu) * is * w[i] + b[i];
        else if (w)
          for (index_t i = 0; i < M; ++i) yr[i] = (xr[i] - mu) * is * w[i];
        else
          for (index_t i = 0; i < M; ++i) yr[i] = (xr[i] - mu) * is + (b ? b[i] : T(0));
        continue;
      }
      for (index_t j = 0; j < Cg; ++j) {
        const index_t c = c0 + j;
        const T scale = weight ? weight[c] * is : is;
        const T shift = (bias ? bias[c] : T(0)) - mu * scale;
        for (index_t s = 0; s < S; ++s) yr[j * S + s] = xr[j * S + s] * scale + shift;
      }
    }
  });
}

// Group norm backward: dγ[c] = Σ dy·x̂, dβ[c] = Σ dy over samples and positions; per (sample, group) block,
// with d = γ·dy: dx = invstd·(d − mean(d) − x̂·mean(d·x̂)).
template <typename T>
void group_norm_backward(const T* grad_y, const T* x, const T* mean, const T* invstd, const T* weight,
                         T* grad_x, T* grad_weight, T* grad_bias, index_t N, index_t C, index_t S, index_t G,
                         bool accumulate_weight, bool accumulate_bias) {
  using namespace norm_detail;
  const index_t Cg = C / G, M = Cg * S;
  std::vector<T> sums(C);
  if (grad_weight) {
    if (G == 1)  // layer norm: the statistics row is the sample (no division per element)
      channel_sums(N, C, S, sums.data(),
                   [&](index_t n, index_t, index_t i) { return grad_y[i] * ((x[i] - mean[n]) * invstd[n]); });
    else
      channel_sums(N, C, S, sums.data(), [&](index_t n, index_t c, index_t i) {
        const index_t r = n * G + c / Cg;
        return grad_y[i] * ((x[i] - mean[r]) * invstd[r]);
      });
    for (index_t c = 0; c < C; ++c) grad_weight[c] = (accumulate_weight ? grad_weight[c] : T(0)) + sums[c];
  }
  if (grad_bias) {
    channel_sums(N, C, S, sums.data(), [&](index_t, index_t, index_t i) { return grad_y[i]; });
    for (index_t c = 0; c < C; ++c) grad_bias[c] = (accumulate_bias ? grad_bias[c] : T(0)) + sums[c];
  }
  if (!grad_x) return;
  for_each_slice(N * G, 1, N * C * S, kParallelMinElements, [&](index_t r0, index_t rn) {
    std::vector<T> gdy_buffer(weight ? M : 0);
    for (index_t r = r0; r < r0 + rn; ++r) {
      const T* xr = x + r * M;
      const T* dy = grad_y + r * M;
      T* dx = grad_x + r * M;
      const T mu = mean[r], is = invstd[r];
      const T* gdy = dy;  // γ·dy
      if (weight) {
        const T* w = weight + (r % G) * Cg;
        if (S == 1)
          for (index_t i = 0; i < M; ++i) gdy_buffer[i] = w[i] * dy[i];
        else
          for (index_t j = 0; j < Cg; ++j)
            for (index_t s = 0; s < S; ++s) gdy_buffer[j * S + s] = w[j] * dy[j * S + s];
        gdy = gdy_buffer.data();
      }
      Lanes<T> sd, sdx;
      sd.add(M, [&](index_t i) { return gdy[i]; });
      sdx.add(M, [&](index_t i) { return gdy[i] * ((xr[i] - mu) * is); });
      const T md = sd.total() / T(M), mdx = sdx.total() / T(M);
      for (index_t i = 0; i < M; ++i) dx[i] = is * (gdy[i] - md - (xr[i] - mu) * is * mdx);
    }
  });
}

// Local response norm across channels, PyTorch's formula: b_c = a_c / d_c^β with
// d_c = k + α/n · Σ_{c' = c − ⌊n/2⌋}^{c + ⌊(n−1)/2⌋} a_c'² (channels outside [0, C) count as zero).
// Computes d for sample n into d[C·S].
namespace norm_detail {
template <typename T>
void lrn_denominator(const T* xn, T* d, index_t C, index_t S, index_t size, T alpha, T k) {
  const index_t lo = size / 2, hi = (size - 1) / 2;
  const T a = alpha / T(size);
  for (index_t c = 0; c < C; ++c) {
    T* dc = d + c * S;
    std::fill(dc, dc + S, T(0));
    for (index_t j = std::max<index_t>(0, c - lo); j <= std::min(C - 1, c + hi); ++j) {
      const T* xj = xn + j * S;
      for (index_t s = 0; s < S; ++s) dc[s] += xj[s] * xj[s];
    }
    for (index_t s = 0; s < S; ++s) dc[s] = k + a * dc[s];
  }
}
}  // namespace norm_detail

template <typename T>
void lrn_forward(const T* x, T* y, index_t N, index_t C, index_t S, index_t size, T alpha, T beta, T k) {
  for_each_slice(N, 1, N * C * S * size, kParallelMinElements, [&](index_t n0, index_t nn) {
    std::vector<T> d(C * S);
    for (index_t n = n0; n < n0 + nn; ++n) {
      const T* xn = x + n * C * S;
      T* yn = y + n * C * S;
      norm_detail::lrn_denominator(xn, d.data(), C, S, size, alpha, k);
      for (index_t i = 0; i < C * S; ++i) yn[i] = xn[i] * std::pow(d[i], -beta);
    }
  });
}

// dx_j = dy_j·d_j^−β − (2αβ/n)·a_j·Σ_{c: j in window(c)} dy_c·a_c·d_c^(−β−1).
template <typename T>
void lrn_backward(const T* grad_y, const T* x, T* grad_x, index_t N, index_t C, index_t S, index_t size,
                  T alpha, T beta, T k) {
  const index_t lo = size / 2, hi = (size - 1) / 2;
  const T coef = T(2) * alpha * beta / T(size);
  for_each_slice(N, 1, N * C * S * size, kParallelMinElements, [&](index_t n0, index_t nn) {
    std::vector<T> d(C * S), t(C * S), acc(S);
    for (index_t n = n0; n < n0 + nn; ++n) {
      const T* xn = x + n * C * S;
      const T* dyn = grad_y + n * C * S;
      T* dxn = grad_x + n * C * S;
      norm_detail::lrn_denominator(xn, d.data(), C, S, size, alpha, k);
      for (index_t i = 0; i < C * S; ++i) {
        const T p = std::pow(d[i], -beta);
        t[i] = dyn[i] * xn[i] * p / d[i];
        dxn[i] = dyn[i] * p;
      }
      // channel j is in the window of channels c = j − ⌊(n−1)/2⌋ .. j + ⌊n/2⌋
      for (index_t j = 0; j < C; ++j) {
        std::fill(acc.begin(), acc.end(), T(0));
        for (index_t c = std::max<index_t>(0, j - hi); c <= std::min(C - 1, j + lo); ++c)
          for (index_t s = 0; s < S; ++s) acc[s] += t[c * S + s];
        for (index_t s = 0; s < S; ++s) dxn[j * S + s] -= coef * xn[j * S + s] * acc[s];
      }
    }
  });
}

// Entry points, compiled once per CPU level (kernels/entry.hpp).
#define FASTNN_NORMALIZATION_ENTRIES(X) X(batch_norm_forward) X(batch_norm_backward) X(group_norm_forward) \
  X(group_norm_backward) X(lrn_forward) X(lrn_backward)
FASTNN_DECLARE_ENTRIES(FASTNN_NORMALIZATION_ENTRIES)

}  // namespace fastnn
