"""Containers and merge modules: ModuleList and ModuleDict (PyTorch's), Residual and Parallel blocks, and the
merges Add, Mul, Concat and Stack.

ModuleList and ModuleDict only hold modules (their names become parameter-name prefixes: "blocks.0.weight");
the model that owns them calls them in its forward. The others write no backward: they are traced, so inside
a model they become plain graph nodes, and on their own they run as a one-module graph.
"""
import functools
import operator
from collections import OrderedDict

from . import functional as F
from .module import Module

__all__ = ["ModuleList", "ModuleDict", "Residual", "Parallel", "Add", "Mul", "Concat", "Stack"]


def _check_module(owner, key, m):
    if not isinstance(m, Module):
        raise TypeError(f"{owner}: element {key!r} is not a Module, got {type(m).__name__}")
    return m


class ModuleList(Module):
    """A list of modules, registered under ``"0"``, ``"1"``, ... (PyTorch's ModuleList).

    It has no forward: a model's forward calls its items. Indexing, ``len``, iteration, ``append``, ``extend``
    and ``insert`` work as for a list.

    Parameters
    ----------
    modules : iterable of Module, optional
        The initial modules.

    Raises
    ------
    TypeError
        If an item is not a Module.

    See Also
    --------
    ModuleDict, Sequential

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> class Towers(fnn.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.towers = fnn.nn.ModuleList([fnn.nn.Linear(4, 2) for _ in range(3)])
    ...     def forward(self, x):
    ...         return fnn.nn.functional.cat([t(x) for t in self.towers], dim=1)
    >>> Towers()(np.ones((5, 4), np.float32)).shape
    (5, 6)
    """

    def __init__(self, modules=None):
        super().__init__()
        for m in modules or ():
            self.append(m)

    def _items(self):
        return list(self._modules.values())

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._items())

    def __getitem__(self, index):
        if isinstance(index, slice):
            return ModuleList(self._items()[index])
        items = self._items()
        if not -len(items) <= index < len(items):
            raise IndexError(f"ModuleList: index {index} out of range for {len(items)} modules")
        return items[index]

    def __setitem__(self, index, module):
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"ModuleList: index {index} out of range for {n} modules")
        setattr(self, str(index % n), _check_module("ModuleList", index, module))

    def append(self, module):
        setattr(self, str(len(self)), _check_module("ModuleList", len(self), module))
        return self

    def extend(self, modules):
        for m in modules:
            self.append(m)
        return self

    def insert(self, index, module):
        items = self._items()
        items.insert(index, _check_module("ModuleList", index, module))
        for name in list(self._modules):
            delattr(self, name)
        for m in items:
            self.append(m)


class ModuleDict(Module):
    """An ordered dict of modules with string keys (PyTorch's ModuleDict).

    Parameters
    ----------
    modules : dict or iterable of (str, Module) pairs, optional
        The initial modules.

    Raises
    ------
    TypeError
        If a value is not a Module or a key is not a string.

    See Also
    --------
    ModuleList

    Examples
    --------
    >>> import fastnn as fnn
    >>> heads = fnn.nn.ModuleDict({"age": fnn.nn.Linear(8, 1), "kind": fnn.nn.Linear(8, 3)})
    >>> list(heads.keys()), heads["kind"].out_features
    (['age', 'kind'], 3)
    """

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key):
        return self._modules[key]

    def __setitem__(self, key, module):
        if not isinstance(key, str) or not key or "." in key:
            raise KeyError(f"ModuleDict: keys must be non-empty strings without '.', got {key!r}")
        setattr(self, key, _check_module("ModuleDict", key, module))

    def __delitem__(self, key):
        delattr(self, key)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def __contains__(self, key):
        return key in self._modules

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()

    def update(self, modules):
        items = modules.items() if isinstance(modules, (dict, OrderedDict, ModuleDict)) else modules
        for key, m in items:
            self[key] = m

    def pop(self, key):
        m = self._modules[key]
        del self[key]
        return m


class Residual(Module):
    """A residual connection: ``block(x) + shortcut(x)``, with ``shortcut=None`` meaning ``x`` itself.

    Parameters
    ----------
    block : Module
        The residual branch.
    shortcut : Module or None, default None
        A projection (e.g. a 1×1 convolution) when the shapes differ.

    Shape
    -----
    - Input: what ``block`` takes. Output: ``block``'s output shape (the two branches must agree).

    Raises
    ------
    TypeError
        If ``block`` or ``shortcut`` is not a Module.

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> res = fnn.nn.Residual(fnn.nn.Sequential(fnn.nn.Linear(4, 4), fnn.nn.ReLU()))
    >>> x = np.ones((2, 4), np.float32)
    >>> np.allclose(res(x), res.block(x) + x)
    True
    """

    def __init__(self, block, shortcut=None):
        super().__init__()
        self.block = _check_module("Residual", "block", block)
        self.shortcut = None if shortcut is None else _check_module("Residual", "shortcut", shortcut)

    def forward(self, x):
        return self.block(x) + (x if self.shortcut is None else self.shortcut(x))


class Parallel(Module):
    """Every branch applied to the same input, the outputs merged: an Inception- or ResNeXt-style block.

    Parameters
    ----------
    *branches : Module
        At least one branch.
    merge : {"cat", "add"}, default "cat"
        Concatenate along ``dim``, or sum.
    dim : int, default 1
        The concatenation dimension.

    Shape
    -----
    - Input: what every branch takes.
    - Output: the branches' outputs concatenated along ``dim`` (or their common shape with "add").

    Raises
    ------
    ValueError
        For an unknown merge or no branch.

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> block = fnn.nn.Parallel(fnn.nn.Conv2d(3, 4, 1), fnn.nn.Conv2d(3, 6, 3, padding=1))
    >>> block(np.zeros((2, 3, 8, 8), np.float32)).shape
    (2, 10, 8, 8)
    """

    def __init__(self, *branches, merge="cat", dim=1):
        super().__init__()
        if merge not in ("cat", "add"):
            raise ValueError(f"Parallel: merge must be 'cat' or 'add', got {merge!r}")
        if not branches:
            raise ValueError("Parallel: give at least one branch")
        for k, b in enumerate(branches):
            setattr(self, str(k), _check_module("Parallel", k, b))
        self.merge, self.dim = merge, int(dim)

    def extra_repr(self):
        return f"merge={self.merge!r}, dim={self.dim}"

    def forward(self, x):
        outs = [b(x) for b in self._modules.values()]
        if self.merge == "cat":
            return F.cat(outs, self.dim)
        return functools.reduce(operator.add, outs)


def _inputs(xs):
    """Merge modules take the values as separate arguments or as one list/tuple."""
    if len(xs) == 1 and isinstance(xs[0], (list, tuple)):
        xs = tuple(xs[0])
    if not xs:
        raise ValueError("merge modules need at least one input")
    return xs


class Add(Module):
    """The sum of its inputs (same shapes, or NumPy-broadcastable); a merge node for graphs.

    Inputs come as separate arguments.

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> fnn.nn.Add()(np.ones(2), np.ones(2), np.ones(2))
    array([3., 3.])
    """

    def forward(self, *xs):
        return functools.reduce(operator.add, _inputs(xs))


class Mul(Module):
    """The element-wise product of its inputs; a merge node for graphs (gating).

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> fnn.nn.Mul()(np.full(2, 3.0), np.full(2, 2.0))
    array([6., 6.])
    """

    def forward(self, *xs):
        return functools.reduce(operator.mul, _inputs(xs))


class Concat(Module):
    """Its inputs concatenated along ``dim``; a merge node for graphs.

    Parameters
    ----------
    dim : int, default 1
        The feature or channel axis.

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> fnn.nn.Concat(dim=1)(np.zeros((2, 3)), np.zeros((2, 5))).shape
    (2, 8)
    """

    def __init__(self, dim=1):
        super().__init__()
        self.dim = int(dim)

    def extra_repr(self):
        return f"dim={self.dim}"

    def forward(self, *xs):
        return F.cat(_inputs(xs), self.dim)


class Stack(Module):
    """Its inputs stacked along a new dimension ``dim``: ``k`` arrays ``(N, ...)`` give ``(N, k, ...)`` by default.

    Parameters
    ----------
    dim : int, default 1
        Position of the new dimension.

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> fnn.nn.Stack()(np.zeros((2, 3)), np.zeros((2, 3))).shape
    (2, 2, 3)
    """

    def __init__(self, dim=1):
        super().__init__()
        self.dim = int(dim)

    def extra_repr(self):
        return f"dim={self.dim}"

    def forward(self, *xs):
        return F.stack(_inputs(xs), self.dim)
