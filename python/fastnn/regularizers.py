"""Weight penalties and constraints: L2 weight decay, L1, max-norm.

With C₀ the data loss averaged over the n training samples:

    L2:  C = C₀ + λ/(2n)·Σw²   gradient λ/n·w     so SGD does w ← (1 − ηλ/n)·w − η·∂C₀/∂w
    L1:  C = C₀ + λ/n·Σ|w|     gradient λ/n·sgn(w) so SGD does w ← w − ηλ/n·sgn(w) − η·∂C₀/∂w
    MaxNorm(c): after every step each unit's incoming weight vector (a row of a Linear weight (out, in), an
                output filter of a conv weight (out, in, k...)) is rescaled to norm ≤ c.

n defaults to 1 (then L2 is ½λΣw², the same as SGD's weight_decay=λ); pass n=len(x_train) for the seed's
form. Biases are not penalised or constrained by default: a Module target selects its trainable parameters
except those named "bias" and those with fewer than 2 dimensions (biases, norm scales); include_bias=True
takes them all. A target may also be a Parameter or a list of Parameters, used as given.

The Trainer calls backward, optimizer.step() and zero_grad() with nothing in between, so penalties enter
through an optimizer wrapper that adds their gradients to .grad just before the wrapped step and applies the
constraints just after it; per layer or per model by the targets given:

    opt = fastnn.regularizers.Regularized(fastnn.optim.SGD(model.parameters(), lr=0.1),
                                          (model, L2(lam=5.0, n=len(x))), (model[0], MaxNorm(3.0)))
    trainer = fastnn.Trainer(model, loss, opt, callbacks=[fastnn.regularizers.PenaltyLogger()])

`opt.penalty` is the penalty of the last step (computed from the weights the batch's loss saw, so
loss + penalty is that batch's full objective); PenaltyLogger adds the epoch's mean to the logs and the
history as "penalty". The wrapper works in a hand-written loop too: it is an optimizer.
"""
import numpy as np

from .callbacks import Callback
from .nn.module import Module, Parameter

__all__ = ["L1", "L2", "MaxNorm", "Regularized", "PenaltyLogger", "penalized_parameters"]


def penalized_parameters(target, include_bias=False):
    """The parameters a penalty or constraint on ``target`` acts on.

    Parameters
    ----------
    target : Module, Parameter or iterable of Parameter (or of (name, Parameter) pairs)
        A Module gives its trainable parameters except biases and other 1-D ones (unless
        ``include_bias``); Parameters are used as given, if trainable.
    include_bias : bool, default False
        Take a Module's biases and 1-D parameters too.

    Returns
    -------
    list of Parameter

    Raises
    ------
    TypeError
        If an item is not a Parameter.

    Examples
    --------
    >>> import fastnn as fnn
    >>> model = fnn.nn.Sequential(fnn.nn.Linear(3, 4), fnn.nn.BatchNorm1d(4))
    >>> [p.shape for p in fnn.regularizers.penalized_parameters(model)]
    [(4, 3)]
    >>> len(fnn.regularizers.penalized_parameters(model, include_bias=True))
    4
    """
    if isinstance(target, Module):
        return [p for name, p in target.named_parameters() if p.requires_grad and
                (include_bias or (name.rsplit(".", 1)[-1] != "bias" and p.data.ndim >= 2))]
    if isinstance(target, Parameter):
        return [target] if target.requires_grad else []
    params = [p[1] if isinstance(p, tuple) and len(p) == 2 else p for p in target]
    for p in params:
        if not isinstance(p, Parameter):
            raise TypeError(f"regularizers: a target must be a Module, a Parameter or Parameters, got "
                            f"{type(p).__name__}")
    return [p for p in params if p.requires_grad]


def _nonnegative(owner, name, value):
    value = float(value)
    if not value >= 0:
        raise ValueError(f"{owner}: {name} must be >= 0, got {value}")
    return value


class _Penalty:
    """penalty(target) -> float; add_gradient(target) adds the penalty's gradient to each .grad and returns
    the penalty."""

    def __init__(self, lam, n=1, include_bias=False):
        name = type(self).__name__
        self.lam = _nonnegative(name, "lam", lam)
        self.n = float(n)
        if not self.n > 0:
            raise ValueError(f"{name}: n (training-set size) must be > 0, got {n}")
        self.include_bias = bool(include_bias)

    def __repr__(self):
        extra = ", include_bias=True" if self.include_bias else ""
        return f"{type(self).__name__}(lam={self.lam:g}, n={self.n:g}{extra})"

    def penalty(self, target):
        return float(sum(self._value(p.data) for p in penalized_parameters(target, self.include_bias)))

    def add_gradient(self, target):
        total = 0.0
        for p in penalized_parameters(target, self.include_bias):
            total += self._value(p.data)
            g = p.grad  # property: a lazily zeroed gradient is zero-filled first
            g += self._gradient(p.data).astype(g.dtype, copy=False)
        return float(total)


class L2(_Penalty):
    """L2 weight penalty (weight decay): ``λ/(2n) · Σw²``, gradient ``λ/n · w``.

    With ``n = 1`` it is ``½λΣw²``, the same as SGD's ``weight_decay=λ``. Use it inside
    :class:`Regularized`.

    Parameters
    ----------
    lam : float
        The strength λ; >= 0.
    n : float, default 1
        The training-set size the penalty is divided by (1: the plain form; ``len(x_train)`` for the
        per-sample form of Nielsen's book).
    include_bias : bool, default False
        Penalise biases and other 1-D parameters too (by default a Module target's parameters named
        ``bias`` or with fewer than 2 dimensions are left alone).

    Raises
    ------
    ValueError
        If ``lam < 0`` or ``n <= 0``.

    See Also
    --------
    L1, MaxNorm, Regularized

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> layer = fnn.nn.Linear(2, 1)
    >>> layer.weight.data[...] = [[3.0, 4.0]]
    >>> fnn.regularizers.L2(lam=0.1).penalty(layer)          # 0.1 / 2 * (9 + 16)
    1.25
    """

    def _value(self, w):
        return self.lam / (2 * self.n) * float(np.sum(np.square(w, dtype=np.float64)))

    def _gradient(self, w):
        return (self.lam / self.n) * w


class L1(_Penalty):
    """L1 weight penalty: ``λ/n · Σ|w|``, gradient ``λ/n · sgn(w)`` (0 at ``w = 0``).

    Drives small weights to exactly zero over training. Use it inside :class:`Regularized`.

    Parameters
    ----------
    lam : float
        The strength λ; >= 0.
    n : float, default 1
        The training-set size the penalty is divided by (1: the plain form; ``len(x_train)`` for the
        per-sample form of Nielsen's book).
    include_bias : bool, default False
        Penalise biases and other 1-D parameters too (by default a Module target's parameters named
        ``bias`` or with fewer than 2 dimensions are left alone).

    Raises
    ------
    ValueError
        If ``lam < 0`` or ``n <= 0``.

    See Also
    --------
    L2, Regularized

    Examples
    --------
    >>> import fastnn as fnn
    >>> layer = fnn.nn.Linear(2, 1)
    >>> layer.weight.data[...] = [[3.0, -4.0]]
    >>> fnn.regularizers.L1(lam=0.1).penalty(layer)
    0.7000000000000001
    """

    def _value(self, w):
        return self.lam / self.n * float(np.sum(np.abs(w), dtype=np.float64))

    def _gradient(self, w):
        return (self.lam / self.n) * np.sign(w)


class MaxNorm:
    """Max-norm constraint: after each step, rescale every unit's incoming weight vector to norm at most ``c``.

    A unit's vector is index 0 of a weight: a row of a ``Linear`` weight ``(out, in)``, an output filter of
    a convolution weight ``(out, in, k...)``. Vectors already within the bound are left exactly as they are.

    Parameters
    ----------
    c : float
        The largest Euclidean norm allowed; > 0.
    include_bias : bool, default False
        Constrain biases too (each element's magnitude).

    Raises
    ------
    ValueError
        If ``c <= 0``.

    See Also
    --------
    Regularized

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> layer = fnn.nn.Linear(2, 2)
    >>> layer.weight.data[...] = [[3.0, 4.0], [0.3, 0.4]]
    >>> fnn.regularizers.MaxNorm(1.0).apply(layer)
    >>> np.linalg.norm(layer.weight.data, axis=1)
    array([1. , 0.5], dtype=float32)
    """

    def __init__(self, c, include_bias=False):
        self.c = float(c)
        if not self.c > 0:
            raise ValueError(f"MaxNorm: c must be > 0, got {c}")
        self.include_bias = bool(include_bias)

    def __repr__(self):
        return f"MaxNorm(c={self.c:g})"

    def apply(self, target):
        for p in penalized_parameters(target, self.include_bias):
            w = p.data
            if w.ndim < 2:
                norms = np.abs(w)
                w *= np.where(norms > self.c, self.c / np.maximum(norms, 1e-300), 1.0).astype(w.dtype)
                continue
            rows = w.reshape(w.shape[0], -1)
            norms = np.sqrt(np.sum(np.square(rows, dtype=np.float64), axis=1))
            scale = np.where(norms > self.c, self.c / np.maximum(norms, 1e-300), 1.0)
            rows *= scale[:, None].astype(w.dtype)


class Regularized:
    """An optimizer wrapper that adds penalty gradients before, and applies constraints after, each step.

    Everything else (``lr``, ``zero_grad``, ``param_groups``, ``state_dict``...) is the wrapped optimizer's;
    ``opt.lr = ...`` reaches it. ``penalty`` is the last step's total penalty, computed from the weights the
    batch's loss saw. It works with :class:`fastnn.Trainer` and in hand-written loops.

    Parameters
    ----------
    optimizer : fastnn.optim.Optimizer
        The optimizer to wrap.
    *terms : tuple of (target, regularizer)
        Each a pair: a target (a Module, a Parameter or a list of them) and an :class:`L1`, :class:`L2` or
        :class:`MaxNorm`.

    Raises
    ------
    TypeError
        If a term is not such a pair.

    See Also
    --------
    PenaltyLogger : adds the penalty to the training logs.

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> R = fnn.regularizers
    >>> _ = fnn.manual_seed(0)
    >>> model = fnn.nn.Sequential(fnn.nn.Linear(3, 8), fnn.nn.ReLU(), fnn.nn.Linear(8, 2))
    >>> opt = R.Regularized(fnn.optim.SGD(model.parameters(), lr=0.1), (model, R.L2(lam=0.01)),
    ...                     (model[0], R.MaxNorm(1.0)))
    >>> loss_fn = fnn.nn.CrossEntropyLoss()
    >>> x, y = np.ones((4, 3), np.float32), np.array([0, 1, 0, 1])
    >>> loss = loss_fn(model(x), y)
    >>> _ = model.backward(loss_fn.backward()); opt.step(); opt.zero_grad()
    >>> opt.penalty > 0, bool((np.linalg.norm(model[0].weight.data, axis=1) <= 1 + 1e-6).all())
    (True, True)
    """

    def __init__(self, optimizer, *terms):
        object.__setattr__(self, "optimizer", optimizer)
        penalties, constraints = [], []
        for term in terms:
            if not (isinstance(term, tuple) and len(term) == 2):
                raise TypeError(f"Regularized: each term must be a pair (target, regularizer), got {term!r}")
            target, reg = term
            if isinstance(reg, _Penalty):
                penalties.append((target, reg))
            elif isinstance(reg, MaxNorm):
                constraints.append((target, reg))
            else:
                raise TypeError(f"Regularized: {type(reg).__name__} is not an L1, L2 or MaxNorm")
        object.__setattr__(self, "penalties", penalties)
        object.__setattr__(self, "constraints", constraints)
        object.__setattr__(self, "penalty", 0.0)

    def step(self, closure=None):
        """Add the penalties' gradients, take the wrapped optimizer's step, then apply the constraints.

        Parameters
        ----------
        closure : callable, optional
            Re-evaluates the model and returns the loss (called first, as PyTorch's optimizers do).

        Returns
        -------
        float or None
            The closure's loss, if a closure was given.
        """
        loss = None if closure is None else closure()
        penalty = 0.0
        for target, reg in self.penalties:
            penalty += reg.add_gradient(target)
        object.__setattr__(self, "penalty", penalty)
        self.optimizer.step()
        for target, constraint in self.constraints:
            constraint.apply(target)
        return loss

    def __getattr__(self, name):
        if name == "optimizer":  # not yet set (copy/unpickle): no recursion
            raise AttributeError(name)
        return getattr(self.optimizer, name)

    def __setattr__(self, name, value):  # opt.lr = ... reaches the wrapped optimizer
        setattr(self.optimizer, name, value)

    def __repr__(self):
        terms = ", ".join(f"{reg!r}" for _, reg in self.penalties + self.constraints)
        return f"Regularized({type(self.optimizer).__name__}, {terms})"


class PenaltyLogger(Callback):
    """Add a :class:`Regularized` optimizer's penalty to the training logs.

    ``"penalty"`` goes into each batch's logs and, averaged over the epoch's batches, into the epoch logs and
    ``trainer.history``. List it before loggers that should see it.

    Raises
    ------
    TypeError
        During training, if the Trainer's optimizer is not :class:`Regularized`.

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> R = fnn.regularizers
    >>> model = fnn.nn.Sequential(fnn.nn.Linear(3, 2))
    >>> opt = R.Regularized(fnn.optim.SGD(model.parameters(), lr=0.1), (model, R.L2(lam=0.1)))
    >>> trainer = fnn.Trainer(model, fnn.nn.CrossEntropyLoss(), opt, callbacks=[R.PenaltyLogger()])
    >>> history = trainer.fit(np.ones((8, 3), np.float32), np.zeros(8, int), epochs=2, verbose=0)
    >>> len(history["penalty"])
    2
    """

    def on_epoch_begin(self, epoch, logs=None):
        self._sum, self._count = 0.0, 0

    def on_batch_end(self, batch, logs=None):
        penalty = getattr(self.trainer.optimizer, "penalty", None)
        if penalty is None:
            raise TypeError("PenaltyLogger: the Trainer's optimizer is not fastnn.regularizers.Regularized")
        self._sum += penalty
        self._count += 1
        if logs is not None:
            logs["penalty"] = penalty

    def on_epoch_end(self, epoch, logs=None):
        if not self._count:
            return
        value = self._sum / self._count
        if logs is not None:
            logs["penalty"] = value
        self.trainer.history.setdefault("penalty", []).append(value)
