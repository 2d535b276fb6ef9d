"""Runtime CPU dispatch: the kernel library of each CPU level this machine supports gives the default level's
results to float32 tolerance and passes the kernel tests; the level chosen at import is the highest the CPU
supports (FASTNN_CPU caps it); no library holds code for a higher level than its own.
Each level runs in a child process: a process opens one kernel library, once, at import."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import fastnn as fnn
from fastnn import _loader

HERE = os.path.dirname(os.path.abspath(__file__))
TIMEOUT = 900  # seconds, per child; generous for a loaded 2-core machine
BUILT = _loader.build["levels"]
SUPPORTED = _loader.supported_levels()
# The levels to test: every one built that this CPU can run (an x86-64 build has all three).
LEVELS = [level for level in _loader.LEVELS if level in BUILT and level in SUPPORTED]
DEFAULT = LEVELS[-1] if LEVELS else None
# The other levels' kernel tests run in child processes; this run's own level runs them in the main run.
OTHER_LEVELS = [level for level in LEVELS if level != fnn.ops.cpu_level]
dispatched = pytest.mark.skipif(bool(_loader.build["one_library"]),
                                reason="FASTNN_NATIVE=ON build: one library, no levels to dispatch to")

# The test files that exercise kernels against NumPy oracles (bit-identity over thread counts included).
KERNEL_TESTS = ["test_linear.py", "test_activations.py", "test_conv.py", "test_pooling.py", "test_normalization.py",
                "test_losses.py", "test_optim.py", "test_embedding.py", "test_recurrent.py", "test_inference_plan.py",
                "test_attention.py", "test_interaction.py", "test_center_loss.py", "test_dropout_flatten.py",
                "test_lbfgs.py", "test_functional_kernels.py", "test_sdpa.py", "test_train_step.py",
                "test_bf16.py", "test_linear_activation.py", "test_bn_relu_fusion.py"]


def _run(args, level=None, **kwargs):
    env = dict(os.environ)
    env.pop("FASTNN_CPU", None)
    if level is not None:
        env["FASTNN_CPU"] = level
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)  # the same fastnn as this process
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=TIMEOUT,
                          **kwargs)


def test_every_level_this_cpu_supports_is_built():
    """Default builds have every level; a developer's FASTNN_LEVELS build skips this test and names the gap."""
    missing = [lv for lv in _loader.LEVELS if lv in SUPPORTED and lv not in BUILT and not _loader.build["one_library"]]
    if missing and _loader.build["levels_requested"]:
        pytest.skip(f"FASTNN_LEVELS build without level(s) {', '.join(missing)}: their tests do not run")
    assert not missing


@dispatched
def test_import_opens_the_highest_level_the_cpu_supports():
    requested = os.environ.get("FASTNN_CPU", "").strip().lower()
    if not requested:
        assert fnn.ops.cpu_level == DEFAULT
    assert fnn.ops.runtime_info()["level"] == fnn.ops.cpu_level
    assert SUPPORTED[0] == "baseline" and list(SUPPORTED) == [lv for lv in _loader.LEVELS if lv in SUPPORTED]


def test_choose_level():
    both = ("baseline", "avx2", "avx512")
    assert _loader.choose_level(both, both, "")[0] == "avx512"
    assert _loader.choose_level(both, ("baseline", "avx2"), "")[0] == "avx2"
    assert _loader.choose_level(both, both, "avx2") == ("avx2", "FASTNN_CPU=avx2")
    assert _loader.choose_level(both, both, "baseline")[0] == "baseline"
    # FASTNN_CPU caps the level; it never raises it above what the CPU or the build has.
    assert _loader.choose_level(both, ("baseline", "avx2"), "avx512") == ("avx2", "FASTNN_CPU=avx512 (capped to avx2)")
    assert _loader.choose_level(("baseline", "avx2"), both, "")[0] == "avx2"
    assert _loader.choose_level(both + ("native",), both, "native")[0] == "native"
    with pytest.raises(ValueError, match="FASTNN_CPU='avx3': expected one of baseline, avx2, avx512"):
        _loader.choose_level(both, both, "avx3")
    with pytest.raises(ImportError, match="no native library"):
        _loader.choose_level(both, both, "native")
    with pytest.raises(ImportError, match="no kernel library this CPU can run"):
        _loader.choose_level(("avx512",), ("baseline", "avx2"), "")


@pytest.mark.skipif(not os.path.exists("/proc/cpuinfo") or _loader.build["architecture"] not in ("x86_64", "AMD64"),
                    reason="compares CPUID with Linux's x86 /proc/cpuinfo")
def test_cpu_features_agree_with_the_kernel():
    with open("/proc/cpuinfo") as cpuinfo:
        flags = next(set(line.split(":", 1)[1].split()) for line in cpuinfo if line.startswith("flags"))
    linux_name = {"sse3": "pni", "lzcnt": "abm"}
    checked = ["sse2", "sse3", "ssse3", "sse4_1", "sse4_2", "popcnt", "cx16", "lahf_lm", "movbe", "lzcnt", "bmi1",
               "bmi2", "avx", "f16c", "fma", "avx2", "avx512f", "avx512dq", "avx512cd", "avx512bw", "avx512vl",
               "avx512_vnni", "avx512_bf16", "avx512_fp16"]
    ours = set(fnn.ops.cpu_features())
    for name in checked:
        assert (name in ours) == (linux_name.get(name, name) in flags), name
    assert ("avx2" in SUPPORTED) == all(n in ours for n in ("avx2", "fma", "bmi2", "f16c", "movbe", "lzcnt"))
    assert ("avx512" in SUPPORTED) == ("avx2" in SUPPORTED and
                                       all(n in ours for n in ("avx512f", "avx512bw", "avx512dq", "avx512vl")))


@dispatched
@pytest.mark.parametrize("level", LEVELS)
def test_fastnn_cpu_selects_the_level(level):
    code = "import fastnn as f; print(f.ops.cpu_level, f.ops.runtime_info()['level'], f.ops.runtime_info()['eigen_simd'])"
    done = _run(["-c", code], level=level)
    assert done.returncode == 0, done.stderr
    chosen, running, simd = done.stdout.split(maxsplit=2)
    assert chosen == running == level
    assert ("avx2" in simd.split()) == (level != "baseline")
    assert ("avx512f" in simd.split()) == (level == "avx512")


def test_unknown_fastnn_cpu_is_a_clear_error():
    done = _run(["-c", "import fastnn"], level="avx3")
    assert done.returncode != 0
    assert "FASTNN_CPU='avx3': expected one of baseline, avx2, avx512" in done.stderr


@dispatched
def test_every_level_gives_the_default_levels_results(tmp_path):
    """Seeded results of every kind of kernel (tests/level_probe.py), each level against the default one:
    equal to float32 tolerance (the levels sum in different orders: SIMD widths, FMA or not)."""
    results = {}
    for level in LEVELS:
        path = str(tmp_path / f"{level}.npz")
        done = _run([os.path.join(HERE, "level_probe.py"), path], level=level)
        assert done.returncode == 0, done.stderr
        results[level] = dict(np.load(path))
        assert str(results[level].pop("level")) == level
    want = results[DEFAULT]
    for level in LEVELS:
        assert results[level].keys() == want.keys()
        for key, expected in want.items():
            scale = max(1.0, float(np.abs(expected).max()))
            tol = 1e-12 if expected.dtype == np.float64 and key.endswith("f64") else 1e-5
            np.testing.assert_allclose(results[level][key], expected, rtol=0, atol=tol * scale,
                                       err_msg=f"{key} at level {level}")


@dispatched
@pytest.mark.parametrize("level", OTHER_LEVELS)
def test_kernel_tests_pass_at_every_level(level):
    """The kernel test files, once per level: here the levels other than this run's own."""
    files = [os.path.join(HERE, name) for name in KERNEL_TESTS]
    done = _run(["-m", "pytest", "-q", "-p", "no:cacheprovider", *files], level=level, cwd=HERE)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout.splitlines()[-1]


def _library(level):
    return os.path.join(os.path.dirname(fnn.__file__), f"libfastnn_kernels_{level}.so")


@dispatched
@pytest.mark.skipif(shutil.which("nm") is None, reason="needs binutils' nm")
@pytest.mark.parametrize("level", BUILT)
def test_kernel_libraries_export_only_fastnn_entry_points(level):
    done = subprocess.run(["nm", "-D", "--defined-only", _library(level)], capture_output=True, text=True,
                          timeout=120, check=True)
    names = [line.split()[-1] for line in done.stdout.splitlines() if line.strip()]
    assert names and all(name.startswith("_ZN6fastnn") for name in names), [n for n in names if "fastnn" not in n]


@dispatched
@pytest.mark.skipif(shutil.which("objdump") is None or _loader.build["architecture"] not in ("x86_64", "AMD64"),
                    reason="needs binutils' objdump and an x86-64 build")
def test_no_library_holds_code_above_its_level():
    """The ODR trap, checked on the machine code: the bindings, the loader and the baseline library use no
    AVX register at all, the avx2 library no AVX-512 register (a template instantiation compiled for a higher
    level that the linker kept in a lower level's library would show here)."""
    import fastnn._core
    import fastnn._dispatch

    def registers(path):
        done = subprocess.run(["objdump", "-d", "--no-show-raw-insn", path], capture_output=True, text=True,
                              timeout=600, check=True)
        text = done.stdout
        return {"ymm": "%ymm" in text, "zmm": "%zmm" in text or "%k1" in text}

    for path in (fastnn._core.__file__, fastnn._dispatch.__file__) + ((_library("baseline"),) if "baseline" in BUILT
                                                                       else ()):
        assert registers(path) == {"ymm": False, "zmm": False}, path
    if "avx2" in BUILT:
        assert registers(_library("avx2")) == {"ymm": True, "zmm": False}
    if "avx512" in BUILT:
        assert registers(_library("avx512"))["zmm"]
