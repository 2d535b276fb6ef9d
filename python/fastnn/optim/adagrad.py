"""Adagrad: per-coordinate learning rates from the sum of squared gradients."""
import numpy as np

from .. import ops
from .optimizer import Optimizer


class Adagrad(Optimizer):
    """torch.optim.Adagrad. Per step t, with g the gradient (negated when maximize): g ← g + weight_decay·p;
    s ← s + g² (s starts at initial_accumulator_value); p ← p − lr/(1 + (t − 1)·lr_decay) · g/(√s + eps)."""

    _slots = ("sum",)

    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0,
                 eps=1e-10, *, maximize=False):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, eps=eps,
                                      maximize=maximize))

    def _validate(self, g):
        self._check(g["lr"] >= 0, f"Invalid learning rate: {g['lr']}")
        self._check(g["lr_decay"] >= 0, f"Invalid lr_decay value: {g['lr_decay']}")
        self._check(g["weight_decay"] >= 0, f"Invalid weight_decay value: {g['weight_decay']}")
        self._check(g["initial_accumulator_value"] >= 0,
                    f"Invalid initial_accumulator_value value: {g['initial_accumulator_value']}")
        self._check(g["eps"] >= 0, f"Invalid epsilon value: {g['eps']}")

    def _init_state(self, slot, data, g):
        return np.full_like(data, g["initial_accumulator_value"])

    def _update(self, g, arrays):
        ops.adagrad_step(*arrays, g["lr"], g["lr_decay"], g["weight_decay"], g["eps"], g["maximize"])
