// Recurrent layers: Elman RNN (tanh or ReLU), LSTM and GRU over a whole sequence, forward and
// backpropagation through time, one direction of one layer per call. PyTorch's equations and gate order:
//   RNN  h = act(W_ih x + b_ih + W_hh h + b_hh)
//   LSTM i, f, g, o = σ, σ, tanh, σ of (W_ih x + b_ih + W_hh h + b_hh);  c = f⊙c + i⊙g,  h = o⊙tanh(c)
//   GRU  r, z = σ(W_i{r,z} x + b_i{r,z} + W_h{r,z} h + b_h{r,z});  n = tanh(W_in x + b_in + r⊙(W_hn h + b_hn));
//        h = (1 − z)⊙n + z⊙h
// Layout: time-major, row-major. x [T, N, I], W_ih [G·H, I], W_hh [G·H, H], with G = 1, 4, 3 gates. The
// output y is written with a row stride (the caller points it at its direction's columns of [T, N, D·H]).
// A single step (T = 1) is the cell.
//
// The input projection of all steps is one GEMM (X [T·N, I] · W_ihᵀ), as are dW_ih, dW_hh and dx in
// backward; only the recurrent product runs per step, against a weight packed once per call.
// Threads: the sequences of a batch are independent, so each thread runs all time steps for its slice of the
// batch with no synchronisation between steps (a per-step barrier costs more than a step's GEMM as soon as
// another process takes a core). The big GEMMs are split as in kernels/dense.hpp. Slices fall on the
// micro-kernel's panels and elementwise packets on multiples of the SIMD width counted from column 0, so
// results are bit-identical for any thread count and any alignment.
#pragma once
#include <Eigen/Core>
#include <algorithm>
#include <type_traits>
#include <utility>

#include "kernels/entry.hpp"
#include "kernels/activations.hpp"
#include "kernels/dense.hpp"
#include "kernels/parallel.hpp"

namespace fastnn {

enum class RnnMode : int { rnn_tanh = 0, rnn_relu = 1, lstm = 2, gru = 3 };

inline index_t rnn_gate_count(RnnMode mode) {
  return mode == RnnMode::lstm ? 4 : mode == RnnMode::gru ? 3 : 1;
}

// What forward saves for backward, all [T, N, ·] in time order (row t is the step that read x[t]):
//   gates [T, N, G·H]  activated gates (RNN: the new h; LSTM: i, f, g, o; GRU: r, z, n)
//   hprev [T, N, H]    the state the step read (h_{t−1} forward, h_{t+1} for the reverse direction)
//   cprev [T, N, H]    LSTM: the cell state the step read
//   aux   [T, N, H]    LSTM: tanh(c_t); GRU: W_hn h + b_hn
template <typename T>
struct RnnSaved {
  T* gates;
  T* hprev;
  T* cprev;
  T* aux;
};

namespace rnn_detail {
namespace pk = Eigen::internal;
using detail::splat;

template <typename V, typename T>
V load(const T* p) {
  if constexpr (std::is_same_v<V, T>) return *p; else return pk::ploadu<V>(p);
}
template <typename T, typename V>
void store(T* p, const V& v) {
  if constexpr (std::is_same_v<V, T>) *p = v; else pk::pstoreu(p, v);
}

// fn(j, V{}) over columns [begin, end): SIMD packets on the grid of multiples of the packet size counted
// from column 0 (begin is one), then scalars: which path a column takes never depends on the thread split.
template <typename T, typename Fn>
void for_columns(index_t begin, index_t end, Fn&& fn) {
  using P = typename pk::packet_traits<T>::type;
  constexpr index_t L = pk::packet_traits<T>::size;
  index_t j = begin;
  for (; j + L <= end; j += L) fn(j, P{});
  for (; j < end; ++j) fn(j, T{});
}

template <typename V>
V sigmoid(const V& v) {
  return pk::pdiv(splat(v, 1), pk::padd(splat(v, 1), pk::pexp(pk::pnegate(v))));
}

template <typename V>
V tanh(const V& v) {
  using T = typename pk::unpacket_traits<V>::type;
  if constexpr (std::is_same_v<T, float>) {
    return pk::ptanh(v);
  } else {  // Eigen vectorises float tanh only: tanh|x| = −e/(2 + e) with e = expm1(−2|x|), as activations.hpp
    const V e = detail::expm1(pk::pmul(splat(v, T(-2)), pk::pabs(v)));
    const V t = pk::pdiv(pk::pnegate(e), pk::padd(splat(v, T(2)), e));
    return pk::pselect(pk::pcmp_lt(v, splat(v, T(0))), pk::pnegate(t), t);
  }
}

// Recurrent products with the weight packed once per call. Eigen's GEMM repacks both operands on every call;
// per time step that would copy all of W_hh (as large as the step's arithmetic). So the weight is packed
// once into Eigen's panel format (gemm_pack_lhs) and each step packs only the small state (gemm_pack_rhs)
// and runs Eigen's micro-kernel (gebp_kernel) on it. Column-major views of our row-major buffers:
//   forward   gatesᵀ [G·H × n] += W_hh [G·H × H] · hᵀ [H × n]
//   backward  dhᵀ    [H × n]   += W_hhᵀ [H × G·H] · dgatesᵀ [G·H × n]
template <typename T>
struct PackedWeight {
  using Traits = Eigen::internal::gebp_traits<T, T>;
  using Buffer = Eigen::Matrix<T, Eigen::Dynamic, 1>;  // aligned as the micro-kernel wants
  Buffer block;
  index_t rows, depth;

  // Packs A [rows × depth]: A(i, k) = a[i·stride + k] when row_major, a[i + k·stride] otherwise.
  PackedWeight(const T* a, index_t rows_, index_t depth_, bool row_major, index_t stride)
      : block(rows_ * depth_ + 64), rows(rows_), depth(depth_) {
    if (row_major) {
      using Mapper = pk::const_blas_data_mapper<T, index_t, Eigen::RowMajor>;
      pk::gemm_pack_lhs<T, index_t, Mapper, Traits::mr, Traits::LhsProgress, typename Traits::LhsPacket4Packing,
                        Eigen::RowMajor> pack;
      pack(block.data(), Mapper(a, stride), depth, rows);
    } else {
      using Mapper = pk::const_blas_data_mapper<T, index_t, Eigen::ColMajor>;
      pk::gemm_pack_lhs<T, index_t, Mapper, Traits::mr, Traits::LhsProgress, typename Traits::LhsPacket4Packing,
                        Eigen::ColMajor> pack;
      pack(block.data(), Mapper(a, stride), depth, rows);
    }
  }

  // out(i, j) += A(i, :) · b[j·b_stride + :] for j < cols; out(i, j) = out[j·out_stride + i].
  // packed_rhs holds depth·cols values.
  void multiply_add(const T* b, index_t b_stride, index_t cols, T* out, index_t out_stride, T* packed_rhs) const {
    using RhsMapper = pk::const_blas_data_mapper<T, index_t, Eigen::ColMajor>;
    using ResMapper = pk::blas_data_mapper<T, index_t, Eigen::ColMajor>;
    pk::gemm_pack_rhs<T, index_t, RhsMapper, Traits::nr, Eigen::ColMajor> pack;
    pk::gebp_kernel<T, T, index_t, ResMapper, Traits::mr, Traits::nr> gebp;
    pack(packed_rhs, RhsMapper(b, b_stride), depth, cols);
    gebp(ResMapper(out, out_stride), block.data(), packed_rhs, rows, depth, cols, T(1));
  }
};

// Sequences of a batch are independent: each thread runs every time step for its own slice of the batch, with
// no synchronisation between steps. Slices are multiples of 8 sequences (the micro-kernel's column panels),
// so every column goes through the same kernel path whatever the thread count.
// Threads only above kRecurrentParallelMinMacs multiply-adds of recurrent work per call (about 0.1 ms on one
// core): below that, a thread that waits for a busy core costs more than it saves.
constexpr index_t kBatchGranule = 8;
constexpr index_t kRecurrentParallelMinMacs = index_t(1) << 23;

template <typename Fn>
void parallel_batch_slices(index_t batch, index_t work, Fn&& fn) {
  for_each_slice(batch, kBatchGranule, work, kRecurrentParallelMinMacs, std::forward<Fn>(fn));
}

// Keeps a whole small call on one thread, its dense GEMMs included.
using runtime::SerialScope;

}  // namespace rnn_detail

// One direction of one layer over the whole sequence. h0 [N, H] and c0 (LSTM) are required; y rows have
// stride y_stride; h_n/c_n [N, H] receive the final state. `scratch` holds N·G·H values (the recurrent part
// of the gates at the current step).
template <typename T>
void rnn_forward(RnnMode mode, const T* x, const T* w_ih, const T* w_hh, const T* b_ih, const T* b_hh,
                 const T* h0, const T* c0, T* y, index_t y_stride, T* h_n, T* c_n, RnnSaved<T> saved, T* scratch,
                 index_t steps, index_t batch, index_t input_size, index_t hidden, bool reverse) {
  using namespace rnn_detail;
  const index_t G = rnn_gate_count(mode), GH = G * hidden, H = hidden, N = batch;
  const SerialScope serial(steps * N * GH * H < kRecurrentParallelMinMacs);
  // Input projection of every step at once, written where the gates will be.
  dense_forward(x, w_ih, b_ih, saved.gates, steps * N, input_size, GH);
  const PackedWeight<T> W(w_hh, GH, H, true, H);
  parallel_batch_slices(N, steps * N * GH * H, [&](index_t begin, index_t count) {
    const index_t end = begin + count;
    typename PackedWeight<T>::Buffer packed_h(H * count + 64);
    for (index_t s = 0; s < steps; ++s) {
      const index_t t = reverse ? steps - 1 - s : s;
      T* hp = saved.hprev + t * N * H;
      T* cp = mode == RnnMode::lstm ? saved.cprev + t * N * H : nullptr;
      if (s == 0) {
        std::copy(h0 + begin * H, h0 + end * H, hp + begin * H);
        if (cp) std::copy(c0 + begin * H, c0 + end * H, cp + begin * H);
      }
      for (index_t n = begin; n < end; ++n) {  // recurrent part = b_hh + W_hh·h
        if (b_hh) std::copy(b_hh, b_hh + GH, scratch + n * GH); else std::fill(scratch + n * GH, scratch + (n + 1) * GH, T(0));
      }
      W.multiply_add(hp + begin * H, H, count, scratch + begin * GH, GH, packed_h.data());
      const bool last = s + 1 == steps;
      const index_t t_next = reverse ? t - 1 : t + 1;
      T* hn_dst = last ? h_n : saved.hprev + t_next * N * H;
      T* cn_dst = mode != RnnMode::lstm ? nullptr : last ? c_n : saved.cprev + t_next * N * H;
      T* gt = saved.gates + t * N * GH;
      for (index_t n = begin; n < end; ++n) {
        T* gx = gt + n * GH;              // input part, becomes the activated gates
        const T* gh = scratch + n * GH;   // recurrent part
        T* yrow = y + (t * N + n) * y_stride;
        T* hout = hn_dst + n * H;
        const T* hprev_row = hp + n * H;
        switch (mode) {
          case RnnMode::rnn_tanh:
          case RnnMode::rnn_relu:
            for_columns<T>(0, H, [&](index_t j, auto tag) {
              using V = decltype(tag);
              const V pre = pk::padd(load<V>(gx + j), load<V>(gh + j));
              const V h = mode == RnnMode::rnn_tanh ? rnn_detail::tanh(pre) : pk::pmax(pre, splat(pre, T(0)));
              store(gx + j, h);
              store(yrow + j, h);
              store(hout + j, h);
            });
            break;
          case RnnMode::lstm: {
            const T* crow = cp + n * H;
            T* cout = cn_dst + n * H;
            T* tc = saved.aux + (t * N + n) * H;
            for_columns<T>(0, H, [&](index_t j, auto tag) {
              using V = decltype(tag);
              const V i = sigmoid(pk::padd(load<V>(gx + j), load<V>(gh + j)));
              const V f = sigmoid(pk::padd(load<V>(gx + H + j), load<V>(gh + H + j)));
              const V g = rnn_detail::tanh(pk::padd(load<V>(gx + 2 * H + j), load<V>(gh + 2 * H + j)));
              const V o = sigmoid(pk::padd(load<V>(gx + 3 * H + j), load<V>(gh + 3 * H + j)));
              const V c = pk::padd(pk::pmul(f, load<V>(crow + j)), pk::pmul(i, g));
              const V tanh_c = rnn_detail::tanh(c);
              const V h = pk::pmul(o, tanh_c);
              store(gx + j, i);
              store(gx + H + j, f);
              store(gx + 2 * H + j, g);
              store(gx + 3 * H + j, o);
              store(cout + j, c);
              store(tc + j, tanh_c);
              store(yrow + j, h);
              store(hout + j, h);
            });
            break;
          }
          case RnnMode::gru: {
            T* hn_saved = saved.aux + (t * N + n) * H;
            for_columns<T>(0, H, [&](index_t j, auto tag) {
              using V = decltype(tag);
              const V r = sigmoid(pk::padd(load<V>(gx + j), load<V>(gh + j)));
              const V z = sigmoid(pk::padd(load<V>(gx + H + j), load<V>(gh + H + j)));
              const V hn = load<V>(gh + 2 * H + j);
              const V nn = rnn_detail::tanh(pk::padd(load<V>(gx + 2 * H + j), pk::pmul(r, hn)));
              const V hp_v = load<V>(hprev_row + j);
              const V h = pk::padd(nn, pk::pmul(z, pk::psub(hp_v, nn)));  // (1 − z)·n + z·h
              store(gx + j, r);
              store(gx + H + j, z);
              store(gx + 2 * H + j, nn);
              store(hn_saved + j, hn);
              store(yrow + j, h);
              store(hout + j, h);
            });
            break;
          }
        }
      }
    }
  });
}

// Backpropagation through time for one direction of one layer. dy (row stride dy_stride) may be null
// (zeros), as may dh_n/dc_n. Writes dh0 (and dc0 for LSTM); parameter gradients are added (accumulate) or
// written; each may be null (frozen). dx [T, N, I] (+)= dgates·W_ih when non-null. Scratch: dgates and
// (GRU) dgates_h, [T, N, G·H] each, and dh/dc [N, H] each.
template <typename T>
void rnn_backward(RnnMode mode, const T* x, const T* w_ih, const T* w_hh, RnnSaved<T> saved, const T* dy,
                  index_t dy_stride, const T* dh_n, const T* dc_n, T* dh0, T* dc0, T* dw_ih, T* dw_hh, T* db_ih,
                  T* db_hh, bool acc_w_ih, bool acc_w_hh, bool acc_b_ih, bool acc_b_hh, T* dx, bool acc_dx,
                  T* dgates, T* dgates_h, T* dh, T* dc, index_t steps, index_t batch, index_t input_size,
                  index_t hidden, bool reverse) {
  using namespace rnn_detail;
  const index_t G = rnn_gate_count(mode), GH = G * hidden, H = hidden, N = batch;
  // GRU's recurrent gradient differs from the input one in the n block (r⊙ · ); the others share dgates.
  T* dgh = mode == RnnMode::gru ? dgates_h : dgates;
  const SerialScope serial(steps * N * GH * H < kRecurrentParallelMinMacs);
  const PackedWeight<T> W(w_hh, H, GH, false, H);  // W_hhᵀ
  parallel_batch_slices(N, steps * N * GH * H, [&](index_t begin, index_t count) {
    const index_t end = begin + count;
    typename PackedWeight<T>::Buffer packed_dg(GH * count + 64);
    for (index_t k = begin * H; k < end * H; ++k) {
      dh[k] = dh_n ? dh_n[k] : T(0);
      if (mode == RnnMode::lstm) dc[k] = dc_n ? dc_n[k] : T(0);
    }
    for (index_t s = steps - 1; s >= 0; --s) {
      const index_t t = reverse ? steps - 1 - s : s;
      const T* gt = saved.gates + t * N * GH;
      T* dgt = dgates + t * N * GH;
      T* dght = dgh + t * N * GH;
      for (index_t n = begin; n < end; ++n) {
        const T* gr = gt + n * GH;
        T* dg = dgt + n * GH;
        T* dhrow = dh + n * H;
        const T* dyrow = dy ? dy + (t * N + n) * dy_stride : nullptr;
        auto dh_total = [&](index_t j, auto tag) {
          using V = decltype(tag);
          const V d = load<V>(dhrow + j);
          return dyrow ? pk::padd(d, load<V>(dyrow + j)) : d;
        };
        switch (mode) {
          case RnnMode::rnn_tanh:
          case RnnMode::rnn_relu:
            for_columns<T>(0, H, [&](index_t j, auto tag) {
              using V = decltype(tag);
              const V d = dh_total(j, tag), h = load<V>(gr + j);
              const V deriv = mode == RnnMode::rnn_tanh
                                  ? pk::psub(splat(h, T(1)), pk::pmul(h, h))
                                  : pk::pselect(pk::pcmp_lt(splat(h, T(0)), h), splat(h, T(1)), splat(h, T(0)));
              store(dg + j, pk::pmul(d, deriv));
            });
            break;
          case RnnMode::lstm: {
            T* dcrow = dc + n * H;
            const T* cprow = saved.cprev + (t * N + n) * H;
            const T* tcrow = saved.aux + (t * N + n) * H;
            for_columns<T>(0, H, [&](index_t j, auto tag) {
              using V = decltype(tag);
              const V one = splat(tag, T(1));
              const V d = dh_total(j, tag);
              const V i = load<V>(gr + j), f = load<V>(gr + H + j), g = load<V>(gr + 2 * H + j),
                      o = load<V>(gr + 3 * H + j), tc = load<V>(tcrow + j);
              const V dcv = pk::padd(load<V>(dcrow + j), pk::pmul(pk::pmul(d, o), pk::psub(one, pk::pmul(tc, tc))));
              store(dg + j, pk::pmul(pk::pmul(dcv, g), pk::pmul(i, pk::psub(one, i))));
              store(dg + H + j, pk::pmul(pk::pmul(dcv, load<V>(cprow + j)), pk::pmul(f, pk::psub(one, f))));
              store(dg + 2 * H + j, pk::pmul(pk::pmul(dcv, i), pk::psub(one, pk::pmul(g, g))));
              store(dg + 3 * H + j, pk::pmul(pk::pmul(d, tc), pk::pmul(o, pk::psub(one, o))));
              store(dcrow + j, pk::pmul(dcv, f));
            });
            break;
          }
          case RnnMode::gru: {
            T* dghrow = dght + n * GH;
            const T* hprow = saved.hprev + (t * N + n) * H;
            const T* hnrow = saved.aux + (t * N + n) * H;
            for_columns<T>(0, H, [&](index_t j, auto tag) {
              using V = decltype(tag);
              const V one = splat(tag, T(1));
              const V d = dh_total(j, tag);
              const V r = load<V>(gr + j), z = load<V>(gr + H + j), nn = load<V>(gr + 2 * H + j);
              const V dn = pk::pmul(pk::pmul(d, pk::psub(one, z)), pk::psub(one, pk::pmul(nn, nn)));
              const V dz = pk::pmul(pk::pmul(d, pk::psub(load<V>(hprow + j), nn)), pk::pmul(z, pk::psub(one, z)));
              const V dr = pk::pmul(pk::pmul(dn, load<V>(hnrow + j)), pk::pmul(r, pk::psub(one, r)));
              store(dg + j, dr);
              store(dg + H + j, dz);
              store(dg + 2 * H + j, dn);
              store(dghrow + j, dr);
              store(dghrow + H + j, dz);
              store(dghrow + 2 * H + j, pk::pmul(dn, r));
              store(dhrow + j, pk::pmul(d, z));  // the direct path; the GEMM below adds the gates' part
            });
            break;
          }
        }
      }
      // dh[rows] (+)= dgates_h[t, rows] · W_hh (GRU keeps the direct path z⊙dh written above)
      if (mode != RnnMode::gru) std::fill(dh + begin * H, dh + end * H, T(0));
      W.multiply_add(dght + begin * GH, GH, count, dh + begin * H, H, packed_dg.data());
    }
    std::copy(dh + begin * H, dh + end * H, dh0 + begin * H);
    if (mode == RnnMode::lstm) std::copy(dc + begin * H, dc + end * H, dc0 + begin * H);
  });
  const index_t rows = steps * N;
  if (dw_ih) dense_backward_weight(dgates, x, dw_ih, rows, input_size, GH, acc_w_ih);
  if (db_ih) dense_backward_bias(dgates, db_ih, rows, GH, acc_b_ih);
  if (dw_hh) dense_backward_weight(dgh, saved.hprev, dw_hh, rows, H, GH, acc_w_hh);
  if (db_hh) dense_backward_bias(dgh, db_hh, rows, GH, acc_b_hh);
  if (dx) {
    for_each_slice(rows, kLhsPanel<T>, rows * input_size * GH, kParallelMinMacs, [&](index_t b, index_t c) {
      ConstMatrixMap<T> D(dgates + b * GH, c, GH);
      ConstMatrixMap<T> Wih(w_ih, GH, input_size);
      MatrixMap<T> DX(dx + b * input_size, c, input_size);
      if (acc_dx)
        DX.noalias() += D * Wih;
      else
        DX.noalias() = D * Wih;
    });
  }
}

// Entry points, compiled once per CPU level (kernels/entry.hpp).
#define FASTNN_RECURRENT_ENTRIES(X) X(rnn_forward) X(rnn_backward)
FASTNN_DECLARE_ENTRIES(FASTNN_RECURRENT_ENTRIES)

}  // namespace fastnn
