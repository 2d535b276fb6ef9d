"""Feature scalers: fit on the training split, then transform any split the same way.

Output dtypes: float32 input -> float32, float64 input -> float64, anything else (integers, bool,
float16) -> float32, fastnn's default. Statistics are always accumulated in float64 (two-pass mean and
variance), and the fitted attributes are float64 arrays, as in scikit-learn.
"""
import numpy as np

__all__ = ["StandardScaler"]


def _output_dtype(dtype):
    return np.dtype(np.float64) if dtype == np.float64 else np.dtype(np.float32)


def _check_2d(owner, X, what):
    """X as an ndarray of shape (n_samples, n_features) of a real numeric dtype, all values finite."""
    if not isinstance(X, np.ndarray):
        try:
            X = np.asarray(X)
        except (ValueError, TypeError) as e:
            raise TypeError(f"{owner}.{what}: X must be a 2-D numeric array ({e})") from None
    if X.dtype.kind not in "fiub":
        raise TypeError(f"{owner}.{what}: X must be a real numeric array, got dtype {X.dtype}")
    if X.ndim != 2:
        raise ValueError(f"{owner}.{what}: expected a 2-D array (n_samples, n_features), got shape {X.shape}; "
                         f"reshape a single feature with X.reshape(-1, 1) or a single sample with "
                         f"X.reshape(1, -1)")
    if X.dtype.kind == "f" and not np.isfinite(X).all():
        raise ValueError(f"{owner}.{what}: X of shape {X.shape} contains NaN or infinity")
    return X


class StandardScaler:
    """Standardise features, ``z = (x - mean_) / scale_`` per column, with the training split's statistics.

    Population statistics (``ddof=0``), as scikit-learn. Constant features (variance zero up to rounding) get
    ``scale_`` 1: they are centred, never NaN.

    Methods: ``fit(X)``, ``transform(X)``, ``fit_transform(X)``, ``inverse_transform(X)``, as scikit-learn's;
    inputs are 2-D ``(n_samples, n_features)`` arrays of finite numbers and are never modified; float32 stays
    float32, float64 stays float64, other numeric input becomes float32.

    Parameters
    ----------
    with_mean : bool, default True
        Centre the features.
    with_std : bool, default True
        Scale them to unit variance.

    Attributes
    ----------
    mean_, var_, scale_ : ndarray of float64, shape (n_features,), or None
        The statistics (``var_`` and ``scale_`` are None without ``with_std``; ``mean_`` is None when both
        options are off).
    n_features_in_ : int
        Features seen by ``fit``.
    n_samples_seen_ : int
        Samples seen by ``fit``.

    Raises
    ------
    ValueError
        For input that is not 2-D, holds NaN or infinity, or has another number of features than at ``fit``.

    See Also
    --------
    MinMaxScaler, PCA, ZCA

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> X = np.array([[1.0, 10.0], [3.0, 10.0]], np.float32)
    >>> scaler = fnn.data.StandardScaler().fit(X)
    >>> scaler.mean_, scaler.scale_
    (array([ 2., 10.]), array([1., 1.]))
    >>> scaler.transform(X)                            # the constant column is centred, not NaN
    array([[-1.,  0.],
           [ 1.,  0.]], dtype=float32)
    >>> scaler.inverse_transform(scaler.transform(X))
    array([[ 1., 10.],
           [ 3., 10.]], dtype=float32)
    """

    def __init__(self, with_mean=True, with_std=True):
        self.with_mean = bool(with_mean)
        self.with_std = bool(with_std)

    def __repr__(self):
        args = []
        if not self.with_mean:
            args.append("with_mean=False")
        if not self.with_std:
            args.append("with_std=False")
        return f"StandardScaler({', '.join(args)})"

    def fit(self, X, y=None):
        """Compute per-feature mean and standard deviation of X; returns self."""
        X = _check_2d("StandardScaler", X, "fit")
        n, d = X.shape
        if n == 0:
            raise ValueError(f"StandardScaler.fit: X of shape {X.shape} has no samples")
        X64 = X.astype(np.float64, copy=False)
        mean = X64.mean(axis=0)
        # The mean of identical values is that value (summation would round it): constants map to exactly 0.
        same = (X64 == X64[0]).all(axis=0)
        mean[same] = X64[0, same]
        if self.with_std:
            var = ((X64 - mean) ** 2).mean(axis=0)
            # scikit-learn's test for constant features: variance within the rounding error of its estimate
            eps = np.finfo(np.float64).eps
            constant = var <= n * eps * var + (n * mean * eps) ** 2
            scale = np.sqrt(var)
            scale[constant] = 1.0
            self.var_, self.scale_ = var, scale
        else:
            self.var_ = self.scale_ = None
        self.mean_ = mean if (self.with_mean or self.with_std) else None
        self.n_features_in_ = d
        self.n_samples_seen_ = n
        return self

    def _check_fitted(self, X, what):
        if not hasattr(self, "n_features_in_"):
            raise ValueError(f"StandardScaler.{what}: this StandardScaler is not fitted yet; call fit(X) first")
        X = _check_2d("StandardScaler", X, what)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"StandardScaler.{what}: X has {X.shape[1]} features (shape {X.shape}), but the "
                             f"scaler was fitted on {self.n_features_in_} features")
        return X

    def transform(self, X):
        """(X - ``mean_``) / ``scale_`` as a new array (float32 or float64, see the class docstring)."""
        X = self._check_fitted(X, "transform")
        out = X.astype(np.float64, copy=True)
        if self.with_mean:
            out -= self.mean_
        if self.with_std:
            out /= self.scale_
        return out.astype(_output_dtype(X.dtype), copy=False)

    def fit_transform(self, X, y=None):
        return self.fit(X).transform(X)

    def inverse_transform(self, X):
        """X * ``scale_`` + ``mean_``: back to the original units."""
        X = self._check_fitted(X, "inverse_transform")
        out = X.astype(np.float64, copy=True)
        if self.with_std:
            out *= self.scale_
        if self.with_mean:
            out += self.mean_
        return out.astype(_output_dtype(X.dtype), copy=False)
