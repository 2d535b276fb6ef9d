"""ONNX ops into fastnn (used by load.py). IMPORTERS[op_type](builder, node) reads the node's inputs from
builder.env (V tensors, Sym shape values, Zeros) or builder.consts (arrays known at load time) and sets its
outputs. Ops on constants only are folded with NumPy."""
import numpy as np

from .. import nn
from ..nn.graph_def import DimRef, Ref
from .builder import INT64_MAX, INT64_MIN
from .import_recurrent import recurrent_stack, y_of
from .import_scan import make_scan
from .import_graph import Sym, V, Zeros, as_tensor, const_input, get_value, node_attrs, set_param


_attrs, _get, _const, _tensor, _set = node_attrs, get_value, const_input, as_tensor, set_param


def _weight_name(b, node, k):
    name = node.input[k] if k < len(node.input) else ""
    return b.origin.get(name) if isinstance(b.origin.get(name), str) else None


def _module(b, node, module, path, args):
    idx, out = b.module(path, module, args, node.name)
    b.env[node.output[0]] = V(Ref(idx, ()), np.asarray(out))
    return idx, out


# -- layers ----------------------------------------------------------------------------------------------
def conv(b, node):
    x, w, bias = _get(b, node.input[0]), _const(b, node, 1, "weight"), _const(b, node, 2, "bias")
    a = _attrs(node)
    dims = w.ndim - 2
    if dims not in (1, 2):
        raise ValueError(f"fastnn.onnx.load: Conv node '{node.name}' is {dims}-D; fastnn has Conv1d and Conv2d")
    if a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise ValueError(f"fastnn.onnx.load: Conv node '{node.name}' uses auto_pad={a['auto_pad']}")
    pads = a.get("pads", [0] * 2 * dims)
    if pads[:dims] != pads[dims:]:
        raise ValueError(f"fastnn.onnx.load: Conv node '{node.name}' pads {pads} unevenly; fastnn pads evenly")
    groups = int(a.get("group", 1))
    cls = nn.Conv1d if dims == 1 else nn.Conv2d
    m = cls(w.shape[1] * groups, w.shape[0], tuple(w.shape[2:]), stride=tuple(a.get("strides", [1] * dims)),
            padding=tuple(pads[:dims]), dilation=tuple(a.get("dilations", [1] * dims)), groups=groups,
            bias=bias is not None)
    _set(m, "weight", w)
    if bias is not None:
        _set(m, "bias", bias)
    _module(b, node, m, b.path_for(_weight_name(b, node, 1), ".weight", "conv"), [x])


def gemm(b, node):
    x, w = _get(b, node.input[0]), _get(b, node.input[1])
    a = _attrs(node)
    if isinstance(x, V) and isinstance(w, V) and a.get("transB", 0) and not a.get("transA", 0) and \
            a.get("alpha", 1.0) == 1.0 and a.get("beta", 1.0) == 1.0:  # a weight passed in (a Scan body's)
        c = _get(b, node.input[2]) if len(node.input) > 2 else None
        b.env[node.output[0]] = b.call("linear", [x, w, None if c is None else _matmul_operand(b, node, c, 2)],
                                       hint=node.name)
        return
    c = _const(b, node, 2, "bias")
    if isinstance(x, V) and a.get("transB", 0) and not a.get("transA", 0) and a.get("alpha", 1.0) == 1.0 and \
            a.get("beta", 1.0) == 1.0 and (c is None or c.ndim == 1):
        free = _free_weight(b, _weight_name(b, node, 1), True)
        if free is not None:  # a cell's weight_ih / weight_hh: parameters at their own names
            bias = None if c is None else _matmul_operand(b, node, c, 2)
            b.env[node.output[0]] = b.call("linear", [x, free, bias], hint=node.name)
            return
    if not isinstance(w, np.ndarray) or a.get("transA", 0):
        raise ValueError(f"fastnn.onnx.load: Gemm node '{node.name}' multiplies by a computed matrix or transposes "
                         f"A; only x·Wᵀ + b with a constant W imports")
    w = w * a.get("alpha", 1.0) if a.get("alpha", 1.0) != 1.0 else w
    weight = w if a.get("transB", 0) else w.T
    m = nn.Linear(weight.shape[1], weight.shape[0], bias=c is not None)
    _set(m, "weight", weight)
    if c is not None:
        _set(m, "bias", np.broadcast_to(c * a.get("beta", 1.0), (weight.shape[0],)))
    _module(b, node, m, b.path_for(_weight_name(b, node, 1), ".weight", "linear"), [x])


def _free_weight(b, name, transposed):
    """A float initializer not named like a layer's weight (e.g. MultiheadAttention's in_proj_weight), as the
    trainable parameter of that name: W itself when `transposed` (MatMul(x, Transpose(W))), else W."""
    if not name or name.endswith(".weight") or not _free_name(b, name):
        return None
    return b.parameter(name, b.consts[name])


def _free_name(b, name):
    """Whether the initializer `name` is (or can become) a parameter at its own dotted path."""
    return ("param", name) in b.origin or b.exact_path(name, claim=False) is not None


def matmul(b, node):
    x, w = _get(b, node.input[0]), _get(b, node.input[1])
    if isinstance(w, np.ndarray) and w.ndim == 2 and isinstance(x, V):
        name = node.input[1]
        origin = b.origin.get(("T", name))   # W given as Transpose(initializer): keep its name
        weight_name = origin if origin else b.origin.get(name) if isinstance(b.origin.get(name), str) else None
        free = _free_weight(b, weight_name, bool(origin))
        if free is not None:
            b.env[node.output[0]] = b.call("linear" if origin else "matmul", [x, free], hint=node.name)
            return
        m = nn.Linear(w.shape[0], w.shape[1], bias=False)
        _set(m, "weight", w.T)
        path = b.path_for(weight_name, ".weight", "linear")
        idx, out = _module(b, node, m, path, [x])
        b.pending_linear[node.output[0]] = (m, path)
        return
    b.env[node.output[0]] = b.call("matmul", [_matmul_operand(b, node, v, k) for k, v in enumerate((x, w))],
                                   hint=node.name)


def _matmul_operand(b, node, x, k):
    """A MatMul operand: a float initializer (AdditiveAttention's v) as a trainable parameter, else a tensor."""
    name = node.input[k]
    if isinstance(x, np.ndarray) and x.dtype.kind == "f" and isinstance(b.origin.get(name), str):
        return b.parameter(name, x)
    return _tensor(b, x)


def _bias_into_linear(b, node, x, y):
    """Add(MatMul(x, W), bias) with the MatMul used only here: the bias goes into that Linear."""
    pending = b.pending_linear
    for lhs, rhs, name in ((x, y, node.input[0]), (y, x, node.input[1])):
        if name in pending and isinstance(rhs, np.ndarray) and b.users.get(name) == 1:
            m, path = pending.pop(name)
            if rhs.size == m.out_features and rhs.ndim == 1 and m.bias is None:
                # a Linear built with its bias (not one assigned later), so fnn.save can rebuild the Graph
                full = nn.Linear(m.in_features, m.out_features, bias=True)
                _set(full, "weight", m.weight.data)
                _set(full, "bias", rhs)
                b.place(path, full)
                full.eval()
                b.env[node.output[0]] = V(lhs.ref, lhs.value + rhs)
                return True
    return False


def batch_norm(b, node):
    x = _get(b, node.input[0])
    scale, bias, mean, var = (_const(b, node, k, w) for k, w in ((1, "scale"), (2, "bias"), (3, "mean"),
                                                                  (4, "var")))
    a = _attrs(node)
    if a.get("training_mode", 0):
        raise ValueError(f"fastnn.onnx.load: BatchNormalization node '{node.name}' has training_mode=1")
    cls = nn.BatchNorm2d if x.value.ndim == 4 else nn.BatchNorm1d
    m = cls(scale.shape[0], eps=float(a.get("epsilon", 1e-5)), momentum=1.0 - float(a.get("momentum", 0.9)))
    _set(m, "weight", scale)
    _set(m, "bias", bias)
    m.running_mean[...] = mean
    m.running_var[...] = var
    _module(b, node, m, b.path_for(_weight_name(b, node, 1), ".weight", "batch_norm"), [x])


def layer_norm(b, node):
    x, scale, bias = _get(b, node.input[0]), _const(b, node, 1, "scale"), _const(b, node, 2, "bias")
    a = _attrs(node)
    axis = int(a.get("axis", -1)) % x.value.ndim
    shape = x.value.shape[axis:]
    m = nn.LayerNorm(shape, eps=float(a.get("epsilon", 1e-5)), bias=bias is not None)
    _set(m, "weight", np.broadcast_to(scale, shape))
    if bias is not None:
        _set(m, "bias", np.broadcast_to(bias, shape))
    _module(b, node, m, b.path_for(_weight_name(b, node, 1), ".weight", "layer_norm"), [x])


def _pool(kind):
    def imp(b, node):
        x = _get(b, node.input[0])
        a = _attrs(node)
        k = list(a["kernel_shape"])
        dims = len(k)
        pads = a.get("pads", [0] * 2 * dims)
        if pads[:dims] != pads[dims:] or a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
            raise ValueError(f"fastnn.onnx.load: {node.op_type} node '{node.name}' pads unevenly ({pads})")
        strides = tuple(a.get("strides", [1] * dims))
        if kind == "max":
            if len(node.output) > 1 and node.output[1]:
                raise ValueError(f"fastnn.onnx.load: MaxPool node '{node.name}' returns indices")
            cls = nn.MaxPool1d if dims == 1 else nn.MaxPool2d
            m = cls(tuple(k), stride=strides, padding=tuple(pads[:dims]),
                    dilation=tuple(a.get("dilations", [1] * dims)), ceil_mode=bool(a.get("ceil_mode", 0)))
        else:
            cls = nn.AvgPool1d if dims == 1 else nn.AvgPool2d
            m = cls(tuple(k), stride=strides, padding=tuple(pads[:dims]), ceil_mode=bool(a.get("ceil_mode", 0)),
                    count_include_pad=bool(a.get("count_include_pad", 0)))
        _module(b, node, m, b.path_for(None, None, kind + "_pool"), [x])
    return imp


def prelu(b, node):
    x, slope = _get(b, node.input[0]), _const(b, node, 1, "slope")
    name = b.origin.get(node.input[1]) if isinstance(b.origin.get(node.input[1]), str) else \
        b.origin.get(("R", node.input[1]))
    m = nn.PReLU(num_parameters=int(slope.size))
    if slope.size > 1 and not (slope.ndim == 1 and x.value.ndim == 2 or slope.shape[0] == slope.size):
        raise ValueError(f"fastnn.onnx.load: PRelu node '{node.name}' has a slope of shape {slope.shape}; fastnn's "
                         f"PReLU has one slope or one per channel (axis 1)")
    _set(m, "weight", slope.reshape(-1))
    _module(b, node, m, b.path_for(name, ".weight", "prelu"), [x])


def lrn(b, node):
    x = _get(b, node.input[0])
    a = _attrs(node)
    size = int(a["size"])
    if size % 2 == 0:
        raise ValueError(f"fastnn.onnx.load: LRN node '{node.name}' has an even size, whose window fastnn's "
                         f"LocalResponseNorm centres differently")
    m = nn.LocalResponseNorm(size, alpha=float(a.get("alpha", 1e-4)), beta=float(a.get("beta", 0.75)),
                             k=float(a.get("bias", 1.0)))
    _module(b, node, m, b.path_for(None, None, "lrn"), [x])


def instance_norm(b, node):
    """InstanceNormalization(x: N, C, ...) is GroupNorm(C, C) with the scale and bias as its weight and bias."""
    x, scale, bias = _get(b, node.input[0]), _const(b, node, 1, "scale"), _const(b, node, 2, "bias")
    c = scale.shape[0]
    m = nn.GroupNorm(c, c, eps=float(_attrs(node).get("epsilon", 1e-5)))
    _set(m, "weight", scale)
    _set(m, "bias", bias)
    _module(b, node, m, b.path_for(_weight_name(b, node, 1), ".weight", "instance_norm"), [x])


def global_avg_pool(b, node):
    x = _get(b, node.input[0])
    m = nn.AdaptiveAvgPool1d(1) if x.value.ndim == 3 else nn.AdaptiveAvgPool2d(1)
    _module(b, node, m, b.path_for(None, None, "global_avg_pool"), [x])


def embedding_gather(b, node, data, idx):
    m = nn.Embedding(data.shape[0], data.shape[1])
    _set(m, "weight", data)
    _module(b, node, m, b.path_for(_weight_name(b, node, 0), ".weight", "embedding"), [idx])


# -- element-wise and shape ops ----------------------------------------------------------------------------
def _binary(op):
    fold = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": None, "pow": np.power,
            "gt": np.greater, "ge": np.greater_equal, "lt": np.less, "le": np.less_equal, "eq": np.equal}

    def imp(b, node):
        x, y = _get(b, node.input[0]), _get(b, node.input[1])
        if isinstance(x, np.ndarray) and isinstance(y, np.ndarray):
            if op == "div":
                res = x // y if x.dtype.kind in "iu" and y.dtype.kind in "iu" else x / y
            else:
                res = fold[op](x, y)
            b.consts[node.output[0]] = np.asarray(res) if res.dtype == bool else np.asarray(res, np.result_type(x, y))
            return
        if isinstance(x, Sym) or isinstance(y, Sym):
            raise ValueError(f"fastnn.onnx.load: {node.op_type} node '{node.name}' computes with a run-time shape")
        if op == "add" and _bias_into_linear(b, node, x, y):
            return
        b.env[node.output[0]] = b.call(op, [_operand(b, node, x, k) for k, x in enumerate((x, y))], hint=node.name)
    return imp


def _operand(b, node, x, k):
    if isinstance(x, V):
        return x
    if x.size == 1 and x.ndim <= 1 and x.dtype.kind == "f":
        return float(x.reshape(-1)[0])
    name = node.input[k]
    origin = b.origin.get(name) if isinstance(b.origin.get(name), str) else b.origin.get(("R", name))
    if x.dtype.kind == "f" and origin is not None:  # a float initializer (maybe reshaped): trainable
        return b.parameter(name, x)
    return b.constant(x)


def _unary(op, **fixed):
    def imp(b, node):
        x = _get(b, node.input[0])
        kwargs = dict(fixed)
        a = _attrs(node)
        if op == "leaky_relu":
            kwargs["negative_slope"] = float(a.get("alpha", 0.01))
        elif op == "elu":
            kwargs["alpha"] = float(a.get("alpha", 1.0))
        elif op == "gelu":
            kwargs["approximate"] = a.get("approximate", "none")
        elif op in ("softmax", "log_softmax"):
            kwargs["dim"] = int(a.get("axis", -1))
        if isinstance(x, np.ndarray):
            b.consts[node.output[0]] = np.asarray(_fold_unary(node.op_type, x))
            return
        b.env[node.output[0]] = b.call(op, [x], kwargs, hint=node.name)
    return imp


def _fold_unary(op_type, x):
    table = {"Neg": np.negative, "Exp": np.exp, "Log": np.log, "Sqrt": np.sqrt, "Abs": np.abs}
    if op_type not in table:
        raise ValueError(f"fastnn.onnx.load: {op_type} on a constant is not folded")
    return table[op_type](x)


def _module_op(make):
    def imp(b, node):
        x = _get(b, node.input[0])
        m, name = make(_attrs(node), node)
        _module(b, node, m, b.path_for(None, None, name), [x])
    return imp


def _hardsigmoid(a, node):
    if abs(a.get("alpha", 0.2) - 0.2) > 1e-7 or abs(a.get("beta", 0.5) - 0.5) > 1e-7:
        raise ValueError(f"fastnn.onnx.load: HardSigmoid node '{node.name}' has alpha/beta other than 0.2/0.5 "
                         f"(fastnn's Hardsigmoid)")
    return nn.Hardsigmoid(), "hardsigmoid"


def clip(b, node):
    x = _get(b, node.input[0])
    lo, hi = _const(b, node, 1, "min"), _const(b, node, 2, "max")
    lo = None if lo is None else float(lo)
    hi = None if hi is None else float(hi)
    if lo != 0.0 or hi is None:
        raise ValueError(f"fastnn.onnx.load: Clip node '{node.name}' clips to [{lo}, {hi}]; only [0, max] (ReLU with "
                         f"a cap) imports")
    m = nn.ReLU6() if hi == 6.0 else nn.ReLU(max_value=hi)
    _module(b, node, m, b.path_for(None, None, "relu6" if hi == 6.0 else "relu"), [x])


def identity(b, node):
    x = _get(b, node.input[0])
    (b.env if not isinstance(x, np.ndarray) else b.consts)[node.output[0]] = x
    if len(node.output) > 1 and node.output[1]:
        raise ValueError(f"fastnn.onnx.load: Dropout node '{node.name}' outputs its mask")


def constant(b, node):
    a = _attrs(node)
    from onnx import numpy_helper
    if "value" in a:
        v = numpy_helper.to_array(a["value"])
    elif "value_float" in a:
        v = np.asarray(a["value_float"], np.float32)
    elif "value_floats" in a:
        v = np.asarray(a["value_floats"], np.float32)
    elif "value_int" in a:
        v = np.asarray(a["value_int"], np.int64)
    elif "value_ints" in a:
        v = np.asarray(a["value_ints"], np.int64)
    else:
        raise ValueError(f"fastnn.onnx.load: Constant node '{node.name}' has an unsupported value kind {sorted(a)}")
    b.consts[node.output[0]] = v


def shape(b, node):
    x = _get(b, node.input[0])
    a = _attrs(node)
    if isinstance(x, np.ndarray):
        b.consts[node.output[0]] = np.asarray(x.shape, np.int64)[a.get("start", 0):a.get("end")]
        return
    nd = x.value.ndim
    axes = list(range(nd))[a.get("start", 0):a.get("end", nd)]
    b.env[node.output[0]] = Sym([DimRef(x.ref.node, x.ref.path, k) for k in axes])


def _sym_items(v, node):
    if isinstance(v, Sym):
        return v.items
    if isinstance(v, np.ndarray) and v.dtype.kind in "iu":
        return [int(i) for i in v.reshape(-1)]
    raise ValueError(f"fastnn.onnx.load: {node.op_type} node '{node.name}' mixes a shape with a tensor")


def gather(b, node):
    data, idx = _get(b, node.input[0]), _get(b, node.input[1])
    axis = int(_attrs(node).get("axis", 0))
    if isinstance(data, Sym) and isinstance(idx, np.ndarray):
        items = [data.items[int(i)] for i in idx.reshape(-1)]
        b.env[node.output[0]] = Sym(items, scalar=idx.ndim == 0)
    elif isinstance(data, np.ndarray) and isinstance(idx, np.ndarray):
        b.consts[node.output[0]] = np.take(data, idx, axis=axis)
    elif isinstance(data, np.ndarray) and isinstance(idx, V) and axis == 0 and data.ndim == 2:
        embedding_gather(b, node, data, idx)
    elif isinstance(data, V) and isinstance(idx, np.ndarray) and idx.ndim == 0:
        key = (slice(None),) * (axis % data.value.ndim) + (int(idx),)
        b.env[node.output[0]] = b.call("getitem", [data, key], hint=node.name)
    elif isinstance(data, V) and isinstance(idx, np.ndarray) and idx.ndim == 1:
        key = (slice(None),) * (axis % data.value.ndim) + ([int(i) for i in idx],)
        b.env[node.output[0]] = b.call("getitem", [data, key], hint=node.name)
    else:
        raise ValueError(f"fastnn.onnx.load: Gather node '{node.name}' gathers a computed tensor by computed "
                         f"indices, which fastnn does not import")


def unsqueeze(b, node):
    x, axes = _get(b, node.input[0]), _const(b, node, 1, "axes")
    if axes is None:
        axes = np.asarray(_attrs(node)["axes"])
    if isinstance(x, Sym):
        b.env[node.output[0]] = Sym(x.items)
    elif isinstance(x, np.ndarray):
        b.consts[node.output[0]] = np.expand_dims(x, tuple(int(a) for a in axes.reshape(-1)))
    else:
        nd = x.value.ndim + axes.size
        for a in sorted(int(a) % nd for a in axes.reshape(-1)):
            x = b.call("unsqueeze", [x, a], hint=node.name)
        b.env[node.output[0]] = x


def squeeze(b, node):
    x, axes = _get(b, node.input[0]), _const(b, node, 1, "axes")
    if isinstance(x, np.ndarray):
        b.consts[node.output[0]] = np.squeeze(x, None if axes is None else tuple(int(a) for a in axes))
        return
    if isinstance(x, Sym):
        b.env[node.output[0]] = Sym(x.items, scalar=True)
        return
    axes = [k for k, s in enumerate(x.value.shape) if s == 1] if axes is None else \
        [int(a) % x.value.ndim for a in axes.reshape(-1)]
    for a in sorted(axes, reverse=True):
        x = b.call("squeeze", [x, a], hint=node.name)
    b.env[node.output[0]] = x


def concat(b, node):
    parts = [_get(b, n) for n in node.input]
    axis = int(_attrs(node)["axis"])
    if any(isinstance(p, Sym) for p in parts):
        b.env[node.output[0]] = Sym([i for p in parts for i in _sym_items(p, node)])
    elif all(isinstance(p, np.ndarray) for p in parts):
        b.consts[node.output[0]] = np.concatenate(parts, axis=axis)
    else:
        b.env[node.output[0]] = b.call("cat", [[_tensor(b, p) for p in parts], axis], hint=node.name)


def reshape(b, node):
    x, target = _get(b, node.input[0]), _get(b, node.input[1])
    items = _sym_items(target, node)
    if isinstance(x, np.ndarray):
        if isinstance(b.origin.get(node.input[0]), str):
            b.origin[("R", node.output[0])] = b.origin[node.input[0]]
        shp = [x.shape[k] if (not isinstance(s, DimRef) and s == 0) else s for k, s in enumerate(items)]
        b.consts[node.output[0]] = x.reshape(shp)
        return
    shape = tuple(DimRef(x.ref.node, x.ref.path, k) if (not isinstance(s, DimRef) and s == 0) else s
                  for k, s in enumerate(items))
    b.env[node.output[0]] = b.call("reshape", [x, shape], hint=node.name)


def transpose(b, node):
    x = _get(b, node.input[0])
    perm = _attrs(node).get("perm")
    if isinstance(x, np.ndarray):
        b.consts[node.output[0]] = np.transpose(x, perm)
        if x.ndim == 2 and isinstance(b.origin.get(node.input[0]), str):
            b.origin[("T", node.output[0])] = b.origin[node.input[0]]
        return
    perm = list(reversed(range(x.value.ndim))) if perm is None else list(perm)
    b.env[node.output[0]] = b.call("permute", [x, tuple(perm)], hint=node.name)


def flatten(b, node):
    x = _get(b, node.input[0])
    axis = int(_attrs(node).get("axis", 1)) % max(x.value.ndim, 1)
    if axis == 0:
        b.env[node.output[0]] = b.call("reshape", [x, (1, -1)], hint=node.name)
        return
    if axis > 1:
        x = b.call("flatten", [x, 0, axis - 1], hint=node.name)
    b.env[node.output[0]] = b.call("flatten", [x, 1, -1], hint=node.name)


def slice_(b, node):
    x = _get(b, node.input[0])
    starts, ends = (_bounds(b, node, k, what) for k, what in ((1, "starts"), (2, "ends")))
    axes, steps = _const(b, node, 3, "axes"), _const(b, node, 4, "steps")
    nd = len(x.items) if isinstance(x, Sym) else np.ndim(x) if isinstance(x, np.ndarray) else x.value.ndim
    axes = list(range(len(starts))) if axes is None else [int(a) % nd for a in axes]
    steps = [1] * len(starts) if steps is None else [int(s) for s in steps]
    key = [slice(None)] * nd
    for a, s, e, st in zip(axes, starts, ends, steps):
        key[a] = slice(_bound(s, st, start=True), _bound(e, st, start=False), st)
    name = b.origin.get(node.input[0])
    run_time = any(isinstance(v, DimRef) for k in key for v in (k.start, k.stop))
    if isinstance(x, Sym):
        if run_time:
            raise ValueError(f"fastnn.onnx.load: Slice node '{node.name}' slices a shape by a run-time size")
        b.env[node.output[0]] = Sym(x.items[key[0]])
    elif isinstance(x, np.ndarray) and x.dtype.kind == "f" and isinstance(name, str) and (run_time or (
            name.split(".")[-1] not in ("weight", "bias") and _free_name(b, name))):
        # a slice of a free parameter (MultiheadAttention's in_proj_weight[:E]): trainable, keeps its name
        b.env[node.output[0]] = b.call("getitem", [b.parameter(name, x), tuple(key)], hint=node.name)
    elif isinstance(x, np.ndarray):
        b.consts[node.output[0]] = x[tuple(key)]
    else:
        b.env[node.output[0]] = b.call("getitem", [x, tuple(key)], hint=node.name)


def _bounds(b, node, k, what):
    """Slice starts/ends: constants, or a shape value whose entries may be sizes read at run time (DimRef)."""
    v = _get(b, node.input[k])
    if isinstance(v, Sym):
        return list(v.items)
    return [int(i) for i in np.asarray(_const(b, node, k, what)).reshape(-1)]


def _bound(v, step, start):
    if isinstance(v, DimRef):
        return v
    v = int(v)
    if v in (INT64_MAX, INT64_MIN) or (not start and ((step > 0 and v >= INT64_MAX // 2) or
                                                      (step < 0 and v <= INT64_MIN // 2))):
        return None
    return v


def constant_of_shape(b, node):
    target = _get(b, node.input[0])
    a = _attrs(node)
    from onnx import numpy_helper
    value = numpy_helper.to_array(a["value"]) if "value" in a else np.zeros(1, np.float32)
    if isinstance(target, np.ndarray):
        b.consts[node.output[0]] = np.full(tuple(int(s) for s in target), value.reshape(-1)[0], value.dtype)
    elif float(value.reshape(-1)[0]) == 0.0:
        b.env[node.output[0]] = Zeros()
    else:
        raise ValueError(f"fastnn.onnx.load: ConstantOfShape node '{node.name}' fills a run-time shape with "
                         f"{value.reshape(-1)[0]}")


def _reduce(op):
    def imp(b, node):
        x = _get(b, node.input[0])
        a = _attrs(node)
        axes = _const(b, node, 1, "axes") if len(node.input) > 1 else None
        axes = a.get("axes") if axes is None else [int(v) for v in axes.reshape(-1)]
        keep = bool(a.get("keepdims", 1))
        if isinstance(x, np.ndarray):
            fn = {"sum": np.sum, "mean": np.mean, "amax": np.max}[op]
            b.consts[node.output[0]] = fn(x, axis=None if axes is None else tuple(axes), keepdims=keep)
            return
        dim = None if not axes else tuple(int(v) for v in axes)
        b.env[node.output[0]] = b.call(op, [x, dim, keep], hint=node.name)
    return imp


def expand(b, node):
    x, target = _get(b, node.input[0]), _get(b, node.input[1])
    items = _sym_items(target, node)
    if isinstance(x, np.ndarray) and not any(isinstance(i, DimRef) for i in items):
        b.consts[node.output[0]] = x * np.ones(items, x.dtype)
        return
    x = _tensor(b, x)
    lead = len(items) - x.value.ndim
    # ONNX broadcasts (1 keeps the input's size); fastnn's expand keeps a size with -1
    shape = tuple(-1 if (k >= lead and not isinstance(s, DimRef) and s == 1) else s for k, s in enumerate(items))
    b.env[node.output[0]] = b.call("expand", [x, shape], hint=node.name)


def where(b, node):
    """Where(x > t, x, v) with constants t and v (what Threshold exports) -> Threshold(t, v); any other Where ->
    the "where" op (the gradient goes to the branch each entry takes)."""
    cond = b.producers.get(node.input[0])
    t = _get(b, cond.input[1]) if cond is not None and cond.op_type == "Greater" else None
    v = _get(b, node.input[2])
    if cond is not None and cond.op_type == "Greater" and cond.input[0] == node.input[1] and \
            isinstance(t, np.ndarray) and t.size == 1 and isinstance(v, np.ndarray) and v.size == 1 and \
            isinstance(_get(b, node.input[1]), V):
        _module(b, node, nn.Threshold(float(t.reshape(-1)[0]), float(v.reshape(-1)[0])),
                b.path_for(None, None, "threshold"), [_get(b, node.input[1])])
        return
    c, x, y = (_get(b, n) for n in node.input)
    if any(isinstance(a, Sym) for a in (c, x, y)):
        raise ValueError(f"fastnn.onnx.load: Where node '{node.name}' selects between run-time shapes")
    if all(isinstance(a, np.ndarray) for a in (c, x, y)):
        b.consts[node.output[0]] = np.where(c, x, y)
        return
    b.env[node.output[0]] = b.call("where", [_tensor(b, c)] + [_operand(b, node, a, k) for k, a in ((1, x), (2, y))],
                                   hint=node.name)


def max_(b, node):
    """Max of one or more inputs -> a chain of the "maximum" op (folded when all are constants)."""
    vals = [_get(b, n) for n in node.input]
    if all(isinstance(a, np.ndarray) for a in vals):
        b.consts[node.output[0]] = np.asarray(np.maximum.reduce(np.broadcast_arrays(*vals)))
        return
    if any(isinstance(a, Sym) for a in vals):
        raise ValueError(f"fastnn.onnx.load: Max node '{node.name}' computes with a run-time shape")
    out = _operand(b, node, vals[0], 0)
    for k, a in enumerate(vals[1:], 1):
        out = b.call("maximum", [_tensor(b, out) if not isinstance(out, (V, float)) else out,
                                 _operand(b, node, a, k)], hint=node.name)
    if not isinstance(out, V):
        out = _tensor(b, np.asarray(out))
    b.env[node.output[0]] = out


def not_(b, node):
    x = _get(b, node.input[0])
    if isinstance(x, np.ndarray):
        b.consts[node.output[0]] = np.logical_not(x)
        return
    b.env[node.output[0]] = b.call("logical_not", [_tensor(b, x)], hint=node.name)


def range_(b, node):
    """Range(start, limit, delta) of integer scalars, constants or sizes read from a shape at run time (the causal
    mask of an exported scaled_dot_product_attention) -> the "arange" op; folded when all are constants."""
    vals = [_get(b, n) for n in node.input]
    items = []
    for v in vals:
        if isinstance(v, Sym) and len(v.items) == 1:
            items.append(v.items[0])
        elif isinstance(v, np.ndarray) and v.size == 1 and v.dtype.kind in "iu":
            items.append(int(v.reshape(-1)[0]))
        else:
            raise ValueError(f"fastnn.onnx.load: Range node '{node.name}' needs integer scalar bounds")
    if not any(isinstance(i, DimRef) for i in items):
        b.consts[node.output[0]] = np.arange(*items, dtype=np.int64)
        return
    b.env[node.output[0]] = b.call("arange", items, hint=node.name)


def cast(b, node):
    """Cast -> the "cast" op (float to float passes the gradient back); folded on constants; a shape cast to
    an integer type stays a shape."""
    x = _get(b, node.input[0])
    from onnx import helper
    dtype = helper.tensor_dtype_to_np_dtype(int(_attrs(node)["to"]))
    if isinstance(x, np.ndarray):
        b.consts[node.output[0]] = x.astype(dtype)
    elif isinstance(x, Sym) and dtype.kind in "iu":
        b.env[node.output[0]] = x
    elif isinstance(x, Sym):
        raise ValueError(f"fastnn.onnx.load: Cast node '{node.name}' casts a run-time shape to {dtype}")
    else:
        b.env[node.output[0]] = b.call("cast", [x, dtype.name], hint=node.name)


def _only_consumer(b, name, op_type):
    users = b.consumers.get(name, [])
    return users[0] if len(users) == 1 and users[0].op_type == op_type else None


def _scalar_input(b, node, value):
    """Whether one input of `node` is the constant `value` (a scalar)."""
    for n in node.input:
        c = b.consts.get(n)
        src = b.producers.get(n)
        if c is None and src is not None and src.op_type == "Constant":  # a Constant node further on
            scratch = {}
            constant(_Scratch(scratch), src)
            c = scratch.get(n)
        if c is not None and c.size == 1 and abs(float(c.reshape(-1)[0]) - value) < 1e-6:
            return True
    return False


class _Scratch:
    """Somewhere for constant() to put a Constant node's value without importing it yet."""

    def __init__(self, consts):
        self.consts = consts


def erf(b, node):
    """The exact GELU x·½(1 + erf(x/√2)) that torch (opset < 20) and fastnn write: Div(x, √2) or Mul(x, 1/√2),
    Erf, Add 1, Mul by x, Mul by ½ -> gelu(x). fastnn has no erf of its own."""
    scaled = b.producers.get(node.input[0])
    x_name = None
    if scaled is not None and scaled.op_type in ("Div", "Mul"):
        x_name = scaled.input[0] if scaled.input[0] in b.env else scaled.input[1]
        ok = _scalar_input(b, scaled, 2 ** 0.5 if scaled.op_type == "Div" else 2 ** -0.5)
    add = _only_consumer(b, node.output[0], "Add")
    times_x = add and _only_consumer(b, add.output[0], "Mul")
    half = times_x and _only_consumer(b, times_x.output[0], "Mul")
    if not (x_name and ok and add and _scalar_input(b, add, 1.0) and times_x and x_name in times_x.input and half
            and _scalar_input(b, half, 0.5)):
        raise ValueError(f"fastnn.onnx.load: Erf node '{node.name}' is not part of an exact GELU "
                         f"(x/√2 -> Erf -> +1 -> ·x -> ·½); fastnn has no erf op")
    for n in (add, times_x, half):
        b.skip.add(tuple(n.output))
    b.env[half.output[0]] = b.call("gelu", [_get(b, x_name)], {"approximate": "none"}, hint=node.name)


def _consume_lazy(fn):
    """Wraps an importer so that ONNX recurrent Y values it reads are made first."""
    def imp(b, node):
        for n in node.input:
            if n in b.lazy:
                y_of(b, n)
        return fn(b, node)
    return imp


IMPORTERS = {
    "Conv": conv, "Gemm": gemm, "MatMul": matmul, "BatchNormalization": batch_norm,
    "LayerNormalization": layer_norm, "MaxPool": _pool("max"), "AveragePool": _pool("avg"),
    "GlobalAveragePool": global_avg_pool,
    "Add": _binary("add"), "Sub": _binary("sub"), "Mul": _binary("mul"), "Div": _binary("div"),
    "Pow": _binary("pow"),
    "Relu": _unary("relu"), "Sigmoid": _unary("sigmoid"), "Tanh": _unary("tanh"), "LeakyRelu": _unary("leaky_relu"),
    "Elu": _unary("elu"), "Softplus": _unary("softplus"), "Gelu": _unary("gelu"), "Neg": _unary("neg"),
    "Exp": _unary("exp"), "Log": _unary("log"), "Sqrt": _unary("sqrt"), "Abs": _unary("abs"),
    "Softmax": _unary("softmax"), "LogSoftmax": _unary("log_softmax"),
    "Selu": _module_op(lambda a, n: (nn.SELU(), "selu")), "Softsign": _module_op(lambda a, n: (nn.Softsign(), "softsign")),
    "HardSigmoid": _module_op(_hardsigmoid), "Clip": clip,
    "PRelu": prelu, "LRN": lrn, "InstanceNormalization": instance_norm,
    "Dropout": identity, "Identity": identity, "Constant": constant, "Shape": shape, "Gather": gather,
    "Unsqueeze": unsqueeze, "Squeeze": squeeze, "Concat": concat, "Reshape": reshape, "Transpose": transpose,
    "Flatten": flatten, "Slice": slice_, "ConstantOfShape": constant_of_shape,
    "ReduceSum": _reduce("sum"), "ReduceMean": _reduce("mean"), "ReduceMax": _reduce("amax"), "Expand": expand,
    "Where": where,
    "Max": max_, "Not": not_, "Cast": cast, "Range": range_,
    "Greater": _binary("gt"), "GreaterOrEqual": _binary("ge"), "Less": _binary("lt"), "LessOrEqual": _binary("le"),
    "Equal": _binary("eq"), "Erf": erf,
}
IMPORTERS = {k: (fn if k == "Constant" else _consume_lazy(fn)) for k, fn in IMPORTERS.items()}
IMPORTERS["LSTM"] = IMPORTERS["GRU"] = IMPORTERS["RNN"] = _consume_lazy(recurrent_stack)
IMPORTERS["Scan"] = _consume_lazy(make_scan(IMPORTERS))


def check_supported(proto, path):
    """ValueError listing every op of the file that has no importer (op type and node name)."""
    bad = [(n.op_type, n.name or "(unnamed)") for n in proto.graph.node
           if n.op_type not in IMPORTERS or n.domain not in ("", "ai.onnx")]
    if bad:
        listed = ", ".join(f"{t} (node '{name}')" for t, name in bad[:20])
        raise ValueError(f"fastnn.onnx.load: {path} uses ops fastnn cannot import: {listed}"
                         + (f" and {len(bad) - 20} more" if len(bad) > 20 else ""))
