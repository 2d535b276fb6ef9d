"""Writes cells_reference.npz: PyTorch 2.13 RNNCell/LSTMCell/GRUCell unrolled over time steps in a Python loop,
with every gradient, so tests/test_cells.py checks fastnn's cells against PyTorch without importing torch.

Run from the repository root: python tests/data/make_cells_reference.py
Per case: "<case>/config" (JSON: class, constructor kwargs, batched), "<case>/param/<name>" (the cell's
state_dict), "<case>/x" ((N, T, I), or (T, I) unbatched), "<case>/h0", "<case>/c0" (LSTMCell), "<case>/out"
(the h of every step, stacked on axis 1 (axis 0 unbatched)), "<case>/h_T", "<case>/c_T", the upstream gradients
"<case>/grad_out", "<case>/grad_hT", "<case>/grad_cT", and the gradients "<case>/grad_x", "<case>/grad_h0",
"<case>/grad_c0", "<case>/grad/<name>". Everything float64 (torch computes in float64).
"""
import json
import os

import numpy as np
import torch

torch.set_default_dtype(torch.float64)

CASES = {
    "rnn_tanh": ("RNNCell", dict(input_size=5, hidden_size=4), True),
    "rnn_relu_no_bias": ("RNNCell", dict(input_size=5, hidden_size=4, bias=False, nonlinearity="relu"), True),
    "lstm": ("LSTMCell", dict(input_size=5, hidden_size=4), True),
    "gru": ("GRUCell", dict(input_size=5, hidden_size=4), True),
    "lstm_unbatched": ("LSTMCell", dict(input_size=3, hidden_size=6), False),
    "gru_unbatched": ("GRUCell", dict(input_size=3, hidden_size=6), False),
}


def main():
    out = {}
    r = np.random.default_rng(16)
    torch.manual_seed(16)
    N, T = 3, 4
    for case, (cls, kwargs, batched) in CASES.items():
        cell = getattr(torch.nn, cls)(**kwargs)
        I, H = kwargs["input_size"], kwargs["hidden_size"]
        lstm = cls == "LSTMCell"
        x_np = r.standard_normal((N, T, I) if batched else (T, I))
        h0_np = r.standard_normal((N, H) if batched else (H,))
        c0_np = r.standard_normal(h0_np.shape)
        x, h0, c0 = (torch.tensor(a, requires_grad=True) for a in (x_np, h0_np, c0_np))
        state = (h0, c0) if lstm else h0
        hs = []
        for t in range(T):
            state = cell(x[:, t] if batched else x[t], state)
            hs.append(state[0] if lstm else state)
        y = torch.stack(hs, 1 if batched else 0)
        g_out, g_h = r.standard_normal(tuple(y.shape)), r.standard_normal(h0_np.shape)
        g_c = r.standard_normal(h0_np.shape)
        h_T = state[0] if lstm else state
        total = (y * torch.tensor(g_out)).sum() + (h_T * torch.tensor(g_h)).sum()
        if lstm:
            total = total + (state[1] * torch.tensor(g_c)).sum()
        total.backward()
        p = f"{case}/"
        out[p + "config"] = np.array(json.dumps({"class": cls, "kwargs": kwargs, "batched": batched}))
        for name, value in cell.state_dict().items():
            out[p + "param/" + name] = value.numpy()
        for name, param in cell.named_parameters():
            out[p + "grad/" + name] = param.grad.numpy()
        out.update({p + "x": x_np, p + "h0": h0_np, p + "out": y.detach().numpy(), p + "h_T": h_T.detach().numpy(),
                    p + "grad_out": g_out, p + "grad_hT": g_h, p + "grad_x": x.grad.numpy(),
                    p + "grad_h0": h0.grad.numpy()})
        if lstm:
            out.update({p + "c0": c0_np, p + "c_T": state[1].detach().numpy(), p + "grad_cT": g_c,
                        p + "grad_c0": c0.grad.numpy()})
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cells_reference.npz")
    np.savez_compressed(path, **out)
    print(f"wrote {path}: {len(out)} arrays")


if __name__ == "__main__":
    main()
