"""Callbacks: EarlyStopping on scripted metric sequences (Keras semantics), weight restoring, hook order,
stop_training, LR scheduler, loggers, checkpoints."""
import csv
import json

import numpy as np
import pytest

import fastnn as fnn
from fastnn.callbacks import (CSVLogger, EarlyStopping, JSONLogger, LambdaCallback, LearningRateScheduler,
                              ModelCheckpoint, TerminateOnNaN)


class NoopOptimizer:
    def __init__(self, lr=0.1):
        self.lr = lr

    def step(self):
        pass

    def zero_grad(self):
        pass


class Script(fnn.callbacks.Callback):
    """At the end of epoch e: sets the weights to values that identify e, snapshots them, and puts
    values[e] into the logs under `key` (so callbacks after it see a scripted metric)."""

    def __init__(self, key, values):
        super().__init__()
        self.key, self.values = key, list(values)
        self.snapshots = []

    def on_epoch_end(self, epoch, logs=None):
        for i, p in enumerate(self.model.parameters()):
            p.data[...] = epoch + 0.25 * i
        self.snapshots.append({k: v.tobytes() for k, v in self.model.state_dict().items()})
        logs[self.key] = self.values[epoch]


def tiny():
    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(4, 2)
    y = np.zeros((4, 1), np.float32)
    return x, y


def run_scripted(values, key="val_score", epochs=None, **es_kwargs):
    fnn.manual_seed(0)
    model = fnn.nn.Linear(2, 1)
    script = Script(key, values)
    es = EarlyStopping(monitor=key, **es_kwargs)
    trainer = fnn.Trainer(model, fnn.nn.MSELoss(), NoopOptimizer(), callbacks=[script, es])
    x, y = tiny()
    hist = trainer.fit(x, y, epochs=epochs or len(values), batch_size=2, verbose=0)
    epochs_run = len(hist["loss"])
    return es, script, model, epochs_run


def weights(model):
    return {k: v.tobytes() for k, v in model.state_dict().items()}


# (values, kwargs, epoch at which training stops (None: runs to the end), best epoch)
CASES = [
    # equal is not an improvement: 3 at epoch 2 stays best, epochs 3, 4 are waits -> stop at 4
    ([5, 4, 3, 3, 3, 3, 3, 3], dict(patience=2), 4, 2),
    # patience counts epochs without improvement since the best; a later improvement resets it
    ([5, 4, 4.5, 3, 3.5, 3.2, 3.9, 2, 2], dict(patience=3), 6, 3),
    # better by exactly min_delta is not an improvement: 9.5 vs 10 with min_delta 0.5
    ([10, 9.5, 9.5, 9.5], dict(patience=1, min_delta=0.5), 1, 0),
    # better by more than min_delta is: 9.4 < 10 - 0.5; then 8.95 is not < 8.9; 8.0 is
    ([10, 9.4, 8.95, 8.0, 8.0, 8.0, 8.0], dict(patience=2, min_delta=0.5), 5, 3),
    # negative min_delta means the same as positive (Keras takes abs)
    ([10, 9.5, 9.5, 9.5], dict(patience=1, min_delta=-0.5), 1, 0),
    # patience 0: the first epoch without improvement stops training
    ([3, 2, 2, 1], dict(patience=0), 2, 1),
    # explicit max on a name without "acc"
    ([1, 2, 3, 2.5, 2.9, 3.0, 4], dict(patience=3, mode="max"), 5, 2),
    # the same numbers minimised ("auto" on a non-acc name): 1 stays best -> stop at epoch 3
    ([1, 2, 3, 2.5, 2.9, 3.0, 4], dict(patience=3), 3, 0),
    ([1, 2, 3, 2.5, 2.9, 3.0, 4], dict(patience=3, mode="min"), 3, 0),
    # never stops: improvement every epoch
    ([5, 4, 3, 2, 1], dict(patience=1), None, 4),
    # baseline: improvements that do not beat the baseline do not reset the wait, so training stops earlier
    # than the 3 it would without one
    ([5, 4, 4, 4, 4], dict(patience=2, baseline=2.0), 2, 1),
    ([5, 4, 4, 4, 4], dict(patience=2), 3, 1),
    ([5, 4, 4, 4, 4], dict(patience=2, baseline=4.5), 3, 1),
]


@pytest.mark.parametrize("values,kwargs,stop,best", CASES)
def test_early_stopping_scripted(values, kwargs, stop, best):
    es, script, model, epochs_run = run_scripted(values, **kwargs)
    assert epochs_run == (len(values) if stop is None else stop + 1)
    assert es.stopped_epoch == (0 if stop is None else stop)
    assert es.best_epoch == best
    assert es.best == values[best]
    # restore_best_weights (the default): the model ends with the best epoch's weights
    assert weights(model) == script.snapshots[best]
    if best != epochs_run - 1:
        assert weights(model) != script.snapshots[-1]


def test_auto_mode_maximises_accuracy_names():
    vals = [0.5, 0.6, 0.6, 0.7, 0.65, 0.65, 0.65, 0.9]
    for key in ("val_accuracy", "val_acc", "top5_accuracy"):
        es, script, model, epochs_run = run_scripted(vals, key=key, patience=3)
        assert es.mode == "max" and es.stopped_epoch == 6 and es.best == 0.7 and es.best_epoch == 3
        assert weights(model) == script.snapshots[3]
    assert EarlyStopping(monitor="val_loss").mode == "min"


def test_restores_best_weights_without_stopping_early():
    es, script, model, epochs_run = run_scripted([3, 1, 2, 2], patience=10)
    assert epochs_run == 4 and es.stopped_epoch == 0
    assert weights(model) == script.snapshots[1]


def test_no_restore_keeps_last_weights():
    es, script, model, epochs_run = run_scripted([3, 1, 2, 2, 2], patience=2, restore_best_weights=False)
    assert epochs_run == 4 and es.stopped_epoch == 3 and es.best_weights is None
    assert weights(model) == script.snapshots[-1]


def test_state_resets_between_fits():
    fnn.manual_seed(0)
    model = fnn.nn.Linear(2, 1)
    es = EarlyStopping(monitor="val_score", patience=1)
    x, y = tiny()
    trainer = fnn.Trainer(model, fnn.nn.MSELoss(), NoopOptimizer(), callbacks=[Script("val_score", [1, 2, 3]), es])
    assert len(trainer.fit(x, y, epochs=3, verbose=0)["loss"]) == 2
    trainer.callbacks[0] = Script("val_score", [9, 8, 7])
    assert len(trainer.fit(x, y, epochs=3, verbose=0)["loss"]) == 3  # best is not carried over from the last fit
    assert es.best == 7 and es.stopped_epoch == 0


def test_missing_monitor_raises_with_available_keys():
    fnn.manual_seed(0)
    x, y = tiny()
    trainer = fnn.Trainer(fnn.nn.Linear(2, 1), fnn.nn.MSELoss(), NoopOptimizer(),
                          callbacks=[EarlyStopping(monitor="val_loss")])
    with pytest.raises(ValueError, match=r"'val_loss'.*\['loss', 'lr'\]"):
        trainer.fit(x, y, epochs=2, verbose=0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        EarlyStopping(mode="up")
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(patience=-1)


def test_early_stopping_on_real_training_restores_the_best_val_loss():
    fnn.manual_seed(0)
    r = np.random.default_rng(0)
    x = r.standard_normal((80, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]]) + 0.3 * r.standard_normal((80, 1))).astype(np.float32)
    model = fnn.nn.Sequential(fnn.nn.Linear(3, 32), fnn.nn.ReLU(), fnn.nn.Linear(32, 1))
    es = EarlyStopping(monitor="val_loss", patience=2)
    trainer = fnn.Trainer(model, fnn.nn.MSELoss(), fnn.optim.SGD(model.parameters(), lr=0.05), callbacks=[es])
    hist = trainer.fit(x, y, epochs=40, batch_size=4, validation_split=0.25, verbose=0)
    assert 0 < es.stopped_epoch < 39 and len(hist["loss"]) == es.stopped_epoch + 1
    best = int(np.argmin(hist["val_loss"]))
    assert best < es.stopped_epoch
    assert es.best_epoch == best and es.best == hist["val_loss"][best]
    assert trainer.evaluate(x[60:], y[60:])["loss"] == pytest.approx(es.best, rel=1e-12)


def test_verbose_early_stopping_messages(capsys):
    run_scripted([3, 4, 5], patience=1, verbose=1)
    out = capsys.readouterr().out
    assert "Epoch 2: early stopping" in out and "best epoch: 1" in out


# -- hooks ----------------------------------------------------------------------------------------------------
def test_hook_order_and_batch_logs():
    events = []
    cb = LambdaCallback(
        on_train_begin=lambda logs: events.append("train_begin"),
        on_epoch_begin=lambda e, logs: events.append(("epoch_begin", e)),
        on_batch_begin=lambda b, logs: events.append(("batch_begin", b)),
        on_batch_end=lambda b, logs: events.append(("batch_end", b, logs["step"], logs["size"], round(logs["loss"], 9) >= 0)),
        on_epoch_end=lambda e, logs: events.append(("epoch_end", e, sorted(logs))),
        on_train_end=lambda logs: events.append("train_end"))
    x, y = tiny()
    x = np.concatenate([x, x[:1]])
    y = np.concatenate([y, y[:1]])
    trainer = fnn.Trainer(fnn.nn.Linear(2, 1), fnn.nn.MSELoss(), NoopOptimizer(), callbacks=[cb])
    trainer.fit(x, y, epochs=2, batch_size=2, validation_split=0.2, verbose=0)  # 4 train rows, 1 val
    epoch = lambda e, s: [("epoch_begin", e), ("batch_begin", 0), ("batch_end", 0, s, 2, True),
                          ("batch_begin", 1), ("batch_end", 1, s + 1, 2, True),
                          ("epoch_end", e, ["loss", "lr", "val_loss"])]
    assert events == ["train_begin", *epoch(0, 0), *epoch(1, 2), "train_end"]
    assert cb.trainer is trainer and cb.model is trainer.model


def test_stop_training_from_a_batch_hook():
    def stop_after_three(batch, logs):
        if logs["step"] == 2:
            trainer.stop_training = True

    x, y = tiny()
    x, y = np.repeat(x, 5, 0), np.repeat(y, 5, 0)  # 20 rows: 10 batches of 2
    trainer = fnn.Trainer(fnn.nn.Linear(2, 1), fnn.nn.MSELoss(), NoopOptimizer())
    hist = trainer.fit(x, y, epochs=5, batch_size=2, callbacks=[LambdaCallback(on_batch_end=stop_after_three)],
                       verbose=0)
    assert trainer.global_step == 3 and len(hist["loss"]) == 1


def test_learning_rate_scheduler_per_epoch():
    x, y = tiny()
    opt = NoopOptimizer(lr=1.0)
    trainer = fnn.Trainer(fnn.nn.Linear(2, 1), fnn.nn.MSELoss(), opt)
    hist = trainer.fit(x, y, epochs=3, verbose=0, callbacks=[LearningRateScheduler(lambda e, lr: lr * 0.5)])
    assert hist["lr"] == [0.5, 0.25, 0.125]
    hist = trainer.fit(x, y, epochs=2, verbose=0, callbacks=[LearningRateScheduler(lambda e: 0.1 * (e + 1))])
    assert hist["lr"] == [0.1, 0.2]


def test_terminate_on_nan(capsys):
    class NanLoss(fnn.nn.MSELoss):
        def forward(self, pred, target):
            super().forward(pred, target)
            return float("nan")

    x, y = tiny()
    trainer = fnn.Trainer(fnn.nn.Linear(2, 1), NanLoss(), NoopOptimizer(), callbacks=[TerminateOnNaN()])
    hist = trainer.fit(x, y, epochs=3, batch_size=2, verbose=0)
    assert trainer.global_step == 0 and len(hist["loss"]) == 1  # stopped before the first update
    out = capsys.readouterr().out
    assert "TerminateOnNaN: batch 0" in out and "the loss itself" in out


class _Sqrt(fnn.nn.Module):
    """A layer that produces NaN for negative inputs (and an infinite gradient at 0)."""

    def forward(self, x):
        self._x = x
        with np.errstate(invalid="ignore"):
            return np.sqrt(x)

    def backward(self, g):
        with np.errstate(divide="ignore", invalid="ignore"):
            return g * 0.5 / np.sqrt(self._x)


class _PlainMSE(fnn.nn.Module):
    """A custom loss without fastnn's input checks (built-in losses reject NaN predictions outright)."""

    def forward(self, pred, target):
        self._diff = pred - target
        with np.errstate(invalid="ignore"):
            return float(np.mean(self._diff ** 2))

    def backward(self, grad_output=None):
        return 2 * self._diff / self._diff.size


def test_terminate_on_nan_names_the_first_non_finite_layer_output(capsys):
    fnn.manual_seed(0)
    # (A NaN entering a Linear is rejected there with a ValueError naming it; here it appears last.)
    model = fnn.nn.Sequential(fnn.nn.Linear(2, 3), fnn.nn.ReLU(), fnn.nn.Linear(3, 1), _Sqrt())
    model[2].bias.data[...] = -5.0  # negative inputs to the last layer: sqrt gives NaN
    before = {k: v.copy() for k, v in model.state_dict().items()}
    cb = TerminateOnNaN()
    x = np.ones((4, 2), np.float32)
    trainer = fnn.Trainer(model, _PlainMSE(), fnn.optim.SGD(model.parameters(), lr=0.1), callbacks=[cb])
    trainer.fit(x, np.zeros((4, 1), np.float32), epochs=2, batch_size=2, verbose=0)
    assert "layer '3' (_Sqrt())" in cb.message and cb.stopped_batch == 0
    assert "TerminateOnNaN" in capsys.readouterr().out
    for k, v in model.state_dict().items():  # no update was applied, and the replay changed nothing
        np.testing.assert_array_equal(v, before[k])


def test_terminate_on_nan_names_a_non_finite_gradient():
    fnn.manual_seed(0)
    model = fnn.nn.Sequential(fnn.nn.Linear(2, 3), _Sqrt(), fnn.nn.Linear(3, 1))
    model[0].weight.data[...] = 0.0
    model[0].bias.data[...] = 0.0  # sqrt(0) = 0 is finite, its derivative is infinite
    cb = TerminateOnNaN(verbose=0)
    trainer = fnn.Trainer(model, fnn.nn.MSELoss(), fnn.optim.SGD(model.parameters(), lr=0.1), callbacks=[cb])
    trainer.fit(np.ones((4, 2), np.float32), np.ones((4, 1), np.float32), epochs=1, batch_size=4, verbose=0)
    assert cb.message is not None and "the gradient of '0." in cb.message
    assert np.isfinite(model[0].weight.data).all()


def test_csv_and_json_loggers(tmp_path):
    x, y = tiny()
    trainer = fnn.Trainer(fnn.nn.Linear(2, 1), fnn.nn.MSELoss(), NoopOptimizer())
    hist = trainer.fit(x, y, epochs=3, verbose=0, validation_data=(x, y),
                       callbacks=[CSVLogger(tmp_path / "log.csv"), JSONLogger(tmp_path / "log.json")])
    with open(tmp_path / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert [float(r["val_loss"]) for r in rows] == pytest.approx(hist["val_loss"])
    log = json.loads((tmp_path / "log.json").read_text())
    assert log["epoch"] == [0, 1, 2] and log["loss"] == pytest.approx(hist["loss"])


def test_model_checkpoint(monkeypatch, tmp_path):
    saved = []
    monkeypatch.setattr(fnn, "save", lambda model, path: saved.append(path))
    x, y = tiny()
    vals = [3, 2, 2.5, 1, 4, 0.5]
    every = ModelCheckpoint(str(tmp_path / "m-{epoch:02d}.fnn"), every_n_epochs=2)
    best = ModelCheckpoint(str(tmp_path / "best-{epoch}-{val_score:.1f}.fnn"), monitor="val_score",
                           save_best_only=True)
    trainer = fnn.Trainer(fnn.nn.Linear(2, 1), fnn.nn.MSELoss(), NoopOptimizer(),
                          callbacks=[Script("val_score", vals), every, best])
    trainer.fit(x, y, epochs=6, verbose=0)
    assert every.saved == [str(tmp_path / f"m-{e:02d}.fnn") for e in (2, 4, 6)]
    assert best.saved == [str(tmp_path / n) for n in
                          ("best-1-3.0.fnn", "best-2-2.0.fnn", "best-4-1.0.fnn", "best-6-0.5.fnn")]
    assert saved == [best.saved[0], every.saved[0], best.saved[1], every.saved[1], best.saved[2], every.saved[2],
                     best.saved[3]]
    assert best.best == 0.5
