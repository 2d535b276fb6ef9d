// Thread control and build information.
#include <Eigen/Core>
#include <string>

#include "bindings/registry.hpp"
#include "runtime/runtime.hpp"

namespace fastnn::bind {

void register_threads(pybind11::module_& m) {
  m.def("set_num_threads", [](int n) {
    if (n < 1) throw pybind11::value_error("set_num_threads: n must be >= 1, got " + std::to_string(n));
    runtime::set_num_threads(n);
  }, pybind11::arg("n"),
        "Set the number of OpenMP threads the kernels use.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "n : int\n"
        "    At least 1.\n"
        "\n"
        "Returns\n"
        "-------\n"
        "None\n"
        "\n"
        "Raises\n"
        "------\n"
        "ValueError\n"
        "    For n < 1.");
  m.def("get_num_threads", []() { return runtime::get_num_threads(); },
        "The number of OpenMP threads the kernels use.\n"
        "\n"
        "Returns\n"
        "-------\n"
        "int");
  m.def("runtime_info", []() {
    const runtime::Info r = runtime::info();
    pybind11::dict info;
    info["level"] = r.level;
    info["library"] = r.library;
    info["eigen_simd"] = r.eigen_simd;
    info["openmp_library"] = r.openmp_library;
    info["openmp_version"] = r.openmp_version;
    info["processors"] = r.processors;
    info["fork_child"] = r.fork_child;
    info["fork_serial"] = r.fork_serial;
    info["parallel_regions"] = r.parallel_regions;
    info["last_team_size"] = r.last_team_size;
    info["contended_regions"] = r.contended_regions;
    info["yielded_regions"] = r.yielded_regions;
    info["backoff_left_s"] = r.backoff_left_s;
    info["eigen"] = std::to_string(EIGEN_WORLD_VERSION) + "." + std::to_string(EIGEN_MAJOR_VERSION) + "." +
                    std::to_string(EIGEN_MINOR_VERSION);
    return info;
  },
        "How the kernel library in use was compiled and how its threads stand (fnn.show_config() prints it).\n"
        "\n"
        "Returns\n"
        "-------\n"
        "dict\n"
        "    level, library, eigen, eigen_simd, openmp_library, openmp_version, processors, fork_child,\n"
        "    fork_serial, parallel_regions, last_team_size, contended_regions (regions that waited long for a\n"
        "    thread another process had taken), yielded_regions (regions then run on one thread) and\n"
        "    backoff_left_s (seconds of that back-off left).");
  m.def("_simulate_unreleasable_team", &runtime::simulate_unreleasable_team,
        "For tests: the next fork behaves as if OpenMP could not release the forking thread's team.");
  m.def("_simulate_contention", &runtime::simulate_contention,
        "For tests: ends any back-off; while on, every region counts as contended and backs off for good.");
}

}  // namespace fastnn::bind
