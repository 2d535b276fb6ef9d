"""The C++ kernels behind the functional ops (kernels/broadcast.hpp, kernels/batched_gemm.hpp): the shapes
they take, results against NumPy in float32 and float64, the same bits on any thread count, and every
functional case of test_functional.py run again with the kernels forced on (KERNEL_MIN_SIZE = 0)."""
import numpy as np
import pytest

import fastnn as fnn
from fastnn.nn import function_ops
from harness import TOL, check_module_gradients, rng
from test_functional import FIXED, FUNCTIONAL, OPERATORS, SimpleNamespace, module_for, F64

ops = fnn.ops


@pytest.mark.parametrize("shape, other, form", [
    ((4, 3, 5, 6), (3, 1, 1), (4, 3, 30)),       # a per-channel bias on NCHW
    ((4, 7, 8), (7, 8), (4, 56, 1)),             # a positional table on (N, T, D)
    ((4, 7, 8), (8,), (28, 8, 1)),               # a feature bias
    ((4, 7, 8), (4, 7, 8), (1, 224, 1)),         # the same shape
    ((4, 7, 8), (), (1, 1, 224)),                # a scalar
    ((4, 7, 8), (1, 1, 1), (1, 1, 224)),
    ((4, 1, 8), (4, 1, 1), (1, 4, 8)),           # size-1 axes on both sides are neutral
    ((4, 7, 8), (4, 1, 8), None),                # full - broadcast - full: not this form
    ((4, 7), (3,), None),                        # does not broadcast
    ((7,), (2, 7), None),                        # the other array is larger
])
def test_broadcast_form(shape, other, form):
    assert function_ops.broadcast_form(shape, other) == form


CASES = [((6, 5, 40, 30), (5, 1, 1)), ((64, 100, 32), (100, 32)), ((64, 100, 32), (32,)), ((300, 200), (300, 200)),
         ((300, 200), ()), ((30, 1, 600), (30, 1, 1))]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape, other", CASES)
def test_broadcast_arithmetic_and_gradient_sum_match_numpy(shape, other, dtype):
    r = rng(0)
    a = r.standard_normal(shape).astype(dtype)
    b = (r.standard_normal(other) + 3).astype(dtype)
    form = function_ops.broadcast_form(shape, other)
    for name, ufunc in (("add", np.add), ("sub", np.subtract), ("mul", np.multiply), ("div", np.true_divide)):
        np.testing.assert_allclose(ops.broadcast_binary(name, a, b.reshape(-1), *form), ufunc(a, b), **TOL[dtype])
        np.testing.assert_allclose(ops.broadcast_binary(name, a, b.reshape(-1), *form, True), ufunc(b, a),
                                   **TOL[dtype])
    total = ops.reduce_broadcast(a, *form).reshape(other)
    np.testing.assert_allclose(total, function_ops.sum_to_shape(a.astype(np.float64), other),
                               rtol=TOL[dtype]["rtol"] * 10, atol=TOL[dtype]["atol"] * np.sqrt(a.size))


def test_kernels_give_the_same_bits_on_any_thread_count():
    r = rng(1)
    a = r.standard_normal((64, 100, 32)).astype(np.float32)
    b = r.standard_normal((100, 32)).astype(np.float32)
    x = r.standard_normal((16, 70, 90)).astype(np.float32)
    y = r.standard_normal((16, 90, 50)).astype(np.float32)
    w = r.standard_normal((90, 50)).astype(np.float32)
    parts = [r.standard_normal((64, k, 32)).astype(np.float32) for k in (3, 17, 5)]
    results = []
    threads = fnn.get_num_threads()
    try:
        for n in (1, 2, 3):
            fnn.set_num_threads(n)
            results.append([ops.broadcast_binary("mul", a, b.reshape(-1), 64, 3200, 1),
                            ops.reduce_broadcast(a, 64, 3200, 1), ops.reduce_broadcast(a, 64, 100, 32),
                            ops.batched_matmul(x, y), ops.batched_matmul(x, w), ops.batched_matmul(x[0], w),
                            ops.batched_matmul(x.reshape(-1, 90), y[0], False, False),
                            ops.batched_matmul(x, x, True, False), ops.concat(parts, 1)])
    finally:
        fnn.set_num_threads(threads)
    for other in results[1:]:
        for u, v in zip(results[0], other):
            assert u.tobytes() == v.tobytes()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_batched_matmul_matches_numpy(dtype):
    r = rng(2)
    a, b = r.standard_normal((5, 7, 9)).astype(dtype), r.standard_normal((5, 9, 4)).astype(dtype)
    w = r.standard_normal((9, 4)).astype(dtype)
    tol = dict(rtol=TOL[dtype]["rtol"] * 10, atol=TOL[dtype]["atol"] * 10)
    np.testing.assert_allclose(ops.batched_matmul(a, b), a @ b, **tol)
    np.testing.assert_allclose(ops.batched_matmul(a, w), a @ w, **tol)                       # b repeated
    np.testing.assert_allclose(ops.batched_matmul(w.T.copy(), b), w.T @ b, **tol)           # a repeated
    np.testing.assert_allclose(ops.batched_matmul(a, b.transpose(0, 2, 1).copy(), False, True), a @ b, **tol)
    np.testing.assert_allclose(ops.batched_matmul(a.transpose(0, 2, 1).copy(), b, True, False), a @ b, **tol)
    np.testing.assert_allclose(ops.batched_matmul(a[0], b[0]), a[0] @ b[0], **tol)
    with pytest.raises(ValueError, match="inner sizes"):
        ops.batched_matmul(a, a)
    with pytest.raises(ValueError, match="batch sizes"):
        ops.batched_matmul(a, b[:3])
    with pytest.raises(TypeError, match="does not match"):
        ops.batched_matmul(a.astype(np.float64), b.astype(np.float32))


def test_concat_matches_numpy_and_checks_shapes():
    r = rng(3)
    parts = [r.standard_normal((4, k, 6)) for k in (1, 3, 2)]
    np.testing.assert_array_equal(ops.concat(parts, 1), np.concatenate(parts, 1))
    firsts = [np.ascontiguousarray(p[:, :1]) for p in parts]
    np.testing.assert_array_equal(ops.concat(firsts, 2), np.concatenate(firsts, 2))
    with pytest.raises(ValueError, match="C-contiguous"):
        ops.concat([p[:, :1] for p in parts], 2)
    with pytest.raises(ValueError, match="does not match"):
        ops.concat([parts[0], parts[1][:3]], 1)


@pytest.fixture
def kernels_always(monkeypatch):
    monkeypatch.setattr(function_ops, "KERNEL_MIN_SIZE", 0)


@pytest.mark.parametrize("c", FUNCTIONAL + OPERATORS + FIXED)
def test_every_case_again_through_the_kernels(c, kernels_always):
    x, p = c.arrays()
    m = module_for(c, p).double()
    np.testing.assert_allclose(m(x), c.ref(x, SimpleNamespace(**p)), **F64)
    check_module_gradients(m, x)
