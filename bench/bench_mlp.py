"""MLP benchmarks, fastnn vs PyTorch 2.13 in the same run, 2 threads (issue 2):
  (a) MLP 784-256-128-10, ReLU, batch 64, SGD momentum: ms per training step (W1)
  (b) MLP 784-1024-1024-10, ReLU, batch 256, SGD momentum: ms per training step (W2)
  (c) inference latency of (a) at batch 1: µs per call (W5)
Training steps are timed twice for fastnn: step by step (forward, loss, backward, optimizer step: four
calls from Python) and in one call (Sequential.train_step, as fastnn.Trainer runs it).
Run: python bench/bench_mlp.py [--threads 2] [--repeats 15]
"""
import argparse
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # numpy is not timed; keep its pool off the cores

import numpy as np
import torch

import fastnn as fnn
from common import classifier_training_steps, interleaved, report, warm_up


def build(sizes):
    fnn.manual_seed(0)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(fnn.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(fnn.nn.ReLU())
    model = fnn.nn.Sequential(*layers)
    tlayers = []
    for layer in layers:
        if isinstance(layer, fnn.nn.Linear):
            t = torch.nn.Linear(layer.in_features, layer.out_features)
            with torch.no_grad():
                t.weight.copy_(torch.from_numpy(layer.weight.data))
                t.bias.copy_(torch.from_numpy(layer.bias.data))
            tlayers.append(t)
        else:
            tlayers.append(torch.nn.ReLU())
    return model, torch.nn.Sequential(*tlayers)


def training_steps(sizes, batch):
    model, tmodel = build(sizes)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], batch)
    return classifier_training_steps(model, tmodel, x, y, lr=0.01, momentum=0.9, one_call=True)


def one_call(result):
    """The one-call step's timing in report()'s form."""
    return {"fastnn": result["fastnn_one_call"], "torch": result["torch"]}


def inference(sizes):
    model, tmodel = build(sizes)
    model.eval()
    tmodel.eval()
    x = np.random.default_rng(1).standard_normal((1, sizes[0])).astype(np.float32)
    tx = torch.from_numpy(x)
    np.testing.assert_allclose(model(x), tmodel(tx).detach().numpy(), rtol=1e-4, atol=1e-5)

    def torch_infer():
        with torch.inference_mode():
            return tmodel(tx)

    return {"fastnn": lambda: model(x), "torch": torch_infer}


def flops_per_step(sizes, batch):
    """Forward 2·N·I·O per layer; backward twice that, less the first layer's unneeded input gradient."""
    layers = list(zip(sizes[:-1], sizes[1:]))
    fwd = sum(2 * batch * i * o for i, o in layers)
    return 3 * fwd - 2 * batch * layers[0][0] * layers[0][1]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    fnn.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    print(f"fastnn {fnn.__version__} {fnn.build_info()}; torch {torch.__version__}; threads {args.threads}")

    small, big = [784, 256, 128, 10], [784, 1024, 1024, 10]
    cands = training_steps(small, 64)
    warm_up(cands, 100)
    res = interleaved(cands, 50, args.repeats)
    ra = report("(a) MLP 784-256-128-10, batch 64, train step", "ms", 1e3, res, target=0.6)
    ra1 = report("(a) ... in one call (train_step)", "ms", 1e3, one_call(res), target=0.45)
    cands = training_steps(big, 256)
    warm_up(cands, 5)
    res = interleaved(cands, 5, args.repeats)
    rb = report("(b) MLP 784-1024-1024-10, batch 256, train step", "ms", 1e3, res, target=0.8)
    rb1 = report("(b) ... in one call (train_step)", "ms", 1e3, one_call(res), target=0.78)
    print(f"    (b) fastnn {flops_per_step(big, 256) / res['fastnn'] / 1e9:.0f} GFLOP/s "
          f"({flops_per_step(big, 256) / res['fastnn_one_call'] / 1e9:.0f} in one call), "
          f"torch {flops_per_step(big, 256) / res['torch'] / 1e9:.0f} GFLOP/s")
    cands = inference(small)
    warm_up(cands, 1000)
    rc = report("(c) MLP 784-256-128-10, batch 1, inference latency", "us", 1e6,
                interleaved(cands, 500, args.repeats), target=0.35)
    print(f"ratios fastnn/torch: a={ra:.2f} (one call {ra1:.2f}) b={rb:.2f} (one call {rb1:.2f}) c={rc:.2f}")


if __name__ == "__main__":
    main()
