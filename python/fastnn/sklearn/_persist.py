"""The fitted state of an estimator as data: for pickling, and for fastnn.save / fastnn.load.

Pickling (joblib, GridSearchCV's worker processes) keeps the parameters and the plain fitted attributes as
they are and replaces the network and the optimizer by `fitted_state_bytes`: safetensors bytes of the
network's state_dict and the optimizer's state (moments, step counts), with the optimizer's options as JSON.
Unpickling rebuilds the network from the parameters (the MLP's layout, or the module factory) and loads
the bytes into it, so predictions and further training continue bit for bit.

fastnn.save(estimator, path) writes one safetensors file with no pickle in it: those tensors, plus the
network's JSON architecture (as fastnn.save writes for a model) and the parameters and fitted attributes as
JSON. fastnn.load rebuilds it with fastnn.load's rules. Parameters that are code are not stored: a
NeuralNet's module factory and the callbacks come back as None (the trained network itself is there), and
a RandomState instance as random_state comes back as None (the fitted generator state is stored).
"""
import json
import math
from collections import OrderedDict

import numpy as np

from .. import nn, optim
from .. import safetensors as _st
from .. import serialization as _ser
from ._training import using_generator

__all__ = ["fitted_state_bytes", "restore_fitted_state", "estimator_to_file", "estimator_from_file"]

_KEY_GROUPS = "fastnn.sklearn.optimizer_groups"
_KEY_CLASS = "fastnn.sklearn.class"
_KEY_PARAMS = "fastnn.sklearn.params"
_KEY_FITTED = "fastnn.sklearn.fitted"
_KEY_ARCH = "fastnn.sklearn.architecture"
_KEY_FACTORY = "fastnn.sklearn.module_factory"

# Fitted attributes that are plain values (JSON in files); the network and the optimizer are tensors.
_FITTED = ("n_features_in_", "feature_names_in_", "input_shape_", "n_outputs_", "classes_", "history_", "n_iter_",
           "t_", "loss_", "best_loss_", "validation_scores_", "best_validation_score_", "_no_improvement_count",
           "_task", "_output_kind", "_y_ndim", "_rng")


# -- network and optimizer <-> tensors ---------------------------------------------------------------------
def _state_tensors(est):
    tensors = OrderedDict(("module." + k, v) for k, v in est.module_.state_dict().items())
    state = est.optimizer_.state_dict()
    for index, entries in state["state"].items():
        for slot, value in entries.items():
            tensors[f"optimizer.{index}.{slot}"] = np.asarray(value)
    groups = json.dumps(_encode(state["param_groups"], "optimizer options"))
    return tensors, {_KEY_GROUPS: groups}


def fitted_state_bytes(est):
    """safetensors bytes of the network's state_dict and the optimizer's state."""
    tensors, metadata = _state_tensors(est)
    return _st.serialize(tensors, metadata)


def _load_state(est, module, tensors, metadata, where):
    weights = OrderedDict((k[len("module."):], v) for k, v in tensors.items() if k.startswith("module."))
    floats = [v.dtype for v in weights.values() if v.dtype in (np.float32, np.float64)]
    try:
        module.to(floats[0] if floats else est._dtype())  # the precision the network was trained in
        module.load_state_dict(weights, strict=True)
    except (KeyError, ValueError, TypeError) as e:
        raise ValueError(f"{where}: the stored weights do not fit the network built from the parameters: "
                         f"{e}") from e
    module.eval()
    optimizer = est._build_optimizer(module)
    opt_state = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, slot = key.split(".", 2)
            opt_state.setdefault(int(index), {})[slot] = int(value) if slot == "step" else value
    try:
        groups = _decode(json.loads(metadata[_KEY_GROUPS]))
        optimizer.load_state_dict({"state": opt_state, "param_groups": groups})
    except (KeyError, ValueError, TypeError) as e:
        raise ValueError(f"{where}: invalid optimizer state: {e}") from e
    est.module_, est.optimizer_ = module, optimizer


def restore_fitted_state(est, blob):
    """Rebuild est.module_ and est.optimizer_ from the parameters and fitted_state_bytes' bytes."""
    tensors, metadata = _st.deserialize(blob)
    with using_generator(np.random.default_rng(0)):  # building draws initial weights: not from any real stream
        module = est._build_module(est.n_features_in_, est.n_outputs_)
    _load_state(est, module, tensors, metadata, f"unpickling {type(est).__name__}")


# -- plain values <-> JSON ------------------------------------------------------------------------------------
def _encode(value, what):
    """JSON for None, bools, numbers (non-finite floats tagged), strings, lists, tuples, str-keyed dicts and
    1-D arrays of numbers, bools or strings."""
    if value is None or isinstance(value, (bool, np.bool_, str)):
        return value if not isinstance(value, np.bool_) else bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, list):
        return [_encode(v, what) for v in value]
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, what) for v in value]}
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"__dict__": [[k, _encode(v, what)] for k, v in value.items()]}
    if isinstance(value, np.ndarray) and value.ndim == 1:
        if value.dtype.kind in "biuf":
            return {"__array__": [value.dtype.str, [_encode(v, what) for v in value.tolist()]]}
        if value.dtype.kind in "UO" and all(isinstance(v, str) for v in value.tolist()):
            return {"__array__": ["str" if value.dtype.kind == "U" else "object", value.tolist()]}
    raise TypeError(f"fastnn.save: cannot store {what} = {value!r:.100} (of type {type(value).__name__}) as data")


def _decode(value):
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) != 1:
        raise ValueError(f"unexpected object {json.dumps(value)[:80]}")
    tag, x = next(iter(value.items()))
    if tag == "__float__" and x in ("inf", "-inf", "nan"):
        return float(x)
    if tag == "__tuple__" and isinstance(x, list):
        return tuple(_decode(v) for v in x)
    if tag == "__dict__" and isinstance(x, list) and all(isinstance(p, list) and len(p) == 2 for p in x):
        return {str(k): _decode(v) for k, v in x}
    if tag == "__array__" and isinstance(x, list) and len(x) == 2:
        kind, data = x
        if kind in ("str", "object"):
            return np.array([str(v) for v in data], dtype=object if kind == "object" else None)
        dtype = np.dtype(kind)
        if dtype.kind not in "biuf":
            raise ValueError(f"unexpected array dtype {kind!r}")
        return np.array([_decode(v) for v in data], dtype=dtype)
    raise ValueError(f"unexpected object {json.dumps(value)[:80]}")


# -- parameters that are classes or objects ----------------------------------------------------------------------
def _encode_param(name, value):
    if name == "module":
        return None  # code: not stored (see the module docstring)
    if name == "callbacks":
        return None
    if name == "random_state" and not (value is None or isinstance(value, (int, np.integer))):
        return None
    if name == "optimizer" and isinstance(value, type):
        if getattr(optim, value.__name__, None) is not value:
            raise TypeError(f"fastnn.save: optimizer={value!r} is not a fastnn.optim class; fastnn.load could not "
                            f"rebuild it")
        return {"__optimizer__": value.__name__}
    if name == "loss" and isinstance(value, type):
        if getattr(nn, value.__name__, None) is not value:
            raise TypeError(f"fastnn.save: loss={value!r} is not a fastnn.nn class; fastnn.load could not rebuild it")
        return {"__loss_class__": value.__name__}
    if name == "loss" and value is not None and not isinstance(value, str):
        return {"__loss__": _ser.architecture_json(value)}
    return _encode(value, f"the parameter {name}")


def _decode_param(value):
    if isinstance(value, dict) and len(value) == 1:
        tag, x = next(iter(value.items()))
        if tag == "__optimizer__":
            return _fastnn_class(optim, x, optim.Optimizer)
        if tag == "__loss_class__":
            return _fastnn_class(nn, x, nn.Module)
        if tag == "__loss__":
            return _ser.module_from_architecture(x)
    return _decode(value)


def _fastnn_class(namespace, name, base):
    cls = getattr(namespace, str(name), None)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ValueError(f"unknown class {name!r}")
    return cls


# -- fastnn.save / fastnn.load ------------------------------------------------------------------------------
def estimator_to_file(est):
    """(tensors, metadata) of a fastnn.sklearn estimator for fastnn.save."""
    params = {name: _encode_param(name, value) for name, value in est.get_params(deep=False).items()}
    metadata = {_KEY_CLASS: type(est).__name__, _KEY_PARAMS: json.dumps(params)}
    tensors = OrderedDict()
    if est.__sklearn_is_fitted__():
        fitted = {}
        for name in _FITTED:
            if name in est.__dict__:
                value = est.__dict__[name]
                fitted[name] = _encode(value.bit_generator.state if name == "_rng" else value, name)
        metadata[_KEY_FITTED] = json.dumps(fitted)
        metadata[_KEY_ARCH] = _ser.architecture_json(est.module_)
        if getattr(est, "module", None) is not None:
            factory = est.module
            metadata[_KEY_FACTORY] = f"{getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', '?')}"
        tensors, state_meta = _state_tensors(est)
        metadata.update(state_meta)
    return tensors, metadata


def estimator_from_file(tensors, metadata, where):
    """The estimator fastnn.save wrote; ValueError naming the file on bad content."""
    from . import _ESTIMATORS

    def fail(msg, cause=None):
        raise ValueError(f"fastnn.load: {where}: {msg}") from cause

    cls = _ESTIMATORS.get(metadata.get(_KEY_CLASS))
    if cls is None:
        fail(f"unknown estimator class {metadata.get(_KEY_CLASS)!r}")
    try:
        params = {str(k): _decode_param(v) for k, v in json.loads(metadata[_KEY_PARAMS]).items()}
        est = cls(**params)
    except (KeyError, ValueError, TypeError, AttributeError) as e:
        fail(f"invalid estimator parameters: {e}", e)
    if _KEY_FITTED not in metadata:
        return est
    try:
        fitted = {k: _decode(v) for k, v in json.loads(metadata[_KEY_FITTED]).items() if k in _FITTED}
        for name, value in fitted.items():
            if name == "_rng":
                rng = np.random.default_rng()
                rng.bit_generator.state = value
                value = rng
            elif name in ("input_shape_",):
                value = tuple(value)
            setattr(est, name, value)
        module = _ser.module_from_architecture(metadata[_KEY_ARCH])
    except (KeyError, ValueError, TypeError) as e:
        fail(f"invalid fitted state: {e}", e)
    _load_state(est, module, tensors, metadata, f"fastnn.load: {where}")
    return est
