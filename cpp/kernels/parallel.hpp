// Threading policy shared by every kernel: one level of parallelism, ours.
// Eigen never threads its own GEMMs (EIGEN_DONT_PARALLELIZE): its blocking, and so the order in which each
// dot product is summed, would depend on the thread count. Instead a kernel splits its output into slices
// with for_each_slice, and each thread runs a single-threaded Eigen GEMM on its slice: every output element
// is summed the same way whatever the thread count, so results are identical bit for bit.
// Small work runs on one thread (a parallel region costs more than it saves).
// Every parallel region goes through runtime::run_parallel (runtime/runtime.cpp: OpenMP, fork safety).
#pragma once
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "runtime/runtime.hpp"

namespace fastnn {

using index_t = std::int64_t;

// Below this many elements (or multiply-adds, for GEMMs: see kParallelMinMacs) one thread is faster.
constexpr index_t kParallelMinElements = 1 << 15;
constexpr index_t kParallelMinMacs = 1 << 17;

namespace detail {

// Binding files (FASTNN_GLUE) are compiled once, for the baseline CPU, and call kernels through their entry
// points (kernels/entry.hpp). Kernel code reaching a parallel region in a binding file means an entry point is
// missing from its header's list: that kernel would run as baseline code whatever the CPU.
#ifdef FASTNN_GLUE
template <typename Body>
constexpr bool kKernelCodeInBindingFile = std::is_same_v<Body, Body>;
#else
template <typename Body>
constexpr bool kKernelCodeInBindingFile = false;
#endif

// body(thread, team_size) on every member of a team of `threads`.
template <typename Body>
void run_team(int threads, Body& body) {
  static_assert(!kKernelCodeInBindingFile<Body>,
                "kernel code compiled into a binding file: add the kernel this binding calls to the "
                "FASTNN_<NAME>_ENTRIES list at the end of its header (see cpp/kernels/entry.hpp)");
  runtime::run_parallel(
      threads, [](void* ctx, int t, int nt) { (*static_cast<Body*>(ctx))(t, nt); }, &body);
}

}  // namespace detail

// Slice t of `slices` cut from [0, n) on whole granules: the boundaries are t·panels/slices rounded to the
// nearest panel (panels = n / granule, at least `slices`), and the last slice also takes the remainder of under
// a granule. Every slice is at least one granule, and the largest is as small as whole panels allow: 128 rows
// on 48-row panels split 48 : 80, not 96 : 32. (Out of line: for_each_slice is inlined into every kernel.)
struct Slice {
  index_t begin, count;
};
[[gnu::noinline]] inline Slice slice_of(index_t n, index_t granule, index_t t, index_t slices) {
  if (t >= slices) return {n, 0};
  const index_t panels = n / granule;
  const index_t begin = (panels * t + slices / 2) / slices * granule;
  const index_t end = t + 1 == slices ? n : (panels * (t + 1) + slices / 2) / slices * granule;
  return {begin, end - begin};
}

// How many slices for_each_slice cuts n into on `threads` threads (1: it runs inline).
[[gnu::noinline]] inline index_t slice_count(index_t n, index_t granule, index_t work, index_t min_work,
                                             int threads) {
  if (threads <= 1 || work < min_work || n < 2 * granule || runtime::in_parallel()) return 1;
  return std::min<index_t>(threads, n / granule);
}

// The largest of those slices, as a fraction of n: what the slowest thread computes.
[[gnu::noinline]] inline double largest_share(index_t n, index_t granule, index_t work, index_t min_work,
                                              int threads) {
  const index_t slices = slice_count(n, granule, work, min_work, threads);
  index_t largest = 0;
  for (index_t t = 0; t < slices; ++t) largest = std::max(largest, slice_of(n, granule, t, slices).count);
  return double(largest) / double(n);
}

// Calls fn(begin, count) on contiguous slices of [0, n), one per thread (slice_of), each a multiple of
// `granule` (SIMD width or GEMM panel) except the last, which is never shorter than a granule (a GEMM slice of
// one row would take Eigen's GEMV path and sum in another order than the whole product does). Runs inline on
// one thread when `work` is below `min_work`.
template <typename Fn>
void for_each_slice(index_t n, index_t granule, index_t work, index_t min_work, Fn&& fn) {
  const index_t slices = slice_count(n, granule, work, min_work, runtime::max_threads());
  if (slices <= 1) {
    if (n > 0) fn(index_t(0), n);
    return;
  }
  auto body = [&](index_t t, index_t nt) {  // nt < slices if the runtime gave fewer threads than asked
    const Slice s = slice_of(n, granule, t, std::min(slices, nt));
    if (s.count > 0) fn(s.begin, s.count);
  };
  detail::run_team(static_cast<int>(slices), body);
}

// fn(i) for i in [0, n), spread over the threads in contiguous ranges when `parallel` holds (and there are
// threads to spare), otherwise inline with no parallel region at all. (An `#pragma omp parallel if (false)`
// region is not free: it still counts as a nesting level, so a parallel region a kernel opens inside it gets
// a fresh team of its own. At batch 1 a CNN's inference was 8× slower through that.)
template <typename Fn>
void parallel_for(index_t n, bool parallel, Fn&& fn) {
  const int threads = parallel && n >= 2 ? runtime::max_threads() : 1;
  if (threads <= 1 || runtime::in_parallel()) {
    for (index_t i = 0; i < n; ++i) fn(i);
    return;
  }
  auto body = [&](index_t t, index_t nt) {
    const index_t share = n / nt, extra = n % nt;
    const index_t begin = t * share + std::min(t, extra), end = begin + share + (t < extra ? 1 : 0);
    for (index_t i = begin; i < end; ++i) fn(i);
  };
  detail::run_team(static_cast<int>(std::min<index_t>(threads, n)), body);
}

}  // namespace fastnn
