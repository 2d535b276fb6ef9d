// Input checks that run inside kernels, so validating a batch costs one vectorised pass, not a NumPy call.
#pragma once
#include <cmath>
#include "kernels/parallel.hpp"

namespace fastnn {

// True when every value is finite. x*0 is 0 for finite x and NaN for NaN/±inf; the sum keeps the NaN.
template <typename T>
bool all_finite(const T* x, index_t n) {
  T acc = 0;
#pragma omp simd reduction(+ : acc)
  for (index_t i = 0; i < n; ++i) acc += x[i] * T(0);
  return acc == T(0);
}

}  // namespace fastnn
