"""fastnn.onnx.load: an ONNX file as a trainable fastnn Graph.

The ONNX graph is read node by node into a GraphDef (fastnn/nn/graph_def.py) over fastnn layers made from
the initializers (import_ops.py): Conv -> Conv1d/2d, Gemm and MatMul by a constant -> Linear, BatchNormalization
-> BatchNorm1d/2d, LSTM/GRU/RNN -> LSTM/GRU/RNN (gates reordered back; import_recurrent.py), and so on; other
float initializers used by arithmetic become trainable parameters. Shape computations on constants and on
Shape(x) (the Shape/Gather/Unsqueeze/Concat chains torch.onnx writes for x.reshape(x.shape[0], -1)) are folded
at load time into reshapes whose sizes are read from the input when the graph runs (DimRef), so the batch
size stays free. Layers take the names of their weights ("fc.weight" makes layer "fc"), so a model exported by
fastnn or torch keeps its parameter names (fastnn's multi-layer recurrent exports come back as one layer);
other float initializers the graph computes with (MultiheadAttention's in_proj_weight) become parameters at
their own dotted names. A Scan's body is imported the same way into a sub-graph called once per step
(import_scan.py).
The Graph is returned in eval mode; call .train() to train it.
"""
import numpy as np

from .. import nn
from ..nn.graph_def import GraphDef, InputSpec
from ._require import require_onnx
from .import_graph import Builder, V
from .import_ops import IMPORTERS, check_supported

__all__ = ["load"]


def _read(onnx, path):
    """The ModelProto in `path`; ValueError for anything that is not a valid ONNX model."""
    from google.protobuf.message import DecodeError
    with open(path, "rb") as f:  # a missing file raises FileNotFoundError as usual
        data = f.read()
    try:
        proto = onnx.load_from_string(data)
    except (DecodeError, ValueError, RuntimeError, TypeError) as e:
        raise ValueError(f"fastnn.onnx.load: {path} is not a valid ONNX file (corrupt or truncated: {e})") from None
    if not proto.graph.node and not proto.graph.output:
        raise ValueError(f"fastnn.onnx.load: {path} holds no ONNX graph (corrupt, truncated or not ONNX)")
    try:
        onnx.checker.check_model(proto)
    except Exception as e:  # the checker raises its own ValidationError types
        raise ValueError(f"fastnn.onnx.load: {path} is not a valid ONNX model (corrupt or truncated): "
                         f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    return proto


def _example_shape(vi):
    dims = vi.type.tensor_type.shape.dim
    shape, spec = [], []
    for axis, d in enumerate(dims):
        static = d.HasField("dim_value") and d.dim_value > 0
        shape.append(int(d.dim_value) if static else (2 if axis == 0 else 3))
        if axis > 0:
            spec.append(int(d.dim_value) if static else None)
    return tuple(shape), tuple(spec)


def _gathered_rows(proto, consts, name):
    """The fewest rows of the initializer tables that Gather nodes index with graph input `name` (2 when none
    does): the example token ids must stay inside every table they index."""
    rows = 2
    for node in proto.graph.node:
        if node.op_type == "Gather" and len(node.input) > 1 and node.input[1] == name and node.input[0] in consts:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
            table = consts[node.input[0]]
            if table.ndim:
                rows = min(rows, int(table.shape[axis]))
    return rows


def load(path):
    """Read an ONNX file (written by fastnn.onnx.export or torch.onnx.export) as a trainable fastnn Graph.

    Layers are rebuilt from the initializers and keep their names: Conv -> Conv1d/2d, Gemm and MatMul by a
    constant -> Linear, BatchNormalization -> BatchNorm1d/2d, LayerNormalization -> LayerNorm, LSTM/GRU/RNN
    -> LSTM/GRU/RNN (fastnn's multi-layer exports back as one layer), Gather of an initializer -> Embedding,
    and so on. Other float initializers used by the graph's arithmetic (MultiheadAttention's
    ``in_proj_weight``, sliced or transposed) become trainable parameters at their own dotted names. Element-wise
    and shape ops become the graph's functional ops, with gradients: Add/Sub/Mul/Div/Pow, the activations,
    Softmax, MatMul, Reshape/Transpose/Concat/Slice/Gather/Squeeze/Unsqueeze/Expand, ReduceSum/Mean/Max,
    Where, Max, Not, Cast, comparisons and Range (no gradient for the last four kinds). Shape computations
    on Shape(x) are folded into sizes read when the graph runs, so the batch size (and sequence lengths)
    stay free. Scan (Seq2Seq's exported decoder) becomes a loop over the scan axis calling its body, imported
    the same way as one sub-graph shared by every step; values the body reads from the outer graph are passed
    in, named float initializers as parameters at their own names (a Seq2Seq keeps its parameter names).
    Forward scans on non-negative axes only. Not imported: Loop and any op not listed here.

    Parameters
    ----------
    path : str or path-like
        The ``.onnx`` file.

    Returns
    -------
    Graph
        The model, in eval mode (call ``.train()`` to train it).

    Raises
    ------
    ValueError
        For a corrupt or truncated file, or ops fastnn cannot import (every such op type and node named; a
        Scan with a reverse direction or a negative axis, naming the node).
    ImportError
        When the ``onnx`` package is missing (``pip install "fastnn[onnx]"``).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np, fastnn as fnn
    >>> model = fnn.nn.Sequential(fnn.nn.Linear(4, 8), fnn.nn.Tanh(), fnn.nn.Linear(8, 2)).eval()
    >>> path = os.path.join(tempfile.mkdtemp(), "mlp.onnx")
    >>> _ = fnn.onnx.export(model, path, input_shape=(1, 4))
    >>> graph = fnn.onnx.load(path)
    >>> x = np.ones((3, 4), np.float32)
    >>> np.allclose(graph(x), model(x)), [n for n, _ in graph.named_parameters()]
    (True, ['0.weight', '0.bias', '2.weight', '2.bias'])
    """
    onnx = require_onnx("load")
    proto = _read(onnx, str(path))
    check_supported(proto, path)
    b = Builder(onnx, proto)
    numpy_helper = onnx.numpy_helper
    for init in proto.graph.initializer:
        b.consts[init.name] = numpy_helper.to_array(init)
        b.origin[init.name] = init.name
    k = 0
    for vi in proto.graph.input:
        if vi.name in b.consts:
            continue
        shape, spec_shape = _example_shape(vi)
        dtype = onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
        rng = np.random.default_rng(k)
        value = rng.standard_normal(shape).astype(dtype) if dtype.kind == "f" else np.zeros(shape, dtype)
        if dtype.kind in "iu" and value.ndim > 1 and _gathered_rows(proto, b.consts, vi.name) > 1:
            value[..., 1::2] = 1  # token ids 0, 1, 0, ...: a padding id (0 or 1) leaves a kept position in every
            #                       row, so no all-masked row (NaN); ids into a one-row table stay 0
        if dtype.kind == "b" and value.ndim:  # a mask of either convention (True = keep, True = hide) then
            value[...] = True                 # leaves every row a kept and a hidden position, so the
            value[..., 0] = False             # example run sees no all-masked row (NaN)
        b.env[vi.name] = b.add_input(vi.name, value, InputSpec(vi.name, spec_shape, dtype.name))
        k += 1
    for node in proto.graph.node:
        if tuple(node.output) not in b.skip:
            IMPORTERS[node.op_type](b, node)
    outputs = []
    for o in proto.graph.output:
        v = b.env.get(o.name)
        if not isinstance(v, V):
            if o.name in b.consts:
                v = b.constant(b.consts[o.name])
            else:
                raise ValueError(f"fastnn.onnx.load: output '{o.name}' of {path} is not a tensor the graph computes")
        outputs.append(v.ref)
    gdef = GraphDef(b.input_specs, b.nodes, outputs[0] if len(outputs) == 1 else tuple(outputs),
                    b.consts_used)
    g = nn.Graph.from_graph_def(gdef, b.children)
    g.eval()
    return g
