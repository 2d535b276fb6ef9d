"""CNN benchmark, fastnn vs PyTorch 2.13 in the same run, 2 threads (issues 3 and 14): LeNet-like net on 1×28×28
  Conv(1→8,3,pad1)-BN-ReLU-MaxPool2-Conv(8→16,3,pad1)-BN-ReLU-MaxPool2-Flatten-Linear(784→128)-ReLU-Linear(128→10)
  (a) training step at batch 64, SGD momentum, cross-entropy: ms per step        (W3: target <= 0.5x PyTorch)
  (b) eval-mode inference at batch 256: samples/s (ratio of times per batch)     (W6: target <= 0.18x PyTorch)
  (c) for scale beyond LeNet (no target): a CIFAR-sized net on 3×32×32, batch 64, training step
      [Conv(3→32)-BN-ReLU, Conv(32→32)-BN-ReLU-MaxPool2, Conv(32→64)-BN-ReLU, Conv(64→64)-BN-ReLU-MaxPool2,
       Flatten, Linear(4096→256)-ReLU, Linear(256→10)], all convolutions 3×3 with padding 1
  (d) that net in eval mode on one image: µs per call (latency, no target)
Without fastnn.nn.BatchNorm2d (or with --no-bn) both frameworks run the nets without BN, and say so.
Run: python bench/bench_cnn.py [--threads 2] [--repeats 15] [--no-bn] [--skip-cifar]
"""
import argparse
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # numpy is not timed; keep its pool off the cores

import numpy as np
import torch

import fastnn as fnn
from common import classifier_training_steps, interleaved, report, warm_up


def build(use_bn):
    fnn.manual_seed(0)
    nn, tnn = fnn.nn, torch.nn

    def block(cin, cout):
        f = [nn.Conv2d(cin, cout, 3, padding=1)] + ([nn.BatchNorm2d(cout)] if use_bn else []) + \
            [nn.ReLU(), nn.MaxPool2d(2)]
        t = [tnn.Conv2d(cin, cout, 3, padding=1)] + ([tnn.BatchNorm2d(cout)] if use_bn else []) + \
            [tnn.ReLU(), tnn.MaxPool2d(2)]
        return f, t

    f1, t1 = block(1, 8)
    f2, t2 = block(8, 16)
    model = nn.Sequential(*f1, *f2, nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
    tmodel = tnn.Sequential(*t1, *t2, tnn.Flatten(), tnn.Linear(784, 128), tnn.ReLU(), tnn.Linear(128, 10))
    # Same weights in both (PyTorch's state_dict names and shapes are fastnn's).
    tmodel.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()})
    return model, tmodel


def build_cifar(use_bn):
    fnn.manual_seed(0)

    def net(nn):
        def block(cin, cout, pool):
            return ([nn.Conv2d(cin, cout, 3, padding=1)] + ([nn.BatchNorm2d(cout)] if use_bn else []) +
                    [nn.ReLU()] + ([nn.MaxPool2d(2)] if pool else []))
        return nn.Sequential(*block(3, 32, False), *block(32, 32, True), *block(32, 64, False),
                             *block(64, 64, True), nn.Flatten(), nn.Linear(64 * 8 * 8, 256), nn.ReLU(),
                             nn.Linear(256, 10))

    model, tmodel = net(fnn.nn), net(torch.nn)
    tmodel.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()})
    return model, tmodel


def training_steps(model, tmodel, input_shape, batch=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch,) + input_shape).astype(np.float32)
    y = rng.integers(0, 10, batch)
    return classifier_training_steps(model, tmodel, x, y, lr=0.01, momentum=0.9)


def inference(use_bn, batch=256, builder=build, input_shape=(1, 28, 28)):
    model, tmodel = builder(use_bn)
    model.eval()
    tmodel.eval()
    x = np.random.default_rng(1).standard_normal((batch,) + input_shape).astype(np.float32)
    tx = torch.from_numpy(x)
    with torch.inference_mode():
        np.testing.assert_allclose(model(x), tmodel(tx).numpy(), rtol=1e-3, atol=1e-4)

    def torch_infer():
        with torch.inference_mode():
            return tmodel(tx)

    return {"fastnn": lambda: model(x), "torch": torch_infer}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--no-bn", action="store_true")
    parser.add_argument("--skip-cifar", action="store_true")
    args = parser.parse_args()
    fnn.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    use_bn = hasattr(fnn.nn, "BatchNorm2d") and not args.no_bn
    print(f"fastnn {fnn.__version__} {fnn.build_info()}; torch {torch.__version__}; threads {args.threads}")
    print("LeNet-like CNN " + ("WITH BatchNorm2d" if use_bn else
                               "WITHOUT BatchNorm2d (BN left out of both frameworks: "
                               + ("--no-bn" if args.no_bn else "fastnn.nn.BatchNorm2d does not exist yet") + ")"))
    cands = training_steps(*build(use_bn), (1, 28, 28))
    warm_up(cands, 20)
    ra = report("(a) LeNet-like CNN, batch 64, train step", "ms", 1e3, interleaved(cands, 20, args.repeats),
                target=0.5)
    cands = inference(use_bn)
    warm_up(cands, 5)
    res = interleaved(cands, 10, args.repeats)
    rb = report("(b) LeNet-like CNN, batch 256, eval inference", "ms", 1e3, res, target=0.18)
    print(f"    (b) samples/s: fastnn {256 / res['fastnn']:,.0f}, torch {256 / res['torch']:,.0f}")
    line = f"ratios fastnn/torch (time): a={ra:.2f} b={rb:.2f}"
    if not args.skip_cifar:
        cands = training_steps(*build_cifar(use_bn), (3, 32, 32), seed=2)
        warm_up(cands, 2)
        rc = report("(c) CIFAR-sized CNN, batch 64, train step", "ms", 1e3,
                    interleaved(cands, 3, max(3, args.repeats // 3)))
        cands = inference(use_bn, 1, build_cifar, (3, 32, 32))
        warm_up(cands, 20)
        rd = report("(d) CIFAR-sized CNN, batch 1, eval latency", "us", 1e6,
                    interleaved(cands, 50, args.repeats))
        line += f" c={rc:.2f} d={rd:.2f}"
    print(line + ("" if use_bn else "  [no BN]"))


if __name__ == "__main__":
    main()
