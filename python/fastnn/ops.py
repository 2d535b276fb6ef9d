"""Low-level kernels: numpy in, numpy out, float32 or float64. The layers in fastnn.nn are built on these."""
from ._core import linear_forward, linear_backward, all_finite  # noqa: F401
