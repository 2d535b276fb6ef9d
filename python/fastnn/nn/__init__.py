"""Layers, activations, losses and containers. Arrays in and out are numpy.ndarray (float32 by default)."""
from .module import Module, Parameter, Sequential
from .linear import Linear, Identity, Flatten, Unflatten
from .dropout import Dropout
from .activations import *  # noqa: F401,F403  (each file lists its public names in __all__)
from .losses import *  # noqa: F401,F403
from . import activations as _activations, losses as _losses

__all__ = ["Module", "Parameter", "Sequential", "Linear", "Identity", "Flatten", "Unflatten", "Dropout",
           *_activations.__all__, *_losses.__all__]
