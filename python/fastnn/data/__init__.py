"""Data helpers: preprocessing fitted on the training split and applied to any split; augmentation
(fastnn.data.transforms); batching over arrays and over generators, label-balanced sampling."""
from .scalers import StandardScaler
from .preprocessing import MinMaxScaler, LogTransform, PCA, ZCA
from .batching import ArrayBatches, GeneratorBatches, BalancedSampler
from . import transforms

__all__ = ["StandardScaler", "MinMaxScaler", "LogTransform", "PCA", "ZCA", "ArrayBatches", "GeneratorBatches",
           "BalancedSampler", "transforms"]
