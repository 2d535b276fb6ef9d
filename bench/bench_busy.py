"""Training beside a busy process, fastnn vs PyTorch 2.13 in the same run, 2 threads each.

W1 (MLP 784-256-128-10, batch 64, SGD momentum, one call per step) and W2 (784-1024-1024-10, batch 256),
first alone, then with one other process spinning on a core, as on a laptop or a shared server. A team of two
threads then waits at the end of each parallel region for whichever thread the scheduler took off its core;
fastnn notices such regions and backs off to one thread for a while (cpp/runtime/runtime.cpp). Reported: the
mean time per step (the mean, not the median: the waits are a long tail), and how many of fastnn's regions
found contention and ran on one thread.
Run: python bench/bench_busy.py [--seconds 3]
"""
import argparse
import os
import subprocess
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import torch

import fastnn as fnn
from bench_mlp import build
from common import classifier_training_steps


def mean_step(fn, seconds):
    for _ in range(5):
        fn()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        count += 1
    return (time.perf_counter() - start) / count


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0, help="per library, workload and condition")
    args = parser.parse_args()
    fnn.set_num_threads(2)
    torch.set_num_threads(2)
    print(f"fastnn {fnn.__version__}; torch {torch.__version__}; 2 threads each; {os.cpu_count()} processors")
    for name, sizes, batch in (("W1", [784, 256, 128, 10], 64), ("W2", [784, 1024, 1024, 10], 256)):
        model, tmodel = build(sizes)
        rng = np.random.default_rng(0)
        x = rng.standard_normal((batch, sizes[0])).astype(np.float32)
        y = rng.integers(0, sizes[-1], batch)
        steps = classifier_training_steps(model, tmodel, x, y, one_call=True)
        for busy in (False, True):
            spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
            try:
                time.sleep(0.2)
                fnn.ops._simulate_contention(False)  # start without a back-off from the previous condition
                before = fnn.ops.runtime_info()
                fast = mean_step(steps["fastnn_one_call"], args.seconds)
                after = fnn.ops.runtime_info()
                slow = mean_step(steps["torch"], args.seconds)
            finally:
                if spinner:
                    spinner.kill()
                    spinner.wait()
            regions = {k: after[k] - before[k] for k in ("parallel_regions", "contended_regions", "yielded_regions")}
            print(f"{name} {'beside a busy process' if busy else 'alone':<22} fastnn {fast * 1e3:8.2f} ms   "
                  f"torch {slow * 1e3:8.2f} ms   ratio {fast / slow:5.2f}   fastnn regions: "
                  f"{regions['parallel_regions']} on 2 threads ({regions['contended_regions']} contended), "
                  f"{regions['yielded_regions']} on 1")


if __name__ == "__main__":
    main()
