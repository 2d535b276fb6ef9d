"""Draws every learning-rate schedule of fastnn.schedules into docs/guide/img/
(run: python docs/guide/make_schedule_plots.py). The PNGs are committed; docs/guide/schedules.md, a page of the
documentation site, shows them."""
import os

import fastnn as fnn
import fastnn.plot

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "img")
S = fnn.schedules
SCHEDULES = {
    "piecewise_constant": S.PiecewiseConstantDecay(boundaries=[300, 600], values=[0.1, 0.01, 0.001]),
    "exponential": S.ExponentialDecay(learning_rate=0.1, decay_steps=100, decay_rate=0.8),
    "exponential_staircase": S.ExponentialDecay(learning_rate=0.1, decay_steps=100, decay_rate=0.8, staircase=True),
    "natural_exp": S.NaturalExpDecay(learning_rate=0.1, decay_steps=100, decay_rate=0.3),
    "polynomial": S.PolynomialDecay(learning_rate=0.1, decay_steps=400, end_learning_rate=1e-3, power=2.0),
    "polynomial_cycle": S.PolynomialDecay(learning_rate=0.1, decay_steps=300, end_learning_rate=1e-3, power=1.0,
                                          cycle=True),
    "cosine": S.CosineDecay(learning_rate=0.1, decay_steps=1000, alpha=0.05),
    "linear_cosine": S.LinearCosineDecay(learning_rate=0.1, decay_steps=1000, num_periods=3, alpha=0.0, beta=0.001),
    "noisy_linear_cosine": S.NoisyLinearCosineDecay(learning_rate=0.1, decay_steps=1000, initial_variance=1.0,
                                                    variance_decay=0.55, num_periods=3, seed=0),
}

if __name__ == "__main__":
    os.makedirs(HERE, exist_ok=True)
    for name, schedule in SCHEDULES.items():
        fastnn.plot.schedule(schedule, steps=1000, path=os.path.join(HERE, f"schedule_{name}.png"), title=name)
    print(f"wrote {len(SCHEDULES)} plots to {HERE}")
