"""L1Loss, SmoothL1Loss, HuberLoss, KLDivLoss, MultiMarginLoss: values and gradients against PyTorch 2.13
(tests/data/more_losses_reference.npz, made by tests/data/make_more_losses_reference.py) in float64 and float32,
finite differences, backward(grad_output), input validation, Trainer and fnn.save/load."""
import json
import math
import os

import numpy as np
import pytest

import fastnn as fnn
from harness import check_loss_gradient, rng

_REF = np.load(os.path.join(os.path.dirname(__file__), "data", "more_losses_reference.npz"))
CASES = sorted({k.split("/")[0] for k in _REF.files})
TOL = {np.float64: dict(rtol=1e-12, atol=1e-14), np.float32: dict(rtol=2e-5, atol=2e-6)}


def _build(case):
    cfg = json.loads(str(_REF[f"{case}/config"]))
    kwargs = dict(cfg["kwargs"])
    if f"{case}/weight" in _REF.files:
        kwargs["weight"] = _REF[f"{case}/weight"]
    return getattr(fnn.nn, cfg["class"])(**kwargs), cfg


def test_reference_covers_every_loss_and_reduction():
    seen = {(json.loads(str(_REF[f"{c}/config"]))["class"], json.loads(str(_REF[f"{c}/config"]))["kwargs"].get(
        "reduction", "mean")) for c in CASES}
    for cls, reductions in (("L1Loss", "none mean sum"), ("SmoothL1Loss", "none mean sum"),
                            ("HuberLoss", "none mean sum"), ("KLDivLoss", "none batchmean mean sum"),
                            ("MultiMarginLoss", "none mean sum")):
        for red in reductions.split():
            assert (cls, red) in seen


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", CASES)
def test_value_and_gradient_match_pytorch(case, dtype):
    loss, cfg = _build(case)
    x = _REF[f"{case}/input"].astype(dtype)
    t = _REF[f"{case}/target"]
    if t.dtype.kind == "f":
        t = t.astype(dtype)
    value = loss(x, t)
    tol = TOL[dtype]
    expected = _REF[f"{case}/value"]
    if cfg["kwargs"].get("reduction") == "none":
        assert isinstance(value, np.ndarray) and value.dtype == dtype and value.shape == expected.shape
        grad = loss.backward(_REF[f"{case}/grad_output"].astype(dtype))
    else:
        assert isinstance(value, float)
        grad = loss.backward()
    np.testing.assert_allclose(value, expected, **tol)
    assert grad.dtype == dtype and grad.shape == x.shape
    np.testing.assert_allclose(grad, _REF[f"{case}/grad"], **tol)


FD_LOSSES = [
    (lambda red: fnn.nn.L1Loss(reduction=red), "regression"),
    (lambda red: fnn.nn.SmoothL1Loss(reduction=red, beta=0.7), "regression"),
    (lambda red: fnn.nn.HuberLoss(reduction=red, delta=1.3), "regression"),
    (lambda red: fnn.nn.KLDivLoss(reduction=red), "kl"),
    (lambda red: fnn.nn.KLDivLoss(reduction=red, log_target=True), "kl_log"),
    (lambda red: fnn.nn.MultiMarginLoss(p=1, margin=0.8, reduction=red), "classes"),
    (lambda red: fnn.nn.MultiMarginLoss(p=2, weight=[0.5, 1.0, 2.0, 1.5], reduction=red), "classes"),
]


def _data(kind, r):
    x = r.standard_normal((3, 4)) * 2
    if kind == "regression":
        return x, r.standard_normal((3, 4)) * 2
    if kind == "kl":
        p = r.uniform(0.05, 1, (3, 4))
        return x, p / p.sum(1, keepdims=True)
    if kind == "kl_log":
        return x, r.standard_normal((3, 4))
    return x, r.integers(0, 4, 3)


@pytest.mark.parametrize("k, reduction", [(k, red) for k, (_, kind) in enumerate(FD_LOSSES)
                                           for red in ("mean", "sum") + (("batchmean",) if kind.startswith("kl")
                                                                         else ())])
def test_finite_differences(k, reduction):
    make, kind = FD_LOSSES[k]
    x, t = _data(kind, rng(k))
    check_loss_gradient(make(reduction), x, t, rtol=1e-6, atol=1e-9)


def test_reductions_agree_and_grad_output_scales():
    r = rng(3)
    x, t = r.standard_normal((5, 3)), r.standard_normal((5, 3))
    for make in (fnn.nn.L1Loss, fnn.nn.SmoothL1Loss, fnn.nn.HuberLoss):
        per = make(reduction="none")(x, t)
        assert per.shape == (5, 3)
        assert make(reduction="sum")(x, t) == pytest.approx(per.sum(), rel=1e-12)
        mean = make()
        assert mean(x, t) == pytest.approx(per.mean(), rel=1e-12)
        np.testing.assert_allclose(mean.backward(2.5), 2.5 * mean.backward(), rtol=1e-15)
    kl = fnn.nn.KLDivLoss()
    assert repr(kl) == "KLDivLoss()" and kl.reduction == "batchmean"
    p = np.full((5, 3), 1 / 3)
    assert kl(x, p) == pytest.approx(fnn.nn.KLDivLoss(reduction="sum")(x, p) / 5, rel=1e-12)
    hinge = fnn.nn.MultiMarginLoss(reduction="none")
    y = np.array([0, 1, 2, 0, 1])
    assert hinge(x, y).shape == (5,)
    np.testing.assert_allclose(fnn.nn.SmoothL1Loss(beta=0.0)(x, t), fnn.nn.L1Loss()(x, t), rtol=1e-15)
    np.testing.assert_allclose(fnn.nn.HuberLoss(delta=2.0)(x, t), 2.0 * fnn.nn.SmoothL1Loss(beta=2.0)(x, t),
                               rtol=1e-12)


def test_bad_input_names_the_loss_and_shapes():
    x = np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"L1Loss\(\): target shape \(3, 2\) does not match input shape \(2, 3\)"):
        fnn.nn.L1Loss()(x, np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"HuberLoss: delta must be > 0"):
        fnn.nn.HuberLoss(delta=0)
    with pytest.raises(ValueError, match=r"SmoothL1Loss: beta must be >= 0"):
        fnn.nn.SmoothL1Loss(beta=-1)
    with pytest.raises(ValueError, match=r"KLDivLoss: reduction must be one of 'none', 'batchmean'"):
        fnn.nn.KLDivLoss(reduction="avg")
    with pytest.raises(ValueError, match=r"KLDivLoss\(\): target of shape \(2, 3\) has negative entries"):
        fnn.nn.KLDivLoss()(x, -np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"MultiMarginLoss: p must be 1 or 2"):
        fnn.nn.MultiMarginLoss(p=3)
    hinge = fnn.nn.MultiMarginLoss()
    with pytest.raises(ValueError, match=r"MultiMarginLoss\(\): target holds class indices outside \[0, 3\)"):
        hinge(x, np.array([0, 3]))
    with pytest.raises(ValueError, match=r"MultiMarginLoss\(\): target shape \(3,\) does not match input shape "
                                         r"\(2, 3\)"):
        hinge(x, np.array([0, 1, 2]))
    with pytest.raises(TypeError, match=r"MultiMarginLoss\(\): target must be integer class indices"):
        hinge(x, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"MultiMarginLoss\(weight=.*\): weight has shape \(2,\), but input "
                                         r"\(2, 3\) has 3 classes|weight has shape \(2,\)"):
        fnn.nn.MultiMarginLoss(weight=[1.0, 2.0])(x, np.array([0, 1]))
    none = fnn.nn.MultiMarginLoss(reduction="none")
    none(x, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"grad_output has shape \(3,\), but the forward output had shape \(2,\)"):
        none.backward(np.ones(3))
    with pytest.raises(ValueError, match=r"L1Loss\(\): backward\(\) called before forward"):
        fnn.nn.L1Loss().backward()


def test_trainer_fits_with_the_new_losses_and_they_save_and_load(tmp_path):
    r = rng(9)
    x = r.standard_normal((400, 4)).astype(np.float32)
    w = r.standard_normal((4, 3)).astype(np.float32)
    y_reg = x @ w
    y_cls = np.argmax(y_reg, 1)
    for loss, y in ((fnn.nn.HuberLoss(delta=0.5), y_reg), (fnn.nn.SmoothL1Loss(beta=0.5), y_reg),
                    (fnn.nn.L1Loss(), y_reg), (fnn.nn.MultiMarginLoss(p=2, margin=0.5), y_cls)):
        fnn.random.manual_seed(0)
        model = fnn.nn.Linear(4, 3)
        trainer = fnn.Trainer(model, loss=loss, optimizer=fnn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
        history = trainer.fit(x, y, epochs=5, batch_size=40, verbose=0)
        assert history["loss"][-1] < 0.25 * history["loss"][0], (loss, history["loss"])
        if isinstance(loss, fnn.nn.MultiMarginLoss):  # class scores: Trainer reports accuracy by default
            assert history["accuracy"][-1] > 0.9
        else:
            assert "accuracy" not in history
        path = tmp_path / f"{type(loss).__name__}.safetensors"
        fnn.save(loss, path)
        back = fnn.load(path)
        assert repr(back) == repr(loss)
        assert back(model(x), y) == loss(model(x), y)


def _oracle(name, x, t, **kw):
    """Per-item losses written element by element with Python's math, straight from the definitions."""
    if name == "MultiMarginLoss":
        p, margin, w = kw.get("p", 1), kw.get("margin", 1.0), kw.get("weight")
        out = []
        for row, y in zip(x, t):
            s = 0.0
            for i, v in enumerate(row):
                if i != y:
                    z = max(0.0, margin - row[y] + v)
                    s += (z ** p) * (1.0 if w is None else w[y])
            out.append(s / len(row))
        return np.array(out)
    flat = []
    for a, b in zip(x.ravel(), t.ravel()):
        d = a - b
        if name == "L1Loss":
            flat.append(abs(d))
        elif name == "SmoothL1Loss":
            beta = kw["beta"]
            flat.append(0.5 * d * d / beta if abs(d) < beta else abs(d) - 0.5 * beta)
        elif name == "HuberLoss":
            delta = kw["delta"]
            flat.append(0.5 * d * d if abs(d) < delta else delta * (abs(d) - 0.5 * delta))
        elif kw.get("log_target"):
            flat.append(math.exp(b) * (b - a))
        else:
            flat.append(0.0 if b == 0 else b * (math.log(b) - a))
    return np.array(flat).reshape(x.shape)


@pytest.mark.parametrize("name, kw", [("L1Loss", {}), ("SmoothL1Loss", {"beta": 0.8}), ("HuberLoss", {"delta": 1.7}),
                                      ("KLDivLoss", {}), ("KLDivLoss", {"log_target": True}),
                                      ("MultiMarginLoss", {"p": 1, "margin": 0.6}),
                                      ("MultiMarginLoss", {"p": 2, "weight": [2.0, 0.5, 1.0, 1.5, 0.7]})])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_per_item_values_match_a_plain_oracle(name, kw, dtype):
    r = rng(11)
    x = r.standard_normal((6, 5)) * 2
    if name == "MultiMarginLoss":
        t = r.integers(0, 5, 6)
    elif name == "KLDivLoss" and not kw.get("log_target"):
        t = r.uniform(0, 1, (6, 5))
        t[0, 0] = 0.0
        t = t / t.sum(1, keepdims=True)
    else:
        t = r.standard_normal((6, 5)) * 2
    expected = _oracle(name, x, t, **kw)
    loss = getattr(fnn.nn, name)(reduction="none", **kw)
    got = loss(x.astype(dtype), t.astype(dtype) if t.dtype.kind == "f" else t)
    tol = TOL[dtype] if dtype == np.float32 else dict(rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(got, expected, **tol)
    total = getattr(fnn.nn, name)(reduction="sum", **kw)(x, t)
    assert total == pytest.approx(expected.sum(), rel=1e-13)
