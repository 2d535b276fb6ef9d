"""Sequential.train_step: the one-call training step (kernels/train_step.hpp) equals the step-by-step path bit
for bit (parameters, gradients, optimizer state, loss, output), falls back to it where it cannot run, and the
Trainer uses it."""
import numpy as np
import pytest

import fastnn as fnn
from fastnn.nn import train_step as ts


@pytest.fixture
def fused_runs(monkeypatch):
    """Counts the steps the fused kernel ran (FusedTrainStep.run returning a result)."""
    count = [0]
    original = ts.FusedTrainStep.run

    def run(self, *args):
        result = original(self, *args)
        count[0] += result is not None
        return result

    monkeypatch.setattr(ts.FusedTrainStep, "run", run)
    return count


def _model(dtype, layers=None, seed=0):
    fnn.manual_seed(seed)
    layers = layers or (lambda: [fnn.nn.Linear(6, 16), fnn.nn.ReLU(), fnn.nn.Linear(16, 8), fnn.nn.Tanh(),
                                 fnn.nn.Linear(8, 4)])
    model = fnn.nn.Sequential(*layers())
    return model.double() if dtype == np.float64 else model


def _data(dtype, n=24, features=6, classes=4, seed=1, shape=None):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n,) + (shape or (features,))).astype(dtype)
    labels = rng.integers(0, classes, n).astype(np.int64)
    values = rng.standard_normal((n, classes)).astype(dtype)
    return x, labels, values


def _step_by_step(model, x, y, loss, opt):
    opt.zero_grad()
    out = model(x)
    value = loss(out, y)
    model.backward_parameters(loss.backward())
    opt.step()
    return value, np.array(out, copy=True)


def _assert_same(model_a, opt_a, model_b, opt_b):
    for (name, p), (_, q) in zip(model_a.named_parameters(), model_b.named_parameters()):
        assert p.data.dtype == q.data.dtype
        np.testing.assert_array_equal(p.data, q.data, err_msg=name)
        np.testing.assert_array_equal(p.grad, q.grad, err_msg=name + ".grad")
    sa, sb = opt_a.state_dict()["state"], opt_b.state_dict()["state"]
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].keys() == sb[k].keys()
        for slot in sa[k]:
            np.testing.assert_array_equal(sa[k][slot], sb[k][slot], err_msg=f"state {k} {slot}")


OPTIMIZERS = {
    "sgd": lambda p: fnn.optim.SGD(p, lr=0.05),
    "sgd_momentum": lambda p: fnn.optim.SGD(p, lr=0.05, momentum=0.9),
    "sgd_nesterov_wd": lambda p: fnn.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "sgd_dampening_maximize": lambda p: fnn.optim.SGD(p, lr=0.01, momentum=0.5, dampening=0.3, maximize=True),
    "adam": lambda p: fnn.optim.Adam(p, lr=1e-2),
    "adam_wd_amsgrad": lambda p: fnn.optim.Adam(p, lr=1e-2, weight_decay=1e-2, amsgrad=True),
    "adamw": lambda p: fnn.optim.AdamW(p, lr=1e-2, weight_decay=0.1),
}

LOSSES = {
    "ce": lambda: fnn.nn.CrossEntropyLoss(),
    "ce_sum": lambda: fnn.nn.CrossEntropyLoss(reduction="sum"),
    "ce_weight_smoothing_ignore": lambda: fnn.nn.CrossEntropyLoss(weight=np.array([1.0, 2.0, 0.5, 1.5]),
                                                                  label_smoothing=0.1, ignore_index=2),
    "mse": lambda: fnn.nn.MSELoss(),
    "mse_sum": lambda: fnn.nn.MSELoss(reduction="sum"),
    "mse_half_sum": lambda: fnn.nn.MSELoss(reduction="half_sum"),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("loss_name", sorted(LOSSES))
@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
def test_bit_for_bit(dtype, loss_name, opt_name, fused_runs):
    x, labels, values = _data(dtype, n=48)
    y = values if loss_name.startswith("mse") else labels
    a, b = _model(dtype), _model(dtype)
    opt_a, opt_b = OPTIMIZERS[opt_name](a.parameters()), OPTIMIZERS[opt_name](b.parameters())
    loss_a, loss_b = LOSSES[loss_name](), LOSSES[loss_name]()
    # Batch sizes 18, 12, 18, 10: buffers per size. (At least 8: with m + n + k < 20 Eigen computes a product
    # coefficient by coefficient, and its results then depend on where the output sits in memory, so even the
    # step-by-step path does not repeat itself bit for bit on copies of a model.)
    for start, stop in ((0, 18), (18, 30), (30, 48), (2, 12)):
        xs, ys = x[start:stop], y[start:stop]
        value_a, out_a = a.train_step(xs, ys, loss_a, opt_a, return_output=True)
        value_b, out_b = _step_by_step(b, xs, ys, loss_b, opt_b)
        assert isinstance(value_a, float) and value_a == value_b
        assert out_a.dtype == dtype
        np.testing.assert_array_equal(out_a, out_b)
        _assert_same(a, opt_a, b, opt_b)
    assert fused_runs[0] == 4


ACTIVATION_STACKS = {
    "sigmoid_gelu": lambda: [fnn.nn.Linear(6, 12), fnn.nn.Sigmoid(), fnn.nn.Linear(12, 10), fnn.nn.GELU(),
                             fnn.nn.Linear(10, 4)],
    "two_in_a_row_leaky_elu": lambda: [fnn.nn.Linear(6, 12), fnn.nn.LeakyReLU(0.1), fnn.nn.ELU(),
                                       fnn.nn.Linear(12, 4), fnn.nn.Tanh()],
    "no_bias_identity_relu6": lambda: [fnn.nn.Identity(), fnn.nn.Linear(6, 12, bias=False), fnn.nn.ReLU6(),
                                       fnn.nn.Linear(12, 4)],
    "one_layer": lambda: [fnn.nn.Linear(6, 4)],
    "softsign_softplus_selu_hardsigmoid": lambda: [fnn.nn.Linear(6, 12), fnn.nn.Softsign(), fnn.nn.Linear(12, 12),
                                                   fnn.nn.Softplus(), fnn.nn.Linear(12, 10), fnn.nn.SELU(),
                                                   fnn.nn.Linear(10, 10), fnn.nn.Hardsigmoid(),
                                                   fnn.nn.Linear(10, 4)],
    "wide": lambda: [fnn.nn.Linear(6, 300), fnn.nn.SiLU(), fnn.nn.Linear(300, 4)],  # threaded kernels
    # dW split over input features: each thread updates a block of columns of the weight, row by row
    "columns_of_w": lambda: [fnn.nn.Linear(400, 12), fnn.nn.Tanh(), fnn.nn.Linear(12, 4)],
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("stack", sorted(ACTIVATION_STACKS))
def test_bit_for_bit_layers(dtype, stack, fused_runs):
    x, labels, _ = _data(dtype, n=200, features=400 if stack == "columns_of_w" else 6)
    a, b = _model(dtype, ACTIVATION_STACKS[stack]), _model(dtype, ACTIVATION_STACKS[stack])
    opt_a = fnn.optim.SGD(a.parameters(), lr=0.1, momentum=0.9)
    opt_b = fnn.optim.SGD(b.parameters(), lr=0.1, momentum=0.9)
    loss = fnn.nn.CrossEntropyLoss()
    for _ in range(3):
        assert a.train_step(x, labels, loss, opt_a) == _step_by_step(b, x, labels, loss, opt_b)[0]
        _assert_same(a, opt_a, b, opt_b)
    assert fused_runs[0] == 3


def test_leading_flatten(fused_runs):
    layers = lambda: [fnn.nn.Flatten(), fnn.nn.Linear(6, 8), fnn.nn.ReLU(), fnn.nn.Linear(8, 4)]  # noqa: E731
    x, labels, _ = _data(np.float32, shape=(2, 3))
    a, b = _model(np.float32, layers), _model(np.float32, layers)
    opt_a, opt_b = fnn.optim.Adam(a.parameters()), fnn.optim.Adam(b.parameters())
    loss = fnn.nn.CrossEntropyLoss()
    for _ in range(3):
        assert a.train_step(x, labels, loss, opt_a) == _step_by_step(b, x, labels, loss, opt_b)[0]
    _assert_same(a, opt_a, b, opt_b)
    assert fused_runs[0] == 3


class _Scale(fnn.nn.Module):
    """A layer of the user's own: the fused step cannot run it."""

    def forward(self, x):
        return x * 2

    def backward(self, grad_output, need_input_grad=True):
        return grad_output * 2


class _MySGD(fnn.optim.SGD):
    pass


FALLBACKS = {
    "custom_layer": (lambda: [fnn.nn.Linear(6, 8), _Scale(), fnn.nn.Linear(8, 4)], None, None),
    "dropout": (lambda: [fnn.nn.Linear(6, 8), fnn.nn.Dropout(0.5), fnn.nn.Linear(8, 4)], None, None),
    "activation_first": (lambda: [fnn.nn.Tanh(), fnn.nn.Linear(6, 4)], None, None),
    "rprop": (None, lambda p: fnn.optim.Rprop(p), None),
    "sgd_subclass": (None, lambda p: _MySGD(p, lr=0.1), None),
    "regularized": (None, lambda p: fnn.regularizers.Regularized(fnn.optim.SGD(p, lr=0.1),
                                                                 (p, fnn.regularizers.L2(lam=0.1))), None),
    "nll_loss": (None, None, lambda: fnn.nn.NLLLoss()),
    "l1_loss": (None, None, lambda: fnn.nn.L1Loss()),
}


@pytest.mark.parametrize("case", sorted(FALLBACKS))
def test_fallbacks(case, fused_runs):
    layers, make_opt, make_loss = FALLBACKS[case]
    make_opt = make_opt or (lambda p: fnn.optim.SGD(p, lr=0.1, momentum=0.9))
    make_loss = make_loss or (lambda: fnn.nn.CrossEntropyLoss())
    x, labels, values = _data(np.float32)
    y = values if case == "l1_loss" else labels
    a, b = _model(np.float32, layers), _model(np.float32, layers)
    if case == "regularized":
        opt_a, opt_b = make_opt(list(a.parameters())), make_opt(list(b.parameters()))
    else:
        opt_a, opt_b = make_opt(a.parameters()), make_opt(b.parameters())
    loss_a, loss_b = make_loss(), make_loss()
    for _ in range(3):
        fnn.manual_seed(5)
        va = a.train_step(x, y, loss_a, opt_a)
        fnn.manual_seed(5)
        vb = _step_by_step(b, x, y, loss_b, opt_b)[0]
        assert va == vb
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(p.data, q.data)
    assert fused_runs[0] == 0


def test_frozen_parameter_falls_back(fused_runs):
    model = _model(np.float32)
    model[0].weight.requires_grad = False
    opt = fnn.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    x, labels, _ = _data(np.float32)
    before = model[0].weight.data.copy()
    model.train_step(x, labels, fnn.nn.CrossEntropyLoss(), opt)
    np.testing.assert_array_equal(model[0].weight.data, before)
    assert fused_runs[0] == 0
    model[0].weight.requires_grad = True  # the plan is rebuilt: now it runs whole
    opt = fnn.optim.SGD(model.parameters(), lr=0.1)
    model.train_step(x, labels, fnn.nn.CrossEntropyLoss(), opt)
    assert fused_runs[0] == 1


def test_optimizer_of_other_parameters_falls_back(fused_runs):
    model = _model(np.float32)
    opt = fnn.optim.SGD(list(model.parameters())[:2], lr=0.1)  # the first layer only
    x, labels, _ = _data(np.float32)
    before = model[4].weight.data.copy()
    model.train_step(x, labels, fnn.nn.CrossEntropyLoss(), opt)
    np.testing.assert_array_equal(model[4].weight.data, before)
    assert fused_runs[0] == 0


def test_bad_batches_raise_like_the_step_by_step_path(fused_runs):
    model = _model(np.float32)
    opt = fnn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, labels, _ = _data(np.float32)
    model.train_step(x, labels, fnn.nn.CrossEntropyLoss(), opt)
    saved = [p.data.copy() for p in model.parameters()]
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="Linear.*NaN"):
        model.train_step(bad, labels, fnn.nn.CrossEntropyLoss(), opt)
    wrong = labels.copy()
    wrong[5] = 9
    with pytest.raises(ValueError, match="CrossEntropyLoss.*label 9"):
        model.train_step(x, wrong, fnn.nn.CrossEntropyLoss(), opt)
    with pytest.raises(ValueError, match="Linear"):
        model.train_step(x[:, :5], labels, fnn.nn.CrossEntropyLoss(), opt)
    for p, s in zip(model.parameters(), saved):
        np.testing.assert_array_equal(p.data, s)
    assert fused_runs[0] == 1
    # fallback=False: nothing runs, nothing changes; gradients zeroed lazily stay zero
    opt.zero_grad()
    assert model.train_step(bad, labels, fnn.nn.CrossEntropyLoss(), opt, fallback=False) is None
    assert model.train_step(x, labels, fnn.nn.NLLLoss(), opt, fallback=False) is None
    for p, s in zip(model.parameters(), saved):
        np.testing.assert_array_equal(p.data, s)
        assert not p.grad.any()


def test_replaced_arrays_and_new_optimizer_replan(fused_runs):
    a, b = _model(np.float32), _model(np.float32)
    x, labels, _ = _data(np.float32)
    loss = fnn.nn.CrossEntropyLoss()
    opt_a, opt_b = fnn.optim.SGD(a.parameters(), lr=0.1), fnn.optim.SGD(b.parameters(), lr=0.1)
    a.train_step(x, labels, loss, opt_a)
    _step_by_step(b, x, labels, loss, opt_b)
    a.double(), b.double()  # new arrays everywhere
    opt_a, opt_b = fnn.optim.Adam(a.parameters()), fnn.optim.Adam(b.parameters())
    xd = x.astype(np.float64)
    for lr in (0.01, 0.02):  # an lr change reaches the kernel
        opt_a.lr = opt_b.lr = lr
        assert a.train_step(xd, labels, loss, opt_a) == _step_by_step(b, xd, labels, loss, opt_b)[0]
    _assert_same(a, opt_a, b, opt_b)
    assert fused_runs[0] == 3


class _NoOpBackwardEnd(fnn.callbacks.Callback):
    def on_backward_end(self, batch, logs=None):
        pass


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_trainer_uses_it(dtype, fused_runs):
    x, labels, _ = _data(dtype, n=112)
    histories, models = [], []
    for callbacks in ([], [_NoOpBackwardEnd()]):  # a callback between backward and step: step by step
        model = _model(dtype)
        trainer = fnn.Trainer(model, fnn.nn.CrossEntropyLoss(), fnn.optim.SGD(model.parameters(), lr=0.1,
                                                                                momentum=0.9),
                              callbacks=callbacks)
        fnn.manual_seed(3)
        histories.append(trainer.fit(x, labels, epochs=2, batch_size=32, verbose=0))
        models.append(model)
        if not callbacks:
            assert fused_runs[0] == 8  # 4 batches (32, 32, 32, 16) per epoch
    assert fused_runs[0] == 8
    assert histories[0] == histories[1]
    for p, q in zip(models[0].parameters(), models[1].parameters()):
        np.testing.assert_array_equal(p.data, q.data)


def test_copy_of_a_trained_model(fused_runs):
    import copy

    a = _model(np.float32)
    opt = fnn.optim.SGD(a.parameters(), lr=0.1, momentum=0.9)
    x, labels, _ = _data(np.float32)
    loss = fnn.nn.CrossEntropyLoss()
    a.train_step(x, labels, loss, opt)
    b = copy.deepcopy(a)
    before = a[0].weight.data.copy()
    b.train_step(x, labels, loss, fnn.optim.SGD(b.parameters(), lr=0.1))
    np.testing.assert_array_equal(a[0].weight.data, before)  # the copy trained its own arrays
    assert not np.array_equal(b[0].weight.data, before)
    assert fused_runs[0] == 2


class _KeepsPredictions(fnn.metrics.Metric):
    name = "kept"

    def reset(self):
        self.preds = []

    def update(self, pred, target):
        self.preds.append(pred)

    def result(self):
        return float(len(self.preds))


def test_trainer_metrics_get_their_own_outputs(fused_runs):
    x, labels, _ = _data(np.float32, n=64)
    model = _model(np.float32)
    kept = _KeepsPredictions()
    trainer = fnn.Trainer(model, fnn.nn.CrossEntropyLoss(), fnn.optim.SGD(model.parameters(), lr=0.1),
                          metrics=[kept])
    trainer.fit(x, labels, epochs=1, batch_size=16, shuffle=False, verbose=0)
    assert fused_runs[0] == 4
    preds = trainer.metrics[0].preds
    assert len(preds) == 4 and len({id(p) for p in preds}) == 4
    assert not any(np.array_equal(preds[0], p) for p in preds[1:])


@pytest.mark.parametrize("use_dot", [True, False])
@pytest.mark.parametrize("stack", ["default", "wide"])
def test_autocast_runs_bf16_gemms_in_one_call(use_dot, stack, fused_runs, monkeypatch):
    """Under fnn.autocast the one-call step runs each Linear's GEMMs in bf16 as the layers do (same kernel,
    same operands: the same bits as the step-by-step path, with AVX512_BF16 dot products or the fallback),
    and the float32 step gives other numbers."""
    monkeypatch.setattr(fnn.amp, "_use_dot", use_dot)
    layers = ACTIVATION_STACKS["wide"] if stack == "wide" else None
    x, labels, _ = _data(np.float32, n=200 if stack == "wide" else 32)
    a, b, c = (_model(np.float32, layers) for _ in range(3))
    opts = [fnn.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in (a, b, c)]
    with fnn.autocast("bfloat16"):
        for _ in range(3):
            va, out_a = a.train_step(x, labels, fnn.nn.CrossEntropyLoss(), opts[0], return_output=True)
            vb, out_b = _step_by_step(b, x, labels, fnn.nn.CrossEntropyLoss(), opts[1])
            assert va == vb
            np.testing.assert_array_equal(out_a, out_b)
            _assert_same(a, opts[0], b, opts[1])
    assert fused_runs[0] == 3
    for _ in range(3):
        c.train_step(x, labels, fnn.nn.CrossEntropyLoss(), opts[2])
    assert fused_runs[0] == 6
    assert not np.array_equal(a[0].weight.data, c[0].weight.data)


def test_autocast_leaves_float64_models_in_float64(fused_runs):
    x, labels, _ = _data(np.float64, n=32)
    a, b = _model(np.float64), _model(np.float64)
    opts = [fnn.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in (a, b)]
    with fnn.autocast("bfloat16"):
        a.train_step(x, labels, fnn.nn.CrossEntropyLoss(), opts[0])
    b.train_step(x, labels, fnn.nn.CrossEntropyLoss(), opts[1])
    assert fused_runs[0] == 2
    _assert_same(a, opts[0], b, opts[1])


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("make", [
    lambda m: fnn.optim.SGD([{"params": m[0].parameters(), "lr": 0.2, "momentum": 0.5},
                             {"params": m[2].parameters(), "nesterov": True},
                             {"params": m[4].parameters(), "weight_decay": 0.01}], lr=0.05, momentum=0.9),
    lambda m: fnn.optim.Adam([{"params": [m[4].bias, m[0].weight]}, {"params": [m[2].weight, m[4].weight],
                              "amsgrad": True}, {"params": [m[0].bias, m[2].bias], "lr": 0.1}], lr=1e-2),
], ids=["sgd_groups", "adam_groups_out_of_order"])
def test_parameter_groups_are_updated_in_the_backward(make, threads, fused_runs):
    # Each weight is updated by the threads that computed its gradient, each bias after its gradient: whatever
    # group (and order within it) holds them, the result is one optimizer step after the backward.
    layers = lambda: [fnn.nn.Linear(200, 160), fnn.nn.ReLU(), fnn.nn.Linear(160, 24), fnn.nn.Tanh(),
                      fnn.nn.Linear(24, 5)]
    x, labels, _ = _data(np.float32, n=96, features=200, classes=5)
    a, b = _model(np.float32, layers), _model(np.float32, layers)
    opt_a, opt_b = make(a), make(b)
    loss = fnn.nn.CrossEntropyLoss()
    before = fnn.get_num_threads()
    fnn.set_num_threads(threads)
    try:
        for _ in range(3):
            assert a.train_step(x, labels, loss, opt_a) == _step_by_step(b, x, labels, loss, opt_b)[0]
            _assert_same(a, opt_a, b, opt_b)
    finally:
        fnn.set_num_threads(before)
    assert fused_runs[0] == 3
