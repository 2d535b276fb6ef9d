"""Stochastic gradient descent with momentum, dampening, Nesterov momentum and L2 weight decay."""
from .. import ops
from .optimizer import Optimizer


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, dampening, Nesterov momentum and weight decay (torch.optim.SGD).

    Per step, with ``g`` the gradient: ``g ← g + weight_decay·p``; with momentum ``μ``: ``b ← g`` at the
    first step, else ``b ← μ·b + (1 − dampening)·g``, and ``g ← g + μ·b`` (Nesterov) or ``g ← b``; then
    ``p ← p − lr·g``.

    Parameters
    ----------
    params : iterable of Parameter or of dict
        ``model.parameters()``, ``named_parameters()`` pairs, or parameter groups: dicts with key ``"params"``
        and any per-group options.
    lr : float, default 0.01
        The learning rate (PyTorch requires it; here it defaults to 0.01).
    momentum : float, default 0.0
        The momentum factor ``μ``.
    dampening : float, default 0.0
        Dampening of the momentum.
    weight_decay : float, default 0.0
        L2 penalty added to the gradient.
    nesterov : bool, default False
        Nesterov momentum (needs ``momentum > 0`` and ``dampening == 0``).
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
    Adam, fastnn.regularizers.Regularized

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> _ = fnn.manual_seed(0)
    >>> model = fnn.nn.Linear(3, 1)
    >>> x = np.ones((4, 3), np.float32); y = np.full((4, 1), 2.0, np.float32)
    >>> loss_fn = fnn.nn.MSELoss()
    >>> opt = fnn.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    >>> first = float(loss_fn(model(x), y))
    >>> for _ in range(20):
    ...     loss = loss_fn(model(x), y)
    ...     model.backward_parameters(loss_fn.backward()); opt.step(); opt.zero_grad()
    >>> float(loss_fn(model(x), y)) < first
    True
    """

    _slots = ("momentum_buffer",)
    _has_step = False
    _fused_kind = "sgd"

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

    def _fused_options(self, g):
        if type(self) is not SGD:  # a subclass may change the update
            return None
        return (float(g["lr"]), float(g["momentum"]), float(g["dampening"]), float(g["weight_decay"]),
                float(bool(g["nesterov"])), float(bool(g["maximize"])))

    def _update(self, g, arrays):
        ops.sgd_step(*arrays, g["lr"], g["momentum"], g["dampening"], g["weight_decay"], g["nesterov"],
                       g["maximize"])
