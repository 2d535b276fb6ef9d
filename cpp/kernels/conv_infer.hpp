// Eval-mode Conv → ReLU-like activations → 2×2/2 max pooling, with the pooling done in registers: the conv
// output never reaches memory. For LeNet-sized layers (few channels, small planes) the conv block otherwise
// spends as long storing, re-reading and pooling its output as convolving.
//
// The trick is a de-interleaved copy of the zero-padded input: each padded row is stored as its even columns
// then its odd columns. A 2×2 pooling window covers output columns 2k and 2k+1 of output rows 2q and 2q+1;
// tap j of output column 2k reads padded column 2k+j, of 2k+1 column 2k+1+j: in the de-interleaved row both
// are contiguous runs in k. So one packet of L pooled outputs is four packets of conv outputs (two rows × even
// and odd columns), each accumulated in registers exactly as the direct kernel does (kernels/conv_direct.hpp:
// bias first, then one multiply-add per tap in (channel, row, column) order). The window is reduced with a
// plain maximum and the activations applied once, to it: they are ReLUs with slope a ≥ 0 and cap b > 0,
// non-decreasing and never −0, so while the conv outputs are finite that is the same bits as the layers'
// activations on every output followed by max_pool2d_forward's rule. An image whose conv outputs are not all
// finite (relu's 0·(−inf) is NaN; NaN wins the pooling) runs again the way the layers do. Either way the result
// is the bits of conv2d_forward's direct path, the activations and max_pool2d_forward one after another.
#pragma once
#include <Eigen/Core>
#include <algorithm>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels/activations.hpp"
#include "kernels/conv_direct.hpp"
#include "kernels/parallel.hpp"
#include "kernels/scratch.hpp"

namespace fastnn::detail {

template <int N, typename F, int... I>
EIGEN_ALWAYS_INLINE void unrolled(F&& f, std::integer_sequence<int, I...>) {
  (f(std::integral_constant<int, I>{}), ...);
}
// f(integral_constant<0>) … f(integral_constant<N − 1>), unrolled, so that arrays indexed by it stay in registers.
template <int N, typename F>
EIGEN_ALWAYS_INLINE void unrolled(F&& f) {
  unrolled<N>(f, std::make_integer_sequence<int, N>{});
}

// The de-interleaved padded input of one image: channel c, padded row r starts at rows + (c·Hp + r)·2·We, its
// even columns first (We of them), then its odd columns.
template <typename T>
struct SplitInput {
  const T* rows;
  index_t Hp, We;
};

// Output channels o0 .. o0 + B (B = 1, 2 or 4) of pooled row q, pooled columns k0 .. k0 + L, for a KH × KW
// kernel. `exact`: the activations, then max_pool2d_forward's rule, as the layers do; otherwise the maximum,
// then the activations, which gives the same bits while every accumulator is finite, and every accumulator
// added to *check (not finite there: run again exactly).
template <typename T, typename Pk, int B, int KH, int KW>
struct PooledStrip {
  static constexpr index_t L = Eigen::internal::unpacket_traits<Pk>::size;

  static void run(const SplitInput<T>& in, index_t C, const T* weight, const T* bias, index_t o0, index_t q,
                  index_t k0, T* out, index_t ld_row, index_t ld_plane, index_t n_out, bool spill_ok,
                  const std::vector<ActivationStep>& activations, bool exact, Pk* check) {
    namespace pk = Eigen::internal;
    constexpr index_t K = index_t(KH) * KW;
    const index_t Kc = C * K, row = 2 * in.We;
    // Channel b's accumulators: conv row 2q even and odd columns, then conv row 2q + 1 (named, not an array:
    // arrays of packets this size stay on the stack).
    auto init = [&](int b) { return pk::pset1<Pk>(bias ? bias[o0 + b] : T(0)); };
    Pk a0 = init(0), a1 = a0, a2 = a0, a3 = a0, b0, b1, b2, b3, c0, c1, c2, c3, d0, d1, d2, d3;
    if constexpr (B >= 2) b0 = b1 = b2 = b3 = init(1);
    if constexpr (B == 4) c0 = c1 = c2 = c3 = init(2), d0 = d1 = d2 = d3 = init(3);
    auto fma2 = [](T w, const Pk& xe, const Pk& xo, Pk& e, Pk& o) {
      const Pk wv = pk::pset1<Pk>(w);
      e = pk::pmadd(wv, xe, e);
      o = pk::pmadd(wv, xo, o);
    };
    const T* w0 = weight + o0 * Kc;
    for (index_t c = 0; c < C; ++c) {
      const T* base = in.rows + (c * in.Hp + 2 * q) * row + k0;
      const T* wc = w0 + c * K;
      // Input row R feeds conv row 2q with kernel row R and conv row 2q + 1 with kernel row R − 1: for each
      // accumulator the taps still come in (row, column) order.
      unrolled<KH + 1>([&](auto r) {
        constexpr int R = decltype(r)::value;
        const T* even = base + R * row;
        const T* odd = even + in.We;
        unrolled<KW>([&](auto j) {
          constexpr int J = decltype(j)::value;
          // Padded columns 2k + J and 2k + 1 + J.
          const Pk xe = pk::ploadu<Pk>(J % 2 == 0 ? even + J / 2 : odd + J / 2);
          const Pk xo = pk::ploadu<Pk>(J % 2 == 0 ? odd + J / 2 : even + (J + 1) / 2);
          if constexpr (R < KH) {
            const T* wt = wc + R * KW + J;
            fma2(wt[0], xe, xo, a0, a1);
            if constexpr (B >= 2) fma2(wt[Kc], xe, xo, b0, b1);
            if constexpr (B == 4) fma2(wt[2 * Kc], xe, xo, c0, c1), fma2(wt[3 * Kc], xe, xo, d0, d1);
          }
          if constexpr (R >= 1) {
            const T* wt = wc + (R - 1) * KW + J;
            fma2(wt[0], xe, xo, a2, a3);
            if constexpr (B >= 2) fma2(wt[Kc], xe, xo, b2, b3);
            if constexpr (B == 4) fma2(wt[2 * Kc], xe, xo, c2, c3), fma2(wt[3 * Kc], xe, xo, d2, d3);
          }
        });
      });
    }
    auto finish = [&](int b, Pk e0, Pk o0_, Pk e1, Pk o1) {
      // As activation_forward's relu: x > 0 ? min(x, b) : a·x + 0.
      auto activate = [&](Pk v) {
        for (const ActivationStep& act : activations) {
          const Pk zero = pk::pset1<Pk>(T(0));
          const Pk below = pk::padd(pk::pmul(pk::pset1<Pk>(T(act.a)), v), zero);
          v = pk::pselect(pk::pcmp_lt(zero, v), pk::pmin(v, pk::pset1<Pk>(T(act.b))), below);
        }
        return v;
      };
      Pk best;
      if (exact) {
        // What the layers do: the activations on each conv output, then max_pool2d_forward's rule over the
        // window in order: take v where best < v or v is NaN.
        best = activate(e0);
        for (Pk v : {o0_, e1, o1}) {
          v = activate(v);
          const Pk keep = pk::pandnot(pk::pcmp_eq(v, v), pk::pcmp_lt(best, v));  // !(best < v) and v == v
          best = pk::pselect(keep, best, v);
        }
      } else {
        // pmax(best, v) is v > best ? v : best: the rule's choice when nothing is NaN. The activations are
        // non-decreasing and never give −0 for finite input, so applied to the maximum they give the same bits.
        best = activate(pk::pmax(pk::pmax(pk::pmax(e0, o0_), e1), o1));
        *check = pk::padd(*check, pk::padd(pk::padd(e0, o0_), pk::padd(e1, o1)));
      }
      T* dst = out + (o0 + b) * ld_plane + q * ld_row + k0;
      if (n_out == L || spill_ok) {
        pk::pstoreu(dst, best);
      } else {
        alignas(64) T lanes[L];
        pk::pstoreu(lanes, best);
        std::copy(lanes, lanes + n_out, dst);
      }
    };
    finish(0, a0, a1, a2, a3);
    if constexpr (B >= 2) finish(1, b0, b1, b2, b3);
    if constexpr (B == 4) finish(2, c0, c1, c2, c3), finish(3, d0, d1, d2, d3);
  }
};

// Output channels per register block: B channels × 4 packets of accumulators.
constexpr int kPooledBlockO = EIGEN_ARCH_DEFAULT_NUMBER_OF_REGISTERS >= 32 ? 4 : 2;

// Whether conv_relu_maxpool_image runs a block: float32, stride 1, no dilation, no groups, a 3×3 kernel, where the
// direct kernel runs (so the bits are the direct path's); ReLU steps that are non-decreasing; a 2×2/2 max pool.
// (float64 and other kernels take the general path: the wheel has room for one variant of this code per level.)
template <typename T>
bool pooled_conv_applies(const ConvGeometry& g, index_t groups, const std::vector<ActivationStep>& activations,
                         const ConvGeometry& pool) {
  const bool kernel = std::is_same_v<T, float> && g.kernel_h == 3 && g.kernel_w == 3;
  const bool pool_2x2 = pool.kernel_h == 2 && pool.kernel_w == 2 && pool.stride_h == 2 && pool.stride_w == 2 &&
                        pool.pad_h == 0 && pool.pad_w == 0 && pool.out_h == g.out_h / 2 &&
                        pool.out_w == g.out_w / 2 && pool.out_h > 0 && pool.out_w > 0;
  for (const ActivationStep& act : activations)
    if (act.kind != Activation::relu || !(act.a >= 0) || !(act.b > 0)) return false;
  return kernel && pool_2x2 && groups == 1 && g.stride_h == 1 && g.stride_w == 1 && g.dilation_h == 1 &&
         g.dilation_w == 1 && g.pad_h < g.kernel_h && g.pad_w < g.kernel_w && direct_applies<T>(g, groups);
}

// Pooled packet width: of the full and half packets, the one that covers a row of Wq pooled
// outputs in the fewest lanes (ties: the wider).
template <typename T>
struct PooledPacket {
  using Full = typename Eigen::internal::packet_traits<T>::type;
  using Half = typename Eigen::internal::packet_traits<T>::half;
  static constexpr index_t full = index_t(sizeof(Full) / sizeof(T));
  static constexpr index_t half = index_t(sizeof(Half) / sizeof(T));
  static index_t lanes(index_t Wq, index_t L) { return (std::max(Wq, L) + L - 1) / L * L; }
  static bool use_half(index_t Wq) { return half < full && lanes(Wq, half) < lanes(Wq, full); }
};

// Every pooled row of output channels o_begin .. o_end. Returns false where the shortcut met an infinity or a
// NaN (or an overflowing sum of finite values) and the rows must be run again with exact set.
template <typename T, typename Pk, int KH, int KW>
bool pooled_rows(const SplitInput<T>& in, const ConvGeometry& g, const T* weight, const T* bias, T* out,
                 const ConvGeometry& pool, index_t o_begin, index_t o_end,
                 const std::vector<ActivationStep>& activations, bool exact) {
  namespace pk = Eigen::internal;
  constexpr index_t L = pk::unpacket_traits<Pk>::size;
  const index_t Hq = pool.out_h, Wq = pool.out_w, plane = Hq * Wq;
  Pk check = pk::pset1<Pk>(T(0));
  auto block = [&](auto B, index_t o0) {
    for (index_t q = 0; q < Hq; ++q) {
      auto strip = [&](index_t k0, index_t n_out) {
        // A whole-packet store may run past this row into rows written later; never past the plane.
        const bool spill_ok = q * Wq + k0 + L <= plane;
        PooledStrip<T, Pk, decltype(B)::value, KH, KW>::run(in, g.channels, weight, bias, o0, q, k0, out, Wq, plane,
                                                           n_out, spill_ok, activations, exact, &check);
      };
      if (Wq <= L) {
        strip(0, Wq);
      } else {
        index_t k0 = 0;
        for (; k0 + L <= Wq; k0 += L) strip(k0, L);
        if (k0 < Wq) strip(Wq - L, L);  // overlaps its neighbour: the same values again
      }
    }
  };
  index_t o = o_begin;
  for (; o + kPooledBlockO <= o_end; o += kPooledBlockO) block(std::integral_constant<int, kPooledBlockO>{}, o);
  for (; o < o_end; ++o) block(std::integral_constant<int, 1>{}, o);
  const Pk zero = pk::pset1<Pk>(T(0));  // check − check is 0 where check is finite
  return exact || !pk::predux_any(pk::pandnot(pk::ptrue(check), pk::pcmp_eq(pk::psub(check, check), zero)));
}

// One image (or its output channels o_begin .. o_end): x [C, H, W] -> out [O, Hq, Wq].
template <typename T>
void conv_relu_maxpool_image(const T* x, const T* weight, const T* bias, T* out, const ConvGeometry& g,
                             const ConvGeometry& pool, index_t o_begin, index_t o_end,
                             const std::vector<ActivationStep>& activations) {
  using P = PooledPacket<T>;
  const index_t Wq = pool.out_w;
  const bool half = P::use_half(Wq);
  const index_t L = half ? P::half : P::full;
  // Columns the strips read: pooled columns up to max(Wq, L), plus the kernel's reach.
  const index_t We = std::max(Wq, L) + g.kernel_w / 2 + 1, Hp = 2 * pool.out_h + g.kernel_h - 1;
  const index_t row = 2 * We, size = g.channels * Hp * row;
  T* rows = scratch<T>(0, size);
  std::fill(rows, rows + size, T(0));
  const index_t pw = g.pad_w, first_even = pw + (pw & 1), first_odd = pw + 1 - (pw & 1);
  for (index_t c = 0; c < g.channels; ++c)
    for (index_t h = 0; h < g.height; ++h) {
      const index_t r = h + g.pad_h;
      if (r >= Hp) break;
      T* even = rows + (c * Hp + r) * row;
      T* odd = even + We;
      const T* src = x + (c * g.height + h) * g.width;  // padded column p is src[p − pw]
      const index_t end = pw + std::min(g.width, row - pw);
      for (index_t p = first_even; p < end; p += 2) even[p / 2] = src[p - pw];
      for (index_t p = first_odd; p < end; p += 2) odd[p / 2] = src[p - pw];
    }
  const SplitInput<T> in{rows, Hp, We};
  auto run = [&](auto pk_tag) {
    using Pk = decltype(pk_tag);
    auto rows_of = [&](bool exact) {
      return pooled_rows<T, Pk, 3, 3>(in, g, weight, bias, out, pool, o_begin, o_end, activations, exact);
    };
    if (!rows_of(false)) rows_of(true);
  };
  if (half)
    run(typename P::Half{});
  else
    run(typename P::Full{});
}

}  // namespace fastnn::detail
