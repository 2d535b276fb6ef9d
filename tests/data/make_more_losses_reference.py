"""Writes more_losses_reference.npz: PyTorch 2.13 values and input gradients of L1Loss, SmoothL1Loss,
HuberLoss, KLDivLoss and MultiMarginLoss for every reduction, so tests/test_more_losses.py checks fastnn
against PyTorch without importing torch.

Run from the repository root: python tests/data/make_more_losses_reference.py
Keys per case: "<case>/config" (JSON: class name and constructor kwargs), "<case>/input", "<case>/target",
"<case>/weight" (MultiMarginLoss with a weight), "<case>/value" (the loss: a scalar, or per-item losses for
reduction='none'), "<case>/grad_output" (reduction='none': the upstream gradient of the per-item losses) and
"<case>/grad" (the gradient w.r.t. input). Everything in float64.
"""
import json
import os

import numpy as np
import torch

torch.set_default_dtype(torch.float64)


def cases():
    r = np.random.default_rng(16)
    x = r.standard_normal((4, 5)) * 2
    t = r.standard_normal((4, 5)) * 2
    t[0, :2] = x[0, :2]  # equal entries: gradient 0 (sign(0)) for L1
    x3, t3 = r.standard_normal((2, 3, 4)), r.standard_normal((2, 3, 4))
    for red in ("none", "mean", "sum"):
        yield f"l1_{red}", "L1Loss", dict(reduction=red), x, t, None
        yield f"l1_3d_{red}", "L1Loss", dict(reduction=red), x3, t3, None
        for beta in (1.0, 0.5, 0.0, 3.0):
            yield f"smooth_l1_beta{beta}_{red}", "SmoothL1Loss", dict(reduction=red, beta=beta), x, t, None
        for delta in (1.0, 2.5, 0.3):
            yield f"huber_delta{delta}_{red}", "HuberLoss", dict(reduction=red, delta=delta), x, t, None
    logits, tl = r.standard_normal((4, 6)), r.standard_normal((4, 6))
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    tlogp = tl - np.log(np.exp(tl).sum(1, keepdims=True))
    prob = np.exp(tlogp)
    prob[1, 2] = 0.0  # a zero-probability target contributes nothing
    prob[1] /= prob[1].sum()
    l3 = r.standard_normal((3, 2, 5))
    logp3 = l3 - np.log(np.exp(l3).sum(2, keepdims=True))
    prob3 = np.exp(r.standard_normal((3, 2, 5)))
    prob3 /= prob3.sum(2, keepdims=True)
    for red in ("none", "batchmean", "mean", "sum"):
        yield f"kl_{red}", "KLDivLoss", dict(reduction=red), logp, prob, None
        yield f"kl_log_target_{red}", "KLDivLoss", dict(reduction=red, log_target=True), logp, tlogp, None
        yield f"kl_3d_{red}", "KLDivLoss", dict(reduction=red), logp3, prob3, None
    scores = r.standard_normal((6, 4))
    labels = r.integers(0, 4, 6)
    weight = r.uniform(0.5, 2.0, 4)
    for red in ("none", "mean", "sum"):
        for p in (1, 2):
            for margin in (1.0, 0.4):
                yield f"multi_margin_p{p}_m{margin}_{red}", "MultiMarginLoss", dict(p=p, margin=margin, reduction=red), \
                    scores, labels, None
            yield f"multi_margin_p{p}_weight_{red}", "MultiMarginLoss", dict(p=p, reduction=red), scores, labels, weight
        yield f"multi_margin_unbatched_{red}", "MultiMarginLoss", dict(reduction=red), scores[2], labels[2:3].reshape(()), \
            None


def main():
    out = {}
    r = np.random.default_rng(17)
    for name, cls, kwargs, x, t, weight in cases():
        xt = torch.tensor(x, requires_grad=True)
        tt = torch.tensor(t)
        tkw = dict(kwargs)
        if weight is not None:
            tkw["weight"] = torch.tensor(weight)
        value = getattr(torch.nn, cls)(**tkw)(xt, tt)
        if kwargs.get("reduction") == "none":
            g = r.standard_normal(tuple(value.shape))
            value.backward(torch.tensor(g))
            out[f"{name}/grad_output"] = g
        else:
            value.backward()
        out[f"{name}/config"] = np.array(json.dumps({"class": cls, "kwargs": kwargs}))
        out[f"{name}/input"] = x
        out[f"{name}/target"] = t
        if weight is not None:
            out[f"{name}/weight"] = weight
        out[f"{name}/value"] = value.detach().numpy()
        out[f"{name}/grad"] = xt.grad.numpy()
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "more_losses_reference.npz")
    np.savez_compressed(path, **out)
    print(f"wrote {path}: {len(out)} arrays")


if __name__ == "__main__":
    main()
