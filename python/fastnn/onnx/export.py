"""fastnn.onnx.export: a fastnn model as an ONNX file, in eval semantics.

The exporter walks the model's graph, the GraphDef that backward walks too (fastnn/nn/graph_def.py): a
Graph's eval graph, the graph a traced module traces to on the example input, or a Sequential's chain of
children. Module nodes of built-in layers map to ONNX ops (export_modules.py), call nodes of functional
ops map through export_functional.py, and a traced, Sequential or Graph sub-module is walked recursively
(its layers keep their dotted names). While walking, every node also runs on the example input built from
`input_shape`, so ranks and sizes are exact; sizes read from a shape at run time (x.shape[0]) become Shape
ops, so the batch axis stays dynamic. Anything without a mapping raises ExportError (a ValueError) naming
the layer or op, before any file is written.
"""

import numpy as np

from .. import nn
from ..nn.function_ops import OPS
from ..nn.graph_def import DimRef, Ref
from ._require import require_onnx
from .builder import OnnxBuilder
from .export_functional import FUNCTIONAL, ExportError
from .export_modules import module_exporter
from .export_sdpa import ATTENTION_OPS
from .values import D, T, pick, tensors_of

__all__ = ["export", "ExportError"]

DEFAULT_OPSET = 17


def _example_inputs(input_shape, dtype):
    shapes = [input_shape] if (len(input_shape) == 0 or isinstance(input_shape[0], (int, np.integer))) \
        else list(input_shape)
    dtypes = dtype if isinstance(dtype, (list, tuple)) else [dtype] * len(shapes)
    if len(dtypes) != len(shapes):
        raise ValueError(f"fastnn.onnx.export: {len(shapes)} input shapes but {len(dtypes)} dtypes")
    rng = np.random.default_rng(0)
    out = []
    for shape, dt in zip(shapes, dtypes):
        dt = np.dtype(dt)
        shape = tuple(int(s) for s in shape)
        out.append(rng.standard_normal(shape).astype(dt) if dt.kind == "f" else
                   np.ones(shape, dt) if dt.kind == "b" else np.zeros(shape, dt))  # masks: all True
    return out


class _Walker:
    def __init__(self, builder):
        self.b = builder

    # -- one module, called on T values ------------------------------------------------------------
    def module(self, m, prefix, args):
        fn = module_exporter(m)
        if fn is not None:
            out = m(*[_value(a) for a in args])
            names = fn(self.b, m, prefix, args, out)
            return _zip(names, out)
        if isinstance(m, nn.Sequential):
            x = args
            for name, child in m.named_children():
                x = (self.module(child, prefix + name + ".", list(x)),)
            return x[0]
        if isinstance(m, nn.Graph):
            return self.graph(m, m.graph, prefix, args)
        if type(m).traced:
            g = nn.Graph.from_module(m, *[_value(a) for a in args])
            return self.graph(g, g.graph, prefix, args)
        raise ExportError(f"ONNX export: no ONNX mapping for {type(m).__name__} (layer '{prefix[:-1] or 'model'}': "
                          f"{m!r:.80}); supported layers are listed in fastnn/onnx/export_modules.py")

    # -- a GraphDef whose targets live in `owner` ----------------------------------------------------
    def graph(self, owner, gdef, prefix, inputs):
        env = []
        for node in gdef.nodes:
            if node.op == "input":
                env.append(inputs[node.target])
            elif node.op == "module":
                args = [self._arg(a, env) for a in node.args]
                if node.kwargs:
                    raise ExportError(f"ONNX export: layer '{prefix}{node.target}' is called with keyword "
                                      f"arguments {sorted(node.kwargs)}, which export does not map")
                env.append(self.module(owner.get_submodule(node.target), prefix + node.target + ".", args))
            elif node.op == "call":
                fn = FUNCTIONAL.get(node.target) or ATTENTION_OPS.get(node.target)
                if fn is None:
                    raise ExportError(f"ONNX export: no ONNX mapping for the functional op '{node.target}' (node "
                                      f"'{prefix}{node.name}')")
                args = [self._arg(a, env) for a in node.args]
                kwargs = {k: self._arg(v, env) for k, v in node.kwargs.items()}
                out, _ = OPS[node.target].forward(*_values(args), **_values(kwargs))
                name = fn(self.b, _Named(prefix + node.name, node.target), args, kwargs, np.asarray(out))
                env.append(T(name, np.asarray(out)))
            elif node.op == "attr":
                obj = _attr(owner, node.target)
                data = obj.data if isinstance(obj, nn.Parameter) else np.asarray(obj)
                env.append(T(self.b.initializer(prefix + node.target, data), data))
            else:  # constant
                data = np.asarray(gdef.constants[node.target])
                env.append(T(self.b.const(data, "constant"), data))
        return _resolve(gdef.outputs, env, self.b)

    def _arg(self, a, env):
        if isinstance(a, Ref):
            return pick(env[a.node], a.path)
        if isinstance(a, DimRef):
            t = pick(env[a.node], a.path)
            axis = a.axis % t.value.ndim
            return D(self.b.shape_slice(t.name, axis, axis + 1), int(t.value.shape[axis]))
        if isinstance(a, tuple):
            return tuple(self._arg(x, env) for x in a)
        if isinstance(a, list):
            return [self._arg(x, env) for x in a]
        if isinstance(a, dict):
            return {k: self._arg(v, env) for k, v in a.items()}
        if isinstance(a, slice):
            parts = [self._arg(p, env) for p in (a.start, a.stop, a.step)]
            if isinstance(parts[2], D):
                raise ExportError("ONNX export: a slice step read from a shape at run time is not supported")
            return slice(*parts)  # start/stop may be D (x[:, :h.shape[1]]): Slice reads them at run time
        return a


class _Named:
    __slots__ = ("name", "target")

    def __init__(self, name, target):
        self.name, self.target = name, target


def _attr(owner, dotted):
    *path, last = dotted.split(".")
    m = owner.get_submodule(".".join(path)) if path else owner
    return getattr(m, last)


def _value(x):
    return x.value if isinstance(x, (T, D)) else _values(x)


def _values(x):
    if isinstance(x, (T, D)):
        return x.value
    if isinstance(x, tuple):
        return tuple(_values(v) for v in x)
    if isinstance(x, list):
        return [_values(v) for v in x]
    if isinstance(x, dict):
        return {k: _values(v) for k, v in x.items()}
    if isinstance(x, slice):
        return slice(_values(x.start), _values(x.stop), _values(x.step))
    return x


def _zip(names, out):
    """The T structure pairing ONNX names with example outputs."""
    if isinstance(names, str):
        return T(names, np.asarray(out))
    return type(names)(_zip(n, o) for n, o in zip(names, out))


def _resolve(outputs, env, b):
    if outputs is None:  # e.g. MultiheadAttention's weights with need_weights=False: no graph output
        return None
    if isinstance(outputs, Ref):
        return pick(env[outputs.node], outputs.path)
    if isinstance(outputs, (tuple, list)):
        return type(outputs)(_resolve(o, env, b) for o in outputs)
    raise ExportError(f"ONNX export: a graph output {outputs!r:.60} is not a tensor")


def _elem_type(onnx, dtype):
    return onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def export(model, path, input_shape=None, *, dtype="float32", opset=DEFAULT_OPSET, input_names=None,
           output_names=None, dynamic_axes=None, example_inputs=None, check=True):
    """Write a fastnn model to an ONNX file (eval semantics, opset 17 or later, the batch axis dynamic).

    The model runs once on example inputs built from `input_shape` and `dtype` (floats random, integers 0,
    booleans True) or on `example_inputs`; its graph is walked layer by layer and functional op by op into
    standard ONNX ops. Parameters and buffers become initializers named by their fastnn names. Dropout is the
    identity and BatchNorm uses its running statistics; the model's train/eval modes are restored after.

    Mapping (the full table is in the user guide, "Saving and interchange"): Linear -> Gemm or MatMul + Add,
    Conv -> Conv, the norms -> BatchNormalization / LayerNormalization / InstanceNormalization, activations
    -> their ONNX ops; RNN/LSTM/GRU -> ONNX RNN/LSTM/GRU (gates reordered, several layers, bidirectional,
    h_n/c_n outputs); RNNCell/LSTMCell/GRUCell -> Gemm and element-wise ops (PyTorch's gate order and
    names); MultiheadAttention, the Transformer layers and F.scaled_dot_product_attention -> MatMul,
    Transpose, Reshape, Softmax, with Where/Add for bool/float masks and a Range-built causal mask (batch and
    sequence lengths stay dynamic); Seq2Seq -> its encoder ops and the teacher-forced decoder as one Scan
    (the target length is dynamic). A layer or op without a mapping raises ExportError naming it, before
    any file is written.

    Parameters
    ----------
    model : Module
        A Sequential, Graph, traced Module subclass, or a single built-in layer.
    path : str or path-like
        Where to write the ``.onnx`` file.
    input_shape : tuple of int or list of tuples, optional
        One input's full shape with the batch axis, e.g. ``(1, 1, 28, 28)``, or a list of shapes for several
        inputs. Needed unless `example_inputs` is given.
    dtype : str or list of str, default "float32"
        The dtype of every input, or one per input (integer ids for Embedding, bool for masks).
    opset : int, default 17
        The ONNX opset (17 or later).
    input_names, output_names : list of str, optional
        Names of the graph's inputs and outputs (default ``input``/``input_k``, ``output``/``output_k``).
    dynamic_axes : dict, optional
        ``{input index: {axis: name}}`` replacing the default ``{0: "batch"}`` of every input, e.g.
        ``{0: {0: "batch", 1: "seq"}}`` for a variable sequence length, ``{0: {}}`` for a fixed shape.
    example_inputs : array or list of arrays, optional
        The arrays to run the model on (their shapes and dtypes stand for `input_shape` and `dtype`), where
        the default example values would not do (real token ids, masks).
    check : bool, default True
        Run ``onnx.checker.check_model`` (full check) before writing.

    Returns
    -------
    onnx.ModelProto
        The model written.

    Raises
    ------
    ExportError
        (a ValueError) for a layer or functional op with no ONNX mapping, naming it.
    ImportError
        When the ``onnx`` package is missing (``pip install "fastnn[onnx]"``).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np, fastnn as fnn
    >>> model = fnn.nn.Sequential(fnn.nn.Linear(4, 8), fnn.nn.ReLU(), fnn.nn.Linear(8, 2))
    >>> path = os.path.join(tempfile.mkdtemp(), "mlp.onnx")
    >>> proto = fnn.onnx.export(model, path, input_shape=(1, 4))
    >>> [n.op_type for n in proto.graph.node]
    ['Gemm', 'Relu', 'Gemm', 'Identity']
    >>> sorted(i.name for i in proto.graph.initializer)
    ['0.bias', '0.weight', '2.bias', '2.weight']
    """
    onnx = require_onnx("export")
    if not isinstance(model, nn.Module):
        raise TypeError(f"fastnn.onnx.export: model must be a fastnn Module, got {type(model).__name__}")
    opset = int(opset)
    if opset < 17:
        raise ValueError(f"fastnn.onnx.export: opset must be 17 or later, got {opset}")
    if example_inputs is not None:
        examples = [np.asarray(x) for x in (example_inputs if isinstance(example_inputs, (list, tuple))
                                              else [example_inputs])]
    elif input_shape is None:
        raise TypeError("fastnn.onnx.export: give input_shape (or example_inputs)")
    else:
        examples = _example_inputs(input_shape, dtype)
    b = OnnxBuilder(onnx)
    b.opset = opset
    names = list(input_names) if input_names is not None else (
        ["input"] if len(examples) == 1 else [f"input_{k}" for k in range(len(examples))])
    if len(names) != len(examples):
        raise ValueError(f"fastnn.onnx.export: {len(names)} input names for {len(examples)} inputs")
    for n in names:
        b.names.add(n)
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        outs = _Walker(b).module(model, "", [T(n, x) for n, x in zip(names, examples)])
    finally:
        for m, mode in modes:
            object.__setattr__(m, "training", mode)
    out_tensors = tensors_of(outs)
    out_names = list(output_names) if output_names is not None else (
        ["output"] if len(out_tensors) == 1 else [f"output_{k}" for k in range(len(out_tensors))])
    if len(out_names) != len(out_tensors):
        raise ValueError(f"fastnn.onnx.export: {len(out_names)} output names for {len(out_tensors)} outputs")
    for t, n in zip(out_tensors, out_names):
        b.nodes.append(onnx.helper.make_node("Identity", [t.name], [n], name=b.fresh(n + "_identity")))

    def value_info(name, value, axes):
        shape = [axes.get(k, int(s)) for k, s in enumerate(value.shape)]
        return onnx.helper.make_tensor_value_info(name, _elem_type(onnx, value.dtype), shape)

    dyn = dynamic_axes or {}
    graph_inputs = [value_info(n, x, dyn.get(k, {0: "batch"})) for k, (n, x) in enumerate(zip(names, examples))]
    graph_outputs = [onnx.helper.make_tensor_value_info(n, _elem_type(onnx, t.value.dtype), [None] * t.value.ndim)
                     for n, t in zip(out_names, out_tensors)]  # output sizes: whatever the input's give
    graph = onnx.helper.make_graph(b.nodes, type(model).__name__, graph_inputs, graph_outputs, b.initializers)
    proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)],
                                   producer_name="fastnn")
    proto.ir_version = min(proto.ir_version, 10)
    if check:
        onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))
    return proto
