"""Reshape: views each sample as another shape (the batch dimension is kept)."""
import math

import numpy as np

from ._checks import require_forward, check_grad_shape
from .module import Module

__all__ = ["Reshape"]


class Reshape(Module):
    """Reshape each sample: ``(N, ...) -> (N, *shape)``.

    Parameters
    ----------
    *shape : int
        The per-sample shape; one entry may be -1.

    Shape
    -----
    - Input: ``(N, ...)``.
    - Output: ``(N, *shape)``.
    - Parameters: none.

    See Also
    --------
    Flatten, Unflatten

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> fnn.nn.Reshape(16, 7, 7)(np.zeros((2, 784), np.float32)).shape     # e.g. after a Linear(·, 784)
    (2, 16, 7, 7)
    """

    def __init__(self, *shape):
        super().__init__()
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        self.shape = tuple(int(s) for s in shape)
        if sum(s == -1 for s in self.shape) > 1 or any(s < -1 or s == 0 for s in self.shape):
            raise ValueError(f"Reshape: shape must be positive sizes with at most one -1, got {self.shape}")
        self._in_shape = None

    def extra_repr(self):
        return ", ".join(map(str, self.shape))

    def forward(self, x):
        x = np.asarray(x)
        if x.ndim < 1:
            raise ValueError(f"{self!r}: input needs a batch dimension, got shape {x.shape}")
        per_sample = math.prod(x.shape[1:])
        known = math.prod(s for s in self.shape if s != -1)
        if (-1 in self.shape and per_sample % known) or (-1 not in self.shape and known != per_sample):
            raise ValueError(f"{self!r}: cannot reshape input of shape {x.shape} to (N, "
                             f"{', '.join(map(str, self.shape))})")
        self._in_shape = x.shape
        return x.reshape((x.shape[0],) + self.shape)

    def backward(self, grad_output):
        require_forward(self, self._in_shape)
        g = np.asarray(grad_output)
        if g.size != math.prod(self._in_shape):
            check_grad_shape(self, g, (self._in_shape[0],) + self.shape)
        return g.reshape(self._in_shape)
