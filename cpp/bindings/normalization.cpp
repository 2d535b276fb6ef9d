// Bindings of the normalisation kernels (batch, group, layer and local response norm): shapes checked,
// GIL released. Inputs are viewed as x[N, C, S] with S the product of the trailing (spatial) sizes.
#include "bindings/array_args.hpp"
#include "bindings/registry.hpp"
#include "kernels/checks.hpp"
#include "kernels/normalization.hpp"

namespace fastnn::bind {

namespace {

struct NCS {
  index_t N, C, S;
};

NCS ncs(const py::array& x, const char* what) {
  require(x.ndim() >= 2, std::string(what) + ": expected input of shape (N, C, ...), got " + shape_str(x));
  NCS d{static_cast<index_t>(x.shape(0)), static_cast<index_t>(x.shape(1)), 1};
  for (py::ssize_t i = 2; i < x.ndim(); ++i) d.S *= x.shape(i);
  return d;
}

std::vector<py::ssize_t> shape_of(const py::array& a) { return {a.shape(), a.shape() + a.ndim()}; }

// An optional array of x's shape (None: nullptr), named in the error as "<op>: <name> (shape) does not match".
template <typename T>
const T* optional_like(const py::object& obj, const py::array& x, const std::string& op, const std::string& name) {
  if (obj.is_none()) return nullptr;
  const py::array a = obj.cast<py::array>();
  require(shape_of(a) == shape_of(x), op + ": " + name + " " + shape_str(a) + " does not match input " + shape_str(x));
  return in_ptr<T>(a, (op + " " + name).c_str());
}

void require_finite(bool finite) { require(finite, "input contains NaN or infinity"); }

// -> (y, mean[C], invstd[C]). Training statistics update running_mean/running_var in place when given.
py::tuple batch_norm_forward(const py::array& x, const py::object& weight, const py::object& bias,
                             const py::object& running_mean, const py::object& running_var, bool use_batch_stats,
                             double momentum, double eps, bool check_finite, const py::object& residual,
                             bool relu) {
  const NCS d = ncs(x, "batch_norm_forward");
  require(residual.is_none() || relu, "batch_norm_forward: a residual needs relu=True");
  require(use_batch_stats || (!running_mean.is_none() && !running_var.is_none()),
          "batch_norm_forward: eval mode needs running_mean and running_var");
  require(!use_batch_stats || d.N * d.S > 1 || (running_mean.is_none() && running_var.is_none()),
          "batch_norm_forward: expected more than 1 value per channel when training, got input " + shape_str(x));
  return dispatch(float_dtype(x, "batch_norm_forward input"), [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    const T* px = in_ptr<T>(x, "batch_norm_forward input");
    const T* pw = optional_in<T>(weight, {d.C}, "batch_norm_forward weight");
    const T* pb = optional_in<T>(bias, {d.C}, "batch_norm_forward bias");
    T* prm = optional_out<T>(running_mean, {d.C}, "batch_norm_forward running_mean");
    T* prv = optional_out<T>(running_var, {d.C}, "batch_norm_forward running_var");
    const T* pr = optional_like<T>(residual, x, "batch_norm_forward", "residual");
    auto y = empty_array<T>(shape_of(x));
    auto mean = empty_array<T>({d.C}), invstd = empty_array<T>({d.C});
    T *py_ = y.mutable_data(), *pm = mean.mutable_data(), *pi = invstd.mutable_data();
    bool finite = true;
    {
      py::gil_scoped_release release;
      if (check_finite) finite = all_finite(px, d.N * d.C * d.S);
      if (finite)
        fastnn::batch_norm_forward(px, pw, pb, prm, prv, py_, pm, pi, d.N, d.C, d.S, use_batch_stats, T(momentum),
                                   T(eps), pr, relu);
    }
    require_finite(finite);
    return py::make_tuple(y, mean, invstd);
  });
}

py::object batch_norm_backward(const py::array& grad_y, const py::array& x, const py::array& mean,
                               const py::array& invstd, const py::object& weight, const py::object& grad_weight,
                               const py::object& grad_bias, bool training, bool need_input_grad,
                               bool accumulate_weight, bool accumulate_bias, const py::object& relu_out) {
  const NCS d = ncs(x, "batch_norm_backward");
  require(grad_y.ndim() == x.ndim() && shape_of(grad_y) == shape_of(x),
          "batch_norm_backward: grad_output " + shape_str(grad_y) + " does not match input " + shape_str(x));
  require_shape(mean, {d.C}, "batch_norm_backward mean");
  require_shape(invstd, {d.C}, "batch_norm_backward invstd");
  return dispatch(float_dtype(x, "batch_norm_backward input"), [&](auto tag) -> py::object {
    using T = decltype(tag);
    const T* pdy = in_ptr<T>(grad_y, "batch_norm_backward grad_output");
    const T* px = in_ptr<T>(x, "batch_norm_backward input");
    const T* pm = in_ptr<T>(mean, "batch_norm_backward mean");
    const T* pi = in_ptr<T>(invstd, "batch_norm_backward invstd");
    const T* pw = optional_in<T>(weight, {d.C}, "batch_norm_backward weight");
    T* pdw = optional_out<T>(grad_weight, {d.C}, "batch_norm_backward grad_weight");
    T* pdb = optional_out<T>(grad_bias, {d.C}, "batch_norm_backward grad_bias");
    const T* pro = optional_like<T>(relu_out, x, "batch_norm_backward", "relu_out");
    T* pdx;
    py::object result = optional_output<T>(need_input_grad, shape_of(x), pdx);
    {
      py::gil_scoped_release release;
      fastnn::batch_norm_backward(pdy, px, pm, pi, pw, pdx, pdw, pdb, d.N, d.C, d.S, training, accumulate_weight,
                                  accumulate_bias, pro);
    }
    return result;
  });
}

// Group norm of x[N, C, ...] (num_groups divides C) -> (y, mean[N·G], invstd[N·G]).
py::tuple group_norm_forward_impl(const py::array& x, const NCS& d, index_t G, const py::object& weight,
                                  const py::object& bias, double eps, bool check_finite, const char* what) {
  return dispatch(float_dtype(x, what), [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    const T* px = in_ptr<T>(x, what);
    const T* pw = optional_in<T>(weight, {d.C}, what);
    const T* pb = optional_in<T>(bias, {d.C}, what);
    auto y = empty_array<T>(shape_of(x));
    auto mean = empty_array<T>({d.N * G}), invstd = empty_array<T>({d.N * G});
    T *py_ = y.mutable_data(), *pm = mean.mutable_data(), *pi = invstd.mutable_data();
    bool finite = true;
    {
      py::gil_scoped_release release;
      if (check_finite) finite = all_finite(px, d.N * d.C * d.S);
      if (finite) fastnn::group_norm_forward(px, pw, pb, py_, pm, pi, d.N, d.C, d.S, G, T(eps));
    }
    require_finite(finite);
    return py::make_tuple(y, mean, invstd);
  });
}

py::object group_norm_backward_impl(const py::array& grad_y, const py::array& x, const NCS& d, index_t G,
                                    const py::array& mean, const py::array& invstd, const py::object& weight,
                                    const py::object& grad_weight, const py::object& grad_bias,
                                    bool need_input_grad, bool accumulate_weight, bool accumulate_bias,
                                    const char* what) {
  require(shape_of(grad_y) == shape_of(x),
          std::string(what) + ": grad_output " + shape_str(grad_y) + " does not match input " + shape_str(x));
  require_shape(mean, {d.N * G}, what);
  require_shape(invstd, {d.N * G}, what);
  return dispatch(float_dtype(x, what), [&](auto tag) -> py::object {
    using T = decltype(tag);
    const T* pdy = in_ptr<T>(grad_y, what);
    const T* px = in_ptr<T>(x, what);
    const T* pm = in_ptr<T>(mean, what);
    const T* pi = in_ptr<T>(invstd, what);
    const T* pw = optional_in<T>(weight, {d.C}, what);
    T* pdw = optional_out<T>(grad_weight, {d.C}, what);
    T* pdb = optional_out<T>(grad_bias, {d.C}, what);
    T* pdx;
    py::object result = optional_output<T>(need_input_grad, shape_of(x), pdx);
    {
      py::gil_scoped_release release;
      fastnn::group_norm_backward(pdy, px, pm, pi, pw, pdx, pdw, pdb, d.N, d.C, d.S, G, accumulate_weight,
                                  accumulate_bias);
    }
    return result;
  });
}

NCS group_dims(const py::array& x, index_t G, const char* what) {
  const NCS d = ncs(x, what);
  require(G >= 1 && d.C % G == 0, std::string(what) + ": num_groups " + std::to_string(G) +
                                      " must divide the channel count of input " + shape_str(x));
  return d;
}

// Layer norm over the trailing `normalized_ndim` dimensions: group norm with rows as samples, one group,
// and the normalised elements as channels (γ, β flattened).
NCS layer_dims(const py::array& x, int normalized_ndim, const char* what) {
  require(normalized_ndim >= 1 && x.ndim() >= normalized_ndim,
          std::string(what) + ": input " + shape_str(x) + " has fewer than " + std::to_string(normalized_ndim) +
              " dimensions");
  NCS d{1, 1, 1};
  for (py::ssize_t i = 0; i < x.ndim(); ++i) (i < x.ndim() - normalized_ndim ? d.N : d.C) *= x.shape(i);
  return d;
}

NCS lrn_dims(const py::array& x, index_t size, const char* what) {
  require(x.ndim() >= 3, std::string(what) + ": expected 3-D or higher input (N, C, ...), got " + shape_str(x));
  require(size >= 1, std::string(what) + ": size must be >= 1");
  return ncs(x, what);
}

}  // namespace

void register_normalization(py::module_& m) {
  m.def("batch_norm_forward", &batch_norm_forward, py::arg("x"), py::arg("weight"), py::arg("bias"),
        py::arg("running_mean"), py::arg("running_var"), py::arg("use_batch_stats"), py::arg("momentum") = 0.1,
        py::arg("eps") = 1e-5, py::arg("check_finite") = false, py::arg("residual") = py::none(),
        py::arg("relu") = false,
        "Batch normalisation per channel: y = (x - mean) * invstd * weight + bias.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "x : ndarray (N, C, ...), float32 or float64\n"
        "weight, bias : ndarray (C,) or None\n"
        "    gamma and beta (None: 1 and 0).\n"
        "running_mean, running_var : ndarray (C,) or None\n"
        "    With batch statistics they are updated in place, r = (1 - momentum) * r + momentum * batch (unbiased\n"
        "    variance); without, they are the statistics used.\n"
        "use_batch_stats : bool\n"
        "    Normalise with this batch's statistics (training) or the running ones.\n"
        "momentum : float, default 0.1\n"
        "eps : float, default 1e-5\n"
        "    Added to the variance.\n"
        "check_finite : bool, default False\n"
        "    Raise ValueError when x holds NaN or infinity.\n"
        "residual : ndarray of x's shape or None, default None\n"
        "    Added before the ReLU (needs relu=True): y = relu(bn(x) + residual), a residual block's tail.\n"
        "relu : bool, default False\n"
        "    y = relu(bn(x)) in the same pass, bit for bit the separate ops' result.\n"
        "\n"
        "Returns\n"
        "-------\n"
        "y : ndarray of x's shape\n"
        "mean, invstd : ndarray (C,)\n"
        "    The statistics used, for batch_norm_backward.\n"
        "\n"
        "Raises\n"
        "------\n"
        "ValueError\n"
        "    For shapes that do not match, or a non-C-contiguous array.\n"
        "TypeError\n"
        "    For a dtype other than float32/float64, or arrays of different dtypes.");
  m.def("batch_norm_backward", &batch_norm_backward, py::arg("grad_output"), py::arg("x"), py::arg("mean"),
        py::arg("invstd"), py::arg("weight"), py::arg("grad_weight") = py::none(), py::arg("grad_bias") = py::none(),
        py::arg("training") = true, py::arg("need_input_grad") = true, py::arg("accumulate_weight") = true,
        py::arg("accumulate_bias") = true, py::arg("relu_out") = py::none(),
        "Gradients of batch_norm_forward; parameter gradients are written in place.\n"
        "\n"
        "grad_weight (+)= sum(dy * xhat), grad_bias (+)= sum(dy) per channel.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "grad_output : ndarray of x's shape\n"
        "x : ndarray (N, C, ...)\n"
        "mean, invstd : ndarray (C,)\n"
        "    From batch_norm_forward.\n"
        "weight : ndarray (C,) or None\n"
        "grad_weight, grad_bias : ndarray (C,) or None, default None\n"
        "    Receive dweight, dbias; None skips one.\n"
        "training : bool, default True\n"
        "    Whether the forward used batch statistics (dx then flows through them too).\n"
        "need_input_grad : bool, default True\n"
        "    False skips dx.\n"
        "accumulate_weight, accumulate_bias : bool, default True\n"
        "    Add into the gradient arrays (True) or overwrite them (False).\n"
        "relu_out : ndarray of x's shape or None, default None\n"
        "    The output of a forward with relu=True (no residual): grad_output is then the gradient of the ReLU's\n"
        "    output, masked here as the ReLU backward would.\n"
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
  m.def("group_norm_forward",
        [](const py::array& x, index_t num_groups, const py::object& weight, const py::object& bias, double eps,
           bool check_finite) {
          const NCS d = group_dims(x, num_groups, "group_norm_forward");
          return group_norm_forward_impl(x, d, num_groups, weight, bias, eps, check_finite, "group_norm_forward");
        },
        py::arg("x"), py::arg("num_groups"), py::arg("weight") = py::none(), py::arg("bias") = py::none(),
        py::arg("eps") = 1e-5, py::arg("check_finite") = false,
        "Group normalisation: statistics over each sample's C / num_groups channels and the spatial axes.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "x : ndarray (N, C, ...), float32 or float64\n"
        "num_groups : int\n"
        "    Divides C.\n"
        "weight, bias : ndarray (C,) or None, default None\n"
        "eps : float, default 1e-5\n"
        "check_finite : bool, default False\n"
        "    Raise ValueError when x holds NaN or infinity.\n"
        "\n"
        "Returns\n"
        "-------\n"
        "y : ndarray of x's shape\n"
        "mean, invstd : ndarray (N * num_groups,)\n"
        "    For group_norm_backward.\n"
        "\n"
        "Raises\n"
        "------\n"
        "ValueError\n"
        "    For shapes that do not match, or a non-C-contiguous array.\n"
        "TypeError\n"
        "    For a dtype other than float32/float64, or arrays of different dtypes.");
  m.def("group_norm_backward",
        [](const py::array& grad_y, const py::array& x, index_t num_groups, const py::array& mean,
           const py::array& invstd, const py::object& weight, const py::object& grad_weight,
           const py::object& grad_bias, bool need_input_grad, bool accumulate_weight, bool accumulate_bias) {
          const NCS d = group_dims(x, num_groups, "group_norm_backward");
          return group_norm_backward_impl(grad_y, x, d, num_groups, mean, invstd, weight, grad_weight, grad_bias,
                                          need_input_grad, accumulate_weight, accumulate_bias,
                                          "group_norm_backward");
        },
        py::arg("grad_output"), py::arg("x"), py::arg("num_groups"), py::arg("mean"), py::arg("invstd"),
        py::arg("weight") = py::none(), py::arg("grad_weight") = py::none(), py::arg("grad_bias") = py::none(),
        py::arg("need_input_grad") = true, py::arg("accumulate_weight") = true, py::arg("accumulate_bias") = true,
        "Gradients of group_norm_forward; parameter gradients are written in place.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "grad_output : ndarray of x's shape\n"
        "x : ndarray (N, C, ...)\n"
        "num_groups : int\n"
        "mean, invstd : ndarray (N * num_groups,)\n"
        "    From group_norm_forward.\n"
        "weight : ndarray (C,) or None, default None\n"
        "grad_weight, grad_bias : ndarray (C,) or None, default None\n"
        "    Receive dweight, dbias; None skips one.\n"
        "need_input_grad : bool, default True\n"
        "    False skips dx.\n"
        "accumulate_weight, accumulate_bias : bool, default True\n"
        "    Add into the gradient arrays (True) or overwrite them (False).\n"
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
  m.def("layer_norm_forward",
        [](const py::array& x, int normalized_ndim, const py::object& weight, const py::object& bias, double eps,
           bool check_finite) {
          const NCS d = layer_dims(x, normalized_ndim, "layer_norm_forward");
          return group_norm_forward_impl(x, d, 1, weight, bias, eps, check_finite, "layer_norm_forward");
        },
        py::arg("x"), py::arg("normalized_ndim"), py::arg("weight") = py::none(), py::arg("bias") = py::none(),
        py::arg("eps") = 1e-5, py::arg("check_finite") = false,
        "Layer normalisation over the trailing normalized_ndim axes of each sample.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "x : ndarray, float32 or float64\n"
        "normalized_ndim : int\n"
        "    How many trailing axes of x (of shape S) are normalised together.\n"
        "weight, bias : ndarray of shape S (or flattened), or None, default None\n"
        "eps : float, default 1e-5\n"
        "check_finite : bool, default False\n"
        "    Raise ValueError when x holds NaN or infinity.\n"
        "\n"
        "Returns\n"
        "-------\n"
        "y : ndarray of x's shape\n"
        "mean, invstd : ndarray\n"
        "    One entry per normalised row, for layer_norm_backward.\n"
        "\n"
        "Raises\n"
        "------\n"
        "ValueError\n"
        "    For shapes that do not match, or a non-C-contiguous array.\n"
        "TypeError\n"
        "    For a dtype other than float32/float64, or arrays of different dtypes.");
  m.def("layer_norm_backward",
        [](const py::array& grad_y, const py::array& x, int normalized_ndim, const py::array& mean,
           const py::array& invstd, const py::object& weight, const py::object& grad_weight,
           const py::object& grad_bias, bool need_input_grad, bool accumulate_weight, bool accumulate_bias) {
          const NCS d = layer_dims(x, normalized_ndim, "layer_norm_backward");
          return group_norm_backward_impl(grad_y, x, d, 1, mean, invstd, weight, grad_weight, grad_bias,
                                          need_input_grad, accumulate_weight, accumulate_bias,
                                          "layer_norm_backward");
        },
        py::arg("grad_output"), py::arg("x"), py::arg("normalized_ndim"), py::arg("mean"), py::arg("invstd"),
        py::arg("weight") = py::none(), py::arg("grad_weight") = py::none(), py::arg("grad_bias") = py::none(),
        py::arg("need_input_grad") = true, py::arg("accumulate_weight") = true, py::arg("accumulate_bias") = true,
        "Gradients of layer_norm_forward; parameter gradients are written in place.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "grad_output : ndarray of x's shape\n"
        "x : ndarray\n"
        "normalized_ndim : int\n"
        "mean, invstd : ndarray\n"
        "    From layer_norm_forward.\n"
        "weight : ndarray or None, default None\n"
        "grad_weight, grad_bias : ndarray or None, default None\n"
        "    Receive dweight, dbias; None skips one.\n"
        "need_input_grad : bool, default True\n"
        "    False skips dx.\n"
        "accumulate_weight, accumulate_bias : bool, default True\n"
        "    Add into the gradient arrays (True) or overwrite them (False).\n"
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
  m.def("local_response_norm_forward",
        [](const py::array& x, index_t size, double alpha, double beta, double k, bool check_finite) {
          const NCS d = lrn_dims(x, size, "local_response_norm_forward");
          return dispatch(float_dtype(x, "local_response_norm_forward input"), [&](auto tag) -> py::array {
            using T = decltype(tag);
            const T* px = in_ptr<T>(x, "local_response_norm_forward input");
            auto y = empty_array<T>(shape_of(x));
            T* py_ = y.mutable_data();
            bool finite = true;
            {
              py::gil_scoped_release release;
              if (check_finite) finite = all_finite(px, d.N * d.C * d.S);
              if (finite) fastnn::lrn_forward(px, py_, d.N, d.C, d.S, size, T(alpha), T(beta), T(k));
            }
            require_finite(finite);
            return y;
          });
        },
        py::arg("x"), py::arg("size") = 5, py::arg("alpha") = 1e-4, py::arg("beta") = 0.75, py::arg("k") = 2.0,
        py::arg("check_finite") = false,
        "Local response normalisation across channels (PyTorch's formula).\n"
        "\n"
        "y = x / (k + alpha / size * sum of x^2 over `size` neighbouring channels)^beta.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "x : ndarray (N, C, ...), float32 or float64\n"
        "size : int, default 5\n"
        "alpha : float, default 1e-4\n"
        "beta : float, default 0.75\n"
        "k : float, default 2\n"
        "check_finite : bool, default False\n"
        "    Raise ValueError when x holds NaN or infinity.\n"
        "\n"
        "Returns\n"
        "-------\n"
        "ndarray of x's shape\n"
        "\n"
        "Raises\n"
        "------\n"
        "ValueError\n"
        "    For shapes that do not match, or a non-C-contiguous array.\n"
        "TypeError\n"
        "    For a dtype other than float32/float64, or arrays of different dtypes.");
  m.def("local_response_norm_backward",
        [](const py::array& grad_y, const py::array& x, index_t size, double alpha, double beta, double k) {
          const NCS d = lrn_dims(x, size, "local_response_norm_backward");
          require(shape_of(grad_y) == shape_of(x), "local_response_norm_backward: grad_output " +
                                                       shape_str(grad_y) + " does not match input " + shape_str(x));
          return dispatch(float_dtype(x, "local_response_norm_backward input"), [&](auto tag) -> py::array {
            using T = decltype(tag);
            const T* pdy = in_ptr<T>(grad_y, "local_response_norm_backward grad_output");
            const T* px = in_ptr<T>(x, "local_response_norm_backward input");
            auto dx = empty_array<T>(shape_of(x));
            T* pdx = dx.mutable_data();
            {
              py::gil_scoped_release release;
              fastnn::lrn_backward(pdy, px, pdx, d.N, d.C, d.S, size, T(alpha), T(beta), T(k));
            }
            return dx;
          });
        },
        py::arg("grad_output"), py::arg("x"), py::arg("size") = 5, py::arg("alpha") = 1e-4, py::arg("beta") = 0.75,
        py::arg("k") = 2.0,
        "Gradient dx of local_response_norm_forward.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "grad_output : ndarray of x's shape\n"
        "x : ndarray (N, C, ...)\n"
        "size, alpha, beta, k\n"
        "    As given to local_response_norm_forward.\n"
        "\n"
        "Returns\n"
        "-------\n"
        "ndarray of x's shape\n"
        "\n"
        "Raises\n"
        "------\n"
        "ValueError\n"
        "    For shapes that do not match, or a non-C-contiguous array.\n"
        "TypeError\n"
        "    For a dtype other than float32/float64, or arrays of different dtypes.");
}

}  // namespace fastnn::bind
