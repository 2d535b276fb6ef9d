"""Conv1d and Conv2d over kernels/conv.hpp: PyTorch's names, arguments, defaults and parameter shapes.

Both run the 2-D kernel (1-D input (N, C, L) is (N, C, 1, L)), one C++ call per forward and per backward.
The backward recomputes the im2col matrix block by block rather than keeping the whole batch's from the
forward: at CIFAR sizes that matrix is tens of megabytes, and writing it and reading it back costs more than
the copy. padding may be an int, a tuple, 'valid' or 'same' (stride 1; an odd total is padded one more at
the end, as PyTorch does).
"""
import math

import numpy as np

from .. import amp, init, ops
from . import conv_bf16
from ._checks import as_float_array, check_grad_shape, require_forward
from .module import LayerSpec, Module, Parameter

__all__ = ["Conv1d", "Conv2d"]


def _tuple(module_name, name, value, n, minimum):
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (int(value),) * n
    else:
        try:
            value = tuple(int(v) for v in value)
        except TypeError:
            raise TypeError(f"{module_name}: {name} must be an int or a tuple of {n} ints, got {value!r}") from None
    if len(value) != n or min(value) < minimum:
        raise ValueError(f"{module_name}: {name} must be an int or a tuple of {n} ints >= {minimum}, got {value!r}")
    return value


class _ConvNd(Module):
    _dims = 2

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros"):
        super().__init__()
        name, n = type(self).__name__, self._dims
        in_channels, out_channels, groups = int(in_channels), int(out_channels), int(groups)
        if in_channels <= 0 or out_channels <= 0 or groups <= 0:
            raise ValueError(f"{name}: in_channels, out_channels and groups must be positive")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: in_channels ({in_channels}) and out_channels ({out_channels}) must both be "
                             f"divisible by groups ({groups})")
        if padding_mode != "zeros":
            raise NotImplementedError(f"{name}: padding_mode={padding_mode!r} is not implemented (only 'zeros')")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = _tuple(name, "kernel_size", kernel_size, n, 1)
        self.stride = _tuple(name, "stride", stride, n, 1)
        self.dilation = _tuple(name, "dilation", dilation, n, 1)
        self.padding_mode = padding_mode
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"{name}: padding must be 'same', 'valid', an int or a tuple, got {padding!r}")
            if padding == "same" and any(s != 1 for s in self.stride):
                raise ValueError(f"{name}: padding='same' is not supported for strided convolutions")
            self.padding = padding
            totals = [0] * n if padding == "valid" else [d * (k - 1) for d, k in zip(self.dilation, self.kernel_size)]
            self._pad = tuple(t // 2 for t in totals)
            self._extra = tuple(t - t // 2 * 2 for t in totals)  # one more at the end where the total is odd
        else:
            self.padding = _tuple(name, "padding", padding, n, 0)
            self._pad, self._extra = self.padding, (0,) * n
        # The 2-D kernel's view of the hyper-parameters (1-D: H = 1), fixed at construction.
        self._k2, self._s2 = self._as2d(self.kernel_size), self._as2d(self.stride)
        self._p2, self._d2 = self._as2d(self._pad, 0), self._as2d(self.dilation)
        self._pointwise = self._k2 == (1, 1) and self._s2 == (1, 1) and self._p2 == (0, 0)
        self.weight = Parameter(np.empty((out_channels, in_channels // groups) + self.kernel_size, np.float32))
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        fan_in = in_channels // groups * math.prod(self.kernel_size)
        self.bias = Parameter(np.empty(out_channels, np.float32)) if bias else None
        if bias:
            init.default_bias_(self.bias, fan_in)
        self._input = None

    def extra_repr(self):
        n = self._dims
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}")
        if isinstance(self.padding, str):
            s += f", padding={self.padding}"
        elif self.padding != (0,) * n:
            s += f", padding={self.padding}"
        if self.dilation != (1,) * n:
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s

    def describe(self):
        """padding: per side as the kernel applies it; extra_padding: one more at the end where 'same' needs an
        odd total (0 otherwise)."""
        return LayerSpec("conv", {"dims": self._dims, "in_channels": self.in_channels,
                                  "out_channels": self.out_channels, "kernel_size": self.kernel_size,
                                  "stride": self.stride, "padding": self._pad, "extra_padding": self._extra,
                                  "dilation": self.dilation, "groups": self.groups},
                         {"weight": self.weight.data, "bias": None if self.bias is None else self.bias.data})

    # 2-D views of the 1-D case: (N, C, L) -> (N, C, 1, L), sizes (k,) -> (1, k).
    def _as2d(self, t, fill=1):
        return t if self._dims == 2 else (fill,) + t

    def _expected(self):
        dims = "H, W" if self._dims == 2 else "L"
        return f"(N, {self.in_channels}, {dims}) or ({self.in_channels}, {dims})"

    def forward(self, x):
        w = self.weight.data
        x = as_float_array(self, x, w.dtype)
        n = self._dims
        unbatched = x.ndim == n + 1
        if unbatched:
            x = x[None]
        if x.ndim != n + 2:
            raise ValueError(f"{self!r}: expected input of shape {self._expected()}, got {x.shape}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"{self!r}: expected {self.in_channels} input channels, got input of shape "
                             f"{x.shape[1:] if unbatched else x.shape} with {x.shape[1]} channels")
        spatial = x.shape[2:]
        for size, k, p, e, d in zip(spatial, self.kernel_size, self._pad, self._extra, self.dilation):
            if size + 2 * p + e < d * (k - 1) + 1:
                raise ValueError(f"{self!r}: input of shape {x.shape[1:] if unbatched else x.shape} (padded by "
                                 f"{self.padding}) is smaller than the "
                                 f"{'dilated ' if d > 1 else ''}kernel {self.kernel_size}")
        if any(self._extra):
            x = np.pad(x, [(0, 0), (0, 0)] + [(0, e) for e in self._extra])
        x4 = x if n == 2 else x[:, :, None, :]
        w4, bias = w if n == 2 else w.reshape(w.shape[:2] + self._k2), None if self.bias is None else self.bias.data
        self._bf16 = None  # under autocast: im2col and bf16 GEMMs (nn/conv_bf16.py), and what their backward needs
        try:
            if amp.gemm_in_bf16(w.dtype) and self.groups == 1:
                x4 = np.ascontiguousarray(x4)
                y, self._bf16 = conv_bf16.forward(x4, w4, bias, self._s2, self._p2, self._d2)
            else:
                y = ops.conv2d_forward(x4, w4, bias, self._s2, self._p2, self._d2, self.groups, True)
        except ValueError as e:
            raise ValueError(f"{self!r}: {e} (input shape {x.shape})") from None
        self._input, self._unbatched = x4, unbatched
        self._out_shape = y.shape if n == 2 else (y.shape[0], y.shape[1], y.shape[3])
        y = y if n == 2 else y.reshape(self._out_shape)
        return y[0] if unbatched else y

    def backward(self, grad_output, need_input_grad=True):
        x = self._input
        require_forward(self, x)
        g = as_float_array(self, grad_output, x.dtype, "grad_output")
        if self._unbatched and g.ndim == self._dims + 1:
            g = g[None]
        check_grad_shape(self, g, self._out_shape)
        w, b = self.weight, self.bias
        ks = self._k2
        gw, acc_w = w.grad_for_kernel() if w.requires_grad else (None, True)
        gb, acc_b = b.grad_for_kernel() if b is not None and b.requires_grad else (None, True)
        if self._dims == 1:
            g, wd = g[:, :, None, :], w.data.reshape(w.shape[:2] + ks)
            gw = None if gw is None else gw.reshape(w.shape[:2] + ks)
        else:
            wd = w.data
        if getattr(self, "_bf16", None) is not None:  # the forward ran under autocast: so does the backward
            dx = conv_bf16.backward(self._bf16, np.ascontiguousarray(g), wd, gw, gb, self._s2, self._p2, self._d2,
                                    need_input_grad, acc_w, acc_b)
        else:
            dx = ops.conv2d_backward(g, x, wd, gw, gb, self._s2, self._p2, self._d2, self.groups,
                                       need_input_grad, acc_w, acc_b)
        if dx is None:
            return None
        if self._dims == 1:
            dx = dx.reshape(dx.shape[0], dx.shape[1], dx.shape[3])
        if any(self._extra):
            dx = np.ascontiguousarray(dx[(slice(None), slice(None)) + tuple(slice(0, s - e) for s, e in
                                                                             zip(dx.shape[2:], self._extra))])
        return dx[0] if self._unbatched else dx



class Conv1d(_ConvNd):
    """1-D convolution (cross-correlation, as PyTorch) over ``(N, C_in, L)`` input.

    Initialised as PyTorch: weight from ``kaiming_uniform_(a=√5)``, bias from ``U(±1/√fan_in)``. The kernels pick
    a direct convolution when the input rows an output row reads fit in L1, and blocked im2col + GEMM otherwise;
    results are identical for any thread count.

    Parameters
    ----------
    in_channels : int
        Channels of the input, ``C_in``.
    out_channels : int
        Channels of the output, ``C_out``.
    kernel_size : int or tuple of int
        Size of the kernel.
    stride : int or tuple of int, default 1
        Step of the kernel.
    padding : int, tuple of int, "same" or "valid", default 0
        Zero padding on both sides; ``"same"`` keeps the size (stride 1 only), ``"valid"`` is 0.
    dilation : int or tuple of int, default 1
        Spacing between kernel elements.
    groups : int, default 1
        Split the channels into groups convolved separately (``groups = in_channels``: depthwise); both
        channel counts must be divisible by it.
    bias : bool, default True
        Learn a bias per output channel.
    padding_mode : str, default "zeros"
        Only ``"zeros"`` is implemented.

    Shape
    -----
    - Input: ``(N, C_in, L)`` or unbatched ``(C_in, L)``.
    - Output: ``(N, C_out, L_out)``, ``L_out = floor((L + 2·padding − dilation·(k − 1) − 1) / stride) + 1``.
    - Parameters: ``weight`` ``(C_out, C_in / groups, k)``, ``bias`` ``(C_out,)``.

    Raises
    ------
    ValueError
        For channel counts not divisible by ``groups``, bad sizes, ``padding="same"`` with a stride, or an
        input whose channels or dimensions do not fit (the message names the layer and the shape).
    NotImplementedError
        For a ``padding_mode`` other than ``"zeros"``.

    See Also
    --------
    Conv2d, MaxPool1d, BatchNorm1d

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> conv = fnn.nn.Conv1d(3, 16, kernel_size=3, padding=1)
    >>> conv.weight.shape
    (16, 3, 3)
    >>> y = conv(np.zeros((4, 3, 32), np.float32))
    >>> y.shape
    (4, 16, 32)
    >>> conv.backward(np.ones_like(y)).shape
    (4, 3, 32)
    """
    _dims = 1


class Conv2d(_ConvNd):
    """2-D convolution (cross-correlation, as PyTorch) over ``(N, C_in, H, W)`` input.

    Initialised as PyTorch: weight from ``kaiming_uniform_(a=√5)``, bias from ``U(±1/√fan_in)``. The kernels pick
    a direct convolution when the input rows an output row reads fit in L1, and blocked im2col + GEMM otherwise;
    results are identical for any thread count.

    Parameters
    ----------
    in_channels : int
        Channels of the input, ``C_in``.
    out_channels : int
        Channels of the output, ``C_out``.
    kernel_size : int or tuple of int
        Size of the kernel.
    stride : int or tuple of int, default 1
        Step of the kernel.
    padding : int, tuple of int, "same" or "valid", default 0
        Zero padding on both sides; ``"same"`` keeps the size (stride 1 only), ``"valid"`` is 0.
    dilation : int or tuple of int, default 1
        Spacing between kernel elements.
    groups : int, default 1
        Split the channels into groups convolved separately (``groups = in_channels``: depthwise); both
        channel counts must be divisible by it.
    bias : bool, default True
        Learn a bias per output channel.
    padding_mode : str, default "zeros"
        Only ``"zeros"`` is implemented.

    Shape
    -----
    - Input: ``(N, C_in, H, W)`` or unbatched ``(C_in, H, W)``.
    - Output: ``(N, C_out, H_out, W_out)``, ``H_out = floor((H + 2·padding[0] − dilation[0]·(kH − 1) − 1) /
      stride[0]) + 1, and likewise W_out``.
    - Parameters: ``weight`` ``(C_out, C_in / groups, kH, kW)``, ``bias`` ``(C_out,)``.

    Raises
    ------
    ValueError
        For channel counts not divisible by ``groups``, bad sizes, ``padding="same"`` with a stride, or an
        input whose channels or dimensions do not fit (the message names the layer and the shape).
    NotImplementedError
        For a ``padding_mode`` other than ``"zeros"``.

    See Also
    --------
    Conv1d, MaxPool2d, BatchNorm2d

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> conv = fnn.nn.Conv2d(3, 16, kernel_size=3, padding=1)
    >>> conv.weight.shape
    (16, 3, 3, 3)
    >>> y = conv(np.zeros((4, 3, 32, 32), np.float32))
    >>> y.shape
    (4, 16, 32, 32)
    >>> conv.backward(np.ones_like(y)).shape
    (4, 3, 32, 32)
    """
    _dims = 2
