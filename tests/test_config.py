"""fnn.show_config(): version, compiler and flags, CPU features, kernel level, OpenMP runtime, threads."""
import os

import pytest

import fastnn as fnn


def test_show_config_prints_every_section(capsys):
    assert fnn.show_config() is None
    out = capsys.readouterr().out
    for line in ("fastnn:", f"  version: {fnn.__version__}", "build:", "  compiler: ", "  flags: ", "cpu:",
                 "  features: ", "kernels:", f"  level: {fnn.ops.cpu_level}", "openmp:", "  runtime: ", "threads:",
                 f"  count: {fnn.get_num_threads()}"):
        assert line in out, line


def test_show_config_dicts_describe_what_runs():
    info = fnn.show_config(mode="dicts")
    assert info["kernels"]["level"] == fnn.ops.cpu_level == fnn.ops.runtime_info()["level"]
    assert os.path.exists(info["kernels"]["library"])
    assert os.path.exists(info["openmp"]["runtime"])
    assert "openmp" in os.path.basename(info["openmp"]["runtime"]) or "gomp" in info["openmp"]["runtime"]
    assert info["cpu"]["levels supported"][0] == "baseline"
    assert fnn.ops.cpu_level in info["build"]["levels"] or info["build"]["layout"].startswith("one library")
    before = fnn.get_num_threads()
    try:
        fnn.set_num_threads(3)
        assert fnn.show_config(mode="dicts")["threads"]["count"] == 3
    finally:
        fnn.set_num_threads(before)
    assert "forked child" not in info["threads"]["note"]


def test_show_config_rejects_an_unknown_mode():
    with pytest.raises(ValueError, match="mode must be 'stdout' or 'dicts'"):
        fnn.show_config(mode="json")
