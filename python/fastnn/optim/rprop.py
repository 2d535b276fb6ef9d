"""Rprop (resilient backpropagation): per-coordinate step sizes driven by gradient signs; for full batches."""
import numpy as np

from .. import ops
from .optimizer import Optimizer


class Rprop(Optimizer):
    """Rprop (torch.optim.Rprop): resilient backpropagation, step sizes driven by gradient signs.

    For full batches. Per step, the step size (starting at ``lr``) is multiplied by ``etas[1]`` where the
    gradient kept its sign and by ``etas[0]`` where it flipped, then clipped to ``step_sizes``; where the sign
    flipped, the gradient is taken as 0. ``p ← p − sign(g)·step_size``. ``lr`` only sets the initial step size,
    as in PyTorch.

    Parameters
    ----------
    params : iterable of Parameter or of dict
        ``model.parameters()``, ``named_parameters()`` pairs, or parameter groups: dicts with key ``"params"``
        and any per-group options.
    lr : float, default 1e-2
        The initial step size.
    etas : tuple of float, default (0.5, 1.2)
        ``(decrease, increase)`` factors, ``0 < etas[0] < 1 < etas[1]``.
    step_sizes : tuple of float, default (1e-6, 50)
        The smallest and largest step sizes.
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
    >>> opt = fnn.optim.Rprop(model.parameters(), lr=0.01)
    >>> first = float(loss_fn(model(x), y))
    >>> for _ in range(20):
    ...     loss = loss_fn(model(x), y)
    ...     model.backward_parameters(loss_fn.backward()); opt.step(); opt.zero_grad()
    >>> float(loss_fn(model(x), y)) < first
    True
    """

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
