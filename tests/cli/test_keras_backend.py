"""A KERAS_BACKEND that Keras cannot start on is one line and exit code 2,
under ``python -m fastconv.cli`` as under the ``fastconv`` console script,
before Keras is imported and its traceback printed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

import fastconv_launch

ROOT = Path(__file__).resolve().parents[2]
NOT_A_BACKEND = (
    "fastconv: error: KERAS_BACKEND='junk' is not a Keras backend; set it to one "
    "of tensorflow, jax, torch, numpy, openvino"
)
#: A sitecustomize.py that makes jax look not installed.
NO_JAX = """
import sys


class NoJax:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "jax":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


sys.meta_path.insert(0, NoJax())
"""


def python_m(backend: str, *argv, pythonpath: Path | None = None):
    """``KERAS_BACKEND=backend python -m fastconv.cli ARGV`` from the checkout."""
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(
        [sys.executable, "-m", "fastconv.cli", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    "argv", [["--help"], ["convert", "m.keras", "-o", "x.keras"], []]
)
def test_python_m_with_a_bogus_backend_is_one_line_and_exit_code_2(argv):
    done = python_m("junk", *argv)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [NOT_A_BACKEND]
    assert done.stdout == ""


def test_python_m_with_a_backend_whose_package_is_missing(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(NO_JAX)
    done = python_m("jax", "--help", pythonpath=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith(
        "fastconv: error: KERAS_BACKEND='jax' needs the jax package, which is not "
        "installed; install it, or set KERAS_BACKEND to one of those installed: "
    )
    assert "jax" not in line.split("installed: ")[-1]


def test_python_m_with_a_usable_backend_runs_the_command():
    done = python_m(keras.backend.backend(), "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: fastconv")


def test_the_console_script_names_a_missing_backend_package(monkeypatch, capsys):
    monkeypatch.setenv("KERAS_BACKEND", "numpy")
    installed = ("tensorflow", "torch")
    monkeypatch.setattr(fastconv_launch, "_installed", installed.__contains__)
    assert fastconv_launch.main(["--help"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        "fastconv: error: KERAS_BACKEND='numpy' needs the jax package, which is not "
        "installed; install it, or set KERAS_BACKEND to one of those installed: "
        "tensorflow, torch"
    ]


@pytest.mark.parametrize("backend", ["", keras.backend.backend()])
def test_an_empty_or_usable_backend_is_no_problem(monkeypatch, backend):
    monkeypatch.setenv("KERAS_BACKEND", backend)
    assert fastconv_launch.keras_backend_problem() is None
