"""Writes torch_rnn_reference.npz: PyTorch 2.13 RNN/LSTM/GRU weights, inputs, outputs and gradients, so
tests/test_recurrent.py can check fastnn against PyTorch without importing torch.

Run from the repository root: python tests/data/make_torch_reference.py
Keys: "<case>/config" (JSON), "<case>/param/<name>" (state_dict), "<case>/x", "<case>/h0", "<case>/c0",
"<case>/out", "<case>/h_n", "<case>/c_n", "<case>/grad_out" (the upstream gradient of out; h_n gets grad_hn),
"<case>/grad_hn", "<case>/grad_x", "<case>/grad/<name>" (parameter gradients). float32, as PyTorch's default.
"""
import json
import os

import numpy as np
import torch

CASES = {
    "lstm_2layer_bidirectional_batch_first": dict(cls="LSTM", input_size=5, hidden_size=6, num_layers=2,
                                                  bidirectional=True, batch_first=True, shape=(3, 4, 5), hx=True),
    "lstm_1layer": dict(cls="LSTM", input_size=4, hidden_size=3, num_layers=1, bidirectional=False,
                        batch_first=False, shape=(6, 2, 4), hx=False),
    "gru_2layer_bidirectional": dict(cls="GRU", input_size=5, hidden_size=6, num_layers=2, bidirectional=True,
                                     batch_first=False, shape=(4, 3, 5), hx=True),
    "gru_3layer_batch_first": dict(cls="GRU", input_size=3, hidden_size=4, num_layers=3, bidirectional=False,
                                   batch_first=True, shape=(2, 5, 3), hx=False),
    "rnn_tanh_bidirectional": dict(cls="RNN", nonlinearity="tanh", input_size=4, hidden_size=5, num_layers=1,
                                   bidirectional=True, batch_first=False, shape=(5, 2, 4), hx=True),
    "rnn_relu_2layer": dict(cls="RNN", nonlinearity="relu", input_size=4, hidden_size=5, num_layers=2,
                            bidirectional=False, batch_first=True, shape=(2, 5, 4), hx=False),
    "lstm_unbatched": dict(cls="LSTM", input_size=3, hidden_size=4, num_layers=1, bidirectional=True,
                           batch_first=False, shape=(5, 3), hx=True),
}


def main():
    torch.manual_seed(0)
    out_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_rnn_reference.npz")
    arrays = {}
    for case, cfg in CASES.items():
        kwargs = {k: cfg[k] for k in ("input_size", "hidden_size", "num_layers", "bidirectional", "batch_first")}
        if cfg["cls"] == "RNN":
            kwargs["nonlinearity"] = cfg["nonlinearity"]
        model = getattr(torch.nn, cfg["cls"])(**kwargs)
        x = torch.randn(*cfg["shape"], requires_grad=True)
        D = 2 if cfg["bidirectional"] else 1
        unbatched = len(cfg["shape"]) == 2
        n = None if unbatched else cfg["shape"][0 if cfg["batch_first"] else 1]
        state_shape = (cfg["num_layers"] * D, cfg["hidden_size"]) if unbatched else \
            (cfg["num_layers"] * D, n, cfg["hidden_size"])
        hx = None
        if cfg["hx"]:
            h0 = torch.randn(*state_shape)
            arrays[f"{case}/h0"] = h0.numpy()
            hx = h0
            if cfg["cls"] == "LSTM":
                c0 = torch.randn(*state_shape)
                arrays[f"{case}/c0"] = c0.numpy()
                hx = (h0, c0)
        out, state = model(x, hx)
        h_n, c_n = state if cfg["cls"] == "LSTM" else (state, None)
        grad_out, grad_hn = torch.randn_like(out), torch.randn_like(h_n)
        torch.autograd.backward([out, h_n], [grad_out, grad_hn])
        arrays[f"{case}/config"] = np.array(json.dumps({k: v for k, v in cfg.items() if k not in ("shape", "hx")}))
        for name, p in model.state_dict().items():
            arrays[f"{case}/param/{name}"] = p.numpy()
        for name, p in model.named_parameters():
            arrays[f"{case}/grad/{name}"] = p.grad.numpy()
        arrays[f"{case}/x"] = x.detach().numpy()
        arrays[f"{case}/out"] = out.detach().numpy()
        arrays[f"{case}/h_n"] = h_n.detach().numpy()
        if c_n is not None:
            arrays[f"{case}/c_n"] = c_n.detach().numpy()
        arrays[f"{case}/grad_out"] = grad_out.numpy()
        arrays[f"{case}/grad_hn"] = grad_hn.numpy()
        arrays[f"{case}/grad_x"] = x.grad.numpy()
    np.savez_compressed(out_path, **arrays)
    print(f"wrote {out_path} ({os.path.getsize(out_path)} bytes, torch {torch.__version__})")


if __name__ == "__main__":
    main()
