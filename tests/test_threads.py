"""fastnn beside other threads and thread pools: two Python threads training two models at once,
threadpoolctl, which finds fastnn's OpenMP runtime and limits its threads like any other library's, and the
back-off to one thread when another process takes a core (cpp/runtime/runtime.cpp)."""
import os
import threading

import numpy as np
import pytest

import fastnn as fnn


def _model(seed):
    fnn.manual_seed(seed)
    return fnn.nn.Sequential(fnn.nn.Linear(64, 256), fnn.nn.ReLU(), fnn.nn.Linear(256, 10))


def _data(seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((128, 64)).astype(np.float32), rng.integers(0, 10, 128)


def _train(model, x, y, steps=30):
    loss_fn = fnn.nn.CrossEntropyLoss()
    opt = fnn.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(steps):
        loss_fn(model(x), y)
        model.backward_parameters(loss_fn.backward())
        opt.step()
        opt.zero_grad()
    return [p.data.copy() for p in model.parameters()]


def test_two_threads_train_two_models_like_one_at_a_time():
    data = [_data(1), _data(2)]
    alone = [_train(_model(10 + k), *data[k]) for k in range(2)]

    models = [_model(10 + k) for k in range(2)]  # initialised here: the seed is global
    results, errors = [None, None], []

    def work(k):
        try:
            results[k] = _train(models[k], *data[k])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors and all(not t.is_alive() for t in threads)
    for k in range(2):
        for got, want in zip(results[k], alone[k]):
            np.testing.assert_array_equal(got, want)


def test_threadpoolctl_sees_and_limits_fastnn():
    """Beside scikit-learn's own OpenMP runtime (its wheel vendors a libgomp of its own): threadpoolctl lists
    fastnn's and limits it."""
    import sklearn.utils._openmp_helpers  # noqa: F401  (loads scikit-learn's OpenMP runtime)
    import threadpoolctl
    library = os.path.realpath(fnn.ops.runtime_info()["openmp_library"])
    found = [lib for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "openmp"]
    assert any(os.path.realpath(lib["filepath"]) == library for lib in found), (library, found)

    before = fnn.get_num_threads()
    fnn.set_num_threads(2)
    try:
        model, (x, _) = _model(0), _data(0)
        expected = model(x)
        regions = fnn.ops.runtime_info()["parallel_regions"]
        with threadpoolctl.threadpool_limits(1, user_api="openmp"):
            assert fnn.get_num_threads() == 1
            np.testing.assert_array_equal(model(x), expected)
            assert fnn.ops.runtime_info()["parallel_regions"] == regions  # no region ran on two threads
        assert fnn.get_num_threads() == 2
    finally:
        fnn.set_num_threads(before)


def _regions():
    info = fnn.ops.runtime_info()
    return info["parallel_regions"], info["contended_regions"], info["yielded_regions"]


def test_contended_regions_back_off_to_one_thread_with_the_same_bits():
    """A region that waited long for a thread another process had taken makes the next ones run on one thread
    (simulated here: every region counts as contended, and the back-off lasts until the test ends it; a real
    busy machine may add regions of its own to the counts, so only the simulated ones are pinned down)."""
    before = fnn.get_num_threads()
    fnn.set_num_threads(2)
    try:
        model, (x, y) = _model(0), _data(0)
        for _ in range(5):  # past a new team's first regions, which are not judged
            model(x)
        fnn.ops._simulate_contention(False)  # no back-off left from earlier work
        start = _regions()
        expected = model(x)
        after = _regions()
        regions = (after[0] - start[0]) + (after[2] - start[2])  # on the team or, backing off, on one thread
        assert after[0] > start[0] and regions >= 2

        fnn.ops._simulate_contention(True)
        try:
            got = model(x)
            during = _regions()
            # the first region ran on the team and counted as contended; the rest ran on one thread
            assert during[0] - after[0] == 1 and during[1] - after[1] == 1
            assert during[2] - after[2] == regions - 1
            np.testing.assert_array_equal(got, expected)
            note = fnn.show_config(mode="dicts")["threads"]["note"]
            assert "waited for a thread another process" in note and "ran on one thread" in note
            assert fnn.ops.runtime_info()["backoff_left_s"] > 0
            # a whole training step backs off the same way and computes what it computes on the team
            trained = _train(model, x, y, steps=2)
            assert _regions()[0] == during[0]
        finally:
            fnn.ops._simulate_contention(False)

        assert fnn.ops.runtime_info()["backoff_left_s"] == 0
        reference = _model(0)
        for got_p, want_p in zip(trained, _train(reference, x, y, steps=2)):
            np.testing.assert_array_equal(got_p, want_p)
        want = reference(x)
        fnn.ops._simulate_contention(False)
        again = _regions()
        np.testing.assert_array_equal(model(x), want)
        assert _regions()[0] > again[0]  # the team is back
    finally:
        fnn.set_num_threads(before)
