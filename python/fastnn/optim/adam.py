"""Adam (L2 weight decay added to the gradient), AdamW (decoupled weight decay), both with AMSGrad."""
from .. import ops
from .optimizer import Optimizer


class Adam(Optimizer):
    """Adam (torch.optim.Adam), with L2 weight decay added to the gradient and optional AMSGrad.

    Per step ``t``: ``g ← g + weight_decay·p``; ``m ← β1·m + (1 − β1)·g``; ``v ← β2·v + (1 − β2)·g²``;
    ``v̂ ← max(v̂, v)`` with AMSGrad, else ``v̂ = v``; ``p ← p − lr/(1 − β1ᵗ) · m / (√v̂ / √(1 − β2ᵗ) + eps)``.

    Parameters
    ----------
    params : iterable of Parameter or of dict
        ``model.parameters()``, ``named_parameters()`` pairs, or parameter groups: dicts with key ``"params"``
        and any per-group options.
    lr : float, default 1e-3
        The learning rate.
    betas : tuple of float, default (0.9, 0.999)
        Decay rates ``(β1, β2)`` of the moment estimates, each in [0, 1).
    eps : float, default 1e-8
        Added to the denominator.
    weight_decay : float, default 0.0
        L2 penalty added to the gradient (see :class:`AdamW` for the decoupled form).
    amsgrad : bool, default False
        Use the maximum of past second moments.
    maximize : bool, default False
        Maximise the objective instead (the gradient is negated).

    Raises
    ------
    ValueError
        For an invalid option (a negative learning rate, ...) or an empty parameter list.
    TypeError
        If ``params`` is a single array or Parameter instead of an iterable.

    See Also
    --------
    AdamW

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> _ = fnn.manual_seed(0)
    >>> model = fnn.nn.Linear(3, 1)
    >>> x = np.ones((4, 3), np.float32); y = np.full((4, 1), 2.0, np.float32)
    >>> loss_fn = fnn.nn.MSELoss()
    >>> opt = fnn.optim.Adam(model.parameters(), lr=0.05)
    >>> first = float(loss_fn(model(x), y))
    >>> for _ in range(20):
    ...     loss = loss_fn(model(x), y)
    ...     model.backward_parameters(loss_fn.backward()); opt.step(); opt.zero_grad()
    >>> float(loss_fn(model(x), y)) < first
    True
    """

    _slots = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    _decoupled = False
    _fused_kind = "adam"

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

    def _fused_options(self, g):
        if type(self) not in (Adam, AdamW):  # a subclass may change the update
            return None
        beta1, beta2 = g["betas"]
        return (float(g["lr"]), float(beta1), float(beta2), float(g["eps"]), float(g["weight_decay"]),
                float(bool(g["amsgrad"])), float(bool(g["maximize"])), float(self._decoupled))

    def _update(self, g, arrays):
        beta1, beta2 = g["betas"]
        ops.adam_step(*arrays, g["lr"], beta1, beta2, g["eps"], g["weight_decay"], g["amsgrad"], g["maximize"],
                        self._decoupled)


class AdamW(Adam):
    """AdamW (torch.optim.AdamW): Adam with weight decay decoupled from the gradient.

    Each step first shrinks the weights, ``p ← p·(1 − lr·weight_decay)``, then takes the Adam update of the
    plain gradient.

    Parameters
    ----------
    params : iterable of Parameter or of dict
        ``model.parameters()``, ``named_parameters()`` pairs, or parameter groups: dicts with key ``"params"``
        and any per-group options.
    lr : float, default 1e-3
        The learning rate.
    betas : tuple of float, default (0.9, 0.999)
        Decay rates of the moment estimates.
    eps : float, default 1e-8
        Added to the denominator.
    weight_decay : float, default 1e-2
        The decoupled decay rate.
    amsgrad : bool, default False
        Use the maximum of past second moments.
    maximize : bool, default False
        Maximise the objective instead (the gradient is negated).

    Raises
    ------
    ValueError
        For an invalid option (a negative learning rate, ...) or an empty parameter list.
    TypeError
        If ``params`` is a single array or Parameter instead of an iterable.

    See Also
    --------
    Adam

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> _ = fnn.manual_seed(0)
    >>> model = fnn.nn.Linear(3, 1)
    >>> x = np.ones((4, 3), np.float32); y = np.full((4, 1), 2.0, np.float32)
    >>> loss_fn = fnn.nn.MSELoss()
    >>> opt = fnn.optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.01)
    >>> first = float(loss_fn(model(x), y))
    >>> for _ in range(20):
    ...     loss = loss_fn(model(x), y)
    ...     model.backward_parameters(loss_fn.backward()); opt.step(); opt.zero_grad()
    >>> float(loss_fn(model(x), y)) < first
    True
    """

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         maximize=maximize)
