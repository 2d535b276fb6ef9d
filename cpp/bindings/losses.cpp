// Bindings of the loss kernels. Every function returns (loss, grad): loss is a float for 'mean'/'sum' (and
// 'half_sum' for MSE) or an array of per-item losses for 'none'; grad is the gradient of the returned loss
// w.r.t. the prediction (for 'none': of the sum of the items). Shapes checked, GIL released in the kernels.
#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "bindings/array_args.hpp"
#include "bindings/registry.hpp"
#include "kernels/checks.hpp"
#include "kernels/losses.hpp"

namespace fastnn::bind {

namespace {

enum class Reduction { none, mean, sum, half_sum };

Reduction parse_reduction(const std::string& r, const char* fn, bool allow_half_sum = false) {
  if (r == "mean") return Reduction::mean;
  if (r == "sum") return Reduction::sum;
  if (r == "none") return Reduction::none;
  if (allow_half_sum && r == "half_sum") return Reduction::half_sum;
  throw py::value_error(std::string(fn) + ": reduction must be 'none', 'mean', 'sum'" +
                        (allow_half_sum ? " or 'half_sum'" : "") + ", got '" + r + "'");
}

std::vector<py::ssize_t> shape_of(const py::array& a) { return {a.shape(), a.shape() + a.ndim()}; }

// Data of an optional array argument (nullptr for None). It must already be an ndarray of dtype T: a converted
// temporary would die before the kernel reads it, whereas `obj` keeps this one alive.
template <typename T>
const T* optional_data(const py::object& obj, const char* what) {
  if (obj.is_none()) return nullptr;
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(std::string(what) + ": expected a numpy array or None, got " +
                         std::string(py::str(py::type::handle_of(obj).attr("__name__"))));
  return in_ptr<T>(py::reinterpret_borrow<py::array>(obj), what);
}

// ... of a given shape.
template <typename T>
const T* optional_ptr(const py::object& obj, std::initializer_list<index_t> shape, const char* what) {
  const T* p = optional_data<T>(obj, what);
  if (p) require_shape(py::reinterpret_borrow<py::array>(obj), shape, what);
  return p;
}

// ... of the shape of `like`.
template <typename T>
const T* optional_ptr_like(const py::object& obj, const py::array& like, const char* what) {
  const T* p = optional_data<T>(obj, what);
  if (p) {
    auto a = py::reinterpret_borrow<py::array>(obj);
    require(a.ndim() == like.ndim() && std::equal(a.shape(), a.shape() + a.ndim(), like.shape()),
            std::string(what) + ": expected shape " + shape_str(like) + ", got " + shape_str(a));
  }
  return p;
}

// The per-item loss array for 'none' (None otherwise) and its data pointer.
template <typename T>
std::pair<py::object, T*> item_array(Reduction r, std::vector<py::ssize_t> shape) {
  if (r != Reduction::none) return {py::none(), nullptr};
  auto a = empty_array<T>(std::move(shape));
  T* data = a.mutable_data();
  return {std::move(a), data};
}

// The (loss, grad) pair: sum / denominator for 'mean', the scaled sum otherwise, the item array for 'none'.
py::tuple result(double sum, double denominator, Reduction r, const py::object& items, const py::array& grad) {
  switch (r) {
    case Reduction::none: return py::make_tuple(items, grad);
    case Reduction::mean: return py::make_tuple(sum / denominator, grad);
    case Reduction::half_sum: return py::make_tuple(0.5 * sum, grad);
    default: return py::make_tuple(sum, grad);
  }
}

void require_labels(const py::array& target, index_t n, const char* fn) {
  if (!has_dtype<std::int64_t>(target))
    throw py::type_error(std::string(fn) + ": class-index target must be int64, got dtype " +
                         std::string(py::str(target.dtype())));
  require_shape(target, {n}, (std::string(fn) + " target").c_str());
  require(target.flags() & py::array::c_style, std::string(fn) + ": target must be C-contiguous");
}

[[noreturn]] void bad_label(const std::int64_t* labels, index_t at, index_t classes, std::int64_t ignore_index) {
  throw py::value_error("target label " + std::to_string(labels[at]) + " (at index " + std::to_string(at) +
                        ") is out of range for " + std::to_string(classes) + " classes: labels must be in [0, " +
                        std::to_string(classes - 1) + "] or equal ignore_index=" + std::to_string(ignore_index));
}

// logits [N, C]; target int64 labels [N] or class probabilities [N, C] of the logits' dtype.
py::tuple cross_entropy(const py::array& logits, const py::array& target, const py::object& weight,
                        std::int64_t ignore_index, double label_smoothing, const std::string& reduction) {
  const char* fn = "cross_entropy";
  const Reduction red = parse_reduction(reduction, fn);
  require(logits.ndim() == 2, "cross_entropy: logits must be 2-D (N, C), got " + shape_str(logits));
  require(label_smoothing >= 0.0 && label_smoothing <= 1.0,
          "cross_entropy: label_smoothing must be in [0, 1], got " + std::to_string(label_smoothing));
  const index_t N = logits.shape(0), C = logits.shape(1);
  require(C > 0, "cross_entropy: logits need at least one class, got shape " + shape_str(logits));
  const bool labels = target.dtype().kind() != 'f';
  return dispatch(float_dtype(logits, "cross_entropy logits"), [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    const T* px = in_ptr<T>(logits, "cross_entropy logits");
    const T* pw = optional_ptr<T>(weight, {C}, "cross_entropy weight");
    auto grad = empty_array<T>({N, C});
    auto [items, pl] = item_array<T>(red, {N});
    T* pg = grad.mutable_data();
    const T eps = static_cast<T>(label_smoothing);
    bool ok = true;
    double sum = 0, denominator = double(N);
    if (labels) {
      require_labels(target, N, fn);
      const auto* py_ = static_cast<const std::int64_t*>(target.data());
      index_t bad = -1;
      {
        py::gil_scoped_release release;
        bad = check_labels(py_, N, C, ignore_index, pw, &denominator);
        if (bad < 0) {
          const T scale = red == Reduction::mean ? T(1) / T(denominator) : T(1);
          sum = softmax_cross_entropy_labels(px, py_, pw, N, C, ignore_index, eps, scale, pg, pl, ok);
        }
      }
      if (bad >= 0) bad_label(py_, bad, C, ignore_index);
      require(ok, "logits contain NaN or infinity");
    } else {
      require_shape(target, {N, C}, "cross_entropy probability target");
      const T* pt = in_ptr<T>(target, "cross_entropy probability target");
      {
        py::gil_scoped_release release;
        const T scale = red == Reduction::mean ? T(1) / T(N) : T(1);
        sum = softmax_cross_entropy_probs(px, pt, pw, N, C, eps, scale, pg, pl, ok);
      }
      require(ok, all_finite(px, N * C) ? "probability target contains NaN or infinity"
                                        : "logits contain NaN or infinity");
    }
    return result(sum, denominator, red, items, grad);
  });
}

// input [N, C] log-probabilities; target int64 labels [N].
py::tuple nll_loss(const py::array& input, const py::array& target, const py::object& weight,
                   std::int64_t ignore_index, const std::string& reduction) {
  const char* fn = "nll_loss";
  const Reduction red = parse_reduction(reduction, fn);
  require(input.ndim() == 2, "nll_loss: input must be 2-D (N, C), got " + shape_str(input));
  const index_t N = input.shape(0), C = input.shape(1);
  require_labels(target, N, fn);
  return dispatch(float_dtype(input, "nll_loss input"), [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    const T* px = in_ptr<T>(input, "nll_loss input");
    const T* pw = optional_ptr<T>(weight, {C}, "nll_loss weight");
    const auto* py_ = static_cast<const std::int64_t*>(target.data());
    auto grad = empty_array<T>({N, C});
    auto [items, pl] = item_array<T>(red, {N});
    T* pg = grad.mutable_data();
    bool ok = true;
    double sum = 0, denominator = 0;
    index_t bad = -1;
    {
      py::gil_scoped_release release;
      bad = check_labels(py_, N, C, ignore_index, pw, &denominator);
      if (bad < 0) {
        const T scale = red == Reduction::mean ? T(1) / T(denominator) : T(1);
        sum = nll_labels(px, py_, pw, N, C, ignore_index, scale, pg, pl, ok);
      }
    }
    if (bad >= 0) bad_label(py_, bad, C, ignore_index);
    require(ok, "input contains NaN or +infinity (log-probabilities expected)");
    return result(sum, denominator, red, items, grad);
  });
}

// Element-wise losses: pred, target (and weights) of one shape. `kernel(px, pt, n, scale, pg, pl, ok)`.
template <typename Kernel>
py::tuple elementwise(const char* fn, const py::array& pred, const py::array& target, Reduction red,
                      Kernel&& kernel) {
  require(target.ndim() == pred.ndim() && std::equal(pred.shape(), pred.shape() + pred.ndim(), target.shape()),
          std::string(fn) + ": target shape " + shape_str(target) + " does not match input shape " +
              shape_str(pred));
  const index_t n = static_cast<index_t>(pred.size());
  return dispatch(float_dtype(pred, fn), [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    const T* pp = in_ptr<T>(pred, fn);
    const T* pt = in_ptr<T>(target, (std::string(fn) + " target").c_str());
    auto grad = empty_array<T>(shape_of(pred));
    auto [items, pl] = item_array<T>(red, shape_of(pred));
    T* pg = grad.mutable_data();
    const T scale = red == Reduction::mean ? T(1) / T(n) : red == Reduction::half_sum ? T(0.5) : T(1);
    bool ok = true;
    double sum = kernel(pp, pt, n, scale, pg, pl, ok, T{});
    if (!ok) throw py::value_error(std::string(fn) + ": " + kernel.error(pp, pt, n));
    return result(sum, double(n), red, items, grad);
  });
}

// Local classes cannot have member templates: the kernel adaptors of elementwise() live here.
struct SquaredErrorKernel {
  template <typename T>
  double operator()(const T* p, const T* t, index_t n, T scale, T* g, T* l, bool& ok, T) const {
    py::gil_scoped_release release;
    return squared_error(p, t, n, scale, g, l, ok);
  }
  template <typename T>
  std::string error(const T* p, const T*, index_t n) const {
    return all_finite(p, n) ? "target contains NaN or infinity" : "input contains NaN or infinity";
  }
};

struct BceKernel {
  const py::object& weight;
  const py::array& pred;
  template <typename T>
  double operator()(const T* p, const T* t, index_t n, T scale, T* g, T* l, bool& ok, T) const {
    const T* w = optional_ptr_like<T>(weight, pred, "binary_cross_entropy weight");
    py::gil_scoped_release release;
    return binary_cross_entropy(p, t, w, n, scale, g, l, ok);
  }
  template <typename T>
  std::string error(const T* p, const T* t, index_t n) const {
    for (index_t i = 0; i < n; ++i)
      if (!(p[i] >= T(0) && p[i] <= T(1)))
        return "input values must be probabilities in [0, 1], got " + std::to_string(p[i]) + " at flat index " +
               std::to_string(i);
    return all_finite(t, n) ? "weight contains NaN or infinity" : "target contains NaN or infinity";
  }
};

struct BceWithLogitsKernel {
  const py::object& weight;
  const py::object& pos_weight;
  const py::array& pred;
  template <typename T>
  double operator()(const T* p, const T* t, index_t n, T scale, T* g, T* l, bool& ok, T) const {
    const T* w = optional_ptr_like<T>(weight, pred, "binary_cross_entropy_with_logits weight");
    const T* q = optional_ptr_like<T>(pos_weight, pred, "binary_cross_entropy_with_logits pos_weight");
    py::gil_scoped_release release;
    return binary_cross_entropy_with_logits(p, t, w, q, n, scale, g, l, ok);
  }
  template <typename T>
  std::string error(const T* p, const T* t, index_t n) const {
    if (!all_finite(p, n)) return "input contains NaN or infinity";
    if (!all_finite(t, n)) return "target contains NaN or infinity";
    return "weight or pos_weight contains NaN or infinity";
  }
};

py::tuple mse_loss(const py::array& pred, const py::array& target, const std::string& reduction) {
  return elementwise("mse_loss", pred, target, parse_reduction(reduction, "mse_loss", true), SquaredErrorKernel{});
}

py::tuple bce_loss(const py::array& pred, const py::array& target, const py::object& weight,
                   const std::string& reduction) {
  const char* fn = "binary_cross_entropy";
  return elementwise(fn, pred, target, parse_reduction(reduction, fn), BceKernel{weight, pred});
}

py::tuple bce_with_logits_loss(const py::array& pred, const py::array& target, const py::object& weight,
                               const py::object& pos_weight, const std::string& reduction) {
  const char* fn = "binary_cross_entropy_with_logits";
  return elementwise(fn, pred, target, parse_reduction(reduction, fn), BceWithLogitsKernel{weight, pos_weight, pred});
}

}  // namespace

void register_losses(py::module_& m) {
  m.def("cross_entropy", &cross_entropy, py::arg("logits"), py::arg("target"), py::arg("weight") = py::none(),
        py::arg("ignore_index") = -100, py::arg("label_smoothing") = 0.0, py::arg("reduction") = "mean",
        "Softmax cross-entropy on logits, fused and stable, with its gradient.\n"
        "\n"
        "loss_n = -w[t_n] * log softmax(x_n)[t_n] for labels (with label smoothing eps the target is\n"
        "(1 - eps) * onehot + eps / C), or -sum_c p_nc * log softmax(x_n)_c for probabilities p.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "logits : ndarray (N, C), float32 or float64\n"
        "target : ndarray\n"
        "    int64 class labels (N,), or class probabilities (N, C) of the logits' dtype.\n"
        "weight : ndarray (C,) or None, default None\n"
        "    Per-class weights; a weighted 'mean' divides by the sum of the weights of non-ignored labels.\n"
        "ignore_index : int, default -100\n"
        "    Label that adds neither loss nor gradient.\n"
        "label_smoothing : float in [0, 1], default 0\n"
        "reduction : {'mean', 'sum', 'none'}, default 'mean'\n"
        "\n"
        "Returns\n"
        "-------\n"
        "loss : float, or ndarray (N,) for 'none'\n"
        "grad : ndarray (N, C)\n"
        "    d loss / d logits (for 'none': of the sum of the items).\n"
        "\n"
        "Raises\n"
        "------\n"
        "ValueError\n"
        "    For shapes that do not match, labels out of range, NaN or infinity in the inputs, or a bad reduction.\n"
        "TypeError\n"
        "    For dtypes (labels must be int64).");
  m.def("nll_loss", &nll_loss, py::arg("input"), py::arg("target"), py::arg("weight") = py::none(),
        py::arg("ignore_index") = -100, py::arg("reduction") = "mean",
        "Negative log-likelihood on log-probabilities, with its gradient: loss_n = -w[t_n] * x[n, t_n].\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "input : ndarray (N, C), float32 or float64\n"
        "    Log-probabilities (e.g. log_softmax_forward's output).\n"
        "target : ndarray (N,), int64\n"
        "    Class labels.\n"
        "weight : ndarray (C,) or None, default None\n"
        "    Per-class weights; a weighted 'mean' divides by the sum of the weights of non-ignored labels.\n"
        "ignore_index : int, default -100\n"
        "    Label that adds neither loss nor gradient.\n"
        "reduction : {'mean', 'sum', 'none'}, default 'mean'\n"
        "\n"
        "Returns\n"
        "-------\n"
        "loss : float, or ndarray (N,) for 'none'\n"
        "grad : ndarray (N, C)\n"
        "    d loss / d input.\n"
        "\n"
        "Raises\n"
        "------\n"
        "ValueError\n"
        "    For shapes that do not match, labels out of range, NaN or +infinity in input, or a bad reduction.\n"
        "TypeError\n"
        "    For dtypes (labels must be int64).");
  m.def("mse_loss", &mse_loss, py::arg("input"), py::arg("target"), py::arg("reduction") = "mean",
        "Squared error (input - target)^2, reduced, with its gradient.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "input : ndarray, float32 or float64, any shape\n"
        "target : ndarray of input's shape and dtype\n"
        "reduction : {'mean', 'sum', 'half_sum', 'none'}, default 'mean'\n"
        "    'half_sum' is 0.5 * sum((input - target)^2), whose gradient is input - target.\n"
        "\n"
        "Returns\n"
        "-------\n"
        "loss : float, or ndarray of input's shape for 'none'\n"
        "grad : ndarray of input's shape\n"
        "    d loss / d input.\n"
        "\n"
        "Raises\n"
        "------\n"
        "ValueError\n"
        "    For shapes that do not match, NaN or infinity, or a bad reduction. TypeError for dtypes.");
  m.def("binary_cross_entropy", &bce_loss, py::arg("input"), py::arg("target"), py::arg("weight") = py::none(),
        py::arg("reduction") = "mean",
        "Binary cross-entropy on probabilities, with its gradient.\n"
        "\n"
        "loss = -w * (t * log(p) + (1 - t) * log(1 - p)), each log clamped at -100 (PyTorch's rule).\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "input : ndarray, float32 or float64, any shape\n"
        "    Probabilities p in [0, 1].\n"
        "target : ndarray of input's shape and dtype\n"
        "weight : ndarray of input's shape, or None, default None\n"
        "reduction : {'mean', 'sum', 'none'}, default 'mean'\n"
        "\n"
        "Returns\n"
        "-------\n"
        "loss : float, or ndarray of input's shape for 'none'\n"
        "grad : ndarray of input's shape\n"
        "    d loss / d input.\n"
        "\n"
        "Raises\n"
        "------\n"
        "ValueError\n"
        "    For shapes that do not match, input outside [0, 1], NaN or infinity, or a bad reduction.\n"
        "TypeError\n"
        "    For dtypes.");
  m.def("binary_cross_entropy_with_logits", &bce_with_logits_loss, py::arg("input"), py::arg("target"),
        py::arg("weight") = py::none(), py::arg("pos_weight") = py::none(), py::arg("reduction") = "mean",
        "Sigmoid plus binary cross-entropy in one stable formula, with its gradient.\n"
        "\n"
        "loss = -w * (q * t * log(sigmoid(x)) + (1 - t) * log(1 - sigmoid(x))), q the pos_weight; finite for any\n"
        "finite logit x.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "input : ndarray, float32 or float64, any shape\n"
        "    Logits x.\n"
        "target : ndarray of input's shape and dtype\n"
        "weight, pos_weight : ndarray of input's shape, or None, default None\n"
        "reduction : {'mean', 'sum', 'none'}, default 'mean'\n"
        "\n"
        "Returns\n"
        "-------\n"
        "loss : float, or ndarray of input's shape for 'none'\n"
        "grad : ndarray of input's shape\n"
        "    d loss / d input.\n"
        "\n"
        "Raises\n"
        "------\n"
        "ValueError\n"
        "    For shapes that do not match, NaN or infinity, or a bad reduction. TypeError for dtypes.");
}

}  // namespace fastnn::bind
