"""One harness for every layer and loss: finite-difference gradient checks and dtype tolerances (and the
loader of the examples that end-to-end tests run).

Central differences in float64 on a scalar objective L = Σ r ⊙ y with a fixed random r, so every output
element contributes with a distinct weight.
"""
import importlib.util
import os

import numpy as np

import fastnn as fnn

TOL = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=2e-5, atol=2e-6)}


def rng(seed=0):
    return np.random.default_rng(seed)


def load_example(name):
    """examples/<name>.py as a module (its main() not run)."""
    path = os.path.join(os.path.dirname(__file__), "..", "examples", name + ".py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def numeric_gradient(f, x, eps=1e-6):
    """d f / d x by central differences; f() reads x, which is perturbed in place and restored."""
    grad = np.zeros_like(x, dtype=np.float64)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = f()
        flat[i] = old - eps
        fm = f()
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * eps)
    return grad


def check_module_gradients(module, x, seed=0, rtol=1e-6, atol=1e-8, check_input=True):
    """Compares module.backward against finite differences for the input and every trainable parameter.
    The module is cast to float64 first. Returns the analytic input gradient."""
    module.double()
    x = np.array(x, dtype=np.float64)
    y = module(x)
    r = rng(seed).standard_normal(np.shape(y))

    def objective():
        return float(np.sum(r * module(x)))

    module.zero_grad()
    module(x)
    dx = module.backward(r.copy())
    analytic = {name: p.grad.copy() for name, p in module.named_parameters() if p.requires_grad}
    if check_input:
        np.testing.assert_allclose(dx, numeric_gradient(objective, x), rtol=rtol, atol=atol,
                                   err_msg=f"{module!r}: input gradient")
    for name, p in module.named_parameters():
        if p.requires_grad:
            np.testing.assert_allclose(analytic[name], numeric_gradient(objective, p.data), rtol=rtol,
                                       atol=atol, err_msg=f"{module!r}: gradient of {name}")
    return dx


def check_loss_gradient(loss, pred, target, rtol=1e-6, atol=1e-8):
    """Compares loss.backward() (gradient w.r.t. pred) with finite differences of loss(pred, target)."""
    pred = np.array(pred, dtype=np.float64)
    loss(pred, target)
    analytic = np.array(loss.backward(), dtype=np.float64)
    numeric = numeric_gradient(lambda: float(loss(pred, target)), pred)
    np.testing.assert_allclose(analytic, numeric, rtol=rtol, atol=atol, err_msg=f"{loss!r}: gradient")
