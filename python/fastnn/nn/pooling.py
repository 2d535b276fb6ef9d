"""Max, average and adaptive average pooling over kernels/pooling.hpp, with PyTorch's names, defaults, options,
output sizes and reprs.

1-D pooling runs the 2-D kernels on (N, C, 1, L). Pooling computes in its input's dtype (float32 or float64).
All of PyTorch's options are implemented: ceil_mode, max-pool dilation and return_indices (int64, the flat index
h·W + w in each input plane, or the position along L in 1-D), count_include_pad and divisor_override.
Differences: AvgPool1d also accepts divisor_override (PyTorch's does not). A dilated max window whose taps all
fall in the padding gives -inf and PyTorch's index (the first tap past the padding, outside the window's input),
but its gradient reaches no input (PyTorch adds it at that index, or past the plane).
"""
import numpy as np

from .. import ops
from ._checks import as_float_array, check_grad_shape, module_dtype, require_forward
from .conv import _tuple
from .module import LayerSpec, Module

__all__ = ["MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d", "AdaptiveAvgPool1d", "AdaptiveAvgPool2d"]


def _output_size(size, kernel, stride, pad, dilation, ceil_mode):
    """PyTorch's pooling output size (kernels/pooling.hpp: pool_output_size); 0 when nothing fits."""
    span = size + 2 * pad - dilation * (kernel - 1) - 1 + (stride - 1 if ceil_mode else 0)
    if span < 0:
        return 0
    out = span // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:  # the last window would start in the right padding
        out -= 1
    return out


def _single(value):
    # PyTorch's AvgPool1d keeps its arguments as 1-tuples (and prints them so).
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


class _PoolNd(Module):
    _dims = 2

    def __init__(self, kernel_size, stride, padding, dilation, ceil_mode):
        super().__init__()
        name, n = type(self).__name__, self._dims
        self._k = _tuple(name, "kernel_size", kernel_size, n, 1)
        self._s = self._k if stride is None else _tuple(name, "stride", stride, n, 1)
        self._p = _tuple(name, "padding", padding, n, 0)
        self._d = _tuple(name, "dilation", dilation, n, 1)
        self.ceil_mode = bool(ceil_mode)
        # PyTorch's limit, on the undilated kernel for max pooling too.
        if any(2 * p > k for p, k in zip(self._p, self._k)):
            raise ValueError(f"{name}: padding {padding} must be at most half of kernel_size {kernel_size}")
        self._input_shape = None

    def _as2d(self, t, fill=1):
        return t if self._dims == 2 else (fill,) + t

    def _prepare(self, x):
        x = as_float_array(self, x, module_dtype(self, x))
        n = self._dims
        unbatched = x.ndim == n + 1
        if unbatched:
            x = x[None]
        if x.ndim != n + 2:
            dims = "(N, C, H, W) or (C, H, W)" if n == 2 else "(N, C, L) or (C, L)"
            raise ValueError(f"{self!r}: expected input of shape {dims}, got {x.shape}")
        out = tuple(_output_size(*a, self.ceil_mode) for a in zip(x.shape[2:], self._k, self._s, self._p, self._d))
        if 0 in out:
            kernel = tuple(d * (k - 1) + 1 for k, d in zip(self._k, self._d))
            raise ValueError(f"{self!r}: input of shape {x.shape[1:] if unbatched else x.shape} (padded by "
                             f"{self._p}) is smaller than the kernel {kernel}: output size {out}")
        self._unbatched, self._input_shape = unbatched, x.shape
        return x if n == 2 else x[:, :, None, :]

    def _finish(self, y):
        y = y if self._dims == 2 else y[:, :, 0, :]
        self._out_shape = y.shape
        return y[0] if self._unbatched else y

    def _grad(self, grad_output):
        require_forward(self, self._input_shape)
        g = as_float_array(self, grad_output, self._dtype, "grad_output")
        if self._unbatched and g.ndim == self._dims + 1:
            g = g[None]
        check_grad_shape(self, g, self._out_shape)
        return g if self._dims == 2 else g[:, :, None, :]

    def _input_grad(self, dx):
        dx = dx if self._dims == 2 else dx[:, :, 0, :]
        return dx[0] if self._unbatched else dx

    def _input_shape4(self):
        s = self._input_shape
        return s if self._dims == 2 else s[:2] + (1,) + s[2:]


class _MaxPoolNd(_PoolNd):
    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False):
        super().__init__(kernel_size, stride, padding, dilation, ceil_mode)
        # PyTorch keeps (and prints) the arguments as given: an int stays an int.
        self.kernel_size, self.padding, self.dilation = kernel_size, padding, dilation
        self.stride = kernel_size if stride is None else stride
        self.return_indices = bool(return_indices)

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")

    def describe(self):
        return LayerSpec("max_pool", {"dims": self._dims, "kernel_size": self._k, "stride": self._s,
                                      "padding": self._p, "dilation": self._d, "ceil_mode": self.ceil_mode,
                                      "return_indices": self.return_indices}, {})

    def _pool(self, x4, with_argmax):
        return ops.max_pool2d_forward(x4, self._as2d(self._k), self._as2d(self._s), self._as2d(self._p, 0),
                                        with_argmax, self._as2d(self._d), self.ceil_mode)

    def forward(self, x):
        x4 = self._prepare(x)
        self._dtype = x4.dtype
        # In eval mode no argmax is written unless indices are asked for; a backward then (rare: saliency maps)
        # recomputes it.
        with_argmax = self.training or self.return_indices
        self._x4 = None if with_argmax else x4
        y, self._argmax = self._pool(x4, with_argmax)
        self._out_shape4 = y.shape[2:]
        y = self._finish(y)
        if not self.return_indices:
            return y
        indices = self._argmax.astype(np.int64)  # PyTorch's index dtype; same values
        if (self._argmax < 0).any():
            indices = np.where(self._argmax < 0, self._empty_window_indices(x4.shape[3]), indices)
        return y, self._finish(indices)

    def _empty_window_indices(self, width):
        """The index PyTorch reports for a window without an input tap (the kernel's −1): the first tap at or
        after the input's start in each axis, h·W + w, even where that lies outside the input."""
        taps = []
        for out, s, p, d in zip(self._out_shape4, self._as2d(self._s), self._as2d(self._p, 0), self._as2d(self._d)):
            start = np.arange(out) * s - p
            taps.append(np.where(start >= 0, start, start + (-start + d - 1) // d * d))
        return taps[0][:, None] * width + taps[1][None, :]

    def backward(self, grad_output):
        """grad_output: the gradient of the pooled values (indices have none), also with return_indices."""
        g = self._grad(grad_output)
        if self._argmax is None:
            _, self._argmax = self._pool(self._x4, True)
            self._x4 = None
        return self._input_grad(ops.max_pool2d_backward(g, self._argmax, self._input_shape4()))


class _AvgPoolNd(_PoolNd):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None):
        super().__init__(kernel_size, stride, padding, 1, ceil_mode)
        name = type(self).__name__
        self.kernel_size, self.padding = kernel_size, padding
        self.stride = kernel_size if stride is None else stride
        self.count_include_pad = bool(count_include_pad)
        if divisor_override is not None:
            if not isinstance(divisor_override, (int, np.integer)) or isinstance(divisor_override, bool):
                raise TypeError(f"{name}: divisor_override must be an int or None, got {divisor_override!r}")
            if divisor_override == 0:
                raise ValueError(f"{name}: divisor_override must not be 0")
            divisor_override = int(divisor_override)
        self.divisor_override = divisor_override

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"

    def describe(self):
        return LayerSpec("avg_pool", {"dims": self._dims, "kernel_size": self._k, "stride": self._s,
                                      "padding": self._p, "ceil_mode": self.ceil_mode,
                                      "count_include_pad": self.count_include_pad,
                                      "divisor_override": self.divisor_override}, {})

    def _options(self):
        return (self._as2d(self._k), self._as2d(self._s), self._as2d(self._p, 0), self.ceil_mode,
                self.count_include_pad, self.divisor_override)

    def forward(self, x):
        x4 = self._prepare(x)
        self._dtype = x4.dtype
        return self._finish(ops.avg_pool2d_forward(x4, *self._options()))

    def backward(self, grad_output):
        g = self._grad(grad_output)
        return self._input_grad(ops.avg_pool2d_backward(g, self._input_shape4(), *self._options()))


class MaxPool1d(_MaxPoolNd):
    """1-D max pooling: the maximum over each window of ``(N, C, L)`` input.

    Backward sends each gradient to its window's (first) maximum; padding never wins.

    Parameters
    ----------
    kernel_size : int or tuple of int
        Size of the window.
    stride : int, tuple of int or None, default None
        Step of the window; None means ``kernel_size``.
    padding : int or tuple of int, default 0
        Implicit padding (with -inf) on both sides; at most half the kernel.
    dilation : int or tuple of int, default 1
        Spacing between window elements.
    return_indices : bool, default False
        Forward returns ``(y, indices)``: each maximum's position along L, int64.
    ceil_mode : bool, default False
        Round the output size up instead of down.

    Shape
    -----
    - Input: ``(N, C, L)`` or unbatched without ``N``.
    - Output: ``(N, C, L_out)``, ``out = floor((in + 2·padding − dilation·(k − 1) − 1) / stride) + 1``
      (ceil with ``ceil_mode``).
    - Parameters: none.

    Raises
    ------
    ValueError
        For bad sizes or an input of the wrong dimensions.

    See Also
    --------
    AvgPool1d, AdaptiveAvgPool1d

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> pool = fnn.nn.MaxPool1d(2)
    >>> pool(np.zeros((2, 3, 8), np.float32)).shape
    (2, 3, 4)
    """
    _dims = 1


class MaxPool2d(_MaxPoolNd):
    """2-D max pooling: the maximum over each window of ``(N, C, H, W)`` input.

    Backward sends each gradient to its window's (first) maximum; padding never wins.

    Parameters
    ----------
    kernel_size : int or tuple of int
        Size of the window.
    stride : int, tuple of int or None, default None
        Step of the window; None means ``kernel_size``.
    padding : int or tuple of int, default 0
        Implicit padding (with -inf) on both sides; at most half the kernel.
    dilation : int or tuple of int, default 1
        Spacing between window elements.
    return_indices : bool, default False
        Forward returns ``(y, indices)``: each maximum's flat index ``h·W + w`` in its input plane, int64.
    ceil_mode : bool, default False
        Round the output size up instead of down.

    Shape
    -----
    - Input: ``(N, C, H, W)`` or unbatched without ``N``.
    - Output: ``(N, C, H_out, W_out)``, ``out = floor((in + 2·padding − dilation·(k − 1) − 1) / stride) + 1``
      (ceil with ``ceil_mode``).
    - Parameters: none.

    Raises
    ------
    ValueError
        For bad sizes or an input of the wrong dimensions.

    See Also
    --------
    AvgPool2d, AdaptiveAvgPool2d

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> pool = fnn.nn.MaxPool2d(2)
    >>> pool(np.zeros((2, 3, 8, 8), np.float32)).shape
    (2, 3, 4, 4)
    """
    _dims = 2


class AvgPool1d(_AvgPoolNd):
    """1-D average pooling: the mean over each window of ``(N, C, L)`` input.

    Parameters
    ----------
    kernel_size : int or tuple of int
        Size of the window.
    stride : int, tuple of int or None, default None
        Step of the window; None means ``kernel_size``.
    padding : int or tuple of int, default 0
        Zero padding on both sides; at most half the kernel.
    ceil_mode : bool, default False
        Round the output size up instead of down.
    count_include_pad : bool, default True
        Count the zero padding in the divisor.
    divisor_override : int or None, default None
        Divide by this instead of the window size.

    Shape
    -----
    - Input: ``(N, C, L)`` or unbatched without ``N``.
    - Output: ``(N, C, L_out)``, ``out = floor((in + 2·padding − k) / stride) + 1``.
    - Parameters: none.

    Raises
    ------
    ValueError
        For bad sizes or an input of the wrong dimensions.

    See Also
    --------
    MaxPool1d, AdaptiveAvgPool1d

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> fnn.nn.AvgPool1d(2)(np.array([[[1.0, 3.0, 5.0, 7.0]]], np.float32))
    array([[[2., 6.]]], dtype=float32)
    """
    _dims = 1

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None):
        super().__init__(kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
        self.kernel_size, self.stride, self.padding = map(_single, (self.kernel_size, self.stride, self.padding))


class AvgPool2d(_AvgPoolNd):
    """2-D average pooling: the mean over each window of ``(N, C, H, W)`` input.

    Parameters
    ----------
    kernel_size : int or tuple of int
        Size of the window.
    stride : int, tuple of int or None, default None
        Step of the window; None means ``kernel_size``.
    padding : int or tuple of int, default 0
        Zero padding on both sides; at most half the kernel.
    ceil_mode : bool, default False
        Round the output size up instead of down.
    count_include_pad : bool, default True
        Count the zero padding in the divisor.
    divisor_override : int or None, default None
        Divide by this instead of the window size.

    Shape
    -----
    - Input: ``(N, C, H, W)`` or unbatched without ``N``.
    - Output: ``(N, C, H_out, W_out)``, ``out = floor((in + 2·padding − k) / stride) + 1``.
    - Parameters: none.

    Raises
    ------
    ValueError
        For bad sizes or an input of the wrong dimensions.

    See Also
    --------
    MaxPool2d, AdaptiveAvgPool2d

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> fnn.nn.AvgPool2d(2)(np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4))
    array([[[[ 2.5,  4.5],
             [10.5, 12.5]]]], dtype=float32)
    """
    _dims = 2


class _AdaptiveAvgPoolNd(Module):
    _dims = 2

    def __init__(self, output_size):
        super().__init__()
        name, n = type(self).__name__, self._dims
        self.output_size = output_size  # as given, as PyTorch prints it
        allowed = "a positive int or a pair of positive ints or None" if n == 2 else "a positive int"
        sizes = (output_size,) * n if output_size is None or not isinstance(output_size, (tuple, list)) \
            else tuple(output_size)
        if (len(sizes) != n or any(s is None and n == 1 for s in sizes)
                or any(s is not None and (not isinstance(s, (int, np.integer)) or isinstance(s, bool) or s < 1)
                       for s in sizes)):
            raise ValueError(f"{name}: output_size must be {allowed}, got {output_size!r}")
        self._sizes = sizes
        self._input_shape = None

    def extra_repr(self):
        return f"output_size={self.output_size}"

    def forward(self, x):
        n = self._dims
        x = as_float_array(self, x, module_dtype(self, x))
        unbatched = x.ndim == n + 1
        if unbatched:
            x = x[None]
        if x.ndim != n + 2:
            dims = "(N, C, H, W) or (C, H, W)" if n == 2 else "(N, C, L) or (C, L)"
            raise ValueError(f"{self!r}: expected input of shape {dims}, got {x.shape}")
        if 0 in x.shape[2:]:
            raise ValueError(f"{self!r}: input of shape {x.shape} has empty planes")
        out = tuple(x.shape[2 + i] if s is None else int(s) for i, s in enumerate(self._sizes))
        x4 = x if n == 2 else x[:, :, None, :]
        y = ops.adaptive_avg_pool2d_forward(x4, self._as2d(out))
        y = y if n == 2 else y[:, :, 0, :]
        self._unbatched, self._input_shape, self._out_shape, self._dtype = unbatched, x.shape, y.shape, x.dtype
        return y[0] if unbatched else y

    def backward(self, grad_output):
        require_forward(self, self._input_shape)
        g = as_float_array(self, grad_output, self._dtype, "grad_output")
        if self._unbatched and g.ndim == self._dims + 1:
            g = g[None]
        check_grad_shape(self, g, self._out_shape)
        if self._dims == 1:
            g, shape = g[:, :, None, :], self._input_shape[:2] + (1,) + self._input_shape[2:]
        else:
            shape = self._input_shape
        dx = ops.adaptive_avg_pool2d_backward(g, shape)
        dx = dx if self._dims == 2 else dx[:, :, 0, :]
        return dx[0] if self._unbatched else dx

    def _as2d(self, t):
        return t if self._dims == 2 else (1,) + t


class AdaptiveAvgPool1d(_AdaptiveAvgPoolNd):
    """1-D adaptive average pooling to a fixed output size (PyTorch's windows).

    ``AdaptiveAvgPool1d(1)`` is the global average pool.

    Parameters
    ----------
    output_size : int
        The output size.

    Shape
    -----
    - Input: ``(N, C, L)`` or unbatched without ``N``.
    - Output: ``(N, C, output_size)``.
    - Parameters: none.

    Raises
    ------
    ValueError
        For an invalid ``output_size`` or input.

    See Also
    --------
    AvgPool1d

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> gap = fnn.nn.AdaptiveAvgPool1d(1)
    >>> gap(np.ones((2, 8, 5), np.float32)).shape
    (2, 8, 1)
    """
    _dims = 1


class AdaptiveAvgPool2d(_AdaptiveAvgPoolNd):
    """2-D adaptive average pooling to a fixed output size (PyTorch's windows).

    ``AdaptiveAvgPool2d(1)`` is the global average pool.

    Parameters
    ----------
    output_size : int, tuple of (int or None), or None
        The output size; None in a tuple keeps that input dimension.

    Shape
    -----
    - Input: ``(N, C, H, W)`` or unbatched without ``N``.
    - Output: ``(N, C, *output_size)``.
    - Parameters: none.

    Raises
    ------
    ValueError
        For an invalid ``output_size`` or input.

    See Also
    --------
    AvgPool2d

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> gap = fnn.nn.AdaptiveAvgPool2d(1)
    >>> gap(np.ones((2, 8, 5, 7), np.float32)).shape
    (2, 8, 1, 1)
    """
    _dims = 2
