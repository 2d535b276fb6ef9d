"""ONNX for fastnn's functional ops (the "call" nodes of a GraphDef, `OPS` in fastnn/nn/function_ops.py).

Each entry takes (builder, node, args, kwargs, out) where args/kwargs hold T (tensor), D (size) or literals and
`out` is the op's example output; it returns the ONNX value name of the result.
"""
import math

import numpy as np

from .builder import INT64_MAX, INT64_MIN
from .values import D, T


class ExportError(ValueError):
    """A model or op that has no ONNX mapping here."""


def operand(b, x, like):
    """An ONNX name for a binary operand: a tensor as is, a Python number as a constant of like's dtype."""
    if isinstance(x, T):
        return x.name
    if isinstance(x, D):
        return x.name
    dtype = np.asarray(like).dtype if like is not None else np.float32
    return b.scalar(x, dtype)


def _binary(op_type):
    def emit(b, node, args, kwargs, out):
        x, y = args
        like = out
        return b.op(op_type, [operand(b, x, like), operand(b, y, like)], node.name)
    return emit


def _unary(op_type, **attrs):
    def emit(b, node, args, kwargs, out):
        return b.op(op_type, [args[0].name], node.name, **attrs)
    return emit


def silu_op(b, x, hint):
    return b.op("Mul", [x, b.op("Sigmoid", [x], hint + "_sigmoid")], hint)


def softplus_op(b, x, beta, dtype, hint):
    if beta == 1.0:
        return b.op("Softplus", [x], hint)
    scaled = b.op("Mul", [x, b.scalar(beta, dtype)], hint + "_scaled")
    return b.op("Div", [b.op("Softplus", [scaled], hint + "_sp"), b.scalar(beta, dtype)], hint)


def gelu(b, x, approximate, dtype, hint):
    """0.5·x·(1 + erf(x/√2)), or PyTorch's tanh form, in opset-17 ops."""
    if approximate == "tanh":
        cube = b.op("Mul", [b.op("Mul", [x, x]), x])
        inner = b.op("Add", [x, b.op("Mul", [cube, b.scalar(0.044715, dtype)])])
        t = b.op("Tanh", [b.op("Mul", [inner, b.scalar(math.sqrt(2.0 / math.pi), dtype)])])
    else:
        t = b.op("Erf", [b.op("Mul", [x, b.scalar(1.0 / math.sqrt(2.0), dtype)])])
    one_plus = b.op("Add", [t, b.scalar(1.0, dtype)])
    return b.op("Mul", [b.op("Mul", [x, one_plus]), b.scalar(0.5, dtype)], hint)


def _activation(b, node, args, kwargs, out):
    x, name, dtype = args[0].name, node.target, out.dtype
    if name == "leaky_relu":
        return b.op("LeakyRelu", [x], node.name, alpha=float(kwargs.get("negative_slope", 0.01)))
    if name == "elu":
        return b.op("Elu", [x], node.name, alpha=float(kwargs.get("alpha", 1.0)))
    if name == "silu":
        return silu_op(b, x, node.name)
    if name == "softplus":
        return softplus_op(b, x, float(kwargs.get("beta", 1.0)), dtype, node.name)
    if name == "gelu":
        return gelu(b, x, kwargs.get("approximate", "none"), dtype, node.name)
    raise AssertionError(name)


def shape_tensor(b, shape, hint):
    """A 1-D int64 tensor for a shape given as ints and D sizes."""
    parts, run = [], []
    for s in shape:
        if isinstance(s, D):
            if run:
                parts.append(b.ints(run))
                run = []
            parts.append(s.name)
        else:
            run.append(int(s))
    if run:
        parts.append(b.ints(run))
    if len(parts) == 1:
        return parts[0]
    return b.op("Concat", parts, hint + "_shape", axis=0)


def _reshape(b, node, args, kwargs, out):
    x, shape = args[0], args[1] if len(args) > 1 else kwargs["shape"]
    shape = (shape,) if isinstance(shape, (int, D)) else tuple(shape)
    return b.op("Reshape", [x.name, shape_tensor(b, shape, node.name)], node.name)


def flatten_shape(b, x, start, end, hint):
    """The shape tensor of flattening axes start..end of x (a T)."""
    nd = max(x.value.ndim, 1)
    s, e = start % nd, end % nd
    parts = []
    if s > 0:
        parts.append(b.shape_slice(x.name, 0, s))
    parts.append(b.ints([-1]))
    if e + 1 < nd:
        parts.append(b.shape_slice(x.name, e + 1, nd))
    return parts[0] if len(parts) == 1 else b.op("Concat", parts, hint + "_shape", axis=0)


def _flatten(b, node, args, kwargs, out):
    x = args[0]
    start = args[1] if len(args) > 1 else kwargs.get("start_dim", 0)
    end = args[2] if len(args) > 2 else kwargs.get("end_dim", -1)
    return b.op("Reshape", [x.name, flatten_shape(b, x, start, end, node.name)], node.name)


def _permute(b, node, args, kwargs, out):
    dims = args[1] if len(args) > 1 else kwargs["dims"]
    nd = args[0].value.ndim
    return b.op("Transpose", [args[0].name], node.name, perm=[int(d) % nd for d in dims])


def _transpose(b, node, args, kwargs, out):
    nd = args[0].value.ndim
    d0, d1 = (args[1], args[2]) if len(args) > 2 else (kwargs["dim0"], kwargs["dim1"])
    perm = list(range(nd))
    perm[d0 % nd], perm[d1 % nd] = perm[d1 % nd], perm[d0 % nd]
    return b.op("Transpose", [args[0].name], node.name, perm=perm)


def _unsqueeze(b, node, args, kwargs, out):
    dim = args[1] if len(args) > 1 else kwargs["dim"]
    return b.op("Unsqueeze", [args[0].name, b.ints([dim % out.ndim])], node.name)


def _squeeze(b, node, args, kwargs, out):
    dim = args[1] if len(args) > 1 else kwargs.get("dim")
    x = args[0]
    if dim is None:
        axes = [k for k, s in enumerate(x.value.shape) if s == 1]
    else:
        dims = dim if isinstance(dim, (tuple, list)) else (dim,)
        axes = [d % x.value.ndim for d in dims if x.value.shape[d % x.value.ndim] == 1]
    if not axes:
        return b.op("Identity", [x.name], node.name)
    return b.op("Squeeze", [x.name, b.ints(axes)], node.name)


def _expand(b, node, args, kwargs, out):
    shape = args[1] if len(args) > 1 else kwargs["shape"]
    shape = [1 if (not isinstance(s, D) and s == -1) else s for s in shape]  # ONNX Expand: 1 keeps a size
    return b.op("Expand", [args[0].name, shape_tensor(b, shape, node.name)], node.name)


def _cat(b, node, args, kwargs, out):
    tensors = args[0]
    dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
    return b.op("Concat", [t.name for t in tensors], node.name, axis=int(dim) % out.ndim)


def _stack(b, node, args, kwargs, out):
    tensors = args[0]
    dim = int(args[1] if len(args) > 1 else kwargs.get("dim", 0)) % out.ndim
    axes = b.ints([dim])
    parts = [b.op("Unsqueeze", [t.name, axes], node.name + "_unsq") for t in tensors]
    return b.op("Concat", parts, node.name, axis=dim)


def reduce(b, op_type, x, axes, keepdims, hint):
    """A Reduce* op over `axes` (attribute before opset 18, input from 18; ReduceSum's is an input since 13)."""
    if op_type == "ReduceSum" or b.opset >= 18:
        return b.op(op_type, [x, b.ints(axes)], hint, keepdims=int(keepdims))
    return b.op(op_type, [x], hint, axes=list(axes), keepdims=int(keepdims))


def _reduce(op_type):
    def emit(b, node, args, kwargs, out):
        x = args[0]
        dim = args[1] if len(args) > 1 else kwargs.get("dim")
        keep = int(bool(args[2] if len(args) > 2 else kwargs.get("keepdim", False)))
        if dim is None:
            axes = list(range(x.value.ndim))
        else:
            axes = [int(d) % x.value.ndim for d in (dim if isinstance(dim, (tuple, list)) else (dim,))]
        return reduce(b, op_type, x.name, axes, keep, node.name)
    return emit


def _softmax(op_type):
    def emit(b, node, args, kwargs, out):
        dim = args[1] if len(args) > 1 else kwargs.get("dim", -1)
        return b.op(op_type, [args[0].name], node.name, axis=int(dim) % max(out.ndim, 1))
    return emit


def _dropout(b, node, args, kwargs, out):
    return b.op("Identity", [args[0].name], node.name)  # eval semantics: dropout is the identity


def _dropout_add(b, node, args, kwargs, out):
    return _binary("Add")(b, node, args[:2], kwargs, out)  # eval semantics: residual + x


def _linear(b, node, args, kwargs, out):
    x, w = args[0], args[1]
    bias = args[2] if len(args) > 2 else kwargs.get("bias")
    return linear(b, x, w.name, None if bias is None else bias.name, node.name)


def _linear_activation(b, node, args, kwargs, out):
    """The fused feed-forward half: Gemm/MatMul, then Relu or GELU's ops (eval semantics: no dropout)."""
    x, w = args[0], args[1]
    bias = args[2] if len(args) > 2 else kwargs.get("bias")
    y = linear(b, x, w.name, None if bias is None else bias.name, node.name + "_linear")
    activation = kwargs.get("activation", "relu")
    if activation == "relu":
        return b.op("Relu", [y], node.name)
    return gelu(b, y, "tanh" if activation == "gelu_tanh" else "none", out.dtype, node.name)


def linear(b, x, weight, bias, hint):
    """x·Wᵀ + b: Gemm for 2-D x, else MatMul with the transposed weight (and Add)."""
    if x.value.ndim == 2:
        return b.op("Gemm", [x.name, weight] + ([bias] if bias is not None else []), hint, transB=1)
    wt = b.op("Transpose", [weight], hint + "_wT", perm=[1, 0])
    y = b.op("MatMul", [x.name, wt], hint if bias is None else hint + "_matmul")
    return y if bias is None else b.op("Add", [y, bias], hint)


def _bound(v):
    """A slice bound: an int, or a D (a size read from a shape at run time)."""
    return v if isinstance(v, D) else int(v)


def _getitem(b, node, args, kwargs, out):
    x, key = args[0], args[1]
    items = list(key) if isinstance(key, tuple) else [key]
    for k in items:
        if not (k is None or k is Ellipsis or isinstance(k, (int, np.integer, slice))):
            raise ExportError(f"ONNX export: node '{node.name}' indexes with {type(k).__name__} (advanced indexing); "
                              f"only ints, slices, None and ... export")
    nd = x.value.ndim
    if Ellipsis in items:
        at = items.index(Ellipsis)
        used = sum(1 for k in items if k is not None and k is not Ellipsis)
        items = items[:at] + [slice(None)] * (nd - used) + items[at + 1:]
    starts, ends, axes, steps, gathers, new_axes = [], [], [], [], [], []
    axis = out_axis = 0
    for k in items:
        if k is None:
            new_axes.append(out_axis)
            out_axis += 1
            continue
        if isinstance(k, slice):
            step = 1 if k.step is None else int(k.step)
            if (k.start, k.stop, step) != (None, None, 1):
                starts.append((0 if step > 0 else INT64_MAX) if k.start is None else _bound(k.start))
                ends.append((INT64_MAX if step > 0 else INT64_MIN) if k.stop is None else _bound(k.stop))
                axes.append(axis)
                steps.append(step)
            out_axis += 1
        else:
            gathers.append((axis, int(k)))
        axis += 1
    y = x.name
    if axes:
        bounds = [shape_tensor(b, starts, node.name + "_starts"), shape_tensor(b, ends, node.name + "_ends")]
        y = b.op("Slice", [y] + bounds + [b.ints(axes), b.ints(steps)], node.name + "_slice")
    for a, i in sorted(gathers, reverse=True):
        y = b.op("Gather", [y, b.const(np.asarray(i, np.int64), "index")], node.name + "_gather", axis=a)
    if new_axes:
        y = b.op("Unsqueeze", [y, b.ints(new_axes)], node.name + "_unsqueeze")
    return b.op("Identity", [y], node.name)


FUNCTIONAL = {
    "add": _binary("Add"), "sub": _binary("Sub"), "mul": _binary("Mul"), "div": _binary("Div"),
    "pow": _binary("Pow"), "neg": _unary("Neg"), "exp": _unary("Exp"), "log": _unary("Log"),
    "sqrt": _unary("Sqrt"), "abs": _unary("Abs"), "relu": _unary("Relu"), "sigmoid": _unary("Sigmoid"),
    "tanh": _unary("Tanh"), "leaky_relu": _activation, "elu": _activation, "silu": _activation,
    "softplus": _activation, "gelu": _activation,
    "gt": _binary("Greater"), "ge": _binary("GreaterOrEqual"), "lt": _binary("Less"), "le": _binary("LessOrEqual"),
    "eq": _binary("Equal"),
    "softmax": _softmax("Softmax"), "log_softmax": _softmax("LogSoftmax"), "dropout": _dropout,
    "dropout_add": _dropout_add,
    "linear": _linear, "linear_activation": _linear_activation, "matmul": _binary("MatMul"), "bmm": _binary("MatMul"),
    "reshape": _reshape, "flatten": _flatten, "permute": _permute, "transpose": _transpose,
    "unsqueeze": _unsqueeze, "squeeze": _squeeze, "expand": _expand, "cat": _cat, "stack": _stack,
    "sum": _reduce("ReduceSum"), "mean": _reduce("ReduceMean"), "getitem": _getitem,
}
