"""Rank 0's model and optimizer on every rank: broadcast_parameters, broadcast_optimizer_state, and the shared
random generator state (so every rank draws the same shuffled order)."""
import json

import numpy as np

from .. import random as _random
from . import world as _comm


def _entries(model):
    """[(name, array)] of the model's parameters' data and its array buffers, or of a list of Parameters."""
    if hasattr(model, "named_parameters"):
        items = [(name, p.data) for name, p in model.named_parameters()]
        items += [(name, b) for name, b in model.named_buffers() if isinstance(b, np.ndarray)]
        return items
    return [(f"parameter {i}", p.data) for i, p in enumerate(model)]


def check_same_structure(model, where="fastnn.distributed.broadcast_parameters", root=0):
    """Raises ValueError, on every rank, when a rank's parameters differ in name, shape or dtype from root's."""
    entries = _entries(model)
    mine = json.dumps([[n, list(a.shape), a.dtype.str] for n, a in entries]).encode()
    every = _comm._allgather_bytes(mine)
    ref = json.loads(every[root].decode())
    for r, data in enumerate(every):
        theirs = json.loads(data.decode())
        if theirs == ref:
            continue
        for i in range(max(len(ref), len(theirs))):
            a = ref[i] if i < len(ref) else None
            b = theirs[i] if i < len(theirs) else None
            if a != b:
                what = (f"'{a[0]}' {tuple(a[1])} {np.dtype(a[2])}" if a else "nothing")
                other = (f"'{b[0]}' {tuple(b[1])} {np.dtype(b[2])}" if b else "nothing")
                raise ValueError(f"{where}: the model differs between ranks: entry {i} is {what} on rank {root} "
                                 f"but {other} on rank {r} ({len(ref)} vs {len(theirs)} parameters and buffers); "
                                 f"every rank must build the same model")
    return entries


def broadcast_parameters(model, root=0):
    """Copies rank root's parameters (and array buffers such as batch-norm running statistics) into every rank's
    model, in place. model: a Module or a list of Parameters. A model whose parameters differ in name, shape or
    dtype between ranks raises ValueError on every rank, naming the first difference."""
    entries = check_same_structure(model, root=root)
    c = _comm.comm()
    for _, a in entries:
        if not a.flags.c_contiguous or not a.flags.writeable:
            raise ValueError("fastnn.distributed.broadcast_parameters: parameters must be C-contiguous and writeable")
        c.Bcast(a, root=root)


def broadcast_optimizer_state(optimizer, root=0):
    """Rank root's optimizer options and state (step counts, moment buffers) on every rank: the state dict's
    structure travels as JSON, its arrays as arrays (nothing pickled)."""
    opt = getattr(optimizer, "optimizer", optimizer)  # a DistributedOptimizer: its wrapped optimizer
    c = _comm.comm()
    is_root = c.Get_rank() == root
    layout, arrays = None, []
    if is_root:
        sd = opt.state_dict()
        state = {}
        for key, entries in sd["state"].items():
            state[str(key)] = {}
            for slot, value in entries.items():
                if isinstance(value, np.ndarray):
                    state[str(key)][slot] = {"shape": list(value.shape), "dtype": value.dtype.str}
                    arrays.append(np.ascontiguousarray(value))
                else:
                    state[str(key)][slot] = {"value": value}
        layout = {"param_groups": sd["param_groups"], "state": state}
    layout = _comm.bcast_json(layout, root=root)
    state, k = {}, 0
    for key, entries in layout["state"].items():
        state[int(key)] = {}
        for slot, spec in entries.items():
            if "value" in spec:
                state[int(key)][slot] = spec["value"]
                continue
            a = arrays[k] if is_root else np.empty(spec["shape"], np.dtype(spec["dtype"]))
            c.Bcast(a, root=root)
            state[int(key)][slot] = a
            k += 1
    if not is_root:
        opt.load_state_dict({"param_groups": layout["param_groups"], "state": state})


def broadcast_random_state(root=0):
    """fastnn.random's generator on every rank in rank root's state (the same shuffles everywhere)."""
    gen = _random.generator()
    state = _comm.bcast_json(gen.bit_generator.state, root=root)
    gen.bit_generator.state = state
