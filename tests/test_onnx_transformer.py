"""fastnn.onnx: MultiheadAttention, the Transformer layers, F.scaled_dot_product_attention and the recurrent
cells exported, run in onnxruntime at a batch size (and sequence length) other than the export's, equal to
fastnn's eval output; a small Transformer classifier exported, loaded back and trained."""
import numpy as np
import pytest

import fastnn as fnn
from fastnn import nn
from fastnn.nn import functional as F

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def rng(seed):
    return np.random.default_rng(seed)


def x32(shape, seed=0):
    return rng(seed).standard_normal(shape).astype(np.float32)


def run_ort(path, *inputs):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {i.name: x for i, x in zip(sess.get_inputs(), inputs)})


def flat(out):
    if isinstance(out, (tuple, list)):
        return [v for o in out for v in flat(o)]
    return [] if out is None else [out]


def check(model, tmp_path, export_inputs, run_inputs, dynamic_axes=None, rtol=1e-4, atol=2e-5):
    """Exports on export_inputs (example arrays), runs each list of run_inputs in onnxruntime and fastnn."""
    model.eval()
    path = tmp_path / "m.onnx"
    proto = fnn.onnx.export(model, path, example_inputs=export_inputs, dynamic_axes=dynamic_axes)
    for inputs in run_inputs:
        want = flat(model(*inputs))
        got = run_ort(path, *inputs)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)
    return proto


def seq_axes(n, batch_first=True):
    axes = {0: "batch", 1: "seq"} if batch_first else {0: "seq", 1: "batch"}
    return {k: axes for k in range(n)}


class SelfAttention(nn.Module):
    def __init__(self, mha, **call):
        super().__init__()
        self.mha, self.call = mha, call

    def forward(self, x):
        return self.mha(x, x, x, **self.call)


class MaskedAttention(nn.Module):
    """Cross-attention with a key_padding_mask and an attn_mask given as graph inputs."""

    def __init__(self, mha, need_weights=True, average=True):
        super().__init__()
        self.mha, self.need_weights, self.average = mha, need_weights, average

    def forward(self, q, kv, padding, attn):
        return self.mha(q, kv, kv, key_padding_mask=padding, attn_mask=attn, need_weights=self.need_weights,
                        average_attn_weights=self.average)


@pytest.mark.parametrize("batch_first", [True, False])
def test_multihead_self_attention_dynamic_batch_and_length(batch_first, tmp_path):
    fnn.manual_seed(0)
    model = SelfAttention(nn.MultiheadAttention(8, 2, batch_first=batch_first))
    shape = (lambda n, t: (n, t, 8)) if batch_first else (lambda n, t: (t, n, 8))
    check(model, tmp_path, [x32(shape(2, 4))], [[x32(shape(5, 4), 1)], [x32(shape(3, 7), 2)]],
          dynamic_axes=seq_axes(1, batch_first))


def test_multihead_cross_attention_kdim_vdim_no_weights(tmp_path):
    fnn.manual_seed(0)
    mha = nn.MultiheadAttention(8, 4, kdim=5, vdim=3, batch_first=True)

    class Cross(nn.Module):
        def __init__(self):
            super().__init__()
            self.mha = mha

        def forward(self, q, k, v):
            out, w = self.mha(q, k, v, need_weights=False)
            assert w is None
            return out

    proto = check(Cross(), tmp_path, [x32((2, 4, 8)), x32((2, 6, 5), 1), x32((2, 6, 3), 2)],
                  [[x32((5, 3, 8), 3), x32((5, 9, 5), 4), x32((5, 9, 3), 5)]], dynamic_axes=seq_axes(3))
    inits = {i.name for i in proto.graph.initializer}
    assert {"mha.q_proj_weight", "mha.k_proj_weight", "mha.v_proj_weight", "mha.in_proj_bias",
            "mha.out_proj.weight"} <= inits


@pytest.mark.parametrize("mask_dtype", [np.bool_, np.float32])
@pytest.mark.parametrize("average", [True, False])
def test_multihead_attention_masks_as_graph_inputs_and_weights(mask_dtype, average, tmp_path):
    fnn.manual_seed(0)
    model = MaskedAttention(nn.MultiheadAttention(8, 2, batch_first=True), average=average)

    def inputs(n, seed):
        r = rng(seed)
        padding = r.random((n, 6)) < 0.3
        padding[:, 0] = False  # every query keeps a visible key
        attn = r.random((4, 6)) < 0.3
        attn[:, 0] = False
        if mask_dtype is np.float32:
            padding, attn = np.where(padding, -1e4, 0.0).astype(np.float32), \
                r.standard_normal((4, 6)).astype(np.float32)
        return [x32((n, 4, 8), seed), x32((n, 6, 8), seed + 1), padding, attn]

    check(model, tmp_path, inputs(2, 0), [inputs(5, 10)])


def test_multihead_attention_per_head_mask_and_constant_causal_mask(tmp_path):
    fnn.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2)  # sequence-first

    class PerHead(nn.Module):
        def __init__(self):
            super().__init__()
            self.mha = mha

        def forward(self, x, attn):  # attn (N·H, L, S), float
            return self.mha(x, x, x, attn_mask=attn)[0]

    x, attn = x32((4, 2, 8)), x32((2 * 2, 4, 4), 1)
    check(PerHead(), tmp_path, [x, attn], [[x32((4, 5, 8), 2), x32((5 * 2, 4, 4), 3)]],
          dynamic_axes={0: {1: "batch"}, 1: {0: "batch_heads"}})

    causal = nn.Transformer.generate_square_subsequent_mask(4)

    class Causal(nn.Module):
        def __init__(self):
            super().__init__()
            self.mha = mha

        def forward(self, x):
            return self.mha(x, x, x, attn_mask=causal)

    check(Causal(), tmp_path, [x32((4, 2, 8))], [[x32((4, 6, 8), 4)]], dynamic_axes={0: {1: "batch"}})


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_transformer_encoder_layer_and_encoder(norm_first, activation, tmp_path):
    fnn.manual_seed(0)
    def layer():
        return nn.TransformerEncoderLayer(8, 2, 16, activation=activation, norm_first=norm_first, batch_first=True)
    check(layer(), tmp_path, [x32((2, 5, 8))], [[x32((4, 5, 8), 1)], [x32((3, 9, 8), 2)]], dynamic_axes=seq_axes(1))
    encoder = nn.TransformerEncoder(layer(), 2, norm=nn.LayerNorm(8))
    check(encoder, tmp_path, [x32((2, 5, 8))], [[x32((4, 7, 8), 1)]], dynamic_axes=seq_axes(1))


@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_decoder_layer_and_decoder_with_masks(norm_first, tmp_path):
    fnn.manual_seed(0)
    def layer():
        return nn.TransformerDecoderLayer(8, 2, 16, activation="gelu", norm_first=norm_first)  # sequence-first
    check(layer(), tmp_path, [x32((5, 2, 8)), x32((6, 2, 8), 1)], [[x32((5, 3, 8), 2), x32((7, 3, 8), 3)]],
          dynamic_axes={0: {0: "tgt", 1: "batch"}, 1: {0: "src", 1: "batch"}})
    decoder = nn.TransformerDecoder(layer(), 2, norm=nn.LayerNorm(8))
    causal = nn.Transformer.generate_square_subsequent_mask(5)

    class Masked(nn.Module):
        def __init__(self):
            super().__init__()
            self.decoder = decoder

        def forward(self, tgt, memory, memory_padding):
            return self.decoder(tgt, memory, tgt_mask=causal, memory_key_padding_mask=memory_padding)

    padding = np.zeros((2, 6), bool)
    padding[1, 4:] = True
    padding3 = np.zeros((3, 6), bool)
    padding3[:, 5] = True
    check(Masked(), tmp_path, [x32((5, 2, 8)), x32((6, 2, 8), 1), padding],
          [[x32((5, 3, 8), 2), x32((6, 3, 8), 3), padding3]],
          dynamic_axes={0: {1: "batch"}, 1: {1: "batch"}, 2: {0: "batch"}})


class SDPA(nn.Module):
    def __init__(self, **kwargs):
        super().__init__()
        self.kwargs = kwargs

    def forward(self, q, k, v, *mask):
        return F.scaled_dot_product_attention(q, k, v, *mask, **self.kwargs)


@pytest.mark.parametrize("kwargs,mask", [({}, None), ({"is_causal": True}, None), ({"scale": 0.3}, "bool"),
                                         ({}, "float"), ({"is_causal": True, "scale": 2.0}, None)])
def test_scaled_dot_product_attention(kwargs, mask, tmp_path):
    def inputs(n, L, S, seed):
        xs = [x32((n, 2, L, 4), seed), x32((n, 2, S, 4), seed + 1), x32((n, 2, S, 3), seed + 2)]
        if mask == "bool":
            m = rng(seed).random((L, S)) < 0.6
            m[:, 0] = True
            xs.append(m)
        elif mask == "float":
            xs.append(x32((n, 1, L, S), seed + 3))
        return xs

    axes = {0: {0: "batch", 2: "L"}, 1: {0: "batch", 2: "S"}, 2: {0: "batch", 2: "S"}}
    if mask is not None:
        axes[3] = {0: "L", 1: "S"} if mask == "bool" else {0: "batch", 2: "L", 3: "S"}
    runs = [inputs(5, 4, 6, 1), inputs(3, 7, 9, 2)]
    if kwargs.get("is_causal"):
        runs.append(inputs(3, 6, 4, 3))  # more queries than keys: the mask keeps PyTorch's top-left alignment
    model = SDPA(**kwargs)
    check(model, tmp_path, inputs(2, 4, 6, 0), runs, dynamic_axes=axes)
    if mask != "bool":  # export -> load: the same outputs (a loaded bool mask's example size would not fit L, S)
        g = fnn.onnx.load(tmp_path / "m.onnx")
        for xs in runs:
            np.testing.assert_allclose(g(*xs), model(*xs), rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("cls,kwargs", [(nn.RNNCell, {}), (nn.RNNCell, {"nonlinearity": "relu"}),
                                        (nn.LSTMCell, {}), (nn.GRUCell, {}), (nn.GRUCell, {"bias": False})])
def test_recurrent_cells_one_step(cls, kwargs, tmp_path):
    fnn.manual_seed(0)
    cell = cls(3, 4, **kwargs)
    lstm = cls is nn.LSTMCell
    proto = check(cell, tmp_path, [x32((2, 3))], [[x32((5, 3), 1)]])  # no state: zeros
    assert {n for n, _ in cell.named_parameters()} == {i.name for i in proto.graph.initializer} & \
        {"weight_ih", "weight_hh", "bias_ih", "bias_hh"}

    class WithState(nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = cell

        def forward(self, x, h, *c):
            return self.cell(x, (h, c[0]) if lstm else h)

    state = [x32((2, 4), 2)] + ([x32((2, 4), 3)] if lstm else [])
    run = [x32((5, 3), 4), x32((5, 4), 5)] + ([x32((5, 4), 6)] if lstm else [])
    check(WithState(), tmp_path, [x32((2, 3))] + state, [run])


class Classifier(nn.Module):
    """Embedding + learned positional Parameter + 2 encoder layers + mean over the sequence + Linear."""

    def __init__(self, vocab=20, d=8, length=6, classes=3):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(0.1 * x32((1, length, d), 7))
        self.encoder = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(d, 2, 16, dropout=0.0, batch_first=True), 2)
        self.head = nn.Linear(d, classes)

    def forward(self, ids):
        h = self.encoder(self.embed(ids) + self.pos)
        return self.head(F.mean(h, dim=1))


def names(model):
    return sorted(n for n, _ in model.named_parameters())


def load_back(model, tmp_path, export_inputs, inputs, dynamic_axes=None):
    """Export -> fnn.onnx.load: the same outputs at another batch size and the same parameter names."""
    check(model, tmp_path, export_inputs, [inputs], dynamic_axes=dynamic_axes)
    g = fnn.onnx.load(tmp_path / "m.onnx")
    for a, w in zip(flat(g(*inputs)), flat(model(*inputs))):
        np.testing.assert_allclose(a, w, rtol=1e-4, atol=2e-5)
    assert names(g) == names(model)
    return g


def sgd_lowers_the_loss(g, inputs, classes, steps=15, lr=0.1):
    y = rng(4).integers(0, classes, len(inputs[0]))
    g.train()
    loss_fn = nn.CrossEntropyLoss()
    opt = fnn.optim.SGD(g.parameters(), lr=lr, momentum=0.9)
    losses = []
    for _ in range(steps):
        losses.append(float(loss_fn(g(*inputs), y)))
        g.backward(loss_fn.backward())
        opt.step()
        opt.zero_grad()
    assert losses[-1] < losses[0] * 0.9, losses
    return losses


def test_transformer_classifier_exports_runs_loads_back_and_trains(tmp_path):
    fnn.manual_seed(0)
    model = Classifier()
    ids = rng(0).integers(0, 20, (16, 6))
    g = load_back(model, tmp_path, [ids[:2]], [ids])
    before = {n: p.data.copy() for n, p in g.named_parameters()}
    sgd_lowers_the_loss(g, [ids], 3)
    after = dict(g.named_parameters())
    assert not np.allclose(before["encoder.layers.0.self_attn.in_proj_weight"],
                           after["encoder.layers.0.self_attn.in_proj_weight"].data)  # the free weights train


def test_attention_and_transformer_layers_load_back_with_their_names(tmp_path):
    fnn.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2, kdim=5, vdim=3, batch_first=True)

    class Cross(nn.Module):
        def __init__(self):
            super().__init__()
            self.mha = mha

        def forward(self, q, k, v):
            return self.mha(q, k, v)

    load_back(Cross(), tmp_path, [x32((2, 4, 8)), x32((2, 6, 5), 1), x32((2, 6, 3), 2)],
              [x32((5, 4, 8), 3), x32((5, 6, 5), 4), x32((5, 6, 3), 5)])
    load_back(MaskedAttention(nn.MultiheadAttention(8, 2, batch_first=True)), tmp_path,
              [x32((2, 4, 8)), x32((2, 6, 8), 1), np.zeros((2, 6), bool), np.zeros((4, 6), bool)],
              [x32((5, 4, 8), 3), x32((5, 6, 8), 4), rng(5).random((5, 6)) < 0.3, np.eye(4, 6, 1, dtype=bool)],
              dynamic_axes={0: {0: "batch"}, 1: {0: "batch"}, 2: {0: "batch"}, 3: {}})  # attn_mask (L, S): fixed
    layer = nn.TransformerDecoderLayer(8, 2, 16, norm_first=True, batch_first=True)
    load_back(layer, tmp_path, [x32((2, 5, 8)), x32((2, 6, 8), 1)], [x32((4, 5, 8), 2), x32((4, 6, 8), 3)])


class DynamicLengthClassifier(Classifier):
    """The classifier with its positional Parameter sliced to the input's length: the sequence axis stays dynamic
    (a slice bound read from a shape at run time becomes a Slice whose end is computed)."""

    def forward(self, ids):
        h = self.embed(ids)
        h = self.encoder(h + self.pos[:, :h.shape[1]])
        return self.head(F.mean(h, dim=1))


@pytest.mark.parametrize("opset", [17, 18])
def test_transformer_classifier_with_a_dynamic_sequence_length(opset, tmp_path):
    fnn.manual_seed(0)
    model = DynamicLengthClassifier(length=10)
    ids = rng(0).integers(0, 20, (2, 6))
    runs = [[rng(1).integers(0, 20, (5, 3))], [rng(2).integers(0, 20, (3, 10))]]
    model.eval()
    fnn.onnx.export(model, tmp_path / "m.onnx", example_inputs=[ids], dynamic_axes={0: {0: "batch", 1: "seq"}},
                    opset=opset)  # opset 18 gives the Reduce ops' axes as inputs
    for (x,) in runs:
        np.testing.assert_allclose(run_ort(tmp_path / "m.onnx", x)[0], model(x), rtol=1e-4, atol=2e-5)
    g = fnn.onnx.load(tmp_path / "m.onnx")
    assert names(g) == names(model)
    for (x,) in runs:
        np.testing.assert_allclose(g(x), model(x), rtol=1e-4, atol=2e-5)
    fnn.save(g, tmp_path / "g.fnn")  # the loaded graph (free parameters, run-time slices) saves and loads
    g2 = fnn.load(tmp_path / "g.fnn").eval()
    np.testing.assert_allclose(g2(runs[0][0]), model(runs[0][0]), rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("cls", [nn.RNNCell, nn.LSTMCell, nn.GRUCell])
def test_recurrent_cells_load_back_with_their_names_and_train(cls, tmp_path):
    fnn.manual_seed(0)
    lstm = cls is nn.LSTMCell

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = cls(3, 4)
            self.fc = nn.Linear(4, 3)

        def forward(self, x, h):
            out = self.cell(x, (h, h) if lstm else h)
            out = self.cell(x, out)  # two steps, the second from the first's state: one set of weights
            return self.fc(out[0] if lstm else out)

    model = Head()
    g = load_back(model, tmp_path, [x32((2, 3)), x32((2, 4), 1)], [x32((24, 3), 2), x32((24, 4), 3)])
    sgd_lowers_the_loss(g, [x32((24, 3), 2), x32((24, 4), 3)], 3)


def test_unbatched_cell_is_refused_naming_the_layer(tmp_path):
    class Unbatched(nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = nn.GRUCell(3, 4)

        def forward(self, x):
            return self.cell(x)

    path = tmp_path / "m.onnx"
    with pytest.raises(ValueError, match=r"GRUCell.*layer 'cell'.*batched"):
        fnn.onnx.export(Unbatched(), path, example_inputs=[x32((3,))])
    assert not path.exists()
