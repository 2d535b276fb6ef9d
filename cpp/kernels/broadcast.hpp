// Element-wise arithmetic with NumPy broadcasting, and the sum its gradient needs, in the form graphs use:
// the output seen as (O, M, I) and the broadcast operand b as (M,) repeated along O and I. A bias (C, 1, 1) on
// (N, C, H, W) is M = C, I = H·W; a positional table (T, D) on (N, T, D) is M = T·D, I = 1; a scalar is M = 1.
// (The Python side brings shapes to this form; NumPy does the rest.) Large arrays are split over threads; every
// output element is computed, and every sum taken, in an order independent of the thread count.
#pragma once
#include <algorithm>
#include <vector>

#include "kernels/entry.hpp"
#include "kernels/parallel.hpp"
#include "kernels/reductions.hpp"

namespace fastnn {

enum class Binary { add, sub, mul, div };

// y[o, m, i] = a[o, m, i] op b[m] (b op a when b_first).
template <typename T>
void broadcast_binary(Binary op, const T* a, const T* b, T* y, index_t O, index_t M, index_t I, bool b_first) {
  auto rows = [&](auto f) {
    // Parallel over o when there are several; one (o) row of M·I otherwise, split over m.
    auto block = [&](index_t o, index_t m0, index_t m1) {
      const T* ar = a + o * M * I;
      T* yr = y + o * M * I;
      if (I == 1) {
        for (index_t m = m0; m < m1; ++m) yr[m] = f(ar[m], b[m]);
      } else {
        for (index_t m = m0; m < m1; ++m) {
          const T bm = b[m];
          const T* x = ar + m * I;
          T* z = yr + m * I;
          for (index_t i = 0; i < I; ++i) z[i] = f(x[i], bm);
        }
      }
    };
    const bool big = O * M * I >= kParallelMinElements;
    if (O >= 2) {
      parallel_for(O, big, [&](index_t o) { block(o, 0, M); });
    } else {
      for_each_slice(M, 64, M * I, kParallelMinElements,
                     [&](index_t begin, index_t count) { block(0, begin, begin + count); });
    }
  };
  switch (op) {  // one loop per op, so each vectorises
    case Binary::add: rows([](T x, T z) { return x + z; }); break;
    case Binary::mul: rows([](T x, T z) { return x * z; }); break;
    case Binary::sub:
      if (b_first) rows([](T x, T z) { return z - x; }); else rows([](T x, T z) { return x - z; });
      break;
    case Binary::div:
      if (b_first) rows([](T x, T z) { return z / x; }); else rows([](T x, T z) { return x / z; });
      break;
  }
}

// out[m] = Σ_o Σ_i g[o, m, i]: the gradient of b. With I == 1 the rows o are added in order (vectorised along
// m, split over m); otherwise each out[m] is one detail::LaneSum over its (o, i) terms, o in order.
template <typename T>
void reduce_broadcast(const T* g, T* out, index_t O, index_t M, index_t I) {
  const bool big = O * M * I >= kParallelMinElements;
  if (I == 1) {
    for_each_slice(M, 64, O * M, kParallelMinElements, [&](index_t begin, index_t count) {
      T* dst = out + begin;
      std::copy(g + begin, g + begin + count, dst);
      for (index_t o = 1; o < O; ++o) {
        const T* src = g + o * M + begin;
        for (index_t j = 0; j < count; ++j) dst[j] += src[j];
      }
    });
    return;
  }
  parallel_for(M, big && M >= 2, [&](index_t m) {
    detail::LaneSum<T> acc;
    for (index_t o = 0; o < O; ++o) {
      const T* src = g + (o * M + m) * I;
      acc.add(I, [src](index_t i) { return src[i]; });
    }
    out[m] = acc.total();
  });
}

// Concatenation along one axis, every array seen as (outer, width_k): each output row is the inputs' rows
// one after the other. Rows are split over threads.
template <typename T>
void concat_rows(const std::vector<const T*>& parts, const std::vector<index_t>& widths, T* y, index_t outer,
                 index_t row_width) {
  parallel_for(outer, outer * row_width >= 4 * kParallelMinElements, [&](index_t r) {
    T* dst = y + r * row_width;
    for (std::size_t k = 0; k < parts.size(); ++k) {
      std::copy(parts[k] + r * widths[k], parts[k] + (r + 1) * widths[k], dst);
      dst += widths[k];
    }
  });
}

// Entry points, compiled once per CPU level (kernels/entry.hpp).
#define FASTNN_BROADCAST_ENTRIES(X) X(broadcast_binary) X(reduce_broadcast) X(concat_rows)
FASTNN_DECLARE_ENTRIES(FASTNN_BROADCAST_ENTRIES)

}  // namespace fastnn
