"""Mini-batches and label-balanced oversampling.

ArrayBatches iterates over in-memory arrays (or numpy.memmap / np.load(..., mmap_mode="r") arrays, which
read only the rows each batch needs); every `for` over it is one epoch, reshuffled:

    for xb, yb in ArrayBatches(x, y, batch_size=64, shuffle=True, transform=aug):
        ...

GeneratorBatches is the protocol for data that does not fit in memory: give it a function that returns a
fresh iterator of chunks (x_chunk, y_chunk) of any length — read from files, a database, a stream — and it
yields batches of exactly batch_size (the last one smaller unless drop_last), optionally shuffled through a
buffer of `shuffle_buffer` samples:

    def chunks():
        for path in files:
            d = np.load(path); yield d["x"], d["y"]
    for xb, yb in GeneratorBatches(chunks, batch_size=64, shuffle_buffer=10_000): ...

BalancedSampler draws indices so every class appears equally often (minority classes oversampled); give
it to ArrayBatches as `sampler`. Randomness: `seed=s` gives an own generator; None uses fastnn's generator.
"""
import numpy as np

from ..random import generator

__all__ = ["ArrayBatches", "GeneratorBatches", "BalancedSampler"]


def _rng(seed):
    return None if seed is None else np.random.default_rng(seed)


def _positive_int(owner, name, value):
    if isinstance(value, bool) or int(value) != value or int(value) < 1:
        raise ValueError(f"{owner}: {name} must be an integer >= 1, got {value!r}")
    return int(value)


class BalancedSampler:
    """Label-balanced oversampling: every epoch yields indices with the same number from every class.

    A class's indices are used in a random order, repeated as often as needed (each sample of a class appears
    ``k`` or ``k + 1`` times), then all are shuffled together. ``len(sampler)`` is ``num_samples``. Give it to
    :class:`ArrayBatches` as ``sampler=``.

    Parameters
    ----------
    labels : array_like, shape (N,)
        The class of every sample.
    num_samples : int or None, default None
        Indices per epoch; None gives ``n_classes`` × the largest class count.
    seed : int or None, default None
        Seed of its own generator; None draws from fastnn's (:func:`fastnn.manual_seed`).

    Raises
    ------
    ValueError
        For labels that are not a non-empty 1-D array, or ``num_samples < 1``.

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> labels = np.array([0] * 8 + [1] * 2)
    >>> sampler = fnn.data.BalancedSampler(labels, seed=0)
    >>> idx = np.fromiter(iter(sampler), int)
    >>> len(sampler), np.bincount(labels[idx]).tolist()
    (16, [8, 8])
    """

    def __init__(self, labels, num_samples=None, seed=None):
        labels = np.asarray(labels)
        if labels.ndim != 1 or len(labels) == 0:
            raise ValueError(f"BalancedSampler: labels must be a non-empty 1-D array, got shape {labels.shape}")
        self.classes, inverse = np.unique(labels, return_inverse=True)
        self._members = [np.flatnonzero(inverse == k) for k in range(len(self.classes))]
        per_class = max(len(m) for m in self._members) if num_samples is None else \
            -(-_positive_int("BalancedSampler", "num_samples", num_samples) // len(self.classes))
        self.per_class = per_class
        self.num_samples = per_class * len(self.classes) if num_samples is None else int(num_samples)
        self._rng = _rng(seed)

    def __len__(self):
        return self.num_samples

    def __iter__(self):
        rng = generator() if self._rng is None else self._rng
        picks = []
        for members in self._members:
            reps = -(-self.per_class // len(members))
            picks.append(np.concatenate([rng.permutation(members) for _ in range(reps)])[:self.per_class])
        index = np.concatenate(picks)
        return iter(index[rng.permutation(len(index))][:self.num_samples])


class ArrayBatches:
    """Mini-batches ``(x[i], y[i])`` of arrays with the same first dimension; re-iterable, one pass per epoch.

    Give it to :meth:`fastnn.Trainer.fit` instead of arrays to add augmentation or a sampler. Batches are
    C-contiguous copies.

    Parameters
    ----------
    x : ndarray or list/tuple of ndarray
        The inputs; a list or tuple for a model of several inputs (its batches are then tuples of arrays).
    y : ndarray or None, default None
        The targets; None yields ``x`` batches alone.
    batch_size : int, default 32
        Samples per batch; >= 1.
    shuffle : bool, default True
        A new order every epoch.
    drop_last : bool, default False
        Skip a final smaller batch.
    sampler : iterable of int, optional
        Indices per epoch instead of ``range(N)`` (e.g. :class:`BalancedSampler`); its order is used as is.
    transform : callable, optional
        Applied to each ``x`` batch (augmentation, :mod:`fastnn.data.transforms`); it gets the tuple when there
        are several inputs.
    seed : int or None, default None
        Seed of the shuffling; None draws from fastnn's generator (:func:`fastnn.manual_seed`).

    Raises
    ------
    ValueError
        If the arrays have different numbers of samples, or ``batch_size < 1``.

    See Also
    --------
    GeneratorBatches

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> x, y = np.arange(10.0).reshape(5, 2), np.arange(5)
    >>> batches = fnn.data.ArrayBatches(x, y, batch_size=2, shuffle=False)
    >>> len(batches), [yb.tolist() for _, yb in batches]
    (3, [[0, 1], [2, 3], [4]])
    >>> ids = np.zeros((5, 3), np.int64)
    >>> (xb, ib), yb = next(iter(fnn.data.ArrayBatches([x, ids], y, batch_size=4)))   # two inputs
    >>> xb.shape, ib.shape, yb.shape
    ((4, 2), (4, 3), (4,))
    """

    def __init__(self, x, y=None, batch_size=32, shuffle=True, drop_last=False, sampler=None, transform=None,
                 seed=None):
        self.x = x
        self.y = y
        self._several = isinstance(x, (tuple, list))
        if self._several:
            if not x:
                raise ValueError("ArrayBatches: x is an empty list of inputs")
            lengths = [len(a) for a in x]
            if len(set(lengths)) != 1:
                raise ValueError(f"ArrayBatches: the inputs have different numbers of samples "
                                 f"{[np.shape(a) for a in x]}")
        if y is not None and len(y) != self._n():
            raise ValueError(f"ArrayBatches: x has {self._n()} samples (shape "
                             f"{[np.shape(a) for a in x] if self._several else np.shape(x)}) but y has {len(y)}")
        self.batch_size = _positive_int("ArrayBatches", "batch_size", batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.sampler = sampler
        self.transform = transform
        self._rng = _rng(seed)

    def _n(self):
        return len(self.x[0]) if self._several else len(self.x)

    def _count(self):
        return len(self.sampler) if self.sampler is not None else self._n()

    def _take(self, rows):
        """x rows (a slice or an index array) as C-contiguous copies (a tuple for several inputs)."""
        if self._several:
            return tuple(np.ascontiguousarray(a[rows]) for a in self.x)
        return np.ascontiguousarray(self.x[rows])

    def __len__(self):
        n = self._count()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        if self.sampler is not None:
            index = np.fromiter(iter(self.sampler), dtype=np.int64)
        elif self.shuffle:
            index = (generator() if self._rng is None else self._rng).permutation(self._n())
        else:
            index = None
        n = self._n() if index is None else len(index)
        stop_at = n - n % self.batch_size if self.drop_last else n
        for start in range(0, stop_at, self.batch_size):
            stop = min(start + self.batch_size, n)
            rows = slice(start, stop) if index is None else index[start:stop]
            xb = self._take(rows)
            yb = None if self.y is None else np.ascontiguousarray(self.y[rows])
            if self.transform is not None:
                xb = self.transform(xb)
            if yb is not None:
                yield xb, yb
            else:
                yield (xb,) if self._several else xb  # (inputs,): a tuple of inputs is not read as (x, y)


class GeneratorBatches:
    """Re-batch the chunks of a generator into mini-batches, for data that does not fit in memory.

    ``make_chunks()`` is called once per epoch and must return a fresh iterator of ``(x_chunk, y_chunk)`` pairs
    (or ``x_chunk`` arrays): a generator function works.

    Parameters
    ----------
    make_chunks : callable
        Returns a fresh iterator of chunks.
    batch_size : int, default 32
        Samples per batch.
    shuffle_buffer : int, default 0
        With > 0, keep up to that many samples and emit batches drawn at random from them (``tf.data``'s
        shuffle buffer): a partial shuffle with bounded memory.
    drop_last : bool, default False
        Skip a final smaller batch.
    transform : callable, optional
        Applied to each ``x`` batch.
    seed : int or None, default None
        Seed of the shuffle buffer; None draws from fastnn's generator.

    Raises
    ------
    TypeError
        If ``make_chunks`` is not callable.

    See Also
    --------
    ArrayBatches

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> def chunks():
    ...     for start in range(0, 10, 4):
    ...         yield np.arange(start, min(start + 4, 10.0))[:, None], np.arange(start, min(start + 4, 10))
    >>> [len(yb) for _, yb in fnn.data.GeneratorBatches(chunks, batch_size=3)]
    [3, 3, 3, 1]
    """

    def __init__(self, make_chunks, batch_size=32, shuffle_buffer=0, drop_last=False, transform=None,
                 seed=None):
        if not callable(make_chunks):
            raise TypeError("GeneratorBatches: make_chunks must be a callable returning a fresh iterator of "
                            f"chunks, got {type(make_chunks).__name__}")
        self.make_chunks = make_chunks
        self.batch_size = _positive_int("GeneratorBatches", "batch_size", batch_size)
        self.shuffle_buffer = int(shuffle_buffer)
        self.drop_last = bool(drop_last)
        self.transform = transform
        self._rng = _rng(seed)

    def _emit(self, xs, ys):
        xb = np.ascontiguousarray(xs)
        if self.transform is not None:
            xb = self.transform(xb)
        return xb if ys is None else (xb, np.ascontiguousarray(ys))

    def __iter__(self):
        rng = generator() if self._rng is None else self._rng
        bs, capacity = self.batch_size, max(self.shuffle_buffer, self.batch_size)
        buf_x, buf_y, size, labelled = [], [], 0, None
        for chunk in self.make_chunks():
            has_y = isinstance(chunk, tuple)
            if labelled is None:
                labelled = has_y
            elif labelled != has_y:
                raise ValueError("GeneratorBatches: chunks must all be (x, y) pairs or all be x arrays")
            cx, cy = (chunk if has_y else (chunk, None))
            cx = np.asarray(cx)
            if has_y and len(cy) != len(cx):
                raise ValueError(f"GeneratorBatches: a chunk has {len(cx)} x rows but {len(cy)} labels")
            buf_x.append(cx)
            if has_y:
                buf_y.append(np.asarray(cy))
            size += len(cx)
            while size >= capacity:
                X = np.concatenate(buf_x)
                Y = np.concatenate(buf_y) if labelled else None
                if self.shuffle_buffer:
                    take = rng.choice(len(X), bs, replace=False)
                    keep = np.ones(len(X), bool)
                    keep[take] = False
                    yield self._emit(X[take], None if Y is None else Y[take])
                    buf_x, buf_y = [X[keep]], ([Y[keep]] if labelled else [])
                else:
                    yield self._emit(X[:bs], None if Y is None else Y[:bs])
                    buf_x, buf_y = [X[bs:]], ([Y[bs:]] if labelled else [])
                size -= bs
        if size:
            X = np.concatenate(buf_x)
            Y = np.concatenate(buf_y) if labelled else None
            if self.shuffle_buffer:
                order = rng.permutation(len(X))
                X, Y = X[order], (None if Y is None else Y[order])
            for start in range(0, len(X), bs):
                if len(X) - start < bs and self.drop_last:
                    break
                yield self._emit(X[start:start + bs], None if Y is None else Y[start:start + bs])
