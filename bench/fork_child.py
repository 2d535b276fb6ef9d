"""A child forked after the parent ran a 2-thread GEMM: does its first GEMM finish? fastnn against PyTorch
(if installed) in child processes with a timeout. PyTorch 2.13 with GNU libgomp hangs there; so did fastnn
before its fork handlers (cpp/runtime/runtime.cpp).
Run: python bench/fork_child.py [--timeout 20]
"""
import argparse
import os
import signal
import subprocess
import sys
import time

CHILD = r"""
import os, signal, sys
if sys.argv[1] == "torch":
    import torch
    torch.set_num_threads(2)
    a = torch.randn(512, 512)
    work = lambda: float((a @ a).sum())
else:
    import numpy as np, fastnn as fnn
    fnn.set_num_threads(2)
    x = np.random.default_rng(0).standard_normal((512, 512)).astype(np.float32)
    work = lambda: float(fnn.ops.linear_forward(x, x).sum())
parent = work()
pid = os.fork()
if pid == 0:
    signal.alarm(int(sys.argv[2]))
    os._exit(0 if work() == parent else 3)
_, status = os.waitpid(pid, 0)
sys.exit(128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))
"""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--timeout", type=int, default=20)
    args = parser.parse_args()
    for lib in ("fastnn", "torch"):
        start = time.perf_counter()
        code = subprocess.run([sys.executable, "-c", CHILD, lib, str(args.timeout)], capture_output=True).returncode
        took = time.perf_counter() - start
        verdict = {0: "the child computed the parent's result", 3: "the child computed a different result",
                   128 + signal.SIGALRM: f"the child hung (killed after {args.timeout} s)"}
        if code == 1:
            print(f"{lib:7s} not importable here")
            continue
        print(f"{lib:7s} {verdict.get(code, f'exit status {code}')} ({took:.1f} s)")


if __name__ == "__main__":
    main()
