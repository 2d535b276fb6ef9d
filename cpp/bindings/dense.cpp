// Bindings of the dense kernels: shapes checked, GIL released around the GEMMs.
#include "bindings/array_args.hpp"
#include "bindings/registry.hpp"
#include "kernels/checks.hpp"
#include "kernels/dense.hpp"

namespace fastnn::bind {

namespace {

// x [N, I], weight [O, I], bias [O] or None -> y [N, O].
py::array linear_forward(const py::array& x, const py::array& weight, const py::object& bias, bool check_finite) {
  require(weight.ndim() == 2, "linear_forward: weight must be 2-D, got " + shape_str(weight));
  const index_t O = weight.shape(0), I = weight.shape(1);
  require(x.ndim() == 2 && x.shape(1) == I,
          "linear_forward: input " + shape_str(x) + " does not match weight " + shape_str(weight));
  const index_t N = x.shape(0);
  return dispatch(float_dtype(weight, "linear_forward weight"), [&](auto tag) -> py::array {
    using T = decltype(tag);
    const T* px = in_ptr<T>(x, "linear_forward input");
    const T* pw = in_ptr<T>(weight, "linear_forward weight");
    const T* pb = optional_in<T>(bias, {O}, "linear_forward bias");
    auto y = empty_array<T>({N, O});
    T* py_ = y.mutable_data();
    bool finite = true;
    {
      py::gil_scoped_release release;
      if (check_finite) finite = all_finite(px, N * I);
      if (finite) dense_forward(px, pw, pb, py_, N, I, O);
    }
    require(finite, "input contains NaN or infinity");
    return y;
  });
}

// Writes grad_weight and grad_bias in place (each may be None: frozen); returns dx [N, I], or None when
// need_input_grad is false.
py::object linear_backward(const py::array& grad_y, const py::array& x, const py::array& weight,
                           const py::object& grad_weight, const py::object& grad_bias, bool need_input_grad,
                           bool accumulate_weight, bool accumulate_bias) {
  require(weight.ndim() == 2, "linear_backward: weight must be 2-D, got " + shape_str(weight));
  const index_t O = weight.shape(0), I = weight.shape(1);
  require(x.ndim() == 2 && x.shape(1) == I, "linear_backward: input " + shape_str(x) + " does not match weight " +
                                                shape_str(weight));
  const index_t N = x.shape(0);
  require_shape(grad_y, {N, O}, "linear_backward grad_output");
  return dispatch(float_dtype(weight, "linear_backward weight"), [&](auto tag) -> py::object {
    using T = decltype(tag);
    const T* pdy = in_ptr<T>(grad_y, "linear_backward grad_output");
    const T* px = in_ptr<T>(x, "linear_backward input");
    const T* pw = in_ptr<T>(weight, "linear_backward weight");
    T* pdw = optional_out<T>(grad_weight, {O, I}, "linear_backward grad_weight");
    T* pdb = optional_out<T>(grad_bias, {O}, "linear_backward grad_bias");
    T* pdx;
    py::object result = optional_output<T>(need_input_grad, {N, I}, pdx);
    py::gil_scoped_release release;
    if (pdw) dense_backward_weight(pdy, px, pdw, N, I, O, accumulate_weight);
    if (pdb) dense_backward_bias(pdy, pdb, N, O, accumulate_bias);
    if (pdx) dense_backward_input(pdy, pw, pdx, N, I, O);
    return result;
  });
}

}  // namespace

void register_dense(py::module_& m) {
  m.def("linear_forward", &linear_forward, py::arg("x"), py::arg("weight"), py::arg("bias") = py::none(),
        py::arg("check_finite") = false,
        "Dense layer y = x @ weight.T + bias.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "x : ndarray (N, in), float32 or float64\n"
        "weight : ndarray (out, in), x's dtype\n"
        "bias : ndarray (out,) or None, default None\n"
        "check_finite : bool, default False\n"
        "    Raise ValueError when x holds NaN or infinity.\n"
        "\n"
        "Returns\n"
        "-------\n"
        "ndarray (N, out)\n"
        "\n"
        "Raises\n"
        "------\n"
        "ValueError\n"
        "    For shapes that do not match, or a non-C-contiguous array.\n"
        "TypeError\n"
        "    For a dtype other than float32/float64, or arrays of different dtypes.");
  m.def("linear_backward", &linear_backward, py::arg("grad_output"), py::arg("x"), py::arg("weight"),
        py::arg("grad_weight"), py::arg("grad_bias") = py::none(), py::arg("need_input_grad") = true,
        py::arg("accumulate_weight") = true, py::arg("accumulate_bias") = true,
        "Gradients of linear_forward; parameter gradients are written in place.\n"
        "\n"
        "grad_weight (+)= dy.T @ x, grad_bias (+)= sum of dy over rows, dx = dy @ weight.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "grad_output : ndarray (N, out)\n"
        "    dy.\n"
        "x, weight : ndarray\n"
        "    As given to linear_forward.\n"
        "grad_weight : ndarray (out, in) or None\n"
        "    Receives dweight; None skips it (frozen weight).\n"
        "grad_bias : ndarray (out,) or None, default None\n"
        "    Receives dbias; None skips it.\n"
        "need_input_grad : bool, default True\n"
        "    False skips dx.\n"
        "accumulate_weight, accumulate_bias : bool, default True\n"
        "    Add into the gradient arrays (True) or overwrite them (False).\n"
        "\n"
        "Returns\n"
        "-------\n"
        "ndarray (N, in) or None\n"
        "    dx, or None when need_input_grad is false.\n"
        "\n"
        "Raises\n"
        "------\n"
        "ValueError\n"
        "    For shapes that do not match, or a non-C-contiguous array.\n"
        "TypeError\n"
        "    For a dtype other than float32/float64, or arrays of different dtypes.");
  m.def("all_finite", [](const py::array& a) {
    return dispatch(float_dtype(a, "all_finite"), [&](auto tag) {
      using T = decltype(tag);
      const T* p = in_ptr<T>(a, "all_finite");
      py::gil_scoped_release release;
      return all_finite(p, static_cast<index_t>(a.size()));
    });
  }, py::arg("a"),
        "Whether every entry of an array is finite (no NaN, no infinity).\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "a : ndarray, float32 or float64, C-contiguous\n"
        "\n"
        "Returns\n"
        "-------\n"
        "bool\n"
        "\n"
        "Raises\n"
        "------\n"
        "TypeError\n"
        "    For another dtype. ValueError for a non-contiguous array.");
}

}  // namespace fastnn::bind
