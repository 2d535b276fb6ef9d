"""Batching over arrays and over user generators and the label-balanced sampler."""
import numpy as np
import pytest

import fastnn as fnn
from fastnn.data import ArrayBatches, BalancedSampler, GeneratorBatches


def arrays(n=10):
    return np.arange(n * 2, dtype=np.float32).reshape(n, 2), np.arange(n)


def test_array_batches_in_order_cover_everything():
    x, y = arrays()
    batches = list(ArrayBatches(x, y, batch_size=4, shuffle=False))
    assert [len(b[0]) for b in batches] == [4, 4, 2] and len(ArrayBatches(x, y, 4)) == 3
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y)
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), x)
    assert len(list(ArrayBatches(x, y, 4, drop_last=True))) == len(ArrayBatches(x, y, 4, drop_last=True)) == 2
    only_x = list(ArrayBatches(x, batch_size=5, shuffle=False))
    assert isinstance(only_x[0], np.ndarray) and only_x[0].shape == (5, 2)


def test_array_batches_shuffle_per_epoch_seeded_and_pairs_kept():
    x, y = arrays(50)
    loader = ArrayBatches(x, y, batch_size=8, seed=0)
    e1 = np.concatenate([b[1] for b in loader])
    e2 = np.concatenate([b[1] for b in loader])
    assert sorted(e1) == list(range(50)) and not np.array_equal(e1, e2) and not np.array_equal(e1, y)
    for xb, yb in loader:
        np.testing.assert_array_equal(xb[:, 0], 2 * yb)      # rows stay paired with their labels
    again = np.concatenate([b[1] for b in ArrayBatches(x, y, batch_size=8, seed=0)])
    np.testing.assert_array_equal(again, e1)
    fnn.manual_seed(4)
    a = np.concatenate([b[1] for b in ArrayBatches(x, y, batch_size=8)])
    fnn.manual_seed(4)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in ArrayBatches(x, y, batch_size=8)]), a)


def test_array_batches_transform_and_memmap(tmp_path):
    x, y = arrays(12)
    np.save(tmp_path / "x.npy", x)
    xm = np.load(tmp_path / "x.npy", mmap_mode="r")
    out = list(ArrayBatches(xm, y, batch_size=5, shuffle=True, seed=1, transform=lambda b: -b))
    for xb, yb in out:
        assert isinstance(xb, np.ndarray) and xb.flags.c_contiguous
        np.testing.assert_array_equal(-xb, x[yb])


def test_balanced_sampler_equalises_classes():
    labels = np.array([0] * 90 + [1] * 9 + [2] * 1)
    s = BalancedSampler(labels, seed=0)
    index = np.array(list(s))
    assert len(index) == len(s) == 270
    counts = np.bincount(labels[index])
    np.testing.assert_array_equal(counts, [90, 90, 90])
    assert len(set(index[labels[index] == 1])) == 9        # every minority sample used, each 10 times
    np.testing.assert_array_equal(np.bincount(index[labels[index] == 1])[90:99], [10] * 9)
    assert not np.array_equal(index, np.array(list(s)))     # a new draw every epoch
    np.testing.assert_array_equal(np.array(list(BalancedSampler(labels, seed=0))), index)
    small = np.array(list(BalancedSampler(labels, num_samples=30, seed=1)))
    assert len(small) == 30 and np.all(np.bincount(labels[small]) == 10)


def test_balanced_batches_through_array_batches():
    x = np.arange(100, dtype=np.float32)[:, None]
    y = np.array([0] * 95 + [1] * 5)
    loader = ArrayBatches(x, y, batch_size=19, sampler=BalancedSampler(y, seed=0))
    ys = np.concatenate([yb for _, yb in loader])
    assert len(loader) == 10 and np.bincount(ys).tolist() == [95, 95]


def chunked(n=23, sizes=(5, 1, 7, 10)):
    x, y = arrays(n)

    def make():
        start = 0
        for size in sizes:
            yield x[start:start + size], y[start:start + size]
            start += size
    return x, y, make


def test_generator_batches_rebatch_in_order():
    x, y, make = chunked()
    batches = list(GeneratorBatches(make, batch_size=4))
    assert [len(b[1]) for b in batches] == [4, 4, 4, 4, 4, 3]
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y)
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), x)
    assert [len(b[1]) for b in GeneratorBatches(make, batch_size=4, drop_last=True)] == [4] * 5
    assert len(list(GeneratorBatches(make, batch_size=4))) == 6       # re-iterable: a fresh iterator per epoch


def test_generator_batches_shuffle_buffer_is_seeded_and_complete():
    x, y, make = chunked(40, sizes=(10, 10, 10, 10))
    a = [b for b in GeneratorBatches(make, batch_size=6, shuffle_buffer=15, seed=0)]
    ys = np.concatenate([b[1] for b in a])
    assert sorted(ys) == list(range(40)) and not np.array_equal(ys, y)
    for xb, yb in a:
        np.testing.assert_array_equal(xb, x[yb])
    b = [b for b in GeneratorBatches(make, batch_size=6, shuffle_buffer=15, seed=0)]
    np.testing.assert_array_equal(np.concatenate([t[1] for t in b]), ys)
    assert all(len(t[1]) == 6 for t in a[:-1])


def test_generator_batches_of_unlabelled_chunks_and_errors():
    out = list(GeneratorBatches(lambda: iter([np.zeros((3, 2)), np.ones((3, 2))]), batch_size=4))
    assert [o.shape for o in out] == [(4, 2), (2, 2)]
    with pytest.raises(TypeError, match="callable"):
        GeneratorBatches([np.zeros(3)])
    with pytest.raises(ValueError, match="batch_size"):
        ArrayBatches(*arrays(), batch_size=0)
