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
    """max(0, x), capped at `max_value` when given (ReLU(max_value=6) is ReLU6). Keras's optional cap; PyTorch's
    `inplace` flag is keyword-only here (ignored)."""

    _kind = _Kind.relu

    def __init__(self, max_value=None, *, inplace=False):
        cap = _cap("ReLU", max_value)
        super().__init__(0.0, cap, inplace)
        self.max_value = None if max_value is None else cap

    def extra_repr(self):
        parts = [] if self.max_value is None else [f"max_value={self.max_value}"]
        return ", ".join(parts + ([_inplace_repr(True)] if self.inplace else []))


class ReLU6(_Elementwise):
    """min(max(0, x), 6). Derivative 1 on (0, 6] (left limits at both kinks)."""

    _kind = _Kind.relu

    def __init__(self, inplace=False):
        super().__init__(0.0, 6.0, inplace)


class LeakyReLU(_Elementwise):
    """x for x > 0, negative_slope·x otherwise; capped at `max_value` when given."""

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
    """x for x > 0, alpha·(eˣ − 1) otherwise."""

    _kind = _Kind.elu

    def __init__(self, alpha=1.0, inplace=False):
        super().__init__(_number("ELU", "alpha", alpha), 1.0, inplace)
        self.alpha = self._a

    def extra_repr(self):
        return f"alpha={self.alpha}" + (", inplace=True" if self.inplace else "")


class SELU(_Elementwise):
    """λ·ELU_α(x) with λ = 1.0507009873554805, α = 1.6732632423543772 (self-normalising)."""

    _kind = _Kind.elu
    scale = 1.0507009873554805
    alpha = 1.6732632423543772

    def __init__(self, inplace=False):
        super().__init__(self.alpha, self.scale, inplace)


class Sigmoid(_Elementwise):
    """1 / (1 + e⁻ˣ), stable for any magnitude. Backward uses the output: σ' = σ(1 − σ)."""

    _kind = _Kind.sigmoid

    def __init__(self):
        super().__init__()


class Hardsigmoid(_Elementwise):
    """Piecewise-linear sigmoid in Keras's form: 0 for x < −2.5, 1 for x > 2.5, else 0.2x + 0.5.

    Note: this differs from PyTorch's Hardsigmoid, which is x/6 + 1/2 clipped at ±3."""

    _kind = _Kind.hardsigmoid

    def __init__(self, inplace=False):
        super().__init__(0.0, 0.0, inplace)


class Tanh(_Elementwise):
    """tanh(x). Backward uses the output: tanh' = 1 − tanh² (the seeds' (1 − tanh)² and −tanh² are typos)."""

    _kind = _Kind.tanh

    def __init__(self):
        super().__init__()


class Softplus(_Elementwise):
    """log(1 + e^(β·x)) / β, and x itself where β·x > threshold (PyTorch's semantics)."""

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
    """``x / (1 + abs(x))``, element-wise."""

    _kind = _Kind.softsign

    def __init__(self):
        super().__init__()


class SiLU(_Elementwise):
    """Swish: x·σ(x)."""

    _kind = _Kind.silu

    def __init__(self, inplace=False):
        super().__init__(0.0, 0.0, inplace)


class Threshold(_Elementwise):
    """x where x > threshold, else `value` (thresholded ReLU for value=0). Derivative 1 where x > threshold."""

    _kind = _Kind.threshold

    def __init__(self, threshold=1.0, value=0.0, inplace=False):
        super().__init__(_number("Threshold", "threshold", threshold), _number("Threshold", "value", value), inplace)
        self.threshold, self.value = self._a, self._b

    def extra_repr(self):
        return f"threshold={self.threshold}, value={self.value}" + (", inplace=True" if self.inplace else "")


class GELU(_Elementwise):
    """x·Φ(x), Φ the standard normal CDF (approximate="none"), or PyTorch's tanh approximation
    0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) (approximate="tanh"). One C++ kernel (Activation.gelu, a = 1 for
    the tanh form), the same one F.gelu runs, so it fuses into inference plans like the other activations."""

    _kind = _Kind.gelu

    def __init__(self, approximate="none"):
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        super().__init__(1.0 if approximate == "tanh" else 0.0, 0.0)
        self.approximate = approximate

    def extra_repr(self):
        return "" if self.approximate == "none" else f"approximate={self.approximate!r}"


class Softmax(Module):
    """exp(x) / Σ exp(x) along `dim`, numerically stable (the maximum is subtracted first)."""

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
    """x − log Σ exp(x) along `dim` (log-sum-exp with the maximum subtracted)."""

    _log = True


class PReLU(Module):
    """x for x > 0, a·x otherwise, with a learnable `weight` a (init 0.25): one shared value, or one per
    channel along dim 1 when num_parameters > 1 (input (N, C, ...))."""

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
    """Maxout unit (Goodfellow et al. 2013): a Linear to out_features·pieces, then the maximum over each group
    of `pieces` consecutive outputs. Parameters are the Linear's (`linear.weight` [out·pieces, in],
    `linear.bias`). Input (N, in_features) or unbatched (in_features,). Backward routes the gradient to
    each group's maximum (the first one on ties)."""

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
