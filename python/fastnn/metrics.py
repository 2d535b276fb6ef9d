"""Training metrics: accuracy, top-k accuracy and user functions, accumulated exactly over an epoch.

A metric object has `reset()`, `update(pred, target)` (one batch) and `result()` (the value over every
batch since the last reset). Accuracies keep integer counts of correct and total predictions, so the epoch
value is exact, not an average of batch averages; a user function `fn(pred, target) -> float` is averaged
with each batch weighted by its number of samples.

The Trainer accepts, in `metrics=[...]`:

- "accuracy" (or "acc"): class accuracy. Outputs (N, C) with C > 1 are compared by argmax with integer
  labels (N,) or with one-hot / probability targets (N, C) (their argmax). Outputs (N,) or (N, 1) are
  binary: `pred > threshold` (0.5) against `target > 0.5`. Higher-dimensional outputs follow PyTorch's
  layout: classes on axis 1, e.g. (N, C, L) with labels (N, L); (N, L, C) with labels (N, L) works too.
- "top5_accuracy", "top_3_acc", "top_k_accuracy" (k=5), or `TopKAccuracy(k)`: the true class is among the
  k highest scores (ties at the boundary count as hits, like TensorFlow's in_top_k).
- any `Metric` instance, or a callable `fn(pred, target) -> float` recorded under `fn.__name__`.

The key in logs and history is the string given (so "acc" is logged as "acc"), or the metric's `name`.
"""
import copy
import re

import numpy as np

__all__ = ["Metric", "Accuracy", "TopKAccuracy", "MeanMetric", "accuracy", "top_k_accuracy", "get"]


def _as_array(a):
    return a if isinstance(a, np.ndarray) else np.asarray(a)


def _as_labels(t, what):
    """Integer class labels from an integer, boolean or integral-valued float array."""
    if t.dtype.kind in "iub":
        return t
    if t.dtype.kind == "f":
        if not np.all(np.isfinite(t)) or not np.array_equal(t, np.round(t)):
            raise ValueError(f"{what}: targets of shape {t.shape} are floats that are not class indices; "
                             f"give integer labels or one-hot targets with the same shape as the output")
        return t.astype(np.int64)
    raise TypeError(f"{what}: targets must be numeric, got dtype {t.dtype}")


def _class_scores_and_labels(pred, target, what):
    """(scores with classes on the last axis, flattened to (M, C)), (labels (M,)) for a multi-class output."""
    nd = pred.ndim
    if target.shape == pred.shape:  # one-hot or probability targets
        axis = 1 if nd > 2 else -1
        labels = target.argmax(axis=axis)
    elif target.shape == pred.shape[:1] + pred.shape[2:]:  # PyTorch layout (N, C, d1, ...) / (N, C)
        axis = 1
        labels = _as_labels(target, what)
    elif target.shape == pred.shape[:-1]:  # channels-last (N, d1, ..., C)
        axis = -1
        labels = _as_labels(target, what)
    else:
        raise ValueError(f"{what}: output of shape {pred.shape} needs integer labels of shape "
                         f"{pred.shape[:1] + pred.shape[2:]} or targets of shape {pred.shape}, "
                         f"got targets of shape {target.shape}")
    scores = pred if nd == 2 else np.moveaxis(pred, axis, -1).reshape(-1, pred.shape[axis])
    labels = labels.reshape(-1)
    num_classes = scores.shape[1]
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{what}: labels must lie in [0, {num_classes}) for an output of shape {pred.shape}, "
                         f"got values in [{labels.min()}, {labels.max()}]")
    return scores, labels


def _is_binary_output(pred):
    return pred.ndim == 1 or (pred.ndim == 2 and pred.shape[1] == 1)


def accuracy_counts(pred, target, threshold=0.5):
    """(number correct, number of predictions) for one batch; see the module docstring for the rules."""
    pred, target = _as_array(pred), _as_array(target)
    if (pred.ndim == 2 and target.ndim == 1 and target.dtype.kind in "iu" and pred.shape[1] > 1
            and len(target) == len(pred) and len(target)):
        # Fast path for the common case, (N, C) scores with integer labels (a few microseconds a batch).
        if target.min() < 0 or target.max() >= pred.shape[1]:
            _class_scores_and_labels(pred, target, "accuracy")  # raises the range error
        return int(np.count_nonzero(pred.argmax(axis=1) == target)), len(target)
    what = "accuracy"
    if pred.ndim == 0 or len(pred) != len(target):
        raise ValueError(f"{what}: output of shape {pred.shape} and targets of shape {target.shape} "
                         f"do not have the same number of samples")
    if _is_binary_output(pred):
        if target.size != pred.size:
            raise ValueError(f"{what}: binary output of shape {pred.shape} needs targets of shape "
                             f"({pred.shape[0]},) or ({pred.shape[0]}, 1), got {target.shape}")
        predicted = pred.reshape(-1) > threshold
        truth = target.reshape(-1) > 0.5
        return int(np.count_nonzero(predicted == truth)), int(pred.size)
    scores, labels = _class_scores_and_labels(pred, target, what)
    return int(np.count_nonzero(scores.argmax(axis=1) == labels)), int(labels.size)


def top_k_counts(pred, target, k):
    """(number of samples whose true class is among the k highest scores, number of samples)."""
    pred, target = _as_array(pred), _as_array(target)
    what = f"top{k}_accuracy"
    if pred.ndim < 2 or len(pred) != len(target):
        raise ValueError(f"{what}: needs an output of shape (N, C) and N targets, got output {pred.shape} "
                         f"and targets {target.shape}")
    scores, labels = _class_scores_and_labels(pred, target, what)
    true_score = scores[np.arange(len(labels)), labels]
    # Hit when fewer than k classes score strictly higher than the true class (ties count as hits).
    higher = np.count_nonzero(scores > true_score[:, None], axis=1)
    return int(np.count_nonzero(higher < k)), int(labels.size)


def accuracy(pred, target, threshold=0.5):
    """Fraction of correct predictions in one batch.

    Multi-class outputs ``(N, C)`` are compared by argmax with integer labels ``(N,)`` or with one-hot /
    probability targets ``(N, C)``; outputs ``(N,)`` or ``(N, 1)`` are binary: ``pred > threshold`` against
    ``target > 0.5``. Higher-dimensional outputs have the classes on axis 1 (PyTorch's layout) or last.

    Parameters
    ----------
    pred : ndarray
        Model outputs (class scores, or one score per sample for a binary output).
    target : ndarray
        Integer labels, or targets of the same shape as ``pred``.
    threshold : float, default 0.5
        Decision threshold of binary outputs (0 for logits).

    Returns
    -------
    float
        Correct predictions / samples (NaN for an empty batch).

    Raises
    ------
    ValueError
        If the shapes do not fit together, or labels are out of range.

    See Also
    --------
    Accuracy : the same, accumulated over batches.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn.metrics import accuracy
    >>> accuracy(np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]]), np.array([1, 0, 0]))
    0.6666666666666666
    >>> accuracy(np.array([0.2, 0.7]), np.array([0, 1]))          # binary
    1.0
    """
    c, n = accuracy_counts(pred, target, threshold)
    return c / n if n else float("nan")


def top_k_accuracy(pred, target, k=5):
    """Fraction of samples whose true class is among the ``k`` highest scores.

    Ties at the boundary count as hits, like TensorFlow's ``in_top_k``.

    Parameters
    ----------
    pred : ndarray, shape (N, C)
        Class scores.
    target : ndarray, shape (N,)
        Integer labels (or one-hot targets of the same shape as ``pred``).
    k : int, default 5
        How many of the highest scores count.

    Returns
    -------
    float
        Hits / samples.

    Raises
    ------
    ValueError
        If ``pred`` is not ``(N, C)`` with ``N`` targets.

    See Also
    --------
    TopKAccuracy

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn.metrics import top_k_accuracy
    >>> scores = np.array([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7]])
    >>> top_k_accuracy(scores, np.array([1, 0]), k=2)
    0.5
    """
    c, n = top_k_counts(pred, target, k)
    return c / n if n else float("nan")


class Metric:
    """Base class of the metrics: accumulate with ``update``, read with ``result``, start again with ``reset``.

    Subclasses set ``name`` (the key in logs and history) and implement ``reset()``,
    ``update(pred, target)`` (one batch) and ``result()`` (the value over every batch since the last reset).
    Give an instance to ``Trainer(metrics=[...])``.

    See Also
    --------
    MeanMetric : a metric from a plain function.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn.metrics import Metric
    >>> class MaxError(Metric):
    ...     name = "max_error"
    ...     def reset(self):
    ...         self.value = 0.0
    ...     def update(self, pred, target):
    ...         self.value = max(self.value, float(np.abs(pred - target).max()))
    ...     def result(self):
    ...         return self.value
    >>> m = MaxError(); m.reset()
    >>> m.update(np.array([1.0, 2.0]), np.array([1.5, 2.0])); m.update(np.array([0.0]), np.array([0.1]))
    >>> m.result()
    0.5
    """

    name = "metric"

    def reset(self):
        raise NotImplementedError

    def update(self, pred, target):
        raise NotImplementedError

    def result(self):
        raise NotImplementedError

    def clone(self):
        """A fresh copy with the same configuration (the Trainer keeps one for training, one for validation).

        Returns
        -------
        Metric
            A reset deep copy.
        """
        m = copy.deepcopy(self)
        m.reset()
        return m

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r})"


class _CountMetric(Metric):
    def __init__(self, name):
        self.name = name
        self.reset()

    def reset(self):
        self.correct = 0
        self.total = 0

    def _counts(self, pred, target):
        raise NotImplementedError

    def update(self, pred, target):
        c, n = self._counts(pred, target)
        self.correct += c
        self.total += n

    def result(self):
        return self.correct / self.total if self.total else float("nan")


class Accuracy(_CountMetric):
    """Class accuracy accumulated exactly over batches (integer counts of correct and total predictions).

    Argmax for multi-class outputs, ``pred > threshold`` for binary ones; see :func:`accuracy`.

    Parameters
    ----------
    threshold : float, default 0.5
        Decision threshold of binary outputs.
    name : str, default "accuracy"
        Key in the logs and history.

    See Also
    --------
    accuracy, TopKAccuracy

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn.metrics import Accuracy
    >>> acc = Accuracy()
    >>> acc.update(np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([0, 0]))
    >>> acc.update(np.array([[0.3, 0.7]]), np.array([1]))
    >>> acc.result(), (acc.correct, acc.total)
    (0.6666666666666666, (2, 3))
    """

    def __init__(self, threshold=0.5, name="accuracy"):
        self.threshold = float(threshold)
        super().__init__(name)

    def _counts(self, pred, target):
        return accuracy_counts(pred, target, self.threshold)


class TopKAccuracy(_CountMetric):
    """Top-k accuracy accumulated exactly over batches: the true class is among the ``k`` highest scores.

    Parameters
    ----------
    k : int, default 5
        How many of the highest scores count; >= 1.
    name : str or None, default None
        Key in the logs; ``None`` gives ``"top{k}_accuracy"``.

    Raises
    ------
    ValueError
        If ``k < 1``.

    See Also
    --------
    top_k_accuracy

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn.metrics import TopKAccuracy
    >>> m = TopKAccuracy(k=2)
    >>> m.update(np.array([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7]]), np.array([1, 0]))
    >>> m.name, m.result()
    ('top2_accuracy', 0.5)
    """

    def __init__(self, k=5, name=None):
        k = int(k)
        if k < 1:
            raise ValueError(f"TopKAccuracy: k must be >= 1, got {k}")
        self.k = k
        super().__init__(name or f"top{k}_accuracy")

    def _counts(self, pred, target):
        return top_k_counts(pred, target, self.k)


class MeanMetric(Metric):
    """A function ``fn(pred, target) -> float`` per batch, averaged with each batch weighted by its size.

    Parameters
    ----------
    fn : callable
        ``fn(pred, target) -> float`` for one batch.
    name : str or None, default None
        Key in the logs; ``None`` uses ``fn.__name__``.

    Raises
    ------
    TypeError
        If ``fn`` is not callable.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn.metrics import MeanMetric
    >>> mae = MeanMetric(lambda p, t: float(np.abs(p - t).mean()), name="mae")
    >>> mae.update(np.array([1.0, 1.0]), np.array([0.0, 0.0]))     # 2 samples, mean 1
    >>> mae.update(np.array([0.0]), np.array([4.0]))               # 1 sample, mean 4
    >>> mae.result()
    2.0
    """

    def __init__(self, fn, name=None):
        if not callable(fn):
            raise TypeError(f"MeanMetric: expected a callable, got {type(fn).__name__}")
        self.fn = fn
        self.name = name or getattr(fn, "__name__", None) or type(fn).__name__
        self.reset()

    def reset(self):
        self.weighted_sum = 0.0
        self.count = 0

    def update(self, pred, target):
        n = len(pred) if np.ndim(pred) else 1
        self.weighted_sum += float(self.fn(pred, target)) * n
        self.count += n

    def result(self):
        return self.weighted_sum / self.count if self.count else float("nan")


_TOPK = re.compile(r"^top_?(\d+|k)_(acc|accuracy|categorical_accuracy)$")
_KNOWN = '"accuracy", "acc", "top5_accuracy" (any k), "top_k_accuracy"'


def get(spec, loss=None):
    """Resolve a metric spec to a :class:`Metric` object, as ``Trainer(metrics=[...])`` does.

    Parameters
    ----------
    spec : str, Metric or callable
        ``"accuracy"`` (or ``"acc"``), ``"top5_accuracy"`` / ``"top_3_acc"`` / ``"top_k_accuracy"`` (k=5), a
        :class:`Metric` (returned as it is), or a named function ``fn(pred, target) -> float``.
    loss : object, optional
        The training loss: ``"accuracy"`` uses threshold 0 for ``BCEWithLogitsLoss`` (logit outputs), 0.5
        otherwise.

    Returns
    -------
    Metric
        The metric; its ``name`` is the string given or the function's name.

    Raises
    ------
    ValueError
        For an unknown name, or a lambda (it has no name for the history).
    TypeError
        For anything else.

    Examples
    --------
    >>> from fastnn.metrics import get
    >>> get("acc").name, get("top3_accuracy").k
    ('acc', 3)
    >>> def mse(pred, target):
    ...     return float(((pred - target) ** 2).mean())
    >>> get(mse).name
    'mse'
    """
    if isinstance(spec, Metric):
        return spec
    if isinstance(spec, str):
        key = spec.strip()
        low = key.lower()
        if low in ("accuracy", "acc"):
            threshold = 0.0 if type(loss).__name__ == "BCEWithLogitsLoss" else 0.5
            return Accuracy(threshold=threshold, name=key)
        m = _TOPK.match(low)
        if m:
            k = 5 if m.group(1) == "k" else int(m.group(1))
            return TopKAccuracy(k, name=key)
        raise ValueError(f"unknown metric {spec!r}; known names: {_KNOWN}, or pass a Metric or a callable "
                         f"fn(pred, target) -> float")
    if callable(spec):
        name = getattr(spec, "__name__", None)
        if not name or name == "<lambda>":
            raise ValueError("a metric function needs a name for the history: use a def, or "
                             "fastnn.metrics.MeanMetric(fn, name='...')")
        return MeanMetric(spec, name=name)
    raise TypeError(f"metric must be a string, a fastnn.metrics.Metric or a callable, got {type(spec).__name__}")
