"""Stochastic gradient descent with momentum, dampening, Nesterov momentum and L2 weight decay."""
from .. import ops
from .optimizer import Optimizer


class SGD(Optimizer):
    """torch.optim.SGD. Per step, with g the gradient (negated when maximize):
    g ← g + weight_decay·p; with momentum μ: b ← g at the first step, else b ← μ·b + (1 − dampening)·g,
    and g ← g + μ·b (nesterov) or g ← b; then p ← p − lr·g.
    (PyTorch requires lr; here it defaults to 0.01.)"""

    _slots = ("momentum_buffer",)
    _has_step = False

    def __init__(self, params, lr=0.01, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, *,
                 maximize=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov, maximize=maximize))

    def _validate(self, g):
        self._check(g["lr"] >= 0, f"Invalid learning rate: {g['lr']}")
        self._check(g["momentum"] >= 0, f"Invalid momentum value: {g['momentum']}")
        self._check(g["weight_decay"] >= 0, f"Invalid weight_decay value: {g['weight_decay']}")
        self._check(not g["nesterov"] or (g["momentum"] > 0 and g["dampening"] == 0),
                    "Nesterov momentum requires a momentum and zero dampening")

    def _used_slots(self, g):
        return (g["momentum"] != 0,)

    def _update(self, g, arrays):
        ops.sgd_step(*arrays, g["lr"], g["momentum"], g["dampening"], g["weight_decay"], g["nesterov"],
                       g["maximize"])
