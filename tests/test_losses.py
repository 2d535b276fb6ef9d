"""Losses: values and gradients against plain NumPy oracles, finite differences, stability,
errors, and odd input layouts."""
import numpy as np
import pytest

import fastnn as fnn
from harness import TOL, check_loss_gradient, numeric_gradient, rng

nn = fnn.nn


# ---- NumPy oracles (float64; slow and obviously right) --------------------------------------------------------
# Each returns (per-item losses, per-item gradient, denominator of 'mean'): the gradient of item i's loss
# w.r.t. pred, so the reduced gradient is items_grad / denominator ('mean') or items_grad ('sum').

def log_softmax(x):
    m = x.max(axis=1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))


def cross_entropy_oracle(x, target, weight=None, ignore_index=-100, label_smoothing=0.0):
    """Row i's loss is −Σ_c a_ic·log p_ic for a per-row coefficient vector a, so its gradient is p·Σa − a."""
    n, c = x.shape
    w = np.ones(c) if weight is None else np.asarray(weight, np.float64)
    if target.ndim == 2:  # class probabilities
        a = w * ((1 - label_smoothing) * target + label_smoothing / c)
        denominator = n
    else:
        keep = target != ignore_index
        labels = np.where(keep, target, 0)
        onehot = np.eye(c)[labels]
        a = (1 - label_smoothing) * onehot * w[labels][:, None] + label_smoothing / c * w
        a = a * keep[:, None]
        denominator = w[labels][keep].sum()
    lp = log_softmax(x)
    items = -(a * lp).sum(axis=1)
    grad = np.exp(lp) * a.sum(axis=1, keepdims=True) - a
    return items, grad, denominator


def nll_oracle(x, target, weight=None, ignore_index=-100):
    n, c = x.shape
    w = np.ones(c) if weight is None else np.asarray(weight, np.float64)
    items, grad, denominator = np.zeros(n), np.zeros((n, c)), 0.0
    for i in range(n):
        if target[i] != ignore_index:
            items[i] = -w[target[i]] * x[i, target[i]]
            grad[i, target[i]] = -w[target[i]]
            denominator += w[target[i]]
    return items, grad, denominator


def mse_oracle(p, t):
    return (p - t) ** 2, 2 * (p - t), p.size


def bce_oracle(p, t, weight=None):
    w = 1.0 if weight is None else weight
    with np.errstate(divide="ignore"):
        items = -w * (t * np.maximum(np.log(p), -100) + (1 - t) * np.maximum(np.log(1 - p), -100))
    grad = w * (p - t) / np.maximum(p * (1 - p), 1e-12)
    return items, np.broadcast_to(grad, p.shape), p.size


def bce_logits_oracle(x, t, weight=None, pos_weight=None):
    """−w·(q·t·log σ(x) + (1−t)·log(1−σ(x))); d/dx = w·((1−t)·σ(x) − q·t·(1−σ(x)))."""
    w = 1.0 if weight is None else weight
    q = 1.0 if pos_weight is None else pos_weight
    log_sig, log_one_minus_sig = -np.logaddexp(0, -x), -np.logaddexp(0, x)
    items = -w * (q * t * log_sig + (1 - t) * log_one_minus_sig)
    sig = 0.5 * (1 + np.tanh(x / 2))
    grad = w * ((1 - t) * sig - q * t * (1 - sig))
    return items, np.broadcast_to(grad, x.shape), x.size


def reduce_oracle(items, grad, denominator, reduction, item_weights=None, class_axis=False):
    """(value, gradient of value) for a reduction; for 'none' the gradient of Σ item_weights·items."""
    if reduction == "none":
        r = np.ones(items.shape) if item_weights is None else item_weights
        return items, grad * (np.expand_dims(r, 1) if class_axis else r)
    scale = {"mean": 1 / denominator, "sum": 1.0, "half_sum": 0.5}[reduction]
    return items.sum() * scale, grad * scale


def check_against(loss, pred, target, oracle, dtype, class_axis=False, **oracle_kwargs):
    """Runs loss on pred/target cast to dtype and compares value and gradient with the float64 oracle."""
    pred = np.asarray(pred).astype(dtype)
    x64 = pred.astype(np.float64)
    t64 = target.astype(np.float64) if target.dtype.kind == "f" else target
    items, grad, denominator = oracle(x64, t64, **oracle_kwargs)
    weights = rng(7).uniform(0.5, 2.0, np.shape(items)) if loss.reduction == "none" else None
    expected_value, expected_grad = reduce_oracle(items, grad, denominator, loss.reduction, weights, class_axis)
    value = loss(pred, target)
    got_grad = loss.backward(None if weights is None else weights.astype(dtype))
    tol = TOL[dtype] if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)
    if loss.reduction == "none":
        assert isinstance(value, np.ndarray) and value.dtype == dtype and value.shape == np.shape(items)
    else:
        assert isinstance(value, float)
    np.testing.assert_allclose(value, expected_value, **tol)
    assert got_grad.dtype == dtype and got_grad.shape == pred.shape
    np.testing.assert_allclose(got_grad, expected_grad, **tol)


def labels_with_ignored(n, c, seed=0, ignore_index=-100):
    y = rng(seed).integers(0, c, n)
    y[1::4] = ignore_index
    return y


DTYPES = [np.float64, np.float32]
REDUCTIONS = ["mean", "sum", "none"]


# ---- CrossEntropyLoss -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("ignore", [False, True])
def test_cross_entropy_labels_match_oracle(dtype, reduction, weighted, smoothing, ignore):
    r = rng(3)
    x = 3 * r.standard_normal((9, 5))
    y = labels_with_ignored(9, 5, ignore_index=7) if ignore else r.integers(0, 5, 9)
    w = r.uniform(0.2, 2.0, 5) if weighted else None
    loss = nn.CrossEntropyLoss(weight=w, ignore_index=7, reduction=reduction, label_smoothing=smoothing)
    check_against(loss, x, y, cross_entropy_oracle, dtype, class_axis=True, weight=w, ignore_index=7,
                  label_smoothing=smoothing)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_cross_entropy_probability_targets_match_oracle(dtype, reduction, weighted, smoothing):
    r = rng(4)
    x = 3 * r.standard_normal((6, 4))
    t = r.dirichlet(np.ones(4), 6)
    w = r.uniform(0.2, 2.0, 4) if weighted else None
    loss = nn.CrossEntropyLoss(weight=w, reduction=reduction, label_smoothing=smoothing)
    check_against(loss, x, t.astype(dtype), cross_entropy_oracle, dtype, class_axis=True, weight=w,
                  label_smoothing=smoothing)


def test_cross_entropy_one_hot_targets_equal_labels():
    r = rng(5)
    x = r.standard_normal((8, 6))
    y = r.integers(0, 6, 8)
    a = nn.CrossEntropyLoss()
    b = nn.CrossEntropyLoss()
    np.testing.assert_allclose(a(x, y), b(x, np.eye(6)[y]), rtol=1e-14)
    np.testing.assert_allclose(a.backward(), b.backward(), rtol=1e-13, atol=1e-16)


def test_cross_entropy_gradient_is_softmax_minus_onehot_over_n():
    x = rng(6).standard_normal((4, 3))
    y = np.array([0, 2, 1, 2])
    loss = nn.CrossEntropyLoss()
    loss(x, y)
    p = np.exp(x) / np.exp(x).sum(1, keepdims=True)
    np.testing.assert_allclose(loss.backward(), (p - np.eye(3)[y]) / 4, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("probabilities", [False, True])
def test_cross_entropy_spatial_input(reduction, probabilities):
    """(N, C, d1, d2) logits: the same as the (N·d1·d2, C) rows with the class axis moved last."""
    r = rng(8)
    x = r.standard_normal((3, 4, 2, 5))
    if probabilities:
        t = np.moveaxis(r.dirichlet(np.ones(4), (3, 2, 5)), -1, 1)
    else:
        t = r.integers(0, 4, (3, 2, 5))
        t[0, 1, 2] = -100
    w = r.uniform(0.5, 1.5, 4)
    loss = nn.CrossEntropyLoss(weight=w, reduction=reduction, label_smoothing=0.1)
    value = loss(x, t)
    g = rng(9).standard_normal((3, 2, 5)) if reduction == "none" else None
    grad = loss.backward(g)
    rows = np.moveaxis(x, 1, -1).reshape(-1, 4)
    rows_t = np.moveaxis(t, 1, -1).reshape(-1, 4) if probabilities else t.reshape(-1)
    items, row_grad, denominator = cross_entropy_oracle(rows, rows_t, w, label_smoothing=0.1)
    ev, eg = reduce_oracle(items, row_grad, denominator, reduction, None if g is None else g.reshape(-1), True)
    if reduction == "none":
        ev = ev.reshape(3, 2, 5)
    np.testing.assert_allclose(value, ev, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(grad, np.moveaxis(eg.reshape(3, 2, 5, 4), -1, 1), rtol=1e-12, atol=1e-14)
    assert grad.flags.c_contiguous


def test_cross_entropy_all_targets_ignored_is_nan_like_pytorch():
    loss = nn.CrossEntropyLoss()
    value = loss(np.zeros((3, 4)), np.full(3, -100))
    assert np.isnan(value)
    assert not loss.backward().any()
    assert nn.CrossEntropyLoss(reduction="sum")(np.zeros((3, 4)), np.full(3, -100)) == 0.0


def misaligned(a, offset):
    """a copied to an address `offset` elements past an allocation's start."""
    buf = np.empty(a.size + offset, a.dtype)
    out = buf[offset:].reshape(a.shape)
    out[...] = a
    return out


@pytest.mark.parametrize("make", [
    lambda: (nn.CrossEntropyLoss(label_smoothing=0.1), rng(10).integers(0, 10, 6000)),
    lambda: (nn.CrossEntropyLoss(weight=np.linspace(0.5, 2, 10)), rng(10).dirichlet(np.ones(10), 6000)),
    lambda: (nn.MSELoss(), rng(10).standard_normal((6000, 10))),
    lambda: (nn.BCEWithLogitsLoss(), rng(10).uniform(0, 1, (6000, 10))),
])
def test_large_batch_same_bits_for_any_thread_count_and_address(make):
    """Above the parallel threshold results must depend neither on the thread count nor on alignment."""
    loss, target = make()
    x = rng(11).standard_normal((6000, 10)).astype(np.float32)
    if target.dtype.kind == "f":
        target = target.astype(np.float32)
    before = fnn.get_num_threads()
    results = []
    try:
        for threads, offset in [(1, 0), (2, 0), (1, 1), (2, 3), (2, 5)]:
            fnn.set_num_threads(threads)
            value = loss(misaligned(x, offset), misaligned(target, offset))
            results.append((value, loss.backward().tobytes()))
    finally:
        fnn.set_num_threads(before)
    assert all(r == results[0] for r in results)


def test_cross_entropy_large_batch_matches_oracle():
    r = rng(10)
    x = r.standard_normal((6000, 10)).astype(np.float32)
    y = r.integers(0, 10, 6000)
    loss = nn.CrossEntropyLoss(label_smoothing=0.1)
    value, grad = loss(x, y), loss.backward()
    items, row_grad, den = cross_entropy_oracle(x.astype(np.float64), y, label_smoothing=0.1)
    np.testing.assert_allclose(value, items.sum() / den, rtol=1e-6)
    np.testing.assert_allclose(grad, row_grad / den, rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("loss,pred,target", [
    (nn.CrossEntropyLoss, np.zeros((0, 3)), np.zeros(0, np.int64)),
    (nn.CrossEntropyLoss, np.zeros((0, 3)), np.zeros((0, 3))),
    (nn.NLLLoss, np.zeros((0, 3)), np.zeros(0, np.int64)),
    (nn.MSELoss, np.zeros((0, 3)), np.zeros((0, 3))),
    (nn.BCEWithLogitsLoss, np.zeros((0, 3)), np.zeros((0, 3))),
])
def test_empty_batch_like_pytorch(loss, pred, target):
    """No crash: 'mean' of nothing is NaN (as PyTorch), 'sum' is 0, gradients are empty."""
    assert np.isnan(loss()(pred, target))
    s = loss(reduction="sum")
    assert s(pred, target) == 0.0 and s.backward().shape == pred.shape


def test_zero_classes_is_an_error():
    with pytest.raises(ValueError, match=r"CrossEntropyLoss\(\).*at least one class"):
        nn.CrossEntropyLoss()(np.zeros((2, 0)), np.full(2, -100))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_stable_for_huge_logits(dtype, smoothing):
    x = np.array([[1000, -1000, 0], [-1000, 1000, 0], [1000, 1000, -1000], [1e4, -1e4, 5e3]], dtype)
    y = np.array([0, 0, 1, 2])
    loss = nn.CrossEntropyLoss(reduction="none", label_smoothing=smoothing)
    value = loss(x, y)
    grad = loss.backward()
    assert np.isfinite(value).all() and np.isfinite(grad).all()
    # lse − x_y exactly: row 0 is right (0), row 1 wrong by 2000, row 2 a tie (log 2), row 3 wrong by 5000
    keep = 1 - smoothing
    smooth_terms = np.array([0 + 2000 + 1000, 2000 + 0 + 1000, 3 * np.log(2) + 2000, 0 + 2e4 + 5e3]) / 3
    expected = keep * np.array([0, 2000, np.log(2), 5000]) + smoothing * smooth_terms
    np.testing.assert_allclose(value, expected, rtol=1e-6, atol=1e-6)
    p = np.array([[1, 0, 0], [0, 1, 0], [0.5, 0.5, 0], [1, 0, 0]])
    np.testing.assert_allclose(grad, p - keep * np.eye(3)[y] - smoothing / 3, atol=1e-6)


# ---- NLLLoss --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_nll_matches_oracle(dtype, reduction, weighted):
    r = rng(11)
    x = log_softmax(r.standard_normal((8, 5)))
    y = labels_with_ignored(8, 5)
    w = r.uniform(0.2, 2.0, 5) if weighted else None
    check_against(nn.NLLLoss(weight=w, reduction=reduction), x, y, nll_oracle, dtype, class_axis=True, weight=w)


def test_nll_of_log_softmax_equals_cross_entropy():
    r = rng(12)
    x = r.standard_normal((7, 4))
    y = r.integers(0, 4, 7)
    w = r.uniform(0.5, 2, 4)
    ce, nll = nn.CrossEntropyLoss(weight=w), nn.NLLLoss(weight=w)
    np.testing.assert_allclose(ce(x, y), nll(log_softmax(x), y), rtol=1e-13)


def test_nll_spatial_and_minus_infinity():
    r = rng(13)
    x = log_softmax(r.standard_normal((2, 3, 4)))
    y = r.integers(0, 3, (2, 4))
    loss = nn.NLLLoss(reduction="none")
    np.testing.assert_allclose(loss(x, y), -np.take_along_axis(x, y[:, None], 1)[:, 0], rtol=1e-14)
    assert loss.backward().shape == x.shape
    # log 0 = −inf is a valid log-probability: the loss is +inf when it is the target's, finite otherwise
    lp = np.array([[-np.inf, 0.0]])
    assert nn.NLLLoss()(lp, np.array([1])) == 0.0
    assert nn.NLLLoss()(lp, np.array([0])) == np.inf


# ---- MSELoss, BCELoss, BCEWithLogitsLoss ----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS + ["half_sum"])
def test_mse_matches_oracle(dtype, reduction):
    r = rng(14)
    p, t = r.standard_normal((2, 5, 3)), r.standard_normal((2, 5, 3))
    check_against(nn.MSELoss(reduction=reduction), p, t.astype(dtype), mse_oracle, dtype)


def test_half_sum_mse_reproduces_the_seed_worked_example():
    """Seed 002 §3.2.5: E_total = Σ ½(target − out)² = 0.298371109; ∂E/∂out_o1 = out_o1 − target_o1."""
    out = np.array([0.75136507, 0.772928465])
    target = np.array([0.01, 0.99])
    loss = nn.MSELoss(reduction="half_sum")
    assert abs(loss(out, target) - 0.298371109) < 1e-8
    np.testing.assert_allclose(loss.backward(), [0.74136507, -0.217071535], rtol=1e-12)
    assert nn.MSELoss()(out, target) == pytest.approx(0.298371109, rel=1e-8)  # mean of 2 = half the sum


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weight_shape", [None, (4,), (3, 1), (3, 4)])
def test_bce_matches_oracle(dtype, reduction, weight_shape):
    r = rng(15)
    p = r.uniform(0.02, 0.98, (3, 4))
    t = r.uniform(0, 1, (3, 4))
    w = None if weight_shape is None else r.uniform(0.2, 2, weight_shape)
    check_against(nn.BCELoss(weight=w, reduction=reduction), p, t.astype(dtype), bce_oracle, dtype, weight=w)


def test_bce_clamps_log_like_pytorch():
    loss = nn.BCELoss(reduction="none")
    value = loss(np.array([0.0, 1.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0, 1.0]))
    np.testing.assert_array_equal(value, [100.0, 100.0, 0.0, 0.0])
    assert np.isfinite(loss.backward()).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("pos_weighted", [False, True])
def test_bce_with_logits_matches_oracle(dtype, reduction, weighted, pos_weighted):
    r = rng(16)
    x = 4 * r.standard_normal((5, 3))
    t = r.uniform(0, 1, (5, 3))
    w = r.uniform(0.2, 2, (5, 1)) if weighted else None
    q = r.uniform(0.5, 3, 3) if pos_weighted else None
    loss = nn.BCEWithLogitsLoss(weight=w, reduction=reduction, pos_weight=q)
    check_against(loss, x, t.astype(dtype), bce_logits_oracle, dtype, weight=w, pos_weight=q)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_with_logits_stable_for_huge_logits(dtype):
    x = np.array([1000, -1000, 1000, -1000, 50, -50], dtype)
    t = np.array([1, 0, 0, 1, 1, 1], dtype)
    loss = nn.BCEWithLogitsLoss(reduction="none")
    value = loss(x, t)
    np.testing.assert_allclose(value, [0, 0, 1000, 1000, np.log1p(np.exp(-50.0)), 50], rtol=1e-6, atol=0)
    np.testing.assert_allclose(loss.backward(), [0, 0, 1, -1, -np.exp(-50.0), -1], rtol=1e-6, atol=0)


def test_bce_with_logits_equals_bce_of_sigmoid():
    r = rng(17)
    x, t = r.standard_normal((4, 3)), r.uniform(0, 1, (4, 3))
    a, b = nn.BCEWithLogitsLoss(), nn.BCELoss()
    np.testing.assert_allclose(a(x, t), b(1 / (1 + np.exp(-x)), t), rtol=1e-13)
    s = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(a.backward(), b.backward() * s * (1 - s), rtol=1e-12)


# ---- finite differences for every loss and option -------------------------------------------------------------

def check_none_gradient(loss, pred, target):
    """check_loss_gradient for reduction='none': the objective is Σ r·loss with fixed random r."""
    pred = np.array(pred, dtype=np.float64)
    r = rng(21).uniform(0.5, 2.0, np.shape(loss(pred, target)))
    loss(pred, target)
    analytic = loss.backward(r)
    numeric = numeric_gradient(lambda: float(np.sum(r * loss(pred, target))), pred)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8, err_msg=f"{loss!r}: gradient")


def gradient_cases():
    r = rng(20)
    x = r.standard_normal((5, 4))
    y = np.array([0, 3, -100, 1, 3])
    probs = r.dirichlet(np.ones(4), 5)
    w = r.uniform(0.3, 2, 4)
    cases = []
    for red in REDUCTIONS:
        for kw in [{}, dict(weight=w), dict(label_smoothing=0.15), dict(weight=w, label_smoothing=0.3),
                   dict(ignore_index=3, weight=w)]:
            cases.append((nn.CrossEntropyLoss(reduction=red, **kw), x, np.where(y == -100, 3, y) if kw.get(
                "ignore_index") == 3 else y))
            if "ignore_index" not in kw:
                cases.append((nn.CrossEntropyLoss(reduction=red, **kw), x, probs))
        cases.append((nn.CrossEntropyLoss(reduction=red, label_smoothing=0.1), r.standard_normal((2, 3, 2, 2)),
                      r.integers(0, 3, (2, 2, 2))))
        cases.append((nn.NLLLoss(reduction=red), log_softmax(x), y))
        cases.append((nn.NLLLoss(reduction=red, weight=w, ignore_index=1), log_softmax(x), np.abs(y) % 4))
        cases.append((nn.MSELoss(reduction=red), x, probs))
        cases.append((nn.BCELoss(reduction=red), probs, (probs > 0.25).astype(np.float64)))
        cases.append((nn.BCELoss(reduction=red, weight=w), probs, r.uniform(0, 1, (5, 4))))
        cases.append((nn.BCEWithLogitsLoss(reduction=red), 3 * x, probs))
        cases.append((nn.BCEWithLogitsLoss(reduction=red, weight=r.uniform(0.5, 2, (5, 1)), pos_weight=w), 3 * x,
                      probs))
    cases.append((nn.MSELoss(reduction="half_sum"), x, probs))
    return cases


@pytest.mark.parametrize("loss,pred,target", gradient_cases(), ids=lambda v: repr(v) if isinstance(v, nn.Module)
                         else "")
def test_gradients_finite_differences(loss, pred, target):
    if loss.reduction == "none":
        check_none_gradient(loss, pred, target)
    else:
        check_loss_gradient(loss, pred, target)


# ---- backward API ---------------------------------------------------------------------------------------------

def test_backward_scales_by_grad_output_and_keeps_dtype():
    x = rng(22).standard_normal((4, 3)).astype(np.float32)
    y = np.array([0, 1, 2, 0])
    loss = nn.CrossEntropyLoss()
    loss(x, y)
    g = loss.backward()
    assert g.dtype == np.float32 and g.shape == x.shape
    np.testing.assert_allclose(loss.backward(2.5), 2.5 * g, rtol=1e-6)
    np.testing.assert_allclose(loss.backward(np.array(0.5)), 0.5 * g, rtol=1e-6)
    assert loss.backward(2.5).dtype == np.float32
    with pytest.raises(ValueError, match=r"CrossEntropyLoss\(\).*scalar"):
        loss.backward(np.ones(4))


def test_backward_before_forward_raises():
    for loss in [nn.CrossEntropyLoss(), nn.NLLLoss(), nn.MSELoss(), nn.BCELoss(), nn.BCEWithLogitsLoss()]:
        with pytest.raises(ValueError, match=rf"{type(loss).__name__}\(.*\).*before forward"):
            loss.backward()


def test_none_reduction_grad_output_shape_checked():
    loss = nn.CrossEntropyLoss(reduction="none")
    loss(np.zeros((4, 3)), np.zeros(4, np.int64))
    with pytest.raises(ValueError, match=r"CrossEntropyLoss\(reduction='none'\).*\(3,\).*\(4,\)"):
        loss.backward(np.ones(3))
    np.testing.assert_allclose(loss.backward(np.arange(4.0)).sum(axis=1), 0, atol=1e-15)


def test_losses_are_modules_in_a_training_step():
    fnn.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 3))
    loss_fn = nn.CrossEntropyLoss()
    assert isinstance(loss_fn, nn.Module)
    x = rng(23).standard_normal((8, 5)).astype(np.float32)
    y = rng(24).integers(0, 3, 8)
    losses = []
    for _ in range(20):
        losses.append(loss_fn(model(x), y))
        model.backward(loss_fn.backward())
        for p in model.parameters():
            p.data -= 0.5 * p.grad
        model.zero_grad()
    assert losses[-1] < 0.7 * losses[0]


def test_ops_exposes_the_kernels():
    x = rng(25).standard_normal((3, 4))
    y = np.array([1, 0, 3])
    value, grad = fnn.ops.cross_entropy(x, y)
    items, row_grad, den = cross_entropy_oracle(x, y)
    np.testing.assert_allclose(value, items.mean(), rtol=1e-13)
    np.testing.assert_allclose(grad, row_grad / 3, rtol=1e-12)
    value, grad = fnn.ops.mse_loss(x, np.zeros_like(x), "half_sum")
    np.testing.assert_allclose(value, 0.5 * (x ** 2).sum(), rtol=1e-13)
    for fn in ["nll_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits"]:
        assert callable(getattr(fnn.ops, fn))


# ---- bad input ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [nn.CrossEntropyLoss, nn.NLLLoss])
def test_labels_out_of_range(cls):
    x = np.zeros((4, 10), np.float32)
    name = cls.__name__
    with pytest.raises(ValueError, match=rf"{name}\(\).*label 10 .*10 classes"):
        cls()(x, np.array([1, 2, 10, 3]))
    with pytest.raises(ValueError, match=rf"{name}\(\).*label -1 .*10 classes"):
        cls()(x, np.array([1, -1, 0, 3]))
    with pytest.raises(ValueError, match=rf"{name}\(ignore_index=-1\).*label -100 .*10 classes"):
        cls(ignore_index=-1)(x, np.array([-1, -100, 0, 3]))
    assert np.isfinite(cls(ignore_index=-1)(x, np.array([-1, 1, 0, 3])))


def test_nan_and_infinity_raise():
    x = np.zeros((3, 4))
    x[1, 2] = np.nan
    y = np.array([0, 1, 2])
    with pytest.raises(ValueError, match=r"CrossEntropyLoss\(\).*logits contain NaN"):
        nn.CrossEntropyLoss()(x, y)
    with pytest.raises(ValueError, match=r"CrossEntropyLoss\(label_smoothing=0.1\).*logits contain NaN"):
        nn.CrossEntropyLoss(label_smoothing=0.1)(x.astype(np.float32), y)
    x[1, 2] = np.inf
    with pytest.raises(ValueError, match="NaN or infinity"):
        nn.CrossEntropyLoss()(x, y)
    with pytest.raises(ValueError, match="NaN or infinity"):  # also in the parallel path
        big = np.zeros((5000, 10))
        big[4321, 7] = np.nan
        nn.CrossEntropyLoss()(big, np.zeros(5000, np.int64))
    t = np.full((3, 4), 0.25)
    t[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"CrossEntropyLoss\(\).*probability target contains NaN"):
        nn.CrossEntropyLoss()(np.zeros((3, 4)), t)
    with pytest.raises(ValueError, match=r"NLLLoss\(\).*NaN"):
        nn.NLLLoss()(np.full((2, 2), np.nan), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"MSELoss\(\).*input contains NaN"):
        nn.MSELoss()(np.array([1.0, np.nan]), np.zeros(2))
    with pytest.raises(ValueError, match=r"MSELoss\(\).*target contains NaN"):
        nn.MSELoss()(np.zeros(2), np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match=r"BCELoss\(\).*\[0, 1\].*1\.5"):
        nn.BCELoss()(np.array([0.5, 1.5]), np.zeros(2))
    with pytest.raises(ValueError, match=r"BCELoss\(\).*\[0, 1\]"):
        nn.BCELoss()(np.array([0.5, np.nan]), np.zeros(2))
    with pytest.raises(ValueError, match=r"BCEWithLogitsLoss\(\).*input contains NaN"):
        nn.BCEWithLogitsLoss()(np.array([0.5, np.nan]), np.zeros(2))


def test_shape_mismatches_name_loss_and_shapes():
    with pytest.raises(ValueError, match=r"CrossEntropyLoss\(\).*\(5,\).*\(4, 3\)"):
        nn.CrossEntropyLoss()(np.zeros((4, 3)), np.zeros(5, np.int64))
    with pytest.raises(ValueError, match=r"CrossEntropyLoss\(\).*\(4, 2\).*\(4, 3\)"):
        nn.CrossEntropyLoss()(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"CrossEntropyLoss\(\).*\(N, C\).*\(3,\)"):
        nn.CrossEntropyLoss()(np.zeros(3), np.zeros(3, np.int64))
    with pytest.raises(ValueError, match=r"CrossEntropyLoss\(\).*weight.*\(2,\).*3 classes"):
        nn.CrossEntropyLoss(weight=[1.0, 2.0])(np.zeros((4, 3)), np.zeros(4, np.int64))
    with pytest.raises(ValueError, match=r"NLLLoss\(\).*\(4, 1\).*\(4, 3\)"):
        nn.NLLLoss()(np.zeros((4, 3)), np.zeros((4, 1), np.int64))
    for cls in [nn.MSELoss, nn.BCELoss, nn.BCEWithLogitsLoss]:
        with pytest.raises(ValueError, match=rf"{cls.__name__}\(\).*\(4,\).*\(4, 1\)"):
            cls()(np.full((4, 1), 0.5), np.zeros(4))
    with pytest.raises(ValueError, match=r"BCELoss\(\).*weight.*\(3,\).*\(4, 2\)"):
        nn.BCELoss(weight=np.ones(3))(np.full((4, 2), 0.5), np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"BCEWithLogitsLoss\(\).*pos_weight.*\(3,\).*\(4, 2\)"):
        nn.BCEWithLogitsLoss(pos_weight=np.ones(3))(np.zeros((4, 2)), np.zeros((4, 2)))


def test_wrong_dtypes_and_arguments():
    with pytest.raises(TypeError, match=r"CrossEntropyLoss\(\).*float.*int64"):
        nn.CrossEntropyLoss()(np.zeros((2, 3), np.int64), np.zeros(2, np.int64))
    with pytest.raises(TypeError, match=r"CrossEntropyLoss\(\).*integer.*float64"):
        nn.CrossEntropyLoss()(np.zeros((2, 3)), np.zeros(2))
    with pytest.raises(TypeError, match=r"NLLLoss\(\).*integer.*float64"):
        nn.NLLLoss()(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(TypeError, match=r"CrossEntropyLoss\(\).*<U1"):
        nn.CrossEntropyLoss()(np.zeros((2, 3)), np.array(["a", "b"]))
    with pytest.raises(TypeError, match=r"MSELoss\(\).*ndarray.*str"):
        nn.MSELoss()("abc", np.zeros(3))
    with pytest.raises(TypeError, match=r"MSELoss\(\).*target.*complex"):
        nn.MSELoss()(np.zeros(3), np.zeros(3, complex))
    with pytest.raises(TypeError, match=r"BCELoss\(\).*float.*int"):
        nn.BCELoss()(np.zeros(3, np.int32), np.zeros(3))
    with pytest.raises(ValueError, match="reduction"):
        nn.CrossEntropyLoss(reduction="half_sum")
    with pytest.raises(ValueError, match="reduction"):
        nn.BCELoss(reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing"):
        nn.CrossEntropyLoss(label_smoothing=1.5)
    with pytest.raises(ValueError, match="weight.*NaN"):
        nn.CrossEntropyLoss(weight=[1.0, np.nan])


# ---- layouts and dtypes ---------------------------------------------------------------------------------------

def readonly(a):
    a = a.copy()
    a.setflags(write=False)
    return a


@pytest.mark.parametrize("make_pred,make_target", [
    (np.asfortranarray, lambda t: t),
    (lambda x: np.repeat(x, 2, axis=1)[:, ::2], lambda t: np.repeat(t, 2)[::2]),
    (readonly, readonly),
    (lambda x: x, lambda t: t.astype(np.int32)),
    (lambda x: x, lambda t: t.astype(np.uint8)),
    (lambda x: x.astype(np.float16).astype(np.float32), lambda t: list(t)),
])
def test_cross_entropy_any_layout(make_pred, make_target):
    r = rng(26)
    x = r.standard_normal((6, 5)).astype(np.float32)
    y = r.integers(0, 5, 6)
    ref = nn.CrossEntropyLoss()
    expected, expected_grad = ref(x.copy(), y.copy()), ref.backward().copy()
    loss = nn.CrossEntropyLoss()
    np.testing.assert_allclose(loss(make_pred(x.copy()), make_target(y.copy())), expected, rtol=1e-3)
    np.testing.assert_allclose(loss.backward(), expected_grad, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("cls", [nn.MSELoss, nn.BCELoss, nn.BCEWithLogitsLoss])
def test_elementwise_losses_any_layout(cls):
    r = rng(27)
    p = r.uniform(0.1, 0.9, (4, 6))
    t = r.uniform(0, 1, (4, 6))
    expected = cls(reduction="none")(p, t)
    for a, b in [(np.asfortranarray(p), t), (p[:, ::1][::-1][::-1], t.T.copy().T), (readonly(p), readonly(t)),
                 (p, (t > 0.5)), (p.astype(np.float32), t)]:
        loss = cls(reduction="none")
        value = loss(a, b)
        assert value.dtype == np.asarray(a).dtype
        ref = expected if b.dtype == t.dtype else cls(reduction="none")(p, b.astype(np.float64))
        np.testing.assert_allclose(value, ref, rtol=1e-5 if value.dtype == np.float32 else 1e-14)
    assert cls()(p.astype(np.float16), t) == pytest.approx(cls()(p.astype(np.float16).astype(np.float32), t))
