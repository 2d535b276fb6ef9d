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
    """Base class of the learning-rate schedules: a callable ``step -> lr``.

    Subclasses implement ``lr(step)`` for a float ``step >= 0``; calling the schedule checks the step and
    returns a Python float.

    Raises
    ------
    ValueError
        When called with a negative or NaN step.

    See Also
    --------
    fastnn.Trainer : takes a schedule as ``schedule=`` and sets ``optimizer.lr`` before every step.

    Examples
    --------
    >>> from fastnn.schedules import LearningRateSchedule
    >>> class Halving(LearningRateSchedule):
    ...     def lr(self, step):
    ...         return 0.1 * 0.5 ** (step // 10)
    >>> Halving()(25)
    0.025
    """

    def __call__(self, step):
        return float(self.lr(_step(type(self).__name__, step)))

    def lr(self, step):
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class PiecewiseConstantDecay(LearningRateSchedule):
    """A constant learning rate per interval of steps.

    ``values[0]`` while ``step <= boundaries[0]``, ``values[i]`` while
    ``boundaries[i-1] < step <= boundaries[i]``, and ``values[-1]`` after the last boundary.

    Parameters
    ----------
    boundaries : sequence of float
        Increasing step boundaries.
    values : sequence of float
        The rates, one more than there are boundaries.

    Raises
    ------
    ValueError
        If ``len(values) != len(boundaries) + 1`` or the boundaries do not increase.

    See Also
    --------
    ExponentialDecay, CosineDecay

    Examples
    --------
    >>> from fastnn.schedules import PiecewiseConstantDecay
    >>> s = PiecewiseConstantDecay(boundaries=[100, 200], values=[0.1, 0.01, 0.001])
    >>> s(0), s(100), s(101), s(500)
    (0.1, 0.1, 0.01, 0.001)
    """

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
    """Exponential decay: ``learning_rate * decay_rate ** (step / decay_steps)``.

    Parameters
    ----------
    learning_rate : float
        The rate at step 0.
    decay_steps : float
        Steps over which the rate is multiplied by ``decay_rate`` once; > 0.
    decay_rate : float
        The factor per ``decay_steps``.
    staircase : bool, default False
        Use ``floor(step / decay_steps)``: the rate drops in steps.

    Raises
    ------
    ValueError
        If ``decay_steps <= 0``.

    See Also
    --------
    NaturalExpDecay : the same with ``exp(-decay_rate * step / decay_steps)``.

    Examples
    --------
    >>> from fastnn.schedules import ExponentialDecay
    >>> s = ExponentialDecay(learning_rate=0.1, decay_steps=100, decay_rate=0.5)
    >>> s(0), s(100), round(s(150), 6)
    (0.1, 0.05, 0.035355)
    >>> ExponentialDecay(0.1, 100, 0.5, staircase=True)(150)
    0.05
    """

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
    """Natural exponential decay: ``learning_rate * exp(-decay_rate * step / decay_steps)``.

    TensorFlow's ``natural_exp_decay``.

    Parameters
    ----------
    learning_rate : float
        The rate at step 0.
    decay_steps : float
        The step scale; > 0.
    decay_rate : float
        The decay constant per ``decay_steps``.
    staircase : bool, default False
        Use ``floor(step / decay_steps)``.

    Raises
    ------
    ValueError
        If ``decay_steps <= 0``.

    See Also
    --------
    ExponentialDecay

    Examples
    --------
    >>> import math
    >>> from fastnn.schedules import NaturalExpDecay
    >>> s = NaturalExpDecay(learning_rate=0.1, decay_steps=100, decay_rate=1.0)
    >>> math.isclose(s(100), 0.1 / math.e)
    True
    """

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
    """Polynomial decay: ``(learning_rate - end_learning_rate) * (1 - t / T) ** power + end_learning_rate``.

    With ``cycle=False``, ``t = min(step, decay_steps)`` and ``T = decay_steps``: the rate stays at
    ``end_learning_rate`` after ``decay_steps``. With ``cycle=True``, ``t = step`` and
    ``T = decay_steps * ceil(step / decay_steps)`` (one period at step 0), so the decay restarts from a lower
    peak every ``decay_steps`` steps.

    Parameters
    ----------
    learning_rate : float
        The rate at step 0.
    decay_steps : float
        Length of the decay; > 0.
    end_learning_rate : float, default 1e-4
        The rate reached at ``decay_steps``.
    power : float, default 1.0
        The exponent; 1 is a linear decay.
    cycle : bool, default False
        Restart the decay every ``decay_steps`` steps.

    Raises
    ------
    ValueError
        If ``decay_steps <= 0``.

    See Also
    --------
    CosineDecay

    Examples
    --------
    >>> from fastnn.schedules import PolynomialDecay
    >>> s = PolynomialDecay(learning_rate=0.1, decay_steps=100, end_learning_rate=0.0, power=1.0)
    >>> s(0), s(50), s(100), s(1000)
    (0.1, 0.05, 0.0, 0.0)
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
    r"""Cosine decay: a half cosine from ``learning_rate`` down to ``alpha * learning_rate``.

    .. math:: \mathrm{lr}(t) = \mathrm{lr}_0 \left((1 - \alpha) \tfrac12 (1 + \cos(\pi t / T)) + \alpha\right),
              \quad t = \min(\mathrm{step}, T)

    Parameters
    ----------
    learning_rate : float
        The rate at step 0.
    decay_steps : float
        ``T``, the length of the decay; > 0.
    alpha : float, default 0.0
        The floor, as a fraction of ``learning_rate``.

    Raises
    ------
    ValueError
        If ``decay_steps <= 0``.

    See Also
    --------
    LinearCosineDecay, PolynomialDecay

    Examples
    --------
    >>> from fastnn.schedules import CosineDecay
    >>> s = CosineDecay(learning_rate=0.1, decay_steps=100, alpha=0.1)
    >>> s(0), round(s(50), 6), round(s(100), 6)
    (0.1, 0.055, 0.01)
    """

    def __init__(self, learning_rate, decay_steps, alpha=0.0):
        self.learning_rate = float(learning_rate)
        self.decay_steps = _positive("CosineDecay", "decay_steps", decay_steps)
        self.alpha = float(alpha)

    def lr(self, step):
        t = min(step, self.decay_steps)
        cosine = 0.5 * (1 + math.cos(math.pi * t / self.decay_steps))
        return self.learning_rate * ((1 - self.alpha) * cosine + self.alpha)


class LinearCosineDecay(LearningRateSchedule):
    r"""Linear cosine decay (TensorFlow's ``linear_cosine_decay``).

    .. math:: \mathrm{lr}(t) = \mathrm{lr}_0 \left(\left(\alpha + \frac{T - t}{T}\right)
              \tfrac12 \left(1 + \cos\frac{2\pi\, n\, t}{T}\right) + \beta\right),
              \quad t = \min(\mathrm{step}, T)

    Parameters
    ----------
    learning_rate : float
        The base rate.
    decay_steps : float
        ``T``, the length of the decay; > 0.
    num_periods : float, default 0.5
        ``n``, the number of cosine periods over ``T``.
    alpha : float, default 0.0
        Added to the linear term.
    beta : float, default 0.001
        The floor, as a fraction of ``learning_rate``.

    Raises
    ------
    ValueError
        If ``decay_steps <= 0``.

    See Also
    --------
    NoisyLinearCosineDecay, CosineDecay

    Examples
    --------
    >>> from fastnn.schedules import LinearCosineDecay
    >>> s = LinearCosineDecay(learning_rate=0.1, decay_steps=100)
    >>> round(s(0), 6), round(s(100), 6)
    (0.1001, 0.0001)
    """

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
    """Linear cosine decay with Gaussian noise in the linear term (TensorFlow's ``noisy_linear_cosine_decay``).

    As :class:`LinearCosineDecay`, with noise drawn from ``N(0, initial_variance / (1 + t) ** variance_decay)``
    added to ``(T - t) / T``. The noise at step ``t`` comes from ``numpy.random.default_rng((seed, t))``, so
    the schedule is a pure function of the step.

    Parameters
    ----------
    learning_rate : float
        The base rate.
    decay_steps : float
        ``T``, the length of the decay; > 0.
    initial_variance : float, default 1.0
        The noise variance at step 0; >= 0.
    variance_decay : float, default 0.55
        How fast the noise variance decays.
    num_periods : float, default 0.5
        Cosine periods over ``T``.
    alpha : float, default 0.0
        Added to the linear term.
    beta : float, default 0.001
        The floor, as a fraction of ``learning_rate``.
    seed : int or None, default None
        Seed of the noise; ``None`` draws one at construction from fastnn's generator
        (:func:`fastnn.manual_seed` makes it reproducible).

    Raises
    ------
    ValueError
        If ``decay_steps <= 0``, ``initial_variance < 0`` or ``seed < 0``.

    See Also
    --------
    LinearCosineDecay

    Examples
    --------
    >>> from fastnn.schedules import NoisyLinearCosineDecay
    >>> s = NoisyLinearCosineDecay(learning_rate=0.1, decay_steps=100, seed=0)
    >>> s(10) == s(10)          # a pure function of the step
    True
    >>> s(10) != NoisyLinearCosineDecay(learning_rate=0.1, decay_steps=100, seed=1)(10)
    True
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
        """The noise added to the linear term at ``step``.

        Parameters
        ----------
        step : float
            The optimizer step.

        Returns
        -------
        float
            A draw from ``N(0, initial_variance / (1 + t) ** variance_decay)``, ``t = min(step, decay_steps)``.
        """
        t = min(float(step), self.decay_steps)
        std = math.sqrt(self.initial_variance / (1 + t) ** self.variance_decay)
        return std * float(np.random.default_rng((self._seed, int(step))).standard_normal())

    def lr(self, step):
        return self._value(min(step, self.decay_steps), self.noise(step))
