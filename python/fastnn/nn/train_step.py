"""A whole training step in one C++ call (kernels/train_step.hpp): forward, loss, backward and the optimizer
update of a Sequential of Linear layers and element-wise activations (Flatten and Identity are skipped),
with the GIL released and nothing handed back to Python in between.

It runs the kernels of the layer-by-layer path in the same order on the same values, so parameters,
gradients and optimizer state come out the same bit for bit (tests/test_train_step.py). What it takes:
* layers: fastnn's own Linear (all parameters trainable), its element-wise activations (ReLU, Tanh, GELU...)
  after a Linear, Identity, and Flatten over all but the batch axis; a 2-D input (N, features) after Flatten;
* losses: CrossEntropyLoss with integer labels (weight, ignore_index and label_smoothing included) and
  MSELoss, reduction 'mean' or 'sum' ('half_sum' for MSELoss);
* optimizers: SGD (momentum, dampening, Nesterov, weight decay, maximize), Adam and AdamW (amsgrad included),
  through Optimizer.fused_plan().
Under fnn.autocast a float32 model's GEMMs run in bf16, as each Linear's would (amp.linear_forward /
linear_backward: the same kernel on the same operands). For anything else there is no plan
(TrainPlanCache.get returns None) or FusedTrainStep.run returns None, and the caller runs the step layer
by layer. So does a step whose input, labels or logits the kernels reject (non-finite values, a label out of
range): the layer-by-layer path then raises the error that names the layer.

The plan is built once per model structure and parameter arrays (the Sequential keeps it), the optimizer's
arrays are bound once per optimizer plan, and the C++ side keeps one set of buffers per batch size.
"""
import numpy as np

from .. import amp, ops
from ._checks import as_float_array
from .module import data_version, requires_grad_version, structure_version

_OWN_MODULES = ("fastnn.nn.linear", "fastnn.nn.activations")


def _layers(modules):
    """(linears, activations, flatten_first) for a chain fastnn can run whole, or None. linears: the Linear
    modules in order; activations[i]: (kind, a, b) after linear i."""
    linears, activations, flatten_first = [], [], False
    for m in modules:
        if type(m).__module__ not in _OWN_MODULES:  # a layer of another kind, or a subclass: its own code runs
            return None
        spec = m.describe()
        kind = None if spec is None else spec.kind
        if kind == "linear":
            linears.append(m)
            activations.append([])
        elif kind == "activation" and linears:
            activations[-1].append((spec.attrs["kernel"], spec.attrs["a"], spec.attrs["b"]))
        elif kind == "identity":
            continue
        elif kind == "flatten" and spec.attrs["start_dim"] == 1 and spec.attrs["end_dim"] == -1:
            if linears:
                return None  # after a Linear the value is 2-D already; keep the rule simple: first only
            flatten_first = True
        else:
            return None
    if not linears or len({id(m) for m in linears}) != len(linears):
        return None  # a Linear used twice adds up two gradients: the layer-by-layer path does that
    return linears, activations, flatten_first


class TrainPlanCache:
    """A model's fused plan and the versions it was built at. A copy of the model (deepcopy) gets an empty
    cache: the plan holds C++ state and pointers into the original's arrays."""

    __slots__ = ("key", "plan")

    def __init__(self):
        self.key = self.plan = None

    def __deepcopy__(self, memo):
        return TrainPlanCache()

    def get(self, modules):
        """The plan for `modules` (None when they cannot run whole), built again after a version moved."""
        now = (structure_version[0], requires_grad_version[0], data_version[0])
        if self.key != now:
            self.plan, self.key = FusedTrainStep.build(modules), now
        return self.plan


class FusedTrainStep:
    """The one-call training step of one model (see the module docstring)."""

    __slots__ = ("_core", "_params", "_grads", "_first", "_flatten", "_dtype", "_key", "_bound", "_out")

    @classmethod
    def build(cls, modules):
        found = _layers(modules)
        if found is None:
            return None
        linears, activations, flatten_first = found
        params = []
        weights, biases, gw, gb = [], [], [], []
        for m in linears:
            w, b = m.weight, m.bias
            if not w.requires_grad or (b is not None and not b.requires_grad):
                return None
            if b is not None and b.data.dtype != w.data.dtype:
                return None
            weights.append(w.data)
            gw.append(w.grad)
            biases.append(None if b is None else b.data)
            gb.append(None if b is None else b.grad)
            params += [w] if b is None else [w, b]
        dtypes = {a.dtype for a in weights}
        if len(dtypes) != 1 or dtypes.pop() not in (np.float32, np.float64):
            return None
        plan = cls()
        plan._core = ops.DenseTrainStep(weights, biases, gw, gb, activations)
        plan._params = tuple(params)
        plan._grads = tuple(p.grad for p in params)
        plan._first = linears[0]
        plan._flatten = flatten_first
        plan._out = linears[-1].out_features
        plan._dtype = weights[0].dtype
        plan._key = (structure_version[0], requires_grad_version[0], data_version[0])
        plan._bound = None
        return plan

    def current(self):
        """Whether no parameter array was replaced and no requires_grad changed since the plan was built."""
        return self._key == (structure_version[0], requires_grad_version[0], data_version[0])

    def run(self, x, y, loss, optimizer):
        """(loss value, output) of one fused step, or None when the layer-by-layer path must run it (the loss
        or optimizer is not one the kernel runs, or the kernels rejected the batch): nothing changed then."""
        loss_args = _loss_args(loss, y, self._dtype)
        if loss_args is None or not (type(x) is np.ndarray and x.dtype.kind == "f"):
            return None
        first = self._first
        x = as_float_array(first, x, self._dtype)
        if self._flatten and x.ndim >= 2:
            x = x.reshape(x.shape[0], -1)
        target = loss_args[0]
        if x.ndim != 2 or x.shape[1] != first.in_features or x.shape[0] == 0 or \
                (loss_args[1] == "mse" and target.shape != (x.shape[0], self._out)):
            return None
        # Looked up on the class: a wrapper that forwards attributes (regularizers.Regularized) has its own step.
        fused_plan = getattr(type(optimizer), "fused_plan", None)
        if fused_plan is None:
            return None
        # The step overwrites every gradient, as a backward after zero_grad does: take the buffers as the
        # kernels do (before fused_plan, which would zero-fill a lazily zeroed one), and put the lazy zeros back
        # if the step does not run.
        lazy, ok = [], True
        for p, g in zip(self._params, self._grads):
            buf, accumulate = p.grad_for_kernel()
            if not accumulate:
                lazy.append(p)
            ok = ok and buf is g  # False: a gradient array was replaced (plan again next time)
        result = self._step(x, loss_args, fused_plan(optimizer)) if ok else None
        if result is None:
            for p in lazy:
                p.zero_grad()
        return result

    def _step(self, x, loss_args, fused):
        if fused is None:
            return None
        token, groups, options = fused
        if self._bound is not token:
            params = self._params
            stepped = [id(p) for _, group_params, _ in groups for p in group_params]
            if len(stepped) != len(params) or set(stepped) != {id(p) for p in params}:
                return None  # the optimizer steps other parameters than exactly the model's
            self._core.bind_optimizer([(kind, *_padded(arrays)) for kind, _, arrays in groups])
            self._bound = token
        target, kind, reduction, weight, ignore_index, smoothing = loss_args
        status, value, _, out = self._core.step(x, target, kind, reduction, weight, ignore_index, smoothing,
                                                options, amp.gemm_in_bf16(self._dtype), amp.dot_products())
        return (value, out) if status == 0 else None


def _padded(arrays):
    """An optimizer's kernel arrays (params, grads, *states, steps) with the state lists padded to three."""
    params, grads, *states, steps = arrays
    states = [list(s) for s in states] + [[]] * (3 - len(states))
    return (list(params), list(grads), *states, steps)


def _loss_args(loss, y, dtype):
    """(target, kind, reduction, class weight, ignore_index, smoothing) for the kernel, or None."""
    name = type(loss).__name__
    if type(loss).__module__ != "fastnn.nn.losses" or name not in ("CrossEntropyLoss", "MSELoss"):
        return None
    if not isinstance(y, np.ndarray):
        return None
    if name == "CrossEntropyLoss":
        if loss.reduction not in ("mean", "sum") or y.ndim != 1 or y.dtype.kind not in "iu":
            return None
        weight = loss.weight
        if weight is not None and weight.dtype != dtype:
            weight = weight.astype(dtype)
        t = y if y.dtype == np.int64 and y.flags.c_contiguous else np.ascontiguousarray(y, dtype=np.int64)
        return t, "cross_entropy", loss.reduction, weight, loss.ignore_index, loss.label_smoothing
    if loss.reduction not in ("mean", "sum", "half_sum") or y.dtype.kind not in "fiub":
        return None
    return np.ascontiguousarray(y, dtype=dtype), "mse", loss.reduction, None, 0, 0.0
