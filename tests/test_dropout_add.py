"""The dropout_add functional op (residual + dropout(x) in one pass of kernels/dropout.hpp, the residual
connections of the Transformer layers in training) against a NumPy oracle of the hashed mask, its gradients,
the p = 0 and broadcast paths, and a Transformer layer's gradients with it by finite differences."""
import numpy as np
import pytest

import fastnn as fnn
from fastnn import nn
from fastnn.nn.function_ops import OPS, dropout_keep
from harness import rng

OP = OPS["dropout_add"]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_dropout_add_is_the_residual_plus_the_numpy_mask(dtype):
    r = rng(3)
    res, x, g = (r.standard_normal((33, 517)).astype(dtype) for _ in range(3))
    p = 0.3
    y, ctx = OP.forward(res, x, p=p)
    keep = dropout_keep(ctx[0], x.size, p).reshape(x.shape)
    scale = dtype(1.0 / (1.0 - p))
    eps = np.finfo(dtype).eps   # res + x·scale may be one fused multiply-add: within a rounding
    np.testing.assert_allclose(y, res + np.where(keep, x * scale, dtype(0)), rtol=4 * eps, atol=4 * eps)
    assert y.dtype == dtype and 0.2 < 1.0 - keep.mean() < 0.4
    gr, gx, gp = OP.backward(ctx, g, [True, True, False])
    np.testing.assert_array_equal(gr, g)
    np.testing.assert_array_equal(gx, np.where(keep, g * scale, dtype(0)))
    assert gp is None
    assert OP.backward(ctx, g, [False, True, False])[0] is None


def test_dropout_add_p0_broadcast_and_bad_p():
    r = rng(4)
    res, x, g = r.standard_normal(16), r.standard_normal((4, 16)), r.standard_normal((4, 16))
    y, ctx = OP.forward(res, x, p=0.0)
    np.testing.assert_array_equal(y, res + x)
    gr, gx, _ = OP.backward(ctx, g, [True, True, False])
    np.testing.assert_allclose(gr, g.sum(0), rtol=1e-12)
    np.testing.assert_array_equal(gx, g)
    y, ctx = OP.forward(res, x, p=0.5)        # a broadcast residual: the dropout, then the add
    keep = dropout_keep(ctx[0], x.size, 0.5).reshape(x.shape)
    np.testing.assert_allclose(y, res + np.where(keep, 2 * x, 0.0), rtol=1e-15)
    gr, gx, _ = OP.backward(ctx, g, [True, True, False])
    np.testing.assert_allclose(gr, g.sum(0), rtol=1e-12)
    np.testing.assert_array_equal(gx, np.where(keep, 2 * g, 0.0))
    with pytest.raises(ValueError, match="dropout_add: p must be in"):
        OP.forward(res, x, p=1.5)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("kind", ["encoder", "decoder"])
def test_layer_in_training_matches_finite_differences(kind, norm_first):
    """The masks are fixed by re-seeding before each forward, so the training-mode layer is a smooth function."""
    fnn.manual_seed(0)
    if kind == "encoder":
        layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.3, batch_first=True, norm_first=norm_first)
    else:
        layer = nn.TransformerDecoderLayer(8, 2, 16, dropout=0.3, batch_first=True, norm_first=norm_first)
    layer = layer.double().train()
    r = rng(5)
    x, mem, w = r.standard_normal((2, 5, 8)), r.standard_normal((2, 6, 8)), r.standard_normal((2, 5, 8))

    def loss(inp):
        fnn.manual_seed(7)
        out = layer(inp) if kind == "encoder" else layer(inp, mem)
        return float((out * w).sum()), out

    _, out = loss(x)
    gx = layer.backward(w)
    gx = gx[0] if isinstance(gx, tuple) else gx
    assert np.abs(out - (layer.eval()(x) if kind == "encoder" else layer.eval()(x, mem))).max() > 1e-3
    layer.train()
    h = 1e-6
    for idx in [(0, 0, 0), (1, 4, 7), (0, 2, 3), (1, 1, 5)]:
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        fd = (loss(xp)[0] - loss(xm)[0]) / (2 * h)
        assert abs(fd - gx[idx]) < 1e-6 * max(1.0, abs(fd)), (idx, fd, gx[idx])
