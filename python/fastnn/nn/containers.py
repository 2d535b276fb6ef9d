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
    """A list of modules, registered under "0", "1", ... (PyTorch's ModuleList)."""

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
    """An ordered dict of modules with string keys (PyTorch's ModuleDict)."""

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
    """block(x) + shortcut(x), with shortcut None meaning x itself: a ResNet-style residual connection."""

    def __init__(self, block, shortcut=None):
        super().__init__()
        self.block = _check_module("Residual", "block", block)
        self.shortcut = None if shortcut is None else _check_module("Residual", "shortcut", shortcut)

    def forward(self, x):
        return self.block(x) + (x if self.shortcut is None else self.shortcut(x))


class Parallel(Module):
    """Every branch applied to the same input; the outputs merged by concatenation along `dim` (merge="cat")
    or by summation (merge="add"): an Inception- or ResNeXt-style block."""

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
    """The sum of its inputs (same shapes, or NumPy-broadcastable)."""

    def forward(self, *xs):
        return functools.reduce(operator.add, _inputs(xs))


class Mul(Module):
    """The element-wise product of its inputs."""

    def forward(self, *xs):
        return functools.reduce(operator.mul, _inputs(xs))


class Concat(Module):
    """Its inputs concatenated along `dim` (default 1, the feature/channel axis)."""

    def __init__(self, dim=1):
        super().__init__()
        self.dim = int(dim)

    def extra_repr(self):
        return f"dim={self.dim}"

    def forward(self, *xs):
        return F.cat(_inputs(xs), self.dim)


class Stack(Module):
    """Its inputs stacked along a new dimension `dim` (default 1: (N, k, ...) from k arrays (N, ...))."""

    def __init__(self, dim=1):
        super().__init__()
        self.dim = int(dim)

    def extra_repr(self):
        return f"dim={self.dim}"

    def forward(self, *xs):
        return F.stack(_inputs(xs), self.dim)
