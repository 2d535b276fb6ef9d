"""nn.MultiheadAttention, the Transformer layers and F.scaled_dot_product_attention against PyTorch 2.13 on the
same weights (tests/data/transformer_reference.npz, written by tests/data/make_transformer_reference.py; no torch
needed here): outputs, attention weights, every parameter gradient and every input gradient, float64 to 1e-9 and
float32 to a float32 tolerance, with torch's state_dict loaded strictly. Then: masks of the wrong shape, fully
masked rows, dropout and eval mode, saving and loading, summary(), the Trainer, and a learned positional
Parameter's gradient."""
import json
import os

import numpy as np
import pytest

import fastnn as fnn
import fastnn.nn.functional as F
from fastnn import nn
from harness import check_module_gradients, rng

DATA = os.path.join(os.path.dirname(__file__), "data", "transformer_reference.npz")
with np.load(DATA) as _f:
    CASES = sorted({k.split("/")[0] for k in _f.files})


def load(case):
    with np.load(DATA) as f:
        return {k[len(case) + 1:]: f[k] for k in f.files if k.startswith(case + "/")}


def build(kind, kwargs):
    if kind in ("TransformerEncoder", "TransformerDecoder"):
        layer_cls = nn.TransformerEncoderLayer if kind == "TransformerEncoder" else nn.TransformerDecoderLayer
        norm = nn.LayerNorm(kwargs["layer"]["d_model"]) if kwargs.get("norm") else None
        return getattr(nn, kind)(layer_cls(**kwargs["layer"]), kwargs["num_layers"], norm=norm)
    return getattr(nn, kind)(**kwargs)


def run_case(case, dtype):
    d = load(case)
    config = json.loads(str(d["config"]))
    inputs = [d[f"input/{n}"].astype(dtype) for n in config["inputs"]]
    masks = {}
    for kw in config["masks"]:
        m = d[f"input/{kw}"]
        masks[kw] = m if m.dtype == bool else m.astype(dtype)
    g = d["grad_out"].astype(dtype)
    if config["kind"] == "sdpa":
        from fastnn.nn.function_ops import OPS
        op = OPS["scaled_dot_product_attention"]
        out, ctx = op.forward(*inputs, masks.get("attn_mask"), **config["call"])
        grads_in = op.backward(ctx, g, [True, True, True, False])[:3]
        return d, config, [out], list(grads_in), {}
    model = build(config["kind"], config["kwargs"])
    params = {k[len("param/"):]: v for k, v in d.items() if k.startswith("param/")}
    model.load_state_dict(params, strict=True)
    model.to(dtype)
    model.train()
    args = inputs * 3 if config["kind"] == "MultiheadAttention" and len(inputs) == 1 else inputs
    res = model(*args, **masks, **config["call"])
    res = list(res) if isinstance(res, tuple) else [res]
    res = [o for o in res if o is not None]
    grad_outputs = [g] + [None] * (len(res) - 1)
    gin = model.backward(*grad_outputs)
    gin = list(gin) if isinstance(gin, tuple) else [gin]
    if config["kind"] == "MultiheadAttention" and len(inputs) == 1:
        gin = [gin[0] + gin[1] + gin[2]] if gin[1] is not None else [gin[0]]
    grads = {name: p.grad for name, p in model.named_parameters()}
    return d, config, res, gin[:len(inputs)], grads


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", CASES)
def test_matches_pytorch(case, dtype):
    d, config, res, grads_in, grads = run_case(case, dtype)

    def check(got, want, what):
        if dtype == np.float64:
            tol = dict(rtol=1e-9, atol=1e-10)
        else:   # float32: relative to the array's scale (sums of many terms)
            tol = dict(rtol=1e-4, atol=2e-5 * max(1.0, float(np.max(np.abs(want)))))
        np.testing.assert_allclose(got, want, **tol, err_msg=f"{case}: {what}")

    for k in range(config["outputs"]):
        assert res[k].dtype == dtype
        check(res[k], d[f"out/{k}"], f"output {k}")
    assert len(grads_in) == len(config["inputs"])
    for name, gi in zip(config["inputs"], grads_in):
        check(gi, d[f"grad_in/{name}"], f"gradient of input {name}")
    want = {k[len("grad/"):] for k in d if k.startswith("grad/")}
    assert set(grads) == want
    for name, gp in grads.items():
        check(gp, d[f"grad/{name}"], f"gradient of {name}")


def test_parameter_names_and_shapes_are_pytorchs():
    mha = nn.MultiheadAttention(8, 2)
    assert {k: v.shape for k, v in mha.state_dict().items()} == {
        "in_proj_weight": (24, 8), "in_proj_bias": (24,), "out_proj.weight": (8, 8), "out_proj.bias": (8,)}
    cross = nn.MultiheadAttention(8, 2, kdim=6, vdim=4, bias=False)
    assert {k: v.shape for k, v in cross.state_dict().items()} == {
        "q_proj_weight": (8, 8), "k_proj_weight": (8, 6), "v_proj_weight": (8, 4), "out_proj.weight": (8, 8)}
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16), 2)
    names = list(enc.state_dict())
    assert names[:4] == ["layers.0.self_attn.in_proj_weight", "layers.0.self_attn.in_proj_bias",
                         "layers.0.self_attn.out_proj.weight", "layers.0.self_attn.out_proj.bias"]
    assert "layers.1.norm2.bias" in names and len(names) == 24
    # the copies start equal and are separate parameters
    np.testing.assert_array_equal(enc.layers[0].linear1.weight.data, enc.layers[1].linear1.weight.data)
    assert enc.layers[0].linear1.weight is not enc.layers[1].linear1.weight
    dec = nn.TransformerDecoder(nn.TransformerDecoderLayer(8, 2, 16), 1)
    assert "layers.0.multihead_attn.in_proj_weight" in dec.state_dict()
    assert "layers.0.norm3.weight" in dec.state_dict()


def test_generate_square_subsequent_mask():
    m = nn.Transformer.generate_square_subsequent_mask(4)
    assert m.shape == (4, 4) and m.dtype == np.float32
    assert np.all(m[np.tril_indices(4)] == 0) and np.all(np.isneginf(m[np.triu_indices(4, 1)]))


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match=r"embed_dim \(10\) must be positive and divisible by num_heads \(4\)"):
        nn.MultiheadAttention(10, 4)
    with pytest.raises(ValueError, match="activation must be"):
        nn.TransformerEncoderLayer(8, 2, activation="swish")
    mha = nn.MultiheadAttention(8, 2, batch_first=True)
    x = rng(0).standard_normal((3, 5, 8)).astype(np.float32)
    with pytest.raises(ValueError, match=r"MultiheadAttention.*key_padding_mask must have shape \(N, S\) = \(3, 5\)"
                                         r", got \(3, 4\)"):
        mha(x, x, x, key_padding_mask=np.zeros((3, 4), bool))
    with pytest.raises(ValueError, match=r"attn_mask must have shape \(L, S\) = \(5, 5\).*got \(4, 5\)"):
        mha(x, x, x, attn_mask=np.zeros((4, 5), bool))
    with pytest.raises(TypeError, match="attn_mask must be bool or float"):
        mha(x, x, x, attn_mask=np.zeros((5, 5), np.int32))
    with pytest.raises(ValueError, match="query must end in 8 features"):
        mha(x[..., :6], x, x)


def test_fully_masked_query_gives_zeros_not_nan():
    mha = nn.MultiheadAttention(8, 2, batch_first=True)
    x = rng(1).standard_normal((2, 4, 8))
    mha.double()
    mask = np.zeros((4, 4), bool)
    mask[2] = True                      # query 2 may attend no key
    out, w = mha(x, x, x, attn_mask=mask)
    assert np.all(np.isfinite(out)) and np.all(w[:, 2] == 0)
    # its attention output is zero, so the output row is out_proj's bias
    np.testing.assert_allclose(out[:, 2], np.broadcast_to(mha.out_proj.bias.data, (2, 8)), atol=1e-12)
    mha.backward(np.ones_like(out), None)
    assert all(np.all(np.isfinite(p.grad)) for p in mha.parameters())


def test_unbatched_input_matches_batch_of_one():
    mha = nn.MultiheadAttention(8, 2)
    x = rng(2).standard_normal((5, 8)).astype(np.float32)
    out, w = mha(x, x, x)
    out1, w1 = mha(x[:, None], x[:, None], x[:, None])
    np.testing.assert_allclose(out, out1[:, 0], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(w, w1[0], rtol=1e-6, atol=1e-7)


def test_dropout_in_training_and_none_in_eval():
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.5, batch_first=True)
    x = rng(3).standard_normal((2, 5, 8)).astype(np.float32)
    layer.eval()
    a, b = layer(x), layer(x)
    np.testing.assert_array_equal(a, b)
    layer.train()
    c = layer(x)
    assert not np.allclose(a, c)
    layer.backward(np.ones_like(c))
    assert all(np.all(np.isfinite(p.grad)) for p in layer.parameters())


def test_gradients_with_attention_dropout_match_finite_differences():
    """Attention dropout in training: with the random stream reseeded before each forward, every forward drops
    the same weights, and the gradients match finite differences."""
    from harness import numeric_gradient
    mha = nn.MultiheadAttention(4, 2, dropout=0.3, batch_first=True).double()
    x = rng(4).standard_normal((2, 3, 4))
    r = rng(5).standard_normal((2, 3, 4))

    def run():
        fnn.random.manual_seed(0)
        return mha(x, x, x, need_weights=False)[0]
    y = run()
    mha.eval()
    assert not np.allclose(y, mha(x, x, x, need_weights=False)[0])   # something was dropped
    mha.train()
    mha.zero_grad()
    run()
    dx = mha.backward(r)
    dx = dx[0] + dx[1] + dx[2] if isinstance(dx, tuple) and len(dx) == 3 and dx[1] is not None else \
        (dx[0] if isinstance(dx, tuple) else dx)
    objective = lambda: float(np.sum(r * run()))   # noqa: E731
    np.testing.assert_allclose(dx, numeric_gradient(objective, x), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(mha.in_proj_weight.grad, numeric_gradient(objective, mha.in_proj_weight.data),
                               rtol=1e-6, atol=1e-8)


def test_learned_positional_parameter_gets_its_gradient():
    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(20, 8)
            self.pos = nn.Parameter(rng(5).standard_normal((6, 8)) * 0.1)
            self.encoder = nn.TransformerEncoder(
                nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=True), 1)
            self.head = nn.Linear(8, 3)

        def forward(self, ids):
            return self.head(self.encoder(self.embed(ids) + self.pos).mean(1))

    model = Classifier()
    ids = rng(6).integers(0, 20, (4, 6))
    model.double()
    y = model(ids)
    r = rng(7).standard_normal(y.shape)
    model.zero_grad()
    model(ids)
    model.backward(r)
    analytic = model.pos.grad.copy()
    assert np.any(analytic != 0)
    from harness import numeric_gradient
    numeric = numeric_gradient(lambda: float(np.sum(r * model(ids))), model.pos.data)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


def test_encoder_layer_gradients_match_finite_differences():
    layer = nn.TransformerEncoderLayer(8, 2, 12, dropout=0.0, batch_first=True, activation="gelu")
    check_module_gradients(layer, rng(8).standard_normal((2, 4, 8)))


def test_save_load_summary_and_trainer(tmp_path):
    model = nn.Sequential(
        nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, dropout=0.1, batch_first=True, norm_first=True),
                              2, norm=nn.LayerNorm(8)),
        nn.Flatten(), nn.Linear(8 * 4, 3))
    r = rng(9)
    x = r.standard_normal((60, 4, 8)).astype(np.float32)
    y = (x[:, 0, 0] > 0).astype(np.int64) + (x[:, 1, 1] > 0)
    trainer = fnn.Trainer(model, loss=nn.CrossEntropyLoss(), optimizer=fnn.optim.Adam(model.parameters(), lr=0.01),
                          metrics=["accuracy"])
    history = trainer.fit(x, y, epochs=3, batch_size=16, verbose=0)
    assert len(history["loss"]) == 3 and history["loss"][-1] < history["loss"][0]
    model.eval()
    want = model(x[:5])
    path = tmp_path / "enc.fnn"
    fnn.save(model, str(path))
    loaded = fnn.load(str(path))
    loaded.eval()
    np.testing.assert_array_equal(loaded(x[:5]), want)
    assert list(loaded.state_dict()) == list(model.state_dict())
    text = str(model.summary(input_shape=(4, 8)))
    assert "0.layers.1.self_attn.out_proj" in text and "Total params: 1,315" in text


MASK_GRAD_CASES = [c for c in CASES if json.loads(str(load(c)["config"])).get("mask_grad")]


class LearnedMasks(nn.Module):
    """A module whose float masks are Parameters (a learned bias on the attention scores)."""

    def __init__(self, inner, masks, call):
        super().__init__()
        self.inner, self.names, self.call = inner, list(masks), dict(call)
        for kw, m in masks.items():
            setattr(self, kw, fnn.nn.Parameter(m))

    def forward(self, *args):
        return self.inner(*args, **{kw: getattr(self, kw) for kw in self.names}, **self.call)[0]


class LearnedSdpaMask(nn.Module):
    def __init__(self, mask, call):
        super().__init__()
        self.attn_mask, self.call = fnn.nn.Parameter(mask), dict(call)

    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v, self.attn_mask, **self.call)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", MASK_GRAD_CASES)
def test_float_mask_that_is_a_parameter_gets_pytorchs_gradient(case, dtype):
    """A float attn_mask / key_padding_mask that is a traced value (here a Parameter) gets the gradient of the
    scores summed over the dimensions it was broadcast along, as PyTorch gives a mask that requires grad."""
    d = load(case)
    config = json.loads(str(d["config"]))
    inputs = [d[f"input/{n}"].astype(dtype) for n in config["inputs"]]
    masks = {kw: d[f"input/{kw}"].astype(dtype) for kw in config["masks"]}
    if config["kind"] == "sdpa":
        model = LearnedSdpaMask(masks["attn_mask"], config["call"])
    else:
        inner = build(config["kind"], config["kwargs"])
        params = {k[len("param/"):]: v for k, v in d.items() if k.startswith("param/")}
        inner.load_state_dict(params, strict=True)
        model = LearnedMasks(inner, masks, config["call"])
        if len(inputs) == 1:
            inputs = inputs * 3
    model.to(dtype)
    out = model(*inputs)
    tol = dict(rtol=1e-9, atol=1e-10) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out, d["out/0"], **tol)
    model.backward_parameters(d["grad_out"].astype(dtype))
    for kw in config["mask_grad"]:
        want = d[f"grad_mask/{kw}"]
        got = getattr(model, kw).grad
        scale = max(1.0, float(np.max(np.abs(want))))
        np.testing.assert_allclose(got, want, rtol=tol["rtol"], atol=tol["atol"] * scale, err_msg=f"{case}: {kw}")
    if config["kind"] != "sdpa":
        for name, p in model.inner.named_parameters():
            np.testing.assert_allclose(p.grad, d[f"grad/{name}"], rtol=tol["rtol"],
                                       atol=tol["atol"] * max(1.0, float(np.max(np.abs(d[f"grad/{name}"])))))


def test_constant_float_mask_costs_no_gradient():
    """A float mask made inside forward (a constant of the graph) gets no gradient and needs none."""
    class Causal(nn.Module):
        def __init__(self):
            super().__init__()
            self.mha = nn.MultiheadAttention(8, 2, batch_first=True)

        def forward(self, x):
            mask = nn.Transformer.generate_square_subsequent_mask(x.shape[1])
            return self.mha(x, x, x, attn_mask=mask, need_weights=False)[0]

    m = Causal().double()
    check_module_gradients(m, rng(3).standard_normal((2, 5, 8)))


def test_weights_after_dropout_are_the_ones_applied():
    """need_weights=True in training with dropout: the weights returned are after dropout (PyTorch's), and they
    are exactly those the output was computed with: out = out_proj(concat_h(W_h · V_h))."""
    mha = nn.MultiheadAttention(8, 2, dropout=0.4, batch_first=True).double()
    x = rng(4).standard_normal((3, 6, 8))
    fnn.manual_seed(11)
    out, w = mha(x, x, x, need_weights=True, average_attn_weights=False)
    assert w.shape == (3, 2, 6, 6)
    assert np.any(w == 0) and not np.allclose(w.sum(-1), 1.0)          # dropped, and the rest scaled
    E = 8
    v = x @ mha.in_proj_weight.data[2 * E:].T + mha.in_proj_bias.data[2 * E:]
    v4 = v.reshape(3, 6, 2, 4).transpose(0, 2, 1, 3)
    heads = (w @ v4).transpose(0, 2, 1, 3).reshape(3, 6, 8)
    want = heads @ mha.out_proj.weight.data.T + mha.out_proj.bias.data
    np.testing.assert_allclose(out, want, rtol=1e-10, atol=1e-12)
    # averaged over heads: the mean of those
    fnn.manual_seed(11)
    out2, w2 = mha(x, x, x, need_weights=True)
    np.testing.assert_array_equal(out2, out)
    np.testing.assert_allclose(w2, w.mean(1), rtol=1e-12, atol=1e-15)
    # eval: no dropout, rows sum to 1
    mha.eval()
    _, w3 = mha(x, x, x)
    np.testing.assert_allclose(w3.sum(-1), 1.0, rtol=1e-12)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("need_weights", [False, True])
def test_mismatched_batch_or_key_value_lengths_raise(batch_first, need_weights):
    """Key and value of another batch size than the query, or of two lengths: a clear error, not a read past
    the arrays (the kernel takes the query's batch size)."""
    mha = nn.MultiheadAttention(16, 2, batch_first=batch_first)
    q = np.ones((3, 5, 16), np.float32)                 # batch 3 (batch first) or 5
    same, other = (3, 4) if batch_first else (5, 4)

    def seq(length, batch):
        return np.ones((batch, length, 16) if batch_first else (length, batch, 16), np.float32)
    for k, v in ((seq(7, same), seq(6, same)), (seq(7, other), seq(7, other))):
        with pytest.raises(ValueError, match=r"MultiheadAttention\(.*one batch size"):
            mha(q, k, v, need_weights=need_weights)
    layer = nn.TransformerDecoderLayer(16, 2, 32, batch_first=True)
    with pytest.raises(ValueError, match="one batch size"):
        layer(np.ones((3, 5, 16), np.float32), np.ones((4, 6, 16), np.float32))


class EncoderDecoder(nn.Module):
    """An encoder over src, a decoder layer over tgt reading it (cross-attention), mean over tgt, a head."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True,
                                                                        activation="gelu"), 2)
        self.decoder = nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0, batch_first=True, norm_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, src, tgt):
        return self.head(self.decoder(tgt, self.encoder(src)).mean(1))


def test_a_traced_transformer_takes_other_batch_sizes_and_lengths(tmp_path):
    """The graph traced at the first call (and the one saved) runs for any batch size and sequence lengths: its
    results equal those of a fresh copy traced at the new sizes, in eval and for the gradients in training.
    A key/value batch that disagrees with the query's still raises, though the module's checks ran on the
    traced example only."""
    r = rng(21)
    state = EncoderDecoder().state_dict()

    def fresh():
        m = EncoderDecoder()
        m.load_state_dict(state)
        return m

    def x32(*shape):  # float32 like the traced example: the same kind of input, so the same trace serves it
        return r.standard_normal(shape).astype(np.float32)
    model = fresh()
    src, tgt = x32(5, 6, 8), x32(5, 4, 8)
    model.eval()
    model(src, tgt)                                         # traced here, at batch 5, lengths 6 and 4
    path = str(tmp_path / "encdec.fnn")
    fnn.save(model, path)
    loaded = fnn.load(path)
    loaded.eval()
    for n, ls, lt in ((3, 6, 4), (2, 9, 5), (7, 1, 1), (1, 6, 4)):
        s, t = x32(n, ls, 8), x32(n, lt, 8)
        want = fresh().eval()(s, t)
        np.testing.assert_allclose(model(s, t), want, rtol=1e-6, atol=1e-7)
        if (ls, lt) == (6, 4):  # a saved graph takes any batch size of the per-sample shapes it was saved with
            np.testing.assert_allclose(loaded(s, t), want, rtol=1e-6, atol=1e-7)
    model.train()
    model(src, tgt)
    s, t = x32(3, 7, 8), x32(3, 2, 8)
    other = fresh().train()
    for m in (model, other):
        m.zero_grad()
        m.backward_parameters(np.ones_like(m(s, t)))
    for (name, a), (_, b) in zip(model.named_parameters(), other.named_parameters()):
        np.testing.assert_allclose(a.grad, b.grad, rtol=1e-5, atol=1e-6, err_msg=name)
    with pytest.raises(ValueError, match="one batch size"):
        model(s, x32(2, 2, 8))
