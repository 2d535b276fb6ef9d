// Threading policy shared by every kernel: one level of parallelism, ours.
// Eigen's own GEMM threading is switched off (Eigen::setNbThreads(1)): its blocking, and so the order in
// which each dot product is summed, depends on the thread count. Instead a kernel splits its output into
// slices with for_each_slice, and each thread runs a single-threaded Eigen GEMM on its slice: every output
// element is summed the same way whatever the thread count, so results are identical bit for bit.
// Small work runs on one thread (a parallel region costs more than it saves).
#pragma once
#include <omp.h>

#include <algorithm>
#include <cstdint>

namespace fastnn {

using index_t = std::int64_t;

// Below this many elements (or multiply-adds, for GEMMs: see kParallelMinMacs) one thread is faster.
constexpr index_t kParallelMinElements = 1 << 15;
constexpr index_t kParallelMinMacs = 1 << 17;

// Calls fn(begin, count) on contiguous slices of [0, n), one per thread, each a multiple of `granule`
// (SIMD width or GEMM panel) except the last. Runs inline on one thread when `work` is below `min_work`.
template <typename Fn>
void for_each_slice(index_t n, index_t granule, index_t work, index_t min_work, Fn&& fn) {
  const int threads = omp_get_max_threads();
  if (threads <= 1 || work < min_work || n < 2 * granule || omp_in_parallel()) {
    if (n > 0) fn(index_t(0), n);
    return;
  }
#pragma omp parallel num_threads(threads)
  {
    const index_t t = omp_get_thread_num(), nt = omp_get_num_threads();
    const index_t chunk = ((n + nt - 1) / nt + granule - 1) / granule * granule;
    const index_t begin = std::min(n, t * chunk);
    const index_t count = std::min(n, begin + chunk) - begin;
    if (count > 0) fn(begin, count);
  }
}

// fn(i) for i in [0, n), spread over the threads when `parallel` holds (and there are threads to spare),
// otherwise inline with no OpenMP construct at all. (An `#pragma omp parallel if (false)` region is not free:
// it still counts as a nesting level, so a parallel region a kernel opens inside it gets a fresh team of its
// own. At batch 1 a CNN's inference was 8× slower through that.)
template <typename Fn>
void parallel_for(index_t n, bool parallel, Fn&& fn) {
  if (!parallel || n < 2 || omp_get_max_threads() <= 1 || omp_in_parallel()) {
    for (index_t i = 0; i < n; ++i) fn(i);
    return;
  }
#pragma omp parallel for schedule(static)
  for (index_t i = 0; i < n; ++i) fn(i);
}

}  // namespace fastnn
