"""Layer-by-layer sweep, fastnn vs PyTorch 2.13 in the same run, 2 threads: forward + backward (training
mode) of one layer at a typical size, ms per call and the ratio. No targets: it is a map of where each
library is ahead, and it catches slow paths (this sweep found the 8x batch-1 CNN slowdown, depthwise
convolution at 2.7x and embedding gradients at 4.8x PyTorch's time, all since fixed).
Run: python bench/bench_layers.py [--threads 2] [--repeats 5] [--only SUBSTRING]
"""
import argparse
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # numpy is not timed; keep its pool off the cores

import numpy as np
import torch

import fastnn as fnn
from common import interleaved, warm_up

# name: (layer factory taking fastnn.nn or torch.nn, input shape, integer input range or None)
CASES = {
    "Linear 512->512, batch 1024": (lambda m: m.Linear(512, 512), (1024, 512), None),
    "Conv2d 32->32 3x3, 32x32, batch 32": (lambda m: m.Conv2d(32, 32, 3, padding=1), (32, 32, 32, 32), None),
    "Conv2d 64->64 3x3, 16x16, batch 32": (lambda m: m.Conv2d(64, 64, 3, padding=1), (32, 64, 16, 16), None),
    "Conv2d 32->64 3x3 stride 2, 32x32, batch 32": (lambda m: m.Conv2d(32, 64, 3, stride=2, padding=1),
                                                    (32, 32, 32, 32), None),
    "Conv2d 64->64 3x3 dilation 2, 16x16, batch 16": (lambda m: m.Conv2d(64, 64, 3, padding=2, dilation=2),
                                                      (16, 64, 16, 16), None),
    "Conv2d depthwise 64 3x3, 16x16, batch 32": (lambda m: m.Conv2d(64, 64, 3, padding=1, groups=64),
                                                 (32, 64, 16, 16), None),
    "Conv2d 1x1 64->128, 16x16, batch 32": (lambda m: m.Conv2d(64, 128, 1), (32, 64, 16, 16), None),
    "Conv1d 64->64 k5, L 256, batch 32": (lambda m: m.Conv1d(64, 64, 5, padding=2), (32, 64, 256), None),
    "MaxPool2d 3 stride 2 pad 1, 64x32x32, batch 32": (lambda m: m.MaxPool2d(3, 2, 1), (32, 64, 32, 32), None),
    "AvgPool2d 2, 64x32x32, batch 32": (lambda m: m.AvgPool2d(2), (32, 64, 32, 32), None),
    "BatchNorm2d 64, 32x32, batch 32": (lambda m: m.BatchNorm2d(64), (32, 64, 32, 32), None),
    "GroupNorm 8x64, 16x16, batch 32": (lambda m: m.GroupNorm(8, 64), (32, 64, 16, 16), None),
    "LayerNorm 512, 4096 rows": (lambda m: m.LayerNorm(512), (4096, 512), None),
    "ReLU, 1M values": (lambda m: m.ReLU(), (1024, 1024), None),
    "Tanh, 1M values": (lambda m: m.Tanh(), (1024, 1024), None),
    "Softmax, 1024 x 1000": (lambda m: m.Softmax(dim=1), (1024, 1000), None),
    "Dropout 0.5, 1M values": (lambda m: m.Dropout(0.5), (1024, 1024), None),
    "Embedding 50000x128, 256x32 lookups": (lambda m: m.Embedding(50000, 128), (256, 32), 50000),
    "EmbeddingBag mean 20000x64, 512 bags of 40": (lambda m: m.EmbeddingBag(20000, 64, mode="mean"),
                                                   (512, 40), 20000),
    "LSTM 128->256, T 20, batch 64": (lambda m: m.LSTM(128, 256, batch_first=True), (64, 20, 128), None),
}


def candidates(make, shape, int_range, rng):
    fnn.manual_seed(0)
    layer, tlayer = make(fnn.nn), make(torch.nn)
    state = layer.state_dict()
    if state:
        tlayer.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
    x = rng.integers(0, int_range, shape) if int_range else rng.standard_normal(shape).astype(np.float32)
    first = lambda out: out[0] if isinstance(out, tuple) else out  # noqa: E731  (recurrent layers)
    g = rng.standard_normal(first(layer(x)).shape).astype(np.float32)
    tx = torch.from_numpy(x) if int_range else torch.from_numpy(x).requires_grad_()
    tg = torch.from_numpy(g)

    def fastnn_step():
        first(layer(x))
        layer.backward(g)

    def torch_step():
        tlayer.zero_grad(set_to_none=True)
        tx.grad = None
        first(tlayer(tx)).backward(tg)

    return {"fastnn": fastnn_step, "torch": torch_step}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    fnn.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    print(f"fastnn {fnn.__version__}; torch {torch.__version__}; threads {args.threads}; forward + backward")
    rng = np.random.default_rng(0)
    for name, (make, shape, int_range) in CASES.items():
        if args.only.lower() not in name.lower():
            continue
        cands = candidates(make, shape, int_range, rng)
        warm_up(cands, 2)
        res = interleaved(cands, 5, args.repeats)
        print(f"{name:<50} fastnn {res['fastnn'] * 1e3:8.3f} ms   torch {res['torch'] * 1e3:8.3f} ms   "
              f"ratio {res['fastnn'] / res['torch']:5.2f}")


if __name__ == "__main__":
    main()
