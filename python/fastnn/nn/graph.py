"""Keras-style models: symbolic inputs, modules called on them, and a Graph of inputs and outputs.

    inp = fnn.nn.Input(shape=(3, 32, 32))            # the batch axis is left out
    h = fnn.nn.ReLU()(fnn.nn.Conv2d(3, 3, 3, padding=1)(inp))
    model = fnn.nn.Graph(inputs=inp, outputs=fnn.nn.Linear(3 * 32 * 32, 10)(fnn.nn.Flatten()(h + inp)))

Graph(inputs, outputs) takes one Input or a list of them, and one output value or a tuple/list of them.
Its sub-modules are named after their classes (conv2d, re_lu? no: relu, linear, linear_1, ...) in the order
they were first called; a module called several times shares its weights, and their gradients add up.
Sub-modules that are traced themselves (a Module subclass without backward) are recorded into the graph
and keep their own names inside it ("block.conv").

forward(*inputs) returns the output (a tuple for several); backward(*grads) takes one gradient per output
(None: zeros) and returns the input gradients (None for integer inputs). A Graph can also be built from a
GraphDef (fastnn.load, traced models exported with `Graph.from_module`), possibly with one GraphDef per
training mode when the model's forward branches on self.training.
"""
from collections import OrderedDict

import numpy as np

from .executor import Executor
from .module import Module, Parameter
from .traced import example_inputs, trace
from .tracing import TraceError, Value, build_graph, reachable_records, snake_name, input_value

__all__ = ["Input", "Graph", "example_inputs"]

# Keras-style values carry two examples whose batch sizes (and sizes of None axes) differ, so the sizes that
# depend on them are known to be dynamic.
_EXAMPLE_BATCH = (2, 3)
_EXAMPLE_FREE = (5, 7)


def Input(shape, dtype="float32", name=None):
    """A symbolic input of a Keras-style graph.

    Call modules and :mod:`fastnn.nn.functional` ops on it (and on what they return) to record a graph,
    then collect inputs and outputs in a :class:`Graph`.

    Parameters
    ----------
    shape : int or tuple of (int or None)
        The shape of one sample, without the batch axis; None for a free size (a sequence length).
    dtype : str or numpy.dtype, default "float32"
        ``"int64"`` for indices (embeddings); integer inputs get no gradient.
    name : str, optional
        The input's name in the graph (default ``"input"``, ``"input_1"``, ...).

    Returns
    -------
    Value
        A symbolic value.

    Raises
    ------
    ValueError
        For negative sizes.

    See Also
    --------
    Graph

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> x = fnn.nn.Input(shape=(16,))
    >>> ids = fnn.nn.Input(shape=(4,), dtype="int64", name="ids")
    >>> h = fnn.nn.Linear(16, 8)(x) + fnn.nn.EmbeddingBag(100, 8)(ids)
    >>> model = fnn.nn.Graph(inputs=[x, ids], outputs=fnn.nn.Linear(8, 1)(h))
    >>> model(np.ones((3, 16), np.float32), np.zeros((3, 4), np.int64)).shape
    (3, 1)
    """
    if isinstance(shape, int):
        shape = (shape,)
    shape = tuple(None if s is None else int(s) for s in shape)
    if any(s is not None and s < 0 for s in shape):
        raise ValueError(f"Input: sizes must be >= 0 or None, got {shape}")
    dtype = np.dtype(dtype)
    examples = []
    for batch, free in zip(_EXAMPLE_BATCH, _EXAMPLE_FREE):
        full = (batch,) + tuple(free if s is None else s for s in shape)
        examples.append(np.full(full, 0.5, dtype) if dtype.kind == "f" else np.zeros(full, dtype))
    return input_value(None, examples, None, name)


class _Namer:
    """Names for the modules and parameters a Keras-style graph uses, and the objects to register."""

    def __init__(self, owner):
        self.owner = owner
        self.top = OrderedDict()      # name -> Module or Parameter registered on the Graph
        self.by_id = {}
        self.counts = {}

    def _unique(self, base):
        n = self.counts.get(base, 0)
        self.counts[base] = n + 1
        name = base if n == 0 else f"{base}_{n}"
        if hasattr(type(self.owner), name) or name in self.owner.__dict__:
            return self._unique(base + "_")
        return name

    def top_name(self, obj, base):
        name = self.by_id.get(id(obj))
        if name is None:
            name = self._unique(base)
            self.by_id[id(obj)] = name
            self.top[name] = obj
        return name

    def _inside(self, scope, obj, kind):
        items = scope.named_modules() if kind == "module" else scope.named_parameters()
        for path, x in items:
            if x is obj:
                return path
        return None

    def module_path(self, rec):
        m, scope = rec.target, rec.scope
        if scope is not None:
            inner = self._inside(scope, m, "module")
            if inner is not None:
                return self.top_name(scope, snake_name(scope)) + "." + inner
        return self.top_name(m, snake_name(m))

    def attr_name(self, rec):
        p, scope = rec.target, rec.scope
        if not isinstance(p, Parameter):
            raise TraceError("Graph: a buffer array was recorded as an attribute")
        if scope is not None:
            inner = self._inside(scope, p, "parameter")
            if inner is not None:
                return self.top_name(scope, snake_name(scope)) + "." + inner
        return self.top_name(p, "parameter")


class Graph(Module):
    """A model given as a graph of module calls and functional ops, built Keras-style from :func:`Input` values.

    Forward runs the nodes in order; backward is automatic (the graph run in reverse); a module used at
    several nodes shares its weights. Graphs save and load with :func:`fastnn.save` / :func:`fastnn.load` as
    data, and ``summary()`` lists their nodes. Several inputs: ``model(a, b)``; several outputs: forward returns
    a tuple and backward takes one gradient per output.

    Parameters
    ----------
    inputs : Value or list of Value
        Values made by :func:`Input`.
    outputs : Value or list/tuple of Value
        Values computed from them.

    Shape
    -----
    - Input: one array per :func:`Input`, with a batch axis in front.
    - Output: one array per output.

    Raises
    ------
    TypeError
        If an input is not made by :func:`Input`.
    ValueError
        If an input is given twice, names repeat, or an output does not depend on the inputs.

    See Also
    --------
    Input, Sequential

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> nn = fnn.nn
    >>> inp = nn.Input(shape=(3, 8, 8))
    >>> h = nn.ReLU()(nn.Conv2d(3, 3, 3, padding=1)(inp))
    >>> model = nn.Graph(inputs=inp, outputs=nn.Linear(3 * 8 * 8, 10)(nn.Flatten()(h + inp)))
    >>> y = model(np.zeros((2, 3, 8, 8), np.float32))
    >>> y.shape, model.backward(np.ones_like(y)).shape
    ((2, 10), (2, 3, 8, 8))
    """

    def __init__(self, inputs, outputs):
        super().__init__()
        inputs = [inputs] if isinstance(inputs, Value) else list(inputs)
        for k, v in enumerate(inputs):
            if not isinstance(v, Value) or v._rec.op != "input" or v._rec.session is not None:
                raise TypeError(f"Graph: input {k} must be a value made by fastnn.nn.Input, got {v!r:.60}")
        if len({id(v._rec) for v in inputs}) != len(inputs):
            raise ValueError("Graph: the same Input is given twice")
        records = reachable_records(outputs)
        namer = _Namer(self)
        names = [v._rec.name or ("input" if k == 0 else f"input_{k}") for k, v in enumerate(inputs)]
        if len(set(names)) != len(names):
            raise ValueError(f"Graph: input names must be unique, got {names}")
        graph = build_graph(records, inputs, outputs, namer.module_path, namer.attr_name, names)
        for name, obj in namer.top.items():
            setattr(self, name, obj)
        self._set_graphs(graph, None)

    @classmethod
    def from_graph_def(cls, graph, children, eval_graph=None):
        """A Graph running `graph` (a GraphDef) over `children` (name -> Module or Parameter, registered in that
        order); `eval_graph` runs instead in eval mode when given."""
        self = cls.__new__(cls)
        Module.__init__(self)
        for name, obj in children.items():
            if hasattr(cls, name) or name in self.__dict__:
                raise ValueError(f"Graph: a sub-module or parameter cannot be named '{name}' (a Graph attribute)")
            setattr(self, name, obj)
        self._set_graphs(graph, eval_graph)
        return self

    def check_targets(self):
        """Raises ValueError when a graph names a sub-module, parameter or buffer the Graph does not have."""
        for graph in self._graphs:
            if graph is not None:
                Executor(graph, self)

    @classmethod
    def from_module(cls, module, *args, **kwargs):
        """The Graph that a traced module (a Module subclass without backward) traces to on these example
        inputs, sharing its sub-modules and parameters (same names). When the forward branches on
        self.training the Graph holds both traces."""
        if not type(module).traced:
            raise TypeError(f"Graph.from_module: {type(module).__name__} writes its own backward; only traced "
                            f"modules (no backward) convert to a Graph")
        modes = [(m, m.training) for m in module.modules()]
        try:
            module.train()
            train_graph = trace(module, *args, **kwargs).graph
            module.eval()
            eval_graph = trace(module, *args, **kwargs).graph
        finally:
            for m, mode in modes:
                object.__setattr__(m, "training", mode)
        children = OrderedDict(list(module._parameters.items()) + list(module._modules.items()))
        g = cls.from_graph_def(train_graph, children, None if eval_graph.same_as(train_graph) else eval_graph)
        for name, b in module._buffers.items():
            g.register_buffer(name, b)
        object.__setattr__(g, "training", module.training)
        return g

    def _set_graphs(self, graph, eval_graph):
        object.__setattr__(self, "_graphs", (graph, eval_graph))
        object.__setattr__(self, "_executors", [None, None])
        object.__setattr__(self, "_run", None)

    @property
    def graph(self):
        """The GraphDef this Graph runs in its current mode."""
        train_graph, eval_graph = self._graphs
        return eval_graph if (eval_graph is not None and not self.training) else train_graph

    def graphs(self):
        """(train-mode GraphDef, eval-mode GraphDef or None when both modes run the same graph)."""
        return self._graphs

    def _executor(self):
        k = 1 if (self._graphs[1] is not None and not self.training) else 0
        ex = self._executors[k]
        if ex is None:
            ex = self._executors[k] = Executor(self._graphs[k], self)
        return ex

    def forward(self, *inputs):
        ex = self._executor()
        specs = ex.graph.inputs
        if len(inputs) != len(specs):
            raise ValueError(f"Graph: expected {len(specs)} input{'s' if len(specs) != 1 else ''} "
                             f"({', '.join(s.name for s in specs)}), got {len(inputs)}")
        inputs = [x if isinstance(x, np.ndarray) else np.asarray(x) for x in inputs]
        for x, spec in zip(inputs, specs):
            if spec.shape is not None and (x.ndim != len(spec.shape) + 1 or any(
                    s is not None and s != t for s, t in zip(spec.shape, x.shape[1:]))):
                want = "(N, " + ", ".join("?" if s is None else str(s) for s in spec.shape) + ")"
                raise ValueError(f"Graph: input '{spec.name}' must have shape {want}, got {x.shape}")
        if not ex.graph.holds_for([x.shape for x in inputs]):
            raise ValueError(f"Graph: this graph was traced for {ex.graph.fixed_sizes()} (its forward used a size "
                             f"as a number at {ex.graph.specialized['where']}); got "
                             f"{[list(x.shape) for x in inputs]}")
        out, run = ex.forward(inputs)
        self._run = (ex, run)
        return out

    def backward(self, *grad_outputs, need_input_grad=True):
        if self._run is None:
            raise ValueError("Graph: backward() called before forward()")
        ex, run = self._run
        n_out = ex.num_outputs
        grads = list(grad_outputs)
        if len(grads) > n_out:
            raise ValueError(f"Graph: backward got {len(grads)} gradients for {n_out} outputs")
        grads += [None] * (n_out - len(grads))
        res = ex.backward(run, grads, need_input_grad)
        if not need_input_grad:
            return None
        return res[0] if len(res) == 1 else tuple(res)

    def backward_inputs(self, grad_outputs, need_input_grad, num_inputs):
        res = self.backward(*grad_outputs, need_input_grad=need_input_grad)
        return (res,) if num_inputs == 1 else (res if res is not None else (None,) * num_inputs)

    def extra_repr(self):
        g = self.graph
        return f"inputs={[i.name for i in g.inputs]}, nodes={len(g.nodes)}"
