"""Input validation shared by layers: turn user arrays into what kernels need, or raise a clear error.

Errors name the layer (its repr, e.g. `Linear(784, 10)`) and the shapes involved.
"""
import numpy as np

FLOAT_DTYPES = (np.float32, np.float64)


def as_float_array(module, x, dtype, name="input"):
    """Return x as a C-contiguous array of `dtype`. Accepts float16/32/64 arrays of any layout, read-only
    included (copying only when needed); rejects non-arrays and non-floating dtypes with a TypeError."""
    if type(x) is np.ndarray and x.dtype == dtype and x.flags.c_contiguous:
        return x  # the common case: no copy, no further checks
    if not isinstance(x, np.ndarray):
        if isinstance(x, (list, tuple, int, float, np.number)):
            x = np.asarray(x)
        else:
            raise TypeError(f"{module!r}: {name} must be a numpy.ndarray, got {type(x).__name__}")
    if x.dtype.kind != "f":
        raise TypeError(f"{module!r}: {name} must be a floating-point array (float32 or float64), "
                        f"got dtype {x.dtype} with shape {x.shape}")
    return np.ascontiguousarray(x, dtype=dtype)


def module_dtype(module, x):
    """The dtype a parameter-free layer computes in: its input's, if float32/float64, else float32."""
    dt = getattr(x, "dtype", None)
    return dt if dt in FLOAT_DTYPES else np.dtype(np.float32)


def require_forward(module, cached):
    if cached is None:
        raise ValueError(f"{module!r}: backward() called before forward()")


def check_grad_shape(module, grad, expected_shape):
    if grad.shape != tuple(expected_shape):
        raise ValueError(f"{module!r}: grad_output has shape {grad.shape}, "
                         f"but the forward output had shape {tuple(expected_shape)}")
