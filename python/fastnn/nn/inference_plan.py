"""Eval-mode fast paths of Sequential. InferencePlan: Linear layers and element-wise activations run in one
C++ call (kernels/dense_stack.hpp), with no Python between layers; Dropout (in eval mode) and Identity are
skipped. FoldedSequencePlan: Conv → BatchNorm pairs run as one convolution with folded weights.
A plan is rebuilt when it goes stale: a parameter array replaced (e.g. by .double()), a child put back in
training mode, or the container changed."""
from operator import is_

import numpy as np

from .. import _core
from ._checks import as_float_array
from .activations import _Elementwise
from .conv import _ConvNd
from .dropout import Dropout
from .linear import Identity, Linear
from .normalization import _BatchNorm


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
            elif not isinstance(m, (Dropout, Identity)):
                return False
        if not linears or len({w.dtype for w in weights}) != 1:
            return False
        plan = cls()
        plan._core_plan = _core.DenseStackPlan(weights, biases, activations)
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


class _FoldedConvBatchNorm:
    """An eval-mode Conv followed by an eval-mode BatchNorm, run as one convolution with folded weights:
    W' = W·s, b' = (b − μ)·s + β with s = γ/√(var + ε) per output channel. It saves BatchNorm's whole pass
    over the conv output (at batch 256 of bench_cnn, as long as the conv itself). The folded parameters are
    recomputed from the live arrays on every call (they are tiny), so training in place never leaves them
    stale. Results equal conv-then-BN to rounding, not bit for bit."""

    def __init__(self, conv, bn):
        import inspect
        from ..random import generator
        self.conv, self.bn = conv, bn
        args, kwargs = conv._init_args
        bound = inspect.signature(type(conv).__init__).bind(None, *args, **kwargs)
        bound.apply_defaults()
        options = {k: v for k, v in list(bound.arguments.items())[1:]}
        options["bias"] = True
        state = generator().bit_generator.state  # building a layer draws an init: keep fastnn's stream intact
        try:
            self.folded = type(conv)(**options).to(conv.weight.data.dtype).eval()
        finally:
            generator().bit_generator.state = state

    @staticmethod
    def applies(conv, bn):
        return (isinstance(conv, _ConvNd) and isinstance(bn, _BatchNorm) and bn.track_running_stats
                and bn.running_mean is not None and conv.out_channels == bn.num_features)

    def forward(self, x):
        conv, bn, folded = self.conv, self.bn, self.folded
        w = conv.weight.data
        scale = 1.0 / np.sqrt(bn.running_var.astype(np.float64) + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight.data
        shift = -bn.running_mean * scale
        if conv.bias is not None:
            shift = shift + conv.bias.data * scale
        if bn.bias is not None:
            shift = shift + bn.bias.data
        folded.weight.data[...] = w * scale.reshape((-1,) + (1,) * (w.ndim - 1))
        folded.bias.data[...] = shift
        return folded.forward(x)


class FoldedSequencePlan:
    """Eval-mode plan for a Sequential holding Conv → BatchNorm pairs: each pair runs as one folded
    convolution, every other layer as itself. Rebuilt when stale (see InferencePlan)."""

    __slots__ = ("_steps", "_modules", "_weights")

    @classmethod
    def build(cls, modules):
        steps, i, folded_any = [], 0, False
        while i < len(modules):
            if i + 1 < len(modules) and _FoldedConvBatchNorm.applies(modules[i], modules[i + 1]):
                steps.append(_FoldedConvBatchNorm(modules[i], modules[i + 1]))
                folded_any, i = True, i + 2
            else:
                steps.append(modules[i])
                i += 1
        if not folded_any:
            return False
        plan = cls()
        plan._steps, plan._modules = tuple(steps), tuple(modules)
        plan._weights = tuple(s.conv.weight.data for s in steps if isinstance(s, _FoldedConvBatchNorm))
        return plan

    def valid(self):
        if any(m.training for m in self._modules):
            return False
        folds = [s for s in self._steps if isinstance(s, _FoldedConvBatchNorm)]
        return all(s.conv.weight.data is w and s.folded.weight.data.dtype == w.dtype
                   and _FoldedConvBatchNorm.applies(s.conv, s.bn) for s, w in zip(folds, self._weights))

    def forward(self, x):
        """The stack's output, or None to let the layer-by-layer path run (and raise its own errors)."""
        try:
            for step in self._steps:
                x = step.forward(x)
        except (ValueError, TypeError):
            return None
        return x
