"""nn.GELU: against PyTorch 2.13 (tests/data/gelu_reference.npz, made by tests/data/make_gelu_reference.py) and
a math.erf oracle, finite differences, eval-mode plans, summary(), fnn.save/load and describe()."""
import math
import os

import numpy as np
import pytest

import fastnn as fnn
from harness import check_module_gradients, rng

_REF = np.load(os.path.join(os.path.dirname(__file__), "data", "gelu_reference.npz"))


@pytest.mark.parametrize("dtype, tol", [(np.float64, dict(rtol=1e-12, atol=1e-14)),
                                        (np.float32, dict(rtol=2e-6, atol=2e-7))])
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_matches_pytorch(approximate, dtype, tol):
    layer = fnn.nn.GELU(approximate)
    x = _REF["x"].astype(dtype)
    y = layer(x)
    assert y.dtype == dtype and y.shape == x.shape
    np.testing.assert_allclose(y, _REF[f"{approximate}/out"], **tol)
    dx = layer.backward(_REF["grad_output"].astype(dtype))
    assert dx.dtype == dtype
    np.testing.assert_allclose(dx, _REF[f"{approximate}/grad"], **tol)


def test_exact_form_is_x_times_the_normal_cdf():
    x = rng(1).standard_normal((4, 5)) * 3
    oracle = np.vectorize(lambda v: v * 0.5 * (1 + math.erf(v / math.sqrt(2))))(x)
    np.testing.assert_allclose(fnn.nn.GELU()(x), oracle, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_finite_differences(approximate):
    check_module_gradients(fnn.nn.GELU(approximate=approximate), rng(2).standard_normal((3, 7)) * 2)


def test_in_a_model_eval_plans_summary_save_load_describe(tmp_path):
    fnn.random.manual_seed(0)
    model = fnn.nn.Sequential(fnn.nn.Linear(5, 8), fnn.nn.GELU(approximate="tanh"), fnn.nn.Linear(8, 3),
                              fnn.nn.GELU())
    x = rng(3).standard_normal((4, 5)).astype(np.float32)
    train_out = model(x)
    model.eval()
    np.testing.assert_allclose(model(x), train_out, rtol=1e-6, atol=1e-7)  # eval plans fuse GELU's kernel into the chain
    assert "GELU" in str(model.summary((5,)))
    assert repr(model[1]) == "GELU(approximate='tanh')" and repr(model[3]) == "GELU()"
    spec = model[1].describe()
    assert spec.kind == "activation" and spec.attrs["name"] == "GELU" and spec.params == {}
    assert spec.attrs["kernel"] == fnn.ops.Activation.gelu and spec.attrs["a"] == 1.0  # the tanh form
    fnn.save(model, tmp_path / "m.safetensors")
    back = fnn.load(tmp_path / "m.safetensors")
    assert back[1].approximate == "tanh" and back[3].approximate == "none"
    np.testing.assert_array_equal(back(x), model(x))


def test_bad_arguments():
    with pytest.raises(ValueError, match="GELU: approximate must be 'none' or 'tanh'"):
        fnn.nn.GELU("erf")
    with pytest.raises(ValueError, match=r"GELU\(\): backward\(\) called before forward"):
        fnn.nn.GELU().backward(np.zeros(3))
    layer = fnn.nn.GELU()
    layer(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"GELU\(\): grad_output has shape \(3, 2\), but the forward output had "
                                         r"shape \(2, 3\)"):
        layer.backward(np.zeros((3, 2)))
