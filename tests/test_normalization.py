"""Normalisation layers: kernels against plain NumPy oracles, finite-difference gradients,
PyTorch's running-statistics rules and state_dict layout, bit-identity across threads and alignment,
WeightNorm, the seed's LRN values, bad input and save/load."""
import numpy as np
import pytest

import fastnn as fnn
from harness import TOL, check_module_gradients, rng

ops = fnn.ops


# ---------------------------------------------------------------------------------------------------------
# NumPy oracles (float64). Normalisation over `axes` with the backward written step by step through the
# mean and the variance (the chain rule, not the closed form the kernels use).
# ---------------------------------------------------------------------------------------------------------
def normalize_oracle(x, axes, eps):
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
    return (x - mu) / np.sqrt(var + eps), mu, var


def normalize_backward_oracle(x, axes, eps, dxhat):
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
    m = x.size // mu.size
    dvar = np.sum(dxhat * (x - mu) * -0.5 * (var + eps) ** -1.5, axis=axes, keepdims=True)
    dmu = np.sum(-dxhat / np.sqrt(var + eps), axis=axes, keepdims=True) + dvar * np.mean(-2 * (x - mu), axis=axes,
                                                                                       keepdims=True)
    return dxhat / np.sqrt(var + eps) + dvar * 2 * (x - mu) / m + dmu / m


def channel_shape(x):
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


def bn_axes(x):
    return (0,) + tuple(range(2, x.ndim))


def lrn_oracle(x, size, alpha, beta, k):
    """Nested loop over channels: b_c = a_c / (k + alpha/size · Σ_{window(c)} a²)^beta; and d(b)/d(a) applied to
    dy channel pair by channel pair."""
    C = x.shape[1]
    d = np.empty_like(x)
    for c in range(C):
        window = range(max(0, c - size // 2), min(C, c + (size - 1) // 2 + 1))
        d[:, c] = k + alpha / size * sum(x[:, j] ** 2 for j in window)
    return x / d ** beta, d


def lrn_backward_oracle(x, dy, size, alpha, beta, k):
    _, d = lrn_oracle(x, size, alpha, beta, k)
    C = x.shape[1]
    dx = np.zeros_like(x)
    for c in range(C):
        for j in range(max(0, c - size // 2), min(C, c + (size - 1) // 2 + 1)):
            db_da = -beta * x[:, c] * d[:, c] ** (-beta - 1) * (2 * alpha / size) * x[:, j]
            if j == c:
                db_da = db_da + d[:, c] ** -beta
            dx[:, j] += dy[:, c] * db_da
    return dx


def close(actual, expected, dtype, scale=1.0):
    tol = TOL[dtype]
    np.testing.assert_allclose(actual, expected, rtol=tol["rtol"] * scale, atol=tol["atol"] * scale)


F32_SCALE = {np.float64: 1.0, np.float32: 20.0}  # float32: several roundings per element (stats, 1/√)


# ---------------------------------------------------------------------------------------------------------
# kernels vs oracles
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(4, 3), (17, 13), (1, 3, 5), (3, 4, 37), (2, 5, 3, 4), (7, 2, 1)])
def test_batch_norm_kernels_match_numpy(dtype, shape):
    r = rng(sum(shape))
    C = shape[1]
    x = (r.standard_normal(shape) * 2 + 0.5).astype(dtype)
    w, b, dy = r.standard_normal(C).astype(dtype), r.standard_normal(C).astype(dtype), r.standard_normal(shape).astype(dtype)
    rm, rv = r.standard_normal(C).astype(dtype), (r.random(C) + 0.5).astype(dtype)
    x64, dy64, w64, cs = x.astype(np.float64), dy.astype(np.float64), w.astype(np.float64), channel_shape(x)
    s = F32_SCALE[dtype]
    eps, m = 1e-5, 0.1
    # train: batch statistics, running statistics updated in place
    rm1, rv1 = rm.copy(), rv.copy()
    y, mean, invstd = ops.batch_norm_forward(x, w, b, rm1, rv1, True, m, eps)
    xhat, mu, var = normalize_oracle(x64, bn_axes(x), eps)
    close(y, xhat * w64.reshape(cs) + b.reshape(cs), dtype, s)
    close(mean, mu.reshape(-1), dtype, s)
    close(invstd, 1 / np.sqrt(var.reshape(-1) + eps), dtype, s)
    M = x.size // C
    close(rm1, (1 - m) * rm + m * mu.reshape(-1), dtype, s)
    close(rv1, (1 - m) * rv + m * var.reshape(-1) * M / (M - 1), dtype, s)
    gw, gb = np.ones(C, dtype), np.ones(C, dtype)  # accumulate onto existing values
    dx = ops.batch_norm_backward(dy, x, mean, invstd, w, gw, gb, True)
    close(dx, normalize_backward_oracle(x64, bn_axes(x), eps, dy64 * w64.reshape(cs)), dtype, s)
    close(gw, 1 + np.sum(dy64 * xhat, axis=bn_axes(x)), dtype, s)
    close(gb, 1 + np.sum(dy64, axis=bn_axes(x)), dtype, s)
    # eval: running statistics, affine derivative; accumulate=False overwrites
    y, mean, invstd = ops.batch_norm_forward(x, w, b, rm, rv, False, m, eps)
    xhat = (x64 - rm.reshape(cs)) / np.sqrt(rv.reshape(cs).astype(np.float64) + eps)
    close(y, xhat * w64.reshape(cs) + b.reshape(cs), dtype, s)
    dx = ops.batch_norm_backward(dy, x, mean, invstd, w, gw, gb, False, True, False, False)
    close(dx, dy64 * w64.reshape(cs) / np.sqrt(rv.reshape(cs).astype(np.float64) + eps), dtype, s)
    close(gw, np.sum(dy64 * xhat, axis=bn_axes(x)), dtype, s)
    close(gb, np.sum(dy64, axis=bn_axes(x)), dtype, s)
    # no affine parameters, no running statistics
    y, mean, invstd = ops.batch_norm_forward(x, None, None, None, None, True, m, eps)
    xhat, _, _ = normalize_oracle(x64, bn_axes(x), eps)
    close(y, xhat, dtype, s)
    close(ops.batch_norm_backward(dy, x, mean, invstd, None), normalize_backward_oracle(x64, bn_axes(x), eps, dy64),
          dtype, s)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape,groups", [((2, 6, 4, 3), 3), ((1, 4, 5), 1), ((3, 4), 4), ((2, 8, 13), 2),
                                          ((1, 6, 2, 2), 6)])
def test_group_norm_kernels_match_numpy(dtype, shape, groups):
    r = rng(sum(shape) + groups)
    N, C = shape[:2]
    x = (r.standard_normal(shape) * 3 - 1).astype(dtype)
    w, b, dy = r.standard_normal(C).astype(dtype), r.standard_normal(C).astype(dtype), r.standard_normal(shape).astype(dtype)
    x64, dy64, cs = x.astype(np.float64), dy.astype(np.float64), channel_shape(x)
    s = F32_SCALE[dtype]
    y, mean, invstd = ops.group_norm_forward(x, groups, w, b, 1e-5)
    grouped = x64.reshape(N, groups, -1)
    xhat, mu, var = normalize_oracle(grouped, (2,), 1e-5)
    xhat = xhat.reshape(shape)
    close(y, xhat * w.reshape(cs) + b.reshape(cs), dtype, s)
    close(mean, mu.reshape(-1), dtype, s)
    gw, gb = np.zeros(C, dtype), np.zeros(C, dtype)
    dx = ops.group_norm_backward(dy, x, groups, mean, invstd, w, gw, gb)
    dxhat = (dy64 * w.reshape(cs)).reshape(N, groups, -1)
    close(dx, normalize_backward_oracle(grouped, (2,), 1e-5, dxhat).reshape(shape), dtype, s)
    close(gw, np.sum(dy64 * xhat, axis=bn_axes(x)), dtype, s)
    close(gb, np.sum(dy64, axis=bn_axes(x)), dtype, s)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape,k", [((4, 10), 1), ((1, 7), 1), ((2, 3, 4, 5), 2), ((3, 2, 17), 3), ((9,), 1)])
def test_layer_norm_kernels_match_numpy(dtype, shape, k):
    r = rng(sum(shape) + k)
    norm_shape = shape[len(shape) - k:]
    axes = tuple(range(len(shape) - k, len(shape)))
    x = (r.standard_normal(shape) * 2 + 3).astype(dtype)
    w, b = r.standard_normal(norm_shape).astype(dtype), r.standard_normal(norm_shape).astype(dtype)
    dy = r.standard_normal(shape).astype(dtype)
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    s = F32_SCALE[dtype]
    y, mean, invstd = ops.layer_norm_forward(x, k, w.reshape(-1), b.reshape(-1), 1e-5)
    xhat, _, _ = normalize_oracle(x64, axes, 1e-5)
    close(y, xhat * w + b, dtype, s)
    gw, gb = np.zeros(w.size, dtype), np.zeros(b.size, dtype)
    dx = ops.layer_norm_backward(dy, x, k, mean, invstd, w.reshape(-1), gw, gb)
    close(dx, normalize_backward_oracle(x64, axes, 1e-5, dy64 * w), dtype, s)
    lead = tuple(range(len(shape) - k))
    close(gw, np.sum(dy64 * xhat, axis=lead).reshape(-1), dtype, s)
    close(gb, np.sum(dy64, axis=lead).reshape(-1), dtype, s)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(2, 7, 3, 2), (1, 3, 4), (3, 1, 5), (2, 12, 2, 3)])
@pytest.mark.parametrize("size,alpha,beta,k", [(5, 1e-4, 0.75, 2.0), (3, 0.7, 0.5, 1.0), (2, 2.0, 1.25, 0.5),
                                               (6, 1.0, 0.75, 2.0), (1, 0.3, 0.75, 1.0)])
def test_local_response_norm_kernels_match_numpy(dtype, shape, size, alpha, beta, k):
    r = rng(sum(shape) + size)
    x, dy = (r.standard_normal(shape) * 1.5).astype(dtype), r.standard_normal(shape).astype(dtype)
    y = ops.local_response_norm_forward(x, size, alpha, beta, k)
    close(y, lrn_oracle(x.astype(np.float64), size, alpha, beta, k)[0], dtype)
    dx = ops.local_response_norm_backward(dy, x, size, alpha, beta, k)
    close(dx, lrn_backward_oracle(x.astype(np.float64), dy.astype(np.float64), size, alpha, beta, k), dtype, 5)


def test_local_response_norm_with_the_seeds_values():
    """The seed's (AlexNet's) n=5, α=1e-4, β=0.75, k=2 are the defaults; b = a/(k + α/n·Σa²)^β, written out
    element by element."""
    lrn = fnn.nn.LocalResponseNorm()
    assert (lrn.size, lrn.alpha, lrn.beta, lrn.k) == (5, 1e-4, 0.75, 2.0)
    x = rng(3).standard_normal((2, 8, 3, 3)) * 20  # large values, so the α term matters
    y = lrn(x)
    expected = np.empty_like(x)
    for n in range(2):
        for c in range(8):
            for i in range(3):
                for j in range(3):
                    sq = sum(x[n, cc, i, j] ** 2 for cc in range(c - 2, c + 3) if 0 <= cc < 8)
                    expected[n, c, i, j] = x[n, c, i, j] / (2 + 1e-4 / 5 * sq) ** 0.75
    np.testing.assert_allclose(y, expected, rtol=1e-12)
    assert y.dtype == np.float64
    assert repr(lrn) == "LocalResponseNorm(5, alpha=0.0001, beta=0.75, k=2.0)"


# ---------------------------------------------------------------------------------------------------------
# finite differences
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make,shape", [
    (lambda: fnn.nn.BatchNorm1d(3), (5, 3)),
    (lambda: fnn.nn.BatchNorm1d(3), (2, 3, 4)),
    (lambda: fnn.nn.BatchNorm1d(3, affine=False), (4, 3)),
    (lambda: fnn.nn.BatchNorm1d(2, momentum=None, track_running_stats=False), (1, 2, 3)),
    (lambda: fnn.nn.BatchNorm2d(2), (3, 2, 2, 3)),
    (lambda: fnn.nn.LayerNorm(4), (3, 4)),
    (lambda: fnn.nn.LayerNorm((2, 3)), (2, 2, 3)),
    (lambda: fnn.nn.LayerNorm(5, elementwise_affine=False), (2, 5)),
    (lambda: fnn.nn.GroupNorm(2, 4), (2, 4, 3)),
    (lambda: fnn.nn.GroupNorm(3, 3, affine=False), (2, 3, 2, 2)),
    (lambda: fnn.nn.LocalResponseNorm(3, alpha=0.8, beta=0.75, k=1.0), (2, 5, 3)),
    (lambda: fnn.nn.LocalResponseNorm(), (1, 6, 2, 2)),
])
def test_gradients_finite_differences(make, shape):
    module = make()
    r = rng(len(shape))
    for p in module.parameters():  # non-trivial γ, β
        p.data[...] = r.standard_normal(p.shape)
    x = r.standard_normal(shape) * 2 + 1
    if isinstance(module, fnn.nn.LocalResponseNorm):
        x *= 3
    check_module_gradients(module, x)


@pytest.mark.parametrize("bn,shape", [(fnn.nn.BatchNorm1d, (4, 3)), (fnn.nn.BatchNorm2d, (2, 3, 2, 2))])
def test_batch_norm_eval_gradients_finite_differences(bn, shape):
    module = bn(3).double()
    r = rng(7)
    for _ in range(3):  # non-trivial running statistics
        module(r.standard_normal(shape) * 3 + 2)
    module.weight.data[...] = r.standard_normal(3)
    module.eval()
    check_module_gradients(module, r.standard_normal(shape))


# ---------------------------------------------------------------------------------------------------------
# running statistics and state_dict, as PyTorch
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("momentum", [0.1, 0.3, None])
@pytest.mark.parametrize("bn,shape", [(fnn.nn.BatchNorm1d, (6, 4)), (fnn.nn.BatchNorm1d, (3, 4, 5)),
                                      (fnn.nn.BatchNorm2d, (2, 4, 3, 3))])
def test_running_statistics_follow_pytorch(momentum, bn, shape):
    module = bn(4, momentum=momentum).double()
    r = rng(11)
    rm, rv = np.zeros(4), np.ones(4)
    axes = (0,) + tuple(range(2, len(shape)))
    M = np.prod(shape) // 4
    means = []
    for step in range(1, 5):
        x = r.standard_normal(shape) * step + step
        module(x)
        m = 1.0 / step if momentum is None else momentum  # None: cumulative average
        rm = (1 - m) * rm + m * x.mean(axis=axes)
        rv = (1 - m) * rv + m * x.var(axis=axes) * M / (M - 1)  # unbiased batch variance
        np.testing.assert_allclose(module.running_mean, rm, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(module.running_var, rv, rtol=1e-12)
        assert module.num_batches_tracked == step
        means.append(x.mean(axis=axes))
    if momentum is None:  # cumulative average: the plain mean of the batch means
        np.testing.assert_allclose(module.running_mean, np.mean(means, axis=0), rtol=1e-12)
    module.eval()
    x = r.standard_normal(shape)
    cs = (1, 4) + (1,) * (len(shape) - 2)
    np.testing.assert_allclose(module(x), (x - rm.reshape(cs)) / np.sqrt(rv.reshape(cs) + 1e-5), rtol=1e-10)
    assert module.num_batches_tracked == 4  # eval leaves the statistics alone
    np.testing.assert_allclose(module.running_mean, rm, rtol=1e-12, atol=1e-14)


def test_batch_norm_state_dict_like_pytorch():
    bn = fnn.nn.BatchNorm2d(5)
    sd = bn.state_dict()
    assert set(sd) == {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}
    assert all(sd[k].shape == (5,) and sd[k].dtype == np.float32 for k in ["weight", "bias", "running_mean",
                                                                          "running_var"])
    assert sd["num_batches_tracked"].shape == () and sd["num_batches_tracked"].dtype == np.int64
    assert [n for n, _ in bn.named_parameters()] == ["weight", "bias"]
    assert repr(bn) == "BatchNorm2d(5, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)"
    # A PyTorch-style dict (float32 values, int64 0-d counter) loads in place.
    r = rng(2)
    torch_like = {"weight": r.standard_normal(5).astype(np.float32), "bias": r.standard_normal(5).astype(np.float32),
                  "running_mean": r.standard_normal(5).astype(np.float32),
                  "running_var": (r.random(5) + 0.5).astype(np.float32), "num_batches_tracked": np.array(7)}
    bn.load_state_dict(torch_like)
    for k, v in torch_like.items():
        np.testing.assert_array_equal(bn.state_dict()[k], v)
    assert bn.num_batches_tracked.dtype == np.int64
    bn.eval()
    x = r.standard_normal((2, 5, 3, 3)).astype(np.float32)
    cs = (1, 5, 1, 1)
    expected = ((x - torch_like["running_mean"].reshape(cs)) / np.sqrt(torch_like["running_var"].reshape(cs) + 1e-5)
                * torch_like["weight"].reshape(cs) + torch_like["bias"].reshape(cs))
    np.testing.assert_allclose(bn(x), expected, rtol=1e-5, atol=1e-5)
    bn.train()
    bn(x)
    assert bn.num_batches_tracked == 8
    assert set(fnn.nn.BatchNorm1d(3, affine=False).state_dict()) == {"running_mean", "running_var",
                                                                      "num_batches_tracked"}
    assert fnn.nn.BatchNorm1d(3, track_running_stats=False).state_dict().keys() == {"weight", "bias"}


def test_batch_norm_without_running_stats_uses_batch_statistics_in_eval():
    bn = fnn.nn.BatchNorm1d(3, track_running_stats=False).double().eval()
    x = rng(4).standard_normal((6, 3)) * 4 + 1
    np.testing.assert_allclose(bn(x), normalize_oracle(x, (0,), 1e-5)[0], rtol=1e-10, atol=1e-12)


def test_parameter_gradients_accumulate_and_frozen_get_none():
    bn = fnn.nn.BatchNorm1d(3).double()
    x, dy = rng(1).standard_normal((4, 3)), rng(2).standard_normal((4, 3))
    bn.zero_grad()
    bn(x)
    bn.backward(dy)
    once = bn.weight.grad.copy(), bn.bias.grad.copy()
    bn(x)
    bn.backward(dy)  # no zero_grad: added, as PyTorch
    np.testing.assert_allclose(bn.weight.grad, 2 * once[0], rtol=1e-12)
    np.testing.assert_allclose(bn.bias.grad, 2 * once[1], rtol=1e-12)
    bn.zero_grad()
    bn.weight.requires_grad = False
    bn(x)
    dx = bn.backward(dy)
    assert not bn.weight.grad.any()
    np.testing.assert_allclose(bn.bias.grad, once[1], rtol=1e-12)
    bn.weight.requires_grad = True
    bn(x)
    np.testing.assert_allclose(bn.backward(dy), dx, rtol=1e-12)


# ---------------------------------------------------------------------------------------------------------
# bits independent of the thread count and of memory alignment
# ---------------------------------------------------------------------------------------------------------
def shifted(a, offset):
    out = np.empty(a.size + offset, a.dtype)[offset:].reshape(a.shape)
    out[...] = a
    return out


def _bn(x, w, b, dy, o):
    rm, rv = shifted(np.zeros(w.size, x.dtype), o), shifted(np.ones(w.size, x.dtype), o)
    y, mean, invstd = ops.batch_norm_forward(shifted(x, o), shifted(w, o), shifted(b, o), rm, rv, True, 0.1, 1e-5)
    gw, gb = shifted(np.zeros_like(w), o), shifted(np.zeros_like(b), o)
    dx = ops.batch_norm_backward(shifted(dy, o), shifted(x, o), shifted(mean, o), shifted(invstd, o), shifted(w, o),
                                 gw, gb, True)
    return y, mean, invstd, rm, rv, dx, gw, gb


def _gn(x, w, b, dy, o, groups=4):
    y, mean, invstd = ops.group_norm_forward(shifted(x, o), groups, shifted(w, o), shifted(b, o))
    gw, gb = shifted(np.zeros_like(w), o), shifted(np.zeros_like(b), o)
    dx = ops.group_norm_backward(shifted(dy, o), shifted(x, o), groups, shifted(mean, o), shifted(invstd, o),
                                 shifted(w, o), gw, gb)
    return y, mean, invstd, dx, gw, gb


def _ln(x, w, b, dy, o):
    y, mean, invstd = ops.layer_norm_forward(shifted(x, o), 1, shifted(w, o), shifted(b, o))
    gw, gb = shifted(np.zeros_like(w), o), shifted(np.zeros_like(b), o)
    dx = ops.layer_norm_backward(shifted(dy, o), shifted(x, o), 1, shifted(mean, o), shifted(invstd, o),
                                 shifted(w, o), gw, gb)
    return y, mean, invstd, dx, gw, gb


def _lrn(x, w, b, dy, o):
    return (ops.local_response_norm_forward(shifted(x, o), 5, 0.5, 0.75, 2.0),
            ops.local_response_norm_backward(shifted(dy, o), shifted(x, o), 5, 0.5, 0.75, 2.0))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("run,shape", [(_bn, (64, 16, 8, 8)), (_bn, (2048, 48)), (_bn, (33, 7, 29)),
                                       (_gn, (16, 16, 16, 16)), (_gn, (5, 8, 7)), (_ln, (256, 300)),
                                       (_ln, (3, 77)), (_lrn, (8, 16, 8, 8))])
def test_bits_do_not_depend_on_alignment_or_thread_count(dtype, run, shape):
    r = rng(9)
    x, dy = (r.standard_normal(shape) * 3 + 1).astype(dtype), r.standard_normal(shape).astype(dtype)
    c = shape[-1] if run is _ln else shape[1]
    w, b = r.standard_normal(c).astype(dtype), r.standard_normal(c).astype(dtype)
    before = fnn.get_num_threads()
    seen = set()
    try:
        for threads, offset in [(1, 0), (2, 0), (3, 0), (2, 1), (3, 3), (1, 5)]:
            fnn.set_num_threads(threads)
            seen.add(tuple(a.tobytes() for a in run(x, w, b, dy, offset)))
    finally:
        fnn.set_num_threads(before)
    assert len(seen) == 1


# ---------------------------------------------------------------------------------------------------------
# WeightNorm
# ---------------------------------------------------------------------------------------------------------
def test_weight_norm_reparametrises_and_names_like_pytorch():
    fnn.manual_seed(0)
    lin = fnn.nn.Linear(5, 3).double()
    w0 = lin.weight.data.copy()
    wn = fnn.nn.WeightNorm(lin)
    assert wn.weight_g.shape == (3, 1) and wn.weight_v.shape == (3, 5)
    assert set(wn.state_dict()) == {"weight_g", "weight_v", "module.bias"}
    assert [n for n, _ in wn.named_parameters()] == ["weight_g", "weight_v", "module.bias"]
    x = rng(1).standard_normal((4, 5))
    np.testing.assert_allclose(wn(x), x @ w0.T + lin.bias.data, rtol=1e-12)  # initially w = the layer's weight
    r = rng(2)
    wn.weight_g.data[...] = r.standard_normal((3, 1))
    wn.weight_v.data[...] = r.standard_normal((3, 5))
    v, g = wn.weight_v.data, wn.weight_g.data
    w = g * v / np.sqrt((v ** 2).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(wn(x), x @ w.T + lin.bias.data, rtol=1e-12)
    np.testing.assert_allclose(lin.weight.data, w, rtol=1e-14)
    whole = fnn.nn.WeightNorm(fnn.nn.Linear(5, 3).double(), dim=None)
    v = whole.weight_v.data
    np.testing.assert_allclose(whole.weight_g.data.reshape(()), np.sqrt((v ** 2).sum()), rtol=1e-12)
    with pytest.raises(ValueError, match="no parameter named 'kernel'"):
        fnn.nn.WeightNorm(fnn.nn.Linear(2, 2), name="kernel")


@pytest.mark.parametrize("dim", [0, 1, None])
def test_weight_norm_gradients_finite_differences(dim):
    fnn.manual_seed(1)
    wn = fnn.nn.WeightNorm(fnn.nn.Linear(4, 3), dim=dim)
    r = rng(3)
    wn.weight_g.data[...] = r.standard_normal(wn.weight_g.shape)
    check_module_gradients(wn, r.standard_normal((5, 4)))


@pytest.mark.skipif(not hasattr(fnn.nn, "Conv2d"), reason="Conv2d not available")
def test_weight_norm_wraps_conv2d():
    """Any layer whose weight has the output dimension first: g is (out, 1, 1, 1), as PyTorch."""
    fnn.manual_seed(2)
    wn = fnn.nn.WeightNorm(fnn.nn.Conv2d(2, 3, 3, padding=1))
    assert wn.weight_g.shape == (3, 1, 1, 1) and wn.weight_v.shape == (3, 2, 3, 3)
    check_module_gradients(wn, rng(5).standard_normal((2, 2, 4, 4)))


def test_weight_norm_frozen_and_accumulating_gradients():
    fnn.manual_seed(3)
    wn = fnn.nn.WeightNorm(fnn.nn.Linear(4, 2)).double()
    x, dy = rng(1).standard_normal((3, 4)), rng(2).standard_normal((3, 2))
    wn(x)
    wn.backward(dy)
    g1, v1 = wn.weight_g.grad.copy(), wn.weight_v.grad.copy()
    wn(x)
    wn.backward(dy)  # no zero_grad: added
    np.testing.assert_allclose(wn.weight_g.grad, 2 * g1, rtol=1e-12)
    np.testing.assert_allclose(wn.weight_v.grad, 2 * v1, rtol=1e-12)
    wn.zero_grad()
    wn.weight_g.requires_grad = False
    wn(x)
    wn.backward(dy)
    assert not wn.weight_g.grad.any()
    np.testing.assert_allclose(wn.weight_v.grad, v1, rtol=1e-12)
    wn.weight_v.requires_grad = False
    wn.zero_grad()
    wn(x)
    dx = wn.backward(dy)
    assert not wn.weight_v.grad.any() and dx.shape == (3, 4)
    assert repr(wn) == "WeightNorm(Linear(4, 2), name='weight', dim=0)"
    with pytest.raises(ValueError, match=r"WeightNorm\(Linear\(4, 2\).*before forward"):
        fnn.nn.WeightNorm(fnn.nn.Linear(4, 2)).backward(dy)


def test_weight_norm_linear_trains():
    fnn.manual_seed(0)
    r = rng(4)
    x = r.standard_normal((64, 6)).astype(np.float32)
    target = x @ r.standard_normal((6, 2)).astype(np.float32) + 0.5
    model = fnn.nn.Sequential(fnn.nn.WeightNorm(fnn.nn.Linear(6, 16)), fnn.nn.Tanh(),
                              fnn.nn.WeightNorm(fnn.nn.Linear(16, 2)))
    loss_fn = fnn.nn.MSELoss()
    opt = fnn.optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(200):
        losses.append(float(loss_fn(model(x), target)))
        model.backward(loss_fn.backward())
        opt.step()
        opt.zero_grad()
    assert losses[-1] < 0.05 * losses[0]


# ---------------------------------------------------------------------------------------------------------
# modules: repr, bad input, layouts, save/load
# ---------------------------------------------------------------------------------------------------------
def test_reprs_like_pytorch():
    assert repr(fnn.nn.BatchNorm1d(4, momentum=None)) == \
        "BatchNorm1d(4, eps=1e-05, momentum=None, affine=True, track_running_stats=True)"
    assert repr(fnn.nn.LayerNorm(10)) == "LayerNorm((10,), eps=1e-05, elementwise_affine=True)"
    assert repr(fnn.nn.GroupNorm(2, 6)) == "GroupNorm(2, 6, eps=1e-05, affine=True)"
    assert fnn.nn.LayerNorm((2, 3)).weight.shape == (2, 3)


def test_batch_norm_bad_input():
    bn = fnn.nn.BatchNorm1d(4)
    with pytest.raises(ValueError, match=r"BatchNorm1d\(4.*4 channels.*\(3, 5\)"):
        bn(np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match=r"BatchNorm1d\(4.*2-D.*3-D.*\(2, 4, 3, 3\)"):
        bn(np.zeros((2, 4, 3, 3), np.float32))
    with pytest.raises(ValueError, match=r"BatchNorm2d\(4.*4-D.*\(2, 4\)"):
        fnn.nn.BatchNorm2d(4)(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"BatchNorm1d\(4.*Expected more than 1 value per channel when training.*"
                                         r"\(1, 4\)"):
        bn(np.zeros((1, 4), np.float32))
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        fnn.nn.BatchNorm2d(4)(np.zeros((1, 4, 1, 1), np.float32))
    assert bn.num_batches_tracked == 0  # a rejected batch changes nothing
    bn(np.ones((1, 4, 2), np.float32))  # one sample, two values per channel: legal
    bn.eval()
    assert bn(np.ones((1, 4), np.float32)).shape == (1, 4)  # batch of 1 in eval: legal
    with pytest.raises(TypeError, match=r"BatchNorm1d\(4.*float"):
        bn(np.zeros((3, 4), np.int64))
    bad = np.zeros((3, 4), np.float32)
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"BatchNorm1d\(4.*NaN.*\(3, 4\)"):
        bn(bad)
    with pytest.raises(ValueError, match=r"BatchNorm1d\(4.*before forward"):
        fnn.nn.BatchNorm1d(4).backward(np.zeros((2, 4), np.float32))
    bn(np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match=r"BatchNorm1d\(4.*\(3, 5\).*\(3, 4\)"):
        bn.backward(np.zeros((3, 5), np.float32))


@pytest.mark.parametrize("module,good,bad,message", [
    (fnn.nn.LayerNorm(4), (2, 4), (2, 5), r"LayerNorm\(\(4,\).*\(\*, 4\).*\(2, 5\)"),
    (fnn.nn.LayerNorm((2, 3)), (2, 2, 3), (2, 3, 2), r"LayerNorm\(\(2, 3\).*\(\*, 2, 3\).*\(2, 3, 2\)"),
    (fnn.nn.GroupNorm(2, 4), (2, 4, 3), (2, 6, 3), r"GroupNorm\(2, 4.*\(N, 4, \*\).*\(2, 6, 3\)"),
    (fnn.nn.LocalResponseNorm(), (2, 4, 3), (2, 4), r"LocalResponseNorm\(5.*3-D.*\(2, 4\)"),
])
def test_bad_input(module, good, bad, message):
    with pytest.raises(ValueError, match=message):
        module(np.zeros(bad, np.float32))
    name = type(module).__name__
    with pytest.raises(TypeError, match=rf"{name}\(.*float"):
        module(np.zeros(good, np.int32))
    x = np.zeros(good, np.float32)
    x.flat[1] = np.nan
    with pytest.raises(ValueError, match=rf"{name}\(.*NaN"):
        module(x)
    with pytest.raises(ValueError, match=rf"{name}\(.*before forward"):
        type(module)(*module._init_args[0]).backward(np.zeros(good, np.float32))
    module(np.ones(good, np.float32))
    with pytest.raises(ValueError, match=rf"{name}\(.*grad_output"):
        module.backward(np.zeros(bad, np.float32))
    with pytest.raises(ValueError, match="divisible"):
        fnn.nn.GroupNorm(4, 6)


@pytest.mark.parametrize("make", [
    lambda x: np.asfortranarray(x),
    lambda x: np.repeat(x, 2, axis=-1)[..., ::2],
    lambda x: x.astype(np.float64),
    lambda x: (x.setflags(write=False), x)[1],
])
@pytest.mark.parametrize("module,shape", [(fnn.nn.BatchNorm2d(3), (4, 3, 2, 5)), (fnn.nn.BatchNorm1d(3), (4, 3)),
                                          (fnn.nn.LayerNorm(5), (4, 3, 5)), (fnn.nn.GroupNorm(3, 3), (2, 3, 4)),
                                          (fnn.nn.LocalResponseNorm(), (2, 3, 4))])
def test_any_layout_and_float64(make, module, shape):
    x = (rng(6).standard_normal(shape) * 10).astype(np.float32)
    module.eval()
    expected = module(x.copy())
    out = module(make(x.copy()))
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)
    if isinstance(module, fnn.nn.LocalResponseNorm):
        return
    assert out.dtype == np.float32  # computation follows the parameters


def test_save_load_round_trip_with_batch_norm(tmp_path):
    fnn.manual_seed(0)
    r = rng(8)
    model = fnn.nn.Sequential(fnn.nn.Linear(5, 8), fnn.nn.BatchNorm1d(8), fnn.nn.ReLU(),
                              fnn.nn.WeightNorm(fnn.nn.Linear(8, 3)), fnn.nn.LayerNorm(3))
    loss_fn = fnn.nn.MSELoss()
    opt = fnn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(5):
        x = r.standard_normal((16, 5)).astype(np.float32)
        loss_fn(model(x), r.standard_normal((16, 3)).astype(np.float32))
        model.backward(loss_fn.backward())
        opt.step()
        opt.zero_grad()
    model.eval()
    x = r.standard_normal((10, 5)).astype(np.float32)
    expected = model(x)
    fnn.save(model, tmp_path / "bn.fnn")
    loaded = fnn.load(tmp_path / "bn.fnn")
    assert not loaded.training
    assert loaded.state_dict()["1.num_batches_tracked"] == 5
    assert set(loaded.state_dict()) == set(model.state_dict())
    assert loaded(x).tobytes() == expected.tobytes()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_backward_many_rows(dtype, affine):
    # 301 rows split over threads, affine or not, the parameter gradients alone or with dx: the values of the
    # oracle, and the same bits on one thread and two.
    r = rng(301)
    x = (r.standard_normal((301, 37)) * 2 + 1).astype(dtype)
    dy = r.standard_normal((301, 37)).astype(dtype)
    w = r.standard_normal(37).astype(dtype) if affine else None
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    s = F32_SCALE[dtype]
    _, mean, invstd = ops.layer_norm_forward(x, 1, w, None, 1e-5)
    xhat, _, _ = normalize_oracle(x64, (1,), 1e-5)
    results, before = [], fnn.get_num_threads()
    for threads in (1, 2):
        fnn.set_num_threads(threads)
        try:
            gw, gb = np.full(37, 0.5, dtype), np.full(37, -1.0, dtype)
            dx = ops.layer_norm_backward(dy, x, 1, mean, invstd, w, gw, gb)
            only_params = ops.layer_norm_backward(dy, x, 1, mean, invstd, w, gw2 := np.ones(37, dtype), None,
                                                  need_input_grad=False, accumulate_weight=False)
        finally:
            fnn.set_num_threads(before)
        results.append((dx, gw, gb, gw2))
        assert only_params is None
        close(dx, normalize_backward_oracle(x64, (1,), 1e-5, dy64 * (w if affine else 1.0)), dtype, s)
        close(gw, 0.5 + np.sum(dy64 * xhat, axis=0), dtype, s)
        close(gb, -1.0 + np.sum(dy64, axis=0), dtype, s)
        close(gw2, np.sum(dy64 * xhat, axis=0), dtype, s)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
