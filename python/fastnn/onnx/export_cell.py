"""RNNCell, LSTMCell and GRUCell (one time step) as Gemm and element-wise ops rather than ONNX RNN/LSTM/GRU ops
with a sequence of length 1: the step is a handful of ops, needs no Unsqueeze/Squeeze or gate reordering,
and keeps PyTorch's gate order and parameter names (initializers weight_ih, weight_hh, bias_ih, bias_hh as in
fastnn). With gi = Gemm(x, weight_ih, bias_ih, transB=1) and gh = Gemm(h, weight_hh, bias_hh, transB=1):

    RNNCell:  h' = Tanh(gi + gh) (Relu for nonlinearity='relu')
    LSTMCell: i, f, g, o = Slice(gi + gh) (PyTorch's order); c' = Sigmoid(f)·c + Sigmoid(i)·Tanh(g);
              h' = Sigmoid(o)·Tanh(c')
    GRUCell:  r = Sigmoid(gi_r + gh_r), z = Sigmoid(gi_z + gh_z), n = Tanh(gi_n + r·gh_n); h' = n + z·(h − n)

Without a state (hx None: zeros), gh is bias_hh alone and the terms in h or c drop out. Batched input
(N, input_size) only. Seq2Seq's decoder uses the same step (export_seq2seq.py).
"""
from .export_functional import ExportError


def _gate(b, g, k, H, hint):
    """Block k of the gates on the last axis."""
    return b.op("Slice", [g, b.ints([k * H]), b.ints([(k + 1) * H]), b.ints([-1])], hint)


def _add(b, a, c, hint):
    return a if c is None else b.op("Add", [a, c], hint)


def cell_step(b, mode, x, h, c, w_ih, w_hh, b_ih, b_hh, H, hint):
    """(h', c') (c' None but for LSTM) of one step; h, c, b_ih, b_hh may be None."""
    gi = b.op("Gemm", [x, w_ih] + ([b_ih] if b_ih else []), hint + "gi", transB=1)
    gh = b.op("Gemm", [h, w_hh] + ([b_hh] if b_hh else []), hint + "gh", transB=1) if h is not None else b_hh
    if mode in ("RNN_TANH", "RNN_RELU"):
        return b.op("Tanh" if mode == "RNN_TANH" else "Relu", [_add(b, gi, gh, hint + "pre")], hint + "h"), None
    if mode == "LSTM":
        g = _add(b, gi, gh, hint + "g")
        i, f, gg, o = (_gate(b, g, k, H, hint + n) for k, n in enumerate("ifgo"))
        i, f, o = (b.op("Sigmoid", [v], hint + "sig") for v in (i, f, o))
        new_c = b.op("Mul", [i, b.op("Tanh", [gg], hint + "tg")], hint + "ig")
        if c is not None:
            new_c = b.op("Add", [b.op("Mul", [f, c], hint + "fc"), new_c], hint + "c")
        return b.op("Mul", [o, b.op("Tanh", [new_c], hint + "tc")], hint + "h"), new_c
    gates = [(_gate(b, gi, k, H, hint + "gi_" + n), None if gh is None else _gate(b, gh, k, H, hint + "gh_" + n))
             for k, n in enumerate("rzn")]
    r = b.op("Sigmoid", [_add(b, *gates[0], hint + "r_sum")], hint + "r")
    z = b.op("Sigmoid", [_add(b, *gates[1], hint + "z_sum")], hint + "z")
    gi_n, gh_n = gates[2]
    n = b.op("Tanh", [gi_n if gh_n is None else b.op("Add", [gi_n, b.op("Mul", [r, gh_n], hint + "rgh")],
                                                          hint + "n_sum")], hint + "n")
    if h is None:  # h' = n + z·(0 − n)
        return b.op("Sub", [n, b.op("Mul", [z, n], hint + "zn")], hint + "h"), None
    return b.op("Add", [n, b.op("Mul", [z, b.op("Sub", [h, n], hint + "h_n")], hint + "zh")], hint + "h"), None


def cell(b, m, prefix, args, out):
    x = args[0]
    if x.value.ndim != 2:
        raise ExportError(f"ONNX export: {m!r} (layer '{prefix[:-1]}') exports for batched input (N, "
                          f"{m.input_size}) only, got shape {x.value.shape}")
    state = args[1] if len(args) > 1 else None
    lstm = m._mode == "LSTM"
    h = c = None
    if state is not None:
        h, c = (state[0].name, state[1].name) if lstm else (state.name, None)
    names = [b.param(m, prefix, n) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    new_h, new_c = cell_step(b, m._mode, x.name, h, c, *names, m.hidden_size, prefix)
    return (new_h, new_c) if lstm else new_h
