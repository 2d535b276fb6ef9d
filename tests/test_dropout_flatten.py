import numpy as np
import pytest

import fastnn as fnn
from harness import check_module_gradients, rng


def test_dropout_is_inverted_and_identity_in_eval():
    fnn.manual_seed(0)
    drop = fnn.nn.Dropout(p=0.25)
    x = np.ones((200, 500), np.float32)
    y = drop(x)
    kept = y != 0
    assert abs(kept.mean() - 0.75) < 0.01  # p is the drop probability
    np.testing.assert_allclose(y[kept], 1 / 0.75, rtol=1e-6)  # survivors scaled by 1/(1-p)
    g = drop.backward(np.full_like(x, 2.0))
    np.testing.assert_array_equal(g, 2.0 * y)  # same mask in backward
    drop.eval()
    assert drop(x) is x or np.array_equal(drop(x), x)
    np.testing.assert_array_equal(drop.backward(x), x)


def test_dropout_masks_follow_the_seed():
    drop = fnn.nn.Dropout(0.5)
    x = np.ones((8, 8), np.float32)
    fnn.manual_seed(3)
    a = drop(x)
    fnn.manual_seed(3)
    b = drop(x)
    assert np.array_equal(a, b) and not np.array_equal(a, drop(x))


def test_dropout_edge_probabilities_and_errors():
    x = rng().standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_array_equal(fnn.nn.Dropout(0.0)(x), x)
    assert not fnn.nn.Dropout(1.0)(x).any()
    with pytest.raises(ValueError, match="p must be in"):
        fnn.nn.Dropout(1.5)
    with pytest.raises(ValueError, match="Dropout\\(p=0.5\\).*before forward"):
        fnn.nn.Dropout(0.5).backward(x)
    with pytest.raises(TypeError, match="Dropout"):
        fnn.nn.Dropout(0.5)(np.ones((2, 2), np.int32))


def test_dropout_gradient_with_fixed_mask():
    fnn.manual_seed(0)
    drop = fnn.nn.Dropout(0.3).eval()  # eval: deterministic, so finite differences apply
    check_module_gradients(drop, rng().standard_normal((3, 5)))


def test_flatten_unflatten_round_trip():
    x = rng().standard_normal((2, 3, 4, 5)).astype(np.float32)
    flat = fnn.nn.Flatten()
    y = flat(x)
    assert y.shape == (2, 60)
    assert flat.backward(y).shape == x.shape
    assert fnn.nn.Flatten(0, 1)(x).shape == (6, 4, 5)
    un = fnn.nn.Unflatten(1, (3, 20))
    assert un(y).shape == (2, 3, 20)
    assert un.backward(un(y)).shape == (2, 60)
    with pytest.raises(ValueError, match="Unflatten.*cannot be unflattened"):
        fnn.nn.Unflatten(1, (7, 9))(y)


# ---- the hashed dropout kernel (kernels/dropout.hpp) --------------------------------------------------------
from fastnn.nn.function_ops import dropout_keep  # noqa: E402


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_kernel_mask_is_the_numpy_hash(dtype, p):
    x = rng(5).standard_normal((37, 1001)).astype(dtype)
    add = rng(6).standard_normal(x.shape).astype(dtype)
    seed = 123456789012345
    keep = dropout_keep(seed, x.size, p).reshape(x.shape)
    scale = dtype(1.0 / (1.0 - p))
    np.testing.assert_array_equal(fnn.ops.dropout_apply(x, p, seed), np.where(keep, x * scale, dtype(0)))
    eps = np.finfo(dtype).eps   # add + x·scale may be one fused multiply-add: within a rounding
    np.testing.assert_allclose(fnn.ops.dropout_apply(x, p, seed, add), add + np.where(keep, x * scale, dtype(0)),
                               rtol=4 * eps, atol=4 * eps)
    assert abs(1.0 - keep.mean() - p) < 0.01                  # 37 037 draws
    assert not np.array_equal(keep, dropout_keep(seed + 1, x.size, p).reshape(x.shape))


def test_dropout_kernel_edges_and_threads():
    x = np.ones((300, 700), np.float32)
    assert not fnn.ops.dropout_apply(x, 1.0, 7).any()
    np.testing.assert_array_equal(fnn.ops.dropout_apply(x, 0.0, 7), x)
    nan = np.full((4, 4), np.nan, np.float32)
    y = fnn.ops.dropout_apply(nan, 0.5, 7)
    assert np.all((y == 0) | np.isnan(y)) and np.any(y == 0)     # dropped elements are 0 even when NaN
    before = fnn.ops.get_num_threads()
    try:
        fnn.ops.set_num_threads(1)
        one = fnn.ops.dropout_apply(x, 0.3, 99)
        fnn.ops.set_num_threads(2)
        two = fnn.ops.dropout_apply(x, 0.3, 99)
    finally:
        fnn.ops.set_num_threads(before)
    np.testing.assert_array_equal(one, two)
    with pytest.raises(ValueError, match="p must be in"):
        fnn.ops.dropout_apply(x, 1.5, 0)
    with pytest.raises(ValueError, match="does not match"):
        fnn.ops.dropout_apply(x, 0.5, 0, np.ones((3, 3), np.float32))
    with pytest.raises(TypeError, match="float32 or float64"):
        fnn.ops.dropout_apply(np.ones(3, np.int32), 0.5, 0)


def test_dropout_layer_backward_regenerates_its_mask():
    fnn.manual_seed(2)
    drop = fnn.nn.Dropout(0.4)
    x = rng(7).standard_normal((50, 60))
    y = drop(x)
    g = rng(8).standard_normal(x.shape)
    keep = y != 0
    np.testing.assert_array_equal(drop.backward(g), np.where(keep, g / 0.6, 0.0))
    np.testing.assert_allclose(y[keep], x[keep] / 0.6, rtol=1e-15)
