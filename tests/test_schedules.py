"""Learning-rate schedules: each against its formula, written out here, at several steps."""
import math

import numpy as np
import pytest

import fastnn as fnn
from fastnn import schedules as S


def test_piecewise_constant_boundaries_belong_to_the_earlier_value():
    s = S.PiecewiseConstantDecay(boundaries=[100, 200], values=[0.1, 0.01, 0.001])
    assert [s(t) for t in (0, 99, 100, 101, 200, 201, 10_000)] == [0.1, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    with pytest.raises(ValueError, match="len"):
        S.PiecewiseConstantDecay([1, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="increase"):
        S.PiecewiseConstantDecay([2, 1], [0.1, 0.2, 0.3])


@pytest.mark.parametrize("staircase", [False, True])
def test_exponential_decay(staircase):
    s = S.ExponentialDecay(learning_rate=0.1, decay_steps=100, decay_rate=0.96, staircase=staircase)
    for t in (0, 1, 50, 99, 100, 150, 1000):
        p = t // 100 if staircase else t / 100
        assert s(t) == pytest.approx(0.1 * 0.96 ** p, rel=1e-12)
    if staircase:
        assert s(99) == s(0) == 0.1 and s(100) == pytest.approx(0.096)
    else:
        assert s(50) == pytest.approx(0.1 * math.sqrt(0.96))


@pytest.mark.parametrize("staircase", [False, True])
def test_natural_exp_decay(staircase):
    s = S.NaturalExpDecay(learning_rate=0.1, decay_steps=100, decay_rate=0.5, staircase=staircase)
    for t in (0, 30, 100, 250):
        p = t // 100 if staircase else t / 100
        assert s(t) == pytest.approx(0.1 * math.exp(-0.5 * p), rel=1e-12)
    assert s(250) == pytest.approx(0.1 * math.exp(-1.0 if staircase else -1.25))


def test_polynomial_decay_without_cycle_stays_at_the_end_rate():
    s = S.PolynomialDecay(learning_rate=0.1, decay_steps=100, end_learning_rate=1e-4, power=2.0)
    for t in (0, 25, 50, 100):
        assert s(t) == pytest.approx((0.1 - 1e-4) * (1 - t / 100) ** 2 + 1e-4, rel=1e-12)
    assert s(100) == s(500) == pytest.approx(1e-4)


def test_polynomial_decay_cycle_restarts_with_a_longer_period():
    s = S.PolynomialDecay(learning_rate=0.1, decay_steps=100, end_learning_rate=0.0, power=1.0, cycle=True)
    assert s(0) == pytest.approx(0.1)                 # step 0: one period, not zero periods
    assert s(50) == pytest.approx(0.05)
    assert s(100) == pytest.approx(0.0)                # ceil(100/100) = 1 period: the end of the first cycle
    assert s(101) == pytest.approx(0.1 * (1 - 101 / 200))   # second cycle: T = 200
    assert s(250) == pytest.approx(0.1 * (1 - 250 / 300))


@pytest.mark.parametrize("alpha", [0.0, 0.2])
def test_cosine_decay_floor(alpha):
    s = S.CosineDecay(learning_rate=0.1, decay_steps=100, alpha=alpha)
    for t in (0, 10, 50, 90, 100, 400):
        tt = min(t, 100)
        assert s(t) == pytest.approx(0.1 * ((1 - alpha) * 0.5 * (1 + math.cos(math.pi * tt / 100)) + alpha))
    assert s(0) == pytest.approx(0.1)
    assert s(50) == pytest.approx(0.1 * (0.5 * (1 - alpha) + alpha))
    assert s(100) == s(1000) == pytest.approx(0.1 * alpha)


def linear_cosine(lr, T, t, num_periods, alpha, beta, noise=0.0):
    t = min(t, T)
    return lr * ((alpha + (T - t) / T + noise) * 0.5 * (1 + math.cos(2 * math.pi * num_periods * t / T)) + beta)


@pytest.mark.parametrize("num_periods,alpha,beta", [(0.5, 0.0, 0.001), (2.0, 0.1, 0.0)])
def test_linear_cosine_decay(num_periods, alpha, beta):
    s = S.LinearCosineDecay(learning_rate=0.1, decay_steps=100, num_periods=num_periods, alpha=alpha, beta=beta)
    for t in (0, 10, 25, 50, 75, 100, 150):
        assert s(t) == pytest.approx(linear_cosine(0.1, 100, t, num_periods, alpha, beta), abs=1e-15)
    assert s(0) == pytest.approx(0.1 * (1 + alpha + beta))
    assert s(100) == pytest.approx(0.1 * (alpha * 0.5 * (1 + math.cos(2 * math.pi * num_periods)) + beta))


def test_noisy_linear_cosine_decay_noise_variance_and_seed():
    kw = dict(learning_rate=0.1, decay_steps=100, initial_variance=1.0, variance_decay=0.55)
    s = S.NoisyLinearCosineDecay(seed=3, **kw)
    quiet = S.LinearCosineDecay(learning_rate=0.1, decay_steps=100)
    for t in (0, 5, 60):
        assert s(t) == pytest.approx(linear_cosine(0.1, 100, t, 0.5, 0.0, 0.001, s.noise(t)), abs=1e-15)
        assert s(t) != quiet(t)
    assert s(7) == s(7) == S.NoisyLinearCosineDecay(seed=3, **kw)(7)      # a pure function of the step
    assert S.NoisyLinearCosineDecay(seed=4, **kw)(7) != s(7)
    # noise standard deviation sqrt(initial_variance / (1 + t)^variance_decay), over many seeds
    for t in (0, 99):
        draws = np.array([S.NoisyLinearCosineDecay(seed=i, **kw).noise(t) for i in range(4000)])
        assert draws.std() == pytest.approx(math.sqrt(1.0 / (1 + t) ** 0.55), rel=0.05)
        assert abs(draws.mean()) < 0.05 * draws.std() * 2
    # zero variance: exactly the linear cosine schedule
    z = S.NoisyLinearCosineDecay(learning_rate=0.1, decay_steps=100, initial_variance=0.0, seed=1)
    assert [z(t) for t in (0, 30, 100)] == [quiet(t) for t in (0, 30, 100)]
    # seed=None: drawn from fastnn's generator, reproducible under manual_seed
    fnn.manual_seed(11)
    a = S.NoisyLinearCosineDecay(**kw)(5)
    fnn.manual_seed(11)
    assert S.NoisyLinearCosineDecay(**kw)(5) == a


def test_bad_arguments():
    with pytest.raises(ValueError, match="decay_steps"):
        S.ExponentialDecay(0.1, decay_steps=0, decay_rate=0.9)
    with pytest.raises(ValueError, match="step"):
        S.CosineDecay(0.1, 10)(-1)


def test_trainer_uses_a_schedule_per_optimizer_step():
    fnn.manual_seed(0)
    model = fnn.nn.Sequential(fnn.nn.Linear(3, 2))
    opt = fnn.optim.SGD(model.parameters(), lr=1.0)
    sched = S.ExponentialDecay(learning_rate=0.5, decay_steps=2, decay_rate=0.5, staircase=True)
    seen = []
    cb = fnn.callbacks.LambdaCallback(on_batch_end=lambda b, logs: seen.append(logs["lr"]))
    x = np.random.default_rng(0).standard_normal((20, 3)).astype(np.float32)
    y = np.arange(20) % 2
    fnn.Trainer(model, fnn.nn.CrossEntropyLoss(), opt, schedule=sched, callbacks=[cb]).fit(
        x, y, epochs=2, batch_size=4, verbose=0)
    assert seen == pytest.approx([0.5 * 0.5 ** (t // 2) for t in range(10)])
