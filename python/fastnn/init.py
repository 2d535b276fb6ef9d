"""Weight initialisers, PyTorch's names: each fills an array or Parameter in place and returns it.

All draw from fastnn's generator, so `fastnn.manual_seed` makes them reproducible bit for bit.
"""
import math
import warnings

import numpy as np

from .random import generator


def _array(tensor):
    data = getattr(tensor, "data", tensor)
    if not isinstance(data, np.ndarray) or data.dtype.kind != "f":
        raise TypeError(f"init: expected a floating-point ndarray or Parameter, got {type(tensor).__name__}")
    return data


def _fill(tensor, values):
    data = _array(tensor)
    data[...] = values
    return tensor


def calculate_fans(shape):
    """(fan_in, fan_out) of a weight shaped [out, in, *kernel] (Linear: [out, in]; Conv: [out, in/g, kh, kw])."""
    shape = tuple(shape)
    if len(shape) < 2:
        raise ValueError(f"init: fan_in/fan_out need a weight with at least 2 dimensions, got shape {shape}")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def calculate_gain(nonlinearity, param=None):
    """The gain PyTorch uses for each nonlinearity (relu √2, tanh 5/3, leaky_relu √(2/(1+a²)), selu 3/4)."""
    linear = ("linear", "identity", "sigmoid", "conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d")
    if nonlinearity in linear:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity in ("leaky_relu", "prelu"):
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unknown nonlinearity {nonlinearity!r}")


def _warn_constant(data, what):
    if data.ndim >= 2:
        warnings.warn(f"init.{what}: every unit of this weight gets the same value, so their gradients stay "
                      "equal and symmetry is never broken; use a random initialiser for weights",
                      UserWarning, stacklevel=3)


def zeros_(tensor):
    _warn_constant(_array(tensor), "zeros_")
    return _fill(tensor, 0)


def ones_(tensor):
    _warn_constant(_array(tensor), "ones_")
    return _fill(tensor, 1)


def constant_(tensor, val):
    _warn_constant(_array(tensor), "constant_")
    return _fill(tensor, val)


def normal_(tensor, mean=0.0, std=1.0):
    """N(mean, std²); the classic small init is normal_(w, std=0.01)."""
    data = _array(tensor)
    return _fill(tensor, mean + std * generator().standard_normal(data.shape))


def uniform_(tensor, a=0.0, b=1.0):
    data = _array(tensor)
    return _fill(tensor, generator().uniform(a, b, data.shape))


def lecun_normal_(tensor):
    """N(0, 1/fan_in)."""
    fan_in, _ = calculate_fans(_array(tensor).shape)
    return normal_(tensor, 0.0, math.sqrt(1.0 / fan_in))


def lecun_uniform_(tensor):
    """U(±√(3/fan_in)), the uniform with variance 1/fan_in."""
    fan_in, _ = calculate_fans(_array(tensor).shape)
    bound = math.sqrt(3.0 / fan_in)
    return uniform_(tensor, -bound, bound)


def xavier_normal_(tensor, gain=1.0):
    """Glorot: N(0, gain²·2/(fan_in+fan_out))."""
    fan_in, fan_out = calculate_fans(_array(tensor).shape)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))


def xavier_uniform_(tensor, gain=1.0):
    """Glorot: U(±gain·√(6/(fan_in+fan_out)))."""
    fan_in, fan_out = calculate_fans(_array(tensor).shape)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound)


def _kaiming_std(tensor, a, mode, nonlinearity):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"kaiming init: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = calculate_fans(_array(tensor).shape)
    fan = fan_in if mode == "fan_in" else fan_out
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_normal_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
    """He: N(0, gain²/fan). For leaky ReLU/PReLU with slope a the variance is 2/((1+a²)·fan);
    with a=0 it is 2/fan (ReLU)."""
    return normal_(tensor, 0.0, _kaiming_std(tensor, a, mode, nonlinearity))


def kaiming_uniform_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
    """He: U(±gain·√(3/fan)), the uniform with the same variance as kaiming_normal_."""
    bound = math.sqrt(3.0) * _kaiming_std(tensor, a, mode, nonlinearity)
    return uniform_(tensor, -bound, bound)


def sparse_(tensor, k=10, std=1.0):
    """Martens' sparse init: each output unit (row) gets k non-zero incoming weights drawn from N(0, std²);
    the rest are zero. k is capped at the number of inputs."""
    data = _array(tensor)
    if data.ndim < 2:
        raise ValueError(f"sparse_: expected a weight with at least 2 dimensions, got shape {data.shape}")
    rows = data.reshape(data.shape[0], -1)
    n_in = rows.shape[1]
    k = min(int(k), n_in)
    rng = generator()
    values = np.zeros_like(rows)
    for r in range(rows.shape[0]):
        cols = rng.choice(n_in, size=k, replace=False)
        values[r, cols] = std * rng.standard_normal(k)
    return _fill(tensor, values.reshape(data.shape))


def bias_constant_(tensor, val=0.01):
    """A small positive bias (0.01), sometimes used with ReLU so units start active. Biases need no
    symmetry breaking, so this never warns."""
    return _fill(tensor, val)


def default_bias_(bias, fan_in):
    """PyTorch's default for Linear/Conv biases: U(±1/√fan_in)."""
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return uniform_(bias, -bound, bound)
