"""Writes gelu_reference.npz: PyTorch 2.13 nn.GELU outputs and input gradients, approximate "none" and "tanh",
so tests/test_gelu.py checks fastnn's GELU layer against PyTorch without importing torch.

Run from the repository root: python tests/data/make_gelu_reference.py
Keys: "x", "grad_output" (float64), and per approximate A: "A/out", "A/grad" (float64).
"""
import os

import numpy as np
import torch


def main():
    r = np.random.default_rng(16)
    x = np.concatenate([r.standard_normal(60) * 3, [0.0, -8.0, 8.0, 1e-3, -30.0, 30.0]]).reshape(6, 11)
    g = r.standard_normal(x.shape)
    out = {"x": x, "grad_output": g}
    for approximate in ("none", "tanh"):
        xt = torch.tensor(x, requires_grad=True)
        y = torch.nn.GELU(approximate=approximate)(xt)
        y.backward(torch.tensor(g))
        out[f"{approximate}/out"] = y.detach().numpy()
        out[f"{approximate}/grad"] = xt.grad.numpy()
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gelu_reference.npz")
    np.savez_compressed(path, **out)
    print(f"wrote {path}: {len(out)} arrays")


if __name__ == "__main__":
    main()
