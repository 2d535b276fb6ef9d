"""Learning-rate schedules: callables step -> lr.

Parameter names and formulas are TensorFlow's (tf.keras.optimizers.schedules and tf.compat.v1.train.*_decay),
the reference where the seed is vague. `step` counts optimizer steps from 0. Use them by hand
(`opt.lr = sched(step)`) or give one to the Trainer, which sets `optimizer.lr = schedule(global_step)` before
every step:

    sched = fastnn.schedules.ExponentialDecay(learning_rate=0.1, decay_steps=100, decay_rate=0.96)
    fastnn.Trainer(model, loss, opt, schedule=sched)

Every schedule is a pure function of the step (NoisyLinearCosineDecay too: its noise at step t is drawn from a
generator seeded by (seed, t)), so calling it twice with the same step gives the same rate.
"""
import math

import numpy as np

from .random import generator

__all__ = ["LearningRateSchedule", "PiecewiseConstantDecay", "ExponentialDecay", "NaturalExpDecay",
           "PolynomialDecay", "CosineDecay", "LinearCosineDecay", "NoisyLinearCosineDecay"]


def _positive(owner, name, value):
    value = float(value)
    if not value > 0:
        raise ValueError(f"{owner}: {name} must be > 0, got {value}")
    return value


def _step(owner, step):
    step = float(step)
    if not step >= 0:
        raise ValueError(f"{owner}: step must be >= 0, got {step}")
    return step


class LearningRateSchedule:
    """Base class: subclasses implement `lr(step)` for a float step >= 0; calling the schedule checks the step."""

    def __call__(self, step):
        return float(self.lr(_step(type(self).__name__, step)))

    def lr(self, step):
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class PiecewiseConstantDecay(LearningRateSchedule):
    """values[0] while step <= boundaries[0], values[i] while boundaries[i-1] < step <= boundaries[i], and
    values[-1] after the last boundary. len(values) == len(boundaries) + 1, boundaries increasing."""

    def __init__(self, boundaries, values):
        self.boundaries = [float(b) for b in boundaries]
        self.values = [float(v) for v in values]
        if len(self.values) != len(self.boundaries) + 1:
            raise ValueError(f"PiecewiseConstantDecay: need len(values) == len(boundaries) + 1, got "
                             f"{len(self.values)} values and {len(self.boundaries)} boundaries")
        if any(b >= c for b, c in zip(self.boundaries, self.boundaries[1:])):
            raise ValueError(f"PiecewiseConstantDecay: boundaries must increase, got {self.boundaries}")

    def lr(self, step):
        for boundary, value in zip(self.boundaries, self.values):
            if step <= boundary:
                return value
        return self.values[-1]


class ExponentialDecay(LearningRateSchedule):
    """learning_rate · decay_rate^(step / decay_steps); staircase=True uses floor(step / decay_steps)."""

    def __init__(self, learning_rate, decay_steps, decay_rate, staircase=False):
        self.learning_rate = float(learning_rate)
        self.decay_steps = _positive("ExponentialDecay", "decay_steps", decay_steps)
        self.decay_rate = float(decay_rate)
        self.staircase = bool(staircase)

    def lr(self, step):
        p = step / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self.learning_rate * self.decay_rate ** p


class NaturalExpDecay(LearningRateSchedule):
    """learning_rate · exp(−decay_rate · step / decay_steps); staircase=True uses floor(step / decay_steps).
    (The seed's formula is garbled; this is TensorFlow's natural_exp_decay.)"""

    def __init__(self, learning_rate, decay_steps, decay_rate, staircase=False):
        self.learning_rate = float(learning_rate)
        self.decay_steps = _positive("NaturalExpDecay", "decay_steps", decay_steps)
        self.decay_rate = float(decay_rate)
        self.staircase = bool(staircase)

    def lr(self, step):
        p = step / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self.learning_rate * math.exp(-self.decay_rate * p)


class PolynomialDecay(LearningRateSchedule):
    """(learning_rate − end_learning_rate) · (1 − t / T)^power + end_learning_rate.

    cycle=False: t = min(step, decay_steps), T = decay_steps (the rate stays at end_learning_rate after).
    cycle=True: t = step, T = decay_steps · ceil(step / decay_steps), with one period at step 0, so the
    decay restarts from a lower peak every decay_steps steps.
    """

    def __init__(self, learning_rate, decay_steps, end_learning_rate=0.0001, power=1.0, cycle=False):
        self.learning_rate = float(learning_rate)
        self.decay_steps = _positive("PolynomialDecay", "decay_steps", decay_steps)
        self.end_learning_rate = float(end_learning_rate)
        self.power = float(power)
        self.cycle = bool(cycle)

    def lr(self, step):
        if self.cycle:
            periods = math.ceil(step / self.decay_steps) if step > 0 else 1
            total = self.decay_steps * periods
        else:
            total = self.decay_steps
            step = min(step, total)
        return (self.learning_rate - self.end_learning_rate) * (1 - step / total) ** self.power \
            + self.end_learning_rate


class CosineDecay(LearningRateSchedule):
    """learning_rate · ((1 − alpha) · ½(1 + cos(π · t / decay_steps)) + alpha), t = min(step, decay_steps):
    a half cosine from learning_rate down to the floor alpha · learning_rate."""

    def __init__(self, learning_rate, decay_steps, alpha=0.0):
        self.learning_rate = float(learning_rate)
        self.decay_steps = _positive("CosineDecay", "decay_steps", decay_steps)
        self.alpha = float(alpha)

    def lr(self, step):
        t = min(step, self.decay_steps)
        cosine = 0.5 * (1 + math.cos(math.pi * t / self.decay_steps))
        return self.learning_rate * ((1 - self.alpha) * cosine + self.alpha)


class LinearCosineDecay(LearningRateSchedule):
    """learning_rate · ((alpha + (T − t)/T) · ½(1 + cos(2π · num_periods · t/T)) + beta), T = decay_steps,
    t = min(step, T) (TensorFlow's linear_cosine_decay)."""

    def __init__(self, learning_rate, decay_steps, num_periods=0.5, alpha=0.0, beta=0.001):
        self.learning_rate = float(learning_rate)
        self.decay_steps = _positive(type(self).__name__, "decay_steps", decay_steps)
        self.num_periods = float(num_periods)
        self.alpha = float(alpha)
        self.beta = float(beta)

    def _value(self, t, noise=0.0):
        linear = (self.decay_steps - t) / self.decay_steps + noise
        cosine = 0.5 * (1 + math.cos(2 * math.pi * self.num_periods * t / self.decay_steps))
        return self.learning_rate * ((self.alpha + linear) * cosine + self.beta)

    def lr(self, step):
        return self._value(min(step, self.decay_steps))


class NoisyLinearCosineDecay(LinearCosineDecay):
    """LinearCosineDecay with Gaussian noise N(0, initial_variance / (1 + t)^variance_decay) added to the linear
    term (T − t)/T, t = min(step, decay_steps) (TensorFlow's noisy_linear_cosine_decay).

    The noise at step t comes from numpy.random.default_rng((seed, t)), so the schedule is a pure function of
    the step. seed=None draws the seed once, at construction, from fastnn's generator (fastnn.manual_seed
    makes it reproducible).
    """

    def __init__(self, learning_rate, decay_steps, initial_variance=1.0, variance_decay=0.55, num_periods=0.5,
                 alpha=0.0, beta=0.001, seed=None):
        super().__init__(learning_rate, decay_steps, num_periods, alpha, beta)
        self.initial_variance = float(initial_variance)
        if self.initial_variance < 0:
            raise ValueError(f"NoisyLinearCosineDecay: initial_variance must be >= 0, got {initial_variance}")
        self.variance_decay = float(variance_decay)
        if seed is not None and int(seed) < 0:
            raise ValueError(f"NoisyLinearCosineDecay: seed must be >= 0 or None, got {seed}")
        self.seed = seed
        self._seed = int(generator().integers(2**63)) if seed is None else int(seed)

    def noise(self, step):
        """The noise added to the linear term at `step`."""
        t = min(float(step), self.decay_steps)
        std = math.sqrt(self.initial_variance / (1 + t) ** self.variance_decay)
        return std * float(np.random.default_rng((self._seed, int(step))).standard_normal())

    def lr(self, step):
        return self._value(min(step, self.decay_steps), self.noise(step))
