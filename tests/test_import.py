"""`import fastnn` loads fastnn and numpy, and none of the optional extras (plotting, scikit-learn, PyTorch,
safetensors, threadpoolctl, MPI, progress bars): they are imported when a feature that needs them is used."""
import json
import os
import subprocess
import sys

OPTIONAL = {"matplotlib", "sklearn", "scipy", "torch", "safetensors", "threadpoolctl", "mpi4py", "pandas", "onnx",
            "onnxruntime", "PIL", "tqdm", "IPython", "numba"}


def test_import_fastnn_does_not_import_optional_extras():
    code = "import sys, json; import fastnn; print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout))
    assert "fastnn" in loaded and "numpy" in loaded
    assert not OPTIONAL & loaded, sorted(OPTIONAL & loaded)
