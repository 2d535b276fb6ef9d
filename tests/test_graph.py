"""Graph models: traced Module subclasses and Keras-style Graphs. Gradients against finite differences and
against the same network written layer by layer, shared modules, several inputs and outputs, recurrent
heads, trace caching and specialisation, untraceable code, need_input_grad, frozen parameters, containers."""
import threading

import numpy as np
import pytest

import fastnn as fnn
from harness import check_module_gradients, numeric_gradient, rng

F = fnn.nn.functional
nn = fnn.nn


def grad_check(model, inputs, outputs_grad_seed=1, params=True, rtol=1e-6, atol=1e-8):
    """Finite differences of L = Σ r·y (over every output) against model.backward, float64, for every float
    input and (if params) every trainable parameter. Returns the analytic input gradients."""
    model.double()
    inputs = [np.array(x, dtype=np.float64) if np.asarray(x).dtype.kind == "f" else x for x in inputs]
    out = model(*inputs)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    rs = [rng(outputs_grad_seed + k).standard_normal(np.shape(o)) for k, o in enumerate(outs)]

    def objective():
        o = model(*inputs)
        o = o if isinstance(o, (tuple, list)) else (o,)
        return float(sum(np.sum(r * a) for r, a in zip(rs, o)))

    model.zero_grad()
    model(*inputs)
    dx = model.backward(*[r.copy() for r in rs])
    dxs = dx if isinstance(dx, tuple) else (dx,)
    analytic = {name: p.grad.copy() for name, p in model.named_parameters() if p.requires_grad}
    for k, x in enumerate(inputs):
        if np.asarray(x).dtype.kind == "f":
            np.testing.assert_allclose(dxs[k], numeric_gradient(objective, x), rtol=rtol, atol=atol,
                                       err_msg=f"input {k}")
        else:
            assert dxs[k] is None
    if params:
        for name, p in model.named_parameters():
            if p.requires_grad:
                np.testing.assert_allclose(analytic[name], numeric_gradient(objective, p.data), rtol=rtol,
                                           atol=atol, err_msg=f"gradient of {name}")
    return dxs


# -- models used below --------------------------------------------------------------------------------------
class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)) + x)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = Block(2)
        self.fc = nn.Linear(2 * 4 * 4, 3)

    def forward(self, x):
        h = self.block(x)
        return self.fc(h.reshape(h.shape[0], -1))


class SharedThrice(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(F.tanh(self.fc(F.tanh(self.fc(x)))))


class TwoTower(nn.Module):
    """Two inputs, one of them integer ids; two outputs."""

    def __init__(self):
        super().__init__()
        self.dense = nn.Linear(3, 4)
        self.emb = nn.EmbeddingBag(10, 4, mode="mean")
        self.head = nn.Linear(8, 2)

    def forward(self, dense, ids):
        a = F.relu(self.dense(dense))
        b = self.emb(ids)
        both = F.cat([a, b], dim=1)
        return self.head(both), a * b


class RecurrentHead(nn.Module):
    def __init__(self, cls, batch_first, bidirectional, read):
        super().__init__()
        self.rnn = cls(3, 4, num_layers=2, batch_first=batch_first, bidirectional=bidirectional)
        self.read, self.batch_first = read, batch_first
        self.fc = nn.Linear(8 if bidirectional else 4, 2)

    def forward(self, x):
        out, state = self.rnn(x)
        h = state[0] if isinstance(state, tuple) else state
        if self.read == "h":
            return self.fc(h[-1])
        return self.fc(out[:, -1] if self.batch_first else out[-1])


# -- gradients ------------------------------------------------------------------------------------------------
def test_residual_model_gradients_and_one_trace():
    fnn.manual_seed(0)
    model = Net()
    x = rng(0).standard_normal((3, 2, 4, 4))
    grad_check(model, [x])
    assert len(model.__dict__["_traces"]) == 1  # every call above reused one trace


def test_traced_forward_equals_the_same_layers_by_hand_with_batch_norm_statistics():
    fnn.manual_seed(0)
    model = Net().double()
    ref = Net().double()
    ref.load_state_dict(model.state_dict())
    x = rng(1).standard_normal((4, 2, 4, 4))
    for _ in range(3):  # the first call traces (side effects undone) and runs: statistics move once per call
        y = model(x)
        h = ref.block.conv.forward(x)
        h = np.maximum(ref.block.bn.forward(h) + x, 0)
        y_ref = ref.fc.forward(h.reshape(4, -1))
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        np.testing.assert_allclose(getattr(model.block.bn, name), getattr(ref.block.bn, name), rtol=1e-12)
    assert int(model.block.bn.num_batches_tracked) == 3


def test_a_layer_used_three_times_adds_its_gradients():
    fnn.manual_seed(0)
    model = SharedThrice()
    grad_check(model, [rng(2).standard_normal((5, 4))])


def test_two_inputs_two_outputs_integer_ids_get_none():
    fnn.manual_seed(0)
    model = TwoTower()
    dense, ids = rng(3).standard_normal((4, 3)), rng(3).integers(0, 10, (4, 5))
    g_dense, g_ids = grad_check(model, [dense, ids])
    assert g_ids is None and g_dense.shape == dense.shape
    model(dense, ids)
    one = model.backward(np.ones((4, 2)))  # the second output's gradient left out: zeros
    model(dense, ids)
    both = model.backward(np.ones((4, 2)), None)
    np.testing.assert_array_equal(one[0], both[0])


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("read", ["h", "out"])
def test_recurrent_classifier_reading_the_last_state(cls, batch_first, read):
    fnn.manual_seed(0)
    model = RecurrentHead(cls, batch_first, bidirectional=read == "out", read=read)
    shape = (2, 5, 3) if batch_first else (5, 2, 3)
    grad_check(model, [rng(4).standard_normal(shape)], rtol=1e-5, atol=1e-7)


def test_initial_state_from_another_module_gets_its_gradient():
    class Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.LSTM(3, 4, batch_first=True)
            self.dec = nn.LSTM(3, 4, batch_first=True)
            self.fc = nn.Linear(4, 2)

        def forward(self, src, tgt):
            _, state = self.enc(src)
            out, _ = self.dec(tgt, state)
            return self.fc(out)

    fnn.manual_seed(0)
    grad_check(Seq(), [rng(5).standard_normal((2, 4, 3)), rng(6).standard_normal((2, 3, 3))], rtol=1e-5,
               atol=1e-7)


def test_parameters_and_buffers_used_directly_in_forward():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)
            self.pos = nn.Parameter(rng(7).standard_normal((1, 3)))
            self.register_buffer("shift", np.full(3, 0.5))

        def forward(self, x):
            return self.fc(x) * self.pos + self.shift - x @ self.fc.weight.T

    fnn.manual_seed(0)
    model = Scaled()
    grad_check(model, [rng(8).standard_normal((4, 3))])
    graph = fnn.nn.traced.graph_of(model)
    assert [n.target for n in graph.nodes if n.op == "attr"] == ["pos", "shift", "fc.weight"]


def test_every_layer_shared_between_two_calls_keeps_each_calls_state():
    """A module called at two places: the executor saves and restores each call's cached state."""
    cases = [
        (nn.Linear(3, 3), (4, 3)), (nn.Conv2d(2, 2, 3, padding=1), (2, 2, 4, 4)),
        (nn.BatchNorm1d(3), (5, 3)), (nn.LayerNorm(3), (4, 3)), (nn.GroupNorm(2, 4), (2, 4, 3)),
        (nn.LocalResponseNorm(2), (2, 3, 4)), (nn.MaxPool2d(2), (2, 1, 4, 4)), (nn.AvgPool1d(2), (2, 2, 4)),
        (nn.AdaptiveAvgPool2d(1), (2, 2, 3, 3)), (nn.PReLU(), (3, 4)), (nn.Softmax(dim=1), (3, 4)),
        (nn.LogSoftmax(dim=1), (3, 4)), (nn.Maxout(3, 2, pieces=3), (4, 3)), (nn.Interaction("dot"), (2, 3, 4)),
        (nn.Tanh(), (3, 4)), (nn.ELU(), (3, 4)), (nn.Flatten(), (2, 2, 3)),
        (nn.Sequential(nn.Linear(3, 3), nn.Sigmoid()), (4, 3)),
    ]
    for layer, shape in cases:
        class Twice(nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, a, b):
                return self.m(a) * 0.5 + self.m(b) * self.m(b)

        fnn.manual_seed(0)
        grad_check(Twice(layer), [rng(9).standard_normal(shape), rng(10).standard_normal(shape)])


def test_recurrent_layer_shared_between_two_sequences():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = nn.GRU(3, 4)

        def forward(self, a, b):
            return self.gru(a)[0] + self.gru(b)[1]

    fnn.manual_seed(0)
    grad_check(Twice(), [rng(11).standard_normal((5, 2, 3)), rng(12).standard_normal((5, 2, 3))], rtol=1e-5,
               atol=1e-7)


def test_no_layer_changes_the_gradient_it_is_given():
    """The executor hands one gradient array to several producers (add's backward): layers must not write
    into it."""
    layers = [(nn.Linear(3, 3), (4, 3)), (nn.Conv2d(2, 2, 3), (2, 2, 4, 4)), (nn.BatchNorm2d(2), (3, 2, 2, 2)),
              (nn.ReLU(), (3, 4)), (nn.Dropout(0.5), (3, 4)), (nn.LSTM(3, 2), (4, 2, 3)),
              (nn.MaxPool2d(2), (2, 2, 4, 4)), (nn.LayerNorm(4), (3, 4)), (nn.Embedding(5, 3), None)]
    for layer, shape in layers:
        x = rng(13).integers(0, 5, (2, 3)) if shape is None else rng(13).standard_normal(shape).astype(np.float32)
        out = layer(x)
        out = out[0] if isinstance(out, tuple) else out
        g = rng(14).standard_normal(out.shape).astype(np.float32)
        kept = g.copy()
        layer.backward(g)
        np.testing.assert_array_equal(g, kept, err_msg=repr(layer))


# -- need_input_grad and frozen parameters -------------------------------------------------------------------
class Spy(nn.Module):
    """A hand-written layer that records the need_input_grad it is asked for."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(np.ones(3))
        self.flags = []

    def forward(self, x):
        self._x = x
        return x * self.w.data

    def backward(self, g, need_input_grad=True):
        self.flags.append(need_input_grad)
        self.w.add_grad((g * self._x).sum(0))
        return g * self.w.data if need_input_grad else None


def test_input_gradients_are_skipped_where_nothing_needs_them():
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.first, self.second = Spy(), Spy()

        def forward(self, x):
            return self.second(self.first(x))

    model = Two()
    x = np.ones((2, 3))
    model(x)
    assert model.backward_parameters(np.ones((2, 3))) is None
    assert model.first.flags == [False] and model.second.flags == [True]
    model(x)
    dx = model.backward(np.ones((2, 3)))
    assert model.first.flags[-1] is True and dx.shape == (2, 3)
    model.first.w.requires_grad = False  # frozen: the first layer has nothing to compute in backward_parameters
    model(x)
    model.backward_parameters(np.ones((2, 3)))
    assert len(model.first.flags) == 2


def test_frozen_parameters_get_no_gradient_and_unfreezing_is_seen():
    fnn.manual_seed(0)
    model = Net()
    x = rng(15).standard_normal((2, 2, 4, 4)).astype(np.float32)
    fnn.utils.freeze(model, "block.*")
    model.zero_grad()
    model(x)
    model.backward_parameters(np.ones((2, 3), np.float32))
    assert np.all(model.block.conv.weight.grad == 0) and np.any(model.fc.weight.grad != 0)
    fnn.utils.unfreeze(model)
    model.zero_grad()
    model(x)
    model.backward_parameters(np.ones((2, 3), np.float32))
    assert np.any(model.block.conv.weight.grad != 0)


# -- tracing: caching, specialisation, modes, errors --------------------------------------------------------
class Counting(nn.Module):
    def __init__(self, use_size):
        super().__init__()
        self.fc = nn.Linear(4, 2)
        self.use_size, self.traces = use_size, 0

    def forward(self, x):
        self.traces += 1
        y = self.fc(x)
        if self.use_size:
            return y * (1.0 / x.shape[0])  # the batch size used as a number: valid for this shape only
        return y.reshape(x.shape[0], -1)   # a size passed straight to an op stays symbolic


def test_traces_are_cached_per_structure_and_specialised_when_sizes_are_numbers():
    generic, specialised = Counting(False), Counting(True)
    for n in (2, 3, 2, 3):
        x = np.ones((n, 4), np.float32)
        np.testing.assert_allclose(generic(x), generic.fc(x).reshape(n, -1))
        np.testing.assert_allclose(specialised(x), specialised.fc(x) / n, rtol=1e-6)
    assert generic.traces == 1 and specialised.traces == 2
    generic(np.ones((2, 4)))  # float64 input: another kind of input
    generic.eval()
    generic(np.ones((2, 4), np.float32))  # another mode
    assert generic.traces == 3


def test_forward_may_branch_on_training_mode():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            y = self.fc(x)
            return y * 2.0 if self.training else y

    model = Branchy()
    x = np.ones((2, 3), np.float32)
    y_train = model(x)
    model.eval()
    np.testing.assert_allclose(model(x) * 2.0, y_train)


@pytest.mark.parametrize("body, what", [
    ("if x.sum() > 0:\n            x = x * 2", "control flow"),
    ("x = x * float(x[0, 0])", "float()"),
    ("x[0] = 1.0", "in-place assignment"),
    ("x += 1.0", "in-place operator"),
    ("x = x * np.cumsum(x)", "numpy.cumsum"),
    ("x = np.asarray(x)", "conversion to a NumPy array"),
    ("for row in x:\n            pass", "iteration"),
])
def test_untraceable_forward_raises_naming_the_module_and_line(body, what):
    namespace = {"nn": nn, "np": np}
    exec(f"class Untraceable(nn.Module):\n    def forward(self, x):\n        {body}\n        return x\n", namespace)
    with pytest.raises(fnn.nn.TraceError, match=rf"Untraceable: .*{what}.*<string>:"):
        namespace["Untraceable"]()(np.ones((2, 3), np.float32))


def test_a_module_that_is_not_registered_cannot_be_traced():
    outside = nn.Linear(3, 3)

    class Leaky(nn.Module):
        def forward(self, x):
            return outside(x)

    with pytest.raises(fnn.nn.TraceError, match="not a sub-module"):
        Leaky()(np.ones((2, 3), np.float32))


class Manual(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, x):
        return self.fc(x)

    def backward(self, g):
        return self.fc.backward(g)


def test_hand_written_modules_keep_working_inside_and_around_graphs():
    class Outer(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner, self.block = Manual(), nn.Residual(nn.Linear(3, 3))

        def forward(self, x):
            return self.block(self.inner(x))

    fnn.manual_seed(0)
    grad_check(Outer(), [rng(16).standard_normal((2, 3))])
    fnn.manual_seed(0)
    grad_check(nn.Sequential(nn.Residual(nn.Linear(3, 3)), Manual(), nn.ReLU()), [rng(17).standard_normal((2, 3))])


def test_direct_forward_call_equals_call_and_supports_backward():
    fnn.manual_seed(0)
    model = Net()
    x = rng(18).standard_normal((2, 2, 4, 4)).astype(np.float32)
    y = model.forward(x)
    np.testing.assert_array_equal(y, model(x))
    assert model.backward(np.ones_like(y)).shape == x.shape


def test_backward_before_forward_and_wrong_gradient_counts():
    model = SharedThrice()
    with pytest.raises(ValueError, match="before forward"):
        model.backward(np.ones((2, 4)))
    model(np.ones((2, 4)))
    with pytest.raises(ValueError, match="2 gradients"):
        model.backward(np.ones((2, 4)), np.ones((2, 4)))


# -- containers -----------------------------------------------------------------------------------------------
def test_containers_and_merge_modules():
    fnn.manual_seed(0)

    class Mixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([nn.Linear(4, 4) for _ in range(2)])
            self.heads = nn.ModuleDict({"a": nn.Linear(4, 2), "b": nn.Linear(4, 2)})
            self.par = nn.Parallel(nn.Linear(4, 3), nn.Linear(4, 1), merge="cat")
            self.res = nn.Residual(nn.Sequential(nn.Linear(4, 4), nn.Tanh()), shortcut=nn.Linear(4, 4))
            self.add, self.mul = nn.Add(), nn.Mul()
            self.cat, self.stack = nn.Concat(dim=1), nn.Stack(dim=1)

        def forward(self, x):
            for layer in self.layers:
                x = F.tanh(layer(x))
            x = self.res(x) + self.par(x)
            a, b = self.heads["a"](x), self.heads["b"](x)
            s = self.stack(a, b).sum(dim=1)
            return self.cat([self.add(a, b, s), self.mul(a, b)])

    model = Mixed()
    names = [n for n, _ in model.named_parameters()]
    assert names[:4] == ["layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"]
    assert "heads.a.weight" in names and "par.0.weight" in names and "res.block.0.weight" in names
    grad_check(model, [rng(19).standard_normal((3, 4))])
    ml = nn.ModuleList([nn.ReLU()])
    ml.append(nn.Tanh()).extend([nn.Sigmoid()])
    ml.insert(0, nn.Identity())
    assert [type(m).__name__ for m in ml] == ["Identity", "ReLU", "Tanh", "Sigmoid"] and len(ml[1:]) == 3
    with pytest.raises(TypeError, match="not a Module"):
        ml.append(3)
    md = nn.ModuleDict()
    md["x"] = nn.ReLU()
    assert "x" in md and list(md.keys()) == ["x"] and md.pop("x") is not None and len(md) == 0
    with pytest.raises(ValueError, match="merge"):
        nn.Parallel(nn.ReLU(), merge="max")


def test_residual_and_parallel_standalone_and_in_a_sequential():
    fnn.manual_seed(0)
    grad_check(nn.Residual(nn.Linear(3, 3)), [rng(20).standard_normal((2, 3))])
    grad_check(nn.Parallel(nn.Linear(3, 2), nn.Linear(3, 2), merge="add"), [rng(21).standard_normal((2, 3))])
    seq = nn.Sequential(nn.Linear(3, 3), nn.Residual(nn.Sequential(nn.Linear(3, 3), nn.ReLU())), nn.Linear(3, 1))
    check_module_gradients(seq, rng(22).standard_normal((4, 3)))


# -- Keras style ----------------------------------------------------------------------------------------------
def test_keras_graph_two_inputs_two_outputs():
    fnn.manual_seed(0)
    image = nn.Input(shape=(2, 4, 4), name="image")
    ids = nn.Input(shape=(3,), dtype="int64", name="ids")
    shared = nn.Linear(4, 4)
    h = nn.ReLU()(nn.Conv2d(2, 2, 3, padding=1)(image)) + image
    e = nn.Embedding(7, 4)(ids)                          # (N, 3, 4)
    pooled = shared(F.tanh(shared(e))).mean(dim=1)       # a module used twice
    flat = nn.Flatten()(h)
    out1 = nn.Linear(32 + 4, 5)(F.cat([flat, pooled], dim=1))
    out2 = (pooled * 2.0).sum(dim=1, keepdim=True)
    model = nn.Graph(inputs=[image, ids], outputs=(out1, out2))
    assert [n for n, _ in model.named_parameters()] == [
        "conv2d.weight", "conv2d.bias", "embedding.weight", "linear.weight", "linear.bias", "linear_1.weight",
        "linear_1.bias"]
    x, i = rng(23).standard_normal((3, 2, 4, 4)), rng(24).integers(0, 7, (3, 3))
    g_x, g_i = grad_check(model, [x, i])
    assert g_i is None
    with pytest.raises(ValueError, match=r"input 'image' must have shape \(N, 2, 4, 4\)"):
        model(np.ones((3, 2, 5, 4)), i)
    with pytest.raises(ValueError, match="expected 2 inputs"):
        model(x)
    text = model.summary()
    assert "Input" in text and "(1, 5)" in text and "(shared)" in text


def test_keras_graph_with_traced_modules_inside_keeps_their_names():
    fnn.manual_seed(0)
    inp = nn.Input(shape=(2, 4, 4))
    out = nn.Linear(32, 2)(nn.Flatten()(Block(2)(Block(2)(inp))))
    model = nn.Graph(inp, out)
    names = [n for n, _ in model.named_parameters()]
    assert names[:4] == ["block.conv.weight", "block.conv.bias", "block.bn.weight", "block.bn.bias"]
    assert "block_1.conv.weight" in names
    grad_check(model, [rng(25).standard_normal((2, 2, 4, 4))])


def test_keras_graph_refuses_batch_dependent_numbers():
    inp = nn.Input(shape=(4,))
    with pytest.raises(fnn.nn.TraceError, match="batch-dependent size"):
        inp * (1.0 / inp.shape[0])
    assert isinstance(inp.shape[1] * 2, int)  # a fixed size is a plain number
    model = nn.Graph(inp, inp.reshape(inp.shape[0], 2, 2))
    assert model(np.ones((5, 4))).shape == (5, 2, 2)


def test_graph_errors():
    with pytest.raises(TypeError, match="made by fastnn.nn.Input"):
        nn.Graph(np.ones(3), np.ones(3))
    a, b = nn.Input(shape=(3,)), nn.Input(shape=(3,))
    with pytest.raises(fnn.nn.TraceError, match="not among"):
        nn.Graph(a, a + b)
    with pytest.raises(ValueError, match="before forward"):
        nn.Graph(a, a * 2.0).backward(np.ones((2, 3)))


# -- threads and copies -----------------------------------------------------------------------------------------
def test_two_models_in_two_threads_match_their_lone_runs():
    def run(seed, out):
        fnn_model = SharedThrice()
        local = np.random.default_rng(seed)
        for p in fnn_model.parameters():
            p.data[...] = local.standard_normal(p.shape)
        x = local.standard_normal((8, 4)).astype(np.float32)
        results = []
        for _ in range(20):
            y = fnn_model(x)
            fnn_model.zero_grad()
            fnn_model.backward(np.ones_like(y))
            results.append((y.copy(), fnn_model.fc.weight.grad.copy()))
        out[seed] = results

    alone, together = {}, {}
    for s in (1, 2):
        run(s, alone)
    threads = [threading.Thread(target=run, args=(s, together)) for s in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in (1, 2):
        for (y1, g1), (y2, g2) in zip(alone[s], together[s]):
            np.testing.assert_array_equal(y1, y2)
            np.testing.assert_array_equal(g1, g2)


def test_gradcheck_utility_works_on_traced_models():
    fnn.manual_seed(0)
    results = fnn.utils.gradcheck(Net(), fnn.nn.CrossEntropyLoss(), rng(26).standard_normal((3, 2, 4, 4)),
                                  np.array([0, 1, 2]), check_input=True)
    assert all(r.passed for r in results)


def test_one_model_from_two_threads():
    """A backward on another thread than its forward is refused; under model.lock() (what the Trainer takes
    around each batch) two threads can train one model."""
    fnn.manual_seed(0)
    model = Net()
    x = rng(27).standard_normal((4, 2, 4, 4)).astype(np.float32)
    model(x)
    errors = []
    t = threading.Thread(target=lambda: errors.append(pytest.raises(RuntimeError, model.backward,
                                                                      np.ones((4, 3), np.float32))))
    t.start()
    t.join()
    assert "another thread" in str(errors[0].value)
    y = rng(28).integers(0, 3, 4)

    def train():
        trainer = fnn.Trainer(model, fnn.nn.CrossEntropyLoss(), fnn.optim.SGD(model.parameters(), lr=0.01))
        trainer.fit(x, y, epochs=20, batch_size=2, verbose=0)

    threads = [threading.Thread(target=train) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.all(np.isfinite(p.data)) for p in model.parameters())
    assert model.lock() is model.lock() and Net().lock() is not model.lock()


def test_merge_modules_take_one_list_and_lists_stay_lists_in_traced_forwards():
    a = rng(0).standard_normal((2, 3))
    b = rng(1).standard_normal((2, 3))
    for merge, expected, grads in ((fnn.nn.Mul(), a * b, (b, a)), (fnn.nn.Add(), a + b, (np.ones_like(a),) * 2)):
        np.testing.assert_array_equal(merge([a, b]), expected)  # one list, as Keras writes it
        got = merge.backward(np.ones_like(a))
        for g, e in zip(got, grads):
            np.testing.assert_array_equal(g, e)
        np.testing.assert_array_equal(merge(a, b), expected)

    class Kinds(fnn.nn.Module):  # a list and a tuple argument are different trace keys
        def forward(self, xs):
            return xs[0] * (2.0 if isinstance(xs, list) else 3.0)

    m = Kinds()
    np.testing.assert_array_equal(m([a]), 2 * a)
    np.testing.assert_array_equal(m((a,)), 3 * a)
    np.testing.assert_array_equal(m([a]), 2 * a)


@pytest.mark.parametrize("training", [False, True])
def test_deepcopy_after_forward_gives_an_independent_model(training):
    """A model that has run (its executor holds plans with C++ objects and the last run) deep-copies into a
    model of its own: same outputs, separate arrays. nn.TransformerEncoder copies its layer this way."""
    import copy

    x = rng(7).standard_normal((3, 4, 8)).astype(np.float32)
    inp = fnn.nn.Input((4, 8))
    graph = fnn.nn.Graph(inp, fnn.nn.Linear(8, 2)(fnn.nn.ReLU()(fnn.nn.Linear(8, 8)(inp))))
    models = [fnn.nn.Sequential(fnn.nn.Linear(8, 6), fnn.nn.ReLU(), fnn.nn.Linear(6, 2)), graph,
              fnn.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)]
    for model in models:
        model.train(training)
        y = model(x)
        twin = copy.deepcopy(model)
        np.testing.assert_array_equal(twin(x), y)
        if training:
            twin.backward(np.ones_like(y))
        for (name, p), (_, q) in zip(model.named_parameters(), twin.named_parameters()):
            assert p.data is not q.data and np.array_equal(p.data, q.data), name
            q.data[...] = 0
        assert not np.array_equal(twin(x), y)
        np.testing.assert_array_equal(model(x), y)
    stack = fnn.nn.TransformerEncoder(models[2], 2)
    assert stack(x).shape == x.shape
