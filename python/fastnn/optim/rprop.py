"""Rprop (resilient backpropagation): per-coordinate step sizes driven by gradient signs; for full batches."""
import numpy as np

from .. import ops
from .optimizer import Optimizer


class Rprop(Optimizer):
    """torch.optim.Rprop. Per step, with g the gradient (negated when maximize) and g_prev the previous one:
    the step size (starting at lr) is multiplied by etas[1] where g·g_prev > 0 and by etas[0] where it is
    < 0, then clipped to step_sizes; where the sign flipped, g is taken as 0 (no move, and the next step does
    not grow). p ← p − sign(g)·step_size. lr only sets the initial step size: changing it later has no effect,
    as in PyTorch."""

    _slots = ("prev", "step_size")

    def __init__(self, params, lr=1e-2, etas=(0.5, 1.2), step_sizes=(1e-6, 50), *, maximize=False):
        super().__init__(params, dict(lr=lr, etas=tuple(etas), step_sizes=tuple(step_sizes), maximize=maximize))

    def _validate(self, g):
        etas, sizes = tuple(g["etas"]), tuple(g["step_sizes"])
        self._check(g["lr"] >= 0, f"Invalid learning rate: {g['lr']}")
        self._check(len(etas) == 2 and 0 < etas[0] < 1 < etas[1], f"Invalid eta values: {g['etas']}")
        self._check(len(sizes) == 2 and 0 <= sizes[0] <= sizes[1], f"Invalid step_sizes: {g['step_sizes']}")

    def _init_state(self, slot, data, g):
        return np.full_like(data, g["lr"]) if slot == "step_size" else np.zeros_like(data)

    def _update(self, g, arrays):
        eta_minus, eta_plus = g["etas"]
        step_min, step_max = g["step_sizes"]
        ops.rprop_step(*arrays, eta_minus, eta_plus, step_min, step_max, g["maximize"])
