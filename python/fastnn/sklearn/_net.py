"""NeuralNetClassifier and NeuralNetRegressor: any fastnn model as a scikit-learn estimator.

The model comes from a factory, `module(n_features_in, n_outputs, **module__kwargs)` (skorch's convention for
nested parameters: `module__width=64` reaches the factory as width=64, and GridSearchCV can search it). A
factory with a parameter named `input_shape` also gets the shape of one sample, X.shape[1:]. X may have
any number of dimensions after the sample axis, so a CNN on (n, channels, height, width) images or a
recurrent network on (n, time, features) sequences is an estimator too; n_features_in is X.shape[1].
"""
import copy
import inspect
import numbers

from sklearn.base import ClassifierMixin, RegressorMixin

from .. import nn
from ._base import NeuralNetBase, _positive_int
from ._tasks import ClassifierTask, RegressorTask

__all__ = ["NeuralNetClassifier", "NeuralNetRegressor"]


class _NetBase(NeuralNetBase):
    _nested_prefixes = ("module__", "optimizer__", "loss__")
    _accepts_nd = True

    def __init__(self, module, *, loss=None, optimizer="adam", lr=1e-3, max_epochs=10, batch_size=128,
                 callbacks=None, validation_fraction=0.0, shuffle=True, warm_start=False, dtype="float32", verbose=0,
                 random_state=None, **kwargs):
        self.module = module
        self.loss = loss
        self.optimizer = optimizer
        self.lr = lr
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.callbacks = callbacks
        self.validation_fraction = validation_fraction
        self.shuffle = shuffle
        self.warm_start = warm_start
        self.dtype = dtype
        self.verbose = verbose
        self.random_state = random_state
        self._set_nested(kwargs)

    def _check_hyperparameters(self):
        owner = type(self).__name__
        if self.module is not None and not callable(self.module):
            raise TypeError(f"{owner}: module must be a callable module(n_features_in, n_outputs, **kwargs) "
                            f"returning a fastnn.nn.Module, got {type(self.module).__name__}")
        loss = self.loss
        if not (loss is None or (isinstance(loss, type) and callable(loss)) or
                (callable(loss) and hasattr(loss, "backward"))):
            raise TypeError(f"{owner}: loss must be None, a fastnn loss class or a fastnn loss instance, got "
                            f"{loss!r}")
        if self._nested_for("loss") and not isinstance(loss, type):
            raise ValueError(f"{owner}: loss__* parameters need loss to be a class (they are its constructor's "
                             f"arguments); got loss={loss!r}")
        _positive_int(owner, "batch_size", self.batch_size)
        if not (isinstance(self.validation_fraction, numbers.Real) and 0.0 <= self.validation_fraction < 1.0):
            raise ValueError(f"{owner}: validation_fraction must be in [0, 1), got {self.validation_fraction!r}")

    def _build_module(self, n_features_in, n_outputs):
        if self.module is None:
            raise ValueError(f"{type(self).__name__}: module is None. An estimator loaded with fastnn.load keeps its "
                             f"trained network (module_) but not the factory, which is code: set_params("
                             f"module=<factory>) to fit afresh, or continue training with partial_fit or "
                             f"warm_start=True")
        kwargs = self._nested_for("module")
        try:
            takes_shape = "input_shape" in inspect.signature(self.module).parameters
        except (TypeError, ValueError):
            takes_shape = False
        if takes_shape:
            kwargs.setdefault("input_shape", tuple(self.input_shape_))
        return self.module(n_features_in, n_outputs, **kwargs)

    def _make_loss(self, multilabel=None):
        spec = self.loss
        if spec is None:
            return self._default_loss(multilabel)
        if isinstance(spec, type):
            return spec(**self._nested_for("loss"))
        return copy.deepcopy(spec)  # the parameter itself is never changed by fitting

    def _validation_fraction(self):
        return float(self.validation_fraction)


_NET_DOC = """
    module : callable
        module(n_features_in, n_outputs, ``**module__kwargs``) -> fastnn.nn.Module; a fastnn.nn.Module subclass
        with that constructor works too. A parameter named input_shape receives X.shape[1:].
    loss : None, fastnn loss class or instance, default=None
        @LOSS_DEFAULT@ A class is built with the ``loss__*`` parameters.
    optimizer : str or fastnn.optim.Optimizer subclass, default='adam'
        'adam', 'adamw', 'sgd', 'rmsprop', 'adagrad', 'rprop', or a class; options as ``optimizer__<name>``.
    lr : float, default=1e-3
    max_epochs : int, default=10
    batch_size : int, default=128
    callbacks : list of fastnn.callbacks.Callback, default=None
        Trainer callbacks (EarlyStopping, LearningRateScheduler, CSVLogger, ...), copied at each fit; the
        copies are ``callbacks_``. EarlyStopping on ``val_*`` needs validation_fraction > 0.
    validation_fraction : float, default=0.0
        Fraction of the training data held out (stratified for classifiers) for the ``val_*`` entries of ``history_``.
    shuffle : bool, default=True
    warm_start : bool, default=False
        fit() continues from the fitted weights and optimizer state.
    dtype : {'float32', 'float64'}, default='float32'
        Precision of the model; X is converted to it.
    verbose : int or bool, default=0
        fastnn's progress output: 0 silent, 1 progress bar (a line per epoch off a terminal), 2 a line per epoch.
    random_state : int, RandomState instance or None, default=None
        Seeds initialisation, shuffling, the validation split and dropout; the same int gives the same model
        bit for bit.
    **kwargs
        Nested parameters: ``module__<name>``, ``optimizer__<name>``, ``loss__<name>``."""

_NET_ATTRIBUTES = """
    n_features_in_ : int
        X.shape[1] at fit (channels of NCHW images).
    input_shape_ : tuple
        The shape of one sample, X.shape[1:].
    feature_names_in_ : ndarray of str, when X was a DataFrame with string column names
    n_outputs_ : int
    module_ : fastnn.nn.Module
    optimizer_ : fastnn.optim.Optimizer
    history_ : dict of lists
        Per epoch: "loss", {metric}, "lr", and "val_loss", "``val_{metric}``" with validation_fraction > 0.
    n_iter_ : int
        Epochs run by the last fit.
    callbacks_ : list
        The callbacks of the last fit."""

_CLASSIFIER_PARAMS = _NET_DOC.replace("@LOSS_DEFAULT@",
                                      "None: CrossEntropyLoss (BCEWithLogitsLoss for a multilabel y).")
_REGRESSOR_PARAMS = _NET_DOC.replace("@LOSS_DEFAULT@", "None: MSELoss.")


class NeuralNetClassifier(ClassifierTask, ClassifierMixin, _NetBase):
    __doc__ = f"""A fastnn model as a scikit-learn classifier.

    The factory is called with n_outputs = the number of classes (of labels, for a multilabel indicator y;
    1 for a binary y with BCEWithLogitsLoss or BCELoss). The model returns logits by default
    (CrossEntropyLoss): predict_proba is their softmax. With NLLLoss it returns log-probabilities, with
    BCELoss probabilities.

    Parameters
    ----------{_CLASSIFIER_PARAMS}

    Attributes
    ----------
    classes_ : ndarray{_NET_ATTRIBUTES}

    Examples
    --------
    >>> import fastnn as fnn
    >>> from sklearn.datasets import load_digits
    >>> from fastnn.sklearn import NeuralNetClassifier
    >>> def cnn(n_features_in, n_outputs, channels=8):
    ...     return fnn.nn.Sequential(fnn.nn.Conv2d(n_features_in, channels, 3, padding=1), fnn.nn.ReLU(),
    ...                              fnn.nn.MaxPool2d(2), fnn.nn.Flatten(), fnn.nn.Linear(channels * 16, n_outputs))
    >>> X, y = load_digits(return_X_y=True)
    >>> X = X.reshape(-1, 1, 8, 8) / 16.0
    >>> net = NeuralNetClassifier(cnn, module__channels=8, lr=1e-2, max_epochs=5, batch_size=32,
    ...                           random_state=0).fit(X, y)
    >>> net.score(X, y) > 0.95
    True
    """

    def _default_loss(self, multilabel):
        multilabel = self._task == "multilabel" if multilabel is None else multilabel
        return nn.BCEWithLogitsLoss() if multilabel else nn.CrossEntropyLoss()


class NeuralNetRegressor(RegressorTask, RegressorMixin, _NetBase):
    __doc__ = f"""A fastnn model as a scikit-learn regressor.

    The factory is called with n_outputs = the number of target columns (1 for a 1-D y); predictions have
    the shape of the fitted y.

    Parameters
    ----------{_REGRESSOR_PARAMS}

    Attributes
    ----------{_NET_ATTRIBUTES}

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> from fastnn.sklearn import NeuralNetRegressor
    >>> def mlp(n_features_in, n_outputs, width=16):
    ...     return fnn.nn.Sequential(fnn.nn.Linear(n_features_in, width), fnn.nn.Tanh(),
    ...                              fnn.nn.Linear(width, n_outputs))
    >>> X = np.random.default_rng(0).uniform(-1, 1, (200, 2)).astype(np.float32)
    >>> y = X[:, 0] - 2 * X[:, 1]
    >>> net = NeuralNetRegressor(mlp, module__width=16, lr=1e-2, max_epochs=50, random_state=0).fit(X, y)
    >>> net.predict(X).shape, net.score(X, y) > 0.9
    ((200,), True)
    """

    def _default_loss(self, multilabel):
        return nn.MSELoss()
