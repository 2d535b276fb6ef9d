"""Eval-mode fast path of Sequential: Linear layers and element-wise activations run in one C++ call
(kernels/dense_stack.hpp), with no Python between layers. Dropout (in eval mode) and Identity are skipped.
A plan is rebuilt when it goes stale: a parameter array replaced (e.g. by .double()), a child put back in
training mode, or the container changed."""
from operator import is_

import numpy as np

from .. import _core
from ._checks import as_float_array
from .activations import _Elementwise
from .dropout import Dropout
from .linear import Identity, Linear


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
