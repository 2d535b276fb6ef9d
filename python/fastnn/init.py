"""Weight initialisers, PyTorch's names: each fills an array or Parameter in place and returns it.

All draw from fastnn's generator, so `fastnn.manual_seed` makes them reproducible bit for bit.
"""
import math
import warnings

import numpy as np

from .random import generator


def _array(tensor):
    # An ndarray is filled itself (its own .data is a memoryview); a Parameter through its .data.
    data = tensor if isinstance(tensor, np.ndarray) else getattr(tensor, "data", tensor)
    if not isinstance(data, np.ndarray) or data.dtype.kind != "f":
        raise TypeError(f"init: expected a floating-point ndarray or Parameter, got {type(tensor).__name__}")
    if not data.flags.writeable:
        raise ValueError(f"init: the array of shape {data.shape} is read-only; pass a writeable array")
    return data


def _fill(tensor, values):
    data = _array(tensor)
    data[...] = values
    return tensor


def calculate_fans(shape):
    """``(fan_in, fan_out)`` of a weight shaped ``(out, in, *kernel)``.

    Linear weights are ``(out, in)``; convolution weights ``(out, in / groups, kH, kW)``, whose fans include
    the kernel's size.

    Parameters
    ----------
    shape : tuple of int
        The weight's shape.

    Returns
    -------
    tuple of int
        ``(in * prod(kernel), out * prod(kernel))``.

    Raises
    ------
    ValueError
        For fewer than 2 dimensions.

    Examples
    --------
    >>> from fastnn.init import calculate_fans
    >>> calculate_fans((10, 784)), calculate_fans((16, 3, 3, 3))
    ((784, 10), (27, 144))
    """
    shape = tuple(shape)
    if len(shape) < 2:
        raise ValueError(f"init: fan_in/fan_out need a weight with at least 2 dimensions, got shape {shape}")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def calculate_gain(nonlinearity, param=None):
    """The gain PyTorch recommends for a nonlinearity.

    ``relu`` √2, ``tanh`` 5/3, ``leaky_relu`` / ``prelu`` √(2 / (1 + slope²)), ``selu`` 3/4, and 1 for linear,
    identity, sigmoid and convolutions.

    Parameters
    ----------
    nonlinearity : str
        The nonlinearity's name, as in PyTorch.
    param : float, optional
        The negative slope of ``leaky_relu`` (default 0.01).

    Returns
    -------
    float
        The gain.

    Raises
    ------
    ValueError
        For an unknown name.

    Examples
    --------
    >>> from fastnn.init import calculate_gain
    >>> round(calculate_gain("relu"), 4), round(calculate_gain("tanh"), 4)
    (1.4142, 1.6667)
    """
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
    """Fill with zeros.

    A weight of 2 or more dimensions gets a :class:`UserWarning`: every unit would get the same value, its gradients
    would stay equal and symmetry would never break. Biases (1-D) do not warn.

    Parameters
    ----------
    tensor : Parameter or ndarray
        What to fill in place: a parameter (e.g. ``layer.weight``) or a writeable floating-point array.

    Returns
    -------
    Parameter or ndarray
        ``tensor``, filled.

    Raises
    ------
    TypeError
        If ``tensor`` is not a floating-point Parameter or ndarray.

    See Also
    --------
    ones_, constant_

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> _ = fnn.manual_seed(0)
    >>> w = fnn.nn.Parameter(np.empty((256, 128), np.float32))
    >>> b = fnn.init.zeros_(fnn.nn.Parameter(np.ones(4, np.float32)))
    >>> b.data
    array([0., 0., 0., 0.], dtype=float32)
    """
    _warn_constant(_array(tensor), "zeros_")
    return _fill(tensor, 0)


def ones_(tensor):
    """Fill with ones.

    Weights of 2 or more dimensions warn, as with :func:`zeros_`.

    Parameters
    ----------
    tensor : Parameter or ndarray
        What to fill in place: a parameter (e.g. ``layer.weight``) or a writeable floating-point array.

    Returns
    -------
    Parameter or ndarray
        ``tensor``, filled.

    Raises
    ------
    TypeError
        If ``tensor`` is not a floating-point Parameter or ndarray.

    See Also
    --------
    zeros_, constant_

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> _ = fnn.manual_seed(0)
    >>> fnn.init.ones_(fnn.nn.Parameter(np.zeros(3))).data
    array([1., 1., 1.])
    """
    _warn_constant(_array(tensor), "ones_")
    return _fill(tensor, 1)


def constant_(tensor, val):
    """Fill with a constant.

    Weights of 2 or more dimensions warn, as with :func:`zeros_`.

    Parameters
    ----------
    tensor : Parameter or ndarray
        What to fill in place: a parameter (e.g. ``layer.weight``) or a writeable floating-point array.
    val : float
        The value.

    Returns
    -------
    Parameter or ndarray
        ``tensor``, filled.

    Raises
    ------
    TypeError
        If ``tensor`` is not a floating-point Parameter or ndarray.

    See Also
    --------
    bias_constant_

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> _ = fnn.manual_seed(0)
    >>> fnn.init.constant_(fnn.nn.Parameter(np.zeros(2)), 0.5).data
    array([0.5, 0.5])
    """
    _warn_constant(_array(tensor), "constant_")
    return _fill(tensor, val)


def normal_(tensor, mean=0.0, std=1.0):
    """Fill from the normal distribution ``N(mean, std²)``.

    Draws from fastnn's generator: :func:`fastnn.manual_seed` makes it reproducible.

    Parameters
    ----------
    tensor : Parameter or ndarray
        What to fill in place: a parameter (e.g. ``layer.weight``) or a writeable floating-point array.
    mean : float, default 0.0
        The mean.
    std : float, default 1.0
        The standard deviation.

    Returns
    -------
    Parameter or ndarray
        ``tensor``, filled.

    Raises
    ------
    TypeError
        If ``tensor`` is not a floating-point Parameter or ndarray.

    See Also
    --------
    uniform_

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> _ = fnn.manual_seed(0)
    >>> w = fnn.nn.Parameter(np.empty((256, 128), np.float32))
    >>> w = fnn.init.normal_(w, std=0.01)       # the classic small init
    >>> bool(abs(w.data.std() - 0.01) < 1e-3)
    True
    """
    data = _array(tensor)
    return _fill(tensor, mean + std * generator().standard_normal(data.shape))


def uniform_(tensor, a=0.0, b=1.0):
    """Fill from the uniform distribution ``U(a, b)``.

    Parameters
    ----------
    tensor : Parameter or ndarray
        What to fill in place: a parameter (e.g. ``layer.weight``) or a writeable floating-point array.
    a : float, default 0.0
        Lower bound.
    b : float, default 1.0
        Upper bound.

    Returns
    -------
    Parameter or ndarray
        ``tensor``, filled.

    Raises
    ------
    TypeError
        If ``tensor`` is not a floating-point Parameter or ndarray.

    See Also
    --------
    normal_

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> _ = fnn.manual_seed(0)
    >>> w = fnn.nn.Parameter(np.empty((256, 128), np.float32))
    >>> w = fnn.init.uniform_(w, -0.1, 0.1)
    >>> bool(w.data.min() >= -0.1 and w.data.max() < 0.1)
    True
    """
    data = _array(tensor)
    return _fill(tensor, generator().uniform(a, b, data.shape))


def lecun_normal_(tensor):
    """LeCun normal: ``N(0, 1 / fan_in)``.

    Parameters
    ----------
    tensor : Parameter or ndarray
        What to fill in place: a parameter (e.g. ``layer.weight``) or a writeable floating-point array.

    Returns
    -------
    Parameter or ndarray
        ``tensor``, filled.

    Raises
    ------
    TypeError
        If ``tensor`` is not a floating-point Parameter or ndarray.
    ValueError
        If it has fewer than 2 dimensions (no fan-in).

    See Also
    --------
    lecun_uniform_, calculate_fans

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> _ = fnn.manual_seed(0)
    >>> w = fnn.nn.Parameter(np.empty((256, 128), np.float32))
    >>> w = fnn.init.lecun_normal_(w)
    >>> bool(abs(w.data.var() * 128 - 1) < 0.05)
    True
    """
    fan_in, _ = calculate_fans(_array(tensor).shape)
    return normal_(tensor, 0.0, math.sqrt(1.0 / fan_in))


def lecun_uniform_(tensor):
    """LeCun uniform: ``U(±√(3 / fan_in))``, the uniform with variance ``1 / fan_in``.

    Parameters
    ----------
    tensor : Parameter or ndarray
        What to fill in place: a parameter (e.g. ``layer.weight``) or a writeable floating-point array.

    Returns
    -------
    Parameter or ndarray
        ``tensor``, filled.

    Raises
    ------
    TypeError
        If ``tensor`` is not a floating-point Parameter or ndarray.
    ValueError
        If it has fewer than 2 dimensions (no fan-in).

    See Also
    --------
    lecun_normal_

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> _ = fnn.manual_seed(0)
    >>> w = fnn.nn.Parameter(np.empty((256, 128), np.float32))
    >>> w = fnn.init.lecun_uniform_(w)
    >>> bool(abs(w.data).max() <= np.sqrt(3 / 128))
    True
    """
    fan_in, _ = calculate_fans(_array(tensor).shape)
    bound = math.sqrt(3.0 / fan_in)
    return uniform_(tensor, -bound, bound)


def xavier_normal_(tensor, gain=1.0):
    """Glorot normal: ``N(0, gain² · 2 / (fan_in + fan_out))``.

    Parameters
    ----------
    tensor : Parameter or ndarray
        What to fill in place: a parameter (e.g. ``layer.weight``) or a writeable floating-point array.
    gain : float, default 1.0
        Scale, e.g. :func:`calculate_gain`.

    Returns
    -------
    Parameter or ndarray
        ``tensor``, filled.

    Raises
    ------
    TypeError
        If ``tensor`` is not a floating-point Parameter or ndarray.
    ValueError
        If it has fewer than 2 dimensions (no fan-in).

    See Also
    --------
    xavier_uniform_

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> _ = fnn.manual_seed(0)
    >>> w = fnn.nn.Parameter(np.empty((256, 128), np.float32))
    >>> w = fnn.init.xavier_normal_(w)
    >>> bool(abs(w.data.var() * (128 + 256) / 2 - 1) < 0.05)
    True
    """
    fan_in, fan_out = calculate_fans(_array(tensor).shape)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))


def xavier_uniform_(tensor, gain=1.0):
    """Glorot uniform: ``U(±gain · √(6 / (fan_in + fan_out)))``.

    Parameters
    ----------
    tensor : Parameter or ndarray
        What to fill in place: a parameter (e.g. ``layer.weight``) or a writeable floating-point array.
    gain : float, default 1.0
        Scale, e.g. :func:`calculate_gain`.

    Returns
    -------
    Parameter or ndarray
        ``tensor``, filled.

    Raises
    ------
    TypeError
        If ``tensor`` is not a floating-point Parameter or ndarray.
    ValueError
        If it has fewer than 2 dimensions (no fan-in).

    See Also
    --------
    xavier_normal_

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> _ = fnn.manual_seed(0)
    >>> w = fnn.nn.Parameter(np.empty((256, 128), np.float32))
    >>> w = fnn.init.xavier_uniform_(w, gain=fnn.init.calculate_gain('tanh'))
    >>> bool(abs(w.data).max() <= 5 / 3 * np.sqrt(6 / 384))
    True
    """
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
    """He normal: ``N(0, gain² / fan)``, ``gain = calculate_gain(nonlinearity, a)``.

    Parameters
    ----------
    tensor : Parameter or ndarray
        What to fill in place: a parameter (e.g. ``layer.weight``) or a writeable floating-point array.
    a : float, default 0.0
        Negative slope of the leaky ReLU / PReLU that follows (0: ReLU, variance 2 / fan).
    mode : {"fan_in", "fan_out"}, default "fan_in"
        Preserve the variance of the forward pass (fan_in) or of the backward pass (fan_out).
    nonlinearity : str, default "leaky_relu"
        The nonlinearity after the layer.

    Returns
    -------
    Parameter or ndarray
        ``tensor``, filled.

    Raises
    ------
    TypeError
        If ``tensor`` is not a floating-point Parameter or ndarray.
    ValueError
        If it has fewer than 2 dimensions (no fan-in), or for an unknown ``mode`` or nonlinearity.

    See Also
    --------
    kaiming_uniform_, calculate_gain

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> _ = fnn.manual_seed(0)
    >>> w = fnn.nn.Parameter(np.empty((256, 128), np.float32))
    >>> w = fnn.init.kaiming_normal_(w, nonlinearity='relu')
    >>> bool(abs(w.data.var() * 128 / 2 - 1) < 0.05)
    True
    """
    return normal_(tensor, 0.0, _kaiming_std(tensor, a, mode, nonlinearity))


def kaiming_uniform_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
    """He uniform: ``U(±gain · √(3 / fan))``, the uniform with the variance of :func:`kaiming_normal_`.

    Parameters
    ----------
    tensor : Parameter or ndarray
        What to fill in place: a parameter (e.g. ``layer.weight``) or a writeable floating-point array.
    a : float, default 0.0
        Negative slope of the leaky ReLU / PReLU that follows.
    mode : {"fan_in", "fan_out"}, default "fan_in"
        Which fan the variance is scaled by.
    nonlinearity : str, default "leaky_relu"
        The nonlinearity after the layer.

    Returns
    -------
    Parameter or ndarray
        ``tensor``, filled.

    Raises
    ------
    TypeError
        If ``tensor`` is not a floating-point Parameter or ndarray.
    ValueError
        If it has fewer than 2 dimensions (no fan-in), or for an unknown ``mode`` or nonlinearity.

    See Also
    --------
    kaiming_normal_

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> _ = fnn.manual_seed(0)
    >>> w = fnn.nn.Parameter(np.empty((256, 128), np.float32))
    >>> w = fnn.init.kaiming_uniform_(w, a=np.sqrt(5))     # PyTorch's default for Linear and Conv
    >>> bool(abs(w.data).max() <= 1 / np.sqrt(128))
    True
    """
    bound = math.sqrt(3.0) * _kaiming_std(tensor, a, mode, nonlinearity)
    return uniform_(tensor, -bound, bound)


def sparse_(tensor, k=10, std=1.0):
    """Martens' sparse initialisation: each output unit gets ``k`` non-zero incoming weights from ``N(0, std²)``.

    Parameters
    ----------
    tensor : Parameter or ndarray
        What to fill in place: a parameter (e.g. ``layer.weight``) or a writeable floating-point array.
    k : int, default 10
        Non-zero weights per output unit (row); capped at the number of inputs.
    std : float, default 1.0
        Standard deviation of the non-zero weights.

    Returns
    -------
    Parameter or ndarray
        ``tensor``, filled.

    Raises
    ------
    TypeError
        If ``tensor`` is not a floating-point Parameter or ndarray.
    ValueError
        If it has fewer than 2 dimensions (no fan-in).

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> _ = fnn.manual_seed(0)
    >>> w = fnn.nn.Parameter(np.empty((256, 128), np.float32))
    >>> w = fnn.init.sparse_(w, k=15)
    >>> set((w.data != 0).sum(axis=1).tolist())
    {15}
    """
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
    """A small positive bias (0.01 by default), sometimes used with ReLU so that units start active.

    Biases need no symmetry breaking, so this never warns.

    Parameters
    ----------
    tensor : Parameter or ndarray
        What to fill in place: a parameter (e.g. ``layer.weight``) or a writeable floating-point array.
    val : float, default 0.01
        The value.

    Returns
    -------
    Parameter or ndarray
        ``tensor``, filled.

    Raises
    ------
    TypeError
        If ``tensor`` is not a floating-point Parameter or ndarray.

    See Also
    --------
    constant_

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> _ = fnn.manual_seed(0)
    >>> fnn.init.bias_constant_(fnn.nn.Linear(4, 3).bias).data
    array([0.01, 0.01, 0.01], dtype=float32)
    """
    return _fill(tensor, val)


def default_bias_(bias, fan_in):
    """PyTorch's default bias initialisation for Linear and Conv layers: ``U(±1 / √fan_in)``.

    Parameters
    ----------
    bias : Parameter
        The bias, filled in place.
    fan_in : int
        The layer's fan-in (0 gives zeros).

    Returns
    -------
    Parameter
        ``bias``, filled.

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> b = fnn.init.default_bias_(fnn.nn.Parameter(np.empty(8, np.float32)), fan_in=16)
    >>> bool(abs(b.data).max() <= 0.25)
    True
    """
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return uniform_(bias, -bound, bound)
