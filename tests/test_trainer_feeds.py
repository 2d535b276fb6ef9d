"""Trainer with several inputs and with iterables of batches: ArrayBatches/GeneratorBatches with transforms,
generator-backed classes, one-shot iterators with steps_per_epoch, validation/evaluate/predict from
iterables, tensor-like batches, and errors."""
import numpy as np
import pytest

import fastnn as fnn
from harness import rng

F = fnn.nn.functional


def blobs(n_per_class=20, seed=0):
    r = rng(seed)
    centres = np.array([[2, 0, 0, 0], [0, 2, 0, 0], [0, 0, 2, 0]], np.float32)
    x = np.concatenate([c + 0.5 * r.standard_normal((n_per_class, 4)).astype(np.float32) for c in centres])
    y = np.repeat(np.arange(3), n_per_class)
    return x, y


def mlp():
    return fnn.nn.Sequential(fnn.nn.Linear(4, 16), fnn.nn.ReLU(), fnn.nn.Linear(16, 3))


class TwoInputs(fnn.nn.Module):
    """Dense features and integer ids; records the batches it is given."""

    def __init__(self):
        super().__init__()
        self.dense = fnn.nn.Linear(4, 8)
        self.emb = fnn.nn.Embedding(6, 8)
        self.head = fnn.nn.Linear(8, 3)
        self.seen = []

    def forward(self, x, ids):
        return self.head(F.relu(self.dense(x) + self.emb(ids).mean(dim=1)))


def two_input_data(n_per_class=20, seed=0):
    x, y = blobs(n_per_class, seed)
    ids = (y[:, None] * 2 + rng(seed + 1).integers(0, 2, (len(y), 3))).astype(np.int64)  # informative ids
    return x, ids, y


def sgd(model, lr=0.1):
    return fnn.optim.SGD(model.parameters(), lr=lr, momentum=0.9)


# -- several inputs ---------------------------------------------------------------------------------------
def test_fit_several_inputs_shuffles_them_together():
    x, ids, y = two_input_data()
    fnn.manual_seed(0)
    model = TwoInputs()
    pairs = []
    model_forward = model.forward

    def recording(a, b):
        pairs.append((a.copy(), b.copy()))
        return model_forward(a, b)
    model.forward = recording
    trainer = fnn.Trainer(model, fnn.nn.CrossEntropyLoss(), sgd(model))
    hist = trainer.fit([x, ids], y, epochs=8, batch_size=16, validation_split=0.25, verbose=0)
    # rows of x and ids stay paired after shuffling: each x row is found with its own ids row
    index = {row.tobytes(): k for k, row in enumerate(x)}
    for a, b in pairs:
        for row_a, row_b in zip(a, b):
            np.testing.assert_array_equal(ids[index[row_a.tobytes()]], row_b)
    del model.forward
    assert hist["val_accuracy"][-1] >= 0.9
    assert trainer.evaluate([x, ids], y)["accuracy"] >= 0.9
    assert trainer.predict((x, ids)).shape == (len(x), 3)


def test_several_inputs_must_have_one_length():
    x, ids, y = two_input_data()
    trainer = fnn.Trainer(TwoInputs(), fnn.nn.CrossEntropyLoss(), sgd(fnn.nn.Linear(1, 1)))
    with pytest.raises(ValueError, match="different numbers of samples"):
        trainer.fit([x, ids[:-1]], y, verbose=0)


# -- iterables of batches ------------------------------------------------------------------------------
def test_array_batches_give_the_same_run_as_arrays():
    x, y = blobs()
    histories, weights = [], []
    for data in ("arrays", "batches"):
        fnn.manual_seed(0)
        model = mlp()
        trainer = fnn.Trainer(model, fnn.nn.CrossEntropyLoss(), sgd(model))
        if data == "arrays":
            hist = trainer.fit(x, y, epochs=3, batch_size=8, verbose=0)
        else:
            hist = trainer.fit(fnn.data.ArrayBatches(x, y, batch_size=8, shuffle=True), epochs=3, verbose=0)
        histories.append(hist)
        weights.append(model.state_dict())
    assert histories[0] == histories[1]
    for k in weights[0]:
        np.testing.assert_array_equal(weights[0][k], weights[1][k])


def test_augmented_array_batches_and_iterable_validation():
    x, y = blobs(30)
    order = rng(2).permutation(len(x))
    x, y = x[order], y[order]
    calls = []

    def jitter(xb):
        calls.append(len(xb))
        return xb + np.float32(0.01)

    fnn.manual_seed(0)
    model = mlp()
    trainer = fnn.Trainer(model, fnn.nn.CrossEntropyLoss(), sgd(model))
    train = fnn.data.ArrayBatches(x[:60], y[:60], batch_size=16, transform=jitter)
    val = fnn.data.ArrayBatches(x[60:], y[60:], batch_size=7, shuffle=False)
    hist = trainer.fit(train, epochs=5, validation_data=val, verbose=0)
    assert sum(calls) == 5 * 60 and len(hist["val_loss"]) == 5
    ev = trainer.evaluate(val)
    assert ev == trainer.evaluate(x[60:], y[60:], batch_size=7)  # the same batches, weighted by size
    assert ev["accuracy"] >= 0.9
    np.testing.assert_array_equal(trainer.predict(val), trainer.predict(x[60:], batch_size=7))


def test_generator_batches_and_a_class_with_iter():
    x, y = blobs()

    def chunks():
        for start in range(0, len(x), 13):
            yield x[start:start + 13], y[start:start + 13]

    class Stream:
        """Re-iterable: every epoch a new generator."""
        def __iter__(self):
            for start in range(0, len(x), 10):
                yield x[start:start + 10], y[start:start + 10]

    for data in (fnn.data.GeneratorBatches(chunks, batch_size=8, shuffle_buffer=20), Stream()):
        fnn.manual_seed(0)
        model = mlp()
        trainer = fnn.Trainer(model, fnn.nn.CrossEntropyLoss(), sgd(model))
        hist = trainer.fit(data, epochs=15, verbose=0)
        assert len(hist["loss"]) == 15 and hist["loss"][-1] < hist["loss"][0]
        assert trainer.evaluate(x, y)["accuracy"] >= 0.9


def test_one_shot_generator_needs_steps_per_epoch():
    x, y = blobs()

    def endless():
        r = rng(3)
        while True:
            idx = r.integers(0, len(x), 12)
            yield x[idx], y[idx]

    fnn.manual_seed(0)
    model = mlp()
    trainer = fnn.Trainer(model, fnn.nn.CrossEntropyLoss(), sgd(model))
    hist = trainer.fit(endless(), epochs=6, steps_per_epoch=5, verbose=0)
    assert trainer.global_step == 30 and len(hist["loss"]) == 6
    finite = iter([(x[:10], y[:10]), (x[10:20], y[10:20])])
    with pytest.raises(ValueError, match="one-shot iterator"):
        trainer.fit(finite, epochs=2, verbose=0)
    with pytest.raises(ValueError, match="ran out after 1 of steps_per_epoch=3"):
        trainer.fit(iter([(x[:10], y[:10])]), epochs=1, steps_per_epoch=3, verbose=0)
    # a re-iterable restarts when it runs out in the middle of an epoch
    trainer.fit(fnn.data.ArrayBatches(x, y, batch_size=25), epochs=2, steps_per_epoch=4, verbose=0)
    assert trainer.global_step == 30 + 2 + 1 + 8  # the failed fits took their steps before failing


def test_tensor_like_batches_are_converted():
    class Tensor:
        """What a torch DataLoader yields: an object with __array__ and a shape."""
        def __init__(self, a):
            self._a, self.shape = a, a.shape

        def __array__(self, dtype=None, copy=None):
            return self._a if dtype is None else self._a.astype(dtype)

    x, y = blobs()
    loader = [(Tensor(x[s:s + 16]), Tensor(y[s:s + 16])) for s in range(0, len(x), 16)]
    fnn.manual_seed(0)
    model = mlp()
    trainer = fnn.Trainer(model, fnn.nn.CrossEntropyLoss(), sgd(model))
    trainer.fit(loader, epochs=10, verbose=0)
    assert trainer.evaluate(loader)["accuracy"] >= 0.9
    assert trainer.predict([(Tensor(x),)]).shape == (len(x), 3)


def test_two_input_batches_from_an_iterable():
    x, ids, y = two_input_data()
    fnn.manual_seed(0)
    model = TwoInputs()
    trainer = fnn.Trainer(model, fnn.nn.CrossEntropyLoss(), sgd(model))
    trainer.fit(fnn.data.ArrayBatches((x, ids), y, batch_size=12), epochs=8, verbose=0)
    assert trainer.evaluate(fnn.data.ArrayBatches([x, ids], y, batch_size=50))["accuracy"] >= 0.9
    inputs_only = fnn.data.ArrayBatches((x, ids), batch_size=50, shuffle=False)
    np.testing.assert_array_equal(trainer.predict(inputs_only), trainer.predict([x, ids], batch_size=50))


def test_progress_counts_batches_when_the_length_is_known(capsys):
    x, y = blobs()
    trainer = fnn.Trainer(mlp(), fnn.nn.CrossEntropyLoss(), sgd(mlp()))

    def gen():
        yield x, y

    class Endless:
        def __iter__(self):
            while True:
                yield x[:8], y[:8]

    trainer.fit(fnn.data.ArrayBatches(x, y, batch_size=8), epochs=1, verbose=2)
    trainer.fit(Endless(), epochs=1, steps_per_epoch=3, verbose=2)
    trainer.fit(gen(), epochs=1, verbose=2)
    assert capsys.readouterr().out.count("Epoch 1/1") == 3


def test_iterable_errors():
    x, y = blobs()
    trainer = fnn.Trainer(mlp(), fnn.nn.CrossEntropyLoss(), sgd(mlp()))
    with pytest.raises(ValueError, match="y must be None"):
        trainer.fit(fnn.data.ArrayBatches(x, y), y, verbose=0)
    with pytest.raises(ValueError, match=r"\(x, y\) pairs"):
        trainer.fit([(x[:4],)], verbose=0)
    with pytest.raises(ValueError, match="empty"):
        trainer.fit([], verbose=0)
    with pytest.raises(ValueError, match="validation_split needs arrays"):
        trainer.fit(fnn.data.ArrayBatches(x, y), validation_split=0.2, verbose=0)
    with pytest.raises(TypeError, match="iterable of batches"):
        trainer.fit(3, verbose=0)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        trainer.fit(x, y, steps_per_epoch=0, verbose=0)
    with pytest.raises(ValueError, match="y is missing"):
        trainer.fit(x, verbose=0)
