"""fastnn.tune: grid, random and LIPO search on objectives whose optimum is known."""
import math

import numpy as np
import pytest
from scipy import stats

import fastnn as fnn
from fastnn import tune

# -- a toy objective: a fixed line y = w·x + b (lr 0), so val_loss is a known function of (w, b) -------------
_RNG = np.random.default_rng(0)
X = _RNG.uniform(-1, 1, (100, 1))
Y = 2.0 * X + 1.0
XV, YV = X[80:], Y[80:]


def expected_val_loss(w, b):
    return float(np.mean((w * XV + b - YV) ** 2))


def build_line(w, b):
    model = fnn.nn.Linear(1, 1).double()
    model.weight.data[...] = w
    model.bias.data[...] = b
    return model, fnn.nn.MSELoss(), fnn.optim.SGD(model.parameters(), lr=0.0)


def test_grid_search_finds_known_optimum_and_sorts():
    grid = {"w": [0.0, 1.0, 2.0, 3.0], "b": [0.0, 1.0, 2.0]}
    search = tune.GridSearch(build_line, grid, seed=0).fit(X, Y, epochs=1, batch_size=20)
    assert len(search.results_) == 12
    assert search.best_params_ == {"w": 2.0, "b": 1.0}
    assert search.best_score_ == pytest.approx(0.0, abs=1e-20)
    scores = [r["score"] for r in search.results_]
    assert scores == sorted(scores)
    assert [r["rank"] for r in search.results_] == list(range(1, 13))
    for r in search.results_:  # scored on the last 20% of x/y (validation_split default 0.2)
        assert r["score"] == pytest.approx(expected_val_loss(**r["params"]), rel=1e-12, abs=1e-20)
        assert r["history"]["val_loss"][-1] == pytest.approx(r["score"])
    assert float(search.best_model_.weight.data[0, 0]) == 2.0
    assert search.best_trainer_.model is search.best_model_
    table = search.summary()
    lines = table.splitlines()
    assert "val_loss" in lines[1] and "w" in lines[1] and "b" in lines[1]
    assert lines[2].split()[:2] == ["1", "0"] and len(lines) == 14


def test_grid_search_list_of_grids_and_validation_data():
    grids = [{"w": [2.0], "b": [0.0, 1.0]}, {"w": [1.5], "b": 1.0}]
    search = tune.GridSearch(build_line, grids).fit(X[:80], Y[:80], validation_data=(XV, YV), epochs=1)
    assert [r["params"] for r in search.results_] == [{"w": 2.0, "b": 1.0}, {"w": 1.5, "b": 1.0},
                                                       {"w": 2.0, "b": 0.0}]
    with pytest.raises(TypeError, match="RandomSearch"):
        tune.GridSearch(build_line, {"w": tune.uniform(0, 1)})


def test_random_search_distributions_reproducible():
    space = {"w": tune.uniform(0.0, 4.0), "b": stats.uniform(0.0, 2.0)}  # scipy: loc 0, scale 2
    runs = [tune.RandomSearch(build_line, space, n_iter=25, seed=s).fit(X, Y, epochs=1, batch_size=50)
            for s in (7, 7, 8)]
    params = [[r["params"] for r in run.results_] for run in runs]
    assert params[0] == params[1] and params[0] != params[2]
    for run in runs:
        scores = [r["score"] for r in run.results_]
        assert scores == sorted(scores) and run.best_score_ == scores[0]
        assert run.best_score_ == pytest.approx(expected_val_loss(**run.best_params_))
        assert min(expected_val_loss(**p) for p in [r["params"] for r in run.results_]) == run.best_score_
        for r in run.results_:
            assert 0 <= r["params"]["w"] <= 4 and 0 <= r["params"]["b"] <= 2
        assert abs(run.best_params_["w"] - 2) < 0.6 and abs(run.best_params_["b"] - 1) < 0.6


def test_random_search_lists_without_replacement_and_helpers():
    space = {"w": [0.0, 1.0, 2.0], "b": [0.0, 1.0]}
    search = tune.RandomSearch(build_line, space, n_iter=50, seed=1).fit(X, Y, epochs=1)
    assert len(search.results_) == 6
    assert search.best_params_ == {"w": 2.0, "b": 1.0}
    rng = np.random.default_rng(0)
    lu = [tune.loguniform(1e-4, 1e-1).rvs(rng) for _ in range(2000)]
    assert min(lu) >= 1e-4 and max(lu) <= 1e-1
    assert 0.2 < np.mean(np.array(lu) < 1e-3) < 0.47  # a third of the decades
    assert set(tune.randint(1, 3).rvs(rng) for _ in range(200)) == {1, 2, 3}
    assert set(tune.choice(["a", "b"]).rvs(rng) for _ in range(100)) == {"a", "b"}


# -- a tiny real training ---------------------------------------------------------------------------------
def _blobs(seed=0, n=120):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.standard_normal((n, 2)) + np.where(y[:, None] == 1, 2.0, -2.0)
    return x.astype(np.float32), y


def build_classifier(lr):
    model = fnn.nn.Linear(2, 2)
    return fnn.Trainer(model, fnn.nn.CrossEntropyLoss(), fnn.optim.SGD(model.parameters(), lr=lr))


def test_real_training_accuracy_and_reproducibility():
    x, y = _blobs()
    fnn.manual_seed(123)
    before = fnn.random.generator().bit_generator.state
    search = tune.GridSearch(build_classifier, {"lr": [1e-9, 0.5]}, monitor="val_accuracy", seed=3)
    search.fit(x, y, epochs=3, batch_size=16)
    assert fnn.random.generator().bit_generator.state == before  # the user's random stream is untouched
    assert search.mode == "max"
    assert search.best_params_ == {"lr": 0.5}
    assert search.best_score_ > 0.9 and search.results_[1]["score"] < search.best_score_
    assert search.best_score_ == pytest.approx(search.best_trainer_.evaluate(x[96:], y[96:])["accuracy"])
    again = tune.GridSearch(build_classifier, {"lr": [1e-9, 0.5]}, monitor="val_accuracy", seed=3)
    again.fit(x, y, epochs=3, batch_size=16)
    for a, b in zip(search.results_, again.results_):
        assert a["history"] == b["history"]
    np.testing.assert_array_equal(search.best_model_.weight.data, again.best_model_.weight.data)


def test_error_score_and_bad_build_fn():
    def build(w):
        if w < 0:
            raise RuntimeError("negative")
        return build_line(w, 1.0)

    search = tune.GridSearch(build, {"w": [-1.0, 2.0, 1.0]}, error_score=float("nan")).fit(X, Y)
    assert [r["params"]["w"] for r in search.results_] == [2.0, 1.0, -1.0]
    assert math.isnan(search.results_[-1]["score"]) and "negative" in search.results_[-1]["error"]
    with pytest.raises(RuntimeError, match="negative"):
        tune.GridSearch(build, {"w": [-1.0]}).fit(X, Y)
    with pytest.raises(TypeError, match="Trainer"):
        tune.GridSearch(lambda w: w, {"w": [1]}).fit(X, Y)
    with pytest.raises(ValueError, match="val_accuracy"):
        tune.GridSearch(build_line, {"w": [1.0], "b": [0.0]}, monitor="val_accuracy").fit(X, Y)


# -- LIPO ------------------------------------------------------------------------------------------------
def branin(v):
    x1, x2 = v[..., 0], v[..., 1]
    b, c, t = 5.1 / (4 * np.pi ** 2), 5 / np.pi, 1 / (8 * np.pi)
    return (x2 - b * x1 ** 2 + c * x1 - 6) ** 2 + 10 * (1 - t) * np.cos(x1) + 10


BRANIN_MIN = 0.397887357729739


def test_lipo_shifted_quadratic():
    def f(v):
        return -((v[0] - 0.3) ** 2 + 2 * (v[1] + 1.2) ** 2 + 0.5 * (v[0] - 0.3) * (v[1] + 1.2)) + 4.0

    x, value = tune.find_max_global(f, [-5, -5], [5, 5], 40, seed=0)
    np.testing.assert_allclose(x, [0.3, -1.2], atol=1e-4)
    assert value == pytest.approx(4.0, abs=1e-8)
    x1, v1 = tune.find_min_global(lambda t: (t - 2.5) ** 2, -10, 10, 25, seed=1)
    assert isinstance(x1, float) and x1 == pytest.approx(2.5, abs=1e-4) and v1 < 1e-8
    xi, vi = tune.find_max_global(lambda v: -(v[0] - 2.4) ** 2 - (v[1] - 3) ** 2, [-10, -10], [10, 10], 60,
                                  seed=2, is_integer=[True, False])
    assert xi[0] == 2.0 and xi[1] == pytest.approx(3.0, abs=1e-4)


def test_lipo_beats_random_search_on_branin():
    """Evaluations until within 1e-3 of Branin's global minimum (three global minima, on [-5,10]x[0,15]),
    averaged over 10 seeds: LIPO + trust region versus uniform random sampling."""
    tol, budget = 1e-3, 80
    lipo_counts, random_counts = [], []
    for seed in range(10):
        values = []

        def f(v):
            values.append(float(branin(np.asarray(v))))
            return values[-1]

        x, best = tune.find_min_global(f, [-5, 0], [10, 15], budget, seed=seed)
        assert best == min(values) and best == pytest.approx(float(branin(x)))
        hits = [i + 1 for i, v in enumerate(values) if v - BRANIN_MIN < tol]
        lipo_counts.append(hits[0] if hits else budget)
        u = np.random.default_rng(seed).uniform([-5, 0], [10, 15], size=(budget * 10, 2))
        random_hits = np.flatnonzero(branin(u) - BRANIN_MIN < tol)
        random_counts.append(int(random_hits[0]) + 1 if random_hits.size else budget * 10)
    assert np.mean(lipo_counts) < 45 and sum(c < budget for c in lipo_counts) >= 9
    assert np.mean(lipo_counts) * 5 < np.mean(random_counts)


def test_lipo_search_hyper_parameters():
    space = {"w": tune.uniform(-1.0, 6.0), "b": tune.loguniform(0.05, 10.0)}  # optimum (2, 1) off-centre
    search = tune.LipoSearch(build_line, space, n_iter=30, seed=0).fit(X, Y, epochs=1)
    assert len(search.results_) == 30
    assert search.best_score_ < 1e-6
    assert abs(search.best_params_["w"] - 2.0) < 0.01 and abs(search.best_params_["b"] - 1.0) < 0.01
    assert search.best_score_ == pytest.approx(expected_val_loss(**search.best_params_))
    scores = [r["score"] for r in search.results_]
    assert scores == sorted(scores)
    again = tune.LipoSearch(build_line, space, n_iter=30, seed=0).fit(X, Y, epochs=1)
    assert [r["params"] for r in again.results_] == [r["params"] for r in search.results_]
    with pytest.raises(TypeError, match="range"):
        tune.LipoSearch(build_line, {"w": [1.0, 2.0], "b": 1.0})
    ints = tune.LipoSearch(build_line, {"w": tune.randint(0, 4), "b": (0.0, 2.0)}, n_iter=12, seed=0)
    ints.fit(X, Y, epochs=1)
    assert ints.best_params_["w"] == 2 and isinstance(ints.best_params_["w"], int)


def test_custom_distribution_objects_and_fit_kwargs_in_constructor():
    class Around:
        """Any object with rvs(rng) is a distribution."""

        def __init__(self, centre):
            self.centre = centre

        def rvs(self, rng):
            return self.centre + rng.uniform(-0.1, 0.1)

    search = tune.RandomSearch(build_line, {"w": Around(2.0), "b": stats.randint(0, 3)}, n_iter=12, seed=0,
                               fit_kwargs=dict(epochs=1, batch_size=10, validation_split=0.2))
    search.fit(X, Y)
    assert search.best_params_["b"] == 1 and isinstance(search.best_params_["b"], int)
    assert all(1.9 <= r["params"]["w"] <= 2.1 for r in search.results_)
    assert search.results_[0]["history"]["val_loss"][-1] == pytest.approx(search.best_score_)


def test_lipo_non_finite_values_count_as_worst():
    def f(v):
        return float("nan") if v[0] > 1.0 else -((v[0] - 0.5) ** 2 + (v[1] - 0.25) ** 2)

    x, value = tune.find_max_global(f, [-2, -2], [2, 2], 60, seed=0)
    assert math.isfinite(value) and value > -1e-4 and x[0] <= 1.0
    with pytest.raises(ValueError, match="lower"):
        tune.find_max_global(f, [1, 1], [0, 2], 5)
