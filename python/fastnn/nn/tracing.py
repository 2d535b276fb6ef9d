"""Recording graphs: symbolic values that stand for arrays, and the GraphDef built from what they recorded.

Two ways to record, one mechanism:
* tracing a Module subclass that writes no backward (fastnn.nn.traced): its forward runs once on Values
  that wrap the real input, inside a `Session` that knows the module's sub-modules, parameters and buffers
  by name; every module call, functional op, arithmetic and indexing on a Value is recorded, in order;
* Keras-style construction (`Input(shape)` then modules called on it, `Graph(inputs, outputs)`): each
  Value remembers the call that made it, and Graph walks back from its outputs.

A Value carries concrete example arrays: the real input's (tracing) or two small arrays with different
batch sizes (Keras style), so shapes, dtypes and output structures are always known exactly, and the
sizes that depend on the batch are told apart from those that do not. `x.shape` gives `Dim`s: passed
straight to an op (x.reshape(x.shape[0], -1)) they are recorded as "the size of x along axis 0"; used in
Python arithmetic or comparisons they become plain numbers, and the trace is then valid for its input
shapes only (it is redone for other shapes; a Keras graph raises, since it cannot be redone).

Python control flow on array values cannot be recorded: bool(), float(), len-free iteration, np.asarray
on a Value raise TraceError naming the module and the line of user code.
"""
import contextlib
import itertools
import operator
import os
import re
import sys

import numpy as np

from ..random import generator
from .function_ops import OPS
from .graph_def import DimRef, GraphDef, InputSpec, Node, Ref
from .module import Module, Parameter, Symbolic, tracing_state

__all__ = ["Value", "Dim", "TraceError", "Session", "record_call", "build_graph", "no_side_effects", "checked_shape"]

_FASTNN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_order = itertools.count()


class TraceError(TypeError):
    """An operation a graph cannot record: Python control flow on array values, or an in-place change.

    Raised while a Module subclass without ``backward`` is traced (its first call for a kind of input); the
    message names the module and the line. Decide from shapes or attributes instead, use a
    :mod:`fastnn.nn.functional` op, or write ``backward`` yourself. A subclass of :class:`TypeError`.

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> class Branchy(fnn.nn.Module):
    ...     def forward(self, x):
    ...         return x if x.sum() > 0 else -x
    >>> try:
    ...     Branchy()(np.ones(3, np.float32))
    ... except fnn.nn.TraceError as e:
    ...     print("Branchy" in str(e))
    True
    """


def user_location():
    """'file.py:line' of the innermost stack frame outside fastnn, or ''."""
    frame = sys._getframe(1)
    while frame is not None:
        path = os.path.abspath(frame.f_code.co_filename)
        if not path.startswith(_FASTNN_DIR + os.sep):
            return f"{frame.f_code.co_filename}:{frame.f_lineno}"
        frame = frame.f_back
    return ""


# ---------------------------------------------------------------------------------------------------------
# records
# ---------------------------------------------------------------------------------------------------------
class _Record:
    """One recorded operation. op: "input" | "module" | "call" | "attr" | "constant"; target: the input's
    position, the Module, the op name, the Parameter or buffer array, or the constant array. outputs: the
    concrete output (structure) per example."""

    __slots__ = ("op", "target", "args", "kwargs", "outputs", "order", "session", "scope", "name")

    def __init__(self, op, target, args, kwargs, outputs, session, scope=None, name=None):
        self.op, self.target, self.args, self.kwargs = op, target, args, kwargs
        self.outputs, self.session, self.scope, self.name = outputs, session, scope, name
        self.order = next(_order)
        if session is not None:
            session.records.append(self)


class Session:
    """The recording of one traced forward of `root`: names of its sub-modules, parameters and buffers, the
    records in call order, and whether the trace came to depend on its input shapes."""

    def __init__(self, root):
        self.root = root
        self.records = []
        self.module_paths, self.param_names, self.buffer_names = {}, {}, {}
        for name, m in root.named_modules():
            self.module_paths.setdefault(id(m), name)
        for name, p in root.named_parameters():
            self.param_names.setdefault(id(p), name)
        for name, b in root.named_buffers():
            if isinstance(b, np.ndarray):
                self.buffer_names.setdefault(id(b), name)
        self.inlined = []             # traced sub-modules whose forward was recorded into this graph
        self.specialized_at = None    # where the trace first used a size as a number
        self.fixed_axes = []          # [input, axis, size] of each input size it used so
        self.fixed_other = False      # whether it used a size of a value other than an input
        self._leaves = {}             # id(Parameter or array) -> Value of its attr/constant record

    def where(self):
        return f"{type(self.root).__name__}"

    def leaf(self, obj):
        """The Value of a Parameter, buffer or constant array used in the forward (one record each)."""
        known = self._leaves.get(id(obj))
        if known is not None:
            return known[0]
        if isinstance(obj, Parameter):
            name = self.param_names.get(id(obj))
            if name is None:
                raise TraceError(f"{self.root!r}: forward uses a Parameter of shape {obj.shape} that is not "
                                 f"registered in the model (assign it as an attribute of a module) "
                                 f"[{user_location()}]")
            rec = _Record("attr", obj, (), {}, (obj.data,), self, name=name)
        elif id(obj) in self.buffer_names:
            rec = _Record("attr", obj, (), {}, (obj,), self, name=self.buffer_names[id(obj)])
        else:
            rec = _Record("constant", obj, (), {}, (obj,), self)
        v = Value(rec, ())
        self._leaves[id(obj)] = (v, obj)  # holding obj keeps its id unique while recording
        return v

    def specialize(self, dim):
        """The trace used `dim` as a number: the graph holds only for inputs with that size there."""
        if self.specialized_at is None:
            self.specialized_at = user_location() or "?"
        rec = dim.value._rec
        if rec.op == "input" and dim.value._path == ():
            fixed = [rec.target, dim.axis, dim.size]
            if fixed not in self.fixed_axes:
                self.fixed_axes.append(fixed)
        else:
            self.fixed_other = True

    @contextlib.contextmanager
    def active(self):
        """Parameters used in operators while this session records become its values (Parameter._operand)."""
        previous = tracing_state.session
        tracing_state.session = self
        try:
            yield self
        finally:
            tracing_state.session = previous


# ---------------------------------------------------------------------------------------------------------
# Dim: a size that remembers where it came from
# ---------------------------------------------------------------------------------------------------------
class Dim:
    """The size of a Value along one axis. Given as an argument to a recorded op (reshape, view, expand) it
    stays symbolic; any other use (arithmetic, comparison, int(), range(), NumPy shapes) gives a plain number.
    Not an int subclass on purpose: Python then routes every mixed operation (1.0 / d, 2 * d) through Dim,
    so no use goes unnoticed."""

    __slots__ = ("size", "value", "axis")

    def __init__(self, size, value, axis):
        self.size, self.value, self.axis = int(size), value, axis

    def is_dynamic(self):
        """Whether this size varies with the input: always assumed while tracing; in Keras style, whether
        the two examples differ."""
        rec = self.value._rec
        if rec.session is not None:
            return True
        sizes = {np.shape(_pick(out, self.value._path))[self.axis] for out in rec.outputs}
        return len(sizes) > 1

    def consume(self):
        session = self.value._rec.session
        if session is not None:
            session.specialize(self)
        elif self.is_dynamic():
            raise TraceError(f"a Keras-style graph used the batch-dependent size {self.size} (axis "
                             f"{self.axis} of a value of shape {_shape_str(self.value)}) as a number "
                             f"[{user_location()}]: pass x.shape[k] straight to reshape/view, or use -1")
        return self.size

    def __repr__(self):
        return str(self.size)

    __str__ = __repr__

    def __format__(self, spec):
        return format(self.size, spec)

    def __hash__(self):
        return hash(self.consume())

    def __bool__(self):
        return bool(self.consume())

    def __int__(self):
        return self.consume()

    __index__ = __int__

    def __float__(self):
        return float(self.consume())


def checked_shape(x):
    """x's shape as plain ints, for a module's input checks: a traced Value gives its example's shape without
    tying the graph to those sizes (reading Dims as numbers would). Only for checks that hold for every input
    the graph can take once they hold for the example (feature sizes; sizes two inputs of one call share)."""
    return tuple(np.shape(x.example)) if isinstance(x, Value) else tuple(np.shape(x))


def _plain(o):
    return o.consume() if isinstance(o, Dim) else o


def _dim_binary(fn, reflected):
    if reflected:
        return lambda self, other: fn(_plain(other), self.consume())
    return lambda self, other: fn(self.consume(), _plain(other))


for _name, _fn in (("add", operator.add), ("sub", operator.sub), ("mul", operator.mul),
                   ("floordiv", operator.floordiv), ("truediv", operator.truediv), ("mod", operator.mod),
                   ("pow", operator.pow), ("divmod", divmod), ("lshift", operator.lshift),
                   ("rshift", operator.rshift), ("and", operator.and_), ("or", operator.or_),
                   ("xor", operator.xor)):
    setattr(Dim, f"__{_name}__", _dim_binary(_fn, False))
    setattr(Dim, f"__r{_name}__", _dim_binary(_fn, True))
for _name, _fn in (("lt", operator.lt), ("le", operator.le), ("gt", operator.gt), ("ge", operator.ge),
                   ("eq", operator.eq), ("ne", operator.ne)):
    setattr(Dim, f"__{_name}__", _dim_binary(_fn, False))
for _name, _fn in (("neg", operator.neg), ("pos", operator.pos), ("abs", abs)):
    setattr(Dim, f"__{_name}__", (lambda f: lambda self: f(self.consume()))(_fn))


# ---------------------------------------------------------------------------------------------------------
# Value
# ---------------------------------------------------------------------------------------------------------
def _pick(structure, path):
    for p in path:
        structure = structure[p]
    return structure


def _shape_str(value):
    return "(" + ", ".join(str(s) for s in np.shape(value.example)) + ("," if value.ndim == 1 else "") + ")"


def _traced_error(value, what, hint="use fastnn.nn.functional ops on it instead"):
    session = value._rec.session
    owner = type(session.root).__name__ if session is not None else "a Keras-style graph"
    return TraceError(f"{owner}: {what} on a traced value of shape {_shape_str(value)} cannot be recorded in a "
                      f"graph [{user_location()}]; {hint} (or give the module a backward of its own)")


_UFUNCS = {np.add: "add", np.subtract: "sub", np.multiply: "mul", np.true_divide: "div", np.negative: "neg",
           np.exp: "exp", np.log: "log", np.sqrt: "sqrt", np.tanh: "tanh", np.absolute: "abs",
           np.greater: "gt", np.greater_equal: "ge", np.less: "lt", np.less_equal: "le", np.equal: "eq",
           np.not_equal: "ne", np.power: "pow", np.matmul: "matmul"}


class Value(Symbolic):
    """A symbolic array in a graph under construction: the output `_path` of the record `_rec`. Supports what
    graphs record: arithmetic with arrays and scalars (NumPy broadcasting), @, indexing and slicing, and
    PyTorch-style methods (reshape/view, transpose(dim0, dim1), permute, flatten(start_dim), unsqueeze,
    squeeze, expand, sum/mean(dim, keepdim), size(dim), numel(), T). `.shape` gives Dims, `.ndim` and `.dtype` are exact."""

    __slots__ = ("_rec", "_path")
    __array_priority__ = 1000

    def __init__(self, rec, path):
        self._rec, self._path = rec, tuple(path)

    # -- what a graph needs to know ----------------------------------------------------------------------
    @property
    def example(self):
        return _pick(self._rec.outputs[0], self._path)

    def examples(self):
        return [_pick(out, self._path) for out in self._rec.outputs]

    @property
    def shape(self):
        return tuple(Dim(s, self, k) for k, s in enumerate(np.shape(self.example)))

    @property
    def ndim(self):
        return np.ndim(self.example)

    @property
    def dtype(self):
        return np.asarray(self.example).dtype

    def size(self, dim=None):
        """PyTorch's x.size(): the shape, or its Dim along `dim`."""
        return self.shape if dim is None else self.shape[dim]

    def numel(self):
        n = 1
        for d in self.shape:
            n *= d.consume()
        return n

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d value")
        return self.shape[0].consume()

    def __repr__(self):
        return f"Value(shape={_shape_str(self)}, dtype={self.dtype})"

    def dim(self):
        return self.ndim

    # -- module calls ----------------------------------------------------------------------------------
    def record_module_call(self, module, args, kwargs):
        return record_module(module, args, kwargs)

    # -- what cannot be recorded -------------------------------------------------------------------------
    def __bool__(self):
        raise _traced_error(self, "Python control flow (if/while/and/or/bool())",
                            "branch on shapes or on self.training, or compute both branches and combine them")

    def __float__(self):
        raise _traced_error(self, "float()")

    def __int__(self):
        raise _traced_error(self, "int()")

    def __index__(self):
        raise _traced_error(self, "using it as an index")

    def __iter__(self):
        raise _traced_error(self, "iteration", "index it (x[i]) or use unbind-like slicing")

    def __array__(self, *args, **kwargs):
        raise _traced_error(self, "conversion to a NumPy array (np.asarray, np.* functions)")

    def item(self):
        raise _traced_error(self, ".item()")

    def tolist(self):
        raise _traced_error(self, ".tolist()")

    def __setitem__(self, key, value):
        raise _traced_error(self, "in-place assignment (x[...] = ...)",
                            "build the new array out of place (F.cat, masks and arithmetic)")

    def _inplace(self, other):
        raise _traced_error(self, "an in-place operator (+=, *=, ...)", "write x = x + y instead")

    __iadd__ = __isub__ = __imul__ = __itruediv__ = _inplace

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        name = _UFUNCS.get(ufunc)
        if method != "__call__" or name is None or kwargs:
            raise _traced_error(self, f"NumPy's {ufunc.__name__}")
        return record_call(name, inputs, {})

    def __array_function__(self, func, types, args, kwargs):
        translate = _NUMPY_FUNCTIONS.get(func)
        if translate is None:
            raise _traced_error(self, f"numpy.{func.__name__}")
        return translate(*args, **kwargs)

    # -- arithmetic --------------------------------------------------------------------------------------
    def __add__(self, o):
        return record_call("add", (self, o), {})

    def __radd__(self, o):
        return record_call("add", (o, self), {})

    def __sub__(self, o):
        return record_call("sub", (self, o), {})

    def __rsub__(self, o):
        return record_call("sub", (o, self), {})

    def __mul__(self, o):
        return record_call("mul", (self, o), {})

    def __rmul__(self, o):
        return record_call("mul", (o, self), {})

    def __truediv__(self, o):
        return record_call("div", (self, o), {})

    def __rtruediv__(self, o):
        return record_call("div", (o, self), {})

    def __matmul__(self, o):
        return record_call("matmul", (self, o), {})

    def __rmatmul__(self, o):
        return record_call("matmul", (o, self), {})

    def __neg__(self):
        return record_call("neg", (self,), {})

    def __pos__(self):
        return self

    def __pow__(self, p):
        return record_call("pow", (self, p), {})

    def __rpow__(self, base):
        return record_call("pow", (base, self), {})

    def __gt__(self, o):
        return record_call("gt", (self, o), {})

    def __ge__(self, o):
        return record_call("ge", (self, o), {})

    def __lt__(self, o):
        return record_call("lt", (self, o), {})

    def __le__(self, o):
        return record_call("le", (self, o), {})

    def __eq__(self, o):
        return record_call("eq", (self, o), {})

    def __ne__(self, o):
        return record_call("ne", (self, o), {})

    __hash__ = object.__hash__

    def __getitem__(self, key):
        return record_call("getitem", (self, key), {})

    # -- PyTorch-style methods ----------------------------------------------------------------------------
    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return record_call("reshape", (self, tuple(shape)), {})

    view = reshape

    def flatten(self, start_dim=0, end_dim=-1):
        return record_call("flatten", (self, start_dim, end_dim), {})

    def transpose(self, *dims):
        if not dims or (len(dims) == self.ndim and len(dims) != 2):
            return self.permute(*(dims or range(self.ndim - 1, -1, -1)))
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            return self.permute(*dims[0])
        return record_call("transpose", (self, dims[0], dims[1]), {})

    def permute(self, *dims):
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = tuple(dims[0])
        return record_call("permute", (self, tuple(dims)), {})

    @property
    def T(self):
        return self.permute(*range(self.ndim - 1, -1, -1))

    def unsqueeze(self, dim):
        return record_call("unsqueeze", (self, dim), {})

    def squeeze(self, dim=None):
        return record_call("squeeze", (self, dim), {})

    def expand(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return record_call("expand", (self, tuple(shape)), {})

    def contiguous(self):
        return self

    def _reduce(self, name, dim, keepdim, axis, keepdims):
        dim = axis if dim is None else dim
        return record_call(name, (self, tuple(dim) if isinstance(dim, list) else dim, bool(keepdim or keepdims)),
                           {})

    def sum(self, dim=None, keepdim=False, *, axis=None, keepdims=False):
        return self._reduce("sum", dim, keepdim, axis, keepdims)

    def mean(self, dim=None, keepdim=False, *, axis=None, keepdims=False):
        return self._reduce("mean", dim, keepdim, axis, keepdims)

    def exp(self):
        return record_call("exp", (self,), {})

    def log(self):
        return record_call("log", (self,), {})

    def sqrt(self):
        return record_call("sqrt", (self,), {})

    def abs(self):
        return record_call("abs", (self,), {})

    def tanh(self):
        return record_call("tanh", (self,), {})

    def sigmoid(self):
        return record_call("sigmoid", (self,), {})

    def relu(self):
        return record_call("relu", (self,), {})

    def softmax(self, dim=-1):
        return record_call("softmax", (self, dim), {})


def _np_reduce(name):
    def f(a, axis=None, dtype=None, out=None, keepdims=False):
        if dtype is not None or out is not None:
            raise TraceError(f"numpy.{name} with dtype= or out= cannot be recorded [{user_location()}]")
        return record_call(name, (a, tuple(axis) if isinstance(axis, list) else axis, bool(keepdims)), {})
    return f


# NumPy functions on Values, recorded as the equivalent ops (a forward written with NumPy traces as it is).
_NUMPY_FUNCTIONS = {
    np.swapaxes: lambda a, axis1, axis2: record_call("transpose", (a, axis1, axis2), {}),
    np.transpose: lambda a, axes=None: record_call("permute", (a, tuple(range(a.ndim - 1, -1, -1)) if axes is None
                                                                else tuple(axes)), {}),
    np.reshape: lambda a, newshape=None, order="C", **kw: record_call(
        "reshape", (a, tuple(kw.get("shape", newshape)) if not isinstance(kw.get("shape", newshape), int)
                    else (kw.get("shape", newshape),)), {}),
    np.concatenate: lambda arrays, axis=0: record_call("cat", (list(arrays), axis), {}),
    np.stack: lambda arrays, axis=0: record_call("stack", (list(arrays), axis), {}),
    np.expand_dims: lambda a, axis: record_call("unsqueeze", (a, axis), {}),
    np.squeeze: lambda a, axis=None: record_call("squeeze", (a, axis), {}),
    np.matmul: lambda a, b: record_call("matmul", (a, b), {}),
    np.sum: _np_reduce("sum"),
    np.mean: _np_reduce("mean"),
}


# ---------------------------------------------------------------------------------------------------------
# recording
# ---------------------------------------------------------------------------------------------------------
def _walk(obj, fn):
    """Apply fn to every leaf of nested tuples/lists/dicts/slices."""
    t = type(obj)
    if t is tuple:
        return tuple(_walk(o, fn) for o in obj)
    if t is list:
        return [_walk(o, fn) for o in obj]
    if t is dict:
        return {k: _walk(o, fn) for k, o in obj.items()}
    if t is slice:
        return slice(_walk(obj.start, fn), _walk(obj.stop, fn), _walk(obj.step, fn))
    return fn(obj)


def _values_in(obj, found):
    def see(o):
        if isinstance(o, Value):
            found.append(o)
        elif isinstance(o, Dim):
            found.append(o.value)
        return o
    _walk(obj, see)
    return found


def _session_of(args, kwargs):
    values = _values_in((args, kwargs), [])
    sessions = {id(v._rec.session): v._rec.session for v in values}
    if len(sessions) > 1:
        raise TraceError(f"values from different graphs are combined [{user_location()}]: a value recorded "
                         f"in one model's forward (or a Keras-style Input) cannot be used in another")
    return next(iter(sessions.values())) if sessions else None, values


def _leaves_to_values(args, session):
    """Parameters, buffers and arrays next to traced values become attr/constant records."""
    def conv(o):
        if isinstance(o, Parameter) or (isinstance(o, np.ndarray) and not isinstance(o, Value)):
            if session is not None:
                return session.leaf(o)
            if isinstance(o, Parameter):
                return Value(_Record("attr", o, (), {}, (o.data, o.data), None, _scope()), ())
            return Value(_Record("constant", o, (), {}, (o, o), None, _scope()), ())
        return o
    return _walk(args, conv)


def _concrete(obj, k):
    """The k-th example of every Value, plain ints for Dims."""
    def conv(o):
        if isinstance(o, Value):
            return _pick(o._rec.outputs[k], o._path)
        if isinstance(o, Dim):
            return np.shape(_pick(o.value._rec.outputs[k], o.value._path))[o.axis]
        return o
    return _walk(obj, conv)


def _n_examples(session):
    return 1 if session is not None else 2


def record_call(name, args, kwargs, session=None):
    """Record functional op `name` on (args, kwargs), which hold a Value (or, inside the trace `session`,
    a Parameter); returns its Value."""
    if session is None:
        session, _ = _session_of(args, kwargs)
    args, kwargs = _leaves_to_values(args, session), _leaves_to_values(kwargs, session)
    op = OPS[name]
    outs = []
    with _keras_guard(session, ()):
        for k in range(_n_examples(session)):
            out, _ = op.forward(*_concrete(args, k), **_concrete(kwargs, k))
            outs.append(out)
    return Value(_Record("call", name, args, kwargs, tuple(outs), session, _scope()), ())


def _wrap_outputs(rec, out, path=()):
    if isinstance(out, tuple):
        return tuple(_wrap_outputs(rec, o, path + (i,)) for i, o in enumerate(out))
    if isinstance(out, list):
        return [_wrap_outputs(rec, o, path + (i,)) for i, o in enumerate(out)]
    if out is None:
        return None
    return Value(rec, path)


def _normalise_outputs(out, module):
    if isinstance(out, (tuple, list)):
        return type(out)(_normalise_outputs(o, module) for o in out)
    if out is None or isinstance(out, np.ndarray):
        return out
    if isinstance(out, (float, int, np.number)):
        return np.asarray(out)
    raise TraceError(f"{module!r}: its forward returned a {type(out).__name__}; a graph records modules that "
                     f"return arrays or tuples/lists of them")


# Keras-style inlining of traced modules: the outermost module whose forward is being recorded.
_scope_stack = []


def _scope():
    return _scope_stack[0] if _scope_stack else None


def record_module(module, args, kwargs):
    """Module call on traced values: inlined when the module is traced itself, else one "module" record."""
    session, _ = _session_of(args, kwargs)
    inline = type(module).forward.__wrapped__ if type(module).traced else getattr(type(module), "graph_forward",
                                                                                  None)
    if inline is not None:  # traced modules and chains (Sequential): their calls join this graph
        if session is not None:
            if id(module) not in session.module_paths:
                raise TraceError(f"{type(session.root).__name__}: forward calls {module!r}, which is not a "
                                 f"sub-module of the model (assign it as an attribute) [{user_location()}]")
            session.inlined.append((module, module.training))
            return inline(module, *args, **kwargs)
        _scope_stack.append(module)
        try:
            return inline(module, *args, **kwargs)
        finally:
            _scope_stack.pop()
    if session is not None and id(module) not in session.module_paths:
        raise TraceError(f"{type(session.root).__name__}: forward calls {module!r}, which is not a sub-module of "
                         f"the model (assign it as an attribute, or put it in a ModuleList/ModuleDict) "
                         f"[{user_location()}]")
    args, kwargs = _leaves_to_values(args, session), _leaves_to_values(kwargs, session)
    outs = []
    with _keras_guard(session, (module,)):
        for k in range(_n_examples(session)):
            outs.append(_normalise_outputs(module.forward(*_concrete(args, k), **_concrete(kwargs, k)), module))
    rec = _Record("module", module, args, kwargs, tuple(outs), session, _scope())
    return _wrap_outputs(rec, outs[0])


def input_value(index, examples, session, name):
    """The Value of graph input `index` with its example arrays."""
    return Value(_Record("input", index, (), {}, tuple(examples), session, name=name), ())


# ---------------------------------------------------------------------------------------------------------
# side effects while recording
# ---------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def no_side_effects(modules):
    """Undo what recording changes besides module caches: fastnn's random stream (dropout masks drawn
    while computing examples) and every buffer of `modules` (batch-norm running statistics)."""
    gen = generator()
    rng_state = gen.bit_generator.state
    saved = []
    for m in modules:
        for name, b in m.named_buffers():
            owner, _, attr = name.rpartition(".")
            saved.append((m.get_submodule(owner), attr, b, None if b is None else np.array(b, copy=True)))
    try:
        yield
    finally:
        gen.bit_generator.state = rng_state
        for owner, attr, array, copy in saved:
            if isinstance(array, np.ndarray) and array.flags.writeable:
                array[...] = copy
            object.__setattr__(owner, attr, array)


@contextlib.contextmanager
def _keras_guard(session, modules):
    if session is not None:  # a trace runs inside one no_side_effects of its root
        yield
        return
    with no_side_effects(modules):
        yield


# ---------------------------------------------------------------------------------------------------------
# GraphDef from records
# ---------------------------------------------------------------------------------------------------------
_CAMEL = re.compile(r"(?:(?<=[a-z0-9])|(?<=[A-Z]{2}))(?=[A-Z][a-z])")


def snake_name(module):
    """conv2d, batch_norm2d, relu, lstm, linear: a module's class name in snake case."""
    return _CAMEL.sub("_", type(module).__name__).lower()


def reachable_records(outputs):
    """The records the outputs depend on, in recording order (Keras style)."""
    seen, stack = {}, _values_in(outputs, [])
    while stack:
        v = stack.pop()
        rec = v._rec
        if id(rec) in seen:
            continue
        seen[id(rec)] = rec
        stack.extend(_values_in((rec.args, rec.kwargs), []))
    return sorted(seen.values(), key=lambda r: r.order)


def build_graph(records, inputs, outputs, module_path, attr_name, input_names):
    """The GraphDef of `records` (every record the graph holds, in order) with graph inputs `inputs` (their
    Values) and `outputs` (a Value or nested tuples/lists of them). module_path(record) and
    attr_name(record) give the targets of module and attr records."""
    input_recs = [v._rec for v in inputs]
    index = {}
    nodes = []
    for k, rec in enumerate(input_recs):
        index[id(rec)] = len(nodes)
        nodes.append(Node(input_names[k], "input", k))
    constants = {}
    counts = {}

    def unique(base):
        n = counts.get(base, 0)
        counts[base] = n + 1
        return base if n == 0 else f"{base}_{n}"

    def to_ref(o):
        if isinstance(o, Value):
            j = index.get(id(o._rec))
            if j is None:
                raise TraceError("a graph output depends on an input that is not among the graph's inputs")
            return Ref(j, o._path)
        if isinstance(o, Dim):
            if not o.is_dynamic():
                return o.size
            j = index.get(id(o.value._rec))
            return DimRef(j, o.value._path, o.axis)
        if isinstance(o, np.dtype):
            return o
        if isinstance(o, type) and issubclass(o, np.generic):
            return np.dtype(o)
        return o

    for rec in records:
        if rec.op == "input":
            if id(rec) not in index:
                raise TraceError("the graph's outputs depend on an Input that is not among its inputs")
            continue
        if rec.op == "module":
            target = module_path(rec)
            name = unique(target)
        elif rec.op == "call":
            target, name = rec.target, unique(rec.target)
        elif rec.op == "attr":
            target = attr_name(rec)
            name = unique(target)
        else:
            target = unique("constant")
            constants[target] = rec.target
            name = target
        index[id(rec)] = len(nodes)
        nodes.append(Node(name, rec.op, target, _walk(rec.args, to_ref), _walk(rec.kwargs, to_ref)))
    specs = []
    for k, v in enumerate(inputs):
        exs = v.examples()
        shapes = [np.shape(e) for e in exs]
        shape = tuple(s if all(sh[a] == s for sh in shapes) else None for a, s in enumerate(shapes[0]))
        specs.append(InputSpec(input_names[k], shape[1:] if shape else shape, np.asarray(exs[0]).dtype.name))
    return GraphDef(specs, nodes, _walk(outputs, to_ref), constants)
