"""The graph executor: runs a GraphDef over the sub-modules of the module that owns it.

forward walks the nodes in order: a "module" node calls the sub-module's forward (which keeps what its
backward needs, as every layer does), a "call" node runs a functional op and keeps its context. backward
walks the nodes in reverse, giving each node the sum of the gradients of its consumers, and returns the
gradients of the graph inputs.

Planned once (and again only when the model's structure or a parameter's requires_grad changes):
* targets resolved to modules, parameters and buffers, arguments compiled to slot lookups;
* which values need a gradient: from trainable parameters and (unless backward_parameters is the call)
  from floating inputs; a module whose inputs need no gradient gets need_input_grad=False, and nodes that
  lead to nothing trainable are skipped;
* which module nodes share a module (one module called at several places, or a module and one of its
  descendants): their per-call state is saved after each call and put back before that call's backward;
* in eval mode (the owner's), chains of module nodes (each consuming only the previous one's output) that
  a fused plan of fastnn.nn.inference_plan runs in one C++ call (Linear/activation stacks, Conv-BN-
  activation-pooling blocks): the planned forward runs those instead, and a backward after it replays the
  forward layer by layer first (rare: saliency maps in eval mode).
* in training mode, a BatchNorm whose output only a ReLU uses runs it in the same pass (BatchNorm.forward_relu):
  the ReLU's backward step hands its gradient to the batch norm's, which masks it as it reads it; and a
  BatchNorm whose output only an add uses, whose output only a relu uses (relu(bn(x) + s), a residual block's
  tail), runs all three at the add, leaving the add and relu the contexts their own backward steps need. The
  same bits as the separate layers (not under autocast, unfused(), or when every node's value is kept).

Gradient readiness (gradient_ready): a listener registered for one model hears, during that model's backward,
each trainable parameter as soon as its gradient is final: after the backward of the last node (in the backward
walk) that uses it, so a module called at several places is ready only after its last use (its first call in
forward order). fastnn.distributed starts reducing gradient buckets there while backward goes on. Only the
executor whose owner is the listened model reports (the model's whole backward walk); executors of nested
Sequentials/Graphs are part of one node of it. Without a listener, backward pays one attribute read.
"""
import contextlib
import copy
import threading
from threading import get_ident

import numpy as np

from .. import amp
from .activations import ReLU
from .function_ops import OPS, add_arrays
from .graph_def import DimRef, Ref
from .inference_plan import FusedSequencePlan, InferencePlan
from .module import Module, requires_grad_version, structure_version
from .normalization import BatchNorm1d, BatchNorm2d

__all__ = ["Executor", "GraphRunError", "unfused", "fused_plans", "gradient_ready"]

_INPUT, _MODULE, _CALL, _PARAM, _BUFFER, _CONST, _FUSED, _BN_RELU, _BN_ADD_RELU, _PASS = range(10)
_RELU, _ADD = OPS["relu"], OPS["add"]


class _Fusion(threading.local):
    enabled = True


_fusion = _Fusion()


@contextlib.contextmanager
def unfused():
    """Within this block, eval-mode forwards run layer by layer (summary watches every layer)."""
    previous, _fusion.enabled = _fusion.enabled, False
    try:
        yield
    finally:
        _fusion.enabled = previous


class _Listener(threading.local):
    owner = None
    fn = None


_listener = _Listener()


@contextlib.contextmanager
def gradient_ready(model, fn):
    """Within this block, each backward of `model` calls ``fn(params)`` as soon as the gradients of those
    parameters are final, while backward goes on with earlier layers.

    Parameters
    ----------
    model : Module
        A model run by the graph executor: a Sequential, a Graph or a traced module. Other modules run their
        own backward and report nothing (every gradient is final when backward returns).
    fn : callable
        Called with a list of trainable Parameters (each one once per backward), in the order their gradients
        become final: after the backward of the last node that uses them in the backward walk (a module called
        at several places: after its first call in forward order). Parameters that get no gradient in this
        backward are reported too, once the walk has passed every node that could give them one.

    Returns
    -------
    context manager
        Registers the listener for this thread until the block ends (blocks nest: the previous one is put
        back).

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import nn
    >>> from fastnn.nn.executor import gradient_ready
    >>> model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> names = {id(p): n for n, p in model.named_parameters()}
    >>> heard = []
    >>> out = model(np.ones((5, 3), np.float32))
    >>> with gradient_ready(model, lambda params: heard.append([names[id(p)] for p in params])):
    ...     _ = model.backward(np.ones_like(out))
    >>> heard  # the last layer first, each group while the earlier layers' backward is still to run
    [['2.bias', '2.weight'], ['0.bias', '0.weight']]
    """
    previous = (_listener.owner, _listener.fn)
    _listener.owner, _listener.fn = model, fn
    try:
        yield
    finally:
        _listener.owner, _listener.fn = previous


def _ready_lists(executor, plan):
    """For a backward plan: by node i, the parameters whose last use is the step before node i in the walk
    (reported when the walk reaches node i), and the ones whose last use is the final step (reported after).
    A parameter of a module and of an attribute node alike; each parameter once."""
    last = {}  # id(param) -> (position in plan.steps, param)
    for k, step in enumerate(plan.steps):
        i, kind = step[0], step[1]
        if kind == _MODULE:
            found = executor._modules[i].parameters()
        elif kind == _PARAM:
            found = [executor._params[i]]
        else:
            continue
        for p in found:
            if p.requires_grad:
                last[id(p)] = (k, p)
    after = [[] for _ in range(len(plan.steps))]
    for k, p in last.values():
        after[k].append(p)
    for group in after:
        group.reverse()  # within a module: reverse registration order, as optimizers list them reversed
    before = [None] * len(executor._steps)
    for k in range(1, len(plan.steps)):
        if after[k - 1]:
            before[plan.steps[k][0]] = after[k - 1]
    return before, (after[-1] if plan.steps else [])


def fused_plans(module):
    """The fused plans the last eval-mode forward of `module` (a Sequential, Graph or traced module) ran."""
    executor = getattr(module, "executor", None)
    return [] if executor is None or executor._eval is None else [step[2] for step in executor._eval
                                                                    if step[1] == _FUSED]

class GraphRunError(ValueError):
    """A graph cannot run on its owner (a target is missing) or was given wrong inputs."""


def _compile(obj):
    """A function vals -> the argument value, for an argument template of Refs, DimRefs and literals."""
    if isinstance(obj, Ref):
        j, path = obj
        if not path:
            return lambda vals: vals[j]

        def pick(vals):
            v = vals[j]
            for p in path:
                v = v[p]
            return v
        return pick
    if isinstance(obj, DimRef):
        j, path, axis = obj

        def dim(vals):
            v = vals[j]
            for p in path:
                v = v[p]
            return np.shape(v)[axis]
        return dim
    if isinstance(obj, (tuple, list)):
        parts = [_compile(o) for o in obj]
        kind = type(obj)
        return lambda vals: kind(f(vals) for f in parts)
    if isinstance(obj, dict):
        parts = {k: _compile(o) for k, o in obj.items()}
        return lambda vals: {k: f(vals) for k, f in parts.items()}
    if isinstance(obj, slice):
        a, b, c = _compile(obj.start), _compile(obj.stop), _compile(obj.step)
        return lambda vals: slice(a(vals), b(vals), c(vals))
    return lambda vals: obj


def _has_refs(obj):
    if isinstance(obj, (Ref, DimRef)):
        return True
    if isinstance(obj, (tuple, list)):
        return any(_has_refs(o) for o in obj)
    if isinstance(obj, dict):
        return any(_has_refs(o) for o in obj.values())
    if isinstance(obj, slice):
        return any(_has_refs(o) for o in (obj.start, obj.stop, obj.step))
    return False


def _leaf_paths(out, path=()):
    if isinstance(out, (tuple, list)):
        found = []
        for k, o in enumerate(out):
            found.extend(_leaf_paths(o, path + (k,)))
        return found
    return [path]


class _Run:
    """What one forward leaves for its backward."""

    __slots__ = ("ctxs", "states", "leaves", "input_float", "values", "replay", "thread", "fused")

    def __init__(self, n):
        self.ctxs = [None] * n
        self.states = {}
        self.leaves = {}
        self.values = None
        self.replay = None  # the inputs, when a fused forward left no layer caches behind
        self.thread = get_ident()
        self.fused = False  # whether the training-mode fusions ran (their ReLUs' backward steps pass through)

    @classmethod
    def replayed(cls, inputs):
        """The run of a forward that one fused plan did whole: backward replays it first."""
        run = cls.__new__(cls)
        run.replay, run.input_float, run.thread, run.fused = inputs, (True,), get_ident(), False
        return run


class _GradPlan:
    """Which values need a gradient (rg) and the backward steps, in reverse order, of the nodes that do;
    ready: the parameters reported to a gradient_ready listener at each step (built when one first listens)."""
    __slots__ = ("steps", "rg", "ready")


class Executor:
    """Runs `graph` (a GraphDef) on the sub-modules, parameters and buffers of `owner`."""

    def __init__(self, graph, owner):
        self.graph = graph
        self.owner = owner
        self._bound = None
        self._grad_plans = {}
        self._bind()

    def __deepcopy__(self, memo):
        """A copy of a model gets an executor of its own, planned afresh: plans and the last run hold C++
        objects and references to this model's arrays, which a copy must not share."""
        new = Executor.__new__(Executor)
        memo[id(self)] = new
        new.graph = copy.deepcopy(self.graph, memo)
        new.owner = copy.deepcopy(self.owner, memo)  # may still be half-copied here: bind at first use
        new._bound = None
        new._grad_plans = {}
        return new

    # -- planning --------------------------------------------------------------------------------------
    def module_at(self, i):
        """The module node i calls (None for other nodes)."""
        return self._modules[i]

    def _bind(self):
        g, owner = self.graph, self.owner
        steps, shared_sets = [], []
        n = len(g.nodes)
        self._modules = [None] * n
        self._params = [None] * n
        for i, node in enumerate(g.nodes):
            op, target = node.op, node.target
            simple = None
            if node.op in ("module", "call") and not node.kwargs and all(
                    isinstance(a, Ref) and not a.path for a in node.args):
                simple = tuple(a.node for a in node.args)
            getter = None
            if simple is None and node.op in ("module", "call"):
                fa, fk = _compile(node.args), _compile(node.kwargs)
                getter = (fa, fk)
            if op == "input":
                steps.append((i, _INPUT, target, None, None))
            elif op == "module":
                try:
                    m = owner.get_submodule(target)
                except AttributeError:
                    raise GraphRunError(f"{type(owner).__name__}: the graph calls sub-module '{target}', which "
                                        f"the model does not have") from None
                self._modules[i] = m
                shared_sets.append((i, {id(x) for x in m.modules()}))
                steps.append((i, _MODULE, m, simple, getter))
            elif op == "call":
                fn = OPS.get(target)
                if fn is None:
                    raise GraphRunError(f"the graph uses functional op '{target}', which this fastnn does not have")
                steps.append((i, _CALL, fn, simple, getter))
            elif op == "attr":
                holder_path, _, attr = target.rpartition(".")
                try:
                    holder = owner.get_submodule(holder_path)
                except AttributeError:
                    holder = None
                if holder is None or not hasattr(holder, attr):
                    raise GraphRunError(f"{type(owner).__name__}: the graph reads '{target}', which the model "
                                        f"does not have")
                value = getattr(holder, attr)
                if attr in holder._parameters:
                    self._params[i] = value
                    steps.append((i, _PARAM, value, None, None))
                else:
                    steps.append((i, _BUFFER, (holder, attr), None, None))
            else:
                steps.append((i, _CONST, g.constants[target], None, None))
        shared = set()
        for a, (i, si) in enumerate(shared_sets):
            for j, sj in shared_sets[a + 1:]:
                if si & sj:
                    shared.update((i, j))
        self._steps = steps
        self._shared = shared
        self._positional = [tuple(node.args) for node in g.nodes]
        # Positional arguments that are all plain node outputs: backward hands their gradients over directly.
        self._simple_args = [tuple(a.node for a in node.args)
                             if node.args and all(isinstance(a, Ref) and not a.path for a in node.args) else None
                             for node in g.nodes]
        # Module nodes whose backward the executor can call directly (one input, Module's backward_inputs):
        # 2 when it takes need_input_grad, 1 when not, 0 otherwise (backward_inputs).
        self._direct = [0] * n
        for i, m in enumerate(self._modules):
            if m is not None and len(g.nodes[i].args) == 1 and \
                    type(m).backward_inputs is Module.backward_inputs:
                self._direct[i] = 2 if type(m)._backward_takes_flag else 1
        out_refs = []
        _flatten_refs(g.outputs, out_refs)
        self._out_refs = out_refs
        self._out_get = _compile(g.outputs)
        self._out_single = g.outputs.node if isinstance(g.outputs, Ref) and not g.outputs.path else None
        self._grad_plans = {}
        self._eval = self._eval_whole = None
        self._train = self._passes = None
        self._bound = structure_version[0]

    def _grad_plan(self, need_input_grad, input_float, fused=False):
        key = (need_input_grad, input_float, requires_grad_version[0], fused)
        plan = self._grad_plans.get(key)
        if plan is not None:
            return plan
        nodes = self.graph.nodes
        n = len(nodes)
        rg = [False] * n
        nig = [False] * n
        needs = [None] * n

        def arg_needs(a):
            if isinstance(a, Ref):
                return rg[a.node]
            if isinstance(a, (tuple, list)):
                return [arg_needs(x) for x in a]
            return False

        def any_need(flags):
            if isinstance(flags, list):
                return any(any_need(f) for f in flags)
            return bool(flags)

        for i, node in enumerate(nodes):
            if node.op == "input":
                rg[i] = need_input_grad and input_float[node.target]
            elif node.op == "attr":
                rg[i] = self._params[i] is not None and self._params[i].requires_grad
            elif node.op in ("module", "call"):
                flags = [arg_needs(a) for a in node.args]
                needs[i] = flags
                nig[i] = any_need(flags)
                rg[i] = nig[i]
                if node.op == "module" and not rg[i]:
                    rg[i] = any(p.requires_grad for p in self._modules[i].parameters())
        plan = _GradPlan()
        plan.rg = rg
        plan.ready = None
        passes = self._passes if fused else {}
        plan.steps = [(i, self._steps[i][1], self._steps[i][2], self._simple_args[i], self._direct[i],
                       self._positional[i], nig[i], needs[i]) if i not in passes else
                      (i, _PASS, None, (passes[i],), 0, None, nig[i], needs[i])
                      for i in range(n - 1, -1, -1) if rg[i]]
        if len(self._grad_plans) > 8:
            self._grad_plans.clear()
        self._grad_plans[key] = plan
        return plan

    @property
    def num_outputs(self):
        """How many arrays the graph returns (leaves of its output structure)."""
        return len(self._out_refs)

    def _eval_steps(self):
        """The steps of an eval-mode forward: chains of module nodes that a fused plan runs are one step
        (i, _FUSED, plan, first node's input, chain's nodes), built again when a plan goes stale."""
        if self._eval is not None:
            for s in self._eval:
                if s[1] == _FUSED and not s[2].valid():
                    break
            else:
                return self._eval
        steps, nodes = self._steps, self.graph.nodes
        consumers = [0] * len(steps)
        for node in nodes:
            for r in node.refs():
                consumers[r.node] += 1
        for r in self._out_refs:
            consumers[r.node] += 2  # a graph output ends a chain
        result, i = [], 0
        while i < len(steps):
            step = steps[i]
            chain = [i]
            if step[1] == _MODULE and step[3] is not None and len(step[3]) == 1:
                j = i
                while (j + 1 < len(steps) and steps[j + 1][1] == _MODULE and steps[j + 1][3] == (j,)
                       and consumers[j] == 1):
                    j += 1
                    chain.append(j)
                modules = [steps[k][2] for k in chain]
                plan = InferencePlan.build(modules) or FusedSequencePlan.build(modules)
                if plan:
                    result.append((chain[-1], _FUSED, plan, step[3][0], chain))
                    i = chain[-1] + 1
                    continue
            result.append(step)
            i += 1
        self._eval = result
        # A graph that is one input and one fused chain (an eval-mode Sequential MLP or CNN): a direct call.
        self._eval_whole = result[1][2] if len(result) == 2 and result[0][1] == _INPUT and \
            result[1][1] == _FUSED and self._out_single == result[1][0] else None
        return result

    def _train_steps(self):
        """The steps of a training-mode forward with its BatchNorm fusions (None when there are none):
        (bn, _BN_RELU, module, bn's input node, relu node) for a BatchNorm whose output only a ReLU (the relu
        op or a ReLU module without cap) uses, the relu's step dropped, self._passes[relu] = bn; and
        (add, _BN_ADD_RELU, module, (bn's input, shortcut, bn, add's inputs), relu) for relu(bn(x) + s), the
        bn and relu steps dropped (the shortcut may be computed after the bn: the step runs at the add).
        A BatchNorm called at several places (state saved per call) does not fuse."""
        if self._train is not None:
            return self._train or None
        steps, nodes = self._steps, self.graph.nodes
        users = [[] for _ in steps]
        for k, node in enumerate(nodes):
            for r in node.refs():
                users[r.node].append(k)
        for r in self._out_refs:
            users[r.node].append(-1)  # a graph output is used outside

        def only_relu(j, src):  # whether node j is a plain relu of node src, src's value used by it alone
            kind, fn, simple = steps[j][1], steps[j][2], steps[j][3]
            return simple == (src,) and (fn is _RELU if kind == _CALL else
                                         kind == _MODULE and type(fn) is ReLU and fn.max_value is None)

        replace, passes = {}, {}
        for i, kind, fn, simple, _ in steps:
            if kind != _MODULE or type(fn) not in (BatchNorm1d, BatchNorm2d) or simple is None or \
                    len(simple) != 1 or len(users[i]) != 1 or users[i][0] < 0 or i in self._shared:
                continue
            j = users[i][0]
            if only_relu(j, i):
                replace[i], replace[j] = (i, _BN_RELU, fn, simple[0], j), None
                passes[j] = i
                continue
            add = steps[j][3]
            if j in replace or steps[j][1] != _CALL or steps[j][2] is not _ADD or add is None or len(users[j]) != 1 or \
                    users[j][0] < 0 or steps[users[j][0]][1] != _CALL or not only_relu(users[j][0], j):
                continue
            if any(steps[k][1] == _BUFFER for k in range(i + 1, j)):
                continue  # something between the two reads the batch norm's buffers: keep its place
            other = add[1] if add[0] == i else add[0]
            replace[i], replace[users[j][0]] = None, None
            replace[j] = (j, _BN_ADD_RELU, fn, (simple[0], other, i, add), users[j][0])
        self._passes = passes
        self._train = [replace.get(s[0], s) for s in steps if replace.get(s[0], s) is not None] if replace \
            else []
        return self._train or None

    # -- forward ---------------------------------------------------------------------------------------
    def forward(self, inputs, keep_values=False):
        """(outputs, run) for a list of input arrays, one per graph input. keep_values: run.values holds
        every node's output (summary uses it)."""
        if self._bound != structure_version[0]:
            self._bind()
        steps = steps_all = self._steps
        fused = False
        if self.owner.training:
            if _fusion.enabled and not keep_values and not amp.is_autocast_enabled():
                train = self._train_steps() if self._train is None else (self._train or None)
                if train is not None:
                    steps, fused = train, True
        # Under autocast an eval-mode forward runs layer by layer: the fused plans are float32 only.
        elif _fusion.enabled and not keep_values and not amp.is_autocast_enabled():
            whole = self._eval_whole
            if whole is not None and whole.valid():
                out = whole.forward(inputs[0])
                if out is not None:
                    return out, _Run.replayed(inputs)
            else:
                steps = self._eval_steps()
        vals = [None] * len(self._steps)
        run = _Run(len(vals))
        run.fused = fused
        ctxs, shared, leaves = run.ctxs, self._shared, run.leaves
        for i, kind, fn, simple, getter in steps:
            if kind == _MODULE:
                if simple is None:
                    out = fn.forward(*getter[0](vals), **getter[1](vals))
                elif len(simple) == 1:
                    out = fn.forward(vals[simple[0]])
                else:
                    out = fn.forward(*[vals[j] for j in simple])
                vals[i] = out
                if type(out) is tuple or type(out) is list:
                    leaves[i] = _leaf_paths(out)
                if shared and i in shared:
                    run.states[i] = fn.save_call_state()
            elif kind == _CALL:
                if simple is None:
                    vals[i], ctxs[i] = fn.forward(*getter[0](vals), **getter[1](vals))
                else:
                    vals[i], ctxs[i] = fn.forward(*[vals[j] for j in simple])
            elif kind == _INPUT:
                vals[i] = inputs[fn]
            elif kind == _PARAM:
                vals[i] = fn.data
            elif kind == _BUFFER:
                vals[i] = getattr(*fn)
            elif kind == _CONST:
                vals[i] = fn
            elif kind == _BN_RELU:  # simple: the batch norm's input node, getter: the relu node
                vals[getter] = fn.forward_relu(vals[simple])
            elif kind == _BN_ADD_RELU:  # i: the add node, simple: (bn input, shortcut, bn, add's inputs)
                s = vals[simple[1]]
                y = fn.forward_relu(vals[simple[0]], s)
                if y is None:  # a sum that broadcasts or changes dtype: the three ops
                    vals[simple[2]] = fn.forward(vals[simple[0]])
                    vals[i], ctxs[i] = _ADD.forward(*[vals[j] for j in simple[3]])
                    vals[getter], ctxs[getter] = _RELU.forward(vals[i])
                else:
                    ctxs[i] = _ADD.context_of(s, s)
                    vals[getter], ctxs[getter] = y, _RELU.context_from_output(y)
            else:  # _FUSED: simple is the chain's input node, getter its nodes
                out = fn.forward(vals[simple])
                if out is None:  # not for this input: layer by layer (which raises the layer's own errors)
                    out = vals[simple]
                    for k in getter:
                        out = steps_all[k][2].forward(out)
                else:
                    run.replay = inputs
                vals[i] = out
        run.input_float = tuple([x.dtype.kind == "f" if type(x) is np.ndarray else np.asarray(x).dtype.kind == "f"
                                 for x in inputs])
        if keep_values:
            run.values = vals
        out = self._out_single
        return (vals[out] if out is not None else self._out_get(vals)), run

    # -- backward --------------------------------------------------------------------------------------
    def backward(self, run, grad_outputs, need_input_grad=True):
        """Gradients of the graph inputs (a list, None for inputs that get none) given one gradient per
        output leaf (None: zeros); parameter gradients are accumulated on the way."""
        refs = self._out_refs
        if len(grad_outputs) != len(refs):
            raise GraphRunError(f"{type(self.owner).__name__}: backward got {len(grad_outputs)} gradients for "
                                f"{len(refs)} outputs")
        if run.thread != get_ident():
            raise RuntimeError(f"{type(self.owner).__name__}: backward on another thread than its forward; one "
                               f"model used from several threads needs each forward/backward pair under "
                               f"model.lock() (fastnn.Trainer takes it), or one model per thread")
        if run.replay is not None:  # the forward ran fused: run it again layer by layer, for the caches
            with unfused():
                _, replayed = self.forward(run.replay)
            run.__init__(0)
            for name in _Run.__slots__:
                setattr(run, name, getattr(replayed, name))
        plan = self._grad_plan(bool(need_input_grad), run.input_float, run.fused)
        rg = plan.rg
        n = len(self._steps)
        grads = [None] * n     # gradient of each node's output (path ())
        owned = [False] * n    # whether that array is ours to add into
        acc = _Accumulator(grads, owned, rg)
        single = self._out_single
        if single is not None:
            if rg[single]:
                grads[single] = grad_outputs[0]
        else:
            for r, g in zip(refs, grad_outputs):
                if g is not None:
                    acc.give(r, g)
        ctxs, leaves, states = run.ctxs, run.leaves, run.states
        inputs = {}
        listen = _listener.fn if _listener.owner is self.owner else None
        if listen is not None:
            if plan.ready is None:
                plan.ready = _ready_lists(self, plan)
            ready_before, ready_last = plan.ready
        for i, kind, fn, simple, call, args, flag, need in plan.steps:
            if listen is not None and ready_before[i] is not None:
                listen(ready_before[i])
            if kind == _MODULE:
                if leaves and i in leaves:
                    gouts = tuple([acc.take(i, p) for p in leaves[i]])
                    if all(x is None for x in gouts):
                        continue
                else:
                    g = grads[i]
                    if g is None:
                        continue
                    grads[i] = None
                    gouts = (g,)
                if states:
                    state = states.get(i)
                    if state is not None:
                        Module.restore_call_state(state)
                if call == 2:  # the usual layer: backward(grad, need_input_grad=...) with one input
                    res = (fn.backward(*gouts, need_input_grad=flag),)
                elif call == 1:
                    res = (fn.backward(*gouts),)
                else:
                    res = fn.backward_inputs(gouts, flag, len(args))
                if not flag:
                    continue
            elif kind == _CALL:
                g = grads[i]
                if g is None:
                    continue
                grads[i] = None
                res = fn.backward(ctxs[i], g, need)
            elif kind == _PASS:  # a ReLU run by the batch norm before it, whose backward masks the gradient
                g = grads[i]
                if g is not None:
                    j = simple[0]
                    grads[i], grads[j], owned[j] = None, g, owned[i]
                continue
            elif kind == _PARAM:
                g = grads[i]
                if g is not None:
                    grads[i] = None
                    fn.add_grad(g)
                continue
            else:
                if kind == _INPUT:
                    inputs[fn] = grads[i]
                continue
            if simple is not None:
                for j, gk in zip(simple, res):
                    if gk is not None and rg[j]:
                        if type(gk) is tuple or type(gk) is list:  # a structured value: its parts
                            acc.give(Ref(j, ()), gk)
                            continue
                        _add_gradient(grads, owned, j, gk)
            else:
                for tpl, gk in zip(args, res):
                    acc.give(tpl, gk)
        if listen is not None and ready_last:
            listen(ready_last)
        if not inputs:
            return [None] * len(run.input_float)
        return [inputs.get(k) for k in range(len(run.input_float))]


def _add_gradient(grads, owned, key, g):
    """grads[key] += g. The first gradient is stored as given; a second one makes a new array, which later ones
    are added into (never into an array someone else handed over). grads/owned: lists by node, or a dict and
    a set by (node, path)."""
    cur = grads[key] if type(grads) is list else grads.get(key)
    if cur is None:
        grads[key] = g
    elif key in owned if type(owned) is set else owned[key]:
        cur += g
    else:
        grads[key] = add_arrays(cur, g)
        if type(owned) is set:
            owned.add(key)
        else:
            owned[key] = True


class _Accumulator:
    """Sums gradients per value: node outputs in `grads` (by node), parts of structured outputs in a dict
    (by (node, path))."""

    __slots__ = ("grads", "owned", "rg", "parts", "owned_parts")

    def __init__(self, grads, owned, rg):
        self.grads, self.owned, self.rg = grads, owned, rg
        self.parts, self.owned_parts = {}, set()

    def give(self, tpl, g):
        if g is None:
            return
        if isinstance(tpl, Ref):
            j = tpl.node
            if not self.rg[j]:
                return
            if isinstance(g, (tuple, list)):
                for k, gk in enumerate(g):
                    self.give(Ref(j, tpl.path + (k,)), gk)
            elif not tpl.path:
                _add_gradient(self.grads, self.owned, j, g)
            else:
                _add_gradient(self.parts, self.owned_parts, (j, tpl.path), g)
        elif isinstance(tpl, (tuple, list)):
            for t, gk in zip(tpl, g):
                self.give(t, gk)

    def take(self, node, path):
        """The gradient of one leaf of a structured output (removed)."""
        return self.parts.pop((node, path), None)


def _flatten_refs(obj, out):
    if isinstance(obj, Ref):
        out.append(obj)
    elif isinstance(obj, (tuple, list)):
        for o in obj:
            _flatten_refs(o, out)
