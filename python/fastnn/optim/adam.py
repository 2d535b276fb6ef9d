"""Adam (L2 weight decay added to the gradient), AdamW (decoupled weight decay), both with AMSGrad."""
from .. import ops
from .optimizer import Optimizer


class Adam(Optimizer):
    """torch.optim.Adam. Per step t, with g the gradient (negated when maximize): g ← g + weight_decay·p;
    m ← β1·m + (1 − β1)·g; v ← β2·v + (1 − β2)·g²; v̂ ← max(v̂, v) with amsgrad, else v̂ = v;
    p ← p − lr/(1 − β1ᵗ) · m / (√v̂ / √(1 − β2ᵗ) + eps)."""

    _slots = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, *,
                 maximize=False):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize))

    def _validate(self, g):
        betas = tuple(g["betas"])
        self._check(g["lr"] >= 0, f"Invalid learning rate: {g['lr']}")
        self._check(g["eps"] >= 0, f"Invalid epsilon value: {g['eps']}")
        self._check(len(betas) == 2, f"betas must be a pair, got {g['betas']}")
        self._check(0 <= betas[0] < 1, f"Invalid beta parameter at index 0: {betas[0]}")
        self._check(0 <= betas[1] < 1, f"Invalid beta parameter at index 1: {betas[1]}")
        self._check(g["weight_decay"] >= 0, f"Invalid weight_decay value: {g['weight_decay']}")

    def _used_slots(self, g):
        return (True, True, bool(g["amsgrad"]))

    def _update(self, g, arrays):
        beta1, beta2 = g["betas"]
        ops.adam_step(*arrays, g["lr"], beta1, beta2, g["eps"], g["weight_decay"], g["amsgrad"], g["maximize"],
                        self._decoupled)


class AdamW(Adam):
    """torch.optim.AdamW: Adam whose weight decay is decoupled from the gradient: p ← p·(1 − lr·weight_decay)
    before the Adam update (which then sees the plain gradient)."""

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         maximize=maximize)
