// Inference through a stack of dense layers, each followed by zero or more element-wise activations, in
// one call: the eval-mode fast path of Sequential. At small batches a layer costs a few microseconds, as
// much as the Python and binding overhead of calling it, so the whole stack runs without leaving C++.
#pragma once
#include <vector>

#include "kernels/entry.hpp"
#include "kernels/activations.hpp"
#include "kernels/dense.hpp"

namespace fastnn {

template <typename T>
struct DenseStackLayer {
  const T* weight;  // [out_features, in_features]
  const T* bias;    // [out_features] or nullptr
  index_t in_features, out_features;
  std::vector<ActivationStep> activations;  // applied in order to the layer's output
};

// x [batch, layers[0].in_features] -> out [batch, layers.back().out_features]. Intermediate outputs go to
// two scratch buffers of at least batch × (widest hidden layer) elements each.
template <typename T>
void dense_stack_forward(const T* x, index_t batch, const std::vector<DenseStackLayer<T>>& layers, T* scratch_a,
                         T* scratch_b, T* out) {
  const T* input = x;
  for (size_t l = 0; l < layers.size(); ++l) {
    const DenseStackLayer<T>& layer = layers[l];
    T* output = l + 1 == layers.size() ? out : (l % 2 == 0 ? scratch_a : scratch_b);
    dense_forward(input, layer.weight, layer.bias, output, batch, layer.in_features, layer.out_features);
    for (const ActivationStep& act : layer.activations)  // element-wise, so in place is safe
      activation_forward<T>(act.kind, output, output, batch * layer.out_features, T(act.a), T(act.b));
    input = output;
  }
}

// Entry points, compiled once per CPU level (kernels/entry.hpp).
#define FASTNN_DENSE_STACK_ENTRIES(X) X(dense_stack_forward)
FASTNN_DECLARE_ENTRIES(FASTNN_DENSE_STACK_ENTRIES)

}  // namespace fastnn
