"""Inverted dropout: at training, zero each element with probability p and scale survivors by 1/(1−p),
so evaluation is the identity."""
import numpy as np

from .. import ops
from ..random import generator
from ._checks import as_float_array, module_dtype, require_forward, check_grad_shape
from .function_ops import dropout_forward
from .module import LayerSpec, Module


class Dropout(Module):
    """Inverted dropout: in training, zero each element with probability ``p`` and scale the rest by ``1/(1-p)``.

    In eval mode (``model.eval()``) it is the identity, so no rescaling is needed at inference. Masks draw
    from fastnn's generator (:func:`fastnn.manual_seed` makes them reproducible).

    Parameters
    ----------
    p : float, default 0.5
        Probability of zeroing an element, in [0, 1].

    Shape
    -----
    - Input: any shape.
    - Output: the input's shape.
    - Parameters: none.

    Raises
    ------
    ValueError
        If ``p`` is outside [0, 1].

    See Also
    --------
    Dropout2d : zeroes whole channels.
    fastnn.nn.functional.dropout

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> _ = fnn.manual_seed(0)
    >>> drop = fnn.nn.Dropout(p=0.5)
    >>> y = drop(np.ones((2, 8), np.float32))
    >>> sorted(set(y.ravel().tolist()))                 # zeros and survivors scaled by 2
    [0.0, 2.0]
    >>> float(drop.eval()(np.ones((2, 8), np.float32)).min())  # identity in eval mode
    1.0
    """
    def __init__(self, p=0.5):
        super().__init__()
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1], got {p}")
        self.p = float(p)
        self._seed = None

    def extra_repr(self):
        return f"p={self.p}"

    def describe(self):
        return LayerSpec("dropout", {"p": self.p, "channels": False}, {})

    def forward(self, x):
        x = as_float_array(self, x, module_dtype(self, x))
        self._shape = x.shape
        if not self.training or self.p == 0.0:
            self._seed = None
            return x
        # The mask is a hash of one seed (kernels/dropout.hpp): nothing is stored, backward regenerates it.
        y, self._seed = dropout_forward(x, self.p)
        return y

    def backward(self, grad_output):
        require_forward(self, getattr(self, "_shape", None))
        g = np.asarray(grad_output)
        check_grad_shape(self, g, self._shape)
        if self._seed is None:
            return g
        return ops.dropout_apply(np.ascontiguousarray(g, dtype=g.dtype if g.dtype.kind == "f" else np.float32),
                                 self.p, self._seed)


class Dropout2d(Module):
    """Channel dropout: in training, zero whole channels with probability ``p`` and scale the rest by ``1/(1-p)``.

    Each ``(n, c)`` plane is kept or zeroed as a whole (adjacent pixels are correlated, so element-wise
    dropout would do little); the identity in eval mode.

    Parameters
    ----------
    p : float, default 0.5
        Probability of zeroing a channel, in [0, 1].
    inplace : bool, default False
        Accepted for PyTorch compatibility and ignored.

    Shape
    -----
    - Input: ``(N, C, H, W)`` or ``(C, H, W)``.
    - Output: the input's shape.
    - Parameters: none.

    Raises
    ------
    ValueError
        If ``p`` is outside [0, 1].

    See Also
    --------
    Dropout

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> _ = fnn.manual_seed(0)
    >>> y = fnn.nn.Dropout2d(p=0.5)(np.ones((1, 6, 2, 2), np.float32))
    >>> sorted(set(y.reshape(6, 4).max(axis=1).tolist()))      # whole channels: 0 or 2
    [0.0, 2.0]
    >>> bool((y.reshape(6, 4).min(axis=1) == y.reshape(6, 4).max(axis=1)).all())
    True
    """

    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"Dropout2d: p must be in [0, 1], got {p}")
        self.p = float(p)
        self.inplace = bool(inplace)  # accepted for PyTorch compatibility; outputs are always new arrays
        self._mask = None
        self._shape = None

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"

    def describe(self):
        return LayerSpec("dropout", {"p": self.p, "channels": True}, {})

    def forward(self, x):
        x = as_float_array(self, x, module_dtype(self, x))
        if x.ndim not in (3, 4):
            raise ValueError(f"{self!r}: expected input of shape (N, C, H, W) or (C, H, W), got {x.shape}")
        self._shape = x.shape
        if not self.training or self.p == 0.0:
            self._mask = None
            return x
        planes = x.shape[:-2] + (1, 1)
        if self.p == 1.0:
            self._mask = np.zeros(planes, x.dtype)
        else:
            keep = generator().random(planes, dtype=np.float32) >= self.p
            self._mask = keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - self.p))
        return x * self._mask

    def backward(self, grad_output):
        require_forward(self, self._shape)
        g = np.asarray(grad_output)
        check_grad_shape(self, g, self._shape)
        return g if self._mask is None else g * self._mask
