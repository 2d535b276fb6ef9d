"""Conv2d's GEMMs in bf16 under fnn.autocast (amp.py): im2col, then bf16 GEMMs with float32 sums
(kernels/bf16_gemm.hpp); groups=1 only (grouped convolutions stay float32). The forward keeps its im2col matrix
for the backward: y = W·col, dW (+)= dY·colᵀ, dcol = Wᵀ·dY summed back into dx by col2im."""
import numpy as np

from .. import amp, ops


def forward(x, w, bias, stride, padding, dilation):
    """(y (N, O, Ho, Wo), ctx) for x (N, C, H, W), w (O, C, kh, kw) float32."""
    if not ops.all_finite(x):
        raise ValueError("input contains NaN or infinity")
    n, _, h, wd = x.shape
    o, _, kh, kw = w.shape
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wd + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    col = ops.im2col(x, (kh, kw), stride, padding, dilation)  # (C·kh·kw, N·Ho·Wo)
    y = amp.matmul(np.ascontiguousarray(w).reshape(o, -1), col)  # (O, N·Ho·Wo)
    y = np.ascontiguousarray(y.reshape(o, n, ho, wo).transpose(1, 0, 2, 3))
    if bias is not None:
        y += bias.reshape(1, o, 1, 1)
    return y, (col, x.shape)


def backward(ctx, g, w, grad_weight, grad_bias, stride, padding, dilation, need_input_grad, acc_w, acc_b):
    """dx (or None); grad_weight / grad_bias (each may be None) written in place, added to when acc_*."""
    col, x_shape = ctx
    o, _, kh, kw = w.shape
    g2 = np.ascontiguousarray(g.transpose(1, 0, 2, 3)).reshape(o, -1)  # (O, N·Ho·Wo)
    if grad_weight is not None:
        amp.matmul(g2, col, grad_weight.reshape(o, -1), trans_b=True, accumulate=acc_w)
    if grad_bias is not None:
        sums = g2.sum(axis=1, dtype=np.float32)
        if acc_b:
            grad_bias += sums
        else:
            grad_bias[...] = sums
    if not need_input_grad:
        return None
    dcol = amp.matmul(np.ascontiguousarray(w).reshape(o, -1), g2, trans_a=True)  # (C·kh·kw, N·Ho·Wo)
    return ops.col2im(dcol, x_shape, (kh, kw), stride, padding, dilation)
