"""``fastconv convert``: replace a saved model's convolutions with fast layers.

``fastconv convert MODEL.keras --method tucker --rank vbmf -o OUT.keras``
loads the model, runs `fastconv.convert_model` and prints its report;
``--report report.json`` writes the report as JSON as well.

``--target-speedup 2.5 --data mnist`` (or ``--max-accuracy-drop 0.01 --data
FILE.npz``) searches each layer's method and rank instead: measured layer
times and accuracies on the data (a dataset's test split, or the ``x`` and
``y`` arrays of an .npz file), then the chosen model measured whole; with
``--data`` alone the accuracy budget is 0.01.

Every argument and path is checked before the work starts: an output that
exists, or that is the input model, is replaced only with ``--force``. The
converted model is saved before the report; both are written to a temporary
file next to them first, so a failure leaves no half-written file.
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from pathlib import Path

from fastconv._files import write_atomically
from fastconv.cli import _args
from fastconv.cli._errors import UsageError


def _rank(text: str):
    from fastconv.convert import parse_rank

    try:
        value = parse_rank(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    parts = value if isinstance(value, tuple) else (value,)
    if not isinstance(value, str) and not all(
        part > 0 and (isinstance(part, int) or part <= 1) for part in parts
    ):
        raise argparse.ArgumentTypeError(
            "rank must be an int >= 1, a fraction in (0, 1], a pair of ints >= 1, "
            f"vbmf or energy:<fraction>, received rank={text}"
        )
    return value


def _layer_types(text: str) -> tuple[str, ...]:
    """An argparse type: ``conv``, ``dense`` or ``conv,dense`` (``--layer-types``)."""
    kinds = tuple(part.strip() for part in text.split(","))
    if (
        not kinds
        or any(k not in ("conv", "dense") for k in kinds)
        or (len(set(kinds)) != len(kinds))
    ):
        raise argparse.ArgumentTypeError(
            f"must be conv, dense or conv,dense, received {text!r}"
        )
    return kinds


def _number(text: str, accepts, wanted: str) -> float:
    """``text`` as a float that ``accepts`` (NaN and junk never do), else an
    `argparse.ArgumentTypeError` saying it must be ``wanted``."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not accepts(value):
        raise argparse.ArgumentTypeError(f"must be {wanted}, received {text!r}")
    return value


def _speedup(text: str) -> float:
    """An argparse type: a finite number above 1 (``--target-speedup``)."""
    return _number(text, lambda value: 1 < value < math.inf, "a number above 1")


def _positive_number(text: str) -> float:
    """An argparse type: a finite number above 0 (``--min-speedup``)."""
    return _number(text, lambda value: 0 < value < math.inf, "a number above 0")


def _fraction(text: str) -> float:
    """An argparse type: a fraction in [0, 1] (``--max-accuracy-drop``)."""
    return _number(
        text,
        lambda value: 0 <= value <= 1,
        "a fraction in [0, 1] (0.01: one point)",
    )


def _check_search(args) -> None:
    """Refuses target flags without --data, or both targets at once."""
    if args.target_speedup is not None and args.max_accuracy_drop is not None:
        raise UsageError(
            "--target-speedup",
            str(args.target_speedup),
            "and --max-accuracy-drop cannot be given together; choose one",
        )
    for flag, value in (
        ("--target-speedup", args.target_speedup),
        ("--max-accuracy-drop", args.max_accuracy_drop),
    ):
        if value is not None and args.data is None:
            raise UsageError(
                flag, str(value), "needs --data (mnist or FILE.npz) to measure accuracy"
            )
    if args.data is None and args.limit is not None:
        raise UsageError("--limit", str(args.limit), "needs --data")
    if args.data is not None:
        for flag, value in (("--method", args.method), ("--rank", args.rank)):
            if value is not None:
                raise UsageError(
                    flag,
                    str(value),
                    "does not apply to a search (--data): the search chooses each "
                    "layer's method and rank",
                )
    if args.verify_whole_model and args.min_speedup is None:
        raise UsageError(
            "--verify-whole-model",
            None,
            "applies only with --min-speedup (the threshold the whole model is "
            "held to)",
        )
    if args.data is not None and args.min_speedup is not None:
        raise UsageError(
            "--min-speedup",
            str(args.min_speedup),
            "does not apply to a search (--data); give --target-speedup instead",
        )


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers ``convert MODEL``.

    Args:
        subparsers: The object returned by the main parser's
            ``add_subparsers()``.

    Returns:
        The ``convert`` parser; its ``func`` default is `run`.
    """
    from fastconv.convert.decompose import DEFAULT_RANKS, METHODS

    parser = subparsers.add_parser(
        "convert",
        help="replace a saved model's Conv2D layers with decomposed fast layers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _args.add_model(parser, "the model to convert (.keras)")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        help="where to save the converted model (.keras); without it nothing is saved",
    )
    parser.add_argument(
        "--method",
        choices=METHODS,
        default=None,
        help="default: tucker; not with --data, which searches the method",
    )
    parser.add_argument(
        "--rank",
        type=_rank,
        default=None,
        help="int (8), fraction of the parameters (0.25), Tucker pair (16,32), "
        "vbmf or energy:0.9 (default: the method's, "
        + ", ".join(f"{m} {r}" for m, r in DEFAULT_RANKS.items() if m != "auto")
        + "; not with --data, which searches the rank)",
    )
    parser.add_argument(
        "--layer-types",
        type=_layer_types,
        default=("conv",),
        metavar="conv,dense",
        help="which layers to convert: conv (the default: Conv1D, Conv2D, Conv3D), "
        "dense (Dense layers, by truncated SVD into LowRankDense; the last Dense, "
        "the classifier, is kept) or conv,dense",
    )
    parser.add_argument(
        "--fold-batchnorm",
        action="store_true",
        help="first fold every BatchNormalization that directly follows a "
        "convolution into it (fastconv.fold_batchnorm); the report lists the pairs",
    )
    parser.add_argument(
        "--layers",
        type=_args.regex,
        default=None,
        metavar="REGEX",
        help="convert only the convolutions whose whole name matches REGEX",
    )
    parser.add_argument(
        "--skip-first",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep the first convolutions, next to the inputs (default: keep)",
    )
    parser.add_argument(
        "--min-speedup",
        type=_positive_number,
        default=None,
        metavar="X",
        help="replace a layer only if its replacement's forward pass, measured "
        "here, is at least X times faster",
    )
    parser.add_argument(
        "--verify-whole-model",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="with --min-speedup, time the whole new model against the original "
        "and put layers back until it is not slower (default: on with "
        "--min-speedup)",
    )
    parser.add_argument(
        "--data",
        default=None,
        metavar="NAME|FILE.npz",
        help="labelled data for the search: mnist, fashion_mnist or cifar10 (their "
        "test split), or an .npz file holding arrays x and y",
    )
    parser.add_argument(
        "--target-speedup",
        type=_speedup,
        default=None,
        metavar="X",
        help="search the ranks that make the whole model X times faster with the "
        "least accuracy lost (needs --data)",
    )
    parser.add_argument(
        "--max-accuracy-drop",
        type=_fraction,
        default=None,
        metavar="F",
        help="search the fastest ranks that lose at most F accuracy (0.01: one "
        "point; needs --data)",
    )
    _args.add_limit(parser, "use only the first N examples of --data")
    _args.add_batch_size(
        parser, "batch size of the timed and calibration runs (default: 32)"
    )
    parser.add_argument(
        "--calibration-data",
        type=_args.input_file,
        default=None,
        metavar="FILE.npy",
        help="model inputs (.npy) on which to report output errors",
    )
    _args.add_random_state(
        parser,
        "seed of CP's ALS and Tucker-2's iterations (cp, tucker, auto; refused "
        "with the other methods; default: 0)",
    )
    parser.add_argument(
        "--report", type=Path, default=None, help="also write the report as JSON here"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace an existing --output or --report, even the input model",
    )
    _args.add_no_progress(parser)
    parser.set_defaults(func=run, progress=None)
    return parser


def run(args: argparse.Namespace) -> int:
    """Runs ``convert``.

    Args:
        args: Parsed arguments from a parser set up by `add_parser`.

    Returns:
        0 on success.

    Raises:
        UsageError: a bad argument or file, found before any work.
    """
    from fastconv.cli import sensitivity as _sensitivity
    from fastconv.convert import ConversionAccuracyWarning, convert_model

    _check_search(args)
    options = _args.seed_options(
        args.method,
        args.random_state,
        args.method in (None, "cp", "tucker", "auto") or args.data is not None,
    )
    source = None if args.data is None else _sensitivity._source(args.data)
    _args.check_outputs(
        {"--output": args.output, "--report": args.report},
        {"MODEL.keras": args.model, "--calibration-data": args.calibration_data},
        force=args.force,
        suffixes={"--output": ".keras", "--report": ".json"},
        may_replace_input=("--output",),
    )
    calibration = data = None
    if args.calibration_data is not None:
        calibration = _args.load_array("--calibration-data", args.calibration_data)
    if isinstance(source, Path):
        data = _sensitivity._load_data(source, args.limit)
    model = _args.load_model("MODEL.keras", args.model)
    _args.check_batch_memory(
        "--batch-size", args.batch_size, _args.model_example_bytes(model)
    )
    if calibration is not None:
        _args.check_fits(
            "--calibration-data", str(args.calibration_data), calibration, model
        )
    if isinstance(source, str):
        data = _sensitivity._load_data(source, args.limit)
    if data is not None:
        _args.check_fits("--data", args.data, data[0], model, label="x ")
    with warnings.catch_warnings():
        # The report carries the same advice; it is printed below, on one line.
        warnings.simplefilter("ignore", ConversionAccuracyWarning)
        result = convert_model(
            model,
            args.method,
            args.rank,
            layers=args.layers,
            skip_first=args.skip_first,
            min_speedup=args.min_speedup,
            verify_whole_model=args.verify_whole_model,
            calibration_data=calibration,
            batch_size=args.batch_size,
            progress=args.progress,
            data=data,
            target_speedup=args.target_speedup,
            max_accuracy_drop=args.max_accuracy_drop,
            layer_types=args.layer_types,
            fold_batchnorm=args.fold_batchnorm,
            **options,
        )
    print(result.report)
    if args.output is not None:
        write_atomically(args.output, result.model.save)
        print(f"saved: {args.output}")
    else:
        print("no --output given: nothing saved", file=sys.stderr)
    if args.report is not None:
        write_atomically(args.report, result.report.to_json)
        print(f"report: {args.report}")
    return 0
