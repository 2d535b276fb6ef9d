"""Activations against plain NumPy oracles, finite differences and bad input."""
import numpy as np
import pytest

import fastnn as fnn
from harness import TOL, check_module_gradients, rng

nn = fnn.nn
F64_TOL = dict(rtol=1e-12, atol=1e-14)
TOLS = {np.float64: F64_TOL, np.float32: TOL[np.float32]}
SELU_SCALE, SELU_ALPHA = 1.0507009873554805, 1.6732632423543772


# ---- NumPy oracles (float64, written to never overflow: no warnings, since pytest turns them into errors) ----

def sigmoid(z):
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def elu(z, alpha):
    return np.where(z > 0, z, alpha * np.expm1(np.minimum(z, 0)))


def elu_grad(z, alpha):
    return np.where(z > 0, 1.0, alpha * np.exp(np.minimum(z, 0)))


def softplus(z, beta, threshold):
    return np.where(beta * z > threshold, z, np.logaddexp(0, beta * z) / beta)


# GELU (Activation::gelu): erf form and tanh form, against math.erfc

_erfc = np.vectorize(__import__("math").erfc, otypes=[np.float64])


def gelu_oracle(z, approximate):
    if approximate == "tanh":  # 0.5·z·(1 + tanh u) = z·σ(2u), which keeps the negative tail accurate
        u = np.sqrt(2 / np.pi) * (z + 0.044715 * z ** 3)
        s = sigmoid(2 * u)
        return z * s, s + 2 * z * s * sigmoid(-2 * u) * np.sqrt(2 / np.pi) * (1 + 3 * 0.044715 * z * z)
    cdf = 0.5 * _erfc(-z / np.sqrt(2))
    return z * cdf, cdf + z * np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)


# name -> (module factory, f, f'); the derivative at a kink is the left limit.
ELEMENTWISE = {
    "ReLU": (lambda: nn.ReLU(), lambda z: np.maximum(z, 0), lambda z: (z > 0) * 1.0),
    "ReLU(max_value=6)": (lambda: nn.ReLU(max_value=6), lambda z: np.clip(z, 0, 6),
                          lambda z: ((z > 0) & (z <= 6)) * 1.0),
    "ReLU6": (lambda: nn.ReLU6(), lambda z: np.clip(z, 0, 6), lambda z: ((z > 0) & (z <= 6)) * 1.0),
    "LeakyReLU": (lambda: nn.LeakyReLU(), lambda z: np.where(z > 0, z, 0.01 * z),
                  lambda z: np.where(z > 0, 1.0, 0.01)),
    "LeakyReLU(0.2, max_value=3)": (lambda: nn.LeakyReLU(0.2, max_value=3),
                                    lambda z: np.where(z > 0, np.minimum(z, 3), 0.2 * z),
                                    lambda z: np.where(z > 0, (z <= 3) * 1.0, 0.2)),
    "ELU": (lambda: nn.ELU(), lambda z: elu(z, 1.0), lambda z: elu_grad(z, 1.0)),
    "ELU(alpha=0.5)": (lambda: nn.ELU(alpha=0.5), lambda z: elu(z, 0.5), lambda z: elu_grad(z, 0.5)),
    "SELU": (lambda: nn.SELU(), lambda z: SELU_SCALE * elu(z, SELU_ALPHA),
             lambda z: SELU_SCALE * elu_grad(z, SELU_ALPHA)),
    "Sigmoid": (lambda: nn.Sigmoid(), sigmoid, lambda z: sigmoid(z) * sigmoid(-z)),
    "Hardsigmoid": (lambda: nn.Hardsigmoid(),
                    lambda z: np.where(z < -2.5, 0.0, np.where(z > 2.5, 1.0, 0.2 * z + 0.5)),
                    lambda z: np.where((z > -2.5) & (z <= 2.5), 0.2, 0.0)),
    "Tanh": (lambda: nn.Tanh(), np.tanh, lambda z: 1 - np.tanh(z) ** 2),
    "Softplus": (lambda: nn.Softplus(), lambda z: softplus(z, 1.0, 20.0),
                 lambda z: np.where(z > 20, 1.0, sigmoid(z))),
    "Softplus(beta=2, threshold=5)": (lambda: nn.Softplus(beta=2, threshold=5), lambda z: softplus(z, 2.0, 5.0),
                                      lambda z: np.where(2 * z > 5, 1.0, sigmoid(2 * z))),
    "Softsign": (lambda: nn.Softsign(), lambda z: z / (1 + np.abs(z)), lambda z: 1 / (1 + np.abs(z)) ** 2),
    "SiLU": (lambda: nn.SiLU(), lambda z: z * sigmoid(z), lambda z: sigmoid(z) * (1 + z * sigmoid(-z))),
    "Threshold": (lambda: nn.Threshold(), lambda z: np.where(z > 1, z, 0.0), lambda z: (z > 1) * 1.0),
    "Threshold(0.5, -2)": (lambda: nn.Threshold(0.5, -2.0), lambda z: np.where(z > 0.5, z, -2.0),
                           lambda z: (z > 0.5) * 1.0),
    "GELU": (lambda: nn.GELU(), lambda z: gelu_oracle(z, "none")[0], lambda z: gelu_oracle(z, "none")[1]),
    "GELU(tanh)": (lambda: nn.GELU(approximate="tanh"), lambda z: gelu_oracle(z, "tanh")[0],
                   lambda z: gelu_oracle(z, "tanh")[1]),
}

# Kink points of every function above, large magnitudes (overflow), tiny ones (cancellation near 0), random.
KINKS = [0.0, -0.0, 2.5, -2.5, 1.0, 0.5, 3.0, 6.0, 5.0, 20.0]
SPECIAL = KINKS + [-100.0, 100.0, -1000.0, 1000.0, -30.0, 30.0, -25.0, 25.0, 1e-8, -1e-8, 1e-3, -1e-3,
                   0.4999, -0.4999, 0.5001, -0.5001, 19.99, 20.01, -1e-30, 1e-30]


def special_inputs(seed=0):
    # 429 values: whole SIMD packets, then a scalar tail.
    return np.concatenate([SPECIAL, rng(seed).standard_normal(300) * 4, np.linspace(-12, 12, 99)])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_elementwise_forward_and_derivative_match_numpy(name, dtype):
    make, f, df = ELEMENTWISE[name]
    x = special_inputs().astype(dtype).reshape(3, -1)
    g = rng(1).standard_normal(x.shape).astype(dtype)
    m = make()
    y = m(x)
    dx = m.backward(g)
    assert y.dtype == dtype and dx.dtype == dtype and y.shape == x.shape and dx.shape == x.shape
    x64 = x.astype(np.float64)
    assert np.isfinite(y).all() and np.isfinite(dx).all()
    np.testing.assert_allclose(y, f(x64), **TOLS[dtype], err_msg=f"{name} forward")
    np.testing.assert_allclose(dx, g.astype(np.float64) * df(x64), **TOLS[dtype], err_msg=f"{name} derivative")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_elementwise_large_arrays_take_the_threaded_path(name, dtype):
    # Above kParallelMinElements (2^15) and not a multiple of the SIMD width or block size.
    make, f, df = ELEMENTWISE[name]
    x = (rng(2).standard_normal(100_003) * 6).astype(dtype)
    g = rng(3).standard_normal(x.shape).astype(dtype)
    m = make()
    y, dx = m(x), m.backward(g)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(y, f(x64), **TOLS[dtype])
    np.testing.assert_allclose(dx, g * df(x64), **TOLS[dtype])


def test_kink_values_take_the_left_limit():
    x = np.array([0.0, 6.0, -2.5, 2.5, 1.0])
    g = np.ones_like(x)
    relu6 = nn.ReLU6()
    relu6(x)
    np.testing.assert_array_equal(relu6.backward(g), [0, 1, 0, 1, 1])  # ReLU'(0) = 0, ReLU6'(6) = 1
    hs = nn.Hardsigmoid()
    np.testing.assert_array_equal(hs(x)[2:4], [0.0, 1.0])
    np.testing.assert_allclose(hs.backward(g), [0.2, 0, 0, 0.2, 0.2])
    th = nn.Threshold(1.0, 0.0)
    np.testing.assert_array_equal(th(x), [0, 6, 0, 2.5, 0])  # x at the threshold maps to value
    np.testing.assert_array_equal(th.backward(g), [0, 1, 0, 1, 0])
    elu = nn.ELU(alpha=0.5)
    elu(x)
    assert elu.backward(g)[0] == 0.5  # left limit α at 0
    lrelu = nn.LeakyReLU(0.1)
    lrelu(x)
    assert lrelu.backward(g)[0] == pytest.approx(0.1)


def test_relu_with_max_value_6_equals_relu6():
    x = special_inputs(5).reshape(3, -1)
    g = rng(6).standard_normal(x.shape)
    a, b = nn.ReLU(max_value=6), nn.ReLU6()
    np.testing.assert_array_equal(a(x), b(x))
    np.testing.assert_array_equal(a.backward(g), b.backward(g))
    assert a(x).max() == 6.0


def test_large_magnitudes_are_stable():
    x = np.array([-1e4, -1000, -100, 100, 1000, 1e4])
    for dtype in (np.float32, np.float64):
        xs = x.astype(dtype)
        for m in (nn.Sigmoid(), nn.Softplus(), nn.SiLU(), nn.Tanh(), nn.ELU(), nn.SELU(), nn.Softsign()):
            y = m(xs)
            assert np.isfinite(y).all(), m
            assert np.isfinite(m.backward(np.ones_like(xs))).all(), m
        np.testing.assert_allclose(nn.Sigmoid()(xs), [0, 0, 0, 1, 1, 1], atol=1e-30)
        np.testing.assert_allclose(nn.Softplus()(xs), [0, 0, 0, 100, 1000, 1e4], atol=1e-30)
        np.testing.assert_allclose(nn.Tanh()(xs), [-1, -1, -1, 1, 1, 1])


# ---- softmax / log-softmax ---------------------------------------------------------------------------

def softmax_oracle(x, dim):
    e = np.exp(x - x.max(axis=dim, keepdims=True))
    return e / e.sum(axis=dim, keepdims=True)


def log_softmax_oracle(x, dim):
    z = x - x.max(axis=dim, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=dim, keepdims=True))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape,dim", [((2, 3, 4), 0), ((2, 3, 4), 1), ((2, 3, 4), -1), ((2, 3, 4), 2),
                                       ((2, 5, 300), 1), ((64, 1000), -1), ((40, 1000), 0), ((7,), 0)])
@pytest.mark.parametrize("log", [False, True])
def test_softmax_and_log_softmax_match_numpy(shape, dim, log, dtype):
    x = rng(7).standard_normal(shape) * 10
    x.reshape(-1)[:4] = [100.0, -100.0, 1000.0, -1000.0][:x.size]  # overflow without the max subtraction
    x = x.astype(dtype)
    g = rng(8).standard_normal(shape).astype(dtype)
    m = nn.LogSoftmax(dim) if log else nn.Softmax(dim=dim)
    y = m(x)
    dx = m.backward(g)
    assert y.dtype == dtype and dx.dtype == dtype and np.isfinite(y).all() and np.isfinite(dx).all()
    x64, g64 = x.astype(np.float64), g.astype(np.float64)
    if log:
        ref = log_softmax_oracle(x64, dim)
        dref = g64 - np.exp(ref) * g64.sum(axis=dim, keepdims=True)
    else:
        ref = softmax_oracle(x64, dim)
        dref = ref * (g64 - (g64 * ref).sum(axis=dim, keepdims=True))
        np.testing.assert_allclose(y.sum(axis=dim), 1.0, rtol=1e-5 if dtype == np.float32 else 1e-13)
    tol = dict(TOLS[dtype])
    if log:  # log-softmax values reach ~2000 here: scale the absolute tolerance
        tol["atol"] = tol["atol"] * 2000
    np.testing.assert_allclose(y, ref, **tol)
    np.testing.assert_allclose(dx, dref, **tol)


def test_softmax_dim_out_of_range():
    with pytest.raises(ValueError, match=r"Softmax\(dim=3\).*\(2, 3\)"):
        nn.Softmax(dim=3)(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"LogSoftmax\(dim=-3\)"):
        nn.LogSoftmax(dim=-3)(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="out of range"):
        fnn.ops.softmax_forward(np.zeros((2, 3)), 2)


# ---- finite-difference gradient checks of every module ------------------------------------------------

def away_from_kinks(x, kinks=KINKS + [-1.0, -0.5], margin=0.05):
    for k in kinks:
        close = np.abs(x - k) < margin
        x = np.where(close, k + np.sign(x - k + 1e-12) * margin * 2, x)
    return x


@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_elementwise_gradients_finite_differences(name):
    x = away_from_kinks(rng(9).uniform(-8, 8, (3, 2, 4)))
    check_module_gradients(ELEMENTWISE[name][0](), x)


@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("cls", [nn.Softmax, nn.LogSoftmax])
def test_softmax_gradients_finite_differences(cls, dim):
    check_module_gradients(cls(dim=dim), rng(10).standard_normal((2, 3, 4)) * 3)


@pytest.mark.parametrize("num_parameters,shape", [(1, (2, 3, 4)), (3, (2, 3, 4)), (3, (4, 3)), (1, (5,)),
                                                  (2, (2, 2, 2, 3))])
def test_prelu_gradients_finite_differences_on_input_and_weight(num_parameters, shape):
    m = nn.PReLU(num_parameters, init=0.25)
    m.weight.data[:] = rng(11).uniform(0.05, 0.5, num_parameters)
    dx = check_module_gradients(m, away_from_kinks(rng(12).standard_normal(shape) * 2))
    assert dx.shape == shape


def test_maxout_gradients_finite_differences():
    fnn.manual_seed(0)
    check_module_gradients(nn.Maxout(5, 3, pieces=4), rng(13).standard_normal((6, 5)))
    check_module_gradients(nn.Maxout(4, 2), rng(14).standard_normal(4))  # unbatched


def test_activations_inside_sequential_gradients():
    fnn.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 6), nn.PReLU(), nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3),
                          nn.LogSoftmax(dim=1))
    check_module_gradients(model, rng(15).standard_normal((3, 4)))


# ---- PReLU ---------------------------------------------------------------------------------------------

def prelu_oracle(x, w):
    w = w.reshape((1, -1) + (1,) * (x.ndim - 2)) if w.size > 1 else w
    return np.where(x > 0, x, w * x)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_prelu_matches_numpy_per_channel_and_shared(dtype):
    x = rng(16).standard_normal((4, 3, 5, 2)).astype(dtype)
    x[0, 0, 0, :] = 0.0
    g = rng(17).standard_normal(x.shape).astype(dtype)
    for c in (1, 3):
        m = nn.PReLU(c).to(dtype)
        m.weight.data[:] = np.linspace(0.1, 0.3, c)
        w = m.weight.data.astype(np.float64)
        y = m(x)
        dx = m.backward(g)
        x64, g64 = x.astype(np.float64), g.astype(np.float64)
        np.testing.assert_allclose(y, prelu_oracle(x64, w), **TOLS[dtype])
        np.testing.assert_allclose(dx, g64 * np.where(x64 > 0, 1.0, prelu_oracle(np.ones_like(x64) * -1, w) * -1),
                                   **TOLS[dtype])
        dw = (g64 * np.where(x64 > 0, 0.0, x64)).sum(axis=(0, 2, 3) if c > 1 else None)
        np.testing.assert_allclose(m.weight.grad, np.atleast_1d(dw), rtol=TOLS[dtype]["rtol"] * 10,
                                   atol=TOLS[dtype]["atol"] * 100)


def test_prelu_defaults_accumulation_and_frozen_weight():
    m = nn.PReLU()
    assert m.weight.data.shape == (1,) and m.weight.data[0] == np.float32(0.25)
    assert [n for n, _ in m.named_parameters()] == ["weight"]
    x = np.array([[-2.0, 1.0], [-1.0, 3.0]], np.float32)
    np.testing.assert_allclose(m(x), [[-0.5, 1], [-0.25, 3]])
    g = np.ones_like(x)
    m.backward(g)
    m.backward(g)
    assert m.weight.grad[0] == pytest.approx(-6.0)  # accumulates: 2 × (−2 − 1)
    m.zero_grad()
    m.backward_parameters(g)
    assert m.weight.grad[0] == pytest.approx(-3.0)
    m.weight.requires_grad = False
    m.zero_grad()
    np.testing.assert_allclose(m.backward(g), [[0.25, 1], [0.25, 1]])
    assert not m.weight.grad.any()


def test_prelu_learns_alpha():
    true_alpha = np.array([0.1, 0.4], np.float32)
    x = rng(18).standard_normal((256, 2)).astype(np.float32)
    target = prelu_oracle(x.astype(np.float64), true_alpha.astype(np.float64)).astype(np.float32)
    m = nn.PReLU(2)
    for _ in range(200):
        m.zero_grad()
        y = m(x)
        m.backward_parameters((y - target) / len(x))
        m.weight.data -= 2.0 * m.weight.grad
    np.testing.assert_allclose(m.weight.data, true_alpha, atol=1e-4)


def test_prelu_weight_gradient_does_not_depend_on_thread_count():
    x = rng(19).standard_normal((70, 4, 300)).astype(np.float32)  # above the threading threshold
    g = rng(20).standard_normal(x.shape).astype(np.float32)
    before = fnn.get_num_threads()
    grads = []
    try:
        for threads in (1, 2, 3):
            fnn.set_num_threads(threads)
            for c in (1, 4):
                m = nn.PReLU(c)
                m(x)
                grads.append(m.backward(g).copy())
                grads.append(m.weight.grad.copy())
    finally:
        fnn.set_num_threads(before)
    for i in range(4):
        assert all(np.array_equal(grads[i], grads[i + 4 * k]) for k in (1, 2))


def test_prelu_channel_mismatch():
    with pytest.raises(ValueError, match=r"PReLU\(num_parameters=3\).*\(N, 3, \.\.\.\).*\(2, 4\)"):
        nn.PReLU(3)(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"PReLU\(num_parameters=3\)"):
        nn.PReLU(3)(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="num_parameters"):
        nn.PReLU(0)


# ---- Maxout --------------------------------------------------------------------------------------------

def test_maxout_forward_backward_and_parameter_names():
    fnn.manual_seed(3)
    m = nn.Maxout(5, 3, pieces=4)
    assert [(n, p.shape) for n, p in m.named_parameters()] == [("linear.weight", (12, 5)), ("linear.bias", (12,))]
    assert repr(m) == "Maxout(5, 3, pieces=4)"
    x = rng(21).standard_normal((6, 5)).astype(np.float32)
    z = x.astype(np.float64) @ m.linear.weight.data.T + m.linear.bias.data
    y = m(x)
    np.testing.assert_allclose(y, z.reshape(6, 3, 4).max(-1), rtol=1e-5, atol=1e-6)
    g = rng(22).standard_normal((6, 3)).astype(np.float32)
    dx = m.backward(g)
    dz = np.zeros((6, 3, 4))
    np.put_along_axis(dz, z.reshape(6, 3, 4).argmax(-1)[..., None], g[..., None], axis=-1)
    dz = dz.reshape(6, 12)
    np.testing.assert_allclose(dx, dz @ m.linear.weight.data, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m.linear.weight.grad, dz.T @ x, rtol=1e-5, atol=1e-6)
    assert m(x[0]).shape == (3,) and m.backward(g[0]).shape == (5,)


def test_maxout_kernel_ties_and_bad_argmax():
    z = np.array([[1.0, 3.0, 3.0, 2.0]])
    y, arg = fnn.ops.maxout_forward(z, 2)
    np.testing.assert_array_equal(y, [[3.0, 3.0]])
    np.testing.assert_array_equal(arg, [[1, 0]])  # first maximum wins a tie
    np.testing.assert_array_equal(fnn.ops.maxout_backward(np.array([[5.0, 7.0]]), arg, 2), [[0, 5, 7, 0]])
    with pytest.raises(ValueError, match="outside"):
        fnn.ops.maxout_backward(np.array([[5.0, 7.0]]), np.array([[0, 2]], np.int32), 2)
    with pytest.raises(ValueError, match="multiple of pieces"):
        fnn.ops.maxout_forward(np.zeros((2, 5)), 2)


# ---- input handling and errors -------------------------------------------------------------------------

ALL_MODULES = [ELEMENTWISE[name][0] for name in ELEMENTWISE] + [
    lambda: nn.Softmax(dim=1), lambda: nn.LogSoftmax(dim=0), lambda: nn.PReLU(3), lambda: nn.Maxout(3, 2)]


def make_input(shape=(4, 3), seed=23):
    return away_from_kinks(rng(seed).standard_normal(shape) * 3).astype(np.float32)


@pytest.mark.parametrize("make", ALL_MODULES)
@pytest.mark.parametrize("layout", ["fortran", "strided", "readonly", "float64", "float16", "list"])
def test_any_layout_gives_the_same_result(make, layout):
    x = make_input()
    m = make()
    expected_y = m(x.copy())
    g = rng(24).standard_normal(expected_y.shape).astype(np.float32)
    expected_dx = m.backward(g.copy())
    if layout == "fortran":
        xin, gin = np.asfortranarray(x), np.asfortranarray(g)
    elif layout == "strided":
        xin, gin = np.repeat(x, 2, axis=1)[:, ::2], np.repeat(g, 2, axis=1)[:, ::2]
        assert not xin.flags.c_contiguous
    elif layout == "readonly":
        xin, gin = x.copy(), g.copy()
        xin.setflags(write=False)
        gin.setflags(write=False)
    elif layout == "float64":
        xin, gin = x.astype(np.float64), g.astype(np.float64)
    elif layout == "float16":
        xin, gin = x.astype(np.float16), g
    else:
        xin, gin = x.tolist(), g.tolist()
    y = m(xin)
    dx = m.backward(gin)
    assert y.flags.c_contiguous and dx.flags.c_contiguous
    has_params = bool(m.parameters())
    want = np.float64 if layout == "float64" and not has_params else np.float32
    assert y.dtype == want and dx.dtype == want
    tol = dict(rtol=2e-3, atol=2e-3) if layout == "float16" else dict(rtol=1e-5, atol=1e-6)
    if layout == "float16":  # the input itself was rounded: compare with the rounded input
        expected_y = m(x.astype(np.float16).astype(np.float32))
    np.testing.assert_allclose(y, expected_y, **tol)
    if layout != "float16":
        np.testing.assert_allclose(dx, expected_dx, **tol)


@pytest.mark.parametrize("make", ALL_MODULES)
def test_bad_input_errors_name_the_layer(make):
    m = make()
    name = type(m).__name__
    with pytest.raises(ValueError, match=rf"{name}\(.*before forward"):
        m.backward(np.zeros((4, 3), np.float32))
    with pytest.raises(TypeError, match=rf"{name}\(.*float.*int64"):
        m(np.zeros((4, 3), np.int64))
    with pytest.raises(TypeError, match=rf"{name}\(.*ndarray"):
        m("not an array")
    y = m(make_input())
    bad = np.zeros((y.shape[0] + 1,) + y.shape[1:], np.float32)
    with pytest.raises(ValueError, match=rf"{name}\(.*{tuple(bad.shape)}.*{tuple(y.shape)}"):
        m.backward(bad)
    with pytest.raises(TypeError, match=rf"{name}\(.*grad_output.*int"):
        m.backward(np.zeros(y.shape, np.int32))


def test_dtype_follows_input_and_empty_arrays():
    x = make_input().astype(np.float64)
    assert nn.ReLU()(x).dtype == np.float64
    assert nn.Softmax()(x).dtype == np.float64
    assert nn.PReLU()(x).dtype == np.float32  # parametric layers compute in their parameters' dtype
    assert nn.PReLU().double()(x.astype(np.float32)).dtype == np.float64
    for m in (nn.ReLU(), nn.Sigmoid(), nn.Softmax(dim=1), nn.PReLU(5)):
        e = np.zeros((0, 5), np.float32)
        assert m(e).shape == (0, 5) and m.backward(e).shape == (0, 5)
    s = nn.Softmax(dim=0)
    assert s(np.float32(3.0)) == 1.0  # 0-d input: a single class


def test_constructor_validation_and_repr():
    assert [repr(m) for m in (nn.ReLU(), nn.ReLU(6), nn.ReLU6(), nn.LeakyReLU(), nn.ELU(alpha=0.5), nn.SELU(),
                              nn.Softplus(), nn.Threshold(0.5, -2), nn.Softmax(dim=1), nn.LogSoftmax(),
                              nn.PReLU(3), nn.Hardsigmoid(), nn.ReLU(inplace=True))] == [
        "ReLU()", "ReLU(max_value=6.0)", "ReLU6()", "LeakyReLU(negative_slope=0.01)", "ELU(alpha=0.5)", "SELU()",
        "Softplus(beta=1.0, threshold=20.0)", "Threshold(threshold=0.5, value=-2.0)", "Softmax(dim=1)",
        "LogSoftmax(dim=-1)", "PReLU(num_parameters=3)", "Hardsigmoid()", "ReLU(inplace=True)"]
    with pytest.raises(TypeError, match="inplace"):
        nn.ReLU(True)  # PyTorch's positional inplace flag is not mistaken for a cap of 1
    with pytest.raises(ValueError, match="max_value"):
        nn.ReLU(-1)
    with pytest.raises(ValueError, match="beta"):
        nn.Softplus(beta=0)
    with pytest.raises(TypeError, match="dim"):
        nn.Softmax(dim=None)
    with pytest.raises(ValueError, match="pieces"):
        nn.Maxout(3, 2, pieces=0)
    assert "Hardsigmoid" in nn.__all__ and "Identity" in nn.__all__


def test_ops_defaults_and_checks():
    ops, A = fnn.ops, fnn.ops.Activation
    x = special_inputs().astype(np.float32)
    np.testing.assert_array_equal(ops.activation_forward(A.relu, x), np.maximum(x, 0))  # no cap by default
    np.testing.assert_allclose(ops.activation_forward(A.softplus, x), softplus(x.astype(np.float64), 1, 20),
                               **TOL[np.float32])
    np.testing.assert_array_equal(ops.activation_forward(A.threshold, x), np.where(x > 1, x, 0))
    with pytest.raises(ValueError, match="C-contiguous"):
        ops.activation_forward(A.relu, np.zeros((4, 4))[:, ::2])
    with pytest.raises(TypeError, match="float32 or float64"):
        ops.activation_forward(A.relu, np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="same shape"):
        ops.activation_backward(A.relu, np.zeros(3), np.zeros(4))
    with pytest.raises(TypeError, match="does not match"):
        ops.activation_backward(A.relu, np.zeros(3), np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="channels"):
        ops.prelu_forward(np.zeros((2, 3)), np.zeros(4))


@pytest.mark.parametrize("make", ALL_MODULES[:-1])  # Maxout's Linear is not element-wise
def test_nan_propagates_through_forward(make):
    for dtype in (np.float32, np.float64):
        x = np.full((2, 3, 11), np.nan, dtype)  # 66 NaNs: whole SIMD packets and a scalar tail
        assert np.isnan(make()(x)).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["ReLU", "LeakyReLU", "ELU", "SELU", "Sigmoid", "Hardsigmoid", "Tanh", "Softmax",
                                  "LogSoftmax", "Softplus", "Softsign", "SiLU", "Threshold"])
def test_results_do_not_depend_on_memory_alignment(name, dtype):
    """Bit-for-bit reproducibility: the same values at any address give the same bits, forward and
    backward (vector and scalar code paths must not split by alignment)."""
    base = np.random.default_rng(7).standard_normal((3, 37)) * 4
    grad = np.random.default_rng(8).standard_normal((3, 37))
    results = set()
    for offset in range(9):
        x = np.empty(base.size + offset, dtype)[offset:].reshape(base.shape)
        g = np.empty(grad.size + offset, dtype)[offset:].reshape(grad.shape)
        x[...] = base
        g[...] = grad
        module = getattr(fnn.nn, name)()
        y = module(x)
        results.add((y.tobytes(), module.backward(g).tobytes()))
    assert len(results) == 1


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("n", [429, 100_003])  # packets and a scalar tail; the threaded path
def test_gelu_kernel_matches_erfc_oracle(approximate, dtype, n):
    x = np.concatenate([SPECIAL, rng(4).standard_normal(n - len(SPECIAL)) * 4]).astype(dtype)
    g = rng(5).standard_normal(x.shape).astype(dtype)
    kind = fnn.ops.Activation.gelu
    a = 1.0 if approximate == "tanh" else 0.0
    y = fnn.ops.activation_forward(kind, x, a, 0.0)
    dx = fnn.ops.activation_backward(kind, x, g, a, 0.0)
    f, df = gelu_oracle(x.astype(np.float64), approximate)
    assert y.dtype == dtype and np.isfinite(y).all() and np.isfinite(dx).all()
    np.testing.assert_allclose(y, f, **TOLS[dtype])
    np.testing.assert_allclose(dx, g * df, **TOLS[dtype])
    if dtype == np.float32:  # the far negative tail keeps its relative accuracy (not 1 + erf rounding to 0)
        tail = (x < -3) & (np.abs(f) > 1e-30)  # below that float32 has only subnormals
        np.testing.assert_allclose(y[tail], f[tail], rtol=2e-5, atol=0)


def test_gelu_functional_gradient_finite_differences():
    F = fnn.nn.functional
    x = rng(6).standard_normal((5, 7)) * 3
    for approximate in ("none", "tanh"):
        h = 1e-6
        y = F.gelu(x, approximate=approximate)
        numeric = (F.gelu(x + h, approximate=approximate) - F.gelu(x - h, approximate=approximate)) / (2 * h)
        _, df = gelu_oracle(x, approximate)
        np.testing.assert_allclose(numeric, df, rtol=1e-7, atol=1e-9)
        assert y.shape == x.shape


def test_relu_gives_positive_zero_for_negative_inputs():
    # PyTorch's relu(-1.0) is +0.0; a kernel computing 0·x would give −0.0 (printed "-0.")
    x = np.array([-3.0, -1e-30, -0.0, 0.0, 2.0] * 7)
    for dtype in (np.float32, np.float64):
        for y in (nn.ReLU()(x.astype(dtype)), fnn.nn.functional.relu(x.astype(dtype)), nn.ReLU6()(x.astype(dtype))):
            assert not np.signbit(y).any(), y
