"""The functional ops of graphs: each is a forward and a backward, registered by name in `OPS`.

    out, ctx = op.forward(*args, **kwargs)          # concrete arrays in, array out; ctx: what backward needs
    grads = op.backward(ctx, grad_out, needs)        # one entry per positional argument (None: no gradient);
                                                     # needs[k] says whether argument k wants one

fastnn.nn.functional calls `forward` eagerly on arrays, and records a "call" node when given traced values;
the graph executor calls both. Hot ops run C++ kernels: activations, softmax and linear reuse the layers';
arithmetic with broadcasting (kernels/broadcast.hpp: the shapes reduced to (O, M, I) against (M,)), its
gradient sums, matmul/bmm (kernels/batched_gemm.hpp) and cat/stack have kernels of their own, used for
float32/float64 arrays of at least KERNEL_MIN_SIZE elements in the forms they cover; NumPy does the rest
(and small arrays, where a call into C++ costs more than it saves). Arguments that are arrays may also be
scalars where NumPy allows it (x + 1.0).
"""
import math

import numpy as np

from .. import amp, ops
from ..random import generator

__all__ = ["OPS", "Op"]

OPS = {}
_Kind = ops.Activation
_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)
_INF = math.inf


class Op:
    """One functional op. `name` is its key in OPS and in saved graphs."""

    name = None

    def forward(self, *args, **kwargs):
        raise NotImplementedError

    def backward(self, ctx, grad, needs):
        raise NotImplementedError


def _register(cls):
    OPS[cls.name] = cls()
    return cls


def _float(x):
    """x as a float32/float64 C-contiguous array for a kernel (other dtypes become float32)."""
    if type(x) is np.ndarray and x.flags.c_contiguous and (x.dtype == _F32 or x.dtype == _F64):
        return x
    x = np.asarray(x)
    return np.ascontiguousarray(x, dtype=x.dtype if x.dtype in (_F32, _F64) else _F32)


#: Arrays smaller than this go through NumPy (the C++ kernels pay off on larger ones).
KERNEL_MIN_SIZE = 1 << 14


def _kernel_ready(*arrays):
    """Whether these are C-contiguous float32/float64 arrays of one dtype, together large enough."""
    first = arrays[0]
    if type(first) is not np.ndarray or (first.dtype != _F32 and first.dtype != _F64):
        return False
    for a in arrays:
        if type(a) is not np.ndarray or a.dtype != first.dtype or not a.flags.c_contiguous:
            return False
    return sum(a.size for a in arrays) >= KERNEL_MIN_SIZE


def broadcast_form(shape, other):
    """(O, M, I) such that an array of `shape` is (O, M, I) and one of shape `other`, broadcast to it, is (M,)
    repeated along O and I; None when `other` is not of that form (or does not broadcast to `shape`)."""
    if len(other) > len(shape):
        return None
    other = (1,) * (len(shape) - len(other)) + tuple(other)
    full = []
    for k, (s, t) in enumerate(zip(shape, other)):
        if t == s and s != 1:
            full.append(k)
        elif t != 1:
            return None
    if not full:
        return 1, 1, math.prod(shape)
    first, last = full[0], full[-1]
    if any(other[k] == 1 and shape[k] != 1 for k in range(first, last + 1)):
        return None
    return math.prod(shape[:first]), math.prod(shape[first:last + 1]), math.prod(shape[last + 1:])


def _arith(name, ufunc, a, b):
    """a op b, through the broadcast kernel when one side has the full shape and the other the (M,) form."""
    if _kernel_ready(a, b):
        if a.shape == b.shape or a.size >= b.size:
            form = broadcast_form(a.shape, b.shape)
            if form is not None and a.ndim >= b.ndim:
                return ops.broadcast_binary(name, a, b, *form)
        form = broadcast_form(b.shape, a.shape)
        if form is not None:
            return ops.broadcast_binary(name, b, a, *form, True)
    return ufunc(a, b)


def add_arrays(a, b):
    """a + b as a new array (through the broadcast kernel for large float arrays of one shape)."""
    if a.shape == b.shape and _kernel_ready(a, b):
        return ops.broadcast_binary("add", a, b.reshape(-1), 1, a.size, 1)
    return a + b


def sum_to_shape(g, shape):
    """Reduces a broadcast gradient g back to `shape` (NumPy broadcasting rules)."""
    g = np.asarray(g)
    if g.shape == shape:
        return g
    if _kernel_ready(g):
        form = broadcast_form(g.shape, shape)
        if form is not None:
            return ops.reduce_broadcast(g, *form).reshape(shape)
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, s in enumerate(shape) if s == 1 and g.shape[lead + i] != 1)
    r = g.sum(axis=axes, keepdims=True) if axes else g
    return r.reshape(shape)


# -- arithmetic ---------------------------------------------------------------------------------------------
class _Binary(Op):
    def forward(self, a, b):
        return _arith(self.name, self._f, a, b), (a, b)


# `needs[k]` is true only for traced operands (arrays, NumPy scalars from reductions, 0-d arrays); literals never
# need a gradient. Gradients of broadcast operands are summed back to their shapes.
@_register
class Add(_Binary):
    name = "add"
    _f = staticmethod(np.add)

    def context_of(self, a, b):
        """The ctx backward needs for a + b computed elsewhere (a batch norm fused with it)."""
        return a, b

    def backward(self, ctx, g, needs):
        a, b = ctx
        return (sum_to_shape(g, np.shape(a)) if needs[0] else None,
                sum_to_shape(g, np.shape(b)) if needs[1] else None)


@_register
class Sub(_Binary):
    name = "sub"
    _f = staticmethod(np.subtract)

    def backward(self, ctx, g, needs):
        a, b = ctx
        return (sum_to_shape(g, np.shape(a)) if needs[0] else None,
                sum_to_shape(np.negative(g), np.shape(b)) if needs[1] else None)


@_register
class Mul(_Binary):
    name = "mul"
    _f = staticmethod(np.multiply)

    def backward(self, ctx, g, needs):
        a, b = ctx
        return (sum_to_shape(_arith("mul", np.multiply, g, b), np.shape(a)) if needs[0] else None,
                sum_to_shape(_arith("mul", np.multiply, g, a), np.shape(b)) if needs[1] else None)


@_register
class Div(_Binary):
    name = "div"
    _f = staticmethod(np.true_divide)

    def backward(self, ctx, g, needs):
        a, b = ctx
        ga = sum_to_shape(g / b, np.shape(a)) if needs[0] else None
        gb = sum_to_shape(-g * a / (b * b), np.shape(b)) if needs[1] else None
        return ga, gb


@_register
class Neg(Op):
    name = "neg"

    def forward(self, x):
        return np.negative(x), None

    def backward(self, ctx, g, needs):
        return (np.negative(g),)


@_register
class Pow(_Binary):
    """a ** b, either of them traced: d/da = b·a^(b−1), d/db = a^b·log(a)."""
    name = "pow"
    _f = staticmethod(np.power)

    def forward(self, a, b):
        out = np.power(a, b)  # no kernel: NumPy's pow is as fast as ours would be
        return out, (a, b, out)

    def backward(self, ctx, g, needs):
        a, b, out = ctx
        ga = sum_to_shape(g * (b * np.power(a, np.subtract(b, 1))), np.shape(a)) if needs[0] else None
        gb = sum_to_shape(g * out * np.log(a), np.shape(b)) if needs[1] else None
        return ga, gb


class _Compare(Op):
    """A comparison: a boolean array, no gradient."""

    def forward(self, a, b):
        return self._f(a, b), None

    def backward(self, ctx, g, needs):
        return (None, None)


for _name, _fn in (("gt", np.greater), ("ge", np.greater_equal), ("lt", np.less), ("le", np.less_equal),
                   ("eq", np.equal), ("ne", np.not_equal)):
    _register(type(f"Compare_{_name}", (_Compare,), {"name": _name, "_f": staticmethod(_fn)}))


# -- element-wise functions ------------------------------------------------------------------------------------
class _Activation(Op):
    """An element-wise C++ activation kernel (kernels/activations.hpp) with fixed parameters a, b."""

    kind, a, b = None, 0.0, 0.0

    def _params(self, kwargs):
        return self.a, self.b

    def forward(self, x, **kwargs):
        x = _float(x)
        a, b = self._params(kwargs)
        y = ops.activation_forward(self.kind, x, a, b)
        return y, (y if ops.activation_backward_uses_output(self.kind) else x, a, b)

    def backward(self, ctx, g, needs):
        saved, a, b = ctx
        g = np.ascontiguousarray(g, dtype=saved.dtype)
        return (ops.activation_backward(self.kind, saved, g, a, b),)


@_register
class Relu(_Activation):
    name, kind, a, b = "relu", _Kind.relu, 0.0, _INF

    def context_from_output(self, y):
        """The ctx backward needs, from the output y of a relu computed elsewhere (a batch norm fused with it):
        the kernel's backward tests only saved > 0, true of y exactly where it is of the input."""
        return y, self.a, self.b


@_register
class LeakyRelu(_Activation):
    name, kind = "leaky_relu", _Kind.relu

    def _params(self, kwargs):
        return float(kwargs.get("negative_slope", 0.01)), _INF


@_register
class Sigmoid(_Activation):
    name, kind = "sigmoid", _Kind.sigmoid


@_register
class Tanh(_Activation):
    name, kind = "tanh", _Kind.tanh


@_register
class Silu(_Activation):
    name, kind = "silu", _Kind.silu


@_register
class Elu(_Activation):
    name, kind = "elu", _Kind.elu

    def _params(self, kwargs):
        return float(kwargs.get("alpha", 1.0)), 1.0


@_register
class Softplus(_Activation):
    name, kind = "softplus", _Kind.softplus

    def _params(self, kwargs):
        return float(kwargs.get("beta", 1.0)), float(kwargs.get("threshold", 20.0))


@_register
class Gelu(_Activation):
    """GELU: x·Φ(x) (approximate="none") or PyTorch's tanh approximation (approximate="tanh"), in C++."""
    name, kind = "gelu", _Kind.gelu

    def _params(self, kwargs):
        approximate = kwargs.get("approximate", "none")
        if approximate not in ("none", "tanh"):
            raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
        return float(approximate == "tanh"), 0.0


class _Unary(Op):
    def forward(self, x):
        y = self._f(x)
        return y, (x, y)


@_register
class Exp(_Unary):
    name = "exp"
    _f = staticmethod(np.exp)

    def backward(self, ctx, g, needs):
        return (g * ctx[1],)


@_register
class Log(_Unary):
    name = "log"
    _f = staticmethod(np.log)

    def backward(self, ctx, g, needs):
        return (g / ctx[0],)


@_register
class Sqrt(_Unary):
    name = "sqrt"
    _f = staticmethod(np.sqrt)

    def backward(self, ctx, g, needs):
        return (g / (2 * ctx[1]),)


@_register
class Abs(_Unary):
    name = "abs"
    _f = staticmethod(np.abs)

    def backward(self, ctx, g, needs):
        return (g * np.sign(ctx[0]),)


class _SoftmaxBase(Op):
    def forward(self, x, dim=-1):
        x = _float(x)
        y = self._fwd(x, int(dim))
        return y, (y, int(dim))

    def backward(self, ctx, g, needs):
        y, dim = ctx
        return (self._bwd(y, np.ascontiguousarray(g, dtype=y.dtype), dim),)


@_register
class Softmax(_SoftmaxBase):
    name = "softmax"
    _fwd, _bwd = staticmethod(ops.softmax_forward), staticmethod(ops.softmax_backward)


@_register
class LogSoftmax(_SoftmaxBase):
    name = "log_softmax"
    _fwd, _bwd = staticmethod(ops.log_softmax_forward), staticmethod(ops.log_softmax_backward)


# Dropout masks are a hash of (seed, element index) in C++ (kernels/dropout.hpp): one number drawn from fastnn's
# generator per call, no mask array kept, and the backward regenerates the mask from the seed.
def _fmix(z):
    z ^= z >> np.uint32(16)
    z *= np.uint32(0x85EBCA6B)
    z ^= z >> np.uint32(13)
    z *= np.uint32(0xC2B2AE35)
    z ^= z >> np.uint32(16)
    return z


def draw_seed():
    """One dropout seed from fastnn's generator (fastnn.manual_seed fixes it)."""
    return int(generator().integers(0, 1 << 63))


def dropout_keep(seed, count, p):
    """The kept elements (bool, count of them) of a dropout call with `seed` and probability p: NumPy's copy of
    kernels/dropout.hpp's hash, equal bit for bit (for tests, and for attention weights returned after dropout)."""
    i = np.arange(count, dtype=np.uint64)
    lo, hi = i.astype(np.uint32), (i >> np.uint64(32)).astype(np.uint32)
    a, b = np.uint32(seed & 0xFFFFFFFF), np.uint32((seed >> 32) & 0xFFFFFFFF)
    with np.errstate(over="ignore"):
        z = _fmix(_fmix(lo * np.uint32(0x9E3779B9) + a) ^ (b + hi * np.uint32(0x7FEB352D)))
    return (z >> np.uint32(8)) >= np.uint32(math.floor(p * (1 << 24) + 0.5))


def dropout_forward(x, p):
    """(dropout(x), seed) in C++ for a float array x and 0 < p <= 1; the backward is ops.dropout_apply(g, p, seed)."""
    seed = draw_seed()
    return ops.dropout_apply(_float(x), float(p), seed), seed


@_register
class Dropout(Op):
    """Inverted dropout: zero with probability p and scale the rest by 1/(1−p) when training."""
    name = "dropout"

    def forward(self, x, p=0.5, training=True):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout: p must be in [0, 1], got {p}")
        if not training or p == 0.0:
            return x, None
        y, seed = dropout_forward(x, p)
        return y, (seed, float(p))

    def backward(self, ctx, g, needs):
        if ctx is None:
            return (g, None, None)
        seed, p = ctx
        return (ops.dropout_apply(_float(g), p, seed), None, None)


@_register
class DropoutAdd(Op):
    """residual + dropout(x, p): a residual connection after a dropout (a Transformer layer's) in one C++ pass,
    ops.dropout_apply's `add` (the same values as the dropout then the add). No dropout when p == 0."""
    name = "dropout_add"

    def forward(self, residual, x, p=0.5):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout_add: p must be in [0, 1], got {p}")
        shapes = (np.shape(residual), np.shape(x))
        if p == 0.0:
            return _arith("add", np.add, residual, x), (None, 0.0) + shapes
        x = _float(x)
        if shapes[0] != x.shape or np.asarray(residual).dtype != x.dtype:  # broadcast or mixed: two passes
            y, seed = dropout_forward(x, p)
            return _arith("add", np.add, residual, y), (seed, float(p)) + shapes
        seed = draw_seed()
        return ops.dropout_apply(x, float(p), seed, _float(residual)), (seed, float(p)) + shapes

    def backward(self, ctx, g, needs):
        seed, p, residual_shape, x_shape = ctx
        gr = sum_to_shape(g, residual_shape) if needs[0] else None
        gx = None
        if needs[1]:
            gx = sum_to_shape(g, x_shape)
            if seed is not None:
                gx = ops.dropout_apply(_float(gx), p, seed)
        return (gr, gx, None)


# -- linear algebra ------------------------------------------------------------------------------------------
def _linear_operands(name, x, weight, bias):
    """(x2, w, b, lead): x as (rows, in) rows of the weight's float dtype, W and b contiguous, x's leading shape."""
    w = _float(weight)
    x = np.ascontiguousarray(x, dtype=w.dtype)
    if x.shape[-1] != w.shape[1]:
        raise ValueError(f"{name}: input of shape {x.shape} does not match weight of shape {w.shape}")
    b = None if bias is None else np.ascontiguousarray(bias, dtype=w.dtype)
    return x.reshape(-1, w.shape[1]), w, b, x.shape[:-1]


def _linear_gradients(g, w, has_bias, needs):
    """(g2, gw, gb): the output gradient as (rows, out), and the parameter gradient buffers the kernel fills."""
    g2 = np.ascontiguousarray(g, dtype=w.dtype).reshape(-1, w.shape[0])
    gw = ops.empty(w.shape, w.dtype) if needs[1] else None
    gb = np.empty(w.shape[0], w.dtype) if has_bias and needs[2] else None
    return g2, gw, gb


@_register
class Linear(Op):
    """y = x·Wᵀ + b over the dense kernels; x (..., in), W (out, in), b (out,) or None."""
    name = "linear"

    def forward(self, x, weight, bias=None):
        x2, w, b, lead = _linear_operands("linear", x, weight, bias)
        bf16 = amp.gemm_in_bf16(w.dtype)  # autocast: the GEMMs in bf16, this call's backward too
        y = (amp.linear_forward if bf16 else ops.linear_forward)(x2, w, b, False)
        return y.reshape(lead + (w.shape[0],)), (x2, w, b is not None, lead, bf16)

    def backward(self, ctx, g, needs):
        x2, w, has_bias, lead, bf16 = ctx
        g2, gw, gb = _linear_gradients(g, w, has_bias, needs)
        backward = amp.linear_backward if bf16 else ops.linear_backward
        dx = backward(g2, x2, w, gw, gb, bool(needs[0]), False, False)
        return (None if dx is None else dx.reshape(lead + (w.shape[1],)), gw, gb)


_FUSABLE = {"relu": (_Kind.relu, False), "gelu": (_Kind.gelu, False), "gelu_tanh": (_Kind.gelu, True)}


@_register
class LinearActivation(Op):
    """dropout(act(x·Wᵀ + b), p), act "relu", "gelu" or "gelu_tanh": a Transformer's feed-forward first half in
    one C++ call each way (ops.linear_activation_forward/backward), the same bits as the linear, activation and
    dropout ops in turn (which it runs instead under bf16 autocast). training=False: no dropout, and x·Wᵀ + b is
    not kept."""
    name = "linear_activation"

    def forward(self, x, weight, bias=None, activation="relu", p=0.0, training=True):
        if activation not in _FUSABLE:
            raise ValueError(f"linear_activation: activation must be one of {sorted(_FUSABLE)}, got {activation!r}")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"linear_activation: p must be in [0, 1], got {p}")
        if amp.gemm_in_bf16(_float(weight).dtype):  # autocast: the three ops, the linear's GEMMs in bf16
            return self._unfused(x, weight, bias, activation, p, training)
        x2, w, b, lead = _linear_operands("linear_activation", x, weight, bias)
        kind, tanh_form = _FUSABLE[activation]
        p = float(p) if training else 0.0
        seed = draw_seed() if p > 0.0 else 0
        y, z = ops.linear_activation_forward(x2, w, b, kind, tanh_form, p, seed, bool(training))
        return y.reshape(lead + (w.shape[0],)), (x2, w, b is not None, lead, z, kind, tanh_form, p, seed)

    def backward(self, ctx, g, needs):
        if type(ctx[0]) is str:  # ("unfused", ...)
            return self._unfused_backward(ctx, g, needs)
        x2, w, has_bias, lead, z, kind, tanh_form, p, seed = ctx
        if z is None:
            raise RuntimeError("linear_activation: backward after a forward with training=False")
        g2, gw, gb = _linear_gradients(g, w, has_bias, needs)
        dx = ops.linear_activation_backward(g2, x2, w, z, kind, tanh_form, gw, gb, p, seed, bool(needs[0]))
        return (None if dx is None else dx.reshape(lead + (w.shape[1],)), gw, gb) + (None,) * (len(needs) - 3)

    @staticmethod
    def _unfused(x, weight, bias, activation, p, training):
        h, c1 = OPS["linear"].forward(x, weight, bias)
        act = OPS["relu"] if activation == "relu" else OPS["gelu"]
        h, c2 = act.forward(h, **({} if activation == "relu" else {"approximate": "tanh" if activation ==
                                                                    "gelu_tanh" else "none"}))
        y, c3 = OPS["dropout"].forward(h, p, bool(training))
        return y, ("unfused", c1, act, c2, c3)

    @staticmethod
    def _unfused_backward(ctx, g, needs):
        _, c1, act, c2, c3 = ctx
        g = OPS["dropout"].backward(c3, g, (True, False, False))[0]
        g = act.backward(c2, g, (True,))[0]
        return OPS["linear"].backward(c1, g, needs[:3]) + (None,) * (len(needs) - 3)


def _matmul(a, b, trans_a=False, trans_b=False):
    """op(a) @ op(b) through kernels/batched_gemm.hpp when both are 2-D or more with the same leading
    dimensions (or one of them 2-D), else None. trans_*: use the transpose of the last two axes."""
    if a.ndim < 2 or b.ndim < 2 or not _kernel_ready(a, b):
        return None
    lead_a, lead_b = a.shape[:-2], b.shape[:-2]
    if lead_a and lead_b and lead_a != lead_b:
        return None
    lead = lead_a or lead_b
    a3 = a.reshape((-1,) + a.shape[-2:]) if lead_a else a
    b3 = b.reshape((-1,) + b.shape[-2:]) if lead_b else b
    out = ops.batched_matmul(a3, b3, trans_a, trans_b)
    return out.reshape(lead + out.shape[-2:]) if lead else out


@_register
class Matmul(Op):
    """NumPy's matmul: 1-D and n-D operands, batch dimensions broadcast."""
    name = "matmul"

    def forward(self, a, b):
        out = _matmul(a, b) if type(a) is np.ndarray and type(b) is np.ndarray else None
        return (np.matmul(a, b) if out is None else out), (a, b)

    def backward(self, ctx, g, needs):
        a, b = ctx
        if type(a) is np.ndarray and type(b) is np.ndarray and a.ndim >= 2 and b.ndim >= 2:
            g = np.ascontiguousarray(g, dtype=np.result_type(a, b))
            ga = gb = None
            if needs[0]:  # dA = g @ Bᵀ (B repeated over a's batch when 2-D)
                ga = _matmul(g, b, trans_b=True) if a.ndim >= b.ndim else None
            if needs[1]:  # dB = Aᵀ @ g, summed over the batch when B was repeated: one GEMM of the stacked rows
                if b.ndim >= a.ndim:
                    gb = _matmul(a, g, trans_a=True)
                elif b.ndim == 2 and a.flags.c_contiguous:
                    gb = _matmul(a.reshape(-1, a.shape[-1]), g.reshape(-1, g.shape[-1]), trans_a=True)
            if (ga is not None or not needs[0]) and (gb is not None or not needs[1]):
                return ga, gb
        a2 = a[None, :] if a.ndim == 1 else a           # (.., n, k)
        b2 = b[:, None] if b.ndim == 1 else b           # (.., k, m)
        # g as the gradient of a2 @ b2, whose 1-D sides were squeezed away in the output
        g2 = np.reshape(g, np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2]) + (a2.shape[-2], b2.shape[-1]))
        ga = gb = None
        if needs[0]:
            ga = np.matmul(g2, np.swapaxes(b2, -1, -2))
            ga = sum_to_shape(ga, a2.shape).reshape(a.shape)
        if needs[1]:
            gb = np.matmul(np.swapaxes(a2, -1, -2), g2)
            gb = sum_to_shape(gb, b2.shape).reshape(b.shape)
        return ga, gb


@_register
class Bmm(Matmul):
    """Batched matrix product of (B, n, k) and (B, k, m) arrays."""
    name = "bmm"

    def forward(self, a, b):
        if np.ndim(a) != 3 or np.ndim(b) != 3 or a.shape[0] != b.shape[0] or a.shape[2] != b.shape[1]:
            raise ValueError(f"bmm: expected (B, n, k) and (B, k, m) arrays, got {np.shape(a)} and {np.shape(b)}")
        return super().forward(a, b)


# -- shapes ---------------------------------------------------------------------------------------------
@_register
class Reshape(Op):
    name = "reshape"

    def forward(self, x, shape):
        return np.reshape(x, shape), np.shape(x)

    def backward(self, ctx, g, needs):
        return (np.reshape(g, ctx), None)


@_register
class Flatten(Op):
    name = "flatten"

    def forward(self, x, start_dim=0, end_dim=-1):
        nd = max(np.ndim(x), 1)
        s, e = start_dim % nd, end_dim % nd
        if s > e:
            raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} for shape {np.shape(x)}")
        shape = np.shape(x)
        return np.reshape(x, shape[:s] + (-1,) + shape[e + 1:]), shape

    def backward(self, ctx, g, needs):
        return (np.reshape(g, ctx), None, None)


@_register
class Permute(Op):
    name = "permute"

    def forward(self, x, dims):
        dims = tuple(int(d) for d in dims)
        return np.transpose(x, dims), dims

    def backward(self, ctx, g, needs):
        return (np.transpose(g, np.argsort(ctx)), None)


@_register
class Transpose(Op):
    """Swaps two dimensions (PyTorch's transpose(dim0, dim1))."""
    name = "transpose"

    def forward(self, x, dim0, dim1):
        return np.swapaxes(x, dim0, dim1), (dim0, dim1)

    def backward(self, ctx, g, needs):
        return (np.swapaxes(g, *ctx), None, None)


@_register
class Unsqueeze(Op):
    name = "unsqueeze"

    def forward(self, x, dim):
        return np.expand_dims(x, dim), np.shape(x)

    def backward(self, ctx, g, needs):
        return (np.reshape(g, ctx), None)


@_register
class Squeeze(Op):
    name = "squeeze"

    def forward(self, x, dim=None):
        shape = np.shape(x)
        if dim is None:
            return np.squeeze(x), shape
        dims = (dim,) if isinstance(dim, int) else tuple(dim)
        dims = tuple(d for d in dims if shape[d] == 1)  # PyTorch: a dimension that is not 1 is left alone
        return (np.squeeze(x, axis=dims) if dims else x), shape

    def backward(self, ctx, g, needs):
        return (np.reshape(g, ctx), None)


@_register
class Expand(Op):
    """Broadcast to a larger shape (PyTorch's expand; -1 keeps a dimension)."""
    name = "expand"

    def forward(self, x, shape):
        xs = np.shape(x)
        lead = len(shape) - len(xs)
        target = tuple(xs[i - lead] if s == -1 else s for i, s in enumerate(shape))
        return np.broadcast_to(x, target), xs

    def backward(self, ctx, g, needs):
        return (sum_to_shape(g, ctx), None)


def _concat(arrays, dim):
    """np.concatenate, through kernels/broadcast.hpp's concat_rows for large float arrays."""
    if len(arrays) > 1 and _kernel_ready(*arrays) and len({a.ndim for a in arrays}) == 1:
        return ops.concat(arrays, dim % arrays[0].ndim)
    return np.concatenate(arrays, axis=dim)


@_register
class Cat(Op):
    name = "cat"

    def forward(self, tensors, dim=0):
        tensors = list(tensors)
        if not tensors:
            raise ValueError("cat: expected a non-empty sequence of arrays")
        y = _concat(tensors, dim)
        return y, ([np.shape(t)[dim] for t in tensors], dim)

    def backward(self, ctx, g, needs):
        sizes, dim = ctx
        splits = np.cumsum(sizes)[:-1]
        parts = np.split(g, splits, axis=dim)
        flags = needs[0] if isinstance(needs[0], (list, tuple)) else [needs[0]] * len(parts)
        return ([p if f else None for p, f in zip(parts, flags)], None)


@_register
class Stack(Op):
    name = "stack"

    def forward(self, tensors, dim=0):
        tensors = list(tensors)
        if not tensors:
            raise ValueError("stack: expected a non-empty sequence of arrays")
        if len({np.shape(t) for t in tensors}) != 1:
            raise ValueError(f"stack: arrays must have one shape, got {[np.shape(t) for t in tensors]}")
        nd = np.ndim(tensors[0]) + 1
        return _concat([np.expand_dims(t, dim % nd) for t in tensors], dim % nd), (len(tensors), dim)

    def backward(self, ctx, g, needs):
        n, dim = ctx
        flags = needs[0] if isinstance(needs[0], (list, tuple)) else [needs[0]] * n
        return ([np.take(g, k, axis=dim) if f else None for k, f in zip(range(n), flags)], None)


class _Reduce(Op):
    def forward(self, x, dim=None, keepdim=False):
        axis = None if dim is None else (tuple(dim) if isinstance(dim, (tuple, list)) else int(dim))
        y = self._f(x, axis=axis, keepdims=bool(keepdim))
        return y, (np.shape(x), axis, bool(keepdim), np.asarray(x).dtype)

    def _expand(self, ctx, g):
        shape, axis, keepdim, _ = ctx
        if axis is None:
            return np.broadcast_to(np.reshape(g, (1,) * len(shape)), shape)
        if not keepdim:
            axes = (axis,) if isinstance(axis, int) else axis
            g = np.expand_dims(g, tuple(a % len(shape) for a in axes))
        return np.broadcast_to(g, shape)


@_register
class Sum(_Reduce):
    name = "sum"
    _f = staticmethod(np.sum)

    def backward(self, ctx, g, needs):
        return (np.ascontiguousarray(self._expand(ctx, g)), None, None)


@_register
class Mean(_Reduce):
    name = "mean"
    _f = staticmethod(np.mean)

    def backward(self, ctx, g, needs):
        shape, axis, _, dtype = ctx
        if axis is None:
            count = math.prod(shape)
        else:
            axes = (axis,) if isinstance(axis, int) else axis
            count = math.prod(shape[a] for a in axes)
        return (np.ascontiguousarray(self._expand(ctx, g) / dtype.type(count) if dtype.kind == "f" else
                                     self._expand(ctx, g) / count), None, None)


@_register
class Amax(_Reduce):
    """The maximum over `dim` (ONNX ReduceMax); the gradient is shared equally by the entries that tie for it."""
    name = "amax"
    _f = staticmethod(np.max)

    def forward(self, x, dim=None, keepdim=False):
        y, ctx = super().forward(x, dim, keepdim)
        return y, ctx + (np.asarray(x), y)

    def backward(self, ctx, g, needs):
        shape, axis, keepdim, dtype, x, y = ctx
        hit = x == self._expand((shape, axis, keepdim, dtype), y)
        count = np.sum(hit, axis=axis, keepdims=True)
        return (np.ascontiguousarray(np.where(hit, self._expand((shape, axis, keepdim, dtype), g) / count, 0)
                                     .astype(dtype, copy=False)), None, None)


# -- selection and casts (the ONNX ops Where, Max, Not, Cast) ---------------------------------------------------
@_register
class Where(Op):
    """np.where(cond, a, b) (ONNX Where): the gradient goes to a where cond holds and to b elsewhere."""
    name = "where"

    def forward(self, cond, a, b):
        cond = np.asarray(cond, dtype=bool)
        return np.where(cond, a, b), (cond, np.shape(a), np.shape(b))

    def backward(self, ctx, g, needs):
        cond, sa, sb = ctx
        zero = np.zeros((), g.dtype)
        return (None, sum_to_shape(np.where(cond, g, zero), sa) if needs[1] else None,
                sum_to_shape(np.where(cond, zero, g), sb) if needs[2] else None)


@_register
class Maximum(_Binary):
    """np.maximum(a, b) (ONNX Max of two inputs): the gradient goes to the larger, half to each on a tie."""
    name = "maximum"
    _f = staticmethod(np.maximum)

    def forward(self, a, b):
        return np.maximum(a, b), (a, b)

    def backward(self, ctx, g, needs):
        a, b = ctx
        share = np.where(np.greater(a, b), 1.0, np.where(np.equal(a, b), 0.5, 0.0)).astype(g.dtype)
        return (sum_to_shape(g * share, np.shape(a)) if needs[0] else None,
                sum_to_shape(g * (1 - share), np.shape(b)) if needs[1] else None)


@_register
class LogicalNot(Op):
    """np.logical_not (ONNX Not) of a boolean array; no gradient."""
    name = "logical_not"

    def forward(self, x):
        return np.logical_not(x), None

    def backward(self, ctx, g, needs):
        return (None,)


@_register
class Arange(Op):
    """np.arange(start, stop, step) as int64 (ONNX Range; the bounds may be sizes read from a shape when the graph
    runs); no gradient."""
    name = "arange"

    def forward(self, start, stop, step=1):
        return np.arange(int(start), int(stop), int(step), dtype=np.int64), None

    def backward(self, ctx, g, needs):
        return (None,) * len(needs)


@_register
class Cast(Op):
    """x as `dtype` (ONNX Cast): a float-to-float cast passes the gradient back (cast to x's dtype); casts
    from or to bool and integers have none."""
    name = "cast"

    def forward(self, x, dtype):
        x = np.asarray(x)
        return x.astype(np.dtype(dtype)), x.dtype

    def backward(self, ctx, g, needs):
        src = ctx
        if src.kind != "f" or g.dtype.kind != "f" or not needs[0]:
            return (None, None)
        return (g.astype(src), None)


# -- indexing -------------------------------------------------------------------------------------------------
def _basic_key(key):
    """Whether `key` is basic indexing (ints, slices, None, Ellipsis): its result is a view, and the
    backward can assign instead of scatter-add."""
    items = key if isinstance(key, tuple) else (key,)
    return all(k is None or k is Ellipsis or isinstance(k, (int, np.integer, slice)) for k in items)


@_register
class Getitem(Op):
    name = "getitem"

    def forward(self, x, key):
        key = tuple(key) if isinstance(key, list) and any(isinstance(k, (slice, list, np.ndarray)) or k is None
                                                          or k is Ellipsis for k in key) else key
        return x[key], (np.shape(x), np.asarray(x).dtype, key)

    def backward(self, ctx, g, needs):
        shape, dtype, key = ctx
        out = np.zeros(shape, np.result_type(dtype, g.dtype) if dtype.kind == "f" else g.dtype)
        if _basic_key(key):
            out[key] = g
        else:
            np.add.at(out, key, g)
        return (out, None)


# -- attention ------------------------------------------------------------------------------------------------
def _attention_bias(attn_mask, lead, L, S, dtype):
    """attn_mask (bool: True = may attend; float: added to the scores), broadcastable to lead + (L, S), as the
    kernel's (bias, bias_div, bias_count): bias (count, L, S) with batch b reading bias[(b // div) % count]."""
    mask = np.asarray(attn_mask)
    full = tuple(lead) + (L, S)
    try:
        if mask.ndim > len(full):
            raise ValueError
        padded = (1,) * (len(full) - mask.ndim) + mask.shape
        if np.broadcast_shapes(padded, full) != full:
            raise ValueError
    except ValueError:
        raise ValueError(f"scaled_dot_product_attention: attn_mask of shape {mask.shape} does not broadcast to "
                         f"the scores' shape {full}") from None
    if mask.dtype == np.bool_:
        mask = np.where(mask, dtype.type(0), dtype.type(-np.inf))
    elif mask.dtype.kind == "f":
        mask = mask.astype(dtype, copy=False)
    else:
        raise TypeError(f"scaled_dot_product_attention: attn_mask must be bool or float, got dtype {mask.dtype}")
    mask = mask.reshape(padded)
    form = broadcast_form(tuple(lead), padded[:-2]) if lead else (1, 1, 1)
    if form is None:  # a broadcast the kernel's (div, count) cannot express: repeat it over the batch
        m_lead, div, count = tuple(lead), 1, math.prod(lead)
    else:
        _, count, div = form
        m_lead = padded[:-2]
    bias = np.ascontiguousarray(np.broadcast_to(mask, m_lead + (L, S))).reshape(count, L, S)
    return bias, div, count


def _contiguous_layout(B, n, d):
    """The (offset, batch_stride, head_stride, row_stride) of a C-contiguous (B, n, d) operand."""
    return (0, n * d, 0, d)


def _run_attention(q, k, v, sizes, layouts, out_shape, bias, div, count, causal, scale, dropout_p):
    """The forward kernel: (out, lse, seed). q, k, v: C-contiguous arrays of one float dtype (possibly the same
    array, read at the layouts' offsets)."""
    seed = draw_seed() if dropout_p > 0.0 else 0
    out = ops.empty(out_shape, q.dtype)
    lse = ops.sdpa_forward(q, k, v, bias, out, sizes, layouts, div, count, causal, scale, dropout_p, seed)
    return out, lse, seed


def _mask_gradient(dbias, mask, lead, L, S):
    """The gradient of a float mask (broadcastable to lead + (L, S)) from the scores' gradient (B, L, S)."""
    return sum_to_shape(dbias.reshape(tuple(lead) + (L, S)), np.shape(mask)).astype(np.asarray(mask).dtype,
                                                                                    copy=False)


def _float_mask(mask):
    return mask is not None and np.asarray(mask).dtype.kind == "f"


@_register
class ScaledDotProductAttention(Op):
    """softmax(q·kᵀ·scale + mask)·v over the last two axes, any leading (batch, head) axes, through the fused
    blockwise kernels of kernels/attention_sdpa.hpp (the L×S weights are never stored). A boolean mask says
    True = may attend; a float mask is added to the scores, and gets the scores' gradient (summed over the
    dimensions it was broadcast along) when it is a traced value that needs one. is_causal masks key j for
    query i when j > i. A query whose every key is masked gets a zero output and zero gradients.
    dropout_p > 0 drops weights by a hash of one seed (kernels/dropout.hpp): no (…, L, S) array is kept."""
    name = "scaled_dot_product_attention"

    def forward(self, q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):
        q, k, v = np.asarray(q), np.asarray(k), np.asarray(v)
        if q.ndim < 2 or k.ndim < 2 or v.ndim < 2:
            raise ValueError(f"scaled_dot_product_attention: q, k, v must be at least 2-D (..., L, E), got "
                             f"{q.shape}, {k.shape}, {v.shape}")
        if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
            raise ValueError(f"scaled_dot_product_attention: q {q.shape}, k {k.shape} and v {v.shape} do not "
                             f"match: need (..., L, E), (..., S, E), (..., S, Ev)")
        if attn_mask is not None and is_causal:
            raise ValueError("scaled_dot_product_attention: pass either attn_mask or is_causal=True, not both")
        if not 0.0 <= dropout_p <= 1.0:
            raise ValueError(f"scaled_dot_product_attention: dropout_p must be in [0, 1], got {dropout_p}")
        dtype = _F64 if _F64 in (q.dtype, k.dtype, v.dtype) else _F32
        try:
            lead = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
        except ValueError:
            raise ValueError(f"scaled_dot_product_attention: batch dimensions of q {q.shape}, k {k.shape} and "
                             f"v {v.shape} do not broadcast") from None
        L, E, S, Ev = q.shape[-2], q.shape[-1], k.shape[-2], v.shape[-1]
        B = math.prod(lead)

        def flat(x, n, d):
            x = np.broadcast_to(x, lead + x.shape[-2:]) if x.shape[:-2] != lead else x
            return np.ascontiguousarray(x, dtype=dtype).reshape(B, n, d)

        q3, k3, v3 = flat(q, L, E), flat(k, S, E), flat(v, S, Ev)
        bias, div, count = (None, 1, 1) if attn_mask is None else _attention_bias(attn_mask, lead, L, S, dtype)
        sc = 1.0 / math.sqrt(E) if scale is None else float(scale)
        sizes = (B, 1, L, S, E, Ev)
        layouts = (_contiguous_layout(B, L, E), _contiguous_layout(B, S, E), _contiguous_layout(B, S, Ev),
                   _contiguous_layout(B, L, Ev))
        out, lse, seed = _run_attention(q3, k3, v3, sizes, layouts, (B, L, Ev), bias, div, count, bool(is_causal),
                                        sc, float(dropout_p))
        ctx = (q3, k3, v3, bias, out, lse, div, count, bool(is_causal), sc, float(dropout_p), seed, sizes, layouts,
               q.shape, k.shape, v.shape, attn_mask if _float_mask(attn_mask) else None)
        return out.reshape(lead + (L, Ev)), ctx

    def backward(self, ctx, g, needs):
        q3, k3, v3, bias, out, lse, div, count, causal, sc, p, seed, sizes, layouts, qs, ks, vs, fmask = ctx
        g3 = np.ascontiguousarray(g, dtype=q3.dtype).reshape(out.shape)
        dq, dk, dv = (ops.empty(a.shape, a.dtype) for a in (q3, k3, v3))
        want_mask = fmask is not None and len(needs) > 3 and bool(needs[3])
        B, _, L, S = sizes[:4]
        dbias = ops.empty((B, L, S), q3.dtype) if want_mask else None
        ops.sdpa_backward(q3, k3, v3, bias, out, g3, lse, dq, dk, dv, dbias, sizes, layouts, div, count, causal, sc,
                          p, seed)
        lead = np.broadcast_shapes(qs[:-2], ks[:-2], vs[:-2])

        def back(d, shape, need):
            return sum_to_shape(d.reshape(lead + d.shape[-2:]), shape) if need else None
        grads = (back(dq, qs, needs[0]), back(dk, ks, needs[1]), back(dv, vs, needs[2]))
        dmask = _mask_gradient(dbias, fmask, lead, L, S) if want_mask else None
        return grads + (dmask,) + (None,) * (len(needs) - 4)


@_register
class MultiHeadAttention(Op):
    """The attention of nn.MultiheadAttention on its projections, heads read in place: q (N, L, H·D), k (N, S, H·D),
    v (N, S, H·Dv) -> (N, L, H·Dv), head h of every row in columns h·D:(h+1)·D, as the kernel's layouts say
    (no (N, L, H, D) -> (N·H, L, D) copies, and the output goes to out_proj as it is). With k and v None,
    q is the one (N, L, 3E) self-attention projection [q | k | v], and the backward fills one (N, L, 3E)
    gradient. mask: None or the additive mask of AttentionMask, (L, S), (N, 1, 1, S) or (N, H, L, S); a traced
    float mask gets its gradient. seed: None (a seed is drawn when dropout_p > 0) or the AttentionSeed value
    shared with AttentionWeights (need_weights=True returns the weights after the same dropout)."""
    name = "multi_head_attention"

    def forward(self, q, k=None, v=None, mask=None, seed=None, num_heads=1, dropout_p=0.0, is_causal=False):
        H = int(num_heads)
        packed = k is None
        q = np.ascontiguousarray(q)
        if packed:
            N, L, E3 = q.shape
            E = Ev = E3 // 3
            S = L
            k = v = q
            base = (0, E, 2 * E)
            row = (E3, E3, E3)
        else:
            k, v = np.ascontiguousarray(k, dtype=q.dtype), np.ascontiguousarray(v, dtype=q.dtype)
            N, L, E = q.shape
            S, Ev = k.shape[1], v.shape[2]
            # a graph traced once runs for any sizes: the module's own checks saw only the traced example's
            if k.shape[0] != N or v.shape[0] != N or v.shape[1] != S or k.shape[2] != E:
                raise ValueError(f"multi_head_attention: query, key and value must have one batch size and key and "
                                 f"value one sequence length, got projections of shapes {q.shape}, {k.shape}, "
                                 f"{v.shape} (batch first)")
            base = (0, 0, 0)
            row = (E, E, Ev)
        D, Dv = E // H, Ev // H
        dtype = q.dtype
        lay = ((base[0], L * row[0], D, row[0]), (base[1], S * row[1], D, row[1]), (base[2], S * row[2], Dv, row[2]),
               (0, L * Ev, Dv, Ev))
        sizes = (N * H, H, L, S, D, Dv)
        bias, div, count = (None, 1, 1) if mask is None else _attention_bias(mask, (N, H), L, S, dtype)
        sc = 1.0 / math.sqrt(D)
        p = float(dropout_p)
        drawn = draw_seed() if p > 0.0 and seed is None else (0 if seed is None else int(seed))
        out = ops.empty((N, L, Ev), dtype)
        lse = ops.sdpa_forward(q, k, v, bias, out, sizes, lay, div, count, bool(is_causal), sc, p, drawn)
        ctx = (q, k, v, packed, bias, out, lse, div, count, bool(is_causal), sc, p, drawn, sizes, lay,
               mask if _float_mask(mask) else None)
        return out, ctx

    def backward(self, ctx, g, needs):
        q, k, v, packed, bias, out, lse, div, count, causal, sc, p, seed, sizes, lay, fmask = ctx
        g = np.ascontiguousarray(g, dtype=q.dtype)
        if packed:
            dq = dk = dv = ops.empty(q.shape, q.dtype)
        else:
            dq, dk, dv = (ops.empty(a.shape, a.dtype) for a in (q, k, v))
        want_mask = fmask is not None and len(needs) > 3 and bool(needs[3])
        B, H, L, S = sizes[:4]
        dbias = ops.empty((B, L, S), q.dtype) if want_mask else None
        ops.sdpa_backward(q, k, v, bias, out, g, lse, dq, dk, dv, dbias, sizes, lay, div, count, causal, sc, p, seed)
        dmask = _mask_gradient(dbias, fmask, (B // H, H), L, S) if want_mask else None
        if packed:
            return (dq, None, None, dmask, None)
        return (dq if needs[0] else None, dk if needs[1] else None, dv if needs[2] else None, dmask, None)


@_register
class AttentionSeed(Op):
    """One dropout seed (a 0-d uint64 array) drawn from fastnn's generator at every forward, for ops that must
    drop the same attention weights (MultiHeadAttention and AttentionWeights). Its argument only places it in
    the graph; no gradient."""
    name = "attention_seed"

    def forward(self, anchor):
        return np.asarray(draw_seed(), dtype=np.uint64), None

    def backward(self, ctx, g, needs):
        return (None,)


@_register
class AttentionMask(Op):
    """nn.MultiheadAttention's masks (PyTorch's convention: bool True = may NOT attend; float = added) as one
    additive float mask for the attention ops: attn_mask (L, S) or (N·H, L, S), key_padding_mask (N, S) ->
    (L, S), (N, 1, 1, S) or (N, H, L, S). Shapes are checked against (N, H, L, S); `owner` names the module in
    errors. Float masks that are traced values get their gradients (bool masks none)."""
    name = "attention_mask"

    def forward(self, attn_mask, key_padding_mask, N, H, L, S, dtype="float32", owner="MultiheadAttention"):
        dtype = np.dtype(dtype)

        def additive(m, what):
            m = np.asarray(m)
            if m.dtype == np.bool_:
                return np.where(m, dtype.type(-np.inf), dtype.type(0))
            if m.dtype.kind != "f":
                raise TypeError(f"{owner}: {what} must be bool or float, got dtype {m.dtype}")
            return m.astype(dtype, copy=False)
        mask = None
        shapes = [None, None]
        if attn_mask is not None:
            shape = np.shape(attn_mask)
            if shape == (L, S):
                mask = additive(attn_mask, "attn_mask")
            elif shape == (N * H, L, S):
                mask = additive(attn_mask, "attn_mask").reshape(N, H, L, S)
            else:
                raise ValueError(f"{owner}: attn_mask must have shape (L, S) = {(L, S)} or (N·num_heads, L, S) = "
                                 f"{(N * H, L, S)}, got {shape}")
            shapes[0] = (shape, np.asarray(attn_mask).dtype)
        if key_padding_mask is not None:
            if np.shape(key_padding_mask) != (N, S):
                raise ValueError(f"{owner}: key_padding_mask must have shape (N, S) = {(N, S)}, got "
                                 f"{np.shape(key_padding_mask)}")
            kpm = additive(key_padding_mask, "key_padding_mask").reshape(N, 1, 1, S)
            mask = kpm if mask is None else mask + kpm
            shapes[1] = ((N, S), np.asarray(key_padding_mask).dtype)
        return mask, (shapes, (N, H, L, S))

    def backward(self, ctx, g, needs):
        (am, kpm), (N, H, L, S) = ctx
        grads = [None] * len(needs)
        if am is not None and needs[0] and am[1].kind == "f":
            shape = am[0]
            grads[0] = (sum_to_shape(g, (L, S)) if shape == (L, S) else
                        np.broadcast_to(g, (N, H, L, S)).reshape(shape)).astype(am[1], copy=False)
        if kpm is not None and needs[1] and kpm[1].kind == "f":
            grads[1] = sum_to_shape(g, (N, 1, 1, S)).reshape(N, S).astype(kpm[1], copy=False)
        return tuple(grads)


@_register
class AttentionWeights(Op):
    """The weights softmax(q·kᵀ·scale + mask) that the attention applies, (…, L, S), for need_weights=True
    (rows with no visible key: zeros); with seed and dropout_p > 0 (training), after the same dropout as the
    attention's (PyTorch returns them so). A reported value: no gradient flows back through it."""
    name = "attention_weights"

    def forward(self, q, k, attn_mask=None, seed=None, is_causal=False, scale=None, dropout_p=0.0):
        q, k = np.asarray(q), np.asarray(k)
        sc = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
        s = np.matmul(q, np.swapaxes(k, -1, -2)) * q.dtype.type(sc)
        L, S = s.shape[-2:]
        if is_causal:
            s = np.where(np.tril(np.ones((L, S), bool)), s, -np.inf)
        if attn_mask is not None:
            m = np.asarray(attn_mask)
            s = np.where(m, s, -np.inf) if m.dtype == np.bool_ else s + m.astype(s.dtype, copy=False)
        top = np.max(s, axis=-1, keepdims=True)
        e = np.exp(s - np.where(np.isfinite(top), top, 0))
        total = e.sum(axis=-1, keepdims=True)
        w = np.divide(e, total, out=np.zeros_like(e), where=total > 0).astype(q.dtype, copy=False)
        if dropout_p > 0.0 and seed is not None:
            keep = dropout_keep(int(seed), w.size, dropout_p).reshape(w.shape)
            scale_kept = w.dtype.type(1.0 / (1.0 - dropout_p)) if dropout_p < 1.0 else w.dtype.type(0)
            w = np.where(keep, w * scale_kept, w.dtype.type(0))
        return w, None

    def backward(self, ctx, g, needs):
        return (None,) * len(needs)
