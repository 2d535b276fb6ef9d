"""Every C++ kernel, numpy in and numpy out, float32 or float64. This is the one module that imports the
extension `fastnn._core` (signatures in `_core.pyi`); layers, optimizers and plans call kernels through it.
_loader opens the kernel library for this CPU first: _core's kernel entry points bind to it."""
from ._loader import cpu_level, cpu_level_chosen_by, cpu_features, supported_levels, build  # noqa: F401
from . import _core
from ._core import linear_forward, linear_backward, all_finite  # noqa: F401
from ._core import linear_activation_forward, linear_activation_backward  # noqa: F401
from ._core import (cross_entropy, nll_loss, mse_loss, binary_cross_entropy,  # noqa: F401  (losses: (loss, grad))
                    binary_cross_entropy_with_logits)
from ._core import sgd_step, adam_step, rmsprop_step, adagrad_step, rprop_step  # noqa: F401  (optimizers)
from ._core import (Activation, activation_forward, activation_backward,  # noqa: F401  (activations)
                    activation_backward_uses_output, softmax_forward, softmax_backward, log_softmax_forward,
                    log_softmax_backward, prelu_forward, prelu_backward, maxout_forward, maxout_backward)
from ._core import (batch_norm_forward, batch_norm_backward, layer_norm_forward,  # noqa: F401  (normalisation)
                    layer_norm_backward, group_norm_forward, group_norm_backward, local_response_norm_forward,
                    local_response_norm_backward)
from ._core import rnn_forward, rnn_backward  # noqa: F401  (recurrent: one direction of one layer per call)
from ._core import scatter_add_rows  # noqa: F401  (embedding gradients)
from ._core import (conv2d_forward, conv2d_backward, im2col, col2im,  # noqa: F401  (convolution, NCHW)
                    conv_block_forward)
from ._core import (max_pool2d_forward, max_pool2d_backward, avg_pool2d_forward,  # noqa: F401  (pooling)
                    avg_pool2d_backward, adaptive_avg_pool2d_forward, adaptive_avg_pool2d_backward)
from ._core import DenseStackPlan  # noqa: F401  (eval-mode Linear/activation stacks in one call)
from ._core import DenseTrainStep  # noqa: F401  (a Linear/activation training step in one call)
from ._core import set_num_threads, get_num_threads, runtime_info  # noqa: F401  (threads, build)
from ._core import _simulate_unreleasable_team  # noqa: F401  (tests: the fork fallback)
from ._core import _simulate_contention  # noqa: F401  (tests: backing off to one thread)
from ._core import batched_matmul, broadcast_binary, reduce_broadcast, concat  # noqa: F401  (functional ops)
from ._core import sdpa_forward, sdpa_backward  # noqa: F401  (fused scaled dot-product attention)
from ._core import dropout_apply  # noqa: F401  (hashed dropout masks: y = add + dropout(x))
from ._core import bf16_matmul, bf16_dot_supported  # noqa: F401  (bf16 GEMM for autocast)
from ._core import empty, buffer_pool_info, release_buffers  # noqa: F401  (recycled buffers for large arrays)
