"""Saving and loading models: safetensors weights + a JSON architecture. Nothing is ever pickled.

`fastnn.save(model, path)` writes ONE safetensors file (see `fastnn.safetensors`):

* the tensors are exactly `model.state_dict()` (parameters and buffers, same names, same dtypes);
* `__metadata__` (str -> str) holds
    - "fastnn.format_version": "1"
    - "fastnn.version":        the fastnn version that wrote the file
    - "fastnn.architecture":   JSON tree of the model, built from each module's recorded constructor
                               arguments: {"class": "Linear", "args": {"in_features": 4, "out_features": 2}}
    - "fastnn.dtype":          "float32" or "float64" (restored on load)
    - "fastnn.eval_modules":   JSON list of module names in eval mode ("" is the model itself)
    - "fastnn.frozen":         JSON list of parameter names with requires_grad=False

Models with branches are written as data too: a Graph (and a Module subclass that writes no backward,
which is saved as the Graph its forward traces to, unless its class is registered) is
{"class": "Graph", "graph": <GraphDef JSON>, "eval_graph": <GraphDef JSON or null>, "children": [[name, child],
...]} where a child is {"module": node}, {"parameter": {"shape": [...]}} or {"buffer": {"shape": [...],
"dtype": ...}}; a sub-module the graph does not call as a node (a traced module recorded into its parent's
graph, a ModuleList) is {"container": {"class": "Module" | "ModuleList" | "ModuleDict" | "Sequential",
"children": [...]}}.
Loading rebuilds the same parameter names without running any code of the user's.

Argument values in the architecture are JSON scalars and lists; other values are tagged objects:
{"__module__": node} (a nested Module), {"__tuple__": [...]}, {"__dict__": [[key, value], ...]},
{"__ordereddict__": [[key, value], ...]}, {"__float__": "nan" | "inf" | "-inf"}. Only the arguments the
caller passed are stored (defaults are not), so a file stays loadable when new optional arguments appear.

`fastnn.load(path)` instantiates classes only from an explicit registry: the Module subclasses defined in
the fastnn package plus the classes registered with `fastnn.register_module`. It never unpickles, imports
or evaluates anything named in the file. Building the model does not disturb fastnn's random generator.

Saves are atomic (temporary file, fsync, rename): a failed save leaves an existing file untouched.
Corrupted, truncated or foreign files raise ValueError naming the file.
"""
import contextlib
import contextvars
import functools
import inspect
import json
import math
from collections import OrderedDict

import numpy as np

from . import random as _random
from . import safetensors as _st
from .nn import graph_def as _graph_def
from .nn.containers import ModuleDict, ModuleList
from .nn.graph import Graph, example_inputs
from .nn.module import Module, Parameter
from .nn.sequential import Sequential

__all__ = ["save", "load", "save_state_dict", "load_state_dict", "register_module", "FORMAT_VERSION"]

#: Version of the layout of fastnn's metadata; files with a larger version are refused.
FORMAT_VERSION = 1

_KEY_FORMAT = "fastnn.format_version"
_KEY_VERSION = "fastnn.version"
_KEY_ARCH = "fastnn.architecture"
_KEY_DTYPE = "fastnn.dtype"
_KEY_EVAL = "fastnn.eval_modules"
_KEY_FROZEN = "fastnn.frozen"

_TAGS = ("__module__", "__tuple__", "__dict__", "__ordereddict__", "__float__")

# ---------------------------------------------------------------------------------------------------------
# the class registry
# ---------------------------------------------------------------------------------------------------------
_user_classes = {}   # registered name -> class
_user_names = {}     # class -> registered name


def _all_subclasses(cls):
    seen, stack = [], list(cls.__subclasses__())
    while stack:
        c = stack.pop()
        if c not in seen:
            seen.append(c)
            stack.extend(c.__subclasses__())
    return seen


def _is_fastnn_class(cls):
    mod = getattr(cls, "__module__", "") or ""
    return mod == "fastnn" or mod.startswith("fastnn.")


_active_table = None  # the builtin table of the save/load in progress (computed once per call)


@contextlib.contextmanager
def _builtins_cached():
    global _active_table
    _active_table = _builtin_classes()
    try:
        yield
    finally:
        _active_table = None


def _builtin_classes():
    """name -> class for every Module subclass defined inside the fastnn package (computed afresh for each
    save/load, so layers added by modules imported later are included). A name shared by several fastnn
    classes goes to the one exported as fastnn.nn.<name> or fastnn.<name>; if none is, the name is
    ambiguous and left out."""
    if _active_table is not None:
        return _active_table
    import fastnn
    groups = {}
    for c in [Module] + _all_subclasses(Module):
        if _is_fastnn_class(c):
            groups.setdefault(c.__name__, []).append(c)
    table = {}
    for name, classes in groups.items():
        if len(classes) == 1:
            table[name] = classes[0]
            continue
        public = [c for c in classes
                  if getattr(fastnn.nn, name, None) is c or getattr(fastnn, name, None) is c]
        if len(public) == 1:
            table[name] = public[0]
    return table


def register_module(cls=None, *, name=None):
    """Let :func:`load` instantiate a Module subclass of yours.

    Usable as ``register_module(MyNet)``, as a decorator ``@register_module``, or as
    ``@register_module(name="x")``. The file stores the class under ``name``; :func:`load` looks that name up,
    so register the class before loading. Re-registering a redefined class of the same module and name (a
    re-run notebook cell) replaces it.

    Parameters
    ----------
    cls : type, optional
        A subclass of :class:`fastnn.nn.Module`; omitted when used as ``@register_module(name=...)``.
    name : str, optional
        The name stored in files (default: the class's ``__name__``).

    Returns
    -------
    type
        ``cls`` (or a decorator, when ``cls`` is omitted).

    Raises
    ------
    TypeError
        If ``cls`` is not a Module subclass or ``name`` is not a non-empty string.
    ValueError
        If the name is fastnn's own or already registered for another class.

    Examples
    --------
    >>> import os, tempfile, numpy as np, fastnn as fnn
    >>> @fnn.register_module
    ... class Times(fnn.nn.Module):
    ...     def __init__(self, factor=2.0):
    ...         super().__init__()
    ...         self.factor = factor
    ...     def forward(self, x):
    ...         return x * self.factor
    >>> path = os.path.join(tempfile.mkdtemp(), "times.fnn")
    >>> fnn.save(Times(3.0), path)
    >>> fnn.load(path)(np.ones(2, np.float32))
    array([3., 3.], dtype=float32)
    """
    if cls is None:
        return lambda c: register_module(c, name=name)
    if not (isinstance(cls, type) and issubclass(cls, Module)):
        raise TypeError(f"register_module: expected a subclass of fastnn.nn.Module, got {cls!r}")
    name = cls.__name__ if name is None else name
    if not isinstance(name, str) or not name:
        raise TypeError(f"register_module: name must be a non-empty str, got {name!r}")
    if _is_fastnn_class(cls):
        if _builtin_classes().get(name) is cls:
            return cls  # already known
        raise ValueError(f"register_module: {cls.__name__} is part of fastnn; it needs no registration")
    builtin = _builtin_classes().get(name)
    if builtin is not None:
        raise ValueError(f"register_module: the name '{name}' is fastnn's {builtin.__module__}.{name}; "
                         f"register {cls.__module__}.{cls.__qualname__} under another name, "
                         f"e.g. register_module({cls.__name__}, name='my{name}')")
    old = _user_classes.get(name)
    if old is not None and old is not cls and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(f"register_module: the name '{name}' is already registered for "
                         f"{old.__module__}.{old.__qualname__}; pass another name=")
    # A redefinition of the same class (same module and qualified name, e.g. a re-run notebook cell) replaces it.
    if old is not None:
        _user_names.pop(old, None)
    _user_classes[name] = cls
    _user_names[cls] = name
    return cls


def _resolve(name):
    cls = _user_classes.get(name)
    if cls is None:
        cls = _builtin_classes().get(name)
    return cls


def _class_name(cls, where):
    """The registry name of cls, checked to resolve back to cls; TypeError if cls cannot be loaded."""
    name = _user_names.get(cls)
    if name is None and _is_fastnn_class(cls):
        name = cls.__name__
    if name is None or _resolve(name) is not cls:
        raise TypeError(f"fastnn.save: {where} is an instance of {cls.__module__}.{cls.__qualname__}, which "
                        f"fastnn.load could not rebuild: register the class with "
                        f"fastnn.register_module({cls.__name__}) (or decorate it with @fastnn.register_module)")
    return name


# ---------------------------------------------------------------------------------------------------------
# architecture: Module -> JSON-able tree
# ---------------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=512)
def _init_signature(cls):
    """Signature of cls.__init__ without `self`."""
    sig = inspect.signature(cls.__init__)
    params = list(sig.parameters.values())
    return sig.replace(parameters=params[1:])


def _describe(path, module):
    return "the model" if path == "" else f"module '{path}' ({type(module).__name__})"


def _constructor_arguments(module, where):
    """OrderedDict parameter name -> value of the arguments module was constructed with."""
    cls = type(module)
    sig = _init_signature(cls)
    if cls is Sequential:
        # Built from the current children, so layers added later with append() are saved too.
        items = list(module._modules.items())
        var = next(p.name for p in sig.parameters.values() if p.kind is inspect.Parameter.VAR_POSITIONAL)
        if [n for n, _ in items] == [str(i) for i in range(len(items))]:
            return OrderedDict([(var, tuple(m for _, m in items))]) if items else OrderedDict()
        return OrderedDict([(var, (OrderedDict(items),))])
    if cls is ModuleList:
        return OrderedDict([("modules", list(module))])
    if cls is ModuleDict:
        return OrderedDict([("modules", OrderedDict(module.items()))])
    init_args = module.__dict__.get("_init_args")
    if init_args is None:
        raise TypeError(f"fastnn.save: {where} has no recorded constructor arguments (was Module.__new__ "
                        f"bypassed?)")
    args, kwargs = init_args
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError as e:
        raise TypeError(f"fastnn.save: the recorded constructor arguments of {where} no longer match "
                        f"{cls.__name__}.__init__{sig}: {e}") from None
    return OrderedDict(bound.arguments)


def _encode_value(value, where, arg, path):
    def bad(v):
        return TypeError(f"fastnn.save: cannot save {where}: constructor argument '{arg}' holds a "
                         f"{type(v).__module__}.{type(v).__qualname__} ({v!r:.80}), which is not "
                         f"JSON-serialisable (allowed: None, bool, int, float, str, lists, tuples, dicts of "
                         f"these, and Modules)")

    def enc(v, depth=0):
        if depth > 100:
            raise TypeError(f"fastnn.save: cannot save {where}: constructor argument '{arg}' is nested too "
                            f"deeply (a reference cycle?)")
        if v is None or isinstance(v, (bool, np.bool_)):
            return None if v is None else bool(v)
        if isinstance(v, (int, np.integer)):
            return int(v)
        if isinstance(v, (float, np.floating)):
            v = float(v)
            if math.isfinite(v):
                return v
            return {"__float__": "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")}
        if isinstance(v, str):
            return str(v)
        if isinstance(v, Module):
            return {"__module__": _encode_module(v, f"{path}.{arg}" if path else arg)}
        if isinstance(v, list):
            return [enc(x, depth + 1) for x in v]
        if isinstance(v, tuple):
            return {"__tuple__": [enc(x, depth + 1) for x in v]}
        if isinstance(v, dict):
            pairs = []
            for k, x in v.items():
                if not (k is None or isinstance(k, (str, bool, int, float, np.integer, np.floating))):
                    raise bad(k)
                pairs.append([enc(k, depth + 1), enc(x, depth + 1)])
            return {"__ordereddict__" if isinstance(v, OrderedDict) else "__dict__": pairs}
        raise bad(v)

    return enc(value)


def _encode_children(module, path, called):
    """[[name, child], ...] for a Graph or a container: its parameters, buffers and sub-modules, in
    state_dict order. Sub-modules the graph calls (ids in `called`) are saved as themselves; the others
    (traced modules recorded into the graph, ModuleLists holding modules, unused modules) only hold
    parameters, and are saved as containers of them."""
    children = []
    for name, p in module._parameters.items():
        if p is not None:
            children.append([name, {"parameter": {"shape": list(p.shape)}}])
    for name, b in module._buffers.items():
        if b is not None:
            b = np.asarray(b)
            children.append([name, {"buffer": {"shape": list(b.shape), "dtype": b.dtype.name}}])
    for name, m in module._modules.items():
        sub = f"{path}.{name}" if path else name
        if id(m) in called:
            children.append([name, {"module": _encode_module(m, sub)}])
        else:
            kind = type(m).__name__ if type(m) in (ModuleList, ModuleDict, Sequential) else "Module"
            children.append([name, {"container": {"class": kind, "children": _encode_children(m, sub, called)}}])
    return children


def _encode_graph(module, path):
    """A Graph, or a traced module as the Graph its forward traces to."""
    where = _describe(path, module)
    if isinstance(module, Graph):
        graph = module
    else:
        examples = example_inputs(module)
        if examples is None:
            raise TypeError(f"fastnn.save: {where} is traced (it writes no backward) and has not run yet: call it "
                            f"once on an input so its graph is recorded, then save")
        graph = Graph.from_module(module, *examples[0], **examples[1])
    train_graph, eval_graph = graph.graphs()
    called = {id(graph.get_submodule(n.target)) for g in (train_graph, eval_graph) if g is not None
              for n in g.nodes if n.op == "module"}
    return OrderedDict([("class", "Graph"), ("graph", _graph_def.encode(train_graph)),
                        ("eval_graph", None if eval_graph is None else _graph_def.encode(eval_graph)),
                        ("children", _encode_children(module, path, called))])


def _resolvable(cls):
    """The registry name of cls if fastnn.load can rebuild it from constructor arguments, else None."""
    name = _user_names.get(cls)
    if name is None and _is_fastnn_class(cls):
        name = cls.__name__
    return name if name is not None and _resolve(name) is cls else None


# A module registered at several places (a layer used twice in a Sequential) is written in full where it comes
# first and as {"__same_as__": n} after, n counting the modules _encode_module met in order; _build counts the
# modules it builds in the same order, so the loaded model shares that layer too.
_module_table = contextvars.ContextVar("fastnn_module_table", default=None)


@contextlib.contextmanager
def _numbering_modules():
    token = _module_table.set({})
    try:
        yield
    finally:
        _module_table.reset(token)


def _encode_root(model):
    with _numbering_modules():
        return _encode_module(model, "")


def _build_root(node):
    with _numbering_modules():
        return _build(node)


def _encode_module(module, path):
    table = _module_table.get()  # id -> (number, module: kept, so its id stays its own while encoding)
    if id(module) in table:
        return {"__same_as__": table[id(module)][0]}
    table[id(module)] = (len(table), module)
    where = _describe(path, module)
    if isinstance(module, Graph) or (type(module).traced and _resolvable(type(module)) is None):
        return _encode_graph(module, path)
    name = _class_name(type(module), where)
    arguments = _constructor_arguments(module, where)
    params = _init_signature(type(module)).parameters
    args = OrderedDict()
    for arg, value in arguments.items():
        if params[arg].kind is inspect.Parameter.VAR_POSITIONAL:
            # *args become a JSON list; Sequential's modules are named "0", "1", ... as in state_dict
            sub = (lambda i: f"{path}.{i}" if path else str(i)) if type(module) is Sequential \
                else (lambda i: f"{path}.{arg}[{i}]" if path else f"{arg}[{i}]")
            args[arg] = [{"__module__": _encode_module(v, sub(i))} if isinstance(v, Module)
                         else _encode_value(v, where, arg, path) for i, v in enumerate(value)]
        else:
            args[arg] = _encode_value(value, where, arg, path)
    return OrderedDict([("class", name), ("args", args)])


# ---------------------------------------------------------------------------------------------------------
# architecture: JSON tree -> Module (registry only)
# ---------------------------------------------------------------------------------------------------------
class _Corrupt(ValueError):
    pass


def _decode_value(v):
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, list):
        return [_decode_value(x) for x in v]
    if isinstance(v, dict):
        if len(v) != 1 or next(iter(v)) not in _TAGS:
            raise _Corrupt(f"unexpected object {json.dumps(v)[:80]} in constructor arguments")
        tag, x = next(iter(v.items()))
        if tag == "__module__":
            return _build(x)
        if tag == "__float__":
            if x not in ("nan", "inf", "-inf"):
                raise _Corrupt(f"bad float value {x!r}")
            return float(x)
        if not isinstance(x, list):
            raise _Corrupt(f"{tag} must hold a list")
        if tag == "__tuple__":
            return tuple(_decode_value(e) for e in x)
        if not all(isinstance(p, list) and len(p) == 2 for p in x):
            raise _Corrupt(f"{tag} must hold [key, value] pairs")
        items = [(_decode_value(k), _decode_value(e)) for k, e in x]
        try:
            return OrderedDict(items) if tag == "__ordereddict__" else dict(items)
        except TypeError as e:
            raise _Corrupt(f"bad dictionary key ({e})") from None
    raise _Corrupt(f"unexpected value {v!r:.80} in constructor arguments")


def _build_children(entries, holder):
    """Register the children of a Graph or container on `holder`, in order."""
    if not isinstance(entries, list):
        raise _Corrupt("graph children must be a list of [name, child] pairs")
    for entry in entries:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str) and entry[0]
                and "." not in entry[0] and isinstance(entry[1], dict) and len(entry[1]) == 1):
            raise _Corrupt(f"malformed graph child {json.dumps(entry)[:80]}")
        name, (kind, spec) = entry[0], next(iter(entry[1].items()))
        if name in holder.__dict__ or hasattr(type(holder), name):
            raise _Corrupt(f"graph child name '{name}' is taken")
        if kind == "module":
            setattr(holder, name, _build(spec))
        elif kind == "container":
            cls = {"Module": Module, "ModuleList": ModuleList, "ModuleDict": ModuleDict, "Sequential": Sequential}.get(
                spec.get("class") if isinstance(spec, dict) else None)
            if cls is None:
                raise _Corrupt(f"malformed container '{name}'")
            sub = cls()
            _build_children(spec.get("children"), sub)
            setattr(holder, name, sub)
        elif kind in ("parameter", "buffer"):
            try:
                shape = tuple(int(n) for n in spec["shape"])
                dtype = np.dtype(spec.get("dtype", "float32"))
            except (KeyError, TypeError, ValueError) as e:
                raise _Corrupt(f"malformed {kind} '{name}' ({e})") from None
            if any(n < 0 for n in shape) or dtype.kind not in "biuf":
                raise _Corrupt(f"malformed {kind} '{name}': shape {shape}, dtype {dtype}")
            if kind == "parameter":
                setattr(holder, name, Parameter(np.zeros(shape, np.float32)))
            else:
                holder.register_buffer(name, np.zeros(shape, dtype))
        else:
            raise _Corrupt(f"unknown graph child kind '{kind}'")


def _build_graph(node):
    try:
        graph = _graph_def.decode(node["graph"])
        eval_graph = None if node.get("eval_graph") is None else _graph_def.decode(node["eval_graph"])
    except _graph_def.GraphFormatError as e:
        raise _Corrupt(f"invalid graph: {e}") from None
    holder = Module()
    _build_children(node.get("children"), holder)
    children = OrderedDict(list(holder._parameters.items()) + list(holder._modules.items()))
    g = Graph.from_graph_def(graph, children, eval_graph)
    for name, b in holder._buffers.items():
        g.register_buffer(name, b)
    try:
        g.check_targets()
    except ValueError as e:
        raise _Corrupt(str(e)) from None
    return g


def _build(node):
    table = _module_table.get()  # number -> module built (None while its children are built)
    if isinstance(node, dict) and "__same_as__" in node:
        n = node["__same_as__"]
        if len(node) != 1 or type(n) is not int or not 0 <= n < len(table) or table[n] is None:
            raise _Corrupt(f"bad shared-module reference {json.dumps(node)[:80]}")
        return table[n]
    n = len(table)
    table[n] = None  # numbered before its children, as _encode_module numbers them
    table[n] = _build_node(node)
    return table[n]


def _build_node(node):
    if isinstance(node, dict) and node.get("class") == "Graph" and "graph" in node:
        return _build_graph(node)
    if not (isinstance(node, dict) and isinstance(node.get("class"), str) and isinstance(node.get("args"), dict)):
        raise _Corrupt(f"a module entry must be an object with 'class' (str) and 'args' (object), "
                       f"got {json.dumps(node)[:80]}")
    name = node["class"]
    cls = _resolve(name)
    if cls is None:
        raise _Corrupt(f"unknown module class '{name}'. fastnn only builds its own layers and classes "
                       f"registered with fastnn.register_module; if '{name}' is your class, call "
                       f"fastnn.register_module({name}) (or decorate it with @fastnn.register_module) "
                       f"before fastnn.load")
    sig = _init_signature(cls)
    params = sig.parameters
    arguments = OrderedDict()
    for arg, raw in node["args"].items():
        if arg not in params:
            raise _Corrupt(f"{name} has no constructor argument '{arg}' (its signature is {name}{sig})")
        value = _decode_value(raw)
        kind = params[arg].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            if not isinstance(value, (list, tuple)):
                raise _Corrupt(f"{name}: *{arg} must be a list")
            value = tuple(value)
        elif kind is inspect.Parameter.VAR_KEYWORD:
            if not (isinstance(value, dict) and all(isinstance(k, str) for k in value)):
                raise _Corrupt(f"{name}: **{arg} must be a dict with str keys")
        arguments[arg] = value
    ordered = OrderedDict((p, arguments[p]) for p in params if p in arguments)
    bound = inspect.BoundArguments(sig, ordered)
    try:
        return cls(*bound.args, **bound.kwargs)
    except (TypeError, ValueError, OverflowError, MemoryError, KeyError, IndexError) as e:
        raise _Corrupt(f"could not build {name} with arguments {json.dumps(node['args'])[:200]}: "
                       f"{type(e).__name__}: {e}") from e


@contextlib.contextmanager
def _scratch_random_state():
    """Run constructors (which draw initial weights) without consuming the caller's random streams."""
    saved_numpy = np.random.get_state()
    try:
        with _random.using_generator(np.random.default_rng(0)):
            yield
    finally:
        np.random.set_state(saved_numpy)


def _shapes(model):
    return OrderedDict((k, np.shape(v)) for k, v in model.state_dict().items())


# ---------------------------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------------------------
def save(model, path, *, check=True):
    """Save a model — architecture and weights — to one safetensors file, atomically.

    The tensors are ``model.state_dict()``; the header holds a JSON description of the architecture (each
    module's class and constructor arguments; graphs as their graph), the dtype, the eval-mode modules and
    the frozen parameters. Nothing is pickled. Nothing is written when saving fails.

    Parameters
    ----------
    model : fastnn.nn.Module
        Every module in it must be a fastnn layer or a class registered with :func:`register_module`, with
        JSON-able constructor arguments (None, bool, int, float, str, lists, tuples, dicts, Modules). Fitted
        :mod:`fastnn.sklearn` estimators are accepted too.
    path : str or os.PathLike
        The file to write (``.fnn`` by convention).
    check : bool, default True
        Rebuild the architecture once before writing and compare its parameter names and shapes with the
        model's, so a model changed after construction is refused now instead of giving a file that cannot
        be loaded.

    Raises
    ------
    TypeError
        For an unregistered class or an argument that is not JSON-able (the message names the module and
        the argument), or a dtype other than float32 / float64.
    ValueError
        If ``check`` finds the rebuilt architecture differs.

    See Also
    --------
    load, save_state_dict, register_module

    Examples
    --------
    >>> import os, tempfile, numpy as np, fastnn as fnn
    >>> model = fnn.nn.Sequential(fnn.nn.Linear(4, 3), fnn.nn.ReLU())
    >>> path = os.path.join(tempfile.mkdtemp(), "model.fnn")
    >>> fnn.save(model, path)
    >>> x = np.ones((2, 4), np.float32)
    >>> np.array_equal(fnn.load(path)(x), model(x))
    True
    """
    if _object_format(model) is not None:  # a registered non-Module object (fastnn.sklearn estimators)
        return _save_object(model, path)
    with _builtins_cached():
        return _save(model, path, check)


def _save(model, path, check):
    from . import __version__
    if not isinstance(model, Module):
        raise TypeError(f"fastnn.save: expected a fastnn.nn.Module, got {type(model).__name__} "
                        f"(use fastnn.save_state_dict for a dict of arrays)")
    dtype = np.dtype(model.dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"fastnn.save: the model's dtype is {dtype}; only float32 and float64 models are saved")
    arch = _encode_root(model)
    arch_json = json.dumps(arch, separators=(",", ":"), allow_nan=False)
    state = model.state_dict()
    if check:
        try:
            with _scratch_random_state():
                rebuilt = _build_root(json.loads(arch_json))
        except _Corrupt as e:
            raise ValueError(f"fastnn.save: the model cannot be rebuilt from its constructor arguments: "
                             f"{e}") from e.__cause__
        ours = OrderedDict((k, np.shape(v)) for k, v in state.items())
        theirs = _shapes(rebuilt)
        if ours != theirs:
            diff = [f"'{k}': model {ours.get(k)}, rebuilt {theirs.get(k)}"
                    for k in list(ours) + [k for k in theirs if k not in ours] if ours.get(k) != theirs.get(k)]
            raise ValueError(f"fastnn.save: rebuilding the model from its constructor arguments gives different "
                             f"parameters/buffers ({'; '.join(diff[:5])}{' ...' if len(diff) > 5 else ''}); "
                             f"was it changed after construction (a layer assigned or replaced)? Save it "
                             f"with fastnn.save_state_dict(model.state_dict(), path) instead")
    eval_modules = [name for name, m in model.named_modules() if not m.training]
    frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
    metadata = {
        _KEY_FORMAT: str(FORMAT_VERSION),
        _KEY_VERSION: str(__version__),
        _KEY_ARCH: arch_json,
        _KEY_DTYPE: dtype.name,
        _KEY_EVAL: json.dumps(eval_modules),
        _KEY_FROZEN: json.dumps(frozen),
    }
    _st.save_file(state, path, metadata)


def load(path):
    """Rebuild a model written by :func:`save`: architecture, weights (bit for bit), dtype, modes, frozen parameters.

    Classes come only from fastnn and :func:`register_module`; nothing is unpickled, imported or evaluated
    from the file. A traced Module subclass loads as the :class:`~fastnn.nn.Graph` it traced to, with the same
    parameter names.

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    fastnn.nn.Module
        The model (or a fitted :mod:`fastnn.sklearn` estimator, if that is what was saved).

    Raises
    ------
    ValueError
        If the file is corrupted, truncated, not fastnn's, or names an unregistered class (the message
        names the file).

    See Also
    --------
    save, load_state_dict

    Examples
    --------
    >>> import os, tempfile, fastnn as fnn
    >>> path = os.path.join(tempfile.mkdtemp(), "m.fnn")
    >>> fnn.save(fnn.nn.Sequential(fnn.nn.Linear(2, 2)), path)
    >>> fnn.load(path)
    Sequential(
      (0): Linear(2, 2)
    )
    """
    with _builtins_cached():
        return _load(path)


def _load(path):
    tensors, meta = _st.read(path)
    where = _st._name(path)

    def fail(msg, cause=None):
        raise ValueError(f"fastnn.load: {where}: {msg}") from cause

    if _KEY_OBJECT in meta:
        return _load_object(meta[_KEY_OBJECT], tensors, meta, where)
    if _KEY_ARCH not in meta:
        fail(f"no architecture metadata ('{_KEY_ARCH}'): this is not a model saved by fastnn.save. If it is "
             f"a plain weights file, build the model yourself and use "
             f"model.load_state_dict(fastnn.load_state_dict(path))")
    version = meta.get(_KEY_FORMAT)
    if version is None or not version.isdigit():
        fail(f"missing or invalid '{_KEY_FORMAT}' ({version!r})")
    if int(version) > FORMAT_VERSION:
        fail(f"written with format version {version} (fastnn {meta.get(_KEY_VERSION, '?')}); this fastnn reads "
             f"up to version {FORMAT_VERSION}: upgrade fastnn")
    dtype_name = meta.get(_KEY_DTYPE, "float32")
    if dtype_name not in ("float32", "float64"):
        fail(f"invalid dtype {dtype_name!r} (expected float32 or float64)")

    def parse(key, default):
        if key not in meta:
            return default
        try:
            return json.loads(meta[key])
        except (ValueError, RecursionError) as e:
            fail(f"metadata '{key}' is not valid JSON ({e})", e)

    arch = parse(_KEY_ARCH, None)
    eval_modules = parse(_KEY_EVAL, [])
    frozen = parse(_KEY_FROZEN, [])
    for key, names in ((_KEY_EVAL, eval_modules), (_KEY_FROZEN, frozen)):
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            fail(f"metadata '{key}' must be a JSON list of names")

    try:
        with _scratch_random_state():
            model = _build_root(arch)
    except _Corrupt as e:
        fail(f"invalid architecture: {e}", e.__cause__)
    except RecursionError as e:
        fail("invalid architecture: nested too deeply", e)
    if not isinstance(model, Module):
        fail("the architecture does not describe a Module")
    model.to(np.dtype(dtype_name))

    expected = _shapes(model)
    missing = [k for k in expected if k not in tensors]
    unexpected = [k for k in tensors if k not in expected]
    if missing or unexpected:
        fail(f"the weights do not match the architecture: arrays missing {missing}, unexpected {unexpected}")
    for k, shape in expected.items():
        if tensors[k].shape != shape:
            fail(f"array '{k}' has shape {tensors[k].shape}, the architecture expects {shape}")
    try:
        model.load_state_dict(tensors, strict=True)
    except (ValueError, TypeError, KeyError) as e:
        fail(f"cannot load the weights: {e}", e)

    modules = dict(model.named_modules())
    params = dict(model.named_parameters())
    for name in eval_modules:
        if name not in modules:
            fail(f"metadata '{_KEY_EVAL}' names unknown module '{name}'")
        object.__setattr__(modules[name], "training", False)
    for name in frozen:
        if name not in params:
            fail(f"metadata '{_KEY_FROZEN}' names unknown parameter '{name}'")
        params[name].requires_grad = False
    return model


def save_state_dict(state_dict, path, metadata=None):
    """Write a dict of arrays — e.g. ``model.state_dict()`` of any module — to a safetensors file, atomically.

    Parameters
    ----------
    state_dict : dict of str to ndarray
        The arrays.
    path : str or os.PathLike
        The file.
    metadata : dict of str to str, optional
        Stored in the file's header.

    Raises
    ------
    TypeError
        If given a Module instead of its state dict, or not a dict.

    See Also
    --------
    load_state_dict, save

    Examples
    --------
    >>> import os, tempfile, fastnn as fnn
    >>> path = os.path.join(tempfile.mkdtemp(), "w.safetensors")
    >>> fnn.save_state_dict(fnn.nn.Linear(3, 2).state_dict(), path)
    >>> {k: v.shape for k, v in fnn.load_state_dict(path).items()}
    {'weight': (2, 3), 'bias': (2,)}
    """
    if isinstance(state_dict, Module):
        raise TypeError("fastnn.save_state_dict: expected a dict of arrays; pass model.state_dict() "
                        "(or use fastnn.save(model, path) to save the architecture too)")
    if not isinstance(state_dict, dict):
        raise TypeError(f"fastnn.save_state_dict: expected a dict name -> array, got {type(state_dict).__name__}")
    _st.save_file(state_dict, path, metadata)


def load_state_dict(path):
    """Read a safetensors file into an ordered dict of arrays, for ``model.load_state_dict(...)``.

    Any safetensors file works, e.g. one written by ``safetensors.torch.save_file`` from a PyTorch model.

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    collections.OrderedDict of str to ndarray
        In file order.

    Raises
    ------
    ValueError
        If the file is corrupted or truncated (the message names it).

    See Also
    --------
    save_state_dict, fastnn.utils.load_partial

    Examples
    --------
    >>> import os, tempfile, numpy as np, fastnn as fnn
    >>> path = os.path.join(tempfile.mkdtemp(), "w.safetensors")
    >>> fnn.save_state_dict({"weight": np.eye(2, dtype=np.float32), "bias": np.zeros(2, np.float32)}, path)
    >>> layer = fnn.nn.Linear(2, 2)
    >>> layer.load_state_dict(fnn.load_state_dict(path))
    IncompatibleKeys(missing_keys=[], unexpected_keys=[])
    >>> layer.weight.data
    array([[1., 0.],
           [0., 1.]], dtype=float32)
    """
    return _st.load_file(path)


# ---------------------------------------------------------------------------------------------------------
# objects that are not Modules (fitted fastnn.sklearn estimators): formats registered by their own module
# ---------------------------------------------------------------------------------------------------------
_KEY_OBJECT = "fastnn.object"
_object_formats = {}  # name -> (class, to_file(obj) -> (tensors, metadata), from_file(tensors, metadata, where))
# The fastnn module that registers each format, imported by fastnn.load on demand: a fixed table, so a file
# never chooses what gets imported.
_OBJECT_PROVIDERS = {"sklearn.estimator": "fastnn.sklearn"}


def register_object_format(name, cls, to_file, from_file):
    """Let fastnn.save write instances of `cls` and fastnn.load read them back, in the same safetensors
    format: to_file(obj) -> (tensors, metadata str -> str); from_file(tensors, metadata, where) -> obj
    (raising ValueError on bad content). The file records `name` under "fastnn.object"."""
    _object_formats[name] = (cls, to_file, from_file)


def _object_format(obj):
    for name, (cls, to_file, _) in _object_formats.items():
        if isinstance(obj, cls):
            return name, to_file
    return None


def _save_object(obj, path):
    from . import __version__
    name, to_file = _object_format(obj)
    tensors, metadata = to_file(obj)
    metadata = {**metadata, _KEY_OBJECT: name, _KEY_FORMAT: str(FORMAT_VERSION), _KEY_VERSION: str(__version__)}
    _st.save_file(tensors, path, metadata)


def _load_object(name, tensors, meta, where):
    if name not in _object_formats and name in _OBJECT_PROVIDERS:
        import importlib
        try:
            importlib.import_module(_OBJECT_PROVIDERS[name])
        except ImportError as e:
            raise ValueError(f"fastnn.load: {where} holds a {name!r} object, and reading it needs "
                             f"{_OBJECT_PROVIDERS[name]}, which failed to import: {e}") from e
    if name not in _object_formats:
        raise ValueError(f"fastnn.load: {where}: unknown object format {name!r} in '{_KEY_OBJECT}'")
    version = meta.get(_KEY_FORMAT)
    if version is None or not version.isdigit() or int(version) > FORMAT_VERSION:
        raise ValueError(f"fastnn.load: {where}: missing or unsupported '{_KEY_FORMAT}' ({version!r})")
    return _object_formats[name][2](tensors, meta, where)


def architecture_json(model):
    """The JSON architecture fastnn.save writes for `model`, for formats that store a model inside
    (TypeError if the model cannot be saved)."""
    with _builtins_cached():
        return json.dumps(_encode_root(model), separators=(",", ":"), allow_nan=False)


def module_from_architecture(text):
    """Rebuild a Module from architecture_json's text, with fastnn.load's rules (registered classes only,
    the caller's random streams untouched); ValueError on bad content."""
    try:
        with _builtins_cached(), _scratch_random_state():
            model = _build_root(json.loads(text))
    except (_Corrupt, ValueError, RecursionError) as e:
        raise ValueError(f"invalid architecture: {e}") from e
    if not isinstance(model, Module):
        raise ValueError("the architecture does not describe a Module")
    return model
