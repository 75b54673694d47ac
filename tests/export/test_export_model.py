"""``fastconv.export.export_model``: what it refuses, and that a failed export
leaves the target as it was and nothing beside it."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from fastconv import export


def tiny_model() -> keras.Model:
    inputs = keras.Input((3,))
    return keras.Model(inputs, keras.layers.Dense(2)(inputs))


@pytest.mark.parametrize(
    "format, name, problem",
    [
        ("torchscript", "model.pt", "format must be one of"),
        ("onnx", "model.tflite", "must end in .onnx"),
        ("litert", "model.onnx", "must end in .tflite"),
        ("openvino", "model.bin", "must end in .xml"),
    ],
)
def test_a_bad_format_or_suffix_is_refused(tmp_path, format, name, problem):
    if format in export.FORMATS and format not in export.exportable_formats():
        problem = f"cannot be exported on the {keras.backend.backend()} backend"
    with pytest.raises(ValueError, match=problem):
        export.export_model(tiny_model(), tmp_path / name, format)
    assert list(tmp_path.iterdir()) == []


def test_a_missing_package_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setattr(export, "missing_packages", lambda *args: ["onnxruntime"])
    with pytest.raises(ModuleNotFoundError, match=r"fastconv\[export\]"):
        export.export_model(tiny_model(), tmp_path / "model.onnx", "onnx")


@pytest.mark.parametrize(
    "format, name", [("onnx", "model.onnx"), ("tf_saved_model", "old")]
)
def test_a_failed_export_keeps_the_target_and_leaves_nothing(
    tmp_path, monkeypatch, format, name
):
    if format not in export.exportable_formats(keras.backend.backend()):
        pytest.skip(f"the {keras.backend.backend()} backend does not write {format}")
    monkeypatch.setattr(export, "missing_packages", lambda *args: [])
    target = tmp_path / name
    if format == "onnx":
        target.write_bytes(b"before")
    else:
        target.mkdir()
        (target / "saved_model.pb").write_bytes(b"before")
    model = tiny_model()

    def half_written(path, **kwargs):
        with open(path, "wb") as file:
            file.write(b"half")
        raise RuntimeError("interrupted")

    monkeypatch.setattr(model, "export", half_written)
    with pytest.raises(RuntimeError, match="interrupted"):
        export.export_model(model, target, format)
    assert [p.name for p in tmp_path.iterdir()] == [name]
    before = target if format == "onnx" else target / "saved_model.pb"
    assert before.read_bytes() == b"before"


def test_a_saved_model_replaces_the_old_folder(tmp_path):
    pytest.importorskip("tensorflow")
    if "tf_saved_model" not in export.exportable_formats():
        pytest.skip(f"the {keras.backend.backend()} backend cannot write it")
    target = tmp_path / "old"
    target.mkdir()
    (target / "stale.txt").write_text("stale")
    model = tiny_model()
    export.export_model(model, target, "tf_saved_model")
    assert [p.name for p in tmp_path.iterdir()] == ["old"]
    assert not (target / "stale.txt").exists()
    x = np.ones((2, 3), "float32")
    assert export.largest_difference(model, target, "tf_saved_model", x) < 1e-5


@pytest.mark.parametrize(
    ("format", "suffix"), [("onnx", ".onnx"), ("litert", ".tflite")]
)
def test_run_exported_names_a_wrong_shape_and_an_unreadable_file(
    tmp_path, format, suffix
):
    pytest.importorskip("onnxruntime" if format == "onnx" else "ai_edge_litert")
    backend = keras.backend.backend()
    if format not in export.exportable_formats(backend):
        pytest.skip(f"the {backend} backend does not write {format}")
    if export.missing_packages(format, backend):
        pytest.skip(
            f"{format} on {backend} needs {export.missing_packages(format, backend)}"
        )
    path = export.export_model(tiny_model(), tmp_path / f"m{suffix}", format)
    with pytest.raises(ValueError, match=r"x must be shaped \(n, 3\).*\(1, 5\)"):
        export.run_exported(path, format, np.zeros((1, 5), "float32"))
    junk = tmp_path / f"junk{suffix}"
    junk.write_bytes(b"junk")
    with pytest.raises(ValueError, match=f"path='{junk}' is not a readable {format}"):
        export.run_exported(junk, format, np.zeros((1, 3), "float32"))


def test_int8_calibration_data_with_nan_is_refused(tmp_path):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("quantization runs on the tensorflow backend")
    pytest.importorskip("ai_edge_litert")
    data = np.full((4, 3), np.nan, "float32")
    with pytest.raises(export.QuantizationError, match="representative_data.*finite"):
        export.export_model(
            tiny_model(),
            tmp_path / "q.tflite",
            "litert",
            quantize="int8",
            representative_data=data,
        )
    assert list(tmp_path.iterdir()) == []


def test_calibration_settings_without_int8_are_refused(tmp_path):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("litert is written on the tensorflow backend here")
    with pytest.raises(export.QuantizationError, match="calibration_samples=0"):
        export.export_model(
            tiny_model(), tmp_path / "m.tflite", "litert", calibration_samples=0
        )
    assert list(tmp_path.iterdir()) == []
