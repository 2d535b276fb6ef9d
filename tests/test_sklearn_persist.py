"""fastnn.sklearn estimators in Pipelines and grid searches, pickled, joblib-dumped and saved with fastnn.save."""
import io
import pickle

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_digits, load_iris
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import fastnn as fnn
from fastnn.sklearn import MLPClassifier, MLPRegressor, NeuralNetClassifier, NeuralNetRegressor


def small_mlp(n_features_in, n_outputs, width=16):
    return fnn.nn.Sequential(fnn.nn.Linear(n_features_in, width), fnn.nn.ReLU(), fnn.nn.Linear(width, n_outputs))


@fnn.register_module
class TwoLayer(fnn.nn.Module):
    """A registered Module class whose constructor is a factory's: fastnn.load can rebuild it by name."""

    def __init__(self, n_features_in, n_outputs, width=8):
        super().__init__()
        self.body = fnn.nn.Sequential(fnn.nn.Linear(n_features_in, width), fnn.nn.Tanh(),
                                      fnn.nn.Linear(width, n_outputs))

    def forward(self, x):
        return self.body(x)

    def backward(self, g):
        return self.body.backward(g)


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return (X - X.mean(0)) / X.std(0), y


def fitted_estimators(X, y):
    """(estimator, its training target) for each of the four, with options that carry state."""
    names = np.array(["a", "b", "c"], dtype=object)[y]
    return [
        (MLPClassifier(hidden_layer_sizes=(16,), lr=1e-2, max_epochs=5, random_state=0, batch_norm=True,
                       dropout=0.1, optimizer="sgd").fit(X, names), names),
        (MLPRegressor(hidden_layer_sizes=(8,), max_epochs=5, early_stopping=True, random_state=0)
         .fit(X, X[:, :2]), X[:, :2]),
        (NeuralNetClassifier(small_mlp, module__width=8, optimizer="rmsprop", max_epochs=3, random_state=0)
         .fit(X, y), y),
        (NeuralNetRegressor(TwoLayer, loss=fnn.nn.MSELoss(reduction="mean"), max_epochs=3, random_state=0)
         .fit(X, X[:, 0]), X[:, 0]),
    ]


def outputs(est, X):
    return est.predict_proba(X) if hasattr(est, "predict_proba") else est.predict(X)


def assert_same_state(a, b, X, target):
    """Same predictions now, and the same after one more epoch: weights, optimizer moments and the
    generator all came back."""
    assert np.array_equal(outputs(a, X), outputs(b, X))
    assert a.history_ == b.history_ and a.n_iter_ == b.n_iter_ and a.t_ == b.t_
    for est in (a, b):
        if getattr(est, "early_stopping", False):
            est.set_params(early_stopping=False)
        est.partial_fit(X, target)
    assert np.array_equal(outputs(a, X), outputs(b, X))


def test_pickle_round_trip_continues_bit_for_bit(iris):
    X, y = iris
    for est, target in fitted_estimators(X, y):
        twin = pickle.loads(pickle.dumps(est))
        assert twin.get_params().keys() == est.get_params().keys()
        assert_same_state(est, twin, X, target)


def test_pickled_state_is_plain_data(iris):
    """Unpickling needs no fastnn class but the estimator's own (and the parameters': the user's factory, a
    loss instance given as a parameter): the network and the optimizer travel as safetensors bytes."""
    X, y = iris

    class Recorder(pickle.Unpickler):
        def find_class(self, module, name):
            found.add(f"{module}.{name}")
            return super().find_class(module, name)

    for est, _ in fitted_estimators(X, y):
        found = set()
        Recorder(io.BytesIO(pickle.dumps(est))).load()
        fastnn_classes = {name for name in found if name.startswith("fastnn")}
        allowed = {f"{type(est).__module__}.{type(est).__name__}", "fastnn.nn.losses.MSELoss"}
        assert fastnn_classes <= allowed, fastnn_classes
        state = est.__getstate__()
        assert "module_" not in state and "optimizer_" not in state
        tensors, _ = fnn.safetensors.deserialize(state["_fastnn_state"])
        assert any(k.startswith("module.") for k in tensors) and any(k.startswith("optimizer.") for k in tensors)


def test_joblib_dump_and_load(iris, tmp_path):
    X, y = iris
    est, target = fitted_estimators(X, y)[0]
    joblib.dump(est, tmp_path / "clf.joblib")
    assert_same_state(est, joblib.load(tmp_path / "clf.joblib"), X, target)


def test_fastnn_save_and_load_without_pickle(iris, tmp_path):
    X, y = iris
    for i, (est, target) in enumerate(fitted_estimators(X, y)):
        path = tmp_path / f"est{i}.fnn"
        fnn.save(est, path)
        assert b"\x80\x04" not in path.read_bytes()[:64]  # not a pickle
        meta = fnn.safetensors.read_metadata(path)
        assert meta["fastnn.object"] == "sklearn.estimator"
        loaded = fnn.load(path)
        assert type(loaded) is type(est)
        if isinstance(est, (NeuralNetClassifier, NeuralNetRegressor)):
            assert loaded.module is None  # a factory is code: not stored
            loaded.set_params(module=est.module)
        params, expected = loaded.get_params(), est.get_params()
        if isinstance(est, NeuralNetRegressor):  # a loss instance comes back as an equal new instance
            assert repr(params.pop("loss")) == repr(expected.pop("loss"))
        assert params == expected
        assert_same_state(est, loaded, X, target)


def test_loaded_network_without_factory_predicts_and_continues(iris, tmp_path):
    X, y = iris
    net = NeuralNetClassifier(small_mlp, max_epochs=2, random_state=0).fit(X, y)
    fnn.save(net, tmp_path / "net.fnn")
    loaded = fnn.load(tmp_path / "net.fnn")
    assert np.array_equal(loaded.predict(X), net.predict(X))
    loaded.partial_fit(X, y)
    loaded.set_params(warm_start=True).fit(X, y)
    with pytest.raises(ValueError, match="module is None"):
        loaded.set_params(warm_start=False).fit(X, y)


def test_unfitted_estimator_saves_its_parameters(tmp_path):
    est = MLPClassifier(hidden_layer_sizes=(3, 4), alpha=0.5, optimizer__betas=(0.8, 0.9), tol=float("inf"))
    fnn.save(est, tmp_path / "u.fnn")
    loaded = fnn.load(tmp_path / "u.fnn")
    assert loaded.get_params() == est.get_params() and not loaded.__sklearn_is_fitted__()


def test_fastnn_load_refuses_damaged_estimator_files(iris, tmp_path):
    X, y = iris
    path = tmp_path / "clf.fnn"
    fnn.save(fitted_estimators(X, y)[0][0], path)
    tensors, meta = fnn.safetensors.read(path)
    for key, value in [("fastnn.sklearn.class", "os.system"), ("fastnn.sklearn.params", "{not json"),
                       ("fastnn.sklearn.architecture", '{"class": "Exploit", "args": {}}'),
                       ("fastnn.object", "pickle")]:
        fnn.safetensors.save_file(tensors, tmp_path / "bad.fnn", {**meta, key: value})
        with pytest.raises(ValueError, match="bad.fnn"):
            fnn.load(tmp_path / "bad.fnn")
    tensors.pop(next(k for k in tensors if k.startswith("module.")))
    fnn.safetensors.save_file(tensors, tmp_path / "bad.fnn", meta)
    with pytest.raises(ValueError, match="weights"):
        fnn.load(tmp_path / "bad.fnn")


def test_saving_a_loss_fastnn_cannot_rebuild_is_refused(iris, tmp_path):
    X, y = iris

    class MyLoss(fnn.nn.MSELoss):
        pass

    net = NeuralNetRegressor(small_mlp, loss=MyLoss, max_epochs=1, random_state=0).fit(X, X[:, 0])
    with pytest.raises(TypeError, match="loss"):
        fnn.save(net, tmp_path / "x.fnn")
    assert not (tmp_path / "x.fnn").exists()


def test_pipeline_grid_search_in_worker_processes_and_pickle():
    X, y = load_digits(return_X_y=True)
    X, y = X[:600], y[:600]
    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_epochs=15, lr=1e-2, batch_size=32, random_state=0))
    grid = GridSearchCV(pipe, {"mlpclassifier__hidden_layer_sizes": [(16,), (64,)],
                               "mlpclassifier__alpha": [1e-4, 1e-1]}, cv=2, n_jobs=2)
    grid.fit(X, y)
    assert len(grid.cv_results_["mean_test_score"]) == 4 and grid.best_score_ > 0.85
    # the winner refitted in this process equals a fresh fit with its parameters, bit for bit
    best = pipe.set_params(**grid.best_params_).fit(X, y)
    assert np.array_equal(grid.predict_proba(X), best.predict_proba(X))
    again = pickle.loads(pickle.dumps(grid))
    assert np.array_equal(again.predict_proba(X), grid.predict_proba(X))
    buffer = io.BytesIO()
    joblib.dump(grid.best_estimator_, buffer)
    buffer.seek(0)
    assert np.array_equal(joblib.load(buffer).predict(X), grid.predict(X))


def test_cross_val_score_with_a_neural_net(iris):
    X, y = iris
    net = NeuralNetClassifier(small_mlp, module__width=32, lr=1e-2, max_epochs=20, random_state=0)
    scores = cross_val_score(net, X, y, cv=3)
    assert scores.shape == (3,) and scores.mean() > 0.8
