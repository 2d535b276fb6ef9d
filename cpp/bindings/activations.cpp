// Bindings of the activation kernels: dtype dispatch, shapes checked, GIL released around the loops.
#include <cmath>
#include <limits>
#include <vector>

#include "bindings/array_args.hpp"
#include "bindings/registry.hpp"
#include "kernels/activations.hpp"

namespace fastnn::bind {

namespace {

std::vector<py::ssize_t> shape_of(const py::array& a) { return {a.shape(), a.shape() + a.ndim()}; }

void require_same_shape(const py::array& a, const py::array& b, const char* what_a, const char* what_b) {
  bool same = a.ndim() == b.ndim();
  for (py::ssize_t i = 0; same && i < a.ndim(); ++i) same = a.shape(i) == b.shape(i);
  require(same, std::string(what_a) + " " + shape_str(a) + " and " + what_b + " " + shape_str(b) +
                    " must have the same shape");
}

// Parameters left as NaN take the kind's default (ops callers may omit them; layers always pass both).
std::pair<double, double> activation_params(Activation kind, double a, double b) {
  double da = 0, db = 0;
  switch (kind) {
    case Activation::relu: db = std::numeric_limits<double>::infinity(); break;
    case Activation::threshold: da = 1.0; break;
    case Activation::elu: da = 1.0, db = 1.0; break;
    case Activation::softplus: da = 1.0, db = 20.0; break;
    default: break;
  }
  return {std::isnan(a) ? da : a, std::isnan(b) ? db : b};
}

py::array activation_forward(Activation kind, const py::array& x, double a, double b) {
  const auto params = activation_params(kind, a, b);  // (not a structured binding: C++17 lambdas cannot capture one)
  const double pa = params.first, pb = params.second;
  return dispatch(float_dtype(x, "activation_forward input"), [&](auto tag) -> py::array {
    using T = decltype(tag);
    const T* px = in_ptr<T>(x, "activation_forward input");
    auto y = empty_array<T>(shape_of(x));
    T* py_ = y.mutable_data();
    const index_t n = x.size();
    {
      py::gil_scoped_release release;
      fastnn::activation_forward<T>(kind, px, py_, n, T(pa), T(pb));
    }
    return y;
  });
}

py::array activation_backward(Activation kind, const py::array& saved, const py::array& grad_y, double a,
                              double b) {
  const auto params = activation_params(kind, a, b);
  const double pa = params.first, pb = params.second;
  require_same_shape(grad_y, saved, "activation_backward: grad_output", "saved array");
  return dispatch(float_dtype(saved, "activation_backward saved array"), [&](auto tag) -> py::array {
    using T = decltype(tag);
    const T* ps = in_ptr<T>(saved, "activation_backward saved array");
    const T* pdy = in_ptr<T>(grad_y, "activation_backward grad_output");
    auto dx = empty_array<T>(shape_of(saved));
    T* pdx = dx.mutable_data();
    const index_t n = saved.size();
    {
      py::gil_scoped_release release;
      fastnn::activation_backward<T>(kind, ps, pdy, pdx, n, T(pa), T(pb));
    }
    return dx;
  });
}

struct AxisSplit {
  index_t outer = 1, dim = 1, inner = 1;
};

// [outer, dim, inner] view of `a` around axis `dim` (negative counts from the end; 0-d is shape (1,)).
AxisSplit split_axis(const py::array& a, index_t dim, const char* what) {
  const index_t nd = std::max<index_t>(a.ndim(), 1);
  require(dim >= -nd && dim < nd, std::string(what) + ": dim " + std::to_string(dim) +
                                      " is out of range for an array of shape " + shape_str(a));
  if (dim < 0) dim += nd;
  AxisSplit s;
  for (index_t i = 0; i < a.ndim(); ++i) {
    const index_t extent = a.shape(i);
    if (i < dim)
      s.outer *= extent;
    else if (i == dim)
      s.dim = extent;
    else
      s.inner *= extent;
  }
  return s;
}

py::array softmax_forward(const py::array& x, index_t dim, bool log) {
  const char* what = log ? "log_softmax_forward" : "softmax_forward";
  const AxisSplit s = split_axis(x, dim, what);
  return dispatch(float_dtype(x, what), [&](auto tag) -> py::array {
    using T = decltype(tag);
    const T* px = in_ptr<T>(x, what);
    auto y = empty_array<T>(shape_of(x));
    T* py_ = y.mutable_data();
    {
      py::gil_scoped_release release;
      fastnn::softmax_forward<T>(px, py_, s.outer, s.dim, s.inner, log);
    }
    return y;
  });
}

py::array softmax_backward(const py::array& y, const py::array& grad_y, index_t dim, bool log) {
  const char* what = log ? "log_softmax_backward" : "softmax_backward";
  const AxisSplit s = split_axis(y, dim, what);
  require_same_shape(grad_y, y, (std::string(what) + ": grad_output").c_str(), "output");
  return dispatch(float_dtype(y, what), [&](auto tag) -> py::array {
    using T = decltype(tag);
    const T* py_ = in_ptr<T>(y, what);
    const T* pdy = in_ptr<T>(grad_y, what);
    auto dx = empty_array<T>(shape_of(y));
    T* pdx = dx.mutable_data();
    {
      py::gil_scoped_release release;
      fastnn::softmax_backward<T>(py_, pdy, pdx, s.outer, s.dim, s.inner, log);
    }
    return dx;
  });
}

// [outer, channels, inner] for PReLU: one shared weight, or one per entry of axis 1.
AxisSplit prelu_split(const py::array& x, const py::array& weight, const char* what) {
  require(weight.ndim() == 1 && weight.shape(0) >= 1,
          std::string(what) + ": weight must be 1-D and non-empty, got " + shape_str(weight));
  const index_t c = weight.shape(0);
  if (c == 1) return {1, 1, static_cast<index_t>(x.size())};
  require(x.ndim() >= 2 && x.shape(1) == c, std::string(what) + ": input " + shape_str(x) +
                                                " needs " + std::to_string(c) + " channels along dim 1");
  AxisSplit s;
  s.outer = x.shape(0);
  s.dim = c;
  for (index_t i = 2; i < x.ndim(); ++i) s.inner *= x.shape(i);
  return s;
}

py::array prelu_forward(const py::array& x, const py::array& weight) {
  const AxisSplit s = prelu_split(x, weight, "prelu_forward");
  return dispatch(float_dtype(weight, "prelu_forward weight"), [&](auto tag) -> py::array {
    using T = decltype(tag);
    const T* px = in_ptr<T>(x, "prelu_forward input");
    const T* pw = in_ptr<T>(weight, "prelu_forward weight");
    auto y = empty_array<T>(shape_of(x));
    T* py_ = y.mutable_data();
    {
      py::gil_scoped_release release;
      fastnn::prelu_forward<T>(px, pw, py_, s.outer, s.dim, s.inner);
    }
    return y;
  });
}

py::object prelu_backward(const py::array& x, const py::array& weight, const py::array& grad_y,
                          const py::object& grad_weight, bool need_input_grad) {
  const AxisSplit s = prelu_split(x, weight, "prelu_backward");
  require_same_shape(grad_y, x, "prelu_backward: grad_output", "input");
  return dispatch(float_dtype(weight, "prelu_backward weight"), [&](auto tag) -> py::object {
    using T = decltype(tag);
    const T* px = in_ptr<T>(x, "prelu_backward input");
    const T* pw = in_ptr<T>(weight, "prelu_backward weight");
    const T* pdy = in_ptr<T>(grad_y, "prelu_backward grad_output");
    T* pdw = nullptr;
    if (!grad_weight.is_none()) {
      auto gw = grad_weight.cast<py::array>();
      require_same_shape(gw, weight, "prelu_backward: grad_weight", "weight");
      pdw = out_ptr<T>(gw, "prelu_backward grad_weight");
    }
    T* pdx;
    py::object result = optional_output<T>(need_input_grad, shape_of(x), pdx);
    {
      py::gil_scoped_release release;
      fastnn::prelu_backward<T>(px, pw, pdy, pdx, pdw, s.outer, s.dim, s.inner);
    }
    return result;
  });
}

// z [..., units·pieces] -> (y [..., units], argmax [..., units] int32 in [0, pieces)).
py::tuple maxout_forward(const py::array& z, index_t pieces) {
  require(pieces >= 1, "maxout_forward: pieces must be >= 1, got " + std::to_string(pieces));
  require(z.ndim() >= 1 && z.shape(z.ndim() - 1) % pieces == 0,
          "maxout_forward: the last dimension of " + shape_str(z) + " is not a multiple of pieces=" +
              std::to_string(pieces));
  auto shape = shape_of(z);
  shape.back() /= pieces;
  const index_t rows = z.size() / pieces;
  return dispatch(float_dtype(z, "maxout_forward input"), [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    const T* pz = in_ptr<T>(z, "maxout_forward input");
    auto y = empty_array<T>(shape);
    auto arg = empty_array<std::int32_t>(shape);
    T* py_ = y.mutable_data();
    std::int32_t* pa = arg.mutable_data();
    {
      py::gil_scoped_release release;
      fastnn::maxout_forward<T>(pz, py_, pa, rows, pieces);
    }
    return py::make_tuple(y, arg);
  });
}

py::array maxout_backward(const py::array& grad_y, const py::array& argmax, index_t pieces) {
  require(pieces >= 1, "maxout_backward: pieces must be >= 1, got " + std::to_string(pieces));
  require_same_shape(grad_y, argmax, "maxout_backward: grad_output", "argmax");
  require(has_dtype<std::int32_t>(argmax) && (argmax.flags() & py::array::c_style),
          "maxout_backward: argmax must be a C-contiguous int32 array (as maxout_forward returns)");
  const index_t rows = argmax.size();
  const auto* pa = static_cast<const std::int32_t*>(argmax.data());
  for (index_t r = 0; r < rows; ++r)  // an index out of range would write outside dz
    require(pa[r] >= 0 && pa[r] < pieces, "maxout_backward: argmax holds " + std::to_string(pa[r]) +
                                              ", outside [0, " + std::to_string(pieces) + ")");
  auto shape = shape_of(argmax);
  if (shape.empty()) shape.push_back(1);
  shape.back() *= pieces;
  return dispatch(float_dtype(grad_y, "maxout_backward grad_output"), [&](auto tag) -> py::array {
    using T = decltype(tag);
    const T* pdy = in_ptr<T>(grad_y, "maxout_backward grad_output");
    auto dz = empty_array<T>(shape);
    T* pdz = dz.mutable_data();
    {
      py::gil_scoped_release release;
      fastnn::maxout_backward<T>(pdy, pa, pdz, rows, pieces);
    }
    return dz;
  });
}

}  // namespace

void register_activations(py::module_& m) {
  py::enum_<Activation>(m, "Activation",
                        "Element-wise activation kinds (activation_forward/backward, conv_block_forward, "
                        "DenseStackPlan).\n"
                        "\n"
                        "Each member's formula names its parameters a, b and their defaults.")
      .value("relu", Activation::relu, "x > 0 ? min(x, b) : a*x (a: negative slope 0, b: cap +inf)")
      .value("threshold", Activation::threshold, "x > a ? x : b (a: threshold 1, b: value 0)")
      .value("elu", Activation::elu, "b*(x > 0 ? x : a*(exp(x)-1)) (a: alpha 1, b: scale 1)")
      .value("sigmoid", Activation::sigmoid, "1/(1+exp(-x))")
      .value("hardsigmoid", Activation::hardsigmoid, "0 below -2.5, 1 above 2.5, else 0.2x+0.5")
      .value("tanh", Activation::tanh, "tanh(x)")
      .value("softplus", Activation::softplus, "log(1+exp(a*x))/a, x where a*x > b (a: beta 1, b: threshold 20)")
      .value("softsign", Activation::softsign, "x/(1+abs(x))")
      .value("silu", Activation::silu, "x*sigmoid(x)")
      .value("gelu", Activation::gelu, "x*Phi(x) (a: 0 exact, 1 the tanh approximation)");
  const double nan = std::numeric_limits<double>::quiet_NaN();
  m.def("activation_forward", &activation_forward, py::arg("kind"), py::arg("x"), py::arg("a") = nan,
        py::arg("b") = nan,
        "Element-wise activation y = f(x) of one kind.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "kind : Activation\n"
        "    Which function (see Activation for its formula and the meaning of a, b).\n"
        "x : ndarray, float32 or float64, any shape\n"
        "a, b : float, default NaN\n"
        "    The kind's two parameters; NaN takes the kind's default.\n"
        "\n"
        "Returns\n"
        "-------\n"
        "ndarray\n"
        "    y, a new array of x's shape and dtype.\n"
        "\n"
        "Raises\n"
        "------\n"
        "TypeError\n"
        "    For a dtype other than float32/float64.");
  m.def("activation_backward", &activation_backward, py::arg("kind"), py::arg("saved"), py::arg("grad_output"),
        py::arg("a") = nan, py::arg("b") = nan,
        "Gradient dx = grad_output * f'(x) of activation_forward.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "kind : Activation\n"
        "saved : ndarray, float32 or float64\n"
        "    The forward output y when activation_backward_uses_output(kind) (sigmoid, tanh), else the input x.\n"
        "grad_output : ndarray of saved's shape and dtype\n"
        "a, b : float, default NaN\n"
        "    As given to activation_forward.\n"
        "\n"
        "Returns\n"
        "-------\n"
        "ndarray\n"
        "    dx, a new array of saved's shape and dtype.\n"
        "\n"
        "Raises\n"
        "------\n"
        "ValueError\n"
        "    For shapes that do not match, or a non-C-contiguous array.\n"
        "TypeError\n"
        "    For a dtype other than float32/float64, or arrays of different dtypes.");
  m.def("activation_backward_uses_output", [](Activation k) { return activation_backward_uses_output(k); },
        py::arg("kind"),
        "Whether activation_backward of this kind takes the forward output (True) or input (False).\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "kind : Activation\n"
        "\n"
        "Returns\n"
        "-------\n"
        "bool");
  m.def(
      "softmax_forward", [](const py::array& x, index_t dim) { return softmax_forward(x, dim, false); },
      py::arg("x"), py::arg("dim") = -1,
        "Softmax exp(x) / sum(exp(x)) along one axis, stable (the maximum is subtracted first).\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "x : ndarray, float32 or float64, any shape\n"
        "dim : int, default -1\n"
        "    The axis; negative counts from the end.\n"
        "\n"
        "Returns\n"
        "-------\n"
        "ndarray\n"
        "    y of x's shape and dtype.\n"
        "\n"
        "Raises\n"
        "------\n"
        "ValueError\n"
        "    For dim out of range. TypeError for another dtype.");
  m.def(
      "log_softmax_forward", [](const py::array& x, index_t dim) { return softmax_forward(x, dim, true); },
      py::arg("x"), py::arg("dim") = -1,
        "Log-softmax x - logsumexp(x) along one axis, stable.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "x : ndarray, float32 or float64, any shape\n"
        "dim : int, default -1\n"
        "    The axis; negative counts from the end.\n"
        "\n"
        "Returns\n"
        "-------\n"
        "ndarray\n"
        "    y of x's shape and dtype.\n"
        "\n"
        "Raises\n"
        "------\n"
        "ValueError\n"
        "    For dim out of range. TypeError for another dtype.");
  m.def(
      "softmax_backward",
      [](const py::array& y, const py::array& g, index_t dim) { return softmax_backward(y, g, dim, false); },
      py::arg("output"), py::arg("grad_output"), py::arg("dim") = -1,
        "Gradient of softmax_forward: dx = y * (dy - sum(dy * y)) along dim.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "output : ndarray, float32 or float64\n"
        "    y, softmax_forward's result.\n"
        "grad_output : ndarray of output's shape and dtype\n"
        "    dy.\n"
        "dim : int, default -1\n"
        "    The axis softmax_forward used.\n"
        "\n"
        "Returns\n"
        "-------\n"
        "ndarray\n"
        "    dx of output's shape and dtype.\n"
        "\n"
        "Raises\n"
        "------\n"
        "ValueError\n"
        "    For dim out of range or grad_output of another shape. TypeError for dtypes.");
  m.def(
      "log_softmax_backward",
      [](const py::array& y, const py::array& g, index_t dim) { return softmax_backward(y, g, dim, true); },
      py::arg("output"), py::arg("grad_output"), py::arg("dim") = -1,
        "Gradient of log_softmax_forward: dx = dy - exp(y) * sum(dy) along dim.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "output : ndarray, float32 or float64\n"
        "    y, log_softmax_forward's result.\n"
        "grad_output : ndarray of output's shape and dtype\n"
        "    dy.\n"
        "dim : int, default -1\n"
        "    The axis log_softmax_forward used.\n"
        "\n"
        "Returns\n"
        "-------\n"
        "ndarray\n"
        "    dx of output's shape and dtype.\n"
        "\n"
        "Raises\n"
        "------\n"
        "ValueError\n"
        "    For dim out of range or grad_output of another shape. TypeError for dtypes.");
  m.def("prelu_forward", &prelu_forward, py::arg("x"), py::arg("weight"),
        "PReLU: y = x where x > 0, else weight * x.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "x : ndarray, any shape; (N, C, ...) when weight has C > 1 entries\n"
        "weight : ndarray (1,) or (C,), float32 or float64\n"
        "    One shared slope, or one per channel along axis 1. x must have weight's dtype.\n"
        "\n"
        "Returns\n"
        "-------\n"
        "ndarray\n"
        "    y of x's shape and dtype.\n"
        "\n"
        "Raises\n"
        "------\n"
        "ValueError\n"
        "    For shapes that do not match, or a non-C-contiguous array.\n"
        "TypeError\n"
        "    For a dtype other than float32/float64, or arrays of different dtypes.");
  m.def("prelu_backward", &prelu_backward, py::arg("x"), py::arg("weight"), py::arg("grad_output"),
        py::arg("grad_weight") = py::none(), py::arg("need_input_grad") = true,
        "Gradients of prelu_forward.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "x, weight : ndarray\n"
        "    As given to prelu_forward.\n"
        "grad_output : ndarray of x's shape and dtype\n"
        "grad_weight : ndarray of weight's shape, or None\n"
        "    dweight is added into it in place; None skips it.\n"
        "need_input_grad : bool, default True\n"
        "    False skips dx.\n"
        "\n"
        "Returns\n"
        "-------\n"
        "ndarray or None\n"
        "    dx of x's shape, or None when need_input_grad is false.\n"
        "\n"
        "Raises\n"
        "------\n"
        "ValueError\n"
        "    For shapes that do not match, or a non-C-contiguous array.\n"
        "TypeError\n"
        "    For a dtype other than float32/float64, or arrays of different dtypes.");
  m.def("maxout_forward", &maxout_forward, py::arg("z"), py::arg("pieces"),
        "Maxout: the maximum over consecutive groups of `pieces` entries of the last axis.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "z : ndarray (..., units * pieces), float32 or float64\n"
        "pieces : int\n"
        "    Group size, >= 1.\n"
        "\n"
        "Returns\n"
        "-------\n"
        "y : ndarray (..., units)\n"
        "argmax : ndarray (..., units), int32\n"
        "    Each group's winner in [0, pieces) (the first on ties), for maxout_backward.\n"
        "\n"
        "Raises\n"
        "------\n"
        "ValueError\n"
        "    For pieces < 1 or a last axis not a multiple of pieces. TypeError for another dtype.");
  m.def("maxout_backward", &maxout_backward, py::arg("grad_output"), py::arg("argmax"), py::arg("pieces"),
        "Gradient of maxout_forward: grad_output routed to each group's argmax, zeros elsewhere.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "grad_output : ndarray (..., units), float32 or float64\n"
        "argmax : ndarray (..., units), int32, C-contiguous\n"
        "    From maxout_forward.\n"
        "pieces : int\n"
        "    As given to maxout_forward.\n"
        "\n"
        "Returns\n"
        "-------\n"
        "ndarray (..., units * pieces)\n"
        "    dz.\n"
        "\n"
        "Raises\n"
        "------\n"
        "ValueError\n"
        "    For shapes that do not match or argmax entries outside [0, pieces). TypeError for dtypes.");
}

}  // namespace fastnn::bind
