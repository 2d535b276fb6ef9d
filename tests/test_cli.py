"""The `fastnn` command line: info, train on digits, argparse errors, `python -m fastnn`."""
import os
import subprocess
import sys

import pytest

import fastnn as fnn
from fastnn import cli
from harness import load_example


@pytest.fixture(autouse=True)
def _one_thread():
    """Small layers: one kernel thread is as fast, and immune to OpenMP slowdowns on oversubscribed shared
    cores (results are identical bit for bit whatever the thread count)."""
    threads = fnn.get_num_threads()
    fnn.set_num_threads(1)
    yield
    fnn.set_num_threads(threads)


def test_info(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"fastnn {fnn.__version__}" in out
    assert f"threads: {fnn.get_num_threads()}" in out
    info = fnn.build_info()
    assert "ISA:" in out and "build:" in out
    if info.get("avx2"):
        assert "avx2" in out.split("ISA:")[1].splitlines()[0]
    assert f"eigen={info['eigen']}" in out
    import numpy as np
    assert f"numpy {np.__version__}" in out


@pytest.mark.parametrize("example, epochs, minimum", [("digits-mlp", 3, 0.85), ("digits-cnn", 1, 0.5)])
def test_train_prints_test_accuracy(capsys, example, epochs, minimum):
    pytest.importorskip("sklearn")
    fnn.set_num_threads(2)
    code = cli.main(["train", "--example", example, "--epochs", str(epochs), "--seed", "1", "--threads", "1"])
    assert fnn.get_num_threads() == 1  # --threads took effect (the fixture restores the count)
    assert code == 0
    out = capsys.readouterr().out
    assert f"Epoch {epochs}/{epochs}" in out  # progress lines (not a TTY: one line per epoch)
    acc = float(out.split("test accuracy")[1].split()[0])
    assert minimum <= acc <= 1.0


def test_train_matches_the_library_function_and_is_reproducible(capsys):
    pytest.importorskip("sklearn")
    assert cli.main(["train", "--example", "digits-mlp", "--epochs", "2", "--seed", "3", "-q"]) == 0
    out = capsys.readouterr().out
    assert "Epoch" not in out
    acc = float(out.split("test accuracy")[1].split()[0])
    _, test = cli.train_digits("digits-mlp", epochs=2, seed=3, verbose=0)
    assert f"{test['accuracy']:.4f}" == f"{acc:.4f}"
    model = cli.build_digits_model("digits-cnn")
    assert model(__import__("numpy").zeros((2, 1, 8, 8), "float32")).shape == (2, 10)


@pytest.mark.parametrize("argv, message", [
    ([], "required: COMMAND"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["train"], "required: --example"),
    (["train", "--example", "mnist"], "invalid choice: 'mnist'"),
    (["train", "--example", "digits-mlp", "--epochs", "ten"], "invalid int value: 'ten'"),
    (["train", "--example", "digits-mlp", "--epochs", "-1"], "must be >= 0"),
    (["train", "--example", "digits-mlp", "--threads", "0"], "must be >= 1"),
    (["info", "--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_arguments_exit_2_with_argparse_message(capsys, argv, message):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "usage: fastnn" in err and message in err


def test_help_exits_0(capsys):
    assert cli.main(["--help"]) == 0
    assert "train" in capsys.readouterr().out


def test_python_dash_m_fastnn_info():
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(fnn.__file__))
    env["PYTHONPATH"] = os.pathsep.join([root] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    out = subprocess.run([sys.executable, "-m", "fastnn", "info"], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"fastnn {fnn.__version__}\n")
    assert "numpy" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "fastnn", "train"], capture_output=True, text=True, env=env,
                         timeout=120)
    assert bad.returncode == 2 and "--example" in bad.stderr


def test_digits_toolkit_example(tmp_path, capsys):
    """examples/train_digits_toolkit.py: schedule + L2 + early stopping + checkpoint reach >= 97% on the
    fixed split, and the checkpoint reloads with fastnn.load to the restored best weights."""
    pytest.importorskip("sklearn")
    import numpy as np
    example = load_example("train_digits_toolkit")

    result = example.main(seed=0, verbose=1, checkpoint_dir=str(tmp_path))
    out = capsys.readouterr().out
    assert result["test"]["accuracy"] >= 0.97
    assert "test accuracy" in out and "reloaded checkpoint" in out
    ckpt = result["checkpoint"]
    assert ckpt is not None and os.path.exists(ckpt) and os.path.dirname(ckpt) == str(tmp_path)
    reloaded = fnn.load(ckpt)
    saved, trained = reloaded.state_dict(), result["model"].state_dict()
    assert saved.keys() == trained.keys()
    for k in saved:  # early stopping restored the best epoch, which is the one the checkpoint kept
        np.testing.assert_array_equal(saved[k], trained[k])
    assert result["reloaded_test"]["accuracy"] == result["test"]["accuracy"]
    hist = result["history"]
    assert len(hist["lr"]) == len(hist["loss"]) and hist["lr"][-1] < hist["lr"][0]  # the schedule ran
    assert "penalty" in hist and all(p > 0 for p in hist["penalty"])                # L2 was applied
    assert result["best_epoch"] == int(np.argmin(hist["val_loss"]))
    if result["stopped_epoch"]:
        assert len(hist["loss"]) == result["stopped_epoch"] + 1 < 60
