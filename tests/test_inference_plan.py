"""Sequential's eval-mode fast path (one C++ call through Linear + element-wise layers) must be invisible:
same bits as layer by layer, same errors, correct after any change to the model."""
import numpy as np
import pytest

import fastnn as fnn
from fastnn.nn.executor import fused_plans, unfused
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
    assert fused_plans(model)  # the fast path was taken
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
    with unfused():
        model(x)
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
    assert fused_plans(model) == []
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
    assert [type(p).__name__ for p in fused_plans(model)] == ["FusedSequencePlan"]
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
    with unfused():
        model(x)
    np.testing.assert_array_equal(dx, model.backward(g))
    with pytest.raises(ValueError, match=r"Conv2d\(1, 4.*channels"):
        model(np.ones((2, 3, 8, 8)))


def step_kinds(model):
    return [type(s).__name__ for s in fused_plans(model)[0].steps]


nn = fnn.nn
CONV_BLOCKS = {
    # name: (layers, input shape); every block below runs as one conv_block_forward call
    "conv-relu-maxpool": (lambda: [nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)], (3, 10, 10)),
    "odd-size-avgpool-padded": (lambda: [nn.Conv2d(2, 5, 3), nn.Tanh(), nn.AvgPool2d(3, 2, padding=1)], (2, 11, 9)),
    "strided-dilated-grouped": (lambda: [nn.Conv2d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2),
                                         nn.LeakyReLU(0.1), nn.SiLU(), nn.MaxPool2d(3, stride=1, padding=1)],
                                (4, 13, 12)),
    "pointwise-no-bias": (lambda: [nn.Conv2d(5, 7, 1, bias=False), nn.ReLU6()], (5, 6, 7)),
    "wide-kernel-im2col": (lambda: [nn.Conv2d(30, 4, 3, padding=1), nn.ELU(), nn.MaxPool2d((2, 3))], (30, 8, 9)),
    "narrow-rows": (lambda: [nn.Conv2d(2, 5, (2, 3), padding=(0, 1)), nn.Sigmoid()], (2, 5, 3)),
    "conv1d": (lambda: [nn.Conv1d(3, 6, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2)], (3, 37)),
    "conv1d-avg": (lambda: [nn.Conv1d(3, 4, 3, stride=2), nn.Softplus(), nn.AvgPool1d(4, 3, padding=2)], (3, 40)),
}


@pytest.mark.parametrize("name", sorted(CONV_BLOCKS))
@pytest.mark.parametrize("batch_norm", [False, True])
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 3e-5)])
def test_conv_blocks_match_layer_by_layer(name, batch_norm, dtype, tol):
    make, shape = CONV_BLOCKS[name]
    fnn.manual_seed(1)
    layers = make()
    if batch_norm:
        conv = layers[0]
        bn = (nn.BatchNorm2d if conv._dims == 2 else nn.BatchNorm1d)(conv.out_channels)
        layers.insert(1, bn)
    model = nn.Sequential(*layers).to(dtype)
    x = rng(2).standard_normal((6,) + shape).astype(dtype)
    trained_a_little(model, x)
    y = model(x)
    assert step_kinds(model) == ["_ConvBlock"]
    np.testing.assert_allclose(y, layer_by_layer(model, x), rtol=tol, atol=tol)
    if not batch_norm and dtype == np.float64:  # no folding: the block does what the layers do, bit for bit
        assert y.tobytes() == layer_by_layer(model, x).tobytes()


def test_cnn_plan_is_blocks_and_a_dense_tail_and_independent_of_threads():
    fnn.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Dropout2d(0.3), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
                          nn.Flatten(), nn.Linear(6 * 4 * 4, 12), nn.ReLU(), nn.Dropout(0.5), nn.Linear(12, 3))
    x = rng(4).standard_normal((40, 1, 16, 16)).astype(np.float32)
    trained_a_little(model, x)
    threads = fnn.get_num_threads()
    try:
        fnn.set_num_threads(1)
        one = model(x)
        fnn.set_num_threads(2)
        two = model(x)
    finally:
        fnn.set_num_threads(threads)
    assert step_kinds(model) == ["_ConvBlock", "_ConvBlock", "_FlattenedTail"]
    assert one.tobytes() == two.tobytes()
    np.testing.assert_allclose(one, layer_by_layer(model, x), rtol=2e-5, atol=2e-5)


def test_layers_a_block_cannot_take_run_as_themselves():
    fnn.manual_seed(5)
    model = nn.Sequential(nn.Conv2d(2, 3, 2, padding="same"),  # even kernel: padded by hand, unevenly
                          nn.ReLU(), nn.Conv2d(3, 4, 3), nn.PReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4, 2),
                          nn.Softmax(dim=1))
    x = rng(6).standard_normal((3, 2, 4, 4))
    model.double().eval()
    y = model(x)
    assert step_kinds(model) == ["Conv2d", "ReLU", "_ConvBlock", "PReLU", "MaxPool2d", "Flatten", "Linear",
                                 "Softmax"]
    assert y.tobytes() == layer_by_layer(model, x).tobytes()


def test_conv_plan_errors_name_the_layer_and_odd_inputs_still_work():
    fnn.manual_seed(7)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.MaxPool2d(2)).eval()
    x = rng(8).standard_normal((2, 2, 6, 6)).astype(np.float32)
    bad = x.copy()
    bad[1, 0, 2, 2] = np.inf
    with pytest.raises(ValueError, match=r"Conv2d\(2, 3.*NaN or inf"):
        model(bad)
    with pytest.raises(ValueError, match=r"MaxPool2d.*smaller than the kernel"):
        model(np.ones((1, 2, 3, 3), np.float32))
    expected = layer_by_layer(model, x)
    assert model(x[0]).tobytes() == expected[0].tobytes()  # unbatched
    assert model(np.asfortranarray(x.astype(np.float64))).tobytes() == expected.tobytes()
    assert model(x[:, :, ::-1, :].copy()[:, :, ::-1, :]).tobytes() == expected.tobytes()


def test_summary_sees_every_layer_of_a_planned_sequential():
    fnn.manual_seed(9)
    mlp_model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).eval()
    mlp_model(np.ones((2, 4), np.float32))
    assert fused_plans(mlp_model)
    assert "(1, 3)" in mlp_model.summary(input_shape=(4,))
    cnn_model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2))
    assert "(1, 2, 3, 3)" in cnn_model.summary(input_shape=(1, 8, 8))
    np.testing.assert_array_equal(cnn_model.eval()(np.ones((1, 1, 8, 8), np.float32)).shape, (1, 2, 3, 3))
    assert fused_plans(cnn_model)


@pytest.mark.parametrize("pool", [nn.MaxPool2d(2, ceil_mode=True), nn.MaxPool2d(2, dilation=2),
                                  nn.MaxPool2d(2, return_indices=True), nn.AvgPool2d(3, 2, 1, ceil_mode=True),
                                  nn.AvgPool2d(3, 2, 1, count_include_pad=False), nn.AvgPool2d(2, divisor_override=3)])
def test_pooling_options_the_block_does_not_run_stay_separate_layers(pool):
    fnn.manual_seed(10)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), pool).double().eval()
    x = rng(11).standard_normal((2, 2, 9, 9))
    y = model(x)
    assert step_kinds(model) == ["_ConvBlock", type(pool).__name__]
    expected = layer_by_layer(model, x)
    for a, b in zip(y if isinstance(y, tuple) else [y], expected if isinstance(expected, tuple) else [expected]):
        assert a.tobytes() == b.tobytes()


def test_python_threads_share_one_eval_model():
    """An app may serve one model from several threads: the plans keep no per-call state outside C++'s
    per-thread buffers, so concurrent calls give each caller its own, correct result."""
    from concurrent.futures import ThreadPoolExecutor
    fnn.manual_seed(12)
    cnn_model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Flatten(), nn.Linear(4 * 8 * 8, 5)).eval()
    mlp_model = mlp().eval()
    cnn_inputs = [rng(20 + i).standard_normal((1 + i % 3, 1, 16, 16)).astype(np.float32) for i in range(24)]
    mlp_inputs = [rng(50 + i).standard_normal((1 + i % 5, 20)).astype(np.float32) for i in range(24)]
    expected = ([layer_by_layer(cnn_model, x) for x in cnn_inputs] +
                [layer_by_layer(mlp_model, x) for x in mlp_inputs])
    jobs = [(cnn_model, x) for x in cnn_inputs] + [(mlp_model, x) for x in mlp_inputs]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda job: job[0](job[1]), jobs * 3))
    for got, want in zip(results, expected * 3):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)


def test_cnn_plan_follows_dtype_mode_and_weight_changes():
    fnn.manual_seed(13)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(3 * 4 * 4, 4)).eval()
    x = rng(14).standard_normal((3, 2, 8, 8))
    assert model(x.astype(np.float32)).tobytes() == layer_by_layer(model, x.astype(np.float32)).tobytes()
    model[0].weight.data[...] *= -1.0  # in place
    assert model(x.astype(np.float32)).tobytes() == layer_by_layer(model, x.astype(np.float32)).tobytes()
    model.double()
    y = model(x)
    assert y.dtype == np.float64 and y.tobytes() == layer_by_layer(model, x).tobytes()
    model[4].weight.data = model[4].weight.data * 2  # a replaced array in the dense tail
    assert model(x).tobytes() == layer_by_layer(model, x).tobytes()
    model.train()
    assert model(x).tobytes() == layer_by_layer(model, x).tobytes()  # training mode: layer by layer


# Conv → ReLU-like activations → 2×2/2 max pooling with the pooling in registers (kernels/conv_infer.hpp, float32
# 3×3): LeNet's shapes, odd sizes, channel counts off the register blocks, rows narrower and wider than a packet;
# float64 and the 5×5 kernel take the general path, with the same results. Shapes it does not take (strides,
# other pools, other activations) are the cases above.
POOLED = [(256, 1, 8, 28, 28, 3, 1), (256, 8, 16, 14, 14, 3, 1), (2, 3, 5, 11, 9, 3, 1), (3, 2, 7, 7, 13, 3, 0),
          (2, 4, 9, 17, 6, 5, 2), (1, 1, 3, 4, 4, 3, 1), (2, 3, 6, 30, 41, 3, 1), (1, 32, 32, 32, 32, 3, 1),
          (3, 2, 2, 3, 3, 3, 2), (2, 16, 4, 9, 35, 3, 1)]
RELUS = {"none": [], "relu": [(fnn.ops.Activation.relu, 0.0, np.inf)],
         "relu6-leaky": [(fnn.ops.Activation.relu, 0.0, 6.0), (fnn.ops.Activation.relu, 0.1, np.inf)]}


def conv_relu_pool_oracle(x, w, b, pad, steps):
    """NumPy, in float64: the convolution tap by tap, the activations, 2×2/2 max pooling (floor)."""
    x, w = x.astype(np.float64), w.astype(np.float64)
    n, c, h, wd = x.shape
    o, _, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ho, wo = h + 2 * pad - k + 1, wd + 2 * pad - k + 1
    y = np.zeros((n, o, ho, wo)) + (0 if b is None else b.astype(np.float64)[:, None, None])
    for i in range(k):
        for j in range(k):
            y += np.einsum("nchw,oc->nohw", xp[:, :, i:i + ho, j:j + wo], w[:, :, i, j])
    for _, a, cap in steps:
        y = np.where(y > 0, np.minimum(y, cap), a * y)
    y = y[:, :, :ho // 2 * 2, :wo // 2 * 2].reshape(n, o, ho // 2, 2, wo // 2, 2)
    return y.max(axis=(3, 5))


def conv_relu_pool_layers(x, w, b, pad, steps):
    """The same computation op by op, as the layers run it."""
    y = fnn.ops.conv2d_forward(x, w, b, 1, pad)
    for kind, a, cap in steps:
        y = fnn.ops.activation_forward(kind, y, a, cap)
    return fnn.ops.max_pool2d_forward(y, 2, 2, 0, False)[0]


@pytest.mark.parametrize("shape", POOLED)
@pytest.mark.parametrize("steps", sorted(RELUS))
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
def test_pooled_conv_block_is_the_layers_bit_for_bit(shape, steps, dtype, tol):
    n, c, o, h, wd, k, pad = shape
    g = rng(sum(shape))
    x = g.standard_normal((n, c, h, wd)).astype(dtype)
    w = g.standard_normal((o, c, k, k)).astype(dtype)
    b = g.standard_normal(o).astype(dtype)
    threads = fnn.get_num_threads()
    try:
        for bias in (b, None):
            results = []
            for t in (1, 2):
                fnn.set_num_threads(t)
                results.append(fnn.ops.conv_block_forward(x, w, bias, 1, pad, 1, 1, RELUS[steps], ("max", 2, 2, 0)))
            expected = conv_relu_pool_layers(x, w, bias, pad, RELUS[steps])
            assert results[0].tobytes() == results[1].tobytes() == expected.tobytes()
            scale = np.sqrt(c * k * k)  # the size of the sums
            np.testing.assert_allclose(results[0], conv_relu_pool_oracle(x, w, bias, pad, RELUS[steps]),
                                       rtol=tol, atol=tol * scale)
    finally:
        fnn.set_num_threads(threads)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pooled_conv_block_with_infinities_and_nan_is_the_layers(dtype):
    """relu(−inf) is 0·(−inf) = NaN and NaN wins the pooling: the register path must rerun such images the
    layers' way (and keep the others on the fast path)."""
    g = rng(30)
    for trial in range(24):
        x = g.standard_normal((4, 2, 12, 12)).astype(dtype)
        w = g.standard_normal((5, 2, 3, 3)).astype(dtype)
        b = g.standard_normal(5).astype(dtype)
        for _ in range(3):
            x.flat[g.integers(x.size)] = g.choice([np.nan, np.inf, -np.inf, 1e38, -1e38])
        if trial % 3 == 0:
            w.flat[g.integers(w.size)] = g.choice([np.inf, -np.inf, np.nan])
        for steps in RELUS.values():
            y = fnn.ops.conv_block_forward(x, w, b, 1, 1, 1, 1, steps, ("max", 2, 2, 0))
            expected = conv_relu_pool_layers(x, w, b, 1, steps)
            # NaN where the layers give NaN (its sign and payload may differ: compilers commute the operands
            # of a multiply or add, which picks the NaN that propagates), every other value bit for bit.
            nan = np.isnan(expected)
            assert np.array_equal(np.isnan(y), nan) and y[~nan].tobytes() == expected[~nan].tobytes()


def test_lenet_eval_plan_with_batch_norm_matches_the_layers():
    fnn.manual_seed(40)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(16 * 7 * 7, 32), nn.ReLU(), nn.Linear(32, 10))
    x = rng(41).standard_normal((20, 1, 28, 28)).astype(np.float32)
    trained_a_little(model, x)
    y = model(x)
    assert step_kinds(model) == ["_ConvBlock", "_ConvBlock", "_FlattenedTail"]
    np.testing.assert_allclose(y, layer_by_layer(model, x), rtol=2e-5, atol=2e-5)
    model.double()
    np.testing.assert_allclose(model(x.astype(np.float64)), layer_by_layer(model, x.astype(np.float64)),
                               rtol=1e-12, atol=1e-12)
