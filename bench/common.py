"""Shared benchmark helpers: interleaved timing of fastnn and PyTorch in the same run."""
import statistics
import time


def interleaved(candidates, steps, repeats):
    """candidates: {name: fn}. Runs each fn `steps` times per block, alternating names block by block,
    `repeats` blocks each; returns {name: median seconds per call}. Interleaving spreads machine noise
    (other processes, frequency changes) evenly over both libraries."""
    times = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            start = time.perf_counter()
            for _ in range(steps):
                fn()
            times[name].append((time.perf_counter() - start) / steps)
    return {name: statistics.median(t) for name, t in times.items()}


def warm_up(candidates, steps):
    for fn in candidates.values():
        for _ in range(steps):
            fn()


def report(title, unit, scale, result, target=None):
    fast, torch_ = result["fastnn"] * scale, result["torch"] * scale
    ratio = result["fastnn"] / result["torch"]
    verdict = "" if target is None else (f"  target <= {target:.2f}: " + ("met" if ratio <= target else "MISSED"))
    print(f"{title:<58} fastnn {fast:9.1f} {unit}   torch {torch_:9.1f} {unit}   ratio {ratio:5.2f}{verdict}")
    return ratio
