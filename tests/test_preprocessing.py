"""MinMaxScaler, LogTransform, PCA and ZCA."""
import numpy as np
import pytest

import fastnn as fnn


def correlated(n=200, seed=0):
    r = np.random.default_rng(seed)
    A = np.array([[2.0, 0.0, 0.0, 0.0], [1.0, 0.5, 0.0, 0.0], [0.3, -0.2, 0.1, 0.0], [0.0, 0.4, 0.2, 3.0]])
    return r.standard_normal((n, 4)) @ A + np.array([5.0, -1.0, 0.0, 2.0])


@pytest.mark.parametrize("feature_range", [(0, 1), (-1, 1)])
def test_min_max_range_and_inverse(feature_range):
    X = correlated()
    s = fnn.data.MinMaxScaler(feature_range=feature_range).fit(X)
    Z = s.transform(X)
    np.testing.assert_allclose(Z.min(0), feature_range[0], atol=1e-12)
    np.testing.assert_allclose(Z.max(0), feature_range[1], atol=1e-12)
    np.testing.assert_allclose(s.inverse_transform(Z), X, rtol=1e-12, atol=1e-12)
    other = correlated(seed=1)          # another split: same affine map, may leave the range
    np.testing.assert_allclose(s.transform(other), (other - X.min(0)) / (X.max(0) - X.min(0)) *
                               (feature_range[1] - feature_range[0]) + feature_range[0], rtol=1e-12)


def test_min_max_constant_feature_and_dtypes():
    X = np.array([[1, 7], [3, 7], [2, 7]], dtype=np.int64)
    Z = fnn.data.MinMaxScaler().fit_transform(X)
    assert Z.dtype == np.float32
    np.testing.assert_array_equal(Z, [[0, 0], [1, 0], [0.5, 0]])
    with pytest.raises(ValueError, match="feature_range"):
        fnn.data.MinMaxScaler((1, 0))
    with pytest.raises(ValueError, match="not fitted"):
        fnn.data.MinMaxScaler().transform(X)


def test_log_transform():
    X = np.array([[0.0, 9.0], [np.e - 1, 99.0]], dtype=np.float32)
    t = fnn.data.LogTransform().fit(X)
    np.testing.assert_allclose(t.transform(X), [[0, np.log(10)], [1, np.log(100)]], rtol=1e-6)
    np.testing.assert_allclose(t.inverse_transform(t.transform(X)), X, rtol=1e-6)
    with pytest.raises(ValueError, match="-1"):
        t.transform(np.array([[-1.0, 0.0]]))


def test_pca_matches_numpy_svd_up_to_sign():
    X = correlated()
    pca = fnn.data.PCA(2).fit(X)
    Xc = X - X.mean(0)
    _, s, vt = np.linalg.svd(Xc, full_matrices=False)
    for k in range(2):
        assert abs(abs(pca.components_[k] @ vt[k]) - 1) < 1e-10
    np.testing.assert_allclose(pca.explained_variance_, s[:2] ** 2 / (len(X) - 1), rtol=1e-12)
    np.testing.assert_allclose(pca.explained_variance_ratio_, s[:2] ** 2 / np.sum(s ** 2), rtol=1e-12)
    Z = fnn.data.PCA(2).fit_transform(X)
    assert Z.shape == (200, 2)
    np.testing.assert_allclose(np.abs(Z), np.abs(Xc @ vt[:2].T), rtol=1e-9, atol=1e-9)
    # all components: an exact round trip; projections are uncorrelated with decreasing variance
    full = fnn.data.PCA().fit(X)
    np.testing.assert_allclose(full.inverse_transform(full.transform(X)), X, rtol=1e-10, atol=1e-10)
    cov = np.cov(full.transform(X), rowvar=False)
    np.testing.assert_allclose(cov, np.diag(full.explained_variance_), atol=1e-9)
    assert np.all(np.diff(full.explained_variance_) <= 0)


def test_pca_whitening_gives_identity_covariance():
    X = correlated()
    pca = fnn.data.PCA(3, whiten=True).fit(X)
    Z = pca.transform(X)
    np.testing.assert_allclose(np.cov(Z, rowvar=False), np.eye(3), atol=1e-10)
    np.testing.assert_allclose(Z.mean(0), 0, atol=1e-10)
    with pytest.raises(ValueError, match="n_components"):
        fnn.data.PCA(5).fit(X)


def test_zca_gives_identity_covariance_and_stays_close_to_the_data():
    X = correlated()
    zca = fnn.data.ZCA(eps=1e-12).fit(X)
    Z = zca.transform(X)
    np.testing.assert_allclose(np.cov(Z, rowvar=False), np.eye(4), atol=1e-6)
    np.testing.assert_allclose(zca.whitening_, zca.whitening_.T, atol=1e-12)  # symmetric: no rotation
    np.testing.assert_allclose(zca.inverse_transform(Z), X, rtol=1e-8, atol=1e-8)
    # the API.md chain, with the default eps: nearly white
    Z2 = fnn.data.ZCA(eps=1e-5).fit(X).transform(X)
    np.testing.assert_allclose(np.cov(Z2, rowvar=False), np.eye(4), atol=5e-3)   # λ/(λ + eps), λ_min ≈ 0.008
    # ZCA is the whitening closest to the data: closer than PCA whitening (same covariance, rotated)
    P = fnn.data.PCA(whiten=True).fit_transform(X)
    Xs = (X - X.mean(0)) / X.std(0)
    assert np.sum((Z - Xs) ** 2) < np.sum((P - Xs) ** 2)
