// Thread control and build information.
#include <omp.h>

#include <Eigen/Core>
#include <stdexcept>

#include "bindings/registry.hpp"

namespace fastnn::bind {

void register_threads(pybind11::module_& m) {
  // Kernels split work over threads themselves (kernels/parallel.hpp); Eigen's GEMMs run single-threaded.
  Eigen::setNbThreads(1);
  m.def("set_num_threads", [](int n) {
    if (n < 1) throw pybind11::value_error("set_num_threads: n must be >= 1, got " + std::to_string(n));
    omp_set_num_threads(n);
  });
  m.def("get_num_threads", []() { return omp_get_max_threads(); });
  m.def("build_info", []() {
    pybind11::dict info;
#ifdef FASTNN_BUILD_NATIVE
    info["native"] = true;
#else
    info["native"] = false;
#endif
#ifdef EIGEN_VECTORIZE_AVX2
    info["avx2"] = true;
#else
    info["avx2"] = false;
#endif
#ifdef EIGEN_VECTORIZE_FMA
    info["fma"] = true;
#else
    info["fma"] = false;
#endif
#ifdef EIGEN_VECTORIZE_AVX512
    info["avx512"] = true;
#else
    info["avx512"] = false;
#endif
    info["eigen"] = std::to_string(EIGEN_WORLD_VERSION) + "." + std::to_string(EIGEN_MAJOR_VERSION) + "." +
                    std::to_string(EIGEN_MINOR_VERSION);
    info["openmp"] = _OPENMP;
    return info;
  });
}

}  // namespace fastnn::bind
