"""The state of an ONNX import (load.py, import_ops.py): the GraphDef nodes being built, the fastnn layers
and parameters they use (placed at dotted paths), and what each ONNX value is at load time: a V (a tensor the
graph computes, with its value on the example input), a constant array, a Sym (a shape known as ints and
DimRefs, read from the input when the graph runs) or Zeros (an all-zeros recurrent state)."""
import re
from collections import OrderedDict

import numpy as np

from .. import nn
from ..nn.function_ops import OPS
from ..nn.graph_def import DimRef, Node, Ref

__all__ = ["V", "Sym", "Zeros", "Builder", "node_attrs", "get_value", "const_input", "as_tensor", "set_param"]


class V:
    """A tensor of the graph being built: a Ref to its node and the value on the example input."""
    __slots__ = ("ref", "value")

    def __init__(self, ref, value):
        self.ref, self.value = ref, value


class Sym:
    """A 1-D int64 shape tensor (or scalar) known at load time as ints and DimRefs (sizes read at run time)."""
    __slots__ = ("items", "scalar")

    def __init__(self, items, scalar=False):
        self.items, self.scalar = list(items), scalar


class Zeros:
    """ConstantOfShape(0) of a run-time shape: an all-zeros recurrent initial state."""


def _sanitize(name):
    parts = [re.sub(r"\W", "_", p) or "_" for p in str(name).split(".")]
    return ".".join(parts)


class Builder:
    """The GraphDef under construction, the layers it calls and the example values flowing through it."""

    def __init__(self, onnx, proto):
        self.onnx, self.proto = onnx, proto
        self.nodes, self.children, self.containers = [], OrderedDict(), {}
        self.env, self.consts, self.origin = {}, {}, {}
        self.used_paths, self.node_names = set(), set()
        self.input_specs = []
        self.consts_used = {}
        self.values = []          # example output of each node
        self.lazy = {}            # ONNX recurrent Y values, made when first used
        self.pending_linear = {}  # MatMul outputs whose Linear may take the bias of the Add that follows
        self.users, self.consumers, self.producers = {}, {}, {}
        self.skip = set()         # output tuples of ONNX nodes already imported as part of another
        for node in proto.graph.node:
            for i in node.input:
                self.users[i] = self.users.get(i, 0) + 1
                self.consumers.setdefault(i, []).append(node)
            for o in node.output:
                self.producers[o] = node
        for o in proto.graph.output:
            self.users[o.name] = self.users.get(o.name, 0) + 1

    # -- names and registration ---------------------------------------------------------------------
    def _node_name(self, hint):
        base = re.sub(r"\W", "_", hint).strip("_") or "node"
        name, k = base, 0
        while name in self.node_names:
            k += 1
            name = f"{base}_{k}"
        self.node_names.add(name)
        return name

    def path_for(self, weight_name, suffix, fallback):
        """The dotted layer path for a layer whose weight is named `weight_name` (prefix before `suffix`),
        else a fresh name from `fallback`."""
        path = None
        if weight_name and suffix and str(weight_name).endswith(suffix) and len(weight_name) > len(suffix):
            path = _sanitize(weight_name[:-len(suffix)])
        if path is None or path in self.used_paths or self._clash(path):
            base, k = re.sub(r"\W", "_", fallback.lower()), 0
            path = base
            while path in self.used_paths or self._clash(path):
                k += 1
                path = f"{base}_{k}"
        self.used_paths.add(path)
        return path

    def exact_path(self, name, claim=True):
        """`name` (sanitized) as a path for a parameter when it is dotted and free: no layer sits at it or at a
        path above it, so a free parameter such as "layers.0.self_attn.in_proj_weight" keeps its name (claimed
        unless claim=False; None when not free)."""
        path = _sanitize(name)
        parts = path.split(".")
        if len(parts) < 2 or path in self.containers or self._clash(path):
            return None
        if any(".".join(parts[:k]) in self.used_paths for k in range(1, len(parts) + 1)):
            return None
        if parts[0] in self.children and parts[0] not in self.containers:
            return None
        if claim:
            self.used_paths.add(path)
        return path

    def _clash(self, path):
        top = path.split(".")[0]
        return hasattr(nn.Graph, top) or (top in self.children and "." not in path)

    def place(self, path, obj):
        *parents, last = path.split(".")
        holder = None
        for k in range(len(parents)):
            sub = ".".join(parents[:k + 1])
            box = self.containers.get(sub)
            if box is None:
                box = self.containers[sub] = nn.Module()
                if holder is None:
                    self.children[parents[0]] = box
                else:
                    setattr(holder, parents[k], box)
            holder = box
        if holder is None:
            self.children[last] = obj
        else:
            setattr(holder, last, obj)

    # -- nodes --------------------------------------------------------------------------------------
    def _append(self, node, value):
        self.nodes.append(node)
        self.values.append(value)
        return len(self.nodes) - 1

    def value_of(self, x):
        """Example values for arguments holding V, DimRef and literals."""
        if isinstance(x, V):
            return x.value
        if isinstance(x, DimRef):
            v = self.values[x.node]
            for p in x.path:
                v = v[p]
            return int(np.shape(v)[x.axis])
        if isinstance(x, tuple):
            return tuple(self.value_of(v) for v in x)
        if isinstance(x, list):
            return [self.value_of(v) for v in x]
        if isinstance(x, dict):
            return {k: self.value_of(v) for k, v in x.items()}
        if isinstance(x, slice):
            return slice(self.value_of(x.start), self.value_of(x.stop), self.value_of(x.step))
        return x

    def add_input(self, name, value, spec):
        idx = self._append(Node(self._node_name(name), "input", len(self.input_specs)), value)
        self.input_specs.append(spec)
        return V(Ref(idx, ()), value)

    def module(self, path, module, args, hint):
        """Calls `module` (registered at `path`) on V args; returns its output as V (structure kept in Ref paths)."""
        self.place(path, module)
        module.eval()
        out = module(*self.value_of(list(args)))
        idx = self._append(Node(self._node_name(path), "module", path, _refs(list(args))), out)
        return idx, out

    def call(self, op, args, kwargs=None, hint=None):
        kwargs = kwargs or {}
        out, _ = OPS[op].forward(*self.value_of(list(args)), **self.value_of(kwargs))
        out = np.asarray(out)
        idx = self._append(Node(self._node_name(hint or op), "call", op, _refs(list(args)), _refs(kwargs)), out)
        return V(Ref(idx, ()), out)

    def parameter(self, name, array):
        """A trainable parameter (a float initializer used in arithmetic) as an attr node."""
        key = ("param", name)
        if key in self.origin:
            return self.origin[key]
        path = self.exact_path(name) or self.path_for(None, None, _sanitize(name).replace(".", "_"))
        p = nn.Parameter(np.array(array, np.float32 if array.dtype != np.float64 else np.float64))
        self.place(path, p)
        idx = self._append(Node(self._node_name(path), "attr", path), p.data)
        v = self.origin[key] = V(Ref(idx, ()), p.data)
        return v

    def constant(self, array):
        key = f"c{len(self.consts_used)}"
        self.consts_used[key] = np.asarray(array)
        idx = self._append(Node(self._node_name("constant"), "constant", key), np.asarray(array))
        return V(Ref(idx, ()), np.asarray(array))


def _refs(x):
    if isinstance(x, V):
        return x.ref
    if isinstance(x, (Ref, DimRef)):
        return x
    if isinstance(x, tuple):
        return tuple(_refs(v) for v in x)
    if isinstance(x, list):
        return [_refs(v) for v in x]
    if isinstance(x, dict):
        return {k: _refs(v) for k, v in x.items()}
    return x


def node_attrs(node):
    from onnx import helper
    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else (
            [x.decode() if isinstance(x, bytes) else x for x in v] if isinstance(v, list) else v)
    return out


def get_value(b, name):
    if name == "":
        return None
    if name in b.env:
        return b.env[name]
    if name in b.consts:
        return b.consts[name]
    raise ValueError(f"fastnn.onnx.load: value '{name}' is used before it is computed")


def const_input(b, node, k, what):
    name = node.input[k] if k < len(node.input) else ""
    v = get_value(b, name)
    if v is not None and not isinstance(v, np.ndarray):
        raise ValueError(f"fastnn.onnx.load: {node.op_type} node '{node.name}' needs a constant {what} (input "
                         f"'{name}'); it is computed by the graph, which fastnn does not support here")
    return v


def as_tensor(b, x):
    """x as a V: constants become constant nodes (float ones trainable parameters when named initializers)."""
    if isinstance(x, V):
        return x
    if isinstance(x, np.ndarray):
        return b.constant(x)
    raise ValueError(f"fastnn.onnx.load: a shape value is used as a tensor ({x!r:.60})")


def set_param(module, name, array):
    p = getattr(module, name)
    p.data[...] = np.asarray(array, p.data.dtype).reshape(p.data.shape)
