"""Bad input on the command line (issue 18): every user error exits 2 with one
line naming the argument or file and the value, before any work, and changes
nothing."""

import os

import numpy as np
import pytest

from fastconv.cli import _args
from fastconv.cli._errors import UsageError, one_line
from tests.cli.checks import assert_user_error, run, snapshot

NOT_NUMPY = b"hello"


def _refuse_model_load(monkeypatch):
    """Fails the test if the command gets as far as loading the model."""
    monkeypatch.setattr(
        _args, "load_model", lambda *a, **k: pytest.fail("loaded the model")
    )


@pytest.mark.parametrize(
    "command, argument, name",
    [
        ("convert", "--data", "notzip.npz"),
        ("convert", "--calibration-data", "notnpy.npy"),
        ("sensitivity", "--data", "notzip.npz"),
    ],
)
def test_a_file_that_is_not_numpy_is_named_before_the_model_loads(
    workdir, capsys, monkeypatch, command, argument, name
):
    (workdir / name).write_bytes(NOT_NUMPY)
    _refuse_model_load(monkeypatch)
    before = snapshot(workdir)
    extra = ["--out", workdir / "out"] if command == "sensitivity" else []
    code, _, err = run(
        capsys, command, workdir / "model.keras", argument, workdir / name, *extra
    )
    kind = name.rpartition(".")[2]
    assert_user_error(code, err, argument, str(workdir / name), f"not a NumPy .{kind}")
    assert "pickle" not in err
    assert snapshot(workdir) == before


@pytest.mark.parametrize(
    "arrays, problem",
    [
        (dict(x=np.zeros((4, 8, 8, 3)), y=np.zeros(3)), "same length"),
        (dict(x=np.array(["a"] * 4), y=np.zeros(4)), "x of <U1 values, not numbers"),
        (dict(x=np.zeros((4, 8, 8, 3)), y=np.array([{}] * 4)), "Python objects"),
    ],
)
def test_sensitivity_data_contents_are_checked_before_the_model_loads(
    workdir, capsys, monkeypatch, arrays, problem
):
    path = workdir / "bad.npz"
    np.savez(path, **arrays)
    _refuse_model_load(monkeypatch)
    argv = ["sensitivity", workdir / "model.keras", "--data", path]
    code, _, err = run(capsys, *argv, "--out", workdir / "out")
    assert_user_error(code, err, "--data", str(path), problem)
    assert not (workdir / "out").exists()


@pytest.mark.parametrize("value", ["0", "-2", "nan", "inf", "fast"])
def test_convert_min_speedup_is_checked_before_the_model_loads(
    workdir, capsys, monkeypatch, value
):
    _refuse_model_load(monkeypatch)
    before = snapshot(workdir)
    code, _, err = run(
        capsys, "convert", workdir / "model.keras", "--min-speedup", value
    )
    assert_user_error(code, err, "--min-speedup", repr(value))
    assert snapshot(workdir) == before


def test_profile_input_shape_that_does_not_fit_the_model(workdir, capsys):
    before = snapshot(workdir)
    argv = ["profile", workdir / "model.keras", "--input-shape", "5,5,7"]
    code, _, err = run(capsys, *argv, "--repeats", "1", "--warmup", "0")
    assert_user_error(
        code,
        err,
        "--input-shape does not fit the model's input (None, 8, 8, 3)",
        "'5,5,7'",
    )
    assert "\x1b" not in err and "Arguments received" not in err
    assert snapshot(workdir) == before


def test_error_lines_lose_keras_escape_codes_and_call_arguments():
    keras_text = (
        "Exception encountered when calling CPConv2D.call().\n\n\x1b[1mbad "
        "input\x1b[0m\n\nArguments received by CPConv2D.call():\n  • inputs=x"
    )
    assert one_line(ValueError(keras_text)) == (
        "Exception encountered when calling CPConv2D.call(). bad input"
    )
    usage = UsageError("--batch-size", 0, "must be >= 1")
    assert one_line(usage) == "--batch-size must be >= 1, received 0"


@pytest.mark.parametrize("kind", ["file", "unwritable", "missing parent"])
def test_bench_out_that_cannot_be_a_results_folder(tmp_path, capsys, monkeypatch, kind):
    import fastconv.bench

    monkeypatch.setattr(fastconv.bench, "run_benchmark", lambda *a: pytest.fail("ran"))
    if kind == "file":
        out = tmp_path / "results.txt"
        out.write_text("kept")
        problem = "is not writable: it is a file, not a folder"
    elif kind == "unwritable":
        parent = tmp_path / "locked"
        parent.mkdir(mode=0o500)
        out = parent / "run"
        problem = "cannot be written"
        if os.access(parent, os.W_OK):
            pytest.skip("this user writes into any folder (root)")
    else:
        out = tmp_path / "x" / "no" / "b"
        problem = "is in a folder that does not exist"
    before = snapshot(tmp_path)
    code, _, err = run(capsys, "bench", "--out", out, "--no-progress")
    assert_user_error(code, err, "--out", problem, str(out))
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "x").exists()
    assert not (tmp_path / "locked").exists() or not any(
        (tmp_path / "locked").iterdir()
    )


@pytest.mark.parametrize("command", ["convert", "sensitivity"])
def test_random_state_for_a_method_without_a_seed_is_refused(
    workdir, capsys, monkeypatch, command
):
    path = workdir / "d.npz"
    np.savez(path, x=np.zeros((4, 8, 8, 3), "float32"), y=np.zeros(4, "int64"))
    _refuse_model_load(monkeypatch)
    argv = [command, workdir / "model.keras", "--method", "factorized"]
    if command == "sensitivity":
        argv += ["--data", path, "--out", workdir / "out"]
    before = snapshot(workdir)
    code, _, err = run(capsys, *argv, "--random-state", "3")
    assert_user_error(
        code, err, "--random-state does not apply to --method factorized", "'3'"
    )
    assert snapshot(workdir) == before


def test_sensitivity_data_of_another_shape_names_the_argument(workdir, capsys):
    path = workdir / "small.npz"
    np.savez(path, x=np.zeros((4, 5, 5, 3), "float32"), y=np.zeros(4, "int64"))
    argv = ["sensitivity", workdir / "model.keras", "--data", path]
    code, _, err = run(capsys, *argv, "--out", workdir / "out")
    assert_user_error(
        code, err, "--data holds x of shape (4, 5, 5, 3)", "(N, 8, 8, 3)", str(path)
    )
    assert not (workdir / "out").exists()


@pytest.mark.parametrize("kernel", ["100", "1"])
def test_demo_kernel_that_is_not_odd_and_at_least_5_names_the_flag(capsys, kernel):
    code, out, err = run(capsys, "demo", "--kernel", kernel, "--size", "8")
    assert_user_error(code, err, "--kernel", "must be odd and >= 5", kernel)
    assert out == ""


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["bench", "--jit", "--no-jit"], ["--jit", "--no-jit", "together"]),
        (["convert", "MODEL", "--skip-first", "--no-skip-first"], ["--skip-first"]),
        (["bench", "--device", "gpu", "--list"], ["--list", "--device"]),
    ],
)
def test_conflicting_or_unused_flags_are_refused_before_any_work(
    tmp_path, capsys, argv, names
):
    (tmp_path / "m.keras").write_bytes(b"a model")
    argv = [tmp_path / "m.keras" if arg == "MODEL" else arg for arg in argv]
    (tmp_path / "m.keras").write_bytes(b"a model")
    argv = [tmp_path / "m.keras" if arg == "MODEL" else arg for arg in argv]
    before = snapshot(tmp_path)
    code, _, err = run(
        capsys, *argv, "--out" if argv[0] == "bench" else "-o", tmp_path / "out"
    )
    assert_user_error(code, err, *names)
    assert snapshot(tmp_path) == before
