// Bindings of the fused optimizer updates: lists of parameters, gradients and state buffers in, updated in
// place in one call. Every array is checked (dtype, contiguity, alignment, writeability, shape) before the
// GIL is released, with errors that name the optimizer and the tensor's index and shape.
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "bindings/array_args.hpp"
#include "bindings/registry.hpp"
#include "kernels/optimizers.hpp"

namespace fastnn::bind {

namespace {

// The arrays of one fused step, checked in a single pass that reads NumPy's array structs directly (a step
// of a small model must cost microseconds): same dtype as params[0], C-contiguous, aligned, writeable (all
// but the gradients), shaped like their parameter. Error messages are only built when a check fails.
// State lists are given as (name, list, used): an unused one must be empty.
class StepArrays {
 public:
  StepArrays(const char* optimizer, const py::object& params, const py::object& grads,
             std::initializer_list<std::tuple<const char*, py::object, bool>> states, const py::object& steps)
      : name_(optimizer) {
    params_ = items("params", params);
    grads_ = items("grads", grads);
    require_len("grads", grads_, params_.size());
    std::size_t j = 0;
    for (const auto& [what, list, used] : states) {
      state_names_[j] = what;
      states_[j] = items(what, list);
      require_len(what, states_[j], used ? params_.size() : 0);
      ++j;
    }
    steps_ = steps;
    const auto* s = py::isinstance<py::array>(steps) ? py::detail::array_proxy(steps.ptr()) : nullptr;
    if (!s || !has_dtype<std::int64_t>(py::reinterpret_borrow<py::array>(steps)) || s->nd != 1 ||
        s->dimensions[0] != static_cast<py::ssize_t>(params_.size()) || (s->flags & kWriteableC) != kWriteableC)
      throw py::value_error(std::string(name_) + ": steps must be a writeable 1-D int64 array of length " +
                            std::to_string(params_.size()) + ", got " + describe(steps));
  }

  // Checks every array, then runs update(OptimizerTensors<T>&) with the GIL released.
  template <typename Update>
  void run(Update&& update) {
    if (params_.empty()) return;
    const py::handle first = params_[0];
    if (!py::isinstance<py::array>(first))
      throw py::type_error(std::string(name_) + ": params[0] is not a numpy array but " + type_name(first));
    const auto dtype = float_dtype(py::reinterpret_borrow<py::array>(first), (std::string(name_) + ": params").c_str());
    dispatch(dtype, [&](auto tag) {
      using T = decltype(tag);
      const PyObject* descr = py::detail::array_proxy(first.ptr())->descr;
      OptimizerTensors<T> t;
      const std::size_t n = params_.size();
      t.param.reserve(n);
      t.grad.reserve(n);
      t.size.reserve(n);
      for (std::size_t k = 0; k < n; ++k) {
        const auto* p = checked<T>(params_[k], descr, nullptr, "params", k, true);
        t.param.push_back(reinterpret_cast<T*>(p->data));
        t.grad.push_back(reinterpret_cast<T*>(checked<T>(grads_[k], descr, p, "grads", k, false)->data));
        index_t size = 1;
        for (int d = 0; d < p->nd; ++d) size *= p->dimensions[d];
        t.size.push_back(size);
        for (std::size_t j = 0; j < states_.size(); ++j) {
          if (states_[j].empty()) continue;
          const auto* buf = checked<T>(states_[j][k], descr, p, state_names_[j], k, true);
          t.state[j].push_back(reinterpret_cast<T*>(buf->data));
        }
      }
      t.step = reinterpret_cast<std::int64_t*>(py::detail::array_proxy(steps_.ptr())->data);
      py::gil_scoped_release release;
      update(t);
    });
  }

 private:
  static constexpr int kWriteableC = py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_ |
                                     py::detail::npy_api::NPY_ARRAY_ALIGNED_ |
                                     py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  static constexpr int kReadableC = py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_ |
                                    py::detail::npy_api::NPY_ARRAY_ALIGNED_;

  static std::string type_name(const py::handle& obj) {
    return py::type::of(obj).attr("__name__").cast<std::string>();
  }

  static std::string describe(const py::handle& obj) {
    if (!py::isinstance<py::array>(obj)) return "a " + type_name(obj);
    const auto a = py::reinterpret_borrow<py::array>(obj);
    return "dtype " + std::string(py::str(a.dtype())) + " shape " + shape_str(a);
  }

  // The items of a list or tuple, referenced for the duration of the call.
  std::vector<py::object> items(const char* what, const py::object& obj) const {
    if (!py::isinstance<py::list>(obj) && !py::isinstance<py::tuple>(obj))
      throw py::type_error(std::string(name_) + ": " + what + " must be a list of numpy arrays, got " +
                           type_name(obj));
    std::vector<py::object> out;
    out.reserve(static_cast<std::size_t>(py::len(obj)));
    for (const py::handle item : obj) out.push_back(py::reinterpret_borrow<py::object>(item));
    return out;
  }

  void require_len(const char* what, const std::vector<py::object>& list, std::size_t n) const {
    if (list.size() != n)
      throw py::value_error(std::string(name_) + ": " + what + " has " + std::to_string(list.size()) +
                            " arrays, expected " + std::to_string(n));
  }

  // `obj` as an array of T shaped like `param` (or, for param itself, just an array of T).
  template <typename T>
  const py::detail::PyArray_Proxy* checked(const py::object& obj, const PyObject* descr,
                                           const py::detail::PyArray_Proxy* param, const char* what, std::size_t k,
                                           bool writeable) const {
    const auto where = [&] {
      std::string s = std::string(name_) + ": " + what + "[" + std::to_string(k) + "]";
      if (param) s += " (parameter shape " + shape_str(params_[k]) + ")";
      return s;
    };
    if (!py::isinstance<py::array>(obj)) throw py::type_error(where() + " is not a numpy array but " + type_name(obj));
    const auto* a = py::detail::array_proxy(obj.ptr());
    if (a->descr != descr && !has_dtype<T>(py::reinterpret_borrow<py::array>(obj)))
      throw py::type_error(where() + " has " + describe(obj) + ", expected " +
                           std::string(py::str(py::dtype::of<T>())) + " like params[0]");
    bool same_shape = !param || a->nd == param->nd;
    for (int d = 0; same_shape && param && d < a->nd; ++d) same_shape = a->dimensions[d] == param->dimensions[d];
    if (!same_shape) throw py::value_error(where() + " has shape " + shape_str(py::reinterpret_borrow<py::array>(obj)));
    const int need = writeable ? kWriteableC : kReadableC;
    if ((a->flags & need) != need) {
      if (!(a->flags & py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_))
        throw py::value_error(where() + " must be C-contiguous");
      if (!(a->flags & py::detail::npy_api::NPY_ARRAY_ALIGNED_)) throw py::value_error(where() + " must be aligned");
      throw py::value_error(where() + " must be writeable");
    }
    return a;
  }

  static std::string shape_str(const py::object& obj) {
    return bind::shape_str(py::reinterpret_borrow<py::array>(obj));
  }

  const char* name_;
  std::vector<py::object> params_, grads_;
  std::array<std::vector<py::object>, 3> states_;
  std::array<const char*, 3> state_names_{};
  py::object steps_;
};

void sgd_step(const py::object& params, const py::object& grads, const py::object& momentum_buffers,
              const py::object& steps, double lr, double momentum, double dampening, double weight_decay,
              bool nesterov, bool maximize) {
  StepArrays a("SGD", params, grads, {{"momentum_buffers", momentum_buffers, momentum != 0}}, steps);
  const SgdOptions o{lr, momentum, dampening, weight_decay, nesterov, maximize};
  a.run([&](auto& t) { sgd_update(t, o); });
}

void adam_step(const py::object& params, const py::object& grads, const py::object& exp_avgs,
               const py::object& exp_avg_sqs, const py::object& max_exp_avg_sqs, const py::object& steps, double lr,
               double beta1, double beta2, double eps, double weight_decay, bool amsgrad, bool maximize,
               bool decoupled_weight_decay) {
  StepArrays a(decoupled_weight_decay ? "AdamW" : "Adam", params, grads,
               {{"exp_avgs", exp_avgs, true}, {"exp_avg_sqs", exp_avg_sqs, true},
                {"max_exp_avg_sqs", max_exp_avg_sqs, amsgrad}},
               steps);
  const AdamOptions o{lr, beta1, beta2, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay};
  a.run([&](auto& t) { adam_update(t, o); });
}

void rmsprop_step(const py::object& params, const py::object& grads, const py::object& square_avgs,
                  const py::object& momentum_buffers, const py::object& grad_avgs, const py::object& steps,
                  double lr, double alpha, double eps, double weight_decay, double momentum, bool centered,
                  bool maximize) {
  StepArrays a("RMSprop", params, grads,
               {{"square_avgs", square_avgs, true}, {"momentum_buffers", momentum_buffers, momentum > 0},
                {"grad_avgs", grad_avgs, centered}},
               steps);
  const RmspropOptions o{lr, alpha, eps, weight_decay, momentum, centered, maximize};
  a.run([&](auto& t) { rmsprop_update(t, o); });
}

void adagrad_step(const py::object& params, const py::object& grads, const py::object& sums,
                  const py::object& steps, double lr, double lr_decay, double weight_decay, double eps,
                  bool maximize) {
  StepArrays a("Adagrad", params, grads, {{"sums", sums, true}}, steps);
  const AdagradOptions o{lr, lr_decay, weight_decay, eps, maximize};
  a.run([&](auto& t) { adagrad_update(t, o); });
}

void rprop_step(const py::object& params, const py::object& grads, const py::object& prevs,
                const py::object& step_sizes, const py::object& steps, double eta_minus, double eta_plus,
                double step_size_min, double step_size_max, bool maximize) {
  StepArrays a("Rprop", params, grads, {{"prevs", prevs, true}, {"step_sizes", step_sizes, true}}, steps);
  const RpropOptions o{eta_minus, eta_plus, step_size_min, step_size_max, maximize};
  a.run([&](auto& t) { rprop_update(t, o); });
}

}  // namespace

void register_optimizers(py::module_& m) {
  // fastnn.optim passes the arguments positionally every step (keywords would cost more than the update of
  // a small model); the names are for help() and the docs. Lists may be lists or tuples; `steps` is an int64
  // array of per-tensor step counts, incremented in place. State lists the options do not use must be empty.
  m.def("sgd_step", &sgd_step,
        py::arg("params"), py::arg("grads"), py::arg("momentum_buffers"), py::arg("steps"), py::arg("lr"),
        py::arg("momentum"), py::arg("dampening"), py::arg("weight_decay"), py::arg("nesterov"), py::arg("maximize"),
        "torch.optim.SGD's update of every tensor in place, in one call.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "params : list of ndarray\n"
        "    Updated in place.\n"
        "grads : list of ndarray\n"
        "    Their gradients (same shapes).\n"
        "momentum_buffers : list of ndarray\n"
        "    One per parameter when momentum != 0, else empty; initialised where steps[k] == 0.\n"
        "steps : ndarray (len(params),), int64, writeable\n"
        "    Per-tensor step counts, incremented in place.\n"
        "lr, momentum, dampening, weight_decay : float\n"
        "nesterov, maximize : bool\n"
        "\n"
        "Returns\n"
        "-------\n"
        "None\n"
        "\n"
        "Raises\n"
        "------\n"
        "TypeError\n"
        "    For a list entry that is not a numpy array of the parameters' dtype (float32 or float64).\n"
        "ValueError\n"
        "    For lists of other lengths or shapes, or arrays not writeable or not C-contiguous.");
  m.def("adam_step", &adam_step,
        py::arg("params"), py::arg("grads"), py::arg("exp_avgs"), py::arg("exp_avg_sqs"), py::arg("max_exp_avg_sqs"),
        py::arg("steps"), py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"),
        py::arg("amsgrad"), py::arg("maximize"), py::arg("decoupled_weight_decay"),
        "torch.optim.Adam's update (AdamW's with decoupled_weight_decay) of every tensor in place.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "params : list of ndarray\n"
        "    Updated in place.\n"
        "grads : list of ndarray\n"
        "    Their gradients (same shapes).\n"
        "exp_avgs, exp_avg_sqs : list of ndarray\n"
        "    First and second moments, one per parameter.\n"
        "max_exp_avg_sqs : list of ndarray\n"
        "    One per parameter with amsgrad, else empty.\n"
        "steps : ndarray (len(params),), int64, writeable\n"
        "    Per-tensor step counts, incremented in place.\n"
        "lr, beta1, beta2, eps, weight_decay : float\n"
        "amsgrad, maximize, decoupled_weight_decay : bool\n"
        "\n"
        "Returns\n"
        "-------\n"
        "None\n"
        "\n"
        "Raises\n"
        "------\n"
        "TypeError\n"
        "    For a list entry that is not a numpy array of the parameters' dtype (float32 or float64).\n"
        "ValueError\n"
        "    For lists of other lengths or shapes, or arrays not writeable or not C-contiguous.");
  m.def("rmsprop_step", &rmsprop_step,
        py::arg("params"), py::arg("grads"), py::arg("square_avgs"), py::arg("momentum_buffers"),
        py::arg("grad_avgs"), py::arg("steps"), py::arg("lr"), py::arg("alpha"), py::arg("eps"),
        py::arg("weight_decay"), py::arg("momentum"), py::arg("centered"), py::arg("maximize"),
        "torch.optim.RMSprop's update of every tensor in place.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "params : list of ndarray\n"
        "    Updated in place.\n"
        "grads : list of ndarray\n"
        "    Their gradients (same shapes).\n"
        "square_avgs : list of ndarray\n"
        "    One per parameter.\n"
        "momentum_buffers : list of ndarray\n"
        "    One per parameter when momentum > 0, else empty.\n"
        "grad_avgs : list of ndarray\n"
        "    One per parameter when centered, else empty.\n"
        "steps : ndarray (len(params),), int64, writeable\n"
        "    Per-tensor step counts, incremented in place.\n"
        "lr, alpha, eps, weight_decay, momentum : float\n"
        "centered, maximize : bool\n"
        "\n"
        "Returns\n"
        "-------\n"
        "None\n"
        "\n"
        "Raises\n"
        "------\n"
        "TypeError\n"
        "    For a list entry that is not a numpy array of the parameters' dtype (float32 or float64).\n"
        "ValueError\n"
        "    For lists of other lengths or shapes, or arrays not writeable or not C-contiguous.");
  m.def("adagrad_step", &adagrad_step,
        py::arg("params"), py::arg("grads"), py::arg("sums"), py::arg("steps"), py::arg("lr"), py::arg("lr_decay"),
        py::arg("weight_decay"), py::arg("eps"), py::arg("maximize"),
        "torch.optim.Adagrad's update of every tensor in place.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "params : list of ndarray\n"
        "    Updated in place.\n"
        "grads : list of ndarray\n"
        "    Their gradients (same shapes).\n"
        "sums : list of ndarray\n"
        "    Sums of squared gradients, one per parameter.\n"
        "steps : ndarray (len(params),), int64, writeable\n"
        "    Per-tensor step counts, incremented in place.\n"
        "lr, lr_decay, weight_decay, eps : float\n"
        "maximize : bool\n"
        "\n"
        "Returns\n"
        "-------\n"
        "None\n"
        "\n"
        "Raises\n"
        "------\n"
        "TypeError\n"
        "    For a list entry that is not a numpy array of the parameters' dtype (float32 or float64).\n"
        "ValueError\n"
        "    For lists of other lengths or shapes, or arrays not writeable or not C-contiguous.");
  m.def("rprop_step", &rprop_step,
        py::arg("params"), py::arg("grads"), py::arg("prevs"), py::arg("step_sizes"), py::arg("steps"),
        py::arg("eta_minus"), py::arg("eta_plus"), py::arg("step_size_min"), py::arg("step_size_max"),
        py::arg("maximize"),
        "torch.optim.Rprop's update of every tensor in place.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "params : list of ndarray\n"
        "    Updated in place.\n"
        "grads : list of ndarray\n"
        "    Their gradients (same shapes).\n"
        "prevs, step_sizes : list of ndarray\n"
        "    Previous gradients and per-entry step sizes, one per parameter.\n"
        "steps : ndarray (len(params),), int64, writeable\n"
        "    Per-tensor step counts, incremented in place.\n"
        "eta_minus, eta_plus, step_size_min, step_size_max : float\n"
        "maximize : bool\n"
        "\n"
        "Returns\n"
        "-------\n"
        "None\n"
        "\n"
        "Raises\n"
        "------\n"
        "TypeError\n"
        "    For a list entry that is not a numpy array of the parameters' dtype (float32 or float64).\n"
        "ValueError\n"
        "    For lists of other lengths or shapes, or arrays not writeable or not C-contiguous.");
}

}  // namespace fastnn::bind
