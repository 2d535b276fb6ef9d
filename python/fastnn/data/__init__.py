"""Data helpers (SPEC D): preprocessing fitted on the training split and applied to any split."""
from .scalers import StandardScaler

__all__ = ["StandardScaler"]
