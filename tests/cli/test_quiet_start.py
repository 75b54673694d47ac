"""The ``fastconv`` console script keeps TensorFlow's C++ start-up lines out."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import fastconv_launch

ROOT = Path(__file__).resolve().parents[2]
NOISE = ("cuda", "cpu_feature_guard", "oneDNN", "absl::InitializeLog", "cuInit")


def launch(*argv) -> subprocess.CompletedProcess:
    """``fastconv ARGV`` as the console script runs it, on TensorFlow."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["KERAS_BACKEND"] = "tensorflow"
    script = "import sys, fastconv_launch; sys.exit(fastconv_launch.main())"
    return subprocess.run(
        [sys.executable, "-c", script, *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_run_prints_no_tensorflow_start_up_lines():
    tiny = ["--channels", "2", "--size", "8", "--batch-size", "1", "--repeats", "1"]
    done = launch("demo", *tiny)
    assert done.returncode == 0, done.stderr
    assert "fastconv demo:" in done.stdout
    for word in NOISE:
        assert word not in done.stderr, done.stderr


def test_verbose_leaves_tensorflow_logging_alone():
    done = launch("--verbose", "--help")
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert any(fastconv_launch._CPP_LOG_LINE.match(line) for line in lines), lines


@pytest.mark.parametrize(
    "line, noise",
    [
        ("WARNING: All log messages before absl::InitializeLog() is called", True),
        ("I0000 00:00:1796.449957    5410 cudart_stub.cc:31] Could not find", True),
        ("E0000 00:00:1796.50 5564 cuda_platform.cc:52] failed call to cuInit", True),
        ("2025-09-17 14:44:05.157831: I external/x/cudart_stub.cc:32] Could", True),
        ("To enable the following instructions: AVX2 FMA, in other operations", True),
        ("UserWarning: something the user should see", False),
        ("fastconv demo: error: --size must be >= 1, received 0", False),
    ],
)
def test_only_cpp_log_lines_are_left_out(line, noise):
    assert bool(fastconv_launch._CPP_LOG_LINE.match(line)) is noise


@pytest.mark.parametrize("command", [["export", "m.keras", "m.onnx"], ["demo"], []])
def test_a_bogus_keras_backend_is_one_line_and_exit_code_2(
    monkeypatch, capsys, command
):
    monkeypatch.setenv("KERAS_BACKEND", "bogus")
    assert fastconv_launch.main(command) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        "fastconv: error: KERAS_BACKEND='bogus' is not a Keras backend; set it to "
        "one of tensorflow, jax, torch, numpy, openvino"
    ]
