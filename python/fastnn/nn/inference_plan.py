"""Eval-mode fast paths of Sequential. InferencePlan: Linear layers and element-wise activations run in one
C++ call (kernels/dense_stack.hpp), with no Python between layers; Dropout (in eval mode) and Identity are
skipped. FusedSequencePlan: each Conv [→ BatchNorm → activations → pooling] runs as one C++ call, BatchNorm
folded into the convolution's weights, and the closing Flatten → Linear stack as an InferencePlan.
A plan is rebuilt when it goes stale: a parameter array replaced (e.g. by .double()), a child put back in
training mode, or the container changed."""
from operator import is_

import numpy as np

from .. import ops
from ._checks import as_float_array
from .activations import _Elementwise
from .conv import _ConvNd
from .dropout import Dropout, Dropout2d
from .linear import Flatten, Identity, Linear
from .normalization import _BatchNorm
from .pooling import _AvgPoolNd, _MaxPoolNd


_SKIPPED_IN_EVAL = (Dropout, Dropout2d, Identity)  # identity maps in eval mode


class InferencePlan:
    __slots__ = ("_core_plan", "_modules", "_arrays", "_first", "_dtype")

    @classmethod
    def build(cls, modules):
        """A plan for `modules`, or False when they are not all Linear/element-wise/Dropout/Identity layers
        (or use mixed dtypes); Sequential then runs them one by one."""
        weights, biases, activations, linears = [], [], [], []
        for m in modules:
            if isinstance(m, Linear):
                linears.append(m)
                weights.append(m.weight.data)
                biases.append(None if m.bias is None else m.bias.data)
                activations.append([])
            elif isinstance(m, _Elementwise) and activations:
                activations[-1].append((m._kind, m._a, m._b))
            elif not isinstance(m, _SKIPPED_IN_EVAL):
                return False
        if not linears or len({w.dtype for w in weights}) != 1:
            return False
        plan = cls()
        plan._core_plan = ops.DenseStackPlan(weights, biases, activations)
        plan._modules = tuple(modules)
        plan._arrays = tuple(a for pair in zip(weights, biases) for a in pair)
        plan._first = linears[0]
        plan._dtype = weights[0].dtype
        return plan

    def valid(self):
        current = []
        for m in self._modules:
            if m.training:
                return False
            if isinstance(m, Linear):
                current += (m.weight.data, None if m.bias is None else m.bias.data)
        return len(current) == len(self._arrays) and all(map(is_, current, self._arrays))

    def forward(self, x):
        """The stack's output, or None when x needs the layer-by-layer path (unbatched, wrong shape, NaN):
        that path raises the error that names the offending layer."""
        first = self._first
        x = as_float_array(first, x, self._dtype)
        if x.ndim != 2 or x.shape[1] != first.in_features:
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
    w = conv.weight.data
    scale = 1.0 / np.sqrt(bn.running_var.astype(np.float64) + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.data
    shift = -bn.running_mean * scale
    if conv.bias is not None:
        shift = shift + conv.bias.data * scale
    if bn.bias is not None:
        shift = shift + bn.bias.data
    return ((w * scale.reshape((-1,) + (1,) * (w.ndim - 1))).astype(w.dtype, copy=False),
            shift.astype(w.dtype, copy=False))


def _folds(conv, bn):
    return (isinstance(bn, _BatchNorm) and bn.track_running_stats and bn.running_mean is not None
            and conv.out_channels == bn.num_features)


def _plain_pool(pool, dims):
    """Whether `pool` is a max/average pooling layer the block kernel runs: floor mode, no dilation,
    average over the padded window."""
    if isinstance(pool, _MaxPoolNd):
        return pool._dims == dims and not pool.ceil_mode and not pool.return_indices and set(pool._d) == {1}
    if isinstance(pool, _AvgPoolNd):
        return (pool._dims == dims and not pool.ceil_mode and pool.count_include_pad
                and pool.divisor_override is None)
    return False


class _ConvBlock:
    """Conv [→ BatchNorm, folded] [→ element-wise activations] [→ max/average pooling] in eval mode, as one
    C++ call that keeps each image's conv output in cache (kernels/conv_block.hpp). Eval-mode Dropout and
    Identity layers between them are skipped."""

    __slots__ = ("conv", "bn", "activations", "pool", "modules")

    @classmethod
    def take(cls, modules, i):
        """The block starting at modules[i] and the index after it, or (None, i)."""
        conv = modules[i]
        if not isinstance(conv, _ConvNd) or any(conv._extra):  # odd 'same' padding pads by hand first
            return None, i
        block = cls()
        block.conv, block.bn, block.activations, block.pool = conv, None, [], None
        j = i + 1
        if j < len(modules) and _folds(conv, modules[j]):
            block.bn, j = modules[j], j + 1
        while j < len(modules) and block.pool is None:
            m = modules[j]
            if isinstance(m, _Elementwise):
                block.activations.append(m)
            elif _plain_pool(m, conv._dims):
                block.pool = m
            elif not isinstance(m, _SKIPPED_IN_EVAL):
                break
            j += 1
        block.modules = modules[i:j]
        return block, j

    def valid(self):
        return self.bn is None or _folds(self.conv, self.bn)

    def forward(self, x):
        conv, pool, dims = self.conv, self.pool, self.conv._dims
        w = conv.weight.data
        x = as_float_array(conv, x, w.dtype)
        if x.ndim != dims + 2 or x.shape[1] != conv.in_channels:
            return None  # unbatched or wrong: the layer path handles it (and names the layer in its error)
        if self.bn is None:
            b = None if conv.bias is None else conv.bias.data
        else:
            w, b = _folded_parameters(conv, self.bn)
        pool_spec = None
        if pool is not None:
            kind = "max" if isinstance(pool, _MaxPoolNd) else "avg"
            pool_spec = (kind, pool._as2d(pool._k), pool._as2d(pool._s), pool._as2d(pool._p, 0))
        if dims == 1:
            x, w = x[:, :, None, :], w.reshape(w.shape[:2] + (1,) + w.shape[2:])
        y = ops.conv_block_forward(x, w, b, conv._s2, conv._p2, conv._d2, conv.groups,
                                     [(m._kind, m._a, m._b) for m in self.activations], pool_spec, True)
        return y if dims == 2 else y.reshape(y.shape[0], y.shape[1], y.shape[3])


class _FlattenedTail:
    """Flatten followed by a Linear/element-wise stack (an InferencePlan): the usual classifier head."""

    __slots__ = ("flatten", "stack")

    @classmethod
    def take(cls, modules, i):
        """The tail modules[i:], when it is Flatten (all but the batch axis) + an InferencePlan, else None."""
        flatten = modules[i]
        if not (isinstance(flatten, Flatten) and flatten.start_dim == 1 and flatten.end_dim == -1):
            return None
        stack = InferencePlan.build(modules[i + 1:])
        if not stack:
            return None
        tail = cls()
        tail.flatten, tail.stack = flatten, stack
        return tail

    def valid(self):
        return self.stack.valid()

    def forward(self, x):
        return None if x.ndim < 2 else self.stack.forward(x.reshape(x.shape[0], -1))


class FusedSequencePlan:
    """Eval-mode plan for a Sequential holding convolutions: each Conv [→ BN → activations → pooling] runs
    as one block (_ConvBlock), a closing Flatten → Linear/element-wise stack as one call (_FlattenedTail),
    every other layer as itself. Rebuilt when stale (see InferencePlan)."""

    __slots__ = ("_steps", "_modules")

    @classmethod
    def build(cls, modules):
        steps, i = [], 0
        while i < len(modules):
            if isinstance(modules[i], _SKIPPED_IN_EVAL):  # identity in eval mode
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
