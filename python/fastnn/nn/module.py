"""Module and Parameter: the layer-level backpropagation model of Torch7's `nn`, with PyTorch's names.

A Module has `forward(x)` and `backward(grad_output) -> grad_input`; backward fills the `.grad` of its
parameters (accumulating, like PyTorch, until `zero_grad()`). There is no tape: containers call their
children's backward in reverse order.
"""
from collections import OrderedDict, namedtuple

import numpy as np

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Parameter:
    """A learnable array: `data`, its gradient `grad` (same shape and dtype) and `requires_grad`.
    Frozen parameters (requires_grad=False) get no gradient and are skipped by optimizers.

    zero_grad() is lazy: it only marks the gradient as zero, and the next backward overwrites the buffer
    instead of adding to it (the effect of PyTorch's set_to_none, without ever making `grad` None). Reading
    `grad` while it is marked zero fills it with zeros first, so users always see the true value.
    """

    __slots__ = ("data", "_grad", "_grad_is_zero", "requires_grad")

    def __init__(self, data, requires_grad=True):
        self.data = np.ascontiguousarray(data)
        self._grad = np.zeros_like(self.data)
        self._grad_is_zero = False
        self.requires_grad = bool(requires_grad)

    @property
    def grad(self):
        if self._grad_is_zero:
            self._grad.fill(0)
            self._grad_is_zero = False
        return self._grad

    @grad.setter
    def grad(self, value):
        value = np.asarray(value)
        if value.shape != self.data.shape:
            raise ValueError(f"Parameter: grad of shape {value.shape} does not match data {self.data.shape}")
        self._grad = np.ascontiguousarray(value, dtype=self.data.dtype)
        self._grad_is_zero = False

    def zero_grad(self):
        self._grad_is_zero = True

    def grad_for_kernel(self):
        """(buffer, accumulate) for a kernel about to write this gradient: accumulate=False means the
        buffer's contents are stale and must be overwritten, not added to."""
        accumulate = not self._grad_is_zero
        self._grad_is_zero = False
        return self._grad, accumulate

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def size(self):
        return self.data.size

    def _cast(self, dtype):
        if self.data.dtype != dtype:
            self.data = self.data.astype(dtype)
            self._grad = self._grad.astype(dtype)

    def __repr__(self):
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype}, requires_grad={self.requires_grad})"


class Module:
    """Base class of every layer, loss-free model and container.

    Subclasses call `super().__init__()`, then assign Parameters, sub-Modules and `register_buffer(...)`
    arrays as attributes; they implement `forward` and `backward`.
    """

    def __new__(cls, *args, **kwargs):
        self = super().__new__(cls)
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
        object.__setattr__(self, name, value)

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
        object.__delattr__(self, name)

    # -- computation -------------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not implement forward()")

    def backward(self, grad_output):
        raise NotImplementedError(f"{type(self).__name__} does not implement backward()")

    def backward_parameters(self, grad_output):
        """Accumulate parameter gradients only; the input gradient is not needed (first layer of a model).
        Layers that can skip computing it override this; the default runs backward and drops the result."""
        self.backward(grad_output)

    # -- modes and traversal -----------------------------------------------------------------------
    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def children(self):
        return iter(self._modules.values())

    def named_modules(self, prefix=""):
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_parameters(self, prefix=""):
        for mod_name, m in self.named_modules(prefix):
            for name, p in m._parameters.items():
                yield (f"{mod_name}.{name}" if mod_name else name), p

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def named_buffers(self, prefix=""):
        for mod_name, m in self.named_modules(prefix):
            for name, b in m._buffers.items():
                yield (f"{mod_name}.{name}" if mod_name else name), b

    def zero_grad(self):
        for p in self.parameters():
            p.zero_grad()

    def num_parameters(self, trainable_only=False):
        return sum(p.size for p in self.parameters() if p.requires_grad or not trainable_only)

    # -- precision ---------------------------------------------------------------------------------
    def to(self, dtype):
        """Cast parameters and floating buffers to float32 or float64; computation follows them."""
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
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
        sd = OrderedDict()
        for name, p in self.named_parameters():
            sd[name] = p.data.copy()
        for name, b in self.named_buffers():
            sd[name] = np.array(b, copy=True)
        return sd

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays into parameters and buffers in place (optimizers keep their references), cast to
        each target's dtype. strict=True: missing or unexpected keys raise KeyError. Shapes must match.
        Returns (missing_keys, unexpected_keys)."""
        targets = OrderedDict()
        for name, p in self.named_parameters():
            targets[name] = ("param", p)
        for mod_name, m in self.named_modules():
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

    def summary(self, input_shape, dtype=None):
        """A table of every leaf layer: name, type, output shape (batch of 1) and parameter count."""
        from .summary import summarize
        return summarize(self, input_shape, dtype)


class Sequential(Module):
    """Modules applied in order; backward runs them in reverse."""

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            items = list(modules[0].items())
        else:
            items = [(str(i), m) for i, m in enumerate(modules)]
        for name, m in items:
            if not isinstance(m, Module):
                raise TypeError(f"Sequential: element {name} is not a Module, got {type(m).__name__}")
            setattr(self, name, m)
        self._refresh()

    def _refresh(self):
        object.__setattr__(self, "_sequence", tuple(self._modules.values()))
        object.__setattr__(self, "_plan", None)
        object.__setattr__(self, "_plan_input", None)

    def append(self, module):
        setattr(self, str(len(self._modules)), module)
        self._refresh()
        return self

    def __len__(self):
        return len(self._sequence)

    def __iter__(self):
        return iter(self._sequence)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Sequential(*self._sequence[index])
        return self._sequence[index]

    def forward(self, x):
        if not self.training:
            plan = self._plan  # None: not built yet; False: these layers have no fused plan
            if plan is None or (plan and not plan.valid()):
                plan = self._build_plan()
            if plan:
                y = plan.forward(x)
                if y is not None:
                    self._plan_input = x
                    return y
        self._plan_input = None
        for m in self._sequence:
            x = m.forward(x)
        return x

    def _build_plan(self):
        from .inference_plan import FusedSequencePlan, InferencePlan
        plan = InferencePlan.build(self._sequence) or FusedSequencePlan.build(self._sequence)
        object.__setattr__(self, "_plan", plan)
        return plan

    def backward(self, grad_output):
        if self._plan_input is not None:
            # The last forward ran fused and left no per-layer caches: replay it layer by layer (rare: a
            # backward in eval mode, e.g. a saliency map).
            x, self._plan_input = self._plan_input, None
            for m in self._sequence:
                x = m.forward(x)
        for m in reversed(self._sequence):
            grad_output = m.backward(grad_output)
        return grad_output

    def backward_parameters(self, grad_output):
        if self._plan_input is not None:
            x, self._plan_input = self._plan_input, None
            for m in self._sequence:
                x = m.forward(x)
        seq = self._sequence
        for m in reversed(seq[1:]):
            grad_output = m.backward(grad_output)
        if seq:
            seq[0].backward_parameters(grad_output)
