"""ONNX LSTM/GRU/RNN ops into fastnn recurrent layers (used by import_ops.py).

One ONNX op is one layer (both directions). Consecutive ops whose weights are named <path>.weight_ih_l0,
<path>.weight_ih_l1, ... (what fastnn's export writes) and which are chained the way export chains layers
(Y -> Transpose(0, 2, 1, 3) -> Reshape(0, 0, -1) -> next op; initial states, if any, sliced from one tensor)
come back as one multi-layer fastnn layer at <path>, so parameter names survive export -> load. Other ops
(torch's, named "onnx::LSTM_12") each become a one-layer fastnn layer. The gate blocks are reordered back
(gates.py). ONNX's Y (seq, dirs, batch, H) is made from fastnn's output (seq, batch, dirs·H) only when used.
"""
import re

import numpy as np

from .. import nn
from ..nn.graph_def import DimRef, Ref
from .gates import from_onnx
from .import_graph import V, Zeros, as_tensor, const_input, get_value, node_attrs, set_param


def _config(node):
    """(mode, class, kwargs, hidden size, directions) of a recurrent op; ValueError for what fastnn lacks."""
    a = node_attrs(node)
    if len(node.input) > 4 and node.input[4]:
        raise ValueError(f"fastnn.onnx.load: {node.op_type} node '{node.name}' has sequence_lens, which fastnn's "
                         f"recurrent layers do not take")
    if a.get("layout", 0) or a.get("clip") is not None or a.get("input_forget", 0):
        raise ValueError(f"fastnn.onnx.load: {node.op_type} node '{node.name}' uses layout/clip/input_forget")
    direction = a.get("direction", "forward")
    if direction not in ("forward", "bidirectional"):
        raise ValueError(f"fastnn.onnx.load: {node.op_type} node '{node.name}' runs in direction {direction!r}")
    H, dirs = int(a["hidden_size"]), 2 if direction == "bidirectional" else 1
    if node.op_type == "LSTM":
        return "LSTM", nn.LSTM, {}, H, dirs
    if node.op_type == "GRU":
        if a.get("linear_before_reset", 0) != 1:
            raise ValueError(f"fastnn.onnx.load: GRU node '{node.name}' has linear_before_reset=0; fastnn's (and "
                             f"PyTorch's) GRU is linear_before_reset=1")
        return "GRU", nn.GRU, {}, H, dirs
    acts = [s.lower() for s in a.get("activations", ["Tanh"] * dirs)]
    if len(set(acts)) != 1 or acts[0] not in ("tanh", "relu"):
        raise ValueError(f"fastnn.onnx.load: RNN node '{node.name}' has activations {acts}")
    return ("RNN_TANH" if acts[0] == "tanh" else "RNN_RELU"), nn.RNN, {"nonlinearity": acts[0]}, H, dirs


def _input(node, k):
    return node.input[k] if len(node.input) > k else ""


def _state_source(b, node, k, layer, dirs):
    """The full initial-state tensor that layer `layer`'s state input k slices, '' for none, None otherwise."""
    name = _input(node, k)
    if not name:
        return ""
    src = b.producers.get(name)
    if src is None or src.op_type != "Slice" or len(src.input) < 4:
        return None
    starts, ends, axes = (b.consts.get(src.input[i]) for i in (1, 2, 3))
    if starts is None or ends is None or axes is None:
        return None
    if [int(v) for v in starts] != [layer * dirs] or [int(v) for v in ends] != [(layer + 1) * dirs] or \
            [int(v) for v in axes] != [0]:
        return None
    return src.input[0]


def _stack(b, node):
    """The ops of one fastnn layer starting at `node`, the nodes between them, and the full initial states."""
    config = _config(node)
    dirs = config[4]
    wname = b.origin.get(node.input[1])
    match = re.fullmatch(r"(.*)\.weight_ih_l0", wname) if isinstance(wname, str) else None
    layers, between = [node], []
    states = [_state_source(b, node, 5, 0, dirs), _state_source(b, node, 6, 0, dirs)]
    if match is None or None in states:
        return layers, between, None
    while True:
        prev, k = layers[-1], len(layers)
        t = b.consumers.get(prev.output[0], [])
        if len(t) != 1 or t[0].op_type != "Transpose" or list(node_attrs(t[0]).get("perm", [])) != [0, 2, 1, 3]:
            break
        r = b.consumers.get(t[0].output[0], [])
        if len(r) != 1 or r[0].op_type != "Reshape" or \
                [int(v) for v in np.asarray(b.consts.get(r[0].input[1], [])).reshape(-1)] != [0, 0, -1]:
            break
        nxt = b.consumers.get(r[0].output[0], [])
        if len(nxt) != 1 or nxt[0].op_type != node.op_type or nxt[0].input[0] != r[0].output[0] or \
                b.origin.get(nxt[0].input[1]) != f"{match.group(1)}.weight_ih_l{k}" or _config(nxt[0]) != config:
            break
        if [_state_source(b, nxt[0], 5, k, dirs), _state_source(b, nxt[0], 6, k, dirs)] != states:
            break
        between += [t[0], r[0]]
        layers.append(nxt[0])
    return layers, between, states


def recurrent_stack(b, node):
    mode, cls, kwargs, H, dirs = _config(node)
    layers, between, full_states = _stack(b, node)
    for n in layers[1:] + between:
        b.skip.add(tuple(n.output))
    ws = [(const_input(b, n, 1, "W"), const_input(b, n, 2, "R"), const_input(b, n, 3, "B")) for n in layers]
    has_bias = ws[0][2] is not None
    m = cls(ws[0][0].shape[2], H, num_layers=len(layers), bidirectional=dirs == 2, bias=has_bias, **kwargs)
    G = ws[0][0].shape[1] // H
    for k, (w, r, bias) in enumerate(ws):
        for d in range(dirs):
            sfx = f"_l{k}" + ("_reverse" if d else "")
            set_param(m, "weight_ih" + sfx, from_onnx(w[d], mode))
            set_param(m, "weight_hh" + sfx, from_onnx(r[d], mode))
            if has_bias:
                set_param(m, "bias_ih" + sfx, from_onnx(bias[d, :G * H], mode))
                set_param(m, "bias_hh" + sfx, from_onnx(bias[d, G * H:], mode))
    if len(layers) > 1 or (full_states is not None and any(full_states)):
        names = full_states
    else:
        names = [_input(node, 5), _input(node, 6)]
    states = [get_value(b, n) if n else None for n in names]
    states = [None if (s is None or isinstance(s, Zeros)) else as_tensor(b, s) for s in states]
    args = [get_value(b, node.input[0])]
    if mode == "LSTM" and (states[0] is not None or states[1] is not None):
        if states[0] is None or states[1] is None:
            raise ValueError(f"fastnn.onnx.load: LSTM node '{node.name}' gives one of initial_h/initial_c only")
        args.append((states[0], states[1]))
    elif mode != "LSTM" and states[0] is not None:
        args.append(states[0])
    wname = b.origin.get(node.input[1])
    wname = wname if isinstance(wname, str) and wname.endswith(".weight_ih_l0") else None
    path = b.path_for(wname, ".weight_ih_l0", node.op_type.lower())
    idx, out = b.module(path, m, args, node.name)
    y, state = out
    last = layers[-1]
    if last.output and last.output[0]:
        b.lazy[last.output[0]] = (V(Ref(idx, (0,)), y), dirs, H)
    paths = [((1, 0), state[0]), ((1, 1), state[1])] if mode == "LSTM" else [((1,), state)]
    for k, n in enumerate(layers):
        for j, (p, value) in enumerate(paths):
            if len(n.output) > j + 1 and n.output[j + 1]:
                whole = V(Ref(idx, p), value)
                b.env[n.output[j + 1]] = whole if len(layers) == 1 else \
                    b.call("getitem", [whole, (slice(k * dirs, (k + 1) * dirs),)], hint=f"{path}_state_l{k}")


def y_of(b, name):
    """ONNX's Y (seq, dirs, batch, H) from a fastnn output (seq, batch, dirs·H), made when first used."""
    seq_out, dirs, H = b.lazy.pop(name)
    shape = (DimRef(seq_out.ref.node, seq_out.ref.path, 0), DimRef(seq_out.ref.node, seq_out.ref.path, 1), dirs, H)
    r = b.call("reshape", [seq_out, shape], hint="y_split")
    v = b.call("permute", [r, (0, 2, 1, 3)], hint="y")
    b.env[name] = v
    return v
