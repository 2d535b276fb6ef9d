"""fastnn.onnx.load: files written by torch.onnx.export (tests/data/onnx, made by make_onnx_fixtures.py) load
with torch's outputs and train; fastnn's own exports load back with the same outputs and parameter names;
corrupt and unsupported files are rejected clearly."""
import os

import numpy as np
import pytest

import fastnn as fnn
from fastnn import nn
from fastnn.nn import functional as F

onnx = pytest.importorskip("onnx")

from test_graph import Net, RecurrentHead, TwoTower  # noqa: E402

DATA = os.path.join(os.path.dirname(__file__), "data", "onnx")


def rng(seed):
    return np.random.default_rng(seed)


def x32(shape, seed=0):
    return rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("name", ["cnn_bn", "mlp", "lstm_classifier", "gelu_net_opset20", "gelu_net_opset17"])
def test_torch_exports_load_with_torch_outputs(name):
    g = fnn.onnx.load(os.path.join(DATA, name + ".onnx"))
    ref = np.load(os.path.join(DATA, name + ".npz"))
    np.testing.assert_allclose(g(ref["x"]), ref["y"], rtol=1e-4, atol=1e-5)
    bigger = np.concatenate([ref["x"], ref["x"][:1] * 0.5])  # another batch size
    np.testing.assert_allclose(g(bigger)[:len(ref["x"])], ref["y"], rtol=1e-4, atol=1e-5)


def test_torch_parameter_names_are_kept():
    g = fnn.onnx.load(os.path.join(DATA, "cnn_bn.onnx"))
    names = {n for n, _ in g.named_parameters()}
    assert {"conv1.weight", "conv1.bias", "bn1.weight", "bn1.bias", "fc.weight", "fc.bias"} <= names
    assert np.all(g.state_dict()["bn1.running_var"] != 1)  # torch's running statistics came along
    g = fnn.onnx.load(os.path.join(DATA, "mlp.onnx"))
    assert [n for n, _ in g.named_parameters()] == ["net.0.weight", "net.0.bias", "net.3.weight", "net.3.bias",
                                                    "net.5.weight", "net.5.bias"]


@pytest.mark.parametrize("name,classes", [("cnn_bn", 5), ("mlp", 3), ("lstm_classifier", 3), ("gelu_net_opset20", 4)])
def test_torch_exports_train_with_sgd(name, classes):
    g = fnn.onnx.load(os.path.join(DATA, name + ".onnx"))
    x = np.load(os.path.join(DATA, name + ".npz"))["x"]
    x = np.concatenate([x] * 4) + 0.1 * x32((4 * len(x),) + x.shape[1:], 3)
    y = rng(4).integers(0, classes, len(x))
    g.train()
    loss_fn = nn.CrossEntropyLoss()
    opt = fnn.optim.SGD(g.parameters(), lr=0.3, momentum=0.9)
    losses = []
    for _ in range(15):
        losses.append(float(loss_fn(g(x), y)))
        g.backward(loss_fn.backward())
        opt.step()
        opt.zero_grad()
    assert losses[-1] < losses[0] * 0.95, losses


def roundtrip(model, tmp_path, inputs, **kwargs):
    model.eval()
    path = tmp_path / "m.onnx"
    fnn.onnx.export(model, path, input_shape=[x[:2].shape for x in inputs], dtype=[x.dtype for x in inputs],
                    **kwargs)
    g = fnn.onnx.load(path)
    want, got = model(*inputs), g(*inputs)
    want = want if isinstance(want, tuple) else (want,)
    got = got if isinstance(got, tuple) else (got,)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    return g


def test_export_then_load_sequential_cnn_same_outputs_and_names(tmp_path):
    fnn.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                          nn.AvgPool2d(2), nn.Flatten(), nn.Linear(4 * 2 * 2, 6),
                          nn.LayerNorm(6), nn.Tanh(), nn.Dropout(0.2), nn.Linear(6, 3), nn.LogSoftmax(dim=1))
    model.train()
    model(x32((8, 1, 8, 8), 5))
    g = roundtrip(model, tmp_path, [x32((5, 1, 8, 8))])
    assert [n for n, _ in g.named_parameters()] == [n for n, _ in model.named_parameters()]
    np.testing.assert_array_equal(g.state_dict()["1.running_mean"], model.state_dict()["1.running_mean"])


def test_export_then_load_prelu_lrn_threshold(tmp_path):
    fnn.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.PReLU(3), nn.LocalResponseNorm(3), nn.Flatten(), nn.PReLU(),
                          nn.Threshold(0.1, -1.0))
    g = roundtrip(model, tmp_path, [x32((4, 2, 5, 5))])
    assert [n for n, _ in g.named_parameters()] == [n for n, _ in model.named_parameters()]


def test_export_then_load_group_norm_trains_its_weight(tmp_path):
    fnn.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.GroupNorm(2, 4), nn.Flatten())
    model[1].weight.data[...] = np.arange(1, 5)
    g = roundtrip(model, tmp_path, [x32((5, 2, 5, 5))])
    trainable = {p.data.size for p in g.parameters() if p.requires_grad}
    assert 4 in trainable  # the per-channel weight and bias stay parameters


def test_export_then_load_weight_norm_folds_the_weight(tmp_path):
    fnn.manual_seed(0)
    roundtrip(nn.Sequential(nn.WeightNorm(nn.Linear(5, 4)), nn.ReLU()), tmp_path, [x32((6, 5))])


def test_export_then_load_residual_and_two_input_models(tmp_path):
    fnn.manual_seed(0)
    g = roundtrip(Net(), tmp_path, [x32((5, 2, 4, 4))])
    assert sorted(n for n, _ in g.named_parameters()) == sorted(n for n, _ in Net().named_parameters())
    g = roundtrip(TwoTower(), tmp_path, [x32((6, 3)), rng(1).integers(0, 10, (6, 5))])
    assert sorted(n for n, _ in g.named_parameters()) == sorted(n for n, _ in TwoTower().named_parameters())


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU, nn.RNN])
def test_export_then_load_recurrent(cls, tmp_path):
    fnn.manual_seed(0)
    model = RecurrentHead(cls, True, bidirectional=True, read="out")
    g = roundtrip(model, tmp_path, [x32((6, 5, 3))], dynamic_axes={0: {0: "batch", 1: "seq"}})
    assert [n for n, _ in g.named_parameters()] == [n for n, _ in model.named_parameters()]
    assert g.rnn.num_layers == 2  # the two ONNX ops come back as one two-layer layer
    one = RecurrentHead(cls, True, bidirectional=False, read="h")
    one.rnn = cls(3, 4, batch_first=True)
    g = roundtrip(one, tmp_path, [x32((6, 5, 3))], dynamic_axes={0: {0: "batch", 1: "seq"}})
    assert sorted(n for n, _ in g.named_parameters()) == sorted(n for n, _ in one.named_parameters())


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU])
def test_export_then_load_stacked_recurrent_layer_with_initial_state(cls, tmp_path):
    fnn.manual_seed(0)
    rnn = cls(3, 4, num_layers=3, bidirectional=True)

    class WithState(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = rnn

        def forward(self, x, h0, c0):
            return self.rnn(x, (h0, c0) if cls is nn.LSTM else h0)

    model = WithState()
    x, h0, c0 = x32((5, 6, 3)), x32((6, 6, 4), 1), x32((6, 6, 4), 2)
    model.eval()
    path = tmp_path / "m.onnx"
    fnn.onnx.export(model, path, input_shape=[(5, 2, 3), (6, 2, 4), (6, 2, 4)],
                    dynamic_axes={0: {1: "batch"}, 1: {1: "batch"}, 2: {1: "batch"}})
    g = fnn.onnx.load(path)
    want, got = model(x, h0, c0), g(x, h0, c0)
    flat_want = [want[0]] + (list(want[1]) if cls is nn.LSTM else [want[1]])
    assert len(got) == len(flat_want)
    for a, b in zip(got, flat_want):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert [n for n, _ in g.named_parameters()] == [n for n, _ in model.named_parameters()]


class Functional(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x, y):
        a = self.fc(x) * 2.0 - y / 3.0 + 1.0 + F.unsqueeze(y[:, 0], 1).expand(-1, 4)
        b = F.matmul(a.reshape(a.shape[0], 2, 2), F.transpose(y.reshape(y.shape[0], 2, 2), 1, 2))
        c = F.cat([F.flatten(b, 1), a], dim=1)
        d = F.stack([a, y], dim=1).permute(0, 2, 1)
        s = F.sum(d, dim=2) + F.mean(d, dim=(1, 2), keepdim=False)[:, None]
        return F.softmax(c, dim=-1)[:, 1:7:2], s[..., -1], F.sigmoid(a) + F.tanh(y) + F.leaky_relu(a, 0.1) + F.gelu(y)


def test_export_then_load_functional_ops(tmp_path):
    fnn.manual_seed(0)
    roundtrip(Functional(), tmp_path, [x32((6, 4)), x32((6, 4), 1)])


def test_loaded_graph_saves_with_fnn_save(tmp_path):
    g = fnn.onnx.load(os.path.join(DATA, "cnn_bn.onnx"))
    fnn.save(g, tmp_path / "g.fnn")
    g2 = fnn.load(tmp_path / "g.fnn")
    g2.eval()
    x = np.load(os.path.join(DATA, "cnn_bn.npz"))["x"]
    np.testing.assert_allclose(g2(x), g(x), rtol=1e-6, atol=1e-7)


def test_truncated_and_corrupt_files_raise_value_error(tmp_path):
    with open(os.path.join(DATA, "cnn_bn.onnx"), "rb") as f:
        data = f.read()
    for k, blob in enumerate([data[:len(data) // 2], data[:40], b"not an onnx file at all \x00\xff" * 10, b""]):
        p = tmp_path / f"bad{k}.onnx"
        p.write_bytes(blob)
        with pytest.raises(ValueError, match="fastnn.onnx.load"):
            fnn.onnx.load(p)


def test_unsupported_op_lists_op_type_and_node_name(tmp_path):
    h = onnx.helper
    x = h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None, 4])
    y = h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [None, 4])
    nodes = [h.make_node("Relu", ["x"], ["r"], name="ok"), h.make_node("Cos", ["r"], ["c"], name="my_cos"),
             h.make_node("Hardmax", ["c"], ["y"], name="my_hardmax")]
    model = h.make_model(h.make_graph(nodes, "g", [x], [y]), opset_imports=[h.make_opsetid("", 17)])
    p = tmp_path / "u.onnx"
    onnx.save(model, p)
    with pytest.raises(ValueError, match=r"Cos \(node 'my_cos'\).*Hardmax \(node 'my_hardmax'\)"):
        fnn.onnx.load(p)


def train_steps(g, inputs, classes, steps=20, lr=0.3):
    """A few SGD steps on random labels: the loss goes down (the loaded ops have gradients)."""
    y = rng(4).integers(0, classes, len(inputs[0]))
    g.train()
    loss_fn = nn.CrossEntropyLoss()
    opt = fnn.optim.SGD(g.parameters(), lr=lr, momentum=0.9)
    losses = []
    for _ in range(steps):
        out = g(*inputs)
        losses.append(float(loss_fn(out[0] if isinstance(out, tuple) else out, y)))
        g.backward(loss_fn.backward())
        opt.step()
        opt.zero_grad()
    assert losses[-1] < losses[0] * 0.9, (g, losses)


class Bags(nn.Module):
    """Weighted EmbeddingBag (per_sample_weights) and a padded mean bag: Cast, Not, Max, Mul, ReduceSum."""

    def __init__(self):
        super().__init__()
        self.weighted = nn.EmbeddingBag(10, 4, mode="sum")
        self.padded = nn.EmbeddingBag(10, 4, mode="mean", padding_idx=0)
        self.head = nn.Linear(8, 3)

    def forward(self, ids, weights):
        return self.head(F.cat([self.weighted(ids, None, weights), self.padded(ids)], dim=1))


class MaskedAttentionHead(nn.Module):
    """AdditiveAttention with a bool mask: a general Where(mask, scores, -inf)."""

    def __init__(self):
        super().__init__()
        self.att = nn.AdditiveAttention(4, 3, 5)
        self.head = nn.Linear(3, 3)

    def forward(self, q, keys, mask):
        context, _ = self.att(q, keys, mask)
        return self.head(context)


def test_export_then_load_maxout_interaction_max_bags_and_masks_train(tmp_path):
    fnn.manual_seed(0)
    cases = [
        (nn.Sequential(nn.Maxout(6, 5, pieces=3), nn.Linear(5, 3)), [x32((24, 6))]),
        (nn.Sequential(nn.Interaction("max"), nn.Linear(3, 3)), [x32((24, 4, 3))]),
        (nn.Sequential(nn.Interaction("mean"), nn.Linear(3, 3)), [x32((24, 4, 3))]),
    ]
    ids = rng(1).integers(0, 10, (24, 5))
    ids[:, 3:] = 0  # padding in the mean bag
    cases.append((Bags(), [ids, rng(2).random((24, 5)).astype(np.float32)]))
    mask = rng(3).random((24, 7)) < 0.6
    mask[:, 0] = True
    cases.append((MaskedAttentionHead(), [x32((24, 4)), x32((24, 7, 3), 1), mask]))
    for model, inputs in cases:
        g = roundtrip(model, tmp_path, inputs)
        assert sorted(n for n, _ in g.named_parameters()) == sorted(n for n, _ in model.named_parameters())
        train_steps(g, inputs, 3)


def test_loaded_where_max_cast_not_and_reduce_max_have_gradients():
    """The graph ops behind the imports, checked against finite differences."""
    from fastnn.nn.function_ops import OPS
    r = rng(5)
    a, b = r.standard_normal((3, 4)), r.standard_normal((1, 4))
    cond = r.random((3, 4)) < 0.5
    g = r.standard_normal((3, 4))
    _, ctx = OPS["where"].forward(cond, a, b)
    _, ga, gb = OPS["where"].backward(ctx, g, [False, True, True])
    np.testing.assert_allclose(ga, np.where(cond, g, 0))
    np.testing.assert_allclose(gb, np.where(cond, 0, g).sum(axis=0, keepdims=True))
    _, ctx = OPS["maximum"].forward(a, b)
    ga, gb = OPS["maximum"].backward(ctx, g, [True, True])
    np.testing.assert_allclose(ga, g * (a > b))
    np.testing.assert_allclose(gb, (g * (a < b)).sum(axis=0, keepdims=True))
    x = r.standard_normal((3, 5))
    y, ctx = OPS["amax"].forward(x, 1, False)
    (gx, _, _) = OPS["amax"].backward(ctx, np.ones(3), [True, False, False])
    eps = 1e-6
    for i in range(3):
        for j in range(5):
            xp = x.copy()
            xp[i, j] += eps
            np.testing.assert_allclose((np.max(xp, 1) - y).sum() / eps, gx[i, j], atol=1e-5)
    y, ctx = OPS["cast"].forward(x, "float32")
    assert y.dtype == np.float32 and OPS["cast"].backward(ctx, y, [True, False])[0].dtype == np.float64
    assert OPS["cast"].backward(OPS["cast"].forward(cond, "float32")[1], g, [False, False])[0] is None
    np.testing.assert_array_equal(OPS["logical_not"].forward(cond)[0], ~cond)


def test_token_ids_into_a_one_row_table_load(tmp_path):
    """The example ids load() runs the graph on stay inside every table they index: a one-row Embedding (a
    single learned token, a constant bias table) loaded with ids 0, 1 failed with an out-of-range index."""
    fnn.manual_seed(0)
    model = nn.Sequential(nn.Embedding(1, 4), nn.Flatten(), nn.Linear(4 * 3, 2))
    ids = np.zeros((5, 3), np.int64)
    g = roundtrip(model, tmp_path, [ids])
    assert [n for n, _ in g.named_parameters()] == [n for n, _ in model.named_parameters()]
    wide = nn.Sequential(nn.Embedding(7, 4), nn.Flatten(), nn.Linear(4 * 3, 2))   # the usual ids still vary
    roundtrip(wide, tmp_path, [np.arange(15, dtype=np.int64).reshape(5, 3) % 7])
