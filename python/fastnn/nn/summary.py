"""Module.summary(): a table of what a model computes, with output shapes and parameter counts.

A Sequential or hand-written model: one row per leaf layer, from one forward of a zero sample with each
leaf's forward watched. A graph model (fastnn.nn.Graph, or a Module subclass that writes no backward): one
row per graph node (inputs, module calls, functional ops) from its executor. Both run in eval mode, without
side effects, and restore the model's modes.
"""
import numpy as np

from .executor import Executor, unfused
from .graph import Graph
from .traced import trace
from .tracing import no_side_effects


def summarize(model, input_shape, dtype=None):
    if isinstance(model, Graph) or type(model).traced:
        rows = _graph_rows(model, input_shape, dtype)
    else:
        rows = _leaf_rows(model, input_shape, dtype)
    return _table(model, rows)


def _example_inputs(model, input_shape, dtype, specs=None):
    """Zero arrays with a batch of 1: one per input (input_shape a list of shapes for several inputs)."""
    if input_shape is None:
        if specs is None or any(s.shape is None or None in s.shape for s in specs):
            raise ValueError(f"{type(model).__name__}.summary: give input_shape (the shape of one sample)")
        shapes, dtypes = [s.shape for s in specs], [s.dtype for s in specs]
    else:
        several = len(input_shape) > 0 and all(isinstance(s, (tuple, list)) for s in input_shape)
        shapes = [tuple(s) for s in input_shape] if several else [tuple(input_shape)]
        if isinstance(dtype, (list, tuple)):
            dtypes = list(dtype)
        else:
            dtypes = [dtype or (specs[k].dtype if specs else model.dtype) for k in range(len(shapes))]
    return [np.zeros((1,) + tuple(s), np.dtype(d)) for s, d in zip(shapes, dtypes)]


def _shape_text(value):
    if isinstance(value, (tuple, list)):
        return ", ".join(_shape_text(v) for v in value if v is not None)
    return str(tuple(np.shape(value)))


def _graph_rows(model, input_shape, dtype):
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with no_side_effects([model]):
            if isinstance(model, Graph):
                executor = Executor(model.graph, model)
                inputs = _example_inputs(model, input_shape, dtype, model.graph.inputs)
            else:
                inputs = _example_inputs(model, input_shape, dtype)
                executor = trace(model, *inputs).executor
            _, run = executor.forward(inputs, keep_values=True)
    finally:
        for m, mode in modes:
            object.__setattr__(m, "training", mode)
    rows, counted = [], set()
    for i, node in enumerate(executor.graph.nodes):
        if node.op == "constant":
            continue
        params = ""
        if node.op == "module":
            m = executor.module_at(i)
            kind = repr(m).split("\n")[0]
            if id(m) in counted:
                params = "(shared)"
            else:
                counted.add(id(m))
                params = f"{sum(p.size for p in m.parameters()):,}"
        elif node.op == "call":
            kind = f"{node.target}()"
        elif node.op == "input":
            kind = "Input"
        else:
            value = run.values[i]
            kind = "Parameter" if any(value is p.data for p in model.parameters()) else "buffer"
            params = f"{np.size(value):,}" if kind == "Parameter" else ""
        rows.append((node.name, kind, _shape_text(run.values[i]), params))
    return rows


def _leaf_rows(model, input_shape, dtype):
    dtype = np.dtype(dtype or model.dtype)
    leaves = [(name, m) for name, m in model.named_modules() if not m._modules and name]
    if not leaves:
        leaves = [("", model)]
    shapes = {}

    def recording(name, forward):
        def wrapped(*args, **kwargs):
            out = forward(*args, **kwargs)
            first = out[0] if isinstance(out, tuple) else out
            shapes[name] = tuple(np.shape(first))
            return out
        return wrapped

    was_training = [(m, m.training) for m in model.modules()]
    for name, m in leaves:
        m.forward = recording(name, m.forward)  # instance attribute shadows the method while summarising
    try:
        model.eval()
        with no_side_effects([model]), unfused():  # fused plans would bypass the layers' forwards
            model(np.zeros((1,) + tuple(input_shape), dtype))
    finally:
        for name, m in leaves:
            del m.__dict__["forward"]
        for m, mode in was_training:
            object.__setattr__(m, "training", mode)
    rows = []
    for name, m in leaves:
        count = sum(p.size for p in m._parameters.values())
        rows.append((name or type(m).__name__, repr(m).split("\n")[0], str(shapes.get(name, "-")), f"{count:,}"))
    return rows


def _table(model, rows):
    rows = [("Layer", "Type", "Output shape", "Params")] + rows
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    line = "-" * (sum(widths) + 6)
    fmt = lambda r: "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    total = model.num_parameters()
    trainable = model.num_parameters(trainable_only=True)
    out = [fmt(rows[0]), line, *map(fmt, rows[1:]), line,
           f"Total params: {total:,}", f"Trainable params: {trainable:,}",
           f"Non-trainable params: {total - trainable:,}"]
    return "\n".join(out)
