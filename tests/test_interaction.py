import itertools

import numpy as np
import pytest

import fastnn as fnn
from harness import check_module_gradients


def _oracle(x, mode, self_interaction=False):
    N, F, D = x.shape
    if mode == "dot":
        pairs = [(i, j) for i in range(F) for j in range(i if self_interaction else i + 1, F)]
        return np.stack([np.array([x[n, i] @ x[n, j] for i, j in pairs]) for n in range(N)])
    if mode == "concat":
        return np.stack([np.concatenate(list(x[n])) for n in range(N)])
    return x.mean(1) if mode == "mean" else x.max(1)


@pytest.mark.parametrize("mode,si", [("dot", False), ("dot", True), ("concat", False), ("mean", False),
                                     ("max", False)])
def test_oracle_and_gradients(mode, si):
    x = np.random.default_rng(1).standard_normal((4, 5, 3))
    m = fnn.nn.Interaction(mode, self_interaction=si)
    y = m(x)
    np.testing.assert_allclose(y, _oracle(x, mode, si), rtol=1e-12)
    assert y.shape[1] == m.output_size(5, 3)
    if mode == "dot":
        assert y.shape == (4, 15 if si else 10)
    check_module_gradients(m, x)


def test_float32_and_errors():
    x = np.random.default_rng(2).standard_normal((2, 3, 4)).astype(np.float32)
    for mode in ("dot", "concat", "mean", "max"):
        assert fnn.nn.Interaction(mode)(x).dtype == np.float32
    with pytest.raises(ValueError):
        fnn.nn.Interaction("sum")
    with pytest.raises(ValueError):
        fnn.nn.Interaction()(x[0])
    with pytest.raises(ValueError):
        fnn.nn.Interaction().backward(np.zeros((2, 3)))
    m = fnn.nn.Interaction()
    m(x)
    with pytest.raises(ValueError):
        m.backward(np.zeros((2, 4), np.float32))
