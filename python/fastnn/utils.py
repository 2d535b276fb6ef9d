"""Gradient checking and fine-tuning helpers.

gradcheck(model, loss, x, y) compares the gradients a model's backward computes with central finite
differences of the loss, in float64, on a copy of the model: any Module with forward/backward works.

Fine-tuning, the three modes, starting from pretrained weights:

    model = build_model()                                  # same architecture, perhaps a new last layer
    report = fastnn.utils.load_partial(model, fastnn.load("pretrained.fnn").state_dict())
    report.missing_keys, report.unexpected_keys, report.mismatched_keys   # what was not loaded, and why

    # 1. predict only: use the pretrained network as it is (or as a fixed feature extractor)
    freeze(model); model.eval(); y = model(x)
    # 2. train the last layer only (the usual choice with little data): everything else frozen
    freeze(model); unfreeze(model, "2")                    # or unfreeze(model, model[-1]); "2.*" works too
    fastnn.Trainer(model, loss, fastnn.optim.SGD(model.parameters(), lr=0.1)).fit(x, y)
    # 3. train all layers (more data): unfreeze everything, typically with a smaller learning rate
    unfreeze(model)
    fastnn.Trainer(model, loss, fastnn.optim.SGD(model.parameters(), lr=0.01)).fit(x, y)

Frozen parameters (requires_grad=False) are skipped by every optimizer, so their values never change.
`model.load_state_dict(sd, strict=False)` loads what matches by name and returns (missing_keys,
unexpected_keys); load_partial also skips (and reports) entries whose shapes differ, e.g. a classifier head
with a different number of classes.
"""
import copy
import fnmatch
from collections import namedtuple

import numpy as np

from . import random as _random
from .nn.module import Module, Parameter

__all__ = ["gradcheck", "GradcheckError", "freeze", "unfreeze", "load_partial"]

GradcheckResult = namedtuple("GradcheckResult", ["name", "max_abs_error", "max_rel_error", "passed"])
PartialLoad = namedtuple("PartialLoad", ["missing_keys", "unexpected_keys", "mismatched_keys"])


class GradcheckError(AssertionError):
    """Raised by :func:`gradcheck` when an analytic gradient disagrees with finite differences.

    A subclass of :class:`AssertionError`, so a failing check fails a test.

    See Also
    --------
    gradcheck

    Examples
    --------
    >>> from fastnn.utils import GradcheckError
    >>> issubclass(GradcheckError, AssertionError)
    True
    """


def _float64(a):
    a = np.asarray(a)
    return a.astype(np.float64) if a.dtype.kind == "f" else a


def gradcheck(model, loss, x, y, eps=1e-6, rtol=1e-5, atol=1e-8, check_input=False, raise_exception=True):
    """Check a model's backward against central finite differences of the loss, in float64.

    Compares the parameter gradients ``model.backward`` computes (and, with ``check_input``, the input
    gradient) with ``(f(w + eps) - f(w - eps)) / (2 eps)`` of ``f = loss(model(x), y)``. It works on deep
    copies of the model and the loss cast to float64 (the loss in eval mode, so stateful losses such as
    CenterLoss do not update), over every parameter with ``requires_grad``; the model's train/eval mode is kept
    and fastnn's generator is rewound before every forward, so dropout draws the same mask each time. An element
    passes when ``|analytic - numeric| <= atol + rtol * |numeric|``.

    Parameters
    ----------
    model : fastnn.nn.Module
        Any module with forward and backward (a layer you wrote, a traced subclass, a Sequential...).
    loss : callable
        A loss module: ``loss(pred, y)`` then ``loss.backward()``.
    x : ndarray or tuple of ndarray
        The input (a tuple for several inputs).
    y : ndarray
        The target.
    eps : float, default 1e-6
        The finite-difference step.
    rtol, atol : float, default 1e-5, 1e-8
        Relative and absolute tolerances.
    check_input : bool, default False
        Also check the gradient w.r.t. the (float) input.
    raise_exception : bool, default True
        Raise :class:`GradcheckError` when an element fails.

    Returns
    -------
    list of GradcheckResult
        ``(name, max_abs_error, max_rel_error, passed)`` per parameter (``"input"`` for the input).

    Raises
    ------
    GradcheckError
        If a gradient fails and ``raise_exception`` is true; the message names the worst one.
    TypeError
        If ``model`` is not a Module, or it or the loss cannot be copied.

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> _ = fnn.manual_seed(0)
    >>> model = fnn.nn.Sequential(fnn.nn.Linear(3, 4), fnn.nn.Tanh(), fnn.nn.Linear(4, 2))
    >>> x = np.random.default_rng(0).standard_normal((5, 3)); y = np.array([0, 1, 1, 0, 1])
    >>> results = fnn.utils.gradcheck(model, fnn.nn.CrossEntropyLoss(), x, y, check_input=True)
    >>> [r.name for r in results], all(r.passed for r in results)
    (['0.weight', '0.bias', '2.weight', '2.bias', 'input'], True)
    """
    if not isinstance(model, Module):
        raise TypeError(f"gradcheck: model must be a fastnn Module, got {type(model).__name__}")
    try:
        m = copy.deepcopy(model)
        lossc = copy.deepcopy(loss)
    except Exception as e:  # noqa: BLE001  (any failure to copy is reported the same way)
        raise TypeError(f"gradcheck: cannot copy the model or loss ({e})") from None
    m.double()
    if isinstance(lossc, Module):
        lossc.double().eval()
    x = np.array(_float64(x), copy=True)
    y = _float64(y)
    gen = _random.generator()
    rng_state = gen.bit_generator.state

    def objective():
        gen.bit_generator.state = rng_state
        return float(lossc(m(x), y))

    try:
        objective()
        m.zero_grad()
        dx = m.backward(lossc.backward())
        targets = [(name, p.data, np.array(p.grad, dtype=np.float64))
                   for name, p in m.named_parameters() if p.requires_grad]
        if check_input:
            if x.dtype.kind != "f":
                raise TypeError(f"gradcheck: check_input needs a float input, got {x.dtype}")
            targets.append(("input", x, np.array(dx, dtype=np.float64)))
        results = []
        for name, data, analytic in targets:
            numeric = np.zeros(data.shape)
            flat, nflat = data.reshape(-1), numeric.reshape(-1)
            for i in range(flat.size):
                old = flat[i]
                flat[i] = old + eps
                fp = objective()
                flat[i] = old - eps
                fm = objective()
                flat[i] = old
                nflat[i] = (fp - fm) / (2 * eps)
            err = np.abs(analytic - numeric)
            rel = err / np.maximum(np.abs(numeric), 1e-300)
            passed = bool(np.all(err <= atol + rtol * np.abs(numeric)))
            results.append(GradcheckResult(name, float(err.max(initial=0.0)),
                                           float(rel.max(initial=0.0)), passed))
    finally:
        gen.bit_generator.state = rng_state
    failed = [r for r in results if not r.passed]
    if failed and raise_exception:
        worst = max(failed, key=lambda r: r.max_abs_error / (atol + rtol))
        raise GradcheckError(f"gradcheck: gradient of '{worst.name}' disagrees with finite differences "
                             f"(max abs error {worst.max_abs_error:.3g}, max rel error {worst.max_rel_error:.3g}; "
                             f"failing: {', '.join(r.name for r in failed)})")
    return results


def _matches(name, patterns):
    parts = name.split(".")
    prefixes = [".".join(parts[:k]) for k in range(1, len(parts) + 1)]
    return any(fnmatch.fnmatchcase(p, pat) for pat in patterns for p in prefixes)


def _select(model, pattern):
    """(name, Parameter) pairs of model chosen by pattern: None (all), a sub-Module or Parameter, an fnmatch
    pattern on parameter names or on any module prefix of them ("0" and "0.*" both select layer 0's
    parameters, "*.bias" every bias), or a list of these."""
    items = pattern if isinstance(pattern, (list, tuple)) else [pattern]
    chosen = {}
    named = list(model.named_parameters())
    for item in items:
        if item is None:
            chosen.update((id(p), (n, p)) for n, p in named)
        elif isinstance(item, Module):
            ids = {id(p) for p in item.parameters()}
            chosen.update((id(p), (n, p)) for n, p in named if id(p) in ids)
        elif isinstance(item, Parameter):
            chosen.update((id(p), (n, p)) for n, p in named if p is item)
        elif isinstance(item, str):
            chosen.update((id(p), (n, p)) for n, p in named if _matches(n, [item]))
        else:
            raise TypeError(f"freeze/unfreeze: pattern must be None, a str, a Module, a Parameter or a list, "
                            f"got {type(item).__name__}")
    if pattern is not None and not chosen:
        raise ValueError(f"freeze/unfreeze: {pattern!r} matches no parameter of the model; parameter names are "
                         f"{[n for n, _ in named]}")
    return list(chosen.values())


def freeze(model, pattern=None):
    """Stop training the selected parameters: set ``requires_grad=False``.

    Optimizers skip frozen parameters, and backward does not compute their gradients.

    Parameters
    ----------
    model : fastnn.nn.Module
        The model.
    pattern : None, str, Module, Parameter or list of these, optional
        ``None`` selects every parameter; a string is an fnmatch pattern over parameter names (``"0"`` or
        ``"0.*"`` for the first layer's parameters, ``"*.bias"`` for every bias); a sub-module selects its
        parameters.

    Returns
    -------
    list of str
        The names of the parameters frozen.

    Raises
    ------
    ValueError
        If the pattern matches no parameter (the message lists the names).
    TypeError
        For a pattern of another type.

    See Also
    --------
    unfreeze, load_partial

    Examples
    --------
    >>> import fastnn as fnn
    >>> model = fnn.nn.Sequential(fnn.nn.Linear(4, 8), fnn.nn.ReLU(), fnn.nn.Linear(8, 2))
    >>> fnn.utils.freeze(model)
    ['0.weight', '0.bias', '2.weight', '2.bias']
    >>> fnn.utils.unfreeze(model, "2")               # train the last layer only
    ['2.weight', '2.bias']
    >>> [n for n, p in model.named_parameters() if p.requires_grad]
    ['2.weight', '2.bias']
    """
    selected = _select(model, pattern)
    for _, p in selected:
        p.requires_grad = False
    return [n for n, _ in selected]


def unfreeze(model, pattern=None):
    """Train the selected parameters again: set ``requires_grad=True``.

    Parameters
    ----------
    model : fastnn.nn.Module
        The model.
    pattern : None, str, Module, Parameter or list of these, optional
        As in :func:`freeze`; ``None`` selects every parameter.

    Returns
    -------
    list of str
        The names of the parameters unfrozen.

    Raises
    ------
    ValueError
        If the pattern matches no parameter.

    See Also
    --------
    freeze

    Examples
    --------
    >>> import fastnn as fnn
    >>> model = fnn.nn.Sequential(fnn.nn.Linear(4, 8), fnn.nn.ReLU(), fnn.nn.Linear(8, 2))
    >>> _ = fnn.utils.freeze(model)
    >>> fnn.utils.unfreeze(model, model[0])
    ['0.weight', '0.bias']
    """
    selected = _select(model, pattern)
    for _, p in selected:
        p.requires_grad = True
    return [n for n, _ in selected]


def load_partial(model, state_dict):
    """Load the entries of a state dict whose name and shape match the model, and report the rest.

    The usual start of fine-tuning: a pretrained model's weights into a model whose head changed.

    Parameters
    ----------
    model : fastnn.nn.Module
        The model to load into (in place).
    state_dict : dict of str to ndarray
        For example ``fastnn.load("pretrained.fnn").state_dict()``.

    Returns
    -------
    PartialLoad
        A named tuple ``(missing_keys, unexpected_keys, mismatched_keys)``: in the model but not the dict,
        in the dict but not the model, and same name but a different shape (not loaded).

    See Also
    --------
    fastnn.nn.Module.load_state_dict, freeze

    Examples
    --------
    >>> import fastnn as fnn
    >>> pretrained = fnn.nn.Sequential(fnn.nn.Linear(4, 8), fnn.nn.ReLU(), fnn.nn.Linear(8, 10))
    >>> model = fnn.nn.Sequential(fnn.nn.Linear(4, 8), fnn.nn.ReLU(), fnn.nn.Linear(8, 3))   # a new head
    >>> report = fnn.utils.load_partial(model, pretrained.state_dict())
    >>> report.mismatched_keys, report.missing_keys, report.unexpected_keys
    (['2.weight', '2.bias'], ['2.weight', '2.bias'], [])
    """
    own = model.state_dict()
    mismatched = [k for k, v in state_dict.items() if k in own and np.shape(v) != own[k].shape]
    usable = {k: v for k, v in state_dict.items() if k not in mismatched}
    missing, unexpected = model.load_state_dict(usable, strict=False)
    return PartialLoad(list(missing), list(unexpected), mismatched)
