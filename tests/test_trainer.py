"""Trainer: fit/evaluate/predict, history, validation split, reproducibility, schedules, progress output,
errors, custom modules, and the metrics module against NumPy."""
import io
import re

import numpy as np
import pytest

import fastnn as fnn
from fastnn import metrics as M
from fastnn.progress import ProgressLogger


def blobs(n_per_class=60, n_classes=3, dim=4, seed=0, spread=0.6):
    """Well separated Gaussian blobs, rows interleaved by class."""
    r = np.random.default_rng(seed)
    centers = r.standard_normal((n_classes, dim)) * 3
    y = np.tile(np.arange(n_classes), n_per_class)
    x = (centers[y] + spread * r.standard_normal((len(y), dim))).astype(np.float32)
    return x, y


def mlp(dim=4, hidden=16, classes=3, dropout=0.0):
    layers = [fnn.nn.Linear(dim, hidden), fnn.nn.ReLU()]
    if dropout:
        layers.append(fnn.nn.Dropout(dropout))
    layers.append(fnn.nn.Linear(hidden, classes))
    return fnn.nn.Sequential(*layers)


class NoopOptimizer:
    """Leaves the weights alone and records the lr in force at every step."""

    def __init__(self, lr=0.1):
        self.lr = lr
        self.steps = []
        self.zero_grads = 0

    def step(self):
        self.steps.append(self.lr)

    def zero_grad(self):
        self.zero_grads += 1


class Recorder(fnn.nn.Module):
    """Wraps a module and records every input it sees, with the mode it was in."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        object.__setattr__(self, "seen", [])

    def forward(self, x):
        self.seen.append((self.training, x.copy()))
        return self.inner(x)

    def backward(self, g):
        return self.inner.backward(g)


def sd_bytes(model):
    return {k: v.tobytes() for k, v in model.state_dict().items()}


# -- training -----------------------------------------------------------------------------------------------
def test_fit_learns_blobs_and_returns_history():
    fnn.manual_seed(0)
    x, y = blobs()
    model = mlp()
    trainer = fnn.Trainer(model, fnn.nn.CrossEntropyLoss(), fnn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
                          metrics=["accuracy", "top2_accuracy"])
    hist = trainer.fit(x[:150], y[:150], epochs=8, batch_size=16, validation_data=(x[150:], y[150:]), verbose=0)
    assert hist is trainer.history
    assert set(hist) == {"loss", "accuracy", "top2_accuracy", "val_loss", "val_accuracy", "val_top2_accuracy", "lr"}
    assert all(len(v) == 8 for v in hist.values())
    assert trainer.epoch == list(range(8))
    assert hist["loss"][-1] < 0.5 * hist["loss"][0]
    assert hist["accuracy"][-1] >= 0.95 and hist["val_accuracy"][-1] >= 0.95
    assert all(t >= a for t, a in zip(hist["top2_accuracy"], hist["accuracy"]))
    assert hist["lr"] == [0.1] * 8
    ev = trainer.evaluate(x, y)
    assert set(ev) == {"loss", "accuracy", "top2_accuracy"} and ev["accuracy"] >= 0.95
    assert trainer.global_step == 8 * -(-150 // 16)


def test_initial_epoch_and_zero_epochs():
    fnn.manual_seed(0)
    x, y = blobs(20)
    model = mlp()
    trainer = fnn.Trainer(model, fnn.nn.CrossEntropyLoss(), NoopOptimizer())
    hist = trainer.fit(x, y, epochs=5, initial_epoch=3, verbose=0)
    assert trainer.epoch == [3, 4] and len(hist["loss"]) == 2
    assert trainer.fit(x, y, epochs=0, verbose=0) == {}


def test_default_metrics_depend_on_the_loss():
    model = mlp()
    assert [m.name for m in fnn.Trainer(model, fnn.nn.CrossEntropyLoss(), NoopOptimizer()).metrics] == ["accuracy"]
    assert fnn.Trainer(model, fnn.nn.MSELoss(), NoopOptimizer()).metrics == []
    assert fnn.Trainer(model, fnn.nn.CrossEntropyLoss(), NoopOptimizer(), metrics=[]).metrics == []


def test_batches_cover_each_sample_once_per_epoch_shuffled_or_in_order():
    fnn.manual_seed(0)
    x = np.arange(23 * 2, dtype=np.float32).reshape(23, 2)
    y = np.zeros((23, 1), np.float32)
    for shuffle in (False, True):
        rec = Recorder(fnn.nn.Linear(2, 1))
        trainer = fnn.Trainer(rec, fnn.nn.MSELoss(), NoopOptimizer())
        trainer.fit(x, y, epochs=2, batch_size=5, shuffle=shuffle, verbose=0)
        batches = [b for training, b in rec.seen if training]
        assert [len(b) for b in batches] == [5, 5, 5, 5, 3] * 2
        assert all(b.flags.c_contiguous for b in batches)
        epochs = [np.concatenate(batches[:5]), np.concatenate(batches[5:])]
        for e in epochs:
            np.testing.assert_array_equal(np.sort(e[:, 0]), x[:, 0])  # a permutation of all rows
        if shuffle:
            assert not np.array_equal(epochs[0], x) and not np.array_equal(epochs[0], epochs[1])
        else:
            np.testing.assert_array_equal(epochs[0], x)
            np.testing.assert_array_equal(epochs[1], x)


def test_float64_inputs_are_cast_once_to_the_model_dtype():
    x, y = blobs(10)
    rec = Recorder(mlp())
    trainer = fnn.Trainer(rec, fnn.nn.CrossEntropyLoss(), NoopOptimizer())
    trainer.fit(x.astype(np.float64), y, epochs=1, batch_size=8, validation_data=(x.astype(np.float64), y),
                verbose=0)
    assert {b.dtype for _, b in rec.seen} == {np.dtype(np.float32)}
    rec.seen.clear()
    rec.double()
    trainer.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert {b.dtype for _, b in rec.seen} == {np.dtype(np.float64)}


def test_validation_split_holds_out_the_last_fraction():
    fnn.manual_seed(0)
    x, y = blobs(20)  # 60 rows
    rec = Recorder(mlp())
    trainer = fnn.Trainer(rec, fnn.nn.CrossEntropyLoss(), fnn.optim.SGD(rec.parameters(), lr=0.05))
    hist = trainer.fit(x, y, epochs=1, batch_size=8, validation_split=0.25, verbose=0)
    trained = np.concatenate([b for training, b in rec.seen if training])
    validated = np.concatenate([b for training, b in rec.seen if not training])
    np.testing.assert_array_equal(validated, x[45:])  # in order, eval mode
    np.testing.assert_array_equal(np.sort(trained, axis=0), np.sort(x[:45], axis=0))
    # The epoch's val_loss is the loss of the final weights on that slice.
    ev = trainer.evaluate(x[45:], y[45:])
    assert hist["val_loss"][0] == pytest.approx(ev["loss"], rel=1e-12)
    assert hist["val_accuracy"][0] == ev["accuracy"]


def test_epoch_loss_is_sample_weighted_exact_mean():
    """Weights frozen (no-op optimizer), no dropout: the epoch's loss and accuracy over uneven batches equal
    one full-batch evaluation; an average of batch averages would not."""
    fnn.manual_seed(3)
    x, y = blobs(7, spread=3.0)  # 21 rows: batches of 8, 8, 5; noisy enough that accuracy is not 1
    model = mlp()
    trainer = fnn.Trainer(model, fnn.nn.CrossEntropyLoss(), NoopOptimizer())
    hist = trainer.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    full = trainer.evaluate(x, y, batch_size=1000)
    assert hist["loss"][0] == pytest.approx(full["loss"], rel=1e-6)
    assert hist["accuracy"][0] == full["accuracy"]
    per_batch = [trainer.evaluate(x[s:s + 8], y[s:s + 8])["loss"] for s in (0, 8, 16)]
    assert abs(np.mean(per_batch) - full["loss"]) > 1e-4  # the test can tell the two apart
    # zero_grad is called once before the first step and after every step
    assert trainer.optimizer.zero_grads == 1 + 3


def test_same_seed_gives_bit_identical_runs():
    x, y = blobs(30)

    def run(seed):
        fnn.manual_seed(seed)
        model = mlp(dropout=0.3)
        trainer = fnn.Trainer(model, fnn.nn.CrossEntropyLoss(), fnn.optim.SGD(model.parameters(), lr=0.05, momentum=0.9))
        hist = trainer.fit(x, y, epochs=3, batch_size=10, validation_split=0.2, verbose=0)
        return hist, sd_bytes(model)

    h1, w1 = run(7)
    h2, w2 = run(7)
    h3, w3 = run(8)
    assert h1 == h2 and w1 == w2
    assert h1["loss"] != h3["loss"] and w1 != w3


def test_schedule_sets_lr_before_every_step_with_a_global_counter():
    x, y = blobs(10)  # 30 rows, batch 8 -> 4 steps per epoch
    opt = NoopOptimizer(lr=123.0)
    trainer = fnn.Trainer(mlp(), fnn.nn.CrossEntropyLoss(), opt, schedule=lambda step: 1.0 / (1 + step))
    hist = trainer.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert opt.steps == [1.0 / (1 + s) for s in range(8)]
    assert hist["lr"] == [1.0 / 4, 1.0 / 8]
    trainer.fit(x, y, epochs=1, batch_size=8, verbose=0)  # the step counter carries on across fits
    assert opt.steps[8:] == [1.0 / (1 + s) for s in range(8, 12)]
    with pytest.raises(ValueError, match="schedule"):
        fnn.Trainer(mlp(), fnn.nn.CrossEntropyLoss(), opt, schedule=lambda s: float("nan")).fit(x, y, verbose=0)


# -- evaluate / predict --------------------------------------------------------------------------------------
def test_predict_and_evaluate_use_eval_mode_and_restore_modes():
    fnn.manual_seed(0)
    x, y = blobs(20)
    model = mlp(dropout=0.5)
    trainer = fnn.Trainer(model, fnn.nn.CrossEntropyLoss(), NoopOptimizer())
    assert model.training
    p1 = trainer.predict(x, batch_size=7)
    p2 = trainer.predict(x)
    assert p1.shape == (60, 3)
    np.testing.assert_allclose(p1, p2, rtol=1e-6, atol=1e-6)  # dropout off: deterministic
    assert model.training and all(m.training for m in model.modules())
    model.eval()
    np.testing.assert_allclose(model(x), p2, rtol=1e-6, atol=1e-6)
    # a mix of modes (one layer frozen in eval) comes back exactly as it was
    model.train()
    model[1].eval()
    ev = trainer.evaluate(x, y, batch_size=11)
    assert [m.training for m in model.modules()] == [True, True, False, True, True]
    assert set(ev) == {"loss", "accuracy"}
    assert ev["accuracy"] == np.mean(p2.argmax(1) == y)
    assert ev["loss"] == pytest.approx(trainer.evaluate(x, y, batch_size=1000)["loss"], rel=1e-6)
    p = model(x)  # training mode: dropout makes the output differ from predict
    assert not np.allclose(p, p2)


def test_predict_returns_a_copy_for_a_single_batch():
    model = fnn.nn.Identity()
    trainer = fnn.Trainer(model, fnn.nn.MSELoss(), NoopOptimizer())
    x = np.ones((4, 2), np.float32)
    out = trainer.predict(x)
    out[:] = 5
    assert np.all(x == 1)


# -- progress output -----------------------------------------------------------------------------------------
LINE = re.compile(r"^Epoch (\d+)/3 - \d+\.\ds - loss: \d+\.\d{4} - accuracy: \d\.\d{4} - "
                  r"val_loss: \d+\.\d{4} - val_accuracy: \d\.\d{4}$")


@pytest.mark.parametrize("verbose", [1, 2])
def test_non_tty_output_is_one_line_per_epoch(capsys, verbose):
    fnn.manual_seed(0)
    x, y = blobs(20)
    model = mlp()
    trainer = fnn.Trainer(model, fnn.nn.CrossEntropyLoss(), fnn.optim.SGD(model.parameters(), lr=0.05))
    trainer.fit(x, y, epochs=3, batch_size=4, validation_split=0.2, verbose=verbose)
    out, err = capsys.readouterr()
    assert "\r" not in out and err == ""
    lines = out.splitlines()
    assert len(lines) == 3
    assert [int(LINE.match(line).group(1)) for line in lines] == [1, 2, 3]


def test_verbose_0_prints_nothing(capsys):
    x, y = blobs(10)
    trainer = fnn.Trainer(mlp(), fnn.nn.CrossEntropyLoss(), NoopOptimizer())
    trainer.fit(x, y, epochs=2, validation_split=0.5, verbose=0)
    trainer.evaluate(x, y)
    trainer.predict(x)
    assert capsys.readouterr() == ("", "")


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_tty_shows_a_bar_then_the_epoch_line():
    stream = FakeTTY()
    p = ProgressLogger(1, epochs=2, steps_per_epoch=3, stream=stream)
    assert p.use_bar
    p.epoch_begin(0)
    for i in range(3):
        p.batch_end(0.5)
    p.epoch_end(0, {"loss": 0.5, "accuracy": 0.25, "lr": 0.1})
    text = stream.getvalue()
    assert "Epoch 1/2" in text and "\r" in text  # the bar was drawn
    assert text.endswith("loss: 0.5000 - accuracy: 0.2500\n")
    assert not ProgressLogger(2, 2, 3, stream=FakeTTY()).use_bar
    assert not ProgressLogger(1, 2, 3, stream=io.StringIO()).use_bar
    with pytest.raises(ValueError):
        ProgressLogger(3, 2, 3)


# -- errors ---------------------------------------------------------------------------------------------------
def test_bad_arguments_raise_clear_errors():
    x, y = blobs(10)
    trainer = fnn.Trainer(mlp(), fnn.nn.CrossEntropyLoss(), NoopOptimizer())
    with pytest.raises(ValueError, match=r"\(30, 4\).*\(29,\)"):
        trainer.fit(x, y[:-1], verbose=0)
    with pytest.raises(ValueError, match="no samples"):
        trainer.fit(x[:0], y[:0], verbose=0)
    for bs in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="batch_size"):
            trainer.fit(x, y, batch_size=bs, verbose=0)
    with pytest.raises(ValueError, match="x_val.*y_val"):
        trainer.fit(x, y, validation_data=(x, y[:3]), verbose=0)
    with pytest.raises(ValueError, match="not both"):
        trainer.fit(x, y, validation_data=(x, y), validation_split=0.1, verbose=0)
    with pytest.raises(ValueError, match="validation_split"):
        trainer.fit(x, y, validation_split=1.0, verbose=0)
    with pytest.raises(ValueError, match=r"\(30, 4\).*\(31,\)"):
        trainer.evaluate(x, np.zeros(31, np.int64))
    with pytest.raises(ValueError, match="batch_size"):
        trainer.predict(x, batch_size=0)
    with pytest.raises(ValueError, match="verbose"):
        trainer.fit(x, y, verbose=5)
    with pytest.raises(ValueError, match="unknown metric"):
        fnn.Trainer(mlp(), fnn.nn.CrossEntropyLoss(), NoopOptimizer(), metrics=["f1"])
    with pytest.raises(ValueError, match="unique"):
        fnn.Trainer(mlp(), fnn.nn.CrossEntropyLoss(), NoopOptimizer(), metrics=["accuracy", "accuracy"])
    with pytest.raises(TypeError, match="Callback"):
        trainer.fit(x, y, callbacks=[object()], verbose=0)
    with pytest.raises(TypeError, match="scalar"):
        fnn.Trainer(mlp(), fnn.nn.CrossEntropyLoss(reduction="none"), NoopOptimizer()).fit(x, y, verbose=0)


def test_small_validation_split_rounding():
    x, y = blobs(1)  # 3 rows
    trainer = fnn.Trainer(mlp(), fnn.nn.CrossEntropyLoss(), NoopOptimizer())
    with pytest.raises(ValueError, match="leaves 0 for training and 3"):
        trainer.fit(x, y, validation_split=0.7, verbose=0)  # floor(3 * 0.3) = 0
    hist = trainer.fit(x, y, validation_split=0.5, verbose=0)  # floor(1.5) = 1 train, 2 validation
    assert len(hist["val_loss"]) == 1


# -- custom modules -------------------------------------------------------------------------------------------
class SoftmaxRegression(fnn.nn.Module):
    """Hand-written forward and backward over its own Parameters (no backward_parameters override)."""

    def __init__(self, dim, classes):
        super().__init__()
        self.w = fnn.nn.Parameter(np.zeros((dim, classes), np.float32))
        self.b = fnn.nn.Parameter(np.zeros(classes, np.float32))

    def forward(self, x):
        self._x = np.asarray(x, np.float32)
        return self._x @ self.w.data + self.b.data

    def backward(self, g):
        self.w.grad += self._x.T @ g
        self.b.grad += g.sum(0)
        return g @ self.w.data.T


def test_custom_module_trains():
    fnn.manual_seed(0)
    x, y = blobs(40)
    model = SoftmaxRegression(4, 3)
    trainer = fnn.Trainer(model, fnn.nn.CrossEntropyLoss(), fnn.optim.SGD(model.parameters(), lr=0.1))
    hist = trainer.fit(x, y, epochs=5, batch_size=16, verbose=0)
    assert hist["accuracy"][-1] >= 0.95
    assert np.abs(model.w.data).sum() > 0


def test_float_targets_and_binary_accuracy():
    """MSE regression onto 0/1 targets with a (N, 1) output: accuracy thresholds at 0.5."""
    fnn.manual_seed(0)
    x, y = blobs(40, n_classes=2)
    t = y.astype(np.float32)[:, None]
    model = mlp(classes=1)
    trainer = fnn.Trainer(model, fnn.nn.MSELoss(), fnn.optim.SGD(model.parameters(), lr=0.05), metrics=["accuracy"])
    hist = trainer.fit(x, t, epochs=10, batch_size=8, verbose=0)
    assert hist["accuracy"][-1] >= 0.95
    pred = trainer.predict(x)
    assert trainer.evaluate(x, t)["accuracy"] == np.mean((pred[:, 0] > 0.5) == (y == 1))


def test_user_metric_function_is_logged_under_its_name():
    fnn.manual_seed(0)
    x, y = blobs(10)

    def mean_max_score(pred, target):
        return float(pred.max(axis=1).mean())

    model = mlp()
    trainer = fnn.Trainer(model, fnn.nn.CrossEntropyLoss(), NoopOptimizer(), metrics=[mean_max_score, "acc"])
    hist = trainer.fit(x, y, epochs=1, batch_size=7, shuffle=False, validation_data=(x, y), verbose=0)
    expected = float(trainer.predict(x).max(axis=1).mean())
    assert hist["mean_max_score"][0] == pytest.approx(expected, rel=1e-5)  # exact size-weighted mean
    assert hist["val_mean_max_score"][0] == pytest.approx(expected, rel=1e-5)
    assert "acc" in hist and "val_acc" in hist
    with pytest.raises(ValueError, match="name"):
        fnn.Trainer(model, fnn.nn.CrossEntropyLoss(), NoopOptimizer(), metrics=[lambda p, t: 0.0])


# -- metrics module against NumPy ----------------------------------------------------------------------------
def test_accuracy_and_top_k_match_numpy():
    r = np.random.default_rng(0)
    n, c = 200, 7
    logits = r.standard_normal((n, c))
    labels = r.integers(0, c, n)
    onehot = np.eye(c)[labels]
    soft = 0.7 * onehot + 0.3 / c
    assert M.accuracy(logits, labels) == np.mean(logits.argmax(1) == labels)
    assert M.accuracy(logits, onehot) == M.accuracy(logits, soft) == M.accuracy(logits, labels.astype(np.float32))
    rank = (-logits).argsort(1)
    for k in range(1, c + 1):
        expected = np.mean([labels[i] in rank[i, :k] for i in range(n)])
        assert M.top_k_accuracy(logits, labels, k) == expected
        assert M.top_k_accuracy(logits, onehot, k) == expected
    assert M.top_k_accuracy(logits, labels, 1) == M.accuracy(logits, labels)
    assert M.top_k_accuracy(logits, labels, c) == 1.0
    # binary outputs: (N,) and (N, 1), threshold 0.5 or a custom one
    p = r.random(n)
    t = (r.random(n) > 0.5).astype(np.int64)
    assert M.accuracy(p, t) == M.accuracy(p[:, None], t[:, None]) == np.mean((p > 0.5) == (t == 1))
    assert M.accuracy(p - 0.5, t.astype(np.float32), threshold=0.0) == np.mean((p > 0.5) == (t == 1))
    # PyTorch layout (N, C, L) with labels (N, L)
    seq = r.standard_normal((5, c, 3))
    seq_labels = r.integers(0, c, (5, 3))
    assert M.accuracy(seq, seq_labels) == np.mean(seq.argmax(1) == seq_labels)


def test_metric_objects_accumulate_counts_not_batch_averages():
    r = np.random.default_rng(1)
    logits = r.standard_normal((10, 4))
    labels = r.integers(0, 4, 10)
    for metric, fn in [(M.Accuracy(), M.accuracy), (M.TopKAccuracy(2), lambda p, t: M.top_k_accuracy(p, t, 2))]:
        metric.update(logits[:1], labels[:1])
        metric.update(logits[1:], labels[1:])
        assert metric.result() == fn(logits, labels)
        metric.reset()
        assert np.isnan(metric.result())
    mm = M.MeanMetric(lambda p, t: float(p.sum(1).mean()), name="s")
    mm.update(logits[:3], labels[:3])
    mm.update(logits[3:], labels[3:])
    assert mm.result() == pytest.approx(logits.sum(1).mean(), rel=1e-12)


def test_metric_names_and_errors():
    assert M.get("top5_accuracy").k == 5 and M.get("top5_accuracy").name == "top5_accuracy"
    assert M.get("top_3_acc").k == 3 and M.get("top_k_accuracy").k == 5
    assert M.TopKAccuracy(4).name == "top4_accuracy"
    assert M.get("accuracy", fnn.nn.BCEWithLogitsLoss()).threshold == 0.0
    assert M.get("accuracy", fnn.nn.BCELoss()).threshold == 0.5
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        M.accuracy(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="class indices"):
        M.accuracy(np.zeros((2, 3)), np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="shape"):
        M.accuracy(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError):
        M.TopKAccuracy(0)
