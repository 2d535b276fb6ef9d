"""Trainer: the training loop over in-memory NumPy arrays (mini-batches, shuffling, validation, metrics,
history, callbacks, progress bar), in the manner of Keras's Model.fit.

At the start of every epoch it calls model.train() (again before a batch if a callback switched the model
to eval), then per batch

    out = model(xb); value = loss(out, yb)
    model.backward_parameters(loss.backward()); optimizer.step(); optimizer.zero_grad()

(and optimizer.zero_grad() once before the first step), so any Module with forward/backward trains (backward_parameters falls back to backward; the input
gradient of the first layer is not needed). Shuffling draws from fastnn.random.generator(), so
fastnn.manual_seed(s) makes a whole run reproducible bit for bit. Floating inputs are converted once to
the model's parameter dtype (the layers would otherwise convert every batch).
"""
import math
import numbers

import numpy as np

from . import metrics as _metrics
from .callbacks import CallbackList
from .progress import ProgressLogger
from .random import generator

__all__ = ["Trainer"]

# Losses whose outputs are class scores: Trainer(metrics=None) reports accuracy for them.
_CLASSIFICATION_LOSSES = ("CrossEntropyLoss", "NLLLoss", "BCELoss", "BCEWithLogitsLoss")


def _check_arrays(where, x, y, what="x", ywhat="y"):
    if not isinstance(x, np.ndarray):
        x = np.asarray(x)
    if not isinstance(y, np.ndarray):
        y = np.asarray(y)
    if x.ndim == 0 or y.ndim == 0:
        raise ValueError(f"{where}: {what} and {ywhat} must be arrays with a sample dimension, "
                         f"got shapes {x.shape} and {y.shape}")
    if len(x) != len(y):
        raise ValueError(f"{where}: {what} has {len(x)} samples (shape {x.shape}) but {ywhat} has {len(y)} "
                         f"(shape {y.shape}); they must have the same length")
    if len(x) == 0:
        raise ValueError(f"{where}: no samples ({what} has shape {x.shape}, {ywhat} has shape {y.shape})")
    return x, y


def _check_batch_size(where, batch_size):
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"{where}: batch_size must be an integer >= 1, got {batch_size!r}")
    return int(batch_size)


def _batch(a, start, stop, index):
    """Rows start:stop of a (or a[index[start:stop]] when shuffling), C-contiguous."""
    if index is None:
        return np.ascontiguousarray(a[start:stop])
    return np.ascontiguousarray(a[index[start:stop]])


def _scalar_loss(loss, value):
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"Trainer: the loss must return a scalar (reduction 'mean' or 'sum'); {loss!r} returned "
                        f"{type(value).__name__} of shape {np.shape(value)}") from None


def _model_modes(model):
    return [(m, m.training) for m in model.modules()]


def _restore_modes(model, modes):
    root_mode = modes[0][1] if modes else True
    model.train(root_mode)
    for m, mode in modes:
        if m.training != mode:
            m.training = mode


class Trainer:
    """fit / evaluate / predict for a model, a loss and an optimizer.

    metrics: list of "accuracy", "top5_accuracy", fastnn.metrics.Metric objects or functions
        fn(pred, target) -> float. None (default) means ["accuracy"] for classification losses
        (CrossEntropyLoss, NLLLoss, BCELoss, BCEWithLogitsLoss) and no metric besides the loss otherwise;
        [] means the loss only.
    schedule: callable step -> lr; before every optimizer step, optimizer.lr = schedule(step), where step
        counts optimizer steps taken by this trainer (0 for the first; `global_step`, kept across fits).
    callbacks: fastnn.callbacks.Callback objects used by every fit (fit's own callbacks run after them).
    """

    def __init__(self, model, loss, optimizer, metrics=None, schedule=None, callbacks=None):
        if not callable(loss):
            raise TypeError(f"Trainer: loss must be callable (value = loss(pred, target)), got {type(loss).__name__}")
        if schedule is not None and not callable(schedule):
            raise TypeError(f"Trainer: schedule must be a callable step -> lr, got {type(schedule).__name__}")
        self.model = model
        self.loss = loss
        self.optimizer = optimizer
        self.schedule = schedule
        self.callbacks = list(callbacks or [])
        if metrics is None:
            metrics = ["accuracy"] if type(loss).__name__ in _CLASSIFICATION_LOSSES else []
        elif isinstance(metrics, (str, _metrics.Metric)) or callable(metrics):
            metrics = [metrics]
        self.metrics = [_metrics.get(m, loss) for m in metrics]
        names = [m.name for m in self.metrics]
        for name in names:
            if name == "loss" or names.count(name) > 1 or name.startswith("val_"):
                raise ValueError(f"Trainer: metric names must be unique and must not be 'loss' or start with "
                                 f"'val_'; got {names}")
        self._val_metrics = [m.clone() for m in self.metrics]
        self.history = {}
        self.epoch = []
        self.global_step = 0
        self.stop_training = False

    # -- helpers -------------------------------------------------------------------------------------
    def _set_lr(self):
        lr = float(self.schedule(self.global_step))
        if not math.isfinite(lr):
            raise ValueError(f"Trainer: schedule returned lr={lr} at step {self.global_step}")
        self.optimizer.lr = lr

    def _as_model_dtype(self, x):
        """Floating inputs in the model's parameter dtype, converted once instead of in every batch."""
        params = self.model.parameters() if hasattr(self.model, "parameters") else []
        if x.dtype.kind == "f" and params and x.dtype != params[0].data.dtype:
            return x.astype(params[0].data.dtype)
        return x

    def _current_lr(self):
        lr = getattr(self.optimizer, "lr", None)
        try:
            return None if lr is None else float(lr)
        except (TypeError, ValueError):
            return None

    def _evaluate(self, x, y, batch_size, metric_objs):
        """Sample-weighted mean loss and metrics over (x, y) in eval mode; training modes restored."""
        model, loss = self.model, self.loss
        modes = _model_modes(model)
        for m in metric_objs:
            m.reset()
        total, n = 0.0, len(x)
        weighted = getattr(loss, "reduction", "mean") != "sum"
        try:
            model.eval()
            for start in range(0, n, batch_size):
                stop = min(start + batch_size, n)
                xb, yb = _batch(x, start, stop, None), _batch(y, start, stop, None)
                out = model(xb)
                value = _scalar_loss(loss, loss(out, yb))
                total += value * (stop - start) if weighted else value
                for m in metric_objs:
                    m.update(out, yb)
        finally:
            _restore_modes(model, modes)
        result = {"loss": total / n}
        for m in metric_objs:
            result[m.name] = float(m.result())
        return result

    # -- public API ----------------------------------------------------------------------------------
    def fit(self, x, y, epochs=1, batch_size=32, validation_data=None, validation_split=0.0, shuffle=True,
            verbose=1, callbacks=None, initial_epoch=0, validation_batch_size=None):
        """Train for epochs initial_epoch .. epochs-1 and return the history dict
        {"loss": [...], <metric>: [...], "val_loss": [...], "val_<metric>": [...], "lr": [...]}, one value per
        epoch (also `trainer.history`; `trainer.epoch` lists the epoch numbers).

        validation_split: the LAST fraction of x/y (taken before shuffling, as Keras) is held out for
        validation. validation_data=(x_val, y_val) instead gives an explicit set; giving both is an error.
        Epoch loss and metrics are exact over the epoch (batch losses weighted by batch size; with a
        reduction='sum' loss, the summed loss divided by the number of samples), computed
        during training, i.e. with the weights changing and in training mode (dropout on), as in Keras.
        verbose: 0 silent, 1 progress bar on a terminal (one line per epoch otherwise), 2 one line per epoch.
        """
        where = "Trainer.fit"
        x, y = _check_arrays(where, x, y)
        batch_size = _check_batch_size(where, batch_size)
        if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 0:
            raise ValueError(f"{where}: epochs must be an integer >= 0, got {epochs!r}")
        if isinstance(initial_epoch, bool) or not isinstance(initial_epoch, numbers.Integral) or initial_epoch < 0:
            raise ValueError(f"{where}: initial_epoch must be an integer >= 0, got {initial_epoch!r}")
        split = float(validation_split)
        if not 0.0 <= split < 1.0:
            raise ValueError(f"{where}: validation_split must be in [0, 1), got {validation_split}")
        if split > 0 and validation_data is not None:
            raise ValueError(f"{where}: give validation_data or validation_split, not both")

        x_val = y_val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError(f"{where}: validation_data must be a tuple (x_val, y_val)")
            x_val, y_val = _check_arrays(where, validation_data[0], validation_data[1], "x_val", "y_val")
        elif split > 0:
            n_train = int(math.floor(len(x) * (1.0 - split)))
            if n_train == 0 or n_train == len(x):
                raise ValueError(f"{where}: validation_split={split} of {len(x)} samples leaves "
                                 f"{n_train} for training and {len(x) - n_train} for validation")
            x, x_val = x[:n_train], x[n_train:]
            y, y_val = y[:n_train], y[n_train:]
        val_batch_size = (max(batch_size, 256) if validation_batch_size is None
                          else _check_batch_size(where, validation_batch_size))

        x = self._as_model_dtype(x)
        if x_val is not None:
            x_val = self._as_model_dtype(x_val)
        n = len(x)
        steps = -(-n // batch_size)
        cbs = CallbackList(self.callbacks + list(callbacks or []), self)
        progress = ProgressLogger(verbose, epochs, steps)
        model, loss, opt = self.model, self.loss, self.optimizer
        train_metrics = self.metrics
        loss_weighting = getattr(loss, "reduction", "mean") != "sum"
        history = {}
        self.history = history
        self.epoch = []
        self.stop_training = False

        backward = getattr(model, "backward_parameters", None) or model.backward
        has_callbacks = len(cbs) > 0
        try:
            cbs.on_train_begin()
            opt.zero_grad()
            for epoch in range(int(initial_epoch), int(epochs)):
                if self.stop_training:
                    break
                cbs.on_epoch_begin(epoch)
                progress.epoch_begin(epoch)
                for m in train_metrics:
                    m.reset()
                index = generator().permutation(n) if shuffle else None
                loss_sum, seen = 0.0, 0
                model.train()
                for b in range(steps):
                    start, stop = b * batch_size, min((b + 1) * batch_size, n)
                    size = stop - start
                    xb, yb = _batch(x, start, stop, index), _batch(y, start, stop, index)
                    if has_callbacks:
                        cbs.on_batch_begin(b, {"size": size, "step": self.global_step})
                    if self.schedule is not None:
                        self._set_lr()
                    if not model.training:  # a callback or schedule switched the model to eval
                        model.train()
                    out = model(xb)
                    value = _scalar_loss(loss, loss(out, yb))
                    for m in train_metrics:  # before backward, which may reuse buffers
                        m.update(out, yb)
                    backward(loss.backward())
                    loss_sum += value * size if loss_weighting else value
                    seen += size
                    if has_callbacks:
                        cbs.on_backward_end(b, {"loss": value, "size": size, "step": self.global_step,
                                                "x": xb, "y": yb})
                        if self.stop_training:
                            break  # a callback stopped training here: this batch takes no step
                    opt.step()
                    opt.zero_grad()
                    self.global_step += 1
                    progress.batch_end(loss_sum / seen)
                    if has_callbacks:
                        cbs.on_batch_end(b, {"loss": value, "size": size, "step": self.global_step - 1,
                                             "lr": self._current_lr()})
                        if self.stop_training:
                            break
                logs = {"loss": loss_sum / seen}
                for m in train_metrics:
                    logs[m.name] = float(m.result())
                if x_val is not None:
                    val = self._evaluate(x_val, y_val, val_batch_size, self._val_metrics)
                    for k, v in val.items():
                        logs["val_" + k] = v
                lr = self._current_lr()
                if lr is not None:
                    logs["lr"] = lr
                self.epoch.append(epoch)
                for k, v in logs.items():
                    history.setdefault(k, []).append(v)
                progress.epoch_end(epoch, logs)
                cbs.on_epoch_end(epoch, logs)
            cbs.on_train_end()
        finally:
            progress.close()
        return history

    def evaluate(self, x, y, batch_size=256):
        """{"loss": ..., <metric>: ...} over (x, y) in eval mode (the previous train/eval modes are restored).
        The loss is the sample-weighted mean of batch losses, the metrics are exact counts."""
        x, y = _check_arrays("Trainer.evaluate", x, y)
        batch_size = _check_batch_size("Trainer.evaluate", batch_size)
        return self._evaluate(x, y, batch_size, self._val_metrics)

    def predict(self, x, batch_size=256):
        """Model outputs for x in eval mode, batch by batch, concatenated along the first axis."""
        if not isinstance(x, np.ndarray):
            x = np.asarray(x)
        if x.ndim == 0 or len(x) == 0:
            raise ValueError(f"Trainer.predict: x must have at least one sample, got shape {x.shape}")
        batch_size = _check_batch_size("Trainer.predict", batch_size)
        model = self.model
        modes = _model_modes(model)
        outs = []
        try:
            model.eval()
            for start in range(0, len(x), batch_size):
                outs.append(np.array(model(_batch(x, start, start + batch_size, None)), copy=True))
        finally:
            _restore_modes(model, modes)
        return outs[0] if len(outs) == 1 else np.concatenate(outs, axis=0)
