"""GraphDef: a model as plain data, the form that tracing produces, the executor runs, fastnn.save writes as
JSON and ONNX export reads.

A GraphDef is a flat, topologically ordered list of nodes (as torch.fx's Graph):

    Node(name, op, target, args, kwargs)
        op "input"     target: position of the input;           args (), kwargs {}
        op "module"    target: dotted path of a sub-module of the graph's owner ("layer1.conv")
        op "call"      target: name of a functional op (fastnn.nn.functional, `OPS` in function_ops.py)
        op "attr"      target: dotted name of a parameter or buffer of the owner ("pos_embedding")
        op "constant"  target: key into `constants` (an array that is neither a parameter nor a buffer)

    args / kwargs hold literals (None, bool, int, float, str, slice, Ellipsis, dtype names, and tuples,
    lists and dicts of these) and references to earlier nodes:
        Ref(node, path)          the output of node `node`; `path` indexes into a structured output
                                 (LSTM's (out, (h_n, c_n)): path (1, 0) is h_n), () for a plain array
        DimRef(node, path, axis) the size of that value along `axis`, read when the graph runs (a reshape
                                 to (x.shape[0], -1) keeps working for any batch size)

    inputs   InputSpec(name, shape, dtype) per input: shape without the batch axis where known, else None
    outputs  a Ref, or a tuple/list of Refs (nested as the model returns them)

Gradients flow through the positional arguments of "module" and "call" nodes; keyword arguments are
constants of the computation (masks, flags). Nothing here knows about modules or arrays beyond names and
constants: the owner module resolves targets, so the same GraphDef can be saved, loaded and exported.
"""
import json
import math
from collections import namedtuple

import numpy as np

__all__ = ["GraphDef", "Node", "Ref", "DimRef", "InputSpec"]

Ref = namedtuple("Ref", ["node", "path"])
DimRef = namedtuple("DimRef", ["node", "path", "axis"])
InputSpec = namedtuple("InputSpec", ["name", "shape", "dtype"])

NODE_OPS = ("input", "module", "call", "attr", "constant")


class Node:
    __slots__ = ("name", "op", "target", "args", "kwargs")

    def __init__(self, name, op, target, args=(), kwargs=None):
        if op not in NODE_OPS:
            raise ValueError(f"Node: op must be one of {NODE_OPS}, got {op!r}")
        self.name, self.op, self.target = name, op, target
        self.args, self.kwargs = tuple(args), dict(kwargs or {})

    def refs(self, positional_only=False):
        """Every Ref/DimRef in this node's arguments (positional ones only if asked)."""
        found = []
        _collect_refs(self.args, found)
        if not positional_only:
            _collect_refs(tuple(self.kwargs.values()), found)
        return found

    def __repr__(self):
        return f"Node({self.name!r}, {self.op}, {self.target!r}, args={self.args!r}, kwargs={self.kwargs!r})"


def _collect_refs(value, found):
    if isinstance(value, (Ref, DimRef)):
        found.append(value)
    elif isinstance(value, (tuple, list)):
        for v in value:
            _collect_refs(v, found)
    elif isinstance(value, dict):
        for v in value.values():
            _collect_refs(v, found)


class GraphDef:
    """See the module docstring. `specialized`, when not None, records that the trace used input sizes as
    numbers: {"shapes": [...] (the traced inputs' shapes), "where": "file.py:12", "axes": [[input, axis,
    size], ...]}. With "axes" the graph holds for any input with those sizes on those axes (a loop over
    x.shape[1] fixes the sequence length, not the batch size); without it (a size read from an intermediate
    value, or a file saved before "axes" existed) for the traced shapes only."""

    __slots__ = ("inputs", "nodes", "outputs", "constants", "specialized")

    def __init__(self, inputs, nodes, outputs, constants=None, specialized=None):
        self.inputs = [InputSpec(*i) for i in inputs]
        self.nodes = list(nodes)
        self.outputs = outputs
        self.constants = dict(constants or {})
        self.specialized = specialized
        self.validate()

    def holds_for(self, shapes):
        """Whether this graph computes the model's forward for inputs of these shapes."""
        special = self.specialized
        if special is None:
            return True
        axes = special.get("axes")
        if axes is None:
            return [list(s) for s in shapes] == special["shapes"]
        return all(len(shapes[k]) > axis and shapes[k][axis] == size for k, axis, size in axes)

    def fixed_sizes(self):
        """The input sizes this graph holds for, in words (for errors)."""
        special = self.specialized
        axes = special.get("axes")
        if axes is None:
            return f"inputs of shapes {special['shapes']} only"
        return "inputs with " + ", ".join(f"size {size} on axis {axis} of input {k}" for k, axis, size in axes)

    def validate(self):
        """Checks references point backwards, inputs are numbered in order and targets are well formed."""
        seen_inputs = []
        for i, node in enumerate(self.nodes):
            if not isinstance(node, Node):
                raise ValueError(f"GraphDef: node {i} is not a Node")
            for r in node.refs():
                if not (isinstance(r.node, int) and 0 <= r.node < i):
                    raise ValueError(f"GraphDef: node {i} ({node.name}) refers to node {r.node}, which does not "
                                     f"come before it")
            if node.op == "input":
                seen_inputs.append(node.target)
            elif node.op == "constant" and node.target not in self.constants:
                raise ValueError(f"GraphDef: node {node.name} names a missing constant {node.target!r}")
            elif node.op in ("module", "call", "attr") and not isinstance(node.target, str):
                raise ValueError(f"GraphDef: node {node.name} has target {node.target!r}; a str is expected")
        if seen_inputs != list(range(len(self.inputs))):
            raise ValueError(f"GraphDef: input nodes must number 0..{len(self.inputs) - 1} in order, got "
                             f"{seen_inputs}")
        found = []
        _collect_refs(self.outputs, found)
        if not found:
            raise ValueError("GraphDef: the outputs refer to no node")
        for r in found:
            if not (isinstance(r.node, int) and 0 <= r.node < len(self.nodes)):
                raise ValueError(f"GraphDef: an output refers to node {r.node}, which does not exist")

    def input_nodes(self):
        return [i for i, n in enumerate(self.nodes) if n.op == "input"]

    def output_refs(self):
        found = []
        _collect_refs(self.outputs, found)
        return found

    # -- equality and printing ---------------------------------------------------------------------
    def to_json(self):
        return json.dumps(encode(self), separators=(",", ":"), allow_nan=False)

    def same_as(self, other):
        return self.to_json() == other.to_json()

    def __repr__(self):
        lines = ["GraphDef("]
        for i, n in enumerate(self.nodes):
            if n.op == "input":
                spec = self.inputs[n.target]
                lines.append(f"  %{i} {n.name} = input[{n.target}]  shape={spec.shape} dtype={spec.dtype}")
                continue
            args = ", ".join([_show(a, self) for a in n.args] +
                             [f"{k}={_show(v, self)}" for k, v in n.kwargs.items()])
            lines.append(f"  %{i} {n.name} = {n.op}[{n.target}]({args})")
        lines.append(f"  return {_show(self.outputs, self)}")
        lines.append(")")
        return "\n".join(lines)


def _show(v, g):
    if isinstance(v, Ref):
        return f"%{v.node}" + "".join(f"[{p}]" for p in v.path)
    if isinstance(v, DimRef):
        return f"%{v.node}" + "".join(f"[{p}]" for p in v.path) + f".shape[{v.axis}]"
    if isinstance(v, tuple):
        return "(" + ", ".join(_show(x, g) for x in v) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, list):
        return "[" + ", ".join(_show(x, g) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k!r}: {_show(x, g)}" for k, x in v.items()) + "}"
    if isinstance(v, slice):
        return ":".join("" if p is None else _show(p, g) for p in (v.start, v.stop, v.step)).rstrip(":") or ":"
    if v is Ellipsis:
        return "..."
    return repr(v)


# ---------------------------------------------------------------------------------------------------------
# JSON form (fastnn.save): plain JSON values plus one-key tagged objects, never code
# ---------------------------------------------------------------------------------------------------------
def _enc(v):
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return int(v)
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return v if math.isfinite(v) else {"float": "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")}
    if isinstance(v, Ref):
        return {"ref": [v.node, [_enc(p) for p in v.path]]}
    if isinstance(v, DimRef):
        return {"dim": [v.node, [_enc(p) for p in v.path], v.axis]}
    if isinstance(v, tuple):
        return {"tuple": [_enc(x) for x in v]}
    if isinstance(v, list):
        return [_enc(x) for x in v]
    if isinstance(v, dict):
        return {"dict": [[_enc(k), _enc(x)] for k, x in v.items()]}
    if isinstance(v, slice):
        return {"slice": [_enc(v.start), _enc(v.stop), _enc(v.step)]}
    if v is Ellipsis:
        return {"ellipsis": True}
    if isinstance(v, np.dtype):
        return {"dtype": v.name}
    raise TypeError(f"GraphDef: cannot encode {type(v).__name__} {v!r:.60} as a graph argument")


class GraphFormatError(ValueError):
    """A graph in a file is malformed."""


def _dec(v):
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, list):
        return [_dec(x) for x in v]
    if not (isinstance(v, dict) and len(v) == 1):
        raise GraphFormatError(f"unexpected value {json.dumps(v)[:80]} in a graph")
    tag, x = next(iter(v.items()))
    try:
        if tag == "ref":
            node, path = x
            return Ref(int(node), tuple(_dec(p) for p in path))
        if tag == "dim":
            node, path, axis = x
            return DimRef(int(node), tuple(_dec(p) for p in path), int(axis))
        if tag == "tuple":
            return tuple(_dec(e) for e in x)
        if tag == "dict":
            return {_dec(k): _dec(e) for k, e in x}
        if tag == "slice":
            return slice(*(_dec(e) for e in x))
        if tag == "ellipsis":
            return Ellipsis
        if tag == "float":
            if x not in ("nan", "inf", "-inf"):
                raise GraphFormatError(f"bad float {x!r}")
            return float(x)
        if tag == "dtype":
            return np.dtype(str(x))
    except GraphFormatError:
        raise
    except (TypeError, ValueError) as e:
        raise GraphFormatError(f"malformed {tag!r} entry {json.dumps(x)[:80]}: {e}") from None
    raise GraphFormatError(f"unknown tag {tag!r} in a graph")


def _enc_array(a):
    a = np.asarray(a)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"GraphDef: constants must be numeric arrays, got dtype {a.dtype}")
    flat = [_enc(x.item()) if a.dtype.kind == "f" else x.item() for x in a.reshape(-1)]
    return {"dtype": a.dtype.name, "shape": list(a.shape), "data": flat}


def _dec_array(v):
    try:
        dtype = np.dtype(v["dtype"])
        if dtype.kind not in "biuf":
            raise GraphFormatError(f"constant dtype {dtype} is not numeric")
        shape = tuple(int(s) for s in v["shape"])
        data = [_dec(x) for x in v["data"]]
        a = np.array(data, dtype=dtype)
        if a.size != math.prod(shape):
            raise GraphFormatError(f"constant holds {a.size} values for shape {shape}")
        return a.reshape(shape)
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, GraphFormatError):
            raise
        raise GraphFormatError(f"malformed constant ({e})") from None


def encode(g):
    """The GraphDef as a JSON-able dict."""
    return {
        "inputs": [{"name": i.name, "shape": None if i.shape is None else [None if s is None else int(s)
                                                                             for s in i.shape],
                    "dtype": i.dtype} for i in g.inputs],
        "nodes": [{"name": n.name, "op": n.op, "target": _enc(n.target), "args": [_enc(a) for a in n.args],
                   "kwargs": {k: _enc(v) for k, v in n.kwargs.items()}} for n in g.nodes],
        "outputs": _enc(g.outputs),
        "constants": {k: _enc_array(v) for k, v in g.constants.items()},
        "specialized": g.specialized,
    }


def decode(d):
    """A GraphDef from `encode`'s dict; GraphFormatError if anything is malformed."""
    if not isinstance(d, dict):
        raise GraphFormatError("a graph must be a JSON object")
    try:
        inputs = []
        for i in d["inputs"]:
            shape = i["shape"]
            inputs.append(InputSpec(str(i["name"]), None if shape is None else
                                    tuple(None if s is None else int(s) for s in shape),
                                    None if i["dtype"] is None else str(i["dtype"])))
        nodes = []
        for n in d["nodes"]:
            kwargs = n.get("kwargs", {})
            if not isinstance(kwargs, dict):
                raise GraphFormatError("node kwargs must be an object")
            nodes.append(Node(str(n["name"]), n["op"], _dec(n["target"]), [_dec(a) for a in n["args"]],
                              {str(k): _dec(v) for k, v in kwargs.items()}))
        constants = {str(k): _dec_array(v) for k, v in d.get("constants", {}).items()}
        return GraphDef(inputs, nodes, _dec(d["outputs"]), constants, d.get("specialized"))
    except GraphFormatError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise GraphFormatError(f"malformed graph ({type(e).__name__}: {e})") from None
