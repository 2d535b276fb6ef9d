"""fnn.show_config(): how this fastnn was built and how it runs on this machine (like numpy.show_config())."""
import os
import platform
import sys


def _threads_note(runtime):
    notes = []
    if runtime["fork_serial"]:
        notes.append("forked child whose parent's OpenMP threads could not be released before the fork: kernels "
                     "called from the forking thread run on one thread")
    elif runtime["fork_child"]:
        notes.append("forked child: it started its own OpenMP threads")
    if runtime["contended_regions"]:
        left = runtime["backoff_left_s"]
        notes.append(f"{runtime['contended_regions']} parallel regions waited for a thread another process (or thread "
                     f"pool) had taken; {runtime['yielded_regions']} regions ran on one thread after them"
                     + (f" ({left:.2f} s of that back-off left)" if left > 0 else ""))
    return "; ".join(notes)


def _distributed():
    """fastnn.distributed's ranks and threads per rank, once it was initialised (never imports MPI itself)."""
    dist = sys.modules.get("fastnn.distributed")
    info = dist.config_info() if dist is not None else None
    return info or {"state": "not initialised (fastnn.distributed.init() under mpiexec)"}


def _bf16_note():
    """How fnn.autocast("bfloat16") runs its GEMMs here (kernels/bf16_gemm.hpp)."""
    from . import amp, ops
    if amp.dot_products():
        return "AVX512_BF16 dot products (vdpbf16ps)"
    why = ("FASTNN_BF16_DOT=0" if ops.bf16_dot_supported() else
           "this CPU has no AVX512_BF16" if ops.cpu_level == "avx512" else f"kernel level {ops.cpu_level}")
    return f"fallback: inputs rounded to bf16, float32 GEMM ({why})"


def config():
    import numpy

    from . import __version__, ops
    runtime, build = ops.runtime_info(), ops.build
    omp_env = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "FASTNN_CPU") if k in os.environ}
    return {
        "fastnn": {"version": __version__, "location": os.path.dirname(os.path.abspath(__file__))},
        "python": {"version": platform.python_version(), "numpy": numpy.__version__},
        "build": {"compiler": build["compiler"], "flags": build["flags"],
                  "levels": {level: build["level_flags"][level] for level in build["levels"]},
                  "layout": ("one library for the building machine (FASTNN_NATIVE=ON)" if build["one_library"]
                             else "one kernel library per CPU level, chosen at import"),
                  "sanitizers": build["sanitize"] or "none"},
        "cpu": {"architecture": build["architecture"], "features": list(ops.cpu_features()),
                "levels supported": list(ops.supported_levels())},
        "kernels": {"level": ops.cpu_level, "chosen by": ops.cpu_level_chosen_by, "library": runtime["library"],
                    "simd": runtime["eigen_simd"], "eigen": runtime["eigen"],
                    "bf16 autocast": _bf16_note()},
        "openmp": {"runtime": os.path.realpath(runtime["openmp_library"]) if runtime["openmp_library"] else "?",
                   "version": runtime["openmp_version"]},
        "threads": {"count": ops.get_num_threads(), "processors": runtime["processors"],
                    "environment": omp_env, "note": _threads_note(runtime)},
        "distributed": _distributed(),
    }


def _text(value):
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value) or "none"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "none"
    return str(value)


def show_config(mode="stdout"):
    """Print how fastnn was built and how it runs on this machine, like :func:`numpy.show_config`.

    The version; the compiler and flags; the CPU levels built; the CPU features found; the kernel level in use
    and why (``FASTNN_CPU`` caps it); the OpenMP runtime and its path; the thread count and, in a forked child,
    whether it kept its threads. Paste it into bug reports.

    Parameters
    ----------
    mode : {"stdout", "dicts"}, default "stdout"
        Print, or return the same information as nested dicts.

    Returns
    -------
    dict or None
        The nested dicts with ``mode="dicts"``; None otherwise.

    Raises
    ------
    ValueError
        For another mode.

    Examples
    --------
    >>> import fastnn as fnn
    >>> info = fnn.show_config(mode="dicts")
    >>> list(info)
    ['fastnn', 'python', 'build', 'cpu', 'kernels', 'openmp', 'threads', 'distributed']
    >>> info["fastnn"]["version"] == fnn.__version__
    True
    """
    info = config()
    if mode == "dicts":
        return info
    if mode != "stdout":
        raise ValueError(f"show_config: mode must be 'stdout' or 'dicts', got {mode!r}")
    for section, items in info.items():
        print(f"{section}:")
        for key, value in items.items():
            if key == "levels" and isinstance(value, dict):
                value = ", ".join(f"{level} ({flags or 'compiler defaults'})" for level, flags in value.items())
            if key == "note" and not value:
                continue
            print(f"  {key}: {_text(value)}")
    return None
