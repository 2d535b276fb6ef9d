"""fastnn.sklearn: parameters, targets of every kind, sample weights, seeding, warm starts, partial_fit,
early stopping, history and errors."""
import os
import subprocess
import sys

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_iris, make_multilabel_classification, make_regression
from sklearn.exceptions import NotFittedError

import fastnn as fnn
from fastnn.sklearn import MLPClassifier, MLPRegressor, NeuralNetClassifier, NeuralNetRegressor


def small_mlp(n_features_in, n_outputs, width=16):
    return fnn.nn.Sequential(fnn.nn.Linear(n_features_in, width), fnn.nn.ReLU(), fnn.nn.Linear(width, n_outputs))


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return (X - X.mean(0)) / X.std(0), y


def quick(**kw):
    return MLPClassifier(**{"hidden_layer_sizes": (16,), "lr": 1e-2, "max_epochs": 30, "random_state": 0, **kw})


# -- parameters ------------------------------------------------------------------------------------------------
def test_import_fastnn_does_not_import_scikit_learn():
    code = "import sys, fastnn; print('sklearn' in sys.modules, 'fastnn.sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.stdout.split() == ["False", "False"]


def test_nested_parameters_get_set_and_clone():
    net = NeuralNetClassifier(small_mlp, module__width=8, optimizer="sgd", optimizer__momentum=0.9, lr=0.1)
    params = net.get_params()
    assert params["module__width"] == 8 and params["optimizer__momentum"] == 0.9 and params["module"] is small_mlp
    net.set_params(module__width=32, optimizer__nesterov=True, max_epochs=3)
    assert net.get_params()["module__width"] == 32 and net.max_epochs == 3
    twin = clone(net)
    assert twin.get_params() == net.get_params() and twin is not net
    assert "module__width=32" in repr(net)


def test_nested_parameters_reach_the_module_and_optimizer(iris):
    X, y = iris
    net = NeuralNetClassifier(small_mlp, module__width=7, optimizer="sgd", optimizer__momentum=0.5, max_epochs=1,
                              random_state=0).fit(X, y)
    assert net.module_[0].out_features == 7
    assert isinstance(net.optimizer_, fnn.optim.SGD) and net.optimizer_.param_groups[0]["momentum"] == 0.5
    mlp = MLPClassifier(hidden_layer_sizes=(5, 6), optimizer="sgd", max_epochs=1, random_state=0).fit(X, y)
    group = mlp.optimizer_.param_groups[0]
    assert (group["momentum"], group["nesterov"]) == (0.9, True)  # scikit-learn's solver='sgd' defaults
    assert [c.shape for c in mlp.coefs_] == [(4, 5), (5, 6), (6, 3)] and mlp.n_layers_ == 4


def test_unknown_nested_parameter_is_refused():
    with pytest.raises(TypeError, match="optimizer__"):
        MLPClassifier(modul__width=3)
    with pytest.raises(ValueError, match="Invalid parameter 'optimizr'"):
        MLPClassifier().set_params(optimizr__lr=0.1)


@pytest.mark.parametrize("params, match", [
    (dict(hidden_layer_sizes=(0,)), "hidden_layer_sizes"),
    (dict(activation="swish"), "activation"),
    (dict(optimizer="lbfgs"), "optimizer"),
    (dict(optimizer=fnn.optim.LBFGS), "L-BFGS"),
    (dict(alpha=-1.0), "alpha"),
    (dict(batch_size=0), "batch_size"),
    (dict(max_epochs=-1), "max_epochs"),
    (dict(dropout=1.0), "dropout"),
    (dict(early_stopping=True, validation_fraction=1.5), "validation_fraction"),
    (dict(dtype="float16"), "dtype"),
    (dict(random_state=-3), "random_state"),
    (dict(callbacks=[print]), "callbacks"),
    (dict(shuffle=np.array([1, 0])), "shuffle"),
    (dict(activation=["relu"]), "activation"),
    (dict(batch_size=np.array([1, 2])), "batch_size"),
])
def test_bad_hyperparameters_raise_at_fit(iris, params, match):
    X, y = iris
    est = MLPClassifier(**params)  # __init__ only stores them, as scikit-learn requires
    with pytest.raises(ValueError, match=match):
        est.fit(X, y)


def test_bad_inputs_give_clear_errors(iris):
    X, y = iris
    clf = quick(max_epochs=2).fit(X, y)
    with pytest.raises(ValueError, match="NaN"):
        quick().fit(np.where(np.arange(X.size).reshape(X.shape) == 5, np.nan, X), y)
    with pytest.raises(ValueError, match="4 features"):
        clf.predict(X[:, :3])
    with pytest.raises(ValueError, match="infinity|inf"):
        clf.predict_proba(np.full((2, 4), np.inf))
    import scipy.sparse as sp
    with pytest.raises(TypeError, match="[Ss]parse"):
        quick().fit(sp.csr_matrix(X), y)
    with pytest.raises(ValueError, match="Unknown label type"):
        quick().fit(X, X[:, 0])
    with pytest.raises(ValueError, match="zero"):
        quick().fit(X, y, sample_weight=np.zeros(len(y)))
    with pytest.raises(ValueError, match="sample_weight"):
        quick().fit(X, y, sample_weight=np.ones(3))
    with pytest.raises(NotFittedError):
        quick().predict(X)
    with pytest.raises(ValueError, match="classes"):
        quick().partial_fit(X, y)
    with pytest.raises(ValueError, match="classes not in classes_"):
        clf.partial_fit(X, y + 5)
    with pytest.raises(ValueError, match="early_stopping"):
        quick(early_stopping=True).partial_fit(X, y, classes=[0, 1, 2])


def test_module_factory_must_return_a_module(iris):
    X, y = iris
    with pytest.raises(TypeError, match="fastnn.nn.Module"):
        NeuralNetClassifier(lambda n_in, n_out: "not a module").fit(X, y)
    with pytest.raises(TypeError, match="callable"):
        NeuralNetClassifier(module=3).fit(X, y)


# -- targets -------------------------------------------------------------------------------------------------------
def test_string_and_non_contiguous_labels(iris):
    X, y = iris
    names = np.array(["setosa", "versicolor", "virginica"], dtype=object)[y]
    clf = quick().fit(X, names)
    assert list(clf.classes_) == ["setosa", "versicolor", "virginica"]
    assert set(clf.predict(X)) <= set(names) and clf.score(X, names) > 0.85
    codes = np.array([-7, 20, 400])
    coded = quick().fit(X, codes[y])  # the same class indices underneath: the same training
    assert list(coded.classes_) == [-7, 20, 400]
    assert np.array_equal(coded.predict(X), codes[quick().fit(X, y).predict(X)])


def test_pandas_dataframe_sets_feature_names(iris):
    import pandas as pd
    X, y = iris
    df = pd.DataFrame(X, columns=["sl", "sw", "pl", "pw"])
    clf = quick().fit(df, pd.Series(y))
    assert list(clf.feature_names_in_) == ["sl", "sw", "pl", "pw"]
    assert np.array_equal(clf.predict(df), quick().fit(X, y).predict(X))
    with pytest.raises(ValueError, match="feature names"):
        clf.predict(df[["pw", "pl", "sw", "sl"]])


def test_binary_outputs_and_decision_function(iris):
    X, y = iris
    yb = np.where(y > 0, "yes", "no")
    clf = quick().fit(X, yb)
    d, p = clf.decision_function(X), clf.predict_proba(X)
    assert d.shape == (len(X),) and p.shape == (len(X), 2)
    assert np.array_equal(clf.predict(X), np.where(d > 0, "yes", "no"))
    np.testing.assert_allclose(p[:, 1], 1 / (1 + np.exp(-d)), rtol=1e-12)
    # one sigmoid output with BCEWithLogitsLoss
    net = NeuralNetClassifier(small_mlp, loss=fnn.nn.BCEWithLogitsLoss, lr=1e-2, max_epochs=30, random_state=0)
    net.fit(X, yb)
    assert net.n_outputs_ == 1 and net.score(X, yb) > 0.95
    np.testing.assert_allclose(net.predict_proba(X).sum(1), 1.0)


def test_multilabel_targets():
    X, Y = make_multilabel_classification(n_samples=150, n_classes=4, random_state=0)
    clf = MLPClassifier(hidden_layer_sizes=(32,), lr=1e-2, max_epochs=60, random_state=0).fit(X, Y)
    pred, proba = clf.predict(X), clf.predict_proba(X)
    assert pred.shape == Y.shape and proba.shape == Y.shape and clf.out_activation_ == "logistic"
    assert np.array_equal(pred, (proba > 0.5).astype(int))
    assert np.mean(pred == Y) > 0.8


def test_multi_output_regression():
    X, Y = make_regression(n_samples=200, n_features=5, n_targets=3, random_state=0)
    Y = Y / Y.std(0)
    reg = MLPRegressor(hidden_layer_sizes=(32,), lr=1e-2, max_epochs=100, random_state=0).fit(X, Y)
    assert reg.predict(X).shape == (200, 3) and reg.n_outputs_ == 3 and reg.score(X, Y) > 0.95
    assert reg.predict(X).dtype == np.float64 and reg.out_activation_ == "identity"
    assert 0.9 < reg.history_["r2"][-1] <= 1.0
    one = MLPRegressor(hidden_layer_sizes=(8,), max_epochs=2, random_state=0).fit(X, Y[:, 0])
    assert one.predict(X).shape == (200,)


def test_regressor_loss_is_half_squared_error():
    X, y = make_regression(n_samples=64, n_features=3, random_state=0)
    reg = MLPRegressor(hidden_layer_sizes=(4,), alpha=0.0, lr=0.0, max_epochs=1, batch_size=64, shuffle=False,
                       random_state=0).fit(X, y)
    assert reg.loss_ == pytest.approx(0.5 * np.mean((reg.predict(X) - y) ** 2), rel=1e-5)


# -- sample weights and the L2 penalty -------------------------------------------------------------------------
def test_zero_weight_equals_removing_the_sample(iris):
    X, y = iris
    sw = np.ones(len(y))
    sw[::3] = 0
    kw = dict(dtype="float64", batch_size=1000, shuffle=False, max_epochs=20)
    weighted = quick(**kw).fit(X, y, sample_weight=sw)
    removed = quick(**kw).fit(X[sw > 0], y[sw > 0])
    np.testing.assert_allclose(weighted.predict_proba(X), removed.predict_proba(X), rtol=1e-10, atol=1e-12)


def test_weighted_history_and_validation_scores(iris):
    X, y = iris
    sw = np.where(y == 0, 5.0, 1.0)
    clf = quick(early_stopping=True, validation_fraction=0.3, max_epochs=5).fit(X, y, sample_weight=sw)
    assert len(clf.validation_scores_) == 5 == len(clf.history_["val_accuracy"])
    assert clf.validation_scores_ == clf.history_["val_accuracy"]


def test_alpha_is_scikit_learns_l2_penalty(iris):
    # One full-batch SGD step without momentum: w1 = w0 − lr·(∂loss/∂w0 + alpha/n·w0).
    X, y = iris
    kw = dict(optimizer="sgd", optimizer__momentum=0.0, optimizer__nesterov=False, lr=0.1, batch_size=150,
              shuffle=False, dtype="float64")
    plain = quick(alpha=0.0, max_epochs=1, **kw).fit(X, y)
    penalised = quick(alpha=3.0, max_epochs=1, **kw).fit(X, y)
    w0 = quick(max_epochs=0, **kw).fit(X, y).coefs_
    for a, b, w in zip(plain.coefs_, penalised.coefs_, w0):
        np.testing.assert_allclose(b - a, -0.1 * 3.0 / 150 * w, rtol=1e-9, atol=1e-14)
    penalty = 3.0 / (2 * 150) * sum(np.sum(w ** 2) for w in w0)
    assert penalised.loss_ == pytest.approx(plain.loss_ + penalty, rel=1e-9)
    assert penalised.optimizer_.param_groups[0]["weight_decay"] == 0.0  # no trace left in the optimizer


@pytest.mark.parametrize("optimizer", ["adamw", "rprop"])
def test_alpha_with_any_optimizer(iris, optimizer):
    X, y = iris
    a = quick(alpha=0.0, optimizer=optimizer, max_epochs=3).fit(X, y)
    b = quick(alpha=50.0, optimizer=optimizer, max_epochs=3).fit(X, y)
    assert sum(np.sum(w ** 2) for w in b.coefs_) < sum(np.sum(w ** 2) for w in a.coefs_)


# -- seeding ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [
    lambda: quick(dropout=0.2, batch_norm=True, early_stopping=True, random_state=7),
    lambda: NeuralNetClassifier(small_mlp, max_epochs=10, validation_fraction=0.2, random_state=7),
])
def test_clones_with_the_same_random_state_are_bit_identical(iris, make):
    X, y = iris
    first = make().fit(X, y)
    fnn.manual_seed(123)  # global state changed between the fits...
    np.random.seed(99)
    np.random.rand(5)
    second = clone(first).fit(X, y)
    assert np.array_equal(first.predict_proba(X), second.predict_proba(X))  # ...changes nothing
    assert first.history_ == second.history_
    assert not np.array_equal(first.predict_proba(X), clone(first).set_params(random_state=8).fit(X, y)
                              .predict_proba(X))


def test_fit_leaves_fastnns_global_generator_alone(iris):
    X, y = iris
    fnn.manual_seed(5)
    expected = fnn.random.generator().random(3)
    fnn.manual_seed(5)
    quick(max_epochs=2, dropout=0.5).fit(X, y)
    assert np.array_equal(fnn.random.generator().random(3), expected)


def test_random_state_none_follows_numpys_global_seed(iris):
    X, y = iris
    np.random.seed(0)
    a = quick(random_state=None, max_epochs=3).fit(X, y).predict_proba(X)
    np.random.seed(0)
    b = quick(random_state=None, max_epochs=3).fit(X, y).predict_proba(X)
    assert np.array_equal(a, b)


# -- continuing training ------------------------------------------------------------------------------------------
def test_warm_start_and_partial_fit_continue_exactly(iris):
    X, y = iris
    kw = dict(n_iter_no_change=100, dropout=0.1)
    five = quick(max_epochs=5, **kw).fit(X, y)
    warm = quick(max_epochs=3, warm_start=True, **kw).fit(X, y)
    warm.set_params(max_epochs=2).fit(X, y)
    assert np.array_equal(warm.predict_proba(X), five.predict_proba(X))
    assert warm.history_["loss"] == five.history_["loss"] and warm.n_iter_ == 2 and warm.t_ == 5 * len(X)
    partial = quick(**kw)
    for _ in range(5):
        partial.partial_fit(X, y, classes=np.array([0, 1, 2]))
    assert np.array_equal(partial.predict_proba(X), five.predict_proba(X)) and partial.n_iter_ == 1
    cold = quick(max_epochs=3, **kw).fit(X, y).set_params(max_epochs=2).fit(X, y)
    assert len(cold.history_["loss"]) == 2  # without warm_start a fit starts afresh


def test_partial_fit_classes_may_exceed_the_batch(iris):
    X, y = iris
    clf = quick()
    clf.partial_fit(X[y < 2], y[y < 2], classes=[0, 1, 2])
    clf.partial_fit(X[y == 2], y[y == 2])
    assert list(clf.classes_) == [0, 1, 2] and clf.predict_proba(X).shape == (150, 3)
    reg = MLPRegressor(hidden_layer_sizes=(4,), random_state=0)
    reg.partial_fit(X, y.astype(float))
    with pytest.raises(ValueError, match="target"):
        reg.partial_fit(X, np.column_stack([y, y]).astype(float))


# -- stopping and history ------------------------------------------------------------------------------------------
def test_early_stopping_keeps_the_best_validation_weights(iris):
    X, y = iris
    clf = quick(early_stopping=True, n_iter_no_change=2, max_epochs=200, lr=0.05).fit(X, y)
    assert clf.n_iter_ < 200 and clf.best_loss_ is None
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    # the scores after the best one did not beat it by tol for n_iter_no_change + 1 epochs
    best = int(np.argmax(clf.validation_scores_))
    assert len(clf.validation_scores_) - 1 - best >= 3


def test_training_loss_stopping_rule(iris):
    X, y = iris
    clf = quick(tol=10.0, n_iter_no_change=3, max_epochs=100).fit(X, y)
    assert clf.n_iter_ == 5  # as scikit-learn: the first epoch sets best_loss_, then 3 + 1 epochs fail by tol
    assert clf.best_loss_ == min(clf.loss_curve_) and clf.validation_scores_ is None


def test_history_and_callbacks(iris):
    X, y = iris
    net = NeuralNetClassifier(small_mlp, max_epochs=50, lr=0.05, validation_fraction=0.2, random_state=0,
                              callbacks=[fnn.callbacks.EarlyStopping(monitor="val_loss", patience=2)])
    net.fit(X, y)
    assert set(net.history_) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}
    assert all(len(v) == net.n_iter_ for v in net.history_.values())
    assert net.callbacks_[0] is not net.callbacks[0] and net.callbacks[0].best_epoch is None  # param untouched
    assert net.callbacks_[0].best_epoch is not None and net.callbacks_[0].trainer is None


def test_verbose_prints_fastnns_progress(iris, capsys):
    X, y = iris
    quick(max_epochs=2, verbose=2).fit(X, y)
    out = capsys.readouterr().out
    assert out.count("loss") >= 2


def test_predictions_do_not_depend_on_the_batch(iris):
    X, y = iris
    clf = quick(hidden_layer_sizes=(64, 64)).fit(X, y)
    full = clf.predict_proba(X)
    one_by_one = np.concatenate([clf.predict_proba(X[i:i + 1]) for i in range(len(X))])
    assert np.array_equal(full, one_by_one)


def test_sample_weight_with_a_summed_loss(iris):
    X, y = iris
    y = y.astype(float)
    make = lambda: NeuralNetRegressor(small_mlp, loss=fnn.nn.MSELoss(reduction="sum"), max_epochs=5,  # noqa: E731
                                      dtype="float64", random_state=0)
    plain, ones, twos = make().fit(X, y), make().fit(X, y, sample_weight=np.ones(len(y))), make()
    twos.fit(X, y, sample_weight=np.full(len(y), 2.0))
    np.testing.assert_allclose(ones.predict(X), plain.predict(X), rtol=1e-12)
    np.testing.assert_allclose(ones.history_["loss"], plain.history_["loss"], rtol=1e-12)
    # Σ w·l: twice the loss; Adam's steps do not depend on the scale (up to eps)
    np.testing.assert_allclose(twos.history_["loss"], 2 * np.array(plain.history_["loss"]), rtol=1e-6)


def test_a_fitted_model_keeps_its_precision(iris):
    X, y = iris
    clf = quick(max_epochs=3, warm_start=True).fit(X, y)
    before = clf.predict_proba(X)
    clf.set_params(dtype="float64")
    assert np.array_equal(clf.predict_proba(X), before)  # changing a parameter does not change the fitted model
    clf.fit(X, y)  # a warm start continues the float32 model
    assert clf.module_.dtype == np.float32
    assert clf.set_params(warm_start=False).fit(X, y).module_.dtype == np.float64
