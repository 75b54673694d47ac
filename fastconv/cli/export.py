"""``fastconv export``: a saved model as ONNX, LiteRT, OpenVINO or a SavedModel.

``fastconv export MODEL.keras --format onnx -o model.onnx`` loads the model
and exports it with `fastconv.export.export_model`, which calls Keras's own
``model.export`` and measures nothing (each ``"auto"`` layer runs its cached
choice or the static rule). ``--check`` then runs the exported file in its
runtime on a random batch and prints the largest difference from Keras.

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
    parser.add_argument(
        "model",
        type=_args.input_file,
        metavar="MODEL.keras",
        help="the model to export (.keras)",
    )
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
    _check_output(args.output, args.model, format, args.force)
    model = _args.load_model("MODEL.keras", args.model, compile=False)
    shape = _check_shape(model) if args.check else None
    export.export_model(model, args.output, format)
    print(f"exported: {args.output}")
    if shape is not None:
        x = np.random.default_rng(0).standard_normal((CHECK_BATCH, *shape))
        difference = export.largest_difference(
            model, args.output, format, x.astype("float32")
        )
        print(f"largest difference from Keras: {difference:.3g}")
    return 0


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
