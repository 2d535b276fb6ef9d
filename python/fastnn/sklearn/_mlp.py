"""MLPClassifier and MLPRegressor: scikit-learn's multi-layer perceptrons, trained by fastnn.

Drop-in replacements for sklearn.neural_network.MLPClassifier / MLPRegressor: the same parameters where the
two agree (hidden_layer_sizes, activation, alpha, batch_size, shuffle, random_state, tol, verbose,
warm_start, early_stopping, validation_fraction, n_iter_no_change), the same initialisation (Glorot uniform),
the same objective (log-loss, or half squared error, plus alpha/(2·n)·Σ‖W‖² per batch of n samples) and
the same stopping rule, and the same fitted attributes (classes_, coefs_, intercepts_, loss_, loss_curve_,
best_loss_, validation_scores_, best_validation_score_, n_iter_, t_, n_layers_, n_outputs_, out_activation_).
fastnn's names replace three of scikit-learn's: optimizer (solver), lr (learning_rate_init) and
max_epochs (max_iter); dropout, batch_norm, callbacks and dtype are fastnn's additions.
"""
import math
import numbers

from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from .. import init, nn, optim
from ._base import NeuralNetBase, _boolean, _nonnegative, _positive_int
from ._tasks import ClassifierTask, RegressorTask
from ._training import SklearnStopping

__all__ = ["MLPClassifier", "MLPRegressor"]

# Optimizers whose weight_decay adds weight_decay·W to the gradient (an L2 penalty; AdamW's decay is decoupled)
_L2_DECAY_OPTIMIZERS = (optim.Adam, optim.SGD, optim.RMSprop, optim.Adagrad)
_ACTIVATIONS = {"identity": nn.Identity, "logistic": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU,
                "leaky_relu": nn.LeakyReLU, "elu": nn.ELU, "selu": nn.SELU, "silu": nn.SiLU}


class _MLPBase(NeuralNetBase):
    """What the two MLPs share: the network, its initialisation, the L2 penalty and the stopping rule."""

    def _hidden_layer_sizes(self):
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, numbers.Integral) and not isinstance(sizes, bool):
            sizes = (sizes,)
        try:
            sizes = tuple(sizes)
        except TypeError:
            sizes = None
        if sizes is None or any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1 for s in sizes):
            raise ValueError(f"{type(self).__name__}: hidden_layer_sizes must be an int or a sequence of ints "
                             f">= 1, got {self.hidden_layer_sizes!r}")
        return tuple(int(s) for s in sizes)

    def _check_hyperparameters(self):
        owner = type(self).__name__
        self._hidden_layer_sizes()
        if not (isinstance(self.activation, str) and self.activation in _ACTIVATIONS):
            raise ValueError(f"{owner}: activation must be one of {sorted(_ACTIVATIONS)}, got {self.activation!r}")
        _nonnegative(owner, "alpha", self.alpha)
        _boolean(owner, "early_stopping", self.early_stopping)
        _boolean(owner, "batch_norm", self.batch_norm)
        _nonnegative(owner, "tol", self.tol)
        _positive_int(owner, "n_iter_no_change", self.n_iter_no_change)
        if not (isinstance(self.batch_size, str) and self.batch_size == "auto"):
            _positive_int(owner, "batch_size", self.batch_size)
        if not (isinstance(self.dropout, numbers.Real) and 0.0 <= self.dropout < 1.0):
            raise ValueError(f"{owner}: dropout must be a probability in [0, 1), got {self.dropout!r}")
        if self.early_stopping and not (isinstance(self.validation_fraction, numbers.Real)
                                        and 0.0 < self.validation_fraction < 1.0):
            raise ValueError(f"{owner}: validation_fraction must be in (0, 1) with early_stopping=True, got "
                             f"{self.validation_fraction!r}")

    def _build_module(self, n_features_in, n_outputs):
        """Linear [→ BatchNorm1d] → activation [→ Dropout] per hidden layer, then a Linear output layer,
        initialised as scikit-learn's MLP: weights and biases U(±√(f/(fan_in + fan_out))), f = 2 for the
        logistic activation, else 6."""
        sizes = (n_features_in,) + self._hidden_layer_sizes()
        layers = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            layers.append(nn.Linear(fan_in, fan_out))
            if self.batch_norm:
                layers.append(nn.BatchNorm1d(fan_out))
            layers.append(_ACTIVATIONS[self.activation]())
            if self.dropout:
                layers.append(nn.Dropout(float(self.dropout)))
        layers.append(nn.Linear(sizes[-1], n_outputs))
        factor = 2.0 if self.activation == "logistic" else 6.0
        for layer in layers:
            if isinstance(layer, nn.Linear):
                bound = math.sqrt(factor / (layer.in_features + layer.out_features))
                init.uniform_(layer.weight, -bound, bound)
                init.uniform_(layer.bias, -bound, bound)
        return nn.Sequential(*layers)

    def _linears(self):
        return [m for m in self.module_.modules() if isinstance(m, nn.Linear)]

    def _optimizer_defaults(self, cls):
        # scikit-learn's solver='sgd' defaults: momentum 0.9, Nesterov's
        return {"momentum": 0.9, "nesterov": True} if cls is optim.SGD else {}

    def _build_optimizer(self, module):
        """With alpha > 0 and an optimizer whose weight_decay is an L2 term of the gradient, the weight
        matrices get a parameter group of their own, whose weight_decay carries the penalty's gradient
        (see Objective): no extra pass over the weights and gradients per step."""
        opt = super()._build_optimizer(module)
        if self.alpha > 0 and type(opt) in _L2_DECAY_OPTIMIZERS:
            weights = self._penalized_parameters_of(module)
            ids = {id(p) for p in weights}
            rest = [p for p in module.parameters() if id(p) not in ids]
            groups = [{"params": weights}] + ([{"params": rest}] if rest else [])
            opt = type(opt)(groups, **{k: v for k, v in opt.defaults.items()})
        return opt

    def _decay_group(self):
        opt = self.optimizer_
        if self.alpha > 0 and type(opt) in _L2_DECAY_OPTIMIZERS:
            return opt.param_groups[0], float(opt.defaults["weight_decay"])
        return None

    def _alpha(self):
        return float(self.alpha)

    def _penalized_parameters(self):
        return self._penalized_parameters_of(self.module_)

    @staticmethod
    def _penalized_parameters_of(module):
        return [m.weight for m in module.modules() if isinstance(m, nn.Linear)]

    def _validation_fraction(self):
        return float(self.validation_fraction) if self.early_stopping else 0.0

    def _reset_convergence(self):
        self._no_improvement_count = 0
        self.best_loss_ = None if self.early_stopping else math.inf
        self.validation_scores_ = [] if self.early_stopping else None
        self.best_validation_score_ = -math.inf if self.early_stopping else None

    def _internal_callbacks(self):
        if self.early_stopping and self.validation_scores_ is None:  # a warm start switched early stopping on
            self.validation_scores_, self.best_validation_score_ = [], -math.inf
        if not self.early_stopping and self.best_loss_ is None:
            self.best_loss_ = math.inf
        return [SklearnStopping(self, self.early_stopping, self._score_key())]

    @property
    def coefs_(self):
        """Weight matrices, coefs_[i] of shape (fan_in, fan_out) as scikit-learn's (copies)."""
        check_is_fitted(self)
        return [layer.weight.data.T.copy() for layer in self._linears()]

    @property
    def intercepts_(self):
        """Bias vectors, intercepts_[i] of shape (fan_out,) (copies)."""
        check_is_fitted(self)
        return [layer.bias.data.copy() for layer in self._linears()]

    @property
    def n_layers_(self):
        """Number of layers, input and output layers included."""
        check_is_fitted(self)
        return len(self._linears()) + 1


_COMMON_DOC = """
    hidden_layer_sizes : int or tuple of int, default=(100,)
        Width of each hidden layer.
    activation : {'relu', 'tanh', 'logistic', 'identity', 'leaky_relu', 'elu', 'selu', 'silu'}, default='relu'
        Activation of the hidden layers.
    optimizer : str or fastnn.optim.Optimizer subclass, default='adam'
        'adam', 'adamw', 'sgd' (momentum 0.9 and Nesterov unless optimizer__momentum / optimizer__nesterov
        say otherwise, as scikit-learn's solver='sgd'), 'rmsprop', 'adagrad', 'rprop', or a class.
        Options go as ``optimizer__<name>=value`` (optimizer__betas=(0.9, 0.99)).
    alpha : float, default=1e-4
        L2 penalty: alpha/(2·n)·Σ‖W‖² is added to the loss of each batch of n samples (the sum of their
        weights with sample_weight); biases are not penalised.
    batch_size : int or 'auto', default='auto'
        Samples per step; 'auto' is min(200, n_samples), as scikit-learn's.
    lr : float, default=1e-3
        Learning rate (scikit-learn's learning_rate_init).
    max_epochs : int, default=200
        Epochs at most (scikit-learn's max_iter). Reaching it is not warned about: ``n_iter_`` tells.
    shuffle : bool, default=True
        Reshuffle the samples every epoch.
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights, the shuffles, the validation split and dropout. The same int gives the
        same model bit for bit, whatever ran before in the process.
    tol : float, default=1e-4
        An epoch improves when the training loss falls by more than tol (the validation score rises by at
        least tol with early_stopping).
    verbose : int or bool, default=0
        0 silent; 1 fastnn's progress bar on a terminal (a line per epoch otherwise); 2 a line per epoch.
    warm_start : bool, default=False
        fit() continues from the fitted weights and optimizer state instead of starting afresh.
    early_stopping : bool, default=False
        Hold out validation_fraction of the training data (stratified for classifiers) and stop when the
        validation score has not improved for n_iter_no_change epochs; the best weights are kept.
    validation_fraction : float, default=0.1
        The held-out fraction with early_stopping.
    n_iter_no_change : int, default=10
        Epochs without improvement (see tol) before training stops.
    dropout : float, default=0.0
        Dropout probability after each hidden activation (fastnn).
    batch_norm : bool, default=False
        BatchNorm1d between each hidden Linear layer and its activation (fastnn).
    callbacks : list of fastnn.callbacks.Callback, default=None
        Extra Trainer callbacks (copied at each fit; the copies are ``callbacks_``).
    dtype : {'float32', 'float64'}, default='float32'
        Precision of the weights and of the computation.
    **kwargs
        Nested optimizer options, ``optimizer__<name>=value``."""

_ATTRIBUTES_DOC = """
    n_features_in_ : int
    feature_names_in_ : ndarray of str, when X was a DataFrame with string column names
    n_outputs_ : int
        Outputs of the network.
    module_ : fastnn.nn.Sequential
        The trained network.
    optimizer_ : fastnn.optim.Optimizer
    history_ : dict of lists
        Per epoch: "loss" (with the penalty), {metric}, "lr", and with early stopping "val_loss" and
        "``val_{metric}``".
    loss_, loss_curve_, best_loss_, validation_scores_, best_validation_score_, n_iter_, t_, coefs_,
    intercepts_, n_layers_, out_activation_ : as scikit-learn's MLP."""


class MLPClassifier(ClassifierTask, ClassifierMixin, _MLPBase):
    __doc__ = f"""Multi-layer perceptron classifier, scikit-learn's MLPClassifier trained by fastnn.

    Binary and multi-class targets of any label type train a softmax output on the log-loss; a 0/1 indicator
    matrix (multilabel) trains one logistic output per label.

    Parameters
    ----------{_COMMON_DOC}

    Attributes
    ----------
    classes_ : ndarray
        The class labels (multilabel: 0 .. n_labels-1).{_ATTRIBUTES_DOC}

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from fastnn.sklearn import MLPClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = MLPClassifier(hidden_layer_sizes=(32,), lr=1e-2, max_epochs=100, random_state=0).fit(X, y)
    >>> clf.score(X, y) > 0.9
    True
    """

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, optimizer="adam", alpha=1e-4,
                 batch_size="auto", lr=1e-3, max_epochs=200, shuffle=True, random_state=None, tol=1e-4, verbose=0,
                 warm_start=False, early_stopping=False, validation_fraction=0.1, n_iter_no_change=10, dropout=0.0,
                 batch_norm=False, callbacks=None, dtype="float32", **kwargs):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.optimizer = optimizer
        self.alpha = alpha
        self.batch_size = batch_size
        self.lr = lr
        self.max_epochs = max_epochs
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.callbacks = callbacks
        self.dtype = dtype
        self._set_nested(kwargs)

    def _make_loss(self, multilabel=None):
        multilabel = self._task == "multilabel" if multilabel is None else multilabel
        return nn.BCEWithLogitsLoss() if multilabel else nn.CrossEntropyLoss()

    @property
    def out_activation_(self):
        """'softmax', or 'logistic' for multilabel targets."""
        check_is_fitted(self)
        return "logistic" if self._task == "multilabel" else "softmax"


class MLPRegressor(RegressorTask, RegressorMixin, _MLPBase):
    __doc__ = f"""Multi-layer perceptron regressor, scikit-learn's MLPRegressor trained by fastnn.

    Minimises the half squared error ½·mean((y − ŷ)²) (plus the L2 penalty) with a linear output layer;
    y may have several columns (multi-output regression).

    Parameters
    ----------
    loss : {{'squared_error'}}, default='squared_error'
        The half squared error, as scikit-learn's.{_COMMON_DOC}

    Attributes
    ----------{_ATTRIBUTES_DOC}

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn.sklearn import MLPRegressor
    >>> X = np.linspace(-1, 1, 200).reshape(-1, 1); y = X.ravel() ** 2
    >>> reg = MLPRegressor(hidden_layer_sizes=(32,), lr=1e-2, max_epochs=300, random_state=0).fit(X, y)
    >>> reg.score(X, y) > 0.9
    True
    """

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *, optimizer="adam",
                 alpha=1e-4, batch_size="auto", lr=1e-3, max_epochs=200, shuffle=True, random_state=None, tol=1e-4,
                 verbose=0, warm_start=False, early_stopping=False, validation_fraction=0.1, n_iter_no_change=10,
                 dropout=0.0, batch_norm=False, callbacks=None, dtype="float32", **kwargs):
        self.loss = loss
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.optimizer = optimizer
        self.alpha = alpha
        self.batch_size = batch_size
        self.lr = lr
        self.max_epochs = max_epochs
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.callbacks = callbacks
        self.dtype = dtype
        self._set_nested(kwargs)

    def _check_hyperparameters(self):
        if not (isinstance(self.loss, str) and self.loss == "squared_error"):
            raise ValueError(f"MLPRegressor: loss must be 'squared_error', got {self.loss!r} (NeuralNetRegressor "
                             f"takes any fastnn loss)")
        super()._check_hyperparameters()

    def _make_loss(self, multilabel=None):
        return nn.MSELoss()

    def _loss_scale(self):
        return 0.5  # scikit-learn's half squared error

    @property
    def out_activation_(self):
        """'identity'."""
        check_is_fitted(self)
        return "identity"
