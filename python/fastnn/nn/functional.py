"""fastnn.nn.functional: stateless ops with PyTorch's names and arguments.

On arrays they compute eagerly and return an array (no gradient is kept: use them inside a module's
forward to get one). Inside a traced forward or a Keras-style graph (arguments that are traced values)
they are recorded as graph nodes, and backward runs their gradient. Parameters may be passed where an
array is expected (F.linear(x, self.weight, self.bias)); their gradients go to `.grad`.

    import fastnn.nn.functional as F
    class Block(fnn.nn.Module):
        def forward(self, x):
            return F.relu(self.bn(self.conv(x)) + x)
"""
import numpy as np

from .function_ops import OPS
from .module import Parameter, _symbolic_in, tracing_state
from .tracing import record_call

__all__ = ["relu", "leaky_relu", "gelu", "silu", "sigmoid", "tanh", "elu", "softplus", "softmax", "log_softmax",
           "dropout", "linear", "flatten", "reshape", "transpose", "permute", "unsqueeze", "squeeze", "cat",
           "stack", "matmul", "bmm", "sum", "mean", "exp", "log", "sqrt", "abs", "scaled_dot_product_attention"]


def _eager(o):
    if isinstance(o, Parameter):
        return o.data
    if type(o) in (list, tuple):
        return type(o)(_eager(x) for x in o)
    return o


def _has_parameter(o):
    if isinstance(o, Parameter):
        return True
    return type(o) in (list, tuple) and any(_has_parameter(x) for x in o)


def _apply(name, args, kwargs=None):
    kwargs = kwargs or {}
    if _symbolic_in(args, kwargs) is not None:
        return record_call(name, args, kwargs)
    session = tracing_state.session
    if session is not None and (_has_parameter(args) or _has_parameter(tuple(kwargs.values()))):
        return record_call(name, args, kwargs, session)  # F.tanh(self.p) inside a traced forward
    out, _ = OPS[name].forward(*_eager(args), **{k: _eager(v) for k, v in kwargs.items()})
    return out


# -- activations ------------------------------------------------------------------------------------------
def relu(x, inplace=False):
    """max(0, x) element-wise (`inplace` is accepted and ignored: outputs are new arrays)."""
    return _apply("relu", (x,))


def leaky_relu(x, negative_slope=0.01, inplace=False):
    """x for x > 0, negative_slope·x otherwise."""
    return _apply("leaky_relu", (x,), {"negative_slope": float(negative_slope)})


def gelu(x, approximate="none"):
    """x·Φ(x); approximate="tanh" uses PyTorch's tanh approximation."""
    return _apply("gelu", (x,), {"approximate": approximate})


def silu(x, inplace=False):
    """x·σ(x) (swish)."""
    return _apply("silu", (x,))


def sigmoid(x):
    return _apply("sigmoid", (x,))


def tanh(x):
    return _apply("tanh", (x,))


def elu(x, alpha=1.0, inplace=False):
    return _apply("elu", (x,), {"alpha": float(alpha)})


def softplus(x, beta=1.0, threshold=20.0):
    return _apply("softplus", (x,), {"beta": float(beta), "threshold": float(threshold)})


def softmax(x, dim=-1):
    """exp(x) / Σ exp(x) along `dim`, numerically stable."""
    return _apply("softmax", (x, int(dim)))


def log_softmax(x, dim=-1):
    return _apply("log_softmax", (x, int(dim)))


def dropout(x, p=0.5, training=True, inplace=False):
    """Inverted dropout (PyTorch's default training=True: pass training=self.training in a module)."""
    return _apply("dropout", (x, float(p), bool(training)))


def exp(x):
    return _apply("exp", (x,))


def log(x):
    return _apply("log", (x,))


def sqrt(x):
    return _apply("sqrt", (x,))


def abs(x):
    return _apply("abs", (x,))


# -- linear algebra ----------------------------------------------------------------------------------------
def linear(x, weight, bias=None):
    """x @ weight.T + bias; x (..., in_features), weight (out_features, in_features)."""
    return _apply("linear", (x, weight, bias))


def matmul(a, b):
    """NumPy/PyTorch matmul: 1-D and n-D operands, batch dimensions broadcast."""
    return _apply("matmul", (a, b))


def bmm(a, b):
    """(B, n, k) @ (B, k, m) -> (B, n, m)."""
    return _apply("bmm", (a, b))


# -- shapes ---------------------------------------------------------------------------------------------
def _shape_arg(shape):
    return tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else tuple(shape)


def flatten(x, start_dim=0, end_dim=-1):
    """Flattens dimensions start_dim..end_dim into one (PyTorch's default start_dim=0 flattens everything)."""
    return _apply("flatten", (x, int(start_dim), int(end_dim)))


def reshape(x, shape):
    """x with a new shape (one entry may be -1); x.shape[k] entries stay symbolic in graphs."""
    return _apply("reshape", (x, _shape_arg((shape,))))


def transpose(x, dim0, dim1):
    """Swaps dimensions dim0 and dim1."""
    return _apply("transpose", (x, int(dim0), int(dim1)))


def permute(x, dims):
    """Reorders the dimensions as `dims`."""
    return _apply("permute", (x, tuple(int(d) for d in dims)))


def unsqueeze(x, dim):
    return _apply("unsqueeze", (x, int(dim)))


def squeeze(x, dim=None):
    return _apply("squeeze", (x, dim))


def cat(tensors, dim=0):
    """Concatenates a sequence of arrays along `dim`."""
    return _apply("cat", (list(tensors), int(dim)))


def stack(tensors, dim=0):
    """Stacks a sequence of same-shape arrays along a new dimension `dim`."""
    return _apply("stack", (list(tensors), int(dim)))


def _dim_arg(dim):
    if dim is None or isinstance(dim, (int, np.integer)):
        return None if dim is None else int(dim)
    return tuple(int(d) for d in dim)


def sum(x, dim=None, keepdim=False):
    """Sum over `dim` (an int, a tuple, or None for all)."""
    return _apply("sum", (x, _dim_arg(dim), bool(keepdim)))


def mean(x, dim=None, keepdim=False):
    """Mean over `dim` (an int, a tuple, or None for all)."""
    return _apply("mean", (x, _dim_arg(dim), bool(keepdim)))



# -- attention -------------------------------------------------------------------------------------------------
def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):
    """softmax(query·keyᵀ·scale + mask)·value: (..., L, E) x (..., S, E) x (..., S, Ev) -> (..., L, Ev), leading
    dimensions broadcast. attn_mask: bool (True = may attend) or float (added to the scores), broadcastable to
    (..., L, S); is_causal masks keys after the query (not together with attn_mask); scale defaults to
    1/sqrt(E); dropout_p drops attention weights (PyTorch's semantics: always, pass 0.0 in eval). A query row
    whose every key is masked gets zeros (and zero gradients), not NaN. One fused blockwise C++ kernel: memory
    grows with L, not L·S (unless dropout_p > 0 or a full (…, L, S) float mask is given)."""
    return _apply("scaled_dot_product_attention", (query, key, value, attn_mask),
                  {"dropout_p": float(dropout_p), "is_causal": bool(is_causal),
                   "scale": None if scale is None else float(scale)})
