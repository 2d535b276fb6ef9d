"""Additive (Bahdanau) attention: e_tj = vᵀ tanh(W_q s_{t−1} + W_k h_j + b), α = softmax_j(e),
c_t = Σ_j α_tj h_j.

Vectorised over the batch in NumPy. A decoder that attends to the same keys at every step calls
`precompute(keys, mask)` once (W_k h_j for every j), then `step(query, state)` per step and
`step_backward(...)` in reverse order; `finish_backward(state)` turns the accumulated gradient of the key
projection into the gradient w.r.t. the keys with one GEMM. `forward`/`backward` are the one-step form.
"""
import math

import numpy as np

from .. import init
from ._checks import as_float_array, require_forward
from .module import Module, Parameter

__all__ = ["AdditiveAttention"]


class _KeyState:
    """Keys, their projection W_k h + b, the mask, and the gradients accumulated by step_backward."""
    __slots__ = ("keys", "proj", "mask", "grad_keys", "grad_proj")

    def __init__(self, keys, proj, mask):
        self.keys, self.proj, self.mask = keys, proj, mask
        self.grad_keys = None
        self.grad_proj = None


class AdditiveAttention(Module):
    """Additive (Bahdanau) attention: ``score_t = vᵀ tanh(W_q q + W_k k_t + b)``, weights ``softmax(score)``.

    ``forward(query, keys, mask=None)`` returns ``(context, weights)``: the weighted sum of the keys and the
    attention weights. Masked positions (``mask`` False) get weight 0; every row needs one real position.
    ``backward(grad_context, grad_weights=None)`` returns ``(grad_query, grad_keys)``; parameter gradients
    accumulate. Parameters are initialised from ``U(±1/√fan_in)``.

    Parameters
    ----------
    query_dim : int
        ``Q``, the size of the query (e.g. a decoder state).
    key_dim : int
        ``K``, the size of each key (e.g. an encoder output).
    hidden_dim : int
        ``H``, the size of the scoring layer.
    bias : bool, default True
        Learn ``b``.

    Shape
    -----
    - Input: ``query`` ``(N, Q)``, ``keys`` ``(N, T, K)``, ``mask`` ``(N, T)`` bool (True = real position).
    - Output: ``context`` ``(N, K)``, ``weights`` ``(N, T)``.
    - Parameters: ``query_weight`` ``(H, Q)``, ``key_weight`` ``(H, K)``, ``bias`` ``(H,)``, ``v`` ``(H,)``.

    Raises
    ------
    ValueError
        For dimensions that are not positive, or inputs whose shapes do not fit.

    See Also
    --------
    Seq2Seq

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> att = fnn.nn.AdditiveAttention(query_dim=4, key_dim=6, hidden_dim=8)
    >>> q, keys = np.ones((2, 4), np.float32), np.ones((2, 5, 6), np.float32)
    >>> mask = np.array([[True] * 5, [True, True, False, False, False]])
    >>> context, weights = att(q, keys, mask)
    >>> context.shape, np.round(weights[1], 3)
    ((2, 6), array([0.5, 0.5, 0. , 0. , 0. ], dtype=float32))
    """

    def __init__(self, query_dim, key_dim, hidden_dim, bias=True):
        super().__init__()
        if int(query_dim) <= 0 or int(key_dim) <= 0 or int(hidden_dim) <= 0:
            raise ValueError(f"AdditiveAttention: dimensions must be positive, got {query_dim}, {key_dim}, "
                             f"{hidden_dim}")
        self.query_dim, self.key_dim, self.hidden_dim = int(query_dim), int(key_dim), int(hidden_dim)
        Q, K, H = self.query_dim, self.key_dim, self.hidden_dim
        self.query_weight = Parameter(np.empty((H, Q), np.float32))
        self.key_weight = Parameter(np.empty((H, K), np.float32))
        init.uniform_(self.query_weight, -1 / math.sqrt(Q), 1 / math.sqrt(Q))
        init.uniform_(self.key_weight, -1 / math.sqrt(K), 1 / math.sqrt(K))
        self.bias = None
        if bias:
            self.bias = Parameter(np.empty((H,), np.float32))
            init.uniform_(self.bias, -1 / math.sqrt(K), 1 / math.sqrt(K))
        self.v = Parameter(np.empty((H,), np.float32))
        init.uniform_(self.v, -1 / math.sqrt(H), 1 / math.sqrt(H))
        self._cache = None

    def extra_repr(self):
        return f"{self.query_dim}, {self.key_dim}, {self.hidden_dim}" + (", bias=False" if self.bias is None else "")

    @property
    def _dtype(self):
        return self.v.data.dtype

    # -- repeated use over the same keys -----------------------------------------------------------
    def precompute(self, keys, mask=None):
        """Project the keys once: a state for step()/step_backward()/finish_backward()."""
        keys = as_float_array(self, keys, self._dtype, "keys")
        if keys.ndim != 3 or keys.shape[2] != self.key_dim:
            raise ValueError(f"{self!r}: keys must have shape (N, T, {self.key_dim}), got {keys.shape}")
        N, T, K = keys.shape
        proj = (keys.reshape(N * T, K) @ self.key_weight.data.T).reshape(N, T, self.hidden_dim)
        if self.bias is not None:
            proj += self.bias.data
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != (N, T):
                raise ValueError(f"{self!r}: mask must have shape {(N, T)}, got {mask.shape}")
            if not mask.any(axis=1).all():
                raise ValueError(f"{self!r}: every row of the mask needs at least one True position")
        return _KeyState(keys, proj, mask)

    def step(self, query, state):
        """(context, weights, cache) for one query against precomputed keys."""
        query = as_float_array(self, query, self._dtype, "query")
        N, T, K = state.keys.shape
        if query.shape != (N, self.query_dim):
            raise ValueError(f"{self!r}: query must have shape {(N, self.query_dim)}, got {query.shape}")
        a = np.tanh(state.proj + (query @ self.query_weight.data.T)[:, None, :])  # N, T, H
        e = a @ self.v.data  # N, T
        if state.mask is not None:
            e = np.where(state.mask, e, -np.inf)
        e = e - e.max(axis=1, keepdims=True)
        w = np.exp(e)
        w /= w.sum(axis=1, keepdims=True)
        context = np.einsum("nt,ntk->nk", w, state.keys)
        return context, w, (query, a, w)

    def step_backward(self, grad_context, grad_weights, cache, state):
        """Gradient w.r.t. the query of one step; key gradients accumulate in state."""
        query, a, w = cache
        dtype = self._dtype
        keys = state.keys
        gc = None if grad_context is None else as_float_array(self, grad_context, dtype, "grad_context")
        dw = np.zeros_like(w) if grad_weights is None else as_float_array(self, grad_weights, dtype,
                                                                          "grad_weights").copy()
        if gc is not None:
            dw += np.einsum("ntk,nk->nt", keys, gc)
            dk = w[:, :, None] * gc[:, None, :]
            if state.grad_keys is None:
                state.grad_keys = dk
            else:
                state.grad_keys += dk
        de = w * (dw - (w * dw).sum(axis=1, keepdims=True))  # masked positions: w = 0 -> de = 0
        if self.v.requires_grad:
            self.v.grad += np.einsum("nth,nt->h", a, de)
        dz = de[:, :, None] * self.v.data * (1 - a * a)  # N, T, H
        if state.grad_proj is None:
            state.grad_proj = dz
        else:
            state.grad_proj += dz
        dq = dz.sum(axis=1)  # N, H
        if self.query_weight.requires_grad:
            self.query_weight.grad += dq.T @ query
        return dq @ self.query_weight.data

    def finish_backward(self, state):
        """Gradient w.r.t. the keys (through the context and the key projection); fills key_weight/bias grads."""
        N, T, K = state.keys.shape
        H = self.hidden_dim
        grad_keys = np.zeros_like(state.keys) if state.grad_keys is None else state.grad_keys
        if state.grad_proj is not None:
            gp = state.grad_proj.reshape(N * T, H)
            if self.key_weight.requires_grad:
                self.key_weight.grad += gp.T @ state.keys.reshape(N * T, K)
            if self.bias is not None and self.bias.requires_grad:
                self.bias.grad += gp.sum(axis=0)
            grad_keys = grad_keys + (gp @ self.key_weight.data).reshape(N, T, K)
        state.grad_keys = state.grad_proj = None
        return grad_keys

    # -- one-step form -----------------------------------------------------------------------------
    def forward(self, query, keys, mask=None):
        state = self.precompute(keys, mask)
        context, weights, cache = self.step(query, state)
        self._cache = (state, cache)
        return context, weights

    def backward(self, grad_context, grad_weights=None):
        require_forward(self, self._cache)
        state, cache = self._cache
        grad_query = self.step_backward(grad_context, grad_weights, cache, state)
        return grad_query, self.finish_backward(state)
