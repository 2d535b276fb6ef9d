"""fastnn.distributed on 2 MPI ranks (mpiexec from the mpich wheel, started here as a subprocess with a timeout,
so a hang fails the test): Trainer(distributed=True) and a DistributedOptimizer loop give the single-process
weights and history (float64, 1e-9) for an MLP and a two-input Graph, with uneven last batches; a rank that
raises ends the run at once with a clear error; models that differ between ranks fail at the start."""
import os
import subprocess
import sys
import time

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "mpi"))

import cases  # noqa: E402

import fastnn as fnn  # noqa: E402


# the ranks import the fastnn this process imported (the working tree, an installed one, tools/sanitize's)
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(fnn.__file__)))


def _mpiexec():
    path = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return path if os.path.exists(path) else "mpiexec"


def mpirun(script, *args, timeout=60, ranks=2, threads="1", env=None):
    """Runs tests/mpi/<script> on `ranks` ranks (OMP_NUM_THREADS=threads; None: fastnn's default, cores / local
    ranks); returns (CompletedProcess, seconds)."""
    env = dict(os.environ, PYTHONPATH=PACKAGE_PARENT, **(env or {}))
    env.pop("OMP_NUM_THREADS", None)
    if threads is not None:
        env["OMP_NUM_THREADS"] = threads
    t0 = time.perf_counter()
    proc = subprocess.run([_mpiexec(), "-n", str(ranks), sys.executable, os.path.join(HERE, "mpi", script), *args],
                          capture_output=True, text=True, timeout=timeout, env=env)
    return proc, time.perf_counter() - t0


@pytest.fixture(scope="module")
def distributed_results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mpi")
    out = folder / "results.npz"
    proc, _ = mpirun("run_cases.py", str(out), threads=None, env={"FASTNN_MPI_TEST_DIR": str(folder)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with np.load(out) as f:
        results = dict(f)
    results["folder"] = folder
    return results


@pytest.mark.parametrize("name", sorted(cases.CASES))
def test_two_ranks_equal_one_process(distributed_results, name):
    weights, history = cases.CASES[name](False)
    assert weights, name
    for k, ref in weights.items():
        got = distributed_results[f"{name}/w/{k}"]
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9, err_msg=f"{name}: {k}")
        assert np.abs(distributed_results[f"{name}/spread/{k}"]).max() <= 1e-12, f"{name}: ranks differ in {k}"
    for k, ref in history.items():
        np.testing.assert_allclose(distributed_results[f"{name}/h/{k}"], ref, rtol=0, atol=1e-9,
                                   err_msg=f"{name}: history {k}")
    assert set(k.split("/")[2] for k in distributed_results if k.startswith(f"{name}/h/")) == set(history)


def test_threads_per_rank_default_to_cores_over_local_ranks(distributed_results):
    threads, local_ranks, in_use = distributed_results["config/threads"]
    assert local_ranks == 2
    assert threads == in_use == max(1, len(os.sched_getaffinity(0)) // 2)


def test_early_stopping_and_logging_run_on_rank_0(distributed_results, tmp_path):
    _, history = cases.trainer_early_stop(False, log_dir=str(tmp_path))
    assert len(history["loss"]) == 2  # stopped after the second of 6 epochs; the comparison above checks the rest
    np.testing.assert_allclose(distributed_results["trainer_early_stop/h/loss"], history["loss"], rtol=0, atol=1e-9)
    folder = distributed_results["folder"]
    lines = (folder / "log0.csv").read_text().splitlines()
    assert len(lines) == 3 and lines[0].startswith("epoch")
    assert not (folder / "log1.csv").exists()


def test_collectives(distributed_results):
    r = distributed_results
    np.testing.assert_array_equal(r["collectives/allgather"], np.array([0, 10, 11], np.float32))
    assert r["collectives/allgather"].dtype == np.float32
    np.testing.assert_array_equal(r["collectives/allreduce_sum"], [2.0, 1.0])
    np.testing.assert_array_equal(r["collectives/allreduce_max"], [3, 1])
    np.testing.assert_array_equal(r["collectives/allreduce_mean"], [1.0])
    np.testing.assert_array_equal(r["collectives/broadcast"], [5.0, 5.0])
    message = str(r["collectives/shape_error"])
    assert "allreduce" in message and "[(2,), (3,)]" in message, message


def test_sync_batchnorm_on_one_process_is_batchnorm():
    """Outside MPI, SyncBatchNorm's own path (inputs other than 4-D) gives BatchNorm1d's outputs, gradients and
    running statistics."""
    from fastnn.distributed import SyncBatchNorm
    rng = np.random.default_rng(0)
    x, g = rng.standard_normal((5, 3, 4)), rng.standard_normal((5, 3, 4))
    ref, sync = fnn.nn.BatchNorm1d(3).double(), SyncBatchNorm(3).double()
    for m in (ref, sync):
        m.weight.data = np.array([1.5, -0.5, 2.0])
        m.bias.data = np.array([0.1, 0.2, -0.3])
    for mode in ("train", "eval"):
        getattr(ref, mode)()
        getattr(sync, mode)()
        ref.zero_grad()
        sync.zero_grad()
        np.testing.assert_allclose(sync(x), ref(x), rtol=0, atol=1e-12)
        np.testing.assert_allclose(sync.backward(g), ref.backward(g), rtol=0, atol=1e-12)
        for a, b in ((sync.weight.grad, ref.weight.grad), (sync.bias.grad, ref.bias.grad),
                     (sync.running_mean, ref.running_mean), (sync.running_var, ref.running_var)):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="SyncBatchNorm.*channels"):
        sync(np.zeros((2, 4, 3)))
    with pytest.raises(ValueError, match="SyncBatchNorm: loss_reduction must be"):
        SyncBatchNorm(3, loss_reduction="max")


def test_training_moved_the_weights():
    """The comparison above is not between untouched initial weights."""
    x, y = cases.data()
    before = cases.weights(cases.mlp(1))
    after, history = cases.trainer_mlp(False)
    assert max(np.abs(after[k] - before[k]).max() for k in before) > 1e-2
    assert len(history["loss"]) == 4 and "val_loss" in history and "val_accuracy" in history


def test_a_rank_that_raises_aborts_every_rank():
    proc, seconds = mpirun("run_faults.py", "raise", timeout=60)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "rank 1 of 2" in text and "ValueError: rank 1 fails in epoch 2" in text, text
    assert "MPI Abort" in text, text


def test_models_differing_between_ranks_fail_at_start():
    proc, _ = mpirun("run_faults.py", "shapes", timeout=60)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "the model differs between ranks" in text and "(8, 6)" in text and "(9, 6)" in text, text
    assert "started training" not in text


def test_ranks_with_different_numbers_of_batches_fail_at_start():
    proc, _ = mpirun("run_faults.py", "batches", timeout=60)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "different numbers of batches per epoch (rank 0: 4, rank 1: 3)" in text, text
    assert "finished training" not in text


def test_import_fastnn_does_not_import_mpi4py():
    code = ("import sys, fastnn, fastnn.distributed; assert 'mpi4py' not in sys.modules, 'mpi4py imported'; "
            "info = fastnn.show_config(mode='dicts')['distributed']; assert 'not initialised' in info['state'], info; "
            "assert 'mpi4py' not in sys.modules, 'show_config imported mpi4py'")
    env = dict(os.environ, PYTHONPATH=PACKAGE_PARENT)
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


def test_distributed_optimizer_checks_its_arguments():
    from fastnn import distributed as dist
    model = cases.mlp(0)
    opt = fnn.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="bucket_mb"):
        dist.DistributedOptimizer(opt, bucket_mb=0)
    with pytest.raises(ValueError, match="op must be"):
        dist.DistributedOptimizer(opt, op="max")
    with pytest.raises(TypeError, match="expected a fastnn optimizer"):
        dist.DistributedOptimizer(model)


def test_bucket_reductions_start_while_backward_runs(distributed_results):
    """Order of events on rank 0 (tests/mpi/cases.py overlap_events: one bucket per parameter of the shared-layer
    model, whose layers are declared in another order than they run). Step 1 follows reverse registration order:
    bucket 0 holds the first layer's bias, so nothing can start before that layer's backward. From step 2 the
    buckets follow rank 0's observed readiness: the head's and the shared layer's four buckets are reducing
    before the first layer's backward runs; its two buckets start after it; every wait comes after backward."""
    events = [str(e) for e in distributed_results["overlap/events"]]
    cut = events.index("step:")
    step1, step2 = events[:cut], events[cut + 1:-1]
    assert events[-1] == "step:"
    first = step1.index("backward:first")
    assert [e for e in step1[:first] if e.startswith("start")] == []
    first = step2.index("backward:first")
    assert step2[:first] == ["start:0", "start:1", "start:2", "start:3"]
    assert step2[first + 1:] == ["start:4", "start:5"] + [f"wait:{b}" for b in range(6)]
