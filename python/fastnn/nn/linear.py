"""Linear (dense) layer: y = x·Wᵀ + b over kernels/dense.hpp; plus Identity, Flatten and Unflatten."""
import math

import numpy as np

from .. import amp, init, ops
from ._checks import as_float_array, check_grad_shape, require_forward
from .module import LayerSpec, Module, Parameter


class Linear(Module):
    """Fully connected layer: ``y = x @ weight.T + bias``.

    Initialised as PyTorch: weight and bias from ``U(±1/√in_features)``.

    Parameters
    ----------
    in_features : int
        Size of each input sample; > 0.
    out_features : int
        Size of each output sample; > 0.
    bias : bool, default True
        Learn an additive bias.

    Shape
    -----
    - Input: ``(*, in_features)`` — ``(N, in)``, unbatched ``(in,)``, or any leading dimensions such as
      ``(N, T, in)``, as PyTorch.
    - Output: ``(*, out_features)``.
    - Parameters: ``weight`` ``(out_features, in_features)``, ``bias`` ``(out_features,)``.

    Raises
    ------
    ValueError
        For sizes that are not positive, or an input whose last dimension is not ``in_features`` (the message
        names the layer and the shape).

    See Also
    --------
    fastnn.nn.functional.linear

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> layer = fnn.nn.Linear(20, 30)
    >>> layer(np.ones((128, 20), np.float32)).shape
    (128, 30)
    >>> layer.weight.shape, layer.bias.shape
    ((30, 20), (30,))
    >>> dx = layer.backward(np.ones((128, 30), np.float32))      # fills weight.grad and bias.grad
    >>> dx.shape, float(layer.bias.grad[0])
    ((128, 20), 128.0)
    """

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        if int(in_features) <= 0 or int(out_features) <= 0:
            raise ValueError(f"Linear: in_features and out_features must be positive, "
                             f"got {in_features} and {out_features}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.weight = Parameter(np.empty((self.out_features, self.in_features), np.float32))
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.bias = Parameter(np.empty(self.out_features, np.float32)) if bias else None
        if bias:
            init.default_bias_(self.bias, self.in_features)
        self._input = None

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}" + ("" if self.bias is not None else ", bias=False")

    def describe(self):
        return LayerSpec("linear", {"in_features": self.in_features, "out_features": self.out_features},
                         {"weight": self.weight.data, "bias": None if self.bias is None else self.bias.data})

    def forward(self, x):
        w = self.weight.data
        x = as_float_array(self, x, w.dtype)
        lead = x.shape[:-1]
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"{self!r}: expected input of shape (N, {self.in_features}), ({self.in_features},) or "
                             f"(*, {self.in_features}), got {x.shape}")
        if x.ndim != 2:
            x = x.reshape(-1, self.in_features)
        bf16 = amp.gemm_in_bf16(w.dtype)
        try:
            forward = amp.linear_forward if bf16 else ops.linear_forward  # autocast: the GEMMs in bf16
            y = forward(x, w, None if self.bias is None else self.bias.data, True)
        except ValueError as e:
            raise ValueError(f"{self!r}: {e} (input shape {x.shape})") from None
        self._input, self._lead, self._bf16 = x, lead, bf16
        return y if len(lead) == 1 else y.reshape(lead + (self.out_features,))

    def backward(self, grad_output, need_input_grad=True):
        x = self._input
        require_forward(self, x)
        lead = self._lead
        g = as_float_array(self, grad_output, x.dtype, "grad_output")
        check_grad_shape(self, g, lead + (self.out_features,))
        if len(lead) != 1:
            g = g.reshape(-1, self.out_features)
        w, b = self.weight, self.bias
        # Frozen parameters get no gradient: the kernel is given None and skips that GEMM.
        gw, acc_w = w.grad_for_kernel() if w.requires_grad else (None, True)
        gb, acc_b = b.grad_for_kernel() if b is not None and b.requires_grad else (None, True)
        # The forward ran under autocast: so do the backward's GEMMs.
        backward = amp.linear_backward if getattr(self, "_bf16", False) else ops.linear_backward
        dx = backward(g, x, w.data, gw, gb, need_input_grad, acc_w, acc_b)
        if dx is not None and len(lead) != 1:
            dx = dx.reshape(lead + (self.in_features,))
        return dx


class Identity(Module):
    """Returns its input unchanged (a placeholder; accepts and ignores constructor arguments, like PyTorch).

    Parameters
    ----------
    *args, **kwargs
        Ignored.

    Shape
    -----
    - Input: any shape. Output: the same.

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> x = np.ones(3, np.float32)
    >>> np.array_equal(fnn.nn.Identity(54, unused="x")(x), x)
    True
    """

    def __init__(self, *args, **kwargs):
        super().__init__()

    def describe(self):
        return LayerSpec("identity", {}, {})

    def forward(self, x):
        return x

    def backward(self, grad_output):
        return grad_output


class Flatten(Module):
    """Flatten dimensions ``start_dim`` to ``end_dim`` into one (by default all but the batch dimension).

    Parameters
    ----------
    start_dim : int, default 1
        First dimension flattened.
    end_dim : int, default -1
        Last dimension flattened.

    Shape
    -----
    - Input: ``(N, *dims)``.
    - Output: ``(N, prod(dims))`` by default.
    - Parameters: none.

    See Also
    --------
    Unflatten, Reshape

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> fnn.nn.Flatten()(np.zeros((32, 8, 4, 4), np.float32)).shape
    (32, 128)
    """

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = int(start_dim), int(end_dim)
        self._shape = None

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"

    def describe(self):
        return LayerSpec("flatten", {"start_dim": self.start_dim, "end_dim": self.end_dim}, {})

    def forward(self, x):
        x = np.asarray(x)
        nd = x.ndim
        s = self.start_dim % nd if nd else 0
        e = self.end_dim % nd if nd else 0
        if s > e:
            raise ValueError(f"{self!r}: cannot flatten input of shape {x.shape}")
        self._shape = x.shape
        return x.reshape(x.shape[:s] + (-1,) + x.shape[e + 1:])

    def backward(self, grad_output):
        require_forward(self, self._shape)
        return np.asarray(grad_output).reshape(self._shape)


class Unflatten(Module):
    """Split dimension ``dim`` into ``unflattened_size``.

    Parameters
    ----------
    dim : int
        The dimension to split.
    unflattened_size : tuple of int
        Its new sizes; their product must equal its size.

    Shape
    -----
    - Input: ``(*, S, *)`` with ``S = prod(unflattened_size)`` at ``dim``.
    - Output: ``(*, *unflattened_size, *)``.
    - Parameters: none.

    See Also
    --------
    Flatten

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> fnn.nn.Unflatten(1, (8, 4, 4))(np.zeros((2, 128), np.float32)).shape
    (2, 8, 4, 4)
    """

    def __init__(self, dim, unflattened_size):
        super().__init__()
        self.dim, self.unflattened_size = int(dim), tuple(int(s) for s in unflattened_size)
        self._shape = None

    def extra_repr(self):
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"

    def forward(self, x):
        x = np.asarray(x)
        d = self.dim % x.ndim
        if math.prod(self.unflattened_size) != x.shape[d]:
            raise ValueError(f"{self!r}: dimension {d} of input {x.shape} has size {x.shape[d]}, "
                             f"which cannot be unflattened to {self.unflattened_size}")
        self._shape = x.shape
        return x.reshape(x.shape[:d] + self.unflattened_size + x.shape[d + 1:])

    def backward(self, grad_output):
        require_forward(self, self._shape)
        return np.asarray(grad_output).reshape(self._shape)
