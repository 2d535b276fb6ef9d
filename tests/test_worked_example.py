"""Seed 002 §3.2.5: the 2-2-2 sigmoid network with squared error, by the public API, to the printed digits."""
import numpy as np
import pytest

import fastnn as fnn


def seed_network(dtype):
    model = fnn.nn.Sequential(fnn.nn.Linear(2, 2), fnn.nn.Sigmoid(), fnn.nn.Linear(2, 2), fnn.nn.Sigmoid())
    model.to(dtype)
    # weight[j, i] connects input i to unit j: w1 (i1→h1), w2 (i2→h1), w3 (i1→h2), w4 (i2→h2).
    model.load_state_dict({
        "0.weight": np.array([[0.15, 0.20], [0.25, 0.30]]), "0.bias": np.array([0.35, 0.35]),
        "2.weight": np.array([[0.40, 0.45], [0.50, 0.55]]), "2.bias": np.array([0.60, 0.60]),
    })
    for name, p in model.named_parameters():
        p.requires_grad = not name.endswith("bias")  # the seed holds the biases fixed
    return model


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-9), (np.float32, 1e-6)])
def test_backprop_worked_example(dtype, tol):
    model = seed_network(dtype)
    x = np.array([[0.05, 0.10]])
    target = np.array([[0.01, 0.99]])
    loss_fn = fnn.nn.MSELoss(reduction="half_sum")  # E = Σ ½(target − out)²

    hidden = model[1](model[0](x))
    np.testing.assert_allclose(hidden[0], [0.593269992, 0.596884378], atol=tol)
    out = model(x)
    np.testing.assert_allclose(out[0], [0.75136507, 0.772928465], atol=tol)
    e_total = loss_fn(out, target)
    assert e_total == pytest.approx(0.298371109, abs=tol)

    model.zero_grad()
    model.backward(loss_fn.backward())
    w5_grad = model[2].weight.grad[0, 0]
    assert w5_grad == pytest.approx(0.082167041, abs=tol)

    opt = fnn.optim.SGD(model.parameters(), lr=0.5)
    opt.step()
    np.testing.assert_allclose(model[2].weight.data.ravel(), [0.35891648, 0.408666186, 0.511301270, 0.561370121],
                               atol=tol)
    np.testing.assert_allclose(model[0].weight.data.ravel(), [0.149780716, 0.19956143, 0.24975114, 0.29950229],
                               atol=tol)
    np.testing.assert_array_equal(model[0].bias.data, np.array([0.35, 0.35], dtype))
    np.testing.assert_array_equal(model[2].bias.data, np.array([0.60, 0.60], dtype))
