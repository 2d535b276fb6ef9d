"""bf16 GEMMs (kernels/bf16_gemm.hpp) and fnn.autocast (amp.py): against float64 NumPy oracles on inputs rounded
to bf16 (tight: every product is exact, only float32 sums differ) and on the unrounded inputs (bf16
tolerance); the dot-product path against the forced fallback; Linear under autocast; the context manager."""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastnn as fnn
from fastnn import amp, ops

SHAPES = [(256, 784, 1024), (37, 33, 45), (256, 1024, 10), (5, 1, 3), (9, 2, 70), (1, 300, 1), (17, 129, 33)]


def bf16_round(x):
    """Round float32 to the nearest bf16 (ties to even), as float32: the oracle's rounding."""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.astype(np.uint32).view(np.float32)


def operands(rng, n, k, m, trans_a, trans_b):
    a = rng.standard_normal((k, n) if trans_a else (n, k)).astype(np.float32)
    b = rng.standard_normal((m, k) if trans_b else (k, m)).astype(np.float32)
    return a, b


def oracle(a, b, trans_a, trans_b, rounded=True):
    A = (bf16_round(a) if rounded else a).astype(np.float64)
    B = (bf16_round(b) if rounded else b).astype(np.float64)
    return (A.T if trans_a else A) @ (B.T if trans_b else B)


def tol(k, scale):
    """float32 summation error of k exact products of magnitude about `scale`."""
    return 4 * np.finfo(np.float32).eps * np.sqrt(max(k, 1)) * scale


@pytest.mark.parametrize("use_dot", [True, False])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (False, True), (True, False), (True, True)])
@pytest.mark.parametrize("n,k,m", SHAPES)
def test_bf16_matmul_matches_oracle_on_rounded_inputs(n, k, m, trans_a, trans_b, use_dot):
    rng = np.random.default_rng(n * 7 + k * 3 + m)
    a, b = operands(rng, n, k, m, trans_a, trans_b)
    ref = oracle(a, b, trans_a, trans_b)
    c = ops.bf16_matmul(a, b, None, trans_a, trans_b, False, use_dot)
    assert c.dtype == np.float32 and c.shape == (n, m)
    scale = np.sqrt(k) + 1
    np.testing.assert_allclose(c, ref, rtol=0, atol=tol(k, scale))
    # ... and against the unrounded product to bf16 tolerance (8 significant bits per input; about 10 sigma).
    np.testing.assert_allclose(c, oracle(a, b, trans_a, trans_b, rounded=False), rtol=0, atol=2.0 ** -6 * scale)
    # It really rounds: not the float32 product (the tight oracle tells them apart).
    if k >= 33:
        assert np.abs(c - oracle(a, b, trans_a, trans_b, rounded=False)).max() > tol(k, scale)


@pytest.mark.parametrize("n,k,m", SHAPES)
def test_dot_path_equals_fallback_up_to_summation_order(n, k, m):
    rng = np.random.default_rng(1)
    a, b = operands(rng, n, k, m, False, True)
    dot = ops.bf16_matmul(a, b, None, False, True, False, True)
    fallback = ops.bf16_matmul(a, b, None, False, True, False, False)
    np.testing.assert_allclose(dot, fallback, rtol=0, atol=2 * tol(k, np.sqrt(k) + 1))


def test_accumulate_and_out():
    rng = np.random.default_rng(2)
    a, b = operands(rng, 40, 50, 60, False, False)
    start = rng.standard_normal((40, 60)).astype(np.float32)
    for use_dot in (True, False):
        out = start.copy()
        result = ops.bf16_matmul(a, b, out, False, False, True, use_dot)
        assert result is out or np.shares_memory(result, out)
        np.testing.assert_allclose(out, start + oracle(a, b, False, False), rtol=0, atol=tol(50, 10))
        out = np.full((40, 60), np.nan, np.float32)
        ops.bf16_matmul(a, b, out, False, False, False, use_dot)
        np.testing.assert_allclose(out, oracle(a, b, False, False), rtol=0, atol=tol(50, 10))


@pytest.mark.parametrize("use_dot", [True, False])
@pytest.mark.parametrize("trans_a,trans_b", [(False, True), (True, False)])
@pytest.mark.parametrize("n,k,m", [(256, 784, 1024), (37, 33, 45), (9, 2, 70), (5, 0, 3), (17, 129, 33)])
def test_bias_is_added_as_if_stored_first(n, k, m, trans_a, trans_b, use_dot):
    rng = np.random.default_rng(n + k + m)
    a, b = operands(rng, n, k, m, trans_a, trans_b)
    bias = rng.standard_normal(m).astype(np.float32)
    got = ops.bf16_matmul(a, b, None, trans_a, trans_b, False, use_dot, bias, True)
    # the bias is not rounded: the tight oracle on rounded operands plus the exact bias
    np.testing.assert_allclose(got, oracle(a, b, trans_a, trans_b) + bias, rtol=0, atol=tol(k, np.sqrt(k) + 2))
    # bit for bit what writing the bias first and accumulating the product onto it gives (amp's former way)
    stored = np.empty((n, m), np.float32)
    stored[...] = bias
    ops.bf16_matmul(a, b, stored, trans_a, trans_b, True, use_dot)
    assert got.tobytes() == stored.tobytes()
    out = np.full((n, m), np.nan, np.float32)  # into a given out, its old values ignored
    ops.bf16_matmul(a, b, out, trans_a, trans_b, False, use_dot, bias)
    assert out.tobytes() == got.tobytes()


@pytest.mark.parametrize("use_dot", [True, False])
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_check_finite_raises_for_nan_or_inf_in_a(bad, trans_a, use_dot):
    rng = np.random.default_rng(4)
    for n, k, m in [(40, 50, 60), (3, 1, 5), (256, 784, 64)]:
        a, b = operands(rng, n, k, m, trans_a, False)
        c = ops.bf16_matmul(a, b, None, trans_a, False, False, use_dot, None, True)  # finite: no error
        np.testing.assert_allclose(c, oracle(a, b, trans_a, False), rtol=0, atol=tol(k, np.sqrt(k) + 1))
        for index in [(0, 0), (a.shape[0] - 1, a.shape[1] - 1), (a.shape[0] // 2, a.shape[1] // 3)]:
            a_bad = a.copy()
            a_bad[index] = bad
            with pytest.raises(ValueError, match="NaN or infinity"):
                ops.bf16_matmul(a_bad, b, None, trans_a, False, False, use_dot, None, True)
            ops.bf16_matmul(a_bad, b, None, trans_a, False, False, use_dot)  # unchecked: no error
    b_bad = np.full((50, 60), np.nan, np.float32)  # only a is checked (Linear's input; the weight is not)
    ops.bf16_matmul(rng.standard_normal((40, 50)).astype(np.float32), b_bad, None, False, False, False, use_dot,
                    None, True)


def test_bias_shape_and_accumulate_raise():
    a, b = np.ones((3, 4), np.float32), np.ones((4, 6), np.float32)
    with pytest.raises(ValueError, match="bias"):
        ops.bf16_matmul(a, b, None, bias=np.ones(5, np.float32))
    with pytest.raises(ValueError, match="bias"):
        ops.bf16_matmul(a, b, np.zeros((3, 6), np.float32), accumulate=True, bias=np.ones(6, np.float32))


def test_rounding_ties_to_even_and_special_values():
    one_plus_half_ulp = np.float32(1 + 2.0 ** -8)  # exactly half a bf16 ulp above 1: rounds to 1 (even)
    three_halves_ulp = np.float32(1 + 3 * 2.0 ** -8)  # rounds up to 1 + 2^-6
    top = np.finfo(np.float32).max  # past the largest bf16 (3.39e38) by more than half an ulp: infinity
    for use_dot in (True, False):
        for value, want in [(one_plus_half_ulp, 1.0), (three_halves_ulp, 1 + 2.0 ** -6), (np.inf, np.inf),
                            (-np.inf, -np.inf), (top, np.inf), (-top, -np.inf)]:
            a = np.array([[value, 0.0, 0.0]], np.float32)
            e = np.array([[1.0], [1.0], [1.0]], np.float32)
            got = ops.bf16_matmul(a, e, None, False, False, False, use_dot)[0, 0]
            assert got == np.float32(want) or (np.isinf(want) and got == want), (value, got)
        nan = ops.bf16_matmul(np.array([[np.nan, 1.0]], np.float32), np.ones((2, 1), np.float32), None, False,
                              False, False, use_dot)
        assert np.isnan(nan[0, 0])


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="inner sizes differ"):
        ops.bf16_matmul(np.ones((3, 4), np.float32), np.ones((5, 6), np.float32))
    with pytest.raises(ValueError, match="2-D"):
        ops.bf16_matmul(np.ones(3, np.float32), np.ones((3, 6), np.float32))
    with pytest.raises(ValueError, match="out"):
        ops.bf16_matmul(np.ones((3, 4), np.float32), np.ones((4, 6), np.float32), np.ones((3, 5), np.float32))


def test_thread_count_does_not_change_the_bits():
    rng = np.random.default_rng(3)
    a, b = operands(rng, 256, 300, 200, False, True)
    before = fnn.get_num_threads()
    try:
        fnn.set_num_threads(1)
        one = ops.bf16_matmul(a, b, None, False, True)
        fnn.set_num_threads(2)
        two = ops.bf16_matmul(a, b, None, False, True)
    finally:
        fnn.set_num_threads(before)
    assert one.tobytes() == two.tobytes()


# -- autocast ---------------------------------------------------------------------------------------------
def linear_and_data(seed=0, bias=True, dtype=np.float32):
    fnn.manual_seed(seed)
    layer = fnn.nn.Linear(70, 40, bias=bias)
    if dtype == np.float64:
        layer = layer.double()
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((33, 70)).astype(dtype)
    g = rng.standard_normal((33, 40)).astype(dtype)
    return layer, x, g


@pytest.mark.parametrize("bias", [True, False])
def test_linear_forward_backward_under_autocast(bias):
    layer, x, g = linear_and_data(bias=bias)
    w = layer.weight.data
    with fnn.autocast("bfloat16"):
        y = layer(x)
    dx = layer.backward(g)  # outside the block: the backward follows its forward
    assert y.dtype == dx.dtype == layer.weight.grad.dtype == np.float32
    b = layer.bias.data.astype(np.float64) if bias else 0
    np.testing.assert_allclose(y, oracle(x, w, False, True) + b, rtol=0, atol=tol(70, 10))
    np.testing.assert_allclose(dx, oracle(g, w, False, False), rtol=0, atol=tol(40, 10))
    np.testing.assert_allclose(layer.weight.grad, oracle(g, x, True, False), rtol=0, atol=tol(33, 10))
    if bias:
        np.testing.assert_allclose(layer.bias.grad, g.astype(np.float64).sum(0), rtol=1e-5, atol=1e-4)
    # A second backward accumulates onto the gradients, as in float32.
    before = layer.weight.grad.copy()
    with fnn.autocast():
        layer(x)
    layer.backward(g)
    np.testing.assert_allclose(layer.weight.grad, 2 * before, rtol=1e-6, atol=1e-5)


def test_autocast_off_restores_exact_float32():
    layer, x, g = linear_and_data()
    y32 = layer(x)
    dx32 = layer.backward(g)
    gw32 = layer.weight.grad.copy()
    layer.zero_grad()
    with fnn.autocast("bfloat16"):
        y16 = layer(x)
    layer.backward(g)
    assert not np.array_equal(y16, y32)
    layer.zero_grad()
    y = layer(x)
    dx = layer.backward(g)
    assert y.tobytes() == y32.tobytes() and dx.tobytes() == dx32.tobytes()
    assert layer.weight.grad.tobytes() == gw32.tobytes()
    with fnn.autocast("bfloat16", enabled=False):
        assert layer(x).tobytes() == y32.tobytes()


def test_float64_is_unaffected():
    layer, x, g = linear_and_data(dtype=np.float64)
    y = layer(x)
    with fnn.autocast("bfloat16"):
        assert layer(x).tobytes() == y.tobytes()


def test_nesting_and_exceptions_restore_the_state():
    assert not fnn.is_autocast_enabled()
    with fnn.autocast("bfloat16"):
        assert fnn.is_autocast_enabled()
        with fnn.autocast("bfloat16", enabled=False):
            assert not fnn.is_autocast_enabled()
            with fnn.autocast("bf16"):
                assert fnn.is_autocast_enabled()
            assert not fnn.is_autocast_enabled()
        assert fnn.is_autocast_enabled()
    assert not fnn.is_autocast_enabled()
    with pytest.raises(RuntimeError, match="boom"):
        with fnn.autocast("bfloat16"):
            raise RuntimeError("boom")
    assert not fnn.is_autocast_enabled()
    # One instance entered twice (nested) restores both levels.
    ctx = fnn.autocast("bfloat16")
    with ctx:
        with ctx:
            assert fnn.is_autocast_enabled()
        assert fnn.is_autocast_enabled()
    assert not fnn.is_autocast_enabled()

    @fnn.autocast("bfloat16")
    def inside():
        return fnn.is_autocast_enabled()
    assert inside() and not fnn.is_autocast_enabled()
    with pytest.raises(ValueError, match="bfloat16"):
        fnn.autocast("float16")


def test_autocast_is_per_thread():
    import threading
    seen = []
    with fnn.autocast("bfloat16"):
        t = threading.Thread(target=lambda: seen.append(fnn.is_autocast_enabled()))
        t.start()
        t.join()
    assert seen == [False]


def test_nan_input_raises_under_autocast():
    layer, x, _ = linear_and_data()
    x[0, 0] = np.nan
    with fnn.autocast("bfloat16"), pytest.raises(ValueError, match="Linear.*NaN"):
        layer(x)


def test_eval_mode_sequential_runs_bf16_under_autocast():
    fnn.manual_seed(0)
    model = fnn.nn.Sequential(fnn.nn.Linear(50, 64), fnn.nn.ReLU(), fnn.nn.Linear(64, 10)).eval()
    x = np.random.default_rng(0).standard_normal((20, 50)).astype(np.float32)
    y32 = model(x)
    with fnn.autocast("bfloat16"):
        y16 = model(x)
    assert not np.array_equal(y16, y32)
    np.testing.assert_allclose(y16, y32, atol=0.05)
    assert model(x).tobytes() == y32.tobytes()


def test_training_under_autocast_keeps_float32_state_and_learns():
    fnn.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((512, 20)).astype(np.float32)
    y = (x[:, :3].sum(1) > 0).astype(np.int64)
    model = fnn.nn.Sequential(fnn.nn.Linear(20, 64), fnn.nn.ReLU(), fnn.nn.Linear(64, 2))
    opt = fnn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    trainer = fnn.Trainer(model, loss=fnn.nn.CrossEntropyLoss(), optimizer=opt, metrics=["accuracy"])
    with fnn.autocast("bfloat16"):
        trainer.fit(x, y, epochs=15, batch_size=64, verbose=0)
    assert all(p.data.dtype == np.float32 and p.grad.dtype == np.float32 for p in model.parameters())
    assert trainer.evaluate(x, y)["accuracy"] > 0.9


def test_show_config_and_env_var_force_the_fallback():
    info = fnn.show_config(mode="dicts")["kernels"]["bf16 autocast"]
    assert info.startswith("AVX512_BF16" if amp.dot_products() else "fallback")
    code = ("import fastnn as fnn, numpy as np; from fastnn import amp;"
            "print(fnn.show_config(mode='dicts')['kernels']['bf16 autocast']); print(amp.dot_products())")
    env = dict(os.environ, FASTNN_BF16_DOT="0", PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("fallback") and lines[1] == "False"


def test_functional_linear_under_autocast_matches_the_layer():
    layer, x, g = linear_and_data()
    fnn.manual_seed(0)
    with fnn.autocast("bfloat16"):
        y_layer = layer(x)
    dx_layer = layer.backward(g)
    gw_layer = layer.weight.grad.copy()
    ctx_free = fnn.nn.functional.linear(x, layer.weight.data, layer.bias.data)
    with fnn.autocast("bfloat16"):
        y = fnn.nn.functional.linear(x, layer.weight.data, layer.bias.data)
    np.testing.assert_allclose(y, y_layer, rtol=0, atol=1e-5)
    assert not np.array_equal(y, ctx_free)
    # Inside a traced graph the backward follows the forward's precision.
    from fastnn.nn.function_ops import OPS
    op = OPS["linear"]
    with fnn.autocast("bfloat16"):
        y2, ctx = op.forward(x, layer.weight.data, layer.bias.data)
    dx, gw, gb = op.backward(ctx, g, (True, True, True))
    np.testing.assert_allclose(dx, dx_layer, rtol=0, atol=1e-5)
    np.testing.assert_allclose(gw, gw_layer, rtol=0, atol=1e-4)


@pytest.mark.parametrize("cls,shape,kwargs", [
    (fnn.nn.Conv2d, (3, 4, 9, 8), dict(kernel_size=3, stride=2, padding=1, dilation=1)),
    (fnn.nn.Conv2d, (2, 3, 7, 7), dict(kernel_size=(2, 3), stride=1, padding=0, dilation=2)),
    (fnn.nn.Conv1d, (2, 3, 11), dict(kernel_size=3, padding="same")),
])
def test_conv_under_autocast_equals_float32_conv_of_rounded_operands(cls, shape, kwargs):
    fnn.manual_seed(0)
    layer = cls(shape[1], 5, **kwargs)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    y32 = layer(x)
    with fnn.autocast("bfloat16"):
        y = layer(x)
    g = rng.standard_normal(y.shape).astype(np.float32)
    dx = layer.backward(g)
    gw, gb = layer.weight.grad.copy(), layer.bias.grad.copy()
    # Oracle: the float32 layer on bf16-rounded weights and input (dx: on rounded grad_output too, and so is dW).
    ref = cls(shape[1], 5, **kwargs)
    ref.weight.data[...] = bf16_round(layer.weight.data).reshape(layer.weight.shape)
    ref.bias.data[...] = layer.bias.data
    xr = bf16_round(x).reshape(x.shape)
    np.testing.assert_allclose(y, ref(xr), rtol=0, atol=1e-5)
    ref.zero_grad()
    dx_ref = ref.backward(bf16_round(g).reshape(g.shape))
    np.testing.assert_allclose(dx, dx_ref, rtol=0, atol=1e-5)
    np.testing.assert_allclose(gw, ref.weight.grad, rtol=0, atol=1e-4)
    np.testing.assert_allclose(gb, g.sum(axis=(0,) + tuple(range(2, g.ndim))), rtol=1e-5, atol=1e-5)
    assert not np.array_equal(y, y32)
    assert layer(x).tobytes() == y32.tobytes()  # autocast off: float32 again, bit for bit
