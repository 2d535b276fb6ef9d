"""Pooling (K3, L3), Dropout2d and Reshape: kernels against the nested-loop oracle (tests/conv_oracles.py),
finite-difference gradients (max-pool inputs without ties), bit-identical results for any thread count,
reprs and bad input."""
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
            out = [y, fnn.ops.max_pool2d_backward(dy, a, x.shape), fnn.ops.avg_pool2d_forward(xs, 3, 2, 1),
                   fnn.ops.avg_pool2d_backward(dy, x.shape, 2), fnn.ops.adaptive_avg_pool2d_forward(xs, 1),
                   fnn.ops.adaptive_avg_pool2d_backward(dy[:, :, :1, :1].copy(), x.shape)]
            seen.add(tuple(o.tobytes() for o in out))
    finally:
        fnn.set_num_threads(before)
    assert len(seen) == 1


def test_pool_reprs_like_pytorch():
    assert repr(fnn.nn.MaxPool2d(2)) == "MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)"
    assert repr(fnn.nn.MaxPool1d(3, 1)) == "MaxPool1d(kernel_size=3, stride=1, padding=0, dilation=1, ceil_mode=False)"
    assert repr(fnn.nn.AvgPool2d((2, 3), padding=1)) == "AvgPool2d(kernel_size=(2, 3), stride=(2, 3), padding=1)"
    assert repr(fnn.nn.AdaptiveAvgPool2d(1)) == "AdaptiveAvgPool2d(output_size=1)"
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
    for make in [lambda: fnn.nn.MaxPool2d(2, ceil_mode=True), lambda: fnn.nn.AvgPool2d(2, count_include_pad=False),
                 lambda: fnn.nn.MaxPool2d(2, dilation=2), lambda: fnn.nn.MaxPool2d(2, return_indices=True)]:
        with pytest.raises(NotImplementedError):
            make()
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
