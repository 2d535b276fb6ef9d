"""L1, L2 and max-norm: one SGD step with and without, against the formulas by hand in numpy."""
import numpy as np
import pytest

import fastnn as fnn
from fastnn.regularizers import L1, L2, MaxNorm, PenaltyLogger, Regularized


def model_and_batch(seed=0):
    fnn.manual_seed(seed)
    model = fnn.nn.Sequential(fnn.nn.Linear(4, 3), fnn.nn.Tanh(), fnn.nn.Linear(3, 2)).double()
    r = np.random.default_rng(seed)
    return model, r.standard_normal((5, 4)), r.standard_normal((5, 2))


def data_gradients(model, x, y):
    """Weights before the step and ∂C₀/∂w of an MSE loss."""
    loss = fnn.nn.MSELoss()
    model.zero_grad()
    value = loss(model(x), y)
    model.backward(loss.backward())
    return value, {k: p.data.copy() for k, p in model.named_parameters()}, \
        {k: p.grad.copy() for k, p in model.named_parameters()}


def sgd_step(model, opt, x, y):
    loss = fnn.nn.MSELoss()
    opt.zero_grad()
    value = loss(model(x), y)
    model.backward(loss.backward())
    opt.step()
    return value


@pytest.mark.parametrize("kind", ["L2", "L1"])
def test_penalty_changes_the_sgd_update_as_the_formula_says(kind):
    eta, lam, n = 0.1, 3.0, 50
    model, x, y = model_and_batch()
    _, w0, g0 = data_gradients(model, x, y)
    reg = L2(lam, n) if kind == "L2" else L1(lam, n)
    opt = Regularized(fnn.optim.SGD(model.parameters(), lr=eta), (model, reg))
    sgd_step(model, opt, x, y)
    for name, p in model.named_parameters():
        w, g = w0[name], g0[name]
        if name.endswith("bias"):
            expected = w - eta * g                                   # biases are not decayed
        elif kind == "L2":
            expected = (1 - eta * lam / n) * w - eta * g
        else:
            expected = w - eta * lam / n * np.sign(w) - eta * g
        np.testing.assert_allclose(p.data, expected, rtol=1e-12, atol=1e-14, err_msg=name)
    weights = [w0["0.weight"], w0["2.weight"]]
    if kind == "L2":
        assert opt.penalty == pytest.approx(lam / (2 * n) * sum(np.sum(w ** 2) for w in weights), rel=1e-12)
    else:
        assert opt.penalty == pytest.approx(lam / n * sum(np.sum(np.abs(w)) for w in weights), rel=1e-12)


def test_per_layer_penalty_and_include_bias():
    eta, lam = 0.5, 0.2
    model, x, y = model_and_batch(1)
    _, w0, g0 = data_gradients(model, x, y)
    opt = Regularized(fnn.optim.SGD(model.parameters(), lr=eta), (model[2], L2(lam, include_bias=True)))
    sgd_step(model, opt, x, y)
    for name, p in model.named_parameters():
        decay = (1 - eta * lam) if name.startswith("2.") else 1.0     # only the last layer, its bias too
        np.testing.assert_allclose(p.data, decay * w0[name] - eta * g0[name], rtol=1e-12, atol=1e-14)


def test_l2_with_bias_equals_sgd_weight_decay():
    lam, n = 4.0, 8
    a, x, y = model_and_batch(2)
    b, _, _ = model_and_batch(2)
    opt_a = Regularized(fnn.optim.SGD(a.parameters(), lr=0.3, momentum=0.9), (a, L2(lam, n, include_bias=True)))
    opt_b = fnn.optim.SGD(b.parameters(), lr=0.3, momentum=0.9, weight_decay=lam / n)
    for _ in range(3):
        sgd_step(a, opt_a, x, y)
        sgd_step(b, opt_b, x, y)
    for pa, pb in zip(a.parameters(), b.parameters()):
        np.testing.assert_allclose(pa.data, pb.data, rtol=1e-12)


def test_frozen_parameters_are_not_penalised():
    model, x, y = model_and_batch(3)
    model[0].weight.requires_grad = False
    before, last = model[0].weight.data.copy(), model[2].weight.data.copy()
    opt = Regularized(fnn.optim.SGD(model.parameters(), lr=0.1), (model, L2(100.0)))
    sgd_step(model, opt, x, y)
    np.testing.assert_array_equal(model[0].weight.data, before)
    assert opt.penalty == pytest.approx(50.0 * np.sum(last ** 2), rel=1e-12)  # 2.weight only


def test_max_norm_bounds_each_row_and_leaves_small_rows_alone():
    fnn.manual_seed(0)
    lin = fnn.nn.Linear(3, 3).double()
    lin.weight.data[...] = [[3.0, 4.0, 0.0], [0.1, 0.2, 0.2], [0.0, 0.0, -10.0]]
    lin.bias.data[...] = [5.0, 5.0, 5.0]
    MaxNorm(2.0).apply(lin)
    np.testing.assert_allclose(lin.weight.data, [[1.2, 1.6, 0.0], [0.1, 0.2, 0.2], [0.0, 0.0, -2.0]], rtol=1e-12)
    np.testing.assert_array_equal(lin.bias.data, [5.0, 5.0, 5.0])   # biases are not constrained


def test_max_norm_per_output_filter_of_a_4d_weight():
    w = fnn.nn.Parameter(np.random.default_rng(0).standard_normal((4, 2, 3, 3)) * 3)
    original = w.data.copy()
    MaxNorm(1.5).apply(w)
    norms = np.sqrt((w.data ** 2).sum(axis=(1, 2, 3)))
    np.testing.assert_allclose(norms, np.minimum(np.sqrt((original ** 2).sum(axis=(1, 2, 3))), 1.5), rtol=1e-12)
    # direction unchanged
    np.testing.assert_allclose(w.data / norms[:, None, None, None],
                               original / np.sqrt((original ** 2).sum(axis=(1, 2, 3)))[:, None, None, None])


def test_max_norm_after_each_step_in_the_trainer_with_penalty_in_history():
    fnn.manual_seed(0)
    model = fnn.nn.Sequential(fnn.nn.Linear(6, 8), fnn.nn.ReLU(), fnn.nn.Linear(8, 3))
    x = np.random.default_rng(1).standard_normal((64, 6)).astype(np.float32) * 5
    y = np.arange(64) % 3
    c = 0.5
    opt = Regularized(fnn.optim.SGD(model.parameters(), lr=1.0), (model, L1(0.01, n=64)), (model, MaxNorm(c)))
    norms = []
    check = fnn.callbacks.LambdaCallback(on_batch_end=lambda b, logs: norms.append(
        max(np.linalg.norm(model[i].weight.data, axis=1).max() for i in (0, 2))))
    trainer = fnn.Trainer(model, fnn.nn.CrossEntropyLoss(), opt, callbacks=[PenaltyLogger(), check])
    history = trainer.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert max(norms) <= c * (1 + 1e-6)
    assert len(history["penalty"]) == 2 and all(p > 0 for p in history["penalty"])
    assert history["lr"] == [1.0, 1.0]


def test_bad_terms():
    model, _, _ = model_and_batch()
    opt = fnn.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(TypeError, match="pair"):
        Regularized(opt, L2(1.0))
    with pytest.raises(ValueError, match="lam"):
        L2(-1.0)
    with pytest.raises(ValueError, match="c must"):
        MaxNorm(0)
