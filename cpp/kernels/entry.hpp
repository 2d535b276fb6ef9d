// Kernel entry points: the kernel function templates that binding files call.
//
// Kernels are compiled once per CPU level (baseline, avx2, avx512), each level into a shared library of its
// own (libfastnn_kernels_<level>.so); the binding files (fastnn._core) are compiled once, for the baseline
// CPU, and call the entry points of the one library the loader opened at import (python/fastnn/ops.py). So
// that a binding file never compiles kernel code itself, each kernel header ends with the list of the
// kernels the bindings call, named after the header (dense.hpp: FASTNN_DENSE_ENTRIES):
//
//   #define FASTNN_DENSE_ENTRIES(X) X(dense_forward) X(dense_backward_input)
//   FASTNN_DECLARE_ENTRIES(FASTNN_DENSE_ENTRIES)
//
// FASTNN_DECLARE_ENTRIES declares each of them `extern template` for float and double, exported; CMake
// generates, for every header with such a list, one file that defines them (FASTNN_DEFINE_ENTRIES) and
// compiles it once per level. A kernel that a binding calls without it being listed stops the build at its
// first parallel region (kernels/parallel.hpp). With FASTNN_NATIVE=ON everything is one library for the
// building machine (FASTNN_ONE_LIBRARY) and the lists declare nothing.
#pragma once
#include "runtime/runtime.hpp"  // FASTNN_EXPORT

#define FASTNN_ENTRY_AS(KIND, NAME, T) KIND FASTNN_EXPORT decltype(NAME<T>) NAME<T>;
#define FASTNN_DEFINE_ENTRY(NAME) FASTNN_ENTRY_AS(template, NAME, float) FASTNN_ENTRY_AS(template, NAME, double)
#define FASTNN_DEFINE_ENTRIES(LIST) LIST(FASTNN_DEFINE_ENTRY)

#ifdef FASTNN_ONE_LIBRARY
#define FASTNN_DECLARE_ENTRIES(LIST)
#else
#define FASTNN_DECLARE_ENTRY(NAME) \
  FASTNN_ENTRY_AS(extern template, NAME, float) FASTNN_ENTRY_AS(extern template, NAME, double)
#define FASTNN_DECLARE_ENTRIES(LIST) LIST(FASTNN_DECLARE_ENTRY)
#endif
