"""Trainer: the training loop (mini-batches, shuffling, validation, metrics, history, callbacks, progress bar),
in the manner of Keras's Model.fit.

Data comes as
* arrays: `fit(x, y)`, with x one array or a list/tuple of arrays for a model of several inputs
  (`model(*inputs)`); batches are cut (and shuffled every epoch) by fastnn.data.ArrayBatches;
* any re-iterable of batches: `fit(batches)`, each batch (xb, yb) with xb an array or a tuple of arrays:
  ArrayBatches and GeneratorBatches (with their augmentation `transform`), a class whose __iter__ yields
  batches, a torch DataLoader yielding arrays or CPU tensors. Every epoch iterates it afresh, unless
  `steps_per_epoch` is given: then each epoch takes that many batches from one running iterator (an endless
  stream), starting a new pass when a re-iterable runs out.

At the start of every epoch it calls model.train() (again before a batch if a callback switched the model
to eval), then per batch

    out = model(*inputs); value = loss(out, yb)
    model.backward_parameters(loss.backward()); optimizer.step(); optimizer.zero_grad()

(and optimizer.zero_grad() once before the first step), so any Module with forward/backward trains (the
input gradient of the first layer is not needed). A Sequential runs the first four in one C++ call where
Sequential.train_step can (same results bit for bit), unless MPI or a callback's on_backward_end must run
between backward and the update. Shuffling draws from fastnn.random.generator(), so
fastnn.manual_seed(s) makes a whole run reproducible bit for bit. Floating inputs are converted to the
model's parameter dtype (once for arrays; per batch for iterables).
"""
import contextlib
import math
import numbers

import numpy as np

from . import metrics as _metrics
from .callbacks import Callback, CallbackList
from .data.batching import ArrayBatches
from .nn.sequential import Sequential
from .progress import ProgressLogger

__all__ = ["Trainer"]

# Losses whose outputs are class scores: Trainer(metrics=None) reports accuracy for them.
_CLASSIFICATION_LOSSES = ("CrossEntropyLoss", "NLLLoss", "BCELoss", "BCEWithLogitsLoss", "MultiMarginLoss")


def _is_array(a):
    return isinstance(a, np.ndarray) or (hasattr(a, "__array__") and hasattr(a, "shape"))


def _inputs_of(x):
    """x as a tuple of input arrays if it is arrays (one, or a list/tuple of them), else None (batches)."""
    if _is_array(x):
        return (x,)
    if isinstance(x, (list, tuple)) and x and all(_is_array(a) for a in x):
        return tuple(x)
    return None


def _check_arrays(where, xs, y, what="x", ywhat="y"):
    """xs (a tuple of input arrays) and y as arrays of one common length."""
    xs = tuple(a if isinstance(a, np.ndarray) else np.asarray(a) for a in xs)
    if not isinstance(y, np.ndarray):
        y = np.asarray(y)
    shapes = xs[0].shape if len(xs) == 1 else [a.shape for a in xs]
    if any(a.ndim == 0 for a in xs) or y.ndim == 0:
        raise ValueError(f"{where}: {what} and {ywhat} must be arrays with a sample dimension, "
                         f"got shapes {shapes} and {y.shape}")
    if len({len(a) for a in xs}) != 1:
        raise ValueError(f"{where}: the inputs in {what} have different numbers of samples ({shapes})")
    if len(xs[0]) != len(y):
        raise ValueError(f"{where}: {what} has {len(xs[0])} samples (shape {shapes}) but {ywhat} has {len(y)} "
                         f"(shape {y.shape}); they must have the same length")
    if len(y) == 0:
        raise ValueError(f"{where}: no samples ({what} has shape {shapes}, {ywhat} has shape {y.shape})")
    return xs, y


def _check_batch_size(where, batch_size):
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"{where}: batch_size must be an integer >= 1, got {batch_size!r}")
    return int(batch_size)


def _check_steps(where, name, steps):
    if steps is None:
        return None
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise ValueError(f"{where}: {name} must be an integer >= 1 or None, got {steps!r}")
    return int(steps)


def _as_array(a):
    return a if type(a) is np.ndarray else np.asarray(a)


def _split_batch(where, item, need_y):
    """(inputs tuple, yb or None) from one batch of an iterable: (xb, yb), (xb,) or xb, where xb is an array
    or a tuple/list of arrays."""
    if isinstance(item, (tuple, list)):
        if len(item) == 2:
            xb, yb = item
        elif len(item) == 1:
            xb, yb = item[0], None
        else:
            raise ValueError(f"{where}: a batch must be (x, y), (x,) or x, got a {type(item).__name__} of "
                             f"{len(item)} items")
    else:
        xb, yb = item, None
    if need_y and yb is None:
        raise ValueError(f"{where}: batches must be (x, y) pairs to train or evaluate, got one without y")
    inputs = tuple(_as_array(a) for a in xb) if isinstance(xb, (tuple, list)) else (_as_array(xb),)
    return inputs, None if yb is None else _as_array(yb)


class _Feed:
    """The batches of one fit/evaluate/predict: `epoch()` yields (inputs, yb) for one epoch."""

    def __init__(self, where, data, steps, need_y):
        self.where, self.data, self.steps, self.need_y = where, data, steps, need_y
        self._it = None
        try:
            self._one_shot = iter(data) is data
        except TypeError:
            raise TypeError(f"{where}: expected arrays or an iterable of batches, got {type(data).__name__}") \
                from None
        self.epochs_done = 0

    def num_batches(self):
        """Batches per epoch, or None when the iterable does not say."""
        if self.steps is not None:
            return self.steps
        try:
            return len(self.data)
        except TypeError:
            return None

    def epoch(self):
        where, count = self.where, 0
        if self.steps is None:
            if self._one_shot and self.epochs_done:
                raise ValueError(f"{where}: the batches are a one-shot iterator, already used up; pass a "
                                 f"re-iterable (fastnn.data.ArrayBatches, GeneratorBatches, a class whose "
                                 f"__iter__ returns a new generator) or steps_per_epoch")
            for item in self.data:
                count += 1
                yield _split_batch(where, item, self.need_y)
        else:
            fresh = False
            while count < self.steps:
                if self._it is None:
                    self._it, fresh = iter(self.data), True
                try:
                    item = next(self._it)
                except StopIteration:
                    self._it = None
                    if self._one_shot or fresh:
                        raise ValueError(f"{where}: the batches ran out after {count} of steps_per_epoch="
                                         f"{self.steps} in epoch {self.epochs_done + 1}; give fewer steps or a "
                                         f"re-iterable") from None
                    continue
                fresh = False
                count += 1
                yield _split_batch(where, item, self.need_y)
        if count == 0:
            raise ValueError(f"{where}: the batches are empty")
        self.epochs_done += 1


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

    Per batch it calls ``model(xb)``, ``loss(out, yb)``, ``model.backward(loss.backward())``,
    ``optimizer.step()`` and ``optimizer.zero_grad()``, so any Module works. A
    :class:`~fastnn.nn.Sequential` whose step fits one C++ call (:meth:`~fastnn.nn.Sequential.train_step`)
    runs it that way, with the same results bit for bit, unless ``distributed`` or a callback's
    ``on_backward_end`` needs the step split.

    Parameters
    ----------
    model : fastnn.nn.Module
        The model; several inputs are passed as ``model(*inputs)``.
    loss : callable
        ``value = loss(pred, target)`` with ``loss.backward()`` giving the gradient w.r.t. ``pred``.
    optimizer : fastnn.optim.Optimizer
        Steps the model's parameters.
    metrics : list, optional
        ``"accuracy"``, ``"top5_accuracy"``, :class:`fastnn.metrics.Metric` objects or functions
        ``fn(pred, target) -> float``. None (default) means ``["accuracy"]`` for classification losses
        (CrossEntropyLoss, NLLLoss, BCELoss, BCEWithLogitsLoss, MultiMarginLoss) and no metric besides the loss
        otherwise; ``[]`` means the loss only.
    schedule : callable, optional
        ``step -> lr``; before every optimizer step, ``optimizer.lr = schedule(step)``, where step counts the
        optimizer steps taken by this trainer (0 for the first; ``global_step``, kept across fits).
    callbacks : list of fastnn.callbacks.Callback, optional
        Used by every fit (fit's own callbacks run after them).
    distributed : bool, default False
        True to train data-parallel over MPI (run under mpiexec; :mod:`fastnn.distributed`): rank 0's
        parameters and optimizer state are broadcast; ``batch_size`` is the global batch, each rank taking its
        contiguous share of every batch (arrays; an iterable of batches is each rank's own shard); gradients
        are combined weighted by shard size, in buckets whose allreduce starts while backward still runs
        (DistributedOptimizer.overlap_backward); loss, metrics and validation are summed over ranks, so history
        equals one process's; callbacks and the progress bar run on rank 0, whose ``stop_training`` and lr
        every rank follows; an exception on any rank aborts all of them. Pass a DistributedOptimizer to choose
        its bucket size and overlap. ``predict()`` stays per rank (every rank predicts all of x).

    Raises
    ------
    TypeError
        If ``loss`` or ``schedule`` is not callable.
    ValueError
        If metric names repeat, or are ``"loss"`` or start with ``"val_"``.

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> _ = fnn.manual_seed(0)
    >>> model = fnn.nn.Sequential(fnn.nn.Linear(4, 8), fnn.nn.ReLU(), fnn.nn.Linear(8, 2))
    >>> trainer = fnn.Trainer(model, fnn.nn.CrossEntropyLoss(), fnn.optim.SGD(model.parameters(), lr=0.1))
    >>> x = np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32); y = (x[:, 0] > 0).astype(np.int64)
    >>> history = trainer.fit(x, y, epochs=20, batch_size=16, verbose=0)
    >>> history["accuracy"][-1] > 0.9
    True
    """

    def __init__(self, model, loss, optimizer, metrics=None, schedule=None, callbacks=None, distributed=False):
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
        self._dtype = None
        self._dist = None
        if distributed:
            from .distributed.trainer_sync import TrainerSync
            self._dist = TrainerSync(model, optimizer, loss, self.metrics + self._val_metrics)

    # -- helpers -------------------------------------------------------------------------------------
    def _set_lr(self):
        lr = float(self.schedule(self.global_step))
        if not math.isfinite(lr):
            raise ValueError(f"Trainer: schedule returned lr={lr} at step {self.global_step}")
        self.optimizer.lr = lr

    def _as_model_dtype(self, x):
        """Floating inputs in the model's parameter dtype (the layers would convert every batch otherwise)."""
        dtype = self._dtype
        if dtype is not None and x.dtype.kind == "f" and x.dtype != dtype:
            return x.astype(dtype)
        return x

    def _model_dtype(self):
        params = self.model.parameters() if hasattr(self.model, "parameters") else []
        return params[0].data.dtype if params else None

    def _current_lr(self):
        lr = getattr(self.optimizer, "lr", None)
        try:
            return None if lr is None else float(lr)
        except (TypeError, ValueError):
            return None

    def _feed(self, where, x, y, batch_size, shuffle, steps, need_y=True, shard=True):
        """A _Feed over arrays (x one array or a list of them, with y) or over an iterable of batches."""
        inputs = _inputs_of(x)
        if inputs is None:
            if y is not None:
                raise ValueError(f"{where}: y must be None when x is an iterable of (x, y) batches")
            return _Feed(where, x, steps, need_y)
        if y is None and need_y:
            raise ValueError(f"{where}: y is missing (give x and y arrays, or an iterable of (x, y) batches)")
        if y is not None:
            inputs, y = _check_arrays(where, inputs, y)
        else:
            inputs = tuple(_as_array(a) for a in inputs)
            if any(a.ndim == 0 for a in inputs) or len(inputs[0]) == 0:
                raise ValueError(f"{where}: x must have at least one sample, got shape "
                                 f"{[a.shape for a in inputs] if len(inputs) > 1 else inputs[0].shape}")
        self._dtype = self._model_dtype()
        inputs = tuple(self._as_model_dtype(a) for a in inputs)
        batches = ArrayBatches(inputs if len(inputs) > 1 else inputs[0], y, batch_size, shuffle=shuffle)
        if self._dist is not None and shard:
            batches = self._dist.shard(batches)  # this rank's share of every global batch
        return _Feed(where, batches, steps, need_y)

    def _evaluate(self, feed, metric_objs):
        """Sample-weighted mean loss and metrics over a feed in eval mode; training modes restored."""
        model, loss = self.model, self.loss
        modes = _model_modes(model)
        for m in metric_objs:
            m.reset()
        total, n = 0.0, 0
        weighted = getattr(loss, "reduction", "mean") != "sum"
        self._dtype = self._model_dtype()
        try:
            model.eval()
            for inputs, yb in feed.epoch():
                size = len(yb)
                if size == 0:  # distributed: this rank's share of a small batch is empty
                    continue
                out = model(*[self._as_model_dtype(a) for a in inputs])
                value = _scalar_loss(loss, loss(out, yb))
                total += value * size if weighted else value
                n += size
                for m in metric_objs:
                    m.update(out, yb)
        finally:
            _restore_modes(model, modes)
        if self._dist is not None:
            total, n = self._dist.reduce(total, n, metric_objs)
        result = {"loss": total / n}
        for m in metric_objs:
            result[m.name] = float(m.result())
        return result

    # -- public API ----------------------------------------------------------------------------------
    def fit(self, x, y=None, epochs=1, batch_size=32, validation_data=None, validation_split=0.0, shuffle=True,
            verbose=1, callbacks=None, initial_epoch=0, validation_batch_size=None, steps_per_epoch=None,
            validation_steps=None):
        """Train for epochs initial_epoch .. epochs-1 and return the history dict
        {"loss": [...], <metric>: [...], "val_loss": [...], "val_<metric>": [...], "lr": [...]}, one value per
        epoch (also `trainer.history`; `trainer.epoch` lists the epoch numbers).

        x, y: arrays (x a list/tuple of arrays for several inputs), or x an iterable of (xb, yb) batches and
        y None (see the module docstring); batch_size and shuffle apply to arrays only.
        validation_split: the LAST fraction of the arrays (taken before shuffling, as Keras) is held out for
        validation. validation_data=(x_val, y_val) (arrays) or an iterable of batches gives an explicit
        set; giving both is an error. steps_per_epoch / validation_steps: batches per epoch / per
        validation, for endless streams.
        Epoch loss and metrics are exact over the epoch (batch losses weighted by batch size; with a
        reduction='sum' loss, the summed loss divided by the number of samples), computed
        during training, i.e. with the weights changing and in training mode (dropout on), as in Keras.
        verbose: 0 silent, 1 progress bar on a terminal (one line per epoch otherwise), 2 one line per epoch.
        """
        where = "Trainer.fit"
        batch_size = _check_batch_size(where, batch_size)
        steps_per_epoch = _check_steps(where, "steps_per_epoch", steps_per_epoch)
        validation_steps = _check_steps(where, "validation_steps", validation_steps)
        if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 0:
            raise ValueError(f"{where}: epochs must be an integer >= 0, got {epochs!r}")
        if isinstance(initial_epoch, bool) or not isinstance(initial_epoch, numbers.Integral) or initial_epoch < 0:
            raise ValueError(f"{where}: initial_epoch must be an integer >= 0, got {initial_epoch!r}")
        split = float(validation_split)
        if not 0.0 <= split < 1.0:
            raise ValueError(f"{where}: validation_split must be in [0, 1), got {validation_split}")
        if split > 0 and validation_data is not None:
            raise ValueError(f"{where}: give validation_data or validation_split, not both")
        val_batch_size = (max(batch_size, 256) if validation_batch_size is None
                          else _check_batch_size(where, validation_batch_size))

        val_feed = None
        inputs = _inputs_of(x)
        if split > 0:
            if inputs is None:
                raise ValueError(f"{where}: validation_split needs arrays; with an iterable of batches give "
                                 f"validation_data")
            inputs, y = _check_arrays(where, inputs, y)
            n_train = int(math.floor(len(y) * (1.0 - split)))
            if n_train == 0 or n_train == len(y):
                raise ValueError(f"{where}: validation_split={split} of {len(y)} samples leaves "
                                 f"{n_train} for training and {len(y) - n_train} for validation")
            val_feed = self._feed(where, [a[n_train:] for a in inputs], y[n_train:], val_batch_size, False,
                                  validation_steps)
            x, y = [a[:n_train] for a in inputs], y[:n_train]
        elif validation_data is not None:
            vd = validation_data
            if isinstance(vd, (tuple, list)) and len(vd) == 2 and _is_array(vd[1]):  # (x_val, y_val) arrays
                if _inputs_of(vd[0]) is None:
                    raise ValueError(f"{where}: validation_data must be a tuple (x_val, y_val) of arrays or an "
                                     f"iterable of (x, y) batches")
                _check_arrays(where, _inputs_of(vd[0]), vd[1], "x_val", "y_val")
                val_feed = self._feed(where, vd[0], vd[1], val_batch_size, False, validation_steps)
            else:
                val_feed = self._feed(where, vd, None, val_batch_size, False, validation_steps)
        feed = self._feed(where, x, y, batch_size, shuffle, steps_per_epoch)

        cbs = CallbackList(self.callbacks + list(callbacks or []), self)
        has_callbacks = len(cbs) > 0
        dist = self._dist
        if dist is not None:  # callbacks and progress on rank 0 only
            cbs = CallbackList(dist.callbacks(cbs.callbacks), self)
            verbose = verbose if dist.is_root else 0
        progress = ProgressLogger(verbose, epochs, feed.num_batches())
        model, loss, opt = self.model, self.loss, self.optimizer
        train_metrics = self.metrics
        loss_weighting = getattr(loss, "reduction", "mean") != "sum"
        history = {}
        self.history = history
        self.epoch = []
        self.stop_training = False
        self._dtype = self._model_dtype()
        as_dtype = self._as_model_dtype

        backward = getattr(model, "backward_parameters", None) or model.backward
        lock = model.lock() if hasattr(model, "lock") else contextlib.nullcontext()
        # The whole step in one call (Sequential.train_step: fused in C++ where it can, else step by step),
        # unless something must run between backward and the update: MPI, or a callback's on_backward_end.
        one_call = (dist is None and isinstance(model, Sequential) and
                    all(type(c).on_backward_end is Callback.on_backward_end for c in cbs.callbacks))
        try:
            if dist is not None:
                dist.start(feed.num_batches())  # rank 0's weights, optimizer and shuffling state everywhere
            cbs.on_train_begin()
            opt.zero_grad()
            for epoch in range(int(initial_epoch), int(epochs)):
                if self.stop_training:
                    break
                cbs.on_epoch_begin(epoch)
                progress.epoch_begin(epoch)
                for m in train_metrics:
                    m.reset()
                loss_sum, seen = 0.0, 0
                model.train()
                for b, (inputs, yb) in enumerate(feed.epoch()):
                    size = len(yb)
                    if has_callbacks:
                        cbs.on_batch_begin(b, {"size": size, "step": self.global_step})
                    if dist is not None and has_callbacks:
                        dist.sync_control(self)  # rank 0's callbacks may have changed lr
                    if self.schedule is not None:
                        self._set_lr()
                    if not model.training:  # a callback or schedule switched the model to eval
                        model.train()
                    with lock:  # one model from several threads: each step whole (Module.lock)
                        result = None
                        if one_call and size and len(inputs) == 1 and not self.stop_training:
                            xb = as_dtype(inputs[0])
                            result = model.train_step(xb, yb, loss, opt, return_output=True, fallback=False)
                        stepped = result is not None
                        if stepped:  # forward, loss, backward and update done in one call
                            value, out = result
                            if train_metrics:  # out is a buffer the next step overwrites; a metric may keep it
                                out = out.copy()
                        elif size == 0:  # distributed: this rank's share of a small batch is empty
                            dist.zero_grads(model)
                            xb, value = inputs, 0.0
                        elif len(inputs) == 1:
                            xb = as_dtype(inputs[0])
                            out = model(xb)
                        else:
                            xb = tuple(as_dtype(a) for a in inputs)
                            out = model(*xb)
                        if size:
                            value = _scalar_loss(loss, value if stepped else loss(out, yb))
                            for m in train_metrics:  # before backward, which may reuse buffers
                                m.update(out, yb)
                            if dist is not None:  # gradient buckets reduced while backward runs
                                dist.backward(backward, loss.backward(), size)
                            elif not stepped:
                                backward(loss.backward())
                        loss_sum += value * size if loss_weighting else value
                        seen += size
                        if has_callbacks:
                            cbs.on_backward_end(b, {"loss": value, "size": size, "step": self.global_step,
                                                    "x": xb, "y": yb})
                            if dist is not None:
                                dist.sync_control(self)
                            if self.stop_training:
                                break  # a callback stopped training here: this batch takes no step
                        if dist is not None:
                            dist.step(size)  # gradients combined over ranks, weighted by shard size
                        elif not stepped:
                            opt.step()
                        opt.zero_grad()
                    self.global_step += 1
                    progress.batch_end(loss_sum / seen if seen else math.nan)
                    if has_callbacks:
                        cbs.on_batch_end(b, {"loss": value, "size": size, "step": self.global_step - 1,
                                             "lr": self._current_lr()})
                        if dist is not None:
                            dist.sync_control(self)
                        if self.stop_training:
                            break
                if dist is not None:
                    loss_sum, seen = dist.reduce(loss_sum, seen, train_metrics)
                logs = {"loss": loss_sum / seen if seen else math.nan}
                for m in train_metrics:
                    logs[m.name] = float(m.result())
                if val_feed is not None:
                    val = self._evaluate(val_feed, self._val_metrics)
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
                if dist is not None and has_callbacks:
                    dist.sync_control(self)  # early stopping decided on rank 0
            cbs.on_train_end()
            if dist is not None:
                dist.end()  # rank 0's weights (EarlyStopping may have restored its best ones)
        except BaseException as e:
            if dist is not None:
                dist.fail(e)  # the other ranks would wait for this one forever: abort them all
            raise
        finally:
            progress.close()
        return history

    def evaluate(self, x, y=None, batch_size=256, steps=None):
        """{"loss": ..., <metric>: ...} over arrays (x, y) or an iterable of (xb, yb) batches, in eval mode
        (the previous train/eval modes are restored). The loss is the sample-weighted mean of batch losses,
        the metrics are exact counts. steps: how many batches of an endless iterable."""
        where = "Trainer.evaluate"
        batch_size = _check_batch_size(where, batch_size)
        feed = self._feed(where, x, y, batch_size, False, _check_steps(where, "steps", steps))
        return self._evaluate(feed, self._val_metrics)

    def predict(self, x, batch_size=256, steps=None):
        """Model outputs in eval mode, batch by batch, concatenated along the first axis: for arrays (x one
        array or a list of them), or an iterable of batches (xb, (xb,) or (xb, yb); y is ignored)."""
        where = "Trainer.predict"
        batch_size = _check_batch_size(where, batch_size)
        feed = self._feed(where, x, None, batch_size, False, _check_steps(where, "steps", steps), need_y=False,
                          shard=False)
        model = self.model
        modes = _model_modes(model)
        outs = []
        self._dtype = self._model_dtype()
        try:
            model.eval()
            for inputs, _ in feed.epoch():
                outs.append(_copy_outputs(model(*[self._as_model_dtype(a) for a in inputs])))
        finally:
            _restore_modes(model, modes)
        if len(outs) == 1:
            return outs[0]
        if isinstance(outs[0], tuple):  # several outputs: each concatenated
            return tuple(np.concatenate(parts, axis=0) for parts in zip(*outs))
        return np.concatenate(outs, axis=0)


def _copy_outputs(out):
    if isinstance(out, (tuple, list)):
        return tuple(np.array(o, copy=True) for o in out)
    return np.array(out, copy=True)
