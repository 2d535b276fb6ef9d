"""NeuralNetBase: scikit-learn's estimator contract around a fastnn model trained by fastnn.Trainer.

Subclasses say how to build the model (`_build_module`), which loss to train (`_make_loss`) and how targets
are encoded and outputs decoded (the task mixins of `_tasks.py`). Everything else is here: parameters
(with skorch-style nested `module__*`, `optimizer__*`, `loss__*` ones), input validation, seeding, fit /
partial_fit / warm_start, batched prediction, pickling (state as plain arrays and safetensors bytes) and tags.
"""
import copy
import numbers

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_array, check_is_fitted, validate_data
from threadpoolctl import threadpool_limits

from .. import optim
from ..trainer import Trainer
from ._training import Objective, seeded_generator, using_generator

__all__ = ["NeuralNetBase"]

_OPTIMIZERS = {"adam": optim.Adam, "adamw": optim.AdamW, "sgd": optim.SGD, "rmsprop": optim.RMSprop,
               "adagrad": optim.Adagrad, "rprop": optim.Rprop}
_DTYPES = {"float32": np.float32, "float64": np.float64}
_PREDICT_ROWS = 4096  # rows per forward call at prediction: big GEMMs, bounded memory
# fastnn's dense kernels round a block of 8 rows the same way wherever it sits, but rows of a smaller remainder
# differently: predictions pad each call to whole blocks, so a sample's prediction never depends on the
# other samples in the call (scikit-learn checks this; a service predicting one row at a time relies on it).
_ROW_BLOCK = 8


def canonical(a):
    """`a` with numpy's own dtype object. fastnn's kernels compare dtypes by identity, and arrays that went
    through pickle (joblib's worker processes, memmapped data) carry an equal but distinct one."""
    if a.dtype.kind not in "biuf":
        return a
    dtype = np.dtype(a.dtype.name)
    return a if a.dtype is dtype else a.view(dtype)


def resolve_optimizer(spec, owner):
    """The optimizer class for `optimizer`: a name ("adam", "adamw", "sgd", "rmsprop", "adagrad", "rprop") or a
    subclass of fastnn.optim.Optimizer."""
    if isinstance(spec, str) and spec.lower() in _OPTIMIZERS:
        return _OPTIMIZERS[spec.lower()]
    if isinstance(spec, type) and issubclass(spec, optim.Optimizer):
        if issubclass(spec, optim.LBFGS):
            raise ValueError(f"{owner}: L-BFGS needs a closure per step, which the Trainer does not give; use "
                             f"one of {sorted(_OPTIMIZERS)}")
        return spec
    raise ValueError(f"{owner}: optimizer must be one of {sorted(_OPTIMIZERS)} or a fastnn.optim.Optimizer "
                     f"subclass, got {spec!r}")


def _positive_int(owner, name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{owner}: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _boolean(owner, name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{owner}: {name} must be True or False, got {value!r}")
    return bool(value)


def _nonnegative(owner, name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
        raise ValueError(f"{owner}: {name} must be a number >= 0, got {value!r}")
    return float(value)


class NeuralNetBase(BaseEstimator):
    """Shared machinery; see MLPClassifier, MLPRegressor, NeuralNetClassifier and NeuralNetRegressor."""

    _nested_prefixes = ("optimizer__",)
    _accepts_nd = False  # inputs of more than two dimensions (images, sequences)

    # -- parameters ---------------------------------------------------------------------------------------
    def _set_nested(self, kwargs):
        """Keep the nested parameters (`optimizer__lr`, ...) given to __init__, as given (clone checks identity)."""
        bad = [k for k in kwargs if not (k.startswith(self._nested_prefixes) and k.partition("__")[2])]
        if bad:
            raise TypeError(f"{type(self).__name__}.__init__() got unexpected keyword argument(s) {bad}; "
                            f"nested parameters start with {' or '.join(self._nested_prefixes)}")
        self._nested = dict(kwargs)

    def get_params(self, deep=True):
        """Parameters of this estimator, the nested `prefix__name` ones included."""
        params = super().get_params(deep=deep)
        params.update(self.__dict__.get("_nested", {}))
        return params

    def set_params(self, **params):
        """Set parameters, nested ones (`module__width=64`, `optimizer__momentum=0.9`) included."""
        nested = {k: v for k, v in params.items() if k.startswith(self._nested_prefixes)}
        empty = [k for k in nested if not k.partition("__")[2]]
        if empty:
            raise ValueError(f"{type(self).__name__}: invalid parameter name(s) {empty}")
        plain = {k: v for k, v in params.items() if k not in nested}
        if plain:
            super().set_params(**plain)
        if nested:
            self._nested = {**self.__dict__.get("_nested", {}), **nested}
        return self

    def _nested_for(self, prefix):
        n = len(prefix) + 2
        return {k[n:]: v for k, v in self.__dict__.get("_nested", {}).items() if k.startswith(prefix + "__")}

    # -- checks of the hyper-parameters (at fit, as scikit-learn does: __init__ only stores them) ---------
    def _dtype(self):
        spec = self.dtype
        if isinstance(spec, str) and spec in _DTYPES:
            return np.dtype(_DTYPES[spec])
        if isinstance(spec, (type, np.dtype)) and spec in (np.float32, np.float64):
            return np.dtype(spec)
        raise ValueError(f"{type(self).__name__}: dtype must be 'float32' or 'float64', got {spec!r}")

    def _model_dtype(self, reset):
        """The dtype data is converted to: the dtype parameter for a new model, the fitted model's otherwise
        (a model keeps the precision it was built with; set dtype and fit afresh to change it)."""
        if reset:
            return self._dtype()
        return self.optimizer_.param_groups[0]["params"][0].data.dtype  # module_.dtype walks every layer

    def _check_common(self):
        owner = type(self).__name__
        _positive_int(owner, "max_epochs", self.max_epochs, 0)
        _nonnegative(owner, "lr", self.lr)
        _boolean(owner, "shuffle", self.shuffle)
        _boolean(owner, "warm_start", self.warm_start)
        if self.callbacks is not None:
            from ..callbacks import Callback
            if not (isinstance(self.callbacks, (list, tuple)) and all(isinstance(c, Callback) for c in self.callbacks)):
                raise ValueError(f"{owner}: callbacks must be a list of fastnn.callbacks.Callback objects, got "
                                 f"{self.callbacks!r}")
        verbose = self.verbose
        if isinstance(verbose, bool):
            verbose = int(verbose)
        if not (isinstance(verbose, numbers.Integral) and 0 <= verbose <= 2):
            raise ValueError(f"{owner}: verbose must be 0, 1, 2 or a bool, got {self.verbose!r}")
        resolve_optimizer(self.optimizer, owner)
        self._dtype()
        self._check_hyperparameters()

    def _check_hyperparameters(self):
        """Subclass checks (hidden_layer_sizes, module, ...); raise ValueError/TypeError naming the parameter."""

    def _batch_size(self, n):
        spec = self.batch_size
        if isinstance(spec, str) and spec == "auto":
            return min(200, n)
        return min(_positive_int(type(self).__name__, "batch_size", spec), n)

    # -- building -------------------------------------------------------------------------------------------
    def _build_optimizer(self, module):
        cls = resolve_optimizer(self.optimizer, type(self).__name__)
        kwargs = {**self._optimizer_defaults(cls), **self._nested_for("optimizer")}
        kwargs["lr"] = float(self.lr)
        try:
            return cls(module.parameters(), **kwargs)
        except TypeError as e:
            raise TypeError(f"{type(self).__name__}: cannot build {cls.__name__} with {kwargs}: {e}") from None

    def _optimizer_defaults(self, cls):
        return {}

    def _make_objective(self, weighted):
        loss = self._make_loss()
        return Objective(loss, self.module_, weighted=weighted, labels=self._task == "multiclass",
                         scale=self._loss_scale(), alpha=self._alpha(), weights=self._penalized_parameters(),
                         decay=self._decay_group())

    def _loss_scale(self):
        return 1.0

    def _alpha(self):
        return 0.0

    def _penalized_parameters(self):
        return ()

    def _decay_group(self):
        return None

    # -- fitting ----------------------------------------------------------------------------------------------
    def fit(self, X, y, sample_weight=None):
        """Train on (X, y) for max_epochs epochs (fewer if stopped early) and return self.

        With warm_start=True and a fitted estimator, training continues from the current weights and
        optimizer state. sample_weight: per-sample weights; each batch's loss is their weighted mean."""
        return self._fit(X, y, sample_weight, incremental=False)

    def _fit(self, X, y, sample_weight, incremental, classes=None):
        self._check_common()
        if incremental and getattr(self, "early_stopping", False):
            raise ValueError(f"{type(self).__name__}: partial_fit does not support early_stopping=True")
        fitted = self.__sklearn_is_fitted__()
        reset = not fitted or (not incremental and not self.warm_start)
        X, y = self._validate_Xy(X, y, reset)
        targets, n_outputs = self._encode_targets(y, reset, classes)
        weights = _check_sample_weight(sample_weight, len(X))
        if reset:
            self._initialize(n_outputs)
        self._train(X, targets, weights, epochs=1 if incremental else int(self.max_epochs))
        return self

    def _validate_Xy(self, X, y, reset):
        X, y = validate_data(self, X, y, reset=reset, accept_sparse=False, dtype=self._model_dtype(reset), order="C",
                             allow_nd=self._accepts_nd, multi_output=True, y_numeric=self._task_kind == "regression")
        self._check_input_shape(X, reset)
        return canonical(X), canonical(y)

    def _check_input_shape(self, X, reset):
        if reset:
            self.input_shape_ = tuple(int(s) for s in X.shape[1:])
        elif tuple(X.shape[1:]) != tuple(self.input_shape_):
            raise ValueError(f"X has samples of shape {tuple(X.shape[1:])}, but {type(self).__name__} was fitted "
                             f"on samples of shape {tuple(self.input_shape_)}")

    def _initialize(self, n_outputs):
        """A new model and optimizer, the fit's generator, an empty history."""
        self._rng = seeded_generator(self.random_state)
        with using_generator(self._rng):
            module = self._build_module(self.n_features_in_, n_outputs)
        from ..nn.module import Module
        if not isinstance(module, Module):
            raise TypeError(f"{type(self).__name__}: the module factory must return a fastnn.nn.Module, got "
                            f"{type(module).__name__}")
        self.module_ = module.to(self._dtype())
        self.optimizer_ = self._build_optimizer(self.module_)
        self.n_outputs_ = int(n_outputs)
        self.history_ = {}
        self.n_iter_ = 0
        self.t_ = 0
        self._reset_convergence()

    def _reset_convergence(self):
        """Subclass hook: the counters of a stopping rule."""

    def _train(self, X, targets, weights, epochs):
        """Epochs of fastnn.Trainer over (X, targets), sample weights riding along as the target's last column."""
        weighted = weights is not None
        y = targets
        if weighted:
            y = np.column_stack([targets.reshape(len(targets), -1).astype(np.float64), weights])
        fraction = self._validation_fraction()
        validation = None
        rng = self._rng
        with using_generator(rng):
            if fraction:
                train, val = self._split(len(X), targets, fraction, rng)
                validation = (X[val], y[val])
                X, y = X[train], y[train]
            objective = self._make_objective(weighted)
            callbacks = [copy.deepcopy(cb) for cb in (self.callbacks or [])]
            callbacks += self._internal_callbacks()
            trainer = Trainer(self.module_, objective, self.optimizer_, metrics=self._metrics(weighted),
                              callbacks=callbacks)
            # numpy's BLAS on one thread while fastnn's threads run: the two pools would fight over the cores
            # (the penalty's dot products, a user's numpy layer)
            with threadpool_limits(1, user_api="blas"):
                try:
                    history = trainer.fit(X, y, epochs=epochs, batch_size=self._batch_size(len(X)),
                                          validation_data=validation, shuffle=bool(self.shuffle),
                                          verbose=int(self.verbose))
                finally:
                    objective.finish()
        for cb in callbacks:
            cb.trainer = None  # the callbacks stay inspectable without keeping the Trainer alive
        self.callbacks_ = callbacks[:len(self.callbacks or [])]
        self.module_.eval()
        for key, values in history.items():
            self.history_.setdefault(key, []).extend(values)
        self.n_iter_ = len(trainer.epoch)
        self.t_ += self.n_iter_ * len(X)
        if history.get("loss"):
            self.loss_ = history["loss"][-1]

    def _validation_fraction(self):
        return 0.0

    def _split(self, n, targets, fraction, rng):
        from sklearn.model_selection import train_test_split
        stratify = self._stratify(targets)
        try:
            train, val = train_test_split(np.arange(n), test_size=fraction, stratify=stratify,
                                          random_state=int(rng.integers(0, 2 ** 31 - 1)))
        except ValueError as e:
            raise ValueError(f"{type(self).__name__}: cannot hold out validation_fraction={fraction} of {n} "
                             f"samples: {e}") from None
        if len(val) < 2 or len(train) < 1:
            raise ValueError(f"{type(self).__name__}: the validation set is too small ({len(val)} of {n} samples). "
                             f"Increase validation_fraction or the size of your dataset.")
        return train, val

    def _stratify(self, targets):
        return None

    def _internal_callbacks(self):
        return []

    # -- prediction -----------------------------------------------------------------------------------------
    def _validate_X(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, accept_sparse=False, dtype=self._model_dtype(False), order="C",
                          allow_nd=self._accepts_nd)
        self._check_input_shape(X, reset=False)
        return canonical(X)

    def _forward(self, X):
        """The model's outputs for validated X, in eval mode, a few thousand rows per call."""
        module = self.module_
        if any(m.training for m in module.modules()):
            module.eval()
        outs = []
        for start in range(0, len(X), _PREDICT_ROWS):
            rows = X[start:start + _PREDICT_ROWS]
            n = len(rows)
            if n % _ROW_BLOCK:
                rows = np.concatenate([rows, np.zeros((_ROW_BLOCK - n % _ROW_BLOCK,) + rows.shape[1:], rows.dtype)])
            out = module(rows)
            if not isinstance(out, np.ndarray):
                raise TypeError(f"{type(self).__name__}: the module must return one array, got "
                                f"{type(out).__name__}")
            outs.append(np.array(out[:n], copy=True))
        out = outs[0] if len(outs) == 1 else np.concatenate(outs)
        return out.reshape(len(out), -1)

    # -- scikit-learn protocol ---------------------------------------------------------------------------
    def __sklearn_is_fitted__(self):
        return "module_" in self.__dict__

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        tags.input_tags.three_d_array = self._accepts_nd
        return tags

    @property
    def loss_curve_(self):
        """The training loss of every epoch trained so far (history_["loss"])."""
        check_is_fitted(self)
        return list(self.history_.get("loss", []))

    # -- pickling: plain values, arrays and safetensors bytes; never fastnn objects ------------------------
    def __getstate__(self):
        state = dict(super().__getstate__())
        state.pop("callbacks_", None)  # live objects (files, the Trainer): not part of the fitted state
        if "module_" in state:
            from ._persist import fitted_state_bytes
            state["_fastnn_state"] = fitted_state_bytes(self)
            del state["module_"], state["optimizer_"]
        if "_rng" in state:
            state["_rng"] = state["_rng"].bit_generator.state
        return state

    def __setstate__(self, state):
        state = dict(state)
        blob = state.pop("_fastnn_state", None)
        rng = state.pop("_rng", None)
        super().__setstate__(state)
        if rng is not None:
            self._rng = np.random.default_rng()
            self._rng.bit_generator.state = rng
        if blob is not None:
            from ._persist import restore_fitted_state
            restore_fitted_state(self, blob)


def _check_sample_weight(sample_weight, n):
    """Sample weights as a float64 array of n finite non-negative numbers, not all zero (a number: all equal)."""
    if sample_weight is None:
        return None
    if isinstance(sample_weight, numbers.Number):
        sample_weight = np.full(n, sample_weight, dtype=np.float64)
    sw = check_array(sample_weight, ensure_2d=False, dtype=np.float64, input_name="sample_weight")
    if sw.ndim != 1 or sw.shape[0] != n:
        raise ValueError(f"sample_weight.shape == {sw.shape}, expected ({n},)")
    if np.any(sw < 0):
        raise ValueError("sample_weight must be non-negative (negative values in sample_weight are not allowed)")
    if not np.any(sw > 0):
        raise ValueError("Sample weights must contain at least one non-zero number (all sample weights are zero)")
    return sw
