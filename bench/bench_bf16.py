"""bf16 autocast benchmarks (issue 14), fastnn vs PyTorch 2.13 in the same run, 2 threads:
  W2 (MLP 784-1024-1024-10, ReLU, batch 256, SGD momentum, cross-entropy): ms per training step for
     fastnn fp32, fastnn under fnn.autocast("bfloat16") step by step and in one call (Sequential.train_step,
     as fnn.Trainer runs it), PyTorch fp32 and PyTorch under
     torch.autocast("cpu", dtype=torch.bfloat16), interleaved; ratios against both PyTorch figures
  GEMM: GFLOP/s of fastnn's bf16 GEMM on the W2 shapes, as a fraction of the bf16 dot-product peak that this
     script measures (a register-only vdpbf16ps loop, compiled here with cc), beside the fp32 FMA peak
  digits: test accuracy of examples/train_digits.py (MLP) and train_digits_cnn.py (CNN) in fp32 and under
     autocast (--no-digits skips them)
  --profile: where the W2 autocast step's time goes, layer by layer (median ms of each piece over the steps),
     the pieces' sum beside the whole step
Run: python bench/bench_bf16.py [--threads 2] [--repeats 15] [--no-digits] [--profile]
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # numpy is not timed; keep its pool off the cores

import numpy as np
import torch

import fastnn as fnn
from fastnn import amp, ops
from bench_mlp import build, flops_per_step
from common import interleaved, warm_up

PEAK_SOURCE = r"""
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
/* Register-only loops: 12 independent accumulators per thread, so throughput (not latency) bounds them. */
__attribute__((target("avx512f,avx512bf16"))) static double bf16_loop(long iters) {
  __m512 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_setzero_ps();
  __m512bh a = (__m512bh)_mm512_set1_epi32(0x3f803f80), b = (__m512bh)_mm512_set1_epi32(0x00010001);
  for (long it = 0; it < iters; ++it)
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
  float s = 0; for (int i = 0; i < 12; ++i) s += _mm512_reduce_add_ps(acc[i]);
  return s;
}
__attribute__((target("avx512f,fma"))) static double fma_loop(long iters) {
  __m512 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_setzero_ps();
  __m512 a = _mm512_set1_ps(1e-7f), b = _mm512_set1_ps(1e-7f);
  for (long it = 0; it < iters; ++it)
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_fmadd_ps(a, b, acc[i]);
  float s = 0; for (int i = 0; i < 12; ++i) s += _mm512_reduce_add_ps(acc[i]);
  return s;
}
int main(int argc, char** argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 2;
  long iters = 2000000;
  double best_bf = 0, best_fp = 0, sink = 0;
  for (int rep = 0; rep < 30; ++rep) {
    double t0 = omp_get_wtime();
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    sink += bf16_loop(iters);
    double t1 = omp_get_wtime();
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    sink += fma_loop(iters);
    double t2 = omp_get_wtime();
    double bf = threads * iters * 12.0 * 64 / (t1 - t0) / 1e9, fp = threads * iters * 12.0 * 32 / (t2 - t1) / 1e9;
    if (bf > best_bf) best_bf = bf;
    if (fp > best_fp) best_fp = fp;
  }
  printf("%f %f %g\n", best_bf, best_fp, sink);
  return 0;
}
"""


def measured_peaks(threads):
    """(bf16 dot-product, fp32 FMA) GFLOP/s from register-only loops (best of 30 short runs): `threads` times
    the one-thread rate (the cores are alike; on a shared machine another process often holds a core) and
    the rate measured on `threads` threads, or None without a compiler or AVX512_BF16."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None or not ops.bf16_dot_supported():
        return None
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = os.path.join(tmp, "peak.c"), os.path.join(tmp, "peak")
        with open(src, "w") as f:
            f.write("#include <stdlib.h>\n" + PEAK_SOURCE)
        subprocess.run([cc, "-O2", "-fopenmp", src, "-o", exe], check=True)
        one = subprocess.run([exe, "1"], check=True, capture_output=True, text=True).stdout.split()
        many = subprocess.run([exe, str(threads)], check=True, capture_output=True, text=True).stdout.split()
    return {"bf16": threads * float(one[0]), "fp32": threads * float(one[1]),
            "bf16 measured": float(many[0]), "fp32 measured": float(many[1])}


def training_steps(sizes, batch):
    model, tmodel = build(sizes)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], batch)
    loss_fn, tloss = fnn.nn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss()
    opt = fnn.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.01, momentum=0.9)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    with fnn.autocast("bfloat16"):
        a = loss_fn(model(x), y)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        b = float(tloss(tmodel(tx), ty))
    assert abs(a - b) < 0.02 * max(1.0, abs(b)), (a, b)  # the same network, both in bf16

    def fastnn_step():
        loss_fn(model(x), y)
        model.backward_parameters(loss_fn.backward())
        opt.step()
        opt.zero_grad()

    def fastnn_bf16_step():
        with fnn.autocast("bfloat16"):
            fastnn_step()

    def fastnn_bf16_one_call():  # as fnn.Trainer runs a Sequential: the whole step in one C++ call
        with fnn.autocast("bfloat16"):
            model.train_step(x, y, loss_fn, opt)

    def torch_step():
        topt.zero_grad()
        tloss(tmodel(tx), ty).backward()
        topt.step()

    def torch_bf16_step():
        topt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = tloss(tmodel(tx), ty)
        loss.backward()
        topt.step()

    return {"fastnn fp32": fastnn_step, "fastnn bf16": fastnn_bf16_step, "fastnn bf16 1 call": fastnn_bf16_one_call,
            "torch fp32": torch_step, "torch bf16": torch_bf16_step}


def gemm_rates(repeats):
    """{W2 GEMM: (bf16 GFLOP/s, fp32 GFLOP/s)}: best of `repeats` calls each, interleaved."""
    rng = np.random.default_rng(0)
    shapes = [("fwd 256x784 @ 784x1024", 256, 784, 1024, False, True),
              ("fwd 256x1024 @ 1024x1024", 256, 1024, 1024, False, True),
              ("dX 256x1024 @ 1024x1024", 256, 1024, 1024, False, False),
              ("dW 1024x256 @ 256x1024", 1024, 256, 1024, True, False),
              ("dW 1024x256 @ 256x784", 1024, 256, 784, True, False)]
    rates = {}
    for name, n, k, m, ta, tb in shapes:
        a = rng.standard_normal((k, n) if ta else (n, k)).astype(np.float32)
        b = rng.standard_normal((m, k) if tb else (k, m)).astype(np.float32)
        c = np.empty((n, m), np.float32)
        best = [np.inf, np.inf]
        for _ in range(repeats):
            for i, fn in enumerate((lambda: amp.matmul(a, b, c, ta, tb), lambda: ops.batched_matmul(a, b, ta, tb))):
                start = time.perf_counter()
                fn()
                best[i] = min(best[i], time.perf_counter() - start)
        rates[name] = tuple(2 * n * k * m / t / 1e9 for t in best)
    return rates


def step_profile(sizes, batch, steps):
    """{piece: median seconds} of the W2 training step under autocast, run layer by layer as Sequential does
    (each Linear's forward is one bf16 GEMM with the bias; its backward the dW GEMM, the bias gradient and,
    but for the first layer, the dX GEMM), then "step" for the whole step run the ordinary way."""
    model, _ = build(sizes)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], batch)
    loss_fn = fnn.nn.CrossEntropyLoss()
    opt = fnn.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    layers = list(model)
    names = [f"{i} {type(layer).__name__}" for i, layer in enumerate(layers)]
    times = {}

    def timed(name, fn, *args):
        start = time.perf_counter()
        result = fn(*args)
        times.setdefault(name, []).append(time.perf_counter() - start)
        return result

    for i in range(steps + 3):
        with fnn.autocast("bfloat16"):
            h = x
            for name, layer in zip(names, layers):
                h = timed(f"forward  {name}", layer, h)
            timed("loss forward+backward", lambda: loss_fn(h, y))
            g = loss_fn.backward()
            for j in reversed(range(len(layers))):
                layer = layers[j]
                args = (g, j > 0) if isinstance(layer, fnn.nn.Linear) else (g,)
                g = timed(f"backward {names[j]}", layer.backward, *args)
            timed("optimizer step + zero_grad", lambda: (opt.step(), opt.zero_grad()))
        if i < 3:
            times.clear()  # warm-up
    pieces = {name: float(np.median(t)) for name, t in times.items()}

    def whole():
        with fnn.autocast("bfloat16"):
            loss_fn(model(x), y)
            model.backward_parameters(loss_fn.backward())
            opt.step()
            opt.zero_grad()

    whole_times = []
    for _ in range(steps):
        start = time.perf_counter()
        whole()
        whole_times.append(time.perf_counter() - start)
    pieces["step"] = float(np.median(whole_times))
    return pieces


def digits_accuracy(example):
    """Test accuracy of examples/<example>.py in fp32 and under autocast (its default epochs, seed 0)."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
    module = __import__(example)
    _, fp32 = module.main(seed=0, verbose=0)
    with fnn.autocast("bfloat16"):
        _, bf16 = module.main(seed=0, verbose=0)
    return fp32["accuracy"], bf16["accuracy"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--no-digits", action="store_true")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    fnn.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    print(f"fastnn {fnn.__version__} level {ops.cpu_level}, bf16 GEMMs: "
          f"{fnn.show_config(mode='dicts')['kernels']['bf16 autocast']}; torch {torch.__version__} "
          f"({torch.backends.cpu.get_cpu_capability()}); threads {args.threads}")

    big = [784, 1024, 1024, 10]
    cands = training_steps(big, 256)
    warm_up(cands, 5)
    res = interleaved(cands, 5, args.repeats)
    flops = flops_per_step(big, 256)
    print("W2 MLP 784-1024-1024-10, batch 256, SGD momentum, training step (median ms; GFLOP/s):")
    for name, t in res.items():
        print(f"  {name:<18} {t * 1e3:8.2f} ms  {flops / t / 1e9:6.0f} GFLOP/s")
    for name in ("fastnn bf16", "fastnn bf16 1 call"):
        r_fp32 = res[name] / res["torch fp32"]
        r_bf16 = res[name] / res["torch bf16"]
        print(f"  {name} / torch fp32 = {r_fp32:.2f} (target <= 0.50: {'met' if r_fp32 <= 0.5 else 'MISSED'})")
        print(f"  {name} / torch bf16 = {r_bf16:.2f} (target < 1: {'met' if r_bf16 < 1 else 'MISSED'})")
    print(f"  fastnn fp32 / torch fp32 = {res['fastnn fp32'] / res['torch fp32']:.2f}")

    peaks = measured_peaks(args.threads)
    peak_bf16 = peak_fp32 = None
    if peaks:
        peak_bf16, peak_fp32 = peaks["bf16"], peaks["fp32"]
        print(f"peaks, {args.threads} x the one-thread loop: bf16 dot products {peak_bf16:.0f} GFLOP/s, fp32 FMA "
              f"{peak_fp32:.0f} GFLOP/s (measured on {args.threads} threads at once: {peaks['bf16 measured']:.0f} "
              f"and {peaks['fp32 measured']:.0f})")
    print("W2 GEMMs (best of repeats): bf16 GFLOP/s (fraction of bf16 peak) | fp32 GFLOP/s (fraction of fp32 peak)")
    for name, (bf, fp) in gemm_rates(args.repeats).items():
        frac = (f" ({bf / peak_bf16:4.0%})", f" ({fp / peak_fp32:4.0%})") if peak_bf16 else ("", "")
        print(f"  {name:<26} {bf:6.0f}{frac[0]} | {fp:6.0f}{frac[1]}")
    if args.profile:
        pieces = step_profile(big, 256, 10 * args.repeats)
        step = pieces.pop("step")
        print(f"W2 autocast step by pieces (median over {10 * args.repeats} steps, ms):")
        for name, t in pieces.items():
            print(f"  {name:<30} {t * 1e3:7.3f}")
        print(f"  {'sum of the pieces':<30} {sum(pieces.values()) * 1e3:7.3f}   whole step {step * 1e3:.3f}")
    if not args.no_digits:
        for example, what in [("train_digits", "MLP, 80 epochs"), ("train_digits_cnn", "CNN, 50 epochs")]:
            fp32, bf16 = digits_accuracy(example)
            print(f"digits {what} (examples/{example}.py): test accuracy fp32 {fp32:.4f}, autocast bf16 "
                  f"{bf16:.4f}, difference {100 * (bf16 - fp32):+.2f} points (target within 0.5)")


if __name__ == "__main__":
    main()
