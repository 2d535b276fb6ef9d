// One register_* function per binding file; module.cpp calls them all. Adding a binding file (and the entry
// list its kernels need): see the recipe at the top of CMakeLists.txt.
#pragma once
#include <pybind11/pybind11.h>

namespace fastnn::bind {
void register_threads(pybind11::module_& m);
void register_dense(pybind11::module_& m);
void register_dense_stack(pybind11::module_& m);
void register_activations(pybind11::module_& m);
void register_losses(pybind11::module_& m);
void register_optimizers(pybind11::module_& m);
void register_conv(pybind11::module_& m);
void register_conv_block(pybind11::module_& m);
void register_embedding(pybind11::module_& m);
void register_pooling(pybind11::module_& m);
void register_normalization(pybind11::module_& m);
void register_recurrent(pybind11::module_& m);
void register_functional(pybind11::module_& m);
void register_attention_sdpa(pybind11::module_& m);
void register_train_step(pybind11::module_& m);
void register_dropout(pybind11::module_& m);
void register_bf16_gemm(pybind11::module_& m);
void register_buffer_pool(pybind11::module_& m);
}  // namespace fastnn::bind
