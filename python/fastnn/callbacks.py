"""Callbacks for Trainer.fit, with Keras's hooks and semantics.

A callback subclasses `Callback` and overrides any of the hooks. The Trainer sets `callback.trainer`
before training; `callback.model` is `trainer.model`; setting `trainer.stop_training = True` ends
training after the current batch.

    on_train_begin(logs)         on_train_end(logs)
    on_epoch_begin(epoch, logs)  on_epoch_end(epoch, logs)   # logs: loss, metrics, val_*, lr
    on_batch_begin(batch, logs)  on_batch_end(batch, logs)   # batch: index in the epoch;
                                                             # logs: loss, size, step (global), lr

Epoch numbers are 0-based, as in Keras (the progress line prints epoch + 1).
"""
import csv
import inspect
import json
import math
import os

import numpy as np

from . import ops
from .random import generator

__all__ = ["Callback", "CallbackList", "EarlyStopping", "LambdaCallback", "LearningRateScheduler",
           "ModelCheckpoint", "CSVLogger", "JSONLogger", "TerminateOnNaN"]


class Callback:
    """Base class of the callbacks: every hook does nothing; override the ones you need.

    The Trainer calls ``set_trainer`` before training; ``self.trainer`` is then the
    :class:`fastnn.Trainer` and ``self.model`` its model. Setting ``self.trainer.stop_training = True`` ends
    training after the current batch. The hooks, with their ``logs`` dicts:

    - ``on_train_begin(logs)``, ``on_train_end(logs)``;
    - ``on_epoch_begin(epoch, logs)``, ``on_epoch_end(epoch, logs)`` — logs: ``loss``, the metrics, ``val_*``,
      ``lr``; epochs are 0-based, as in Keras;
    - ``on_batch_begin(batch, logs)``, ``on_batch_end(batch, logs)`` — logs: ``loss``, ``size``, ``step``
      (global), ``lr``;
    - ``on_backward_end(batch, logs)`` — after backward, before the optimizer step.

    See Also
    --------
    LambdaCallback : a callback from plain functions.

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> _ = fnn.manual_seed(0)
    >>> X = np.random.default_rng(0).standard_normal((64, 3)).astype(np.float32); y = (X[:, 0] > 0).astype(int)
    >>> model = fnn.nn.Sequential(fnn.nn.Linear(3, 2))
    >>> trainer = fnn.Trainer(model, fnn.nn.CrossEntropyLoss(), fnn.optim.SGD(model.parameters(), lr=0.1))
    >>> class CountBatches(fnn.callbacks.Callback):
    ...     def on_train_begin(self, logs=None):
    ...         self.n = 0
    ...     def on_batch_end(self, batch, logs=None):
    ...         self.n += 1
    >>> counter = CountBatches()
    >>> _ = trainer.fit(X, y, epochs=2, batch_size=16, callbacks=[counter], verbose=0)
    >>> counter.n
    8
    """

    def __init__(self):
        self.trainer = None

    def set_trainer(self, trainer):
        """Attach the callback to ``trainer`` (the Trainer does this before training).

        Parameters
        ----------
        trainer : fastnn.Trainer
            The trainer whose ``fit`` runs the hooks.
        """
        self.trainer = trainer

    @property
    def model(self):
        return None if self.trainer is None else self.trainer.model

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_batch_begin(self, batch, logs=None):
        pass

    def on_backward_end(self, batch, logs=None):
        """After backward, before the optimizer step.

        Parameters
        ----------
        batch : int
            Index of the batch in the epoch.
        logs : dict
            ``loss``, ``size``, ``step`` and the batch itself (``x``, ``y``). Setting
            ``trainer.stop_training`` here also skips this batch's step.
        """

    def on_batch_end(self, batch, logs=None):
        pass


class CallbackList:
    """Calls a hook on every callback in order (the Trainer uses it).

    Parameters
    ----------
    callbacks : iterable of Callback
        The callbacks, called in this order.
    trainer : fastnn.Trainer
        Given to every callback's ``set_trainer``.

    Raises
    ------
    TypeError
        If an item is not a :class:`Callback`.

    Examples
    --------
    >>> import fastnn as fnn
    >>> seen = []
    >>> cbs = fnn.callbacks.CallbackList([fnn.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: seen.append(e))],
    ...                                  trainer=None)
    >>> cbs.on_epoch_end(3, {})
    >>> seen, len(cbs)
    ([3], 1)
    """

    def __init__(self, callbacks, trainer):
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be fastnn.callbacks.Callback instances, got {type(cb).__name__}")
            cb.set_trainer(trainer)

    def __iter__(self):
        return iter(self.callbacks)

    def __len__(self):
        return len(self.callbacks)

    def _call(self, hook, *args):
        for cb in self.callbacks:
            getattr(cb, hook)(*args)

    def on_train_begin(self, logs=None):
        self._call("on_train_begin", logs)

    def on_train_end(self, logs=None):
        self._call("on_train_end", logs)

    def on_epoch_begin(self, epoch, logs=None):
        self._call("on_epoch_begin", epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._call("on_epoch_end", epoch, logs)

    def on_batch_begin(self, batch, logs=None):
        self._call("on_batch_begin", batch, logs)

    def on_backward_end(self, batch, logs=None):
        self._call("on_backward_end", batch, logs)

    def on_batch_end(self, batch, logs=None):
        self._call("on_batch_end", batch, logs)


def _monitor_value(callback, monitor, logs):
    logs = logs or {}
    if monitor not in logs:
        raise ValueError(f"{type(callback).__name__}: monitored key {monitor!r} is not in the epoch logs; "
                         f"available keys: {sorted(logs)}. (val_* keys need validation_data or "
                         f"validation_split; metric keys need metrics=[...] in the Trainer)")
    return float(logs[monitor])


def _resolve_mode(callback, mode, monitor):
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{type(callback).__name__}: mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        mode = "max" if "acc" in monitor else "min"
    return mode


class EarlyStopping(Callback):
    """Stop training when a monitored value has not improved for ``patience`` epochs (Keras semantics).

    An epoch improves when its value is better than the best so far by *more* than ``min_delta`` (an equal
    value, or one better by exactly ``min_delta``, is not an improvement). After ``patience`` epochs in a row
    without improvement, training stops. After training, ``best`` is the best monitored value, ``best_epoch``
    its epoch, and ``stopped_epoch`` the 0-based epoch training stopped at (0 when it ran to the end).

    Parameters
    ----------
    monitor : str, default "val_loss"
        A key of the epoch logs: ``"loss"``, a metric, or their ``val_`` forms.
    patience : int, default 5
        Epochs without improvement before stopping.
    min_delta : float, default 0.0
        The margin an improvement must exceed.
    restore_best_weights : bool, default True
        Keep a copy of ``model.state_dict()`` from the best epoch and load it back when training ends,
        whether or not it stopped early.
    mode : {"auto", "min", "max"}, default "auto"
        "auto" maximises monitors whose name contains "acc" and minimises the rest.
    baseline : float or None, default None
        Training stops unless the monitor beats it within ``patience`` epochs.
    start_from_epoch : int, default 0
        Epochs before it are not monitored (warm-up).
    verbose : int, default 0
        1 prints a line when training stops.

    Raises
    ------
    ValueError
        At the end of an epoch, if ``monitor`` is not in the logs (the message lists the keys), or for a
        bad ``mode``.

    See Also
    --------
    ModelCheckpoint

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> _ = fnn.manual_seed(0)
    >>> X = np.random.default_rng(0).standard_normal((64, 3)).astype(np.float32); y = (X[:, 0] > 0).astype(int)
    >>> model = fnn.nn.Sequential(fnn.nn.Linear(3, 2))
    >>> trainer = fnn.Trainer(model, fnn.nn.CrossEntropyLoss(), fnn.optim.SGD(model.parameters(), lr=0.1))
    >>> stop = fnn.callbacks.EarlyStopping(monitor="val_loss", patience=2)
    >>> history = trainer.fit(X, y, epochs=100, validation_split=0.25, callbacks=[stop], verbose=0)
    >>> len(history["loss"]) == (stop.stopped_epoch + 1 if stop.stopped_epoch else 100)
    True
    >>> stop.best == min(history["val_loss"])
    True
    """

    def __init__(self, monitor="val_loss", patience=5, min_delta=0.0, restore_best_weights=True, mode="auto",
                 baseline=None, start_from_epoch=0, verbose=0):
        super().__init__()
        if int(patience) < 0:
            raise ValueError(f"EarlyStopping: patience must be >= 0, got {patience}")
        self.monitor = str(monitor)
        self.patience = int(patience)
        self.min_delta = abs(float(min_delta))
        self.restore_best_weights = bool(restore_best_weights)
        self.mode = _resolve_mode(self, mode, self.monitor)
        self.baseline = None if baseline is None else float(baseline)
        self.start_from_epoch = int(start_from_epoch)
        self.verbose = int(verbose)
        self._reset()

    def _reset(self):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = None
        self.best_weights = None

    def _is_improvement(self, value, reference):
        if self.mode == "min":
            return value < reference - self.min_delta
        return value > reference + self.min_delta

    def on_train_begin(self, logs=None):
        self._reset()

    def on_epoch_end(self, epoch, logs=None):
        current = _monitor_value(self, self.monitor, logs)
        if epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            # Until something improves, the first monitored epoch's weights are the best there are.
            self.best_weights = self.model.state_dict()
            self.best_epoch = epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.state_dict()
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.trainer.stop_training = True

    def on_train_end(self, logs=None):
        if self.verbose and self.stopped_epoch > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.load_state_dict(self.best_weights)


class LambdaCallback(Callback):
    """A callback made of plain functions.

    Parameters
    ----------
    on_train_begin, on_train_end : callable, optional
        ``fn(logs)``.
    on_epoch_begin, on_epoch_end : callable, optional
        ``fn(epoch, logs)``.
    on_batch_begin, on_batch_end : callable, optional
        ``fn(batch, logs)``.

    Raises
    ------
    TypeError
        If a hook given is not callable.

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> _ = fnn.manual_seed(0)
    >>> X = np.random.default_rng(0).standard_normal((64, 3)).astype(np.float32); y = (X[:, 0] > 0).astype(int)
    >>> model = fnn.nn.Sequential(fnn.nn.Linear(3, 2))
    >>> trainer = fnn.Trainer(model, fnn.nn.CrossEntropyLoss(), fnn.optim.SGD(model.parameters(), lr=0.1))
    >>> losses = []
    >>> cb = fnn.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: losses.append(logs["loss"]))
    >>> _ = trainer.fit(X, y, epochs=3, callbacks=[cb], verbose=0)
    >>> len(losses)
    3
    """

    def __init__(self, on_train_begin=None, on_train_end=None, on_epoch_begin=None, on_epoch_end=None,
                 on_batch_begin=None, on_batch_end=None):
        super().__init__()
        hooks = dict(on_train_begin=on_train_begin, on_train_end=on_train_end, on_epoch_begin=on_epoch_begin,
                     on_epoch_end=on_epoch_end, on_batch_begin=on_batch_begin, on_batch_end=on_batch_end)
        for name, fn in hooks.items():
            if fn is not None:
                if not callable(fn):
                    raise TypeError(f"LambdaCallback: {name} must be callable, got {type(fn).__name__}")
                setattr(self, name, fn)


class LearningRateScheduler(Callback):
    """Set the learning rate before every epoch: ``optimizer.lr = schedule(epoch, lr)``.

    Keras's signature; a one-argument ``schedule(epoch)`` works too. For per-step schedules, give
    ``Trainer(schedule=...)`` a :mod:`fastnn.schedules` object instead.

    Parameters
    ----------
    schedule : callable
        ``schedule(epoch, lr) -> new lr`` or ``schedule(epoch) -> lr``; epochs are 0-based.
    verbose : int, default 0
        1 prints the rate set at each epoch.

    Raises
    ------
    TypeError
        If ``schedule`` is not callable.
    ValueError
        If it returns a non-finite rate.

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> _ = fnn.manual_seed(0)
    >>> X = np.random.default_rng(0).standard_normal((64, 3)).astype(np.float32); y = (X[:, 0] > 0).astype(int)
    >>> model = fnn.nn.Sequential(fnn.nn.Linear(3, 2))
    >>> trainer = fnn.Trainer(model, fnn.nn.CrossEntropyLoss(), fnn.optim.SGD(model.parameters(), lr=0.1))
    >>> halve = fnn.callbacks.LearningRateScheduler(lambda epoch, lr: lr if epoch == 0 else lr / 2)
    >>> history = trainer.fit(X, y, epochs=3, callbacks=[halve], verbose=0)
    >>> history["lr"]
    [0.1, 0.05, 0.025]
    """

    def __init__(self, schedule, verbose=0):
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"LearningRateScheduler: schedule must be callable, got {type(schedule).__name__}")
        self.schedule = schedule
        self.verbose = int(verbose)
        self._two_args = _accepts_two_args(schedule)

    def on_epoch_begin(self, epoch, logs=None):
        opt = self.trainer.optimizer
        lr = float(self.schedule(epoch, float(opt.lr)) if self._two_args else self.schedule(epoch))
        if not math.isfinite(lr):
            raise ValueError(f"LearningRateScheduler: schedule returned {lr} at epoch {epoch}")
        opt.lr = lr
        if self.verbose:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {lr:.6g}.")


def _accepts_two_args(fn):
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature: assume Keras's (epoch, lr)
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


class TerminateOnNaN(Callback):
    """Stop training at the first batch whose loss or gradients are NaN or infinite, before its optimizer step.

    The weights stay finite. The message names where the non-finite values start: the first layer whose
    output is non-finite (the batch is replayed layer by layer; parameters, buffers and the random state are
    restored afterwards), else the first parameter, in backward order, whose gradient is. It is printed and
    kept in ``message``; ``stopped_batch`` is the global step.

    Parameters
    ----------
    verbose : int, default 1
        0 keeps the message silent (still in ``message``).

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> _ = fnn.manual_seed(0)
    >>> X = np.random.default_rng(0).standard_normal((64, 3)).astype(np.float32); y = (X[:, 0] > 0).astype(int)
    >>> model = fnn.nn.Sequential(fnn.nn.Linear(3, 2))
    >>> trainer = fnn.Trainer(model, fnn.nn.CrossEntropyLoss(), fnn.optim.SGD(model.parameters(), lr=0.1))
    >>> class SquaredError:          # a loss of your own, which does not check its input
    ...     def __call__(self, pred, target):
    ...         self.diff = pred - target[:, None]
    ...         return float((self.diff ** 2).mean())
    ...     def backward(self):
    ...         return 2 * self.diff / self.diff.size
    >>> model[0].weight.data[0, 0] = np.nan            # a weight gone bad
    >>> bias = model[0].bias.data.copy()
    >>> nan_stop = fnn.callbacks.TerminateOnNaN(verbose=0)
    >>> trainer = fnn.Trainer(model, SquaredError(), fnn.optim.SGD(model.parameters(), lr=0.1))
    >>> _ = trainer.fit(X, y.astype(np.float32), epochs=3, callbacks=[nan_stop], verbose=0)
    >>> nan_stop.stopped_batch, "layer '0'" in nan_stop.message
    (0, True)
    >>> np.array_equal(model[0].bias.data, bias)      # stopped before the first update
    True
    """

    def __init__(self, verbose=1):
        super().__init__()
        self.verbose = int(verbose)
        self.message = None
        self.stopped_batch = None

    def on_backward_end(self, batch, logs=None):
        logs = logs or {}
        loss = logs.get("loss")
        params = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        bad_grad = next((n for n, p in reversed(params) if not _all_finite(p.grad)), None)
        if (loss is None or math.isfinite(loss)) and bad_grad is None:
            return
        where = _first_non_finite_output(self.model, logs.get("x")) if "x" in logs else None
        if where is not None:
            detail = f"the output of layer '{where[0]}' ({where[1]!r}) is the first non-finite value"
        elif bad_grad is not None:
            detail = f"the gradient of '{bad_grad}' is the first non-finite gradient (in backward order)"
        else:
            detail = "every layer output and gradient is finite: the loss itself overflowed"
        self.stopped_batch = logs.get("step")
        self.message = (f"TerminateOnNaN: batch {batch} (step {self.stopped_batch}) has loss {loss}; {detail}. "
                        f"Training stopped before this batch's update.")
        if self.verbose:
            print(self.message)
        self.trainer.stop_training = True


def _all_finite(a):
    a = np.ascontiguousarray(a)
    if a.dtype.kind != "f":
        return True
    if a.dtype not in (np.float32, np.float64):
        return bool(np.isfinite(a).all())
    return ops.all_finite(a)


def _first_non_finite_output(model, x):
    """(name, module) of the first leaf layer, in call order, whose output has a NaN/inf on input x, or None.
    Replays one forward with each leaf's forward wrapped; restores state and the random generator."""
    found = []
    leaves = [(name, m) for name, m in model.named_modules() if not m._modules and name] or [("", model)]

    def watching(name, module, forward):
        def wrapped(*args, **kwargs):
            out = forward(*args, **kwargs)
            first = out[0] if isinstance(out, tuple) else out
            if not found and isinstance(first, np.ndarray) and not _all_finite(first):
                found.append((name or type(module).__name__, module))
            return out
        return wrapped

    saved_state = model.state_dict()
    rng_state = generator().bit_generator.state
    for name, m in leaves:
        m.forward = watching(name, m, m.forward)
    try:
        model(*x) if isinstance(x, tuple) else model(x)
    except (ValueError, FloatingPointError):
        pass  # a layer that rejects non-finite input: the last wrapped output already names the culprit
    finally:
        for _, m in leaves:
            m.__dict__.pop("forward", None)
        model.load_state_dict(saved_state)
        generator().bit_generator.state = rng_state
    return found[0] if found else None


class ModelCheckpoint(Callback):
    """Save the model with :func:`fastnn.save` every ``every_n_epochs`` epochs, or when ``monitor`` improves.

    ``best`` is the best monitored value; ``saved`` lists the paths written.

    Parameters
    ----------
    filepath : str or os.PathLike
        The file; it may hold format fields filled from the epoch (1-based, as printed) and the logs, e.g.
        ``"ckpt-{epoch:03d}-{val_loss:.4f}.fnn"``.
    monitor : str, default "val_loss"
        The key compared when ``save_best_only``.
    save_best_only : bool, default False
        Save only when ``monitor`` improves (as in :class:`EarlyStopping` with ``min_delta=0``).
    mode : {"auto", "min", "max"}, default "auto"
        "auto" maximises monitors containing "acc".
    every_n_epochs : int, default 1
        Check every this many epochs; >= 1.
    verbose : int, default 0
        1 prints each save.

    Raises
    ------
    ValueError
        If ``every_n_epochs < 1`` or ``mode`` is unknown; at an epoch's end, if ``monitor`` is missing.

    See Also
    --------
    fastnn.save, fastnn.load, EarlyStopping

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> _ = fnn.manual_seed(0)
    >>> X = np.random.default_rng(0).standard_normal((64, 3)).astype(np.float32); y = (X[:, 0] > 0).astype(int)
    >>> model = fnn.nn.Sequential(fnn.nn.Linear(3, 2))
    >>> trainer = fnn.Trainer(model, fnn.nn.CrossEntropyLoss(), fnn.optim.SGD(model.parameters(), lr=0.1))
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "best.fnn")
    >>> ckpt = fnn.callbacks.ModelCheckpoint(path, monitor="val_loss", save_best_only=True)
    >>> _ = trainer.fit(X, y, epochs=3, validation_split=0.25, callbacks=[ckpt], verbose=0)
    >>> os.path.exists(path), len(ckpt.saved) >= 1
    (True, True)
    >>> type(fnn.load(path)).__name__
    'Sequential'
    """

    def __init__(self, filepath, monitor="val_loss", save_best_only=False, mode="auto", every_n_epochs=1,
                 verbose=0):
        super().__init__()
        if int(every_n_epochs) < 1:
            raise ValueError(f"ModelCheckpoint: every_n_epochs must be >= 1, got {every_n_epochs}")
        self.filepath = os.fspath(filepath)
        self.monitor = str(monitor)
        self.save_best_only = bool(save_best_only)
        self.mode = _resolve_mode(self, mode, self.monitor)
        self.every_n_epochs = int(every_n_epochs)
        self.verbose = int(verbose)
        self.best = math.inf if self.mode == "min" else -math.inf
        self.saved = []

    def _save(self, epoch, logs):
        from . import save
        path = self.filepath.format(epoch=epoch + 1, **(logs or {}))
        save(self.model, path)
        self.saved.append(path)
        if self.verbose:
            print(f"Epoch {epoch + 1}: saved model to {path}")

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs:
            return
        if not self.save_best_only:
            self._save(epoch, logs)
            return
        current = _monitor_value(self, self.monitor, logs)
        better = current < self.best if self.mode == "min" else current > self.best
        if better:
            self.best = current
            self._save(epoch, logs)


class CSVLogger(Callback):
    """Write one CSV row per epoch: the epoch, then every log key (sorted).

    Parameters
    ----------
    filename : str or os.PathLike
        The CSV file.
    separator : str, default ","
        The field separator.
    append : bool, default False
        Append to an existing file (no second header) instead of overwriting it.

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> _ = fnn.manual_seed(0)
    >>> X = np.random.default_rng(0).standard_normal((64, 3)).astype(np.float32); y = (X[:, 0] > 0).astype(int)
    >>> model = fnn.nn.Sequential(fnn.nn.Linear(3, 2))
    >>> trainer = fnn.Trainer(model, fnn.nn.CrossEntropyLoss(), fnn.optim.SGD(model.parameters(), lr=0.1))
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "log.csv")
    >>> _ = trainer.fit(X, y, epochs=2, callbacks=[fnn.callbacks.CSVLogger(path)], verbose=0)
    >>> with open(path) as f:
    ...     lines = f.read().splitlines()
    >>> lines[0], len(lines)
    ('epoch,accuracy,loss,lr', 3)
    """

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.filename = os.fspath(filename)
        self.separator = separator
        self.append = bool(append)
        self._file = None
        self._writer = None
        self._keys = None

    def on_train_begin(self, logs=None):
        exists = self.append and os.path.exists(self.filename) and os.path.getsize(self.filename) > 0
        self._file = open(self.filename, "a" if self.append else "w", newline="")
        self._keys = None
        self._header_written = exists

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        if self._keys is None:
            self._keys = sorted(logs)
            self._writer = csv.DictWriter(self._file, fieldnames=["epoch"] + self._keys,
                                          delimiter=self.separator, extrasaction="ignore")
            if not self._header_written:
                self._writer.writeheader()
        row = {"epoch": epoch}
        row.update({k: logs.get(k, "NA") for k in self._keys})
        self._writer.writerow(row)
        self._file.flush()

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
            self._file = None


class JSONLogger(Callback):
    """Write the history so far as JSON (``{"epoch": [...], "loss": [...], ...}``) after every epoch.

    The file is replaced atomically, so a reader never sees half of it.

    Parameters
    ----------
    filename : str or os.PathLike
        The JSON file.

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> _ = fnn.manual_seed(0)
    >>> X = np.random.default_rng(0).standard_normal((64, 3)).astype(np.float32); y = (X[:, 0] > 0).astype(int)
    >>> model = fnn.nn.Sequential(fnn.nn.Linear(3, 2))
    >>> trainer = fnn.Trainer(model, fnn.nn.CrossEntropyLoss(), fnn.optim.SGD(model.parameters(), lr=0.1))
    >>> import json, os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "log.json")
    >>> _ = trainer.fit(X, y, epochs=2, callbacks=[fnn.callbacks.JSONLogger(path)], verbose=0)
    >>> with open(path) as f:
    ...     sorted(json.load(f))
    ['accuracy', 'epoch', 'loss', 'lr']
    """

    def __init__(self, filename):
        super().__init__()
        self.filename = os.fspath(filename)
        self.log = {}

    def on_train_begin(self, logs=None):
        self.log = {"epoch": []}

    def on_epoch_end(self, epoch, logs=None):
        self.log["epoch"].append(int(epoch))
        for k, v in (logs or {}).items():
            self.log.setdefault(k, []).append(float(v))
        tmp = self.filename + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.log, f, indent=1)
        os.replace(tmp, self.filename)
