// Parallel regions, thread counts and fork handling: the only file that uses OpenMP.
//
// Fork. GNU libgomp keeps, for every thread that has led a parallel region, a team of worker threads that wait
// for its next region. fork() copies only the calling thread, so in the child that thread's team exists in
// name only, and its next parallel region waits forever for workers that are not there (libgomp registers
// no fork handlers). fastnn's pthread_atfork handlers make the child work:
//  - before the fork, new fastnn regions wait and regions in flight on other threads finish (the child then
//    never inherits libgomp's bookkeeping half-updated by one of ours), and the forking thread's team is
//    released with omp_pause_resource_all (OpenMP 5.0; libgomp implements it for the host). The child starts
//    with no team and builds a fresh one, with all its threads, at its first region; the parent builds a new
//    one at its next region (a few tens of microseconds, once per fork).
//  - if the runtime cannot release the team (omp_pause_resource_all missing or failing), the child's forking
//    thread runs kernels on one thread from then on: slower, never stuck. fnn.show_config() says so.
// Threads other than the forking one do not exist in the child; threads it creates later build their own
// teams. Results do not depend on the thread count, so a child computes exactly what its parent would.
//
// Contention. A region ends when its last thread does. When another busy process (or another thread pool)
// takes a core, a member of the team waits for the scheduler to give it a turn (milliseconds) while the
// others wait for it, and every region pays that: a small MLP's training step, 0.5 ms alone, took 23 ms on
// average with one busy process beside it. So run_parallel times its regions: when the thread that opened a
// region waited more than kLostMin for the rest of its team, and more than twice as long as its own share of
// the work took (no split of ours is that uneven: a slice holds whole panels, at least one, the counts
// differ by at most one, and the last also takes a remainder of under one panel, so no slice is three times
// another), the region counts as contended. Once contended regions have lost a fifth of the time in a window
// of 100 ms (a lone wait, a thread starting or the host taking a virtual core for a moment, costs far less),
// regions run on one thread for a back-off period: 50 ms, doubled each time the next back-off follows within
// four periods (up to 1.6 s), started afresh after a quiet spell. Then the next region tries the team again.
// On one thread the kernels compute the same bits (results never depend on the thread count), at one core's
// speed, which is what a busy machine has to give.
#include "runtime/runtime.hpp"

#include <dlfcn.h>
#include <omp.h>
#include <pthread.h>

#include <Eigen/Core>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <limits>
#include <string>
#include <utility>
#include <thread>

#ifndef FASTNN_LEVEL_NAME
#define FASTNN_LEVEL_NAME "native"
#endif

namespace fastnn::runtime {

namespace {

std::atomic<int> g_regions{0};       // parallel regions in flight, on any thread
std::atomic<bool> g_forking{false};  // a fork is being prepared: regions about to start wait
std::atomic<bool> g_fork_child{false};
std::atomic<bool> g_simulate_unreleasable{false};
std::atomic<long> g_teams{0};     // parallel regions run on more than one thread by this process
std::atomic<int> g_last_team{1};  // threads in the latest one

std::atomic<long> g_contended{0};                // regions found contended
std::atomic<long> g_yielded{0};                  // regions run on one thread in a back-off period
std::atomic<long long> g_serial_until{0};        // steady clock, ns: regions before this run on one thread
std::atomic<long long> g_backoff{0};             // the current back-off period (ns)
std::atomic<long long> g_last_backoff{0};        // when the latest back-off began
std::atomic<long long> g_window_start{0};        // the current window of kWindow ns ...
std::atomic<long long> g_window_lost{0};         // ... and the time contended regions lost in it
std::atomic<bool> g_simulate_contention{false};  // tests: every region counts as contended, backs off for good

constexpr long long kLostMin = 250'000;               // ns the opening thread may wait for its team
constexpr int kTeamWarmUp = 8;                        // regions of a new team that are not judged
constexpr long long kWindow = 100'000'000;            // ns
constexpr long long kLostBudget = 20'000'000;         // ns lost in a window before backing off (a fifth)
constexpr long long kFirstBackoff = 50'000'000;       // ns
constexpr long long kLongestBackoff = 1'600'000'000;  // ns

long long now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// A region that began at `start` ended at `end`; its opening thread worked from begin to finish.
void note_region(long long start, long long begin, long long finish, long long end) {
  const long long lost = (begin - start) + (end - finish), busy = finish - begin;
  const bool simulated = g_simulate_contention.load(std::memory_order_relaxed);
  if (!simulated && (lost <= kLostMin || lost <= 2 * busy)) return;
  g_contended.fetch_add(1, std::memory_order_relaxed);
  if (!simulated) {  // back off once contention has cost a fifth of the time in this window
    if (end - g_window_start.load(std::memory_order_relaxed) > kWindow) {
      g_window_start.store(end, std::memory_order_relaxed);
      g_window_lost.store(0, std::memory_order_relaxed);
    }
    if (g_window_lost.fetch_add(lost, std::memory_order_relaxed) + lost <= kLostBudget) return;
    g_window_lost.store(0, std::memory_order_relaxed);
  }
  // doubled when it follows the previous back-off within four of its periods
  long long backoff = g_backoff.load(std::memory_order_relaxed);
  const long long previous = g_last_backoff.exchange(end, std::memory_order_relaxed);
  backoff = backoff > 0 && end - previous <= 5 * backoff ? std::min(2 * backoff, kLongestBackoff) : kFirstBackoff;
  g_backoff.store(backoff, std::memory_order_relaxed);
  // simulated: backing off until the test ends it (so that what it counts does not depend on timing)
  g_serial_until.store(simulated ? std::numeric_limits<long long>::max() : end + backoff, std::memory_order_relaxed);
}

void clear_contention() {
  g_serial_until.store(0);
  g_backoff.store(0);
  g_last_backoff.store(0);
  g_window_start.store(0);
  g_window_lost.store(0);
}

thread_local int tl_serial_depth = 0;
thread_local bool tl_leads_team = false;   // the OpenMP runtime keeps a team for this thread
thread_local int tl_team_built = 0;        // ... of this many threads (0: none yet, or released)
thread_local int tl_team_age = 0;          // regions it has run since it was built
thread_local bool tl_fork_serial = false;  // forked child whose team could not be released: one thread

bool release_team() {
  if (g_simulate_unreleasable.load()) return false;
#ifdef FASTNN_HAVE_OMP_PAUSE
  return omp_pause_resource_all(omp_pause_hard) == 0;
#else
  return false;
#endif
}

void before_fork() {
  g_forking.store(true);
  while (g_regions.load() != 0) std::this_thread::yield();
  if (tl_leads_team && release_team()) {
    tl_leads_team = false;
    tl_team_built = 0;
  }
}

void after_fork_in_parent() { g_forking.store(false); }

void after_fork_in_child() {
  g_regions.store(0);
  g_teams.store(0);
  g_last_team.store(1);
  g_forking.store(false);
  g_fork_child.store(true);
  g_contended.store(0);
  g_yielded.store(0);
  clear_contention();  // contention the parent met says nothing about the child's first regions
  if (tl_leads_team) {  // its team is a ghost: never open a region on this thread again
    tl_fork_serial = true;
    tl_leads_team = false;
    tl_team_built = 0;
  }
}

__attribute__((constructor)) void register_fork_handlers() {
  pthread_atfork(before_fork, after_fork_in_parent, after_fork_in_child);
}

}  // namespace

int max_threads() { return tl_serial_depth > 0 || tl_fork_serial ? 1 : omp_get_max_threads(); }

bool in_parallel() { return omp_in_parallel(); }

void run_parallel(int threads, void (*body)(void*, int, int), void* ctx) {
  if (threads <= 1 || tl_fork_serial) {
    body(ctx, 0, 1);
    return;
  }
  for (;;) {  // enter unless a fork is being prepared (seq_cst pairs with before_fork's store and load)
    g_regions.fetch_add(1);
    if (!g_forking.load()) break;
    g_regions.fetch_sub(1);
    while (g_forking.load()) std::this_thread::yield();
  }
  const long long start = now_ns();
  if (start < g_serial_until.load(std::memory_order_relaxed)) {  // backing off from contention
    g_regions.fetch_sub(1);
    g_yielded.fetch_add(1, std::memory_order_relaxed);
    body(ctx, 0, 1);
    return;
  }
  tl_leads_team = true;
  // The first regions of a new team (the first on this thread, or a larger team) wait for threads to be
  // created and for their first allocations and page faults: that is not contention.
  if (threads > tl_team_built) {
    tl_team_built = threads;
    tl_team_age = 0;
  }
  if (tl_team_age <= kTeamWarmUp) ++tl_team_age;  // counts up to the warm-up only: never wraps
  const bool warm = tl_team_age > kTeamWarmUp;
  long long begin = 0, finish = 0;
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    if (t == 0) {
      g_last_team.store(nt, std::memory_order_relaxed);
      begin = now_ns();
    }
    body(ctx, t, nt);
    if (t == 0) finish = now_ns();
  }
  if (warm) note_region(start, begin, finish, now_ns());
  g_regions.fetch_sub(1);
  g_teams.fetch_add(1, std::memory_order_relaxed);
}

SerialScope::SerialScope(bool serial) : serial_(serial) {
  if (serial_) ++tl_serial_depth;
}

SerialScope::~SerialScope() {
  if (serial_) --tl_serial_depth;
}

void set_num_threads(int threads) { omp_set_num_threads(threads); }

int get_num_threads() { return tl_fork_serial ? 1 : omp_get_max_threads(); }

namespace {

// The SIMD extensions Eigen vectorises with in this library, lowest first.
std::string eigen_simd() {
  const std::pair<bool, const char*> sets[] = {
#if defined(EIGEN_VECTORIZE_SSE2)
      {true, "sse2"},
#endif
#if defined(EIGEN_VECTORIZE_SSE4_2)
      {true, "sse4_2"},
#endif
#if defined(EIGEN_VECTORIZE_AVX)
      {true, "avx"},
#endif
#if defined(EIGEN_VECTORIZE_FMA)
      {true, "fma"},
#endif
#if defined(EIGEN_VECTORIZE_AVX2)
      {true, "avx2"},
#endif
#if defined(EIGEN_VECTORIZE_AVX512)
      {true, "avx512f"},
#endif
#if defined(EIGEN_VECTORIZE_AVX512DQ)
      {true, "avx512dq"},
#endif
#if defined(EIGEN_VECTORIZE_NEON)
      {true, "neon"},
#endif
      {false, ""}};
  std::string out;
  for (const auto& [on, name] : sets)
    if (on) out += (out.empty() ? "" : " ") + std::string(name);
  return out;
}

}  // namespace

Info info() {
  Info out{};
  out.level = FASTNN_LEVEL_NAME;
  static const std::string simd = eigen_simd();
  out.eigen_simd = simd.c_str();
  Dl_info where{};
  out.openmp_library =
      dladdr(reinterpret_cast<void*>(&omp_get_max_threads), &where) && where.dli_fname ? where.dli_fname : "";
  Dl_info self{};
  out.library = dladdr(reinterpret_cast<void*>(&info), &self) && self.dli_fname ? self.dli_fname : "";
  out.openmp_version = _OPENMP;
  out.processors = omp_get_num_procs();
  out.fork_child = g_fork_child.load();
  out.fork_serial = tl_fork_serial;
  out.parallel_regions = g_teams.load();
  out.last_team_size = g_last_team.load();
  out.contended_regions = g_contended.load();
  out.yielded_regions = g_yielded.load();
  out.backoff_left_s = std::clamp(g_serial_until.load() - now_ns(), 0LL, kLongestBackoff) * 1e-9;
  return out;
}

void simulate_unreleasable_team(bool on) { g_simulate_unreleasable.store(on); }

void simulate_contention(bool on) {
  clear_contention();
  g_simulate_contention.store(on);
}

}  // namespace fastnn::runtime
