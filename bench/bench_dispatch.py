"""What runtime CPU dispatch costs: the default build (bindings for the baseline CPU, kernels of the highest CPU
level this machine has, in their own library) against a one-library -march=native build (FASTNN_NATIVE=ON),
on W2 (MLP 784-1024-1024-10, batch 256, SGD momentum training step) and W3 (the batch-1 eval-mode inference of
MLP 784-256-128-10), 2 threads (--threads). Target: within 3%.

A process can load only one fastnn, so each build runs in child processes, alternating build by build for
--rounds rounds (machine noise then falls on both alike); each child times --blocks blocks after a warm-up
and keeps its fastest block (another process taking a core only ever adds time); the ratio reported is the
median over rounds of each round's dispatched/native ratio.
Run:  python bench/bench_dispatch.py            (builds build/native first if it is missing)
      python bench/bench_dispatch.py --dispatched build/dev --native build/native --rounds 7
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def worker(workload, blocks, threads):
    """Runs in a child: times `blocks` blocks of `workload`, prints seconds per call of each block as JSON."""
    import numpy as np

    import fastnn as fnn
    fnn.set_num_threads(threads)
    rng = np.random.default_rng(0)

    def mlp(sizes):
        fnn.manual_seed(0)
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers += [fnn.nn.Linear(a, b)] + ([fnn.nn.ReLU()] if i < len(sizes) - 2 else [])
        return fnn.nn.Sequential(*layers)

    if workload == "W2":
        model = mlp([784, 1024, 1024, 10])
        x, y = rng.standard_normal((256, 784)).astype(np.float32), rng.integers(0, 10, 256)
        loss_fn, opt = fnn.nn.CrossEntropyLoss(), fnn.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def call():
            loss_fn(model(x), y)
            model.backward_parameters(loss_fn.backward())
            opt.step()
            opt.zero_grad()
        calls = 20
    else:
        model = mlp([784, 256, 128, 10]).eval()
        x = rng.standard_normal((1, 784)).astype(np.float32)

        def call():
            model(x)
        calls = 3000
    for _ in range(calls):
        call()
    times = []
    for _ in range(blocks):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        times.append((time.perf_counter() - start) / calls)
    print(json.dumps({"times": times, "level": fnn.ops.cpu_level}))


def package_dir(build):
    """build/<x>/site/fastnn: python/fastnn's Python files with that build's libraries."""
    site = os.path.join(build, "site")
    shutil.rmtree(site, ignore_errors=True)
    shutil.copytree(os.path.join(ROOT, "python", "fastnn"), os.path.join(site, "fastnn"),
                    ignore=lambda d, names: [n for n in names if n.endswith(".so") or n == "__pycache__"])
    for name in os.listdir(build):
        if name.endswith(".so"):
            os.symlink(os.path.abspath(os.path.join(build, name)), os.path.join(site, "fastnn", name))
    return site


def run(site, workload, blocks, threads):
    env = {k: v for k, v in os.environ.items() if k not in ("FASTNN_CPU", "PYTHONPATH")}
    env.update(PYTHONPATH=site, OPENBLAS_NUM_THREADS="1")
    done = subprocess.run([sys.executable, __file__, "--worker", workload, "--blocks", str(blocks), "--threads",
                           str(threads)], env=env,
                          capture_output=True, text=True, timeout=1800, check=True)
    return json.loads(done.stdout)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dispatched", default=os.path.join(ROOT, "build", "dev"))
    parser.add_argument("--native", default=os.path.join(ROOT, "build", "native"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workloads", default="W2,W3")
    parser.add_argument("--worker")
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.blocks, args.threads)
    if not os.path.isdir(args.native):
        env = dict(os.environ, FASTNN_BUILD_DIR=args.native, FASTNN_NATIVE="ON", FASTNN_LINK="0")
        subprocess.run([os.path.join(ROOT, "tools", "dev-build")], env=env, check=True)
    sites = {"dispatched": package_dir(args.dispatched), "native": package_dir(args.native)}
    cpu = {line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip()
           for line in open("/proc/cpuinfo").read().split("\n\n")[0].splitlines() if ":" in line}
    isa = [f for f in ("avx512f", "avx512_bf16", "amx_tile", "avx2") if f in cpu.get("flags", "").split()]
    print(f"CPU: {cpu.get('model name', '?')} ({' '.join(isa) or 'no AVX2'}), {os.cpu_count()} cores; "
          f"threads {args.threads}")
    for workload, unit, scale in (("W2", "ms", 1e3), ("W3", "us", 1e6)):
        if workload not in args.workloads.split(","):
            continue
        medians = {name: [] for name in sites}  # per round: each child's fastest block
        levels = {}
        for _ in range(args.rounds):
            for name, site in sites.items():
                result = run(site, workload, args.blocks, args.threads)
                medians[name].append(min(result["times"]))
                levels[name] = result["level"]
        d, n = statistics.median(medians["dispatched"]), statistics.median(medians["native"])
        ratios = sorted(a / b for a, b in zip(medians["dispatched"], medians["native"]))
        ratio = statistics.median(ratios)
        quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
        print(f"{workload}: dispatched ({levels['dispatched']}) {d * scale:8.2f} {unit}   native {n * scale:8.2f} {unit}"
              f"   ratio {ratio:.3f} (median of {len(ratios)} rounds' ratios; quartiles {quartiles[0]:.3f}-"
              f"{quartiles[2]:.3f})   target <= 1.03: " + ("met" if ratio <= 1.03 else "MISSED"))


if __name__ == "__main__":
    main()
