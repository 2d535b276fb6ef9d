"""The Module API: registration, naming, modes, dtype, gradients, state dicts, summary."""
import numpy as np
import pytest

import fastnn as fnn
from harness import rng


class Head(fnn.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = fnn.nn.Linear(6, 4)
        self.out = fnn.nn.Linear(4, 2)

    def forward(self, x):
        return self.out(self.fc(x))

    def backward(self, g):
        return self.fc.backward(self.out.backward(g))


def test_parameter_names_follow_pytorch():
    model = fnn.nn.Sequential(fnn.nn.Linear(3, 4), fnn.nn.Dropout(), fnn.nn.Linear(4, 2))
    assert [n for n, _ in model.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert [n for n, _ in Head().named_parameters()] == ["fc.weight", "fc.bias", "out.weight", "out.bias"]
    assert Head().num_parameters() == 6 * 4 + 4 + 4 * 2 + 2


def test_custom_module_backward_matches_manual_chain():
    fnn.manual_seed(0)
    head = Head()
    x = rng().standard_normal((5, 6)).astype(np.float32)
    y = head(x)
    dx = head.backward(np.ones_like(y))
    expected = np.ones_like(y) @ head.out.weight.data @ head.fc.weight.data
    np.testing.assert_allclose(dx, expected, rtol=1e-5, atol=1e-6)


def test_zero_grad_is_lazy_but_always_reads_true_values():
    fnn.manual_seed(0)
    lin = fnn.nn.Linear(3, 2)
    x = np.ones((4, 3), np.float32)
    g = np.ones((4, 2), np.float32)
    lin(x)
    lin.backward(g)
    lin.backward(g)  # accumulates, as in PyTorch
    np.testing.assert_allclose(lin.weight.grad, np.full((2, 3), 8.0))
    lin.zero_grad()
    np.testing.assert_array_equal(lin.weight.grad, 0)  # reading after zero_grad shows zeros
    lin.zero_grad()
    lin.backward(g)  # overwrites stale contents
    np.testing.assert_allclose(lin.weight.grad, np.full((2, 3), 4.0))
    np.testing.assert_allclose(lin.bias.grad, np.full(2, 4.0))


def test_backward_parameters_gives_the_same_parameter_gradients():
    fnn.manual_seed(0)
    model = fnn.nn.Sequential(fnn.nn.Linear(5, 4), fnn.nn.Linear(4, 3))
    x = rng().standard_normal((7, 5)).astype(np.float32)
    g = rng(1).standard_normal((7, 3)).astype(np.float32)
    model(x)
    model.backward(g)
    full = [p.grad.copy() for p in model.parameters()]
    model.zero_grad()
    model(x)
    assert model.backward_parameters(g) is None
    for a, p in zip(full, model.parameters()):
        np.testing.assert_array_equal(a, p.grad)


def test_train_eval_recurse_and_return_self():
    model = fnn.nn.Sequential(fnn.nn.Linear(2, 2), fnn.nn.Sequential(fnn.nn.Dropout(0.5)))
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())


def test_double_and_float_switch_computation_dtype():
    fnn.manual_seed(0)
    model = fnn.nn.Sequential(fnn.nn.Linear(3, 2))
    x = rng().standard_normal((2, 3))
    assert model(x).dtype == np.float32
    assert model.double() is model
    assert model(x.astype(np.float32)).dtype == np.float64
    assert model[0].weight.grad.dtype == np.float64
    assert model.float()(x).dtype == np.float32


def test_state_dict_is_a_copy_and_load_is_in_place():
    fnn.manual_seed(0)
    a, b = fnn.nn.Linear(4, 3), fnn.nn.Linear(4, 3)
    sd = a.state_dict()
    assert list(sd) == ["weight", "bias"]
    a.weight.data += 1  # training after state_dict() must not change the saved copy
    assert not np.array_equal(sd["weight"], a.weight.data)
    weight_array = b.weight.data
    b.load_state_dict({k: v.astype(np.float64) for k, v in sd.items()})
    assert b.weight.data is weight_array and b.weight.data.dtype == np.float32  # cast, same storage
    np.testing.assert_array_equal(b.weight.data, sd["weight"])


def test_load_state_dict_errors_leave_model_unchanged():
    fnn.manual_seed(0)
    lin = fnn.nn.Linear(4, 3)
    before = lin.weight.data.copy()
    with pytest.raises(KeyError, match="missing keys \\['bias'\\]"):
        lin.load_state_dict({"weight": np.zeros((3, 4))})
    with pytest.raises(KeyError, match="unexpected keys \\['extra'\\]"):
        lin.load_state_dict({"weight": np.zeros((3, 4)), "bias": np.zeros(3), "extra": np.zeros(1)})
    with pytest.raises(ValueError, match="'bias' has shape \\(4,\\), the model expects \\(3,\\)"):
        lin.load_state_dict({"weight": np.zeros((3, 4)), "bias": np.zeros(4)})
    np.testing.assert_array_equal(lin.weight.data, before)
    missing, unexpected = lin.load_state_dict({"weight": np.zeros((3, 4)), "x": np.zeros(1)}, strict=False)
    assert missing == ["bias"] and unexpected == ["x"]
    assert not lin.weight.data.any()


def test_summary_lists_layers_shapes_and_counts():
    model = fnn.nn.Sequential(fnn.nn.Flatten(), fnn.nn.Linear(64, 32), fnn.nn.Linear(32, 10))
    model[2].weight.requires_grad = False
    text = model.summary(input_shape=(8, 8))
    assert "(1, 64)" in text and "(1, 32)" in text and "(1, 10)" in text
    assert "2,080" in text and "Total params: 2,410" in text
    assert "Trainable params: 2,090" in text and "Non-trainable params: 320" in text
    assert model.training  # summary runs in eval mode and restores the mode


def test_module_errors():
    class NoInit(fnn.nn.Module):
        def __init__(self):
            self.fc = fnn.nn.Linear(2, 2)

    with pytest.raises(AttributeError, match="super\\(\\).__init__"):
        NoInit()
    with pytest.raises(NotImplementedError, match="backward"):
        fnn.nn.Module().backward(np.zeros(1))
    with pytest.raises(TypeError, match="not a Module"):
        fnn.nn.Sequential(fnn.nn.Linear(2, 2), "relu")


def test_casting_keeps_state_dict_order():
    class WithBuffer(fnn.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = fnn.nn.Parameter(np.zeros(3, np.float32))
            self.register_buffer("running", np.zeros(3, np.float32))
            self.register_buffer("count", np.zeros((), np.int64))

    m = WithBuffer()
    keys = list(m.state_dict())
    m.double()
    assert list(m.state_dict()) == keys == ["weight", "running", "count"]
    assert m.running.dtype == np.float64 and m.count.dtype == np.int64


def _shared_chain():
    fnn.manual_seed(0)
    lin = fnn.nn.Linear(5, 5).double()
    return lin, fnn.nn.Sequential(lin, fnn.nn.Tanh(), lin, fnn.nn.Linear(5, 3).double())


def test_a_layer_used_twice_is_listed_once_as_in_pytorch():
    lin, model = _shared_chain()
    assert [n for n, _ in model.named_parameters()] == ["0.weight", "0.bias", "3.weight", "3.bias"]
    assert [p for p in model.parameters()][:2] == [lin.weight, lin.bias]
    assert model.num_parameters() == 5 * 5 + 5 + 5 * 3 + 3
    assert [n for n, _ in model.named_modules()] == ["", "0", "1", "3"]
    assert [n for n, _ in model.named_modules(remove_duplicate=False)] == ["", "0", "1", "2", "3"]
    assert [n for n, _ in model.named_parameters(remove_duplicate=False)][:4] == \
        ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert [n for n, _ in model.named_parameters(recurse=False)] == []
    # state_dict keeps every path (as PyTorch's does), so a state dict of either library loads with strict=True
    sd = model.state_dict()
    assert list(sd) == ["0.weight", "0.bias", "2.weight", "2.bias", "3.weight", "3.bias"]
    sd["0.weight"] = sd["2.weight"] = np.full((5, 5), 0.5)
    model.load_state_dict(sd)
    assert np.all(lin.weight.data == 0.5)
    # buffers: two BatchNorms' equal integer counters are not taken for one buffer
    bns = fnn.nn.Sequential(fnn.nn.BatchNorm1d(2), fnn.nn.BatchNorm1d(2))
    assert len(list(bns.named_buffers())) == len(list(bns.named_buffers(remove_duplicate=False)))


def test_an_optimizer_steps_a_shared_layer_once_with_its_summed_gradient():
    lin, model = _shared_chain()
    x = rng(1).standard_normal((4, 5))
    y = np.array([0, 2, 1, 2])
    loss = fnn.nn.CrossEntropyLoss()

    def value():
        return float(loss(model(x), y))

    numeric = np.zeros((5, 5))
    w = lin.weight.data
    for i in range(5):
        for j in range(5):
            keep = w[i, j]
            w[i, j] = keep + 1e-6
            up = value()
            w[i, j] = keep - 1e-6
            numeric[i, j] = (up - value()) / 2e-6
            w[i, j] = keep
    before = w.copy()
    opt = fnn.optim.SGD(model.parameters(), lr=0.1)  # raised "the same parameter twice" before
    model.train_step(x, y, loss, opt)                # the one-call step leaves a shared layer to the layer path
    np.testing.assert_allclose(lin.weight.data, before - 0.1 * numeric, rtol=0, atol=1e-8)
