// Embedding gradients: rows of an upstream gradient added into a table's gradient at looked-up indices.
#pragma once
#include <cstdint>

#include "kernels/parallel.hpp"

namespace fastnn {

// grad[index[k]] += rows[k] for k = 0..n−1; rows [n, dim], grad [num_rows, dim], every index in [0, num_rows).
// Threads own disjoint ranges of grad's rows (each scans all n indices and applies only its own), so every
// row receives its additions in k order whatever the thread count: the same bits, and no two threads ever
// write one row.
template <typename T>
void scatter_add_rows(const std::int64_t* index, const T* rows, index_t n, index_t dim, T* grad, index_t num_rows) {
  for_each_slice(num_rows, 1, n * dim, kParallelMinElements, [&](index_t begin, index_t count) {
    const index_t end = begin + count;
    for (index_t k = 0; k < n; ++k) {
      const index_t r = index[k];
      if (r < begin || r >= end) continue;
      T* dst = grad + r * dim;
      const T* src = rows + k * dim;
      for (index_t d = 0; d < dim; ++d) dst[d] += src[d];
    }
  });
}

}  // namespace fastnn
