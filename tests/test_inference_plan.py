"""Sequential's eval-mode fast path (one C++ call through Linear + element-wise layers) must be invisible:
same bits as layer by layer, same errors, correct after any change to the model."""
import numpy as np
import pytest

import fastnn as fnn
from harness import rng


def mlp():
    fnn.manual_seed(0)
    return fnn.nn.Sequential(fnn.nn.Linear(20, 32), fnn.nn.ReLU(), fnn.nn.Dropout(0.5), fnn.nn.Linear(32, 16),
                             fnn.nn.Tanh(), fnn.nn.LeakyReLU(0.1), fnn.nn.Linear(16, 5, bias=False))


def layer_by_layer(model, x):
    for m in model:
        x = m.forward(x)
    return x


@pytest.mark.parametrize("batch", [1, 3, 64])
def test_fused_eval_forward_is_bit_identical(batch):
    model = mlp().eval()
    x = rng(batch).standard_normal((batch, 20)).astype(np.float32)
    y = model(x)
    assert model._plan  # the fast path was taken
    assert y.tobytes() == layer_by_layer(model, x).tobytes()


def test_plan_follows_mode_dtype_and_parameter_changes():
    model = mlp().eval()
    x = rng().standard_normal((4, 20)).astype(np.float32)
    model(x)
    model[0].weight.data[...] += 1.0  # in place: the plan reads the live arrays
    assert model(x).tobytes() == layer_by_layer(model, x).tobytes()
    model[3].weight.data = model[3].weight.data * 2  # replaced array: the plan is rebuilt
    assert model(x).tobytes() == layer_by_layer(model, x).tobytes()
    model.double()
    y = model(x)
    assert y.dtype == np.float64 and y.tobytes() == layer_by_layer(model, x.astype(np.float64)).tobytes()
    model.train()  # dropout active again: outputs now random, so not the eval plan
    fnn.manual_seed(1)
    a = model(x)
    fnn.manual_seed(2)
    assert not np.array_equal(a, model(x))


def test_backward_after_fused_forward_matches_layer_by_layer():
    model = mlp().eval()
    x = rng().standard_normal((6, 20)).astype(np.float32)
    g = rng(1).standard_normal((6, 5)).astype(np.float32)
    model(x)
    dx_fused = model.backward(g)
    grads_fused = [p.grad.copy() for p in model.parameters()]
    model.zero_grad()
    layer_by_layer(model, x)
    object.__setattr__(model, "_plan_input", None)
    dx = model.backward(g)
    assert dx.tobytes() == dx_fused.tobytes()
    for a, p in zip(grads_fused, model.parameters()):
        assert a.tobytes() == p.grad.tobytes()


def test_errors_and_special_inputs_take_the_layer_path():
    model = mlp().eval()
    assert model(np.ones(20, np.float32)).shape == (5,)  # unbatched, like Linear
    with pytest.raises(ValueError, match=r"Linear\(20, 32\).*\(3, 7\)"):
        model(np.ones((3, 7), np.float32))
    bad = np.ones((2, 20), np.float32)
    bad[0, 3] = np.nan
    with pytest.raises(ValueError, match=r"Linear\(20, 32\).*NaN"):
        model(bad)
    np.testing.assert_allclose(model(np.asfortranarray(np.ones((2, 20)))), model(np.ones((2, 20), np.float32)),
                               rtol=1e-6)


def test_unsupported_layers_run_layer_by_layer():
    fnn.manual_seed(0)
    model = fnn.nn.Sequential(fnn.nn.Linear(4, 3), fnn.nn.Softmax(dim=1)).eval()
    y = model(np.ones((2, 4), np.float32))
    assert model._plan is False
    np.testing.assert_allclose(y.sum(1), 1, rtol=1e-6)


def cnn(affine=True, conv_bias=True):
    fnn.manual_seed(0)
    return fnn.nn.Sequential(
        fnn.nn.Conv2d(1, 4, 3, padding=1, bias=conv_bias), fnn.nn.BatchNorm2d(4, affine=affine), fnn.nn.ReLU(),
        fnn.nn.MaxPool2d(2), fnn.nn.Conv2d(4, 6, 3), fnn.nn.BatchNorm2d(6), fnn.nn.Flatten(),
        fnn.nn.Linear(6 * 2 * 2, 3))


def trained_a_little(model, x):
    model.train()
    for _ in range(3):  # moves the running statistics and (through backward) nothing else
        model(x)
    return model.eval()


@pytest.mark.parametrize("affine,conv_bias", [(True, True), (False, False)])
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
def test_conv_batchnorm_folding_matches_layer_by_layer(affine, conv_bias, dtype, tol):
    model = cnn(affine, conv_bias).to(dtype)
    x = rng(3).standard_normal((5, 1, 8, 8)).astype(dtype)
    trained_a_little(model, x)
    y = model(x)
    assert type(model._plan).__name__ == "FoldedSequencePlan"
    np.testing.assert_allclose(y, layer_by_layer(model, x), rtol=tol, atol=tol)


def test_folding_follows_in_place_training_and_leaves_the_random_stream_alone():
    model = cnn()
    x = rng(4).standard_normal((4, 1, 8, 8)).astype(np.float32)
    trained_a_little(model, x)
    fnn.manual_seed(7)
    model(x)  # builds the plan (which constructs a folded conv internally)
    after_build = fnn.random.generator().random()
    fnn.manual_seed(7)
    assert fnn.random.generator().random() == after_build
    model[1].running_mean[...] += 0.5  # in place, as training does: the fold must see it
    model[0].weight.data[...] *= 1.5
    np.testing.assert_allclose(model(x), layer_by_layer(model, x), rtol=2e-5, atol=2e-5)


def test_backward_and_errors_after_a_folded_forward():
    model = trained_a_little(cnn().double(), rng(5).standard_normal((3, 1, 8, 8)))
    x = rng(6).standard_normal((3, 1, 8, 8))
    g = rng(7).standard_normal((3, 3))
    model(x)
    dx = model.backward(g)  # replays layer by layer, then backpropagates
    model.zero_grad()
    layer_by_layer(model, x)
    object.__setattr__(model, "_plan_input", None)
    np.testing.assert_array_equal(dx, model.backward(g))
    with pytest.raises(ValueError, match=r"Conv2d\(1, 4.*channels"):
        model(np.ones((2, 3, 8, 8)))
