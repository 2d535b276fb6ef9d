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
    """x' = (x − data_min_)·scale_ + feature_range[0], so the training data spans feature_range per feature,
    e.g. (0, 1) or (−1, 1). Constant features map to feature_range[0] (scale_ as if their range were 1)."""

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
    """x' = log(1 + x) (numpy.log1p), for non-negative skewed features such as counts; fit only records the
    number of features. Values must be > −1."""

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
    """Principal components from the SVD of the centred training data X − mean_ = U S Vᵀ.

    components_ (k, n_features): the first k rows of Vᵀ (k = n_components, all min(n, d) when None), signs
    fixed so the largest-magnitude entry of each component is positive. explained_variance_ = S²/(n − 1),
    explained_variance_ratio_ its share of the total. transform: (X − mean_)·components_ᵀ, divided by
    sqrt(explained_variance_) when whiten=True (unit variance per component on the training data:
    covariance I with the n − 1 normalisation). inverse_transform maps back (exactly when k = d).
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
    """ZCA whitening: x' = (x − mean_)·W with W = U·diag(1/sqrt(λ + eps))·Uᵀ from the eigen-decomposition
    Σ = U·diag(λ)·Uᵀ of the training covariance (n − 1 normalisation). The whitened training data has
    covariance ≈ I (exactly I as eps → 0) and, unlike PCA whitening, stays as close as possible to the
    original data (W is symmetric: no rotation into the components' basis)."""

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
