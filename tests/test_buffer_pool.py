"""The buffer pool behind fastnn's large output arrays (cpp/bindings/buffer_pool.hpp): a freed array's buffer
serves the next array of its size (no fresh pages: a W9 training step went from 200-560 page faults to none),
live arrays never share memory, buffers are aligned and writeable, release_buffers hands them back, and
fastnn.ops.empty gives Python code the same buffers."""
import gc
import threading

import numpy as np
import pytest

import fastnn as fnn
from fastnn import ops


def _big(seed=0, n=300):
    x = np.random.default_rng(seed).standard_normal((n, 64)).astype(np.float32)
    w = np.random.default_rng(seed + 1).standard_normal((256, 64)).astype(np.float32)
    return x, w


def test_large_outputs_come_from_the_pool_and_are_recycled():
    x, w = _big()
    y = ops.linear_forward(x, w)                 # 300 x 256 float32 = 300 kB: pooled
    assert y.nbytes >= ops.buffer_pool_info()["min_bytes"]
    assert y.flags.c_contiguous and y.flags.writeable and y.ctypes.data % 64 == 0
    np.testing.assert_allclose(y, x @ w.T, rtol=1e-5, atol=1e-4)
    address = y.ctypes.data
    del y
    gc.collect()
    before = ops.buffer_pool_info()
    y2 = ops.linear_forward(x, w)
    after = ops.buffer_pool_info()
    assert after["hits"] == before["hits"] + 1 and after["misses"] == before["misses"]
    assert y2.ctypes.data == address         # the same buffer, refilled
    np.testing.assert_allclose(y2, x @ w.T, rtol=1e-5, atol=1e-4)
    y3 = ops.linear_forward(x, w)            # while y2 lives: another buffer
    assert y3.ctypes.data != y2.ctypes.data
    y2[...] = 0.0                            # writing one leaves the other alone
    np.testing.assert_allclose(y3, x @ w.T, rtol=1e-5, atol=1e-4)


def test_small_outputs_are_plain_numpy_arrays():
    x, w = _big(n=4)
    y = ops.linear_forward(x, w)             # 4 kB
    assert y.base is None and y.flags.owndata


def test_in_use_bytes_return_and_release_buffers_empties_the_cache():
    x, w = _big(3)
    start = ops.buffer_pool_info()["in_use_bytes"]
    ys = [ops.linear_forward(x, w) for _ in range(4)]
    assert ops.buffer_pool_info()["in_use_bytes"] >= start + 4 * ys[0].nbytes
    del ys
    gc.collect()
    info = ops.buffer_pool_info()
    assert info["in_use_bytes"] == start and info["cached_bytes"] >= 4 * 300 * 256 * 4
    released = ops.release_buffers()
    assert released == info["cached_bytes"]
    assert ops.buffer_pool_info()["cached_bytes"] == 0
    before = ops.buffer_pool_info()["misses"]
    ops.linear_forward(x, w)                 # nothing kept: a new buffer
    assert ops.buffer_pool_info()["misses"] == before + 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64, "float32"])
def test_empty_gives_pooled_or_plain_arrays_of_the_dtype(dtype):
    a = ops.empty((512, 300), dtype)
    assert a.shape == (512, 300) and a.dtype == np.dtype(dtype) and a.flags.c_contiguous and a.flags.writeable
    assert a.base is not None                # large: a pool buffer
    a[...] = 1.5
    assert float(a.sum()) == 1.5 * a.size
    b = ops.empty((3,), dtype)
    assert b.shape == (3,) and b.base is None
    assert ops.empty((0, 7), dtype).shape == (0, 7)


def test_empty_bad_arguments():
    with pytest.raises(TypeError, match="float32 or float64"):
        ops.empty((4,), np.int64)
    with pytest.raises(ValueError, match="negative"):
        ops.empty((4, -1), np.float32)


def test_threads_allocating_and_freeing_never_share_a_live_buffer():
    x, w = _big(5)
    want = x @ w.T
    errors = []

    def work(k):
        try:
            for _ in range(30):
                a = ops.linear_forward(x, w)
                b = ops.empty(a.shape, a.dtype)
                b[...] = k
                np.testing.assert_allclose(a, want, rtol=1e-5, atol=1e-4)
                assert (b == k).all()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_a_training_step_reuses_buffers_after_the_first():
    fnn.manual_seed(0)
    model = fnn.nn.Sequential(fnn.nn.Linear(64, 512), fnn.nn.ReLU(), fnn.nn.Linear(512, 10))
    x = np.random.default_rng(0).standard_normal((256, 64)).astype(np.float32)
    y = np.random.default_rng(1).integers(0, 10, 256)
    loss_fn, opt = fnn.nn.CrossEntropyLoss(), fnn.optim.SGD(model.parameters(), lr=0.01)

    def step():
        loss_fn(model(x), y)
        model.backward_parameters(loss_fn.backward())
        opt.step()
        opt.zero_grad()

    for _ in range(2):
        step()
    before = ops.buffer_pool_info()
    for _ in range(3):
        step()
    after = ops.buffer_pool_info()
    assert after["hits"] > before["hits"] and after["misses"] == before["misses"]
