"""The linear_activation functional op (kernels/dense.hpp's dense_activation_forward/backward: a Transformer's
feed-forward linear1 → ReLU/GELU → dropout in one C++ call each way, one element-wise pass each way) against a NumPy oracle of the product, the
activation and the hashed dropout mask; the same bits as the three separate ops; finite-difference gradients;
eval mode; bad input; the bf16 autocast fallback; and the Transformer layers that use it."""
import numpy as np
import pytest

import fastnn as fnn
from fastnn import nn, ops
from fastnn.nn.function_ops import OPS, dropout_keep
from harness import TOL, numeric_gradient, rng
from test_activations import gelu_oracle

OP = OPS["linear_activation"]
ACTIVATIONS = ["relu", "gelu", "gelu_tanh"]


def oracle(x, w, b, activation):
    """(act(x·Wᵀ + b), act'(x·Wᵀ + b)) in float64."""
    z = x.astype(np.float64) @ w.astype(np.float64).T + (0.0 if b is None else b.astype(np.float64))
    if activation == "relu":
        return np.maximum(z, 0.0), (z > 0) * 1.0
    return gelu_oracle(z, "tanh" if activation == "gelu_tanh" else "none")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("p", [0.0, 0.25])
def test_forward_and_backward_match_the_numpy_oracle(dtype, activation, p):
    r = rng(1)
    x, w, b = r.standard_normal((67, 24)), r.standard_normal((41, 24)) * 0.4, r.standard_normal(41)
    g = r.standard_normal((67, 41))
    x, w, b, g = (a.astype(dtype) for a in (x, w, b, g))
    y, ctx = OP.forward(x, w, b, activation=activation, p=p)
    seed = ctx[-1]
    keep = dropout_keep(seed, y.size, p).reshape(y.shape) if p > 0 else np.ones(y.shape, bool)
    scale = 1.0 / (1.0 - p)
    a, da = oracle(x, w, b, activation)
    tol = TOL[dtype] if dtype == np.float64 else dict(rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(y, np.where(keep, a * scale, 0.0), **tol)
    if p > 0:
        assert 0.15 < 1.0 - keep.mean() < 0.35
    dx, dw, db = OP.backward(ctx, g, [True, True, True])
    gz = np.where(keep, g.astype(np.float64) * scale, 0.0) * da
    np.testing.assert_allclose(dx, gz @ w.astype(np.float64), **tol)
    np.testing.assert_allclose(dw, gz.T @ x.astype(np.float64), **tol)
    np.testing.assert_allclose(db, gz.sum(0), **tol)
    assert dx.dtype == dw.dtype == db.dtype == dtype


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("shape", [(3, 5, 16, 24), (700, 64, 96)])  # (…, in) through (…, out); long: threaded
def test_same_bits_as_linear_activation_and_dropout_ops(dtype, activation, shape):
    *lead, fin, fout = shape
    r = rng(2)
    x = r.standard_normal((*lead, fin)).astype(dtype)
    w, b = (r.standard_normal((fout, fin)) * 0.3).astype(dtype), r.standard_normal(fout).astype(dtype)
    g = r.standard_normal((*lead, fout)).astype(dtype)
    fnn.manual_seed(11)
    y, ctx = OP.forward(x, w, b, activation=activation, p=0.1)
    fnn.manual_seed(11)   # the three ops, drawing the dropout seed from the same generator state
    h, c1 = OPS["linear"].forward(x, w, b)
    act = OPS["relu"] if activation == "relu" else OPS["gelu"]
    h, c2 = act.forward(h, **({} if activation == "relu" else
                              {"approximate": "tanh" if activation == "gelu_tanh" else "none"}))
    h, c3 = OPS["dropout"].forward(h, 0.1)
    np.testing.assert_array_equal(y, h)
    got = OP.backward(ctx, g, [True, True, True])
    gh = OPS["dropout"].backward(c3, g, [True, False, False])[0]
    gh = act.backward(c2, gh, [True])[0]
    want = OPS["linear"].backward(c1, gh, [True, True, True])
    for a, e in zip(got, want):
        np.testing.assert_array_equal(a, e)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradients_by_finite_differences(activation):
    r = rng(3)
    x, w, b = r.standard_normal((6, 5)), r.standard_normal((7, 5)), r.standard_normal(7)
    weights = r.standard_normal((6, 7))
    seed_state = 5

    def loss():
        fnn.manual_seed(seed_state)   # the same dropout mask at every evaluation
        return float((OP.forward(x, w, b, activation=activation, p=0.3)[0] * weights).sum())

    fnn.manual_seed(seed_state)
    _, ctx = OP.forward(x, w, b, activation=activation, p=0.3)
    dx, dw, db = OP.backward(ctx, weights, [True, True, True])
    for got, arr in ((dx, x), (dw, w), (db, b)):
        np.testing.assert_allclose(got, numeric_gradient(loss, arr), rtol=1e-6, atol=1e-8)


def test_eval_mode_no_dropout_nothing_kept_and_backward_refused():
    r = rng(4)
    x, w = r.standard_normal((9, 4)), r.standard_normal((3, 4))
    y, ctx = OP.forward(x, w, None, activation="gelu", p=0.5, training=False)
    np.testing.assert_allclose(y, oracle(x, w, None, "gelu")[0], rtol=1e-12, atol=1e-14)
    with pytest.raises(RuntimeError, match="training=False"):
        OP.backward(ctx, np.ones_like(y), [True, True, False])
    y2, ctx2 = OP.forward(x, w, None, activation="relu")   # no bias: None for its gradient
    dx, dw, db = OP.backward(ctx2, np.ones_like(y2), [True, True, False])
    assert db is None and dx.shape == x.shape and dw.shape == w.shape
    assert OP.backward(ctx2, np.ones_like(y2), [False, True, False])[0] is None


def test_bad_input_raises():
    x, w = np.ones((4, 3)), np.ones((5, 3))
    with pytest.raises(ValueError, match="activation must be one of"):
        OP.forward(x, w, None, activation="tanh")
    with pytest.raises(ValueError, match="p must be in"):
        OP.forward(x, w, None, activation="relu", p=1.5)
    with pytest.raises(ValueError, match=r"input of shape \(4, 3\) does not match weight of shape \(5, 4\)"):
        OP.forward(x, np.ones((5, 4)), None, activation="relu")
    with pytest.raises(ValueError, match="activation must be Activation.relu or Activation.gelu"):
        ops.linear_activation_forward(x, w, None, ops.Activation.tanh)
    with pytest.raises(ValueError, match="bias"):
        ops.linear_activation_forward(x, w, np.ones(4), ops.Activation.relu)
    y, z = ops.linear_activation_forward(x, w, None, ops.Activation.relu)
    with pytest.raises(ValueError, match="pre"):
        ops.linear_activation_backward(y, x, w, z[:2], ops.Activation.relu)
    with pytest.raises(ValueError, match="activation must be"):
        ops.linear_activation_backward(y, x, w, z, ops.Activation.sigmoid)
    with pytest.raises(TypeError):
        ops.linear_activation_forward(x.astype(np.float32), w, None, ops.Activation.relu)


def test_autocast_bfloat16_runs_the_three_ops_with_bf16_gemms():
    r = rng(5)
    x, w, b = (r.standard_normal(s).astype(np.float32) for s in ((64, 32), (48, 32), (48,)))
    g = r.standard_normal((64, 48)).astype(np.float32)
    with fnn.autocast("bfloat16"):
        fnn.manual_seed(3)
        y, ctx = OP.forward(x, w, b, activation="gelu", p=0.2)
        grads = OP.backward(ctx, g, [True, True, True])
        fnn.manual_seed(3)
        h, c1 = OPS["linear"].forward(x, w, b)      # the bf16 linear, then GELU and dropout
        h, c2 = OPS["gelu"].forward(h)
        h, c3 = OPS["dropout"].forward(h, 0.2)
        np.testing.assert_array_equal(y, h)
        gh = OPS["gelu"].backward(c2, OPS["dropout"].backward(c3, g, [True, False, False])[0], [True])[0]
        for a, e in zip(grads, OPS["linear"].backward(c1, gh, [True, True, True])):
            np.testing.assert_array_equal(a, e)
    y32, _ = OP.forward(x, w, b, activation="gelu", p=0.0)
    np.testing.assert_allclose(y32, oracle(x, w, b, "gelu")[0], rtol=2e-4, atol=2e-5)


class _PlainLinear(nn.Linear):
    """A Linear subclass: the layers then run linear1, the activation and the dropout as three nodes."""


@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_training_step_equals_the_unfused_layer(activation, norm_first):
    r = rng(6)
    kw = dict(d_model=16, nhead=2, dim_feedforward=40, dropout=0.2, activation=activation, batch_first=True,
              norm_first=norm_first)
    fused = nn.TransformerEncoderLayer(**kw)
    plain = nn.TransformerEncoderLayer(**kw)
    plain.load_state_dict(fused.state_dict())
    lin = _PlainLinear(16, 40)
    lin.load_state_dict(plain.linear1.state_dict())
    plain.linear1 = lin
    x = r.standard_normal((3, 9, 16)).astype(np.float32)
    g = r.standard_normal((3, 9, 16)).astype(np.float32)
    outs = []
    for layer in (fused, plain):
        layer.train()
        fnn.manual_seed(21)
        y = layer(x)
        dx = layer.backward(g)
        outs.append((y, dx, {k: p.grad.copy() for k, p in layer.named_parameters()}))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    np.testing.assert_array_equal(outs[0][1], outs[1][1])
    for k in outs[0][2]:
        np.testing.assert_array_equal(outs[0][2][k], outs[1][2][k], err_msg=k)
    names = [n.target for n in fnn.nn.traced.graph_of(fused).nodes if n.op == "call"]
    assert "linear_activation" in names and "linear_activation" not in \
        [n.target for n in fnn.nn.traced.graph_of(plain).nodes if n.op == "call"]
    fused.eval()
    plain.eval()
    np.testing.assert_array_equal(fused(x), plain(x))


def test_decoder_layer_gradients_by_finite_differences_through_the_fused_node():
    r = rng(7)
    layer = nn.TransformerDecoderLayer(8, 2, 12, dropout=0.0, activation="gelu", batch_first=True).double()
    tgt, mem = r.standard_normal((2, 3, 8)), r.standard_normal((2, 4, 8))
    weights = r.standard_normal((2, 3, 8))
    layer(tgt, mem)
    assert "linear_activation" in [n.target for n in fnn.nn.traced.graph_of(layer).nodes if n.op == "call"]
    layer.zero_grad()
    layer(tgt, mem)
    layer.backward_parameters(weights)
    w = layer.linear1.weight
    got = w.grad.copy()
    num = numeric_gradient(lambda: float((layer(tgt, mem) * weights).sum()), w.data)
    np.testing.assert_allclose(got, num, rtol=1e-6, atol=1e-8)
