"""``fastconv profile``: where a saved model's time goes, layer by layer.

Loads a ``.keras`` model, runs it once on a random batch to capture each
layer's real input, and times every layer alone (forward, and forward +
backward in train mode), interleaved with the whole model. Prints one row per
layer: parameters, multiply-adds, activation memory, times, shares, and
multiply-adds per byte moved; then the sum of the rows against the whole model.
``--suggest`` ends with what the fast layers would change for each Conv2D.

Every argument and path is checked first, including whether one batch of the
model's input and largest activation fits in available memory; ``--json`` and
``--png`` replace existing files only with ``--force``.

Example:
    fastconv profile model.keras --batch-size 128 --mode train \\
        --json profile.json --png profile.png --suggest
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fastconv._files import write_atomically
from fastconv.cli import _args
from fastconv.cli._errors import UsageError


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "profile",
        help="per-layer cost and measured time of a saved .keras model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _args.add_model(parser, "a saved Keras model")
    _args.add_batch_size(parser)
    parser.add_argument("--mode", choices=("train", "inference"), default="train")
    parser.add_argument(
        "--input-shape",
        default=None,
        help="input shape without the batch axis, e.g. 28,28,1 (default: the "
        "model's own)",
    )
    parser.add_argument("--warmup", type=_args.non_negative_int, default=2)
    parser.add_argument("--repeats", type=_args.positive_int, default=10)
    parser.add_argument(
        "--jit",
        choices=("auto", "on", "off"),
        default="auto",
        help="XLA / jax.jit compilation; auto: as model.fit would (default)",
    )
    parser.add_argument(
        "--json", type=Path, metavar="FILE", help="write the profile as JSON"
    )
    parser.add_argument(
        "--png", type=Path, metavar="FILE", help="write the bar chart as PNG"
    )
    parser.add_argument(
        "--force", action="store_true", help="replace an existing --json or --png"
    )
    parser.add_argument(
        "--suggest",
        nargs="?",
        const="measure",
        choices=("measure", "macs"),
        help="for each Conv2D, what the fast layers would change: measured "
        "(default) or multiply-adds only (--suggest macs)",
    )
    parser.set_defaults(func=run)
    return parser


def _shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise UsageError(
            "--input-shape",
            text,
            "must be positive ints separated by commas, e.g. 28,28,1",
        )
    return shape


def run(args) -> int:
    # Importing fastconv (this module's package) registered its layers, so a
    # saved model that uses them loads with no custom_objects.
    from fastconv.convert import suggest_replacements
    from fastconv.profile import profile

    given = _shape(args.input_shape)
    _args.check_outputs(
        {"--json": args.json, "--png": args.png},
        {"MODEL.keras": args.model},
        force=args.force,
        suffixes={"--json": ".json", "--png": ".png"},
    )
    model = _args.load_model("MODEL.keras", args.model, compile=False)
    per_example = _args.float32_bytes(_args.example_shape(model, given))
    if given is None:
        per_example += _args.largest_activation_bytes(model)
    _args.check_batch_memory("--batch-size", args.batch_size, per_example)
    jit = {"auto": "auto", "on": True, "off": False}[args.jit]
    result = profile(
        model,
        given,
        mode=args.mode,
        batch_size=args.batch_size,
        warmup=args.warmup,
        repeats=args.repeats,
        jit=jit,
    )
    if args.suggest:
        suggestions = suggest_replacements(result, measure=args.suggest == "measure")
        result = result.with_suggestions(suggestions)
    print(result.table())
    if args.json:
        write_atomically(args.json, result.to_json)
        print(f"wrote {args.json}")
    if args.png:
        write_atomically(args.png, result.plot)
        print(f"wrote {args.png}")
    return 0
