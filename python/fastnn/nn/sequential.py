"""Sequential: modules applied in order. It is a chain graph run by the graph executor (fastnn.nn.executor):
backward walks it in reverse, the first layer's input gradient is skipped when nothing needs it, and in
eval mode the executor's fused plans run stretches of layers (Linear/activation stacks, Conv-BN-activation-
pooling blocks) in one C++ call. Inside a traced model its layers are recorded into the model's graph."""
from collections import OrderedDict

from .executor import Executor
from .graph_def import GraphDef, InputSpec, Node, Ref
from .module import Module, structure_version
from .train_step import TrainPlanCache


def _chain(names):
    """The GraphDef x -> names[0] -> names[1] -> ... (module targets by name)."""
    nodes = [Node("input", "input", 0)]
    for k, name in enumerate(names):
        nodes.append(Node(name, "module", name, (Ref(k, ()),)))
    return GraphDef([InputSpec("input", None, None)], nodes, Ref(len(names), ()))


class Sequential(Module):
    """A chain of modules: forward applies them in order, backward runs them in reverse.

    ``Sequential(m0, m1, ...)`` names them ``"0"``, ``"1"``, ...; ``Sequential(OrderedDict(name=module, ...))`` keeps
    the names. Indexing (``model[0]``, ``model[-1]``, slices), ``len`` and iteration work as in PyTorch. In eval
    mode runs of Linear and element-wise layers, and Conv [→ BatchNorm → activations → pooling] blocks, run as
    single fused C++ calls.

    Parameters
    ----------
    *modules : Module or OrderedDict
        The modules, or one ordered dict of them.

    Shape
    -----
    - Input: what the first module takes.
    - Output: what the last module gives.
    - Parameters: those of the modules, named ``"<name>.<parameter>"`` (e.g. ``"0.weight"``).

    Raises
    ------
    TypeError
        If an element is not a Module.

    See Also
    --------
    ModuleList, Graph

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> from collections import OrderedDict
    >>> model = fnn.nn.Sequential(fnn.nn.Linear(4, 8), fnn.nn.ReLU(), fnn.nn.Linear(8, 2))
    >>> model(np.ones((3, 4), np.float32)).shape
    (3, 2)
    >>> [name for name, _ in model.named_parameters()]
    ['0.weight', '0.bias', '2.weight', '2.bias']
    >>> named = fnn.nn.Sequential(OrderedDict(fc=fnn.nn.Linear(4, 2), act=fnn.nn.Tanh()))
    >>> named.fc.weight.shape
    (2, 4)
    """

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
        d = self.__dict__
        d["_sequence"] = tuple(self._modules.values())
        d["_names"] = tuple(self._modules)
        d["_executor"] = Executor(_chain(d["_names"]), self)
        d["_version"] = structure_version[0]
        d["_run"] = None
        d["_train_plan"] = TrainPlanCache()

    @property
    def executor(self):
        """The executor running this chain (rebuilt when modules are added or removed)."""
        d = self.__dict__
        if d["_version"] != structure_version[0]:
            if tuple(self._modules) != d["_names"]:
                self._refresh()
            d["_version"] = structure_version[0]
        return d["_executor"]

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
        d = self.__dict__
        executor = d["_executor"] if d["_version"] == structure_version[0] else self.executor
        out, d["_run"] = executor.forward([x])
        return out

    def backward(self, grad_output, need_input_grad=True):
        run = self._run
        if run is None:
            raise ValueError(f"{type(self).__name__}: backward() called before forward()")
        return self.executor.backward(run, [grad_output], need_input_grad)[0]

    def train_step(self, x, y, loss, optimizer, return_output=False, fallback=True):
        """One training step: forward, loss, backward and ``optimizer``'s update, in one C++ call where it can.

        The step-by-step equivalent is ``optimizer.zero_grad(); value = loss(model(x), y);
        model.backward_parameters(loss.backward()); optimizer.step()``, and that is what runs unless the
        whole step fits one C++ call: fastnn's Linear layers (all parameters trainable) with element-wise
        activations after them, Identity, and a leading Flatten; :class:`CrossEntropyLoss` (integer labels)
        or :class:`MSELoss` with reduction ``'mean'``/``'sum'`` (``'half_sum'`` too for MSE); :class:`SGD
        <fastnn.optim.SGD>`, :class:`Adam <fastnn.optim.Adam>` or :class:`AdamW <fastnn.optim.AdamW>`
        stepping exactly the model's parameters. That call releases the GIL, hands nothing back to Python
        between layers, reuses buffers allocated once per batch size, and gives the same parameters,
        gradients and optimizer state as the step-by-step path, bit for bit. A batch its kernels reject
        (NaN input, a label out of range) changes nothing there and runs step by step, which raises the error.
        Under :class:`fastnn.autocast` the one call runs the Linear GEMMs in bf16, as the layers would.

        After the step ``.grad`` holds this batch's gradient (earlier gradients are discarded, as after
        ``zero_grad``). A fused step leaves no layer caches: call ``backward`` only after a forward.

        Parameters
        ----------
        x : ndarray
            The input batch.
        y : ndarray
            The target: class indices for CrossEntropyLoss, values of the output's shape for MSELoss.
        loss : fastnn.nn loss module
            The loss; its value must be a scalar (reduction 'mean' or 'sum').
        optimizer : fastnn.optim.Optimizer
            Steps the parameters.
        return_output : bool, default False
            Also return the model's output. From a fused step it is a buffer that the next step of the same
            batch size overwrites: copy it to keep it.
        fallback : bool, default True
            Run the step step by step when it cannot run in one call. False: return None then, having
            changed nothing (:class:`fastnn.Trainer` then runs its own loop).

        Returns
        -------
        float, or (float, ndarray), or None
            The loss of the batch (before the update), and the output when ``return_output``; None when
            ``fallback`` is False and the step did not run.

        Shape
        -----
        - x: ``(N, in_features)`` (or ``(N, *dims)`` after a leading Flatten).
        - output: ``(N, out_features)``.

        Examples
        --------
        >>> import numpy as np, fastnn as fnn
        >>> _ = fnn.manual_seed(0)
        >>> model = fnn.nn.Sequential(fnn.nn.Linear(4, 16), fnn.nn.ReLU(), fnn.nn.Linear(16, 3))
        >>> opt = fnn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        >>> loss = fnn.nn.CrossEntropyLoss()
        >>> x = np.random.default_rng(0).standard_normal((32, 4)).astype(np.float32)
        >>> y = (x[:, 0] > 0).astype(np.int64)
        >>> first = model.train_step(x, y, loss, opt)
        >>> for _ in range(20):
        ...     value, out = model.train_step(x, y, loss, opt, return_output=True)
        >>> value < first, out.shape
        (True, (32, 3))
        """
        d = self.__dict__
        # A subclass may change forward or backward: only Sequential itself is run whole.
        plan = d["_train_plan"].get(tuple(self._modules.values())) if type(self) is Sequential else None
        if plan is not None:
            result = plan.run(x, y, loss, optimizer)
            if result is not None:
                d["_run"] = None
                return result if return_output else result[0]
        if not fallback:
            return None
        optimizer.zero_grad()
        out = self(x)
        value = loss(out, y)
        self.backward_parameters(loss.backward())
        optimizer.step()
        return (value, out) if return_output else value

    def graph_forward(self, x):
        """What a traced model records when it calls this Sequential: each layer in turn."""
        for m in self._sequence:
            x = m(x)
        return x
