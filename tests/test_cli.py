"""The `fastnn` command line (SPEC P7): info, train on digits, argparse errors, `python -m fastnn`."""
import os
import subprocess
import sys

import pytest

import fastnn as fnn
from fastnn import cli


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
    threads = fnn.get_num_threads()
    try:
        code = cli.main(["train", "--example", example, "--epochs", str(epochs), "--seed", "1", "--threads", "1"])
        assert fnn.get_num_threads() == 1
    finally:
        fnn.set_num_threads(threads)
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
