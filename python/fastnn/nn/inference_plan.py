"""Fused eval-mode plans for a chain of layers (the executor applies them to chains in any graph; see
fastnn.nn.executor). They read each layer's public description (Module.describe), never its private fields.

InferencePlan: Linear layers and element-wise activations in one C++ call (kernels/dense_stack.hpp), with
no Python between layers; Dropout (in eval mode) and Identity are skipped. FusedSequencePlan: each Conv
[→ BatchNorm → activations → pooling] as one C++ call, BatchNorm folded into the convolution's weights, and a
closing Flatten → Linear stack as an InferencePlan; other layers run as themselves.
A plan goes stale (valid() is False) when a parameter array is replaced (e.g. by .double()), a layer is put
back in training mode, or a folded batch norm stops tracking statistics; the executor then plans again.
"""
from operator import is_

import numpy as np

from .. import ops
from ._checks import as_float_array
from .module import data_version

_IDENTITY_IN_EVAL = ("dropout", "identity")


def _spec(m):
    spec = m.describe()
    return spec if spec is not None else _NO_SPEC


_NO_SPEC = type("NoSpec", (), {"kind": None, "attrs": {}, "params": {}})()


def _as2d(spec, name, fill=1):
    """The 2-D kernel's view of a size tuple: 1-D (k,) becomes (fill, k)."""
    t = tuple(spec.attrs[name])
    return t if spec.attrs["dims"] == 2 else (fill,) + t


class InferencePlan:
    __slots__ = ("_core_plan", "_modules", "_arrays", "_first", "_dtype", "_version")

    @classmethod
    def build(cls, modules):
        """A plan for `modules`, or False when they are not all Linear/element-wise/Dropout/Identity layers
        (or use mixed dtypes)."""
        weights, biases, activations, linears = [], [], [], []
        for m in modules:
            spec = _spec(m)
            if spec.kind == "linear":
                linears.append((m, spec))
                weights.append(spec.params["weight"])
                biases.append(spec.params["bias"])
                activations.append([])
            elif spec.kind == "activation" and activations:
                activations[-1].append((spec.attrs["kernel"], spec.attrs["a"], spec.attrs["b"]))
            elif spec.kind not in _IDENTITY_IN_EVAL:
                return False
        if not linears or len({w.dtype for w in weights}) != 1:
            return False
        plan = cls()
        plan._core_plan = ops.DenseStackPlan(weights, biases, activations)
        plan._modules = tuple(modules)
        plan._arrays = tuple(a for pair in zip(weights, biases) for a in pair)
        plan._first = linears[0]
        plan._dtype = weights[0].dtype
        plan._version = data_version[0]
        return plan

    def valid(self):
        for m in self._modules:
            if m.training:
                return False
        if self._version == data_version[0]:  # no parameter array was replaced anywhere since
            return True
        current = []
        for m in self._modules:
            spec = _spec(m)
            if spec.kind == "linear":
                current += (spec.params["weight"], spec.params["bias"])
        ok = len(current) == len(self._arrays) and all(map(is_, current, self._arrays))
        if ok:
            self._version = data_version[0]
        return ok

    def forward(self, x):
        """The stack's output, or None when x needs the layer-by-layer path (unbatched, wrong shape, NaN):
        that path raises the error that names the offending layer."""
        first, spec = self._first
        x = as_float_array(first, x, self._dtype)
        if x.ndim != 2 or x.shape[1] != spec.attrs["in_features"]:
            return None
        try:
            return self._core_plan.forward(x)
        except ValueError:
            return None


def _folded_parameters(conv, bn):
    """An eval-mode Conv followed by an eval-mode BatchNorm as one convolution: W' = W·s,
    b' = (b − μ)·s + β with s = γ/√(var + ε) per output channel. It saves BatchNorm's whole pass over the
    conv output. Recomputed from the live arrays on every call (they are tiny), so training in place never
    leaves them stale. Results equal conv-then-BN to rounding, not bit for bit."""
    w, b = conv.params["weight"], conv.params["bias"]
    gamma, beta = bn.params["weight"], bn.params["bias"]
    scale = 1.0 / np.sqrt(bn.params["running_var"].astype(np.float64) + bn.attrs["eps"])
    if gamma is not None:
        scale = scale * gamma
    shift = -bn.params["running_mean"] * scale
    if b is not None:
        shift = shift + b * scale
    if beta is not None:
        shift = shift + beta
    return ((w * scale.reshape((-1,) + (1,) * (w.ndim - 1))).astype(w.dtype, copy=False),
            shift.astype(w.dtype, copy=False))


def _folds(conv, bn):
    return (bn.kind == "batch_norm" and bn.attrs["track_running_stats"] and bn.params["running_mean"] is not None
            and conv.attrs["out_channels"] == bn.attrs["num_features"])


def _plain_pool(pool, dims):
    """Whether `pool` (a spec) is max/average pooling the block kernel runs: floor mode, no dilation,
    average over the padded window."""
    a = pool.attrs
    if pool.kind == "max_pool":
        return a["dims"] == dims and not a["ceil_mode"] and not a["return_indices"] and set(a["dilation"]) == {1}
    if pool.kind == "avg_pool":
        return (a["dims"] == dims and not a["ceil_mode"] and a["count_include_pad"]
                and a["divisor_override"] is None)
    return False


class _ConvBlock:
    """Conv [→ BatchNorm, folded] [→ element-wise activations] [→ max/average pooling] in eval mode, as one
    C++ call that keeps each image's conv output in cache (kernels/conv_block.hpp). Eval-mode Dropout and
    Identity layers between them are skipped."""

    __slots__ = ("conv", "bn", "activations", "pool", "modules")

    @classmethod
    def take(cls, modules, i):
        """The block starting at modules[i] and the index after it, or (None, i)."""
        conv = _spec(modules[i])
        if conv.kind != "conv" or any(conv.attrs["extra_padding"]):  # odd 'same' padding pads by hand first
            return None, i
        block = cls()
        block.conv, block.bn, block.activations, block.pool = (modules[i], conv), None, [], None
        j = i + 1
        if j < len(modules) and _folds(conv, _spec(modules[j])):
            block.bn, j = modules[j], j + 1
        while j < len(modules) and block.pool is None:
            m = _spec(modules[j])
            if m.kind == "activation":
                block.activations.append(modules[j])
            elif _plain_pool(m, conv.attrs["dims"]):
                block.pool = modules[j]
            elif m.kind not in _IDENTITY_IN_EVAL:
                break
            j += 1
        block.modules = modules[i:j]
        return block, j

    def valid(self):
        return self.bn is None or _folds(_spec(self.conv[0]), _spec(self.bn))

    def forward(self, x):
        module, _ = self.conv
        conv = _spec(module)  # the live arrays
        a = conv.attrs
        dims = a["dims"]
        w = conv.params["weight"]
        x = as_float_array(module, x, w.dtype)
        if x.ndim != dims + 2 or x.shape[1] != a["in_channels"]:
            return None  # unbatched or wrong: the layer path handles it (and names the layer in its error)
        if self.bn is None:
            b = conv.params["bias"]
        else:
            w, b = _folded_parameters(conv, _spec(self.bn))
        pool_spec = None
        if self.pool is not None:
            pool = _spec(self.pool)
            pool_spec = ("max" if pool.kind == "max_pool" else "avg", _as2d(pool, "kernel_size"),
                         _as2d(pool, "stride"), _as2d(pool, "padding", 0))
        if dims == 1:
            x, w = x[:, :, None, :], w.reshape(w.shape[:2] + (1,) + w.shape[2:])
        activations = [(s.attrs["kernel"], s.attrs["a"], s.attrs["b"]) for s in map(_spec, self.activations)]
        y = ops.conv_block_forward(x, w, b, _as2d(conv, "stride"), _as2d(conv, "padding", 0),
                                   _as2d(conv, "dilation"), a["groups"], activations, pool_spec, True)
        return y if dims == 2 else y.reshape(y.shape[0], y.shape[1], y.shape[3])


class _FlattenedTail:
    """Flatten followed by a Linear/element-wise stack (an InferencePlan): the usual classifier head."""

    __slots__ = ("flatten", "stack")

    @classmethod
    def take(cls, modules, i):
        """The tail modules[i:], when it is Flatten (all but the batch axis) + an InferencePlan, else None."""
        flatten = _spec(modules[i])
        if not (flatten.kind == "flatten" and flatten.attrs["start_dim"] == 1 and flatten.attrs["end_dim"] == -1):
            return None
        stack = InferencePlan.build(modules[i + 1:])
        if not stack:
            return None
        tail = cls()
        tail.flatten, tail.stack = modules[i], stack
        return tail

    def valid(self):
        return self.stack.valid()

    def forward(self, x):
        return None if x.ndim < 2 else self.stack.forward(x.reshape(x.shape[0], -1))


class FusedSequencePlan:
    """Eval-mode plan for a chain holding convolutions: each Conv [→ BN → activations → pooling] runs as one
    block (_ConvBlock), a closing Flatten → Linear/element-wise stack as one call (_FlattenedTail), every other
    layer as itself. Rebuilt when stale (see InferencePlan)."""

    __slots__ = ("_steps", "_modules")

    @classmethod
    def build(cls, modules):
        steps, i = [], 0
        while i < len(modules):
            if _spec(modules[i]).kind in _IDENTITY_IN_EVAL:  # identity in eval mode
                i += 1
                continue
            block, i_next = _ConvBlock.take(modules, i)
            tail = None if block else _FlattenedTail.take(modules, i)
            if block:
                steps.append(block)
                i = i_next
            elif tail:
                steps.append(tail)
                i = len(modules)
            else:
                steps.append(modules[i])
                i += 1
        if not any(isinstance(s, _ConvBlock) for s in steps):
            return False
        plan = cls()
        plan._steps, plan._modules = tuple(steps), tuple(modules)
        return plan

    @property
    def steps(self):
        """What the plan runs: _ConvBlock and _FlattenedTail steps, and layers that run as themselves."""
        return self._steps

    def valid(self):
        if any(m.training for m in self._modules):
            return False
        return all(s.valid() for s in self._steps if isinstance(s, (_ConvBlock, _FlattenedTail)))

    def forward(self, x):
        """The stack's output, or None to let the layer-by-layer path run (and raise its own errors)."""
        try:
            for step in self._steps:
                x = step.forward(x)
                if x is None:
                    return None
        except (ValueError, TypeError):
            return None
        return x
