import numpy as np
import pytest

import fastnn as fnn
from harness import TOL, check_module_gradients, rng


def dense_oracle(x, w, b):
    return x @ w.T + b


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n,i,o", [(1, 1, 1), (1, 784, 256), (7, 13, 5), (64, 784, 256), (3, 1000, 2)])
def test_linear_kernels_match_numpy(dtype, n, i, o):
    r = rng(n * i + o)
    x, w, b = (r.standard_normal(s).astype(dtype) for s in [(n, i), (o, i), (o,)])
    dy = r.standard_normal((n, o)).astype(dtype)
    y = fnn.ops.linear_forward(x, w, b)
    tol = TOL[dtype]
    scale = np.sqrt(i)  # errors grow with the length of the dot products
    np.testing.assert_allclose(y, dense_oracle(x.astype(np.float64), w, b), rtol=tol["rtol"] * scale,
                               atol=tol["atol"] * scale)
    gw, gb = np.ones_like(w), np.ones_like(b)  # accumulate onto existing values
    dx = fnn.ops.linear_backward(dy, x, w, gw, gb)
    d64 = dy.astype(np.float64)
    np.testing.assert_allclose(dx, d64 @ w, rtol=tol["rtol"] * scale, atol=tol["atol"] * scale * 10)
    np.testing.assert_allclose(gw, 1 + d64.T @ x, rtol=tol["rtol"] * scale, atol=tol["atol"] * scale * 10)
    np.testing.assert_allclose(gb, 1 + d64.sum(0), rtol=tol["rtol"] * scale, atol=tol["atol"] * scale * 10)


def test_linear_gradients_finite_differences():
    fnn.manual_seed(0)
    check_module_gradients(fnn.nn.Linear(5, 3), rng(1).standard_normal((4, 5)))
    check_module_gradients(fnn.nn.Linear(4, 2, bias=False), rng(2).standard_normal((3, 4)))


def test_linear_unbatched_input():
    fnn.manual_seed(0)
    lin = fnn.nn.Linear(6, 3)
    x = rng().standard_normal(6).astype(np.float32)
    y = lin(x)
    assert y.shape == (3,)
    np.testing.assert_allclose(y, lin(x[None])[0], rtol=1e-6)
    lin(x)
    assert lin.backward(np.ones(3, np.float32)).shape == (6,)


def test_linear_default_init_bounds_like_pytorch():
    fnn.manual_seed(0)
    lin = fnn.nn.Linear(400, 300)
    bound = 1 / np.sqrt(400)
    assert np.abs(lin.weight.data).max() <= bound and np.abs(lin.weight.data).max() > 0.95 * bound
    assert np.abs(lin.bias.data).max() <= bound
    assert lin.weight.data.dtype == np.float32


def test_same_seed_same_weights_bit_for_bit():
    fnn.manual_seed(123)
    a = fnn.nn.Linear(30, 20).weight.data.copy()
    fnn.manual_seed(123)
    b = fnn.nn.Linear(30, 20).weight.data
    assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("make", [
    lambda x: np.asfortranarray(x),
    lambda x: x[:, ::2][:, :10] if False else np.repeat(x, 2, axis=1)[:, ::2],
    lambda x: x.astype(np.float64),
    lambda x: (x.setflags(write=False), x)[1],
])
def test_linear_accepts_any_layout_and_float64(make):
    fnn.manual_seed(0)
    lin = fnn.nn.Linear(10, 4)
    x = rng().standard_normal((5, 10)).astype(np.float32)
    expected = lin(x.copy())
    np.testing.assert_allclose(lin(make(x.copy())), expected, rtol=1e-6, atol=1e-6)


def test_linear_bad_input_messages():
    lin = fnn.nn.Linear(784, 10)
    with pytest.raises(ValueError, match=r"Linear\(784, 10\).*\(N, 784\).*\(3, 100\)"):
        lin(np.zeros((3, 100), np.float32))
    with pytest.raises(TypeError, match=r"Linear\(784, 10\).*float"):
        lin(np.zeros((3, 784), np.int64))
    with pytest.raises(TypeError, match=r"Linear\(784, 10\).*ndarray"):
        lin("not an array")
    bad = np.zeros((2, 784), np.float32)
    bad[1, 5] = np.nan
    with pytest.raises(ValueError, match=r"Linear\(784, 10\).*NaN.*\(2, 784\)"):
        lin(bad)
    bad[1, 5] = np.inf
    with pytest.raises(ValueError, match="NaN or infinity"):
        lin(bad)
    with pytest.raises(ValueError, match=r"Linear\(784, 10\).*before forward"):
        fnn.nn.Linear(784, 10).backward(np.zeros((1, 10), np.float32))
    lin(np.zeros((3, 784), np.float32))
    with pytest.raises(ValueError, match=r"Linear\(784, 10\).*\(3, 9\).*\(3, 10\)"):
        lin.backward(np.zeros((3, 9), np.float32))


def test_frozen_linear_gets_no_gradient():
    lin = fnn.nn.Linear(4, 3)
    lin.weight.requires_grad = False
    lin(np.ones((2, 4), np.float32))
    lin.backward(np.ones((2, 3), np.float32))
    assert not lin.weight.grad.any()
    assert lin.bias.grad.any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,i,o", [(33, 70, 257), (64, 784, 256), (129, 129, 129), (3, 784, 256), (70, 300, 10),
                                   (40, 1024, 300), (49, 40, 128), (97, 40, 128),  # last two: 1-row tail slices
                                   (600, 512, 128), (700, 128, 384),  # long batches: split over the batch
                                   (4, 7, 4), (3, 5, 9), (6, 6, 6), (2, 3, 5),  # tiny: under Eigen's GEMM cutoff
                                   # batch 1 (Eigen's GEMV): rows in blocks of 8, of 4 when rows are long
                                   (1, 784, 256), (1, 100, 300), (1, 37, 4000), (1, 9000, 20)])
def test_linear_bits_do_not_depend_on_alignment_or_thread_count(dtype, n, i, o):
    """Bit-for-bit reproducibility (pytorch#88718): the same values at any address and with any
    number of threads give the same bits, forward and backward."""
    r = rng(5)
    x, w, b, dy = (r.standard_normal(s).astype(dtype) for s in [(n, i), (o, i), (o,), (n, o)])

    def shifted(a, offset):
        out = np.empty(a.size + offset, a.dtype)[offset:].reshape(a.shape)
        out[...] = a
        return out

    before = fnn.get_num_threads()
    seen = set()
    try:
        for threads, offset in [(1, 0), (2, 0), (3, 0), (4, 0), (2, 1), (2, 3), (1, 5)]:
            fnn.set_num_threads(threads)
            gw, gb = shifted(np.zeros_like(w), offset), shifted(np.zeros_like(b), offset)
            y = fnn.ops.linear_forward(shifted(x, offset), shifted(w, offset), shifted(b, offset))
            dx = fnn.ops.linear_backward(shifted(dy, offset), shifted(x, offset), shifted(w, offset), gw, gb)
            seen.add((y.tobytes(), dx.tobytes(), gw.tobytes(), gb.tobytes()))
    finally:
        fnn.set_num_threads(before)
    assert len(seen) == 1


def test_thread_control():
    before = fnn.get_num_threads()
    try:
        fnn.set_num_threads(1)
        assert fnn.get_num_threads() == 1
        fnn.set_num_threads(3)
        assert fnn.get_num_threads() == 3
        with pytest.raises(ValueError, match="n must be >= 1"):
            fnn.set_num_threads(0)
    finally:
        fnn.set_num_threads(before)


def test_linear_takes_any_leading_dimensions():
    lin = fnn.nn.Linear(4, 3).double()
    x = rng(5).standard_normal((2, 5, 4))
    y = lin(x)
    np.testing.assert_allclose(y, x @ lin.weight.data.T + lin.bias.data, rtol=1e-12)
    lin.zero_grad()
    g = rng(6).standard_normal(y.shape)
    dx = lin.backward(g)
    np.testing.assert_allclose(dx, g @ lin.weight.data, rtol=1e-12)
    np.testing.assert_allclose(lin.weight.grad, g.reshape(-1, 3).T @ x.reshape(-1, 4), rtol=1e-12)
    with pytest.raises(ValueError, match=r"grad_output has shape \(10, 3\)"):
        lin(x)
        lin.backward(g.reshape(10, 3))
