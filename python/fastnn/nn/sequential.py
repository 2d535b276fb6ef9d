"""Sequential: modules applied in order, backward in reverse; in eval mode, fused plans
(fastnn.nn.inference_plan) run whole stretches of layers in one C++ call."""
from collections import OrderedDict

from .inference_plan import FusedSequencePlan, InferencePlan
from .module import Module


class Sequential(Module):
    """Modules applied in order; backward runs them in reverse."""

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            items = list(modules[0].items())
        else:
            items = [(str(i), m) for i, m in enumerate(modules)]
        for name, m in items:
            if not isinstance(m, Module):
                raise TypeError(f"Sequential: element {name} is not a Module, got {type(m).__name__}")
            setattr(self, name, m)
        self._refresh()

    def _refresh(self):
        object.__setattr__(self, "_sequence", tuple(self._modules.values()))
        object.__setattr__(self, "_plan", None)
        object.__setattr__(self, "_plan_input", None)

    def append(self, module):
        setattr(self, str(len(self._modules)), module)
        self._refresh()
        return self

    def __len__(self):
        return len(self._sequence)

    def __iter__(self):
        return iter(self._sequence)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Sequential(*self._sequence[index])
        return self._sequence[index]

    def forward(self, x):
        if not self.training:
            plan = self._plan  # None: not built yet; False: these layers have no fused plan
            if plan is None or (plan and not plan.valid()):
                plan = self._build_plan()
            if plan:
                y = plan.forward(x)
                if y is not None:
                    self._plan_input = x
                    return y
        self._plan_input = None
        for m in self._sequence:
            x = m.forward(x)
        return x

    def _build_plan(self):
        plan = InferencePlan.build(self._sequence) or FusedSequencePlan.build(self._sequence)
        object.__setattr__(self, "_plan", plan)
        return plan

    def backward(self, grad_output):
        if self._plan_input is not None:
            # The last forward ran fused and left no per-layer caches: replay it layer by layer (rare: a
            # backward in eval mode, e.g. a saliency map).
            x, self._plan_input = self._plan_input, None
            for m in self._sequence:
                x = m.forward(x)
        for m in reversed(self._sequence):
            grad_output = m.backward(grad_output)
        return grad_output

    def backward_parameters(self, grad_output):
        if self._plan_input is not None:
            x, self._plan_input = self._plan_input, None
            for m in self._sequence:
                x = m.forward(x)
        seq = self._sequence
        for m in reversed(seq[1:]):
            grad_output = m.backward(grad_output)
        if seq:
            seq[0].backward_parameters(grad_output)
