"""More preprocessing: min-max scaling, log transform, PCA (keep k, whitening) and ZCA whitening.

Same conventions as StandardScaler: fit on the training split, transform any split; 2-D input
(n_samples, n_features) of finite numbers; statistics in float64; output float64 for float64 input and
float32 otherwise; inputs never modified; fit returns self, so `PCA(2).fit(X).transform(X)` chains.
"""
import numpy as np

from .scalers import _check_2d, _output_dtype

__all__ = ["MinMaxScaler", "LogTransform", "PCA", "ZCA"]


class _Fitted:
    def _checked(self, X, what):
        name = type(self).__name__
        if not hasattr(self, "n_features_in_"):
            raise ValueError(f"{name}.{what}: this {name} is not fitted yet; call fit(X) first")
        X = _check_2d(name, X, what)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"{name}.{what}: X has {X.shape[1]} features (shape {X.shape}), but it was fitted "
                             f"on {self.n_features_in_} features")
        return X

    def _fit_input(self, X):
        X = _check_2d(type(self).__name__, X, "fit")
        if len(X) == 0:
            raise ValueError(f"{type(self).__name__}.fit: X of shape {X.shape} has no samples")
        self.n_features_in_ = X.shape[1]
        return X

    def fit_transform(self, X, y=None):
        return self.fit(X).transform(X)


class MinMaxScaler(_Fitted):
    """Scale each feature so the training data spans ``feature_range``: ``x' = (x - data_min_) * scale_ + lo``.

    Constant features map to ``feature_range[0]`` (``scale_`` as if their range were 1).

    Methods: ``fit(X)``, ``transform(X)``, ``fit_transform(X)``, ``inverse_transform(X)``, as scikit-learn's;
    inputs are 2-D ``(n_samples, n_features)`` arrays of finite numbers and are never modified; float32 stays
    float32, float64 stays float64, other numeric input becomes float32.

    Parameters
    ----------
    feature_range : tuple of float, default (0, 1)
        ``(lo, hi)`` with ``lo < hi``, e.g. ``(0, 1)`` or ``(-1, 1)``.

    Attributes
    ----------
    data_min_, data_max_, scale_ : ndarray of float64, shape (n_features,)
        The training minimum, maximum and the scale.

    Raises
    ------
    ValueError
        If ``lo >= hi``, or for bad input as in :class:`StandardScaler`.

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> X = np.array([[0.0, 5.0], [10.0, 7.0]])
    >>> fnn.data.MinMaxScaler(feature_range=(-1, 1)).fit_transform(X)
    array([[-1., -1.],
           [ 1.,  1.]])
    """

    def __init__(self, feature_range=(0, 1)):
        lo, hi = (float(v) for v in feature_range)
        if not lo < hi:
            raise ValueError(f"MinMaxScaler: feature_range must be (min, max) with min < max, got {feature_range}")
        self.feature_range = (lo, hi)

    def __repr__(self):
        return f"MinMaxScaler(feature_range={self.feature_range})"

    def fit(self, X, y=None):
        X = self._fit_input(X).astype(np.float64, copy=False)
        self.data_min_, self.data_max_ = X.min(axis=0), X.max(axis=0)
        span = self.data_max_ - self.data_min_
        span[span == 0] = 1.0
        self.scale_ = (self.feature_range[1] - self.feature_range[0]) / span
        return self

    def transform(self, X):
        X = self._checked(X, "transform")
        out = (X.astype(np.float64) - self.data_min_) * self.scale_ + self.feature_range[0]
        return out.astype(_output_dtype(X.dtype), copy=False)

    def inverse_transform(self, X):
        X = self._checked(X, "inverse_transform")
        out = (X.astype(np.float64) - self.feature_range[0]) / self.scale_ + self.data_min_
        return out.astype(_output_dtype(X.dtype), copy=False)


class LogTransform(_Fitted):
    """``x' = log(1 + x)`` (:func:`numpy.log1p`), for non-negative skewed features such as counts.

    ``fit`` only records the number of features; ``inverse_transform`` is :func:`numpy.expm1`.

    Methods: ``fit(X)``, ``transform(X)``, ``fit_transform(X)``, ``inverse_transform(X)``, as scikit-learn's;
    inputs are 2-D ``(n_samples, n_features)`` arrays of finite numbers and are never modified; float32 stays
    float32, float64 stays float64, other numeric input becomes float32.

    Raises
    ------
    ValueError
        In ``transform``, for values <= -1.

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> t = fnn.data.LogTransform().fit(np.zeros((1, 2)))
    >>> np.round(t.transform(np.array([[0.0, 99.0]])), 4)
    array([[0.   , 4.6052]])
    """

    def __repr__(self):
        return "LogTransform()"

    def fit(self, X, y=None):
        self._fit_input(X)
        return self

    def transform(self, X):
        X = self._checked(X, "transform")
        if (X <= -1).any():
            raise ValueError(f"LogTransform.transform: log1p needs values > -1, got a minimum of {X.min()}")
        return np.log1p(X.astype(np.float64)).astype(_output_dtype(X.dtype), copy=False)

    def inverse_transform(self, X):
        X = self._checked(X, "inverse_transform")
        return np.expm1(X.astype(np.float64)).astype(_output_dtype(X.dtype), copy=False)


class PCA(_Fitted):
    """Principal component analysis from the SVD of the centred training data, ``X - mean_ = U S Vᵀ``.

    ``components_`` holds the first ``k`` rows of ``Vᵀ`` (signs fixed so the largest-magnitude entry of each
    is positive); ``transform`` computes ``(X - mean_) @ components_.T``, divided by
    ``sqrt(explained_variance_)`` with ``whiten=True`` (unit variance per component on the training data).
    ``inverse_transform`` maps back (exactly when all components are kept).

    Methods: ``fit(X)``, ``transform(X)``, ``fit_transform(X)``, ``inverse_transform(X)``, as scikit-learn's;
    inputs are 2-D ``(n_samples, n_features)`` arrays of finite numbers and are never modified; float32 stays
    float32, float64 stays float64, other numeric input becomes float32.

    Parameters
    ----------
    n_components : int or None, default None
        Components kept; None keeps ``min(n_samples, n_features)``.
    whiten : bool, default False
        Scale the components to unit variance.

    Attributes
    ----------
    mean_ : ndarray, shape (n_features,)
    components_ : ndarray, shape (n_components, n_features)
    explained_variance_ : ndarray, shape (n_components,)
        ``S² / (n - 1)``.
    explained_variance_ratio_ : ndarray, shape (n_components,)
        Each component's share of the total variance.

    Raises
    ------
    ValueError
        If ``n_components < 1``, or for bad input.

    See Also
    --------
    ZCA

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((200, 1)) @ np.array([[3.0, 1.0]]) + 0.1 * rng.standard_normal((200, 2))
    >>> pca = fnn.data.PCA(n_components=1).fit(X)
    >>> pca.transform(X).shape, bool(pca.explained_variance_ratio_[0] > 0.99)
    ((200, 1), True)
    """

    def __init__(self, n_components=None, whiten=False):
        if n_components is not None and int(n_components) < 1:
            raise ValueError(f"PCA: n_components must be >= 1 or None, got {n_components}")
        self.n_components = None if n_components is None else int(n_components)
        self.whiten = bool(whiten)

    def __repr__(self):
        return f"PCA(n_components={self.n_components}, whiten={self.whiten})"

    def fit(self, X, y=None):
        X = self._fit_input(X).astype(np.float64, copy=False)
        n, d = X.shape
        k = min(n, d) if self.n_components is None else self.n_components
        if k > min(n, d):
            raise ValueError(f"PCA.fit: n_components={k} exceeds min(n_samples, n_features) = {min(n, d)} "
                             f"for X of shape {X.shape}")
        if self.whiten and n < 2:
            raise ValueError("PCA.fit: whitening needs at least 2 samples")
        self.mean_ = X.mean(axis=0)
        _, s, vt = np.linalg.svd(X - self.mean_, full_matrices=False)
        biggest = np.argmax(np.abs(vt), axis=1)
        vt *= np.sign(vt[np.arange(len(vt)), biggest])[:, None]
        variance = s ** 2 / max(n - 1, 1)
        total = variance.sum()
        self.components_ = vt[:k]
        self.singular_values_ = s[:k]
        self.explained_variance_ = variance[:k]
        self.explained_variance_ratio_ = variance[:k] / total if total > 0 else np.zeros(k)
        self.n_components_ = k
        return self

    def _scale(self):
        return np.sqrt(np.maximum(self.explained_variance_, np.finfo(np.float64).tiny))

    def transform(self, X):
        X = self._checked(X, "transform")
        Z = (X.astype(np.float64) - self.mean_) @ self.components_.T
        if self.whiten:
            Z /= self._scale()
        return Z.astype(_output_dtype(X.dtype), copy=False)

    def inverse_transform(self, Z):
        Z = np.asarray(Z)
        if Z.ndim != 2 or Z.shape[1] != getattr(self, "n_components_", -1):
            raise ValueError(f"PCA.inverse_transform: expected shape (N, {getattr(self, 'n_components_', '?')}),"
                             f" got {Z.shape}")
        Z64 = Z.astype(np.float64)
        if self.whiten:
            Z64 = Z64 * self._scale()
        return (Z64 @ self.components_ + self.mean_).astype(_output_dtype(Z.dtype), copy=False)


class ZCA(_Fitted):
    """ZCA whitening: ``x' = (x - mean_) @ W``, ``W = U diag(1/sqrt(λ + eps)) Uᵀ``.

    ``Σ = U diag(λ) Uᵀ`` is the training covariance (``n - 1`` normalisation). The whitened training data has
    covariance ≈ I and, unlike PCA whitening, stays as close as possible to the original data (``W`` is
    symmetric: no rotation into the components' basis) — the classic whitening for images.

    Methods: ``fit(X)``, ``transform(X)``, ``fit_transform(X)``, ``inverse_transform(X)``, as scikit-learn's;
    inputs are 2-D ``(n_samples, n_features)`` arrays of finite numbers and are never modified; float32 stays
    float32, float64 stays float64, other numeric input becomes float32.

    Parameters
    ----------
    eps : float, default 1e-5
        Added to the eigenvalues; >= 0. Larger values whiten less.

    Raises
    ------
    ValueError
        If ``eps < 0``, or for bad input.

    See Also
    --------
    PCA

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> X = np.random.default_rng(0).standard_normal((500, 3)) @ np.array([[2.0, 0, 0], [1, 1, 0], [0, 0, 3]])
    >>> W = fnn.data.ZCA(eps=0).fit_transform(X)
    >>> np.allclose(np.cov(W, rowvar=False), np.eye(3))
    True
    """

    def __init__(self, eps=1e-5):
        self.eps = float(eps)
        if self.eps < 0:
            raise ValueError(f"ZCA: eps must be >= 0, got {eps}")

    def __repr__(self):
        return f"ZCA(eps={self.eps:g})"

    def fit(self, X, y=None):
        X = self._fit_input(X).astype(np.float64, copy=False)
        if len(X) < 2:
            raise ValueError(f"ZCA.fit: need at least 2 samples, got X of shape {X.shape}")
        self.mean_ = X.mean(axis=0)
        Xc = X - self.mean_
        cov = Xc.T @ Xc / (len(X) - 1)
        lam, U = np.linalg.eigh(cov)
        lam = np.maximum(lam, 0.0)
        if self.eps == 0 and (lam <= 0).any():
            raise ValueError("ZCA.fit: the covariance is singular; use eps > 0")
        self.whitening_ = (U / np.sqrt(lam + self.eps)) @ U.T
        self.coloring_ = (U * np.sqrt(lam + self.eps)) @ U.T
        return self

    def transform(self, X):
        X = self._checked(X, "transform")
        return ((X.astype(np.float64) - self.mean_) @ self.whitening_).astype(_output_dtype(X.dtype), copy=False)

    def inverse_transform(self, X):
        X = self._checked(X, "inverse_transform")
        return (X.astype(np.float64) @ self.coloring_ + self.mean_).astype(_output_dtype(X.dtype), copy=False)
