"""Arrays whose dtype is equal to float32/int64 but is a different descriptor object (arrays rebuilt by
pickle, joblib or a memory map carry their own) are accepted by every kernel entry, with the same results."""
import pickle

import numpy as np
import pytest

import fastnn as fnn
from harness import rng


def twin(a):
    """The same values, in an array whose dtype descriptor is a distinct but equal object."""
    b = pickle.loads(pickle.dumps(np.ascontiguousarray(a)))
    assert b.dtype == a.dtype and b.dtype is not a.dtype
    return b


def run_layer(layer, x):
    fnn.manual_seed(0)
    out = layer(x)
    if isinstance(out, tuple):  # recurrent layers: (output, state); the gradient flows in through output
        out = out[0]
    dx = layer.backward(np.ones_like(out))
    return out, dx, [p.grad.copy() for p in layer.parameters()]


@pytest.mark.parametrize("make, shape", [
    (lambda: fnn.nn.Linear(6, 4), (5, 6)),
    (lambda: fnn.nn.Conv2d(2, 3, 3, padding=1), (2, 2, 6, 6)),
    (lambda: fnn.nn.MaxPool2d(2), (2, 3, 4, 4)),
    (lambda: fnn.nn.BatchNorm1d(6), (5, 6)),
    (lambda: fnn.nn.LSTM(6, 4, batch_first=True), (2, 3, 6)),
])
def test_layers_accept_equal_dtype_descriptors(make, shape):
    x = rng().standard_normal(shape).astype(np.float32)
    fnn.manual_seed(1)
    layer_a = make()
    fnn.manual_seed(1)
    layer_b = make()
    for pa, pb in zip(layer_a.parameters(), layer_b.parameters()):
        pb.data = twin(pa.data)
    expected = run_layer(layer_a, x)
    got = run_layer(layer_b, twin(x))
    for e, g in zip(_flat(expected), _flat(got), strict=True):
        np.testing.assert_array_equal(e, g)


def _flat(items):
    out = []
    for item in items:
        if isinstance(item, (list, tuple)):
            out.extend(_flat(item))
        else:
            out.append(item)
    return out


def test_integer_targets_and_indices_accept_equal_dtype_descriptors():
    logits = rng().standard_normal((4, 3)).astype(np.float32)
    target = np.array([0, 2, 1, 2], dtype=np.int64)
    loss = fnn.nn.CrossEntropyLoss()
    assert loss(twin(logits), twin(target)) == pytest.approx(loss(logits, target))
    fnn.manual_seed(0)
    emb = fnn.nn.Embedding(5, 3)
    idx = np.array([[0, 4], [3, 3]], dtype=np.int64)
    np.testing.assert_array_equal(emb(twin(idx)), emb(idx))


def test_optimizer_steps_on_equal_dtype_descriptors():
    grads = rng().standard_normal((2, 6, 4)).astype(np.float32)
    finals = []
    for wrap in (lambda a: a, twin):
        fnn.manual_seed(0)
        layer = fnn.nn.Linear(4, 6)
        layer.weight.data = wrap(layer.weight.data)
        opt = fnn.optim.Adam(layer.parameters(), lr=0.01)
        for g in grads:
            layer.zero_grad()
            layer.weight.add_grad(wrap(g))
            opt.step()
        finals.append(layer.weight.data.copy())
    np.testing.assert_array_equal(finals[0], finals[1])
