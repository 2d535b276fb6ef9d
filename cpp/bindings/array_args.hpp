// Turning NumPy arrays into kernel arguments. Every binding checks dtype, contiguity and shapes here and
// raises a Python exception on mismatch: a kernel only ever sees valid, C-contiguous buffers.
// (The Python layer converts user input first; these checks guard fastnn.ops callers and our own bugs.)
// A binding releases the GIL (py::gil_scoped_release) around the kernel call only, in a block of its own that
// closes before it returns: handing back an array_t as a py::array copies the handle, a reference count change
// that needs the GIL (the sanitizer build, tools/sanitize, has pybind11 check it).
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <initializer_list>
#include <string>
#include <vector>

#include "bindings/buffer_pool.hpp"
#include "kernels/parallel.hpp"

namespace fastnn::bind {

namespace py = pybind11;

inline std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

inline void require(bool ok, const std::string& message) {
  if (!ok) throw py::value_error(message);
}

enum class DType { f32, f64 };

// True when `a` holds T. Compares by equivalence, not identity: an array rebuilt by pickle or
// reading a file carries its own descriptor object for float32, which is still float32.
template <typename T>
inline bool has_dtype(const py::array& a) {
  const py::dtype want = py::dtype::of<T>();
  const py::dtype have = a.dtype();
  return have.is(want) || py::detail::npy_api::get().PyArray_EquivTypes_(have.ptr(), want.ptr());
}

// The floating dtype of `a`; TypeError for anything else.
inline DType float_dtype(const py::array& a, const char* what) {
  if (has_dtype<float>(a)) return DType::f32;
  if (has_dtype<double>(a)) return DType::f64;
  throw py::type_error(std::string(what) + ": expected a float32 or float64 array, got dtype " +
                       std::string(py::str(a.dtype())));
}

// Calls fn(T{}) with T = float or double, so one generic lambda serves both precisions.
template <typename Fn>
decltype(auto) dispatch(DType dtype, Fn&& fn) {
  if (dtype == DType::f32) return fn(float{});
  return fn(double{});
}

template <typename T>
const T* in_ptr(const py::array& a, const char* what) {
  if (!has_dtype<T>(a))
    throw py::type_error(std::string(what) + ": dtype " + std::string(py::str(a.dtype())) +
                         " does not match the other arguments");
  require(a.flags() & py::array::c_style, std::string(what) + " must be C-contiguous");
  return static_cast<const T*>(a.data());
}

template <typename T>
T* out_ptr(py::array& a, const char* what) {
  const T* p = in_ptr<T>(a, what);
  require(a.writeable(), std::string(what) + " must be writeable");
  return const_cast<T*>(p);
}

inline void require_shape(const py::array& a, std::initializer_list<index_t> shape, const char* what) {
  bool ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
  std::string want = "(";
  py::ssize_t i = 0;
  for (index_t d : shape) {
    if (ok && a.shape(i) != d) ok = false;
    want += (i ? ", " : "") + std::to_string(d);
    ++i;
  }
  want += shape.size() == 1 ? ",)" : ")";
  require(ok, std::string(what) + ": expected shape " + want + ", got " + shape_str(a));
}

// A new C-contiguous array for a kernel to fill; large ones come from the buffer pool (bindings/buffer_pool.hpp).
template <typename T>
py::array_t<T> empty_array(std::vector<py::ssize_t> shape) {
  std::size_t count = 1;
  for (py::ssize_t d : shape) count *= static_cast<std::size_t>(d);
  if (count * sizeof(T) < pool::kMinBytes) return py::array_t<T>(std::move(shape));
  void* data = pool::acquire(count * sizeof(T));
  py::capsule owner(data, [](void* p) { pool::release(p); });
  return py::array_t<T>(std::move(shape), static_cast<T*>(data), owner);
}

// A backward's input gradient, allocated only when the caller wants it (the first layer of a model does
// not): returns the new array, or None, and points `data` at its buffer (or nullptr).
template <typename T>
py::object optional_output(bool wanted, std::vector<py::ssize_t> shape, T*& data) {
  data = nullptr;
  if (!wanted) return py::none();
  auto out = empty_array<T>(std::move(shape));
  data = out.mutable_data();
  return out;
}

// Data of an optional array argument of the given shape: nullptr for None.
template <typename T>
const T* optional_in(const py::object& obj, std::initializer_list<index_t> shape, const char* what) {
  if (obj.is_none()) return nullptr;
  auto a = obj.cast<py::array>();  // the same object: `obj` keeps it alive
  require_shape(a, shape, what);
  return in_ptr<T>(a, what);
}

// ... writeable (an output the kernel fills in place).
template <typename T>
T* optional_out(const py::object& obj, std::initializer_list<index_t> shape, const char* what) {
  if (obj.is_none()) return nullptr;
  auto a = obj.cast<py::array>();
  require_shape(a, shape, what);
  return out_ptr<T>(a, what);
}

}  // namespace fastnn::bind
