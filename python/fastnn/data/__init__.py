"""Data helpers (SPEC D): preprocessing fitted on the training split and applied to any split."""
from .scalers import StandardScaler

__all__ = ["StandardScaler"]
from .preprocessing import MinMaxScaler, LogTransform, PCA, ZCA

__all__ += ["MinMaxScaler", "LogTransform", "PCA", "ZCA"]
from . import transforms  # augmentation: fastnn.data.transforms.RandomCrop(...), ...

__all__ += ["transforms"]
from .batching import ArrayBatches, GeneratorBatches, BalancedSampler

__all__ += ["ArrayBatches", "GeneratorBatches", "BalancedSampler"]
