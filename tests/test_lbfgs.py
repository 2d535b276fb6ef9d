"""optim.LBFGS against scipy.optimize's L-BFGS-B: logistic regression and Rosenbrock reach the same minimum."""
import numpy as np
import pytest
from scipy.optimize import minimize

import fastnn as fnn
from fastnn import optim
from fastnn.nn import Module, Parameter


def _logistic_problem(seed=0, n=200, d=5):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    w_true = rng.standard_normal(d)
    p = 1.0 / (1.0 + np.exp(-(x @ w_true + 0.3)))
    y = (rng.random(n) < p).astype(np.float64)
    return x, y


def _scipy_logistic(x, y):
    def f(theta):
        w, b = theta[:-1], theta[-1]
        z = x @ w + b
        loss = np.mean(np.logaddexp(0.0, z) - y * z)
        r = (1.0 / (1.0 + np.exp(-z)) - y) / len(y)
        return loss, np.concatenate([x.T @ r, [r.sum()]])
    res = minimize(f, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B",
                   options=dict(ftol=1e-15, gtol=1e-12, maxiter=1000))
    return res.fun, res.x


def _fit_logistic(x, y, **kw):
    fnn.manual_seed(0)
    model = fnn.nn.Linear(x.shape[1], 1).double()
    loss_fn = fnn.nn.BCEWithLogitsLoss()
    opt = optim.LBFGS(model.parameters(), **kw)
    target = y[:, None]

    def closure():
        opt.zero_grad()
        value = loss_fn(model(x), target)
        model.backward(loss_fn.backward())
        return value

    for _ in range(10):
        opt.step(closure)
    final = float(loss_fn(model(x), target))
    theta = np.concatenate([model.weight.data.reshape(-1), model.bias.data.reshape(-1)])
    return final, theta


@pytest.mark.parametrize("line_search_fn", ["strong_wolfe", None])
def test_logistic_regression_matches_scipy(line_search_fn):
    x, y = _logistic_problem()
    ref_loss, ref_theta = _scipy_logistic(x, y)
    kw = dict(line_search_fn=line_search_fn, max_iter=100, tolerance_grad=1e-12, tolerance_change=1e-15)
    if line_search_fn is None:
        kw["lr"] = 0.5
    loss, theta = _fit_logistic(x, y, **kw)
    assert loss == pytest.approx(ref_loss, rel=1e-6)
    np.testing.assert_allclose(theta, ref_theta, rtol=1e-4, atol=1e-4)


class Rosenbrock(Module):
    """f(a, b) = (1 − a)² + 100 (b − a²)² as a module with two scalar Parameters; forward ignores its input."""

    def __init__(self, a=-1.5, b=2.0):
        super().__init__()
        self.a = Parameter(np.array([a]))
        self.b = Parameter(np.array([b]))

    def value(self):
        a, b = self.a.data[0], self.b.data[0]
        return (1 - a) ** 2 + 100 * (b - a * a) ** 2

    def accumulate_grad(self):
        a, b = self.a.data[0], self.b.data[0]
        self.a.grad[0] += -2 * (1 - a) - 400 * a * (b - a * a)
        self.b.grad[0] += 200 * (b - a * a)


def test_rosenbrock_strong_wolfe():
    model = Rosenbrock()
    opt = optim.LBFGS(model.parameters(), line_search_fn="strong_wolfe", max_iter=200,
                      tolerance_grad=1e-10, tolerance_change=1e-14)
    calls = []

    def closure():
        opt.zero_grad()
        model.accumulate_grad()
        calls.append(1)
        return model.value()

    first = opt.step(closure)
    assert first == pytest.approx(Rosenbrock().value())
    np.testing.assert_allclose([model.a.data[0], model.b.data[0]], [1.0, 1.0], atol=1e-6)
    assert model.value() < 1e-12
    ref = minimize(lambda v: (1 - v[0]) ** 2 + 100 * (v[1] - v[0] ** 2) ** 2, [-1.5, 2.0], method="L-BFGS-B")
    assert model.value() <= ref.fun + 1e-10
    assert len(calls) <= 200 * 5 // 4 + 25


def test_rosenbrock_fixed_step_decreases():
    model = Rosenbrock(-1.2, 1.0)
    opt = optim.LBFGS(model.parameters(), lr=0.1, max_iter=50)

    def closure():
        opt.zero_grad()
        model.accumulate_grad()
        return model.value()

    start = model.value()
    opt.step(closure)
    assert model.value() < start


def test_float32_model_and_frozen_parameter():
    x, y = _logistic_problem(1)
    x32 = x.astype(np.float32)
    fnn.manual_seed(1)
    model = fnn.nn.Linear(x.shape[1], 1)
    model.bias.requires_grad = False
    bias = model.bias.data.copy()
    loss_fn = fnn.nn.BCEWithLogitsLoss()
    opt = optim.LBFGS(model.parameters(), line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        value = loss_fn(model(x32), y[:, None].astype(np.float32))
        model.backward(loss_fn.backward())
        return value

    first = opt.step(closure)
    assert float(closure()) < first
    assert model.weight.data.dtype == np.float32
    np.testing.assert_array_equal(model.bias.data, bias)


def test_state_dict_roundtrip_continues_identically():
    x, y = _logistic_problem(2)
    loss_fn = fnn.nn.BCEWithLogitsLoss()

    def make():
        fnn.manual_seed(3)
        model = fnn.nn.Linear(x.shape[1], 1).double()
        opt = optim.LBFGS(model.parameters(), max_iter=3, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            value = loss_fn(model(x), y[:, None])
            model.backward(loss_fn.backward())
            return value
        return model, opt, closure

    m1, o1, c1 = make()
    o1.step(c1)
    sd = o1.state_dict()
    m2, o2, c2 = make()
    m2.load_state_dict(m1.state_dict())
    o2.load_state_dict(sd)
    o1.step(c1)
    o2.step(c2)
    np.testing.assert_array_equal(m1.weight.data, m2.weight.data)
    assert sd["state"][0]["old_dirs"].shape[1] == x.shape[1] + 1


def test_errors():
    model = fnn.nn.Linear(2, 1)
    opt = optim.LBFGS(model.parameters())
    with pytest.raises(TypeError, match="closure"):
        opt.step()
    with pytest.raises(ValueError, match="strong_wolfe"):
        optim.LBFGS(model.parameters(), line_search_fn="backtracking")
    with pytest.raises(ValueError, match="groups"):
        optim.LBFGS([{"params": [model.weight]}, {"params": [model.bias]}])
    assert "LBFGS" in optim.__all__
