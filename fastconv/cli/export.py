"""``fastconv export``: a saved model as ONNX, LiteRT, OpenVINO or a SavedModel.

``fastconv export MODEL.keras --format onnx -o model.onnx`` loads the model
and exports it with `fastconv.export.export_model`, which calls Keras's own
``model.export`` and measures nothing (each ``"auto"`` layer runs its cached
choice or the static rule). ``--check`` then runs the exported file in its
runtime on a random batch (with ``--quantize int8``: two calibration
examples) and prints the largest difference from Keras.

``--fold-batchnorm`` folds each BatchNormalization into the convolution before
it first (`fastconv.fold_batchnorm`) and prints its report.
``--quantize dynamic`` (weights in int8) or ``--quantize int8`` (int8
computation, its input and output still float32) quantizes a LiteRT export
on the TensorFlow backend; int8 calibrates on 100 examples drawn from
``--calibration-dataset``: the training split of mnist, fashion_mnist or
cifar10 (``fastconv.datasets``), or a file of examples shaped like the
model's input (a .npy array, or an .npz holding one named x).
An int8 export of a model whose CP layers' components cancel prints
`fastconv.export.quantization_warning` on stderr: such a file can lose
several points of accuracy, and the message says what to do.

The output is a file ending in .onnx, .tflite or .xml (OpenVINO writes its
weights to the .bin beside it), or a folder for ``saved_model``. The format
must be one the Keras backend (``KERAS_BACKEND``) can write, with its
packages installed (``pip install fastconv[export]``). Every argument and path
is checked before any work: an existing output is replaced only with
``--force``, and never the input model; the export is written beside its
target first, so a failure leaves no half-written output.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from fastconv.cli import _args
from fastconv.cli._errors import UsageError

#: The command's format names -> ``keras.Model.export``'s.
FORMATS = {
    "onnx": "onnx",
    "litert": "litert",
    "openvino": "openvino",
    "saved_model": "tf_saved_model",
}
#: Examples in the random batch of ``--check``.
CHECK_BATCH = 2
#: ``--quantize``'s choices (``fastconv.export.QUANTIZE_MODES``, which this
#: module imports only when it runs).
QUANTIZE = ("dynamic", "int8")
#: ``--calibration-dataset``'s names (``fastconv.datasets.NAMES``).
DATASETS = ("mnist", "fashion_mnist", "cifar10")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers ``export MODEL``.

    Args:
        subparsers: The object returned by the main parser's
            ``add_subparsers()``.

    Returns:
        The ``export`` parser; its ``func`` default is `run`.
    """
    parser = subparsers.add_parser(
        "export",
        help="export a saved model to ONNX, LiteRT, OpenVINO or a SavedModel",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _args.add_model(parser, "the model to export (.keras)")
    parser.add_argument(
        "--format", required=True, choices=tuple(FORMATS), help="the file format"
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        help="where to write: a .onnx, .tflite or .xml file, or a folder for "
        "saved_model",
    )
    parser.add_argument(
        "--force", action="store_true", help="replace an existing --output"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="run the exported file in its runtime on a random batch and print "
        "the largest difference from Keras",
    )
    parser.add_argument(
        "--fold-batchnorm",
        action="store_true",
        help="fold each BatchNormalization into the convolution before it, "
        "then export (prints what was folded)",
    )
    parser.add_argument(
        "--quantize",
        choices=QUANTIZE,
        help="post-training quantization of a litert export (TensorFlow "
        "backend): dynamic (int8 weights) or int8 (int8 computation, float "
        "input and output; needs --calibration-dataset)",
    )
    parser.add_argument(
        "--calibration-dataset",
        metavar="NAME|FILE",
        help=f"examples that calibrate --quantize int8: one of "
        f"{', '.join(DATASETS)} (its training split) or a .npy/.npz file "
        "of examples shaped like the model's input (.npz: an array named x)",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Runs ``export``: checks, loads, exports, then checks the export.

    Args:
        args: Parsed arguments from a parser set up by `add_parser`.

    Returns:
        0 on success.

    Raises:
        UsageError: a bad argument or file, found before any work.
    """
    import numpy as np

    from fastconv import export

    format = FORMATS[args.format]
    _check_format(args.format, format)
    calibration = _check_quantize(args)
    _check_output(args.output, args.model, format, args.force)
    examples = _calibration_examples(calibration) if calibration else None
    model = _args.load_model("MODEL.keras", args.model, compile=False)
    shape = _check_shape(model) if args.check else None
    folded = None
    exported = model
    if args.fold_batchnorm:
        from fastconv.convert import fold_batchnorm

        exported, folded = fold_batchnorm(model)
    try:
        with warnings.catch_warnings():
            # Printed below as one line of its own, not with Python's source line.
            warnings.simplefilter("ignore", export.QuantizationAccuracyWarning)
            export.export_model(
                exported,
                args.output,
                format,
                quantize=args.quantize,
                representative_data=examples,
            )
    except export.QuantizationError as exc:
        if "representative_data" in str(exc):
            raise UsageError("--calibration-dataset", calibration, str(exc)) from None
        raise UsageError("--quantize", args.quantize, str(exc)) from None
    print(f"exported: {args.output}")
    warning = export.quantization_warning(exported, args.quantize)
    if warning is not None:
        print(f"fastconv export: warning: {warning}", file=sys.stderr)
    if folded is not None:
        print(folded)
    if shape is not None:
        # An int8 file is checked on calibration examples: random values
        # outside their range would measure the clipping, not the export.
        x = np.random.default_rng(0).standard_normal((CHECK_BATCH, *shape))
        if examples is not None:
            x = examples[:CHECK_BATCH]
        difference = export.largest_difference(
            model, args.output, format, x.astype("float32")
        )
        print(f"largest difference from Keras: {difference:.3g}")
    return 0


def _check_quantize(args: argparse.Namespace) -> str | None:
    """Refuses ``--quantize`` and ``--calibration-dataset`` where they cannot
    apply; returns the calibration source that int8 will read, or None."""
    import keras

    source = args.calibration_dataset
    if args.quantize is None:
        if source is not None:
            raise UsageError(
                "--calibration-dataset", source, "is read only with --quantize int8"
            )
        return None
    if args.format != "litert":
        raise UsageError(
            "--quantize",
            args.quantize,
            f"needs --format litert, received --format {args.format}",
        )
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise UsageError(
            "--quantize",
            args.quantize,
            f"needs the tensorflow backend (KERAS_BACKEND), not {backend}",
        )
    if args.quantize == "dynamic":
        if source is not None:
            raise UsageError(
                "--calibration-dataset",
                source,
                "is read only with --quantize int8, not dynamic",
            )
        return None
    if source is None:
        raise UsageError(
            "--quantize",
            "int8",
            "needs --calibration-dataset (a dataset name or a .npy/.npz file)",
        )
    if source in DATASETS:
        return source
    path = Path(source)
    if path.suffix not in (".npy", ".npz"):
        raise UsageError(
            "--calibration-dataset",
            source,
            f"is neither one of {', '.join(DATASETS)} nor a .npy or .npz file",
        )
    try:
        _args.input_file(source)
    except argparse.ArgumentTypeError as exc:
        raise UsageError("--calibration-dataset", None, str(exc)) from None
    return source


def _calibration_examples(source: str):
    """Examples to calibrate on: ``export.CALIBRATION_SAMPLES`` drawn from a
    dataset's training split, scaled to [0, 1], or a file's array as it is
    (uint8 images scaled the same way)."""
    import keras
    import numpy as np

    from fastconv import datasets, export
    from fastconv.bench.runner import _images

    if source in DATASETS:
        try:
            (x, _), _ = datasets.load(source)
        except datasets.DatasetUnavailableError as exc:
            problem = " ".join(str(exc).split())
            raise UsageError("--calibration-dataset", source, problem) from None
        rng = np.random.default_rng(0)
        chosen = rng.choice(len(x), size=export.CALIBRATION_SAMPLES, replace=False)
        return _images(x[np.sort(chosen)], keras.config.image_data_format())
    x = _args.load_array("--calibration-dataset", Path(source), npz_name="x")
    if not np.all(np.isfinite(x)):
        raise UsageError("--calibration-dataset", source, "holds NaN or Inf")
    return x.astype("float32") / 255.0 if x.dtype == np.uint8 else x


def _check_format(name: str, format: str) -> None:
    """Refuses a format the backend cannot write, or whose packages are missing."""
    import keras

    from fastconv import export

    backend = keras.backend.backend()
    able = [
        option
        for option, keras_format in FORMATS.items()
        if keras_format in export.exportable_formats(backend)
    ]
    if name not in able:
        raise UsageError(
            "--format",
            name,
            f"cannot be written on the {backend} backend (KERAS_BACKEND); it "
            f"writes {', '.join(able)}",
        )
    missing = export.missing_packages(format, backend)
    if missing:
        raise UsageError(
            "--format",
            name,
            f"needs {', '.join(missing)} on the {backend} backend, which cannot "
            f"be imported; {export.EXTRA}",
        )


def _check_output(path: Path, model: Path, format: str, force: bool) -> None:
    """Refuses an output that cannot be written, exists without ``force``, or
    is the input model (OpenVINO's .bin included)."""
    from fastconv import export

    inputs = {"MODEL.keras": model}
    if format != "tf_saved_model":
        outputs = {"--output": path}
        if format == "openvino":
            outputs["--output's weights"] = path.with_suffix(".bin")
        suffix = export.SUFFIXES[format]
        _args.check_outputs(
            outputs,
            inputs,
            force=force,
            suffixes={name: suffix for name in outputs if name == "--output"},
        )
        return
    if path.exists() and not path.is_dir():
        problem = "is a file; a saved_model export is a folder"
        if os.path.samefile(path, model):
            problem = "would replace the input MODEL.keras"
        raise UsageError("--output", str(path), problem)
    if path.is_dir() and not force:
        raise UsageError(
            "--output", str(path), "already exists; give --force to replace it"
        )
    if not path.parent.is_dir():
        raise UsageError("--output", str(path), "is in a folder that does not exist")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise UsageError("--output", str(path), "is in a folder that cannot be written")


def _check_shape(model) -> tuple[int, ...]:
    """One example's shape for ``--check``, or a `UsageError` naming it."""
    try:
        return tuple(_args.example_shape(model, None))
    except UsageError:
        raise UsageError(
            "--check",
            None,
            "needs a model whose input sizes are known, to make a random batch",
        ) from None
