"""Exporting a model with fastconv layers, and running what was exported.

Keras's own ``model.export(path, format=...)`` does the export: fastconv
layers are made of ``keras.ops`` calls, so every format Keras writes holds
them as plain operations, and the file runs where fastconv is not installed.
`export_model` adds three things to it:

- nothing is measured: the export runs inside
  ``fastconv.kernels.autotune.no_measuring()``, so each ``"auto"`` layer runs
  the choice cached for it or the static rule (``model.export`` alone is
  covered too: the autotuner measures nothing while Keras exports);
- the product is written atomically: a file is written next to its target
  and moved onto it, a folder (a SavedModel) or a pair of files (OpenVINO's
  ``.xml`` and ``.bin``) is written in a temporary folder beside it first;
- a missing package, or a backend that cannot write the format, is refused
  before any work with a message naming what to install or which backend to
  use.

``quantize=`` makes the LiteRT export a post-training quantized file
(TensorFlow backend): ``"dynamic"`` stores the weights in int8, ``"int8"``
computes in int8 too, calibrated on ``representative_data``; see
docs/export.md. An int8 export of a model whose CP layers' rank-1 components
cancel (`cp_cancellation`) warns with a `QuantizationAccuracyWarning`
(`quantization_warning`): such a file can lose several points of accuracy.

`run_exported` runs an exported file in its own runtime (ONNX Runtime,
LiteRT's interpreter, OpenVINO, TensorFlow) and `largest_difference` compares
it with the Keras model.
"""

from __future__ import annotations

import importlib.util
import math
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import keras
import numpy as np

from fastconv._files import write_atomically
from fastconv._validation import is_int_at_least
from fastconv.kernels import autotune
from fastconv.layers.cp_conv import BaseCPConv

__all__ = [
    "EXTRA",
    "FORMATS",
    "CANCELLATION_LIMIT",
    "QUANTIZE_MODES",
    "QuantizationAccuracyWarning",
    "QuantizationError",
    "SUFFIXES",
    "check_exportable",
    "cp_cancellation",
    "export_model",
    "exportable_formats",
    "largest_difference",
    "missing_packages",
    "needed_modules",
    "quantization_warning",
    "run_exported",
]

#: The formats of ``keras.Model.export`` that fastconv tests and supports.
FORMATS = ("tf_saved_model", "onnx", "litert", "openvino")
#: What an exported path ends in; a SavedModel is a folder, any name.
SUFFIXES = {"onnx": ".onnx", "litert": ".tflite", "openvino": ".xml"}
#: The optional dependencies that hold the exporters and runtimes.
EXTRA = "pip install fastconv[export]"

#: (format, backend) -> the modules Keras 3.15 needs to write the format on
#: that backend, with the runtime that reads it. A pair missing here is not
#: exported: Keras's SavedModel export on PyTorch needs torch_xla, which
#: fastconv does not support, and its OpenVINO export on JAX goes through
#: jax2tf, whose ``XlaCallModule`` OpenVINO (2026.4) cannot convert: a plain
#: ``keras.layers.Conv2D`` fails the same way.
_NEEDS = {
    ("tf_saved_model", "tensorflow"): ("tensorflow",),
    ("tf_saved_model", "jax"): ("tensorflow",),
    ("onnx", "tensorflow"): ("tf2onnx", "onnx", "onnxruntime"),
    ("onnx", "jax"): ("jax2onnx", "onnxruntime"),
    ("onnx", "torch"): ("onnx", "onnxscript", "onnxruntime"),
    ("litert", "tensorflow"): ("tensorflow", "ai_edge_litert"),
    ("litert", "torch"): ("litert_torch", "ai_edge_litert"),
    ("openvino", "tensorflow"): ("openvino",),
    ("openvino", "torch"): ("openvino",),
}
#: The post-training quantizations of a LiteRT export (``quantize=``).
QUANTIZE_MODES = ("dynamic", "int8")
#: Examples drawn from ``representative_data`` to calibrate an int8 export.
CALIBRATION_SAMPLES = 100

#: A CP layer whose `BaseCPConv.cancellation` exceeds this many times the
#: square root of its rank makes ``quantize="int8"`` warn. Orthogonal
#: components give at most 1 times. From the CIFAR-10 reference converted
#: with CP at 0.25, three seeds each
#: (benchmarks/results/deploy/int8/cp-seed{0,1,2}-{default,10}/, key
#: ``cp_layers``): with the default ALS sweeps (int8 loss 3.90 to 7.00 points)
#: four of the five CP layers of every model are at 4.29 to 7.22 times
#: (the fifth at 2.48 to 2.76); with ``n_iter_max=10`` (int8 loss 0.55 to
#: 1.25) every layer is at 1.33 to 2.73 times. 3.5 lies midway in that gap.
#: The plain ratios overlap (35.4 to 87.4 against 12.5 to 37.1): a larger
#: rank allows a larger one.
CANCELLATION_LIMIT = 3.5

#: Modules not in the ``export`` extra, and the package that holds each.
_OUTSIDE_EXTRA = {"jax2onnx": "jax2onnx", "litert_torch": "litert-torch"}


class QuantizationError(ValueError):
    """A quantization `export_model` cannot make: an unknown mode, a format
    other than LiteRT, a backend other than TensorFlow, a model that does not
    compute in float32, or missing or misshapen representative data."""


class QuantizationAccuracyWarning(UserWarning):
    """A quantized export that is likely to lose accuracy: an int8 export of
    a model whose CP layers' rank-1 components cancel (see
    `quantization_warning`)."""


def cp_cancellation(model) -> dict[str, dict[str, float]]:
    """``{layer name: {"rank": R, "cancellation": c}}`` for each CP layer of
    ``model`` (nested models' too), in the order of ``model.layers``; ``c`` is
    `BaseCPConv.cancellation`, which reads the weights and measures nothing."""
    return {
        layer.name: {"rank": layer.rank, "cancellation": layer.cancellation()}
        for layer in _cp_layers(model)
    }


def _cp_layers(model):
    for layer in model.layers:
        if isinstance(layer, BaseCPConv):
            yield layer
        elif hasattr(layer, "layers"):
            yield from _cp_layers(layer)


def quantization_warning(
    model, quantize: str | None
) -> QuantizationAccuracyWarning | None:
    """The `QuantizationAccuracyWarning` that `export_model` gives for
    ``model`` and ``quantize``, or None.

    Only ``"int8"`` warns, for CP layers whose cancellation exceeds
    `CANCELLATION_LIMIT` times the square root of their rank: int8 rounding
    of their large intermediate activations is amplified in their output
    (docs/deploy.md). ``"dynamic"`` keeps the activations in float; with
    16-bit activations and 8-bit weights, a CP model whose int8 file lost
    7.00 points lost 1.15 (docs/deploy.md), so the weights alone cost little.
    """
    if quantize != "int8":
        return None
    found = {
        name: layer
        for name, layer in cp_cancellation(model).items()
        if layer["cancellation"] > CANCELLATION_LIMIT * math.sqrt(layer["rank"])
    }
    if not found:
        return None
    listed = ", ".join(
        f"{name} ({layer['cancellation']:.1f} at rank {layer['rank']})"
        for name, layer in found.items()
    )
    return QuantizationAccuracyWarning(
        "quantize='int8' may lose several points of accuracy: the rank-1 "
        f"components of CP layers {listed} cancel. Their norms add up to that "
        "many times the norm of the kernel they sum to, more than "
        f"{CANCELLATION_LIMIT} sqrt(rank), so the layers' intermediate "
        "activations are large and their int8 rounding is amplified in the "
        "output (a CIFAR-10 model whose CP layers were at 35 to 87 lost 5.8 "
        "points, docs/deploy.md). Convert the original model again with fewer "
        "ALS sweeps, fastconv.convert_model(original, 'cp', rank, "
        "n_iter_max=10), or with 'tucker', and measure the int8 file's "
        "accuracy on held-out data (fastconv.export.run_exported)"
    )


def check_exportable(format: str, backend: str | None = None) -> None:
    """Refuses a format fastconv does not export, or one the backend cannot write.

    Args:
        format: one of `FORMATS`.
        backend: a Keras backend name; default the current one.

    Raises:
        ValueError: naming the format, and for a backend the backends that can.
    """
    backend = backend or keras.backend.backend()
    _check_format(format)
    if (format, backend) not in _NEEDS:
        able = [b for (f, b) in _NEEDS if f == format]
        raise ValueError(
            f"format {format!r} cannot be exported on the {backend} backend; "
            f"set KERAS_BACKEND to one of {able}"
        )


def _check_format(format: str) -> None:
    if not isinstance(format, str) or format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, received format={format!r}")


def exportable_formats(backend: str | None = None) -> list[str]:
    """The `FORMATS` that Keras can write on ``backend`` (default: current)."""
    backend = backend or keras.backend.backend()
    return [format for format in FORMATS if (format, backend) in _NEEDS]


def needed_modules(format: str, backend: str | None = None) -> tuple[str, ...]:
    """The modules that exporting ``format`` on ``backend`` and running the
    result need (see `check_exportable`)."""
    backend = backend or keras.backend.backend()
    check_exportable(format, backend)
    return _NEEDS[format, backend]


def missing_packages(format: str, backend: str | None = None) -> list[str]:
    """The `needed_modules` that cannot be imported here."""
    return [
        module
        for module in needed_modules(format, backend)
        if importlib.util.find_spec(module) is None
    ]


def _require(format: str, backend: str) -> None:
    missing = missing_packages(format, backend)
    if not missing:
        return
    outside = [_OUTSIDE_EXTRA[m] for m in missing if m in _OUTSIDE_EXTRA]
    install = f"pip install {' '.join(outside)}" if outside else EXTRA
    raise ModuleNotFoundError(
        f"exporting format {format!r} on the {backend} backend needs "
        f"{', '.join(missing)}, which cannot be imported; {install}"
    )


def export_model(
    model,
    path,
    format: str = "onnx",
    *,
    quantize: str | None = None,
    representative_data=None,
    calibration_samples: int = CALIBRATION_SAMPLES,
    seed: int = 0,
    **kwargs,
) -> Path:
    """Exports ``model`` to ``path`` with ``model.export``, measuring nothing.

    Args:
        model: a built Keras model (fastconv layers or not).
        path: the file to write (``.onnx``, ``.tflite``, OpenVINO's ``.xml``,
            whose weights go to the ``.bin`` beside it) or, for
            ``tf_saved_model``, the folder. An existing one is replaced.
        format: one of `FORMATS`.
        quantize: None (float32), or a post-training quantization of a
            ``"litert"`` export on the TensorFlow backend: ``"dynamic"``
            (weights stored in int8, computed in float) or ``"int8"`` (weights
            and activations in int8, calibrated on ``representative_data``;
            the file's input and output stay float32, with a quantize and a
            dequantize at the ends, so it is called like the float one).
        representative_data: for ``"int8"``, examples of the model's single
            input (an array whose first axis indexes them, shaped like the
            training data); ``calibration_samples`` of them, drawn at random
            with ``seed``, calibrate the activations' ranges.
        calibration_samples: how many examples calibrate (all, if fewer).
        seed: the seed of that draw.
        **kwargs: passed to ``model.export`` (``input_signature``, an opset).
            For ONNX the signature defaults to the model's inputs, so that a
            model just loaded, never called, exports.

    Returns:
        ``path``, as a ``Path``.

    Raises:
        TypeError: ``model`` is not a ``keras.Model``, ``path`` is not a str
            or ``os.PathLike``, or a keyword argument the format does not take.
        ValueError: an unknown format, a backend that cannot write it, a model
            that is not built, a path whose suffix does not fit the format, or
            a quantization that cannot be made (a `QuantizationError`: an
            unknown mode, a format other than ``"litert"``, a backend other
            than TensorFlow, a model with a layer that does not compute in
            float32 (mixed precision), ``"int8"`` without representative data
            or with data of the wrong shape).

    Warns:
        QuantizationAccuracyWarning: ``quantize="int8"`` for a model whose CP
            layers' components cancel (`quantization_warning`), naming them.
        FileNotFoundError: the folder of ``path`` does not exist.
        ModuleNotFoundError: a package the export needs is missing; the
            message says what to install.
    """
    _check_model(model)
    path = _check_path(path)
    backend = keras.backend.backend()
    check_exportable(format, backend)
    _check_kwargs(format, kwargs)
    suffix = SUFFIXES.get(format)
    if suffix is not None and path.suffix != suffix:
        raise ValueError(
            f"path must end in {suffix} for format {format!r}, received path={path}"
        )
    if quantize != "int8" and (calibration_samples != CALIBRATION_SAMPLES or seed != 0):
        raise QuantizationError(
            "calibration_samples and seed choose the examples of quantize='int8' "
            f"only, received quantize={quantize!r} with "
            f"calibration_samples={calibration_samples!r}, seed={seed!r}"
        )
    if quantize is not None or representative_data is not None:
        kwargs.update(
            _quantization(
                model,
                format,
                backend,
                quantize,
                representative_data,
                calibration_samples,
                seed,
            )
        )
    _require(format, backend)
    warning = quantization_warning(model, quantize)
    if warning is not None:
        warnings.warn(warning, stacklevel=2)
    kwargs.setdefault("verbose", False)
    inputs = getattr(model, "inputs", None)
    if format == "onnx" and "input_signature" not in kwargs and inputs:
        # Keras's ONNX export refuses a model never called (one just loaded)
        # unless it is given the signature, which its inputs say.
        specs = [
            keras.InputSpec(shape=tensor.shape, dtype=tensor.dtype) for tensor in inputs
        ]
        kwargs["input_signature"] = specs if len(specs) == 1 else [specs]

    def export(target: Path) -> None:
        with autotune.no_measuring():
            model.export(str(target), format=format, **kwargs)

    if format in ("onnx", "litert"):
        write_atomically(path, export)
    else:
        _write_in_folder(path, format, export)
    return path


def _quantization(
    model, format, backend, quantize, data, samples, seed
) -> dict[str, object]:
    """The ``tf.lite.TFLiteConverter`` settings of a quantized LiteRT export,
    which Keras's LiteRT exporter sets on its converter; or a `QuantizationError`."""
    if quantize is None:
        raise QuantizationError(
            "representative_data calibrates quantize='int8' only, received "
            "quantize=None"
        )
    if quantize not in QUANTIZE_MODES:
        raise QuantizationError(
            f"quantize must be one of {QUANTIZE_MODES} or None, received "
            f"quantize={quantize!r}"
        )
    if format != "litert":
        raise QuantizationError(
            f"quantize={quantize!r} needs format 'litert', received format={format!r}"
        )
    if backend != "tensorflow":
        raise QuantizationError(
            f"quantize={quantize!r} needs the tensorflow backend (TensorFlow's "
            f"TFLiteConverter quantizes), received the {backend} backend; set "
            "KERAS_BACKEND=tensorflow"
        )
    _check_float32(model, quantize)
    import tensorflow as tf

    if quantize == "dynamic":
        if data is not None:
            raise QuantizationError(
                "representative_data calibrates quantize='int8' only; "
                "quantize='dynamic' quantizes the weights alone"
            )
        return {"optimizations": [tf.lite.Optimize.DEFAULT]}
    if data is None:
        raise QuantizationError(
            "quantize='int8' needs representative_data: examples of the model's "
            "input (from its training data) to calibrate the activations"
        )
    if not is_int_at_least(samples, 1):
        raise QuantizationError(
            "calibration_samples must be an int >= 1, received "
            f"calibration_samples={samples!r}"
        )
    examples = _calibration_examples(model, data, samples, seed)

    def representative_dataset():
        for example in examples:
            yield [example[np.newaxis]]

    return {
        "optimizations": [tf.lite.Optimize.DEFAULT],
        "representative_dataset": representative_dataset,
        "target_spec": {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]},
    }


def _check_float32(model, quantize: str) -> None:
    """Refuses a model with a layer that computes in another dtype than
    float32: mixed precision exports bfloat16 or float16 operations, which
    the int8 converter refuses and LiteRT's builtin kernels lack."""
    layers = list(model.layers)
    while layers:
        layer = layers.pop()
        layers += getattr(layer, "layers", [])
        compute = layer.dtype_policy.compute_dtype
        if compute != "float32":
            raise QuantizationError(
                f"quantize={quantize!r} needs a model that computes in float32; "
                f"layer {layer.name!r} computes in {compute} (dtype policy "
                f"{layer.dtype_policy.name!r}): rebuild the model with "
                "dtype='float32' and copy its weights"
            )


def _calibration_examples(model, data, samples: int, seed: int) -> np.ndarray:
    """``samples`` examples of ``data`` drawn without replacement, as float32,
    after checking that each has the shape of the model's single input."""
    if len(model.inputs) != 1:
        raise QuantizationError(
            f"quantize='int8' needs a model with one input, received one with "
            f"{len(model.inputs)}"
        )
    data = np.asarray(data)
    expected = tuple(model.inputs[0].shape[1:])
    fits = data.ndim == len(expected) + 1 and all(
        size is None or size == given
        for size, given in zip(expected, data.shape[1:], strict=True)
    )
    if not fits or len(data) == 0:
        shown = ", ".join("None" if s is None else str(s) for s in expected)
        raise QuantizationError(
            "representative_data must be examples of the model's input, shaped "
            f"(n, {shown}) with n >= 1, received shape {data.shape}"
        )
    if not np.issubdtype(data.dtype, np.number) or not np.all(np.isfinite(data)):
        raise QuantizationError(
            "representative_data must hold finite numbers (it calibrates the "
            f"activations' ranges), received an array of dtype {data.dtype} with "
            "NaN, Inf or non-numbers"
        )
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(data), size=min(samples, len(data)), replace=False)
    return data[np.sort(chosen)].astype("float32")


def _check_model(model) -> None:
    """Refuses what is not a ``keras.Model``, or one that is not built.

    A built subclassed model exports: Keras traces its ``call``."""
    if not isinstance(model, keras.Model):
        raise TypeError(
            "export_model: model must be a keras.Model, received an object of "
            f"type {type(model).__name__}"
        )
    if not model.built or (
        isinstance(model, keras.Sequential) and not getattr(model, "inputs", None)
    ):
        raise ValueError(
            f"export_model: model {model.name!r} is not built; give it a "
            "keras.Input first or call it on an input"
        )


def _check_path(path) -> Path:
    """``path`` as a ``Path`` whose folder exists, or an error naming it."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            "export_model: path must be a str or os.PathLike, received "
            f"path={path!r} of type {type(path).__name__}"
        )
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(
            f"export_model: the folder of path does not exist, received "
            f"path={str(path)!r}"
        )
    return path


#: The keyword arguments of ``model.export`` each format takes, beyond
#: ``verbose`` and ``input_signature``. LiteRT's are its converter's
#: attributes, which Keras itself checks.
_KWARGS = {
    "onnx": {"opset_version", "is_static", "jax2tf_kwargs"},
    "tf_saved_model": {"is_static", "jax2tf_kwargs"},
    "openvino": {"is_static", "jax2tf_kwargs"},
}


def _check_kwargs(format: str, kwargs: dict) -> None:
    if format not in _KWARGS:
        return
    unknown = sorted(set(kwargs) - _KWARGS[format] - {"verbose", "input_signature"})
    if unknown:
        raise TypeError(
            f"export_model: unknown keyword arguments {unknown} for format "
            f"{format!r}; it takes verbose, input_signature and "
            f"{sorted(_KWARGS[format])}"
        )


def _write_in_folder(path: Path, format: str, export) -> None:
    """Writes a SavedModel folder or OpenVINO's two files in a temporary folder
    beside ``path``, then moves them into place (the ``.bin`` before the
    ``.xml`` that reads it; an old SavedModel aside before the new one)."""
    staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}-"))
    new = staging / "new" / path.name
    try:
        new.parent.mkdir()
        export(new)
        if format == "openvino":
            weights = path.with_suffix(".bin")
            os.replace(new.with_suffix(".bin"), weights)
            os.replace(new, path)
            return
        if path.exists():
            os.replace(path, staging / "old")
        os.replace(new, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def run_exported(path, format: str, x: np.ndarray) -> np.ndarray:
    """Runs the exported ``path`` on ``x`` in the format's runtime, on CPU.

    ONNX Runtime for ``onnx``, LiteRT's ``Interpreter`` (``ai_edge_litert``)
    for ``litert``, OpenVINO's ``Core`` in float32 for ``openvino``, and
    ``tf.saved_model.load`` (its ``serve`` endpoint) for ``tf_saved_model``.
    The model must have one input and one output; ``x`` (an array or what
    ``np.asarray`` takes) must hold floats, which are cast to float32, the
    dtype Keras exports.

    Raises:
        ValueError: an unknown format, a missing ``path``, a folder where a
            file is expected or the reverse, ``x`` of a dtype that is not a
            float, or an exported model of more than one input or output.
    """
    _check_format(format)
    path = _check_exported(path, format)
    x = _check_x(x)
    if format == "onnx":
        import onnxruntime

        session = _open(
            path,
            format,
            lambda: onnxruntime.InferenceSession(
                path, providers=["CPUExecutionProvider"]
            ),
        )
        _check_one(path, len(session.get_inputs()), len(session.get_outputs()))
        _check_shape(path, session.get_inputs()[0].shape, x)
        return session.run(None, {session.get_inputs()[0].name: x})[0]
    if format == "litert":
        from ai_edge_litert.interpreter import Interpreter

        interpreter = _open(path, format, lambda: Interpreter(model_path=path))
        _check_one(
            path,
            len(interpreter.get_input_details()),
            len(interpreter.get_output_details()),
        )
        details = interpreter.get_input_details()[0]
        _check_shape(path, details["shape_signature"], x)
        index = details["index"]
        interpreter.resize_tensor_input(index, x.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(index, x)
        interpreter.invoke()
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    if format == "openvino":
        import openvino

        # Its CPU plugin computes in bfloat16 where the processor can, unless
        # asked for float32.
        compiled = openvino.Core().compile_model(
            path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
        )
        # Its conversion may list more results than the Keras model has
        # outputs (three for one in tests/export/test_formats.py): the inputs
        # alone are counted, and the first result is the model's output.
        _check_one(path, len(compiled.inputs), 1)
        return np.asarray(compiled([x])[compiled.output(0)])
    import tensorflow as tf

    # The loaded object owns the variables: it must outlive the call.
    loaded = tf.saved_model.load(path)
    function = loaded.signatures["serve"]
    _check_one(path, len(function.structured_input_signature[1]), len(function.outputs))
    return np.asarray(loaded.serve(tf.constant(x)))


def _open(path: str, format: str, load):
    """``load()``, the runtime's reading of ``path``; a file it cannot read is
    a ValueError naming the file."""
    try:
        return load()
    except Exception as exc:
        problem = " ".join(str(exc).split()) or type(exc).__name__
        raise ValueError(
            f"run_exported: path={path!r} is not a readable {format} file: {problem}"
        ) from None


def _check_shape(path: str, expected, x: np.ndarray) -> None:
    """Refuses ``x`` whose shape the exported input cannot take (a size that
    is not an int, or is -1, is free)."""
    sizes = [
        s if isinstance(s, int | np.integer) and s >= 0 else None for s in expected
    ]
    fits = len(sizes) == x.ndim and all(
        size is None or size == given
        for size, given in zip(sizes, x.shape, strict=False)
    )
    if not fits:
        shown = ", ".join("n" if s is None else str(int(s)) for s in sizes)
        raise ValueError(
            f"run_exported: x must be shaped ({shown}) for {path}, received x of "
            f"shape {x.shape}"
        )


def _check_exported(path, format: str) -> str:
    """``path`` as a str, if it is the file (or a SavedModel's folder)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            "run_exported: path must be a str or os.PathLike, received "
            f"path={path!r} of type {type(path).__name__}"
        )
    path = str(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"run_exported: path {path!r} does not exist")
    folder = format == "tf_saved_model"
    if os.path.isdir(path) != folder:
        expected = "a SavedModel folder" if folder else f"a {format} file"
        found = "a file" if folder else "a folder"
        raise ValueError(
            f"run_exported: path is {found}, not {expected}, received path={path!r}"
        )
    return path


def _check_x(x) -> np.ndarray:
    """``x`` as a float32 array, if it holds floats."""
    array = np.asarray(x)
    if array.dtype.kind != "f":
        raise ValueError(
            f"run_exported: x must hold floats, received x of dtype {array.dtype}"
        )
    return array.astype(np.float32)


def _check_one(path: str, inputs: int, outputs: int) -> None:
    if inputs != 1 or outputs != 1:
        raise ValueError(
            "run_exported takes a model of one input and one output, received "
            f"{path!r} with {inputs} inputs and {outputs} outputs"
        )


def largest_difference(model, path, format: str, x: np.ndarray) -> float:
    """The largest absolute difference between ``model(x)`` in Keras and the
    exported ``path`` run on ``x`` by `run_exported`."""
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    exported = run_exported(path, format, x)
    return float(np.max(np.abs(expected.astype(np.float64) - exported)))
