"""``fastconv export``: each format written and checked; bad formats, paths and
missing packages refused with exit 2 before any work, nothing lost."""

from __future__ import annotations

import sys

import keras
import numpy as np
import pytest

from fastconv import export
from tests.cli.checks import assert_user_error, run, snapshot

SUFFIXES = {"onnx": ".onnx", "litert": ".tflite", "openvino": ".xml"}
CLI_TO_KERAS = {"saved_model": "tf_saved_model"}


def require(format: str) -> None:
    """Skips unless this backend writes ``format`` and its packages are here."""
    keras_format = CLI_TO_KERAS.get(format, format)
    backend = keras.backend.backend()
    if keras_format not in export.exportable_formats():
        pytest.skip(f"the {backend} backend cannot write {format}")
    for module in export.needed_modules(keras_format):
        pytest.importorskip(module, reason="pip install fastconv[export]")


def exported(capsys, workdir, format, *extra, output=None):
    """Runs export on ``workdir/model.keras``; checks nothing changed on a user
    error."""
    output = output or workdir / f"out{SUFFIXES.get(format, '')}"
    before = snapshot(workdir)
    code, out, err = run(
        capsys,
        "export",
        workdir / "model.keras",
        "--format",
        format,
        "-o",
        output,
        *extra,
    )
    if code == 2:
        assert snapshot(workdir) == before
    return code, out, err


@pytest.mark.parametrize("format", ["onnx", "litert", "openvino", "saved_model"])
def test_each_format_is_written_and_checked(workdir, capsys, format):
    require(format)
    code, out, err = exported(capsys, workdir, format, "--check")
    assert code == 0, err
    output = workdir / f"out{SUFFIXES.get(format, '')}"
    assert f"exported: {output}" in out
    difference = float(out.split("largest difference from Keras: ")[1])
    assert difference < 1e-4
    leftovers = {p.name for p in workdir.iterdir()} - {"model.keras", output.name}
    assert leftovers == ({"out.bin"} if format == "openvino" else set())


def test_an_existing_output_is_kept_without_force_and_replaced_with_it(workdir, capsys):
    require("onnx")
    (workdir / "out.onnx").write_bytes(b"old")
    code, _, err = exported(capsys, workdir, "onnx")
    assert_user_error(code, err, "--output", "already exists", "--force")
    assert (workdir / "out.onnx").read_bytes() == b"old"
    code, _, err = exported(capsys, workdir, "onnx", "--force")
    assert code == 0, err
    assert (workdir / "out.onnx").read_bytes() != b"old"


def test_an_existing_saved_model_folder_is_replaced_only_with_force(workdir, capsys):
    require("saved_model")
    folder = workdir / "out"
    folder.mkdir()
    (folder / "old.txt").write_text("old")
    code, _, err = exported(capsys, workdir, "saved_model")
    assert_user_error(code, err, "--output", "already exists", "--force")
    code, _, err = exported(capsys, workdir, "saved_model", "--force")
    assert code == 0, err
    assert (folder / "saved_model.pb").exists() and not (folder / "old.txt").exists()
    assert sorted(p.name for p in workdir.iterdir()) == ["model.keras", "out"]


@pytest.mark.parametrize("format", ["onnx", "saved_model"])
def test_the_input_model_is_never_replaced(workdir, capsys, format):
    require(format)
    code, _, err = exported(
        capsys, workdir, format, "--force", output=workdir / "model.keras"
    )
    assert_user_error(code, err, "--output")


def test_an_existing_openvino_weights_file_is_kept_without_force(workdir, capsys):
    require("openvino")
    (workdir / "out.bin").write_bytes(b"old")
    code, _, err = exported(capsys, workdir, "openvino")
    assert_user_error(code, err, "weights", "out.bin", "already exists")


@pytest.mark.parametrize(
    "format, output, problem",
    [
        ("onnx", "out.tflite", "must end in .onnx"),
        ("litert", "out.onnx", "must end in .tflite"),
        ("openvino", "out.onnx", "must end in .xml"),
        ("onnx", "nodir/out.onnx", "folder that does not exist"),
        ("saved_model", "nodir/out", "folder that does not exist"),
        ("saved_model", "model.keras", "would replace the input"),
    ],
)
def test_a_bad_output_is_refused(workdir, capsys, format, output, problem):
    require(format)
    code, _, err = exported(capsys, workdir, format, output=workdir / output)
    assert_user_error(code, err, "--output", problem)


def test_an_unknown_format_is_refused(workdir, capsys):
    code, _, err = exported(capsys, workdir, "torchscript", output=workdir / "x.pt")
    assert_user_error(code, err, "--format", "torchscript")


def test_a_format_the_backend_cannot_write_is_refused(workdir, capsys, monkeypatch):
    backend = keras.backend.backend()
    needs = {k: v for k, v in export._NEEDS.items() if k != ("litert", backend)}
    monkeypatch.setattr(export, "_NEEDS", needs)
    code, _, err = exported(capsys, workdir, "litert")
    assert_user_error(code, err, "--format", "litert", f"{backend} backend")


def test_a_missing_runtime_names_the_extra(workdir, capsys, monkeypatch):
    if "onnx" not in export.exportable_formats():
        pytest.skip(f"the {keras.backend.backend()} backend cannot write onnx")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    code, _, err = exported(capsys, workdir, "onnx")
    assert_user_error(code, err, "--format", "onnxruntime", "fastconv[export]")


def test_check_needs_known_input_sizes(tmp_path, capsys):
    from tests.cli.checks import tiny_model

    tiny_model(spatial=(None, None)).save(tmp_path / "model.keras")
    require("openvino")
    code, _, err = exported(capsys, tmp_path, "openvino", "--check")
    assert_user_error(code, err, "--check", "input sizes")


def require_quantization() -> None:
    if keras.backend.backend() != "tensorflow":
        pytest.skip("--quantize runs on the tensorflow backend only")
    require("litert")


def tensor_types(path) -> set[str]:
    from ai_edge_litert.interpreter import Interpreter

    details = Interpreter(model_path=str(path)).get_tensor_details()
    return {np.dtype(detail["dtype"]).name for detail in details}


def examples(path, shape=(8, 8, 3), n=20):
    np.savez(path, x=np.random.default_rng(0).random((n, *shape), "float32"))
    return path


@pytest.mark.parametrize("mode", ["dynamic", "int8"])
def test_a_quantized_litert_export_is_written_and_checked(workdir, capsys, mode):
    require_quantization()
    calibration = ()
    if mode == "int8":
        calibration = ("--calibration-dataset", examples(workdir / "x.npz"))
    code, out, err = exported(
        capsys, workdir, "litert", "--quantize", mode, *calibration, "--check"
    )
    assert code == 0, err
    difference = float(out.split("largest difference from Keras: ")[1])
    assert difference < (0.05 if mode == "int8" else 1e-4)
    types = tensor_types(workdir / "out.tflite")
    # The tiny model's 108 weights are below dynamic quantization's threshold
    # of 1024: only int8 changes the computation.
    assert ("int8" in types) == (mode == "int8")


def test_the_calibration_dataset_can_be_a_npy_file(workdir, capsys):
    require_quantization()
    np.save(workdir / "x.npy", np.random.default_rng(0).random((5, 8, 8, 3)))
    code, _, err = exported(
        capsys,
        workdir,
        "litert",
        "--quantize",
        "int8",
        "--calibration-dataset",
        workdir / "x.npy",
    )
    assert code == 0, err
    assert "int8" in tensor_types(workdir / "out.tflite")


def test_int8_of_cancelling_cp_layers_prints_the_warning(tmp_path, capsys):
    require_quantization()
    from tests.export.test_int8_warning import SHAPE, cp_layer, model_of

    model = model_of(cp_layer(True, "bad"))
    model.save(tmp_path / "model.keras")
    calibration = examples(tmp_path / "x.npz", shape=SHAPE)
    quantize = ("--quantize", "int8", "--calibration-dataset", calibration)
    code, out, err = exported(capsys, tmp_path, "litert", *quantize)
    assert code == 0, err
    assert f"exported: {tmp_path / 'out.tflite'}" in out
    value = model.get_layer("bad").cancellation()
    (line,) = [line for line in err.splitlines() if "warning" in line]
    assert line.startswith("fastconv export: warning: quantize='int8' may lose")
    assert f"bad ({value:.1f} at rank 4)" in line and "n_iter_max=10" in line
    assert "warnings.warn" not in err


def test_a_calibration_dataset_with_nan_is_refused(workdir, capsys):
    require_quantization()
    np.save(workdir / "nan.npy", np.full((5, 8, 8, 3), np.nan, "float32"))
    quantize = ("--quantize", "int8", "--calibration-dataset", workdir / "nan.npy")
    code, _, err = exported(capsys, workdir, "litert", *quantize)
    assert_user_error(code, err, "--calibration-dataset", "NaN or Inf")
    assert not (workdir / "out.tflite").exists()


def test_a_calibration_dataset_of_another_shape_is_refused(workdir, capsys):
    require_quantization()
    from fastconv.datasets import cache

    if not (cache.default_cache_dir() / "mnist.npz").exists():
        pytest.skip("MNIST is not cached")
    quantize = ("--quantize", "int8", "--calibration-dataset", "mnist")
    code, _, err = exported(capsys, workdir, "litert", *quantize)
    assert_user_error(code, err, "--calibration-dataset", "(100, 28, 28, 1)", "mnist")
    assert not (workdir / "out.tflite").exists()


@pytest.mark.parametrize(
    "format, extra, names",
    [
        ("onnx", ["--quantize", "dynamic"], ["--quantize", "--format litert", "onnx"]),
        ("litert", ["--quantize", "int8"], ["--quantize", "--calibration-dataset"]),
        ("litert", ["--calibration-dataset", "mnist"], ["--quantize int8"]),
        (
            "litert",
            ["--quantize", "dynamic", "--calibration-dataset", "mnist"],
            ["--calibration-dataset", "not dynamic"],
        ),
        (
            "litert",
            ["--quantize", "int8", "--calibration-dataset", "imagenet"],
            ["--calibration-dataset", "imagenet", "cifar10"],
        ),
        (
            "litert",
            ["--quantize", "int8", "--calibration-dataset", "missing.npz"],
            ["--calibration-dataset", "no such file"],
        ),
        (
            "litert",
            ["--quantize", "int8", "--calibration-dataset", "{workdir}/bad.npz"],
            ["--calibration-dataset", "named x", "y"],
        ),
        (
            "litert",
            ["--quantize", "int8", "--calibration-dataset", "{workdir}/short.npz"],
            ["--calibration-dataset", "received shape (20, 8, 8)"],
        ),
        (
            "litert",
            ["--quantize", "int8", "--calibration-dataset", "{workdir}/text.npz"],
            ["--calibration-dataset", "text.npz", "not a NumPy .npy or .npz file"],
        ),
        (
            "litert",
            ["--quantize", "int8", "--calibration-dataset", "{workdir}/words.npz"],
            ["--calibration-dataset", "words.npz", "holds x of <U1 values"],
        ),
    ],
)
def test_a_quantization_that_cannot_be_made_is_refused(
    workdir, capsys, format, extra, names
):
    require_quantization()
    np.savez(workdir / "bad.npz", y=np.zeros(3))
    examples(workdir / "short.npz", shape=(8, 8))
    (workdir / "text.npz").write_text("not numpy")
    np.savez(workdir / "words.npz", x=np.array(["a", "b"]))
    extra = [arg.replace("{workdir}", str(workdir)) for arg in extra]
    code, _, err = exported(capsys, workdir, format, *extra)
    assert_user_error(code, err, *names)
    assert not list(workdir.glob("out*"))


def test_fold_batchnorm_folds_prints_and_keeps_the_outputs(tmp_path, capsys):
    require("onnx")
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    rng = np.random.default_rng(0)
    bn = model.get_layer("bn")
    bn.set_weights([rng.random(4) + 0.5 for _ in bn.get_weights()])
    model.save(tmp_path / "model.keras")
    code, out, err = exported(capsys, tmp_path, "onnx", "--fold-batchnorm", "--check")
    assert code == 0, err
    assert "1 BatchNormalization folded" in out and "folded bn into conv" in out
    assert float(out.split("largest difference from Keras: ")[1]) < 1e-4
    import onnx

    ops = {node.op_type for node in onnx.load(tmp_path / "out.onnx").graph.node}
    assert "BatchNormalization" not in ops


def test_a_mixed_precision_model_is_refused_for_quantization(tmp_path, capsys):
    require_quantization()
    inputs = keras.Input((8, 8, 3))
    conv = keras.layers.Conv2D(4, 3, dtype="mixed_bfloat16", name="half")(inputs)
    keras.Model(inputs, conv).save(tmp_path / "model.keras")
    code, _, err = exported(capsys, tmp_path, "litert", "--quantize", "dynamic")
    assert_user_error(code, err, "--quantize", "'half'", "bfloat16", "float32")
    assert not (tmp_path / "out.tflite").exists()
