"""fastnn.data preprocessing: StandardScaler against a NumPy oracle."""
import numpy as np
import pytest

import fastnn as fnn
from fastnn.data import StandardScaler


def _data(n=64, d=5, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    # very different scales and offsets per feature
    return (rng.standard_normal((n, d)) * np.array([1e-3, 1.0, 50.0, 2.0, 1e4])[:d]
            + np.array([5.0, -3.0, 1e3, 0.0, -7e4])[:d]).astype(dtype)


def test_matches_numpy_oracle_float64():
    X = _data()
    sc = StandardScaler().fit(X)
    mean, std = X.mean(axis=0), X.std(axis=0)  # population std (ddof=0)
    np.testing.assert_allclose(sc.mean_, mean, rtol=1e-13, atol=0)
    np.testing.assert_allclose(sc.var_, X.var(axis=0), rtol=1e-12)
    np.testing.assert_allclose(sc.scale_, std, rtol=1e-12)
    assert sc.n_features_in_ == 5 and sc.n_samples_seen_ == 64
    Z = sc.transform(X)
    assert Z.dtype == np.float64 and Z.shape == X.shape
    np.testing.assert_allclose(Z, (X - mean) / std, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(Z.mean(axis=0), 0, atol=1e-10)
    np.testing.assert_allclose(Z.std(axis=0), 1, rtol=1e-12)


def test_fit_on_train_applies_train_statistics_to_other_splits():
    X, Xt = _data(seed=1), _data(n=10, seed=2)
    sc = StandardScaler().fit(X)
    np.testing.assert_allclose(sc.transform(Xt), (Xt - X.mean(0)) / X.std(0), rtol=1e-10, atol=1e-12)
    assert np.abs(sc.transform(Xt).mean(axis=0)).max() > 1e-3  # not re-centred on the test split


def test_fit_transform_equals_fit_then_transform():
    X = _data(seed=3)
    np.testing.assert_array_equal(StandardScaler().fit_transform(X), StandardScaler().fit(X).transform(X))


def test_float32_in_float32_out():
    X64 = _data(seed=4)
    X = X64.astype(np.float32)
    sc = StandardScaler().fit(X)
    Z = sc.transform(X)
    assert Z.dtype == np.float32
    assert sc.mean_.dtype == np.float64  # statistics accumulated in float64
    Xd = X.astype(np.float64)
    np.testing.assert_allclose(Z, (Xd - Xd.mean(0)) / Xd.std(0), rtol=1e-5, atol=1e-5)
    assert sc.inverse_transform(Z).dtype == np.float32


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.bool_])
def test_integer_input_gives_float32(dtype):
    X = (np.arange(24).reshape(8, 3) % np.array([5, 2, 7])).astype(dtype)
    sc = StandardScaler().fit(X)
    Z = sc.transform(X)
    assert Z.dtype == np.float32
    Xd = X.astype(np.float64)
    np.testing.assert_allclose(Z, (Xd - Xd.mean(0)) / Xd.std(0), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_constant_features_are_centred_with_scale_one(dtype):
    X = _data(n=20, d=3, seed=5).astype(dtype)
    X[:, 1] = 0.1            # not exactly representable: rounding must not create a tiny spurious scale
    X = np.column_stack([X, np.full(20, 7.0, dtype), np.zeros(20, dtype)])
    sc = StandardScaler().fit(X)
    assert sc.scale_[1] == 1.0 and sc.scale_[3] == 1.0 and sc.scale_[4] == 1.0
    assert sc.var_[3] == 0.0 and sc.var_[4] == 0.0
    assert sc.mean_[3] == 7.0
    Z = sc.transform(X)
    assert np.isfinite(Z).all()
    assert np.all(Z[:, [1, 3, 4]] == 0.0)
    np.testing.assert_allclose(sc.transform(X[:2] + np.array([0, 0, 0, 1.0, 2.0], dtype))[:, 3:],
                               [[1.0, 2.0], [1.0, 2.0]], rtol=1e-6)
    # a single sample: every feature is constant
    one = StandardScaler().fit(X[:1])
    assert np.all(one.scale_ == 1.0) and np.all(one.transform(X[:1]) == 0.0)


def test_inverse_transform_round_trip():
    X = _data(seed=6)
    sc = StandardScaler().fit(X)
    np.testing.assert_allclose(sc.inverse_transform(sc.transform(X)), X, rtol=1e-12, atol=1e-9)
    X32 = X[:, :4].astype(np.float32)
    sc32 = StandardScaler().fit(X32)
    np.testing.assert_allclose(sc32.inverse_transform(sc32.transform(X32)), X32, rtol=1e-5, atol=1e-3)


def test_with_mean_and_with_std_switches():
    X = _data(seed=7)
    no_mean = StandardScaler(with_mean=False).fit(X)
    np.testing.assert_allclose(no_mean.transform(X), X / X.std(0), rtol=1e-10)
    no_std = StandardScaler(with_std=False).fit(X)
    assert no_std.scale_ is None and no_std.var_ is None
    np.testing.assert_allclose(no_std.transform(X), X - X.mean(0), rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(no_std.inverse_transform(no_std.transform(X)), X, rtol=1e-12)
    neither = StandardScaler(with_mean=False, with_std=False).fit(X)
    assert neither.mean_ is None
    np.testing.assert_array_equal(neither.transform(X), X)
    assert repr(no_mean) == "StandardScaler(with_mean=False)"


def test_input_is_not_modified_and_lists_are_accepted():
    X = _data(seed=8)
    copy = X.copy()
    sc = StandardScaler().fit(X)
    Z = sc.transform(X)
    sc.inverse_transform(Z)
    np.testing.assert_array_equal(X, copy)
    Zl = StandardScaler().fit_transform(X.tolist())
    assert Zl.dtype == np.float64
    np.testing.assert_allclose(Zl, Z)


def test_errors():
    X = _data(d=3, seed=9)
    with pytest.raises(ValueError, match="not fitted"):
        StandardScaler().transform(X)
    with pytest.raises(ValueError, match="not fitted"):
        StandardScaler().inverse_transform(X)
    sc = StandardScaler().fit(X)
    with pytest.raises(ValueError, match="X has 4 features.*fitted on 3"):
        sc.transform(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="X has 2 features.*fitted on 3"):
        sc.inverse_transform(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="2-D"):
        sc.transform(np.zeros(3))
    with pytest.raises(ValueError, match="2-D"):
        StandardScaler().fit(np.zeros(5))
    with pytest.raises(ValueError, match="no samples"):
        StandardScaler().fit(np.zeros((0, 3)))
    bad = X.copy()
    bad[1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        StandardScaler().fit(bad)
    with pytest.raises(ValueError, match="NaN"):
        sc.transform(bad)
    with pytest.raises(TypeError, match="numeric"):
        StandardScaler().fit(np.array([["a", "b"]]))


def test_agrees_with_scikit_learn():
    preprocessing = pytest.importorskip("sklearn.preprocessing")
    X = _data(n=30, seed=10)
    X[:, 2] = 3.3
    ours, theirs = StandardScaler().fit(X), preprocessing.StandardScaler().fit(X)
    np.testing.assert_allclose(ours.mean_, theirs.mean_, rtol=1e-14)
    np.testing.assert_allclose(ours.var_, theirs.var_, rtol=1e-12, atol=1e-20)
    np.testing.assert_allclose(ours.scale_, theirs.scale_, rtol=1e-12)
    np.testing.assert_allclose(ours.transform(X), theirs.transform(X), rtol=1e-10, atol=1e-12)


def test_exported_from_fastnn_data():
    assert fnn.data.StandardScaler is StandardScaler
    assert "StandardScaler" in fnn.data.__all__
