"""Normalisation layers over kernels/normalization.hpp: BatchNorm1d/2d, LayerNorm, GroupNorm,
LocalResponseNorm, and the WeightNorm wrapper. PyTorch's names, arguments, defaults, parameter and buffer names
and shapes, so a PyTorch state_dict loads as it is.

Each forward is one C++ call that also returns the statistics backward needs. BatchNorm in training mode
normalises with the batch mean and biased variance and updates the running statistics as PyTorch does
(r ← (1 − m)·r + m·batch, the running variance fed the unbiased batch variance; momentum=None: cumulative
average); in eval mode it normalises with the running statistics.

LocalResponseNorm follows PyTorch's formula b = a / (k + α/n · Σ a²)^β but with the seed's defaults, size=5,
alpha=1e-4, beta=0.75 and k=2 (PyTorch's default k is 1.0; its `size` has no default).
"""
import numbers

import numpy as np

from .. import ops
from ._checks import as_float_array, check_grad_shape, module_dtype, require_forward
from .module import LayerSpec, Module, Parameter

__all__ = ["BatchNorm1d", "BatchNorm2d", "LayerNorm", "GroupNorm", "LocalResponseNorm", "WeightNorm"]


def _kernel(module, fn, x, *args):
    """Runs a forward kernel; its ValueErrors (NaN input) are re-raised naming the layer and the shape."""
    try:
        return fn(x, *args)
    except ValueError as e:
        raise ValueError(f"{module!r}: {e} (input shape {x.shape})") from None


def _grad_output(module, grad_output, x):
    g = as_float_array(module, grad_output, x.dtype, "grad_output")
    check_grad_shape(module, g, x.shape)
    return g


def _param_grads(weight, bias):
    """(grad_weight, accumulate_weight, grad_bias, accumulate_bias) for a kernel: None for a frozen or absent
    parameter (no gradient), the buffer flattened otherwise (LayerNorm's weight may have several dims)."""
    gw, aw = weight.grad_for_kernel() if weight is not None and weight.requires_grad else (None, True)
    gb, ab = bias.grad_for_kernel() if bias is not None and bias.requires_grad else (None, True)
    return (None if gw is None else gw.reshape(-1)), aw, (None if gb is None else gb.reshape(-1)), ab


def _data(p):
    return None if p is None else p.data.reshape(-1)


class _BatchNorm(Module):
    _input_desc = ""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True):
        super().__init__()
        if int(num_features) <= 0:
            raise ValueError(f"{type(self).__name__}: num_features must be positive, got {num_features}")
        self.num_features = int(num_features)
        self.eps = float(eps)
        self.momentum = None if momentum is None else float(momentum)
        self.affine, self.track_running_stats = bool(affine), bool(track_running_stats)
        c = self.num_features
        self.weight = Parameter(np.ones(c, np.float32)) if self.affine else None
        self.bias = Parameter(np.zeros(c, np.float32)) if self.affine else None
        if self.track_running_stats:
            self.register_buffer("running_mean", np.zeros(c, np.float32))
            self.register_buffer("running_var", np.ones(c, np.float32))
            self.register_buffer("num_batches_tracked", np.array(0, np.int64))
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None
        self._input = self._relu_out = None

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")

    def describe(self):
        return LayerSpec("batch_norm", {"num_features": self.num_features, "eps": self.eps,
                                        "momentum": self.momentum, "track_running_stats": self.track_running_stats},
                         {"weight": _data(self.weight), "bias": _data(self.bias),
                          "running_mean": self.running_mean, "running_var": self.running_var})

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean[...] = 0
            self.running_var[...] = 1
            self.num_batches_tracked[...] = 0

    def _dtype(self, x):
        if self.weight is not None:
            return self.weight.data.dtype
        if self.running_mean is not None:
            return self.running_mean.dtype
        return module_dtype(self, x)

    def _check_ndim(self, x):
        raise NotImplementedError

    def forward(self, x):
        return self._forward(x, None, False)

    def forward_relu(self, x, residual=None):
        """relu(self(x)), or relu(self(x) + residual), in one pass: the graph executor's fusion of a
        training-mode BatchNorm with the ReLU (and residual add) after it. The same bits as the separate ops.

        Parameters
        ----------
        x : ndarray
            The layer's input, as for ``forward``.
        residual : ndarray or None, default None
            An array of the output's shape and dtype (C-contiguous) added before the ReLU.

        Returns
        -------
        ndarray or None
            The ReLU's output; None (and nothing done) for a residual that is not a C-contiguous array of the
            output's shape and dtype (the sum would broadcast or change dtype). Without a residual,
            ``backward`` then takes the gradient of this output (the ReLU's mask is applied inside the batch
            norm backward); with one, it takes the gradient of the batch norm's output, as after ``forward``.

        Examples
        --------
        >>> import numpy as np, fastnn as fnn
        >>> bn = fnn.nn.BatchNorm2d(3)
        >>> x = np.random.default_rng(0).normal(size=(4, 3, 5, 5)).astype(np.float32)
        >>> y = bn.forward_relu(x)
        >>> bool((y >= 0).all()), y.shape
        (True, (4, 3, 5, 5))
        >>> dx = bn.backward(np.ones_like(y))                # through the ReLU and the batch norm
        """
        return self._forward(x, residual, True)

    def _forward(self, x, residual, relu):
        x = as_float_array(self, x, self._dtype(x))
        if residual is not None and (type(residual) is not np.ndarray or residual.shape != x.shape or
                                     residual.dtype != x.dtype or not residual.flags.c_contiguous):
            return None  # y + residual would broadcast or change dtype: the caller runs the separate ops
        self._check_ndim(x)
        if x.shape[1] != self.num_features:
            raise ValueError(f"{self!r}: expected input with {self.num_features} channels (dimension 1), "
                             f"got shape {x.shape}")
        use_batch_stats = self.training or not self.track_running_stats
        if self.training and x.size // x.shape[1] <= 1:
            raise ValueError(f"{self!r}: Expected more than 1 value per channel when training, got input "
                             f"size {x.shape}")
        momentum = 0.0
        update = self.training and self.track_running_stats
        if update:
            self.num_batches_tracked[...] += 1
            momentum = 1.0 / int(self.num_batches_tracked) if self.momentum is None else self.momentum
        stats = (self.running_mean, self.running_var) if (update or not use_batch_stats) else (None, None)
        y, self._mean, self._invstd = _kernel(self, ops.batch_norm_forward, x, _data(self.weight),
                                              _data(self.bias), *stats, use_batch_stats, momentum, self.eps, True,
                                              residual, relu)
        self._input, self._batch_stats = x, use_batch_stats
        self._relu_out = y if relu and residual is None else None
        return y

    def backward(self, grad_output, need_input_grad=True):
        x = self._input
        require_forward(self, x)
        g = _grad_output(self, grad_output, x)
        gw, aw, gb, ab = _param_grads(self.weight, self.bias)
        return ops.batch_norm_backward(g, x, self._mean, self._invstd, _data(self.weight), gw, gb,
                                         self._batch_stats, need_input_grad, aw, ab, self._relu_out)



class BatchNorm1d(_BatchNorm):
    r"""Batch normalisation over a batch of features (2-D) or sequences (3-D).

    In training mode each feature is normalised with the batch's mean and biased variance,

    .. math:: y = \frac{x - \mathrm{E}[x]}{\sqrt{\mathrm{Var}[x] + \epsilon}} \gamma + \beta,

    and the running statistics move by ``running = (1 − momentum)·running + momentum·batch`` (with the
    unbiased variance, as PyTorch); in eval mode the running statistics are used.

    Parameters
    ----------
    num_features : int
        ``C``, the number of features or channels.
    eps : float, default 1e-5
        Added to the variance.
    momentum : float or None, default 0.1
        Weight of the new batch in the running statistics; None keeps a cumulative average.
    affine : bool, default True
        Learn ``weight`` (γ, ones at first) and ``bias`` (β, zeros at first).
    track_running_stats : bool, default True
        Keep ``running_mean``, ``running_var`` and ``num_batches_tracked`` buffers for eval mode; without them
        eval mode uses the batch's statistics too.

    Shape
    -----
    - Input: ``(N, C)`` (per feature) or ``(N, C, L)`` (per channel).
    - Output: the input's shape.
    - Parameters: ``weight``, ``bias`` ``(C,)``; buffers ``running_mean``, ``running_var`` ``(C,)``,
      ``num_batches_tracked`` (as PyTorch's, so its state dicts load).

    Raises
    ------
    ValueError
        For ``num_features <= 0`` or an input of the wrong dimensions or channel count.

    See Also
    --------
    BatchNorm2d, LayerNorm, GroupNorm

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> bn = fnn.nn.BatchNorm1d(4)
    >>> x = np.random.default_rng(0).normal(3.0, 2.0, size=(16, 4)).astype(np.float32)
    >>> y = bn(x)                                        # training mode: batch statistics
    >>> bool(abs(y.mean()) < 1e-5), bn.num_batches_tracked
    (True, array(1))
    >>> bn.eval()(x).shape                               # eval mode: running statistics
    (16, 4)
    """

    def _check_ndim(self, x):
        if x.ndim not in (2, 3):
            raise ValueError(f"{self!r}: expected 2-D (N, {self.num_features}) or 3-D (N, {self.num_features}, L) "
                             f"input, got shape {x.shape}")


class BatchNorm2d(_BatchNorm):
    r"""Batch normalisation over a batch of images, per channel.

    In training mode each feature is normalised with the batch's mean and biased variance,

    .. math:: y = \frac{x - \mathrm{E}[x]}{\sqrt{\mathrm{Var}[x] + \epsilon}} \gamma + \beta,

    and the running statistics move by ``running = (1 − momentum)·running + momentum·batch`` (with the
    unbiased variance, as PyTorch); in eval mode the running statistics are used.

    Parameters
    ----------
    num_features : int
        ``C``, the number of features or channels.
    eps : float, default 1e-5
        Added to the variance.
    momentum : float or None, default 0.1
        Weight of the new batch in the running statistics; None keeps a cumulative average.
    affine : bool, default True
        Learn ``weight`` (γ, ones at first) and ``bias`` (β, zeros at first).
    track_running_stats : bool, default True
        Keep ``running_mean``, ``running_var`` and ``num_batches_tracked`` buffers for eval mode; without them
        eval mode uses the batch's statistics too.

    Shape
    -----
    - Input: ``(N, C, H, W)``, normalised per channel over ``N, H, W``.
    - Output: the input's shape.
    - Parameters: ``weight``, ``bias`` ``(C,)``; buffers ``running_mean``, ``running_var`` ``(C,)``,
      ``num_batches_tracked`` (as PyTorch's, so its state dicts load).

    Raises
    ------
    ValueError
        For ``num_features <= 0`` or an input of the wrong dimensions or channel count.

    See Also
    --------
    BatchNorm1d, LayerNorm, GroupNorm

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> bn = fnn.nn.BatchNorm2d(4)
    >>> x = np.random.default_rng(0).normal(3.0, 2.0, size=(16, 4, 5, 5)).astype(np.float32)
    >>> y = bn(x)                                        # training mode: batch statistics
    >>> bool(abs(y.mean()) < 1e-5), bn.num_batches_tracked
    (True, array(1))
    >>> bn.eval()(x).shape                               # eval mode: running statistics
    (16, 4, 5, 5)
    """

    def _check_ndim(self, x):
        if x.ndim != 4:
            raise ValueError(f"{self!r}: expected 4-D input (N, {self.num_features}, H, W), got shape {x.shape}")


class LayerNorm(Module):
    r"""Layer normalisation over the trailing dimensions ``normalized_shape`` of each sample.

    .. math:: y = \frac{x - \mathrm{E}[x]}{\sqrt{\mathrm{Var}[x] + \epsilon}} \gamma + \beta

    with the mean and biased variance over those dimensions; no running statistics.

    Parameters
    ----------
    normalized_shape : int or tuple of int
        The trailing shape normalised over, e.g. ``d_model``.
    eps : float, default 1e-5
        Added to the variance.
    elementwise_affine : bool, default True
        Learn ``weight`` (γ) and ``bias`` (β) of shape ``normalized_shape``.
    bias : bool, default True
        Learn β (with ``elementwise_affine``).

    Shape
    -----
    - Input: ``(*, *normalized_shape)``.
    - Output: the input's shape.
    - Parameters: ``weight``, ``bias`` of shape ``normalized_shape``.

    Raises
    ------
    ValueError
        If the input's trailing dimensions are not ``normalized_shape``.

    See Also
    --------
    BatchNorm1d, GroupNorm

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> ln = fnn.nn.LayerNorm(8)
    >>> y = ln(np.random.default_rng(0).normal(5.0, 3.0, size=(2, 10, 8)).astype(np.float32))
    >>> y.shape, bool(np.allclose(y.mean(axis=-1), 0, atol=1e-5))
    ((2, 10, 8), True)
    """

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True):
        super().__init__()
        if isinstance(normalized_shape, numbers.Integral):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(int(s) for s in normalized_shape)
        if not self.normalized_shape or min(self.normalized_shape) <= 0:
            raise ValueError(f"LayerNorm: normalized_shape must be non-empty and positive, got {normalized_shape}")
        self.eps, self.elementwise_affine = float(eps), bool(elementwise_affine)
        affine = self.elementwise_affine
        self.weight = Parameter(np.ones(self.normalized_shape, np.float32)) if affine else None
        self.bias = Parameter(np.zeros(self.normalized_shape, np.float32)) if affine and bias else None
        self._input = None

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"

    def forward(self, x):
        x = as_float_array(self, x, self.weight.data.dtype if self.weight is not None else module_dtype(self, x))
        k = len(self.normalized_shape)
        if x.shape[x.ndim - k:] != self.normalized_shape or x.ndim < k:
            raise ValueError(f"{self!r}: expected input of shape (*, {', '.join(map(str, self.normalized_shape))}), "
                             f"got {x.shape}")
        y, self._mean, self._invstd = _kernel(self, ops.layer_norm_forward, x, k, _data(self.weight),
                                              _data(self.bias), self.eps, True)
        self._input = x
        return y

    def backward(self, grad_output, need_input_grad=True):
        x = self._input
        require_forward(self, x)
        g = _grad_output(self, grad_output, x)
        gw, aw, gb, ab = _param_grads(self.weight, self.bias)
        return ops.layer_norm_backward(g, x, len(self.normalized_shape), self._mean, self._invstd,
                                         _data(self.weight), gw, gb, need_input_grad, aw, ab)



class GroupNorm(Module):
    """Group normalisation: split the channels into groups and normalise each (sample, group).

    Each group of ``C / num_groups`` channels is normalised by its mean and biased variance over the
    group's channels and positions, then scaled and shifted per channel (``weight``, ``bias``) when
    ``affine``. Independent of the batch size.

    Parameters
    ----------
    num_groups : int
        Number of groups; must divide ``num_channels``.
    num_channels : int
        ``C``.
    eps : float, default 1e-5
        Added to the variance.
    affine : bool, default True
        Learn ``weight`` (ones) and ``bias`` (zeros) per channel.

    Shape
    -----
    - Input: ``(N, C, *)``.
    - Output: the input's shape.
    - Parameters: ``weight``, ``bias`` ``(C,)``.

    Raises
    ------
    ValueError
        If ``num_groups`` does not divide ``num_channels``, or the input has another channel count.

    See Also
    --------
    LayerNorm, BatchNorm2d

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> gn = fnn.nn.GroupNorm(2, 4)
    >>> y = gn(np.random.default_rng(0).normal(3.0, 2.0, (2, 4, 5, 5)).astype(np.float32))
    >>> bool(np.allclose(y.reshape(2, 2, -1).mean(axis=-1), 0, atol=1e-5))
    True
    """

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True):
        super().__init__()
        self.num_groups, self.num_channels = int(num_groups), int(num_channels)
        if self.num_groups <= 0 or self.num_channels <= 0 or self.num_channels % self.num_groups:
            raise ValueError(f"GroupNorm: num_channels ({num_channels}) must be divisible by num_groups "
                             f"({num_groups}), both positive")
        self.eps, self.affine = float(eps), bool(affine)
        self.weight = Parameter(np.ones(self.num_channels, np.float32)) if self.affine else None
        self.bias = Parameter(np.zeros(self.num_channels, np.float32)) if self.affine else None
        self._input = None

    def extra_repr(self):
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"

    def forward(self, x):
        x = as_float_array(self, x, self.weight.data.dtype if self.weight is not None else module_dtype(self, x))
        if x.ndim < 2 or x.shape[1] != self.num_channels:
            raise ValueError(f"{self!r}: expected input of shape (N, {self.num_channels}, *), got {x.shape}")
        y, self._mean, self._invstd = _kernel(self, ops.group_norm_forward, x, self.num_groups,
                                              _data(self.weight), _data(self.bias), self.eps, True)
        self._input = x
        return y

    def backward(self, grad_output, need_input_grad=True):
        x = self._input
        require_forward(self, x)
        g = _grad_output(self, grad_output, x)
        gw, aw, gb, ab = _param_grads(self.weight, self.bias)
        return ops.group_norm_backward(g, x, self.num_groups, self._mean, self._invstd, _data(self.weight),
                                         gw, gb, need_input_grad, aw, ab)



class LocalResponseNorm(Module):
    """Local response normalisation across channels (AlexNet): ``b_c = a_c / (k + alpha/size · Σ a_c'²)^beta``.

    The sum runs over ``size`` channels around ``c`` (zero-padded at the edges). The defaults are AlexNet's;
    note ``k=2`` where PyTorch's default is ``k=1.0``.

    Parameters
    ----------
    size : int, default 5
        Channels in the sum.
    alpha : float, default 1e-4
        Scale.
    beta : float, default 0.75
        Exponent.
    k : float, default 2.0
        Additive constant.

    Shape
    -----
    - Input: ``(N, C, *)`` with at least 3 dimensions.
    - Output: the input's shape.
    - Parameters: none.

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> lrn = fnn.nn.LocalResponseNorm(size=3, alpha=3.0, beta=1.0, k=1.0)
    >>> x = np.ones((1, 3, 1, 1), np.float32)
    >>> lrn(x).ravel()                   # edges see 2 channels, the middle 3
    array([0.33333334, 0.25      , 0.33333334], dtype=float32)
    """

    def __init__(self, size=5, alpha=1e-4, beta=0.75, k=2.0):
        super().__init__()
        if int(size) <= 0:
            raise ValueError(f"LocalResponseNorm: size must be positive, got {size}")
        self.size, self.alpha, self.beta, self.k = int(size), float(alpha), float(beta), float(k)
        self._input = None

    def extra_repr(self):
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"

    def forward(self, x):
        x = as_float_array(self, x, module_dtype(self, x))
        if x.ndim < 3:
            raise ValueError(f"{self!r}: expected 3-D or higher input (N, C, *), got shape {x.shape}")
        y = _kernel(self, ops.local_response_norm_forward, x, self.size, self.alpha, self.beta, self.k, True)
        self._input = x
        return y

    def backward(self, grad_output):
        x = self._input
        require_forward(self, x)
        g = _grad_output(self, grad_output, x)
        return ops.local_response_norm_backward(g, x, self.size, self.alpha, self.beta, self.k)


class WeightNorm(Module):
    """Weight normalisation (Salimans & Kingma) of a layer's weight: ``w = g · v / ‖v‖``.

    The norm is taken over every dimension but ``dim`` (None: the whole tensor). Parameters ``weight_g`` and
    ``weight_v`` (PyTorch's names and shapes) replace the wrapped weight, which is no longer a parameter of the
    inner module: before each forward ``w`` is computed into it, and backward maps its gradient back to ``g``
    and ``v``. Works for any layer whose weight is a Parameter (Linear, Conv1d/2d, ...).

    Parameters
    ----------
    module : Module
        The layer to wrap.
    name : str, default "weight"
        The parameter to normalise.
    dim : int or None, default 0
        The dimension kept (0: one norm per output unit).

    Shape
    -----
    - Input and output: the wrapped module's.
    - Parameters: ``weight_g`` (the weight's shape with 1 everywhere but ``dim``), ``weight_v`` (the
      weight's shape), plus the module's others (e.g. ``module.bias``).

    Raises
    ------
    TypeError
        If ``module`` is not a Module.
    ValueError
        If it has no parameter ``name``, or ``dim`` is out of range.

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> wn = fnn.nn.WeightNorm(fnn.nn.Linear(4, 3))
    >>> sorted(name for name, _ in wn.named_parameters())
    ['module.bias', 'weight_g', 'weight_v']
    >>> wn.weight_g.shape, wn(np.ones((2, 4), np.float32)).shape
    ((3, 1), (2, 3))
    """

    def __init__(self, module, name="weight", dim=0):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"WeightNorm: module must be a fastnn Module, got {type(module).__name__}")
        p = getattr(module, name, None)
        if not isinstance(p, Parameter) or module._parameters.get(name) is not p:
            raise ValueError(f"WeightNorm: {module!r} has no parameter named '{name}'")
        if dim is not None:
            dim = int(dim)
            if not -p.data.ndim <= dim < p.data.ndim:
                raise ValueError(f"WeightNorm: dim {dim} out of range for {name} of shape {p.shape}")
            dim %= p.data.ndim
        self.name, self.dim = name, dim
        self.module = module
        del module._parameters[name]  # w is derived from g and v now; the attribute stays for the layer's use
        object.__setattr__(self, "_weight", p)  # not registered: not a parameter of the wrapper either
        v = p.data.copy()
        self.weight_g = Parameter(self._norm(v))
        self.weight_v = Parameter(v)
        self._cache = None

    def __repr__(self):
        return f"WeightNorm({self.module!r}, name={self.name!r}, dim={self.dim})"

    def _axes(self, ndim):
        return tuple(a for a in range(ndim) if a != self.dim)

    def _norm(self, v):
        return np.sqrt(np.sum(v * v, axis=self._axes(v.ndim), keepdims=self.dim is not None))

    def forward(self, *args, **kwargs):
        g, v = self.weight_g.data, self.weight_v.data
        norm = self._norm(v)
        w = np.ascontiguousarray(g * (v / norm), dtype=v.dtype)
        p = self._weight
        p.data = w
        if p._grad.shape != w.shape or p._grad.dtype != w.dtype:
            p._grad = np.zeros_like(w)
        p.requires_grad = self.weight_g.requires_grad or self.weight_v.requires_grad
        self._cache = norm
        return self.module.forward(*args, **kwargs)

    def _map_gradient(self):
        p, norm = self._weight, self._cache
        if not p.requires_grad:
            return
        dw = p._grad
        v = self.weight_v.data
        u = v / norm
        dg = np.sum(dw * u, axis=self._axes(v.ndim), keepdims=self.dim is not None)
        for param, value in ((self.weight_g, dg),
                             (self.weight_v, (self.weight_g.data / norm) * (dw - u * dg))):
            if param.requires_grad:
                buf, accumulate = param.grad_for_kernel()
                if accumulate:
                    buf += value
                else:
                    buf[...] = value

    def backward(self, grad_output, need_input_grad=True):
        require_forward(self, self._cache)
        self._weight.zero_grad()  # the inner layer writes dL/dw afresh; it is mapped to g and v below
        if need_input_grad:
            dx = self.module.backward(grad_output)
        else:
            dx = self.module.backward_parameters(grad_output)
        self._map_gradient()
        return dx
