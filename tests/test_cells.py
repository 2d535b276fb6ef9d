"""RNNCell, LSTMCell, GRUCell: one step against the NumPy oracle (forward and every gradient), finite
differences, PyTorch's names and shapes, PyTorch 2.13's unrolled cells (tests/data/cells_reference.npz, made by
tests/data/make_cells_reference.py), a traced forward unrolling a cell over time against the whole-
sequence layer, Trainer, fnn.save/load and summary()."""
import json
import os

import numpy as np
import pytest

import fastnn as fnn
import fastnn.nn.functional as F
import rnn_oracle as oracle
from harness import numeric_gradient, rng

CELLS = {"RNN_TANH": lambda i, h, **kw: fnn.nn.RNNCell(i, h, **kw),
         "RNN_RELU": lambda i, h, **kw: fnn.nn.RNNCell(i, h, nonlinearity="relu", **kw),
         "LSTM": fnn.nn.LSTMCell, "GRU": fnn.nn.GRUCell}
LAYERS = {"RNN_TANH": lambda i, h: fnn.nn.RNN(i, h, batch_first=True),
          "RNN_RELU": lambda i, h: fnn.nn.RNN(i, h, nonlinearity="relu", batch_first=True),
          "LSTM": lambda i, h: fnn.nn.LSTM(i, h, batch_first=True),
          "GRU": lambda i, h: fnn.nn.GRU(i, h, batch_first=True)}
TOL = {np.float64: dict(rtol=1e-9, atol=1e-11), np.float32: dict(rtol=2e-5, atol=2e-6)}


def _params(cell):
    b_ih = cell.bias_ih.data if cell.bias_ih is not None else np.zeros(cell.weight_ih.shape[0])
    b_hh = cell.bias_hh.data if cell.bias_hh is not None else np.zeros(cell.weight_hh.shape[0])
    return [np.asarray(a, np.float64) for a in (cell.weight_ih.data, cell.weight_hh.data, b_ih, b_hh)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("mode", list(CELLS))
def test_one_step_matches_numpy_oracle(mode, bias, dtype):
    N, I, H = 3, 5, 4
    cell = CELLS[mode](I, H, bias=bias).to(dtype)
    r = rng(1)
    x = r.standard_normal((N, I)).astype(dtype)
    h0 = r.standard_normal((N, H)).astype(dtype)
    c0 = r.standard_normal((N, H)).astype(dtype) if mode == "LSTM" else None
    w_ih, w_hh, b_ih, b_hh = _params(cell)
    y, h_ref, c_ref, cache = oracle.forward(mode, x[None].astype(np.float64), w_ih, w_hh, b_ih, b_hh,
                                            h0.astype(np.float64), None if c0 is None else c0.astype(np.float64))
    out = cell(x, (h0, c0)) if mode == "LSTM" else cell(x, h0)
    h = out[0] if mode == "LSTM" else out
    assert h.dtype == dtype and h.shape == (N, H)
    np.testing.assert_allclose(h, h_ref, **TOL[dtype])
    if mode == "LSTM":
        np.testing.assert_allclose(out[1], c_ref, **TOL[dtype])
    gh = r.standard_normal((N, H))
    gc = r.standard_normal((N, H)) if mode == "LSTM" else None
    ref = oracle.backward(mode, x[None].astype(np.float64), w_ih, w_hh, cache, gh[None], np.zeros((N, H)), gc)
    cell.zero_grad()
    dx = cell.backward(gh.astype(dtype), gc.astype(dtype)) if mode == "LSTM" else cell.backward(gh.astype(dtype))
    np.testing.assert_allclose(dx, ref["dx"][0], **TOL[dtype])
    if mode == "LSTM":
        np.testing.assert_allclose(cell.grad_hx[0], ref["dh0"], **TOL[dtype])
        np.testing.assert_allclose(cell.grad_hx[1], ref["dc0"], **TOL[dtype])
    else:
        np.testing.assert_allclose(cell.grad_hx, ref["dh0"], **TOL[dtype])
    np.testing.assert_allclose(cell.weight_ih.grad, ref["dw_ih"], **TOL[dtype])
    np.testing.assert_allclose(cell.weight_hh.grad, ref["dw_hh"], **TOL[dtype])
    if bias:
        np.testing.assert_allclose(cell.bias_ih.grad, ref["db_ih"], **TOL[dtype])
        np.testing.assert_allclose(cell.bias_hh.grad, ref["db_hh"], **TOL[dtype])
    else:
        assert cell.bias_ih is None and cell.bias_hh is None and len(list(cell.parameters())) == 2


@pytest.mark.parametrize("mode", list(CELLS))
def test_finite_differences_for_every_input_and_parameter(mode):
    N, I, H = 2, 3, 4
    cell = CELLS[mode](I, H).double()
    r = rng(2)
    x = r.standard_normal((N, I))
    h0 = r.standard_normal((N, H))
    c0 = r.standard_normal((N, H))
    rh, rc = r.standard_normal((N, H)), r.standard_normal((N, H))
    lstm = mode == "LSTM"

    def objective():
        if lstm:
            h, c = cell(x, (h0, c0))
            return float(np.sum(rh * h) + np.sum(rc * c))
        return float(np.sum(rh * cell(x, h0)))

    objective()
    cell.zero_grad()
    dx = cell.backward(rh, rc) if lstm else cell.backward(rh)
    analytic = {name: p.grad.copy() for name, p in cell.named_parameters()}
    kw = dict(rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dx, numeric_gradient(objective, x), **kw)
    np.testing.assert_allclose(cell.grad_hx[0] if lstm else cell.grad_hx, numeric_gradient(objective, h0), **kw)
    if lstm:
        np.testing.assert_allclose(cell.grad_hx[1], numeric_gradient(objective, c0), **kw)
    for name, p in cell.named_parameters():
        np.testing.assert_allclose(analytic[name], numeric_gradient(objective, p.data), err_msg=name, **kw)


@pytest.mark.parametrize("mode", list(CELLS))
def test_pytorch_names_shapes_unbatched_and_zero_default_state(mode):
    I, H = 6, 3
    G = {"LSTM": 4, "GRU": 3}.get(mode, 1)
    cell = CELLS[mode](I, H)
    assert [(n, p.shape) for n, p in cell.named_parameters()] == [
        ("weight_ih", (G * H, I)), ("weight_hh", (G * H, H)), ("bias_ih", (G * H,)), ("bias_hh", (G * H,))]
    bound = 1 / np.sqrt(H)
    assert all(np.abs(p.data).max() <= bound and p.dtype == np.float32 for p in cell.parameters())
    x = rng(3).standard_normal((4, I)).astype(np.float32)
    zeros = np.zeros((4, H), np.float32)
    lstm = mode == "LSTM"
    default, explicit = cell(x), cell(x, (zeros, zeros) if lstm else zeros)
    for a, b in zip(default if lstm else (default,), explicit if lstm else (explicit,)):
        np.testing.assert_array_equal(a, b)
    # unbatched (I,) -> (H,), equal to the batched row
    batched = cell(x[1:2], (zeros[:1], zeros[:1]) if lstm else zeros[:1])
    single = cell(x[1])
    for a, b in zip(single if lstm else (single,), batched if lstm else (batched,)):
        assert a.shape == (H,)
        np.testing.assert_allclose(a, b[0], rtol=1e-6)
    g = np.ones(H, np.float32)
    dx = cell.backward(g, g) if lstm else cell.backward(g)
    assert dx.shape == (I,)
    assert (cell.grad_hx[0] if lstm else cell.grad_hx).shape == (H,)


def test_bad_inputs_name_the_cell_and_shapes():
    cell = fnn.nn.LSTMCell(4, 3)
    with pytest.raises(ValueError, match=r"LSTMCell\(4, 3\).*\(N, 4\).*\(2, 5\)"):
        cell(np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match=r"LSTMCell.*tuple \(h, c\)"):
        cell(np.zeros((2, 4), np.float32), np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"LSTMCell.*h must have shape \(2, 3\).*got \(2, 4\)"):
        cell(np.zeros((2, 4), np.float32), (np.zeros((2, 4)), np.zeros((2, 3))))
    gru = fnn.nn.GRUCell(4, 3)
    with pytest.raises(ValueError, match=r"GRUCell.*hx must have shape \(3,\)"):
        gru(np.zeros(4, np.float32), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="RNNCell: nonlinearity"):
        fnn.nn.RNNCell(4, 3, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="GRUCell: hidden_size"):
        fnn.nn.GRUCell(4, 0)
    with pytest.raises(ValueError, match=r"RNNCell\(2, 2\): backward\(\) called before forward"):
        fnn.nn.RNNCell(2, 2).backward(np.zeros((1, 2)))


class Unrolled(fnn.nn.Module):
    """A Python loop over time steps in a traced forward: every step is a node of the graph."""

    def __init__(self, mode, I, H):
        super().__init__()
        self.lstm = mode == "LSTM"
        self.cell = CELLS[mode](I, H)

    def forward(self, x, h0, c0):
        state = (h0, c0) if self.lstm else h0
        outs = []
        for t in range(x.shape[1]):
            state = self.cell(x[:, t], state)
            outs.append(state[0] if self.lstm else state)
        return (F.stack(outs, 1), state) if self.lstm else (F.stack(outs, 1), state)


@pytest.mark.parametrize("mode", list(CELLS))
def test_traced_unrolled_cell_equals_the_sequence_layer(mode):
    N, T, I, H = 3, 5, 4, 6
    model = Unrolled(mode, I, H).double()
    layer = LAYERS[mode](I, H).double()
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        getattr(layer, name + "_l0").data[...] = getattr(model.cell, name).data
    r = rng(4)
    x, h0, c0 = r.standard_normal((N, T, I)), r.standard_normal((N, H)), r.standard_normal((N, H))
    lstm = mode == "LSTM"
    out, state = model(x, h0, c0)
    ref_out, ref_state = layer(x, (h0[None], c0[None]) if lstm else h0[None])
    np.testing.assert_allclose(out, ref_out, rtol=1e-9, atol=1e-12)
    if lstm:
        np.testing.assert_allclose(state[0], ref_state[0][0], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(state[1], ref_state[1][0], rtol=1e-9, atol=1e-12)
    else:
        np.testing.assert_allclose(state, ref_state[0], rtol=1e-9, atol=1e-12)
    g_out, g_h, g_c = r.standard_normal(out.shape), r.standard_normal((N, H)), r.standard_normal((N, H))
    model.zero_grad()
    layer.zero_grad()
    grads = model.backward(g_out, g_h, g_c) if lstm else model.backward(g_out, g_h)
    dx_ref = layer.backward(g_out, g_h[None], g_c[None]) if lstm else layer.backward(g_out, g_h[None])
    tol = dict(rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(grads[0], dx_ref, **tol)
    if lstm:
        np.testing.assert_allclose(grads[1], layer.grad_hx[0][0], **tol)
        np.testing.assert_allclose(grads[2], layer.grad_hx[1][0], **tol)
    else:
        np.testing.assert_allclose(grads[1], layer.grad_hx[0], **tol)
        assert grads[2] is None  # c0 is not used by the forward
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        np.testing.assert_allclose(getattr(model.cell, name).grad, getattr(layer, name + "_l0").grad,
                                   err_msg=name, **tol)


_TORCH = np.load(os.path.join(os.path.dirname(__file__), "data", "cells_reference.npz"))
TORCH_CASES = sorted({k.split("/")[0] for k in _TORCH.files})


class Stepper(fnn.nn.Module):
    """PyTorch's loop: state = cell(x_t, state) for every step, the h of every step stacked."""

    def __init__(self, cell, batched):
        super().__init__()
        self.cell, self.batched = cell, batched
        self.lstm = isinstance(cell, fnn.nn.LSTMCell)

    def forward(self, x, h0, c0):
        state = (h0, c0) if self.lstm else h0
        hs = []
        for t in range(x.shape[1] if self.batched else x.shape[0]):
            state = self.cell(x[:, t] if self.batched else x[t], state)
            hs.append(state[0] if self.lstm else state)
        return F.stack(hs, 1 if self.batched else 0), state


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", TORCH_CASES)
def test_unrolled_cells_match_pytorch(case, dtype):
    """PyTorch's state_dict loads strictly; outputs and every gradient (parameters, x, h0, c0) match."""
    cfg = json.loads(str(_TORCH[f"{case}/config"]))
    cell = getattr(fnn.nn, cfg["class"])(**cfg["kwargs"])
    model = Stepper(cell, cfg["batched"]).to(dtype)
    prefix = f"{case}/param/"
    state = {"cell." + k[len(prefix):]: _TORCH[k] for k in _TORCH.files if k.startswith(prefix)}
    model.load_state_dict(state, strict=True)
    get = lambda name: _TORCH[f"{case}/{name}"].astype(dtype)  # noqa: E731
    lstm = cfg["class"] == "LSTMCell"
    x, h0 = get("x"), get("h0")
    c0 = get("c0") if lstm else np.zeros_like(h0)
    out, last = model(x, h0, c0)
    tol = TOL[dtype]
    np.testing.assert_allclose(out, _TORCH[f"{case}/out"], **tol)
    np.testing.assert_allclose(last[0] if lstm else last, _TORCH[f"{case}/h_T"], **tol)
    if lstm:
        np.testing.assert_allclose(last[1], _TORCH[f"{case}/c_T"], **tol)
    model.zero_grad()
    grads = model.backward(get("grad_out"), get("grad_hT"), get("grad_cT")) if lstm else \
        model.backward(get("grad_out"), get("grad_hT"))
    np.testing.assert_allclose(grads[0], _TORCH[f"{case}/grad_x"], **tol)
    np.testing.assert_allclose(grads[1], _TORCH[f"{case}/grad_h0"], **tol)
    if lstm:
        np.testing.assert_allclose(grads[2], _TORCH[f"{case}/grad_c0"], **tol)
    names = [k[len(f"{case}/grad/"):] for k in _TORCH.files if k.startswith(f"{case}/grad/")]
    assert sorted(names) == sorted(n for n, _ in cell.named_parameters())
    for name in names:
        np.testing.assert_allclose(getattr(cell, name).grad, _TORCH[f"{case}/grad/{name}"], err_msg=name, **tol)


class Classifier(fnn.nn.Module):
    def __init__(self):
        super().__init__()
        self.cell = fnn.nn.GRUCell(2, 8)
        self.head = fnn.nn.Linear(8, 2)

    def forward(self, x):  # x (N, T, 2)
        h = self.cell(x[:, 0])
        for t in range(1, x.shape[1]):
            h = self.cell(x[:, t], h)
        return self.head(h)


def _sign_task(n, seed):
    r = rng(seed)
    x = r.standard_normal((n, 6, 2)).astype(np.float32)
    return x, (x[:, :, 0].sum(1) > 0).astype(np.int64)


def test_trainer_learns_through_an_unrolled_cell_and_save_load_summary(tmp_path):
    fnn.random.manual_seed(0)
    model = Classifier()
    x, y = _sign_task(512, 5)
    trainer = fnn.Trainer(model, loss=fnn.nn.CrossEntropyLoss(),
                          optimizer=fnn.optim.Adam(model.parameters(), lr=0.02), metrics=["accuracy"])
    history = trainer.fit(x, y, epochs=8, batch_size=32, verbose=0)
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    xt, yt = _sign_task(256, 6)
    assert trainer.evaluate(xt, yt)["accuracy"] > 0.9
    model.eval()
    expected = model(xt)
    fnn.save(model, tmp_path / "m.safetensors")
    loaded = fnn.load(tmp_path / "m.safetensors")
    np.testing.assert_array_equal(loaded(xt), expected)
    assert sorted(loaded.state_dict()) == sorted(model.state_dict())
    text = str(model.summary((6, 2)))
    assert "GRUCell" in text and "(1, 8)" in text


@pytest.mark.parametrize("mode", ["RNN_RELU", "LSTM", "GRU"])
def test_a_cell_saves_and_loads_by_itself(tmp_path, mode):
    cell = CELLS[mode](3, 4, bias=False)
    x = rng(7).standard_normal((2, 3)).astype(np.float32)
    fnn.save(cell, tmp_path / "c.safetensors")
    back = fnn.load(tmp_path / "c.safetensors")
    assert type(back) is type(cell) and back.bias_ih is None and repr(back) == repr(cell)
    a, b = cell(x), back(x)
    for u, v in zip(a if mode == "LSTM" else (a,), b if mode == "LSTM" else (b,)):
        np.testing.assert_array_equal(u, v)


def test_keras_style_graph_and_sequential():
    inp, state = fnn.nn.Input((5,)), fnn.nn.Input((4,))
    cell = fnn.nn.LSTMCell(5, 4).double()
    h, c = cell(inp, (state, state))  # one input feeds both h and c: its gradient is the sum
    graph = fnn.nn.Graph([inp, state], [h, c])
    r = rng(8)
    x, s = r.standard_normal((3, 5)), r.standard_normal((3, 4))
    gh, gc = r.standard_normal((3, 4)), r.standard_normal((3, 4))
    out = graph(x, s)
    ref = cell(x, (s, s))
    np.testing.assert_array_equal(out[0], ref[0])
    np.testing.assert_array_equal(out[1], ref[1])
    dx, ds = graph.backward(gh, gc)
    ref_dx = cell.backward(gh, gc)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-14)
    np.testing.assert_allclose(ds, cell.grad_hx[0] + cell.grad_hx[1], rtol=1e-14)
    seq = fnn.nn.Sequential(fnn.nn.Linear(5, 5), fnn.nn.GRUCell(5, 4)).double()
    y = seq(x)
    assert y.shape == (3, 4)
    np.testing.assert_allclose(seq.backward(gh), seq[0].backward(seq[1].backward(gh)), rtol=1e-14)
