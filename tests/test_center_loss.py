"""CenterLoss: value, gradient by finite differences, centre update against the formula,
state_dict, and the combined softmax + λ·center objective training a small model."""
import numpy as np
import pytest

import fastnn as fnn
from harness import numeric_gradient


def batch(seed=0, n=7, dim=3, classes=4):
    r = np.random.default_rng(seed)
    return r.standard_normal((n, dim)), r.integers(0, classes, n)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_value_and_gradient_by_finite_differences(reduction):
    x, y = batch()
    loss = fnn.nn.CenterLoss(4, 3, alpha=0.5, lam=0.3, reduction=reduction).double()
    loss.centers[...] = np.random.default_rng(1).standard_normal((4, 3))
    m = len(x) if reduction == "mean" else 1
    expected = 0.3 / m * 0.5 * sum(np.sum((x[i] - loss.centers[y[i]]) ** 2) for i in range(len(x)))
    assert loss(x, y) == pytest.approx(expected, rel=1e-12)
    loss.eval()  # centres fixed while differencing
    analytic = loss.backward()
    np.testing.assert_allclose(analytic, 0.3 / m * (x - loss.centers[y]), rtol=1e-12)
    np.testing.assert_allclose(analytic, numeric_gradient(lambda: loss(x, y), x), rtol=1e-6, atol=1e-9)
    loss(x, y)
    np.testing.assert_allclose(loss.backward(2.0), 2 * analytic, rtol=1e-12)


def test_centre_update_follows_the_formula():
    x, y = batch(2, n=9)
    y[:3] = 1                      # class 1 several times; make sure some class is absent
    y[y == 3] = 0
    loss = fnn.nn.CenterLoss(4, 3, alpha=0.6, lam=1.0).double()
    c = np.random.default_rng(3).standard_normal((4, 3))
    loss.centers[...] = c
    loss(x, y)
    grad = loss.backward()         # gradient with the old centres, then the update
    np.testing.assert_allclose(grad, (x - c[y]) / len(x), rtol=1e-12)
    expected = c.copy()
    for j in range(4):
        mask = y == j
        delta = np.sum(c[j] - x[mask], axis=0) / (1 + mask.sum())
        expected[j] = c[j] - 0.6 * delta
    np.testing.assert_allclose(loss.centers, expected, rtol=1e-12)
    np.testing.assert_array_equal(loss.centers[3], c[3])  # absent class unchanged


def test_eval_mode_and_evaluation_do_not_move_centres():
    x, y = batch()
    loss = fnn.nn.CenterLoss(4, 3).double()
    loss.centers[...] = 1.0
    loss.eval()
    loss(x, y)
    loss.backward()
    np.testing.assert_array_equal(loss.centers, 1.0)
    loss.train()
    loss(x, y)
    np.testing.assert_array_equal(loss.centers, 1.0)   # forward alone never updates
    loss.update_centers()
    assert not np.all(loss.centers == 1.0)


def test_centres_are_a_buffer_in_state_dict():
    loss = fnn.nn.CenterLoss(5, 2)
    assert set(loss.state_dict()) == {"centers"} and loss.state_dict()["centers"].shape == (5, 2)
    other = fnn.nn.CenterLoss(5, 2)
    other.load_state_dict({"centers": np.arange(10.0).reshape(5, 2)})
    np.testing.assert_array_equal(other.centers, np.arange(10.0).reshape(5, 2))
    assert other.centers.dtype == np.float32 and not loss.parameters()


def test_bad_input():
    loss = fnn.nn.CenterLoss(3, 2)
    with pytest.raises(ValueError, match=r"CenterLoss.*\(N, 2\)"):
        loss(np.zeros((4, 3), np.float32), np.zeros(4, np.int64))
    with pytest.raises(ValueError, match="labels"):
        loss(np.zeros((2, 2), np.float32), np.array([0, 3]))
    with pytest.raises(RuntimeError):
        fnn.nn.CenterLoss(3, 2).backward()


def test_softmax_plus_center_loss_trains_and_tightens_clusters():
    fnn.manual_seed(0)
    r = np.random.default_rng(0)
    means = np.array([[2.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 2.0, 0]])
    y = r.integers(0, 3, 240)
    x = (means[y] + 0.7 * r.standard_normal((240, 4))).astype(np.float32)

    def run(lam):
        fnn.manual_seed(1)
        body = fnn.nn.Sequential(fnn.nn.Linear(4, 16), fnn.nn.ReLU(), fnn.nn.Linear(16, 2))
        head = fnn.nn.Linear(2, 3)
        ce, center = fnn.nn.CrossEntropyLoss(), fnn.nn.CenterLoss(3, 2, alpha=0.5, lam=lam)
        opt = fnn.optim.SGD(body.parameters() + head.parameters(), lr=0.1, momentum=0.9)
        for epoch in range(30):
            for s in range(0, 240, 24):
                xb, yb = x[s:s + 24], y[s:s + 24]
                feats = body(xb)
                ce(head(feats), yb)
                center(feats, yb)
                body.backward(head.backward(ce.backward()) + center.backward())
                opt.step()
                opt.zero_grad()
        body.eval()
        head.eval()
        feats = body(x)
        acc = np.mean(head(feats).argmax(1) == y)
        within = np.mean([np.sum((feats[y == j] - feats[y == j].mean(0)) ** 2, 1).mean() for j in range(3)])
        between = np.mean(np.sum((feats - feats.mean(0)) ** 2, 1))
        return acc, within / between, center.centers

    acc, ratio, centers = run(1.0)
    acc0, ratio0, _ = run(0.0)
    assert acc > 0.9
    assert ratio < ratio0                          # the centre term tightens the classes
    assert np.abs(centers).sum() > 0               # centres moved from zero towards the features
