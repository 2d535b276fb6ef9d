"""fastnn.nn.executor.gradient_ready: during a model's backward, each trainable parameter is reported once, as
soon as its gradient is final (its value then equals the value after backward), in backward order; a module
used at several places only after its last use; nested containers as one node of the listened model; nothing
for models nobody listens to. Sequential, Graph (two inputs, a shared layer) and a traced Module."""
import numpy as np
import pytest

import fastnn as fnn
from fastnn.nn.executor import gradient_ready

nn = fnn.nn
F = fnn.nn.functional


def listen(model, inputs, backward=None):
    """Runs forward/backward of model under a listener; returns (reports, events): reports are
    [(name, grad copy at report time)] in order, events the names reported and the layers' backward calls,
    in order (layers given by `backward`: {name: module} whose backward is wrapped)."""
    names = {id(p): n for n, p in model.named_parameters()}
    reports, events = [], []
    for name, m in (backward or {}).items():
        def wrapped(*args, _m=m, _name=name, _orig=m.backward, **kw):
            events.append(("backward", _name))
            return _orig(*args, **kw)
        m.backward = wrapped

    def heard(params):
        for p in params:
            reports.append((names[id(p)], p.grad.copy()))
            events.append(("ready", names[id(p)]))

    model.zero_grad()
    out = model(*inputs)
    outs = out if isinstance(out, tuple) else (out,)
    grads = [np.random.default_rng(3).standard_normal(o.shape) for o in outs]
    with gradient_ready(model, heard):
        model.backward(*grads)
    for m in (backward or {}).values():
        del m.backward
    return reports, events


def check_final(model, reports):
    """Every trainable parameter reported once, with the gradient it has after backward."""
    final = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert sorted(n for n, _ in reports) == sorted(final)
    for n, g in reports:
        np.testing.assert_array_equal(g, final[n], err_msg=n)


def test_sequential_reports_each_layer_before_the_earlier_layers_run_backward():
    fnn.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    x = np.random.default_rng(0).standard_normal((5, 3))
    reports, events = listen(model, [x], backward={"0": model[0], "2": model[2], "4": model[4]})
    check_final(model, reports)
    assert [n for n, _ in reports] == ["4.bias", "4.weight", "2.bias", "2.weight", "0.bias", "0.weight"]
    assert events.index(("ready", "4.weight")) < events.index(("backward", "2"))
    assert events.index(("ready", "2.weight")) < events.index(("backward", "0"))
    assert events.index(("backward", "0")) < events.index(("ready", "0.weight"))


def test_graph_shared_layer_is_ready_only_after_its_last_use():
    fnn.manual_seed(1)
    a = nn.Input(shape=(6,), dtype="float64")
    b = nn.Input(shape=(4,), dtype="float64")
    first, shared, side, head = nn.Linear(6, 5), nn.Linear(5, 5), nn.Linear(4, 5), nn.Linear(5, 3)
    h = shared(F.tanh(shared(F.tanh(first(a))))) + side(b)
    model = nn.Graph(inputs=[a, b], outputs=head(h)).double()
    names = {id(m): n for n, m in model.named_modules()}
    calls = []
    real = shared.backward

    def counted(*args, **kw):
        calls.append(len(calls))
        return real(*args, **kw)

    rng = np.random.default_rng(1)
    x = [rng.standard_normal((4, 6)), rng.standard_normal((4, 4))]
    reports, events = listen(model, x, backward={names[id(first)]: first})
    check_final(model, reports)
    order = [n for n, _ in reports]
    s, f, hd = names[id(shared)], names[id(first)], names[id(head)]
    assert order.index(f"{hd}.weight") < order.index(f"{s}.weight") < order.index(f"{f}.weight")
    # the shared layer's gradient is whole (both calls' parts) when reported: check_final compares it; and it
    # is reported before the first layer's backward runs
    assert events.index(("ready", f"{s}.weight")) < events.index(("backward", f))
    shared.backward = counted  # both calls run before the report
    heard = []
    model.zero_grad()
    out = model(*x)
    with gradient_ready(model, lambda ps: heard.append((len(calls), [id(p) for p in ps]))):
        model.backward(np.ones_like(out))
    del shared.backward
    assert [n for n, ids in heard if id(shared.weight) in ids] == [2]


def test_nested_sequential_is_one_node_and_other_models_report_nothing():
    fnn.manual_seed(2)
    block = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 4))
    x_in = nn.Input(shape=(3,), dtype="float64")
    model = nn.Graph(inputs=x_in, outputs=nn.Linear(4, 2)(block(x_in))).double()
    x = np.random.default_rng(2).standard_normal((5, 3))
    reports, _ = listen(model, [x])
    check_final(model, reports)
    heard = []
    out = block(x)
    with gradient_ready(model, heard.append):  # block is not the listened model: no reports
        block.backward(np.ones_like(out))
    assert heard == []


def test_traced_module_and_frozen_parameters():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 2)
            self.scale = nn.Parameter(np.ones(2))

        def forward(self, x):
            return self.b(F.relu(self.a(x))) * self.scale

    fnn.manual_seed(3)
    model = Net().double()
    model.a.bias.requires_grad = False
    x = np.random.default_rng(3).standard_normal((5, 3))
    reports, _ = listen(model, [x])
    check_final(model, reports)
    order = [n for n, _ in reports]
    assert "a.bias" not in order and order.index("scale") < order.index("b.weight") < order.index("a.weight")


def test_listener_put_back_after_an_error():
    model = nn.Sequential(nn.Linear(3, 2))
    with pytest.raises(ZeroDivisionError):
        with gradient_ready(model, lambda ps: 1 / 0):
            out = model(np.ones((2, 3), np.float32))
            model.backward(np.ones_like(out))
    out = model(np.ones((2, 3), np.float32))
    model.backward(np.ones_like(out))  # no listener left behind (it would raise again)
