"""Embedding and EmbeddingBag with PyTorch's interface: a one-hot feature picks a row of the table,
a valued feature scales it (per_sample_weights), a bag sums or averages its rows.

Gradients go to the table only (indices are integers). Rows are scattered into the gradient by sorting the
indices and summing each run in a fixed order, so results do not depend on thread count or memory layout.
"""
import numpy as np

from .. import init, ops
from ._checks import as_float_array, require_forward
from .module import Module, Parameter

__all__ = ["Embedding", "EmbeddingBag"]


def _indices(module, x, name="input"):
    """x as an int64 array with every value in [0, num_embeddings); TypeError/ValueError otherwise."""
    if not isinstance(x, np.ndarray):
        x = np.asarray(x)
    if x.dtype.kind not in "iu":
        raise TypeError(f"{module!r}: {name} must be an integer array of indices, got dtype {x.dtype} with "
                        f"shape {x.shape}")
    x = x.astype(np.int64, copy=False)
    if x.size and (x.min() < 0 or x.max() >= module.num_embeddings):
        bad = x[(x < 0) | (x >= module.num_embeddings)].flat[0]
        raise ValueError(f"{module!r}: index {bad} out of range [0, {module.num_embeddings}) in {name} of shape "
                         f"{x.shape}")
    return x


def _padding_index(name, padding_idx, num_embeddings):
    if padding_idx is None:
        return None
    p = int(padding_idx)
    if not -num_embeddings <= p < num_embeddings:
        raise ValueError(f"{name}: padding_idx must be within [-{num_embeddings}, {num_embeddings}), got {p}")
    return p % num_embeddings


def _scatter_rows(param, indices, rows, rows_index=None, scale=None):
    """param.grad[indices[k]] += scale[k]·rows[rows_index[k]] (rows[k] and 1 when not given), honouring lazy
    zero_grad; frozen: nothing."""
    if not param.requires_grad:
        return
    grad, accumulate = param.grad_for_kernel()
    if not accumulate:
        grad.fill(0)
    if indices.size:  # in C++: NumPy's add.at and add.reduceat take ~10 ms for 8192 rows of 128
        ops.scatter_add_rows(grad, _int64(indices), np.ascontiguousarray(rows, grad.dtype),
                               None if rows_index is None else _int64(rows_index),
                               None if scale is None else np.ascontiguousarray(scale, grad.dtype))


def _int64(a):
    return np.ascontiguousarray(a, np.int64)


class Embedding(Module):
    """A lookup table of embeddings: integer indices in, rows of ``weight`` out.

    ``weight`` is initialised from ``N(0, 1)`` as PyTorch; the ``padding_idx`` row is zero and gets no
    gradient. Backward accumulates into the rows used (repeated indices add up).

    Parameters
    ----------
    num_embeddings : int
        Size of the vocabulary.
    embedding_dim : int
        Size of each embedding.
    padding_idx : int or None, default None
        An index whose row stays zero and is not trained.

    Shape
    -----
    - Input: integer array of any shape.
    - Output: ``input.shape + (embedding_dim,)``.
    - Parameters: ``weight`` ``(num_embeddings, embedding_dim)``.

    Raises
    ------
    ValueError
        For sizes that are not positive, indices out of range, or a non-integer input.

    See Also
    --------
    EmbeddingBag

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> emb = fnn.nn.Embedding(10, 3, padding_idx=0)
    >>> out = emb(np.array([[1, 2, 0], [4, 0, 0]]))
    >>> out.shape, out[1, 2].tolist()
    ((2, 3, 3), [0.0, 0.0, 0.0])
    """

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None):
        super().__init__()
        if int(num_embeddings) <= 0 or int(embedding_dim) <= 0:
            raise ValueError(f"Embedding: num_embeddings and embedding_dim must be positive, got {num_embeddings} "
                             f"and {embedding_dim}")
        self.num_embeddings, self.embedding_dim = int(num_embeddings), int(embedding_dim)
        self.padding_idx = _padding_index("Embedding", padding_idx, self.num_embeddings)
        self.weight = Parameter(np.empty((self.num_embeddings, self.embedding_dim), np.float32))
        init.normal_(self.weight)
        if self.padding_idx is not None:
            self.weight.data[self.padding_idx] = 0
        self._input = None

    @classmethod
    def from_pretrained(cls, embeddings, freeze=True, padding_idx=None):
        embeddings = np.asarray(embeddings)
        if embeddings.ndim != 2:
            raise ValueError(f"Embedding.from_pretrained: embeddings must be 2-D, got shape {embeddings.shape}")
        m = cls(embeddings.shape[0], embeddings.shape[1], padding_idx=padding_idx)
        dtype = embeddings.dtype if embeddings.dtype in (np.float32, np.float64) else np.float32
        m.to(dtype)
        m.weight.data[...] = embeddings
        m.weight.requires_grad = not freeze
        return m

    def extra_repr(self):
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        return s + (f", padding_idx={self.padding_idx}" if self.padding_idx is not None else "")

    def forward(self, x):
        x = _indices(self, x)
        self._input = x
        return self.weight.data[x]

    def backward(self, grad_output, need_input_grad=True):
        require_forward(self, self._input)
        x = self._input
        g = as_float_array(self, grad_output, self.weight.dtype, "grad_output")
        if g.shape != x.shape + (self.embedding_dim,):
            raise ValueError(f"{self!r}: grad_output has shape {g.shape}, but the forward output had shape "
                             f"{x.shape + (self.embedding_dim,)}")
        idx, rows = x.reshape(-1), g.reshape(-1, self.embedding_dim)
        if self.padding_idx is not None:
            keep = idx != self.padding_idx
            idx, rows = idx[keep], rows[keep]
        _scatter_rows(self.weight, idx, rows)
        return None  # integer input: no gradient


class EmbeddingBag(Module):
    """Sums or averages bags of embeddings without materialising them (PyTorch's EmbeddingBag).

    ``forward(input, offsets=None, per_sample_weights=None)``: ``input`` ``(B, L)`` is ``B`` bags of ``L``
    indices, or 1-D with ``offsets`` ``(B,)`` marking where each bag starts. ``per_sample_weights`` (same shape as
    ``input``, mode "sum" only) scale each row: a valued feature. Entries equal to ``padding_idx`` are left out
    (and not counted by "mean"); an empty bag gives zeros. After backward, ``grad_per_sample_weights`` holds
    their gradient.

    Parameters
    ----------
    num_embeddings : int
        Size of the vocabulary.
    embedding_dim : int
        Size of each embedding.
    mode : {"mean", "sum"}, default "mean"
        How a bag's rows are combined.
    padding_idx : int or None, default None
        An index left out of every bag.

    Shape
    -----
    - Input: ``(B, L)``, or ``(total,)`` with ``offsets`` ``(B,)``.
    - Output: ``(B, embedding_dim)``.
    - Parameters: ``weight`` ``(num_embeddings, embedding_dim)``.

    Raises
    ------
    ValueError
        For sizes that are not positive, an unknown mode, or indices out of range.

    See Also
    --------
    Embedding

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> bag = fnn.nn.EmbeddingBag(10, 4, mode="sum")
    >>> ids = np.array([1, 2, 3, 7, 8])
    >>> out = bag(ids, offsets=np.array([0, 3]))              # bags [1, 2, 3] and [7, 8]
    >>> out.shape, np.allclose(out[1], bag.weight.data[7] + bag.weight.data[8])
    ((2, 4), True)
    """

    def __init__(self, num_embeddings, embedding_dim, mode="mean", padding_idx=None):
        super().__init__()
        if int(num_embeddings) <= 0 or int(embedding_dim) <= 0:
            raise ValueError(f"EmbeddingBag: num_embeddings and embedding_dim must be positive, got "
                             f"{num_embeddings} and {embedding_dim}")
        if mode not in ("sum", "mean"):
            raise ValueError(f"EmbeddingBag: mode must be 'sum' or 'mean', got {mode!r}")
        self.num_embeddings, self.embedding_dim, self.mode = int(num_embeddings), int(embedding_dim), mode
        self.padding_idx = _padding_index("EmbeddingBag", padding_idx, self.num_embeddings)
        self.weight = Parameter(np.empty((self.num_embeddings, self.embedding_dim), np.float32))
        init.normal_(self.weight)
        if self.padding_idx is not None:
            self.weight.data[self.padding_idx] = 0
        self._cache = None
        self.grad_per_sample_weights = None

    def extra_repr(self):
        s = f"{self.num_embeddings}, {self.embedding_dim}, mode={self.mode!r}"
        return s + (f", padding_idx={self.padding_idx}" if self.padding_idx is not None else "")

    def forward(self, input, offsets=None, per_sample_weights=None):
        x = _indices(self, input)
        dtype = self.weight.dtype
        if x.ndim == 2:
            if offsets is not None:
                raise ValueError(f"{self!r}: offsets must be None for 2-D input {x.shape}")
            B, L = x.shape
            starts = np.arange(B, dtype=np.int64) * L
        elif x.ndim == 1:
            if offsets is None:
                raise ValueError(f"{self!r}: 1-D input {x.shape} needs offsets")
            starts = np.asarray(offsets)
            if starts.dtype.kind not in "iu" or starts.ndim != 1:
                raise TypeError(f"{self!r}: offsets must be a 1-D integer array, got {starts.dtype} with shape "
                                f"{starts.shape}")
            starts = starts.astype(np.int64)
            if starts.size and (starts[0] != 0 or np.any(np.diff(starts) < 0) or starts[-1] > x.size):
                raise ValueError(f"{self!r}: offsets must start at 0 and be non-decreasing within the input of "
                                 f"length {x.size}, got {starts.tolist()}")
            B = starts.size
        else:
            raise ValueError(f"{self!r}: input must be 1-D (with offsets) or 2-D (B, L), got shape {x.shape}")
        idx = x.reshape(-1)
        lengths = np.diff(np.append(starts, idx.size))
        bag = np.repeat(np.arange(B), lengths)  # bag of each entry
        if per_sample_weights is not None:
            if self.mode != "sum":
                raise ValueError(f"{self!r}: per_sample_weights are only supported with mode='sum'")
            w = as_float_array(self, per_sample_weights, dtype, "per_sample_weights")
            if w.shape != x.shape:
                raise ValueError(f"{self!r}: per_sample_weights has shape {w.shape}, input has shape {x.shape}")
            w = w.reshape(-1)
        else:
            w = np.ones(idx.size, dtype)
        if self.padding_idx is not None:
            w = np.where(idx == self.padding_idx, dtype.type(0), w)
        scale = w
        if self.mode == "mean":
            counts = np.bincount(bag, weights=(w != 0) if self.padding_idx is not None else None, minlength=B)
            scale = w / np.maximum(counts, 1).astype(dtype)[bag]
        out = np.zeros((B, self.embedding_dim), dtype)
        if idx.size:  # out[bag[k]] += scale[k]·weight[idx[k]], in order, without gathering the rows first
            ops.scatter_add_rows(out, _int64(bag), self.weight.data, _int64(idx), np.ascontiguousarray(scale, dtype))
        self._cache = (x.shape, idx, bag, scale, per_sample_weights is not None, B)
        return out

    def backward(self, grad_output, need_input_grad=True):
        require_forward(self, self._cache)
        shape, idx, bag, scale, has_weights, B = self._cache
        g = as_float_array(self, grad_output, self.weight.dtype, "grad_output")
        if g.shape != (B, self.embedding_dim):
            raise ValueError(f"{self!r}: grad_output has shape {g.shape}, but the forward output had shape "
                             f"{(B, self.embedding_dim)}")
        self.grad_per_sample_weights = None
        if has_weights:
            gw = np.einsum("ij,ij->i", self.weight.data[idx], g[bag])
            if self.padding_idx is not None:
                gw[idx == self.padding_idx] = 0
            self.grad_per_sample_weights = gw.reshape(shape)
        keep = scale != 0  # padding entries (and zero weights) give the table nothing
        _scatter_rows(self.weight, idx[keep], g, rows_index=bag[keep], scale=scale[keep])
        return None

    def backward_inputs(self, grad_outputs, need_input_grad, num_inputs):
        """Graphs: the indices and offsets get no gradient, per_sample_weights get theirs."""
        self.backward(*grad_outputs)
        return (None, None, self.grad_per_sample_weights)[:num_inputs]
