// The threads runtime under every kernel. runtime.cpp is the one file that uses OpenMP: kernels open their
// parallel regions through run_parallel (kernels/parallel.hpp wraps it), which is where fastnn makes forked
// children work (see runtime.cpp) and where a thread's thread count is read.
// FASTNN_EXPORT marks what the bindings call across the boundary to the kernel library of a CPU level.
#pragma once

#define FASTNN_EXPORT __attribute__((visibility("default")))

namespace fastnn::runtime {

// Threads a kernel called on this thread may use: OpenMP's thread count for this thread (fnn.set_num_threads,
// OMP_NUM_THREADS, threadpoolctl), or 1 inside a serial scope or where a forked child could not keep threads.
int max_threads();

// Whether this thread is already inside a parallel region (kernels then run inline).
bool in_parallel();

// Runs body(ctx, thread, team_size) on a team of `threads` threads (body is run by every member), or on the
// calling thread alone (team_size 1) while backing off from contention (runtime.cpp).
void run_parallel(int threads, void (*body)(void* ctx, int thread, int team_size), void* ctx);

// While a SerialScope lives, max_threads() is 1 on this thread (a small call's GEMMs stay on one thread).
class SerialScope {
 public:
  explicit SerialScope(bool serial);
  ~SerialScope();
  SerialScope(const SerialScope&) = delete;
  SerialScope& operator=(const SerialScope&) = delete;

 private:
  bool serial_;
};

// For the bindings: the thread count, and how the runtime stands (fnn.show_config()).
FASTNN_EXPORT void set_num_threads(int threads);
FASTNN_EXPORT int get_num_threads();

struct Info {
  const char* level;            // the CPU level this library was compiled for ("avx2", ...)
  const char* library;          // path of the library holding the kernels
  const char* eigen_simd;       // the SIMD extensions Eigen vectorises with at this level
  const char* openmp_library;   // path of the OpenMP runtime in use ("" if unknown)
  int openmp_version;           // _OPENMP (yyyymm)
  int processors;               // omp_get_num_procs()
  bool fork_child;              // this process was forked from one that had fastnn loaded
  bool fork_serial;             // ... and this thread could not keep its threads there (kernels run on one)
  long parallel_regions;        // regions this process has run on more than one thread (since its fork)
  int last_team_size;           // threads in the latest of them
  long contended_regions;       // regions whose opening thread waited long for its team (runtime.cpp)
  long yielded_regions;         // regions run on one thread while backing off from contention
  double backoff_left_s;        // how long regions still run on one thread (0: they use the team)
};
FASTNN_EXPORT Info info();

// For tests: makes the next fork behave as if the OpenMP runtime could not release the forking thread's team
// (the fallback of runtime.cpp: the child's forking thread then runs kernels on one thread).
FASTNN_EXPORT void simulate_unreleasable_team(bool on);

// For tests: ends any back-off (the next region uses the team); then, while on, every parallel region counts
// as contended and the regions after it run on one thread until it is turned off.
FASTNN_EXPORT void simulate_contention(bool on);

}  // namespace fastnn::runtime
