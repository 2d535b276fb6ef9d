"""Training-time fusion of BatchNorm with the ReLU after it (and a residual block's add + ReLU): the kernel's
relu/residual forward and masked backward against NumPy oracles and finite differences, bit-identity with the
separate ops, and graphs run fused against the same graphs run layer by layer (forward output, input and
parameter gradients, running statistics), float32 and float64, 1 and 2 threads."""
import copy

import numpy as np
import pytest

import fastnn as fnn
from fastnn.nn.executor import unfused
from fastnn.nn.function_ops import OPS
from harness import TOL, check_module_gradients, load_example, rng

ops = fnn.ops
F = fnn.nn.functional
DTYPES = [np.float64, np.float32]
# (N, C, H, W): odd channel counts, batch 1, (N, C) input (one value per row), a larger map
SHAPES = [(3, 5, 4, 7), (1, 3, 2, 2), (6, 7), (5, 3, 9), (8, 16, 8, 8)]


def bits(a):
    return np.ascontiguousarray(a).tobytes()


def bn_oracle(x, w, b, eps):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
    xhat = (x - mu) / np.sqrt(var + eps)
    return xhat * w.reshape(shape) + b.reshape(shape), xhat, var


def bn_backward_oracle(x, w, dz, eps):
    """Through the batch mean and variance, step by step."""
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
    m = x.size // mu.size
    dxhat = dz * w.reshape(shape)
    dvar = np.sum(dxhat * (x - mu) * -0.5 * (var + eps) ** -1.5, axis=axes, keepdims=True)
    dmu = np.sum(-dxhat / np.sqrt(var + eps), axis=axes, keepdims=True) + dvar * np.mean(-2 * (x - mu), axis=axes,
                                                                                       keepdims=True)
    xhat = (x - mu) / np.sqrt(var + eps)
    return (dxhat / np.sqrt(var + eps) + dvar * 2 * (x - mu) / m + dmu / m, np.sum(dz * xhat, axis=axes),
            np.sum(dz, axis=axes))


def _data(shape, dtype, seed=0):
    r = rng(seed)
    c = shape[1]
    return (r.normal(0.3, 1.5, shape).astype(dtype), r.normal(1.0, 0.5, c).astype(dtype),
            r.normal(0.0, 0.5, c).astype(dtype), r.normal(size=shape).astype(dtype))


# -- the kernel ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_relu_and_residual_against_oracle(dtype, shape):
    x, w, b, s = _data(shape, dtype)
    z, _, var = bn_oracle(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), 1e-5)
    c = shape[1]
    rm, rv = np.zeros(c, dtype), np.ones(c, dtype)
    y, mean, invstd = ops.batch_norm_forward(x, w, b, rm, rv, True, 0.1, 1e-5, True, relu=True)
    np.testing.assert_allclose(y, np.maximum(z, 0), **TOL[dtype])
    assert (y >= 0).all() and not np.signbit(y).any()  # +0 below the kink, as the relu op gives
    m = x.size // c
    np.testing.assert_allclose(rv, 0.9 + 0.1 * var.reshape(-1) * m / (m - 1), **TOL[dtype])
    y2, _, _ = ops.batch_norm_forward(x, w, b, None, None, True, 0.1, 1e-5, True, residual=s, relu=True)
    np.testing.assert_allclose(y2, np.maximum(z + s, 0), **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("training", [True, False])
def test_kernel_bits_equal_separate_ops(dtype, shape, training):
    """relu(bn(x)), relu(bn(x) + s) and the masked backward: the same bits as bn, add and relu one by one,
    running statistics updated the same."""
    x, w, b, s = _data(shape, dtype, seed=1)
    c = shape[1]
    r = rng(2)
    stats = [(r.normal(size=c).astype(dtype), r.random(c).astype(dtype) + 0.5) for _ in range(3)]
    stats[1] = (stats[0][0].copy(), stats[0][1].copy())
    stats[2] = (stats[0][0].copy(), stats[0][1].copy())
    z, mean, invstd = ops.batch_norm_forward(x, w, b, *stats[0], training, 0.1, 1e-5, True)
    y, mean2, invstd2 = ops.batch_norm_forward(x, w, b, *stats[1], training, 0.1, 1e-5, True, relu=True)
    relu_y, relu_ctx = OPS["relu"].forward(z)
    assert bits(y) == bits(relu_y) and bits(mean) == bits(mean2) and bits(invstd) == bits(invstd2)
    for k in range(2):
        assert bits(stats[0][k]) == bits(stats[1][k])
    y3, _, _ = ops.batch_norm_forward(x, w, b, *stats[2], training, 0.1, 1e-5, True, residual=s, relu=True)
    add_relu, _ = OPS["relu"].forward(OPS["add"].forward(z, s)[0])
    assert bits(y3) == bits(add_relu)

    dy = r.normal(size=shape).astype(dtype)
    dy[..., 0] = 0.0  # zeros and negative zeros through the mask
    dy.reshape(-1)[1::7] = -0.0
    (masked,) = OPS["relu"].backward(relu_ctx, dy, (True,))
    g1 = [np.full(c, 0.25, dtype), np.full(c, -0.5, dtype)]
    g2 = [a.copy() for a in g1]
    dx1 = ops.batch_norm_backward(masked, x, mean, invstd, w, g1[0], g1[1], training, True, True, True)
    dx2 = ops.batch_norm_backward(dy, x, mean, invstd, w, g2[0], g2[1], training, True, True, True, relu_out=y)
    assert bits(dx1) == bits(dx2) and bits(g1[0]) == bits(g2[0]) and bits(g1[1]) == bits(g2[1])
    # parameter gradients only (no input gradient), overwritten
    dx3 = ops.batch_norm_backward(dy, x, mean, invstd, w, g2[0], g2[1], training, False, False, False, relu_out=y)
    assert dx3 is None
    dx4 = ops.batch_norm_backward(masked, x, mean, invstd, w, g1[0], g1[1], training, False, False, False)
    assert dx4 is None and bits(g1[0]) == bits(g2[0]) and bits(g1[1]) == bits(g2[1])


@pytest.mark.parametrize("shape", SHAPES)
def test_masked_backward_against_oracle(shape):
    x, w, b, dy = _data(shape, np.float64, seed=3)
    z, _, _ = bn_oracle(x, w, b, 1e-5)
    y, mean, invstd = ops.batch_norm_forward(x, w, b, None, None, True, 0.1, 1e-5, True, relu=True)
    gw, gb = np.zeros_like(w), np.zeros_like(b)
    dx = ops.batch_norm_backward(dy, x, mean, invstd, w, gw, gb, True, True, True, True, relu_out=y)
    want = bn_backward_oracle(x, w, dy * (z > 0), 1e-5)
    np.testing.assert_allclose(dx, want[0], rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(gw, want[1], rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(gb, want[2], rtol=1e-9, atol=1e-11)


def test_kernel_rejects_bad_residual():
    x, w, b, s = _data((2, 3, 4, 4), np.float32)
    with pytest.raises(ValueError, match="residual"):
        ops.batch_norm_forward(x, w, b, None, None, True, 0.1, 1e-5, True, residual=s[:, :2], relu=True)
    with pytest.raises(ValueError, match="relu=True"):
        ops.batch_norm_forward(x, w, b, None, None, True, 0.1, 1e-5, True, residual=s)
    with pytest.raises(TypeError):
        ops.batch_norm_forward(x, w, b, None, None, True, 0.1, 1e-5, True, residual=s.astype(np.float64), relu=True)
    y, mean, invstd = ops.batch_norm_forward(x, w, b, None, None, True, 0.1, 1e-5, True, relu=True)
    with pytest.raises(ValueError, match="relu_out"):
        ops.batch_norm_backward(s, x, mean, invstd, w, relu_out=y[:1])


# -- graphs: fused against layer by layer ----------------------------------------------------------------------
# relu(bn1(conv1(x))) -> conv2 -> bn2, + shortcut (identity or 1x1 conv + bn), relu: a ResNet basic block
Block = load_example("train_resnet_digits").BasicBlock


class Net(fnn.nn.Module):
    def __init__(self):
        super().__init__()
        nn = fnn.nn
        self.stem = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.BatchNorm2d(5), nn.ReLU())  # module ReLU
        self.block1 = Block(5, 5, 1)
        self.block2 = Block(5, 7, 2)

    def forward(self, x):  # no Linear head: its input gradient's bits depend on the output's alignment
        return F.mean(self.block2(self.block1(self.stem(x))), dim=(2, 3))


def _run(model, x, gy, fused):
    model.zero_grad()
    if fused:
        y = model(x)
        dx = model.backward(gy)
    else:
        with unfused():
            y = model(x)
            dx = model.backward(gy)
    return y, dx, {n: p.grad.copy() for n, p in model.named_parameters()}, \
        {k: np.array(v) for k, v in model.state_dict().items()}


def _same(a, b):
    ya, dxa, ga, sa = a
    yb, dxb, gb, sb = b
    assert bits(ya) == bits(yb)
    assert bits(dxa) == bits(dxb)
    assert ga.keys() == gb.keys() and all(bits(ga[k]) == bits(gb[k]) for k in ga)
    assert sa.keys() == sb.keys() and all(bits(sa[k]) == bits(sb[k]) for k in sa)


@pytest.fixture
def count_fusions(monkeypatch):
    """Counts BatchNorm.forward_relu calls: (without residual, with residual)."""
    calls = [0, 0]
    original = fnn.nn.BatchNorm2d.forward_relu

    def spy(self, x, residual=None):
        out = original(self, x, residual)
        calls[residual is not None] += out is not None
        return out
    monkeypatch.setattr(fnn.nn.BatchNorm2d, "forward_relu", spy)
    return calls


@pytest.mark.parametrize("dtype", DTYPES)
def test_graph_fused_equals_layer_by_layer(dtype, count_fusions):
    results = {}
    before = fnn.get_num_threads()
    for threads in (1, 2):
        fnn.set_num_threads(threads)
        try:
            fnn.manual_seed(0)
            model = Net()
            if dtype == np.float64:
                model.double()
            ref = copy.deepcopy(model)
            r = rng(5)
            x = r.normal(size=(4, 3, 8, 8)).astype(dtype)
            gy = r.normal(size=(4, 7)).astype(dtype)
            for _ in range(2):  # running statistics of the first step feed nothing, but are compared
                fused = _run(model, x, gy, True)
                _same(fused, _run(ref, x, gy, False))
            results[threads] = fused
        finally:
            fnn.set_num_threads(before)
    _same(results[1], results[2])
    # stem (Sequential: BN + ReLU module), block1.bn1, block2.bn1; block1/2 tails: relu(bn2 + shortcut)
    assert count_fusions == [2 * 2 * 3, 2 * 2 * 2]


def test_training_step_fused_equals_layer_by_layer():
    """A whole SGD training step (backward_parameters: no input gradient), three steps in a row."""
    fnn.manual_seed(1)
    model = Net()
    ref = copy.deepcopy(model)
    r = rng(6)
    x = r.normal(size=(6, 3, 8, 8)).astype(np.float32)
    y = r.integers(0, 7, 6)
    out = {}
    for name, m in (("fused", model), ("unfused", ref)):
        loss_fn = fnn.nn.CrossEntropyLoss()
        opt = fnn.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
        losses = []
        for _ in range(3):
            if name == "fused":
                losses.append(loss_fn(m(x), y))
                m.backward_parameters(loss_fn.backward())
            else:
                with unfused():
                    losses.append(loss_fn(m(x), y))
                    m.backward_parameters(loss_fn.backward())
            opt.step()
            opt.zero_grad()
        out[name] = (losses, {k: np.array(v) for k, v in m.state_dict().items()})
    assert out["fused"][0] == out["unfused"][0]
    assert all(bits(out["fused"][1][k]) == bits(out["unfused"][1][k]) for k in out["fused"][1])


class Shared(fnn.nn.Module):
    """The BN output used twice (by the relu and by the sum): must not fuse."""

    def __init__(self):
        super().__init__()
        self.conv = fnn.nn.Conv2d(3, 4, 3, padding=1)
        self.bn = fnn.nn.BatchNorm2d(4)

    def forward(self, x):
        z = self.bn(self.conv(x))
        return F.relu(z) + z


class BroadcastTail(fnn.nn.Module):
    """relu(bn(x) + s) with s of shape (C, 1, 1): the sum broadcasts, so the three ops run one by one."""

    def __init__(self):
        super().__init__()
        self.conv = fnn.nn.Conv2d(3, 4, 3, padding=1)
        self.bn = fnn.nn.BatchNorm2d(4)
        self.shift = fnn.nn.Parameter(np.linspace(-1, 1, 4).reshape(4, 1, 1).astype(np.float32))

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)) + self.shift)


class OutputToo(fnn.nn.Module):
    """The BN output is also a graph output: must not fuse."""

    def __init__(self):
        super().__init__()
        self.bn = fnn.nn.BatchNorm2d(3)

    def forward(self, x):
        z = self.bn(x)
        return F.relu(z), z


@pytest.mark.parametrize("cls,expected", [(Shared, [0, 0]), (BroadcastTail, [0, 0])])
def test_no_fusion_where_it_would_change_results(cls, expected, count_fusions):
    fnn.manual_seed(2)
    model = cls()
    ref = copy.deepcopy(model)
    r = rng(7)
    x = r.normal(size=(3, 3, 6, 6)).astype(np.float32)
    gy = r.normal(size=(3, 4, 6, 6)).astype(np.float32)
    _same(_run(model, x, gy, True), _run(ref, x, gy, False))
    assert count_fusions == expected


def test_bn_output_that_is_a_graph_output_does_not_fuse(count_fusions):
    model = OutputToo()
    ref = copy.deepcopy(model)
    x = rng(8).normal(size=(2, 3, 4, 4)).astype(np.float32)
    g = [rng(9).normal(size=x.shape).astype(np.float32) for _ in range(2)]
    (a, b), dx = model(x), model.backward(*g)
    with unfused():
        (a2, b2), dx2 = ref(x), ref.backward(*g)
    assert bits(a) == bits(a2) and bits(b) == bits(b2) and bits(dx) == bits(dx2)
    assert count_fusions == [0, 0]


def test_frozen_bn_in_eval_mode_inside_training_model(count_fusions):
    """A BatchNorm set to eval (running statistics) in a model that trains: still fused, still the same bits."""
    fnn.manual_seed(3)
    model = Net()
    model.block1.bn1.eval()
    model.block1.bn2.eval()
    ref = copy.deepcopy(model)
    r = rng(10)
    x = r.normal(size=(2, 3, 8, 8)).astype(np.float32)
    gy = r.normal(size=(2, 7)).astype(np.float32)
    _same(_run(model, x, gy, True), _run(ref, x, gy, False))
    assert count_fusions == [3, 2]


def test_eval_mode_unchanged(count_fusions):
    fnn.manual_seed(4)
    model = Net()
    x = rng(11).normal(size=(2, 3, 8, 8)).astype(np.float32)
    model(x)
    model.eval()
    y = model(x)
    with unfused():
        y2 = model(x)
    np.testing.assert_allclose(y, y2, **TOL[np.float32])
    assert count_fusions == [3, 2]  # the training forward only


def test_fused_block_gradients_by_finite_differences():
    fnn.manual_seed(5)
    block = Block(3, 4, 2)
    check_module_gradients(block, rng(12).normal(size=(2, 3, 6, 6)), rtol=1e-5, atol=1e-7)


def test_forward_relu_layer_api():
    bn, ref = fnn.nn.BatchNorm2d(3), fnn.nn.BatchNorm2d(3)
    x, _, _, s = _data((4, 3, 5, 5), np.float32)
    g = rng(13).normal(size=x.shape).astype(np.float32)
    y = bn.forward_relu(x)
    relu_y, ctx = OPS["relu"].forward(ref(x))
    assert bits(y) == bits(relu_y)
    (masked,) = OPS["relu"].backward(ctx, g, (True,))
    assert bits(bn.backward(g)) == bits(ref.backward(masked))  # the gradient of the ReLU's output
    assert bn.forward_relu(x, s[:, :1]) is None  # a residual that would broadcast: nothing done
    assert int(bn.num_batches_tracked) == 1
    y2 = bn.forward_relu(x, s)
    z = ref(x)
    assert bits(y2) == bits(OPS["relu"].forward(OPS["add"].forward(z, s)[0])[0])
    assert bits(bn.backward(g)) == bits(ref.backward(g))  # with a residual: the gradient of the BN's output
    bn(x)
    ref(x)
    assert bits(bn.backward(g)) == bits(ref.backward(g))  # a plain forward after a fused one: plain backward


@pytest.mark.parametrize("shape", [(9, 5), (4, 5, 3), (1, 5, 6)])
def test_batchnorm1d_relu_sequential(shape, monkeypatch):
    """BatchNorm1d + ReLU module in a Sequential, (N, C) and (N, C, L) input: fused, the same bits."""
    calls = []
    original = fnn.nn.BatchNorm1d.forward_relu
    monkeypatch.setattr(fnn.nn.BatchNorm1d, "forward_relu", lambda self, x, residual=None: calls.append(1) or
                        original(self, x, residual))
    fnn.manual_seed(6)
    model = fnn.nn.Sequential(fnn.nn.BatchNorm1d(5), fnn.nn.ReLU()).double()
    model[0].weight.data[:] = rng(14).normal(1.0, 0.5, 5)
    ref = copy.deepcopy(model)
    r = rng(15)
    x, gy = r.normal(size=shape), r.normal(size=shape)
    _same(_run(model, x, gy, True), _run(ref, x, gy, False))
    assert len(calls) == 1
