"""``fastconv sensitivity``: a table, JSON and a plot; bad arguments exit 2."""

import json

import numpy as np
import pytest

from fastconv.cli import _args
from fastconv.convert.sensitivity import SensitivityResult
from tests.cli.checks import assert_user_error, run, snapshot

FAST = ("--method", "tucker", "--ranks", "2x2,4x4", "--no-progress")


@pytest.fixture
def npz(workdir):
    """40 random 8x8x3 inputs of the tiny model, labels of its 4 outputs."""
    rng = np.random.default_rng(0)
    path = workdir / "data.npz"
    np.savez(path, x=rng.random((40, 8, 8, 3), dtype="float32"), y=np.arange(40) % 4)
    return path


def test_writes_table_json_and_plot(workdir, npz, capsys):
    out = workdir / "out"
    code, stdout, err = run(
        capsys,
        "sensitivity",
        workdir / "model.keras",
        "--data",
        npz,
        *FAST,
        "--limit",
        "24",
        "--timing-repeats",
        "2",
        "--out",
        out,
    )
    assert code == 0, err
    assert "| c2 | 2,2 | 2,2 |" in stdout
    result = SensitivityResult.from_json(out / "sensitivity.json")
    assert result.examples == 24 and result.layers == ["c2"]
    assert [row.rank for row in result.rows] == [(2, 2), (4, 4)]
    assert all(row.speedup > 0 for row in result.rows)
    assert result.table() in (out / "sensitivity.md").read_text()
    assert (out / "sensitivity.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in out.iterdir()) == [
        "sensitivity.json",
        "sensitivity.md",
        "sensitivity.png",
    ]

    again = ("sensitivity", workdir / "model.keras", "--data", npz, *FAST, "--no-speed")
    before = snapshot(out)
    code, _, err = run(capsys, *again, "--out", out)
    assert_user_error(code, err, "--out", "--force")
    assert snapshot(out) == before
    code, _, err = run(capsys, *again, "--out", out, "--force")
    assert code == 0, err
    assert json.loads((out / "sensitivity.json").read_text())["examples"] == 40


@pytest.mark.parametrize(
    "extra, names",
    [
        (("--ranks", "0.1,,0.5"), ("--ranks", "commas")),
        (("--ranks", "0"), ("--ranks",)),
        (("--limit", "0"), ("--limit", "must be >= 1")),
        (("--method", "svd"), ("--method", "invalid choice")),
        (("--data", "imagenet"), ("--data", "imagenet", ".npz")),
        (("--data", "missing.npz"), ("--data", "no such file")),
        (
            ("--no-speed", "--timing-repeats", "5"),
            ("--timing-repeats", "--no-speed", "'5'"),
        ),
    ],
)
def test_bad_arguments_exit_2_with_one_line(workdir, npz, capsys, extra, names):
    before = snapshot(workdir)
    argv = ["sensitivity", workdir / "model.keras", "--data", npz, "--out"]
    code, _, err = run(capsys, *argv, workdir / "out", *FAST, *extra)
    assert_user_error(code, err, *names)
    assert snapshot(workdir) == before


def test_data_the_model_cannot_take(workdir, capsys):
    np.savez(workdir / "wrong.npz", x=np.zeros((4, 9, 9, 3), "float32"), y=np.zeros(4))
    argv = ["sensitivity", workdir / "model.keras", "--data", workdir / "wrong.npz"]
    code, _, err = run(capsys, *argv, "--out", workdir / "out", *FAST)
    assert_user_error(code, err, "sensitivity", "(N, 8, 8, 3)")
    assert not (workdir / "out").exists()


def test_npz_without_x_and_y(workdir, capsys):
    np.savez(workdir / "bad.npz", images=np.zeros((4, 8, 8, 3)))
    argv = ["sensitivity", workdir / "model.keras", "--data", workdir / "bad.npz"]
    code, _, err = run(capsys, *argv, "--out", workdir / "out", *FAST)
    assert_user_error(code, err, "--data", "x and y")


def test_out_that_is_a_file(workdir, npz, capsys):
    argv = ["sensitivity", workdir / "model.keras", "--data", npz, *FAST]
    code, _, err = run(capsys, *argv, "--out", npz)
    assert_user_error(code, err, "--out", "not a folder")


def test_a_truncated_npz_names_the_file(workdir, npz, capsys):
    broken = workdir / "broken.npz"
    broken.write_bytes(npz.read_bytes()[:60])
    argv = ["sensitivity", workdir / "model.keras", "--data", broken]
    code, _, err = run(capsys, *argv, "--out", workdir / "out", *FAST)
    assert_user_error(code, err, "--data", "broken.npz", "not a readable .npz")
    assert not (workdir / "out").exists()


def test_one_hot_labels_of_another_width_are_refused(workdir, capsys):
    rng = np.random.default_rng(0)
    path = workdir / "wide.npz"
    np.savez(
        path, x=rng.random((8, 8, 8, 3), dtype="float32"), y=np.eye(6)[np.arange(8) % 4]
    )
    argv = ["sensitivity", workdir / "model.keras", "--data", path]
    code, _, err = run(capsys, *argv, "--out", workdir / "out", *FAST)
    assert_user_error(code, err, "y", "6 columns", "4 classes")
    assert not (workdir / "out").exists()


def test_a_batch_beyond_memory_is_refused_before_the_work(
    workdir, npz, capsys, monkeypatch
):
    monkeypatch.setattr(_args, "available_memory", lambda: 1024)
    argv = ["sensitivity", workdir / "model.keras", "--data", npz, "--batch-size", "64"]
    code, _, err = run(capsys, *argv, "--out", workdir / "out", *FAST)
    assert_user_error(code, err, "--batch-size", "64", "available")
    assert not (workdir / "out").exists()
