"""Perceptron: the seed's NAND weights and the perceptron learning rule."""
import numpy as np
import pytest

import fastnn as fnn

X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
NAND = np.array([1, 1, 1, 0])


def test_seed_nand_weights():
    p = fnn.Perceptron(n_features=2)
    p.weight.data[...] = [-2, -2]
    p.bias.data[...] = 3
    np.testing.assert_array_equal(p.predict(X), NAND)
    np.testing.assert_array_equal(p.decision_function(X), [3, 1, 1, -1])
    np.testing.assert_array_equal(fnn.Perceptron(2, weight=[-2, -2], bias=3)(X), NAND)


def test_threshold_is_strict():
    p = fnn.Perceptron(1, weight=[1.0], bias=-1.0)
    np.testing.assert_array_equal(p.predict([[1.0], [1.5], [0.5]]), [0, 1, 0])   # w·x + b = 0 gives 0


def test_learning_nand_from_zeros_converges():
    p = fnn.Perceptron(2)
    p.fit(X, NAND, epochs=10, lr=1.0)
    np.testing.assert_array_equal(p.predict(X), NAND)
    assert p.errors_[-1] == 0 and len(p.errors_) < 10


def test_one_update_follows_the_rule():
    p = fnn.Perceptron(2)
    p.fit(X[:1], [1], epochs=1, lr=0.5)   # predicts 0 (z = 0), target 1: w += 0.5·x, b += 0.5
    np.testing.assert_array_equal(p.weight.data, [0, 0])
    np.testing.assert_array_equal(p.bias.data, [0.5])
    p.fit([[2.0, 1.0]], [0], epochs=1, lr=0.5)   # z = 0.5 > 0 predicts 1, target 0: w -= 0.5·x, b -= 0.5
    np.testing.assert_array_equal(p.weight.data, [-1.0, -0.5])
    np.testing.assert_array_equal(p.bias.data, [0.0])


def test_xor_is_not_learnable_and_shuffle_is_seeded():
    xor = np.array([0, 1, 1, 0])
    p = fnn.Perceptron(2).fit(X, xor, epochs=20)
    assert min(p.errors_) > 0 and len(p.errors_) == 20
    fnn.manual_seed(5)
    a = fnn.Perceptron(2).fit(X, xor, epochs=3, shuffle=True).state_dict()
    fnn.manual_seed(5)
    b = fnn.Perceptron(2).fit(X, xor, epochs=3, shuffle=True).state_dict()
    np.testing.assert_array_equal(a["weight"], b["weight"])


def test_bad_input():
    with pytest.raises(ValueError, match="shape"):
        fnn.Perceptron(3).predict(X)
    with pytest.raises(ValueError, match="0 or 1"):
        fnn.Perceptron(2).fit(X, [0, 1, 2, 1])
