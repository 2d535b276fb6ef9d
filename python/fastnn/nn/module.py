"""Module and Parameter: the layer-level backpropagation model of Torch7's `nn`, with PyTorch's names.

A Module has `forward(*inputs)` and `backward(*grad_outputs, need_input_grad=True)`: backward takes one
gradient per output of the last forward (None: zeros), fills the `.grad` of the parameters (accumulating,
like PyTorch, until `zero_grad()`) and returns the gradient w.r.t. the input (a tuple of them for several
inputs), or None when need_input_grad is False. Each layer writes that one method; `backward_parameters(g)`
is `backward(g, need_input_grad=False)`, the call a training step makes (the first layer's input gradient
is never needed).

What forward keeps for backward lives on the module itself (its inputs, masks, ...). When one module is
called at several places of a graph, the graph executor keeps each call's copy of that state
(`save_call_state` / `restore_call_state`).

A subclass that writes no backward is *traced*: its forward is recorded into a graph the first time it runs
for a kind of input, and backward walks that graph in reverse (fastnn.nn.traced). Module only knows the
entry points of that machinery, which fastnn.nn installs (`install_graph_runtime`), so this file
imports nothing from the graph code.
"""
import inspect
import itertools
import operator
import threading
import weakref
from collections import OrderedDict, namedtuple

import numpy as np

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])

#: What a layer computes, as plain data (Module.describe): `kind` ("linear", "conv", "batch_norm",
#: "activation", "max_pool", "avg_pool", "dropout", "identity", "flatten"), `attrs` (hyper-parameters, with
#: sizes as full tuples: kernel_size, stride, padding, ... of length dims) and `params` (name -> the live
#: ndarray or None: weight, bias, running_mean, ...). Fused inference plans and exporters read it instead of
#: a layer's private fields.
LayerSpec = namedtuple("LayerSpec", ["kind", "attrs", "params"])

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# Bumped whenever a Parameter or Module is registered, replaced or removed anywhere: plans that hold
# module and parameter references revalidate themselves when it moves. requires_grad_version moves when a
# parameter is frozen or unfrozen (which gradients a graph computes depends on it).
_versions = itertools.count()
structure_version = [next(_versions)]
requires_grad_version = [next(_versions)]
data_version = [next(_versions)]  # moves when any Parameter's data array is replaced (not changed in place)


def _bump_structure():
    structure_version[0] = next(_versions)


class _Tracing(threading.local):
    """The recording in progress on this thread (fastnn.nn.tracing.Session), or None."""
    session = None


tracing_state = _Tracing()


class Parameter:
    """A learnable array: ``data``, its gradient ``grad`` (same shape and dtype) and ``requires_grad``.

    Frozen parameters (``requires_grad=False``) get no gradient and are skipped by optimizers. Operators
    (``+ - * / @ **``, unary ``-``), ``.T`` and indexing work on a Parameter as on its data; inside a traced
    forward they are recorded, so ``x + self.pos[:T]`` or ``x @ self.w.T`` gets its gradient.

    Assigning ``data`` checks the new array: same shape as before, a floating dtype (float32 and float64 are
    kept, other floating types become the current dtype); it is stored C-contiguous. ``zero_grad()`` is lazy:
    the next backward overwrites the buffer instead of adding to it, and reading ``grad`` before that gives
    zeros.

    Parameters
    ----------
    data : array_like
        The initial values; non-floating arrays become float32.
    requires_grad : bool, default True
        Train it (False: frozen).

    See Also
    --------
    Module.named_parameters, fastnn.utils.freeze

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> class Scale(fnn.nn.Module):
    ...     def __init__(self, n):
    ...         super().__init__()
    ...         self.gain = fnn.nn.Parameter(np.ones(n, np.float32))
    ...     def forward(self, x):
    ...         return x * self.gain                    # traced: backward comes for free
    >>> m = Scale(3)
    >>> y = m(np.full((2, 3), 2.0, np.float32))
    >>> _ = m.backward(np.ones((2, 3), np.float32))
    >>> m.gain.grad                                     # sum over the batch of x
    array([4., 4., 4.], dtype=float32)
    """

    __slots__ = ("_data", "_grad", "_grad_is_zero", "_requires_grad")

    def __init__(self, data, requires_grad=True):
        data = np.ascontiguousarray(data)
        if data.dtype.kind not in "fc" and data.size:
            data = data.astype(np.float32)
        self._data = data
        self._grad = np.zeros_like(self._data)
        self._grad_is_zero = False
        self._requires_grad = bool(requires_grad)

    @property
    def requires_grad(self):
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value):
        value = bool(value)
        if value != self._requires_grad:
            self._requires_grad = value
            requires_grad_version[0] = next(_versions)

    @property
    def data(self):
        return self._data

    @data.setter
    def data(self, value):
        if not isinstance(value, np.ndarray):
            value = np.asarray(value)
        if value.shape != self._data.shape:
            raise ValueError(f"Parameter: new data has shape {value.shape}, the parameter has shape "
                             f"{self._data.shape}")
        if value.dtype.kind != "f":
            raise TypeError(f"Parameter: data must be a floating-point array, got dtype {value.dtype}")
        dtype = value.dtype if value.dtype in _FLOAT_DTYPES else self._data.dtype
        self._data = np.ascontiguousarray(value, dtype=dtype)
        data_version[0] = next(_versions)
        if self._grad.dtype != dtype:
            self._grad = np.zeros_like(self._data)
            self._grad_is_zero = False

    @property
    def grad(self):
        if self._grad_is_zero:
            self._grad.fill(0)
            self._grad_is_zero = False
        return self._grad

    @grad.setter
    def grad(self, value):
        value = np.asarray(value)
        if value.shape != self._data.shape:
            raise ValueError(f"Parameter: grad of shape {value.shape} does not match data {self._data.shape}")
        self._grad = np.ascontiguousarray(value, dtype=self._data.dtype)
        self._grad_is_zero = False

    def zero_grad(self):
        self._grad_is_zero = True

    def grad_for_kernel(self):
        """(buffer, accumulate) for a kernel about to write this gradient: accumulate=False means the
        buffer's contents are stale and must be overwritten, not added to."""
        accumulate = not self._grad_is_zero
        self._grad_is_zero = False
        return self._grad, accumulate

    def add_grad(self, value):
        """Adds `value` (the parameter's shape) to the gradient, respecting the lazy zero."""
        buf, accumulate = self.grad_for_kernel()
        if accumulate:
            buf += value
        else:
            np.copyto(buf, value, casting="same_kind")

    @property
    def shape(self):
        return self._data.shape

    @property
    def dtype(self):
        return self._data.dtype

    @property
    def size(self):
        return self._data.size

    @property
    def ndim(self):
        return self._data.ndim

    def _cast(self, dtype):
        if self._data.dtype != dtype:
            self._data = self._data.astype(dtype)
            self._grad = self._grad.astype(dtype)
            data_version[0] = next(_versions)

    def __repr__(self):
        return f"Parameter(shape={self._data.shape}, dtype={self._data.dtype}, requires_grad={self.requires_grad})"

    def _operand(self):
        """Inside a trace, the Value that records this parameter; otherwise its data."""
        session = tracing_state.session
        return self._data if session is None else session.leaf(self)

    @property
    def T(self):
        return self._operand().T

    def __getitem__(self, key):
        return self._operand()[key]

    def __neg__(self):
        return -self._operand()

    def __getattr__(self, name):
        """Array methods (reshape, sum, ...; inside a trace also expand, view, unsqueeze, ...) act on the
        parameter's value, as its operators do."""
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._operand(), name)

    __hash__ = object.__hash__


def _parameter_operator(op, reflected):
    if reflected:
        def method(self, other):
            return op(other, self._operand())
    else:
        def method(self, other):
            return op(self._operand(), other)
    return method


for _name, _op in (("add", operator.add), ("sub", operator.sub), ("mul", operator.mul),
                   ("truediv", operator.truediv), ("matmul", operator.matmul), ("pow", operator.pow)):
    setattr(Parameter, f"__{_name}__", _parameter_operator(_op, False))
    setattr(Parameter, f"__r{_name}__", _parameter_operator(_op, True))


class Symbolic:
    """A value that stands for an array while a graph is being built (fastnn.nn.tracing.Value). Calling a
    module on one records the call instead of computing it."""

    __slots__ = ()

    def record_module_call(self, module, args, kwargs):
        raise NotImplementedError


def _symbolic_in(args, kwargs):
    """The first Symbolic among the arguments (one level of tuples/lists looked into), or None."""
    for a in args:
        if isinstance(a, Symbolic):
            return a
        if type(a) in (tuple, list):
            for b in a:
                if isinstance(b, Symbolic):
                    return b
    if kwargs:
        return _symbolic_in(tuple(kwargs.values()), None)
    return None


class _GraphRuntime:
    """The entry points of traced modules and summaries; fastnn.nn installs fastnn.nn.traced.GraphRuntime."""

    def forward(self, module, user_forward, args, kwargs):
        raise RuntimeError("fastnn.nn.traced is not loaded")

    def backward(self, module, grad_outputs, need_input_grad):
        raise RuntimeError("fastnn.nn.traced is not loaded")

    def summary(self, module, input_shape, dtype):
        raise RuntimeError("fastnn.nn.summary is not loaded")


_graph_runtime = _GraphRuntime()


def install_graph_runtime(runtime):
    """Called once by fastnn.nn: the object whose forward/backward run traced modules, and summary."""
    global _graph_runtime
    _graph_runtime = runtime


_locks = weakref.WeakKeyDictionary()  # module -> its RLock (kept outside the module: copies get their own)
_locks_guard = threading.Lock()


def _takes_need_input_grad(fn):
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "need_input_grad" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _traced_forward(user_forward):
    def forward(self, *args, **kwargs):
        return _graph_runtime.forward(self, user_forward, args, kwargs)
    forward.__wrapped__ = user_forward
    forward.__doc__ = user_forward.__doc__
    forward.__name__ = getattr(user_forward, "__name__", "forward")
    forward.__qualname__ = getattr(user_forward, "__qualname__", "forward")
    forward._fastnn_traced = True
    return forward


class Module:
    """Base class of every layer, container and model: ``forward`` and ``backward`` on NumPy arrays.

    Subclasses call ``super().__init__()``, then assign Parameters, sub-Modules and ``register_buffer(...)``
    arrays as attributes (which registers them under names such as ``"fc.weight"``), and implement
    ``forward``. ``backward(*grad_outputs, need_input_grad=True)`` takes one gradient per output of the last
    forward (None: zeros), accumulates into the parameters' ``.grad`` and returns the gradient w.r.t. the
    input (a tuple for several inputs; None for integer inputs). A subclass that writes no ``backward`` gets one
    by tracing ``forward`` into a graph (module calls, :mod:`fastnn.nn.functional`, arithmetic, indexing);
    Python control flow on array values raises :class:`TraceError`.

    The PyTorch interface: ``__call__`` runs ``forward``; ``train()`` / ``eval()``; ``parameters()``,
    ``named_parameters()``, ``children()``, ``modules()``, ``named_buffers()``; ``zero_grad()``;
    ``state_dict()`` / ``load_state_dict(sd, strict=True)``; ``to(dtype)``, ``double()``, ``float()``. Also
    ``backward_parameters(g)`` (backward without the input gradient, as a training step needs),
    ``summary(input_shape)`` and ``num_parameters()``.

    See Also
    --------
    Parameter, Sequential, Graph

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> F = fnn.nn.functional
    >>> class MLP(fnn.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.fc1 = fnn.nn.Linear(4, 8)
    ...         self.fc2 = fnn.nn.Linear(8, 2)
    ...     def forward(self, x):
    ...         return self.fc2(F.relu(self.fc1(x)))
    >>> model = MLP()
    >>> [name for name, _ in model.named_parameters()]
    ['fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias']
    >>> out = model(np.ones((5, 4), np.float32))
    >>> model.backward(np.ones_like(out)).shape          # the traced backward
    (5, 4)
    >>> sorted(model.state_dict()) == sorted(name for name, _ in model.named_parameters())
    True
    """

    #: True for classes whose backward comes from their traced forward (set per class).
    traced = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        own_backward = cls.backward is not Module.backward or cls.backward_parameters is not Module.backward_parameters
        forward = cls.forward
        wrapped = getattr(forward, "_fastnn_traced", False)
        if own_backward:
            cls.traced = False
            if wrapped:  # a traced parent's forward, inherited by a class that writes its own backward
                cls.forward = forward.__wrapped__
        else:
            cls.traced = forward is not Module.forward
            if cls.traced and not wrapped:
                cls.forward = _traced_forward(forward)
        cls._backward_takes_flag = _takes_need_input_grad(cls.backward)

    def __new__(klass, *args, **kwargs):  # not `cls`: a constructor argument may be called that
        self = super().__new__(klass)
        # Constructor arguments, kept so fastnn.save can write the architecture as JSON.
        object.__setattr__(self, "_init_args", (args, kwargs))
        return self

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "training", True)

    # -- registration ------------------------------------------------------------------------------
    def __setattr__(self, name, value):
        # Hot path: layers cache arrays for backward on every forward; only Parameters, Modules, buffers and
        # names registered as one of those need the registries.
        d = self.__dict__
        if not (isinstance(value, (Parameter, Module)) or name in d.get("_registered", ())):
            object.__setattr__(self, name, value)
            return
        if "_parameters" not in d:
            raise AttributeError(f"{type(self).__name__}: call super().__init__() before assigning attributes")
        current = self._parameters.get(name)
        if current is not None:
            self._check_parameter_assignment(name, current, value)
            if isinstance(value, np.ndarray):
                current.data = value  # a right-shaped array becomes the parameter's data (checked above)
                return
        if isinstance(value, Parameter):
            target = self._parameters
        elif isinstance(value, Module):
            target = self._modules
        else:
            target = self._buffers if name in d.get("_buffer_names", ()) else None
        for registry in (self._parameters, self._modules, self._buffers):
            if registry is not target:
                registry.pop(name, None)
        if target is not None:
            target[name] = value  # re-assigning keeps the name's place: state_dict order never changes
        if name not in d.get("_buffer_names", ()) and not isinstance(value, (Parameter, Module)):
            d["_registered"].discard(name)  # a plain value replaces a Parameter/Module: unregistered
        else:
            d.setdefault("_registered", set()).add(name)
        if target is not self._buffers:
            _bump_structure()
        object.__setattr__(self, name, value)

    def _check_parameter_assignment(self, name, current, value):
        """Assigning to a parameter's name: a Parameter or array of the same shape, or None to remove it."""
        if value is None:
            return
        if isinstance(value, Parameter):
            new_shape = value.shape
        elif isinstance(value, np.ndarray):
            if value.dtype.kind != "f":
                raise TypeError(f"{self!r}: cannot assign an array of dtype {value.dtype} to parameter '{name}' "
                                f"(a floating-point array or a Parameter is expected)")
            new_shape = value.shape
        else:
            raise TypeError(f"{self!r}: cannot assign {type(value).__name__} as parameter '{name}' "
                            f"(fastnn.nn.Parameter, a numpy array or None expected)")
        if new_shape != current.shape:
            raise ValueError(f"{self!r}: parameter '{name}' has shape {current.shape}; cannot assign one of "
                             f"shape {new_shape} (build a new layer for other sizes)")

    def register_buffer(self, name, array):
        """A non-learnable array saved in state_dict (e.g. batch-norm running statistics)."""
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call super().__init__() before registering buffers")
        self.__dict__.setdefault("_buffer_names", set()).add(name)
        self.__dict__.setdefault("_registered", set()).add(name)
        setattr(self, name, array)

    def __delattr__(self, name):
        for registry in (self._parameters, self._modules, self._buffers):
            registry.pop(name, None)
        _bump_structure()
        object.__delattr__(self, name)

    # -- computation -------------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        symbolic = _symbolic_in(args, kwargs)
        if symbolic is not None:
            return symbolic.record_module_call(self, args, kwargs)
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not implement forward()")

    def backward(self, *grad_outputs, need_input_grad=True):
        """Gradients w.r.t. the inputs of the last forward, given one gradient per output (None: zeros).
        Modules that write no backward run their traced graph in reverse."""
        if not type(self).traced:
            raise NotImplementedError(f"{type(self).__name__} does not implement backward()")
        return _graph_runtime.backward(self, grad_outputs, need_input_grad)

    def backward_parameters(self, *grad_outputs):
        """Accumulate parameter gradients only; the input gradient is not computed (a training step never
        needs it)."""
        if self._backward_takes_flag:
            self.backward(*grad_outputs, need_input_grad=False)
        else:
            self.backward(*grad_outputs)

    def backward_inputs(self, grad_outputs, need_input_grad, num_inputs):
        """The graph executor's call: gradients for each of the `num_inputs` positional inputs of the last
        forward, as a tuple (None where there is none). Modules that report some input gradients outside
        backward's return value (the initial state of a recurrent layer) override it."""
        if self._backward_takes_flag:
            g = self.backward(*grad_outputs, need_input_grad=need_input_grad)
        else:
            g = self.backward(*grad_outputs)
        if num_inputs == 1:
            return (g,)
        if not isinstance(g, tuple) or len(g) != num_inputs:
            raise TypeError(f"{self!r}: forward took {num_inputs} inputs, so backward must return a tuple of "
                            f"{num_inputs} gradients (None where there is none), got {type(g).__name__}")
        return g

    def lock(self):
        """This module's re-entrant lock. A model keeps what its backward needs from its last forward, so one
        model used from several threads needs each forward/backward pair under the lock (fastnn.Trainer takes
        it around every batch). Different models in different threads need nothing; a backward on another
        thread than its forward raises RuntimeError instead of mixing two calls."""
        lk = _locks.get(self)
        if lk is None:
            with _locks_guard:
                lk = _locks.setdefault(self, threading.RLock())
        return lk

    # -- per-call state ----------------------------------------------------------------------------
    def save_call_state(self):
        """What the last forward left on this module and its descendants for backward (everything but
        registered parameters, buffers and sub-modules)."""
        state = []
        for m in self.modules():
            d = m.__dict__
            registered = d.get("_registered", ())
            state.append((m, {k: v for k, v in d.items() if k not in registered}))
        return state

    @staticmethod
    def restore_call_state(state):
        """Put back what `save_call_state` returned, so the next backward is that call's."""
        for m, saved in state:
            m.__dict__.update(saved)

    # -- modes and traversal -----------------------------------------------------------------------
    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def children(self):
        return iter(self._modules.values())

    def named_children(self):
        return iter(self._modules.items())

    def named_modules(self, prefix="", remove_duplicate=True):
        """(path, module) pairs, this module first. A module registered at several places (a layer used twice
        in a Sequential) comes once, at its first path, unless remove_duplicate=False (PyTorch's rule)."""
        return self._walk(prefix, set() if remove_duplicate else None)

    def _walk(self, prefix, seen):
        if seen is not None:
            if id(self) in seen:
                return
            seen.add(id(self))
        yield prefix, self
        for name, child in self._modules.items():
            yield from child._walk(f"{prefix}.{name}" if prefix else name, seen)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def get_submodule(self, target):
        """The module at the dotted path `target` ("" is the module itself)."""
        m = self
        if target == "":
            return m
        for part in target.split("."):
            child = m._modules.get(part)
            if child is None:
                raise AttributeError(f"{type(self).__name__} has no sub-module '{target}'")
            m = child
        return m

    def _named_members(self, table, prefix, recurse, remove_duplicate):
        """(name, value) pairs of one table (_parameters or _buffers) of this module and, with recurse, of its
        sub-modules. remove_duplicate: an array reached twice comes once, under its first name."""
        modules = self.named_modules(prefix, remove_duplicate) if recurse else [(prefix, self)]
        seen = set()
        for mod_name, m in modules:
            for name, value in getattr(m, table).items():
                if remove_duplicate and isinstance(value, (Parameter, np.ndarray)):  # not ints or None: those repeat
                    if id(value) in seen:
                        continue
                    seen.add(id(value))
                yield (f"{mod_name}.{name}" if mod_name else name), value

    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        """(name, Parameter) pairs. A parameter of a module used at several places comes once, under its first
        name (the optimizer steps it once; its gradient adds up every use), unless remove_duplicate=False."""
        return self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse=True):
        return [p for _, p in self.named_parameters(recurse=recurse)]

    def named_buffers(self, prefix="", recurse=True, remove_duplicate=True):
        return self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def zero_grad(self):
        for p in self.parameters():
            p.zero_grad()

    def num_parameters(self, trainable_only=False):
        return sum(p.size for p in self.parameters() if p.requires_grad or not trainable_only)

    # -- precision ---------------------------------------------------------------------------------
    def to(self, dtype):
        """Cast parameters and floating buffers to float32 or float64; computation follows them."""
        dtype = np.dtype(dtype)
        if dtype not in _FLOAT_DTYPES:
            raise TypeError(f"{self!r}: dtype must be float32 or float64, got {dtype}")
        for m in self.modules():
            for p in m._parameters.values():
                p._cast(dtype)
            for name, b in list(m._buffers.items()):
                if isinstance(b, np.ndarray) and b.dtype.kind == "f":
                    setattr(m, name, b.astype(dtype))
        return self

    def double(self):
        return self.to(np.float64)

    def float(self):
        return self.to(np.float32)

    @property
    def dtype(self):
        for p in self.parameters():
            return p.dtype
        return np.dtype(np.float32)

    # -- state ------------------------------------------------------------------------------------
    def state_dict(self):
        """name -> copy of each parameter and buffer (copies: later training never changes a saved dict)."""
        sd = OrderedDict()  # every path of a shared module, as PyTorch's state_dict
        for name, p in self.named_parameters(remove_duplicate=False):
            sd[name] = p.data.copy()
        for name, b in self.named_buffers(remove_duplicate=False):
            sd[name] = np.array(b, copy=True)
        return sd

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays into parameters and buffers in place (optimizers keep their references), cast to
        each target's dtype. strict=True: missing or unexpected keys raise KeyError. Shapes must match.
        Returns (missing_keys, unexpected_keys)."""
        targets = OrderedDict()
        for name, p in self.named_parameters(remove_duplicate=False):
            targets[name] = ("param", p)
        for mod_name, m in self.named_modules(remove_duplicate=False):
            for name in m._buffers:
                targets[f"{mod_name}.{name}" if mod_name else name] = ("buffer", (m, name))
        missing = [k for k in targets if k not in state_dict]
        unexpected = [k for k in state_dict if k not in targets]
        if strict and (missing or unexpected):
            raise KeyError(f"{type(self).__name__}.load_state_dict: missing keys {missing}, "
                           f"unexpected keys {unexpected}")
        # Validate everything before changing anything, so a failed load leaves the model as it was.
        staged = []
        for key, (kind, target) in targets.items():
            if key not in state_dict:
                continue
            value = np.asarray(state_dict[key])
            current = target.data if kind == "param" else getattr(*target)
            current_shape = np.shape(current)
            if value.shape != current_shape:
                raise ValueError(f"{type(self).__name__}.load_state_dict: '{key}' has shape {value.shape}, "
                                 f"the model expects {current_shape}")
            if value.dtype.kind not in "fiub":
                raise TypeError(f"load_state_dict: '{key}' has unsupported dtype {value.dtype}")
            staged.append((kind, target, value))
        for kind, target, value in staged:
            if kind == "param":
                target.data[...] = value
            else:
                m, name = target
                current = getattr(m, name)
                if isinstance(current, np.ndarray):
                    current[...] = value
                else:
                    setattr(m, name, value.copy())
        return IncompatibleKeys(missing, unexpected)

    # -- description -------------------------------------------------------------------------------
    def describe(self):
        """This layer as a LayerSpec (kind, hyper-parameters, arrays), or None for layers without one."""
        return None

    def extra_repr(self):
        return ""

    def __repr__(self):
        if not self._modules:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"{type(self).__name__}("]
        for name, m in self._modules.items():
            child = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child}")
        lines.append(")")
        return "\n".join(lines)

    def summary(self, input_shape=None, dtype=None):
        """A table of what the model computes (one row per leaf layer, or per graph node for graph models):
        name, type, output shape for a batch of 1, parameter count. input_shape: one sample's shape (a list
        of shapes for several inputs; a Graph knows its own); dtype: one dtype or one per input."""
        return _graph_runtime.summary(self, input_shape, dtype)
