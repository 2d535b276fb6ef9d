// A whole training step of a dense stack (Linear layers, each followed by element-wise activations) in one
// call: forward, loss, backward and the optimizer update, with nothing handed back to Python in between.
//
// It runs the kernels the layer-by-layer path runs (Linear, the activation modules, CrossEntropyLoss /
// MSELoss, Optimizer.step), on the same values, in the same order, so its results are the same bit for bit:
//   forward   per layer: dense_forward, then each activation_forward into a buffer of its own;
//   loss      softmax_cross_entropy_labels or squared_error, scaled as the loss bindings scale them;
//   backward  per layer, last first: activation_backward of each activation (last first), then
//             dense_backward_weight, dense_backward_bias (overwriting the gradients: a fresh zero_grad) and,
//             except for the first layer, dense_backward_input;
//   update    sgd_update / adam_update over each parameter group.
// Under fnn.autocast("bfloat16") (bf16 = true) the three GEMMs of each layer are the ones amp.linear_forward /
// amp.linear_backward run: bf16_gemm with the same operands, bias and use_dot; the rest stays float32.
// Nothing is written to a parameter or gradient before the loss has been computed: a non-finite layer input,
// a bad label or non-finite logits return a status instead, and the caller reruns the step layer by layer,
// whose error names the layer.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/activations.hpp"
#include "kernels/bf16_gemm.hpp"
#include "kernels/checks.hpp"
#include "kernels/dense.hpp"
#include "kernels/entry.hpp"
#include "kernels/losses.hpp"
#include "kernels/optimizers.hpp"

namespace fastnn {

template <typename T>
struct TrainLayer {
  const T* weight;  // [out_features, in_features]
  const T* bias;    // [out_features] or nullptr
  T* grad_weight;
  T* grad_bias;     // nullptr when there is no bias
  index_t in_features, out_features;
  std::vector<ActivationStep> activations;  // applied in order to the layer's output
};

enum class TrainLossKind : int { cross_entropy, mse };
enum class TrainReduction : int { mean, sum, half_sum };

template <typename T>
struct TrainLoss {
  TrainLossKind kind;
  TrainReduction reduction;
  const std::int64_t* labels;  // cross-entropy: [batch]
  const T* target;             // mse: [batch, out_features of the last layer]
  const T* class_weight;       // cross-entropy: [classes] or nullptr
  std::int64_t ignore_index;
  T smoothing;
};

// The buffers of one batch size, allocated once and reused: values[l] holds layer l's linear output followed by
// each activation's output (batch × out_features each); grad_out the loss gradient; grad_a/grad_b the
// gradients on the way back (batch × the widest layer each).
template <typename T>
struct TrainBuffers {
  index_t batch = 0;
  std::vector<std::vector<T>> values;
  std::vector<T> grad_out, grad_a, grad_b;

  void resize(index_t n, const std::vector<TrainLayer<T>>& layers) {
    batch = n;
    values.resize(layers.size());
    index_t widest = 0;
    for (std::size_t l = 0; l < layers.size(); ++l) {
      const TrainLayer<T>& layer = layers[l];
      values[l].resize(static_cast<std::size_t>((1 + layer.activations.size()) * n * layer.out_features));
      widest = std::max({widest, layer.out_features, layer.in_features});
    }
    grad_out.resize(static_cast<std::size_t>(n * layers.back().out_features));
    grad_a.resize(static_cast<std::size_t>(n * widest));
    grad_b.resize(static_cast<std::size_t>(n * widest));
  }
  T* value(std::size_t layer, std::size_t k, index_t out_features) {
    return values[layer].data() + k * batch * out_features;
  }
  const T* output(std::size_t layer, const TrainLayer<T>& l) {
    return value(layer, l.activations.size(), l.out_features);
  }
};

enum class TrainOptimizerKind : int { sgd, adam };

template <typename T>
struct TrainUpdate {
  TrainOptimizerKind kind;
  OptimizerTensors<T>* tensors;
  SgdOptions sgd;
  AdamOptions adam;
};

// status: 0 done; 1 the input of layer `index` is not finite; 2 label at `index` is out of range; 3 the loss
// found a non-finite value. Only status 0 has changed any parameter, gradient or optimizer state.
struct TrainResult {
  int status;
  double loss;
  index_t index;
};

template <typename T>
TrainResult dense_train_step(const T* x, index_t batch, const std::vector<TrainLayer<T>>& layers,
                             const TrainLoss<T>& loss, TrainBuffers<T>& buf, std::vector<TrainUpdate<T>>& updates,
                             bool bf16, bool use_dot) {
  const std::size_t L = layers.size();
  // forward
  const T* input = x;
  for (std::size_t l = 0; l < L; ++l) {
    const TrainLayer<T>& layer = layers[l];
    if (!all_finite(input, batch * layer.in_features)) return {1, 0.0, static_cast<index_t>(l)};
    T* out = buf.value(l, 0, layer.out_features);
    if (bf16)
      bf16_gemm(input, layer.weight, out, batch, layer.in_features, layer.out_features, false, true, false, layer.bias,
                false, use_dot);
    else
      dense_forward(input, layer.weight, layer.bias, out, batch, layer.in_features, layer.out_features);
    for (std::size_t k = 0; k < layer.activations.size(); ++k) {
      const ActivationStep& act = layer.activations[k];
      T* next = buf.value(l, k + 1, layer.out_features);
      activation_forward<T>(act.kind, out, next, batch * layer.out_features, T(act.a), T(act.b));
      out = next;
    }
    input = out;
  }
  // loss
  const index_t classes = layers.back().out_features, n = batch * classes;
  T* grad = buf.grad_out.data();
  bool ok = true;
  double value = 0;
  if (loss.kind == TrainLossKind::cross_entropy) {
    double denominator = double(batch);
    const index_t bad = check_labels(loss.labels, batch, classes, loss.ignore_index, loss.class_weight, &denominator);
    if (bad >= 0) return {2, 0.0, bad};
    const T scale = loss.reduction == TrainReduction::mean ? T(1) / T(denominator) : T(1);
    const double sum = softmax_cross_entropy_labels(input, loss.labels, loss.class_weight, batch, classes,
                                                    loss.ignore_index, loss.smoothing, scale, grad,
                                                    static_cast<T*>(nullptr), ok);
    value = loss.reduction == TrainReduction::mean ? sum / denominator : sum;
  } else {
    const T scale = loss.reduction == TrainReduction::mean       ? T(1) / T(n)
                    : loss.reduction == TrainReduction::half_sum ? T(0.5)
                                                                 : T(1);
    const double sum = squared_error(input, loss.target, n, scale, grad, static_cast<T*>(nullptr), ok);
    value = loss.reduction == TrainReduction::mean       ? sum / double(n)
            : loss.reduction == TrainReduction::half_sum ? 0.5 * sum
                                                         : sum;
  }
  if (!ok) return {3, 0.0, -1};
  // backward: never in place (each gradient goes to the buffer the previous one did not use)
  const T* g = grad;
  T* spare[2] = {buf.grad_a.data(), buf.grad_b.data()};
  int next = 0;
  for (std::size_t l = L; l-- > 0;) {
    const TrainLayer<T>& layer = layers[l];
    const index_t m = batch * layer.out_features;
    for (std::size_t k = layer.activations.size(); k-- > 0;) {
      const ActivationStep& act = layer.activations[k];
      const T* saved = buf.value(l, activation_backward_uses_output(act.kind) ? k + 1 : k, layer.out_features);
      T* dx = spare[next];
      next ^= 1;
      activation_backward<T>(act.kind, saved, g, dx, m, T(act.a), T(act.b));
      g = dx;
    }
    const T* in = l == 0 ? x : buf.output(l - 1, layers[l - 1]);
    if (bf16)
      bf16_gemm(g, in, layer.grad_weight, layer.out_features, batch, layer.in_features, true, false, false,
                static_cast<const T*>(nullptr), false, use_dot);
    else
      dense_backward_weight(g, in, layer.grad_weight, batch, layer.in_features, layer.out_features, false);
    if (layer.grad_bias) dense_backward_bias(g, layer.grad_bias, batch, layer.out_features, false);
    if (l > 0) {
      T* dx = spare[next];
      next ^= 1;
      if (bf16)
        bf16_gemm(g, layer.weight, dx, batch, layer.out_features, layer.in_features, false, false, false,
                  static_cast<const T*>(nullptr), false, use_dot);
      else
        dense_backward_input(g, layer.weight, dx, batch, layer.in_features, layer.out_features);
      g = dx;
    }
  }
  // update
  for (TrainUpdate<T>& u : updates) {
    if (u.kind == TrainOptimizerKind::sgd)
      sgd_update(*u.tensors, u.sgd);
    else
      adam_update(*u.tensors, u.adam);
  }
  return {0, value, -1};
}

// Entry points, compiled once per CPU level (kernels/entry.hpp).
#define FASTNN_TRAIN_STEP_ENTRIES(X) X(dense_train_step)
FASTNN_DECLARE_ENTRIES(FASTNN_TRAIN_STEP_ENTRIES)

}  // namespace fastnn
