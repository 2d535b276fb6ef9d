"""Activations over kernels/activations.hpp: PyTorch's names, arguments and defaults.

Each forward is one C++ call; it caches what backward needs (the input, or the output for Sigmoid, Tanh,
Softmax and LogSoftmax). Parameter-free activations compute in their input's dtype when it is float32 or
float64 (float32 otherwise); PReLU and Maxout compute in their parameters' dtype. Derivatives at a kink take
the left limit (ReLU'(0) = 0, ReLU6'(6) = 1). `inplace` is accepted for PyTorch compatibility and ignored:
outputs are always new arrays.
"""
import math

import numpy as np

from .. import ops
from ._checks import as_float_array, check_grad_shape, module_dtype, require_forward
from .linear import Linear
from .module import LayerSpec, Module, Parameter

__all__ = ["ReLU", "ReLU6", "LeakyReLU", "PReLU", "ELU", "SELU", "Sigmoid", "Hardsigmoid", "Tanh", "Softmax",
           "LogSoftmax", "Softplus", "Softsign", "SiLU", "Threshold", "Maxout", "GELU"]

_Kind = ops.Activation
_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)
_INF = math.inf
_act_forward, _act_backward = ops.activation_forward, ops.activation_backward


def _input(module, x):
    """x ready for a kernel: the array itself in the common case, else a converted copy (or a TypeError)."""
    if type(x) is np.ndarray and x.flags.c_contiguous:
        dt = x.dtype
        if dt == _F32 or dt == _F64:
            return x
    return as_float_array(module, x, module_dtype(module, x))


def _grad(module, g, saved):
    """grad_output as a C-contiguous array of the forward's dtype and shape, or a ValueError/TypeError."""
    if not (type(g) is np.ndarray and g.dtype == saved.dtype and g.flags.c_contiguous):
        g = as_float_array(module, g, saved.dtype, "grad_output")
    if g.shape != saved.shape:
        check_grad_shape(module, g, saved.shape)
    return g


def _number(module_name, name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{module_name}: {name} must be a number, got {value!r}")
    return float(value)


def _cap(module_name, max_value):
    """The kernel's cap for an optional max_value: +inf for None."""
    if max_value is None:
        return _INF
    if isinstance(max_value, bool):
        raise TypeError(f"{module_name}: max_value must be a number or None, got {max_value!r} "
                        "(PyTorch's inplace flag is the keyword argument inplace=...)")
    cap = _number(module_name, "max_value", max_value)
    if not cap >= 0:
        raise ValueError(f"{module_name}: max_value must be >= 0, got {max_value}")
    return cap


def _inplace_repr(inplace):
    return "inplace=True" if inplace else ""


class _Elementwise(Module):
    """An element-wise activation: kernel kind plus its two parameters a, b (see kernels/activations.hpp)."""

    _kind = None

    def __init__(self, a=0.0, b=0.0, inplace=False):
        super().__init__()
        self.inplace = bool(inplace)
        self._a, self._b = float(a), float(b)
        self._uses_output = ops.activation_backward_uses_output(self._kind)
        self._saved = None

    def forward(self, x):
        x = _input(self, x)
        y = _act_forward(self._kind, x, self._a, self._b)
        # Plain dict store: Module.__setattr__ (parameter/module registration) is not needed on the hot path.
        self.__dict__["_saved"] = y if self._uses_output else x
        return y

    def backward(self, grad_output):
        saved = self._saved
        if saved is None:
            require_forward(self, saved)
        return _act_backward(self._kind, saved, _grad(self, grad_output, saved), self._a, self._b)

    def describe(self):
        """kernel: the ops.Activation kind; a, b: its parameters (see kernels/activations.hpp)."""
        return LayerSpec("activation", {"name": type(self).__name__, "kernel": self._kind, "a": self._a,
                                        "b": self._b}, {})

    def extra_repr(self):
        return _inplace_repr(self.inplace)


class ReLU(_Elementwise):
    r"""Rectified linear unit ``max(0, x)``, optionally capped at ``max_value``.

    .. math:: y = \min(\max(0, x), \text{max\_value})

    ``ReLU(max_value=6)`` is ``ReLU6`` (Keras's cap). The derivative at 0 is 0 (the left limit).

    Parameters
    ----------
    max_value : float or None, default None
        Upper cap, >= 0; None for no cap.
    inplace : bool, default False
        Keyword-only; accepted for PyTorch compatibility and ignored (outputs are new arrays).

    Shape
    -----
    - Input: any shape ``(*)``, float32 or float64 (other dtypes compute in float32).
    - Output: ``(*)``, the input's shape and dtype.
    - Parameters: none.

    Raises
    ------
    TypeError
        For a ``max_value`` that is not a number (e.g. PyTorch's ``ReLU(True)``: pass ``inplace=True``).
    ValueError
        For a negative ``max_value``.

    See Also
    --------
    ReLU6, LeakyReLU, fastnn.nn.functional.relu

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> relu = fnn.nn.ReLU()
    >>> relu(np.array([-2.0, 0.0, 3.0]))
    array([0., 0., 3.])
    >>> relu.backward(np.ones(3))
    array([0., 0., 1.])
    >>> fnn.nn.ReLU(max_value=2.0)(np.array([-1.0, 1.0, 5.0]))
    array([0., 1., 2.])
    """

    _kind = _Kind.relu

    def __init__(self, max_value=None, *, inplace=False):
        cap = _cap("ReLU", max_value)
        super().__init__(0.0, cap, inplace)
        self.max_value = None if max_value is None else cap

    def extra_repr(self):
        parts = [] if self.max_value is None else [f"max_value={self.max_value}"]
        return ", ".join(parts + ([_inplace_repr(True)] if self.inplace else []))


class ReLU6(_Elementwise):
    """ReLU capped at 6: ``min(max(0, x), 6)``.

    The derivative is 1 on (0, 6] (left limits at both kinks).

    Parameters
    ----------
    inplace : bool, default False
        Accepted for PyTorch compatibility and ignored.

    Shape
    -----
    - Input: any shape ``(*)``, float32 or float64 (other dtypes compute in float32).
    - Output: ``(*)``, the input's shape and dtype.
    - Parameters: none.

    See Also
    --------
    ReLU, Hardsigmoid

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> fnn.nn.ReLU6()(np.array([-1.0, 3.0, 8.0]))
    array([0., 3., 6.])
    """

    _kind = _Kind.relu

    def __init__(self, inplace=False):
        super().__init__(0.0, 6.0, inplace)


class LeakyReLU(_Elementwise):
    r"""Leaky ReLU: ``x`` for x > 0, ``negative_slope * x`` otherwise; capped at ``max_value`` when given.

    .. math:: y = \begin{cases} x & x > 0 \\ \text{negative\_slope} \cdot x & x \le 0 \end{cases}

    Parameters
    ----------
    negative_slope : float, default 0.01
        Slope for x <= 0.
    inplace : bool, default False
        Accepted for PyTorch compatibility and ignored.
    max_value : float or None, default None
        Keyword-only upper cap (Keras's), >= 0.

    Shape
    -----
    - Input: any shape ``(*)``, float32 or float64 (other dtypes compute in float32).
    - Output: ``(*)``, the input's shape and dtype.
    - Parameters: none.

    Raises
    ------
    TypeError
        For a slope or cap that is not a number.
    ValueError
        For a negative ``max_value``.

    See Also
    --------
    ReLU, PReLU, ELU

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> fnn.nn.LeakyReLU(0.5)(np.array([-2.0, 4.0]))
    array([-1.,  4.])
    """

    _kind = _Kind.relu

    def __init__(self, negative_slope=0.01, inplace=False, *, max_value=None):
        slope, cap = _number("LeakyReLU", "negative_slope", negative_slope), _cap("LeakyReLU", max_value)
        super().__init__(slope, cap, inplace)
        self.negative_slope = slope
        self.max_value = None if max_value is None else cap

    def extra_repr(self):
        s = f"negative_slope={self.negative_slope}"
        if self.max_value is not None:
            s += f", max_value={self.max_value}"
        return s + (", inplace=True" if self.inplace else "")


class ELU(_Elementwise):
    r"""Exponential linear unit: ``x`` for x > 0, ``alpha * (exp(x) - 1)`` otherwise.

    .. math:: y = \begin{cases} x & x > 0 \\ \alpha (e^x - 1) & x \le 0 \end{cases}

    Parameters
    ----------
    alpha : float, default 1.0
        The negative saturation value is ``-alpha``.
    inplace : bool, default False
        Accepted for PyTorch compatibility and ignored.

    Shape
    -----
    - Input: any shape ``(*)``, float32 or float64 (other dtypes compute in float32).
    - Output: ``(*)``, the input's shape and dtype.
    - Parameters: none.

    Raises
    ------
    TypeError
        For an ``alpha`` that is not a number.

    See Also
    --------
    SELU, LeakyReLU

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> np.round(fnn.nn.ELU()(np.array([-1.0, 0.0, 2.0])), 4)
    array([-0.6321,  0.    ,  2.    ])
    """

    _kind = _Kind.elu

    def __init__(self, alpha=1.0, inplace=False):
        super().__init__(_number("ELU", "alpha", alpha), 1.0, inplace)
        self.alpha = self._a

    def extra_repr(self):
        return f"alpha={self.alpha}" + (", inplace=True" if self.inplace else "")


class SELU(_Elementwise):
    r"""Scaled ELU (self-normalising): ``scale * ELU_alpha(x)``.

    .. math:: y = \lambda \begin{cases} x & x > 0 \\ \alpha (e^x - 1) & x \le 0 \end{cases},
       \quad \lambda = 1.0507009873554805,\ \alpha = 1.6732632423543772

    Parameters
    ----------
    inplace : bool, default False
        Accepted for PyTorch compatibility and ignored.

    Shape
    -----
    - Input: any shape ``(*)``, float32 or float64 (other dtypes compute in float32).
    - Output: ``(*)``, the input's shape and dtype.
    - Parameters: none.

    See Also
    --------
    ELU, fastnn.init.kaiming_normal_

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> np.round(fnn.nn.SELU()(np.array([-1.0, 1.0])), 4)
    array([-1.1113,  1.0507])
    """

    _kind = _Kind.elu
    scale = 1.0507009873554805
    alpha = 1.6732632423543772

    def __init__(self, inplace=False):
        super().__init__(self.alpha, self.scale, inplace)


class Sigmoid(_Elementwise):
    r"""Logistic sigmoid ``1 / (1 + exp(-x))``, stable for any magnitude.

    .. math:: \sigma(x) = \frac{1}{1 + e^{-x}}, \qquad \sigma'(x) = \sigma(x)(1 - \sigma(x))

    Backward uses the saved output (the second formula).

    Shape
    -----
    - Input: any shape ``(*)``, float32 or float64 (other dtypes compute in float32).
    - Output: ``(*)``, the input's shape and dtype.
    - Parameters: none.

    See Also
    --------
    Hardsigmoid, Tanh, BCEWithLogitsLoss

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> sig = fnn.nn.Sigmoid()
    >>> sig(np.array([0.0, 100.0]))
    array([0.5, 1. ])
    >>> sig.backward(np.ones(2))
    array([0.25, 0.  ])
    """

    _kind = _Kind.sigmoid

    def __init__(self):
        super().__init__()


class Hardsigmoid(_Elementwise):
    """Piecewise-linear sigmoid in Keras's form: 0 for x < -2.5, 1 for x > 2.5, else ``0.2 x + 0.5``.

    This differs from PyTorch's Hardsigmoid, which is ``x / 6 + 1/2`` clipped at ±3.

    Parameters
    ----------
    inplace : bool, default False
        Accepted for PyTorch compatibility and ignored.

    Shape
    -----
    - Input: any shape ``(*)``, float32 or float64 (other dtypes compute in float32).
    - Output: ``(*)``, the input's shape and dtype.
    - Parameters: none.

    See Also
    --------
    Sigmoid, ReLU6

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> fnn.nn.Hardsigmoid()(np.array([-3.0, 0.0, 1.0, 3.0]))
    array([0. , 0.5, 0.7, 1. ])
    """

    _kind = _Kind.hardsigmoid

    def __init__(self, inplace=False):
        super().__init__(0.0, 0.0, inplace)


class Tanh(_Elementwise):
    r"""Hyperbolic tangent, element-wise.

    .. math:: y = \tanh(x), \qquad y' = 1 - \tanh^2(x)

    Backward uses the saved output.

    Shape
    -----
    - Input: any shape ``(*)``, float32 or float64 (other dtypes compute in float32).
    - Output: ``(*)``, the input's shape and dtype.
    - Parameters: none.

    See Also
    --------
    Sigmoid, Softsign

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> tanh = fnn.nn.Tanh()
    >>> tanh(np.array([0.0, 50.0]))
    array([0., 1.])
    >>> tanh.backward(np.ones(2))
    array([1., 0.])
    """

    _kind = _Kind.tanh

    def __init__(self):
        super().__init__()


class Softplus(_Elementwise):
    r"""Smooth ReLU ``log(1 + exp(beta * x)) / beta``, linear where ``beta * x > threshold`` (PyTorch's).

    .. math:: y = \frac{1}{\beta} \log(1 + e^{\beta x})

    Parameters
    ----------
    beta : float, default 1.0
        Sharpness; non-zero.
    threshold : float, default 20.0
        Above ``beta * x > threshold`` the output is ``x`` itself (no overflow).

    Shape
    -----
    - Input: any shape ``(*)``, float32 or float64 (other dtypes compute in float32).
    - Output: ``(*)``, the input's shape and dtype.
    - Parameters: none.

    Raises
    ------
    TypeError
        For arguments that are not numbers.
    ValueError
        For ``beta == 0``.

    See Also
    --------
    ReLU, SiLU

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> np.round(fnn.nn.Softplus()(np.array([0.0, 30.0])), 4)
    array([ 0.6931, 30.    ])
    """

    _kind = _Kind.softplus

    def __init__(self, beta=1.0, threshold=20.0):
        beta, threshold = _number("Softplus", "beta", beta), _number("Softplus", "threshold", threshold)
        if beta == 0:
            raise ValueError("Softplus: beta must be non-zero")
        super().__init__(beta, threshold)
        self.beta, self.threshold = beta, threshold

    def extra_repr(self):
        return f"beta={self.beta}, threshold={self.threshold}"


class Softsign(_Elementwise):
    """``x / (1 + abs(x))``, element-wise.

    Shape
    -----
    - Input: any shape ``(*)``, float32 or float64 (other dtypes compute in float32).
    - Output: ``(*)``, the input's shape and dtype.
    - Parameters: none.

    See Also
    --------
    Tanh

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> fnn.nn.Softsign()(np.array([-3.0, 0.0, 1.0]))
    array([-0.75,  0.  ,  0.5 ])
    """

    _kind = _Kind.softsign

    def __init__(self):
        super().__init__()


class SiLU(_Elementwise):
    r"""Sigmoid-weighted linear unit (swish): ``x * sigmoid(x)``.

    .. math:: y = x \, \sigma(x)

    Parameters
    ----------
    inplace : bool, default False
        Accepted for PyTorch compatibility and ignored.

    Shape
    -----
    - Input: any shape ``(*)``, float32 or float64 (other dtypes compute in float32).
    - Output: ``(*)``, the input's shape and dtype.
    - Parameters: none.

    See Also
    --------
    GELU, Sigmoid

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> np.round(fnn.nn.SiLU()(np.array([-1.0, 0.0, 1.0])), 4)
    array([-0.2689,  0.    ,  0.7311])
    """

    _kind = _Kind.silu

    def __init__(self, inplace=False):
        super().__init__(0.0, 0.0, inplace)


class Threshold(_Elementwise):
    """``x`` where x > threshold, else ``value`` (a thresholded ReLU for ``value=0``).

    The derivative is 1 where x > threshold, 0 elsewhere.

    Parameters
    ----------
    threshold : float, default 1.0
        Inputs at or below it are replaced.
    value : float, default 0.0
        The replacement.
    inplace : bool, default False
        Accepted for PyTorch compatibility and ignored.

    Shape
    -----
    - Input: any shape ``(*)``, float32 or float64 (other dtypes compute in float32).
    - Output: ``(*)``, the input's shape and dtype.
    - Parameters: none.

    Raises
    ------
    TypeError
        For arguments that are not numbers.

    See Also
    --------
    ReLU

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> fnn.nn.Threshold(1.0, -5.0)(np.array([0.5, 1.0, 2.0]))
    array([-5., -5.,  2.])
    """

    _kind = _Kind.threshold

    def __init__(self, threshold=1.0, value=0.0, inplace=False):
        super().__init__(_number("Threshold", "threshold", threshold), _number("Threshold", "value", value), inplace)
        self.threshold, self.value = self._a, self._b

    def extra_repr(self):
        return f"threshold={self.threshold}, value={self.value}" + (", inplace=True" if self.inplace else "")


class GELU(_Elementwise):
    r"""Gaussian error linear unit ``x * Phi(x)``, exact or with PyTorch's tanh approximation.

    .. math:: y = x \, \Phi(x) \quad\text{or}\quad
       y = \tfrac12 x \left(1 + \tanh\left(\sqrt{2/\pi}\,(x + 0.044715 x^3)\right)\right)

    ``Phi`` is the standard normal CDF. One C++ kernel (the one ``F.gelu`` runs), so it fuses into inference
    plans like the other activations.

    Parameters
    ----------
    approximate : {"none", "tanh"}, default "none"
        The exact form, or the tanh approximation.

    Shape
    -----
    - Input: any shape ``(*)``, float32 or float64 (other dtypes compute in float32).
    - Output: ``(*)``, the input's shape and dtype.
    - Parameters: none.

    Raises
    ------
    ValueError
        For another ``approximate``.

    See Also
    --------
    SiLU, fastnn.nn.functional.gelu, TransformerEncoderLayer

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> np.round(fnn.nn.GELU()(np.array([-1.0, 0.0, 1.0])), 4)
    array([-0.1587,  0.    ,  0.8413])
    >>> np.round(fnn.nn.GELU("tanh")(np.array([1.0])), 4)
    array([0.8412])
    """

    _kind = _Kind.gelu

    def __init__(self, approximate="none"):
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        super().__init__(1.0 if approximate == "tanh" else 0.0, 0.0)
        self.approximate = approximate

    def extra_repr(self):
        return "" if self.approximate == "none" else f"approximate={self.approximate!r}"


class Softmax(Module):
    r"""Softmax along one dimension: ``exp(x) / sum(exp(x))``, numerically stable.

    .. math:: y_i = \frac{e^{x_i - m}}{\sum_j e^{x_j - m}}, \quad m = \max_j x_j

    Backward uses the saved output: ``dx = y * (dy - sum(dy * y))``.

    Parameters
    ----------
    dim : int, default -1
        The dimension that sums to 1; negative counts from the end.

    Shape
    -----
    - Input: any shape ``(*)`` with ``dim`` in range, float32 or float64.
    - Output: the input's shape and dtype.
    - Parameters: none.

    Raises
    ------
    TypeError
        For a ``dim`` that is not an int.
    ValueError
        From forward, for a ``dim`` out of range for the input (the message names the layer and the shape).

    See Also
    --------
    LogSoftmax, CrossEntropyLoss, fastnn.nn.functional.softmax

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> fnn.nn.Softmax(dim=1)(np.log(np.array([[1.0, 3.0], [2.0, 2.0]])))
    array([[0.25, 0.75],
           [0.5 , 0.5 ]])
    """

    _log = False

    def __init__(self, dim=-1):
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
            raise TypeError(f"{type(self).__name__}: dim must be an int, got {dim!r}")
        self.dim = int(dim)
        self._kernel_forward = ops.log_softmax_forward if self._log else ops.softmax_forward
        self._kernel_backward = ops.log_softmax_backward if self._log else ops.softmax_backward
        self._out = None

    def extra_repr(self):
        return f"dim={self.dim}"

    def forward(self, x):
        x = _input(self, x)
        nd = max(x.ndim, 1)
        if not -nd <= self.dim < nd:
            raise ValueError(f"{self!r}: dim {self.dim} is out of range for input of shape {x.shape}")
        y = self._kernel_forward(x, self.dim)
        self.__dict__["_out"] = y
        return y

    def backward(self, grad_output):
        y = self._out
        if y is None:
            require_forward(self, y)
        return self._kernel_backward(y, _grad(self, grad_output, y), self.dim)


class LogSoftmax(Softmax):
    r"""Log-softmax along one dimension: ``x - log(sum(exp(x)))`` (log-sum-exp, maximum subtracted).

    .. math:: y_i = x_i - \log \sum_j e^{x_j}

    Pair it with NLLLoss, or use CrossEntropyLoss on the logits (fused).

    Parameters
    ----------
    dim : int, default -1
        The dimension normalised over; negative counts from the end.

    Shape
    -----
    - Input: any shape ``(*)`` with ``dim`` in range, float32 or float64.
    - Output: the input's shape and dtype.
    - Parameters: none.

    Raises
    ------
    TypeError
        For a ``dim`` that is not an int.
    ValueError
        From forward, for a ``dim`` out of range for the input.

    See Also
    --------
    Softmax, NLLLoss

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> y = fnn.nn.LogSoftmax(dim=-1)(np.log(np.array([[1.0, 3.0]])))
    >>> np.exp(y)
    array([[0.25, 0.75]])
    """

    _log = True


class PReLU(Module):
    r"""Parametric ReLU: ``x`` for x > 0, ``a * x`` otherwise, with a learnable slope ``a``.

    .. math:: y = \max(0, x) + a \min(0, x)

    One slope shared by all entries, or one per channel along dimension 1.

    Parameters
    ----------
    num_parameters : int, default 1
        1 (shared) or the number of channels ``C``.
    init : float, default 0.25
        The initial slope.

    Shape
    -----
    - Input: any shape; ``(N, C, *)`` when ``num_parameters = C > 1``.
    - Output: the input's shape.
    - Parameters: ``weight`` ``(num_parameters,)``.

    Raises
    ------
    ValueError
        For ``num_parameters < 1``, or (forward) an input without ``C`` channels along dimension 1.

    See Also
    --------
    LeakyReLU

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> prelu = fnn.nn.PReLU()
    >>> prelu(np.array([-4.0, 2.0], np.float32))
    array([-1.,  2.], dtype=float32)
    >>> dx = prelu.backward(np.ones(2, np.float32))
    >>> prelu.weight.grad
    array([-4.], dtype=float32)
    """

    def __init__(self, num_parameters=1, init=0.25):
        super().__init__()
        if isinstance(num_parameters, bool) or int(num_parameters) < 1:
            raise ValueError(f"PReLU: num_parameters must be a positive int, got {num_parameters!r}")
        self.num_parameters = int(num_parameters)
        self.init = _number("PReLU", "init", init)
        self.weight = Parameter(np.full(self.num_parameters, self.init, np.float32))
        self._input = None

    def extra_repr(self):
        return f"num_parameters={self.num_parameters}"

    def forward(self, x):
        w = self.weight.data
        x = as_float_array(self, x, w.dtype)
        c = self.num_parameters
        if c > 1 and (x.ndim < 2 or x.shape[1] != c):
            raise ValueError(f"{self!r}: expected input of shape (N, {c}, ...) with {c} channels along dim 1, "
                             f"got {x.shape}")
        y = ops.prelu_forward(x, w)
        self.__dict__["_input"] = x
        return y

    def backward(self, grad_output, need_input_grad=True):
        x = self._input
        require_forward(self, x)
        g = _grad(self, grad_output, x)
        w = self.weight
        return ops.prelu_backward(x, w.data, g, w.grad if w.requires_grad else None, need_input_grad)


class Maxout(Module):
    r"""Maxout unit (Goodfellow et al. 2013): a Linear to ``out_features * pieces``, then the maximum of each group.

    .. math:: y_j = \max_{k < \text{pieces}} z_{j \cdot \text{pieces} + k}, \quad z = x W^T + b

    Backward routes the gradient to each group's maximum (the first one on ties).

    Parameters
    ----------
    in_features : int
        Size of each input sample.
    out_features : int
        Size of each output sample.
    pieces : int, default 2
        Linear pieces per output unit.

    Shape
    -----
    - Input: ``(N, in_features)`` or unbatched ``(in_features,)``.
    - Output: ``(N, out_features)`` or ``(out_features,)``.
    - Parameters: ``linear.weight`` ``(out_features * pieces, in_features)``, ``linear.bias``
      ``(out_features * pieces,)``.

    Raises
    ------
    ValueError
        For ``pieces < 1``, or (forward) an input of another shape (the message names the layer and shape).

    See Also
    --------
    Linear, ReLU

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> m = fnn.nn.Maxout(4, 3, pieces=2)
    >>> m.linear.weight.shape
    (6, 4)
    >>> y = m(np.ones((5, 4), np.float32))
    >>> y.shape, m.backward(np.ones_like(y)).shape
    ((5, 3), (5, 4))
    """

    def __init__(self, in_features, out_features, pieces=2):
        super().__init__()
        if isinstance(pieces, bool) or int(pieces) < 1:
            raise ValueError(f"Maxout: pieces must be a positive int, got {pieces!r}")
        self.in_features, self.out_features, self.pieces = int(in_features), int(out_features), int(pieces)
        self.linear = Linear(self.in_features, self.out_features * self.pieces)
        self._argmax = None

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}, pieces={self.pieces}"

    def __repr__(self):  # one line, like a leaf layer: error messages name it compactly
        return f"Maxout({self.extra_repr()})"

    def forward(self, x):
        x = as_float_array(self, x, self.linear.weight.data.dtype)
        if x.ndim not in (1, 2) or x.shape[-1] != self.in_features:
            raise ValueError(f"{self!r}: expected input of shape (N, {self.in_features}) or ({self.in_features},), "
                             f"got {x.shape}")
        z = self.linear(x)
        y, argmax = ops.maxout_forward(z, self.pieces)
        self.__dict__["_argmax"] = argmax
        return y

    def _grad_linear(self, grad_output):
        argmax = self._argmax
        require_forward(self, argmax)
        g = as_float_array(self, grad_output, self.linear.weight.data.dtype, "grad_output")
        if g.shape != argmax.shape:
            check_grad_shape(self, g, argmax.shape)
        return ops.maxout_backward(g, argmax, self.pieces)

    def backward(self, grad_output, need_input_grad=True):
        return self.linear.backward(self._grad_linear(grad_output), need_input_grad=need_input_grad)
