"""ONNX for fastnn's layers (the "module" nodes of a GraphDef). Each entry takes (builder, module, prefix,
args, out): prefix is the layer's dotted name plus "." (its parameters become initializers named
prefix + "weight"...), args the T values it is called on, out its example output; it returns the ONNX name
(or the structure of names, for recurrent layers) of the output.

The mapping (eval semantics):
    Linear -> Gemm (2-D input) or MatMul + Add;  Conv1d/Conv2d -> Conv;  MaxPool1d/2d -> MaxPool;
    AvgPool1d/2d -> AveragePool;  AdaptiveAvgPool1d/2d -> GlobalAveragePool (output size 1) or AveragePool
    (sizes that divide);  BatchNorm1d/2d -> BatchNormalization with the running statistics;
    LayerNorm -> LayerNormalization;  GroupNorm -> Reshape (N, groups, -1), InstanceNormalization, Reshape back,
    Mul/Add by the per-channel weight and bias;  Dropout, Dropout2d, Identity -> Identity;  Flatten, Unflatten, Reshape ->
    Reshape;  containers (Sequential, Residual, Parallel, Add/Mul/Concat/Stack, ModuleList in a traced forward)
    are walked through their graphs;
    Embedding -> Gather;  EmbeddingBag (2-D ids) -> Gather + ReduceSum/ReduceMean, with padding_idx and
    per_sample_weights as weights (Equal/Not/Cast, Mul) and the mean divided by the count of real entries;
    PReLU -> PRelu (slope reshaped to (C, 1, ...));  ReLU -> Relu, or Clip when capped;  ReLU6 -> Clip;
    LeakyReLU -> LeakyRelu;  ELU -> Elu;  SELU -> Selu;  Sigmoid, Tanh, Softsign;  Hardsigmoid -> HardSigmoid
    (alpha 0.2, beta 0.5: fastnn's Keras form);  Softplus -> Softplus (divided by beta);  SiLU -> x·Sigmoid(x);
    GELU -> 0.5·x·(1 + Erf(x/√2)), or the tanh form in Mul/Add/Tanh (opset-17 ops);
    Threshold -> Where(x > threshold, x, value);  Softmax/LogSoftmax -> Softmax/LogSoftmax on `dim`;
    Maxout -> its Linear, Reshape to (N, out, pieces), ReduceMax;  LocalResponseNorm (odd size) -> LRN;
    Interaction -> dot: MatMul(x, xᵀ), flattened, Gather of the upper-triangle pairs; concat: Reshape;
    mean/max: ReduceMean/ReduceMax over the fields;  WeightNorm -> w = g·v/‖v‖ in Mul/Div/Sqrt/ReduceSum on
    the initializers weight_g and weight_v, then the wrapped layer's ops on w;
    AdditiveAttention -> Tanh(keys·Wkᵀ + b + (query·Wqᵀ)[:, None]) · v, Where for the mask, Softmax over T,
    MatMul of the weights with the keys (outputs context, weights);  RNN/LSTM/GRU -> see export_recurrent.py;
    RNNCell/LSTMCell/GRUCell -> Gemm and element-wise ops, see export_cell.py;  MultiheadAttention and the
    Transformer layers are traced: their scaled_dot_product_attention -> export_sdpa.py.
    Seq2Seq -> export_seq2seq.py (the teacher-forced decoder as a Scan: the target length is dynamic).
    Not mapped (ExportError naming the layer): GatedFeedbackRNN, and any layer not listed here.
"""
import numpy as np

from .. import nn
from .export_functional import ExportError, flatten_shape, gelu, linear, reduce, silu_op, softplus_op
from .export_attention import attention_keys, attention_step
from .export_cell import cell
from .export_recurrent import recurrent
from .export_seq2seq import seq2seq


def _param(b, module, prefix, name):
    return b.param(module, prefix, name)


def _linear(b, m, prefix, args, out):
    return linear(b, args[0], _param(b, m, prefix, "weight"), _param(b, m, prefix, "bias"), prefix + "linear")


def _conv(b, m, prefix, args, out):
    spec = m.describe().attrs
    pads = list(spec["padding"]) + [p + e for p, e in zip(spec["padding"], spec["extra_padding"])]
    ins = [args[0].name, _param(b, m, prefix, "weight")]
    if m.bias is not None:
        ins.append(_param(b, m, prefix, "bias"))
    return b.op("Conv", ins, prefix + "conv", kernel_shape=list(spec["kernel_size"]), strides=list(spec["stride"]),
                pads=pads, dilations=list(spec["dilation"]), group=int(spec["groups"]))


def _max_pool(b, m, prefix, args, out):
    spec = m.describe().attrs
    if spec["return_indices"]:
        raise ExportError(f"ONNX export: {m!r} returns indices; export it with return_indices=False")
    return b.op("MaxPool", [args[0].name], prefix + "maxpool", kernel_shape=list(spec["kernel_size"]),
                strides=list(spec["stride"]), pads=list(spec["padding"]) * 2, dilations=list(spec["dilation"]),
                ceil_mode=int(spec["ceil_mode"]))


def _avg_pool(b, m, prefix, args, out):
    spec = m.describe().attrs
    if spec["divisor_override"] is not None:
        raise ExportError(f"ONNX export: {m!r} has divisor_override, which ONNX AveragePool cannot express")
    return b.op("AveragePool", [args[0].name], prefix + "avgpool", kernel_shape=list(spec["kernel_size"]),
                strides=list(spec["stride"]), pads=list(spec["padding"]) * 2, ceil_mode=int(spec["ceil_mode"]),
                count_include_pad=int(spec["count_include_pad"]))


def _adaptive_avg_pool(b, m, prefix, args, out):
    x = args[0]
    ins, outs = x.value.shape[2:], out.shape[2:]
    if all(o == 1 for o in outs):
        return b.op("GlobalAveragePool", [x.name], prefix + "gap")
    if any(i % o for i, o in zip(ins, outs)):
        raise ExportError(f"ONNX export: {m!r} maps input size {tuple(ins)} to {tuple(outs)}, which is not a "
                          f"whole number of windows; ONNX has no adaptive pooling")
    k = [i // o for i, o in zip(ins, outs)]
    return b.op("AveragePool", [x.name], prefix + "avgpool", kernel_shape=k, strides=k)


def _batch_norm(b, m, prefix, args, out):
    if m.running_mean is None:
        raise ExportError(f"ONNX export: {m!r} has track_running_stats=False (eval uses batch statistics), which "
                          f"ONNX BatchNormalization cannot express")
    dtype = m.running_mean.dtype
    c = m.num_features
    scale = _param(b, m, prefix, "weight") or b.const(np.ones(c, dtype), prefix + "ones")
    bias = _param(b, m, prefix, "bias") or b.const(np.zeros(c, dtype), prefix + "zeros")
    ins = [args[0].name, scale, bias, _param(b, m, prefix, "running_mean"), _param(b, m, prefix, "running_var")]
    return b.op("BatchNormalization", ins, prefix + "batchnorm", epsilon=float(m.eps))


def _layer_norm(b, m, prefix, args, out):
    shape = m.normalized_shape
    scale = _param(b, m, prefix, "weight") or b.const(np.ones(shape, out.dtype), prefix + "ones")
    ins = [args[0].name, scale] + ([_param(b, m, prefix, "bias")] if m.bias is not None else [])
    return b.op("LayerNormalization", ins, prefix + "layernorm", axis=-len(shape), epsilon=float(m.eps))


def _group_norm(b, m, prefix, args, out):
    """InstanceNormalization over (N, groups, rest), then the per-channel affine transform."""
    x, dtype, g = args[0], out.dtype, m.num_groups
    grouped = b.op("Reshape", [x.name, b.ints([0, g, -1])], prefix + "grouped")
    normed = b.op("InstanceNormalization", [grouped, b.const(np.ones(g, dtype), prefix + "ones"),
                                            b.const(np.zeros(g, dtype), prefix + "zeros")], prefix + "instnorm",
                  epsilon=float(m.eps))
    y = b.op("Reshape", [normed, b.op("Shape", [x.name], prefix + "shape")], prefix + "normed")
    if m.weight is None:
        return y
    per_channel = b.ints([m.num_channels] + [1] * (x.value.ndim - 2))
    w = b.op("Reshape", [_param(b, m, prefix, "weight"), per_channel], prefix + "scale")
    bias = b.op("Reshape", [_param(b, m, prefix, "bias"), per_channel], prefix + "shift")
    return b.op("Add", [b.op("Mul", [y, w], prefix + "scaled"), bias], prefix + "groupnorm")


def _identity(b, m, prefix, args, out):
    return b.op("Identity", [args[0].name], prefix + "identity")


def _flatten(b, m, prefix, args, out):
    return b.op("Reshape", [args[0].name, flatten_shape(b, args[0], m.start_dim, m.end_dim, prefix + "flatten")],
                prefix + "flatten")


def _reshape(b, m, prefix, args, out):
    """(N, ...) -> (N, *shape): ONNX Reshape's 0 keeps the batch size."""
    return b.op("Reshape", [args[0].name, b.ints([0] + list(m.shape))], prefix + "reshape")


def _unflatten(b, m, prefix, args, out):
    x = args[0]
    nd = x.value.ndim
    dim = m.dim % nd
    parts = []
    if dim > 0:
        parts.append(b.shape_slice(x.name, 0, dim))
    parts.append(b.ints(list(m.unflattened_size)))
    if dim + 1 < nd:
        parts.append(b.shape_slice(x.name, dim + 1, nd))
    shape = parts[0] if len(parts) == 1 else b.op("Concat", parts, prefix + "shape", axis=0)
    return b.op("Reshape", [x.name, shape], prefix + "unflatten")


def _embedding(b, m, prefix, args, out):
    return b.op("Gather", [_param(b, m, prefix, "weight"), args[0].name], prefix + "embedding", axis=0)


def _embedding_bag(b, m, prefix, args, out):
    ids = args[0]
    offsets = args[1] if len(args) > 1 else None
    psw = args[2] if len(args) > 2 else None
    if ids.value.ndim != 2 or offsets is not None:
        raise ExportError(f"ONNX export: {m!r} exports for 2-D ids (fixed-size bags) only, not 1-D ids with offsets")
    rows = b.op("Gather", [_param(b, m, prefix, "weight"), ids.name], prefix + "gather", axis=0)
    op_type = {"sum": "ReduceSum", "mean": "ReduceMean"}[m.mode]
    if psw is None and m.padding_idx is None:
        return reduce(b, op_type, rows, [1], False, prefix + "embedding_bag")
    dtype = out.dtype
    w = None if psw is None else psw.name
    keep = None
    if m.padding_idx is not None:  # padding entries weigh 0 and do not count in the mean
        pad = b.const(np.asarray(m.padding_idx, ids.value.dtype), prefix + "pad")
        keep = b.op("Cast", [b.op("Not", [b.op("Equal", [ids.name, pad], prefix + "is_pad")], prefix + "keep")],
                    prefix + "keep_f", to=b.helper.np_dtype_to_tensor_dtype(dtype))
        w = keep if w is None else b.op("Mul", [w, keep], prefix + "weights")
    weighted = b.op("Mul", [rows, b.op("Unsqueeze", [w, b.ints([2])], prefix + "w3")], prefix + "weighted")
    total = reduce(b, "ReduceSum", weighted, [1], False, prefix + "bag_sum")
    if m.mode == "sum":
        return total
    count = reduce(b, "ReduceSum", keep, [1], True, prefix + "count")
    return b.op("Div", [total, b.op("Max", [count, b.scalar(1.0, dtype)], prefix + "count1")], prefix + "embedding_bag")


def _maxout(b, m, prefix, args, out):
    x = args[0]
    z = linear(b, x, _param(b, m.linear, prefix + "linear.", "weight"), _param(b, m.linear, prefix + "linear.", "bias"),
               prefix + "linear")
    shape = ([0] if x.value.ndim == 2 else []) + [m.out_features, m.pieces]
    groups = b.op("Reshape", [z, b.ints(shape)], prefix + "groups")
    return reduce(b, "ReduceMax", groups, [len(shape) - 1], False, prefix + "maxout")


def _interaction(b, m, prefix, args, out):
    x = args[0]
    n, f, d = x.value.shape
    if m.mode == "concat":
        return b.op("Reshape", [x.name, b.ints([0, -1])], prefix + "interaction")
    if m.mode in ("mean", "max"):
        return reduce(b, "ReduceMean" if m.mode == "mean" else "ReduceMax", x.name, [1], False,
                      prefix + "interaction")
    xt = b.op("Transpose", [x.name], prefix + "xT", perm=[0, 2, 1])
    gram = b.op("Reshape", [b.op("MatMul", [x.name, xt], prefix + "gram"), b.ints([0, -1])], prefix + "gram_flat")
    i, j = np.triu_indices(f, k=0 if m.self_interaction else 1)
    return b.op("Gather", [gram, b.const((i * f + j).astype(np.int64), "pairs")], prefix + "interaction", axis=1)


def _lrn(b, m, prefix, args, out):
    if m.size % 2 == 0:
        raise ExportError(f"ONNX export: {m!r} has an even size; ONNX LRN centres its window differently from "
                          f"PyTorch's for even sizes (odd sizes export)")
    return b.op("LRN", [args[0].name], prefix + "lrn", size=int(m.size), alpha=float(m.alpha), beta=float(m.beta),
                bias=float(m.k))


def _prelu(b, m, prefix, args, out):
    x = args[0]
    slope = _param(b, m, prefix, "weight")
    if m.num_parameters > 1 and x.value.ndim > 2:
        slope = b.op("Reshape", [slope, b.ints([m.num_parameters] + [1] * (x.value.ndim - 2))], prefix + "slope")
    return b.op("PRelu", [x.name, slope], prefix + "prelu")


def _activation(b, m, prefix, args, out):
    x, dtype, name = args[0].name, out.dtype, type(m).__name__
    hint = prefix + name.lower()
    if isinstance(m, nn.ReLU6):
        return b.op("Clip", [x, b.scalar(0.0, dtype), b.scalar(6.0, dtype)], hint)
    if isinstance(m, nn.ReLU):
        if m.max_value is None:
            return b.op("Relu", [x], hint)
        return b.op("Clip", [x, b.scalar(0.0, dtype), b.scalar(m.max_value, dtype)], hint)
    if isinstance(m, nn.LeakyReLU):
        y = b.op("LeakyRelu", [x], hint, alpha=float(m.negative_slope))
        if m.max_value is not None:
            y = b.op("Clip", [y, b.scalar(-np.inf, dtype), b.scalar(m.max_value, dtype)], hint + "_cap")
        return y
    if isinstance(m, nn.SELU):
        return b.op("Selu", [x], hint, alpha=float(m.alpha), gamma=float(m.scale))
    if isinstance(m, nn.ELU):
        return b.op("Elu", [x], hint, alpha=float(m.alpha))
    if isinstance(m, nn.Hardsigmoid):
        return b.op("HardSigmoid", [x], hint, alpha=0.2, beta=0.5)  # Keras form: clip(0.2x + 0.5, 0, 1)
    if isinstance(m, nn.Softplus):
        return softplus_op(b, x, float(m.beta), dtype, hint)
    if isinstance(m, nn.SiLU):
        return silu_op(b, x, hint)
    if isinstance(m, nn.GELU):
        return gelu(b, x, m.approximate, dtype, hint)
    if isinstance(m, nn.Threshold):
        keep = b.op("Greater", [x, b.scalar(m.threshold, dtype)], hint + "_keep")
        return b.op("Where", [keep, x, b.scalar(m.value, dtype)], hint)
    simple = {nn.Sigmoid: "Sigmoid", nn.Tanh: "Tanh", nn.Softsign: "Softsign"}
    for cls, op_type in simple.items():
        if isinstance(m, cls):
            return b.op(op_type, [x], hint)
    raise ExportError(f"ONNX export: activation {m!r} has no ONNX mapping")


def _softmax(b, m, prefix, args, out):
    op_type = "LogSoftmax" if isinstance(m, nn.LogSoftmax) else "Softmax"
    return b.op(op_type, [args[0].name], prefix + op_type.lower(), axis=int(m.dim) % max(out.ndim, 1))


def _weight_norm(b, m, prefix, args, out):
    inner = module_exporter(m.module)
    if inner is None:
        raise ExportError(f"ONNX export: {m!r} wraps a layer with no ONNX mapping")
    v, g = _param(b, m, prefix, "weight_v"), _param(b, m, prefix, "weight_g")
    nd = m.weight_v.data.ndim
    axes = [a for a in range(nd) if a != m.dim]
    sq = b.op("Mul", [v, v], prefix + "v2")
    norm = b.op("Sqrt", [reduce(b, "ReduceSum", sq, axes, m.dim is not None, prefix + "v2_sum")], prefix + "norm")
    w = b.op("Mul", [g, b.op("Div", [v, norm], prefix + "direction")], prefix + "weight")
    b.overrides[prefix + "module." + m.name] = w
    return inner(b, m.module, prefix + "module.", args, out)


def _additive_attention(b, m, prefix, args, out):
    query, keys = args[0], args[1]
    mask = args[2].name if len(args) > 2 and args[2] is not None else None
    proj = attention_keys(b, m, prefix, keys.name)
    return attention_step(b, m, prefix, proj, keys.name, query.name, mask, out[0].dtype)


# Checked in order (subclasses first).
MODULES = [
    (nn.Linear, _linear), (nn.Conv1d, _conv), (nn.Conv2d, _conv),
    (nn.MaxPool1d, _max_pool), (nn.MaxPool2d, _max_pool), (nn.AvgPool1d, _avg_pool), (nn.AvgPool2d, _avg_pool),
    (nn.AdaptiveAvgPool1d, _adaptive_avg_pool), (nn.AdaptiveAvgPool2d, _adaptive_avg_pool),
    (nn.BatchNorm1d, _batch_norm), (nn.BatchNorm2d, _batch_norm), (nn.LayerNorm, _layer_norm), (nn.GroupNorm, _group_norm),
    (nn.Dropout, _identity), (nn.Dropout2d, _identity), (nn.Identity, _identity),
    (nn.Flatten, _flatten), (nn.Unflatten, _unflatten), (nn.Reshape, _reshape), (nn.Embedding, _embedding),
    (nn.EmbeddingBag, _embedding_bag), (nn.PReLU, _prelu),
    (nn.LogSoftmax, _softmax), (nn.Softmax, _softmax),
    (nn.ReLU, _activation), (nn.ReLU6, _activation), (nn.LeakyReLU, _activation), (nn.ELU, _activation),
    (nn.SELU, _activation), (nn.Sigmoid, _activation), (nn.Hardsigmoid, _activation), (nn.Tanh, _activation),
    (nn.Softplus, _activation), (nn.Softsign, _activation), (nn.SiLU, _activation), (nn.GELU, _activation),
    (nn.Threshold, _activation),
    (nn.Maxout, _maxout), (nn.Interaction, _interaction), (nn.LocalResponseNorm, _lrn),
    (nn.WeightNorm, _weight_norm), (nn.AdditiveAttention, _additive_attention),
    (nn.Seq2Seq, seq2seq), (nn.LSTM, recurrent), (nn.GRU, recurrent), (nn.RNN, recurrent),
    (nn.RNNCell, cell), (nn.LSTMCell, cell), (nn.GRUCell, cell),
]


def module_exporter(m):
    """The exporter of a leaf layer (exact class first), or None."""
    for cls, fn in MODULES:
        if type(m) is cls:
            return fn
    for cls, fn in MODULES:
        if isinstance(m, cls):
            return fn
    return None
