"""Losses: `value = loss(pred, target)`, then `grad = loss.backward()`, the gradient of that value w.r.t. pred.

Each forward is one C++ call (cpp/kernels/losses.hpp) that computes the loss and its gradient together;
backward returns that gradient (the array itself, no copy), scaled by grad_output when one is given.
Names, arguments, defaults and semantics are PyTorch's. The reduced value is a Python float; with
reduction='none' it is an array of per-sample (per-element) losses, and backward(grad_output) takes an array
of that shape: per-item weights of the gradient (None means all ones).

MSELoss also has reduction='half_sum', E = ½ Σ (pred − target)², the squared error of the seed notes (their
worked example's E_total); its gradient is pred − target. The batch-averaged ½-form C = 1/(2n) Σ‖y − a‖² is
half_sum divided by the batch size n.
"""
import numpy as np

from .. import ops
from ._checks import as_float_array, module_dtype, require_forward
from .module import Module

__all__ = ["CrossEntropyLoss", "NLLLoss", "MSELoss", "BCELoss", "BCEWithLogitsLoss"]


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
    """Softmax cross-entropy on logits, fused and stable (log-sum-exp): PyTorch's CrossEntropyLoss.

    pred: logits (N, C) or (N, C, d1, ...). target: integer class indices (N,) / (N, d1, ...), or class
    probabilities of pred's shape (float). weight: per-class weights (C,); a weighted 'mean' divides by the
    sum of the weights of the non-ignored targets. ignore_index: label that contributes neither loss nor
    gradient (class-index targets only). label_smoothing ε: the target becomes (1−ε)·target + ε/C.
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
    """Negative log-likelihood on log-probabilities (e.g. LogSoftmax output): PyTorch's NLLLoss.

    pred (N, C) or (N, C, d1, ...); target integer class indices (N,) / (N, d1, ...); weight and ignore_index
    as in CrossEntropyLoss.
    """

    def forward(self, pred, target):
        x, t, w, spatial = self._prepare(pred, target, "log-probabilities", False)
        value = self._run(ops.nll_loss, x, t, w, self.ignore_index, self.reduction)
        return value if spatial is None else self._unrows(value, spatial)


class MSELoss(_Loss):
    """Squared error (pred − target)², reduced by 'mean' (PyTorch's default), 'sum', 'none', or
    'half_sum': E = ½ Σ (pred − target)², the seed notes' squared-error cost, whose gradient is pred − target."""

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
    """Binary cross-entropy on probabilities in [0, 1]: −w·(t·log p + (1−t)·log(1−p)), each log clamped at −100
    as in PyTorch. weight: rescales each element, broadcast to pred's shape."""

    def __init__(self, weight=None, reduction="mean"):
        super().__init__(reduction)
        self._set_buffer("weight", weight)

    def forward(self, pred, target):
        x = as_float_array(self, pred, module_dtype(self, pred), "input")
        return self._run(ops.binary_cross_entropy, x, self._target(target, x), self._weight("weight", x),
                         self.reduction)


class BCEWithLogitsLoss(_WeightedElementwiseLoss):
    """Sigmoid + binary cross-entropy in one stable formula (PyTorch's BCEWithLogitsLoss): finite for any
    finite logit. weight rescales each element; pos_weight (e.g. (C,)) multiplies the positive term; both
    are broadcast to pred's shape."""

    def __init__(self, weight=None, reduction="mean", pos_weight=None):
        super().__init__(reduction)
        self._set_buffer("weight", weight)
        self._set_buffer("pos_weight", pos_weight)

    def forward(self, pred, target):
        x = as_float_array(self, pred, module_dtype(self, pred), "input")
        return self._run(ops.binary_cross_entropy_with_logits, x, self._target(target, x),
                         self._weight("weight", x), self._weight("pos_weight", x), self.reduction)
