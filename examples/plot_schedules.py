"""Learning-rate schedules
=======================

Every schedule of :mod:`fastnn.schedules` over 1000 steps. A schedule is a callable ``step -> lr``; give one
to ``fastnn.Trainer(schedule=...)``, which sets the optimizer's ``lr`` before every step, or call it by
hand. The formulas are in the :doc:`schedules page </guide/schedules>` of the user guide.

    python examples/plot_schedules.py
"""
import matplotlib.pyplot as plt

import fastnn as fnn
import fastnn.plot

S = fnn.schedules
SCHEDULES = {
    "PiecewiseConstantDecay": S.PiecewiseConstantDecay(boundaries=[300, 600], values=[0.1, 0.01, 0.001]),
    "ExponentialDecay": S.ExponentialDecay(learning_rate=0.1, decay_steps=100, decay_rate=0.8),
    "ExponentialDecay, staircase": S.ExponentialDecay(learning_rate=0.1, decay_steps=100, decay_rate=0.8,
                                                      staircase=True),
    "NaturalExpDecay": S.NaturalExpDecay(learning_rate=0.1, decay_steps=100, decay_rate=0.3),
    "PolynomialDecay, power 2": S.PolynomialDecay(learning_rate=0.1, decay_steps=400, end_learning_rate=1e-3,
                                                  power=2.0),
    "PolynomialDecay, cycle": S.PolynomialDecay(learning_rate=0.1, decay_steps=300, end_learning_rate=1e-3,
                                                power=1.0, cycle=True),
    "CosineDecay": S.CosineDecay(learning_rate=0.1, decay_steps=1000, alpha=0.05),
    "LinearCosineDecay": S.LinearCosineDecay(learning_rate=0.1, decay_steps=1000, num_periods=3, beta=0.001),
    "NoisyLinearCosineDecay": S.NoisyLinearCosineDecay(learning_rate=0.1, decay_steps=1000, num_periods=3,
                                                       seed=0),
}

fig, axes = plt.subplots(3, 3, figsize=(12, 9), sharex=True)
for ax, (name, schedule) in zip(axes.flat, SCHEDULES.items()):
    fastnn.plot.schedule(schedule, steps=1000, ax=ax, title=name)
    print(f"{name:<28} lr(0) = {schedule(0):.4f}, lr(500) = {schedule(500):.5f}, lr(999) = {schedule(999):.5f}")
fig.tight_layout()
plt.show()
