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
    """Rectified linear unit, ``max(0, x)`` element-wise.

    On arrays it computes eagerly; inside a traced forward or a Keras-style graph it is recorded, and backward runs
    its gradient.

    Parameters
    ----------
    x : ndarray or traced value
        The input.
    inplace : bool, default False
        Accepted for PyTorch compatibility and ignored: outputs are new arrays.

    Returns
    -------
    ndarray or traced value
        Same shape as ``x``.

    See Also
    --------
    fastnn.nn.ReLU

    Examples
    --------
    >>> import numpy as np
    >>> import fastnn.nn.functional as F
    >>> y = F.relu(np.array([-1.0, 0.0, 2.0]))
    >>> y.tolist() == [0.0, 0.0, 2.0]
    True
    """
    return _apply("relu", (x,))


def leaky_relu(x, negative_slope=0.01, inplace=False):
    """Leaky ReLU: ``x`` for ``x > 0``, ``negative_slope * x`` otherwise.

    Parameters
    ----------
    x : ndarray or traced value
        The input.
    negative_slope : float, default 0.01
        Slope for negative inputs.
    inplace : bool, default False
        Accepted for PyTorch compatibility and ignored: outputs are new arrays.

    Returns
    -------
    ndarray or traced value
        Same shape as ``x``.

    See Also
    --------
    fastnn.nn.LeakyReLU

    Examples
    --------
    >>> import numpy as np
    >>> import fastnn.nn.functional as F
    >>> F.leaky_relu(np.array([-2.0, 3.0]), negative_slope=0.1)
    array([-0.2,  3. ])
    """
    return _apply("leaky_relu", (x,), {"negative_slope": float(negative_slope)})


def gelu(x, approximate="none"):
    """Gaussian error linear unit, ``x * Φ(x)``.

    Parameters
    ----------
    x : ndarray or traced value
        The input.
    approximate : {"none", "tanh"}, default "none"
        The exact form, or PyTorch's tanh approximation.

    Returns
    -------
    ndarray or traced value
        Same shape as ``x``.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnn.nn.functional as F
    >>> np.round(F.gelu(np.array([-1.0, 0.0, 1.0])), 4)
    array([-0.1587,  0.    ,  0.8413])
    """
    return _apply("gelu", (x,), {"approximate": approximate})


def silu(x, inplace=False):
    """Sigmoid linear unit (swish), ``x * sigmoid(x)``.

    Parameters
    ----------
    x : ndarray or traced value
        The input.
    inplace : bool, default False
        Accepted for PyTorch compatibility and ignored: outputs are new arrays.

    Returns
    -------
    ndarray or traced value
        Same shape as ``x``.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnn.nn.functional as F
    >>> np.round(F.silu(np.array([0.0, 1.0])), 4)
    array([0.    , 0.7311])
    """
    return _apply("silu", (x,))


def sigmoid(x):
    """Logistic sigmoid, ``1 / (1 + exp(-x))``.

    Parameters
    ----------
    x : ndarray or traced value
        The input.

    Returns
    -------
    ndarray or traced value
        Same shape as ``x``, in (0, 1).

    See Also
    --------
    fastnn.nn.Sigmoid

    Examples
    --------
    >>> import numpy as np
    >>> import fastnn.nn.functional as F
    >>> F.sigmoid(np.array([0.0]))
    array([0.5])
    """
    return _apply("sigmoid", (x,))


def tanh(x):
    """Hyperbolic tangent, element-wise.

    Parameters
    ----------
    x : ndarray or traced value
        The input.

    Returns
    -------
    ndarray or traced value
        Same shape as ``x``, in (-1, 1).

    See Also
    --------
    fastnn.nn.Tanh

    Examples
    --------
    >>> import numpy as np
    >>> import fastnn.nn.functional as F
    >>> F.tanh(np.array([0.0]))
    array([0.])
    """
    return _apply("tanh", (x,))


def elu(x, alpha=1.0, inplace=False):
    """Exponential linear unit: ``x`` for ``x > 0``, ``alpha * (exp(x) - 1)`` otherwise.

    Parameters
    ----------
    x : ndarray or traced value
        The input.
    alpha : float, default 1.0
        Scale of the negative part.
    inplace : bool, default False
        Accepted for PyTorch compatibility and ignored: outputs are new arrays.

    Returns
    -------
    ndarray or traced value
        Same shape as ``x``.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnn.nn.functional as F
    >>> np.round(F.elu(np.array([-1.0, 2.0])), 4)
    array([-0.6321,  2.    ])
    """
    return _apply("elu", (x,), {"alpha": float(alpha)})


def softplus(x, beta=1.0, threshold=20.0):
    """Softplus, ``log(1 + exp(beta * x)) / beta``; linear where ``beta * x > threshold``.

    Parameters
    ----------
    x : ndarray or traced value
        The input.
    beta : float, default 1.0
        Sharpness.
    threshold : float, default 20.0
        Above it the function is taken as ``x`` (for stability).

    Returns
    -------
    ndarray or traced value
        Same shape as ``x``.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnn.nn.functional as F
    >>> np.round(F.softplus(np.array([0.0, 30.0])), 4)
    array([ 0.6931, 30.    ])
    """
    return _apply("softplus", (x,), {"beta": float(beta), "threshold": float(threshold)})


def softmax(x, dim=-1):
    """Softmax, ``exp(x) / sum(exp(x))`` along ``dim``, computed stably.

    Parameters
    ----------
    x : ndarray or traced value
        The input.
    dim : int, default -1
        The dimension to normalise over.

    Returns
    -------
    ndarray or traced value
        Same shape as ``x``; sums to 1 along ``dim``.

    See Also
    --------
    log_softmax

    Examples
    --------
    >>> import numpy as np
    >>> import fastnn.nn.functional as F
    >>> F.softmax(np.array([[1.0, 1.0], [0.0, 0.0]]), dim=1)
    array([[0.5, 0.5],
           [0.5, 0.5]])
    """
    return _apply("softmax", (x, int(dim)))


def log_softmax(x, dim=-1):
    """Logarithm of the softmax along ``dim``, computed stably.

    Parameters
    ----------
    x : ndarray or traced value
        The input.
    dim : int, default -1
        The dimension to normalise over.

    Returns
    -------
    ndarray or traced value
        Same shape as ``x``.

    See Also
    --------
    softmax

    Examples
    --------
    >>> import numpy as np
    >>> import fastnn.nn.functional as F
    >>> np.round(F.log_softmax(np.array([0.0, 0.0])), 4)
    array([-0.6931, -0.6931])
    """
    return _apply("log_softmax", (x, int(dim)))


def dropout(x, p=0.5, training=True, inplace=False):
    """Inverted dropout: zero each element with probability ``p`` and scale the rest by ``1 / (1 - p)``.

    Masks draw from fastnn's generator (:func:`fastnn.manual_seed`).

    Parameters
    ----------
    x : ndarray or traced value
        The input.
    p : float, default 0.5
        Probability of zeroing an element.
    training : bool, default True
        PyTorch's default; in a module pass ``training=self.training``. When false, ``x`` is returned unchanged.
    inplace : bool, default False
        Accepted for PyTorch compatibility and ignored: outputs are new arrays.

    Returns
    -------
    ndarray or traced value
        Same shape as ``x``.

    See Also
    --------
    fastnn.nn.Dropout

    Examples
    --------
    >>> import numpy as np
    >>> import fastnn.nn.functional as F
    >>> x = np.ones((2, 4))
    >>> F.dropout(x, p=0.5, training=False) is x or np.array_equal(F.dropout(x, 0.5, training=False), x)
    True
    >>> sorted(set(F.dropout(x, p=0.5).ravel().tolist()) - {0.0, 2.0})
    []
    """
    return _apply("dropout", (x, float(p), bool(training)))


def exp(x):
    """Exponential, element-wise.

    Parameters
    ----------
    x : ndarray or traced value
        The input.

    Returns
    -------
    ndarray or traced value
        Same shape as ``x``.

    See Also
    --------
    log

    Examples
    --------
    >>> import numpy as np
    >>> import fastnn.nn.functional as F
    >>> F.exp(np.array([0.0]))
    array([1.])
    """
    return _apply("exp", (x,))


def log(x):
    """Natural logarithm, element-wise.

    Parameters
    ----------
    x : ndarray or traced value
        The input.

    Returns
    -------
    ndarray or traced value
        Same shape as ``x``.

    See Also
    --------
    exp

    Examples
    --------
    >>> import numpy as np
    >>> import fastnn.nn.functional as F
    >>> F.log(np.array([1.0]))
    array([0.])
    """
    return _apply("log", (x,))


def sqrt(x):
    """Square root, element-wise.

    Parameters
    ----------
    x : ndarray or traced value
        The input.

    Returns
    -------
    ndarray or traced value
        Same shape as ``x``.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnn.nn.functional as F
    >>> F.sqrt(np.array([4.0, 9.0]))
    array([2., 3.])
    """
    return _apply("sqrt", (x,))


def abs(x):
    """Absolute value, element-wise.

    Parameters
    ----------
    x : ndarray or traced value
        The input.

    Returns
    -------
    ndarray or traced value
        Same shape as ``x``.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnn.nn.functional as F
    >>> F.abs(np.array([-2.0, 3.0]))
    array([2., 3.])
    """
    return _apply("abs", (x,))


# -- linear algebra ----------------------------------------------------------------------------------------
def linear(x, weight, bias=None):
    """Affine map ``x @ weight.T + bias``.

    Parameters may be passed as they are (``F.linear(x, self.weight, self.bias)``); inside a traced forward their
    gradients go to ``.grad``.

    Parameters
    ----------
    x : ndarray, shape (..., in_features)
        The input.
    weight : ndarray or Parameter, shape (out_features, in_features)
        The weight.
    bias : ndarray or Parameter, shape (out_features,), optional
        The bias.

    Returns
    -------
    ndarray or traced value
        Shape ``(..., out_features)``.

    See Also
    --------
    fastnn.nn.Linear

    Examples
    --------
    >>> import numpy as np
    >>> import fastnn.nn.functional as F
    >>> F.linear(np.ones((2, 3)), np.ones((4, 3)), np.zeros(4)).shape
    (2, 4)
    """
    return _apply("linear", (x, weight, bias))


def matmul(a, b):
    """Matrix product with NumPy's and PyTorch's rules: 1-D and n-D operands, batch dimensions broadcast.

    Parameters
    ----------
    a : ndarray or traced value
        Left operand.
    b : ndarray or traced value
        Right operand.

    Returns
    -------
    ndarray or traced value
        The product.

    See Also
    --------
    bmm

    Examples
    --------
    >>> import numpy as np
    >>> import fastnn.nn.functional as F
    >>> F.matmul(np.ones((5, 2, 3)), np.ones((3, 4))).shape
    (5, 2, 4)
    """
    return _apply("matmul", (a, b))


def bmm(a, b):
    """Batched matrix product ``(B, n, k) @ (B, k, m) -> (B, n, m)``.

    Parameters
    ----------
    a : ndarray, shape (B, n, k)
        Left operand.
    b : ndarray, shape (B, k, m)
        Right operand.

    Returns
    -------
    ndarray or traced value
        Shape ``(B, n, m)``.

    See Also
    --------
    matmul

    Examples
    --------
    >>> import numpy as np
    >>> import fastnn.nn.functional as F
    >>> F.bmm(np.ones((2, 3, 4)), np.ones((2, 4, 5))).shape
    (2, 3, 5)
    """
    return _apply("bmm", (a, b))


# -- shapes ---------------------------------------------------------------------------------------------
def _shape_arg(shape):
    return tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else tuple(shape)


def flatten(x, start_dim=0, end_dim=-1):
    """Flatten dimensions ``start_dim`` to ``end_dim`` into one.

    Parameters
    ----------
    x : ndarray or traced value
        The input.
    start_dim : int, default 0
        First dimension flattened (PyTorch's default 0 flattens everything).
    end_dim : int, default -1
        Last dimension flattened.

    Returns
    -------
    ndarray or traced value
        The flattened array.

    See Also
    --------
    fastnn.nn.Flatten

    Examples
    --------
    >>> import numpy as np
    >>> import fastnn.nn.functional as F
    >>> F.flatten(np.zeros((2, 3, 4)), 1).shape
    (2, 12)
    """
    return _apply("flatten", (x, int(start_dim), int(end_dim)))


def reshape(x, shape):
    """Give ``x`` a new shape.

    Parameters
    ----------
    x : ndarray or traced value
        The input.
    shape : tuple of int
        The new shape; one entry may be -1. In graphs, ``x.shape[k]`` entries stay symbolic.

    Returns
    -------
    ndarray or traced value
        ``x`` reshaped.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnn.nn.functional as F
    >>> F.reshape(np.zeros((2, 6)), (2, 3, -1)).shape
    (2, 3, 2)
    """
    return _apply("reshape", (x, _shape_arg((shape,))))


def transpose(x, dim0, dim1):
    """Swap dimensions ``dim0`` and ``dim1``.

    Parameters
    ----------
    x : ndarray or traced value
        The input.
    dim0 : int
        One dimension.
    dim1 : int
        The other.

    Returns
    -------
    ndarray or traced value
        The transposed array.

    See Also
    --------
    permute

    Examples
    --------
    >>> import numpy as np
    >>> import fastnn.nn.functional as F
    >>> F.transpose(np.zeros((2, 3, 4)), 0, 2).shape
    (4, 3, 2)
    """
    return _apply("transpose", (x, int(dim0), int(dim1)))


def permute(x, dims):
    """Reorder the dimensions.

    Parameters
    ----------
    x : ndarray or traced value
        The input.
    dims : sequence of int
        The new order of the dimensions.

    Returns
    -------
    ndarray or traced value
        The permuted array.

    See Also
    --------
    transpose

    Examples
    --------
    >>> import numpy as np
    >>> import fastnn.nn.functional as F
    >>> F.permute(np.zeros((2, 3, 4)), (2, 0, 1)).shape
    (4, 2, 3)
    """
    return _apply("permute", (x, tuple(int(d) for d in dims)))


def unsqueeze(x, dim):
    """Insert a dimension of size 1 at ``dim``.

    Parameters
    ----------
    x : ndarray or traced value
        The input.
    dim : int
        Where the new dimension goes.

    Returns
    -------
    ndarray or traced value
        ``x`` with one more dimension.

    See Also
    --------
    squeeze

    Examples
    --------
    >>> import numpy as np
    >>> import fastnn.nn.functional as F
    >>> F.unsqueeze(np.zeros((2, 3)), 1).shape
    (2, 1, 3)
    """
    return _apply("unsqueeze", (x, int(dim)))


def squeeze(x, dim=None):
    """Remove dimensions of size 1.

    Parameters
    ----------
    x : ndarray or traced value
        The input.
    dim : int or None, default None
        The dimension to remove (left as it is if its size is not 1); None removes all of size 1.

    Returns
    -------
    ndarray or traced value
        ``x`` without those dimensions.

    See Also
    --------
    unsqueeze

    Examples
    --------
    >>> import numpy as np
    >>> import fastnn.nn.functional as F
    >>> F.squeeze(np.zeros((2, 1, 3, 1))).shape
    (2, 3)
    """
    return _apply("squeeze", (x, dim))


def cat(tensors, dim=0):
    """Concatenate arrays along an existing dimension.

    Parameters
    ----------
    tensors : sequence of ndarray or traced values
        Arrays with equal shapes except along ``dim``.
    dim : int, default 0
        The dimension to join along.

    Returns
    -------
    ndarray or traced value
        The concatenation.

    See Also
    --------
    stack

    Examples
    --------
    >>> import numpy as np
    >>> import fastnn.nn.functional as F
    >>> F.cat([np.zeros((2, 3)), np.ones((2, 1))], dim=1).shape
    (2, 4)
    """
    return _apply("cat", (list(tensors), int(dim)))


def stack(tensors, dim=0):
    """Stack same-shape arrays along a new dimension.

    Parameters
    ----------
    tensors : sequence of ndarray or traced values
        Arrays of one shape.
    dim : int, default 0
        Position of the new dimension.

    Returns
    -------
    ndarray or traced value
        The stacked array.

    See Also
    --------
    cat

    Examples
    --------
    >>> import numpy as np
    >>> import fastnn.nn.functional as F
    >>> F.stack([np.zeros((2, 3)), np.ones((2, 3))], dim=1).shape
    (2, 2, 3)
    """
    return _apply("stack", (list(tensors), int(dim)))


def _dim_arg(dim):
    if dim is None or isinstance(dim, (int, np.integer)):
        return None if dim is None else int(dim)
    return tuple(int(d) for d in dim)


def sum(x, dim=None, keepdim=False):
    """Sum over dimensions.

    Parameters
    ----------
    x : ndarray or traced value
        The input.
    dim : int, tuple of int or None, default None
        The dimensions; None sums everything.
    keepdim : bool, default False
        Keep the reduced dimensions with size 1.

    Returns
    -------
    ndarray or traced value
        The sums.

    See Also
    --------
    mean

    Examples
    --------
    >>> import numpy as np
    >>> import fastnn.nn.functional as F
    >>> F.sum(np.ones((2, 3)), dim=1)
    array([3., 3.])
    """
    return _apply("sum", (x, _dim_arg(dim), bool(keepdim)))


def mean(x, dim=None, keepdim=False):
    """Mean over dimensions.

    Parameters
    ----------
    x : ndarray or traced value
        The input.
    dim : int, tuple of int or None, default None
        The dimensions; None averages everything.
    keepdim : bool, default False
        Keep the reduced dimensions with size 1.

    Returns
    -------
    ndarray or traced value
        The means.

    See Also
    --------
    sum

    Examples
    --------
    >>> import numpy as np
    >>> import fastnn.nn.functional as F
    >>> F.mean(np.arange(6.0).reshape(2, 3), dim=0, keepdim=True)
    array([[1.5, 2.5, 3.5]])
    """
    return _apply("mean", (x, _dim_arg(dim), bool(keepdim)))



# -- attention -------------------------------------------------------------------------------------------------
def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):
    """Scaled dot-product attention, ``softmax(query @ key^T * scale + mask) @ value``, PyTorch's semantics.

    One fused blockwise C++ kernel (running maximum and sum, as flash attention): memory grows with L, not
    L·S, unless ``dropout_p > 0`` or a full (..., L, S) float mask is given. Causal blocks above the diagonal
    are skipped. A query row whose every key is masked gets zeros (and zero gradients), never NaN.

    Parameters
    ----------
    query : ndarray or traced value
        Shape (..., L, E).
    key : ndarray or traced value
        Shape (..., S, E); leading dimensions broadcast with the query's.
    value : ndarray or traced value
        Shape (..., S, Ev).
    attn_mask : ndarray, optional
        Broadcastable to (..., L, S): bool (True = may attend) or float (added to the scores).
    dropout_p : float, default 0.0
        Probability of dropping an attention weight (applied whenever it is > 0, as in PyTorch: pass 0.0
        in evaluation).
    is_causal : bool, default False
        Query i attends to keys 0..i only; not together with ``attn_mask``.
    scale : float, optional
        Multiplies the scores; ``1/sqrt(E)`` when None.

    Returns
    -------
    ndarray or traced value
        Shape (..., L, Ev).

    Raises
    ------
    ValueError
        Shapes that do not match or broadcast, a mask of the wrong shape, ``attn_mask`` with ``is_causal``.

    See Also
    --------
    fastnn.nn.MultiheadAttention

    Examples
    --------
    >>> import numpy as np
    >>> import fastnn.nn.functional as F
    >>> q = np.zeros((2, 3, 4)); k = np.zeros((2, 5, 4)); v = np.arange(2 * 5 * 6.0).reshape(2, 5, 6)
    >>> out = F.scaled_dot_product_attention(q, k, v)
    >>> out.shape, bool(np.allclose(out, v.mean(axis=1, keepdims=True)))
    ((2, 3, 6), True)
    """
    return _apply("scaled_dot_product_attention", (query, key, value, attn_mask),
                  {"dropout_p": float(dropout_p), "is_causal": bool(is_causal),
                   "scale": None if scale is None else float(scale)})
