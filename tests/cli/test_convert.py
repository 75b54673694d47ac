"""``fastconv convert`` with bad paths, files and arguments: exit 2, nothing lost."""

import io
import os
import warnings
import zipfile

import keras
import numpy as np
import pytest

import fastconv.convert
from fastconv.cli import _args
from fastconv.convert import ConversionReport
from tests.cli.checks import assert_user_error, run, snapshot

FAST = ("--method", "tucker", "--rank", "2", "--no-progress")


def convert(capsys, workdir, *extra, model="model.keras"):
    """Runs convert on ``workdir/model``; checks nothing changed on a user error."""
    before = snapshot(workdir)
    code, out, err = run(capsys, "convert", workdir / model, *FAST, *extra)
    if code == 2:
        assert snapshot(workdir) == before
    return code, out, err


# --------------------------------------------------------------- outputs
def test_output_over_the_input_is_refused(workdir, capsys):
    code, _, err = convert(capsys, workdir, "-o", workdir / "model.keras")
    assert_user_error(code, err, "--output", "MODEL.keras", "--force")


def test_output_over_the_input_by_another_spelling_is_refused(workdir, capsys):
    code, _, err = convert(capsys, workdir, "-o", workdir / "." / "model.keras")
    assert_user_error(code, err, "--output", "would replace the input")


def test_output_over_the_input_with_force_replaces_it(workdir, capsys):
    path = workdir / "model.keras"
    code, out, _ = run(capsys, "convert", path, *FAST, "-o", path, "--force")
    assert code == 0 and f"saved: {path}" in out
    names = [layer.name for layer in keras.models.load_model(path).layers]
    assert "c2_tucker" in names
    assert sorted(p.name for p in workdir.iterdir()) == ["model.keras"]


@pytest.mark.parametrize("flag", ["--report", "-o"])
def test_output_in_a_missing_folder_fails_before_the_work(workdir, capsys, flag):
    name = "r.json" if flag == "--report" else "out.keras"
    argv = [flag, workdir / "nodir" / name]
    if flag == "--report":
        argv += ["-o", workdir / "out.keras"]
    code, out, err = convert(capsys, workdir, *argv)
    assert_user_error(code, err, "nodir", "folder that does not exist")
    assert "converted" not in out  # no work was done
    assert not (workdir / "out.keras").exists()


@pytest.mark.parametrize("flag, name", [("-o", "out.keras"), ("--report", "r.json")])
def test_existing_output_is_kept_without_force(workdir, capsys, flag, name):
    (workdir / name).write_text("precious")
    code, _, err = convert(capsys, workdir, flag, workdir / name)
    option = "--output" if flag == "-o" else flag
    assert_user_error(code, err, option, "already exists", "--force")
    assert (workdir / name).read_text() == "precious"


def test_existing_outputs_are_replaced_with_force(workdir, capsys):
    out, report = workdir / "out.keras", workdir / "r.json"
    out.write_text("old")
    report.write_text("old")
    argv = ["convert", workdir / "model.keras", *FAST, "-o", out, "--report", report]
    code, _, _ = run(capsys, *argv, "--force")
    assert code == 0
    assert zipfile.is_zipfile(out) and report.read_text().startswith("{")


def test_output_and_report_on_the_same_file(workdir, capsys):
    path = workdir / "both.keras"
    code, _, err = convert(capsys, workdir, "-o", path, "--report", path)
    assert_user_error(code, err, "--report", "must end in .json", "both.keras")


def test_output_that_is_a_folder(workdir, capsys):
    (workdir / "dir.keras").mkdir()
    code, _, err = convert(capsys, workdir, "-o", workdir / "dir.keras")
    assert_user_error(code, err, "--output", "is a folder")


def test_output_with_the_wrong_suffix(workdir, capsys):
    code, _, err = convert(capsys, workdir, "-o", workdir / "out.h5")
    assert_user_error(code, err, "--output", "must end in .keras")


def test_output_in_a_read_only_folder(workdir, capsys, monkeypatch):
    # As root every folder is writable, so os.access stands in for the check.
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: mode == os.R_OK and real(p, mode))
    code, _, err = convert(capsys, workdir, "-o", workdir / "out.keras")
    assert_user_error(code, err, "--output", "cannot be written")


def test_output_over_a_hard_link_to_the_input_is_refused(workdir, capsys):
    (workdir / "link.keras").hardlink_to(workdir / "model.keras")
    code, _, err = convert(capsys, workdir, "-o", workdir / "link.keras")
    assert_user_error(code, err, "--output", "would replace the input MODEL.keras")


def test_the_report_never_replaces_the_model_even_with_force(workdir, capsys):
    before = snapshot(workdir)
    out = workdir / "out.keras"
    code, _, err = convert(
        capsys, workdir, "-o", out, "--report", workdir / "model.keras", "--force"
    )
    assert_user_error(code, err, "--report", "must end in .json", "model.keras")
    assert snapshot(workdir) == before


def test_report_over_the_calibration_data_is_refused(workdir, capsys):
    data = workdir / "x.npy"
    np.save(data, np.zeros((2, 8, 8, 3), "float32"))
    code, _, err = convert(
        capsys, workdir, "--calibration-data", data, "--report", data
    )
    assert_user_error(code, err, "--report", "must end in .json", "x.npy")


# ----------------------------------------------------- order and atomicity
def test_the_model_is_saved_before_the_report(workdir, capsys, monkeypatch):
    def fail(self, path=None, **kwargs):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(ConversionReport, "to_json", fail)
    out, report = workdir / "out.keras", workdir / "r.json"
    argv = ["convert", workdir / "model.keras", *FAST, "-o", out, "--report", report]
    code, _, err = run(capsys, *argv)
    assert_user_error(code, err, f"{report}: No space left on device")
    assert zipfile.is_zipfile(out)
    assert sorted(p.name for p in workdir.iterdir()) == ["model.keras", "out.keras"]


def test_a_failed_save_leaves_the_old_output_and_no_partial_file(
    workdir, capsys, monkeypatch
):
    out = workdir / "out.keras"
    out.write_text("old")

    def fail(self, path, **kwargs):
        with open(path, "wb") as file:
            file.write(b"PK half a model")
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(keras.Model, "save", fail)
    code, _, err = run(
        capsys, "convert", workdir / "model.keras", *FAST, "-o", out, "--force"
    )
    assert_user_error(code, err, f"{out}: No space left on device")
    assert out.read_text() == "old"
    assert sorted(p.name for p in workdir.iterdir()) == ["model.keras", "out.keras"]


# ---------------------------------------------------------- bad model files
def _corrupt_crc(path, target):
    with zipfile.ZipFile(path) as archive:
        members = [(info, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as archive:
        for info, data in members:
            archive.writestr(info.filename, data)
    raw = bytearray(target.read_bytes())
    index = raw.find(b'"class_name"')  # inside config.json, stored uncompressed
    raw[index + 1] ^= 0xFF
    target.write_bytes(bytes(raw))


@pytest.mark.parametrize(
    "name, make, problem",
    [
        ("trunc.keras", lambda src, p: p.write_bytes(src[: len(src) // 2]), "zip"),
        ("junk.keras", lambda src, p: p.write_bytes(b"not a model" * 9), "zip"),
        ("empty.keras", lambda src, p: p.write_bytes(b""), "zip"),
        ("junk.h5", lambda src, p: p.write_bytes(b"\x89HDF\r\n\x1a\n" + b"x" * 99), ""),
        (
            "other.keras",
            lambda src, p: zipfile.ZipFile(p, "w").writestr("a.txt", "hi"),
            "could not be loaded",
        ),
        ("crc.keras", None, "corrupt zip"),
    ],
)
def test_corrupt_model_files_name_the_file(workdir, capsys, name, make, problem):
    path = workdir / name
    if make is None:
        _corrupt_crc(workdir / "model.keras", path)
    else:
        make((workdir / "model.keras").read_bytes(), path)
    code, _, err = convert(capsys, workdir, model=name)
    assert_user_error(code, err, "MODEL.keras", str(path), problem)


def test_a_folder_as_the_model(workdir, capsys):
    (workdir / "dir.keras").mkdir()
    code, _, err = convert(capsys, workdir, model="dir.keras")
    assert_user_error(code, err, "MODEL.keras", "not a folder")


def test_a_missing_model(workdir, capsys):
    code, _, err = convert(capsys, workdir, model="nope.keras")
    assert_user_error(code, err, "MODEL.keras", "no such file", "nope.keras")


def test_an_unreadable_model(workdir, capsys, monkeypatch):
    monkeypatch.setattr(os, "access", lambda p, mode: mode != os.R_OK)
    code, _, err = convert(capsys, workdir)
    assert_user_error(code, err, "MODEL.keras", "permission denied")


# ---------------------------------------------------------- bad arguments
@pytest.mark.parametrize("pattern", ["[", "(c1", "*"])
def test_a_bad_layers_regex(workdir, capsys, pattern):
    code, _, err = convert(capsys, workdir, "--layers", pattern)
    assert_user_error(code, err, "--layers", "regular expression", repr(pattern))


@pytest.mark.parametrize("value", ["0", "-3", "many", "1.5"])
def test_a_bad_batch_size(workdir, capsys, value):
    code, _, err = convert(capsys, workdir, "--batch-size", value)
    assert_user_error(code, err, "--batch-size", value)


def test_a_batch_beyond_memory_is_refused_before_the_work(workdir, capsys, monkeypatch):
    monkeypatch.setattr(_args, "available_memory", lambda: 1024)
    out = workdir / "fast.keras"
    code, _, err = convert(capsys, workdir, "--batch-size", "64", "-o", out)
    assert_user_error(code, err, "--batch-size", "64", "available")
    assert not out.exists()


@pytest.mark.parametrize(
    "name, write, problem",
    [
        ("text.npy", lambda p: p.write_text("1 2 3"), "not a NumPy .npy array"),
        (
            "objects.npy",
            lambda p: np.save(p, np.array([{}, []], dtype=object)),
            "holds Python objects (pickled), not numbers",
        ),
        ("words.npy", lambda p: np.save(p, np.array(["a", "b"])), "not numbers"),
        ("pair.npz", lambda p: np.savez(p, x=np.zeros(3)), ".npz archive"),
        ("shape.npy", lambda p: np.save(p, np.zeros((2, 5, 5, 3))), "shape"),
        ("trunc.npy", lambda p: p.write_bytes(_npy_bytes()[:100]), "readable .npy"),
    ],
)
def test_bad_calibration_data_names_the_argument(workdir, capsys, name, write, problem):
    write(workdir / name)
    code, _, err = convert(capsys, workdir, "--calibration-data", workdir / name)
    assert_user_error(code, err, "--calibration-data", name, problem)


def _npy_bytes() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((4, 8, 8, 3), "float32"))
    return buffer.getvalue()


def test_missing_calibration_data(workdir, capsys):
    code, _, err = convert(capsys, workdir, "--calibration-data", workdir / "x.npy")
    assert_user_error(code, err, "--calibration-data", "no such file")


def test_api_value_errors_are_user_errors(workdir, capsys):
    code, _, err = convert(capsys, workdir, "--layers", "nothing")
    assert_user_error(code, err, "matches no")


@pytest.mark.parametrize("error", [TypeError, AttributeError, KeyError])
def test_programming_errors_keep_their_traceback(workdir, monkeypatch, error):
    def broken(*args, **kwargs):
        raise error("a bug")

    monkeypatch.setattr(fastconv.convert, "convert_model", broken)
    with pytest.raises(error, match="a bug"):
        run(None, "convert", workdir / "model.keras", *FAST)


# ---------------------------------------------------------- search flags
def test_limit_without_data_is_refused(workdir, capsys):
    code, _, err = convert(capsys, workdir, "--limit", "5")
    assert_user_error(code, err, "--limit", "needs --data", "5")


@pytest.mark.parametrize("flag", ["--method", "--rank"])
def test_method_or_rank_with_data_is_refused(workdir, capsys, flag):
    args = {"--method": ("--method", "factorized"), "--rank": ("--rank", "3")}[flag]
    before = snapshot(workdir)
    code, _, err = run(
        capsys, "convert", workdir / "model.keras", "--data", "mnist", *args
    )
    assert snapshot(workdir) == before
    assert_user_error(code, err, flag, "does not apply to a search")


def test_keras_optimizer_warning_on_load_leaves_one_line(workdir, capsys, monkeypatch):
    """Keras warns when it skips a trained model's optimizer state on loading."""
    load = keras.saving.load_model

    def load_and_warn(*args, **kwargs):
        warnings.warn(
            "Skipping variable loading for optimizer 'adam', because it has 1 "
            "variables whereas the saved optimizer has 5 variables.",
            stacklevel=2,
        )
        return load(*args, **kwargs)

    monkeypatch.setattr(keras.saving, "load_model", load_and_warn)
    monkeypatch.setattr(_args, "available_memory", lambda: 1024)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, _, err = convert(capsys, workdir, "--batch-size", "64")
    assert_user_error(code, err, "--batch-size", "64")
    assert not [str(w.message) for w in caught]


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--rank", "0"),
        ("--rank", "1.5"),
        ("--rank", "0,4"),
    ],
)
def test_a_bad_rank_is_refused_when_parsed(workdir, capsys, monkeypatch, flag, value):
    monkeypatch.setattr(_args, "load_model", lambda *a, **k: pytest.fail("loaded"))
    code, _, err = convert(capsys, workdir, flag, value)
    assert_user_error(code, err, flag, value)


# ------------------------------------------------- layer types and folding
@pytest.mark.parametrize("value", ["bogus", "conv,conv", "", "dense,"])
def test_bad_layer_types_are_refused(workdir, capsys, value):
    code, _, err = convert(capsys, workdir, "--layer-types", value)
    assert_user_error(code, err, "--layer-types", repr(value))


def test_dense_layers_and_batchnorm_folding(tmp_path, capsys):
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 3, name="c1"),
            keras.layers.Conv2D(8, 3, name="c2"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.Flatten(),
            keras.layers.Dense(16, name="hidden"),
            keras.layers.Dense(3, name="classifier"),
        ]
    )
    bn = model.get_layer("bn")
    bn.moving_variance.assign(np.full(8, 2.0, "float32"))
    path = tmp_path / "m.keras"
    model.save(path)
    out = tmp_path / "fast.keras"
    code, stdout, err = run(
        capsys,
        "convert",
        path,
        *FAST,
        "--layer-types",
        "conv,dense",
        "--fold-batchnorm",
        "-o",
        out,
    )
    assert code == 0, err
    new = keras.models.load_model(out)
    kinds = {layer.name: type(layer).__name__ for layer in new.layers}
    assert kinds["hidden_svd"] == "LowRankDense"
    assert kinds["classifier"] == "Dense"
    assert "c2" in stdout and "bn" in stdout and "fold" in stdout.lower()
