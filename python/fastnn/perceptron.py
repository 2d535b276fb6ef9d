"""The classic perceptron: a step threshold unit trained by the perceptron rule.

    output = 1 if w·x + b > 0 else 0
    for each sample in turn:  w ← w + lr·(y − output)·x,  b ← b + lr·(y − output)

The seed's example: w = (−2, −2), b = 3 computes NAND on {0, 1}².

    p = fastnn.Perceptron(n_features=2)
    p.fit(X, y01, epochs=10, lr=1.0); p.predict(X)      # 0/1 integers
"""
import numpy as np

from .nn.module import Module, Parameter
from .random import generator

__all__ = ["Perceptron"]


class Perceptron(Module):
    """The classic perceptron: a step threshold unit trained by the perceptron rule.

    ``output = 1 if w·x + b > 0 else 0``; for each sample in turn, ``w ← w + lr·(y − output)·x`` and
    ``b ← b + lr·(y − output)``. A Module (``state_dict``, :func:`fastnn.save` and :func:`fastnn.load` work),
    but the step has no useful gradient: train it with :meth:`fit`, not backpropagation.

    Parameters
    ----------
    n_features : int
        Number of inputs; >= 1.
    weight : array_like of shape (n_features,), optional
        Initial weights (zeros by default). Stored as float64, so the rule's updates are exact.
    bias : float, optional
        Initial bias (0 by default).

    Shape
    -----
    - Input: ``(N, n_features)`` or ``(n_features,)``.
    - Output: ``(N,)`` of 0.0 / 1.0.
    - Parameters: ``weight`` ``(n_features,)``, ``bias`` ``(1,)``, both frozen.

    Raises
    ------
    ValueError
        For ``n_features < 1`` or a weight of the wrong shape.

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    >>> nand = fnn.Perceptron(n_features=2, weight=[-2, -2], bias=3)
    >>> nand.predict(X)
    array([1, 1, 1, 0])
    >>> p = fnn.Perceptron(n_features=2).fit(X, np.array([0, 0, 0, 1]), epochs=20)   # learns AND
    >>> p.predict(X), p.errors_[-1]
    (array([0, 0, 0, 1]), 0)
    """

    def __init__(self, n_features, weight=None, bias=None):
        super().__init__()
        if int(n_features) < 1:
            raise ValueError(f"Perceptron: n_features must be >= 1, got {n_features}")
        self.n_features = int(n_features)
        w = np.zeros(self.n_features) if weight is None else np.array(weight, dtype=np.float64).reshape(-1)
        if w.shape != (self.n_features,):
            raise ValueError(f"Perceptron({self.n_features}): weight must have shape ({self.n_features},), "
                             f"got {np.shape(weight)}")
        self.weight = Parameter(w.astype(np.float64), requires_grad=False)
        self.bias = Parameter(np.array([0.0 if bias is None else float(bias)]), requires_grad=False)
        self.errors_ = []

    def extra_repr(self):
        return str(self.n_features)

    def _check(self, X, what):
        X = np.asarray(X)
        if X.dtype.kind not in "fiub":
            raise TypeError(f"{self!r}.{what}: X must be numeric, got dtype {X.dtype}")
        if X.ndim == 1:
            X = X.reshape(1, -1)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"{self!r}.{what}: expected X of shape (N, {self.n_features}), got {X.shape}")
        return X.astype(np.float64, copy=False)

    def decision_function(self, X):
        """``w·x + b`` for each row of ``X``.

        Parameters
        ----------
        X : array_like, shape (N, n_features) or (n_features,)
            Numeric inputs.

        Returns
        -------
        ndarray of float64, shape (N,)
        """
        X = self._check(X, "decision_function")
        return X @ self.weight.data + self.bias.data[0]

    def predict(self, X):
        """1 where ``w·x + b > 0``, else 0.

        Parameters
        ----------
        X : array_like, shape (N, n_features) or (n_features,)
            Numeric inputs.

        Returns
        -------
        ndarray of int64, shape (N,)
        """
        return (self.decision_function(X) > 0).astype(np.int64)

    def forward(self, x):
        return self.predict(x).astype(self.weight.data.dtype)

    def backward(self, grad_output):
        raise NotImplementedError(f"{self!r}: a step unit has no useful gradient; train it with fit()")

    def fit(self, X, y01, epochs=10, lr=1.0, shuffle=False):
        """Train with the perceptron rule, one sample at a time, for up to ``epochs`` passes.

        Training stops after a pass with no mistakes; ``errors_`` lists the mistakes of each pass.

        Parameters
        ----------
        X : array_like, shape (N, n_features)
            Numeric inputs.
        y01 : array_like, shape (N,)
            Labels, 0 or 1.
        epochs : int, default 10
            The most passes.
        lr : float, default 1.0
            The learning rate.
        shuffle : bool, default False
            Visit samples in an order drawn from fastnn's generator.

        Returns
        -------
        Perceptron
            ``self``.

        Raises
        ------
        ValueError
            For labels other than 0 and 1, or sizes that do not match.
        """
        X = self._check(X, "fit")
        y = np.asarray(y01).reshape(-1)
        if len(y) != len(X):
            raise ValueError(f"{self!r}.fit: X has {len(X)} samples but y has {len(y)}")
        if not np.isin(y, (0, 1)).all():
            raise ValueError(f"{self!r}.fit: labels must be 0 or 1, got values {np.unique(y)[:10]}")
        w, b = self.weight.data, self.bias.data
        self.errors_ = []
        for _ in range(int(epochs)):
            order = generator().permutation(len(X)) if shuffle else range(len(X))
            mistakes = 0
            for i in order:
                out = 1 if X[i] @ w + b[0] > 0 else 0
                err = y[i] - out
                if err:
                    w += lr * err * X[i]
                    b += lr * err
                    mistakes += 1
            self.errors_.append(mistakes)
            if mistakes == 0:
                break
        return self
