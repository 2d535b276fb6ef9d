"""Embedding and EmbeddingBag: loop oracles, finite differences, padding, lazy zero_grad, errors."""
import numpy as np
import pytest

import fastnn as fnn
from harness import numeric_gradient, rng


def bag_oracle(weight, bags, mode, padding_idx=None, weights=None):
    out = np.zeros((len(bags), weight.shape[1]))
    for b, bag in enumerate(bags):
        rows = [(weight[i] * (1.0 if weights is None else weights[b][k])) for k, i in enumerate(bag)
                if i != padding_idx]
        if rows:
            out[b] = np.sum(rows, axis=0) / (len(rows) if mode == "mean" else 1)
    return out


def test_embedding_lookup_and_gradient_with_repeats():
    fnn.manual_seed(0)
    emb = fnn.nn.Embedding(7, 3)
    x = np.array([[1, 4, 1], [6, 1, 0]])
    y = emb(x)
    assert y.shape == (2, 3, 3) and y.dtype == np.float32
    np.testing.assert_array_equal(y[0, 1], emb.weight.data[4])
    g = rng().standard_normal(y.shape).astype(np.float32)
    emb.zero_grad()
    assert emb.backward(g) is None
    expected = np.zeros((7, 3))
    for pos, i in np.ndenumerate(x):
        expected[i] += g[pos]
    np.testing.assert_allclose(emb.weight.grad, expected, rtol=1e-6)
    emb(x)
    emb.backward_parameters(g)  # accumulates
    np.testing.assert_allclose(emb.weight.grad, 2 * expected, rtol=1e-6)


def test_embedding_padding_idx_row_zero_and_no_gradient():
    fnn.manual_seed(0)
    emb = fnn.nn.Embedding(5, 2, padding_idx=-1)
    assert emb.padding_idx == 4 and np.all(emb.weight.data[4] == 0)
    assert repr(emb) == "Embedding(5, 2, padding_idx=4)"
    emb.zero_grad()
    emb(np.array([4, 2, 4]))
    emb.backward(np.ones((3, 2), np.float32))
    np.testing.assert_array_equal(emb.weight.grad[4], 0)
    np.testing.assert_array_equal(emb.weight.grad[2], 1)


def test_embedding_from_pretrained_frozen():
    table = rng().standard_normal((4, 3))
    emb = fnn.nn.Embedding.from_pretrained(table)
    assert emb.weight.dtype == np.float64 and not emb.weight.requires_grad
    np.testing.assert_array_equal(emb(np.array([3, 0])), table[[3, 0]])
    emb.weight.grad[...] = 7
    emb.backward(np.ones((2, 3)))
    assert np.all(emb.weight.grad == 7)


@pytest.mark.parametrize("mode", ["sum", "mean"])
def test_embedding_bag_2d_and_offsets_match_oracle(mode):
    fnn.manual_seed(0)
    bag = fnn.nn.EmbeddingBag(10, 4, mode=mode, padding_idx=0).double()
    x2 = np.array([[1, 2, 0], [3, 3, 9]])
    np.testing.assert_allclose(bag(x2), bag_oracle(bag.weight.data, x2.tolist(), mode, 0), rtol=1e-12)
    flat, offsets = np.array([5, 1, 1, 0, 7, 2]), np.array([0, 3, 3, 4])  # bags: [5 1 1], [], [0], [7 2]
    bags = [[5, 1, 1], [], [0], [7, 2]]
    out = bag(flat, offsets)
    np.testing.assert_allclose(out, bag_oracle(bag.weight.data, bags, mode, 0), rtol=1e-12)
    assert np.all(out[1] == 0) and np.all(out[2] == 0)  # empty bag; bag of padding only


def test_embedding_bag_per_sample_weights_and_gradients():
    fnn.manual_seed(0)
    bag = fnn.nn.EmbeddingBag(6, 3, mode="sum").double()
    x = np.array([[1, 2, 2], [5, 0, 1]])
    w = rng(1).standard_normal(x.shape)
    out = bag(x, per_sample_weights=w)
    np.testing.assert_allclose(out, bag_oracle(bag.weight.data, x.tolist(), "sum", weights=w.tolist()),
                               rtol=1e-12)
    r = rng(2).standard_normal(out.shape)
    bag.zero_grad()
    bag(x, per_sample_weights=w)
    bag.backward(r)

    def objective():
        return float(np.sum(r * bag(x, per_sample_weights=w)))

    np.testing.assert_allclose(bag.weight.grad, numeric_gradient(objective, bag.weight.data), rtol=1e-7,
                               atol=1e-9)
    np.testing.assert_allclose(bag.grad_per_sample_weights, numeric_gradient(objective, w), rtol=1e-7, atol=1e-9)


def test_embedding_bag_mean_gradient_finite_differences():
    fnn.manual_seed(0)
    bag = fnn.nn.EmbeddingBag(6, 2, mode="mean", padding_idx=3).double()
    flat, offsets = np.array([1, 3, 2, 2, 4, 5]), np.array([0, 2, 5])
    r = rng(3).standard_normal((3, 2))
    bag.zero_grad()
    bag(flat, offsets)
    bag.backward(r)
    numeric = numeric_gradient(lambda: float(np.sum(r * bag(flat, offsets))), bag.weight.data)
    np.testing.assert_allclose(bag.weight.grad, numeric, rtol=1e-7, atol=1e-9)
    assert np.all(bag.weight.grad[3] == 0)


def test_embedding_bad_input():
    emb = fnn.nn.Embedding(10, 3)
    with pytest.raises(TypeError, match=r"Embedding\(10, 3\).*integer.*float64.*\(2,\)"):
        emb(np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"Embedding\(10, 3\): index 10 out of range \[0, 10\).*\(2, 2\)"):
        emb(np.array([[1, 10], [0, 2]]))
    with pytest.raises(ValueError, match=r"Embedding\(10, 3\): index -1"):
        emb(np.array([-1]))
    with pytest.raises(ValueError, match="padding_idx"):
        fnn.nn.Embedding(10, 3, padding_idx=10)
    bag = fnn.nn.EmbeddingBag(10, 3)
    with pytest.raises(ValueError, match=r"EmbeddingBag\(10, 3, mode='mean'\).*needs offsets"):
        bag(np.array([1, 2]))
    with pytest.raises(ValueError, match="offsets must start at 0"):
        bag(np.array([1, 2]), np.array([1]))
    with pytest.raises(ValueError, match="only supported with mode='sum'"):
        bag(np.array([[1, 2]]), per_sample_weights=np.ones((1, 2)))
    with pytest.raises(ValueError, match="mode"):
        fnn.nn.EmbeddingBag(10, 3, mode="max")


class TokenClassifier(fnn.nn.Module):
    """Token ids (N, T) -> Embedding -> GRU (batch first) -> last state -> Linear."""

    def __init__(self, vocab, dim, hidden, classes):
        super().__init__()
        self.embed = fnn.nn.Embedding(vocab, dim, padding_idx=0)
        self.rnn = fnn.nn.GRU(dim, hidden, batch_first=True)
        self.head = fnn.nn.Linear(hidden, classes)

    def forward(self, tokens):
        _, h_n = self.rnn(self.embed(tokens))
        return self.head(h_n[-1])

    def backward_parameters(self, g):
        self.embed.backward(self.rnn.backward(None, self.head.backward(g)[None]))


def test_embedding_gru_classifier_trains_with_trainer():
    r = rng(4)
    tokens = r.integers(1, 12, size=(500, 7))
    tokens[r.random(tokens.shape) < 0.2] = 0  # padding
    y = (tokens == 5).any(axis=1).astype(np.int64)  # does token 5 occur anywhere?
    fnn.manual_seed(0)
    model = TokenClassifier(12, 8, 16, 2)
    trainer = fnn.Trainer(model, loss=fnn.nn.CrossEntropyLoss(), optimizer=fnn.optim.Adam(model.parameters(),
                                                                                           lr=0.02))
    trainer.fit(tokens[:400], y[:400], epochs=20, batch_size=25, verbose=0)
    assert np.mean(np.argmax(trainer.predict(tokens[400:]), 1) == y[400:]) >= 0.95
    assert np.all(model.embed.weight.data[0] == 0)  # the padding row never moves


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scatter_add_rows_matches_numpy_and_threads_do_not_change_bits(dtype):
    r = rng(30)
    index = r.integers(0, 300, 5000)  # many repeats per row
    rows = r.standard_normal((5000, 24)).astype(dtype)
    start = r.standard_normal((300, 24)).astype(dtype)
    want = start.copy()
    np.add.at(want, index, rows)  # the same additions in the same (k) order
    before = fnn.get_num_threads()
    seen = set()
    try:
        for threads in (1, 2, 3):
            fnn.set_num_threads(threads)
            grad = start.copy()
            fnn.ops.scatter_add_rows(grad, index, rows)
            seen.add(grad.tobytes())
    finally:
        fnn.set_num_threads(before)
    assert len(seen) == 1
    np.testing.assert_array_equal(grad, want)
    # Gathered and scaled: dst[d[k]] += a[k]·src[s[k]], against the same sums done row by row in k order.
    src_index, scale = r.integers(0, 5000, 5000), r.standard_normal(5000).astype(dtype)
    grad = start.copy()
    fnn.ops.scatter_add_rows(grad, index, rows, src_index, scale)
    want = start.copy()
    for k in range(5000):
        want[index[k]] += scale[k] * rows[src_index[k]]
    tol = 1e-5 if dtype == np.float32 else 1e-13  # C++ may fuse the multiply-add (one rounding, not two)
    np.testing.assert_allclose(grad, want, rtol=tol, atol=tol)


def test_scatter_add_rows_rejects_bad_indices_without_writing():
    grad = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match=r"dst_index must be in \[0, 4\), got -1..4"):
        fnn.ops.scatter_add_rows(grad, np.array([2, -1, 4]), np.ones((3, 3), np.float32))
    with pytest.raises(ValueError, match=r"src_index must be in \[0, 2\), got 0..2"):
        fnn.ops.scatter_add_rows(grad, np.array([1, 3]), np.ones((2, 3), np.float32), np.array([0, 2]))
    with pytest.raises(ValueError, match="one row per entry"):
        fnn.ops.scatter_add_rows(grad, np.array([1]), np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match="scale"):
        fnn.ops.scatter_add_rows(grad, np.array([1]), np.ones((1, 3), np.float32), None, np.ones(2, np.float32))
    with pytest.raises(TypeError, match="int64"):
        fnn.ops.scatter_add_rows(grad, np.array([1], np.int32), np.ones((1, 3), np.float32))
    fnn.ops.scatter_add_rows(grad, np.zeros(0, np.int64), np.zeros((0, 3), np.float32))
    assert not grad.any()
