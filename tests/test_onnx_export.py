"""fastnn.onnx.export: every layer alone and the models of test_graph.py, run in onnxruntime at a batch size
other than the export's, equal to fastnn's eval output at float32 tolerance."""
import subprocess
import sys

import numpy as np
import pytest

import fastnn as fnn
from fastnn import nn
from fastnn.nn import functional as F

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from harness import load_example  # noqa: E402
from test_graph import Net, RecurrentHead, TwoTower  # noqa: E402


def rng(seed):
    return np.random.default_rng(seed)


def run_ort(path, *inputs):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    return sess.run(None, dict(zip(names, inputs)))


def check(model, tmp_path, inputs, export_inputs=None, dynamic_axes=None, rtol=1e-4, atol=1e-5, examples=False):
    """Exports at the shapes of export_inputs (default: batch 2), runs `inputs` in onnxruntime, compares.
    examples: export with export_inputs as the example arrays rather than their shapes."""
    model.eval()
    export_inputs = export_inputs or [x[:2] for x in inputs]
    path = tmp_path / "m.onnx"
    if examples:
        proto = fnn.onnx.export(model, path, example_inputs=export_inputs, dynamic_axes=dynamic_axes)
    else:
        proto = fnn.onnx.export(model, path, input_shape=[x.shape for x in export_inputs],
                                dtype=[x.dtype for x in export_inputs], dynamic_axes=dynamic_axes)
    want = model(*inputs)
    want = list(want) if isinstance(want, tuple) else [want]
    flat = []
    for w in want:
        if isinstance(w, tuple):
            for v in w:
                flat.extend(v if isinstance(v, tuple) else (v,))
        else:
            flat.append(w)
    got = run_ort(path, *inputs)
    assert len(got) == len(flat)
    for g, w in zip(got, flat):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)
    return proto


def x32(shape, seed=0):
    return rng(seed).standard_normal(shape).astype(np.float32)


LAYERS = [
    (lambda: nn.Linear(6, 4), (5, 6)),
    (lambda: nn.Linear(6, 4, bias=False), (5, 3, 6)),
    (lambda: nn.Conv1d(3, 4, 3, stride=2, padding=1), (5, 3, 11)),
    (lambda: nn.Conv2d(3, 4, 3, padding=1, dilation=1, groups=1), (5, 3, 8, 8)),
    (lambda: nn.Conv2d(4, 4, (3, 2), groups=2, padding="same"), (5, 4, 7, 6)),
    (lambda: nn.MaxPool1d(2), (5, 3, 8)),
    (lambda: nn.MaxPool2d(3, stride=2, padding=1), (5, 3, 9, 9)),
    (lambda: nn.AvgPool1d(2), (5, 3, 8)),
    (lambda: nn.AvgPool2d(2, stride=2), (5, 3, 8, 8)),
    (lambda: nn.AdaptiveAvgPool2d(1), (5, 3, 6, 6)),
    (lambda: nn.AdaptiveAvgPool2d(2), (5, 3, 6, 6)),
    (lambda: nn.LayerNorm(6), (5, 4, 6)), (lambda: nn.GroupNorm(2, 4), (5, 4, 3, 3)), (lambda: nn.GroupNorm(2, 4), (5, 4)),
    (lambda: nn.Dropout(0.5), (5, 6)),
    (lambda: nn.Dropout2d(0.5), (5, 2, 3, 3)),
    (lambda: nn.Identity(), (5, 6)),
    (lambda: nn.Flatten(), (5, 2, 3, 4)),
    (lambda: nn.Unflatten(1, (2, 3)), (5, 6)),
    (lambda: nn.PReLU(3), (5, 3, 4, 4)),
    (lambda: nn.ReLU(), (5, 6)), (lambda: nn.ReLU6(), (5, 6)), (lambda: nn.LeakyReLU(0.2), (5, 6)),
    (lambda: nn.ELU(0.7), (5, 6)), (lambda: nn.SELU(), (5, 6)), (lambda: nn.Sigmoid(), (5, 6)),
    (lambda: nn.Hardsigmoid(), (5, 6)), (lambda: nn.Tanh(), (5, 6)), (lambda: nn.Softplus(beta=2.0), (5, 6)),
    (lambda: nn.Softsign(), (5, 6)), (lambda: nn.SiLU(), (5, 6)), (lambda: nn.GELU(), (5, 6)),
    (lambda: nn.GELU(approximate="tanh"), (5, 6)), (lambda: nn.Threshold(0.1, -2.0), (5, 6)),
    (lambda: nn.Softmax(dim=1), (5, 6)), (lambda: nn.LogSoftmax(dim=-1), (5, 6)),
    (lambda: nn.Maxout(6, 4, pieces=3), (5, 6)), (lambda: nn.LocalResponseNorm(3, alpha=0.1, k=1.5), (5, 6, 4, 4)),
    (lambda: nn.Interaction("dot"), (5, 4, 3)), (lambda: nn.Interaction("dot", self_interaction=True), (5, 4, 3)),
    (lambda: nn.Interaction("concat"), (5, 4, 3)), (lambda: nn.Interaction("mean"), (5, 4, 3)),
    (lambda: nn.Interaction("max"), (5, 4, 3)),
    (lambda: nn.WeightNorm(nn.Linear(6, 4)), (5, 6)), (lambda: nn.WeightNorm(nn.Conv2d(2, 3, 3), dim=None), (5, 2, 6, 6)),
]


@pytest.mark.parametrize("make,shape", LAYERS, ids=[repr(m()) for m, _ in LAYERS])
def test_each_layer_alone(make, shape, tmp_path):
    fnn.manual_seed(0)
    check(make(), tmp_path, [x32(shape) * 3])


@pytest.mark.parametrize("cls", [nn.BatchNorm1d, nn.BatchNorm2d])
def test_batch_norm_exports_with_its_running_statistics(cls, tmp_path):
    fnn.manual_seed(0)
    bn = cls(3)
    shape = (6, 3) if cls is nn.BatchNorm1d else (6, 3, 4, 4)
    bn.train()
    for s in range(3):  # running statistics move away from 0 and 1
        bn(x32(shape, s) * 2 + 1)
    proto = check(bn, tmp_path, [x32(shape, 9)])
    assert [n.op_type for n in proto.graph.node if n.op_type != "Identity"] == ["BatchNormalization"]
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}
    np.testing.assert_array_equal(inits["running_mean"], bn.running_mean)


def test_embedding_takes_integer_ids(tmp_path):
    fnn.manual_seed(0)
    check(nn.Embedding(10, 4), tmp_path, [rng(0).integers(0, 10, (5, 3))])


@pytest.mark.parametrize("mode", ["sum", "mean"])
@pytest.mark.parametrize("pad", [None, 0])
def test_embedding_bag_of_fixed_size_bags(mode, pad, tmp_path):
    fnn.manual_seed(0)
    ids = rng(0).integers(0, 10, (6, 4))
    ids[0] = 0  # a bag of padding only (when padding_idx=0): zeros
    check(nn.EmbeddingBag(10, 4, mode=mode, padding_idx=pad), tmp_path, [ids])


def test_embedding_bag_with_per_sample_weights(tmp_path):
    fnn.manual_seed(0)
    bag = nn.EmbeddingBag(10, 4, mode="sum", padding_idx=3)

    class Weighted(nn.Module):
        def __init__(self):
            super().__init__()
            self.bag = bag

        def forward(self, ids, w):
            return self.bag(ids, None, w)

    check(Weighted(), tmp_path, [rng(0).integers(0, 10, (6, 4)), x32((6, 4), 1)])


@pytest.mark.parametrize("opset", [18, 20])
def test_later_opsets(opset, tmp_path):
    fnn.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Maxout(8, 3, pieces=2))
    path = tmp_path / "m.onnx"
    proto = fnn.onnx.export(model, path, input_shape=(2, 6), opset=opset)
    assert proto.opset_import[0].version == opset
    x = x32((7, 6))
    np.testing.assert_allclose(run_ort(path, x)[0], model.eval()(x), rtol=1e-4, atol=1e-5)


def test_sequential_cnn_parameter_names_and_dynamic_batch(tmp_path):
    fnn.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Dropout(0.3), nn.Flatten(), nn.Linear(4 * 4 * 4, 10))
    proto = check(model, tmp_path, [x32((7, 1, 8, 8))])
    inits = {i.name for i in proto.graph.initializer}
    assert {n for n, _ in model.named_parameters()} <= inits
    assert {"1.running_mean", "1.running_var"} <= inits
    assert "Dropout" not in {n.op_type for n in proto.graph.node}
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    onnx.checker.check_model(proto, full_check=True)


def test_residual_block_model(tmp_path):
    fnn.manual_seed(0)
    model = Net()
    model(x32((3, 2, 4, 4)))  # batch-norm statistics move
    check(model, tmp_path, [x32((5, 2, 4, 4), 1)])


def test_two_inputs_two_outputs_dlrm_like(tmp_path):
    fnn.manual_seed(0)
    model = TwoTower()
    check(model, tmp_path, [x32((6, 3)), rng(1).integers(0, 10, (6, 5))])


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU, nn.RNN])
@pytest.mark.parametrize("batch_first,read", [(True, "h"), (False, "out"), (True, "out")])
def test_recurrent_classifiers(cls, batch_first, read, tmp_path):
    fnn.manual_seed(0)
    model = RecurrentHead(cls, batch_first, bidirectional=read == "out", read=read)
    x = x32((6, 5, 3) if batch_first else (5, 6, 3))
    if batch_first:
        check(model, tmp_path, [x], export_inputs=[x[:2, :4]], dynamic_axes={0: {0: "batch", 1: "seq"}})
    else:
        check(model, tmp_path, [x], export_inputs=[x[:4, :2]], dynamic_axes={0: {0: "seq", 1: "batch"}})


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU, nn.RNN])
def test_recurrent_layer_outputs_h_n_and_c_n_with_initial_state(cls, tmp_path):
    fnn.manual_seed(0)
    kwargs = {"nonlinearity": "relu"} if cls is nn.RNN else {}
    rnn = cls(3, 4, num_layers=2, bidirectional=True, **kwargs)

    class WithState(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = rnn

        def forward(self, x, h0, c0):
            return self.rnn(x, (h0, c0) if cls is nn.LSTM else h0)

    model = WithState()
    x, h0, c0 = x32((5, 6, 3)), x32((4, 6, 4), 1), x32((4, 6, 4), 2)
    check(model, tmp_path, [x, h0, c0], export_inputs=[x[:, :2], h0[:, :2], c0[:, :2]],
          dynamic_axes={0: {1: "batch"}, 1: {1: "batch"}, 2: {1: "batch"}})


class Functional(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x, y):
        a = self.fc(x) * 2.0 - y / 3.0 + 1.0
        b = F.matmul(a.reshape(a.shape[0], 2, 2), F.transpose(y.reshape(y.shape[0], 2, 2), 1, 2))
        c = F.cat([F.flatten(b, 1), a], dim=1)
        d = F.stack([a, y], dim=1).permute(0, 2, 1)
        e = F.softmax(c, dim=-1) + F.log_softmax(c, dim=1)
        s = F.sum(d, dim=2) + F.mean(d, dim=(1, 2), keepdim=False)[:, None]
        return e[:, 1:7:2], s[..., -1], F.sigmoid(a[:, ::-1]) + F.tanh(F.gelu(y)) + F.silu(F.leaky_relu(a, 0.1))


def test_shared_layer_and_parameters_and_buffers_used_directly(tmp_path):
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)
            self.pos = nn.Parameter(rng(7).standard_normal((1, 3)).astype(np.float32))
            self.register_buffer("shift", np.full(3, 0.5, np.float32))

        def forward(self, x):
            return self.fc(F.tanh(self.fc(x))) * self.pos + self.shift

    fnn.manual_seed(0)
    proto = check(Scaled(), tmp_path, [x32((5, 3))])
    assert {"fc.weight", "fc.bias", "pos", "shift"} <= {i.name for i in proto.graph.initializer}
    assert len(proto.graph.initializer) == len({i.name for i in proto.graph.initializer})


def test_additive_attention_with_and_without_mask(tmp_path):
    fnn.manual_seed(0)
    att = nn.AdditiveAttention(4, 3, 5)
    q, k = x32((6, 4)), x32((6, 7, 3), 1)
    check(att, tmp_path, [q, k])
    mask = rng(2).random((6, 7)) < 0.7
    mask[:, 0] = True

    class Masked(nn.Module):
        def __init__(self):
            super().__init__()
            self.att = att

        def forward(self, q, k, m):
            return self.att(q, k, m)

    check(Masked(), tmp_path, [q, k, mask])


@pytest.mark.parametrize("cell,pad", [("gru", None), ("lstm", 0)])
def test_seq2seq_decoder_scan_has_a_dynamic_target_length(cell, pad, tmp_path):
    fnn.manual_seed(0)
    model = nn.Seq2Seq(11, 9, 5, 6, cell=cell, src_pad_idx=pad)
    src, tgt = rng(0).integers(1, 11, (5, 7)), rng(1).integers(0, 9, (5, 4))
    src[:, -2:] = 0  # padding (masked out when src_pad_idx=0)
    axes = {0: {0: "batch", 1: "src_len"}, 1: {0: "batch", 1: "tgt_len"}}
    proto = check(model, tmp_path, [src, tgt], dynamic_axes=axes, examples=True)  # real tokens as the example
    assert [n.op_type for n in proto.graph.node].count("Scan") == 1
    for n, s_len, t_len in ((3, 5, 1), (6, 9, 8)):  # other batch, source and target lengths
        s2, t2 = rng(n).integers(1, 11, (n, s_len)), rng(n + 1).integers(0, 9, (n, t_len))
        np.testing.assert_allclose(run_ort(tmp_path / "m.onnx", s2, t2)[0], model(s2, t2), rtol=1e-4, atol=1e-5)
    loaded = fnn.onnx.load(tmp_path / "m.onnx")  # the Scan comes back as a loop (tests/test_onnx_scan.py)
    np.testing.assert_allclose(loaded(s2, t2), model(s2, t2), rtol=1e-5, atol=1e-5)


def test_functional_ops(tmp_path):
    fnn.manual_seed(0)
    check(Functional(), tmp_path, [x32((6, 4)), x32((6, 4), 1)])


def test_containers_residual_parallel_merges_and_reshape(tmp_path):
    fnn.manual_seed(0)
    model = nn.Sequential(nn.Residual(nn.Sequential(nn.Linear(4, 4), nn.ReLU())),
                          nn.Parallel(nn.Linear(4, 3), nn.Tanh(), merge="cat"), nn.Reshape(7, 1),
                          nn.Parallel(nn.Identity(), nn.Sigmoid(), merge="add"), nn.Flatten())

    class Merges(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.add, self.mul = model, nn.Add(), nn.Mul()
            self.cat, self.stack = nn.Concat(dim=1), nn.Stack(dim=1)

        def forward(self, x):
            h = self.body(x)
            return self.stack(self.cat(self.add(h, h), self.mul(h, h)), self.cat(h, h))

    check(Merges(), tmp_path, [x32((5, 4))])


def test_graph_keras_style(tmp_path):
    fnn.manual_seed(0)
    inp = nn.Input(shape=(3, 6, 6))
    h = nn.ReLU()(nn.Conv2d(3, 3, 3, padding=1)(inp))
    model = nn.Graph(inputs=inp, outputs=nn.Linear(3 * 6 * 6, 4)(nn.Flatten()(h + inp)))
    check(model, tmp_path, [x32((5, 3, 6, 6))])


def test_unsupported_layer_is_named_and_no_file_written(tmp_path):
    model = nn.Sequential(nn.Linear(4, 4), nn.GatedFeedbackRNN(4, 4))
    path = tmp_path / "m.onnx"
    with pytest.raises(ValueError, match=r"GatedFeedbackRNN.*layer '1'"):
        fnn.onnx.export(model, path, input_shape=(5, 2, 4))
    assert not path.exists()


def test_opset_below_17_is_refused(tmp_path):
    with pytest.raises(ValueError, match="opset"):
        fnn.onnx.export(nn.Linear(2, 2), tmp_path / "m.onnx", input_shape=(1, 2), opset=16)


def test_import_fastnn_does_not_import_onnx_and_missing_onnx_says_how_to_install():
    code = ("import sys; import fastnn as fnn; assert 'onnx' not in sys.modules, 'imported'; "
            "sys.modules['onnx'] = None\n"
            "try:\n    fnn.onnx.export(fnn.nn.Linear(2, 2), 'x.onnx', input_shape=(1, 2))\n"
            "except ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=__import__("os").environ | {"PYTHONPATH": __import__("os").pathsep.join(sys.path)})
    assert out.returncode == 0, out.stderr
    assert 'pip install "fastnn[onnx]"' in out.stdout


def test_digits_example_exports_and_onnxruntime_agrees(tmp_path):
    pytest.importorskip("sklearn")
    module = load_example("onnx_digits")
    res = module.main(epochs=1, out=str(tmp_path / "digits.onnx"), repeats=1, verbose=0)
    assert res["max_diff"] < 1e-4 and res["agree"] == 1.0
    assert res["accuracy_fastnn"] == res["accuracy_onnxruntime"] > 0.5
