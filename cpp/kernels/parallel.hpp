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

// Calls fn(begin, count) on contiguous slices of [0, n), one per thread, each a multiple of `granule`
// (SIMD width or GEMM panel) except the last, which is never shorter than a granule: a tail that would be joins
// the slice before it (a GEMM slice of one row would take Eigen's GEMV path and sum in another order than the
// whole product does). Runs inline on one thread when `work` is below `min_work`.
template <typename Fn>
void for_each_slice(index_t n, index_t granule, index_t work, index_t min_work, Fn&& fn) {
  const int threads = runtime::max_threads();
  if (threads <= 1 || work < min_work || n < 2 * granule || runtime::in_parallel()) {
    if (n > 0) fn(index_t(0), n);
    return;
  }
  auto body = [&](index_t t, index_t nt) {
    const index_t chunk = ((n + nt - 1) / nt + granule - 1) / granule * granule;
    const index_t begin = t * chunk;
    if (begin >= n || (begin > 0 && n - begin < granule)) return;  // nothing left, or a tail joined to t - 1
    const index_t end = n - (begin + chunk) < granule ? n : begin + chunk;
    fn(begin, end - begin);
  };
  detail::run_team(threads, body);
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
