"""Pooling (K3, L3), Dropout2d and Reshape: kernels and layers against the nested-loop oracle
(tests/conv_oracles.py) for every PyTorch option (ceil_mode, dilation, return_indices, count_include_pad,
divisor_override, adaptive sizes), finite-difference gradients (max-pool inputs without ties), bit-identical
results for any thread count, reprs and bad input. The tests never import torch; a few expected values and
reprs were copied from torch 2.13."""
import numpy as np
import pytest

import fastnn as fnn
import conv_oracles as oracle
from harness import TOL, check_module_gradients, rng

# (N, C, H, W, kernel, stride, padding)
CASES = [
    (2, 3, 7, 9, 2, None, 0),
    (1, 2, 5, 5, 3, 2, 1),
    (2, 2, 6, 7, (2, 3), (1, 2), (1, 1)),
    (1, 1, 4, 4, 4, None, 0),        # kernel as large as the input
    (3, 3, 8, 8, 2, 2, 0),           # the 2×2/2 fast path
    (2, 2, 9, 9, 2, 2, 0),           # fast path, odd size
    (2, 2, 1, 9, (1, 3), (1, 2), (0, 1)),
    (1, 1, 3, 3, 1, 1, 0),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", CASES)
def test_pool_kernels_match_oracle(case, dtype):
    N, C, H, W, k, s, p = case
    r = rng(0)
    x = r.standard_normal((N, C, H, W)).astype(dtype)
    tol = TOL[dtype]
    y, argmax = fnn.ops.max_pool2d_forward(x, k, s, p)
    want, back = oracle.pool2d(x, "max", k, s, p)
    dy = r.standard_normal(want.shape).astype(dtype)
    assert y.dtype == dtype and argmax.dtype == np.int32
    np.testing.assert_array_equal(y, want.astype(dtype))
    np.testing.assert_allclose(fnn.ops.max_pool2d_backward(dy, argmax, x.shape), back(dy), **tol)
    want, back = oracle.pool2d(x, "avg", k, s, p)
    np.testing.assert_allclose(fnn.ops.avg_pool2d_forward(x, k, s, p), want, **tol)
    np.testing.assert_allclose(fnn.ops.avg_pool2d_backward(dy, x.shape, k, s, p), back(dy), **tol)


# PyTorch's options: (N, C, H, W, kernel, stride, padding, dilation, ceil_mode)
OPTION_CASES = [
    (2, 3, 7, 9, 2, None, 0, 1, True),            # ceil mode: last row and column windows clipped
    (1, 2, 5, 5, 2, 2, 1, 1, True),               # ceil mode: the last window would start in the padding, dropped
    (2, 2, 6, 7, (3, 2), (2, 3), (1, 1), 1, True),
    (1, 1, 2, 2, 3, 2, 0, 1, True),               # ceil mode: kernel longer than the input, one clipped window
    (2, 2, 9, 8, 2, 2, 0, 1, True),               # 2×2/2 in ceil mode: the fast path must not read past the edge
    (2, 2, 8, 8, 2, 2, 0, 1, True),               # 2×2/2 in ceil mode on even sizes: no extra window
    (1, 2, 7, 9, 3, 1, 1, 2, False),              # dilation
    (2, 1, 9, 8, (2, 3), (2, 1), (1, 0), (3, 2), False),
    (1, 2, 8, 11, 3, 2, 1, (2, 3), True),         # dilation and ceil mode
    (2, 2, 7, 7, 2, 3, 1, 2, True),
    (1, 1, 1, 1, (1, 2), 2, (0, 1), (1, 2), False),  # dilated taps straddle the 1-wide input: an empty window
    (2, 2, 6, 6, 2, 2, 0, 2, False),              # 2×2/2 but dilated: the general loop
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", OPTION_CASES)
def test_max_pool_options_match_oracle(case, dtype):
    N, C, H, W, k, s, p, d, ceil_mode = case
    r = rng(10)
    x = r.standard_normal((N, C, H, W)).astype(dtype)
    y, argmax = fnn.ops.max_pool2d_forward(x, k, s, p, True, d, ceil_mode)
    want, back = oracle.pool2d(x, "max", k, s, p, d, ceil_mode)
    dy = r.standard_normal(want.shape).astype(dtype)
    np.testing.assert_array_equal(y, want.astype(dtype))
    np.testing.assert_array_equal(np.where(argmax < 0, back.indices, argmax), back.indices)
    np.testing.assert_allclose(fnn.ops.max_pool2d_backward(dy, argmax, x.shape), back(dy), **TOL[dtype])
    # The layer: PyTorch's int64 indices, including the ones of windows without input.
    pool = fnn.nn.MaxPool2d(k, s, p, d, return_indices=True, ceil_mode=ceil_mode)
    y, indices = pool(x)
    assert indices.dtype == np.int64 and indices.shape == y.shape
    np.testing.assert_array_equal(indices, back.indices)
    np.testing.assert_allclose(pool.backward(dy), back(dy), **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("count_include_pad, divisor_override", [(True, None), (False, None), (True, 5), (False, -3)])
@pytest.mark.parametrize("case", [c for c in OPTION_CASES if c[7] == 1] + [c[:7] + (1, False) for c in CASES[:3]])
def test_avg_pool_options_match_oracle(case, count_include_pad, divisor_override, dtype):
    N, C, H, W, k, s, p, _, ceil_mode = case
    r = rng(11)
    x = r.standard_normal((N, C, H, W)).astype(dtype)
    options = dict(ceil_mode=ceil_mode, count_include_pad=count_include_pad, divisor_override=divisor_override)
    want, back = oracle.pool2d(x, "avg", k, s, p, **options)
    dy = r.standard_normal(want.shape).astype(dtype)
    np.testing.assert_allclose(fnn.ops.avg_pool2d_forward(x, k, s, p, **options), want, **TOL[dtype])
    np.testing.assert_allclose(fnn.ops.avg_pool2d_backward(dy, x.shape, k, s, p, **options), back(dy), **TOL[dtype])
    pool = fnn.nn.AvgPool2d(k, s, p, **options)
    np.testing.assert_allclose(pool(x), want, **TOL[dtype])
    np.testing.assert_allclose(pool.backward(dy), back(dy), **TOL[dtype])


def test_option_cases_cover_the_ceil_mode_rules():
    # Guards the grid: clipped last windows, the dropped last window, and a kernel longer than the input.
    size = oracle.pool_output_size
    assert size(7, 2, 2, 0, ceil_mode=True) == 4 and size(7, 2, 2, 0) == 3
    assert size(5, 2, 2, 1, ceil_mode=True) == 3 == size(5, 2, 2, 1)        # ceil(5/2)+1 = 4, then dropped
    assert size(2, 3, 2, 0, ceil_mode=True) == 1 and size(2, 3, 2, 0) == 0
    assert size(8, 2, 2, 0, ceil_mode=True) == 4


# 1-D: (N, C, L, kernel, stride, padding, dilation, ceil_mode); None for N is an unbatched (C, L) input.
CASES_1D = [
    (2, 3, 9, 2, None, 0, 1, False),
    (1, 2, 7, 3, 2, 1, 1, True),
    (2, 2, 8, 3, 3, 1, 1, True),       # ceil mode: last window dropped
    (None, 3, 11, 3, 2, 1, 2, True),
    (2, 1, 10, 2, 1, 1, 3, False),
    (1, 1, 2, 3, 2, 0, 1, True),       # kernel longer than the input
    (1, 2, 1, 2, 2, 1, 3, True),       # dilated taps straddle the input: empty window
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", CASES_1D)
def test_pool1d_options_match_oracle(case, dtype):
    N, C, L, k, s, p, d, ceil_mode = case
    r = rng(12)
    x = r.standard_normal((N or 1, C, L)).astype(dtype)
    x_in = x if N else x[0]
    x4 = x[:, :, None, :]
    s2 = None if s is None else (1, s)
    want, back = oracle.pool2d(x4, "max", (1, k), s2, (0, p), (1, d), ceil_mode)
    dy4 = r.standard_normal(want.shape).astype(dtype)
    dy = dy4[:, :, 0] if N else dy4[0, :, 0]
    squeeze = (lambda a: a[:, :, 0]) if N else (lambda a: a[0, :, 0])
    pool = fnn.nn.MaxPool1d(k, s, p, d, return_indices=True, ceil_mode=ceil_mode)
    y, indices = pool(x_in)
    np.testing.assert_array_equal(y, squeeze(want).astype(dtype))
    np.testing.assert_array_equal(indices, squeeze(back.indices))
    np.testing.assert_allclose(pool.backward(dy), squeeze(back(dy4)), **TOL[dtype])
    if d != 1:
        return
    for count_include_pad, divisor_override in [(True, None), (False, None), (False, 4)]:
        options = dict(ceil_mode=ceil_mode, count_include_pad=count_include_pad, divisor_override=divisor_override)
        want, back = oracle.pool2d(x4, "avg", (1, k), s2, (0, p), **options)
        pool = fnn.nn.AvgPool1d(k, s, p, **options)
        np.testing.assert_allclose(pool(x_in), squeeze(want), **TOL[dtype])
        np.testing.assert_allclose(pool.backward(dy), squeeze(back(dy4)), **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape, out", [((2, 3, 7), 1), ((2, 3, 7), 3), ((1, 2, 5), 5), ((2, 2, 4), 7), ((3, 9), (4,)),
                                        ((1, 1, 1), 1)])
def test_adaptive_avg_pool1d_matches_oracle(shape, out, dtype):
    x = rng(13).standard_normal(shape).astype(dtype)
    x3 = x if len(shape) == 3 else x[None]
    size = out if isinstance(out, int) else out[0]
    want, back = oracle.adaptive_avg_pool2d(x3[:, :, None, :], (1, size))
    want = want[:, :, 0] if len(shape) == 3 else want[0, :, 0]
    dy = rng(14).standard_normal(want.shape).astype(dtype)
    dy4 = dy[:, :, None, :] if len(shape) == 3 else dy[None, :, None, :]
    pool = fnn.nn.AdaptiveAvgPool1d(out)
    y = pool(x)
    assert y.dtype == dtype and y.shape == want.shape
    np.testing.assert_allclose(y, want, **TOL[dtype])
    grad = back(dy4)[:, :, 0] if len(shape) == 3 else back(dy4)[0, :, 0]
    np.testing.assert_allclose(pool.backward(dy), grad, **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("output_size, want_hw", [(3, (3, 3)), ((2, None), (2, 5)), ([None, 4], (7, 4)),
                                                  (None, (7, 5)), ((np.int64(2), 1), (2, 1))])
def test_adaptive_avg_pool2d_output_sizes(output_size, want_hw, dtype):
    x = rng(15).standard_normal((2, 3, 7, 5)).astype(dtype)
    want, back = oracle.adaptive_avg_pool2d(x, want_hw)
    pool = fnn.nn.AdaptiveAvgPool2d(output_size)
    np.testing.assert_allclose(pool(x), want, **TOL[dtype])
    dy = rng(16).standard_normal(want.shape).astype(dtype)
    np.testing.assert_allclose(pool.backward(dy), back(dy), **TOL[dtype])


def test_pool_options_like_pytorch():
    # Outputs of torch 2.13 on these inputs (copied from a PyTorch session; no torch needed here).
    y, i = fnn.nn.MaxPool1d(3, 2, 1, dilation=2, return_indices=True, ceil_mode=True)(np.arange(1.0, 11.0)[None, None])
    assert y.tolist() == [[[4.0, 6.0, 8.0, 10.0, 10.0]]] and i.tolist() == [[[3, 5, 7, 9, 9]]]
    y, i = fnn.nn.MaxPool2d(2, 2, 1, return_indices=True, ceil_mode=True)(-np.arange(12.0).reshape(1, 3, 4))
    assert i.dtype == np.int64 and i.tolist() == [[[0, 1, 3], [4, 5, 7]]]
    assert y.tolist() == [[[-0.0, -1.0, -3.0], [-4.0, -5.0, -7.0]]]
    # Every tap of a dilated window in the padding: -inf and PyTorch's index past the input, but no gradient
    # (PyTorch adds it at that index, here the wrong element).
    pool = fnn.nn.MaxPool2d((1, 2), (1, 2), (0, 1), (1, 2), return_indices=True)
    y, i = pool(np.array([[[[5.0], [7.0]]]]))
    assert y.tolist() == [[[[-np.inf], [-np.inf]]]] and i.tolist() == [[[[1], [2]]]]
    assert (pool.backward(np.ones((1, 1, 2, 1))) == 0).all()
    x = np.array([[[3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0], [6.0, 5.0, 3.0, 5.0, 8.0, 9.0, 7.0]]])
    np.testing.assert_allclose(fnn.nn.AvgPool1d(3, 2, 1, ceil_mode=True)(x),
                               [[[4 / 3, 2, 5, 11 / 3], [11 / 3, 13 / 3, 22 / 3, 16 / 3]]], rtol=1e-15)
    np.testing.assert_allclose(fnn.nn.AvgPool1d(3, 2, 1, ceil_mode=True, count_include_pad=False)(x),
                               [[[2, 2, 5, 5.5], [5.5, 13 / 3, 22 / 3, 8]]], rtol=1e-15)
    np.testing.assert_allclose(fnn.nn.AvgPool2d(3, 2, 1, ceil_mode=True, divisor_override=2)(x),
                               [[[7.5, 9.5, 18.5, 13.5], [5.5, 6.5, 11, 8]]], rtol=1e-15)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape, out", [((2, 3, 7, 5), 1), ((2, 3, 7, 5), (2, 3)), ((1, 2, 5, 3), (5, 3)),
                                        ((2, 2, 4, 9), (3, 4)), ((1, 1, 1, 1), 1)])
def test_adaptive_avg_pool_matches_oracle(shape, out, dtype):
    x = rng(1).standard_normal(shape).astype(dtype)
    want, back = oracle.adaptive_avg_pool2d(x, out)
    dy = rng(2).standard_normal(want.shape).astype(dtype)
    np.testing.assert_allclose(fnn.ops.adaptive_avg_pool2d_forward(x, out), want, **TOL[dtype])
    np.testing.assert_allclose(fnn.ops.adaptive_avg_pool2d_backward(dy, x.shape), back(dy), **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_max_pool_ties_padding_and_nan(dtype):
    x = np.array([[[[1.0, 3.0], [3.0, -5.0]]]], dtype)
    y, argmax = fnn.ops.max_pool2d_forward(x, 2)
    assert y.item() == 3.0 and argmax.item() == 1                 # the first maximum in window order
    y, _ = fnn.ops.max_pool2d_forward(-np.ones((1, 1, 3, 3), dtype), 3, 1, 1)
    assert (y == -1).all()                                       # padding never wins
    x[0, 0, 1, 1] = np.nan
    assert np.isnan(fnn.ops.max_pool2d_forward(x, 2)[0]).all()   # NaN propagates, as in PyTorch
    # Wide rows (the vectorised 2×2 path, full and partial steps): ties, NaN and -inf against the oracle.
    r = rng(7)
    x = r.integers(-2, 3, (2, 3, 6, 38)).astype(dtype)           # many ties
    x[0, 0, 2, 5] = x[1, 2, 4, 30] = np.nan
    x[0, 1, 3, 7] = -np.inf
    y, argmax = fnn.ops.max_pool2d_forward(x, 2)
    want = np.zeros(y.shape, np.int64)
    for n, c, oh, ow in np.ndindex(*y.shape):
        best, at = x[n, c, 2 * oh, 2 * ow], 2 * oh * 38 + 2 * ow
        for h, w in [(2 * oh, 2 * ow + 1), (2 * oh + 1, 2 * ow), (2 * oh + 1, 2 * ow + 1)]:
            v = x[n, c, h, w]
            if v > best or np.isnan(v):
                best, at = v, h * 38 + w
        want[n, c, oh, ow] = at
    np.testing.assert_array_equal(argmax, want)
    np.testing.assert_array_equal(y, np.take_along_axis(x.reshape(2, 3, -1), want.reshape(2, 3, -1), 2).reshape(y.shape))
    # Without argmax (inference) another vectorised path runs: the same choices, bit for bit (signed zeros
    # and NaN payloads included), for every row width (full and partial 8-output steps).
    x = r.integers(-1, 2, (2, 2, 4, 41)).astype(dtype)
    x[x == 0] = np.where(r.random(np.count_nonzero(x == 0)) < 0.5, -0.0, 0.0)  # ±0 ties
    x[0, 1, 1, 9] = x[1, 0, 2, 20] = np.nan
    x[1, 1, 3, 3] = -np.nan
    for width in range(2, 42):
        part = np.ascontiguousarray(x[..., :width])
        y_values, no_argmax = fnn.ops.max_pool2d_forward(part, 2, return_argmax=False)
        assert no_argmax is None
        assert y_values.tobytes() == fnn.ops.max_pool2d_forward(part, 2)[0].tobytes()


@pytest.mark.parametrize("make, x_shape", [
    (lambda: fnn.nn.MaxPool2d(2), (2, 3, 6, 5)),
    (lambda: fnn.nn.MaxPool2d((2, 3), stride=(1, 2), padding=1), (2, 2, 5, 6)),
    (lambda: fnn.nn.MaxPool1d(3, 2, 1), (2, 3, 8)),
    (lambda: fnn.nn.AvgPool2d(3, 2, 1), (2, 3, 6, 5)),
    (lambda: fnn.nn.AvgPool1d(3, 2, 1), (2, 3, 8)),
    (lambda: fnn.nn.AdaptiveAvgPool2d((2, 3)), (2, 3, 6, 5)),
    (lambda: fnn.nn.AdaptiveAvgPool2d(1), (2, 3, 6, 5)),
    (lambda: fnn.nn.AdaptiveAvgPool2d((None, 2)), (3, 5, 4)),   # unbatched
    (lambda: fnn.nn.MaxPool2d(2), (3, 4, 4)),                    # unbatched
    (lambda: fnn.nn.Reshape(2, -1), (3, 2, 4)),
    (lambda: fnn.nn.MaxPool2d(3, 2, 1, dilation=2, ceil_mode=True), (2, 2, 8, 9)),
    (lambda: fnn.nn.MaxPool1d(2, 3, 1, dilation=3, ceil_mode=True), (2, 3, 10)),
    (lambda: fnn.nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False), (2, 2, 6, 7)),
    (lambda: fnn.nn.AvgPool2d((2, 3), 2, (1, 1), ceil_mode=True), (2, 2, 5, 8)),
    (lambda: fnn.nn.AvgPool1d(3, 2, 1, ceil_mode=True, divisor_override=2), (2, 3, 8)),
    (lambda: fnn.nn.AdaptiveAvgPool1d(3), (2, 3, 8)),
    (lambda: fnn.nn.AdaptiveAvgPool1d(5), (3, 4)),                # unbatched, output longer than the input
])
def test_pool_gradients_finite_differences(make, x_shape):
    # Continuous random values: no ties within a window, and the argmax is stable under ±1e-6.
    check_module_gradients(make(), rng(1).standard_normal(x_shape))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pool_bits_do_not_depend_on_thread_count(dtype):
    x = rng(3).standard_normal((64, 8, 28, 28)).astype(dtype)
    dy = rng(4).standard_normal((64, 8, 14, 14)).astype(dtype)
    before = fnn.get_num_threads()
    seen = set()
    try:
        for threads, offset in [(1, 0), (2, 0), (3, 1)]:
            fnn.set_num_threads(threads)
            xs = np.empty(x.size + offset, dtype)[offset:].reshape(x.shape)
            xs[...] = x
            y, a = fnn.ops.max_pool2d_forward(xs, 2)
            y3, a3 = fnn.ops.max_pool2d_forward(xs, 3, 2, 1, True, 2, True)
            options = dict(ceil_mode=True, count_include_pad=False)
            out = [y, fnn.ops.max_pool2d_backward(dy, a, x.shape), fnn.ops.avg_pool2d_forward(xs, 3, 2, 1),
                   fnn.ops.avg_pool2d_backward(dy, x.shape, 2), fnn.ops.adaptive_avg_pool2d_forward(xs, 1),
                   fnn.ops.adaptive_avg_pool2d_backward(dy[:, :, :1, :1].copy(), x.shape), y3, a3,
                   fnn.ops.max_pool2d_backward(dy, a3, x.shape), fnn.ops.avg_pool2d_forward(xs, 4, 2, 1, **options),
                   fnn.ops.avg_pool2d_backward(dy, x.shape, 4, 2, 1, **options)]
            seen.add(tuple(o.tobytes() for o in out))
    finally:
        fnn.set_num_threads(before)
    assert len(seen) == 1


def test_pool_reprs_like_pytorch():
    assert repr(fnn.nn.MaxPool2d(2)) == "MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)"
    assert repr(fnn.nn.MaxPool1d(3, 1)) == "MaxPool1d(kernel_size=3, stride=1, padding=0, dilation=1, ceil_mode=False)"
    assert repr(fnn.nn.AvgPool2d((2, 3), padding=1)) == "AvgPool2d(kernel_size=(2, 3), stride=(2, 3), padding=1)"
    assert repr(fnn.nn.AdaptiveAvgPool2d(1)) == "AdaptiveAvgPool2d(output_size=1)"
    # Strings printed by torch 2.13 for the same constructor calls.
    assert repr(fnn.nn.MaxPool1d((3,), 2, 1, 2, True, True)) == \
        "MaxPool1d(kernel_size=(3,), stride=2, padding=1, dilation=2, ceil_mode=True)"
    assert repr(fnn.nn.MaxPool2d([2, 3], stride=[1, 2], dilation=(2, 1))) == \
        "MaxPool2d(kernel_size=[2, 3], stride=[1, 2], padding=0, dilation=(2, 1), ceil_mode=False)"
    assert repr(fnn.nn.AvgPool1d(3)) == "AvgPool1d(kernel_size=(3,), stride=(3,), padding=(0,))"
    assert repr(fnn.nn.AvgPool1d(3, 2, 1, True, False)) == "AvgPool1d(kernel_size=(3,), stride=(2,), padding=(1,))"
    assert repr(fnn.nn.AvgPool2d(3, ceil_mode=True, count_include_pad=False, divisor_override=3)) == \
        "AvgPool2d(kernel_size=3, stride=3, padding=0)"
    assert repr(fnn.nn.AdaptiveAvgPool1d(3)) == "AdaptiveAvgPool1d(output_size=3)"
    assert repr(fnn.nn.AdaptiveAvgPool2d([2, None])) == "AdaptiveAvgPool2d(output_size=[2, None])"
    assert repr(fnn.nn.AdaptiveAvgPool2d((None, 2))) == "AdaptiveAvgPool2d(output_size=(None, 2))"
    assert repr(fnn.nn.AdaptiveAvgPool2d(None)) == "AdaptiveAvgPool2d(output_size=None)"
    assert repr(fnn.nn.Dropout2d(0.3)) == "Dropout2d(p=0.3, inplace=False)"
    assert repr(fnn.nn.Reshape(16, 7, 7)) == "Reshape(16, 7, 7)"


def test_pool_shapes_and_dtypes():
    x = np.zeros((2, 3, 28, 28), np.float64)
    assert fnn.nn.MaxPool2d(2)(x).shape == (2, 3, 14, 14) and fnn.nn.MaxPool2d(2)(x).dtype == np.float64
    assert fnn.nn.AvgPool2d(3, 1, 1)(x).shape == (2, 3, 28, 28)
    assert fnn.nn.AdaptiveAvgPool2d(1)(x).shape == (2, 3, 1, 1)
    assert fnn.nn.MaxPool1d(2)(np.zeros((2, 3, 9), np.float32)).shape == (2, 3, 4)
    assert fnn.nn.MaxPool2d(2)(np.asfortranarray(np.ones((2, 3, 4, 4)))).shape == (2, 3, 2, 2)


def test_pool_bad_input_messages():
    pool = fnn.nn.MaxPool2d(3)
    with pytest.raises(ValueError, match=r"MaxPool2d\(kernel_size=3.*\(1, 2, 2, 5\).*smaller than the kernel"):
        pool(np.zeros((1, 2, 2, 5), np.float32))
    with pytest.raises(ValueError, match=r"MaxPool2d\(kernel_size=3.*\(N, C, H, W\).*\(5, 5\)"):
        pool(np.zeros((5, 5), np.float32))
    with pytest.raises(TypeError, match=r"AvgPool2d.*float"):
        fnn.nn.AvgPool2d(2)(np.zeros((1, 1, 4, 4), np.int64))
    with pytest.raises(ValueError, match=r"MaxPool2d.*before forward"):
        fnn.nn.MaxPool2d(2).backward(np.zeros((1, 1, 2, 2), np.float32))
    with pytest.raises(ValueError, match="at most half"):
        fnn.nn.MaxPool2d(2, padding=2)
    with pytest.raises(ValueError, match=r"MaxPool2d: padding 2 must be at most half of kernel_size 3"):
        fnn.nn.MaxPool2d(3, padding=2, dilation=3)             # PyTorch's limit ignores dilation
    with pytest.raises(ValueError, match=r"MaxPool1d\(kernel_size=3.*dilation=2.*\(2, 4\).*kernel \(5,\).*\(0,\)"):
        fnn.nn.MaxPool1d(3, dilation=2)(np.zeros((2, 4), np.float32))
    assert fnn.nn.AvgPool2d(3, ceil_mode=True)(np.zeros((1, 1, 1, 8), np.float32)).shape == (1, 1, 1, 3)  # as PyTorch
    with pytest.raises(ValueError, match=r"AvgPool2d\(kernel_size=3.*\(1, 1, 1, 8\).*output size \(0, 6\)"):
        fnn.nn.AvgPool2d(3, stride=1, ceil_mode=True)(np.zeros((1, 1, 1, 8), np.float32))
    with pytest.raises(ValueError, match=r"AvgPool2d: divisor_override must not be 0"):
        fnn.nn.AvgPool2d(2, divisor_override=0)
    with pytest.raises(TypeError, match=r"AvgPool1d: divisor_override must be an int"):
        fnn.nn.AvgPool1d(2, divisor_override=1.5)
    with pytest.raises(ValueError, match=r"avg_pool2d_forward: divisor_override must not be 0"):
        fnn.ops.avg_pool2d_forward(np.zeros((1, 1, 4, 4)), 2, divisor_override=0)
    with pytest.raises(ValueError, match=r"max_pool2d_forward: input \(1, 1, 3, 3\).*kernel \(5, 5\)"):
        fnn.ops.max_pool2d_forward(np.zeros((1, 1, 3, 3)), 3, dilation=2)
    for output_size in [0, (0,), None, (2, 3), 2.0]:
        with pytest.raises(ValueError, match=r"AdaptiveAvgPool1d: output_size must be a positive int"):
            fnn.nn.AdaptiveAvgPool1d(output_size)
    with pytest.raises(ValueError, match=r"AdaptiveAvgPool2d: output_size must be"):
        fnn.nn.AdaptiveAvgPool2d((2, 0))
    with pytest.raises(ValueError, match=r"AdaptiveAvgPool1d\(output_size=2\).*\(N, C, L\).*\(2, 3, 4, 5\)"):
        fnn.nn.AdaptiveAvgPool1d(2)(np.zeros((2, 3, 4, 5), np.float32))
    pool = fnn.nn.AvgPool2d(2)
    pool(np.zeros((1, 1, 4, 4), np.float32))
    with pytest.raises(ValueError, match=r"AvgPool2d.*\(1, 1, 3, 3\).*\(1, 1, 2, 2\)"):
        pool.backward(np.zeros((1, 1, 3, 3), np.float32))
    with pytest.raises(ValueError, match=r"Reshape\(5, 5\).*\(2, 3, 8\)"):
        fnn.nn.Reshape(5, 5)(np.zeros((2, 3, 8)))


def test_dropout2d_drops_whole_channels():
    fnn.manual_seed(0)
    drop = fnn.nn.Dropout2d(0.5)
    x = np.ones((8, 16, 3, 3), np.float32)
    y = drop(x)
    planes = y.reshape(8, 16, 9)
    assert set(np.unique(planes)) <= {0.0, 2.0} and (planes.min(2) == planes.max(2)).all()
    assert 0.3 < (planes[:, :, 0] == 0).mean() < 0.7
    g = drop.backward(np.ones_like(x))
    assert (g == y).all()
    fnn.manual_seed(0)
    assert fnn.nn.Dropout2d(0.5)(x).tobytes() == y.tobytes()        # seeded through fnn.manual_seed
    drop.eval()
    assert drop(x) is x or (drop(x) == x).all()
    with pytest.raises(ValueError, match=r"Dropout2d\(p=0.5.*\(4, 4\)"):
        drop(np.zeros((4, 4), np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pool_eval_skips_argmax_but_backward_still_works(dtype):
    x = rng(8).standard_normal((2, 3, 10, 12)).astype(dtype)
    y, argmax = fnn.ops.max_pool2d_forward(x, 2)
    y2, none = fnn.ops.max_pool2d_forward(x, 2, return_argmax=False)
    assert none is None and y2.tobytes() == y.tobytes()
    pool = fnn.nn.MaxPool2d(2)
    dy = rng(9).standard_normal(y.shape).astype(dtype)
    pool(x)
    trained = pool.backward(dy)
    pool.eval()
    assert pool(x).tobytes() == y.tobytes()
    assert pool.backward(dy).tobytes() == trained.tobytes()
