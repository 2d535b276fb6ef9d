"""Adagrad: per-coordinate learning rates from the sum of squared gradients."""
import numpy as np

from .. import ops
from .optimizer import Optimizer


class Adagrad(Optimizer):
    """Adagrad (torch.optim.Adagrad): per-coordinate learning rates from the sum of squared gradients.

    Per step ``t``: ``g ← g + weight_decay·p``; ``s ← s + g²`` (``s`` starts at
    ``initial_accumulator_value``); ``p ← p − lr/(1 + (t − 1)·lr_decay) · g/(√s + eps)``.

    Parameters
    ----------
    params : iterable of Parameter or of dict
        ``model.parameters()``, ``named_parameters()`` pairs, or parameter groups: dicts with key ``"params"``
        and any per-group options.
    lr : float, default 1e-2
        The learning rate.
    lr_decay : float, default 0.0
        Learning-rate decay per step.
    weight_decay : float, default 0.0
        L2 penalty added to the gradient.
    initial_accumulator_value : float, default 0.0
        Start value of the squared-gradient sums.
    eps : float, default 1e-10
        Added to the denominator.
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
    >>> opt = fnn.optim.Adagrad(model.parameters(), lr=0.1)
    >>> first = float(loss_fn(model(x), y))
    >>> for _ in range(20):
    ...     loss = loss_fn(model(x), y)
    ...     model.backward_parameters(loss_fn.backward()); opt.step(); opt.zero_grad()
    >>> float(loss_fn(model(x), y)) < first
    True
    """

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
