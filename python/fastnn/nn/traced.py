"""Modules that write no backward: their forward is traced into a graph, and backward runs it in reverse.

The first call for a kind of input (the structure of the arguments, each array's ndim and dtype, and the
training mode) records the forward (fastnn.nn.tracing) on the real input, with side effects undone
(random stream, batch-norm statistics), and plans an Executor for it; that call and every later one of the
same kind run the executor. A trace that used a size as a number (x.shape[0] * 2, len(x), if x.shape[1]
== 3) holds only for inputs with the sizes it read (GraphDef.holds_for: those axes of those inputs, or the
whole input shapes when it read a size of an intermediate value), and is kept beside the traces of other sizes.

Traced modules inside a traced forward are recorded into the same graph (inlined), so a model of blocks
is one flat graph; modules with a backward of their own are single nodes. fastnn.nn installs a
GraphRuntime into Module, which calls it for modules that write no backward.
"""
import inspect
from collections import OrderedDict

import numpy as np

from . import module as _module
from .executor import Executor
from .module import structure_version
from .tracing import Session, build_graph, input_value, no_side_effects, record_module

__all__ = ["trace", "graph_of", "example_inputs", "TracedTrace", "GraphRuntime"]

_MAX_TRACES = 16


class _Slot:
    """Marks where an input array sits in the arguments."""
    __slots__ = ("index",)

    def __init__(self, index):
        self.index = index

    def __eq__(self, other):
        return isinstance(other, _Slot) and other.index == self.index

    def __hash__(self):
        return hash(("slot", self.index))


class _ListArg(tuple):
    """A list argument inside a skeleton: hashable like a tuple (skeletons key the trace cache), never equal
    to one, and given back to forward as a list."""

    __slots__ = ()

    def __eq__(self, other):
        return type(other) is _ListArg and tuple.__eq__(self, other)

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash((_ListArg, tuple(self)))


def _split_inputs(args, kwargs):
    """(arrays, skeleton): the array leaves of the arguments and the arguments with _Slots in their place."""
    arrays = []

    def walk(o):
        if isinstance(o, np.ndarray):
            arrays.append(o)
            return _Slot(len(arrays) - 1)
        if type(o) is tuple:
            return tuple(walk(x) for x in o)
        if type(o) is list:
            return _ListArg(walk(x) for x in o)
        if isinstance(o, (np.generic, float, int, str, bool)) or o is None:
            return o
        if isinstance(o, (list, tuple)):  # namedtuples and other sequences: as tuples
            return tuple(walk(x) for x in o)
        try:
            hash(o)
        except TypeError:
            raise TypeError(f"traced forward: arguments must be arrays, tuples/lists of arrays or hashable "
                            f"constants, got {type(o).__name__}") from None
        return o
    skeleton = (tuple(walk(a) for a in args), tuple(sorted((k, walk(v)) for k, v in kwargs.items())))
    return arrays, skeleton


# Skeletons of forward(a0, a1, ...) with arrays only, the usual call.
_PLAIN = [((tuple(_Slot(k) for k in range(n))), ()) for n in range(8)]


def _fill(skeleton, values):
    def walk(o):
        if isinstance(o, _Slot):
            return values[o.index]
        if type(o) is tuple:
            return tuple(walk(x) for x in o)
        if type(o) is _ListArg:
            return [walk(x) for x in o]
        return o
    args, kwargs = skeleton
    return walk(args), {k: walk(v) for k, v in kwargs}


def _input_names(user_forward, module, skeleton, n):
    """Names of the input arrays from the forward's parameter names (x, or hx_0, hx_1 for a tuple)."""
    names = [None] * n
    try:
        params = list(inspect.signature(user_forward).parameters)[1:]
    except (TypeError, ValueError):
        params = []
    args, kwargs = skeleton

    def walk(o, base):
        if isinstance(o, _Slot):
            names[o.index] = base
        elif type(o) in (tuple, _ListArg):
            for k, x in enumerate(o):
                walk(x, f"{base}_{k}")
    for k, a in enumerate(args):
        walk(a, params[k] if k < len(params) else f"input_{k}")
    for key, v in kwargs:
        walk(v, key)
    return [nm or f"input_{k}" for k, nm in enumerate(names)]


class TracedTrace:
    """One trace of a module: its GraphDef, executor, and what makes it stale."""

    __slots__ = ("graph", "executor", "inlined", "version", "paths", "skeleton")

    def __init__(self, graph, executor, inlined, paths, skeleton):
        self.graph, self.executor, self.skeleton = graph, executor, skeleton
        self.inlined, self.paths = inlined, paths
        self.version = structure_version[0]

    def valid(self, root):
        for m, mode in self.inlined:
            if m.training != mode:
                return False
        if self.version != structure_version[0]:
            for (m, _), path in zip(self.inlined, self.paths):
                try:
                    if root.get_submodule(path) is not m:
                        return False
                except AttributeError:
                    return False
            self.version = structure_version[0]
        return True


def trace(module, *args, **kwargs):
    """Trace `module`'s forward on these arguments (arrays) and return its TracedTrace, without running it
    for real; fastnn.save and summary use it."""
    user_forward = type(module).forward.__wrapped__
    arrays, skeleton = _split_inputs(args, kwargs)
    return _trace(module, user_forward, arrays, skeleton)


def _trace(module, user_forward, arrays, skeleton):
    session = Session(module)
    names = _input_names(user_forward, module, skeleton, len(arrays))
    with no_side_effects([module]), session.active():
        values = [input_value(k, (a,), session, names[k]) for k, a in enumerate(arrays)]
        v_args, v_kwargs = _fill(skeleton, values)
        out = user_forward(module, *v_args, **v_kwargs)

    def to_value(o):
        if isinstance(o, np.ndarray) or isinstance(o, _module.Parameter):
            return session.leaf(o)
        if type(o) in (tuple, list):
            return type(o)(to_value(x) for x in o)
        return o
    out = to_value(out)
    paths = session.module_paths
    graph = build_graph(session.records, values, out, lambda r: paths[id(r.target)], lambda r: r.name, names)
    if session.specialized_at is not None:
        graph.specialized = {"where": session.specialized_at,
                             "shapes": [list(np.shape(a)) for a in arrays],
                             "axes": None if session.fixed_other else session.fixed_axes}
    inlined_paths = [paths[id(m)] for m, _ in session.inlined]
    return TracedTrace(graph, Executor(graph, module), session.inlined, inlined_paths, skeleton)


class GraphRuntime:
    """What Module calls for traced modules (installed by fastnn.nn): forward and backward through their
    graphs, and summary (given the function that tabulates a model)."""

    def __init__(self, summarize):
        self._summarize = summarize

    def summary(self, module, input_shape, dtype):
        return self._summarize(module, input_shape, dtype)

    def forward(self, module, user_forward, args, kwargs):
        if _module._symbolic_in(args, kwargs) is not None:  # forward called on traced values: inline
            return record_module(module, args, kwargs)
        if not kwargs and all(type(a) is np.ndarray for a in args):  # the common call: arrays only
            arrays, skeleton = args, _PLAIN[len(args)] if len(args) < len(_PLAIN) else _split_inputs(args, {})[1]
        else:
            arrays, skeleton = _split_inputs(args, kwargs)
        d = module.__dict__
        traces = d.get("_traces")
        if traces is None:
            traces = d["_traces"] = OrderedDict()
        key = (module.training, skeleton, tuple([(a.ndim, a.dtype) for a in arrays]))
        entry = traces.get(key)
        if isinstance(entry, dict):  # traces that fixed some input sizes: one that holds for these inputs
            shapes = [a.shape for a in arrays]
            entry = next((e for e in entry.values() if e.graph.holds_for(shapes)), None)
        if entry is None or not entry.valid(module):
            entry = _trace(module, user_forward, arrays, skeleton)
            if entry.graph.specialized is not None:
                per_shape = traces.get(key)
                if not isinstance(per_shape, dict):
                    per_shape = traces[key] = {}
                if len(per_shape) >= _MAX_TRACES:
                    per_shape.pop(next(iter(per_shape)))
                per_shape[tuple(a.shape for a in arrays)] = entry
            else:
                traces[key] = entry
            if len(traces) > _MAX_TRACES:
                traces.popitem(last=False)
        out, run = entry.executor.forward(list(arrays))
        d["_graph_run"] = (entry, run)
        return out

    def backward(self, module, grad_outputs, need_input_grad):
        last = module.__dict__.get("_graph_run")
        if last is None:
            raise ValueError(f"{type(module).__name__}: backward() called before forward()")
        entry, run = last
        n_out = entry.executor.num_outputs
        grads = list(grad_outputs)
        if len(grads) > n_out:
            raise ValueError(f"{type(module).__name__}: backward got {len(grads)} gradients, but forward returned "
                             f"{n_out} output{'s' if n_out != 1 else ''}")
        grads += [None] * (n_out - len(grads))
        inputs = entry.executor.backward(run, grads, need_input_grad)
        if not need_input_grad:
            return None
        templates = entry.skeleton[0]
        args, _ = _fill(entry.skeleton, inputs)
        args = tuple(a if _holds_input(t) else None for t, a in zip(templates, args))
        return args[0] if len(args) == 1 else args


def _holds_input(template):
    if isinstance(template, _Slot):
        return True
    return type(template) in (tuple, _ListArg) and any(_holds_input(t) for t in template)


def example_inputs(module):
    """(args, kwargs) shaped like the module's most recent input, every array 0.5 (zeros for integers) with
    a batch of 2 (its exact shape if the trace holds for that shape only); None if it never ran."""
    last = module.__dict__.get("_graph_run")
    if last is None:
        return None
    entry = last[0]
    graph = entry.graph
    shapes = graph.specialized["shapes"] if graph.specialized else None
    arrays = []
    for k, spec in enumerate(graph.inputs):
        shape = tuple(shapes[k]) if shapes else (2,) + tuple(spec.shape)
        dtype = np.dtype(spec.dtype)
        arrays.append(np.full(shape, 0.5, dtype) if dtype.kind == "f" else np.zeros(shape, dtype))
    return _fill(entry.skeleton, arrays)


def graph_of(module):
    """The GraphDef of a traced module's most recent trace, or None if it never ran."""
    last = module.__dict__.get("_graph_run")
    return None if last is None else last[0].graph


