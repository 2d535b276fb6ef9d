"""Optimizer: PyTorch's optimizer interface over fastnn's fused C++ updates.

A step is one C++ call per parameter group (and dtype, should a group mix them) that updates every
parameter of the group at once, with the GIL released. The lists of arrays that call takes (parameters,
gradients, state buffers, per-parameter step counters) are built on the first step and reused; they are
rebuilt only when a Parameter's `.data` or `.grad` object or its `requires_grad` changes (after
`model.double()`, say), or when an option that decides which state buffers exist changes. Checking that
costs well under a microsecond per parameter, so a step spends a few microseconds in Python.
"""
import numpy as np

from ..nn.module import Parameter


class Optimizer:
    """Base class of the optimizers: PyTorch's optimizer interface over fastnn's fused C++ updates.

    A step is one C++ call per parameter group that updates every parameter of the group at once, with the
    GIL released. ``param_groups`` (a list of dicts with ``"params"`` and the options), ``state``,
    ``step(closure=None)``, ``zero_grad()``, ``add_param_group``, ``state_dict()`` / ``load_state_dict()`` and
    the ``lr`` property (the first group's rate; setting it sets every group's) are PyTorch's. Subclasses
    define the state buffers and the kernel call.

    Parameters
    ----------
    params : iterable of Parameter or of dict
        The parameters, or parameter groups.
    defaults : dict
        The options of the subclass, used where a group does not set them.

    Raises
    ------
    ValueError
        For an invalid option (a negative learning rate, ...) or an empty parameter list.
    TypeError
        If ``params`` is a single array or Parameter instead of an iterable.

    See Also
    --------
    SGD, Adam, AdamW, RMSprop, Adagrad, Rprop, LBFGS

    Examples
    --------
    >>> import fastnn as fnn
    >>> model = fnn.nn.Sequential(fnn.nn.Linear(4, 8), fnn.nn.ReLU(), fnn.nn.Linear(8, 2))
    >>> opt = fnn.optim.SGD([{"params": model[0].parameters()},
    ...                      {"params": model[2].parameters(), "lr": 0.01}], lr=0.1, momentum=0.9)
    >>> [g["lr"] for g in opt.param_groups]
    [0.1, 0.01]
    >>> opt.lr = 0.05                                   # sets every group
    >>> [g["lr"] for g in opt.param_groups]
    [0.05, 0.05]
    """

    _slots = ()
    _has_step = True  # keep state["step"] (PyTorch's SGD keeps none)
    _fused_kind = None  # the update a one-call training step can run ("sgd", "adam"), if any

    def __init__(self, params, defaults):
        name = type(self).__name__
        self._validate(defaults)
        self.defaults = dict(defaults)
        self.param_groups = []
        self.state = {}  # Parameter -> {"step": 0-d int64 array, buffer name: ndarray}
        self._plan = None
        self._plan_params = None
        if isinstance(params, (Parameter, np.ndarray, dict)):
            raise TypeError(f"{name}: params must be an iterable of Parameters (model.parameters()) or of dicts "
                            f"(parameter groups), got {type(params).__name__}")
        groups = list(params)
        if not groups:
            raise ValueError(f"{name}: optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    # -- options ----------------------------------------------------------------------------------------
    def _validate(self, options):
        pass

    def _check(self, ok, message):
        if not ok:
            raise ValueError(f"{type(self).__name__}: {message}")

    def add_param_group(self, param_group):
        """Add a parameter group: a dict with key ``"params"`` and any per-group options.

        Options not given come from the optimizer's defaults.

        Parameters
        ----------
        param_group : dict
            ``{"params": [...], "lr": ..., ...}``.

        Raises
        ------
        TypeError
            If it is not a dict, or holds something that is not a Parameter.
        ValueError
            If ``"params"`` is missing, or a parameter is already in another group.
        """
        name = type(self).__name__
        if not isinstance(param_group, dict):
            raise TypeError(f"{name}: a parameter group must be a dict, got {type(param_group).__name__}")
        if "params" not in param_group:
            raise ValueError(f"{name}: a parameter group needs the key 'params'")
        group = dict(param_group)
        params = group["params"]
        params = [params] if isinstance(params, Parameter) else list(params)
        # named_parameters() pairs are accepted: the names are dropped.
        params = [p[1] if isinstance(p, tuple) and len(p) == 2 else p for p in params]
        for p in params:
            if not isinstance(p, Parameter):
                raise TypeError(f"{name} can only optimize fastnn Parameters, but one of the params is "
                                f"{type(p).__name__}")
        if len(set(map(id, params))) != len(params):
            raise ValueError(f"{name}: a parameter group contains the same parameter twice")
        taken = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in taken for p in params):
            raise ValueError(f"{name}: some parameters appear in more than one parameter group")
        group["params"] = params
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        self._validate(group)
        self.param_groups.append(group)
        self._plan = None

    @property
    def lr(self):
        """The learning rate of the first parameter group; setting it sets every group's."""
        return self.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value):
        value = float(value)
        self._check(value >= 0, f"Invalid learning rate: {value}")
        for group in self.param_groups:
            group["lr"] = value

    # -- stepping --------------------------------------------------------------------------------------
    def step(self, closure=None):
        """Update every parameter with ``requires_grad`` from its ``.grad``.

        Parameters
        ----------
        closure : callable, optional
            Recomputes the loss; called first, and its value returned.

        Returns
        -------
        float or None
            The closure's loss, if given.
        """
        loss = None if closure is None else closure()
        if self._plan is None or not self._plan_current():
            self._build_plan()
        for group, arrays in self._plan:
            self._update(group, arrays)
        return loss

    def zero_grad(self):
        """Zero every parameter's gradient, lazily.

        The next backward overwrites the gradient buffer instead of adding to it; reading ``.grad`` before that
        sees zeros.
        """
        for group in self.param_groups:
            for p in group["params"]:
                p.zero_grad()

    def fused_plan(self):
        """This optimizer's update in the form a one-call training step runs it.

        :meth:`fastnn.nn.Sequential.train_step` uses it to run the update inside its C++ call, with the same
        kernel and arrays as :meth:`step`. The arrays are checked and created as :meth:`step` would (state
        buffers at a parameter's first step).

        Returns
        -------
        tuple or None
            ``(token, groups, options)``: ``token`` is a new object whenever the arrays change; ``groups`` one
            ``(kind, params, arrays)`` per kernel call (``kind`` ``"sgd"`` or ``"adam"``, ``params`` the
            Parameters, ``arrays`` the kernel's lists: data, gradients, one list per state buffer, and the
            step counters); ``options`` the numeric options of each call. None when this optimizer has no
            fused form (the training step then calls :meth:`step`).

        Examples
        --------
        >>> import fastnn as fnn
        >>> opt = fnn.optim.SGD(fnn.nn.Linear(3, 2).parameters(), lr=0.1, momentum=0.9)
        >>> token, groups, options = opt.fused_plan()
        >>> [(kind, len(params)) for kind, params, _ in groups], options
        ([('sgd', 2)], [(0.1, 0.9, 0.0, 0.0, 0.0, 0.0)])
        >>> fnn.optim.Rprop(fnn.nn.Linear(3, 2).parameters()).fused_plan() is None
        True
        """
        if self._fused_kind is None:
            return None
        if self._plan is None or not self._plan_current():
            self._build_plan()
        options = [self._fused_options(group) for group, _ in self._plan]
        if any(o is None for o in options):
            return None
        groups = [(self._fused_kind, params, arrays) for (_, arrays), params in zip(self._plan, self._plan_params)]
        return self._plan, groups, options

    def _fused_options(self, group):
        """The numbers of `group`'s options the fused kernel takes, or None (no fused form)."""
        return None

    def _used_slots(self, group):
        return (True,) * len(self._slots)

    def _init_state(self, slot, data, group):
        return np.zeros_like(data)

    def _update(self, group, arrays):
        raise NotImplementedError

    def _plan_current(self):
        # Reads .grad through Parameter's property: a gradient marked zero by zero_grad() is zero-filled here,
        # before the kernel reads the buffer.
        for p, data, grad, active in self._watch:
            if p.data is not data or p.grad is not grad or p.requires_grad != active:
                return False
        for group, used in self._structure:
            if self._used_slots(group) != used:
                return False
        return True

    def _build_plan(self):
        name = type(self).__name__
        plan, watch, structure, plan_params = [], [], [], []
        for gi, group in enumerate(self.param_groups):
            used = self._used_slots(group)
            structure.append((group, used))
            by_dtype = {}
            for pi, p in enumerate(group["params"]):
                watch.append((p, p.data, p.grad, p.requires_grad))
                if p.requires_grad:
                    self._check_arrays(p, f"{name}: parameter {pi} of group {gi}")
                    by_dtype.setdefault(p.data.dtype, []).append(p)
            for params in by_dtype.values():
                plan.append((group, self._arrays(group, params, used)))
                plan_params.append(params)
        self._plan, self._watch, self._structure, self._plan_params = plan, watch, structure, plan_params

    @staticmethod
    def _check_arrays(p, where):
        data, grad = p.data, p.grad
        if not isinstance(data, np.ndarray) or data.dtype not in (np.float32, np.float64):
            raise TypeError(f"{where}: data must be a float32 or float64 array, got "
                            f"{getattr(data, 'dtype', type(data).__name__)}")
        if not (data.flags.c_contiguous and data.flags.writeable):
            raise ValueError(f"{where} (shape {data.shape}): data must be C-contiguous and writeable")
        if not isinstance(grad, np.ndarray) or grad.shape != data.shape or grad.dtype != data.dtype:
            raise ValueError(f"{where}: grad {getattr(grad, 'shape', None)} {getattr(grad, 'dtype', '')} does "
                             f"not match data {data.shape} {data.dtype}")
        if not grad.flags.c_contiguous:
            raise ValueError(f"{where} (shape {data.shape}): grad must be C-contiguous")

    def _arrays(self, group, params, used):
        """The kernel's array arguments for `params`: data, grads, one list per state slot (empty when
        unused) and the step counters. State is created here (PyTorch creates it at a parameter's first
        step); state["step"] becomes a view of the counter array the kernel increments."""
        name = type(self).__name__
        slots = [[] for _ in self._slots]
        steps = np.zeros(len(params), np.int64)
        for k, p in enumerate(params):
            data = p.data
            state = self.state.setdefault(p, {"step": np.zeros((), np.int64)} if self._has_step else {})
            fresh = False
            for j, slot in enumerate(self._slots):
                if not used[j]:
                    continue
                buf = state.get(slot)
                if buf is None:
                    buf, fresh = self._init_state(slot, data, group), True
                elif buf.shape != data.shape:
                    raise ValueError(f"{name}: state '{slot}' of a parameter has shape {buf.shape}, but the "
                                     f"parameter now has shape {data.shape}")
                elif buf.dtype != data.dtype:
                    buf = buf.astype(data.dtype)  # the model was cast (model.double()): the state follows
                state[slot] = buf
                slots[j].append(buf)
            if self._has_step:
                steps[k] = int(state["step"])
                state["step"] = steps[k, ...]
            else:  # SGD: a counter of 0 tells the kernel a momentum buffer is new (it becomes the gradient)
                steps[k] = 0 if fresh else 1
        return ([p.data for p in params], [p.grad for p in params], *slots, steps)

    # -- state -----------------------------------------------------------------------------------------
    def state_dict(self):
        """The optimizer's options and state as plain data, in PyTorch's layout.

        Returns
        -------
        dict
            ``{"state": {index: {"step": int, buffer: ndarray}}, "param_groups": [{option: value,
            "params": [index, ...]}]}``, parameters numbered across groups; arrays are copies.
        """
        index, groups, state = {}, [], {}
        for group in self.param_groups:
            saved = {key: value for key, value in group.items() if key != "params"}
            saved["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append(saved)
            for p in group["params"]:
                if self.state.get(p):
                    state[index[id(p)]] = {key: int(value) if key == "step" else np.array(value, copy=True)
                                           for key, value in self.state[p].items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Load options and state saved by :meth:`state_dict`.

        Group sizes must match; arrays are copied and cast to each parameter's dtype. Everything is checked
        before anything changes.

        Parameters
        ----------
        state_dict : dict
            As returned by :meth:`state_dict`.

        Raises
        ------
        ValueError
            If the groups or parameter shapes do not match.
        """
        name = type(self).__name__
        saved_groups, saved_state = state_dict["param_groups"], state_dict["state"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"{name}.load_state_dict: {len(saved_groups)} parameter groups saved, the optimizer "
                             f"has {len(self.param_groups)}")
        by_index = {}
        for gi, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"{name}.load_state_dict: group {gi} has {len(saved['params'])} parameters "
                                 f"saved, the optimizer has {len(group['params'])}")
            by_index.update(zip((int(i) for i in saved["params"]), group["params"]))
        new_state = {}
        for key, entries in saved_state.items():
            p = by_index.get(int(key))
            if p is None:
                raise ValueError(f"{name}.load_state_dict: state for parameter {key}, which no group has")
            state = {}
            for slot, value in entries.items():
                if slot == "step" and self._has_step:
                    state[slot] = np.array(int(value), np.int64)
                elif slot in self._slots:
                    value = np.array(value, dtype=p.data.dtype, order="C", copy=True)
                    if value.shape != p.data.shape:
                        raise ValueError(f"{name}.load_state_dict: '{slot}' of parameter {key} has shape "
                                         f"{value.shape}, the parameter has {p.data.shape}")
                    state[slot] = value
                else:
                    raise ValueError(f"{name}.load_state_dict: unknown state '{slot}' for parameter {key}")
            if self._has_step and "step" not in state:
                raise ValueError(f"{name}.load_state_dict: state of parameter {key} has no 'step'")
            new_state[p] = state
        new_options = []
        for saved, group in zip(saved_groups, self.param_groups):
            options = {key: value for key, value in saved.items() if key != "params"}
            for key, value in options.items():  # JSON turns tuples into lists
                if isinstance(self.defaults.get(key), tuple) and isinstance(value, list):
                    options[key] = tuple(value)
            self._validate({**group, **options})
            new_options.append(options)
        for group, options in zip(self.param_groups, new_options):
            group.update(options)
        self.state.clear()
        self.state.update(new_state)
        self._plan = None

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {key}: {group[key]}" for key in sorted(group) if key != "params"]
        return "\n".join(lines + [")"])
