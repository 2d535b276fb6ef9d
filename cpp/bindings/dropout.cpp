// Binding of the hashed dropout kernel (kernels/dropout.hpp): y = add + dropout(x) with the mask a function of
// the seed, so the backward is the same call on the gradient.
#include <cstdint>
#include <string>

#include "bindings/array_args.hpp"
#include "bindings/registry.hpp"
#include "kernels/dropout.hpp"

namespace fastnn::bind {

namespace {

py::array dropout_apply_(const py::array& x, double p, std::uint64_t seed, const py::object& add) {
  require(p >= 0.0 && p <= 1.0, "dropout_apply: p must be in [0, 1], got " + std::to_string(p));
  return dispatch(float_dtype(x, "dropout_apply"), [&](auto tag) -> py::array {
    using T = decltype(tag);
    const T* px = in_ptr<T>(x, "dropout_apply x");
    const T* pa = nullptr;
    if (!add.is_none()) {
      auto a = add.cast<py::array>();
      require(a.ndim() == x.ndim() && a.size() == x.size(),
              "dropout_apply: add of shape " + shape_str(a) + " does not match x of shape " + shape_str(x));
      for (py::ssize_t i = 0; i < x.ndim(); ++i)
        require(a.shape(i) == x.shape(i),
                "dropout_apply: add of shape " + shape_str(a) + " does not match x of shape " + shape_str(x));
      pa = in_ptr<T>(a, "dropout_apply add");
    }
    std::vector<py::ssize_t> shape(x.shape(), x.shape() + x.ndim());
    auto y = empty_array<T>(shape);
    T* py_ = y.mutable_data();
    const index_t n = static_cast<index_t>(x.size());
    {
      py::gil_scoped_release release;
      dropout_apply(px, pa, py_, n, p, seed);
    }
    return y;
  });
}

}  // namespace

void register_dropout(py::module_& m) {
  m.def("dropout_apply", &dropout_apply_, py::arg("x"), py::arg("p"), py::arg("seed"), py::arg("add") = py::none(),
        "add + dropout(x) as a new array, the mask a hash of the seed (kernels/dropout.hpp).\n"
        "\n"
        "Element i is kept, scaled by 1/(1-p), when the hash of (seed, i) clears p; the same seed gives the same\n"
        "mask, so the backward of dropout is dropout_apply(grad, p, seed).\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "x : ndarray, float32 or float64, C-contiguous\n"
        "    The input (any shape).\n"
        "p : float\n"
        "    Drop probability in [0, 1].\n"
        "seed : int\n"
        "    The mask's seed (uint64).\n"
        "add : ndarray or None\n"
        "    Of x's shape and dtype, added to the result (a residual connection).\n"
        "\n"
        "Returns\n"
        "-------\n"
        "ndarray\n"
        "    Of x's shape and dtype.\n"
        "\n"
        "Raises\n"
        "------\n"
        "ValueError\n"
        "    For p outside [0, 1] or an add of another shape.\n"
        "TypeError\n"
        "    For a dtype other than float32/float64.");
}

}  // namespace fastnn::bind
