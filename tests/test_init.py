"""fastnn.init: every initialiser fills a Parameter or a plain writeable ndarray in place, with the statistics
PyTorch's namesake gives, and refuses what it cannot fill with a clear error."""
import math

import numpy as np
import pytest

import fastnn as fnn

init = fnn.init
SHAPE = (256, 384)  # fan_in 384, fan_out 256


def warned(fill):
    """A constant filler on a 2-D weight: it warns that symmetry is never broken (documented), and fills."""
    def run(t):
        with pytest.warns(UserWarning, match="symmetry is never broken"):
            return fill(t)
    return run


FILLERS = {
    "zeros_": (warned(init.zeros_), lambda w: np.all(w == 0)),
    "ones_": (warned(init.ones_), lambda w: np.all(w == 1)),
    "constant_": (warned(lambda t: init.constant_(t, 0.25)), lambda w: np.all(w == 0.25)),
    "normal_": (lambda t: init.normal_(t, 1.0, 0.5), lambda w: abs(w.mean() - 1) < 0.01 and abs(w.std() - 0.5) < 0.01),
    "uniform_": (lambda t: init.uniform_(t, -2.0, 3.0), lambda w: w.min() >= -2 and w.max() <= 3 and abs(w.mean() - 0.5) < 0.03),
    "xavier_uniform_": (lambda t: init.xavier_uniform_(t),
                        lambda w: np.abs(w).max() <= math.sqrt(6 / 640) and abs(w.std() - math.sqrt(2 / 640)) < 2e-3),
    "xavier_normal_": (lambda t: init.xavier_normal_(t), lambda w: abs(w.std() - math.sqrt(2 / 640)) < 2e-3),
    "kaiming_normal_": (lambda t: init.kaiming_normal_(t, nonlinearity="relu"),
                        lambda w: abs(w.std() - math.sqrt(2 / 384)) < 2e-3),
    "kaiming_uniform_": (lambda t: init.kaiming_uniform_(t, nonlinearity="relu"),
                         lambda w: np.abs(w).max() <= math.sqrt(6 / 384) and abs(w.std() - math.sqrt(2 / 384)) < 2e-3),
    "lecun_normal_": (lambda t: init.lecun_normal_(t), lambda w: abs(w.std() - math.sqrt(1 / 384)) < 2e-3),
    "lecun_uniform_": (lambda t: init.lecun_uniform_(t), lambda w: np.abs(w).max() <= math.sqrt(3 / 384)),
    "sparse_": (lambda t: init.sparse_(t, k=10), lambda w: np.all((w != 0).sum(axis=1) == 10)),
}


@pytest.mark.parametrize("kind", ["ndarray", "Parameter"])
@pytest.mark.parametrize("name", list(FILLERS))
def test_fills_in_place_with_the_right_statistics(name, kind):
    fnn.manual_seed(0)
    fill, check = FILLERS[name]
    array = np.full(SHAPE, np.nan, dtype=np.float64)
    target = array if kind == "ndarray" else fnn.nn.Parameter(array)
    out = fill(target)
    assert out is target
    filled = target if kind == "ndarray" else target.data
    assert np.isfinite(filled).all() and bool(check(filled)), name
    if kind == "ndarray":
        assert filled is array  # in place, not a copy


def test_float32_arrays_keep_their_dtype():
    w = np.zeros((4, 5), np.float32)
    init.xavier_uniform_(w)
    assert w.dtype == np.float32 and np.any(w != 0)


@pytest.mark.parametrize("bad, error, match", [
    (np.zeros((3, 4), np.int64), TypeError, "expected a floating-point ndarray or Parameter, got ndarray"),
    ([[0.0, 0.0]], TypeError, "got list"),
])
def test_refuses_what_it_cannot_fill(bad, error, match):
    with pytest.raises(error, match=match):
        init.normal_(bad)


def test_read_only_array_is_refused_before_anything_is_written():
    w = np.zeros((3, 4))
    w.flags.writeable = False
    with pytest.raises(ValueError, match=r"read-only.*\(3, 4\)|\(3, 4\).*read-only"):
        init.kaiming_uniform_(w)
