"""What the estimators hand to fastnn.Trainer besides the model and the optimizer.

* `Objective`: the loss the Trainer minimises. It adds, where asked, what scikit-learn's estimators have and
  fastnn's losses do not: per-sample weights (the target array then carries them as its last column, so
  the Trainer's batching keeps them with their rows), scikit-learn's L2 penalty alpha/(2·n)·Σ‖W‖² (n the
  batch's size, or its weight sum) and a constant factor (½ for scikit-learn's half squared error).
* `Accuracy`, `R2`: streaming, optionally sample-weighted metrics for the history and for early stopping.
* `SklearnStopping`: scikit-learn's MLP stopping rule (tol, n_iter_no_change, best weights restored).
* `seeded_generator` / `using_generator`: every fit draws its initial weights, shuffles and dropout masks
  from its own generator, so results depend on random_state alone, not on what ran before.
"""
import contextlib
import numbers
import threading

import numpy as np

from .. import random as _random
from ..callbacks import Callback
from ..metrics import Metric

__all__ = ["Objective", "Accuracy", "R2", "SklearnStopping", "seeded_generator", "using_generator", "FIT_LOCK"]

# fastnn's generator is process-wide: fits in several threads of one process take turns (worker processes,
# joblib's default, run in parallel).
FIT_LOCK = threading.RLock()


def seeded_generator(random_state):
    """A fresh numpy Generator from a scikit-learn random_state: an int seeds it; None (numpy's global
    RandomState) and RandomState instances give it a seed drawn from them, as scikit-learn's estimators do."""
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if not 0 <= int(random_state) < 2 ** 32:
            raise ValueError(f"random_state must be an integer in [0, 2**32), None or a numpy RandomState; "
                             f"got {random_state}")
        return np.random.default_rng(int(random_state))
    if random_state is None:
        random_state = np.random.mtrand._rand
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(int(random_state.randint(0, 2 ** 31 - 1)))
    if isinstance(random_state, np.random.Generator):
        return np.random.default_rng(int(random_state.integers(0, 2 ** 63 - 1)))
    raise ValueError(f"random_state must be an integer in [0, 2**32), None or a numpy RandomState; got "
                     f"{random_state!r}")


@contextlib.contextmanager
def using_generator(rng):
    """Run with `rng` as fastnn's generator; the caller's is put back afterwards (its stream is untouched)."""
    with FIT_LOCK, _random.using_generator(rng):
        yield rng


def split_target(target, weighted):
    """(target, weights or None) from a batch of targets that carries its weights as the last column."""
    if not weighted:
        return target, None
    return target[:, :-1], target[:, -1]


class Objective:
    """The Trainer's loss: value = loss(pred, target)·scale (+ the L2 penalty when training).

    loss: a fastnn loss. weighted: the target's last column holds sample weights; the data loss is then their
    weighted mean Σ w_i·l_i / Σ w_i, l_i the mean of sample i's per-element losses (the loss runs with
    reduction='none'; a loss made with reduction='sum' gives Σ w_i·l_i, l_i the sum). labels: the target's
    first column holds class indices (cross-entropy, NLL).

    alpha, weights: the penalty alpha/(2·n)·Σ‖W‖² over `weights` (Parameters), n the batch's sample count or
    weight sum, left out in eval mode (validation losses are data losses). Its gradient alpha/n·W reaches
    the weights one of two ways. decay=(group, base): the optimizer's L2 weight decay does it inside its
    fused step: the group of `weights` gets weight_decay = base + alpha/n before each step (Adam, SGD,
    RMSprop, Adagrad add weight_decay·W to the gradient). decay=None: backward adds it to their .grad (the
    model's backward then accumulates onto it), for any optimizer.
    """

    def __init__(self, loss, module, *, weighted=False, labels=False, scale=1.0, alpha=0.0, weights=(), decay=None):
        self.loss = loss
        self.module = module
        self.weighted = bool(weighted)
        self.labels = bool(labels)
        self.scale = float(scale)
        self.alpha = float(alpha)
        self.weights = list(weights) if self.alpha > 0 else []
        self.decay = decay if self.weights else None
        self.penalty = 0.0
        self._grad_scale = None
        self._penalty_factor = 0.0
        # A loss with reduction='sum' sums (weighted: Σ w_i·l_i); the Trainer then averages epochs accordingly.
        self.summed = getattr(loss, "reduction", "mean") == "sum"
        self.reduction = "sum" if self.summed else "mean"
        if self.weighted:
            if getattr(loss, "reduction", None) not in ("mean", "sum", "none"):
                raise ValueError(f"sample_weight needs a fastnn loss with a 'reduction' (it runs with "
                                 f"reduction='none'); {loss!r} has none")
            loss.reduction = "none"

    def _target(self, target):
        if self.labels:
            return np.ascontiguousarray(target[:, 0]).astype(np.int64) if target.ndim == 2 else target
        return target

    def __call__(self, pred, target):
        target, w = split_target(target, self.weighted)
        if w is None:
            value = float(self.loss(pred, self._target(target)))
            n = len(pred)
        else:
            items = np.asarray(self.loss(pred, self._target(target)))
            per_sample = items.reshape(len(items), -1)
            total = float(np.sum(w))
            n = total
            if self.summed:
                value = float(np.dot(w, per_sample.sum(axis=1, dtype=np.float64)))
                g = w.astype(items.dtype)
            elif total > 0:
                value = float(np.dot(w, per_sample.mean(axis=1, dtype=np.float64)) / total)
                g = (w / (total * per_sample.shape[1])).astype(items.dtype)
            else:  # every weight of this batch is zero: it teaches nothing
                value, g = 0.0, np.zeros(len(items), items.dtype)
            self._grad_scale = np.broadcast_to(g.reshape((-1,) + (1,) * (items.ndim - 1)), items.shape)
        value *= self.scale
        self._penalty_factor = 0.0
        if self.weights and self.module.training:
            factor = self.alpha / n if n > 0 else 0.0
            squares = sum(float(np.dot(p.data.ravel(), p.data.ravel())) for p in self.weights)
            self.penalty = 0.5 * factor * squares
            value += self.penalty
            if self.decay is None:
                self._penalty_factor = factor
            else:
                group, base = self.decay
                group["weight_decay"] = base + factor
        return value

    def finish(self):
        """After training: the decay group's weight_decay back to its own value (optimizer_ shows no trace)."""
        if self.decay is not None:
            group, base = self.decay
            group["weight_decay"] = base

    def backward(self):
        if self.weighted:
            grad = self.loss.backward(self._grad_scale * self._grad_scale.dtype.type(self.scale))
        else:
            grad = self.loss.backward(None if self.scale == 1.0 else self.scale)
        factor = self._penalty_factor
        if factor:
            for p in self.weights:
                g = p.grad  # a gradient lazily marked zero reads as zeros; backward then accumulates onto it
                g += p.data.dtype.type(factor) * p.data
        return grad


class Accuracy(Metric):
    """Accuracy, sample-weighted when the target carries weights. kind: "multiclass" (argmax of the outputs
    against class indices), "binary" (one output above `threshold` against 0/1) or "multilabel" (every
    output above `threshold` right: scikit-learn's subset accuracy)."""

    def __init__(self, kind, weighted=False, threshold=0.0, name="accuracy"):
        self.kind, self.weighted, self.threshold, self.name = kind, bool(weighted), float(threshold), name
        self.reset()

    def reset(self):
        self.correct = 0.0
        self.total = 0.0

    def update(self, pred, target):
        target, w = split_target(target, self.weighted)
        if self.kind == "multiclass":
            labels = target[:, 0] if target.ndim == 2 else target
            hit = np.argmax(pred if pred.ndim == 2 else pred.reshape(len(pred), -1), axis=1) == labels
        else:
            hit = np.all((pred.reshape(len(pred), -1) > self.threshold) == (target.reshape(len(pred), -1) > 0.5),
                         axis=1)
        if w is None:
            self.correct += float(np.count_nonzero(hit))
            self.total += len(hit)
        else:
            self.correct += float(np.dot(w, hit))
            self.total += float(np.sum(w))

    def result(self):
        return self.correct / self.total if self.total else float("nan")


class R2(Metric):
    """Coefficient of determination, averaged over the outputs (scikit-learn's r2_score with
    multioutput='uniform_average'), sample-weighted when the target carries weights. Sums are merged batch by
    batch around running means (Chan et al.), so there is no cancellation for targets with a large mean."""

    def __init__(self, weighted=False, name="r2"):
        self.weighted, self.name = bool(weighted), name
        self.reset()

    def reset(self):
        self.weight = 0.0
        self.mean = None   # weighted mean of the targets, per output
        self.m2 = None     # weighted sum of squared deviations from it
        self.residual = None

    def update(self, pred, target):
        target, w = split_target(np.asarray(target), self.weighted)
        y = target.reshape(len(target), -1).astype(np.float64)
        p = np.asarray(pred, dtype=np.float64).reshape(y.shape)
        w = np.ones(len(y)) if w is None else np.asarray(w, dtype=np.float64)
        wb = float(np.sum(w))
        if wb <= 0:
            return
        mb = w @ y / wb
        m2b = w @ np.square(y - mb)
        res = w @ np.square(y - p)
        if self.mean is None:
            self.weight, self.mean, self.m2, self.residual = wb, mb, m2b, res
            return
        total = self.weight + wb
        delta = mb - self.mean
        self.mean = self.mean + delta * (wb / total)
        self.m2 = self.m2 + m2b + np.square(delta) * (self.weight * wb / total)
        self.residual = self.residual + res
        self.weight = total

    def result(self):
        if self.mean is None:
            return float("nan")
        with np.errstate(divide="ignore", invalid="ignore"):
            scores = 1.0 - self.residual / self.m2
        # constant targets: 1 when predicted exactly, else 0 (scikit-learn's force_finite)
        scores = np.where(self.m2 > 0, scores, np.where(self.residual == 0, 1.0, 0.0))
        return float(np.mean(scores))


class SklearnStopping(Callback):
    """scikit-learn's MLP convergence rule, epoch by epoch. Without early stopping an epoch counts as no
    improvement when its training loss is not below best_loss_ − tol; with early stopping, when its validation
    score (`score_key` in the logs) is below best_validation_score_ + tol. Training stops once more than
    n_iter_no_change epochs in a row did not improve. With early stopping the weights of the best validation
    score are put back at the end. The counters live on the estimator, so warm starts and partial_fit go on
    counting where the last call stopped."""

    def __init__(self, estimator, early_stopping, score_key):
        super().__init__()
        self.estimator = estimator
        self.early_stopping = bool(early_stopping)
        self.score_key = score_key
        self.best_state = None

    def on_epoch_end(self, epoch, logs=None):
        est, tol = self.estimator, float(self.estimator.tol)
        if self.early_stopping:
            score = float(logs[self.score_key])
            est.validation_scores_.append(score)
            est._no_improvement_count = (est._no_improvement_count + 1
                                         if score < est.best_validation_score_ + tol else 0)
            if score > est.best_validation_score_:
                est.best_validation_score_ = score
                self.best_state = self.model.state_dict()
        else:
            loss = float(logs["loss"])
            est._no_improvement_count = est._no_improvement_count + 1 if loss > est.best_loss_ - tol else 0
            if loss < est.best_loss_:
                est.best_loss_ = loss
        if est._no_improvement_count > est.n_iter_no_change:
            self.trainer.stop_training = True

    def on_train_end(self, logs=None):
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
            self.best_state = None
