"""Losses: `value = loss(pred, target)`, then `grad = loss.backward()`, the gradient of that value w.r.t. pred.

Each forward is one C++ call (cpp/kernels/losses.hpp) that computes the loss and its gradient together;
backward returns that gradient (the array itself, no copy), scaled by grad_output when one is given.
Names, arguments, defaults and semantics are PyTorch's. The reduced value is a Python float; with
reduction='none' it is an array of per-sample (per-element) losses, and backward(grad_output) takes an array
of that shape: per-item weights of the gradient (None means all ones).

L1Loss, SmoothL1Loss, HuberLoss, KLDivLoss and MultiMarginLoss compute value and gradient together in
vectorised NumPy (element-wise work, no kernel needed), in pred's dtype (float32 or float64).

MSELoss also has reduction='half_sum', E = ½ Σ (pred − target)², the squared error of the seed notes (their
worked example's E_total); its gradient is pred − target. The batch-averaged ½-form C = 1/(2n) Σ‖y − a‖² is
half_sum divided by the batch size n.
"""
import numpy as np

from .. import ops
from ._checks import as_float_array, module_dtype, require_forward
from .module import Module

__all__ = ["CrossEntropyLoss", "NLLLoss", "MSELoss", "BCELoss", "BCEWithLogitsLoss", "L1Loss", "SmoothL1Loss",
           "HuberLoss", "KLDivLoss", "MultiMarginLoss"]


def _as_array(module, value, name):
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (list, tuple, int, float, np.number)):
        return np.asarray(value)
    raise TypeError(f"{module!r}: {name} must be a numpy.ndarray, got {type(value).__name__}")


def _optional_weight(module, weight, name):
    """A user weight array kept as a buffer: float64 if given so, else float32; None stays None."""
    if weight is None:
        return None
    w = _as_array(module, weight, name)
    if w.dtype.kind not in "fiub":
        raise TypeError(f"{type(module).__name__}: {name} must be a real array, got dtype {w.dtype}")
    w = np.array(w, dtype=np.float64 if w.dtype == np.float64 else np.float32)
    if not np.all(np.isfinite(w)):
        raise ValueError(f"{type(module).__name__}: {name} contains NaN or infinity")
    return w


def _rows(a):
    """(N, C, d1, ...) -> contiguous (N·d1·…, C): the class axis last."""
    return np.ascontiguousarray(np.moveaxis(a, 1, -1)).reshape(-1, a.shape[1])


class _Loss(Module):
    """Shared by every loss: the reduction, the gradient kept by forward, and backward."""

    _reductions = ("none", "mean", "sum")
    _class_axis = False  # True when per-item losses lack the class axis 1 of pred (CrossEntropy, NLL)

    def __init__(self, reduction="mean"):
        super().__init__()
        if reduction not in self._reductions:
            raise ValueError(f"{type(self).__name__}: reduction must be one of "
                             f"{', '.join(map(repr, self._reductions))}; got {reduction!r}")
        self.reduction = reduction
        self._grad = None

    def extra_repr(self):
        return "" if self.reduction == "mean" else f"reduction={self.reduction!r}"

    def _run(self, kernel, *args):
        try:
            value, grad = kernel(*args)
        except ValueError as e:
            raise ValueError(f"{self!r}: {e}") from None
        object.__setattr__(self, "_grad", grad)  # plain attribute: skip Module's registry (hot path)
        return value

    def _buffer(self, name, dtype):
        w = getattr(self, name)
        return w if w is None or w.dtype == dtype else w.astype(dtype)

    def _target(self, target, pred):
        """A real-valued target of pred's shape, as pred's dtype."""
        t = _as_array(self, target, "target")
        if t.dtype.kind not in "fiub":
            raise TypeError(f"{self!r}: target must be a real array, got dtype {t.dtype} with shape {t.shape}")
        if t.shape != pred.shape:
            raise ValueError(f"{self!r}: target shape {t.shape} does not match input shape {pred.shape}")
        return np.ascontiguousarray(t, dtype=pred.dtype)

    def backward(self, grad_output=None):
        """Gradient of the last forward's loss w.r.t. its pred, times grad_output (a scalar, or for
        reduction='none' an array of the per-item loss shape; None means 1)."""
        grad = self._grad
        require_forward(self, grad)
        if grad_output is None:
            return grad
        if self.reduction == "none":
            item_shape = grad.shape[:1] + grad.shape[2:] if self._class_axis else grad.shape
            g = as_float_array(self, grad_output, grad.dtype, "grad_output")
            if g.shape != item_shape:
                raise ValueError(f"{self!r}: grad_output has shape {g.shape}, but the forward output had "
                                 f"shape {item_shape}")
            return grad * (np.expand_dims(g, 1) if self._class_axis else g)
        g = np.asarray(grad_output)
        if g.size != 1 or g.dtype.kind not in "fiu":
            raise ValueError(f"{self!r}: grad_output must be a real scalar for reduction={self.reduction!r}, "
                             f"got {g.dtype} of shape {g.shape}")
        scale = g.item()
        return grad if scale == 1 else grad * grad.dtype.type(scale)


class _ClassLoss(_Loss):
    """Losses over class scores: pred (N, C) or (N, C, d1, ...), integer labels (N,) or (N, d1, ...)."""

    _class_axis = True

    def __init__(self, weight=None, ignore_index=-100, reduction="mean"):
        super().__init__(reduction)
        w = _optional_weight(self, weight, "weight")
        if w is not None and w.ndim != 1:
            raise ValueError(f"{type(self).__name__}: weight must be 1-D (one entry per class), got shape {w.shape}")
        if w is None:
            self.weight = None
        else:
            self.register_buffer("weight", w)
        self.ignore_index = int(ignore_index)

    def extra_repr(self):
        parts = [] if self.ignore_index == -100 else [f"ignore_index={self.ignore_index}"]
        base = super().extra_repr()
        return ", ".join(parts + ([base] if base else []))

    def _prepare(self, pred, target, what, allow_probabilities):
        """(x, t, weight, spatial_shape): x and t as rows (M, C) and (M,) (or (M, C) probabilities), and
        pred's shape when it had spatial dimensions (None for (N, C))."""
        x = as_float_array(self, pred, module_dtype(self, pred), "input")
        t = _as_array(self, target, "target")
        if x.ndim < 2:
            raise ValueError(f"{self!r}: expected {what} of shape (N, C) or (N, C, d1, ...), got {x.shape}")
        classes = x.shape[1]
        item_shape = x.shape[:1] + x.shape[2:]
        kind = t.dtype.kind
        if kind in "iu":
            if t.shape != item_shape:
                raise ValueError(f"{self!r}: target shape {t.shape} does not match input shape {x.shape}: "
                                 f"class-index targets need shape {item_shape}")
            if t.dtype != np.int64 or not t.flags.c_contiguous:
                t = np.ascontiguousarray(t, dtype=np.int64)
        elif kind == "f" and allow_probabilities and t.shape == x.shape:
            t = np.ascontiguousarray(t, dtype=x.dtype)
        elif kind == "f" and t.shape in (item_shape, x.shape):
            raise TypeError(f"{self!r}: class-index target must be an integer array, got dtype {t.dtype} "
                            f"with shape {t.shape}" +
                            (f" (float targets are class probabilities of shape {x.shape})"
                             if allow_probabilities else ""))
        elif kind == "f":
            raise ValueError(f"{self!r}: target shape {t.shape} does not match input shape {x.shape}")
        else:
            raise TypeError(f"{self!r}: target must be integer class indices"
                            f"{' or float class probabilities' if allow_probabilities else ''}, "
                            f"got dtype {t.dtype} with shape {t.shape}")
        w = self._buffer("weight", x.dtype)
        if w is not None and w.shape != (classes,):
            raise ValueError(f"{self!r}: weight has shape {w.shape}, but input {x.shape} has {classes} classes")
        if x.ndim == 2:
            return x, t, w, None
        # (N, C, d1, ...) -> rows (N·d1·…, C), the layout the kernels take
        t = _rows(t) if t.dtype.kind == "f" else t.reshape(-1)
        return _rows(x), t, w, x.shape

    def _unrows(self, value, shape):
        """Back from rows to (N, C, d1, ...) for the gradient and (N, d1, ...) for per-item losses."""
        n, c, *rest = shape
        self._grad = np.ascontiguousarray(np.moveaxis(self._grad.reshape(n, *rest, c), -1, 1))
        return value.reshape(n, *rest) if self.reduction == "none" else value


class CrossEntropyLoss(_ClassLoss):
    r"""Softmax cross-entropy on logits, fused and stable (log-sum-exp): PyTorch's CrossEntropyLoss.

    For class-index targets :math:`t_n` and weights :math:`w` (all ones by default),

    .. math:: \ell_n = -w_{t_n} \log \frac{e^{x_{n,t_n}}}{\sum_c e^{x_{n,c}}}, \qquad
       \text{mean} = \frac{\sum_n \ell_n}{\sum_n w_{t_n}}

    (the sum over targets other than ``ignore_index``). Probability targets :math:`p` give
    :math:`\ell_n = -\sum_c w_c\, p_{n,c} \log \mathrm{softmax}(x_n)_c`, averaged over N. With label smoothing
    ε the target becomes :math:`(1 - ε)\,\text{target} + ε / C`. The gradient w.r.t. the logits is
    ``softmax(x) - target`` (weighted, scaled), computed in the same C++ call.

    Parameters
    ----------
    weight : array_like (C,) or None, default None
        Per-class weights.
    ignore_index : int, default -100
        A label that contributes neither loss nor gradient (class-index targets only).
    reduction : {"mean", "sum", "none"}, default "mean"
        ``"mean"`` averages the per-element losses, ``"sum"`` adds them, ``"none"`` returns them.
    label_smoothing : float in [0, 1], default 0.0
        Mix the target with the uniform distribution.

    Shape
    -----
    - Input ``pred``: logits ``(N, C)`` or ``(N, C, d1, ...)``.
    - Target: integer class indices ``(N,)`` / ``(N, d1, ...)``, or float class probabilities of ``pred``'s shape.
    - Output: a float, or ``(N,)`` / ``(N, d1, ...)`` with ``reduction="none"``.
    - ``backward()``: the gradient w.r.t. the logits, ``pred``'s shape.

    Raises
    ------
    ValueError
        For a bad ``reduction`` or ``label_smoothing``; (forward) shapes that do not match, labels out of range,
        or NaN/infinity in the logits (the message names the loss and the shapes).
    TypeError
        For float targets whose shape is that of class indices.

    See Also
    --------
    NLLLoss, LogSoftmax, BCEWithLogitsLoss

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> loss = fnn.nn.CrossEntropyLoss()
    >>> logits = np.zeros((2, 4), np.float32)
    >>> round(loss(logits, np.array([0, 3])), 4)            # log(4)
    1.3863
    >>> loss.backward()
    array([[-0.375,  0.125,  0.125,  0.125],
           [ 0.125,  0.125,  0.125, -0.375]], dtype=float32)
    """

    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        super().__init__(weight, ignore_index, reduction)
        label_smoothing = float(label_smoothing)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"CrossEntropyLoss: label_smoothing must be in [0, 1], got {label_smoothing}")
        self.label_smoothing = label_smoothing

    def extra_repr(self):
        base = super().extra_repr()
        return ", ".join(([f"label_smoothing={self.label_smoothing}"] if self.label_smoothing else []) +
                         ([base] if base else []))

    def forward(self, pred, target):
        x, t, w, spatial = self._prepare(pred, target, "logits", True)
        value = self._run(ops.cross_entropy, x, t, w, self.ignore_index, self.label_smoothing, self.reduction)
        return value if spatial is None else self._unrows(value, spatial)


class NLLLoss(_ClassLoss):
    r"""Negative log-likelihood on log-probabilities (e.g. LogSoftmax's output): PyTorch's NLLLoss.

    .. math:: \ell_n = -w_{t_n}\, x_{n, t_n}, \qquad \text{mean} = \frac{\sum_n \ell_n}{\sum_n w_{t_n}}

    over the targets other than ``ignore_index``.

    Parameters
    ----------
    weight : array_like (C,) or None, default None
        Per-class weights.
    ignore_index : int, default -100
        A label that contributes neither loss nor gradient.
    reduction : {"mean", "sum", "none"}, default "mean"
        ``"mean"`` averages the per-element losses, ``"sum"`` adds them, ``"none"`` returns them.

    Shape
    -----
    - Input ``pred``: log-probabilities ``(N, C)`` or ``(N, C, d1, ...)``.
    - Target: integer class indices ``(N,)`` / ``(N, d1, ...)``.
    - Output: a float, or the target's shape with ``reduction="none"``.
    - ``backward()``: ``pred``'s shape.

    Raises
    ------
    ValueError
        For a bad ``reduction``; (forward) shapes that do not match or labels out of range.
    TypeError
        For a non-integer target.

    See Also
    --------
    CrossEntropyLoss, LogSoftmax

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> logp = np.log(np.array([[0.5, 0.5], [0.25, 0.75]]))
    >>> round(fnn.nn.NLLLoss(reduction="sum")(logp, np.array([0, 1])), 4)   # -log 0.5 - log 0.75
    0.9808
    """

    def forward(self, pred, target):
        x, t, w, spatial = self._prepare(pred, target, "log-probabilities", False)
        value = self._run(ops.nll_loss, x, t, w, self.ignore_index, self.reduction)
        return value if spatial is None else self._unrows(value, spatial)


class MSELoss(_Loss):
    r"""Mean squared error ``(pred - target)**2``, with the seed notes' ``half_sum`` reduction too.

    .. math:: \ell_i = (x_i - y_i)^2, \qquad \text{half\_sum} = \tfrac12 \sum_i (x_i - y_i)^2

    ``half_sum``'s gradient is ``pred - target``; the batch-averaged ½-form is ``half_sum`` divided by N.

    Parameters
    ----------
    reduction : {"mean", "sum", "half_sum", "none"}, default "mean"
        How the per-element losses are reduced.

    Shape
    -----
    - Input ``pred``: any shape ``(*)``, float32 or float64.
    - Target: ``pred``'s shape.
    - Output: a float, or ``(*)`` with ``reduction="none"``.
    - ``backward()``: the gradient, ``pred``'s shape.

    Raises
    ------
    ValueError
        For a bad ``reduction``, or (forward) a target whose shape differs from ``pred``'s (the message names
        the loss and both shapes).
    TypeError
        For a non-numeric target.

    See Also
    --------
    L1Loss, HuberLoss

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> loss = fnn.nn.MSELoss()
    >>> loss(np.array([1.0, 2.0]), np.array([0.0, 0.0]))
    2.5
    >>> loss.backward()
    array([1., 2.])
    >>> fnn.nn.MSELoss(reduction="half_sum")(np.array([1.0, 2.0]), np.array([0.0, 0.0]))
    2.5
    """

    _reductions = ("none", "mean", "sum", "half_sum")

    def forward(self, pred, target):
        x = as_float_array(self, pred, module_dtype(self, pred), "input")
        return self._run(ops.mse_loss, x, self._target(target, x), self.reduction)


class _WeightedElementwiseLoss(_Loss):
    def _weight(self, name, x):
        w = self._buffer(name, x.dtype)
        if w is None:
            return None
        try:
            return np.ascontiguousarray(np.broadcast_to(w, x.shape))
        except ValueError:
            raise ValueError(f"{self!r}: {name} of shape {w.shape} cannot be broadcast to input shape "
                             f"{x.shape}") from None

    def _set_buffer(self, name, value):
        w = _optional_weight(self, value, name)
        if w is None:
            setattr(self, name, None)
        else:
            self.register_buffer(name, w)


class BCELoss(_WeightedElementwiseLoss):
    r"""Binary cross-entropy on probabilities in [0, 1] (PyTorch's BCELoss).

    .. math:: \ell_i = -w_i \left(y_i \log x_i + (1 - y_i) \log(1 - x_i)\right)

    each log clamped at -100, as in PyTorch. For logits use BCEWithLogitsLoss (stable).

    Parameters
    ----------
    weight : array_like or None, default None
        Rescales each element; broadcast to ``pred``'s shape.
    reduction : {"mean", "sum", "none"}, default "mean"
        ``"mean"`` averages the per-element losses, ``"sum"`` adds them, ``"none"`` returns them.

    Shape
    -----
    - Input ``pred``: any shape ``(*)``, float32 or float64.
    - Target: ``pred``'s shape.
    - Output: a float, or ``(*)`` with ``reduction="none"``.
    - ``backward()``: the gradient, ``pred``'s shape.

    Raises
    ------
    ValueError
        For a bad ``reduction``, or (forward) a target whose shape differs from ``pred``'s (the message names
        the loss and both shapes).
    TypeError
        For a non-numeric target.
        ``pred`` outside [0, 1] raises ValueError too.

    See Also
    --------
    BCEWithLogitsLoss, Sigmoid

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> loss = fnn.nn.BCELoss()
    >>> round(loss(np.array([0.5, 0.5]), np.array([1.0, 0.0])), 4)   # log 2
    0.6931
    >>> loss.backward()
    array([-1.,  1.])
    """

    def __init__(self, weight=None, reduction="mean"):
        super().__init__(reduction)
        self._set_buffer("weight", weight)

    def forward(self, pred, target):
        x = as_float_array(self, pred, module_dtype(self, pred), "input")
        return self._run(ops.binary_cross_entropy, x, self._target(target, x), self._weight("weight", x),
                         self.reduction)


class BCEWithLogitsLoss(_WeightedElementwiseLoss):
    r"""Sigmoid plus binary cross-entropy in one stable formula: PyTorch's BCEWithLogitsLoss.

    .. math:: \ell_i = -w_i \left(p_i\, y_i \log \sigma(x_i) + (1 - y_i) \log(1 - \sigma(x_i))\right)

    finite for any finite logit :math:`x_i`; :math:`p` is ``pos_weight``. The gradient is
    :math:`w\,((p y + 1 - y)\,\sigma(x) - p y)`.

    Parameters
    ----------
    weight : array_like or None, default None
        Rescales each element; broadcast to ``pred``'s shape.
    reduction : {"mean", "sum", "none"}, default "mean"
        ``"mean"`` averages the per-element losses, ``"sum"`` adds them, ``"none"`` returns them.
    pos_weight : array_like or None, default None
        Multiplies the positive term, e.g. one value per class ``(C,)``; broadcast to ``pred``'s shape.

    Shape
    -----
    - Input ``pred``: any shape ``(*)``, float32 or float64.
    - Target: ``pred``'s shape.
    - Output: a float, or ``(*)`` with ``reduction="none"``.
    - ``backward()``: the gradient, ``pred``'s shape.

    Raises
    ------
    ValueError
        For a bad ``reduction``, or (forward) a target whose shape differs from ``pred``'s (the message names
        the loss and both shapes).
    TypeError
        For a non-numeric target.

    See Also
    --------
    BCELoss, CrossEntropyLoss

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> loss = fnn.nn.BCEWithLogitsLoss()
    >>> round(loss(np.array([0.0, 0.0]), np.array([1.0, 0.0])), 4)
    0.6931
    >>> loss.backward()
    array([-0.25,  0.25])
    """

    def __init__(self, weight=None, reduction="mean", pos_weight=None):
        super().__init__(reduction)
        self._set_buffer("weight", weight)
        self._set_buffer("pos_weight", pos_weight)

    def forward(self, pred, target):
        x = as_float_array(self, pred, module_dtype(self, pred), "input")
        return self._run(ops.binary_cross_entropy_with_logits, x, self._target(target, x),
                         self._weight("weight", x), self._weight("pos_weight", x), self.reduction)


# ---------------------------------------------------------------------------------------------------------
# element-wise regression losses, KL divergence and the multiclass hinge (NumPy: value and gradient at once)
# ---------------------------------------------------------------------------------------------------------
def _positive_number(loss_name, name, value, allow_zero):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{loss_name}: {name} must be a number, got {value!r}")
    value = float(value)
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{loss_name}: {name} must be {'>= 0' if allow_zero else '> 0'} and finite, got {value}")
    return value


class _NumpyLoss(_Loss):
    """A loss whose forward computes per-item losses and their gradients in NumPy; this reduces both."""

    def _finish(self, per_item, grad, batch=None):
        """Reduce per-item losses (and scale their gradient to match); keeps the gradient for backward."""
        r = self.reduction
        dtype = grad.dtype
        if r == "none":
            value = per_item.astype(dtype, copy=False)
        elif r == "sum":
            value = float(per_item.sum(dtype=np.float64))
        else:
            n = per_item.size if r == "mean" else batch
            value = float(per_item.sum(dtype=np.float64)) / n if n else float("nan")
            if n:
                grad = grad * dtype.type(1.0 / n)
        object.__setattr__(self, "_grad", np.ascontiguousarray(grad, dtype=dtype))
        return value

    def _pair(self, pred, target):
        x = as_float_array(self, pred, module_dtype(self, pred), "input")
        return x, self._target(target, x)


class L1Loss(_NumpyLoss):
    r"""Mean absolute error ``abs(pred - target)``: PyTorch's L1Loss.

    .. math:: \ell_i = |x_i - y_i|

    The gradient is ``sign(pred - target)`` (0 where they are equal).

    Parameters
    ----------
    reduction : {"mean", "sum", "none"}, default "mean"
        ``"mean"`` averages the per-element losses, ``"sum"`` adds them, ``"none"`` returns them.

    Shape
    -----
    - Input ``pred``: any shape ``(*)``, float32 or float64.
    - Target: ``pred``'s shape.
    - Output: a float, or ``(*)`` with ``reduction="none"``.
    - ``backward()``: the gradient, ``pred``'s shape.

    Raises
    ------
    ValueError
        For a bad ``reduction``, or (forward) a target whose shape differs from ``pred``'s (the message names
        the loss and both shapes).
    TypeError
        For a non-numeric target.

    See Also
    --------
    SmoothL1Loss, MSELoss

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> loss = fnn.nn.L1Loss(reduction="sum")
    >>> loss(np.array([1.0, -2.0, 3.0]), np.zeros(3))
    6.0
    >>> loss.backward()
    array([ 1., -1.,  1.])
    """

    def forward(self, pred, target):
        x, t = self._pair(pred, target)
        d = x - t
        return self._finish(np.abs(d), np.sign(d))


class SmoothL1Loss(_NumpyLoss):
    r"""Smooth L1 loss: quadratic near zero, linear beyond ``beta`` (PyTorch's SmoothL1Loss).

    .. math:: \ell_i = \begin{cases} 0.5\, d_i^2 / \beta & |d_i| < \beta \\ |d_i| - 0.5\, \beta & \text{otherwise}
       \end{cases}, \qquad d = x - y

    ``beta = 0`` is L1Loss. The gradient is ``d / beta`` inside, ``sign(d)`` outside.

    Parameters
    ----------
    reduction : {"mean", "sum", "none"}, default "mean"
        ``"mean"`` averages the per-element losses, ``"sum"`` adds them, ``"none"`` returns them.
    beta : float, default 1.0
        Where the loss turns linear; >= 0.

    Shape
    -----
    - Input ``pred``: any shape ``(*)``, float32 or float64.
    - Target: ``pred``'s shape.
    - Output: a float, or ``(*)`` with ``reduction="none"``.
    - ``backward()``: the gradient, ``pred``'s shape.

    Raises
    ------
    ValueError
        For a bad ``reduction``, or (forward) a target whose shape differs from ``pred``'s (the message names
        the loss and both shapes).
    TypeError
        For a non-numeric target.
        A negative or non-finite ``beta`` raises ValueError too.

    See Also
    --------
    HuberLoss, L1Loss

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> fnn.nn.SmoothL1Loss(reduction="none")(np.array([0.5, 3.0]), np.zeros(2))
    array([0.125, 2.5  ])
    """

    def __init__(self, reduction="mean", beta=1.0):
        super().__init__(reduction)
        self.beta = _positive_number("SmoothL1Loss", "beta", beta, allow_zero=True)

    def extra_repr(self):
        base = super().extra_repr()
        return ", ".join(([base] if base else []) + ([f"beta={self.beta}"] if self.beta != 1.0 else []))

    def forward(self, pred, target):
        x, t = self._pair(pred, target)
        d = x - t
        a = np.abs(d)
        if self.beta == 0:
            return self._finish(a, np.sign(d))
        beta = x.dtype.type(self.beta)
        inside = a < beta
        loss = np.where(inside, 0.5 * d * d / beta, a - 0.5 * beta)
        return self._finish(loss, np.where(inside, d / beta, np.sign(d)))


class HuberLoss(_NumpyLoss):
    r"""Huber loss: quadratic near zero, linear beyond ``delta`` (PyTorch's HuberLoss).

    .. math:: \ell_i = \begin{cases} 0.5\, d_i^2 & |d_i| < \delta \\ \delta\,(|d_i| - 0.5\, \delta) & \text{otherwise}
       \end{cases}, \qquad d = x - y

    It is ``SmoothL1Loss(beta=delta)`` times ``delta``. The gradient is ``d`` inside, ``delta * sign(d)`` outside.

    Parameters
    ----------
    reduction : {"mean", "sum", "none"}, default "mean"
        ``"mean"`` averages the per-element losses, ``"sum"`` adds them, ``"none"`` returns them.
    delta : float, default 1.0
        Where the loss turns linear; > 0.

    Shape
    -----
    - Input ``pred``: any shape ``(*)``, float32 or float64.
    - Target: ``pred``'s shape.
    - Output: a float, or ``(*)`` with ``reduction="none"``.
    - ``backward()``: the gradient, ``pred``'s shape.

    Raises
    ------
    ValueError
        For a bad ``reduction``, or (forward) a target whose shape differs from ``pred``'s (the message names
        the loss and both shapes).
    TypeError
        For a non-numeric target.
        A ``delta`` that is not positive and finite raises ValueError too.

    See Also
    --------
    SmoothL1Loss, MSELoss

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> fnn.nn.HuberLoss(reduction="none", delta=2.0)(np.array([1.0, 4.0]), np.zeros(2))
    array([0.5, 6. ])
    """

    def __init__(self, reduction="mean", delta=1.0):
        super().__init__(reduction)
        self.delta = _positive_number("HuberLoss", "delta", delta, allow_zero=False)

    def extra_repr(self):
        base = super().extra_repr()
        return ", ".join(([base] if base else []) + ([f"delta={self.delta}"] if self.delta != 1.0 else []))

    def forward(self, pred, target):
        x, t = self._pair(pred, target)
        d = x - t
        a = np.abs(d)
        delta = x.dtype.type(self.delta)
        inside = a < delta
        loss = np.where(inside, 0.5 * d * d, delta * (a - 0.5 * delta))
        return self._finish(loss, np.where(inside, d, delta * np.sign(d)))


class KLDivLoss(_NumpyLoss):
    r"""Kullback-Leibler divergence of ``pred`` (log-probabilities) from ``target``: PyTorch's KLDivLoss.

    .. math:: \ell_i = y_i (\log y_i - x_i) \quad (0 \text{ where } y_i = 0), \qquad
       \ell_i = e^{y_i} (y_i - x_i) \text{ with log\_target}

    The default reduction ``"batchmean"`` (fastnn's default; PyTorch's is ``"mean"``) divides the sum by the batch
    size ``pred.shape[0]``, which is the true KL divergence per sample; ``"mean"`` divides by the number of
    elements. The gradient w.r.t. ``pred`` is ``-target`` (``-exp(target)`` with ``log_target``), scaled.

    Parameters
    ----------
    reduction : {"batchmean", "mean", "sum", "none"}, default "batchmean"
        How the per-element losses are reduced.
    log_target : bool, default False
        ``target`` holds log-probabilities instead of probabilities.

    Shape
    -----
    - Input ``pred``: any shape ``(*)``, float32 or float64.
    - Target: ``pred``'s shape.
    - Output: a float, or ``(*)`` with ``reduction="none"``.
    - ``backward()``: the gradient, ``pred``'s shape.

    Raises
    ------
    ValueError
        For a bad ``reduction``, or (forward) a target whose shape differs from ``pred``'s (the message names
        the loss and both shapes).
    TypeError
        For a non-numeric target.
        A probability target with negative entries raises ValueError too.

    See Also
    --------
    LogSoftmax, CrossEntropyLoss

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> p = np.array([[0.5, 0.5]])
    >>> fnn.nn.KLDivLoss()(np.log(p), p)                   # identical distributions
    0.0
    >>> round(fnn.nn.KLDivLoss()(np.log(np.array([[0.25, 0.75]])), p), 4)
    0.1438
    """

    _reductions = ("none", "batchmean", "mean", "sum")

    def __init__(self, reduction="batchmean", log_target=False):
        super().__init__(reduction)
        self.log_target = bool(log_target)

    def extra_repr(self):
        parts = [] if self.reduction == "batchmean" else [f"reduction={self.reduction!r}"]
        return ", ".join(parts + (["log_target=True"] if self.log_target else []))

    def forward(self, pred, target):
        x, t = self._pair(pred, target)
        if self.log_target:
            p = np.exp(t)
            loss = p * (t - x)
        else:
            if np.any(t < 0):
                raise ValueError(f"{self!r}: target of shape {t.shape} has negative entries; it must hold "
                                 f"probabilities (or pass log_target=True for log-probabilities)")
            p = t
            safe = np.where(t > 0, t, 1)
            loss = np.where(t > 0, t * (np.log(safe) - x), 0).astype(x.dtype, copy=False)
        batch = x.shape[0] if x.ndim else 1
        return self._finish(loss, -p, batch)


class MultiMarginLoss(_NumpyLoss):
    r"""Multiclass hinge loss (the SVM loss): PyTorch's MultiMarginLoss.

    .. math:: \ell_n = \frac{1}{C} \sum_{i \ne y_n} w_{y_n} \max(0,\ \text{margin} - x_{n,y_n} + x_{n,i})^p

    Parameters
    ----------
    p : {1, 2}, default 1
        The hinge's power.
    margin : float, default 1.0
        The required gap between the true class's score and the others.
    weight : array_like (C,) or None, default None
        Per-class weights, indexed by the true class.
    reduction : {"mean", "sum", "none"}, default "mean"
        ``"mean"`` averages the per-element losses, ``"sum"`` adds them, ``"none"`` returns them.

    Shape
    -----
    - Input ``pred``: scores ``(N, C)`` or unbatched ``(C,)``.
    - Target: integer class indices ``(N,)`` (or a scalar).
    - Output: a float, or ``(N,)`` with ``reduction="none"`` (one loss per sample).
    - ``backward()``: ``pred``'s shape.

    Raises
    ------
    ValueError
        For a bad ``p``, ``margin``, ``weight`` or ``reduction``; (forward) shapes that do not match or labels
        out of range.
    TypeError
        For a non-integer target.

    See Also
    --------
    CrossEntropyLoss

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> loss = fnn.nn.MultiMarginLoss()
    >>> loss(np.array([[2.0, 0.5, 1.5]]), np.array([0]))       # (0 + 0.5) / 3
    0.16666666666666666
    """

    def __init__(self, p=1, margin=1.0, weight=None, reduction="mean"):
        super().__init__(reduction)
        if isinstance(p, bool) or p not in (1, 2):
            raise ValueError(f"MultiMarginLoss: p must be 1 or 2, got {p!r}")
        if isinstance(margin, bool) or not isinstance(margin, (int, float, np.integer, np.floating)) \
                or not np.isfinite(margin):
            raise ValueError(f"MultiMarginLoss: margin must be a finite number, got {margin!r}")
        self.p, self.margin = int(p), float(margin)
        w = _optional_weight(self, weight, "weight")
        if w is not None and w.ndim != 1:
            raise ValueError(f"MultiMarginLoss: weight must be 1-D (one entry per class), got shape {w.shape}")
        if w is None:
            self.weight = None
        else:
            self.register_buffer("weight", w)

    def extra_repr(self):
        parts = ([f"p={self.p}"] if self.p != 1 else []) + ([f"margin={self.margin}"] if self.margin != 1 else [])
        base = super().extra_repr()
        return ", ".join(parts + ([base] if base else []))

    def forward(self, pred, target):
        x = as_float_array(self, pred, module_dtype(self, pred), "input")
        y = _as_array(self, target, "target")
        if x.ndim not in (1, 2) or x.shape[-1] == 0:
            raise ValueError(f"{self!r}: expected scores of shape (N, C) or (C,), got {x.shape}")
        unbatched = x.ndim == 1
        if y.dtype.kind not in "iu":
            raise TypeError(f"{self!r}: target must be integer class indices, got dtype {y.dtype} with shape "
                            f"{y.shape}")
        expected = () if unbatched else x.shape[:1]
        if y.shape != expected and not (unbatched and y.shape == (1,)):
            raise ValueError(f"{self!r}: target shape {y.shape} does not match input shape {x.shape}: "
                             f"class-index targets need shape {expected}")
        C = x.shape[-1]
        x2, y1 = x.reshape(-1, C), y.reshape(-1).astype(np.int64)
        if y1.size and (y1.min() < 0 or y1.max() >= C):
            raise ValueError(f"{self!r}: target holds class indices outside [0, {C}) for input shape {x.shape}")
        w = self._buffer("weight", x.dtype)
        if w is not None and w.shape != (C,):
            raise ValueError(f"{self!r}: weight has shape {w.shape}, but input {x.shape} has {C} classes")
        rows = np.arange(x2.shape[0])
        z = self.margin - x2[rows, y1][:, None] + x2   # (M, C)
        z[rows, y1] = 0
        active = z > 0
        zp = np.where(active, z, 0).astype(x.dtype, copy=False)
        h = zp if self.p == 1 else zp * zp
        dh = active.astype(x.dtype) if self.p == 1 else 2 * zp
        scale = np.full(x2.shape[0], 1.0 / C, x.dtype) if w is None else (w[y1] / C).astype(x.dtype)
        per_sample = h.sum(axis=1) * scale
        grad = dh * scale[:, None]
        grad[rows, y1] = -grad.sum(axis=1)
        if unbatched:
            per_sample, grad = per_sample.reshape(()), grad.reshape(C)
        return self._finish(per_sample, grad, batch=None)

    def backward(self, grad_output=None):
        """As every loss's; with reduction='none', grad_output has one entry per sample ((N,), or () for an
        unbatched (C,) input)."""
        grad = self._grad
        require_forward(self, grad)
        if grad_output is None or self.reduction != "none":
            return super().backward(grad_output)
        g = as_float_array(self, grad_output, grad.dtype, "grad_output")
        if g.shape != grad.shape[:-1]:
            raise ValueError(f"{self!r}: grad_output has shape {g.shape}, but the forward output had shape "
                             f"{grad.shape[:-1]}")
        return grad * g[..., None]
