"""fastnn.optim against plain NumPy oracles of torch.optim's documented algorithms.

Each oracle below updates one float64 parameter from its gradient and a state dict, written from PyTorch's
algorithm boxes. Runs use several parameters of different shapes in one fused step, gradients whose scale
changes from step to step (so AMSGrad's max and Rprop's sign flips matter) and some exact zeros.
"""
import numpy as np
import pytest

import fastnn as fnn
from fastnn import optim
from fastnn.nn import Linear, Parameter

SHAPES = [(3, 4), (5,), (2, 3, 2)]
GRAD_SCALES = [1.0, 0.05, 3.0, 0.01, 0.5, 2.0]
TOL = {np.float64: dict(rtol=1e-12, atol=1e-12), np.float32: dict(rtol=1e-5, atol=2e-6)}


# -- oracles: torch.optim's algorithms in NumPy, float64 ------------------------------------------------
def sgd_oracle(p, g, st, lr, momentum, dampening, weight_decay, nesterov, maximize):
    g = -g if maximize else g
    if weight_decay:
        g = g + weight_decay * p
    if momentum:
        st["buf"] = g.copy() if "buf" not in st else momentum * st["buf"] + (1 - dampening) * g
        g = g + momentum * st["buf"] if nesterov else st["buf"]
    return p - lr * g


def adam_oracle(p, g, st, lr, betas, eps, weight_decay, amsgrad, maximize, decoupled=False):
    beta1, beta2 = betas
    t = st["t"] = st.get("t", 0) + 1
    g = -g if maximize else g
    if weight_decay:
        if decoupled:
            p = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
    m = st["m"] = beta1 * st.get("m", 0.0) + (1 - beta1) * g
    v = st["v"] = beta2 * st.get("v", 0.0) + (1 - beta2) * g * g
    if amsgrad:
        v = st["vmax"] = np.maximum(st.get("vmax", 0.0), v)
    return p - lr / (1 - beta1**t) * m / (np.sqrt(v) / np.sqrt(1 - beta2**t) + eps)


def adamw_oracle(p, g, st, **options):
    return adam_oracle(p, g, st, decoupled=True, **options)


def rmsprop_oracle(p, g, st, lr, alpha, eps, weight_decay, momentum, centered, maximize):
    g = -g if maximize else g
    if weight_decay:
        g = g + weight_decay * p
    v = st["v"] = alpha * st.get("v", 0.0) + (1 - alpha) * g * g
    if centered:
        mean = st["mean"] = alpha * st.get("mean", 0.0) + (1 - alpha) * g
        v = v - mean * mean
    denom = np.sqrt(v) + eps
    if momentum > 0:
        st["buf"] = momentum * st.get("buf", 0.0) + g / denom
        return p - lr * st["buf"]
    return p - lr * g / denom


def adagrad_oracle(p, g, st, lr, lr_decay, weight_decay, initial_accumulator_value, eps, maximize):
    t = st["t"] = st.get("t", 0) + 1
    g = -g if maximize else g
    if weight_decay:
        g = g + weight_decay * p
    s = st["sum"] = st.get("sum", initial_accumulator_value) + g * g
    return p - lr / (1 + (t - 1) * lr_decay) * g / (np.sqrt(s) + eps)


def rprop_oracle(p, g, st, lr, etas, step_sizes, maximize):
    g = -g if maximize else g
    prev = st.get("prev", np.zeros_like(p))
    size = st.get("size", np.full_like(p, lr))  # lr sets the first step size only
    prod = g * prev
    st["size"] = np.clip(size * np.where(prod > 0, etas[1], np.where(prod < 0, etas[0], 1.0)), *step_sizes)
    st["prev"] = g = np.where(prod < 0, 0.0, g)
    return p - np.sign(g) * st["size"]


ORACLES = dict(SGD=sgd_oracle, Adam=adam_oracle, AdamW=adamw_oracle, RMSprop=rmsprop_oracle,
               Adagrad=adagrad_oracle, Rprop=rprop_oracle)

# PyTorch's defaults (SGD's lr is required in PyTorch; fastnn gives it 0.01).
DEFAULTS = dict(
    SGD=dict(lr=0.01, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False),
    Adam=dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False),
    AdamW=dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, maximize=False),
    RMSprop=dict(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False, maximize=False),
    Adagrad=dict(lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10,
                 maximize=False),
    Rprop=dict(lr=1e-2, etas=(0.5, 1.2), step_sizes=(1e-6, 50), maximize=False),
)

CONFIGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.3)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("SGD", dict(lr=0.1, weight_decay=0.1)),
    ("SGD", dict(lr=0.1, maximize=True)),
    ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.05, maximize=True)),
    ("Adam", dict()),
    ("Adam", dict(lr=0.01, weight_decay=0.1)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("Adam", dict(lr=0.01, maximize=True)),
    ("Adam", dict(lr=0.01, betas=(0.3, 0.6), eps=1e-2)),  # β1 < 0.5: PyTorch's other lerp formula
    ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.2, maximize=True)),
    ("AdamW", dict()),
    ("AdamW", dict(lr=0.01, weight_decay=0.3)),
    ("AdamW", dict(lr=0.01, weight_decay=0.3, amsgrad=True, maximize=True)),
    ("RMSprop", dict()),
    ("RMSprop", dict(momentum=0.9)),
    ("RMSprop", dict(centered=True)),
    ("RMSprop", dict(alpha=0.3, eps=1e-3, centered=True)),  # 1 − α ≥ 0.5: the other lerp formula
    ("RMSprop", dict(lr=0.02, centered=True, momentum=0.5, weight_decay=0.1, maximize=True)),
    ("Adagrad", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.3)),
    ("Adagrad", dict(lr=0.1, weight_decay=0.2)),
    ("Adagrad", dict(lr=0.1, initial_accumulator_value=0.5, eps=1e-3)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.1, weight_decay=0.1, maximize=True)),
    ("Rprop", dict()),
    ("Rprop", dict(lr=0.1, etas=(0.3, 1.5))),
    ("Rprop", dict(lr=0.01, step_sizes=(5e-3, 0.015))),  # both clamps active
    ("Rprop", dict(lr=0.05, maximize=True)),
]


def random_grad(rng, shape, t, dtype):
    g = rng.standard_normal(shape) * GRAD_SCALES[t % len(GRAD_SCALES)]
    g[rng.random(shape) < 0.15] = 0.0
    return g.astype(dtype)


def make_params(dtype, shapes=SHAPES, seed=0):
    rng = np.random.default_rng(seed)
    return [Parameter(rng.standard_normal(s).astype(dtype)) for s in shapes]


class Reference:
    """The oracle run of one optimizer configuration over a list of parameters, in float64."""

    def __init__(self, name, options, params):
        self.oracle = ORACLES[name]
        self.options = {**DEFAULTS[name], **options}
        self.values = [p.data.astype(np.float64) for p in params]
        self.states = [{} for _ in params]

    def step(self, grads, lr=None, only=None):
        options = self.options if lr is None else {**self.options, "lr": lr}
        for i, g in enumerate(grads):
            if only is None or i in only:
                self.values[i] = self.oracle(self.values[i], np.asarray(g, np.float64), self.states[i], **options)


def assert_close(params, ref, dtype, what=""):
    for i, (p, want) in enumerate(zip(params, ref.values)):
        assert p.data.dtype == dtype
        np.testing.assert_allclose(p.data, want, **TOL[dtype], err_msg=f"{what} parameter {i}")


# -- update rules ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(DEFAULTS))
def test_defaults_are_pytorchs(name):
    opt = getattr(optim, name)(make_params(np.float64))
    assert opt.defaults == DEFAULTS[name]
    assert opt.param_groups[0]["lr"] == opt.lr == DEFAULTS[name]["lr"]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,options", CONFIGS, ids=[f"{n}-{o}" for n, o in CONFIGS])
def test_matches_oracle(name, options, dtype):
    params = make_params(dtype)
    opt = getattr(optim, name)(params, **options)
    ref = Reference(name, options, params)
    rng = np.random.default_rng(1)
    start = [p.data.copy() for p in params]
    for t in range(6):
        for p in params:
            p.grad[...] = random_grad(rng, p.shape, t, dtype)
        opt.step()
        ref.step([p.grad for p in params])
        assert_close(params, ref, dtype, f"{name}{options} step {t}:")
    assert all(not np.array_equal(p.data, s) for p, s in zip(params, start))


@pytest.mark.parametrize("name,options", [c for c in CONFIGS if c[0] != "Rprop"][::2])
def test_lr_changes_take_effect(name, options):
    params = make_params(np.float64)
    opt = getattr(optim, name)(params, **options)
    ref = Reference(name, options, params)
    rng = np.random.default_rng(2)
    for t, lr in enumerate([0.1, 0.01, 0.0, 0.3, 0.05]):
        opt.lr = lr
        assert opt.lr == lr and opt.param_groups[0]["lr"] == lr
        before = [p.data.copy() for p in params]
        for p in params:
            p.grad[...] = random_grad(rng, p.shape, t, np.float64)
        opt.step()
        ref.step([p.grad for p in params], lr=lr)
        assert_close(params, ref, np.float64, f"lr={lr}")
        if lr == 0.0 and not options.get("weight_decay") or name == "AdamW" and lr == 0.0:
            assert all(np.array_equal(p.data, b) for p, b in zip(params, before))


def test_rprop_lr_sets_only_the_initial_step_size():
    params = make_params(np.float64)
    opt = optim.Rprop(params, lr=0.05)
    ref = Reference("Rprop", dict(lr=0.05), params)
    rng = np.random.default_rng(3)
    for t in range(4):
        for p in params:
            p.grad[...] = random_grad(rng, p.shape, t, np.float64)
        opt.step()
        ref.step([p.grad for p in params])
        opt.lr = 10.0  # as in PyTorch: the step sizes already exist
    assert_close(params, ref, np.float64)


def test_new_grad_arrays_every_step():
    """Replacing .grad (not filling it) rebuilds the argument lists; state carries over."""
    params = make_params(np.float64)
    opt = optim.Adam(params, lr=0.01, amsgrad=True)
    ref = Reference("Adam", dict(lr=0.01, amsgrad=True), params)
    rng = np.random.default_rng(4)
    for t in range(4):
        for p in params:
            p.grad = random_grad(rng, p.shape, t, np.float64)
        opt.step()
        ref.step([p.grad for p in params])
    assert_close(params, ref, np.float64)
    assert [int(opt.state[p]["step"]) for p in params] == [4, 4, 4]


def test_argument_lists_are_reused_until_something_changes():
    model = Linear(4, 3)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt.step()
    plan = opt._plan
    opt.step()
    opt.zero_grad()
    opt.step()
    assert opt._plan is plan
    model.weight.grad = np.zeros_like(model.weight.data)
    opt.step()
    assert opt._plan is not plan


def test_model_cast_after_construction():
    rng = np.random.default_rng(5)
    model = Linear(4, 3)
    params = model.parameters()
    opt = optim.Adam(params, lr=0.01)
    ref = Reference("Adam", dict(lr=0.01), params)
    for t in range(4):
        if t == 2:
            model.double()
        for p in params:
            p.grad[...] = random_grad(rng, p.shape, t, p.dtype)
        opt.step()
        ref.step([p.grad for p in params])
    for p, want in zip(params, ref.values):  # two float32 steps, then float64: float32 tolerance
        assert p.dtype == np.float64 and opt.state[p]["exp_avg"].dtype == np.float64
        assert int(opt.state[p]["step"]) == 4
        np.testing.assert_allclose(p.data, want, **TOL[np.float32])


# -- parameters and groups -----------------------------------------------------------------------------
def test_frozen_parameters_are_skipped_then_start_fresh():
    params = make_params(np.float64)
    params[1].requires_grad = False
    opt = optim.Adam(params, lr=0.05)
    ref = Reference("Adam", dict(lr=0.05), params)
    rng = np.random.default_rng(6)
    frozen = params[1].data.copy()
    for t in range(5):
        if t == 3:
            params[1].requires_grad = True  # its first step: bias corrections of step 1
        for p in params:
            p.grad[...] = random_grad(rng, p.shape, t, np.float64)
        opt.step()
        ref.step([p.grad for p in params], only={0, 2} if t < 3 else None)
        if t < 3:
            np.testing.assert_array_equal(params[1].data, frozen)
            assert params[1] not in opt.state
    assert_close(params, ref, np.float64)
    assert [int(opt.state[p]["step"]) for p in params] == [5, 2, 5]


def test_param_groups_with_their_own_options():
    params = make_params(np.float64)
    opt = optim.SGD([{"params": params[:2], "lr": 0.3, "momentum": 0.5}, {"params": [params[2]]}],
                    lr=0.1, momentum=0.9, nesterov=True)
    assert opt.param_groups[0]["nesterov"] and opt.param_groups[1]["lr"] == 0.1
    refs = [Reference("SGD", dict(lr=0.3, momentum=0.5, nesterov=True), params[:2]),
            Reference("SGD", dict(lr=0.1, momentum=0.9, nesterov=True), params[2:])]
    rng = np.random.default_rng(7)
    for t in range(4):
        if t == 2:
            opt.lr = 0.02
            assert [g["lr"] for g in opt.param_groups] == [0.02, 0.02]
        for p in params:
            p.grad[...] = random_grad(rng, p.shape, t, np.float64)
        opt.step()
        lr = 0.02 if t >= 2 else None
        refs[0].step([p.grad for p in params[:2]], lr=lr)
        refs[1].step([params[2].grad], lr=lr)
    assert_close(params[:2], refs[0], np.float64)
    assert_close(params[2:], refs[1], np.float64)


def test_named_parameters_and_add_param_group():
    a, b = Linear(3, 2), Linear(2, 1)
    opt = optim.Adam(a.named_parameters(), lr=0.01)
    opt.add_param_group({"params": b.parameters(), "lr": 0.1})
    assert [len(g["params"]) for g in opt.param_groups] == [2, 2]
    assert opt.param_groups[1]["betas"] == (0.9, 0.999)
    for p in a.parameters() + b.parameters():
        p.grad[...] = 1.0
    before = b.weight.data.copy()
    opt.step()
    np.testing.assert_allclose(b.weight.data, before - 0.1, rtol=0, atol=1e-7)  # Adam's first step: lr·sign(g)
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [a.weight]})


def test_zero_grad_keeps_the_arrays():
    model = Linear(3, 2)
    opt = optim.SGD(model.parameters())
    grads = [p.grad for p in model.parameters()]
    for g in grads:
        g[...] = 5.0
    opt.zero_grad()
    assert all(p.grad is g and not g.any() for p, g in zip(model.parameters(), grads))


def test_step_calls_the_closure():
    p = Parameter(np.ones(3))
    opt = optim.SGD([p], lr=0.5)

    def closure():
        p.grad[...] = 2.0
        return 7.0

    assert opt.step(closure) == 7.0
    np.testing.assert_array_equal(p.data, np.zeros(3))


def test_nan_gradients_propagate_without_crashing():
    for name in DEFAULTS:
        p = Parameter(np.ones(4))
        opt = getattr(optim, name)([p])
        p.grad[...] = [0.5, np.nan, np.inf, -0.5]
        opt.step()
        assert np.all(np.isfinite(p.data[[0, 3]])), name
        if name == "Rprop":  # sign(NaN) is 0 in PyTorch: no move
            assert p.data[1] == 1.0
        else:
            assert np.isnan(p.data[1]), name


def test_large_parameters_same_result_for_any_thread_count():
    """Above the parallel threshold the update runs in blocks across threads: bitwise the same as one thread,
    and still the oracle's."""
    shapes = [(300, 400), (7,), (50_001,)]
    results = []
    threads = fnn.get_num_threads()
    try:
        for n in (1, 2, 3):
            fnn.set_num_threads(n)
            params = make_params(np.float64, shapes)
            opt = optim.Adam(params, lr=0.01, weight_decay=0.1, amsgrad=True)
            ref = Reference("Adam", dict(lr=0.01, weight_decay=0.1, amsgrad=True), params)
            rng = np.random.default_rng(8)
            for t in range(3):
                for p in params:
                    p.grad[...] = random_grad(rng, p.shape, t, np.float64)
                opt.step()
                ref.step([p.grad for p in params])
            assert_close(params, ref, np.float64)
            results.append([p.data.copy() for p in params])
    finally:
        fnn.set_num_threads(threads)
    for other in results[1:]:
        for x, y in zip(results[0], other):
            np.testing.assert_array_equal(x, y)


# -- state_dict ----------------------------------------------------------------------------------------
FULL_STATE = [("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)), ("Adam", dict(lr=0.01, amsgrad=True)),
              ("AdamW", dict(lr=0.01)), ("RMSprop", dict(momentum=0.5, centered=True)),
              ("Adagrad", dict(lr=0.1, lr_decay=0.1)), ("Rprop", dict(lr=0.03))]


def jsonish(value):
    """What a JSON round trip makes of a state dict (string keys, lists for tuples); arrays kept."""
    if isinstance(value, dict):
        return {str(k): jsonish(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonish(v) for v in value]
    return value


def assert_plain(value):
    if isinstance(value, dict):
        for k, v in value.items():
            assert isinstance(k, (int, str))
            assert_plain(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            assert_plain(v)
    else:
        assert isinstance(value, (bool, int, float, str, np.ndarray)), type(value)


@pytest.mark.parametrize("name,options", FULL_STATE)
def test_state_dict_round_trip_continues_identically(name, options):
    cls = getattr(optim, name)
    params = make_params(np.float64)
    opt = cls(params, **options)
    rng = np.random.default_rng(9)
    for t in range(3):
        for p in params:
            p.grad[...] = random_grad(rng, p.shape, t, np.float64)
        opt.step()
    sd = opt.state_dict()
    assert_plain(sd)
    assert sorted(sd["state"]) == [0, 1, 2] and sd["param_groups"][0]["params"] == [0, 1, 2]
    if name != "SGD":
        assert sd["state"][0]["step"] == 3
    snapshot = {k: {s: np.array(v, copy=True) for s, v in st.items()} for k, st in sd["state"].items()}

    twins = [Parameter(p.data.copy()) for p in params]
    restored = cls(twins)  # default options: load_state_dict brings the saved ones
    restored.load_state_dict(jsonish(sd))
    assert restored.param_groups[0] == {**opt.param_groups[0], "params": twins}
    for t in range(3, 6):
        for p, q in zip(params, twins):
            p.grad[...] = q.grad[...] = random_grad(rng, p.shape, t, np.float64)
        opt.step()
        restored.step()
    for p, q in zip(params, twins):
        np.testing.assert_array_equal(p.data, q.data)
    for k, st in sd["state"].items():  # a snapshot: later steps did not change it
        for s, v in st.items():
            np.testing.assert_array_equal(v, snapshot[k][s])


def test_load_state_dict_checks_before_changing_anything():
    params = make_params(np.float64)
    opt = optim.Adam(params, lr=0.01)
    for p in params:
        p.grad[...] = 1.0
    opt.step()
    sd = opt.state_dict()
    bad_shape = {**sd, "state": {**sd["state"], 2: {**sd["state"][2], "exp_avg": np.zeros(7)}}}
    bad_shape["param_groups"] = [{**sd["param_groups"][0], "lr": 0.5}]
    with pytest.raises(ValueError, match="exp_avg.*shape"):
        opt.load_state_dict(bad_shape)
    assert opt.lr == 0.01
    with pytest.raises(ValueError, match="parameter groups"):
        opt.load_state_dict({"state": {}, "param_groups": []})
    with pytest.raises(ValueError, match="unknown state 'momentum_buffer'"):
        opt.load_state_dict({**sd, "state": {0: {"step": 1, "momentum_buffer": np.zeros((3, 4))}}})
    with pytest.raises(ValueError, match="Invalid beta"):
        opt.load_state_dict({**sd, "param_groups": [{**sd["param_groups"][0], "betas": (1.5, 0.9)}]})
    assert opt.param_groups[0]["betas"] == (0.9, 0.999) and int(opt.state[params[0]]["step"]) == 1


def test_loaded_state_is_cast_to_the_parameter_dtype():
    params = make_params(np.float32)
    opt = optim.RMSprop(params, momentum=0.9)
    for p in params:
        p.grad[...] = 1.0
    opt.step()
    sd = opt.state_dict()
    twins = [Parameter(p.data.astype(np.float64)) for p in params]
    restored = optim.RMSprop(twins)
    restored.load_state_dict(sd)
    for q in twins:
        q.grad[...] = 1.0
    restored.step()
    assert restored.state[twins[0]]["momentum_buffer"].dtype == np.float64


# -- errors --------------------------------------------------------------------------------------------
BAD_OPTIONS = [
    (optim.SGD, dict(lr=-0.1), "learning rate"),
    (optim.SGD, dict(momentum=-0.5), "momentum"),
    (optim.SGD, dict(weight_decay=-1.0), "weight_decay"),
    (optim.SGD, dict(nesterov=True), "Nesterov"),
    (optim.SGD, dict(momentum=0.9, dampening=0.1, nesterov=True), "Nesterov"),
    (optim.Adam, dict(lr=-1e-3), "learning rate"),
    (optim.Adam, dict(betas=(1.0, 0.999)), "beta parameter at index 0"),
    (optim.Adam, dict(betas=(0.9, -0.1)), "beta parameter at index 1"),
    (optim.Adam, dict(eps=-1e-8), "epsilon"),
    (optim.AdamW, dict(weight_decay=-0.01), "weight_decay"),
    (optim.AdamW, dict(betas=(0.9, 1.2)), "beta parameter at index 1"),
    (optim.RMSprop, dict(alpha=-0.1), "alpha"),
    (optim.RMSprop, dict(momentum=-0.1), "momentum"),
    (optim.RMSprop, dict(eps=-1.0), "epsilon"),
    (optim.Adagrad, dict(lr_decay=-0.1), "lr_decay"),
    (optim.Adagrad, dict(initial_accumulator_value=-1.0), "initial_accumulator_value"),
    (optim.Rprop, dict(etas=(1.5, 1.2)), "eta"),
    (optim.Rprop, dict(etas=(0.5, 0.9)), "eta"),
    (optim.Rprop, dict(lr=float("nan")), "learning rate"),
]


@pytest.mark.parametrize("cls,options,message", BAD_OPTIONS)
def test_bad_hyperparameters_raise(cls, options, message):
    with pytest.raises(ValueError, match=f"{cls.__name__}: .*{message}"):
        cls(make_params(np.float64), **options)
    with pytest.raises(ValueError, match=message):  # in a parameter group as well
        cls([{"params": make_params(np.float64), **options}])


def test_bad_params_raise():
    p = Parameter(np.zeros(3))
    with pytest.raises(TypeError, match="iterable of Parameters"):
        optim.SGD(p)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.Adam([])
    with pytest.raises(TypeError, match="ndarray"):
        optim.Adam([np.zeros(3)])
    with pytest.raises(ValueError, match="twice"):
        optim.Adam([p, p])
    with pytest.raises(ValueError, match="more than one parameter group"):
        optim.Adam([{"params": [p]}, {"params": [p]}])
    with pytest.raises(ValueError, match="learning rate"):
        optim.Adam([p]).lr = -1.0


def test_replaced_data_is_checked_at_assignment_and_the_optimizer_follows_it():
    params = make_params(np.float64)
    opt = optim.Adagrad(params)
    opt.step()
    with pytest.raises(ValueError, match=r"new data has shape \(2, 2\), the parameter has shape \(5,\)"):
        params[1].data = np.zeros((2, 2))
    with pytest.raises(TypeError, match="floating-point"):
        params[1].data = np.zeros(5, np.int64)
    params[1].data = np.zeros((5, 1))[:, 0][::-1]  # a strided view is stored C-contiguous
    assert params[1].data.flags.c_contiguous
    opt.step()
    params[1].data = np.zeros(5, np.float32)  # a new dtype: the gradient buffer follows it
    assert params[1].grad.dtype == np.float32 and params[1].grad.shape == (5,)
    opt.step()
    assert params[1].data.dtype == np.float32


def test_stale_gradient_marked_zero_is_not_used():
    """Parameter.zero_grad() is lazy; a parameter that got no backward since must step with a zero gradient."""
    p = Parameter(np.ones(3))
    opt = optim.SGD([p], lr=0.1, momentum=0.9)
    p.grad[...] = 1.0
    opt.step()  # buffer = 1, p = 0.9
    opt.zero_grad()
    opt.step()  # zero gradient: buffer = 0.9, p = 0.81
    np.testing.assert_allclose(p.data, np.full(3, 0.81), rtol=1e-15)
    assert not p.grad.any()


def test_kernels_validate_every_array():
    def args(n=2, dtype=np.float64):
        data = [np.ones((2, 3), dtype) for _ in range(n)]
        return data, [np.ones((2, 3), dtype) for _ in range(n)], [np.zeros((2, 3), dtype) for _ in range(n)]

    steps = np.zeros(2, np.int64)
    d, g, b = args()
    fnn.ops.sgd_step(d, g, b, steps, 0.5, 0.9, 0.0, 0.0, False, False)
    np.testing.assert_array_equal(d[1], np.full((2, 3), 0.5))
    np.testing.assert_array_equal(b[1], np.ones((2, 3)))
    assert list(steps) == [1, 1]

    d, g, b = args()
    g[1] = g[1].astype(np.float32)
    with pytest.raises(TypeError, match=r"SGD: grads\[1\] \(parameter shape \(2, 3\)\) has dtype float32"):
        fnn.ops.sgd_step(d, g, b, steps, 0.1, 0.9, 0.0, 0.0, False, False)
    d, g, b = args()
    b[0] = np.zeros((3, 2))
    with pytest.raises(ValueError, match=r"SGD: momentum_buffers\[0\] \(parameter shape \(2, 3\)\) has shape \(3, 2\)"):
        fnn.ops.sgd_step(d, g, b, steps, 0.1, 0.9, 0.0, 0.0, False, False)
    d, g, b = args()
    d[1] = np.ones((3, 2)).T
    with pytest.raises(ValueError, match=r"params\[1\].*C-contiguous"):
        fnn.ops.sgd_step(d, g, b, steps, 0.1, 0.9, 0.0, 0.0, False, False)
    d, g, b = args()
    d[0].flags.writeable = False
    with pytest.raises(ValueError, match=r"params\[0\].*writeable"):
        fnn.ops.sgd_step(d, g, b, steps, 0.1, 0.9, 0.0, 0.0, False, False)
    d, g, b = args()
    with pytest.raises(ValueError, match="momentum_buffers has 1 arrays, expected 2"):
        fnn.ops.sgd_step(d, g, b[:1], steps, 0.1, 0.9, 0.0, 0.0, False, False)
    with pytest.raises(ValueError, match="max_exp_avg_sqs has 2 arrays, expected 0"):
        fnn.ops.adam_step(d, g, b, args()[2], args()[2], steps, 0.1, 0.9, 0.99, 1e-8, 0.0, False, False, False)
    with pytest.raises(TypeError, match="AdamW: grads must be a list"):
        fnn.ops.adam_step(d, g[0], b, b, [], steps, 0.1, 0.9, 0.99, 1e-8, 0.0, False, False, True)
    with pytest.raises(TypeError, match=r"Rprop: prevs\[1\] \(parameter shape \(2, 3\)\) is not a numpy array"):
        fnn.ops.rprop_step(d, g, [b[0], [0.0] * 6], b, steps, 0.5, 1.2, 1e-6, 50.0, False)
    with pytest.raises(ValueError, match="RMSprop: steps must be a writeable 1-D int64 array of length 2"):
        fnn.ops.rmsprop_step(d, g, b, [], [], np.zeros(2), 0.1, 0.99, 1e-8, 0.0, 0.0, False, False)
    with pytest.raises(TypeError, match="float32 or float64"):
        fnn.ops.adagrad_step([np.ones(3, np.int64)], [np.ones(3, np.int64)], [np.ones(3, np.int64)],
                             np.zeros(1, np.int64), 0.1, 0.0, 0.0, 1e-10, False)
    np.testing.assert_array_equal(d[0], np.ones((2, 3)))  # nothing was updated by a failed call
    fnn.ops.adagrad_step([], [], [], np.zeros(0, np.int64), 0.1, 0.0, 0.0, 1e-10, False)  # empty: no-op


# -- training --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,options", [
    ("SGD", dict(lr=0.1)), ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)), ("Adam", dict(lr=0.05)),
    ("AdamW", dict(lr=0.05, weight_decay=1e-4)), ("RMSprop", dict(lr=0.02)), ("Adagrad", dict(lr=0.5)),
    ("Rprop", dict(lr=0.01)),
])
def test_least_squares_converges(name, options):
    rng = np.random.default_rng(10)
    x = rng.standard_normal((128, 6)).astype(np.float32)
    y = x @ rng.standard_normal((6, 2)).astype(np.float32) + np.float32(0.5)
    model = Linear(6, 2)
    opt = getattr(optim, name)(model.parameters(), **options)

    def loss_and_backward():
        err = model(x) - y
        model.backward(2 * err / err.size)
        return float(np.mean(err * err))

    first = loss_and_backward()
    opt.zero_grad()
    for step in range(300):
        if step == 200:
            opt.lr = opt.lr / 10
        loss_and_backward()
        opt.step()
        opt.zero_grad()
    last = loss_and_backward()
    assert last < first * 1e-3, (first, last)
