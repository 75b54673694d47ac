"""The commands given what a new user types: odd paths, junk numbers, junk
environment variables. Each is refused before any work (exit 2, one line
naming the argument or file, no file changed) or accepted and done right."""

import importlib
import shutil
import warnings

import pytest

from fastconv import datasets
from fastconv.bench import runner
from tests.cli.checks import assert_user_error, run, snapshot, tiny_model

decompose_module = importlib.import_module("fastconv.convert.decompose")

FAST = ("--method", "tucker", "--rank", "2", "--no-progress")


def refused(capsys, folder, *argv, names=()):
    """Runs ``fastconv ARGV``; checks exit 2 naming ``names``, nothing changed."""
    before = snapshot(folder)
    code, _, err = run(capsys, *argv)
    assert_user_error(code, err, *names)
    assert snapshot(folder) == before
    return err


def test_convert_a_model_under_a_unicode_folder_with_spaces(workdir, capsys):
    folder = workdir / "mödel dir ✓"
    folder.mkdir()
    source = folder / "m ö.keras"
    shutil.copy2(workdir / "model.keras", source)
    before = source.read_bytes()
    out = folder / "out ö.keras"
    code, printed, err = run(capsys, "convert", source, *FAST, "-o", out)
    assert code == 0, err
    assert out.is_file() and str(out) in printed
    assert source.read_bytes() == before


def test_convert_a_legacy_h5_model(tmp_path, capsys):
    source = tmp_path / "legacy.h5"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras says HDF5 is legacy
        tiny_model().save(source)
    out = tmp_path / "out.keras"
    code, _, err = run(capsys, "convert", source, *FAST, "-o", out)
    assert code == 0, err
    assert out.is_file()


@pytest.mark.parametrize("command", ["convert", "profile"])
@pytest.mark.parametrize("name", ["weights.npy", "model.txt", "model"])
def test_a_model_file_that_is_not_a_keras_model(workdir, capsys, command, name):
    path = workdir / name
    shutil.copy2(workdir / "model.keras", path)
    refused(
        capsys,
        workdir,
        command,
        path,
        names=("MODEL.keras", "must be a saved Keras model", str(path)),
    )


@pytest.mark.parametrize(
    "option, value, names",
    [
        ("--rank", "nan", ("--rank", "'nan'")),
        ("--rank", "inf", ("--rank", "'inf'")),
        ("--rank", "0.0", ("rank must be", "rank=0.0")),
        ("--min-speedup", "nan", ("--min-speedup", "'nan'")),
        ("--min-speedup", "-2", ("--min-speedup", "'-2'")),
        ("--min-speedup", "inf", ("--min-speedup must be a number above 0", "'inf'")),
        ("--target-speedup", "1", ("--target-speedup must be a number above 1",)),
        ("--target-speedup", "fast", ("--target-speedup", "'fast'")),
        ("--max-accuracy-drop", "1.5", ("must be a fraction in [0, 1]", "'1.5'")),
        ("--max-accuracy-drop", "nan", ("--max-accuracy-drop", "'nan'")),
        ("--random-state", "-1", ("--random-state", "-1")),
        ("--layers", "", ("layers=''", "matches no convolution")),
    ],
)
def test_convert_junk_numbers_are_refused_before_any_decomposition(
    workdir, capsys, monkeypatch, option, value, names
):
    monkeypatch.setattr(decompose_module, "_one", lambda *a, **k: pytest.fail("ran"))
    argv = ["convert", workdir / "model.keras", "--no-progress", option, value]
    refused(capsys, workdir, *argv, "-o", workdir / "out.keras", names=names)


def test_convert_an_empty_output_name(workdir, capsys):
    argv = ["convert", workdir / "model.keras", *FAST, "-o", ""]
    refused(capsys, workdir, *argv, names=("--output", "must end in .keras"))


def test_profile_json_below_a_file(workdir, capsys):
    (workdir / "afile").write_text("x")
    json_path = workdir / "afile" / "p.json"
    argv = ["profile", workdir / "model.keras", "--json", json_path]
    refused(capsys, workdir, *argv, names=("--json", str(json_path)))


@pytest.fixture
def data_dir_is_a_file(tmp_path, monkeypatch):
    path = tmp_path / "afile"
    path.write_text("not a folder")
    monkeypatch.setenv("FASTCONV_DATA_DIR", str(path))
    return path


def test_data_list_with_fastconv_data_dir_a_file(data_dir_is_a_file, capsys):
    refused(
        capsys,
        data_dir_is_a_file.parent,
        "data",
        "list",
        names=(str(data_dir_is_a_file), "cache folder is a file"),
    )


def test_data_fetch_with_fastconv_data_dir_a_file_downloads_nothing(
    data_dir_is_a_file, capsys, monkeypatch
):
    def never(report):
        raise AssertionError("a source was tried")

    monkeypatch.setitem(datasets.SOURCES, "mnist", (datasets.Source("x", never),))
    before = snapshot(data_dir_is_a_file.parent)
    code, _, err = run(capsys, "data", "fetch", "mnist", "--no-progress")
    assert code == 1
    assert "the dataset cache folder is below a file" in err
    assert str(data_dir_is_a_file) in err
    assert snapshot(data_dir_is_a_file.parent) == before


def test_data_fetch_a_capitalised_name(tmp_path, capsys):
    refused(
        capsys,
        tmp_path,
        "data",
        "fetch",
        "MNIST",
        "--cache-dir",
        tmp_path,
        names=("NAME", "invalid choice: 'MNIST'"),
    )


@pytest.mark.parametrize(
    "argv, names",
    [
        (["--dataset", ""], ("no datasets given",)),
        (["--variants", ","], ("no variants given",)),
        (["--epochs", "1e3"], ("--epochs", "'1e3'")),
        (["--seed", "nan"], ("--seed", "'nan'")),
    ],
)
def test_bench_junk_options(tmp_path, capsys, monkeypatch, argv, names):
    monkeypatch.setattr(runner, "run_benchmark", lambda *a: pytest.fail("ran"))
    refused(capsys, tmp_path, "bench", *argv, "--out", tmp_path / "o", names=names)


def test_bench_out_is_a_file(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(runner, "run_benchmark", lambda *a: pytest.fail("ran"))
    out = tmp_path / "afile"
    out.write_text("x")
    refused(capsys, tmp_path, "bench", "--out", out, names=(str(out), "not writable"))


@pytest.mark.parametrize("kernel", ["3", "4"])
def test_demo_kernel_the_stacked_layer_cannot_take(tmp_path, capsys, kernel):
    refused(
        capsys,
        tmp_path,
        "demo",
        "--kernel",
        kernel,
        names=("--kernel must be odd and >= 5", kernel),
    )
