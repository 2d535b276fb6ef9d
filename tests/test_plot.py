"""fastnn.plot: history curves and schedule plots; matplotlib stays an optional import."""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastnn as fnn

matplotlib = pytest.importorskip("matplotlib")
import fastnn.plot  # noqa: E402


HISTORY = {"loss": [1.2, 0.8, 0.5, 0.4], "accuracy": [0.5, 0.7, 0.8, 0.85],
           "val_loss": [1.0, 0.9, 0.7, 0.75], "val_accuracy": [0.55, 0.65, 0.75, 0.74],
           "lr": [0.1, 0.05, 0.025, 0.0125]}


def _lines(ax):
    return {line.get_label(): line for line in ax.get_lines()}


def test_history_draws_train_and_val_curves_per_metric(tmp_path):
    path = tmp_path / "history.png"
    fig = fastnn.plot.history(HISTORY, path=path)
    axes = fig.get_axes()
    assert [a.get_ylabel() for a in axes] == ["loss", "accuracy"]  # lr is left out by default
    for ax, name in zip(axes, ["loss", "accuracy"]):
        lines = _lines(ax)
        assert set(lines) == {name, "val_" + name}
        for key in (name, "val_" + name):
            x, y = lines[key].get_data()
            np.testing.assert_array_equal(x, [1, 2, 3, 4])
            np.testing.assert_allclose(y, HISTORY[key])
    assert path.exists() and path.stat().st_size > 1000
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_history_of_a_real_fit_and_chosen_metrics(tmp_path):
    fnn.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    model = fnn.nn.Sequential(fnn.nn.Linear(4, 8), fnn.nn.ReLU(), fnn.nn.Linear(8, 2))
    trainer = fnn.Trainer(model, fnn.nn.CrossEntropyLoss(), fnn.optim.SGD(model.parameters(), lr=0.1))
    hist = trainer.fit(x, y, epochs=3, batch_size=16, validation_split=0.25, verbose=0)
    fig = fastnn.plot.history(trainer, metrics=["lr"], path=tmp_path / "lr.png")  # a Trainer works too
    (ax,) = fig.get_axes()
    np.testing.assert_allclose(_lines(ax)["lr"].get_ydata(), hist["lr"])
    fig = fastnn.plot.history(hist, metrics="accuracy", path=tmp_path / "acc.svg", title="toy")
    (ax,) = fig.get_axes()
    np.testing.assert_allclose(_lines(ax)["val_accuracy"].get_ydata(), hist["val_accuracy"])
    assert ax.get_title() == "toy"
    assert (tmp_path / "acc.svg").stat().st_size > 0


def test_history_on_given_axes_and_with_pyplot():
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2)
    try:
        out = fastnn.plot.history(HISTORY, metrics=["loss", "accuracy"], ax=axes)
        assert out is fig
        assert set(_lines(axes[1])) == {"accuracy", "val_accuracy"}
        with pytest.raises(ValueError, match="2 metric"):
            fastnn.plot.history(HISTORY, ax=axes[0])
    finally:
        plt.close(fig)
    fig = fastnn.plot.history({"loss": [3.0, 2.0]})  # no path: a pyplot figure, showable
    try:
        assert fig in [plt.figure(n) for n in plt.get_fignums()]
        assert set(_lines(fig.get_axes()[0])) == {"loss"}
    finally:
        plt.close(fig)


def test_history_errors():
    with pytest.raises(ValueError, match="'acc' is not in the history"):
        fastnn.plot.history(HISTORY, metrics=["acc"])
    with pytest.raises(TypeError, match="history dict"):
        fastnn.plot.history([1, 2, 3])
    with pytest.raises(ValueError, match="empty"):
        fastnn.plot.history({})


def test_schedule_plot(tmp_path):
    sched = fnn.schedules.PiecewiseConstantDecay(boundaries=[10, 20], values=[0.1, 0.01, 0.001])
    fig = fastnn.plot.schedule(sched, 30, path=tmp_path / "sched.png", log=True)
    (ax,) = fig.get_axes()
    x, y = ax.get_lines()[0].get_data()
    np.testing.assert_array_equal(x, np.arange(30))
    np.testing.assert_allclose(y, [sched(s) for s in range(30)])
    assert ax.get_yscale() == "log"
    assert (tmp_path / "sched.png").stat().st_size > 1000
    fig = fastnn.plot.schedule(lambda s: 1.0 / (1 + s), [0, 5, 10], path=tmp_path / "f.png")
    np.testing.assert_allclose(fig.get_axes()[0].get_lines()[0].get_ydata(), [1.0, 1 / 6, 1 / 11])
    with pytest.raises(ValueError, match="non-finite lr at step 0"):
        fastnn.plot.schedule(lambda s: float("nan"), 3)
    with pytest.raises(TypeError, match="callable"):
        fastnn.plot.schedule(0.1, 3)


def test_import_fastnn_does_not_import_matplotlib_and_missing_matplotlib_message():
    code = ("import sys, fastnn\n"
            "assert 'matplotlib' not in sys.modules, 'import fastnn imported matplotlib'\n"
            "assert 'fastnn.plot' not in sys.modules\n"
            "sys.modules['matplotlib'] = None  # as if not installed\n"
            "import fastnn.plot\n"
            "try:\n"
            "    fastnn.plot.history({'loss': [1.0]}, path='unused.png')\n"
            "except ImportError as e:\n"
            "    assert 'pip install fastnn[plot]' in str(e), e\n"
            "    print('ok')\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(os.path.dirname(fnn.__file__))] +
                                        ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
