"""Greedy layer-wise autoencoder pretraining: each stage's reconstruction error drops, the layers
change, the pretrained stack fine-tunes to high accuracy on digits, and a seed makes it all reproducible."""
import numpy as np
import pytest

import fastnn as fnn

sklearn = pytest.importorskip("sklearn")
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    """Small layers: one kernel thread is as fast, and immune to OpenMP slowdowns on oversubscribed shared
    cores (results are identical bit for bit whatever the thread count)."""
    threads = fnn.get_num_threads()
    fnn.set_num_threads(1)
    yield
    fnn.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    return (Xtr / 16.0).astype(np.float32), (Xte / 16.0).astype(np.float32), ytr, yte


def _adam(lr):
    return lambda params: fnn.optim.Adam(params, lr=lr)


def test_each_stage_reconstruction_loss_drops_and_weights_change(digits):
    Xtr = digits[0]
    fnn.manual_seed(1)
    layers = [fnn.nn.Linear(64, 96), fnn.nn.Linear(96, 48)]
    before = [(l.weight.data.copy(), l.bias.data.copy()) for l in layers]
    pre = fnn.pretraining.pretrain_greedy(layers, Xtr, epochs=10, batch_size=32, optimizer_factory=_adam(3e-3))
    assert pre.layers[0] is layers[0] and pre.layers[1] is layers[1]  # trained in place
    assert len(pre.histories) == 2 and len(pre.decoders) == 2
    for h in pre.histories:
        assert len(h["loss"]) == 10
        assert h["loss"][-1] < 0.1 * h["initial_loss"][0]
        assert h["loss"][-1] < 0.5 * h["loss"][0]
    for layer, (w0, b0) in zip(layers, before):
        assert np.abs(layer.weight.data - w0).max() > 1e-2
        assert not np.array_equal(layer.bias.data, b0)
    assert pre.decoders[0].in_features == 96 and pre.decoders[0].out_features == 64
    assert pre.decoders[1].in_features == 48 and pre.decoders[1].out_features == 96
    codes = pre.encode(Xtr)
    assert codes.shape == (len(Xtr), 48) and codes.min() >= 0 and codes.max() <= 1  # sigmoid codes


def test_stage_two_reconstructs_the_codes_of_stage_one(digits):
    """The second autoencoder is trained on stage one's codes, not on the data."""
    Xtr = digits[0]
    pre = fnn.pretraining.pretrain_greedy([64, 32, 16], Xtr, epochs=5, batch_size=32, seed=3,
                                          optimizer_factory=_adam(3e-3))
    assert len(pre.encoder) == 4 and pre.encoder[0] is pre.layers[0] and pre.encoder[2] is pre.layers[1]
    stage1 = fnn.nn.Sequential(pre.layers[0], pre.activations[0]).eval()
    c1 = stage1(Xtr)
    ae2 = fnn.nn.Sequential(pre.layers[1], pre.activations[1], pre.decoders[1]).eval()
    mse = float(np.mean((ae2(c1) - c1) ** 2))
    h = pre.histories[1]
    assert mse < 0.5 * h["initial_loss"][0]
    assert 0.5 * h["loss"][-1] < mse < 2 * h["loss"][-1]
    np.testing.assert_allclose(pre.encode(Xtr), fnn.nn.Sequential(pre.layers[1], pre.activations[1]).eval()(c1),
                               rtol=1e-5, atol=1e-6)


def test_fine_tuning_the_pretrained_stack_reaches_high_accuracy(digits):
    Xtr, Xte, ytr, yte = digits
    pre = fnn.pretraining.pretrain_greedy([64, 128, 64], Xtr, epochs=15, batch_size=32, seed=0,
                                          optimizer_factory=_adam(3e-3))
    head = fnn.nn.Linear(64, 10)
    model = pre.model(head=head)
    assert len(model) == 5 and model[0] is pre.layers[0] and model[4] is head
    assert isinstance(model[1], fnn.nn.Sigmoid)
    trainer = fnn.Trainer(model, fnn.nn.CrossEntropyLoss(), fnn.optim.Adam(model.parameters(), lr=2e-3))
    trainer.fit(Xtr, ytr, epochs=20, batch_size=32, verbose=0)
    assert trainer.evaluate(Xte, yte)["accuracy"] >= 0.95
    # fine-tuning trained the shared modules: the result's layers are the model's
    assert pre.layers[0].weight is model[0].weight


def test_reproducible_with_a_seed(digits):
    Xtr = digits[0][:400]
    runs = []
    for _ in range(2):
        pre = fnn.pretraining.pretrain_greedy([64, 40, 20], Xtr, epochs=3, batch_size=16, seed=7,
                                              activation=fnn.nn.Tanh)
        runs.append(pre)
    a, b = runs
    for la, lb in zip(a.layers, b.layers):
        np.testing.assert_array_equal(la.weight.data, lb.weight.data)
        np.testing.assert_array_equal(la.bias.data, lb.bias.data)
    assert a.histories == b.histories
    c = fnn.pretraining.pretrain_greedy([64, 40, 20], Xtr, epochs=3, batch_size=16, seed=8, activation=fnn.nn.Tanh)
    assert not np.array_equal(a.layers[0].weight.data, c.layers[0].weight.data)


def test_per_stage_epochs_linear_activation_and_float64():
    rng = np.random.default_rng(0)
    # Data on a 3-D subspace of R^8: a linear 3-unit autoencoder reconstructs it almost exactly.
    x = rng.standard_normal((256, 3)) @ rng.standard_normal((3, 8))
    layers = [fnn.nn.Linear(8, 3).double(), fnn.nn.Linear(3, 2).double()]
    pre = fnn.pretraining.pretrain_greedy(layers, x, epochs=[40, 1], batch_size=16, activation=None, seed=0,
                                          optimizer_factory=_adam(1e-2))
    assert [len(h["loss"]) for h in pre.histories] == [40, 1]
    assert pre.histories[0]["loss"][-1] < 1e-2 * pre.histories[0]["initial_loss"][0]
    assert pre.decoders[0].weight.data.dtype == np.float64
    assert isinstance(pre.activations[0], fnn.nn.Identity)


def test_bad_arguments():
    x = np.zeros((10, 4), np.float32)
    with pytest.raises(ValueError, match="takes 5 inputs"):
        fnn.pretraining.pretrain_greedy([fnn.nn.Linear(4, 3), fnn.nn.Linear(5, 2)], x)
    with pytest.raises(ValueError, match=r"shape \(N, 6\)"):
        fnn.pretraining.pretrain_greedy([6, 3], x)
    with pytest.raises(TypeError, match="Linear"):
        fnn.pretraining.pretrain_greedy([fnn.nn.ReLU()], x)
    with pytest.raises(ValueError, match="at least one hidden"):
        fnn.pretraining.pretrain_greedy([4], x)
    with pytest.raises(ValueError, match="2 epoch counts for 1 layers"):
        fnn.pretraining.pretrain_greedy([4, 2], x, epochs=[1, 2])
    with pytest.raises(ValueError, match="class or factory"):
        fnn.pretraining.pretrain_greedy([4, 3, 2], x, activation=fnn.nn.ReLU())
