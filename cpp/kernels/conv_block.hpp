// Eval-mode convolution block (inference): Conv → element-wise activations → optional max/average pooling,
// one image at a time. Run layer by layer, a CNN writes each conv output to memory, reads it back for the
// activation, writes it again and reads it once more for the pooling: at batch 256 of bench_cnn that is
// megabytes of fresh pages per layer, which cost more than the arithmetic. Here a few images' conv output
// stays in a per-thread buffer (L2-sized) between the three steps; only the block's final output goes to
// memory. Images are independent, so groups of them are spread over threads, and each step is the kernel the
// layer-by-layer path runs. The commonest block, a float32 3×3 direct-kernel Conv → ReLU → 2×2/2 max pool, goes
// further: the pooling happens in registers and the conv output is never stored (kernels/conv_infer.hpp).
#pragma once
#include <type_traits>
#include <vector>

#include "kernels/entry.hpp"
#include "kernels/activations.hpp"
#include "kernels/conv.hpp"
#include "kernels/conv_infer.hpp"
#include "kernels/pooling.hpp"

namespace fastnn {

enum class PoolKind { none, max, average };

// x [N, C, H, W] -> y [N, O, Ho', Wo'] where Ho', Wo' are the pooled sizes (the conv's when pool is none).
// `pool` is the pooling geometry over one conv output image (channels O, height/width the conv's output).
// Images go through in the groups conv2d_forward's im2col path uses (kernels/conv.hpp), so the convolution
// is the very same computation as a plain conv2d_forward call, bit for bit, at any batch size.
template <typename T>
void conv_block_forward(const T* x, const T* weight, const T* bias, T* y, const ConvGeometry& conv,
                        index_t out_channels, index_t groups, const std::vector<ActivationStep>& activations,
                        PoolKind pool_kind, const ConvGeometry& pool) {
  const index_t in_size = conv.channels * conv.height * conv.width, conv_size = out_channels * conv.plane();
  const index_t out_size = pool_kind == PoolKind::none ? conv_size : out_channels * pool.plane();
  const index_t macs = conv.batch * conv_size * (conv.channels / groups) * conv.kernel_h * conv.kernel_w;
  if constexpr (detail::kDirectKernels<T>) {
    if (pool_kind == PoolKind::max && detail::pooled_conv_applies<T>(conv, groups, activations, pool)) {
      // Pooling in registers (kernels/conv_infer.hpp). Work items are images or, with fewer images than twice
      // the threads, (image, share of the output channel blocks) pairs; the bits are the same either way.
      const index_t threads = runtime::max_threads(), blocks = out_channels / detail::kPooledBlockO;
      const index_t shares = conv.batch >= 2 * threads ? 1 : std::max<index_t>(1, std::min(threads, blocks));
      const index_t per_share = (blocks + shares - 1) / shares * detail::kPooledBlockO;
      parallel_for(conv.batch * shares, macs >= kParallelMinMacs, [&](index_t item) {
        const index_t n = item / shares, s = item % shares;
        const index_t o_begin = std::min(out_channels, s * per_share);
        const index_t o_end = s + 1 == shares ? out_channels : std::min(out_channels, o_begin + per_share);
        if (o_begin < o_end)
          detail::conv_relu_maxpool_image(x + n * in_size, weight, bias, y + n * out_size, conv, pool, o_begin,
                                          o_end, activations);
      });
      return;
    }
  }
  const index_t per_group = detail::images_per_block(conv.rows(), conv.plane(), sizeof(T));
  const index_t group_count = (conv.batch + per_group - 1) / per_group;
  parallel_for(group_count, macs >= kParallelMinMacs, [&](index_t grp) {
    const index_t first = grp * per_group, count = std::min(per_group, conv.batch - first);
    ConvGeometry conv_part = conv, pool_part = pool;
    conv_part.batch = pool_part.batch = count;
    // Slot 2: conv2d_forward's own scratch uses slots 0 and 1.
    T* out = pool_kind == PoolKind::none ? y + first * out_size : detail::scratch<T>(2, count * conv_size);
    conv2d_forward(x + first * in_size, weight, bias, out, conv_part, out_channels, groups, static_cast<T*>(nullptr));
    for (const ActivationStep& act : activations)
      activation_forward<T>(act.kind, out, out, count * conv_size, T(act.a), T(act.b));
    if (pool_kind == PoolKind::max)
      max_pool2d_forward(out, y + first * out_size, static_cast<std::int32_t*>(nullptr), pool_part);
    else if (pool_kind == PoolKind::average)
      avg_pool2d_forward(out, y + first * out_size, pool_part);
  });
}

// Entry points, compiled once per CPU level (kernels/entry.hpp).
#define FASTNN_CONV_BLOCK_ENTRIES(X) X(conv_block_forward)
FASTNN_DECLARE_ENTRIES(FASTNN_CONV_BLOCK_ENTRIES)

}  // namespace fastnn
