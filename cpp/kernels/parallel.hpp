// Threading policy shared by every kernel.
// One level of parallelism: GEMMs are threaded by Eigen itself; element-wise and per-row loops use an
// OpenMP loop only above a size threshold, and never around a GEMM (nesting oversubscribes the cores).
#pragma once
#include <cstdint>

namespace fastnn {

using index_t = std::int64_t;

// Below this many elements a parallel region costs more than it saves (BUILD-NOTES: small work, 1 thread).
constexpr index_t kParallelMinElements = 1 << 15;

}  // namespace fastnn
