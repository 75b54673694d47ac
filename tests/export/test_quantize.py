"""``export_model(..., format="litert", quantize=...)``: post-training
quantization on the TensorFlow backend. The quantized files run in LiteRT's
interpreter close to Keras, hold int8 tensors where they should, are smaller
than the float file, and every impossible request is refused before any work.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest

import fastconv
from fastconv import export

SHAPE = (8, 8, 4)


def small_model() -> keras.Model:
    """A CP and a Tucker layer, then a dense head whose 5120 weights dominate
    the file, so that storing them in int8 shows in its size."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input(SHAPE)
    x = fastconv.CPConv2D(8, 3, rank=4, padding="same", activation="relu")(inputs)
    x = fastconv.TuckerConv2D(8, 3, rank=4, padding="same", activation="relu")(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x))


def examples(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *SHAPE)).astype("float32")


def require_litert_on_tensorflow() -> None:
    if keras.backend.backend() != "tensorflow":
        pytest.skip("quantization runs on the tensorflow backend only")
    for module in export.needed_modules("litert"):
        pytest.importorskip(module, reason="pip install fastconv[export]")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """mode -> the path of the model exported with it (None: float32), with
    the model and a test batch; exported once a module (each takes seconds)."""
    require_litert_on_tensorflow()
    model = small_model()
    folder = tmp_path_factory.mktemp("quantized")
    paths = {}
    with warnings.catch_warnings():
        # Its CP layer's components hardly cancel (1.5 at rank 4): no mode warns.
        warnings.simplefilter("error", fastconv.QuantizationAccuracyWarning)
        for mode in (None, *export.QUANTIZE_MODES):
            paths[mode] = export.export_model(
                model,
                folder / f"{mode or 'float'}.tflite",
                "litert",
                quantize=mode,
                representative_data=examples(300, seed=1) if mode == "int8" else None,
            )
    x = examples(64, seed=2)
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    return model, paths, x, expected


def tensor_types(path) -> dict[str, str]:
    """Each tensor's name -> its dtype's name, as LiteRT's interpreter sees it."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    return {
        detail["name"]: np.dtype(detail["dtype"]).name
        for detail in interpreter.get_tensor_details()
    }


def weight_types(path) -> dict[str, str]:
    """The dtypes of the layers' weights (TensorFlow names them after the op
    that reads them: a convolution, a depthwise convolution, a matrix product)."""
    return {
        name: dtype
        for name, dtype in tensor_types(path).items()
        if name.rsplit("/", 1)[-1] in ("convolution", "convolution_1", "depthwise")
        or name.endswith("/MatMul")
    }


@pytest.mark.parametrize(
    "mode, relative_bound", [(None, 1e-5), ("dynamic", 0.05), ("int8", 0.25)]
)
def test_the_file_runs_close_to_keras(exported, mode, relative_bound):
    _, paths, x, expected = exported
    got = export.run_exported(paths[mode], "litert", x)
    assert got.dtype == np.float32 and got.shape == expected.shape
    scale = np.max(np.abs(expected))
    assert np.max(np.abs(got - expected)) <= relative_bound * scale
    agreement = np.mean(got.argmax(axis=1) == expected.argmax(axis=1))
    assert agreement >= 0.9


@pytest.mark.parametrize("mode", export.QUANTIZE_MODES)
def test_a_quantized_file_is_smaller_than_the_float_one(exported, mode):
    _, paths, _, _ = exported
    assert paths[mode].stat().st_size < 0.6 * paths[None].stat().st_size


def test_int8_computes_in_int8_between_a_float_input_and_output(exported):
    _, paths, _, _ = exported
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(paths["int8"]))
    ends = [
        *interpreter.get_input_details(),
        *interpreter.get_output_details(),
    ]
    assert [np.dtype(detail["dtype"]).name for detail in ends] == ["float32"] * 2
    types = tensor_types(paths["int8"])
    floats = {name for name, dtype in types.items() if dtype == "float32"}
    assert floats == {detail["name"] for detail in ends}
    weights = weight_types(paths["int8"])
    assert len(weights) >= 6 and set(weights.values()) == {"int8"}


def test_dynamic_stores_the_large_weights_in_int8_and_computes_in_float(exported):
    _, paths, _, _ = exported
    types = tensor_types(paths["dynamic"])
    # TensorFlow quantizes only weights of 1024 elements or more: the dense
    # kernel here, not the small factors.
    (dense,) = [n for n in types if "/dense" in n and n.endswith("/MatMul")]
    assert types[dense] == "int8"
    assert "int8" not in {dtype for name, dtype in types.items() if name != dense}
    assert types[next(n for n in types if "Relu" in n)] == "float32"


def test_the_float_file_has_no_int8_tensor(exported):
    _, paths, _, _ = exported
    assert "int8" not in set(tensor_types(paths[None]).values())


@pytest.mark.parametrize(
    "kwargs, problem",
    [
        (dict(quantize="int4"), "quantize must be one of"),
        (dict(quantize="int8"), "needs representative_data"),
        (
            dict(quantize="int8", representative_data=np.zeros((5, 8, 8, 3))),
            r"shaped \(n, 8, 8, 4\).*received shape \(5, 8, 8, 3\)",
        ),
        (
            dict(quantize="int8", representative_data=np.zeros((0, 8, 8, 4))),
            "with n >= 1",
        ),
        (
            dict(quantize="int8", representative_data=np.zeros((8, 8, 4))),
            r"received shape \(8, 8, 4\)",
        ),
        (
            dict(quantize="dynamic", representative_data=np.zeros((5, 8, 8, 4))),
            "quantize='int8' only",
        ),
        (
            dict(representative_data=np.zeros((5, 8, 8, 4))),
            "quantize='int8' only",
        ),
        (
            dict(
                quantize="int8",
                representative_data=np.zeros((5, 8, 8, 4)),
                calibration_samples=0,
            ),
            "calibration_samples must be an int >= 1",
        ),
    ],
)
def test_an_impossible_quantization_is_refused_before_any_work(
    tmp_path, monkeypatch, kwargs, problem
):
    require_litert_on_tensorflow()
    model = small_model()
    monkeypatch.setattr(model, "export", lambda *a, **k: pytest.fail("exported"))
    with pytest.raises(ValueError, match=problem):
        export.export_model(model, tmp_path / "m.tflite", "litert", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_quantize_needs_the_litert_format(tmp_path):
    if "onnx" not in export.exportable_formats():
        pytest.skip(f"the {keras.backend.backend()} backend cannot write onnx")
    with pytest.raises(ValueError, match="needs format 'litert'.*format='onnx'"):
        export.export_model(small_model(), tmp_path / "m.onnx", quantize="dynamic")
    assert list(tmp_path.iterdir()) == []


def test_quantize_names_the_backend_it_needs(tmp_path, monkeypatch):
    """LiteRT is written on PyTorch too (litert-torch), but only TensorFlow's
    converter quantizes here: that backend is refused by name."""
    model = small_model()
    monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    with pytest.raises(ValueError, match="needs the tensorflow backend.*the torch"):
        export.export_model(model, tmp_path / "m.tflite", "litert", quantize="int8")
    assert list(tmp_path.iterdir()) == []


def test_a_mixed_precision_model_is_refused_naming_its_layer(tmp_path):
    """TensorFlow's int8 converter fails on bfloat16 convolutions with an
    MLIR error, and a float LiteRT file of them needs the Flex delegate."""
    require_litert_on_tensorflow()
    inputs = keras.Input(SHAPE)
    conv = keras.layers.Conv2D(4, 3, dtype="mixed_bfloat16", name="half")(inputs)
    model = keras.Model(inputs, keras.layers.Flatten()(conv))
    for mode, data in (("dynamic", None), ("int8", examples(5, seed=0))):
        with pytest.raises(export.QuantizationError, match="'half' computes in bf"):
            export.export_model(
                model,
                tmp_path / "m.tflite",
                "litert",
                quantize=mode,
                representative_data=data,
            )
    assert list(tmp_path.iterdir()) == []
