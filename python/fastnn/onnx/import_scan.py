"""ONNX Scan into fastnn (used by import_ops.py): the body GraphProto is imported with the same importers into
a Graph (its own initializers become its parameters), called once per step of the scan axis by a traced
ScanLoop module, so the one body module is shared by every step and its gradients accumulate over time.

Values the body reads from the outer graph by name (ONNX subgraph scoping) are passed to it as extra inputs:
computed tensors as they are, named float initializers (fastnn's "decoder.weight_ih") as the outer graph's
trainable parameters at their own names, other initializers (shape constants, -inf) as body constants.
Supported: forward directions and any scan_input_axes / scan_output_axes ≥ 0 (fastnn writes axis 1);
reverse directions, negative axes and omitted optional inputs are refused, naming the node.
"""
import types

import numpy as np

from .. import nn
from ..nn import functional as F
from ..nn.graph_def import GraphDef, InputSpec, Ref
from .import_graph import Builder, Sym, V, Zeros, node_attrs

__all__ = ["ScanLoop", "make_scan"]


class ScanLoop(nn.Module):
    """Runs `body` once per step of the scan axis: ``body(*states, *slices, *outer)`` returns the new states
    then one slice per scan output; returns the final states then the scan outputs stacked on their axes.

    Parameters
    ----------
    body : Module
        The step (the imported Scan body Graph).
    num_states : int
        N, the carried states (first N inputs and outputs).
    input_axes : sequence of int
        The scan axis of each scan input (M inputs after the states).
    output_axes : sequence of int
        The axis each scan output is stacked along.

    Shape
    -----
    The scan inputs share the length T of their scan axes; each scan output gains an axis of length T.

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> class Step(fnn.nn.Module):
    ...     def forward(self, s, x):
    ...         s = s + x
    ...         return s, s * 2.0
    >>> loop = fnn.onnx.import_scan.ScanLoop(Step(), 1, [1], [1])
    >>> s, ys = loop(np.zeros((2, 3), np.float32), np.ones((2, 4, 3), np.float32))
    >>> float(s[0, 0]), ys.shape, ys[0, :, 0].tolist()
    (4.0, (2, 4, 3), [2.0, 4.0, 6.0, 8.0])
    """

    def __init__(self, body, num_states, input_axes, output_axes):
        super().__init__()
        self.body = body
        self.num_states = int(num_states)
        self.input_axes = [int(a) for a in input_axes]
        self.output_axes = [int(a) for a in output_axes]

    def forward(self, *args):
        n, m = self.num_states, len(self.input_axes)
        states, xs, outer = list(args[:n]), args[n:n + m], list(args[n + m:])
        steps = xs[0].shape[self.input_axes[0]]
        if steps == 0:
            raise ValueError("ScanLoop: the scan inputs have length 0 on their scan axis")
        outs = [[] for _ in self.output_axes]
        for t in range(steps):
            slices = [x[(slice(None),) * ax + (t,)] for x, ax in zip(xs, self.input_axes)]
            res = self.body(*states, *slices, *outer)
            res = list(res) if isinstance(res, (tuple, list)) else [res]
            states = res[:n]
            for k, y in enumerate(res[n:]):
                outs[k].append(y)
        stacked = [F.stack(o, dim=ax) for o, ax in zip(outs, self.output_axes)]
        res = states + stacked
        return res[0] if len(res) == 1 else tuple(res)


def _fail(node, what):
    raise ValueError(f"fastnn.onnx.load: Scan node '{node.name}' {what}")


def _body_names(body):
    produced = {i.name for i in body.input} | {i.name for i in body.initializer}
    outer = []
    for n in body.node:
        for i in n.input:
            if i and i not in produced and i not in outer:
                outer.append(i)
        for a in n.attribute:
            if a.type in (a.GRAPH, a.GRAPHS):
                raise ValueError(f"fastnn.onnx.load: Scan body node '{n.name}' holds a subgraph of its own")
        produced.update(n.output)
    return outer


def make_scan(importers):
    """The Scan importer over `importers` (op type -> importer, used for the body too)."""

    def run_graph(b, graph):
        for n in graph.node:
            if n.op_type not in importers or n.domain not in ("", "ai.onnx"):
                raise ValueError(f"fastnn.onnx.load: the Scan body uses an op fastnn cannot import: {n.op_type} "
                                 f"(node '{n.name}')")
            if tuple(n.output) not in b.skip:
                importers[n.op_type](b, n)

    def scan(b, node):
        a = node_attrs(node)
        body, m = a["body"], int(a["num_scan_inputs"])
        n = len(node.input) - m
        k = len(body.output) - n
        if n < 0 or k < 0 or len(body.input) != n + m:
            _fail(node, f"has {len(node.input)} inputs and a body of {len(body.input)} inputs / "
                        f"{len(body.output)} outputs with num_scan_inputs={m}")
        for key in ("scan_input_directions", "scan_output_directions"):
            if any(int(d) != 0 for d in a.get(key, [])):
                _fail(node, f"has {key}={list(a[key])}; fastnn imports forward scans only")
        in_axes, out_axes = list(a.get("scan_input_axes", [0] * m)), list(a.get("scan_output_axes", [0] * k))
        if len(in_axes) != m or len(out_axes) != k or any(int(x) < 0 for x in in_axes + out_axes):
            _fail(node, f"has scan_input_axes={in_axes} / scan_output_axes={out_axes}; fastnn imports one "
                        f"non-negative axis per scan input and output")
        if m == 0 or any(not name for name in node.input):
            _fail(node, "has no scan input or an omitted optional input")
        ins = [b.env.get(name, b.consts.get(name)) for name in node.input]
        if not all(isinstance(v, V) for v in ins):
            ins = [v if isinstance(v, V) else b.constant(v) if isinstance(v, np.ndarray) else _fail(
                node, "takes a shape value or an all-zeros state as input") for v in ins]
        sub = Builder(b.onnx, types.SimpleNamespace(graph=body))
        extra = []  # outer V values the body reads
        for name in _body_names(body):
            v = b.env.get(name, b.consts.get(name))
            if isinstance(v, np.ndarray):
                origin = b.origin.get(name)
                if v.dtype.kind == "f" and isinstance(origin, str) and b.exact_path(origin, claim=False) is not None \
                        or ("param", name) in b.origin:
                    v = b.parameter(name, v)
                else:
                    sub.consts[name] = v
                    continue
            if isinstance(v, (Sym, Zeros)) or v is None:
                _fail(node, f"reads the outer value '{name}', which is not a tensor fastnn computes")
            extra.append((name, v))
        for init in body.initializer:
            sub.consts[init.name] = b.onnx.numpy_helper.to_array(init)
            sub.origin[init.name] = init.name
        examples = [v.value for v in ins[:n]] + \
                   [np.take(v.value, 0, axis=ax) for v, ax in zip(ins[n:], in_axes)] + [v.value for _, v in extra]
        names = [vi.name for vi in body.input] + [name for name, _ in extra]
        for name, value in zip(names, examples):
            value = np.asarray(value)
            spec = InputSpec(name, (None,) * max(value.ndim - 1, 0), value.dtype.name)
            sub.env[name] = sub.add_input(name, value, spec)
        run_graph(sub, body)
        outputs = []
        for o in body.output:
            v = sub.env.get(o.name)
            if not isinstance(v, V):
                if o.name in sub.consts:
                    v = sub.constant(sub.consts[o.name])
                else:
                    _fail(node, f"body output '{o.name}' is not a tensor the body computes")
            outputs.append(v.ref)
        gdef = GraphDef(sub.input_specs, sub.nodes, outputs[0] if len(outputs) == 1 else tuple(outputs),
                        sub.consts_used)
        step = nn.Graph.from_graph_def(gdef, sub.children)
        loop = ScanLoop(step, n, in_axes, out_axes)
        path = b.path_for(None, None, node.name or "scan")
        idx, out = b.module(path, loop, ins + [v for _, v in extra], node.name)
        out = out if isinstance(out, tuple) else (out,)
        for j, name in enumerate(node.output):
            if name:
                b.env[name] = V(Ref(idx, (j,)) if len(out) > 1 else Ref(idx, ()), np.asarray(out[j]))

    return scan
