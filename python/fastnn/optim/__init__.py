"""Optimizers with PyTorch's classes, names, defaults and update rules. Each step updates all parameters in
one fused C++ call (fastnn.ops.sgd_step, adam_step, ...).

    opt = fastnn.optim.Adam(model.parameters(), lr=1e-3)
    model.backward(loss.backward()); opt.step(); opt.zero_grad()
"""
from .optimizer import Optimizer
from .sgd import SGD
from .adam import Adam, AdamW
from .rmsprop import RMSprop
from .adagrad import Adagrad
from .rprop import Rprop

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Rprop"]
from .lbfgs import LBFGS; __all__ += ["LBFGS"]  # noqa: E402,E702  (full-batch L-BFGS, closure interface)
