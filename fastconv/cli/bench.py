"""``fastconv bench``: train and time every fast variant of reference CNNs.

For each dataset, the reference network and its variants (factorized, stacked,
bottleneck, wide, separable, CP, Tucker; CP and Tucker converted from the
trained baseline) are trained round-robin, evaluated and timed interleaved with
the baseline; the results folder gets results.json (every raw sample and the
environment), results.md (the table) and PNG plots.

With no options it runs the quick suite (MNIST, training and test subsets, a
few minutes on a 2-core CPU); ``--full`` runs all three datasets. Every option
given overrides the suite's value. See docs/benchmarks.md.

The numeric options are checked when parsed, and by
`fastconv.bench.BenchConfig`, before any training; so is the memory the batch
sizes imply (a lower bound from the reference networks' shapes). An ``--out``
folder is created if missing (its parent must exist); one that already holds
results is replaced only with ``--force``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from fastconv.cli import _args


def _count_or_all(text: str):
    """An argparse type: ``all``, or a number of examples (an int >= 1)."""
    if text == "all":
        return "all"
    try:
        int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a number of examples or 'all', received {text!r}"
        ) from None
    return _args.positive_int(text)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers ``bench``; its ``func`` is `run`."""
    parser = subparsers.add_parser(
        "bench",
        help="train and time the fast variants of reference CNNs on real data",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--dataset",
        nargs="+",
        metavar="NAME",
        help="mnist, fashion_mnist, cifar10 or all (default: mnist; --full: all)",
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        metavar="NAME",
        help="variants to run (the baseline always runs); default: all; "
        "--list shows them",
    )
    parser.add_argument(
        "--full", action="store_true", help="the full suite: all three datasets"
    )
    parser.add_argument(
        "--epochs", type=_args.positive_int, help="timed epochs after the warm-up"
    )
    parser.add_argument(
        "--train-subset",
        type=_count_or_all,
        metavar="N",
        help="training examples per dataset (seeded random subset), or all",
    )
    parser.add_argument(
        "--test-subset",
        type=_count_or_all,
        metavar="N",
        help="test examples per dataset for accuracy, or all",
    )
    parser.add_argument(
        "--repeats",
        type=_args.positive_int,
        help="measured inference rounds per batch size",
    )
    parser.add_argument(
        "--batch-size", type=_args.positive_int, help="training batch size"
    )
    parser.add_argument(
        "--inference-batch-size",
        type=_args.positive_int,
        help="the large inference batch",
    )
    parser.add_argument(
        "--precision",
        choices=("float32", "mixed_float16", "mixed_bfloat16"),
        help="Keras dtype policy (default float32)",
    )
    parser.add_argument(
        "--jit",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="XLA / compiled training and inference (default: the backend's choice)",
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "gpu"),
        help="auto: what the backend sees; cpu: hide GPUs; gpu: fail without one",
    )
    parser.add_argument(
        "--distribute",
        choices=("none", "mirrored", "multi-worker"),
        help="mirrored: data parallel over all local devices; multi-worker: over "
        "the processes of the cluster in TF_CONFIG or KERAS_DISTRIBUTION_* "
        "(TensorFlow, JAX; docs/benchmarks.md)",
    )
    parser.add_argument(
        "--finetune-epochs", type=_args.positive_int, help="after each conversion"
    )
    parser.add_argument(
        "--seed", type=_args.non_negative_int, help="random seed (default 0)"
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="results folder, created if missing in an existing folder (default "
        "bench-out/<date>-<suite>)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="write into an --out folder that already holds results",
    )
    _args.add_no_progress(parser, "no progress bars")
    parser.add_argument(
        "--list", action="store_true", help="list the datasets and variants, and exit"
    )
    parser.set_defaults(func=run)
    return parser


_OVERRIDES = (
    "epochs",
    "repeats",
    "batch_size",
    "inference_batch_size",
    "precision",
    "device",
    "distribute",
    "finetune_epochs",
    "seed",
    "out",
)


def config_from_args(args: argparse.Namespace):
    """The `BenchConfig` of the suite, with every option given on top."""
    from fastconv.bench import full_config, quick_config

    overrides = {
        name: getattr(args, name)
        for name in _OVERRIDES
        if getattr(args, name) is not None
    }
    if args.jit is not None:
        overrides["jit"] = args.jit
    for name in ("train_subset", "test_subset"):
        value = getattr(args, name)
        if value is not None:
            overrides[name] = None if value == "all" else value
    if args.dataset:
        names = [n for item in args.dataset for n in item.split(",") if n]
        overrides["datasets"] = (
            ("mnist", "fashion_mnist", "cifar10") if "all" in names else tuple(names)
        )
    if args.variants:
        overrides["variants"] = [
            n for item in args.variants for n in item.split(",") if n
        ]
    overrides["progress"] = args.progress
    return (full_config if args.full else quick_config)(**overrides)


def _list() -> int:
    from fastconv.bench import MODELS, VARIANTS

    print("datasets: " + ", ".join(MODELS))
    print("variants:")
    for name, variant in VARIANTS.items():
        print(f"  {name:<18} {variant.description}")
    return 0


#: The image shape (channels last) each built-in dataset's network takes.
_INPUT_SHAPES = {
    "mnist": (28, 28, 1),
    "fashion_mnist": (28, 28, 1),
    "cifar10": (32, 32, 3),
}


def _check_batch_memory(config) -> None:
    """Refuses batch sizes whose tensors alone would not fit in memory.

    The estimate, for each built-in dataset, is one example's input and the
    largest output of the reference network's layers: a lower bound of what a
    batch needs, known before any data is loaded. Datasets added with
    `fastconv.bench.register_model` have no known shape and are left out.
    """
    import keras

    from fastconv.bench import build_model

    per_example = 0
    for dataset in config.datasets:
        shape = _INPUT_SHAPES.get(dataset)
        if shape is None:
            continue
        if keras.config.image_data_format() == "channels_first":
            shape = (shape[-1], *shape[:-1])
        model = build_model(dataset, "baseline", shape, 10)
        per_example = max(
            per_example,
            _args.float32_bytes(shape) + _args.largest_activation_bytes(model),
        )
    if per_example:
        _args.check_batch_memory("--batch-size", config.batch_size, per_example)
        _args.check_batch_memory(
            "--inference-batch-size", config.inference_batch_size, per_example
        )


def run(args: argparse.Namespace) -> int:
    """Runs ``fastconv bench``; prints the Markdown table at the end."""
    if args.device == "cpu":
        # As early as possible: before the backend looks for GPUs.
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        os.environ.setdefault("KERAS_TORCH_DEVICE", "cpu")
    if args.list:
        return _list()
    from fastconv.bench import report, run_benchmark

    config = config_from_args(args)
    if args.out is not None:
        _args.check_output_folder(
            "--out", Path(args.out), force=args.force, holds=("results.json",)
        )
    _check_batch_memory(config)

    # TensorFlow warns each time a new model traces its predict function,
    # which every variant does once: expected here, and noise on the terminal.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    results = run_benchmark(config)
    sys.stdout.write(report.markdown(results))
    print(f"\nresults: {results['out']}")
    return 0
