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
