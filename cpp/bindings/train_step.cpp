// DenseTrainStep: a Sequential of Linear layers and element-wise activations, its loss and its optimizer as one
// C++ call per training step (kernels/train_step.hpp). Built once per model structure; the optimizer's arrays
// are bound once per optimizer plan; buffers are allocated once per batch size. Every array is checked when
// it is bound (the Python side rebinds whenever one of them is replaced), so a step checks only its inputs.
#include <pybind11/stl.h>

#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "bindings/array_args.hpp"
#include "bindings/registry.hpp"
#include "kernels/train_step.hpp"

namespace fastnn::bind {

namespace {

using Activations = std::vector<std::vector<std::tuple<Activation, double, double>>>;

template <typename T>
struct Model {
  std::vector<TrainLayer<T>> layers;
  std::vector<std::unique_ptr<OptimizerTensors<T>>> tensors;
  std::vector<TrainUpdate<T>> updates;
  std::map<index_t, std::shared_ptr<TrainBuffers<T>>> buffers;  // by batch size
};

template <typename T>
T* writeable_ptr(const py::object& obj, const std::string& what) {
  auto a = obj.cast<py::array>();
  require(a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_, what + " must be aligned");
  return out_ptr<T>(a, what.c_str());
}

class DenseTrainStep {
 public:
  // weights[i] [out_i, in_i] with grad_weights[i] alike; biases[i] [out_i] or None, grad_biases[i] alike;
  // activations[i]: (kind, a, b) applied after layer i.
  DenseTrainStep(std::vector<py::array> weights, std::vector<py::object> biases, std::vector<py::array> grad_weights,
                 std::vector<py::object> grad_biases, const Activations& activations)
      : arrays_(py::list()) {
    const std::size_t L = weights.size();
    require(L > 0 && biases.size() == L && grad_weights.size() == L && grad_biases.size() == L &&
                activations.size() == L,
            "DenseTrainStep: one bias, gradient and activation list per weight");
    dtype_ = float_dtype(weights[0], "DenseTrainStep weight");
    dispatch(dtype_, [&](auto tag) {
      using T = decltype(tag);
      auto& layers = model<T>().layers;
      for (std::size_t i = 0; i < L; ++i) {
        const std::string at = " " + std::to_string(i);
        const py::array& w = weights[i];
        require(w.ndim() == 2, "DenseTrainStep: weight" + at + " must be 2-D, got " + shape_str(w));
        TrainLayer<T> layer{in_ptr<T>(w, "DenseTrainStep weight"), nullptr, nullptr, nullptr, w.shape(1), w.shape(0),
                            {}};
        require(i == 0 || layer.in_features == layers.back().out_features,
                "DenseTrainStep: weight" + at + " " + shape_str(w) + " does not follow the previous layer");
        require_shape(grad_weights[i], {layer.out_features, layer.in_features}, "DenseTrainStep grad_weight");
        layer.grad_weight = writeable_ptr<T>(grad_weights[i], "DenseTrainStep grad_weight" + at);
        require(biases[i].is_none() == grad_biases[i].is_none(),
                "DenseTrainStep: layer" + at + " needs both a bias and its gradient, or neither");
        if (!biases[i].is_none()) {
          layer.bias = optional_in<T>(biases[i], {layer.out_features}, "DenseTrainStep bias");
          require_shape(grad_biases[i].cast<py::array>(), {layer.out_features}, "DenseTrainStep grad_bias");
          layer.grad_bias = writeable_ptr<T>(grad_biases[i], "DenseTrainStep grad_bias" + at);
        }
        for (const auto& [kind, a, b] : activations[i]) layer.activations.push_back({kind, a, b});
        layers.push_back(std::move(layer));
      }
    });
    for (auto& a : weights) arrays_.append(a);
    for (auto& a : grad_weights) arrays_.append(a);
    for (auto& a : biases) arrays_.append(a);
    for (auto& a : grad_biases) arrays_.append(a);
  }

  // groups: one (kind, params, grads, state0, state1, state2, steps) per optimizer kernel call, kind "sgd" or
  // "adam", the lists as Optimizer.step passes them (state lists empty when unused). Replaces earlier ones.
  void bind_optimizer(const py::list& groups) {
    dispatch(dtype_, [&](auto tag) {
      using T = decltype(tag);
      auto& m = model<T>();
      m.tensors.clear();
      m.updates.clear();
      for (const py::handle item : groups) {
        const auto g = item.cast<py::tuple>();
        require(g.size() == 7, "DenseTrainStep.bind_optimizer: a group is (kind, params, grads, s0, s1, s2, steps)");
        const std::string kind = g[0].cast<std::string>();
        require(kind == "sgd" || kind == "adam", "DenseTrainStep.bind_optimizer: unknown optimizer '" + kind + "'");
        auto t = std::make_unique<OptimizerTensors<T>>();
        const auto params = g[1].cast<py::list>(), grads = g[2].cast<py::list>();
        require(grads.size() == params.size(), "DenseTrainStep.bind_optimizer: one gradient per parameter");
        for (std::size_t k = 0; k < params.size(); ++k) {
          auto p = params[k].cast<py::array>();
          t->param.push_back(writeable_ptr<T>(p, "optimizer parameter"));
          auto gr = grads[k].cast<py::array>();
          require(gr.size() == p.size(), "DenseTrainStep.bind_optimizer: gradient size does not match parameter");
          t->grad.push_back(in_ptr<T>(gr, "optimizer gradient"));
          t->size.push_back(static_cast<index_t>(p.size()));
        }
        for (int j = 0; j < 3; ++j) {
          const auto states = g[3 + j].cast<py::list>();
          require(states.empty() || states.size() == params.size(),
                  "DenseTrainStep.bind_optimizer: one state buffer per parameter, or none");
          for (std::size_t k = 0; k < states.size(); ++k) {
            require(states[k].cast<py::array>().size() == params[k].cast<py::array>().size(),
                    "DenseTrainStep.bind_optimizer: state buffer size does not match parameter");
            t->state[j].push_back(writeable_ptr<T>(states[k], "optimizer state"));
          }
        }
        auto steps = g[6].cast<py::array>();
        require(has_dtype<std::int64_t>(steps) && steps.ndim() == 1 &&
                    steps.shape(0) == static_cast<py::ssize_t>(params.size()) && steps.writeable() &&
                    (steps.flags() & py::array::c_style),
                "DenseTrainStep.bind_optimizer: steps must be a writeable 1-D int64 array, one per parameter");
        t->step = static_cast<std::int64_t*>(steps.mutable_data());
        TrainUpdate<T> u{kind == "sgd" ? TrainOptimizerKind::sgd : TrainOptimizerKind::adam, t.get(), {}, {}};
        m.updates.push_back(u);
        m.tensors.push_back(std::move(t));
      }
    });
    optimizer_arrays_ = groups;  // keeps every bound array alive
  }

  // One step. target: int64 labels [N] (cross_entropy) or a [N, out] array of the model's dtype (mse).
  // options: per bound group, sgd (lr, momentum, dampening, weight_decay, nesterov, maximize) or adam (lr,
  // beta1, beta2, eps, weight_decay, amsgrad, maximize, decoupled). Returns (status, loss, index, output):
  // output [N, out] is this batch size's buffer (overwritten by the next step of that size). bf16: the GEMMs
  // as under fnn.autocast (float32 models only), use_dot as amp passes it.
  py::tuple step(const py::array& x, const py::array& target, const std::string& loss_kind,
                 const std::string& reduction, const py::object& class_weight, std::int64_t ignore_index,
                 double smoothing, const std::vector<std::vector<double>>& options, bool bf16, bool use_dot) {
    return dispatch(dtype_, [&](auto tag) -> py::tuple {
      using T = decltype(tag);
      auto& m = model<T>();
      const auto& layers = m.layers;
      require(x.ndim() == 2 && x.shape(1) == layers.front().in_features,
              "DenseTrainStep: input " + shape_str(x) + " does not match the first layer");
      const index_t batch = x.shape(0);
      require(batch > 0, "DenseTrainStep: empty batch");
      const index_t out = layers.back().out_features;
      TrainLoss<T> loss{};
      loss.reduction = reduction == "mean" ? TrainReduction::mean
                       : reduction == "sum" ? TrainReduction::sum
                                            : TrainReduction::half_sum;
      require(reduction == "mean" || reduction == "sum" || (reduction == "half_sum" && loss_kind == "mse"),
              "DenseTrainStep: unsupported reduction '" + reduction + "'");
      if (loss_kind == "cross_entropy") {
        loss.kind = TrainLossKind::cross_entropy;
        require(has_dtype<std::int64_t>(target) && target.ndim() == 1 && target.shape(0) == batch &&
                    (target.flags() & py::array::c_style),
                "DenseTrainStep: cross-entropy target must be C-contiguous int64 labels of shape (" +
                    std::to_string(batch) + ",), got " + shape_str(target));
        loss.labels = static_cast<const std::int64_t*>(target.data());
        loss.class_weight = optional_in<T>(class_weight, {out}, "DenseTrainStep class weight");
        loss.ignore_index = ignore_index;
        loss.smoothing = T(smoothing);
      } else {
        require(loss_kind == "mse", "DenseTrainStep: unknown loss '" + loss_kind + "'");
        loss.kind = TrainLossKind::mse;
        require_shape(target, {batch, out}, "DenseTrainStep target");
        loss.target = in_ptr<T>(target, "DenseTrainStep target");
      }
      require(options.size() == m.updates.size(), "DenseTrainStep: one option list per optimizer group");
      for (std::size_t k = 0; k < options.size(); ++k) {
        const auto& o = options[k];
        TrainUpdate<T>& u = m.updates[k];
        if (u.kind == TrainOptimizerKind::sgd) {
          require(o.size() == 6, "DenseTrainStep: SGD takes 6 options");
          u.sgd = SgdOptions{o[0], o[1], o[2], o[3], o[4] != 0, o[5] != 0};
        } else {
          require(o.size() == 8, "DenseTrainStep: Adam takes 8 options");
          u.adam = AdamOptions{o[0], o[1], o[2], o[3], o[4], o[5] != 0, o[6] != 0, o[7] != 0};
        }
      }
      require(!bf16 || std::is_same_v<T, float>, "DenseTrainStep: bf16 GEMMs are for float32 models");
      const T* px = in_ptr<T>(x, "DenseTrainStep input");
      std::shared_ptr<TrainBuffers<T>>& slot = m.buffers[batch];
      if (!slot) {
        if (m.buffers.size() > 8) {  // many batch sizes: start afresh (outputs handed out keep theirs alive)
          m.buffers.clear();
          return step(x, target, loss_kind, reduction, class_weight, ignore_index, smoothing, options, bf16, use_dot);
        }
        slot = std::make_shared<TrainBuffers<T>>();
        slot->resize(batch, layers);
      }
      std::shared_ptr<TrainBuffers<T>> buf = slot;
      TrainResult r;
      {
        py::gil_scoped_release release;
        r = dense_train_step(px, batch, layers, loss, *buf, m.updates, bf16, use_dot);
      }
      py::object output = py::none();
      if (r.status == 0) {
        auto* keep = new std::shared_ptr<TrainBuffers<T>>(buf);
        py::capsule owner(keep, [](void* p) { delete static_cast<std::shared_ptr<TrainBuffers<T>>*>(p); });
        output = py::array_t<T>({batch, out}, buf->output(layers.size() - 1, layers.back()), owner);
      }
      return py::make_tuple(r.status, r.loss, r.index, output);
    });
  }

 private:
  template <typename T>
  Model<T>& model() {
    if constexpr (std::is_same_v<T, float>) return f32_; else return f64_;
  }

  py::list arrays_;  // keep the model's arrays alive
  py::object optimizer_arrays_ = py::none();
  DType dtype_;
  Model<float> f32_;
  Model<double> f64_;
};

}  // namespace

void register_train_step(py::module_& m) {
  py::class_<DenseTrainStep>(m, "DenseTrainStep",
                             "A training step of Linear layers and element-wise activations (forward, loss, "
                             "backward, optimizer update) in one C++ call.")
      .def(py::init<std::vector<py::array>, std::vector<py::object>, std::vector<py::array>, std::vector<py::object>,
                    const Activations&>(),
           py::arg("weights"), py::arg("biases"), py::arg("grad_weights"), py::arg("grad_biases"),
           py::arg("activations"))
      .def("bind_optimizer", &DenseTrainStep::bind_optimizer, py::arg("groups"))
      .def("step", &DenseTrainStep::step, py::arg("x"), py::arg("target"), py::arg("loss"), py::arg("reduction"),
           py::arg("class_weight"), py::arg("ignore_index"), py::arg("label_smoothing"), py::arg("options"),
           py::arg("bf16") = false, py::arg("use_dot") = true);
}

}  // namespace fastnn::bind
