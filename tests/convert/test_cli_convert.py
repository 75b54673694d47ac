"""``fastconv convert``: options, outputs and bad input."""

import json

import keras
import numpy as np
import pytest

from fastconv import cli
from fastconv.layers import BaseFastConv
from tests.layer_checks import random_input, relative_error, to_numpy


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A saved three-conv model and the path to it."""
    inputs = keras.Input((10, 10, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="c1")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", name="c2")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", name="c3")(x)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    rng = np.random.default_rng(0)
    for variable in model.weights:
        variable.assign(rng.standard_normal(variable.shape).astype("float32"))
    path = tmp_path_factory.mktemp("cli") / "model.keras"
    model.save(path)
    return model, path


def fast_names(model) -> list[str]:
    return sorted(
        layer.name
        for layer in model._flatten_layers(include_self=False)
        if isinstance(layer, BaseFastConv)
    )


def test_convert_saves_the_model_and_the_report(saved, tmp_path, capsys):
    model, path = saved
    out, report = tmp_path / "out.keras", tmp_path / "report.json"
    code = cli.main(
        [
            "convert",
            str(path),
            "--method",
            "tucker",
            "--rank",
            "8,8",
            "-o",
            str(out),
            "--report",
            str(report),
            "--no-progress",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "2 of 3 convolutions converted" in printed
    assert f"saved: {out}" in printed
    loaded = keras.models.load_model(out)  # no custom_objects
    assert fast_names(loaded) == ["c2_tucker", "c3_tucker"]
    x = random_input((2, 10, 10, 3))
    assert relative_error(to_numpy(loaded(x)), to_numpy(model(x))) < 1e-4
    data = json.loads(report.read_text())
    assert [row["name"] for row in data["layers"]] == ["c1", "c2", "c3"]
    assert data["settings"]["method"] == "tucker"
    assert data["layers"][1]["rank"] == [8, 8]


@pytest.mark.parametrize(
    "flag, converted",
    [
        ("--skip-first", ["c2_cp", "c3_cp"]),
        ("--no-skip-first", ["c1_cp", "c2_cp", "c3_cp"]),
    ],
)
def test_skip_first_flags(saved, tmp_path, flag, converted):
    _, path = saved
    out = tmp_path / "out.keras"
    argv = ["convert", str(path), "--method", "cp", "--rank", "4", "-o", str(out)]
    assert cli.main([*argv, flag, "--no-progress"]) == 0
    assert fast_names(keras.models.load_model(out)) == converted


def test_fraction_and_rule_ranks(saved, tmp_path):
    _, path = saved
    report = tmp_path / "report.json"
    argv = ["convert", str(path), "--method", "factorized", "--no-progress"]
    assert cli.main([*argv, "--rank", "0.5", "--report", str(report)]) == 0
    # M (3 * 8 + 3 * 8) <= 0.5 * 9 * 8 * 8: M = 6.
    assert json.loads(report.read_text())["layers"][1]["rank"] == 6
    again = [*argv, "--rank", "energy:0.9", "--report", str(report), "--force"]
    assert cli.main(again) == 0
    assert json.loads(report.read_text())["layers"][1]["method"] == "factorized"


def test_min_speedup_is_measured_and_reported(saved, tmp_path):
    _, path = saved
    report = tmp_path / "report.json"
    argv = ["convert", str(path), "--method", "tucker", "--rank", "2", "--no-progress"]
    assert cli.main([*argv, "--min-speedup", "1000", "--report", str(report)]) == 0
    rows = json.loads(report.read_text())["layers"]
    assert rows[0]["time_before"] is None  # c1 is skipped, so not timed
    for row in rows[1:]:
        assert not row["converted"] and row["decision"].startswith("kept: ")
        assert row["speedup"] > 0 and len(row["time_before"]["samples_ns"]) == 10
    # Nothing replaced: the whole-model check has nothing to time.
    whole = json.loads(report.read_text())["whole_model"]
    assert whole["rounds"] == [] and whole["replaced"] == 0
    off = [*argv, "--min-speedup", "1000", "--no-verify-whole-model"]
    assert cli.main([*off, "--report", str(report), "--force"]) == 0
    assert json.loads(report.read_text())["whole_model"] is None


def test_without_output_nothing_is_saved(saved, tmp_path, capsys, monkeypatch):
    _, path = saved
    monkeypatch.chdir(tmp_path)
    assert cli.main(["convert", str(path), "--rank", "2", "--no-progress"]) == 0
    assert "nothing saved" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_calibration_data_gives_output_errors(saved, tmp_path, capsys):
    _, path = saved
    data = tmp_path / "x.npy"
    np.save(data, random_input((4, 10, 10, 3)))
    argv = ["convert", str(path), "--rank", "8,8", "--no-progress"]
    assert cli.main([*argv, "--calibration-data", str(data)]) == 0
    assert "model output relative error" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--rank", "eight"], "rank must be"),
        (["--method", "svd"], "invalid choice: 'svd'"),
        (["--min-speedup", "fast"], "--min-speedup must be a number above 0"),
    ],
)
def test_bad_arguments_are_argparse_errors(saved, capsys, argv, match):
    _, path = saved
    assert cli.main(["convert", str(path), *argv]) == 2
    assert match in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, match",
    [
        (
            ["--min-speedup", "0"],
            "--min-speedup must be a number above 0, received '0'",
        ),
        (["-o", "out.h5"], "--output must end in .keras, received 'out.h5'"),
        (
            ["--verify-whole-model"],
            "--verify-whole-model applies only with --min-speedup",
        ),
        (["--rank", "2", "--method", "cp", "--layers", "nothing"], "matches no"),
    ],
)
def test_bad_values_exit_2_with_a_message(saved, capsys, extra, match):
    _, path = saved
    assert cli.main(["convert", str(path), "--no-progress", *extra]) == 2
    assert match in capsys.readouterr().err


def test_missing_model_file(tmp_path, capsys):
    missing = tmp_path / "nope.keras"
    assert cli.main(["convert", str(missing)]) == 2
    assert f"no such file, received {str(missing)!r}" in capsys.readouterr().err
