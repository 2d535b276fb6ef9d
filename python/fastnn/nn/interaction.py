"""Interaction over field embeddings, FM/DLRM style, for input x [N, F, D]:

- mode="dot": pairwise inner products <x_i, x_j> for i < j, [N, F(F−1)/2] in row-major upper-triangle order
  ((0,1), (0,2), ..., (1,2), ...); with self_interaction=True also i == j, [N, F(F+1)/2].
- mode="concat": flatten the fields, [N, F·D].
- mode="mean" / "max": pool over fields, [N, D] (max sends the gradient to the first maximal field).
"""
import numpy as np

from .. import ops
from ._checks import as_float_array, module_dtype, require_forward
from .module import Module

__all__ = ["Interaction"]

_MODES = ("dot", "concat", "mean", "max")


class Interaction(Module):
    """Feature interaction over field embeddings, FM / DLRM style.

    For input ``x`` of shape ``(N, F, D)`` (``F`` fields of size ``D``): ``mode="dot"`` gives the pairwise inner
    products ``<x_i, x_j>`` for ``i < j`` in row-major upper-triangle order (also ``i == j`` with
    ``self_interaction``); ``"concat"`` flattens the fields; ``"mean"`` / ``"max"`` pool over the fields (max
    sends the gradient to the first maximal field).

    Parameters
    ----------
    mode : {"dot", "concat", "mean", "max"}, default "dot"
        The interaction.
    self_interaction : bool, default False
        With "dot", include each field with itself.

    Shape
    -----
    - Input: ``(N, F, D)``.
    - Output: ``(N, F(F-1)/2)`` for "dot" (``(N, F(F+1)/2)`` with self-interaction), ``(N, F·D)`` for
      "concat", ``(N, D)`` for "mean" and "max".
    - Parameters: none.

    Raises
    ------
    ValueError
        For an unknown mode or an input that is not 3-D.

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> x = np.arange(12, dtype=np.float32).reshape(1, 3, 4)    # 3 fields of size 4
    >>> fnn.nn.Interaction("dot")(x)                             # <f0,f1>, <f0,f2>, <f1,f2>
    array([[ 38.,  62., 214.]], dtype=float32)
    >>> fnn.nn.Interaction("concat")(x).shape, fnn.nn.Interaction("mean")(x).shape
    ((1, 12), (1, 4))
    """
    def __init__(self, mode="dot", self_interaction=False):
        super().__init__()
        if mode not in _MODES:
            raise ValueError(f"Interaction: mode must be one of {_MODES}, got {mode!r}")
        self.mode, self.self_interaction = mode, bool(self_interaction)
        self._cache = None

    def extra_repr(self):
        s = f"mode={self.mode!r}"
        return s + (", self_interaction=True" if self.self_interaction else "")

    def _pairs(self, F):
        return np.triu_indices(F, k=0 if self.self_interaction else 1)

    def output_size(self, num_fields, embedding_dim):
        F, D = int(num_fields), int(embedding_dim)
        if self.mode == "dot":
            return F * (F + 1) // 2 if self.self_interaction else F * (F - 1) // 2
        return F * D if self.mode == "concat" else D

    def forward(self, x):
        x = as_float_array(self, x, module_dtype(self, x))
        if x.ndim != 3:
            raise ValueError(f"{self!r}: expected input of shape (N, F, D), got {x.shape}")
        N, F, D = x.shape
        if self.mode == "dot":
            i, j = self._pairs(F)
            y = ops.batched_matmul(x, x, False, True)[:, i, j]  # x·xᵀ per sample, one GEMM per thread
            self._cache = (x, None)
        elif self.mode == "concat":
            y = x.reshape(N, F * D)
            self._cache = (x, None)
        elif self.mode == "mean":
            y = x.mean(axis=1)
            self._cache = (x, None)
        else:
            arg = x.argmax(axis=1)  # N, D
            y = np.take_along_axis(x, arg[:, None, :], axis=1)[:, 0]
            self._cache = (x, arg)
        return y

    def backward(self, grad_output):
        require_forward(self, self._cache)
        x, arg = self._cache
        N, F, D = x.shape
        g = as_float_array(self, grad_output, x.dtype, "grad_output")
        expected = (N, self.output_size(F, D))
        if g.shape != expected:
            raise ValueError(f"{self!r}: grad_output has shape {g.shape}, but the forward output had shape "
                             f"{expected}")
        if self.mode == "dot":
            i, j = self._pairs(F)
            G = np.zeros((N, F, F), x.dtype)
            G[:, i, j] = g
            return ops.batched_matmul(np.ascontiguousarray(G + G.transpose(0, 2, 1)), x)
        if self.mode == "concat":
            return g.reshape(N, F, D).copy()
        if self.mode == "mean":
            return np.broadcast_to(g[:, None, :] / F, (N, F, D)).copy()
        dx = np.zeros_like(x)
        np.put_along_axis(dx, arg[:, None, :], g[:, None, :], axis=1)
        return dx
