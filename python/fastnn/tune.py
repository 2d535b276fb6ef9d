"""Hyper-parameter search: grid search, random search and LIPO, a global optimiser with no
hyper-parameters of its own (King 2017, dlib's find_max_global).

    def build(lr, units):
        model = fnn.nn.Sequential(fnn.nn.Linear(64, units), fnn.nn.ReLU(), fnn.nn.Linear(units, 10))
        return model, fnn.nn.CrossEntropyLoss(), fnn.optim.SGD(model.parameters(), lr=lr)

    search = fnn.tune.RandomSearch(build, {"lr": fnn.tune.loguniform(1e-3, 1), "units": [16, 32, 64]},
                                   n_iter=10, seed=0, monitor="val_accuracy")
    search.fit(x, y, epochs=5, batch_size=32, validation_split=0.2)
    print(search.summary()); search.best_params_, search.best_score_, search.best_model_

build_fn(**params) returns (model, loss, optimizer), (model, loss, optimizer, metrics) or a fastnn.Trainer.
Every trial is trained with Trainer.fit and scored on the validation set (validation_data, or the last
`validation_split` fraction of x/y, as Keras takes it) by `monitor`: "val_<name>" is the model's final
value of <name> on the validation set (Trainer.evaluate after fit, so a callback that restores the best
weights is honoured); any other key is the last epoch's value in the history.

Reproducibility: `seed` fixes the sampled parameters and the training randomness. Every trial starts with
fastnn.manual_seed(s) for one s derived from `seed`, the same for all trials (common random numbers: two
settings are compared with the same initial weights and the same shuffling, so the comparison measures the
hyper-parameters, not the luck of the draw). fastnn's global generator is restored after the search.
"""
import inspect
import itertools
import math
import numbers
import time

import numpy as np

from . import random as _random
from .trainer import Trainer

__all__ = ["GridSearch", "RandomSearch", "LipoSearch", "ParameterGrid", "uniform", "loguniform", "randint",
           "choice", "find_max_global", "find_min_global"]


# -- distributions ----------------------------------------------------------------------------------------
class Distribution:
    """A sampling distribution for RandomSearch: rvs(rng) draws one value with a numpy Generator."""

    def rvs(self, rng):
        raise NotImplementedError


class Uniform(Distribution):
    """Uniform on [low, high]. LipoSearch treats it as a continuous range on a linear scale."""

    def __init__(self, low, high):
        low, high = float(low), float(high)
        if not (math.isfinite(low) and math.isfinite(high) and low <= high):
            raise ValueError(f"uniform: need finite low <= high, got ({low}, {high})")
        self.low, self.high = low, high

    def rvs(self, rng):
        return float(rng.uniform(self.low, self.high))

    def __repr__(self):
        return f"uniform({self.low:g}, {self.high:g})"


class LogUniform(Distribution):
    """log-uniform on [low, high] (0 < low <= high): equal mass per decade. LipoSearch searches log(value)."""

    def __init__(self, low, high):
        low, high = float(low), float(high)
        if not (math.isfinite(low) and math.isfinite(high) and 0 < low <= high):
            raise ValueError(f"loguniform: need finite 0 < low <= high, got ({low}, {high})")
        self.low, self.high = low, high

    def rvs(self, rng):
        return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))

    def __repr__(self):
        return f"loguniform({self.low:g}, {self.high:g})"


class RandInt(Distribution):
    """Integers low..high, both included (as Python's random.randint). LipoSearch: an integer variable."""

    def __init__(self, low, high):
        if not (isinstance(low, numbers.Integral) and isinstance(high, numbers.Integral) and low <= high):
            raise ValueError(f"randint: need integers low <= high, got ({low!r}, {high!r})")
        self.low, self.high = int(low), int(high)

    def rvs(self, rng):
        return int(rng.integers(self.low, self.high + 1))

    def __repr__(self):
        return f"randint({self.low}, {self.high})"


class Choice(Distribution):
    """One of the given options, each equally likely (a plain list means the same to RandomSearch)."""

    def __init__(self, options):
        self.options = list(options)
        if not self.options:
            raise ValueError("choice: needs at least one option")

    def rvs(self, rng):
        return self.options[int(rng.integers(len(self.options)))]

    def __repr__(self):
        return f"choice({self.options!r})"


def uniform(low, high):
    """The uniform distribution on ``[low, high]``, for :class:`RandomSearch` and :class:`LipoSearch`.

    Parameters
    ----------
    low, high : float
        Finite bounds, ``low <= high``.

    Returns
    -------
    Uniform
        A distribution with ``rvs(rng)``.

    Raises
    ------
    ValueError
        Unless the bounds are finite and ``low <= high``.

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> d = fnn.tune.uniform(0.0, 0.5)
    >>> 0.0 <= d.rvs(np.random.default_rng(0)) <= 0.5
    True
    """
    return Uniform(low, high)


def loguniform(low, high):
    """The log-uniform distribution on ``[low, high]``, ``0 < low``: for learning rates and weight decays.

    Parameters
    ----------
    low, high : float
        Finite bounds, ``0 < low <= high``.

    Returns
    -------
    LogUniform
        A distribution with ``rvs(rng)``; :class:`LipoSearch` searches it in log space.

    Raises
    ------
    ValueError
        Unless the bounds are finite and ``0 < low <= high``.

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> draws = [fnn.tune.loguniform(1e-4, 1e-1).rvs(np.random.default_rng(s)) for s in range(200)]
    >>> min(draws) >= 1e-4 and max(draws) <= 1e-1, sum(d < 1e-2 for d in draws) > 100
    (True, True)
    """
    return LogUniform(low, high)


def randint(low, high):
    """Integers ``low`` to ``high`` inclusive, each equally likely.

    Parameters
    ----------
    low, high : int
        The bounds, ``low <= high``.

    Returns
    -------
    RandInt
        A distribution with ``rvs(rng)``.

    Raises
    ------
    ValueError
        If ``low > high``.

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> rng = np.random.default_rng(0)
    >>> sorted({fnn.tune.randint(1, 3).rvs(rng) for _ in range(50)})
    [1, 2, 3]
    """
    return RandInt(low, high)


def choice(options):
    """A uniform choice among ``options``.

    Parameters
    ----------
    options : sequence
        The values.

    Returns
    -------
    Choice
        A distribution with ``rvs(rng)``.

    Raises
    ------
    ValueError
        If ``options`` is empty.

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> fnn.tune.choice(["relu", "tanh"]).rvs(np.random.default_rng(0)) in ("relu", "tanh")
    True
    """
    return Choice(options)


def _python_scalar(value):
    if isinstance(value, np.generic):
        return value.item()
    return value


def _is_sequence(value):
    return isinstance(value, (list, tuple, range, np.ndarray))


def _sample(name, value, rng):
    if isinstance(value, Distribution):
        return _python_scalar(value.rvs(rng))
    rvs = getattr(value, "rvs", None)
    if callable(rvs):
        try:
            takes_random_state = "random_state" in inspect.signature(rvs).parameters
        except (TypeError, ValueError):
            takes_random_state = False
        out = rvs(random_state=rng) if takes_random_state else rvs(rng)  # scipy.stats frozen distributions
        return _python_scalar(np.asarray(out).reshape(-1)[0] if np.ndim(out) else out)
    if _is_sequence(value):
        if len(value) == 0:
            raise ValueError(f"RandomSearch: parameter {name!r} has an empty list of values")
        return _python_scalar(value[int(rng.integers(len(value)))])
    return value  # a fixed value


class ParameterGrid:
    """Every combination of a grid, in order (the last name varies fastest).

    Parameters
    ----------
    param_grid : dict or list of dict
        Name → list of values (a value that is not a list is held fixed), or a list of such dicts searched
        one after the other.

    Raises
    ------
    TypeError
        If it is neither a dict nor a list of dicts.

    Examples
    --------
    >>> import fastnn as fnn
    >>> list(fnn.tune.ParameterGrid({"lr": [0.1, 0.01], "units": [8, 16]}))
    [{'lr': 0.1, 'units': 8}, {'lr': 0.1, 'units': 16}, {'lr': 0.01, 'units': 8}, {'lr': 0.01, 'units': 16}]
    """

    def __init__(self, param_grid):
        grids = [param_grid] if isinstance(param_grid, dict) else list(param_grid)
        if not grids or not all(isinstance(g, dict) for g in grids):
            raise TypeError("GridSearch: param_grid must be a dict name -> list of values, or a list of dicts")
        self.grids = []
        for grid in grids:
            axes = []
            for name, values in grid.items():
                if isinstance(values, Distribution) or callable(getattr(values, "rvs", None)):
                    raise TypeError(f"GridSearch: parameter {name!r} is a distribution ({values!r}); a grid needs "
                                    f"lists of values (use RandomSearch for distributions)")
                values = list(values) if _is_sequence(values) else [values]
                if not values:
                    raise ValueError(f"GridSearch: parameter {name!r} has an empty list of values")
                axes.append((name, [_python_scalar(v) for v in values]))
            self.grids.append(axes)

    def __iter__(self):
        for axes in self.grids:
            names = [name for name, _ in axes]
            for combo in itertools.product(*(values for _, values in axes)):
                yield dict(zip(names, combo))

    def __len__(self):
        return sum(math.prod(len(v) for _, v in axes) for axes in self.grids)


# -- the search loop --------------------------------------------------------------------------------------
def _format(value):
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


class _Search:
    """Shared by GridSearch, RandomSearch and LipoSearch: trial running, scoring, results."""

    def __init__(self, build_fn, *, monitor="val_loss", mode="auto", seed=None, fit_kwargs=None,
                 error_score="raise", verbose=0):
        name = type(self).__name__
        if not callable(build_fn):
            raise TypeError(f"{name}: build_fn must be callable, build_fn(**params) -> (model, loss, optimizer) "
                            f"or a Trainer")
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"{name}: mode must be 'auto', 'min' or 'max', got {mode!r}")
        if not (error_score == "raise" or isinstance(error_score, numbers.Real)):
            raise ValueError(f"{name}: error_score must be 'raise' or a number (e.g. float('nan'))")
        self.build_fn = build_fn
        self.monitor = str(monitor)
        self.mode = ("max" if "acc" in self.monitor else "min") if mode == "auto" else mode
        self.seed = seed
        self.fit_kwargs = dict(fit_kwargs or {})
        self.error_score = error_score
        self.verbose = verbose

    # ordering: better first, non-finite scores last
    def _key(self, score):
        if score is None or not math.isfinite(score):
            return (1, 0.0)
        return (0, -score if self.mode == "max" else score)

    def _as_trainer(self, built, params):
        name = type(self).__name__
        if isinstance(built, Trainer):
            return built
        if isinstance(built, (tuple, list)) and len(built) in (3, 4):
            return Trainer(*built)
        raise TypeError(f"{name}: build_fn({params}) returned {type(built).__name__}; it must return "
                        f"(model, loss, optimizer), (model, loss, optimizer, metrics) or a fastnn.Trainer")

    def _score(self, trainer, history, x_val, y_val, batch_size):
        name = type(self).__name__
        if self.monitor.startswith("val_"):
            result = trainer.evaluate(x_val, y_val, batch_size=max(256, batch_size))
            key = self.monitor[4:]
            if key not in result:
                raise ValueError(f"{name}: monitor {self.monitor!r} is not computed; the trainer reports "
                                 f"{sorted('val_' + k for k in result)} (add the metric to the Trainer's metrics)")
            return float(result[key])
        if self.monitor not in history or not history[self.monitor]:
            raise ValueError(f"{name}: monitor {self.monitor!r} is not in the history (keys {sorted(history)})")
        return float(history[self.monitor][-1])

    def _prepare(self, x, y, validation_data, validation_split, fit_kwargs):
        name = type(self).__name__
        kwargs = {**self.fit_kwargs, **fit_kwargs}
        kwargs.setdefault("verbose", 0)
        # validation settings given in the constructor's fit_kwargs count unless fit() gives its own
        ctor_data, ctor_split = kwargs.pop("validation_data", None), kwargs.pop("validation_split", None)
        if validation_data is None and validation_split is None:
            validation_data, validation_split = ctor_data, ctor_split
        x, y = np.asarray(x), np.asarray(y)
        if len(x) != len(y):
            raise ValueError(f"{name}.fit: x has {len(x)} samples, y has {len(y)}")
        if validation_data is not None:
            if validation_split is not None:
                raise ValueError(f"{name}.fit: give validation_data or validation_split, not both")
            x_val, y_val = (np.asarray(a) for a in validation_data)
        else:
            split = 0.2 if validation_split is None else float(validation_split)
            if not 0.0 < split < 1.0:
                raise ValueError(f"{name}.fit: validation_split must be in (0, 1), got {validation_split}")
            n_train = int(math.floor(len(x) * (1.0 - split)))
            if n_train == 0 or n_train == len(x):
                raise ValueError(f"{name}.fit: validation_split={split} of {len(x)} samples leaves {n_train} for "
                                 f"training and {len(x) - n_train} for validation")
            x, x_val, y, y_val = x[:n_train], x[n_train:], y[:n_train], y[n_train:]
        return x, y, x_val, y_val, kwargs

    def _start(self):
        seed = self.seed
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % (2 ** 63))
        self.seed_ = int(seed)
        sample_ss, train_ss = np.random.SeedSequence(self.seed_).spawn(2)
        self._rng = np.random.default_rng(sample_ss)
        self.trial_seed_ = int(train_ss.generate_state(1, np.uint64)[0] % (2 ** 63))
        self.results_ = []
        self._best = None
        self._best_trainer = None

    def _run_trial(self, params, data):
        x, y, x_val, y_val, kwargs = data
        trial = len(self.results_)
        record = {"trial": trial, "params": dict(params), "score": None, "history": {}, "fit_time": 0.0}
        start = time.perf_counter()
        try:
            _random.manual_seed(self.trial_seed_)
            trainer = self._as_trainer(self.build_fn(**params), params)
            history = trainer.fit(x, y, validation_data=(x_val, y_val), **kwargs)
            record["history"] = {k: list(v) for k, v in history.items()}
            record["score"] = self._score(trainer, history, x_val, y_val, int(kwargs.get("batch_size", 32)))
        except Exception as exc:  # noqa: BLE001 - reported or re-raised as error_score says
            if self.error_score == "raise":
                raise
            trainer = None
            record["score"] = float(self.error_score)
            record["error"] = f"{type(exc).__name__}: {exc}"
        record["fit_time"] = time.perf_counter() - start
        self.results_.append(record)
        if trainer is not None and (self._best is None or self._key(record["score"]) < self._key(self._best["score"])):
            self._best, self._best_trainer = record, trainer
        if self.verbose:
            print(f"{type(self).__name__} trial {trial}: {self.monitor}={_format(record['score'])} "
                  f"{params} ({record['fit_time']:.2f}s)")
        return record["score"]

    def _finish(self):
        order = sorted(range(len(self.results_)), key=lambda i: (self._key(self.results_[i]["score"]), i))
        self.results_ = [self.results_[i] for i in order]
        for rank, record in enumerate(self.results_, 1):
            record["rank"] = rank
        if self._best is None:
            raise RuntimeError(f"{type(self).__name__}: every trial failed; first error: "
                               f"{self.results_[0].get('error') if self.results_ else 'no trials'}")
        self.best_index_ = self._best["trial"]
        self.best_params_ = dict(self._best["params"])
        self.best_score_ = self._best["score"]
        self.best_trainer_ = self._best_trainer
        self.best_model_ = self._best_trainer.model
        del self._best, self._best_trainer, self._rng
        return self

    def _candidates(self):
        raise NotImplementedError

    def fit(self, x, y, validation_data=None, validation_split=None, **fit_kwargs):
        """Runs every trial and returns self. fit_kwargs (epochs, batch_size, shuffle, callbacks, ...) go
        to Trainer.fit, over the constructor's fit_kwargs. Without validation_data the last
        validation_split (default 0.2) of x/y is held out, before any shuffling, as Keras does."""
        data = self._prepare(x, y, validation_data, validation_split, fit_kwargs)
        saved = _random.generator()
        try:
            self._start()
            self._search(data)
        finally:
            _random._generator = saved
        return self._finish()

    def _search(self, data):
        for params in self._candidates():
            self._run_trial(params, data)

    # -- reporting -----------------------------------------------------------------------------------------
    def summary(self):
        """The results as a text table, best first: rank, score, fit time and one column per parameter."""
        results = getattr(self, "results_", None)
        if results is None:
            return f"{type(self).__name__}: not fitted"
        names = []
        for r in results:
            names += [n for n in r["params"] if n not in names]
        header = ["rank", self.monitor] + names + ["time"]
        rows = [[str(r.get("rank", "")), _format(r["score"])]
                + [_format(r["params"].get(n, "")) for n in names] + [f"{r['fit_time']:.2f}s"] for r in results]
        widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
        lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
        best = "max" if self.mode == "max" else "min"
        return f"{type(self).__name__}: {len(results)} trials, {self.monitor} ({best} is best)\n" + "\n".join(lines)

    def __repr__(self):
        return f"{type(self).__name__}(monitor={self.monitor!r}, mode={self.mode!r}, seed={self.seed!r})"


class GridSearch(_Search):
    """Train one model per combination of a grid and rank them by a validation score.

    After ``fit``: ``results_`` (list of dicts, best first: rank, trial, params, score, history, fit_time and
    error when one was raised), ``best_params_``, ``best_score_``, ``best_model_``, ``best_trainer_``,
    ``best_index_``; ``summary()`` gives a table. ``fit(x, y, validation_data=None, validation_split=None,
    **fit_kwargs)`` holds out the last ``validation_split`` (0.2 by default) of the arrays when no validation
    data is given, as Keras does.

    Parameters
    ----------
    build_fn : callable
        ``build_fn(**params)`` returns ``(model, loss, optimizer)``, ``(model, loss, optimizer, metrics)`` or a
        :class:`fastnn.Trainer`.
    param_grid : dict or list of dict
        Name → list of values, or a list of such dicts (see :class:`ParameterGrid`).
    monitor : str, default "val_loss"
        The score: ``"val_<name>"`` is the final value of ``<name>`` on the validation set
        (``Trainer.evaluate`` after fit, so a callback restoring the best weights is honoured); any other key is
        the last epoch's value in the history.
    mode : {"auto", "min", "max"}, default "auto"
        "auto" maximises monitors whose name contains "acc" and minimises the rest.
    seed : int or None, default None
        Fixes the sampled parameters and the training randomness: every trial starts from the same
        :func:`fastnn.manual_seed` (common random numbers), so trials differ only by their parameters.
    fit_kwargs : dict, optional
        Arguments for every ``Trainer.fit`` (epochs, batch_size, callbacks...); ``fit``'s own override them.
    error_score : "raise" or float, default "raise"
        Raise when a trial's build or fit raises, or give it this score (e.g. ``float("nan")``).
    verbose : int, default 0
        1 prints a line per trial.

    Raises
    ------
    TypeError
        If ``build_fn`` is not callable, or the search space has the wrong type.
    ValueError
        For a bad ``mode``, ``error_score`` or budget.

    See Also
    --------
    RandomSearch, LipoSearch

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((120, 4)).astype(np.float32); y = (x[:, 0] > 0).astype(np.int64)
    >>> def build(lr, units=8):
    ...     model = fnn.nn.Sequential(fnn.nn.Linear(4, units), fnn.nn.ReLU(), fnn.nn.Linear(units, 2))
    ...     return model, fnn.nn.CrossEntropyLoss(), fnn.optim.SGD(model.parameters(), lr=lr)
    >>> search = fnn.tune.GridSearch(build, {"lr": [0.01, 0.3]}, monitor="val_accuracy", seed=0)
    >>> search = search.fit(x, y, epochs=3, batch_size=16)
    >>> len(search.results_), search.best_params_ in ({"lr": 0.01}, {"lr": 0.3})
    (2, True)
    """

    def __init__(self, build_fn, param_grid, *, monitor="val_loss", mode="auto", seed=None, fit_kwargs=None,
                 error_score="raise", verbose=0):
        super().__init__(build_fn, monitor=monitor, mode=mode, seed=seed, fit_kwargs=fit_kwargs,
                         error_score=error_score, verbose=verbose)
        self.param_grid = ParameterGrid(param_grid)

    def _candidates(self):
        return list(self.param_grid)


class RandomSearch(_Search):
    """``n_iter`` trials with parameters drawn at random, ranked by a validation score.

    Each value of ``param_distributions`` is a list (uniform choice), a distribution (:func:`uniform`,
    :func:`loguniform`, :func:`randint`, :func:`choice`, any object with ``rvs(rng)``, a scipy.stats frozen
    distribution) or a fixed value. When every value is a list, distinct combinations are drawn without
    replacement.

    After ``fit``: ``results_`` (list of dicts, best first: rank, trial, params, score, history, fit_time and
    error when one was raised), ``best_params_``, ``best_score_``, ``best_model_``, ``best_trainer_``,
    ``best_index_``; ``summary()`` gives a table. ``fit(x, y, validation_data=None, validation_split=None,
    **fit_kwargs)`` holds out the last ``validation_split`` (0.2 by default) of the arrays when no validation
    data is given, as Keras does.

    Parameters
    ----------
    build_fn : callable
        ``build_fn(**params)`` returns ``(model, loss, optimizer)``, ``(model, loss, optimizer, metrics)`` or a
        :class:`fastnn.Trainer`.
    param_distributions : dict
        Name → list, distribution or fixed value.
    n_iter : int, default 10
        Trials; >= 1.
    monitor : str, default "val_loss"
        The score: ``"val_<name>"`` is the final value of ``<name>`` on the validation set
        (``Trainer.evaluate`` after fit, so a callback restoring the best weights is honoured); any other key is
        the last epoch's value in the history.
    mode : {"auto", "min", "max"}, default "auto"
        "auto" maximises monitors whose name contains "acc" and minimises the rest.
    seed : int or None, default None
        Fixes the sampled parameters and the training randomness: every trial starts from the same
        :func:`fastnn.manual_seed` (common random numbers), so trials differ only by their parameters.
    fit_kwargs : dict, optional
        Arguments for every ``Trainer.fit`` (epochs, batch_size, callbacks...); ``fit``'s own override them.
    error_score : "raise" or float, default "raise"
        Raise when a trial's build or fit raises, or give it this score (e.g. ``float("nan")``).
    verbose : int, default 0
        1 prints a line per trial.

    Raises
    ------
    TypeError
        If ``build_fn`` is not callable, or the search space has the wrong type.
    ValueError
        For a bad ``mode``, ``error_score`` or budget.

    See Also
    --------
    GridSearch, LipoSearch

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((120, 4)).astype(np.float32); y = (x[:, 0] > 0).astype(np.int64)
    >>> def build(lr, units=8):
    ...     model = fnn.nn.Sequential(fnn.nn.Linear(4, units), fnn.nn.ReLU(), fnn.nn.Linear(units, 2))
    ...     return model, fnn.nn.CrossEntropyLoss(), fnn.optim.SGD(model.parameters(), lr=lr)
    >>> search = fnn.tune.RandomSearch(build, {"lr": fnn.tune.loguniform(1e-3, 0.5), "units": [4, 8]},
    ...                                n_iter=3, seed=0)
    >>> len(search.fit(x, y, epochs=2).results_)
    3
    """

    def __init__(self, build_fn, param_distributions, n_iter=10, seed=None, *, monitor="val_loss", mode="auto",
                 fit_kwargs=None, error_score="raise", verbose=0):
        super().__init__(build_fn, monitor=monitor, mode=mode, seed=seed, fit_kwargs=fit_kwargs,
                         error_score=error_score, verbose=verbose)
        if not isinstance(param_distributions, dict):
            raise TypeError("RandomSearch: param_distributions must be a dict name -> list or distribution")
        if isinstance(n_iter, bool) or not isinstance(n_iter, numbers.Integral) or n_iter < 1:
            raise ValueError(f"RandomSearch: n_iter must be an integer >= 1, got {n_iter!r}")
        self.param_distributions = dict(param_distributions)
        self.n_iter = int(n_iter)

    def _candidates(self):
        rng = self._rng
        space = self.param_distributions
        if all(_is_sequence(v) for v in space.values()):
            grid = list(ParameterGrid(space))
            picks = rng.choice(len(grid), size=min(self.n_iter, len(grid)), replace=False)
            return [grid[int(i)] for i in picks]
        return [{name: _sample(name, value, rng) for name, value in space.items()} for _ in range(self.n_iter)]


class LipoSearch(_Search):
    """Hyper-parameter search with :func:`find_max_global` (LIPO + trust region): no settings besides the budget.

    ``param_space`` values: :func:`uniform` or a tuple ``(a, b)`` (continuous, linear scale), :func:`loguniform`
    (searched in log space), :func:`randint` (integers), or a fixed value. Lists and choices cannot be searched
    by LIPO (use :class:`GridSearch` or :class:`RandomSearch`).

    After ``fit``: ``results_`` (list of dicts, best first: rank, trial, params, score, history, fit_time and
    error when one was raised), ``best_params_``, ``best_score_``, ``best_model_``, ``best_trainer_``,
    ``best_index_``; ``summary()`` gives a table. ``fit(x, y, validation_data=None, validation_split=None,
    **fit_kwargs)`` holds out the last ``validation_split`` (0.2 by default) of the arrays when no validation
    data is given, as Keras does.

    Parameters
    ----------
    build_fn : callable
        ``build_fn(**params)`` returns ``(model, loss, optimizer)``, ``(model, loss, optimizer, metrics)`` or a
        :class:`fastnn.Trainer`.
    param_space : dict
        Name → range or fixed value.
    n_iter : int, default 20
        Trials; >= 1.
    monitor : str, default "val_loss"
        The score: ``"val_<name>"`` is the final value of ``<name>`` on the validation set
        (``Trainer.evaluate`` after fit, so a callback restoring the best weights is honoured); any other key is
        the last epoch's value in the history.
    mode : {"auto", "min", "max"}, default "auto"
        "auto" maximises monitors whose name contains "acc" and minimises the rest.
    seed : int or None, default None
        Fixes the sampled parameters and the training randomness: every trial starts from the same
        :func:`fastnn.manual_seed` (common random numbers), so trials differ only by their parameters.
    fit_kwargs : dict, optional
        Arguments for every ``Trainer.fit`` (epochs, batch_size, callbacks...); ``fit``'s own override them.
    error_score : "raise" or float, default "raise"
        Raise when a trial's build or fit raises, or give it this score (e.g. ``float("nan")``).
    verbose : int, default 0
        1 prints a line per trial.

    Raises
    ------
    TypeError
        If ``build_fn`` is not callable, or the search space has the wrong type.
    ValueError
        For a bad ``mode``, ``error_score`` or budget.

    See Also
    --------
    find_max_global

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((120, 4)).astype(np.float32); y = (x[:, 0] > 0).astype(np.int64)
    >>> def build(lr, units=8):
    ...     model = fnn.nn.Sequential(fnn.nn.Linear(4, units), fnn.nn.ReLU(), fnn.nn.Linear(units, 2))
    ...     return model, fnn.nn.CrossEntropyLoss(), fnn.optim.SGD(model.parameters(), lr=lr)
    >>> search = fnn.tune.LipoSearch(build, {"lr": fnn.tune.loguniform(1e-3, 0.5)}, n_iter=3, seed=0)
    >>> 1e-3 <= search.fit(x, y, epochs=2).best_params_["lr"] <= 0.5
    True
    """

    def __init__(self, build_fn, param_space, n_iter=20, seed=None, *, monitor="val_loss", mode="auto",
                 fit_kwargs=None, error_score="raise", verbose=0):
        super().__init__(build_fn, monitor=monitor, mode=mode, seed=seed, fit_kwargs=fit_kwargs,
                         error_score=error_score, verbose=verbose)
        if isinstance(n_iter, bool) or not isinstance(n_iter, numbers.Integral) or n_iter < 1:
            raise ValueError(f"LipoSearch: n_iter must be an integer >= 1, got {n_iter!r}")
        self.n_iter = int(n_iter)
        self.param_space = dict(param_space)
        self._dims, self._fixed = [], {}
        for name, value in self.param_space.items():
            if isinstance(value, LogUniform):
                self._dims.append((name, "log", math.log(value.low), math.log(value.high)))
            elif isinstance(value, Uniform):
                self._dims.append((name, "lin", value.low, value.high))
            elif isinstance(value, RandInt):
                self._dims.append((name, "int", value.low, value.high))
            elif (isinstance(value, tuple) and len(value) == 2
                  and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value)):
                u = Uniform(*value)
                self._dims.append((name, "lin", u.low, u.high))
            elif isinstance(value, (list, Choice)) or callable(getattr(value, "rvs", None)):
                raise TypeError(f"LipoSearch: parameter {name!r} ({value!r}) is not a range; give tune.uniform, "
                                f"tune.loguniform, tune.randint, a tuple (low, high) or a fixed value")
            else:
                self._fixed[name] = value
        if not self._dims:
            raise ValueError("LipoSearch: param_space has no range to search")

    def _params(self, x):
        params = {}
        for value, (name, kind, _, _) in zip(x, self._dims):
            params[name] = math.exp(value) if kind == "log" else int(round(value)) if kind == "int" else float(value)
        params.update(self._fixed)
        return {name: params[name] for name in self.param_space}

    def _search(self, data):
        sign = 1.0 if self.mode == "max" else -1.0

        def objective(x):
            score = self._run_trial(self._params(x), data)
            return sign * score if score is not None else float("nan")

        lower = [d[2] for d in self._dims]
        upper = [d[3] for d in self._dims]
        integer = [d[1] == "int" for d in self._dims]
        find_max_global(objective, lower, upper, self.n_iter, seed=self._rng, is_integer=integer)


# -- LIPO: parameter-free global optimisation ---------------------------------------------------------------
def _trust_region_step(g, hess, radius):
    """argmax_s g·s + ½ sᵀ H s subject to ‖s‖ <= radius (Moré–Sorensen via an eigendecomposition)."""
    b = -0.5 * (hess + hess.T)  # minimise gb·s + ½ sᵀ B s with gb = −g
    lam, q = np.linalg.eigh(b)
    a = q.T @ (-g)

    def step(shift):
        return -q @ (a / (lam + shift))

    if lam[0] > 0:
        s = step(0.0)
        if np.linalg.norm(s) <= radius:
            return s
    lo = max(0.0, -lam[0]) + 1e-12 * (1.0 + np.max(np.abs(lam)))
    hi = max(0.0, -lam[0]) + np.linalg.norm(a) / radius + 1e-12 * (1.0 + np.max(np.abs(lam)))
    if np.linalg.norm(step(lo)) <= radius:  # the hard case: move along the lowest curvature to the boundary
        s = step(lo)
        tau = math.sqrt(max(radius * radius - float(s @ s), 0.0))
        direction = q[:, 0]
        return s + (tau if float(direction @ g) >= 0 else -tau) * direction
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if np.linalg.norm(step(mid)) > radius:
            lo = mid
        else:
            hi = mid
    return step(hi)


class _Lipo:
    """State of one find_max_global run in the unit cube."""

    CANDIDATES = 5000         # random points scored by the upper bound per LIPO step
    PURE_RANDOM = 0.02        # probability of a plain random point instead (dlib's default)

    def __init__(self, f, lower, upper, is_integer, rng, scalar):
        self.f, self.lower, self.upper, self.integer = f, lower, upper, is_integer
        self.span = upper - lower
        self.rng, self.scalar = rng, scalar
        self.d = len(lower)
        self.u = np.zeros((0, self.d))
        self.y = np.zeros(0)
        self.k = 0.0
        self.radius = 0.0     # trust radius in the unit cube; 0: set from the fitted points' spread
        self.predicted = 0.0  # improvement the last trust-region model promised

    def to_x(self, u):
        x = self.lower + np.clip(u, 0.0, 1.0) * self.span
        if self.integer.any():
            x = np.where(self.integer, np.round(x), x)
        return np.clip(x, self.lower, self.upper)

    def to_u(self, x):
        safe = np.where(self.span > 0, self.span, 1.0)
        return np.where(self.span > 0, (x - self.lower) / safe, 0.0)

    def snap(self, u):
        return self.to_u(self.to_x(u))

    def model_y(self):
        """Values for the models: non-finite results count as the worst finite value seen."""
        finite = np.isfinite(self.y)
        if finite.all():
            return self.y
        worst = self.y[finite].min() if finite.any() else 0.0
        return np.where(finite, self.y, worst)

    def evaluate(self, u):
        x = self.to_x(u)
        value = self.f(float(x[0]) if self.scalar else x.copy())
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"find_max_global: f must return a number, got {type(value).__name__}") from None
        u = self.to_u(x)
        if len(self.y):  # update the Lipschitz estimate with the slopes to every earlier point
            y_old = self.model_y()
            dist = np.linalg.norm(self.u - u, axis=1)
            if math.isfinite(value):
                ok = dist > 0
                if ok.any():
                    self.k = max(self.k, float(np.max(np.abs(y_old[ok] - value) / dist[ok])))
        self.u = np.vstack([self.u, u])
        self.y = np.append(self.y, value)

    def distances(self, cand):
        """‖cand_a − u_i‖ for every candidate a and evaluated point i."""
        sq = np.zeros((len(cand), len(self.u)))
        for j in range(self.d):
            diff = cand[:, j, None] - self.u[None, :, j]
            sq += diff * diff
        return np.sqrt(sq, out=sq)

    def lipo_point(self):
        """The random candidate with the largest upper bound U(u) = min_i y_i + k·‖u − u_i‖."""
        rng = self.rng
        if self.k <= 0 or rng.random() < self.PURE_RANDOM:
            cand = self.snap(rng.random((self.CANDIDATES, self.d)))
            dist = self.distances(cand).min(axis=1)
            fresh = np.flatnonzero(dist > 0)
            if fresh.size == 0:
                return None
            return cand[fresh[0]]
        cand = self.snap(rng.random((self.CANDIDATES, self.d)))
        dist = self.distances(cand)
        bound = np.min(self.model_y()[None, :] + self.k * dist, axis=1)
        bound[dist.min(axis=1) <= 0] = -np.inf  # already evaluated
        best = int(np.argmax(bound))
        if not np.isfinite(bound[best]):
            return None
        if bound[best] <= np.max(self.model_y()):  # nothing promises an improvement: explore at random
            fresh = np.flatnonzero(dist.min(axis=1) > 0)
            return cand[fresh[0]]
        return cand[best]

    def trust_region_point(self):
        """Maximiser of a quadratic model fitted to the points nearest the best one, within the distance
        those points span; None when there are too few points or the model promises no improvement."""
        d = self.d
        n_coef = d + d * (d + 1) // 2
        if len(self.y) <= d + 1:
            return None
        y = self.model_y()
        best = int(np.argmax(y))
        u0, y0 = self.u[best], y[best]
        dist = np.linalg.norm(self.u - u0, axis=1)
        order = np.argsort(dist, kind="stable")
        order = order[dist[order] > 0]
        iu = np.triu_indices(d)
        # The model interpolates the best point and its nearest neighbours, as many as it has coefficients
        # (the minimum-norm fit when they do not determine it: lstsq on a rank-deficient design).
        near = order[:n_coef]
        if len(near) < d + 1:
            return None
        scale = float(dist[near].max())
        if self.radius <= 0:  # (re)start from the size of the neighbourhood, a little smaller
            self.radius = 0.95 * scale
        s = (self.u[near] - u0) / scale  # scaled to the unit ball for conditioning
        quad = (s[:, :, None] * s[:, None, :])[:, iu[0], iu[1]] * np.where(iu[0] == iu[1], 0.5, 1.0)
        design = np.hstack([s, quad])
        coef, *_ = np.linalg.lstsq(design, y[near] - y0, rcond=1e-10)
        if not np.all(np.isfinite(coef)):
            return None
        g = coef[:d]
        h = np.zeros((d, d))
        h[iu] = coef[d:]
        h = h + np.triu(h, 1).T
        step = _trust_region_step(g, h, self.radius / scale)

        def predicted(v):
            return float(g @ v + 0.5 * v @ h @ v)

        u_new = self.snap(u0 + step * scale)
        self.predicted = predicted((u_new - u0) / scale)
        if self.predicted <= 1e-12 * (abs(y0) + 1.0) or np.linalg.norm(self.u - u_new, axis=1).min() <= 1e-12:
            return None
        return u_new


def find_max_global(f, lower, upper, max_evals, seed=None, is_integer=None):
    """Maximise a function over a box with at most ``max_evals`` calls, with no settings to tune.

    LIPO (Malherbe & Vayatis 2017, as in King's dlib ``find_max_global``): the function is assumed
    Lipschitz with a constant estimated from the data, giving an upper bound
    ``U(x) = min_i f(x_i) + k·‖x − x_i‖``; a LIPO step evaluates the random candidate with the largest bound.
    Every other step is a trust-region step on a quadratic model around the best point, so LIPO finds the
    right basin and the quadratic steps refine the peak. Non-finite values count as the worst value seen.

    Parameters
    ----------
    f : callable
        ``f(x) -> float``; ``x`` is a float when the bounds are scalars, else a 1-D float64 array.
    lower, upper : float or array_like
        The box.
    max_evals : int
        Calls of ``f``.
    seed : int, numpy.random.Generator or None, default None
        Randomness of the candidates.
    is_integer : sequence of bool, optional
        Per coordinate: round it to integers.

    Returns
    -------
    x_best : float or ndarray
        The best point found.
    f_best : float
        ``f(x_best)``.

    Raises
    ------
    ValueError
        For bounds of different shapes, non-finite bounds, ``lower > upper``, or ``max_evals < 1``.

    See Also
    --------
    find_min_global, LipoSearch

    Examples
    --------
    >>> import fastnn as fnn
    >>> x, fx = fnn.tune.find_max_global(lambda v: -(v - 0.3) ** 2, 0.0, 1.0, max_evals=30, seed=0)
    >>> round(x, 3), fx > -1e-6
    (0.3, True)
    """
    scalar = np.ndim(lower) == 0 and np.ndim(upper) == 0
    lower = np.atleast_1d(np.asarray(lower, dtype=np.float64)).copy()
    upper = np.atleast_1d(np.asarray(upper, dtype=np.float64)).copy()
    if lower.ndim != 1 or lower.shape != upper.shape or lower.size == 0:
        raise ValueError(f"find_max_global: lower and upper must be scalars or 1-D of the same length, got "
                         f"shapes {lower.shape} and {upper.shape}")
    if not (np.all(np.isfinite(lower)) and np.all(np.isfinite(upper)) and np.all(lower <= upper)):
        raise ValueError(f"find_max_global: need finite bounds with lower <= upper, got {lower} and {upper}")
    if isinstance(max_evals, bool) or not isinstance(max_evals, numbers.Integral) or max_evals < 1:
        raise ValueError(f"find_max_global: max_evals must be an integer >= 1, got {max_evals!r}")
    integer = (np.zeros(lower.size, bool) if is_integer is None
               else np.broadcast_to(np.asarray(is_integer, dtype=bool), lower.shape).copy())
    if integer.any():
        lower = np.where(integer, np.ceil(lower), lower)
        upper = np.where(integer, np.floor(upper), upper)
        if np.any(lower > upper):
            raise ValueError("find_max_global: an integer coordinate's range holds no integer")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    state = _Lipo(f, lower, upper, integer, rng, scalar)
    trust_turn = False
    while len(state.y) < max_evals:
        u, tried_trust = None, False
        if len(state.y) == 0:  # the centre first: bounds are often centred on a good guess
            u = state.snap(np.full(state.d, 0.5))
        elif len(state.y) < max(3, state.d):
            u = state.snap(rng.random(state.d))
            if np.linalg.norm(state.u - u, axis=1).min() <= 0:
                u = state.lipo_point()
        else:
            tried_trust = trust_turn
            if trust_turn:
                u = state.trust_region_point()
            if u is None:
                tried_trust = False
                u = state.lipo_point()
            trust_turn = not trust_turn
        if u is None:  # every point of an integer grid has been evaluated
            break
        best_before = np.max(state.model_y()) if len(state.y) else -np.inf
        best_u = state.u[int(np.argmax(state.model_y()))] if len(state.y) else None
        state.evaluate(u)
        if tried_trust:  # trust-region control by the ratio of actual to predicted improvement
            rho = (state.model_y()[-1] - best_before) / abs(state.predicted)
            if rho < 0.25:
                state.radius *= 0.5
            elif rho > 0.75:
                state.radius *= 2.0
        elif best_u is not None and state.y[-1] > best_before and np.linalg.norm(state.u[-1] - best_u) > state.radius:
            state.radius = 0.0  # a far better point: the local model starts afresh there
    y = state.model_y()
    finite = np.isfinite(state.y)
    best = int(np.argmax(np.where(finite, y, -np.inf))) if finite.any() else 0
    x = state.to_x(state.u[best])
    return (float(x[0]) if scalar else x), float(state.y[best])


def find_min_global(f, lower, upper, max_evals, seed=None, is_integer=None):
    """Minimise a function over a box: :func:`find_max_global` on ``-f``.

    Parameters
    ----------
    f : callable
        ``f(x) -> float``.
    lower, upper : float or array_like
        The box.
    max_evals : int
        Calls of ``f``.
    seed : int, numpy.random.Generator or None, default None
        Randomness of the candidates.
    is_integer : sequence of bool, optional
        Per coordinate: round it to integers.

    Returns
    -------
    x_best : float or ndarray
        The best point found.
    f_best : float
        ``f(x_best)``.

    See Also
    --------
    find_max_global

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> x, fx = fnn.tune.find_min_global(lambda v: float(np.sum((v - [1.0, -2.0]) ** 2)), [-5, -5], [5, 5],
    ...                                  max_evals=60, seed=0)
    >>> np.round(x, 2), fx < 1e-4
    (array([ 1., -2.]), True)
    """
    x, value = find_max_global(lambda v: -float(f(v)), lower, upper, max_evals, seed=seed, is_integer=is_integer)
    return x, -value
