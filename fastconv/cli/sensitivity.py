"""``fastconv sensitivity``: what converting each convolution alone costs and wins.

``fastconv sensitivity MODEL.keras --data mnist --method cp --ranks 0.1,0.25,0.5
--out DIR`` loads the model, runs `fastconv.sensitivity` on the data (the test
split of a dataset, or the ``x`` and ``y`` arrays of an ``.npz`` file), prints
the table and writes ``sensitivity.md``, ``sensitivity.json`` and
``sensitivity.png`` in ``DIR`` (created if missing; its parent must exist).

Every argument and path is checked before the work starts; files already in
``DIR`` are replaced only with ``--force``, and each is written to a temporary
file next to it first, so a failure leaves no half-written file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fastconv._files import write_atomically
from fastconv.cli import _args
from fastconv.cli._errors import UsageError

OUTPUTS = {
    "table": "sensitivity.md",
    "json": "sensitivity.json",
    "plot": "sensitivity.png",
}


def _ranks(text: str) -> tuple:
    """An argparse type: ranks separated by commas; a Tucker pair is ``16x32``."""
    from fastconv.convert import parse_rank
    from fastconv.convert.sensitivity import _check_ranks

    items = [item.strip() for item in text.split(",")]
    if not all(items):
        raise argparse.ArgumentTypeError(
            "must be ranks separated by commas (0.1,0.25,8,16x32,vbmf), "
            f"received {text!r}"
        )
    try:
        return _check_ranks(tuple(parse_rank(item.replace("x", ",")) for item in items))
    except (TypeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(
            f"must be ranks separated by commas (0.1,0.25,8,16x32,vbmf): {exc}"
        ) from None


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers ``sensitivity MODEL``.

    Args:
        subparsers: The object returned by the main parser's
            ``add_subparsers()``.

    Returns:
        The ``sensitivity`` parser; its ``func`` default is `run`.
    """
    from fastconv.convert.decompose import METHODS
    from fastconv.convert.sensitivity import DEFAULT_RANKS

    parser = subparsers.add_parser(
        "sensitivity",
        help="accuracy drop and speedup of converting each convolution alone",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _args.add_model(parser, "the trained model (.keras)")
    parser.add_argument(
        "--data",
        required=True,
        metavar="NAME|FILE.npz",
        help="mnist, fashion_mnist or cifar10 (their test split), or an .npz file "
        "holding arrays x and y",
    )
    parser.add_argument("--method", choices=METHODS, default="cp", help="default: cp")
    parser.add_argument(
        "--ranks",
        type=_ranks,
        default=DEFAULT_RANKS,
        help="ranks separated by commas: fractions of the parameters (0.25), "
        "ints, Tucker pairs (16x32), vbmf (default: "
        f"{','.join(map(str, DEFAULT_RANKS))})",
    )
    _args.add_limit(parser, "use only the first N examples")
    parser.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="where to write"
    )
    _args.add_batch_size(
        parser, "batch size of the accuracy and timed runs (default: 32)"
    )
    parser.add_argument(
        "--timing-repeats",
        type=_args.positive_int,
        default=None,
        help="measured rounds per layer and rank (default: 10; not with --no-speed)",
    )
    parser.add_argument(
        "--no-speed",
        dest="measure_speed",
        action="store_false",
        help="do not time the layers (the plot then shows multiply-add ratios)",
    )
    _args.add_random_state(parser, "seed of CP's ALS (default: 0)")
    parser.add_argument(
        "--force", action="store_true", help="replace existing files in --out"
    )
    _args.add_no_progress(parser)
    parser.set_defaults(func=run, progress=None)
    return parser


def _source(text: str):
    """``--data`` as a dataset name or the path of an existing .npz file."""
    from fastconv import datasets

    if text in datasets.NAMES:
        return text
    path = Path(text)
    if path.suffix != ".npz":
        raise UsageError(
            "--data",
            text,
            f"must be one of {', '.join(datasets.NAMES)} or an .npz file",
        )
    if not path.is_file():
        raise UsageError("--data", text, "must be an existing .npz file: no such file")
    return path


def _load_data(source, limit: int | None):
    """``(x, y)``: a dataset's test split, or the arrays x and y of an .npz file
    (`fastconv.cli._args.load_xy`); uint8 images become floats in [0, 1]."""
    import keras
    import numpy as np

    from fastconv import datasets
    from fastconv.bench.runner import _images

    if isinstance(source, str):
        (_, _), (x, y) = datasets.load(source)
        x = _images(x[:limit], keras.config.image_data_format())
        return x, np.asarray(y[:limit]).reshape(-1)
    return _args.load_xy("--data", source, limit)


def run(args: argparse.Namespace) -> int:
    """Runs ``sensitivity``.

    Args:
        args: Parsed arguments from a parser set up by `add_parser`.

    Returns:
        0 on success.

    Raises:
        UsageError: a bad argument or file, found before any work.
    """
    from fastconv.convert import sensitivity

    if not args.measure_speed and args.timing_repeats is not None:
        raise UsageError(
            "--timing-repeats",
            str(args.timing_repeats),
            "does not apply with --no-speed, which times nothing",
        )
    options = _args.seed_options(
        args.method, args.random_state, args.method in ("cp", "tucker", "auto")
    )
    source = _source(args.data)
    _args.check_output_folder(
        "--out", args.out, force=args.force, holds=tuple(OUTPUTS.values())
    )
    # A file's contents are checked before the (slower) model load; a
    # dataset, which may need a download, is loaded after it.
    data = _load_data(source, args.limit) if isinstance(source, Path) else None
    model = _args.load_model("MODEL.keras", args.model)
    _args.check_batch_memory(
        "--batch-size", args.batch_size, _args.model_example_bytes(model)
    )
    x, y = _load_data(source, args.limit) if data is None else data
    _args.check_fits("--data", args.data, x, model, label="x ")
    if args.timing_repeats is not None:
        options["timing_repeats"] = args.timing_repeats
    result = sensitivity(
        model,
        (x, y),
        method=args.method,
        ranks=args.ranks,
        batch_size=args.batch_size,
        measure_speed=args.measure_speed,
        progress=args.progress,
        **options,
    )
    print(result)
    args.out.mkdir(exist_ok=True)
    paths = {kind: args.out / name for kind, name in OUTPUTS.items()}
    write_atomically(
        paths["table"], lambda tmp: tmp.write_text(str(result) + "\n", encoding="utf-8")
    )
    write_atomically(paths["json"], result.to_json)
    write_atomically(paths["plot"], result.plot)
    for path in paths.values():
        print(f"wrote: {path}")
    return 0
