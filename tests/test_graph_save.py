"""Graphs saved as data: traced subclasses load as the Graph they trace to (no user code runs), Keras-style
Graphs and Sequentials holding containers round-trip bit for bit, and malformed graphs are clear errors."""
import json

import numpy as np
import pytest

import fastnn as fnn
from fastnn import safetensors as st
from harness import rng

F = fnn.nn.functional
nn = fnn.nn


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.bn = nn.BatchNorm2d(c)
        self.gain = nn.Parameter(np.ones((1, c, 1, 1), np.float32))

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)) * self.gain + x)


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([Block(2), Block(2)])
        self.fc = nn.Linear(32, 3)
        self.register_buffer("offset", np.full(3, 0.25, np.float32))

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        h = x.reshape(x.shape[0], -1)
        if self.training:
            h = F.dropout(h, 0.2, True)
        return self.fc(h) + self.offset


def trained_model():
    fnn.manual_seed(0)
    model = Model()
    x = rng(0).standard_normal((4, 2, 4, 4)).astype(np.float32)
    opt = fnn.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):
        y = model(x)
        model.backward_parameters(np.ones_like(y))
        opt.step()
        opt.zero_grad()
    return model, x


def test_traced_model_loads_as_its_graph_with_both_modes(tmp_path):
    model, x = trained_model()
    model.blocks[1].eval()
    path = tmp_path / "m.fnn"
    fnn.save(model, path)
    loaded = fnn.load(path)
    assert type(loaded) is nn.Graph
    assert list(loaded.state_dict()) == list(model.state_dict())
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[k], v)
    train_graph, eval_graph = loaded.graphs()
    assert eval_graph is not None and len(eval_graph.nodes) < len(train_graph.nodes)  # no dropout in eval
    assert not loaded.blocks[1].training and loaded.blocks[0].training
    model.eval(), loaded.eval()
    np.testing.assert_array_equal(loaded(x), model(x))
    model.train(), loaded.train()
    fnn.manual_seed(5)
    a = model(x)
    fnn.manual_seed(5)
    np.testing.assert_array_equal(loaded(x), a)  # dropout draws the same masks
    # the loaded graph trains: gradients equal the original's
    model.zero_grad(), loaded.zero_grad()
    fnn.manual_seed(6)
    model.backward(np.ones_like(model(x)))
    fnn.manual_seed(6)
    loaded.backward(np.ones_like(loaded(x)))
    for (name, p), q in zip(model.named_parameters(), loaded.parameters()):
        np.testing.assert_allclose(q.grad, p.grad, rtol=1e-6, atol=1e-7, err_msg=name)


def test_registered_traced_class_loads_as_itself(tmp_path):
    @fnn.register_module(name="SavedBlock")
    class SavedBlock(Block):
        pass

    fnn.manual_seed(0)
    block = SavedBlock(2)
    fnn.save(block, tmp_path / "b.fnn")  # constructor arguments: no trace needed
    loaded = fnn.load(tmp_path / "b.fnn")
    assert type(loaded) is SavedBlock
    x = rng(1).standard_normal((2, 2, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x), block(x))


def test_traced_model_must_have_run_before_saving(tmp_path):
    with pytest.raises(TypeError, match="has not run yet"):
        fnn.save(Model(), tmp_path / "m.fnn")


def test_keras_graph_and_sequential_with_containers_round_trip(tmp_path):
    fnn.manual_seed(0)
    inp, ids = nn.Input(shape=(5,)), nn.Input(shape=(3,), dtype="int64", name="ids")
    h = nn.Residual(nn.Sequential(nn.Linear(5, 5), nn.Tanh()))(inp)
    e = nn.EmbeddingBag(9, 5, mode="sum")(ids)
    out = nn.Parallel(nn.Linear(5, 2), nn.Linear(5, 1))(h * e)
    graph = nn.Graph([inp, ids], [out, F.softmax(out, dim=1)])
    seq = nn.Sequential(nn.Linear(4, 4), nn.Residual(nn.Linear(4, 4), shortcut=nn.Linear(4, 4)),
                        nn.Parallel(nn.Linear(4, 2), nn.Linear(4, 2), merge="add"))
    x, i = rng(2).standard_normal((6, 5)).astype(np.float32), rng(3).integers(0, 9, (6, 3))
    for model, inputs in ((graph, (x, i)), (seq, (x[:, :4],))):
        fnn.save(model, tmp_path / "g.fnn")
        loaded = fnn.load(tmp_path / "g.fnn")
        assert type(loaded) is type(model)
        a, b = model(*inputs), loaded(*inputs)
        for u, v in zip(a if isinstance(a, list) else [a], b if isinstance(b, list) else [b]):
            np.testing.assert_array_equal(u, v)


def test_specialised_trace_saves_for_its_shapes_only(tmp_path):
    class PerSample(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            return self.fc(x) * (1.0 / x.shape[0])

    model = PerSample()
    x = np.ones((4, 3), np.float32)
    y = model(x)
    fnn.save(model, tmp_path / "p.fnn")
    loaded = fnn.load(tmp_path / "p.fnn")
    np.testing.assert_array_equal(loaded(x), y)
    with pytest.raises(ValueError, match=r"traced for inputs with size 4 on axis 0 of input 0"):
        loaded(np.ones((5, 3), np.float32))


class CellLoop(nn.Module):
    """An LSTMCell unrolled over x.shape[1] in Python: the trace fixes the sequence length, not the batch."""

    def __init__(self):
        super().__init__()
        self.cell, self.fc = nn.LSTMCell(3, 5), nn.Linear(5, 2)

    def forward(self, x):
        state = None
        for t in range(x.shape[1]):
            state = self.cell(x[:, t], state)
        return self.fc(state[0])


class FromHidden(nn.Module):
    """A size read from an intermediate value (not an input): the trace holds for its input shapes only."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, x):
        h = self.fc(x)
        return h * (1.0 / h.shape[0])


def test_a_trace_fixes_only_the_input_sizes_it_used(tmp_path):
    r = np.random.default_rng(3)
    model = CellLoop()
    model(r.standard_normal((4, 6, 3)).astype(np.float32))          # traced at batch 4, 6 steps
    fnn.save(model, tmp_path / "cells.fnn")
    loaded = fnn.load(tmp_path / "cells.fnn")
    for batch in (1, 4, 9):
        x = r.standard_normal((batch, 6, 3)).astype(np.float32)
        fresh = CellLoop()
        fresh.load_state_dict(model.state_dict())
        want = fresh(x)                                              # a trace of its own at this batch size
        np.testing.assert_allclose(model(x), want, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(loaded(x), want, rtol=1e-6, atol=1e-7)
    assert model(np.ones((2, 8, 3), np.float32)).shape == (2, 2)  # 8 steps: traced anew in memory
    with pytest.raises(ValueError, match=r"must have shape \(N, 6, 3\)"):  # a saved graph: its own length
        loaded(np.ones((2, 8, 3), np.float32))
    other = FromHidden()
    other(np.ones((4, 3), np.float32))
    fnn.save(other, tmp_path / "hidden.fnn")
    with pytest.raises(ValueError, match=r"traced for inputs of shapes \[\[4, 3\]\] only"):
        fnn.load(tmp_path / "hidden.fnn")(np.ones((5, 3), np.float32))


def _arch(path):
    return json.loads(st.read_metadata(path)["fastnn.architecture"])


@pytest.mark.parametrize("corrupt, message", [
    (lambda a: a["graph"]["nodes"][1].update(args=[{"ref": [5, []]}]), "does not come before"),
    (lambda a: a["graph"]["nodes"][1].update(op="exec"), "op must be one of"),
    (lambda a: a["graph"]["nodes"][2].update(target="os.system"), "functional op 'os.system'"),
    (lambda a: a["graph"]["nodes"][1].update(target="nope"), "sub-module 'nope'"),
    (lambda a: a["graph"].update(outputs={"code": "x"}), "unknown tag 'code'"),
    (lambda a: a["children"].append(["evil", {"pickle": {}}]), "unknown graph child kind"),
    (lambda a: a["children"].append(["forward", {"container": {"class": "Module", "children": []}}]), "is taken"),
    (lambda a: a["children"].append(["x", {"container": {"class": "Linear", "children": []}}]), "malformed"),
    (lambda a: a["graph"]["constants"].update(c={"dtype": "object", "shape": [1], "data": [1]}), "not numeric"),
])
def test_malformed_graphs_are_value_errors_naming_the_file(tmp_path, corrupt, message):
    fnn.manual_seed(0)
    inp = nn.Input(shape=(3,))
    graph = nn.Graph(inp, F.relu(nn.Linear(3, 2)(inp)))
    path = tmp_path / "g.fnn"
    fnn.save(graph, path)
    tensors, meta = st.read(path)
    arch = _arch(path)
    corrupt(arch)
    st.save_file(tensors, path, dict(meta, **{"fastnn.architecture": json.dumps(arch)}))
    with pytest.raises(ValueError, match=message) as err:
        fnn.load(path)
    assert "g.fnn" in str(err.value)
