"""NeuralNetClassifier / NeuralNetRegressor around networks that are not MLPs: a CNN on the digits images,
a recurrent network on sequences, and a module class used as its own factory."""
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, train_test_split

import fastnn as fnn
from fastnn.sklearn import NeuralNetClassifier, NeuralNetRegressor

nn = fnn.nn


def cnn(n_features_in, n_outputs, channels=8, input_shape=None):
    """Conv-BN-ReLU-pool then a linear head; input_shape (given by the estimator) sizes the head."""
    _, height, width = input_shape
    return nn.Sequential(nn.Conv2d(n_features_in, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(channels * (height // 2) * (width // 2), n_outputs))


@pytest.fixture(scope="module")
def digit_images():
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).reshape(-1, 1, 8, 8)
    return train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)


def test_cnn_classifier_on_digit_images(digit_images):
    X_train, X_test, y_train, y_test = digit_images
    net = NeuralNetClassifier(cnn, module__channels=8, lr=3e-3, max_epochs=8, batch_size=32, random_state=0)
    net.fit(X_train, y_train)
    assert net.n_features_in_ == 1 and net.input_shape_ == (1, 8, 8)
    assert isinstance(net.module_[0], nn.Conv2d) and net.module_[0].out_channels == 8
    assert net.score(X_test, y_test) > 0.95
    proba = net.predict_proba(X_test)
    assert proba.shape == (len(X_test), 10) and np.array_equal(net.classes_[proba.argmax(1)], net.predict(X_test))
    with pytest.raises(ValueError, match="shape"):
        net.predict(X_test.reshape(-1, 1, 4, 16))
    with pytest.raises(ValueError, match="features"):
        net.predict(X_test.reshape(len(X_test), 64))
    twin = clone(net).fit(X_train, y_train)
    assert np.array_equal(twin.predict_proba(X_test), proba)  # same random_state, bit for bit


def test_grid_search_over_module_parameters(digit_images):
    X_train, _, y_train, _ = digit_images
    grid = GridSearchCV(NeuralNetClassifier(cnn, lr=3e-3, max_epochs=2, batch_size=64, random_state=0),
                        {"module__channels": [2, 6]}, cv=2)
    grid.fit(X_train[:400], y_train[:400])
    assert grid.best_params_["module__channels"] in (2, 6)
    assert grid.best_estimator_.module_[0].out_channels == grid.best_params_["module__channels"]


class LastStep(nn.Module):
    """An LSTM over (batch, time, features) sequences, a linear read-out of the last hidden state."""

    def __init__(self, n_features_in, n_outputs, hidden=16, input_shape=None):
        super().__init__()
        self.lstm = nn.LSTM(input_shape[-1], hidden, batch_first=True)
        self.head = nn.Linear(hidden, n_outputs)

    def forward(self, x):
        out, _ = self.lstm(x)
        self._steps = out.shape
        return self.head(out[:, -1])

    def backward(self, g):
        grad_out = np.zeros(self._steps, g.dtype)
        grad_out[:, -1] = self.head.backward(g)
        return self.lstm.backward(grad_out)


def test_recurrent_regressor_on_sequences():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((256, 12, 3)).astype(np.float32)
    y = X[:, :, 0].sum(1) - X[:, -1, 2]  # a running sum and the last step: needs memory
    net = NeuralNetRegressor(LastStep, module__hidden=16, lr=1e-2, max_epochs=40, batch_size=32, random_state=0)
    net.fit(X, y)
    assert net.predict(X).shape == (256,) and net.score(X, y) > 0.8
    assert net.history_["loss"][-1] < 0.2 * net.history_["loss"][0]


def test_docstring_examples_run():
    import doctest

    from fastnn.sklearn import _mlp, _net
    for module in (_mlp, _net):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.attempted >= 5 and result.failed == 0, module.__name__
