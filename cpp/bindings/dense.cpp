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
    {
      py::gil_scoped_release release;
      if (pdw) dense_backward_weight(pdy, px, pdw, N, I, O, accumulate_weight);
      if (pdb) dense_backward_bias(pdy, pdb, N, O, accumulate_bias);
      if (pdx) dense_backward_input(pdy, pw, pdx, N, I, O);
    }
    return result;
  });
}

// The fused dense + activation + dropout (kernels/dense.hpp): relu or gelu only.
void require_fusable(Activation kind, const char* what) {
  require(kind == Activation::relu || kind == Activation::gelu,
          std::string(what) + ": activation must be Activation.relu or Activation.gelu");
}

// x [N, I], weight [O, I], bias [O] or None -> (y [N, O], pre [N, O] or None).
py::tuple linear_activation_forward(const py::array& x, const py::array& weight, const py::object& bias,
                                    Activation activation, bool tanh_form, double dropout_p, std::uint64_t seed,
                                    bool keep_pre) {
  require_fusable(activation, "linear_activation_forward");
  require(dropout_p >= 0.0 && dropout_p <= 1.0, "linear_activation_forward: dropout_p must be in [0, 1]");
  require(weight.ndim() == 2, "linear_activation_forward: weight must be 2-D, got " + shape_str(weight));
  const index_t O = weight.shape(0), I = weight.shape(1);
  require(x.ndim() == 2 && x.shape(1) == I, "linear_activation_forward: input " + shape_str(x) +
                                                " does not match weight " + shape_str(weight));
  const index_t N = x.shape(0);
  return dispatch(float_dtype(weight, "linear_activation_forward weight"), [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    const T* px = in_ptr<T>(x, "linear_activation_forward input");
    const T* pw = in_ptr<T>(weight, "linear_activation_forward weight");
    const T* pb = optional_in<T>(bias, {O}, "linear_activation_forward bias");
    auto y = empty_array<T>({N, O});
    T* pz;
    py::object pre = optional_output<T>(keep_pre, {N, O}, pz);
    T* py_ = y.mutable_data();
    {
      py::gil_scoped_release release;
      dense_activation_forward(px, pw, pb, py_, keep_pre ? pz : nullptr, N, I, O, activation, tanh_form,
                               dropout_p, seed);
    }
    return py::make_tuple(y, pre);
  });
}

// Gradients of linear_activation_forward; parameter gradients written in place (overwritten); returns dx or None.
py::object linear_activation_backward(const py::array& grad_output, const py::array& x, const py::array& weight,
                                      const py::array& pre, Activation activation, bool tanh_form,
                                      const py::object& grad_weight, const py::object& grad_bias, double dropout_p,
                                      std::uint64_t seed, bool need_input_grad) {
  require_fusable(activation, "linear_activation_backward");
  require(dropout_p >= 0.0 && dropout_p <= 1.0, "linear_activation_backward: dropout_p must be in [0, 1]");
  require(weight.ndim() == 2, "linear_activation_backward: weight must be 2-D, got " + shape_str(weight));
  const index_t O = weight.shape(0), I = weight.shape(1);
  require(x.ndim() == 2 && x.shape(1) == I, "linear_activation_backward: input " + shape_str(x) +
                                                " does not match weight " + shape_str(weight));
  const index_t N = x.shape(0);
  require_shape(grad_output, {N, O}, "linear_activation_backward grad_output");
  require_shape(pre, {N, O}, "linear_activation_backward pre");
  return dispatch(float_dtype(weight, "linear_activation_backward weight"), [&](auto tag) -> py::object {
    using T = decltype(tag);
    const T* pdy = in_ptr<T>(grad_output, "linear_activation_backward grad_output");
    const T* px = in_ptr<T>(x, "linear_activation_backward input");
    const T* pw = in_ptr<T>(weight, "linear_activation_backward weight");
    const T* pz = in_ptr<T>(pre, "linear_activation_backward pre");
    T* pdw = optional_out<T>(grad_weight, {O, I}, "linear_activation_backward grad_weight");
    T* pdb = optional_out<T>(grad_bias, {O}, "linear_activation_backward grad_bias");
    T* pdx;
    py::object result = optional_output<T>(need_input_grad, {N, I}, pdx);
    auto dz = empty_array<T>({N, O});
    T* pg = dz.mutable_data();
    {
      py::gil_scoped_release release;
      dense_activation_backward(pdy, pz, pg, N * O, activation, tanh_form, dropout_p, seed);
      if (pdw) dense_backward_weight(pg, px, pdw, N, I, O, false);
      if (pdb) dense_backward_bias(pg, pdb, N, O, false);
      if (pdx) dense_backward_input(pg, pw, pdx, N, I, O);
    }
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
  m.def("linear_activation_forward", &linear_activation_forward, py::arg("x"), py::arg("weight"),
        py::arg("bias"), py::arg("activation"), py::arg("tanh_form") = false, py::arg("dropout_p") = 0.0,
        py::arg("seed") = 0, py::arg("keep_pre") = true,
        "Dense layer, activation and dropout in one call: y = dropout(act(x @ weight.T + bias)).\n"
        "\n"
        "The same bits as linear_forward, activation_forward and dropout_apply in turn; z = x @ weight.T + bias\n"
        "is returned for linear_activation_backward.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "x : ndarray (N, in), float32 or float64\n"
        "weight : ndarray (out, in), x's dtype\n"
        "bias : ndarray (out,) or None\n"
        "activation : Activation\n"
        "    Activation.relu (plain) or Activation.gelu.\n"
        "tanh_form : bool, default False\n"
        "    GELU's tanh approximation.\n"
        "dropout_p : float, default 0.0\n"
        "    Dropout probability; 0 applies none.\n"
        "seed : int, default 0\n"
        "    The dropout mask's seed (as dropout_apply's).\n"
        "keep_pre : bool, default True\n"
        "    Return z (False: None, as for inference).\n"
        "\n"
        "Returns\n"
        "-------\n"
        "tuple\n"
        "    (y (N, out), z (N, out) or None).\n"
        "\n"
        "Raises\n"
        "------\n"
        "ValueError\n"
        "    For shapes that do not match, another activation, dropout_p outside [0, 1], or a non-C-contiguous\n"
        "    array.\n"
        "TypeError\n"
        "    For a dtype other than float32/float64, or arrays of different dtypes.");
  m.def("linear_activation_backward", &linear_activation_backward, py::arg("grad_output"), py::arg("x"),
        py::arg("weight"), py::arg("pre"), py::arg("activation"), py::arg("tanh_form") = false,
        py::arg("grad_weight") = py::none(), py::arg("grad_bias") = py::none(),
        py::arg("dropout_p") = 0.0, py::arg("seed") = 0, py::arg("need_input_grad") = true,
        "Gradients of linear_activation_forward; parameter gradients are written in place (overwritten).\n"
        "\n"
        "With g = act'(z) * dropout(dy): grad_weight = g.T @ x, grad_bias = sum of g over rows, dx = g @ weight.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "grad_output : ndarray (N, out)\n"
        "    dy.\n"
        "x, weight : ndarray\n"
        "    As given to linear_activation_forward.\n"
        "pre : ndarray (N, out)\n"
        "    z, as linear_activation_forward returned it.\n"
        "activation : Activation\n"
        "tanh_form : bool, default False\n"
        "    The forward's activation.\n"
        "grad_weight : ndarray (out, in) or None, default None\n"
        "    Receives dweight; None skips it.\n"
        "grad_bias : ndarray (out,) or None, default None\n"
        "    Receives dbias; None skips it.\n"
        "dropout_p : float, default 0.0\n"
        "seed : int, default 0\n"
        "    The forward's dropout probability and seed.\n"
        "need_input_grad : bool, default True\n"
        "    False skips dx.\n"
        "\n"
        "Returns\n"
        "-------\n"
        "ndarray (N, in) or None\n"
        "    dx, or None when need_input_grad is false.\n"
        "\n"
        "Raises\n"
        "------\n"
        "ValueError\n"
        "    For shapes that do not match, another activation, or a non-C-contiguous array.\n"
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
