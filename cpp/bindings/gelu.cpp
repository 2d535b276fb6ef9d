// Bindings of the GELU kernels (kernels/gelu.hpp): any shape, float32/float64, GIL released.
#include <string>
#include <vector>

#include "bindings/array_args.hpp"
#include "bindings/registry.hpp"
#include "kernels/gelu.hpp"

namespace fastnn::bind {

namespace {

bool tanh_mode(const std::string& approximate) {
  if (approximate == "none") return false;
  if (approximate == "tanh") return true;
  throw py::value_error("gelu: approximate must be 'none' or 'tanh', got '" + approximate + "'");
}

py::array gelu_forward_(const py::array& x, const std::string& approximate) {
  const bool t = tanh_mode(approximate);
  return dispatch(float_dtype(x, "gelu_forward"), [&](auto tag) -> py::array {
    using T = decltype(tag);
    const T* px = in_ptr<T>(x, "gelu x");
    auto y = empty_array<T>(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
    T* py_ = y.mutable_data();
    const index_t n = static_cast<index_t>(x.size());
    py::gil_scoped_release release;
    gelu_forward(px, py_, n, t);
    return y;
  });
}

py::array gelu_backward_(const py::array& x, const py::array& g, const std::string& approximate) {
  const bool t = tanh_mode(approximate);
  require(x.size() == g.size() && x.ndim() == g.ndim(),
          "gelu_backward: x " + shape_str(x) + " and g " + shape_str(g) + " differ");
  for (py::ssize_t d = 0; d < x.ndim(); ++d)
    require(x.shape(d) == g.shape(d), "gelu_backward: x " + shape_str(x) + " and g " + shape_str(g) + " differ");
  return dispatch(float_dtype(x, "gelu_backward"), [&](auto tag) -> py::array {
    using T = decltype(tag);
    const T* px = in_ptr<T>(x, "gelu x");
    const T* pg = in_ptr<T>(g, "gelu g");
    auto dx = empty_array<T>(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
    T* pd = dx.mutable_data();
    const index_t n = static_cast<index_t>(x.size());
    py::gil_scoped_release release;
    gelu_backward(px, pg, pd, n, t);
    return dx;
  });
}

}  // namespace

void register_gelu(py::module_& m) {
  m.def("gelu_forward", &gelu_forward_, py::arg("x"), py::arg("approximate") = "none",
        "GELU element-wise: x·Φ(x) ('none') or the tanh approximation ('tanh').");
  m.def("gelu_backward", &gelu_backward_, py::arg("x"), py::arg("g"), py::arg("approximate") = "none",
        "g times GELU's derivative at x.");
}

}  // namespace fastnn::bind
