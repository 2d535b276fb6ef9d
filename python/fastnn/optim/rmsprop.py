"""RMSprop, optionally centered and with momentum."""
from .. import ops
from .optimizer import Optimizer


class RMSprop(Optimizer):
    """RMSprop (torch.optim.RMSprop), optionally centered and with momentum.

    Per step: ``g ← g + weight_decay·p``; ``v ← α·v + (1 − α)·g²``; centered: ``ḡ ← α·ḡ + (1 − α)·g`` and
    ``d = √(v − ḡ²) + eps``, else ``d = √v + eps``; with momentum ``μ > 0``: ``b ← μ·b + g/d``,
    ``p ← p − lr·b``, else ``p ← p − lr·g/d``.

    Parameters
    ----------
    params : iterable of Parameter or of dict
        ``model.parameters()``, ``named_parameters()`` pairs, or parameter groups: dicts with key ``"params"``
        and any per-group options.
    lr : float, default 1e-2
        The learning rate.
    alpha : float, default 0.99
        Smoothing constant of the squared-gradient average.
    eps : float, default 1e-8
        Added to the denominator.
    weight_decay : float, default 0.0
        L2 penalty added to the gradient.
    momentum : float, default 0.0
        Momentum factor.
    centered : bool, default False
        Normalise by the estimated variance of the gradient.
    maximize : bool, default False
        Maximise the objective instead (the gradient is negated).

    Raises
    ------
    ValueError
        For an invalid option (a negative learning rate, ...) or an empty parameter list.
    TypeError
        If ``params`` is a single array or Parameter instead of an iterable.

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> _ = fnn.manual_seed(0)
    >>> model = fnn.nn.Linear(3, 1)
    >>> x = np.ones((4, 3), np.float32); y = np.full((4, 1), 2.0, np.float32)
    >>> loss_fn = fnn.nn.MSELoss()
    >>> opt = fnn.optim.RMSprop(model.parameters(), lr=0.01)
    >>> first = float(loss_fn(model(x), y))
    >>> for _ in range(20):
    ...     loss = loss_fn(model(x), y)
    ...     model.backward_parameters(loss_fn.backward()); opt.step(); opt.zero_grad()
    >>> float(loss_fn(model(x), y)) < first
    True
    """

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
