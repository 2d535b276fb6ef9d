"""fastnn in child processes: os.fork() and multiprocessing's "fork" after the parent ran kernels on two threads
(GNU libgomp alone would leave such a child stuck in its first parallel region), and "spawn"/"forkserver".
Every child computes the same forward as the parent, on its own threads, and must answer within a timeout:
a hang fails the test instead of stalling the suite."""
import multiprocessing
import os
import pickle
import re
import select
import signal
import time

import numpy as np
import pytest

import fastnn as fnn

# Python >= 3.12 warns about fork() in a process with threads (OpenMP's workers are threads): that is the
# situation under test.
pytestmark = pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")

TIMEOUT = 120  # seconds; a child that works answers in well under one, even on a loaded machine


def _model_and_input():
    """A forward large enough for kernels to run on several threads (every GEMM is split over threads)."""
    fnn.manual_seed(3)
    model = fnn.nn.Sequential(fnn.nn.Linear(256, 512), fnn.nn.ReLU(), fnn.nn.Linear(512, 384))
    x = np.random.default_rng(4).standard_normal((64, 256)).astype(np.float32)
    return model, x


def _child_report():
    """What a child sends back: its forward, its thread count, what the runtime saw and show_config's note."""
    model, x = _model_and_input()
    y = model(x)
    return {"y": y, "threads": fnn.get_num_threads(), "runtime": fnn.ops.runtime_info(),
            "note": fnn.show_config(mode="dicts")["threads"]["note"]}


def _child_report_into(queue):  # multiprocessing target (module level: spawn children import it)
    fnn.set_num_threads(2)
    queue.put(_child_report())


@pytest.fixture
def two_threads():
    before = fnn.get_num_threads()
    fnn.set_num_threads(2)
    yield
    fnn.set_num_threads(before)


def _threaded_forward_in_parent():
    model, x = _model_and_input()
    fnn.ops._simulate_contention(False)  # no back-off to one thread left from earlier work on a busy machine
    before = fnn.ops.runtime_info()["parallel_regions"]
    y = model(x)
    assert fnn.ops.runtime_info()["parallel_regions"] > before  # the parent really ran threads
    return y


def _fork_and_collect(work):
    """os.fork(); the child runs work() and pickles its result back through a pipe. Returns the result, or
    fails the test if the child does not answer within TIMEOUT (and kills it)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        status = 1
        try:
            os.close(read_end)
            with os.fdopen(write_end, "wb") as out:
                pickle.dump(work(), out)
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    chunks, deadline = [], time.monotonic() + TIMEOUT
    with os.fdopen(read_end, "rb") as inp:
        while True:
            ready, _, _ = select.select([inp], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail(f"the forked child did not answer within {TIMEOUT} s (hung)")
            chunk = os.read(inp.fileno(), 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child failed (wait status {status})"
    return pickle.loads(b"".join(chunks))


def _assert_same_forward_on_threads(report, expected, threads):
    np.testing.assert_array_equal(report["y"], expected)  # bit for bit: results do not depend on threads
    assert report["threads"] == threads
    assert report["runtime"]["fork_serial"] is False
    assert report["runtime"]["parallel_regions"] > 0 and report["runtime"]["last_team_size"] == threads


def test_os_fork_after_threaded_forward(two_threads):
    expected = _threaded_forward_in_parent()
    report = _fork_and_collect(_child_report)
    assert report["runtime"]["fork_child"] is True
    assert report["note"].startswith("forked child: it started its own OpenMP threads")
    _assert_same_forward_on_threads(report, expected, 2)
    # The parent's own team was released for the fork; its next region builds a new one.
    np.testing.assert_array_equal(_threaded_forward_in_parent(), expected)


def test_os_fork_without_threads_in_parent(two_threads):
    fnn.set_num_threads(1)
    model, x = _model_and_input()
    expected = model(x)
    fnn.set_num_threads(2)
    report = _fork_and_collect(_child_report)
    _assert_same_forward_on_threads(report, expected, 2)


def test_fork_of_a_fork(two_threads):
    expected = _threaded_forward_in_parent()

    def child_then_grandchild():
        mine = _child_report()
        return mine, _fork_and_collect(_child_report)

    mine, grandchild = _fork_and_collect(child_then_grandchild)
    _assert_same_forward_on_threads(mine, expected, 2)
    _assert_same_forward_on_threads(grandchild, expected, 2)


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_multiprocessing_child_after_threaded_forward(two_threads, method):
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"start method {method!r} does not exist on this platform")
    expected = _threaded_forward_in_parent()
    ctx = multiprocessing.get_context(method)
    queue = ctx.Queue()
    child = ctx.Process(target=_child_report_into, args=(queue,))
    child.start()
    try:
        report = queue.get(timeout=TIMEOUT)
    except Exception:  # queue.Empty: the child hung (or died before answering)
        child.kill()
        child.join()
        pytest.fail(f"the {method!r} child did not answer within {TIMEOUT} s (exit code {child.exitcode})")
    child.join(TIMEOUT)
    assert child.exitcode == 0
    _assert_same_forward_on_threads(report, expected, 2)
    assert report["runtime"]["fork_child"] is (method == "fork")


def test_child_runs_on_one_thread_when_the_team_cannot_be_released(two_threads):
    """The fallback for an OpenMP runtime that cannot release the forking thread's team: the child's kernels
    run on that thread alone (same results), and it says so."""
    expected = _threaded_forward_in_parent()
    fnn.ops._simulate_unreleasable_team(True)
    try:
        report = _fork_and_collect(_child_report)
    finally:
        fnn.ops._simulate_unreleasable_team(False)
    np.testing.assert_array_equal(report["y"], expected)
    assert report["threads"] == 1
    assert report["runtime"]["fork_serial"] is True
    assert report["runtime"]["parallel_regions"] == 0
    assert "run on one thread" in report["note"]
    # The parent kept its team (nothing was released) and still runs on two threads.
    np.testing.assert_array_equal(_threaded_forward_in_parent(), expected)


def test_every_parallel_region_goes_through_the_runtime():
    """The fork handling holds only for regions opened by cpp/runtime/runtime.cpp: no other C++ file may open an
    OpenMP region or set OpenMP's thread count (kernels use kernels/parallel.hpp; bindings use runtime::)."""
    cpp = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cpp")
    if not os.path.isdir(cpp):
        pytest.skip("needs the source tree")
    offenders = []
    for root, _, files in os.walk(cpp):
        for name in files:
            path = os.path.join(root, name)
            if name.endswith((".hpp", ".cpp")) and os.path.relpath(path, cpp) != os.path.join("runtime", "runtime.cpp"):
                with open(path) as f:
                    for number, line in enumerate(f, 1):
                        code = line.split("//")[0]
                        if re.search(r"#\s*pragma\s+omp\s+(parallel|for|task|sections)|\bomp_\w+\s*\(", code):
                            offenders.append(f"{os.path.relpath(path, cpp)}:{number}: {line.strip()}")
    assert not offenders, offenders
