"""Center loss (Wen et al. 2016): pulls each sample's deep feature towards a centre of its class.

    L_C = ½ Σ_i ‖x_i − c_{y_i}‖²,   ∂L_C/∂x_i = x_i − c_{y_i}
    Δc_j = Σ_i δ(y_i = j)(c_j − x_i) / (1 + Σ_i δ(y_i = j)),   c_j ← c_j − α·Δc_j

CenterLoss(num_classes, dim, alpha, lam) returns λ·L_C, so the combined objective L = L_S + λ·L_C is the sum
of two losses. With reduction="mean" (the default, as Caffe's center-loss layer and fastnn's other losses)
the sum over the batch is divided by the batch size m: the value is λ/(2m)·Σ‖x_i − c_{y_i}‖² and the
gradient λ/m·(x_i − c_{y_i}), on the same per-sample scale as a mean softmax cross-entropy;
reduction="sum" gives λ·L_C and λ·(x_i − c_{y_i}) exactly as written above.

The centres are a buffer ("centers", (num_classes, dim), zeros at first) saved in state_dict. They are
updated by the rule above when backward() is called in training mode, after the gradient has been computed
with the old centres (the paper's and Caffe's order); evaluating a loss (Trainer.evaluate) never moves them.
`loss.eval()` stops the updates; `update_centers()` applies the rule to the last forward's batch by hand.

Combined with softmax cross-entropy, in a hand-written step (features = body(x), logits = head(features)):

    ce, center = fastnn.nn.CrossEntropyLoss(), fastnn.nn.CenterLoss(10, 2, alpha=0.5, lam=0.01)
    feats = body(x); value = ce(head(feats), y) + center(feats, y)
    body.backward(head.backward(ce.backward()) + center.backward()); opt.step(); opt.zero_grad()
"""
import numpy as np

from .module import Module

__all__ = ["CenterLoss"]


class CenterLoss(Module):
    """Center loss (Wen et al. 2016): pulls each sample's feature towards a learned centre of its class.

    Returns ``λ · ½ Σ_i ‖x_i − c_{y_i}‖²`` (divided by the batch size with ``reduction="mean"``); its
    ``backward()`` gives the gradient w.r.t. the features, ``λ (x_i − c_{y_i})`` (over the batch size with
    "mean"). The centres (buffer ``centers``, zeros at first, in ``state_dict``) move by
    ``c_j ← c_j − α Δc_j`` when ``backward()`` runs in training mode, after the gradient is computed; see the
    module docstring for ``Δc_j`` and how to combine it with cross-entropy.

    Parameters
    ----------
    num_classes : int
        Number of classes (centres); >= 1.
    dim : int
        Feature size; >= 1.
    alpha : float, default 0.5
        Learning rate of the centres.
    lam : float, default 0.01
        Weight λ of the loss.
    reduction : {"mean", "sum"}, default "mean"
        Divide by the batch size, or not.

    Shape
    -----
    - Input: features ``(N, dim)`` and integer labels ``(N,)``.
    - Output: a float.
    - Buffers: ``centers`` ``(num_classes, dim)``.

    Raises
    ------
    ValueError
        For sizes below 1, an unknown reduction, or features and labels that do not fit.

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> center = fnn.nn.CenterLoss(num_classes=2, dim=2, alpha=0.5, lam=1.0, reduction="sum")
    >>> feats = np.array([[1.0, 0.0], [0.0, 2.0]], np.float32); labels = np.array([0, 1])
    >>> center(feats, labels)                    # ½ (1 + 4): the centres start at zero
    2.5
    >>> center.backward()
    array([[1., 0.],
           [0., 2.]], dtype=float32)
    >>> center.centers                           # each moved half-way (alpha=0.5) towards its class mean / 2
    array([[0.25, 0.  ],
           [0.  , 0.5 ]], dtype=float32)
    """
    def __init__(self, num_classes, dim, alpha=0.5, lam=0.01, reduction="mean"):
        super().__init__()
        if int(num_classes) < 1 or int(dim) < 1:
            raise ValueError(f"CenterLoss: num_classes and dim must be >= 1, got {num_classes} and {dim}")
        if reduction not in ("mean", "sum"):
            raise ValueError(f"CenterLoss: reduction must be 'mean' or 'sum', got {reduction!r}")
        if not 0 <= float(alpha) <= 1:
            raise ValueError(f"CenterLoss: alpha (centre learning rate) must be in [0, 1], got {alpha}")
        self.num_classes, self.dim = int(num_classes), int(dim)
        self.alpha, self.lam = float(alpha), float(lam)
        self.reduction = reduction
        self.register_buffer("centers", np.zeros((self.num_classes, self.dim), np.float32))
        self._x = self._y = self._diff = None

    def extra_repr(self):
        return f"{self.num_classes}, {self.dim}, alpha={self.alpha:g}, lam={self.lam:g}"

    def _check(self, x, y):
        x = np.asarray(x)
        y = np.asarray(y)
        if x.dtype.kind != "f":
            raise TypeError(f"{self!r}: features must be a float array, got dtype {x.dtype}")
        if x.ndim != 2 or x.shape[1] != self.dim or x.shape[0] == 0:
            raise ValueError(f"{self!r}: expected features of shape (N, {self.dim}), got {x.shape}")
        if y.dtype.kind not in "iu" or y.shape != (x.shape[0],):
            raise ValueError(f"{self!r}: expected integer labels of shape ({x.shape[0]},), got {y.dtype} {y.shape}")
        if y.size and (y.min() < 0 or y.max() >= self.num_classes):
            raise ValueError(f"{self!r}: labels must be in [0, {self.num_classes}), got range "
                             f"[{y.min()}, {y.max()}]")
        return x, y.astype(np.int64, copy=False)

    def forward(self, x, target):
        """λ/(2m)·Σ‖x_i − c_{y_i}‖² (reduction="mean") or λ/2·Σ‖x_i − c_{y_i}‖² ("sum"), a float."""
        x, y = self._check(x, target)
        diff = x - self.centers[y].astype(x.dtype, copy=False)
        scale = self.lam / (len(x) if self.reduction == "mean" else 1)
        self._x, self._y, self._diff, self._scale = x, y, diff, scale
        return 0.5 * scale * float(np.sum(np.square(diff, dtype=np.float64)))

    def backward(self, grad_output=None):
        """Gradient w.r.t. the last forward's features: λ/m·(x_i − c_{y_i}) (λ·(x_i − c_{y_i}) for "sum"),
        times grad_output (a scalar; None means 1). In training mode, then updates the centres."""
        if self._diff is None:
            raise RuntimeError(f"{self!r}: backward() called before forward()")
        scale = self._scale * (1.0 if grad_output is None else float(grad_output))
        grad = (scale * self._diff).astype(self._diff.dtype, copy=False)
        if self.training:
            self.update_centers()
        return grad

    def update_centers(self):
        """c_j ← c_j − α·Σ_i δ(y_i=j)(c_j − x_i) / (1 + Σ_i δ(y_i=j)) for the last forward's batch."""
        if self._x is None:
            raise RuntimeError(f"{self!r}: update_centers() called before forward()")
        x, y, c = self._x, self._y, self.centers
        counts = np.bincount(y, minlength=self.num_classes).astype(np.float64)
        sums = np.zeros((self.num_classes, self.dim), np.float64)
        np.add.at(sums, y, x)
        delta = (counts[:, None] * c - sums) / (1.0 + counts[:, None])
        c -= (self.alpha * delta).astype(c.dtype)
