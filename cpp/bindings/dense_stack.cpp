// DenseStackPlan: validated once when Sequential builds it, then forward(x) is a single cheap call.
#include <pybind11/stl.h>

#include <algorithm>

#include "bindings/array_args.hpp"
#include "bindings/registry.hpp"
#include "kernels/checks.hpp"
#include "kernels/dense_stack.hpp"

namespace fastnn::bind {

namespace {

class DenseStackPlan {
 public:
  // weights[i] [out_i, in_i]; biases[i] [out_i] or None; activations[i]: (kind, a, b) applied after layer i.
  DenseStackPlan(std::vector<py::array> weights, std::vector<py::object> biases,
                 std::vector<std::vector<std::tuple<Activation, double, double>>> activations)
      : weights_(std::move(weights)), biases_(std::move(biases)) {
    require(!weights_.empty() && biases_.size() == weights_.size() && activations.size() == weights_.size(),
            "DenseStackPlan: one bias and one activation list per weight");
    dtype_ = float_dtype(weights_[0], "DenseStackPlan weight");
    dispatch(dtype_, [&](auto tag) {
      using T = decltype(tag);
      auto& layers = layers_of<T>();
      for (size_t i = 0; i < weights_.size(); ++i) {
        const py::array& w = weights_[i];
        require(w.ndim() == 2, "DenseStackPlan: weight " + std::to_string(i) + " must be 2-D");
        DenseStackLayer<T> layer{in_ptr<T>(w, "DenseStackPlan weight"), nullptr, w.shape(1), w.shape(0), {}};
        require(i == 0 || layer.in_features == layers.back().out_features,
                "DenseStackPlan: weight " + std::to_string(i) + " " + shape_str(w) + " does not follow the previous layer");
        if (!biases_[i].is_none()) {
          auto b = biases_[i].cast<py::array>();
          require_shape(b, {layer.out_features}, "DenseStackPlan bias");
          layer.bias = in_ptr<T>(b, "DenseStackPlan bias");
        }
        for (auto& [kind, a, b] : activations[i]) layer.activations.push_back({kind, a, b});
        if (i + 1 < weights_.size()) widest_ = std::max(widest_, layer.out_features);
        layers.push_back(std::move(layer));
      }
    });
  }

  // x [N, in] -> [N, out]; ValueError when x contains NaN or infinity.
  py::array forward(const py::array& x) {
    return dispatch(dtype_, [&](auto tag) -> py::array {
      using T = decltype(tag);
      const auto& layers = layers_of<T>();
      require(x.ndim() == 2 && x.shape(1) == layers.front().in_features,
              "DenseStackPlan: input " + shape_str(x) + " does not match the first layer");
      const T* px = in_ptr<T>(x, "DenseStackPlan input");
      const index_t batch = x.shape(0);
      auto out = empty_array<T>({batch, layers.back().out_features});
      T* pout = out.mutable_data();
      bool finite = true;
      {
        py::gil_scoped_release release;
        finite = all_finite(px, batch * layers.front().in_features);
        if (finite) {
          // Per call, not per plan: two Python threads may run one model at once (the GIL is released).
          std::vector<T> scratch(static_cast<size_t>(2 * batch * widest_));
          dense_stack_forward(px, batch, layers, scratch.data(), scratch.data() + batch * widest_, pout);
        }
      }
      require(finite, "input contains NaN or infinity");
      return out;
    });
  }

 private:
  template <typename T>
  std::vector<DenseStackLayer<T>>& layers_of() {
    if constexpr (std::is_same_v<T, float>) return layers_f32_; else return layers_f64_;
  }

  std::vector<py::array> weights_;  // keep the arrays the raw pointers point into alive
  std::vector<py::object> biases_;
  DType dtype_;
  index_t widest_ = 0;
  std::vector<DenseStackLayer<float>> layers_f32_;
  std::vector<DenseStackLayer<double>> layers_f64_;
};

}  // namespace

void register_dense_stack(py::module_& m) {
  py::class_<DenseStackPlan>(m, "DenseStackPlan",
                             "Inference through Linear layers and element-wise activations in one C++ call.\n"
                             "\n"
                             "Validated once (Sequential builds it in eval mode); keeps references to the arrays.\n"
                             "plan.forward(x) runs it: x (N, in_0) -> (N, out_last), NaN or infinity in x raising\n"
                             "ValueError.\n"
                             "\n"
                             "Parameters\n"
                             "----------\n"
                             "weights : list of ndarray (out_i, in_i), one dtype (float32 or float64)\n"
                             "    Each layer's in_i is the previous layer's out_i.\n"
                             "biases : list of ndarray (out_i,) or None\n"
                             "    One per weight.\n"
                             "activations : list of list of (Activation, a, b)\n"
                             "    Applied in order after each layer.\n"
                             "\n"
                             "Raises\n"
                             "------\n"
                             "ValueError\n"
                             "    For lists of different lengths or shapes that do not chain.")
      .def(py::init<std::vector<py::array>, std::vector<py::object>,
                    std::vector<std::vector<std::tuple<Activation, double, double>>>>(),
           py::arg("weights"), py::arg("biases"), py::arg("activations"))
      .def("forward", &DenseStackPlan::forward, py::arg("x"),
           "Run the stack: x (N, in_0) -> (N, out_last) in the plan's dtype.\n"
           "\n"
           "Parameters\n"
           "----------\n"
           "x : ndarray (N, in_0), C-contiguous\n"
           "\n"
           "Returns\n"
           "-------\n"
           "ndarray (N, out_last)\n"
           "\n"
           "Raises\n"
           "------\n"
           "ValueError\n"
           "    For another shape, or x holding NaN or infinity. TypeError for another dtype.");
}

}  // namespace fastnn::bind
