"""fastnn.save / fastnn.load: safetensors weights + JSON architecture, no pickle, clear errors."""
import json
import os
from collections import OrderedDict

import numpy as np
import pytest

import fastnn as fnn
from fastnn import safetensors as st
from fastnn import serialization
from fastnn.nn import Dropout, Flatten, Identity, Linear, Module, Parameter, Sequential

ACTIVATIONS = ["ReLU", "ReLU6", "LeakyReLU", "PReLU", "ELU", "SELU", "Sigmoid", "Hardsigmoid", "Tanh",
               "Softmax", "LogSoftmax", "Softplus", "Softsign", "SiLU"]


@pytest.fixture(autouse=True)
def clean_registry(monkeypatch):
    """Each test starts with no user-registered classes (the registry is global)."""
    monkeypatch.setattr(serialization, "_user_classes", {})
    monkeypatch.setattr(serialization, "_user_names", {})


def _relu_or_identity():
    return fnn.nn.ReLU() if hasattr(fnn.nn, "ReLU") else Identity()


def _mlp():
    fnn.manual_seed(0)
    return Sequential(Linear(6, 16), _relu_or_identity(), Dropout(0.25), Linear(16, 16), Identity(),
                      Flatten(), Linear(16, 3))


def _assert_same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and sa[k].shape == sb[k].shape, k
        assert sa[k].tobytes() == sb[k].tobytes(), k


def _rng_input(shape, dtype=np.float32):
    return np.random.default_rng(123).standard_normal(shape).astype(dtype)


# -------------------------------------------------------------------------------------------------------
# round trips
# -------------------------------------------------------------------------------------------------------
def test_roundtrip_mlp_bit_exact(tmp_path):
    model = _mlp().eval()
    x = _rng_input((9, 6))
    y = model(x)
    path = tmp_path / "model.fnn"
    fnn.save(model, path)
    loaded = fnn.load(path)

    assert type(loaded) is Sequential and [type(m) for m in loaded] == [type(m) for m in model]
    assert repr(loaded) == repr(model)
    _assert_same_state(model, loaded)
    assert loaded.training is False and all(not m.training for m in loaded.modules())
    y2 = loaded(x)
    assert y2.dtype == np.float32 and y2.tobytes() == y.tobytes()
    # the weights really came from the file: a freshly initialised model computes something else
    fnn.manual_seed(99)
    fresh = Sequential(Linear(6, 16), _relu_or_identity(), Dropout(0.25), Linear(16, 16), Identity(),
                       Flatten(), Linear(16, 3)).eval()
    assert not np.array_equal(fresh(x), y)


def test_roundtrip_float64_stays_float64(tmp_path):
    model = _mlp().double().eval()
    x = _rng_input((4, 6), np.float64)
    y = model(x)
    fnn.save(model, tmp_path / "m64.fnn")
    loaded = fnn.load(tmp_path / "m64.fnn")
    assert loaded.dtype == np.float64
    assert all(p.dtype == np.float64 for p in loaded.parameters())
    assert st.read_metadata(tmp_path / "m64.fnn")["fastnn.dtype"] == "float64"
    _assert_same_state(model, loaded)
    y2 = loaded(x)
    assert y2.dtype == np.float64 and y2.tobytes() == y.tobytes()


def test_roundtrip_nested_and_named_sequentials(tmp_path):
    fnn.manual_seed(1)
    inner = Sequential(OrderedDict([("fc", Linear(5, 4)), ("act", _relu_or_identity())]))
    model = Sequential(Sequential(Linear(3, 5), Sequential(Identity())), inner, Flatten(start_dim=1))
    model.append(Linear(4, 2, bias=False))  # added after construction: saved from the current children
    path = tmp_path / "nested.fnn"
    fnn.save(model, path)
    loaded = fnn.load(path)
    assert list(loaded.state_dict()) == ["0.0.weight", "0.0.bias", "1.fc.weight", "1.fc.bias", "3.weight"]
    assert list(loaded[1]._modules) == ["fc", "act"]
    assert loaded[3].bias is None
    _assert_same_state(model, loaded)
    x = _rng_input((7, 3))
    assert loaded(x).tobytes() == model(x).tobytes()


@pytest.mark.parametrize("name, args, kwargs", [(n, (), {}) for n in ACTIVATIONS] + [
    ("ReLU", (), {"max_value": 3.0}), ("LeakyReLU", (0.2,), {"max_value": 4.0}),
    ("PReLU", (6,), {"init": 0.1}), ("ELU", (0.7,), {}), ("Softmax", (), {"dim": 1}),
    ("Softplus", (2.0, 10.0), {}), ("Threshold", (0.1, -1.0), {}), ("Maxout", (6, 6), {"pieces": 3}),
])
def test_roundtrip_each_activation(tmp_path, name, args, kwargs):
    cls = getattr(fnn.nn, name)
    fnn.manual_seed(2)
    model = Sequential(Linear(4, 6), cls(*args, **kwargs), Linear(6, 2)).eval()
    fnn.save(model, tmp_path / "act.fnn")
    loaded = fnn.load(tmp_path / "act.fnn")
    assert type(loaded[1]) is cls and repr(loaded[1]) == repr(model[1])
    _assert_same_state(model, loaded)  # the weights are bit-exact
    x = _rng_input((5, 4))
    # Outputs are compared to 1e-6, not bit for bit: some element-wise kernels (Sigmoid, SiLU, Softmax at
    # the time of writing) round differently depending on the address of their input array, so even the
    # same model called twice can differ in the last bit.
    np.testing.assert_allclose(loaded(x), model(x), rtol=1e-6, atol=1e-7)


def test_training_mode_and_frozen_parameters_restored(tmp_path):
    model = _mlp()
    model[0].weight.requires_grad = False
    model[3].eval()
    fnn.save(model, tmp_path / "m.fnn")
    loaded = fnn.load(tmp_path / "m.fnn")
    assert loaded.training and loaded[2].training and not loaded[3].training
    assert [n for n, p in loaded.named_parameters() if not p.requires_grad] == ["0.weight"]


def test_save_and_load_do_not_consume_random_state(tmp_path):
    model = _mlp()
    np.random.seed(11)
    fnn.manual_seed(5)
    expected = fnn.random.generator().random(4), np.random.random(4)
    np.random.seed(11)
    fnn.manual_seed(5)
    fnn.save(model, tmp_path / "m.fnn")  # rebuilds the model once to check it (check=True)
    fnn.load(tmp_path / "m.fnn")         # builds it again
    assert np.array_equal(fnn.random.generator().random(4), expected[0])
    assert np.array_equal(np.random.random(4), expected[1])


# -------------------------------------------------------------------------------------------------------
# custom modules and the registry
# -------------------------------------------------------------------------------------------------------
class Head(Module):
    """A custom module with every kind of JSON-able argument, a nested module argument and a buffer."""

    def __init__(self, sizes, body, *, gain=0.5, tags=("a", "b"), options=None, limit=float("inf")):
        super().__init__()
        self.sizes, self.gain, self.tags, self.options, self.limit = sizes, gain, tags, options, limit
        self.body = body
        self.fc = Linear(sizes[0], sizes[1])
        self.scale = Parameter(np.full(sizes[1], gain, np.float32))
        self.register_buffer("steps", np.array(7, dtype=np.int64))
        self.register_buffer("mask", np.array([True, False, True]))

    def forward(self, x):
        return self.fc(self.body(x)) * self.scale.data


def test_registered_custom_module_roundtrip(tmp_path):
    fnn.register_module(Head)
    fnn.manual_seed(3)
    model = Sequential(Head([4, 3], Sequential(Linear(4, 4)), gain=2.0, tags=("x", 1, None),
                            options={"depth": [1, 2], "flag": True}), Identity())
    model[0].steps[...] = 42
    path = tmp_path / "head.fnn"
    fnn.save(model, path)
    loaded = fnn.load(path)
    head = loaded[0]
    assert type(head) is Head
    assert head.sizes == [4, 3] and head.gain == 2.0 and head.limit == float("inf")
    assert head.tags == ("x", 1, None) and isinstance(head.tags, tuple)
    assert head.options == {"depth": [1, 2], "flag": True}
    assert head.steps.dtype == np.int64 and int(head.steps) == 42
    assert head.mask.dtype == np.bool_
    _assert_same_state(model, loaded)
    x = _rng_input((2, 4))
    assert loaded(x).tobytes() == model(x).tobytes()


def test_register_module_as_decorator_with_name(tmp_path):
    @fnn.register_module(name="MyBlock")
    class Block(Module):
        def __init__(self, n):
            super().__init__()
            self.fc = Linear(n, n)

        def forward(self, x):
            return self.fc(x)

    assert serialization._user_classes["MyBlock"] is Block
    fnn.save(Block(3), tmp_path / "b.fnn")
    arch = json.loads(st.read_metadata(tmp_path / "b.fnn")["fastnn.architecture"])
    assert arch == {"class": "MyBlock", "args": {"n": 3}}
    assert type(fnn.load(tmp_path / "b.fnn")) is Block


def test_register_module_errors():
    with pytest.raises(TypeError, match="subclass"):
        fnn.register_module(int)

    class Linear(Module):  # noqa: F811  (clashes with fastnn's own Linear)
        pass

    with pytest.raises(ValueError, match="'Linear' is fastnn's"):
        fnn.register_module(Linear)
    fnn.register_module(Linear, name="MyLinear")  # fine under another name

    class Other(Module):
        pass

    fnn.register_module(Other)

    class Other2(Module):
        pass

    with pytest.raises(ValueError, match="already registered"):
        fnn.register_module(Other2, name="Other")

    def define():  # the same class defined again (a re-run notebook cell): the new definition wins
        class Again(Module):
            pass
        return Again

    first, second = define(), define()
    fnn.register_module(first)
    fnn.register_module(second)
    assert serialization._user_classes["Again"] is second


def test_unregistered_custom_module_cannot_be_saved(tmp_path):
    class Secret(Module):
        def __init__(self):
            super().__init__()
            self.fc = Linear(2, 2)

    path = tmp_path / "s.fnn"
    with pytest.raises(TypeError, match=r"register_module\(Secret\)") as err:
        fnn.save(Sequential(Identity(), Secret()), path)
    assert "module '1' (Secret)" in str(err.value)
    assert not path.exists() and os.listdir(tmp_path) == []
    # ... but its weights can always be saved as a plain state dict
    fnn.save_state_dict(Secret().state_dict(), path)
    assert list(fnn.load_state_dict(path)) == ["fc.weight", "fc.bias"]


def test_load_unknown_class_asks_for_registration(tmp_path, monkeypatch):
    fnn.register_module(Head)
    path = tmp_path / "head.fnn"
    fnn.save(Head([2, 2], Identity()), path)
    monkeypatch.setattr(serialization, "_user_classes", {})  # a new process that did not register Head
    with pytest.raises(ValueError, match=r"unknown module class 'Head'.*register_module") as err:
        fnn.load(path)
    assert str(path) in str(err.value)


def test_modified_after_construction_is_refused_at_save(tmp_path):
    fnn.register_module(Head)
    model = Head([3, 2], Identity())
    model.fc = Linear(3, 5)  # no longer what the constructor arguments describe
    with pytest.raises(ValueError, match="changed after construction"):
        fnn.save(model, tmp_path / "x.fnn")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("bad", [object(), np.zeros(3), lambda x: x, {1, 2}, b"bytes"])
def test_unjsonable_argument_raises_typeerror_naming_module_and_argument(tmp_path, bad):
    fnn.register_module(Head)
    model = Sequential(Linear(2, 2), Head([2, 2], Identity(), options={"nested": [1, bad]}))
    with pytest.raises(TypeError, match=r"module '1' \(Head\).*argument 'options'"):
        fnn.save(model, tmp_path / "x.fnn")


# -------------------------------------------------------------------------------------------------------
# the file is plain safetensors
# -------------------------------------------------------------------------------------------------------
def _minimal_parse(path):
    """An independent safetensors reader: json + numpy.frombuffer, nothing from fastnn."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    codes = {"F32": "<f4", "F64": "<f8", "I64": "<i8", "I32": "<i4", "U8": "u1", "BOOL": "?", "F16": "<f2"}
    meta = header.pop("__metadata__", {})
    tensors, spans = {}, []
    for name, info in header.items():
        b, e = info["data_offsets"]
        tensors[name] = np.frombuffer(data[b:e], dtype=codes[info["dtype"]]).reshape(info["shape"])
        spans.append((b, e))
    return tensors, meta, sorted(spans), len(data), n


def test_file_is_valid_safetensors(tmp_path):
    fnn.register_module(Head)
    model = Sequential(_mlp(), Head([3, 2], Identity()))
    path = tmp_path / "m.fnn"
    fnn.save(model, path)
    tensors, meta, spans, data_len, n = _minimal_parse(path)
    sd = model.state_dict()
    assert list(tensors) == list(sd)
    for k in sd:
        assert tensors[k].dtype == sd[k].dtype and np.array_equal(tensors[k], sd[k])
    # the byte ranges tile the data section; the data section starts 8-byte aligned
    assert spans[0][0] == 0 and spans[-1][1] == data_len
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    assert (8 + n) % 8 == 0
    assert meta["fastnn.format_version"] == "1" and meta["fastnn.version"] == fnn.__version__
    arch = json.loads(meta["fastnn.architecture"])
    assert arch["class"] == "Sequential"
    first = arch["args"]["modules"][0]["__module__"]["args"]["modules"][0]["__module__"]
    assert first == {"class": "Linear", "args": {"in_features": 6, "out_features": 16}}
    assert arch["args"]["modules"][1]["__module__"]["class"] == "Head"


def test_reference_safetensors_package_agrees(tmp_path):
    """Cross-check with Hugging Face's implementation (a test-only dependency): both read each other's files."""
    import safetensors.numpy as ref
    model = _mlp()
    fnn.save(model, tmp_path / "m.fnn")
    theirs = ref.load_file(str(tmp_path / "m.fnn"))
    for k, v in model.state_dict().items():
        assert np.array_equal(theirs[k], v)
    ref.save_file({"a": np.arange(4, dtype=np.int64), "h": np.ones((2, 2), np.float16)}, str(tmp_path / "r.st"))
    ours = fnn.load_state_dict(tmp_path / "r.st")
    assert ours["a"].tolist() == [0, 1, 2, 3] and ours["h"].dtype == np.float16


def test_save_state_dict_roundtrip_dtypes_and_metadata(tmp_path):
    sd = OrderedDict([
        ("w", np.arange(12, dtype=np.float32).reshape(3, 4)),
        ("d", np.linspace(0, 1, 5)),
        ("i64", np.array([-(2 ** 40), 3], dtype=np.int64)),
        ("i32", np.array([[1, -2]], dtype=np.int32)),
        ("u8", np.array([0, 255], dtype=np.uint8)),
        ("flags", np.array([True, False, True])),
        ("half", np.array([1.5, -2.25], dtype=np.float16)),
        ("scalar", np.array(3.25)),
        ("empty", np.zeros((0, 3), np.float32)),
        ("strided", np.arange(10.0)[::3]),
        ("bigendian", np.array([1.0, 2.0], dtype=">f8")),
    ])
    path = tmp_path / "sd.safetensors"
    fnn.save_state_dict(sd, path, metadata={"note": "hello", "n": "3"})
    loaded = fnn.load_state_dict(path)
    assert list(loaded) == list(sd)
    for k, v in sd.items():
        assert loaded[k].dtype == v.dtype.newbyteorder("="), k
        assert loaded[k].shape == v.shape and np.array_equal(loaded[k], v), k
        assert loaded[k].flags.writeable and loaded[k].flags.aligned
    assert st.read_metadata(path) == {"note": "hello", "n": "3"}


def test_save_state_dict_rejects_bad_input_without_writing(tmp_path):
    path = tmp_path / "x.st"
    with pytest.raises(TypeError, match="model.state_dict"):
        fnn.save_state_dict(Linear(2, 2), path)
    with pytest.raises(TypeError, match="metadata"):
        fnn.save_state_dict({"a": np.zeros(2)}, path, metadata={"n": 3})
    with pytest.raises(TypeError, match="'obj'.*object"):
        fnn.save_state_dict({"obj": np.array([None, 1], dtype=object)}, path)
    with pytest.raises(TypeError, match="complex"):
        fnn.save_state_dict({"c": np.zeros(2, np.complex64)}, path)
    with pytest.raises(ValueError, match="reserved"):
        fnn.save_state_dict({"__metadata__": np.zeros(2)}, path)
    assert os.listdir(tmp_path) == []


def test_state_dict_file_with_module_load_state_dict_strictness(tmp_path):
    fnn.manual_seed(4)
    src = Sequential(Linear(3, 4), Linear(4, 2))
    path = tmp_path / "w.safetensors"
    fnn.save_state_dict(src.state_dict(), path)

    dst = Sequential(Linear(3, 4), Linear(4, 2))
    dst.load_state_dict(fnn.load_state_dict(path))
    _assert_same_state(src, dst)

    with pytest.raises(KeyError, match=r"missing keys \['2.weight', '2.bias'\]"):
        Sequential(Linear(3, 4), Linear(4, 2), Linear(2, 2)).load_state_dict(fnn.load_state_dict(path))
    with pytest.raises(KeyError, match=r"unexpected keys \['1.weight', '1.bias'\]"):
        Sequential(Linear(3, 4)).load_state_dict(fnn.load_state_dict(path))
    with pytest.raises(ValueError, match=r"'1.weight' has shape \(2, 4\)"):
        Sequential(Linear(3, 4), Linear(4, 3)).load_state_dict(fnn.load_state_dict(path))
    partial = Sequential(Linear(3, 4))
    result = partial.load_state_dict(fnn.load_state_dict(path), strict=False)
    assert result.unexpected_keys == ["1.weight", "1.bias"] and result.missing_keys == []
    assert np.array_equal(partial[0].weight.data, src[0].weight.data)


def test_plain_weights_file_is_not_a_model(tmp_path):
    path = tmp_path / "w.safetensors"
    fnn.save_state_dict(Linear(2, 2).state_dict(), path)
    with pytest.raises(ValueError, match=r"no architecture metadata.*load_state_dict") as err:
        fnn.load(path)
    assert str(path) in str(err.value)


def test_model_file_also_loads_as_state_dict(tmp_path):
    model = _mlp()
    fnn.save(model, tmp_path / "m.fnn")
    sd = fnn.load_state_dict(tmp_path / "m.fnn")
    assert list(sd) == list(model.state_dict())


# -------------------------------------------------------------------------------------------------------
# atomic saves
# -------------------------------------------------------------------------------------------------------
def test_failed_save_leaves_existing_file_untouched(tmp_path, monkeypatch):
    path = tmp_path / "model.fnn"
    fnn.save(_mlp(), path)
    before = path.read_bytes()

    # 1. an argument that cannot be written: fails before anything is written
    fnn.register_module(Head)
    with pytest.raises(TypeError):
        fnn.save(Head([2, 2], Identity(), options=object()), path)
    assert path.read_bytes() == before

    # 2. the writer dies half way through the tensors
    calls = []

    def broken_write(f, arr):
        calls.append(arr.shape)
        if len(calls) == 3:
            f.write(b"\x00" * 5)
            raise OSError("disk full (simulated)")
        f.write(memoryview(arr).cast("B"))

    monkeypatch.setattr(st, "_write_array", broken_write)
    fnn.manual_seed(8)
    other = Sequential(Linear(6, 5), Linear(5, 5), Linear(5, 1))
    with pytest.raises(OSError, match="disk full"):
        fnn.save(other, path)
    assert len(calls) == 3
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.fnn"]  # no temporary file left behind
    calls.clear()
    with pytest.raises(OSError, match="disk full"):
        fnn.save_state_dict(other.state_dict(), tmp_path / "new.st")
    assert os.listdir(tmp_path) == ["model.fnn"]
    monkeypatch.undo()
    # and the original is still a loadable model
    _assert_same_state(_mlp(), fnn.load(path))


def test_save_overwrites_and_respects_umask(tmp_path):
    path = tmp_path / "m.fnn"
    fnn.save(Sequential(Linear(2, 2)), path)
    fnn.save(Sequential(Linear(2, 3)), path)
    assert fnn.load(path)[0].out_features == 3
    old = os.umask(0o022)
    try:
        fnn.save(Sequential(Linear(2, 2)), tmp_path / "perm.fnn")
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "perm.fnn").st_mode & 0o777 == 0o644


# -------------------------------------------------------------------------------------------------------
# corrupted and truncated files
# -------------------------------------------------------------------------------------------------------
def _craft(header, data=b"", raw_header=None, length=None):
    body = raw_header if raw_header is not None else json.dumps(header).encode()
    n = len(body) if length is None else length
    return n.to_bytes(8, "little") + body + data


F32x2 = np.array([1.0, 2.0], np.float32).tobytes()
CORRUPT = {
    "empty file": b"",
    "shorter than the length field": b"\x08\x00\x00",
    "absurd header length": (2 ** 63).to_bytes(8, "little") + b"{}",
    "header past end of file": _craft({}, length=1000),
    "invalid json": _craft(None, raw_header=b"{not json}   "),
    "invalid utf-8": _craft(None, raw_header=b'{"\xff": 1}'),
    "header not an object": _craft([1, 2]),
    "duplicate names": _craft(None, F32x2 * 2, raw_header=b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
                                                         b'"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}'),
    "unknown dtype": _craft({"a": {"dtype": "F8", "shape": [2], "data_offsets": [0, 8]}}, F32x2),
    "missing dtype": _craft({"a": {"shape": [2], "data_offsets": [0, 8]}}, F32x2),
    "entry not an object": _craft({"a": [0, 8]}, F32x2),
    "negative dimension": _craft({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, F32x2),
    "shape not a list": _craft({"a": {"dtype": "F32", "shape": 2, "data_offsets": [0, 8]}}, F32x2),
    "offsets out of range": _craft({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 80]}}, F32x2),
    "offsets reversed": _craft({"a": {"dtype": "F32", "shape": [0], "data_offsets": [8, 0]}}, F32x2),
    "offsets malformed": _craft({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0]}}, F32x2),
    "shape x itemsize != bytes": _craft({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, F32x2),
    "huge shape, zero bytes": _craft({"a": {"dtype": "F32", "shape": [2 ** 70, 0], "data_offsets": [0, 0]}}),
    "overlapping tensors": _craft({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                   "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, F32x2 + b"\0" * 4),
    "gap between tensors": _craft({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                                   "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}}, F32x2 + b"\0" * 4),
    "trailing bytes not covered": _craft({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, F32x2 + b"xx"),
    "metadata not str": _craft({"__metadata__": {"k": 1}}),
    "bool byte not 0/1": _craft({"a": {"dtype": "BOOL", "shape": [2], "data_offsets": [0, 2]}}, b"\x01\x07"),
}


@pytest.mark.parametrize("case", list(CORRUPT))
def test_corrupted_files_raise_valueerror_naming_the_file(tmp_path, case):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(CORRUPT[case])
    for reader in (fnn.load_state_dict, fnn.load):
        with pytest.raises(ValueError) as err:
            reader(path)
        assert str(path) in str(err.value)
        assert "not a valid safetensors file" in str(err.value)


def test_valid_crafted_file_is_accepted():
    # the crafting helper itself is fine: the same shapes with consistent offsets load
    tensors, meta = st.deserialize(_craft({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                           "z": {"dtype": "I64", "shape": [0, 5], "data_offsets": [8, 8]},
                                           "__metadata__": {"k": "v"}}, F32x2))
    assert tensors["a"].tolist() == [1.0, 2.0] and tensors["z"].shape == (0, 5) and meta == {"k": "v"}
    bf16 = np.array([0x3FC0, 0xC000], np.uint16).tobytes()  # 1.5, -2.0
    tensors, _ = st.deserialize(_craft({"b": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}}, bf16))
    assert tensors["b"].dtype == np.float32 and tensors["b"].tolist() == [1.5, -2.0]


def test_every_truncation_is_detected(tmp_path):
    path = tmp_path / "m.fnn"
    fnn.save(Sequential(Linear(3, 2), Linear(2, 1)), path)
    raw = path.read_bytes()
    for size in range(len(raw)):  # in memory, for speed: the same parser as for files
        with pytest.raises(ValueError, match="not a valid safetensors file"):
            st.deserialize(raw[:size])
    bad = tmp_path / "cut.fnn"
    for size in (0, 7, 8, 100, len(raw) - 1):
        bad.write_bytes(raw[:size])
        with pytest.raises(ValueError, match="cut.fnn"):
            fnn.load_state_dict(bad)
        bad.write_bytes(raw[:size])
        with pytest.raises(ValueError, match="cut.fnn"):
            fnn.load(bad)


def test_header_bit_flips_never_crash(tmp_path):
    """Flipping any header byte gives a ValueError or (if still consistent) a loaded model, nothing else."""
    path = tmp_path / "m.fnn"
    fnn.save(Sequential(Linear(3, 2), Dropout(0.5), Linear(2, 1)), path)
    raw = bytearray(path.read_bytes())
    n = int.from_bytes(raw[:8], "little")
    bad = tmp_path / "flip.fnn"
    outcomes = {"error": 0, "loaded": 0}
    for i in range(0, 8 + n, 3):
        flipped = bytearray(raw)
        flipped[i] ^= 0x04
        bad.write_bytes(bytes(flipped))
        try:
            fnn.load(bad)
            outcomes["loaded"] += 1
        except ValueError as e:
            assert "flip.fnn" in str(e)
            outcomes["error"] += 1
    assert outcomes["error"] > 0


def _rewrite(path, tensors, metadata):
    st.save_file(tensors, path, metadata)


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "m.fnn"
    fnn.save(Sequential(Linear(3, 2), Linear(2, 1)), path)
    tensors, meta = st.read(path)
    return path, tensors, meta


def test_arrays_missing_or_unexpected_versus_architecture(saved):
    path, tensors, meta = saved
    _rewrite(path, OrderedDict((k, v) for k, v in tensors.items() if k != "1.bias"), meta)
    with pytest.raises(ValueError, match=r"arrays missing \['1.bias'\]"):
        fnn.load(path)
    _rewrite(path, OrderedDict(tensors, extra=np.zeros(2)), meta)
    with pytest.raises(ValueError, match=r"unexpected \['extra'\]"):
        fnn.load(path)
    _rewrite(path, OrderedDict(tensors, **{"0.weight": np.zeros((2, 4), np.float32)}), meta)
    with pytest.raises(ValueError, match=r"'0.weight' has shape \(2, 4\)"):
        fnn.load(path)


@pytest.mark.parametrize("key, value, message", [
    ("fastnn.architecture", "{oops", "not valid JSON"),
    ("fastnn.architecture", '{"class": "os.system", "args": {}}', "unknown module class 'os.system'"),
    ("fastnn.architecture", '{"class": "Linear", "args": {"in_features": 3}}', "could not build Linear"),
    ("fastnn.architecture", '{"class": "Linear", "args": {"in_features": 3, "out_features": 2, "evil": 1}}',
     "no constructor argument 'evil'"),
    ("fastnn.architecture", '{"class": "Linear", "args": {"in_features": {"__code__": "x"}, '
                            '"out_features": 2}}', "unexpected object"),
    ("fastnn.architecture", '["Linear"]', "module entry must be an object"),
    ("fastnn.architecture", '{"class": "Sequential", "args": {"modules": 5}}', "must be a list"),
    ("fastnn.format_version", "2", "format version 2"),
    ("fastnn.format_version", "one", "invalid 'fastnn.format_version'"),
    ("fastnn.dtype", "int8", "invalid dtype"),
    ("fastnn.architecture", '{"class": "Sequential", "args": {"modules": [{"__module__": {"__same_as__": 0}}]}}',
     "bad shared-module reference"),
    ("fastnn.architecture", '{"class": "Sequential", "args": {"modules": [{"__module__": {"__same_as__": 7}}]}}',
     "bad shared-module reference"),
    ("fastnn.architecture", '{"__same_as__": 0}', "bad shared-module reference"),
    ("fastnn.frozen", '["nope"]', "unknown parameter 'nope'"),
    ("fastnn.eval_modules", '{"a": 1}', "JSON list of names"),
])
def test_bad_metadata_raises_valueerror(saved, key, value, message):
    path, tensors, meta = saved
    _rewrite(path, tensors, dict(meta, **{key: value}))
    with pytest.raises(ValueError, match=message) as err:
        fnn.load(path)
    assert str(path) in str(err.value)


def test_deeply_nested_architecture_is_a_valueerror(saved):
    path, tensors, meta = saved
    deep = '{"class": "Identity", "args": {"args": ' + "[" * 100_000 + "]" * 100_000 + "}}"
    _rewrite(path, {}, dict(meta, **{"fastnn.architecture": deep}))
    with pytest.raises(ValueError):
        fnn.load(path)


def test_missing_file_is_filenotfounderror(tmp_path):
    with pytest.raises(FileNotFoundError):
        fnn.load(tmp_path / "nope.fnn")


def test_a_layer_used_twice_is_still_one_layer_after_loading(tmp_path):
    fnn.manual_seed(0)
    shared = Linear(4, 4)
    model = Sequential(shared, fnn.nn.Tanh(), shared, Sequential(shared, Linear(4, 2)))
    path = tmp_path / "shared.fnn"
    fnn.save(model, path)
    arch = json.loads(st.read(path)[1]["fastnn.architecture"])
    assert json.dumps(arch).count('"Linear"') == 2  # written once, referred to twice
    loaded = fnn.load(path)
    assert loaded[0] is loaded[2] is loaded[3][0] and loaded[3][1] is not loaded[0]
    assert [n for n, _ in loaded.named_parameters()] == [n for n, _ in model.named_parameters()]
    x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(loaded(x), model(x))
    # trained the same way, both stay the same: the loaded copy's layer still gets both uses' gradients
    for m in (model, loaded):
        opt = fnn.optim.SGD(m.parameters(), lr=0.5)
        m.train_step(x, np.array([0, 1, 1]), fnn.nn.CrossEntropyLoss(), opt)
    np.testing.assert_array_equal(loaded[0].weight.data, model[0].weight.data)
