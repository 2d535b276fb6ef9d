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
  descendants): their per-call state is saved after each call and put back before that call's backward.
"""
import numpy as np

from .function_ops import OPS
from .graph_def import DimRef, Ref
from .module import Module, requires_grad_version, structure_version

__all__ = ["Executor", "GraphRunError"]

_INPUT, _MODULE, _CALL, _PARAM, _BUFFER, _CONST = range(6)


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

    __slots__ = ("ctxs", "states", "leaves", "input_float", "values")

    def __init__(self, n):
        self.ctxs = [None] * n
        self.states = {}
        self.leaves = {}
        self.values = None


class _GradPlan:
    __slots__ = ("order", "needs", "nig", "rg")


class Executor:
    """Runs `graph` (a GraphDef) on the sub-modules, parameters and buffers of `owner`."""

    def __init__(self, graph, owner):
        self.graph = graph
        self.owner = owner
        self._bound = None
        self._grad_plans = {}
        self._bind()

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
        self._positional = [[a for a in node.args] for node in g.nodes]
        out_refs = []
        _flatten_refs(g.outputs, out_refs)
        self._out_refs = out_refs
        self._out_get = _compile(g.outputs)
        self._grad_plans = {}
        self._bound = structure_version[0]

    def _grad_plan(self, need_input_grad, input_float):
        key = (need_input_grad, input_float, requires_grad_version[0])
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
        plan.order = [i for i in range(n - 1, -1, -1) if rg[i]]
        plan.needs, plan.nig = needs, nig
        plan.rg = rg
        if len(self._grad_plans) > 8:
            self._grad_plans.clear()
        self._grad_plans[key] = plan
        return plan

    @property
    def num_outputs(self):
        """How many arrays the graph returns (leaves of its output structure)."""
        return len(self._out_refs)

    # -- forward ---------------------------------------------------------------------------------------
    def forward(self, inputs, keep_values=False):
        """(outputs, run) for a list of input arrays, one per graph input. keep_values: run.values holds
        every node's output (summary uses it)."""
        if self._bound != structure_version[0]:
            self._bind()
        vals = [None] * len(self.graph.nodes)
        run = _Run(len(vals))
        ctxs, shared, leaves = run.ctxs, self._shared, run.leaves
        for i, kind, fn, simple, getter in self._steps:
            if kind == _MODULE:
                if simple is not None:
                    out = fn.forward(*[vals[j] for j in simple])
                else:
                    out = fn.forward(*getter[0](vals), **getter[1](vals))
                vals[i] = out
                if type(out) is tuple or type(out) is list:
                    leaves[i] = _leaf_paths(out)
                if i in shared:
                    run.states[i] = fn.save_call_state()
            elif kind == _CALL:
                if simple is not None:
                    vals[i], ctxs[i] = fn.forward(*[vals[j] for j in simple])
                else:
                    vals[i], ctxs[i] = fn.forward(*getter[0](vals), **getter[1](vals))
            elif kind == _INPUT:
                vals[i] = inputs[fn]
            elif kind == _PARAM:
                vals[i] = fn.data
            elif kind == _BUFFER:
                vals[i] = getattr(*fn)
            else:
                vals[i] = fn
        run.input_float = tuple(getattr(x, "dtype", np.dtype(np.float64)).kind == "f" for x in inputs)
        if keep_values:
            run.values = vals
        return self._out_get(vals), run

    # -- backward --------------------------------------------------------------------------------------
    def backward(self, run, grad_outputs, need_input_grad=True):
        """Gradients of the graph inputs (a list, None for inputs that get none) given one gradient per
        output leaf (None: zeros); parameter gradients are accumulated on the way."""
        refs = self._out_refs
        if len(grad_outputs) != len(refs):
            raise GraphRunError(f"{type(self.owner).__name__}: backward got {len(grad_outputs)} gradients for "
                                f"{len(refs)} outputs")
        plan = self._grad_plan(bool(need_input_grad), run.input_float)
        rg, needs, nig = plan.rg, plan.needs, plan.nig
        grads, owned = {}, set()

        def add(key, g):
            cur = grads.get(key)
            if cur is None:
                grads[key] = g
            elif key in owned:
                cur += g
            else:
                grads[key] = cur + g
                owned.add(key)

        def give(tpl, g):
            if g is None:
                return
            if isinstance(tpl, Ref):
                if not rg[tpl.node]:
                    return
                if isinstance(g, (tuple, list)):
                    for k, gk in enumerate(g):
                        give(Ref(tpl.node, tpl.path + (k,)), gk)
                else:
                    add((tpl.node, tpl.path), g)
            elif isinstance(tpl, (tuple, list)):
                for t, gk in zip(tpl, g):
                    give(t, gk)

        for r, g in zip(refs, grad_outputs):
            if g is not None:
                give(r, g)
        nodes, steps, ctxs = self.graph.nodes, self._steps, run.ctxs
        inputs = {}
        for i in plan.order:
            kind, fn = steps[i][1], steps[i][2]
            if kind == _MODULE:
                paths = run.leaves.get(i)
                if paths is None:
                    g = grads.pop((i, ()), None)
                    if g is None:
                        continue
                    gouts = (g,)
                else:
                    gouts = tuple(grads.pop((i, p), None) for p in paths)
                    if all(x is None for x in gouts):
                        continue
                state = run.states.get(i)
                if state is not None:
                    Module.restore_call_state(state)
                args = nodes[i].args
                res = fn.backward_inputs(gouts, nig[i], len(args))
                if nig[i]:
                    for tpl, gk in zip(args, res):
                        give(tpl, gk)
            elif kind == _CALL:
                g = grads.pop((i, ()), None)
                if g is None:
                    continue
                res = fn.backward(ctxs[i], g, needs[i])
                for tpl, gk in zip(nodes[i].args, res):
                    give(tpl, gk)
            elif kind == _PARAM:
                g = grads.pop((i, ()), None)
                if g is not None:
                    fn.add_grad(g)
            elif kind == _INPUT:
                inputs[fn] = grads.pop((i, ()), None)
        return [inputs.get(k) for k in range(len(run.input_float))]


def _flatten_refs(obj, out):
    if isinstance(obj, Ref):
        out.append(obj)
    elif isinstance(obj, (tuple, list)):
        for o in obj:
            _flatten_refs(o, out)
