// Embedding lookups and gradients as one gather-scale-scatter: rows of a source added into rows of a
// destination, without materialising the gathered rows.
#pragma once
#include <cstdint>

#include "kernels/entry.hpp"
#include "kernels/parallel.hpp"

namespace fastnn {

// dst[dst_index[k]] += scale[k] · src[src_index[k]] for k = 0..n−1, rows of `dim` values. src_index null:
// src row k; scale null: 1. EmbeddingBag's forward (dst = bags, src = table), both backwards (dst = the
// table's gradient) and Embedding's backward are all this. Every index must be in range (the binding checks).
// Threads own disjoint ranges of dst's rows (each scans all n entries and applies only its own), so every
// row receives its additions in k order whatever the thread count: the same bits, and no two threads ever
// write one row.
template <typename T>
void scatter_add_rows(const std::int64_t* dst_index, T* dst, index_t dst_rows, const std::int64_t* src_index,
                      const T* src, const T* scale, index_t n, index_t dim) {
  for_each_slice(dst_rows, 1, n * dim, kParallelMinElements, [&](index_t begin, index_t count) {
    const index_t end = begin + count;
    for (index_t k = 0; k < n; ++k) {
      const index_t r = dst_index[k];
      if (r < begin || r >= end) continue;
      T* d = dst + r * dim;
      const T* s = src + (src_index ? src_index[k] : k) * dim;
      if (scale) {
        const T a = scale[k];
        for (index_t j = 0; j < dim; ++j) d[j] += a * s[j];
      } else {
        for (index_t j = 0; j < dim; ++j) d[j] += s[j];
      }
    }
  });
}

// Entry points, compiled once per CPU level (kernels/entry.hpp).
#define FASTNN_EMBEDDING_ENTRIES(X) X(scatter_add_rows)
FASTNN_DECLARE_ENTRIES(FASTNN_EMBEDDING_ENTRIES)

}  // namespace fastnn
