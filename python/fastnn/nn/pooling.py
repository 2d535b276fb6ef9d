"""Max, average and adaptive average pooling over kernels/pooling.hpp, with PyTorch's names and defaults.

1-D pooling runs the 2-D kernels on (N, C, 1, L). Pooling computes in its input's dtype (float32 or float64).
Not implemented (NotImplementedError): ceil_mode=True, max-pool dilation, return_indices,
count_include_pad=False, divisor_override.
"""
import numpy as np

from .. import _core
from ._checks import as_float_array, check_grad_shape, module_dtype, require_forward
from .conv import _tuple
from .module import Module

__all__ = ["MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d", "AdaptiveAvgPool2d"]


def _unsupported(name, what):
    raise NotImplementedError(f"{name}: {what} is not implemented")


class _PoolNd(Module):
    _dims = 2

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        name, n = type(self).__name__, self._dims
        # PyTorch keeps (and prints) the arguments as given: an int stays an int.
        self.kernel_size = kernel_size if isinstance(kernel_size, int) else tuple(kernel_size)
        self.stride = self.kernel_size if stride is None else (stride if isinstance(stride, int) else tuple(stride))
        self.padding = padding if isinstance(padding, int) else tuple(padding)
        self._k = _tuple(name, "kernel_size", self.kernel_size, n, 1)
        self._s = _tuple(name, "stride", self.stride, n, 1)
        self._p = _tuple(name, "padding", self.padding, n, 0)
        if any(2 * p > k for p, k in zip(self._p, self._k)):
            raise ValueError(f"{name}: padding {self.padding} must be at most half of kernel_size {self.kernel_size}")
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
        for size, k, p in zip(x.shape[2:], self._k, self._p):
            if size + 2 * p < k:
                raise ValueError(f"{self!r}: input of shape {x.shape[1:] if unbatched else x.shape} (padded by "
                                 f"{self.padding}) is smaller than the kernel {self.kernel_size}")
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


class _MaxPoolNd(_PoolNd):
    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False):
        super().__init__(kernel_size, stride, padding)
        name = type(self).__name__
        self.dilation, self.return_indices, self.ceil_mode = dilation, bool(return_indices), bool(ceil_mode)
        if _tuple(name, "dilation", dilation, self._dims, 1) != (1,) * self._dims:
            _unsupported(name, "dilation other than 1")
        if self.return_indices:
            _unsupported(name, "return_indices=True")
        if self.ceil_mode:
            _unsupported(name, "ceil_mode=True")

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")

    def forward(self, x):
        x4 = self._prepare(x)
        self._dtype = x4.dtype
        # In eval mode no argmax is written; a backward then (rare: saliency maps) recomputes it.
        self._x4 = None if self.training else x4
        y, self._argmax = _core.max_pool2d_forward(x4, self._as2d(self._k), self._as2d(self._s),
                                                   self._as2d(self._p, 0), self.training)
        return self._finish(y)

    def backward(self, grad_output):
        g = self._grad(grad_output)
        if self._argmax is None:
            _, self._argmax = _core.max_pool2d_forward(self._x4, self._as2d(self._k), self._as2d(self._s),
                                                       self._as2d(self._p, 0))
            self._x4 = None
        shape = self._input_shape if self._dims == 2 else self._input_shape[:2] + (1,) + self._input_shape[2:]
        return self._input_grad(_core.max_pool2d_backward(g, self._argmax, shape))


class _AvgPoolNd(_PoolNd):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None):
        super().__init__(kernel_size, stride, padding)
        name = type(self).__name__
        self.ceil_mode, self.count_include_pad = bool(ceil_mode), bool(count_include_pad)
        self.divisor_override = divisor_override
        if self.ceil_mode:
            _unsupported(name, "ceil_mode=True")
        if not self.count_include_pad:
            _unsupported(name, "count_include_pad=False")
        if divisor_override is not None:
            _unsupported(name, "divisor_override")

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"

    def forward(self, x):
        x4 = self._prepare(x)
        self._dtype = x4.dtype
        return self._finish(_core.avg_pool2d_forward(x4, self._as2d(self._k), self._as2d(self._s),
                                                     self._as2d(self._p, 0)))

    def backward(self, grad_output):
        g = self._grad(grad_output)
        shape = self._input_shape if self._dims == 2 else self._input_shape[:2] + (1,) + self._input_shape[2:]
        return self._input_grad(_core.avg_pool2d_backward(g, shape, self._as2d(self._k), self._as2d(self._s),
                                                          self._as2d(self._p, 0)))


class MaxPool1d(_MaxPoolNd):
    """Max over windows of (N, C, L) or (C, L); stride defaults to kernel_size; padding never wins."""
    _dims = 1


class MaxPool2d(_MaxPoolNd):
    """Max over windows of (N, C, H, W) or (C, H, W); stride defaults to kernel_size; padding never wins.
    Backward sends each gradient to its window's (first) maximum."""
    _dims = 2


class AvgPool1d(_AvgPoolNd):
    """Average over windows of (N, C, L) or (C, L), zero padding counted (count_include_pad=True)."""
    _dims = 1


class AvgPool2d(_AvgPoolNd):
    """Average over windows of (N, C, H, W) or (C, H, W), zero padding counted (count_include_pad=True)."""
    _dims = 2


class AdaptiveAvgPool2d(Module):
    """Average pooling to a fixed output size (PyTorch's windows); AdaptiveAvgPool2d(1) is the global average
    pool. None in output_size keeps that input dimension."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size if isinstance(output_size, int) or output_size is None else tuple(output_size)
        sizes = (output_size,) * 2 if output_size is None or isinstance(output_size, int) else tuple(output_size)
        if len(sizes) != 2 or any(s is not None and int(s) < 1 for s in sizes):
            raise ValueError(f"AdaptiveAvgPool2d: output_size must be a positive int or a pair, got {output_size!r}")
        self._sizes = sizes
        self._input_shape = None

    def extra_repr(self):
        return f"output_size={self.output_size}"

    def forward(self, x):
        x = as_float_array(self, x, module_dtype(self, x))
        unbatched = x.ndim == 3
        if unbatched:
            x = x[None]
        if x.ndim != 4:
            raise ValueError(f"{self!r}: expected input of shape (N, C, H, W) or (C, H, W), got {x.shape}")
        if 0 in x.shape[2:]:
            raise ValueError(f"{self!r}: input of shape {x.shape} has empty planes")
        out = tuple(x.shape[2 + i] if s is None else int(s) for i, s in enumerate(self._sizes))
        y = _core.adaptive_avg_pool2d_forward(x, out)
        self._unbatched, self._input_shape, self._out_shape, self._dtype = unbatched, x.shape, y.shape, x.dtype
        return y[0] if unbatched else y

    def backward(self, grad_output):
        require_forward(self, self._input_shape)
        g = as_float_array(self, grad_output, self._dtype, "grad_output")
        if self._unbatched and g.ndim == 3:
            g = g[None]
        check_grad_shape(self, g, self._out_shape)
        dx = _core.adaptive_avg_pool2d_backward(g, self._input_shape)
        return dx[0] if self._unbatched else dx
