"""Classification and regression: how targets become what the loss trains on, and outputs become answers.

Classification (`ClassifierTask`) has three forms, set at fit as `_task`:

* "multiclass" (binary included): one output per class, trained on class indices by cross-entropy (or NLL);
  the outputs are logits (log-probabilities for NLL); predict_proba is their softmax.
* "binary1": a binary problem with a loss on one output (BCEWithLogitsLoss: a logit; BCELoss: a probability).
* "multilabel": a 0/1 indicator matrix, one sigmoid output per label (BCEWithLogitsLoss or BCELoss).

Labels can be anything scikit-learn accepts (strings, non-contiguous integers, ...): `classes_` holds them
sorted, and the model sees their indices.
"""
import warnings

import numpy as np
from sklearn.exceptions import DataConversionWarning
from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels

from ._training import R2, Accuracy

__all__ = ["ClassifierTask", "RegressorTask", "output_kind"]


def output_kind(loss):
    """What a model trained with `loss` outputs: "logits", "log_probs" (NLLLoss) or "probs" (BCELoss)."""
    name = type(loss).__name__
    if name == "NLLLoss":
        return "log_probs"
    if name == "BCELoss":
        return "probs"
    return "logits"


def _is_binary_loss(loss):
    return type(loss).__name__ in ("BCELoss", "BCEWithLogitsLoss")


def _softmax(z):
    z = z - np.max(z, axis=1, keepdims=True)
    e = np.exp(z)
    return e / np.sum(e, axis=1, keepdims=True)


def _sigmoid(z):
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    e = np.exp(z[~pos])
    out[~pos] = e / (1.0 + e)
    return out


class ClassifierTask:
    """Targets and predictions of the classifiers (mixed in before ClassifierMixin, whose tags it amends)."""

    _task_kind = "classification"

    def _encode_targets(self, y, reset, classes=None):
        if y.ndim == 2 and y.shape[1] == 1:
            warnings.warn("A column-vector y was passed when a 1d array was expected. Please change the shape "
                          "of y to (n_samples,), for example using ravel().", DataConversionWarning, stacklevel=4)
            y = y.ravel()
        check_classification_targets(y)
        kind = type_of_target(y)
        if kind == "multiclass-multioutput":
            raise ValueError(f"{type(self).__name__}: multiclass-multioutput targets are not supported (y has "
                             f"shape {y.shape}); a 2-D y must be a 0/1 indicator matrix (multilabel)")
        multilabel = kind == "multilabel-indicator"
        loss = self._make_loss(multilabel=multilabel)
        if reset:
            if multilabel:
                self.classes_ = np.arange(y.shape[1])
                task = "multilabel"
            else:
                self.classes_ = unique_labels(y) if classes is None else unique_labels(np.asarray(classes))
                task = "binary1" if _is_binary_loss(loss) else "multiclass"
                if task == "binary1" and len(self.classes_) != 2:
                    raise ValueError(f"{type(self).__name__}: {type(loss).__name__} trains a binary classifier, "
                                     f"but y has {len(self.classes_)} class(es): {self.classes_}")
            if multilabel and not _is_binary_loss(loss):
                raise ValueError(f"{type(self).__name__}: a multilabel y needs BCEWithLogitsLoss or BCELoss, "
                                 f"not {type(loss).__name__}")
            self._task = task
            self._output_kind = output_kind(loss)
        elif multilabel != (self._task == "multilabel") or (multilabel and y.shape[1] != len(self.classes_)):
            raise ValueError(f"{type(self).__name__}: y has {kind} targets of shape {y.shape}, but the estimator "
                             f"was fitted on {self._task} targets with classes {self.classes_}")
        if self._task == "multilabel":
            return np.array(y, dtype=self._model_dtype(reset), order="C"), len(self.classes_)
        index = np.searchsorted(self.classes_, y)
        index = np.clip(index, 0, len(self.classes_) - 1)
        unknown = self.classes_[index] != y
        if np.any(unknown):
            raise ValueError(f"{type(self).__name__}: y has classes not in classes_ {self.classes_}: "
                             f"{np.unique(np.asarray(y)[unknown])[:10]}")
        if self._task == "binary1":
            return index.astype(self._model_dtype(reset)).reshape(-1, 1), 1
        return index.astype(np.int64), len(self.classes_)

    def _stratify(self, targets):
        return targets if self._task == "multiclass" and len(self.classes_) > 1 else None

    def _metrics(self, weighted):
        if self._task == "multiclass":
            return [Accuracy("multiclass", weighted)]
        threshold = 0.5 if self._output_kind == "probs" else 0.0
        return [Accuracy("multilabel", weighted, threshold)]

    def _score_key(self):
        return "val_accuracy"

    # -- outputs -----------------------------------------------------------------------------------------
    def _scores(self, X):
        """Outputs of the model as float64: logits (log-probabilities for NLL, probabilities for BCELoss)."""
        return self._forward(self._validate_X(X)).astype(np.float64)

    def _logits(self, out):
        """Sigmoid logits of binary1/multilabel outputs (probabilities are mapped back for BCELoss)."""
        if self._output_kind == "probs":
            with np.errstate(divide="ignore"):
                return np.log(out) - np.log1p(-out)
        return out

    def decision_function(self, X):
        """Class scores: the logits (log-probabilities with NLLLoss) of shape (n_samples, n_classes); for a
        binary problem one score per sample, positive for classes_[1]; for multilabel y one logit per label."""
        out = self._scores(X)
        if self._task == "multiclass":
            if out.shape[1] <= 2:
                return out[:, 1] - out[:, 0] if out.shape[1] == 2 else np.zeros(len(out))
            return out
        logits = self._logits(out)
        return logits[:, 0] if self._task == "binary1" else logits

    def predict_proba(self, X):
        """Class probabilities, shape (n_samples, n_classes), columns in the order of classes_ (multilabel:
        the probability of each label)."""
        out = self._scores(X)
        if self._task == "multiclass":
            if self._output_kind == "log_probs":
                p = np.exp(out)
                return p / np.sum(p, axis=1, keepdims=True)
            return _softmax(out)
        p = np.clip(out, 0.0, 1.0) if self._output_kind == "probs" else _sigmoid(out)
        return np.column_stack([1.0 - p[:, 0], p[:, 0]]) if self._task == "binary1" else p

    def predict_log_proba(self, X):
        """log(predict_proba(X))."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        """The predicted class of each sample (multilabel: a 0/1 indicator row)."""
        out = self._scores(X)
        if self._task == "multiclass":
            return self.classes_[np.argmax(out, axis=1)]
        positive = self._logits(out) > 0
        if self._task == "binary1":
            return self.classes_[positive[:, 0].astype(np.intp)]
        return positive.astype(np.int64)

    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over (X, y), continuing from the current state. classes: every class y may ever contain;
        required at the first call (the number of outputs depends on it), ignored for multilabel y."""
        if not self.__sklearn_is_fitted__() and classes is None:
            raise ValueError(f"{type(self).__name__}: classes must be passed on the first call to partial_fit")
        if self.__sklearn_is_fitted__() and classes is not None and self._task != "multilabel":
            if not np.array_equal(unique_labels(np.asarray(classes)), self.classes_):
                raise ValueError(f"{type(self).__name__}: classes={classes!r} is not the same as the classes_ "
                                 f"of the first call to partial_fit, {self.classes_}")
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class RegressorTask:
    """Targets and predictions of the regressors: y of shape (n,) or (n, n_outputs), predictions alike."""

    _task_kind = "regression"
    _task = "regression"

    def _encode_targets(self, y, reset, classes=None):
        y = np.asarray(y)
        if reset:
            self._y_ndim = y.ndim
        targets = np.array(y.reshape(len(y), -1), dtype=self._model_dtype(reset), order="C")
        if not reset and targets.shape[1] != self.n_outputs_:
            raise ValueError(f"{type(self).__name__}: y has {targets.shape[1]} target(s), but the estimator was "
                             f"fitted on {self.n_outputs_}")
        return targets, targets.shape[1]

    def _metrics(self, weighted):
        return [R2(weighted)]

    def _score_key(self):
        return "val_r2"

    def predict(self, X):
        """Predicted targets, float64, of shape (n_samples,) or (n_samples, n_outputs) like the fitted y."""
        out = self._forward(self._validate_X(X)).astype(np.float64)
        return out.ravel() if self._y_ndim == 1 else out

    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y), continuing from the current state (the first call initialises)."""
        return self._fit(X, y, sample_weight, incremental=True)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
