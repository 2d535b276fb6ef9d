"""fastnn.onnx.load on ONNX Scan: Seq2Seq's teacher-forced decoder (export_seq2seq.py) comes back as a trainable
loop (import_scan.py) with the original parameter names, outputs and gradients."""
import numpy as np
import pytest

import fastnn as fnn
from fastnn import nn

pytest.importorskip("onnx")

AXES = {0: {0: "batch", 1: "src_len"}, 1: {0: "batch", 1: "tgt_len"}}


def rng(seed):
    return np.random.default_rng(seed)


def exported(cell, pad, tmp_path):
    fnn.manual_seed(0)
    model = nn.Seq2Seq(11, 9, 5, 6, cell=cell, src_pad_idx=pad).eval()
    src, tgt = rng(0).integers(1, 11, (2, 7)), rng(1).integers(0, 9, (2, 4))
    src[:, -2:] = 0
    path = tmp_path / "s2s.onnx"
    fnn.onnx.export(model, path, example_inputs=[src, tgt], dynamic_axes=AXES)
    return model, path


@pytest.mark.parametrize("cell,pad", [("gru", None), ("lstm", 0), ("gru", 0)])
def test_seq2seq_scan_loads_with_the_same_outputs_and_names(cell, pad, tmp_path):
    model, path = exported(cell, pad, tmp_path)
    g = fnn.onnx.load(path)
    assert sorted(n for n, _ in g.named_parameters()) == sorted(n for n, _ in model.named_parameters())
    for n, s_len, t_len in ((3, 5, 1), (6, 9, 8), (1, 4, 3), (2, 7, 4)):  # batch, source and target lengths
        src, tgt = rng(n).integers(1, 11, (n, s_len)), rng(n + 1).integers(0, 9, (n, t_len))
        if pad is not None:
            src[:, -1] = pad
        out = g(src, tgt)
        assert out.shape == (n, t_len, 9)
        np.testing.assert_allclose(out, model(src, tgt), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cell,pad", [("gru", None), ("lstm", 0)])
def test_seq2seq_scan_gradients_match_the_original(cell, pad, tmp_path):
    model, path = exported(cell, pad, tmp_path)
    g = fnn.onnx.load(path)
    model.train(), g.train()
    src, tgt = rng(5).integers(1, 11, (3, 6)), rng(6).integers(0, 9, (3, 5))
    w = rng(7).standard_normal((3, 5, 9)).astype(np.float32)
    for m in (model, g):
        m.zero_grad()
        m(src, tgt)
        m.backward(w)
    want = dict(model.named_parameters())
    for name, p in g.named_parameters():
        np.testing.assert_allclose(p.grad, want[name].grad, rtol=1e-4, atol=1e-5, err_msg=name)
        assert np.abs(p.grad).max() > 0, name


def test_seq2seq_scan_trains(tmp_path):
    _, path = exported("lstm", 0, tmp_path)
    g = fnn.onnx.load(path).train()
    src, tgt = rng(2).integers(1, 11, (8, 6)), rng(3).integers(0, 9, (8, 5))
    y = rng(4).integers(0, 9, (8 * 5,))
    loss_fn = nn.CrossEntropyLoss()
    opt = fnn.optim.SGD(g.parameters(), lr=0.3, momentum=0.9)
    losses = []
    for _ in range(8):
        opt.zero_grad()
        losses.append(float(loss_fn(g(src, tgt).reshape(-1, 9), y)))
        g.backward(loss_fn.backward().reshape(8, 5, 9))
        opt.step()
    assert losses[-1] < losses[0] * 0.9, losses


@pytest.mark.parametrize("attr,value", [("scan_input_directions", [1]), ("scan_output_directions", [1]),
                                        ("scan_input_axes", [-1])])
def test_scan_with_unsupported_attributes_is_refused_naming_the_node(attr, value, tmp_path):
    import onnx
    from onnx import helper
    _, path = exported("gru", None, tmp_path)
    proto = onnx.load(str(path))
    scan = next(n for n in proto.graph.node if n.op_type == "Scan")
    kept = [a for a in scan.attribute if a.name != attr]
    del scan.attribute[:]
    scan.attribute.extend(kept + [helper.make_attribute(attr, value)])
    bad = tmp_path / "bad.onnx"
    onnx.save(proto, str(bad))
    with pytest.raises(ValueError, match=rf"Scan node '{scan.name}' has {attr}"):
        fnn.onnx.load(bad)


def test_loaded_scan_graph_saves_and_loads(tmp_path):
    _, path = exported("lstm", 0, tmp_path)
    g = fnn.onnx.load(path)
    fnn.save(g, tmp_path / "g.fnn")
    h = fnn.load(tmp_path / "g.fnn")
    src, tgt = rng(8).integers(1, 11, (4, 6)), rng(9).integers(0, 9, (4, 3))
    np.testing.assert_array_equal(h(src, tgt), g(src, tgt))
    assert [n for n, _ in h.named_parameters()] == [n for n, _ in g.named_parameters()]
