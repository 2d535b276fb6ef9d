"""RNN, LSTM and GRU as ONNX RNN/LSTM/GRU ops, one op per layer (both directions in it when bidirectional).

Per layer k the initializers are named after the fastnn parameters of that layer: prefix + "weight_ih_l{k}"
(ONNX W: (directions, gates·H, input)), "weight_hh_l{k}" (R) and "bias_l{k}" (B: W_b and R_b side by side),
the gate blocks reordered (gates.py) and the reverse direction stacked second. Input layout is ONNX's
(seq, batch, feature); batch_first models are transposed in and out. Each layer's Y (seq, dirs, batch, H) is
transposed and reshaped to (seq, batch, dirs·H) for the next layer; h_n (and c_n) concatenate the layers'
Y_h (Y_c) on axis 0, as PyTorch's h_n. Eval semantics: no dropout between layers."""
import numpy as np

from .export_functional import ExportError
from .gates import ONNX_OP, to_onnx


def _weights(b, m, prefix, k):
    mode, dirs = m.mode, 2 if m.bidirectional else 1
    sfx = [f"_l{k}", f"_l{k}_reverse"][:dirs]
    w = np.stack([to_onnx(getattr(m, "weight_ih" + s).data, mode) for s in sfx])
    r = np.stack([to_onnx(getattr(m, "weight_hh" + s).data, mode) for s in sfx])
    names = [b.initializer(f"{prefix}weight_ih_l{k}", w), b.initializer(f"{prefix}weight_hh_l{k}", r)]
    if m.bias:
        bias = np.stack([np.concatenate([to_onnx(getattr(m, "bias_ih" + s).data, mode),
                                         to_onnx(getattr(m, "bias_hh" + s).data, mode)]) for s in sfx])
        names.append(b.initializer(f"{prefix}bias_l{k}", bias))
    else:
        names.append("")
    return names


def recurrent(b, m, prefix, args, out):
    x = args[0]
    if x.value.ndim != 3:
        raise ExportError(f"ONNX export: {m!r} exports for batched 3-D input only, got shape {x.value.shape}")
    mode, dirs, H = m.mode, 2 if m.bidirectional else 1, m.hidden_size
    hint = prefix + ONNX_OP[mode].lower()
    seq = b.op("Transpose", [x.name], hint + "_in", perm=[1, 0, 2]) if m.batch_first else x.name
    h0 = c0 = None
    if len(args) > 1 and args[1] is not None:
        state = args[1]
        if mode == "LSTM":
            h0, c0 = state[0].name, state[1].name
        else:
            h0 = state.name
    attrs = {"hidden_size": H, "direction": "bidirectional" if m.bidirectional else "forward"}
    if mode == "GRU":
        attrs["linear_before_reset"] = 1
    elif mode == "RNN_RELU":
        attrs["activations"] = ["Relu"] * dirs
    h_list, c_list = [], []
    for k in range(m.num_layers):
        w, r, bias = _weights(b, m, prefix, k)
        ins = [seq, w, r, bias, ""]
        rows = None
        if h0 is not None:
            rows = [b.ints([k * dirs]), b.ints([(k + 1) * dirs]), b.ints([0])]
            ins.append(b.op("Slice", [h0] + rows, hint + f"_h0_l{k}"))
            if c0 is not None:
                ins.append(b.op("Slice", [c0] + rows, hint + f"_c0_l{k}"))
        while ins and ins[-1] == "":
            ins.pop()
        n_out = 3 if mode == "LSTM" else 2
        outs = b.op(ONNX_OP[mode], ins, hint + f"_l{k}", outputs=n_out, **attrs)
        y = b.op("Transpose", [outs[0]], hint + f"_y_l{k}", perm=[0, 2, 1, 3])
        seq = b.op("Reshape", [y, b.ints([0, 0, -1])], hint + f"_out_l{k}")
        h_list.append(outs[1])
        if mode == "LSTM":
            c_list.append(outs[2])
    output = b.op("Transpose", [seq], hint + "_out", perm=[1, 0, 2]) if m.batch_first else \
        b.op("Identity", [seq], hint + "_out")
    h_n = h_list[0] if len(h_list) == 1 else b.op("Concat", h_list, hint + "_h_n", axis=0)
    if mode == "LSTM":
        c_n = c_list[0] if len(c_list) == 1 else b.op("Concat", c_list, hint + "_c_n", axis=0)
        return (output, (h_n, c_n))
    return (output, h_n)
