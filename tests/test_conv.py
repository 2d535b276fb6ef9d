"""Convolution (K2, L2): kernels against the nested-loop oracle (tests/conv_oracles.py), finite-difference
gradients, bit-identical results for any thread count and alignment, the seed 002 shape examples, layouts,
save/load and bad input."""
import re

import numpy as np
import pytest

import fastnn as fnn
import conv_oracles as oracle
from harness import TOL, check_module_gradients, rng

# (N, C, H, W, O, kernel, stride, padding, dilation, groups)
CASES = [
    (2, 3, 7, 9, 4, (3, 3), 1, 0, 1, 1),
    (1, 3, 5, 5, 2, (3, 3), 2, 1, 1, 1),            # seed 002: 5×5×3, pad 1, two 3×3×3 filters, stride 2
    (3, 4, 8, 8, 4, (3, 3), 1, 1, 1, 4),            # depthwise
    (2, 4, 6, 7, 6, (2, 3), (2, 1), (1, 0), (2, 1), 2),
    (2, 5, 6, 6, 3, (1, 1), 1, 0, 1, 1),            # 1×1 stride 1: no im2col
    (2, 4, 6, 6, 6, (1, 1), 1, 0, 1, 2),            # 1×1 grouped
    (2, 3, 6, 6, 4, (1, 1), 2, 1, 1, 1),            # 1×1 strided and padded: the general path
    (1, 2, 5, 4, 3, (5, 4), 1, 0, 1, 1),            # kernel as large as the input
    (2, 2, 5, 5, 2, (3, 3), 1, 0, 2, 1),            # dilated kernel spanning the input
    (3, 1, 1, 9, 2, (1, 3), 1, (0, 1), 1, 1),       # 1-D shaped
    (1, 1, 1, 1, 1, (1, 1), 1, 0, 1, 1),
    (2, 6, 11, 10, 8, (3, 3), 1, 1, 1, 1),          # enough columns to split the GEMMs over threads
    (5, 3, 9, 7, 3, (3, 2), (3, 2), (1, 1), 1, 3),
    # stride 1 with Wo == W: im2col copies each tap as one shifted plane
    (2, 3, 6, 7, 4, (3, 3), 1, 2, 2, 1),
    (1, 2, 5, 6, 3, (1, 3), 1, (0, 1), 1, 1),
    (2, 2, 4, 5, 2, (5, 5), 1, 2, 1, 1),            # kernel larger than the input
    (2, 2, 3, 1, 2, (3, 1), 1, (1, 0), 1, 2),       # one-pixel-wide planes
    (1, 2, 5, 37, 5, (3, 3), 1, 1, 1, 1),           # direct path: several column packets, a tail, O = 4 + 1
    (2, 32, 5, 5, 4, (3, 3), 1, 1, 1, 1),           # C·kh·kw = 288: the GEMM path without a kept col
    (2, 32, 4, 18, 5, (3, 3), 1, 1, 1, 1),          # C·kh·kw = 288 with rows of whole strips: direct
    (1, 40, 6, 6, 20, (3, 3), 1, 1, 1, 1),          # one image, deep: one GEMM split over output channels
    (2, 3, 5, 5, 4, (2, 2), 1, 2, 1, 1),            # padding beyond kernel − 1: dx not as a direct convolution
    (2, 4, 7, 6, 40, (3, 3), 1, 1, 1, 1),           # O·kh·kw = 360: dx through Wᵀ·dY and col2im
    (2, 16, 20, 20, 2, (3, 3), 1, 1, 1, 1),         # dW over bands of output rows (13 + 7)
    (2, 16, 30, 12, 30, (3, 3), 1, 1, 1, 1),        # dW and dcol/col2im over bands (22 + 8 rows)
    (2, 6, 9, 17, 12, (3, 3), 1, 1, 1, 3),          # grouped, stride 1: the direct kernel per group, both ways
    (2, 4, 7, 18, 8, (3, 3), 1, 1, 1, 4),           # depthwise with two outputs per channel, direct
    (2, 5, 7, 7, 9, (3, 3), 1, 1, 1, 1),            # rows narrower than a packet (direct), 49 outputs,
    (2, 3, 9, 9, 4, (3, 3), 1, 1, 2, 1),            # dilated
    (2, 64, 8, 8, 12, (3, 3), 1, 1, 1, 1),          # ResNet's last stage
]

# Stride 1 (and 2) with output rows of 16 or 32 (whole packets at every CPU level): the weight gradient straight
# from x and dy (kernels/conv_weight_grad.hpp). Tiles of 8, 2 and 1 output channels; flattened kernels of 3k, 3k + 1
# and 3k + 2 taps; padding, none, asymmetric, a 1×1 kernel with padding; dilation; more images than chunks;
# images summed over several cache passes of one chunk. The direct kernels are float32's (float64 takes im2col +
# GEMM, kernels/conv_direct.hpp): the float32 runs of these cases check them, the float64 ones the GEMM path.
DIRECT_DW = [
    (2, 3, 16, 16, 5, (3, 3), 1, 1, 1, 1),
    (3, 2, 5, 32, 10, (3, 3), 1, 1, 1, 1),
    (2, 3, 6, 18, 9, (3, 3), 1, 0, 1, 1),
    (2, 2, 8, 20, 4, (3, 3), 1, 0, 2, 1),
    (2, 5, 4, 17, 3, (1, 2), 1, 0, 1, 1),
    (2, 4, 3, 17, 6, (1, 2), 1, 0, 1, 1),
    (2, 3, 7, 16, 4, (3, 3), 1, (2, 1), (1, 1), 1),
    (2, 3, 4, 14, 4, (1, 1), 1, 1, 1, 1),
    (9, 2, 3, 16, 3, (3, 3), 1, 1, 1, 1),
    (32, 16, 12, 32, 64, (3, 3), 1, 1, 1, 1),
    # stride 2 (copies per row phase): rows of 16 and of 8, a 1×1 kernel (one row phase read), dilation 2 (row
    # phase 1 never read) and 3 (phases 0, 1, 0), one strided axis each way
    (3, 5, 32, 32, 9, (3, 3), 2, 1, 1, 1),
    (3, 6, 16, 16, 10, (3, 3), 2, 1, 1, 1),
    (3, 5, 32, 32, 7, (1, 1), 2, 0, 1, 1),
    (2, 3, 31, 31, 4, (3, 3), 2, 2, 2, 1),
    (2, 3, 35, 35, 4, (3, 3), 2, 1, 3, 1),
    (2, 3, 9, 32, 4, (3, 3), (2, 1), 1, 1, 1),
    (2, 3, 8, 31, 4, (3, 3), (1, 2), 1, 1, 1),
]

# Stride 2 (kernels/conv_direct.hpp): the forward as a direct convolution over phase planes of the input (dx
# through Wᵀ·dY and col2im). ResNet's shapes (rows of 16 and 8: full and half packets on
# AVX-512), its 1×1 projection (phases no tap reaches), odd planes, no padding with a tail strip, stride 2 on one
# axis, 5×5 and 4×4 kernels with padding up to 3, a kernel as large as the stride, one output pixel; dilation
# and groups, stride 3 (im2col both ways).
STRIDED = [
    (2, 16, 32, 32, 32, (3, 3), 2, 1, 1, 1),
    (2, 32, 16, 16, 64, (3, 3), 2, 1, 1, 1),
    (2, 16, 32, 32, 32, (1, 1), 2, 0, 1, 1),
    (2, 3, 9, 11, 5, (3, 3), 2, 1, 1, 1),
    (2, 3, 7, 36, 4, (3, 3), 2, 0, 1, 1),
    (2, 4, 10, 13, 6, (3, 3), (2, 1), 1, 1, 1),
    (2, 4, 11, 10, 6, (3, 3), (1, 2), (0, 1), 1, 1),
    (2, 4, 9, 8, 3, (5, 5), 2, 2, 1, 1),
    (2, 4, 8, 9, 3, (4, 4), 2, 3, 1, 1),
    (2, 3, 6, 6, 4, (2, 2), 2, 0, 1, 1),
    (1, 2, 3, 3, 2, (3, 3), 2, 1, 1, 1),
    (2, 3, 11, 12, 4, (3, 3), 2, 1, 2, 1),
    (2, 4, 8, 18, 4, (3, 3), 2, 1, 1, 2),
    (2, 3, 10, 10, 4, (3, 3), 3, 1, 1, 1),
    # wider rows: odd widths, 5×5 and 4×4, one strided axis
    (2, 3, 9, 37, 5, (3, 3), 2, 1, 1, 1),
    (2, 4, 9, 36, 3, (5, 5), 2, 2, 1, 1),
    (2, 4, 7, 34, 3, (4, 4), 2, 3, 1, 1),
    (2, 4, 10, 17, 6, (3, 3), (2, 1), 1, 1, 1),
    (2, 4, 6, 40, 6, (3, 3), (1, 2), (0, 1), 1, 1),
    # im2col through the phases of each input row (kernels/im2col.hpp): taps reading phases 0, 1, 0 (dilation
    # 3), a phase no tap reads (stride 3, kw 2), one image in bands of output rows, and rows too long for the
    # phase buffer (the element-by-element path)
    (2, 3, 13, 14, 4, (3, 3), 2, 2, 3, 1),
    (2, 3, 10, 17, 4, (2, 2), 3, 1, 1, 1),
    (1, 16, 40, 64, 8, (3, 3), 2, 1, 1, 1),
    (1, 2, 1, 4200, 2, (1, 3), (1, 2), (0, 1), 1, 1),
]


# Stride-2 dx as four stride-1 direct convolutions of dy, one per phase of dx (kernels/conv_dx_phases.hpp,
# float32): ResNet's shapes, odd planes (phases of different sizes), no padding (zeros in front of dy for one
# phase), 2×2 and 5×5 kernels, a 2×3 kernel with padding 0 and 1 (one phase's taps reach one row of dy each),
# rows narrower than a packet, two rows, many channels on one image.
DX_PHASES = [
    (2, 5, 16, 16, 6, (3, 3), 2, 1, 1, 1),
    (2, 4, 17, 15, 5, (3, 3), 2, 1, 1, 1),
    (2, 3, 17, 18, 4, (3, 3), 2, 0, 1, 1),
    (2, 3, 16, 16, 4, (2, 2), 2, 0, 1, 1),
    (2, 3, 12, 20, 4, (5, 5), 2, 2, 1, 1),
    (2, 3, 10, 18, 4, (2, 3), 2, (0, 1), 1, 1),
    (2, 3, 9, 10, 4, (3, 3), 2, 1, 1, 1),
    (3, 4, 2, 34, 5, (3, 3), 2, 1, 1, 1),
    (1, 24, 16, 16, 40, (3, 3), 2, 1, 1, 1),
]


def _run(case, dtype, seed=0):
    N, C, H, W, O, k, s, p, d, g = case
    r = rng(seed)
    x = r.standard_normal((N, C, H, W))
    w = r.standard_normal((O, C // g) + k)
    b = r.standard_normal(O)
    y = fnn.ops.conv2d_forward(x.astype(dtype), w.astype(dtype), b.astype(dtype), s, p, d, g)
    dy = r.standard_normal(y.shape)
    gw, gb = np.ones(w.shape, dtype), np.ones(O, dtype)  # accumulate onto existing values
    dx = fnn.ops.conv2d_backward(dy.astype(dtype), x.astype(dtype), w.astype(dtype), gw, gb, s, p, d, g)
    xc, wc, dyc = (a.astype(dtype).astype(np.float64) for a in (x, w, dy))
    want_y = oracle.conv2d(xc, wc, b.astype(dtype), s, p, d, g)
    want_dx, want_dw, want_db = oracle.conv2d_backward(dyc, xc, wc, s, p, d, g)
    return (y, dx, gw - 1, gb - 1), (want_y, want_dx, want_dw, want_db)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", CASES + DIRECT_DW + STRIDED + DX_PHASES)
def test_conv2d_kernels_match_oracle(case, dtype):
    got, want = _run(case, dtype)
    depth = case[1] * np.prod(case[5]) + case[0] * 100  # longest sums (forward, dW/db over the batch)
    tol = TOL[dtype]
    for name, a, e in zip(["y", "dx", "dW", "db"], got, want):
        assert a.dtype == dtype and a.shape == e.shape, name
        scale = np.sqrt(depth) if dtype == np.float32 else 1.0
        np.testing.assert_allclose(a, e, rtol=tol["rtol"] * scale, atol=tol["atol"] * scale * 10, err_msg=name)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])  # float32: the direct kernels' modes too
@pytest.mark.parametrize("case", [CASES[0], CASES[3], CASES[5], DIRECT_DW[0], DIRECT_DW[-1], STRIDED[0], STRIDED[2],
                                  DX_PHASES[5]])
def test_overwrite_and_skip_modes(case, dtype):
    """accumulate=False overwrites stale gradients; None skips dW/db; need_input_grad=False returns None."""
    N, C, H, W, O, k, s, p, d, g = case
    r = rng(1)
    x, w = r.standard_normal((N, C, H, W)).astype(dtype), r.standard_normal((O, C // g) + k).astype(dtype)
    dy = r.standard_normal(fnn.ops.conv2d_forward(x, w, None, s, p, d, g).shape).astype(dtype)
    want_dx, want_dw, want_db = oracle.conv2d_backward(*(a.astype(np.float64) for a in (dy, x, w)), s, p, d, g)
    scale = np.sqrt(C * np.prod(k) + N * 100) if dtype == np.float32 else 1.0  # as test_conv2d_kernels_...
    tol = dict(rtol=TOL[dtype]["rtol"] * scale, atol=TOL[dtype]["atol"] * scale * 10)
    gw, gb = np.full_like(w, 7.0), np.full(O, 7.0, dtype)
    assert fnn.ops.conv2d_backward(dy, x, w, gw, gb, s, p, d, g, False, False, False) is None
    np.testing.assert_allclose(gw, want_dw, **tol)
    np.testing.assert_allclose(gb, want_db, **tol)
    dx = fnn.ops.conv2d_backward(dy, x, w, None, None, s, p, d, g)
    assert dx.dtype == dtype
    np.testing.assert_allclose(dx, want_dx, **tol)


@pytest.mark.parametrize("case", [CASES[0], CASES[11], CASES[-2]])
def test_forward_with_kept_col_matches_oracle(case):
    """Training keeps im2col(x) for backward: that forward path (GEMM) agrees with the oracle too."""
    N, C, H, W, O, k, s, p, d, g = case
    r = rng(9)
    x, w, b = r.standard_normal((N, C, H, W)), r.standard_normal((O, C // g) + k), r.standard_normal(O)
    want = oracle.conv2d(x, w, b, s, p, d, g)
    col = np.empty((C * k[0] * k[1], N * want.shape[2] * want.shape[3]))
    np.testing.assert_allclose(fnn.ops.conv2d_forward(x, w, b, s, p, d, g, col=col), want, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(col, fnn.ops.im2col(x, k, s, p, d))


def test_im2col_col2im_layout_and_adjoint():
    r = rng(2)
    x = r.standard_normal((2, 3, 5, 6))
    col = fnn.ops.im2col(x, (2, 3), stride=(1, 2), padding=1, dilation=(2, 1))
    Ho, Wo = (5 + 2 - 2 - 1) // 1 + 1, (6 + 2 - 2 - 1) // 2 + 1
    assert col.shape == (3 * 2 * 3, 2 * Ho * Wo)
    xp = np.pad(x, [(0, 0), (0, 0), (1, 1), (1, 1)])
    for c, i, j, n, oh, ow in [(0, 0, 0, 0, 0, 0), (2, 1, 2, 1, Ho - 1, Wo - 1), (1, 1, 0, 1, 2, 1)]:
        assert col[(c * 2 + i) * 3 + j, n * Ho * Wo + oh * Wo + ow] == xp[n, c, oh + 2 * i, 2 * ow + j]
    # col2im is the adjoint: <im2col(x), c> = <x, col2im(c)>
    c = r.standard_normal(col.shape)
    back = fnn.ops.col2im(c, x.shape, (2, 3), stride=(1, 2), padding=1, dilation=(2, 1))
    assert abs(np.sum(col * c) - np.sum(x * back)) < 1e-10 * np.abs(col * c).sum()


def test_conv1d_matches_oracle():
    fnn.manual_seed(0)
    conv = fnn.nn.Conv1d(4, 6, 3, stride=2, padding=1, dilation=2, groups=2).double()
    x = rng(3).standard_normal((3, 4, 11))
    y = conv(x)
    want = oracle.conv2d(x[:, :, None, :], conv.weight.data[:, :, None, :], conv.bias.data, (1, 2), (0, 1), (1, 2), 2)
    np.testing.assert_allclose(y, want[:, :, 0, :], rtol=1e-10, atol=1e-12)
    dy = rng(4).standard_normal(y.shape)
    dx = conv.backward(dy)
    want_dx, want_dw, want_db = oracle.conv2d_backward(dy[:, :, None, :], x[:, :, None, :],
                                                       conv.weight.data[:, :, None, :], (1, 2), (0, 1), (1, 2), 2)
    np.testing.assert_allclose(dx, want_dx[:, :, 0, :], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(conv.weight.grad, want_dw[:, :, 0, :], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(conv.bias.grad, want_db, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("make, x_shape", [
    (lambda: fnn.nn.Conv2d(3, 4, 3, stride=2, padding=1), (2, 3, 6, 5)),
    (lambda: fnn.nn.Conv2d(4, 4, (2, 3), padding=(1, 0), dilation=(2, 1), groups=2), (2, 4, 5, 6)),
    (lambda: fnn.nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False), (1, 4, 4, 4)),
    (lambda: fnn.nn.Conv2d(4, 3, 1), (2, 4, 3, 3)),
    (lambda: fnn.nn.Conv2d(4, 6, 2, padding="same"), (2, 4, 5, 5)),
    (lambda: fnn.nn.Conv2d(2, 3, 3, padding="valid"), (2, 2, 4, 5)),
    (lambda: fnn.nn.Conv1d(4, 6, 3, padding="same", groups=2), (2, 4, 7)),
    (lambda: fnn.nn.Conv1d(3, 2, 4, stride=3, padding=2), (2, 3, 9)),
    (lambda: fnn.nn.Conv2d(2, 3, 3, padding=1), (2, 5, 4)),   # unbatched (C, H, W)
    (lambda: fnn.nn.Conv2d(3, 4, 3, stride=(2, 1), padding=1, bias=False), (2, 3, 7, 6)),
    (lambda: fnn.nn.Conv2d(3, 4, 1, stride=2, bias=False), (2, 3, 5, 6)),
    (lambda: fnn.nn.Conv2d(2, 3, 5, stride=2, padding=2), (2, 2, 7, 8)),
])
def test_conv_gradients_finite_differences(make, x_shape):
    fnn.manual_seed(0)
    check_module_gradients(make(), rng(1).standard_normal(x_shape))


def test_frozen_conv_and_first_layer():
    fnn.manual_seed(0)
    conv = fnn.nn.Conv2d(2, 3, 3)
    x = rng().standard_normal((2, 2, 5, 5)).astype(np.float32)
    conv(x)
    full = conv.backward(np.ones((2, 3, 3, 3), np.float32))
    gw = conv.weight.grad.copy()
    conv.zero_grad()
    conv(x)
    assert conv.backward_parameters(np.ones((2, 3, 3, 3), np.float32)) is None
    assert conv.weight.grad.tobytes() == gw.tobytes() and full.shape == x.shape
    conv.weight.requires_grad = False
    conv.zero_grad()
    conv(x)
    conv.backward(np.ones((2, 3, 3, 3), np.float32))
    assert not conv.weight.grad.any() and conv.bias.grad.any()


def _shifted(a, offset):
    out = np.empty(a.size + offset, a.dtype)[offset:].reshape(a.shape)
    out[...] = a
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", [
    (64, 8, 14, 14, 16, (3, 3), 1, 1, 1, 1),        # LeNet's second layer
    (33, 1, 28, 28, 8, (3, 3), 1, 1, 1, 1),         # first layer, odd batch
    (16, 6, 13, 11, 6, (3, 3), 2, 1, 1, 6),          # depthwise, strided
    (20, 16, 9, 9, 24, (1, 1), 1, 0, 1, 1),          # 1×1
    (7, 4, 20, 21, 5, (5, 3), 1, 2, (2, 1), 1),      # odd column count (tail slices)
    (9, 32, 9, 9, 6, (3, 3), 1, 1, 1, 1),            # GEMM forward path without a kept col
    (1, 40, 16, 16, 24, (3, 3), 1, 1, 1, 1),         # one image, direct: output channels split over threads
    (1, 40, 16, 16, 24, (3, 3), 2, 1, 1, 1),         # one image, im2col: its GEMM split over output channels
    (40, 16, 20, 20, 8, (3, 3), 1, 1, 1, 1),         # 40 one-image blocks dealt to 16 weight-gradient chunks
    (3, 32, 6, 20, 5, (3, 3), 1, 1, 1, 1),           # direct forward at depth 288 (rows of whole strips)
    (5, 16, 24, 24, 6, (3, 3), 1, 1, 1, 1),          # dW over bands of output rows
    (3, 16, 30, 12, 30, (3, 3), 1, 1, 1, 1),         # dW and dx over bands of output rows
    (20, 8, 6, 6, 8, (3, 3), 1, 1, 1, 1),            # 20 blocks over 16 chunks, unevenly
    (8, 16, 20, 20, 32, (3, 3), 1, 1, 1, 16),        # depthwise (×2), stride 1: direct per (image, group)
    (9, 4, 6, 32, 10, (3, 3), 1, 1, 1, 1),           # direct weight gradient: 9 images in 8 chunks
    (32, 16, 12, 32, 64, (3, 3), 1, 1, 1, 1),        # direct weight gradient: two cache passes per chunk
    (6, 64, 8, 8, 64, (3, 3), 1, 1, 1, 1),           # ResNet's last stage
    (8, 16, 32, 32, 32, (3, 3), 2, 1, 1, 1),         # stride 2: direct forward over phase planes
    (6, 32, 16, 16, 64, (3, 3), 2, 1, 1, 1),
    (8, 16, 32, 32, 32, (1, 1), 2, 0, 1, 1),
    (1, 40, 17, 33, 24, (3, 3), 2, 1, 1, 1),         # one image: output channels split over threads
    (5, 8, 17, 15, 12, (3, 3), 2, 1, 1, 1),          # stride-2 dx per phase of dx, odd planes
])
def test_conv_bits_do_not_depend_on_alignment_or_thread_count(case, dtype):
    N, C, H, W, O, k, s, p, d, g = case
    r = rng(5)
    x, w, b = (r.standard_normal(sh).astype(dtype) for sh in [(N, C, H, W), (O, C // g) + k, (O,)])
    dy = r.standard_normal(fnn.ops.conv2d_forward(x, w, b, s, p, d, g).shape).astype(dtype)
    before = fnn.get_num_threads()
    seen = set()
    try:
        for threads, offset in [(1, 0), (2, 0), (3, 0), (2, 1), (3, 3), (1, 5)]:
            fnn.set_num_threads(threads)
            gw, gb = _shifted(np.zeros_like(w), offset), _shifted(np.zeros_like(b), offset)
            xs, ws = _shifted(x, offset), _shifted(w, offset)
            y = fnn.ops.conv2d_forward(xs, ws, _shifted(b, offset), s, p, d, g)
            dx = fnn.ops.conv2d_backward(_shifted(dy, offset), xs, ws, gw, gb, s, p, d, g)
            seen.add((y.tobytes(), dx.tobytes(), gw.tobytes(), gb.tobytes()))
    finally:
        fnn.set_num_threads(before)
    assert len(seen) == 1


def test_seed_002_shape_examples():
    x = np.zeros((1, 1, 5, 5), np.float32)
    assert fnn.nn.Conv2d(1, 1, 3)(x).shape == (1, 1, 3, 3)
    assert fnn.nn.Conv2d(1, 1, 3, stride=2)(x).shape == (1, 1, 2, 2)
    conv = fnn.nn.Conv2d(3, 2, 3, stride=2, padding=1)   # 5×5×3 padded to the seed's 7×7×3 grid
    assert conv(np.zeros((1, 3, 5, 5), np.float32)).shape == (1, 2, 3, 3)
    assert conv.num_parameters() == (3 * 3 * 3 + 1) * 2 == 56
    assert conv.weight.shape == (2, 3, 3, 3) and conv.bias.shape == (2,)
    table = fnn.nn.Sequential(conv).summary(input_shape=(3, 5, 5))
    assert "(1, 2, 3, 3)" in table and "Total params: 56" in table


def test_summary_of_a_cnn():
    model = fnn.nn.Sequential(fnn.nn.Conv2d(1, 8, 3, padding=1), fnn.nn.ReLU(), fnn.nn.MaxPool2d(2),
                              fnn.nn.Conv2d(8, 16, 3, padding=1), fnn.nn.ReLU(), fnn.nn.AdaptiveAvgPool2d(1),
                              fnn.nn.Flatten(), fnn.nn.Linear(16, 10))
    table = model.summary(input_shape=(1, 28, 28))
    for shape in ["(1, 8, 28, 28)", "(1, 8, 14, 14)", "(1, 16, 14, 14)", "(1, 16, 1, 1)", "(1, 10)"]:
        assert shape in table
    assert f"Total params: {8 * 9 + 8 + 16 * 72 + 16 + 170:,}" in table


def test_default_init_and_repr_like_pytorch():
    fnn.manual_seed(0)
    conv = fnn.nn.Conv2d(16, 32, 3)
    bound = 1 / np.sqrt(16 * 9)  # kaiming_uniform(a=√5) gives U(±1/√fan_in), as does the bias
    assert 0.95 * bound < np.abs(conv.weight.data).max() <= bound
    assert np.abs(conv.bias.data).max() <= bound and conv.weight.dtype == np.float32
    assert repr(fnn.nn.Conv2d(1, 8, kernel_size=3, padding=1)) == \
        "Conv2d(1, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))"
    assert repr(fnn.nn.Conv2d(4, 8, (3, 5), stride=2, dilation=2, groups=4, bias=False)) == \
        "Conv2d(4, 8, kernel_size=(3, 5), stride=(2, 2), dilation=(2, 2), groups=4, bias=False)"
    assert repr(fnn.nn.Conv1d(2, 4, 3, padding="same")) == "Conv1d(2, 4, kernel_size=(3,), stride=(1,), padding=same)"


@pytest.mark.parametrize("make", [
    np.asfortranarray,
    lambda x: np.repeat(x, 2, axis=3)[..., ::2],
    lambda x: x.astype(np.float64),
    lambda x: (x.setflags(write=False), x)[1],
])
def test_conv_accepts_any_layout(make):
    fnn.manual_seed(0)
    conv = fnn.nn.Conv2d(3, 4, 3, padding=1)
    x = rng().standard_normal((2, 3, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(conv(make(x.copy())), conv(x), rtol=1e-6, atol=1e-6)


def test_conv_bad_input_messages():
    conv = fnn.nn.Conv2d(3, 8, 3)
    name = r"Conv2d\(3, 8, kernel_size=\(3, 3\), stride=\(1, 1\)\)"
    with pytest.raises(ValueError, match=name + r".*3 input channels.*\(2, 4, 8, 8\)"):
        conv(np.zeros((2, 4, 8, 8), np.float32))
    with pytest.raises(ValueError, match=name + r".*\(2, 3, 2, 8\).*smaller than the kernel"):
        conv(np.zeros((2, 3, 2, 8), np.float32))
    with pytest.raises(ValueError, match=r"dilated kernel"):
        fnn.nn.Conv2d(3, 8, 3, dilation=3)(np.zeros((1, 3, 6, 6), np.float32))
    with pytest.raises(ValueError, match=name + r".*\(N, 3, H, W\).*\(3, 8\)"):
        conv(np.zeros((3, 8), np.float32))
    with pytest.raises(ValueError, match=name + r".*3 input channels.*\(2, 3, 8\) with 2 channels"):
        conv(np.zeros((2, 3, 8), np.float32))  # 3-D is one unbatched (C, H, W) sample, as in PyTorch
    with pytest.raises(ValueError, match=r"Conv1d.*\(N, 3, L\).*\(2, 3, 8, 8\)"):
        fnn.nn.Conv1d(3, 8, 3)(np.zeros((2, 3, 8, 8), np.float32))
    with pytest.raises(TypeError, match=name + r".*float"):
        conv(np.zeros((2, 3, 8, 8), np.int32))
    bad = np.zeros((2, 3, 8, 8), np.float32)
    bad[1, 2, 3, 4] = np.nan
    with pytest.raises(ValueError, match=name + r".*NaN.*\(2, 3, 8, 8\)"):
        conv(bad)
    with pytest.raises(ValueError, match=name + r".*before forward"):
        fnn.nn.Conv2d(3, 8, 3).backward(np.zeros((1, 8, 1, 1), np.float32))
    conv(np.zeros((2, 3, 8, 8), np.float32))
    with pytest.raises(ValueError, match=name + r".*\(2, 8, 5, 5\).*\(2, 8, 6, 6\)"):
        conv.backward(np.zeros((2, 8, 5, 5), np.float32))
    with pytest.raises(ValueError, match="divisible by groups"):
        fnn.nn.Conv2d(3, 8, 3, groups=2)
    with pytest.raises(ValueError, match="strided"):
        fnn.nn.Conv2d(3, 8, 3, stride=2, padding="same")
    with pytest.raises(NotImplementedError, match="padding_mode"):
        fnn.nn.Conv2d(3, 8, 3, padding_mode="reflect")
    with pytest.raises(ValueError, match=r"conv2d_forward: input \(1, 2, 5, 5\) does not match weight"):
        fnn.ops.conv2d_forward(np.zeros((1, 2, 5, 5)), np.zeros((4, 3, 3, 3)))


# The input's NaN / inf check, on every forward path: the direct kernel checks each image (each group of it) in
# the work item that copies it; im2col + GEMM (float64, deep or kept-col layers) and 1×1 check the whole input.
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("make, shape", [
    (lambda: fnn.nn.Conv2d(4, 8, 3, padding=1), (3, 4, 16, 16)),  # float32: direct
    (lambda: fnn.nn.Conv2d(4, 8, 3, stride=2, padding=1), (3, 4, 16, 16)),  # float32: direct, stride 2
    (lambda: fnn.nn.Conv2d(4, 8, 3, padding=1, groups=2), (3, 4, 16, 16)),  # float32: direct, per group
    (lambda: fnn.nn.Conv2d(64, 8, 3, padding=1), (2, 64, 6, 6)),  # depth 576 on a narrow plane: im2col
    (lambda: fnn.nn.Conv2d(4, 8, 1), (3, 4, 16, 16)),  # pointwise
])
@pytest.mark.parametrize("where", [0, -1, "middle"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_conv_forward_rejects_non_finite_input_on_every_path(make, shape, where, bad, dtype):
    conv = make()
    if dtype == np.float64:
        conv = conv.double()
    x = rng(1).standard_normal(shape).astype(dtype)
    clean = conv(x)
    flat = x.reshape(-1)
    flat[flat.size // 2 + 3 if where == "middle" else where] = bad
    with pytest.raises(ValueError, match=r"Conv2d.*NaN or infinity.*" + re.escape(str(shape))):
        conv(x)
    flat[:] = np.nan_to_num(flat, nan=0.0, posinf=0.0, neginf=0.0)
    assert np.isfinite(conv(x)).all() and conv(x).shape == clean.shape


def test_cnn_save_load_round_trip_bit_exact(tmp_path):
    fnn.manual_seed(0)
    model = fnn.nn.Sequential(fnn.nn.Conv2d(1, 4, 3, padding=1), fnn.nn.ReLU(), fnn.nn.MaxPool2d(2),
                              fnn.nn.Conv2d(4, 6, (2, 3), stride=2, groups=2),
                              fnn.nn.Dropout2d(0.2), fnn.nn.AvgPool2d(1), fnn.nn.AdaptiveAvgPool2d(1),
                              fnn.nn.Flatten(), fnn.nn.Linear(6, 12), fnn.nn.Reshape(3, 4),
                              fnn.nn.Conv1d(3, 2, 3, padding="same"), fnn.nn.MaxPool1d(2), fnn.nn.AvgPool1d(2))
    path = str(tmp_path / "cnn.fnn")
    fnn.save(model, path)
    loaded = fnn.load(path)
    assert repr(loaded) == repr(model)
    x = rng().standard_normal((3, 1, 8, 8)).astype(np.float32)
    assert loaded.eval()(x).tobytes() == model.eval()(x).tobytes()
