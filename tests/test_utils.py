"""fastnn.utils: gradcheck, freeze/unfreeze, the three fine-tuning modes and partial loading (T7)."""
import numpy as np
import pytest

import fastnn as fnn
from fastnn.utils import GradcheckError, freeze, gradcheck, load_partial, unfreeze


def mlp(seed=0, classes=3):
    fnn.manual_seed(seed)
    return fnn.nn.Sequential(fnn.nn.Linear(4, 5), fnn.nn.Tanh(), fnn.nn.Linear(5, classes))


def data(seed=0, n=6, classes=3):
    r = np.random.default_rng(seed)
    return r.standard_normal((n, 4)).astype(np.float32), r.integers(0, classes, n)


class Scale(fnn.nn.Module):
    """y = a ⊙ x with a user-written backward; `wrong` breaks the parameter gradient."""

    def __init__(self, n, wrong=False):
        super().__init__()
        self.a = fnn.nn.Parameter(np.linspace(0.5, 1.5, n).astype(np.float32))
        self.wrong = wrong

    def forward(self, x):
        self.x = x
        return x * self.a.data

    def backward(self, g):
        self.a.grad += (g * self.x).sum(0) * (1.1 if self.wrong else 1.0)
        return g * self.a.data


def test_gradcheck_passes_on_a_correct_model_and_leaves_it_alone():
    model = mlp()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    x, y = data()
    results = gradcheck(model, fnn.nn.CrossEntropyLoss(), x, y, check_input=True)
    assert [r.name for r in results] == ["0.weight", "0.bias", "2.weight", "2.bias", "input"]
    assert all(r.passed and r.max_abs_error < 1e-8 for r in results)
    assert model.dtype == np.float32                                   # the copy was cast, not the model
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_gradcheck_catches_a_wrong_custom_backward_and_names_it():
    x, y = data()
    good = fnn.nn.Sequential(Scale(4), fnn.nn.Linear(4, 3))
    gradcheck(good, fnn.nn.CrossEntropyLoss(), x, y)
    bad = fnn.nn.Sequential(Scale(4, wrong=True), fnn.nn.Linear(4, 3))
    with pytest.raises(GradcheckError, match=r"'0\.a'"):
        gradcheck(bad, fnn.nn.CrossEntropyLoss(), x, y)
    results = gradcheck(bad, fnn.nn.CrossEntropyLoss(), x, y, raise_exception=False)
    assert {r.name: r.passed for r in results} == {"0.a": False, "1.weight": True, "1.bias": True}


def test_gradcheck_with_dropout_in_training_mode_and_mse():
    fnn.manual_seed(0)
    model = fnn.nn.Sequential(fnn.nn.Linear(4, 6), fnn.nn.Dropout(0.5), fnn.nn.ReLU(), fnn.nn.Linear(6, 2))
    x = np.random.default_rng(1).standard_normal((5, 4))
    y = np.random.default_rng(2).standard_normal((5, 2))
    state = fnn.random.generator().bit_generator.state
    assert all(r.passed for r in gradcheck(model, fnn.nn.MSELoss(), x, y))
    assert fnn.random.generator().bit_generator.state == state        # the user's random stream is untouched


def test_gradcheck_skips_frozen_parameters():
    model = mlp()
    freeze(model, "0")
    x, y = data()
    assert [r.name for r in gradcheck(model, fnn.nn.CrossEntropyLoss(), x, y)] == ["2.weight", "2.bias"]


def test_freeze_unfreeze_by_pattern_module_and_parameter():
    model = mlp()
    assert freeze(model) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert not any(p.requires_grad for p in model.parameters())
    assert unfreeze(model, "*.bias") == ["0.bias", "2.bias"]
    assert unfreeze(model, model[2]) == ["2.weight", "2.bias"]
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["0.bias", "2.weight", "2.bias"]
    assert freeze(model, ["2.*", model[0].bias]) == ["2.weight", "2.bias", "0.bias"]
    with pytest.raises(ValueError, match="matches no parameter"):
        freeze(model, "classifier")


def train(model, lr, epochs=5, seed=0):
    x, y = data(seed, n=40)
    fnn.Trainer(model, fnn.nn.CrossEntropyLoss(), fnn.optim.SGD(model.parameters(), lr=lr, momentum=0.9)).fit(
        x, y, epochs=epochs, batch_size=8, verbose=0)


def test_three_fine_tuning_modes():
    pretrained = mlp(seed=1)
    train(pretrained, 0.1)
    sd = pretrained.state_dict()
    x, _ = data(5)

    # 1. predict only: the pretrained weights, unchanged, give the same predictions
    model = mlp(seed=2)
    model.load_state_dict(sd)
    freeze(model)
    model.eval()
    np.testing.assert_array_equal(model(x), pretrained.eval()(x))

    # 2. train the last layer only: the first layer keeps its pretrained weights exactly
    model = mlp(seed=2)
    model.load_state_dict(sd)
    freeze(model)
    unfreeze(model, "2")
    train(model, 0.1, seed=3)
    np.testing.assert_array_equal(model[0].weight.data, sd["0.weight"])
    np.testing.assert_array_equal(model[0].bias.data, sd["0.bias"])
    assert not np.array_equal(model[2].weight.data, sd["2.weight"])

    # 3. train all: everything moves
    unfreeze(model)
    train(model, 0.01, seed=4)
    assert not np.array_equal(model[0].weight.data, sd["0.weight"])


def test_partial_loading_reports_missing_unexpected_and_mismatched_keys():
    pretrained = mlp(seed=1, classes=3)
    sd = pretrained.state_dict()
    sd["extra.weight"] = np.zeros(2, np.float32)
    model = mlp(seed=2, classes=5)                 # new head: 5 classes
    head = model[2].weight.data.copy()
    report = load_partial(model, sd)
    assert report.missing_keys == ["2.weight", "2.bias"]
    assert report.unexpected_keys == ["extra.weight"]
    assert report.mismatched_keys == ["2.weight", "2.bias"]
    np.testing.assert_array_equal(model[0].weight.data, sd["0.weight"])
    np.testing.assert_array_equal(model[2].weight.data, head)
    # plain load_state_dict(strict=False) with a dict that lacks the head
    missing, unexpected = model.load_state_dict({"0.weight": sd["0.weight"]}, strict=False)
    assert missing == ["0.bias", "2.weight", "2.bias"] and unexpected == []
