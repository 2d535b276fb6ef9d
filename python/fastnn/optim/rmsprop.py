"""RMSprop, optionally centered and with momentum."""
from .. import ops
from .optimizer import Optimizer


class RMSprop(Optimizer):
    """torch.optim.RMSprop. Per step, with g the gradient (negated when maximize): g ← g + weight_decay·p;
    v ← α·v + (1 − α)·g²; centered: ḡ ← α·ḡ + (1 − α)·g and d = √(v − ḡ²) + eps, else d = √v + eps;
    with momentum μ > 0: b ← μ·b + g/d, p ← p − lr·b; else p ← p − lr·g/d."""

    _slots = ("square_avg", "momentum_buffer", "grad_avg")

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False, *, maximize=False):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                                      centered=centered, maximize=maximize))

    def _validate(self, g):
        self._check(g["lr"] >= 0, f"Invalid learning rate: {g['lr']}")
        self._check(g["eps"] >= 0, f"Invalid epsilon value: {g['eps']}")
        self._check(g["momentum"] >= 0, f"Invalid momentum value: {g['momentum']}")
        self._check(g["weight_decay"] >= 0, f"Invalid weight_decay value: {g['weight_decay']}")
        self._check(g["alpha"] >= 0, f"Invalid alpha value: {g['alpha']}")

    def _used_slots(self, g):
        return (True, g["momentum"] > 0, bool(g["centered"]))

    def _update(self, g, arrays):
        ops.rmsprop_step(*arrays, g["lr"], g["alpha"], g["eps"], g["weight_decay"], g["momentum"], g["centered"],
                           g["maximize"])
