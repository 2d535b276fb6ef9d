"""Mixed precision on the CPU: ``fnn.autocast("bfloat16")`` runs the float32 GEMMs of Linear and Conv layers
with inputs rounded to bfloat16 and float32 sums (kernels/bf16_gemm.hpp), as ``torch.autocast("cpu",
dtype=torch.bfloat16)`` does. Parameters, gradients, optimizer state and layer outputs stay float32.

The state is per Python thread, like PyTorch's. Layers ask `gemm_in_bf16(dtype)` at forward time and keep
the answer for their backward, so a backward outside the block runs its GEMMs as its forward did.
FASTNN_BF16_DOT=0 in the environment (read at import) makes the kernels skip AVX512_BF16 dot products and
take their fallback (the same numbers up to the order of float32 sums)."""
import functools
import os
import threading

import numpy as np

from . import ops

__all__ = ["autocast", "is_autocast_enabled"]

_DTYPES = ("bfloat16", "bf16")
_use_dot = os.environ.get("FASTNN_BF16_DOT", "1").strip() != "0"


class _State(threading.local):
    enabled = False


_state = _State()


class autocast:
    """Run float32 matrix products in bfloat16 with float32 sums inside a ``with`` block.

    PyTorch's ``torch.autocast("cpu", dtype=torch.bfloat16)`` for fastnn. Inside the block the GEMMs of
    :class:`~fastnn.nn.Linear` layers, of ``fastnn.nn.functional.linear`` and of convolutions with
    ``groups=1`` (as im2col and GEMMs) — forward, and the backward that follows such a forward, wherever it
    runs — round their float32 inputs to bfloat16 (round to nearest even) and sum the exact products in
    float32; grouped convolutions and ``matmul`` stay float32. Master weights, gradients, optimizer state
    and every layer's output stay float32; float64 models are not affected. On CPUs with AVX512_BF16 the
    products use its dot-product instructions (about twice the float32 rate on AMD Zen 4); elsewhere the
    rounded inputs go through the float32 GEMM, which gives the same numbers up to the order of the sums.
    :func:`fastnn.show_config` says which. Blocks nest (the innermost decides) and restore the previous state
    on exit, exceptions included; the state belongs to the calling Python thread. Wrap
    :meth:`fastnn.Trainer.fit` in the block to train a whole model this way. In eval mode inside the block,
    models run layer by layer (not through their fused float32 plans) so that their GEMMs are bf16 too.

    Parameters
    ----------
    dtype : {"bfloat16", "bf16"}, default "bfloat16"
        The reduced precision (bfloat16 is the only one).
    enabled : bool, default True
        False makes the block run in float32 (a switch in scripts, as PyTorch's ``enabled``).

    Raises
    ------
    ValueError
        For another dtype.

    See Also
    --------
    is_autocast_enabled, show_config

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> _ = fnn.manual_seed(0)
    >>> layer = fnn.nn.Linear(64, 8)
    >>> x = np.random.default_rng(0).standard_normal((32, 64)).astype(np.float32)
    >>> with fnn.autocast("bfloat16"):
    ...     y = layer(x)
    ...     fnn.is_autocast_enabled()
    True
    >>> y.dtype, fnn.is_autocast_enabled()
    (dtype('float32'), False)
    >>> bool(np.allclose(y, layer(x), atol=0.05)) and not np.array_equal(y, layer(x))
    True
    """

    def __init__(self, dtype="bfloat16", enabled=True):
        name = getattr(dtype, "__name__", dtype)
        if not isinstance(name, str) or name.lower() not in _DTYPES:
            raise ValueError(f"autocast: dtype must be 'bfloat16', got {dtype!r}")
        self.dtype, self.enabled = "bfloat16", bool(enabled)
        self._previous = []

    def __enter__(self):
        self._previous.append(_state.enabled)
        _state.enabled = self.enabled
        return self

    def __exit__(self, *exc):
        _state.enabled = self._previous.pop()
        return False

    def __call__(self, function):
        """Use as a decorator: `function` runs inside the block."""
        @functools.wraps(function)
        def wrapped(*args, **kwargs):
            with autocast(self.dtype, self.enabled):
                return function(*args, **kwargs)
        return wrapped

    def __repr__(self):
        return f"autocast(dtype={self.dtype!r}, enabled={self.enabled})"


def is_autocast_enabled():
    """Whether the calling thread is inside an enabled :class:`autocast` block.

    Returns
    -------
    bool
        True inside ``with fnn.autocast("bfloat16"):`` (and not in a nested ``enabled=False`` block).

    Examples
    --------
    >>> import fastnn as fnn
    >>> fnn.is_autocast_enabled()
    False
    >>> with fnn.autocast("bfloat16"):
    ...     with fnn.autocast("bfloat16", enabled=False):
    ...         fnn.is_autocast_enabled()
    False
    """
    return _state.enabled


def gemm_in_bf16(dtype):
    """Whether a GEMM on arrays of `dtype` runs in bf16 now (autocast on, and float32: float64 never)."""
    return _state.enabled and dtype == np.float32


def dot_products():
    """Whether bf16 GEMMs use AVX512_BF16 dot products (else the fallback): CPU, kernel level, FASTNN_BF16_DOT."""
    return _use_dot and ops.bf16_dot_supported()


def matmul(a, b, out=None, trans_a=False, trans_b=False, accumulate=False, bias=None, check_finite=False):
    """out (+)= op(a) @ op(b) (+ bias per column) in bf16 with float32 sums (2-D float32, C-contiguous);
    check_finite: NaN or inf in a raise ValueError."""
    return ops.bf16_matmul(a, b, out, trans_a, trans_b, accumulate, _use_dot, bias, check_finite)


def linear_forward(x, w, b, check_finite):
    """y = x·Wᵀ + b with the GEMM in bf16, with ops.linear_forward's arguments (x (N, in), W (out, in), b (out,)
    or None; float32, C-contiguous): one kernel call, which adds the bias as it stores y (the sum of the bias
    stored first and the product added to it) and, with check_finite, raises ValueError for NaN or inf in x
    (found while x is packed)."""
    return matmul(x, w, trans_b=True, bias=b, check_finite=check_finite)


def linear_backward(g, x, w, gw, gb, need_input_grad, acc_w, acc_b):
    """The backward of linear_forward, with ops.linear_backward's arguments: gW (+)= gᵀ·x and dx = g·W in bf16,
    the bias gradient by the float32 kernel; returns dx or None."""
    if gw is not None:
        matmul(g, x, gw, trans_a=True, accumulate=acc_w)
    if gb is not None:
        ops.linear_backward(g, x, w, None, gb, False, acc_w, acc_b)
    return matmul(g, w) if need_input_grad else None
