// The buffer pool (buffer_pool.hpp) and its two Python functions.
#include "bindings/buffer_pool.hpp"

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdlib>
#include <map>
#include <mutex>
#include <new>
#include <vector>

#include "bindings/array_args.hpp"
#include "bindings/registry.hpp"

namespace fastnn::bind::pool {

namespace {

constexpr std::size_t kAlign = 64;   // the header before each buffer holds its size; the data stays aligned
constexpr std::size_t kPage = 4096;

struct State {
  std::mutex lock;
  std::map<std::size_t, std::vector<void*>> free;   // capacity -> blocks (their headers)
  std::size_t cached = 0, in_use = 0, hits = 0, misses = 0;
};

State& state() {
  static State* s = new State;   // never destroyed: arrays may outlive static destruction at exit
  return *s;
}

std::size_t capacity_for(std::size_t bytes) { return (bytes + kPage - 1) / kPage * kPage; }

void drop_all(State& s) {
  for (auto& [capacity, blocks] : s.free)
    for (void* block : blocks) std::free(block);
  s.free.clear();
  s.cached = 0;
}

}  // namespace

void* acquire(std::size_t bytes) {
  const std::size_t capacity = capacity_for(bytes);
  State& s = state();
  void* block = nullptr;
  {
    std::lock_guard<std::mutex> guard(s.lock);
    auto it = s.free.find(capacity);
    if (it != s.free.end() && !it->second.empty()) {
      block = it->second.back();
      it->second.pop_back();
      s.cached -= capacity;
      ++s.hits;
    } else {
      ++s.misses;
    }
    s.in_use += capacity;
  }
  if (block == nullptr) {
    block = std::aligned_alloc(kAlign, kAlign + capacity);
    if (block == nullptr) {
      std::lock_guard<std::mutex> guard(s.lock);
      s.in_use -= capacity;
      throw std::bad_alloc();
    }
    *static_cast<std::size_t*>(block) = capacity;
  }
  return static_cast<char*>(block) + kAlign;
}

void release(void* data) noexcept {
  void* block = static_cast<char*>(data) - kAlign;
  const std::size_t capacity = *static_cast<std::size_t*>(block);
  State& s = state();
  {
    std::lock_guard<std::mutex> guard(s.lock);
    s.in_use -= capacity;
    if (s.cached + capacity <= kMaxCachedBytes) {
      try {
        s.free[capacity].push_back(block);
        s.cached += capacity;
        return;
      } catch (...) {  // no memory for the bookkeeping: give the buffer back instead
      }
    }
  }
  std::free(block);
}

}  // namespace fastnn::bind::pool

namespace fastnn::bind {

void register_buffer_pool(pybind11::module_& m) {
  m.def("empty", [](const std::vector<py::ssize_t>& shape, const py::object& dtype) -> py::array {
    const py::dtype dt = py::dtype::from_args(dtype);
    for (py::ssize_t d : shape) require(d >= 0, "empty: negative dimension in the shape");
    auto is = [&](const py::dtype& want) {
      return dt.is(want) || py::detail::npy_api::get().PyArray_EquivTypes_(dt.ptr(), want.ptr());
    };
    if (is(py::dtype::of<float>())) return empty_array<float>(shape);
    if (is(py::dtype::of<double>())) return empty_array<double>(shape);
    throw py::type_error("empty: dtype must be float32 or float64, got " + std::string(py::str(dtype)));
  }, py::arg("shape"), py::arg("dtype"),
        "A new uninitialised C-contiguous float array, from the buffer pool when large (as kernels' outputs).\n"
        "\n"
        "For arrays that Python code allocates for a kernel to fill: a recycled buffer has its pages in place.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "shape : sequence of int\n"
        "dtype : float32 or float64 (a NumPy dtype or its name)\n"
        "\n"
        "Returns\n"
        "-------\n"
        "ndarray\n"
        "\n"
        "Raises\n"
        "------\n"
        "TypeError\n"
        "    For another dtype.\n"
        "ValueError\n"
        "    For a negative dimension.");
  m.def("buffer_pool_info", []() {
    pool::State& s = pool::state();
    std::lock_guard<std::mutex> guard(s.lock);
    pybind11::dict info;
    info["cached_bytes"] = s.cached;
    info["in_use_bytes"] = s.in_use;
    info["hits"] = s.hits;
    info["misses"] = s.misses;
    info["min_bytes"] = pool::kMinBytes;
    info["max_cached_bytes"] = pool::kMaxCachedBytes;
    return info;
  },
        "How the pool of recycled buffers behind fastnn's large output arrays stands.\n"
        "\n"
        "Arrays of at least min_bytes that kernels return are cut from buffers the pool keeps; when NumPy frees\n"
        "such an array its buffer waits for the next array of that size (no fresh pages to fault in), up to\n"
        "max_cached_bytes of waiting buffers.\n"
        "\n"
        "Returns\n"
        "-------\n"
        "dict\n"
        "    cached_bytes (free buffers kept), in_use_bytes (held by live arrays), hits and misses (arrays served\n"
        "    from a kept buffer, or newly allocated), min_bytes, max_cached_bytes.");
  m.def("release_buffers", []() {
    pool::State& s = pool::state();
    std::lock_guard<std::mutex> guard(s.lock);
    const std::size_t freed = s.cached;
    pool::drop_all(s);
    return freed;
  },
        "Hands every free buffer the pool keeps back to the system (arrays in use keep theirs).\n"
        "\n"
        "Returns\n"
        "-------\n"
        "int\n"
        "    The bytes released.");
}

}  // namespace fastnn::bind
