"""How long `import fastnn` takes beyond numpy (SPEC P10: at most 40 ms): fresh processes, each importing numpy
first and then timing `import fastnn`; prints the median and quartiles over --runs processes.
Run: python bench/bench_import.py [--runs 21]
"""
import argparse
import statistics
import subprocess
import sys

CODE = "import numpy, time; t = time.perf_counter(); import fastnn; print(time.perf_counter() - t)"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    times = sorted(float(subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True)
                         .stdout) * 1e3 for _ in range(args.runs))
    q = statistics.quantiles(times, n=4)
    print(f"import fastnn after numpy: median {statistics.median(times):.1f} ms (quartiles {q[0]:.1f}-{q[2]:.1f}, "
          f"{args.runs} processes; target <= 40 ms)")


if __name__ == "__main__":
    main()
