// The private extension module fastnn._core: kernels only; the public API lives in python/fastnn.
#include "bindings/registry.hpp"

PYBIND11_MODULE(_core, m) {
  m.doc() = "fastnn C++ kernels (Eigen + OpenMP). Private: use fastnn.ops or fastnn.nn.";
  fastnn::bind::register_threads(m);
  fastnn::bind::register_activations(m);  // first: the Activation enum names the dense bindings' argument type
  fastnn::bind::register_dense(m);
  fastnn::bind::register_dense_stack(m);
  fastnn::bind::register_losses(m);
  fastnn::bind::register_optimizers(m);
  fastnn::bind::register_conv(m);
  fastnn::bind::register_conv_block(m);
  fastnn::bind::register_embedding(m);
  fastnn::bind::register_pooling(m);
  fastnn::bind::register_normalization(m);
  fastnn::bind::register_recurrent(m);
  fastnn::bind::register_functional(m);
  fastnn::bind::register_attention_sdpa(m);
  fastnn::bind::register_train_step(m);
  fastnn::bind::register_dropout(m);
  fastnn::bind::register_bf16_gemm(m);
  fastnn::bind::register_buffer_pool(m);
}
