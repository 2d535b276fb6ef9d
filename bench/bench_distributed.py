"""Data-parallel training throughput over MPI: the W2-size MLP (784-1024-1024-10, float32, SGD with momentum,
cross-entropy) at a large global batch, on R ranks x T kernel threads, each rank computing its share of every
global batch and DistributedOptimizer combining the gradients (bucketed non-blocking allreduce).

    python bench/bench_distributed.py                      # 1 rank x 2 threads vs 2 ranks x 1 thread
    python bench/bench_distributed.py --configs 1x8,2x4,4x2,8x1 --batch 8192
    python bench/bench_distributed.py --overlap on,off --bucket-mb 1

Every configuration runs with and without overlap (--overlap): on, backward runs inside
DistributedOptimizer.overlap_backward and each bucket's Iallreduce starts once its gradients are final; off,
every bucket is packed and reduced in step(). Prints samples/s per configuration, its speed-up over the first,
the step time, the time per step spent waiting for MPI inside step() (the slowest rank's; with overlap the
reductions ran during backward, so less is left to wait for), all the time spent combining gradients
(packing, starting, waiting, unpacking), and the same combination timed alone, with all ranks starting
together. The W2 gradients are 7.3 MB: at the default 25 MB bucket they are one bucket, which can only start
once backward is done; --bucket-mb 1 gives several. Each configuration runs under its own
`mpiexec -n R` (the mpiexec of this Python's environment, from `pip install ".[mpi]"`).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np


def worker(args):
    import fastnn as fnn
    from fastnn import distributed as dist

    dist.init(threads=args.threads)
    rank, size = dist.rank(), dist.world_size()
    fnn.manual_seed(0)
    model = fnn.nn.Sequential(fnn.nn.Linear(784, 1024), fnn.nn.ReLU(), fnn.nn.Linear(1024, 1024), fnn.nn.ReLU(),
                              fnn.nn.Linear(1024, 10))
    dist.broadcast_parameters(model)
    opt = dist.DistributedOptimizer(fnn.optim.SGD(model.parameters(), lr=0.01, momentum=0.9),
                                    bucket_mb=args.bucket_mb, overlap=args.overlap == "on")
    loss = fnn.nn.CrossEntropyLoss()
    rng = np.random.default_rng(rank)
    share = np.array_split(np.arange(args.batch), size)[rank].size
    x = rng.standard_normal((share, 784)).astype(np.float32)
    y = rng.integers(0, 10, share)

    def step():
        opt.zero_grad()
        loss(model(x), y)
        with opt.overlap_backward(model, num_samples=share):
            model.backward(loss.backward())
        opt.step()

    for _ in range(args.warmup):
        step()
    dist.barrier()
    opt.allreduce_seconds = opt.wait_seconds = 0.0
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    dist.barrier()
    seconds = time.perf_counter() - t0
    reduce_s = float(dist.allreduce(np.array([opt.allreduce_seconds]), op="max")[0])
    wait_s = float(dist.allreduce(np.array([opt.wait_seconds]), op="max")[0])
    # the gradient combination alone, every rank arriving together (no waiting for a slower rank's backward)
    dist.barrier()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        opt.synchronize(num_samples=share)
    alone_s = float(dist.allreduce(np.array([time.perf_counter() - t0]), op="max")[0])
    if rank == 0:
        print(json.dumps({"ranks": size, "threads": fnn.get_num_threads(), "batch": args.batch,
                          "samples_per_s": args.steps * args.batch / seconds,
                          "step_ms": 1e3 * seconds / args.steps,
                          "allreduce_ms": 1e3 * reduce_s / args.steps,
                          "wait_ms": 1e3 * wait_s / args.steps,
                          "allreduce_alone_ms": 1e3 * alone_s / args.steps,
                          "gradient_mb": sum(p.data.nbytes for p in model.parameters()) / 2**20}), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", default="1x2,2x1", help="RANKSxTHREADS, comma-separated")
    p.add_argument("--batch", type=int, default=4096, help="global batch")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3, help="runs of every configuration, interleaved")
    p.add_argument("--overlap", default="on,off", help="on, off or both (reduce while backward runs or not)")
    p.add_argument("--bucket-mb", type=float, default=25.0, help="DistributedOptimizer bucket size")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    import fastnn  # the ranks import this same fastnn
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(fastnn.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
    print(f"W2 MLP 784-1024-1024-10 float32, SGD momentum, global batch {args.batch}, {args.steps} steps, "
          f"buckets of {args.bucket_mb:g} MB; configurations interleaved over {args.rounds} rounds, medians")
    overlaps = args.overlap.split(",")
    configs = [tuple(int(v) for v in c.split("x")) + (o,) for c in args.configs.split(",") for o in overlaps]
    runs = {c: [] for c in configs}
    for _ in range(args.rounds):  # interleaved, so machine noise spreads over every configuration
        for ranks, threads, overlap in configs:
            out = subprocess.run([mpiexec if os.path.exists(mpiexec) else "mpiexec", "-n", str(ranks),
                                  sys.executable, os.path.abspath(__file__), "--worker", "--threads", str(threads),
                                  "--batch", str(args.batch), "--steps", str(args.steps), "--warmup",
                                  str(args.warmup), "--overlap", overlap, "--bucket-mb", str(args.bucket_mb)],
                                 capture_output=True, text=True, env=env, check=True).stdout
            runs[(ranks, threads, overlap)].append(json.loads(out.strip().splitlines()[-1]))
    first = None
    for ranks, threads, overlap in configs:
        r = {k: statistics.median(run[k] for run in runs[(ranks, threads, overlap)])
             for k in ("samples_per_s", "step_ms", "wait_ms", "allreduce_ms", "allreduce_alone_ms", "gradient_mb")}
        first = first or r["samples_per_s"]
        print(f"{ranks} rank(s) x {threads} thread(s), overlap {overlap:3}: {r['samples_per_s']:7.0f} samples/s "
              f"({r['samples_per_s'] / first:4.2f}x)  step {r['step_ms']:7.1f} ms; waiting in allreduce "
              f"{r['wait_ms']:6.1f} ms ({100 * r['wait_ms'] / r['step_ms']:4.1f}%), combining gradients in all "
              f"{r['allreduce_ms']:6.1f} ms (alone: {r['allreduce_alone_ms']:5.1f} ms for "
              f"{r['gradient_mb']:.1f} MB)")

if __name__ == "__main__":
    main()
