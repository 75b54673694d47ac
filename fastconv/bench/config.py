"""What a benchmark run measures, and the checks that refuse a bad one.

`BenchConfig` and the two suites (`quick_config`, `full_config`); `check_config`
and `check_out` check every option (names, counts, sizes, device, output
folder) before the first training step.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import numbers
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from fastconv._validation import is_int_at_least
from fastconv.bench import models as _models

__all__ = [
    "BenchConfig",
    "BenchError",
    "DEVICES",
    "DISTRIBUTIONS",
    "PRECISIONS",
    "check_config",
    "check_out",
    "default_out",
    "full_config",
    "quick_config",
]

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
DEVICES = ("auto", "cpu", "gpu")
DISTRIBUTIONS = ("none", "mirrored", "multi-worker")


class BenchError(ValueError):
    """A configuration the benchmark cannot run, found before any training."""


@dataclasses.dataclass
class BenchConfig:
    """What one benchmark run measures, and how.

    Attributes:
        datasets: dataset names (keys of `fastconv.bench.models.MODELS`).
        variants: variant names, or None for all; the baseline is always run.
        epochs: timed training epochs, after one warm-up epoch that also trains
            (every model trains ``epochs + 1`` epochs).
        train_subset: training examples per dataset (a seeded random subset),
            an int for every dataset or a dict per dataset; None: all.
        test_subset: test examples for accuracy, likewise.
        repeats: measured inference rounds at each batch size.
        warmup: unmeasured inference rounds before them.
        batch_size: training batch size (global, across replicas).
        inference_batch_size: the large inference batch.
        precision: a Keras dtype policy: ``float32``, ``mixed_float16`` or
            ``mixed_bfloat16``.
        jit: XLA/compiled training and inference: True, False, or None for the
            backend's default (``jit_compile="auto"``).
        device: ``auto`` (what the backend sees), ``cpu`` (hide GPUs) or ``gpu``
            (fail unless the backend sees one).
        distribute: ``none``, ``mirrored`` (data parallel over every local
            device: ``tf.distribute.MirroredStrategy`` on TensorFlow,
            ``keras.distribution.DataParallel`` on JAX) or ``multi-worker``
            (data parallel over the processes of the cluster that the
            environment describes: `fastconv.convert.cluster`).
        out: results folder.
        seed: ``keras.utils.set_random_seed`` before building each model, and
            the subsets' seed.
        finetune_epochs: epochs of ``fastconv.finetune`` after a conversion.
        finetune_learning_rate: its learning rate.
        suite: a label for the results (``quick``, ``full``, ``custom``).
        notes: lines added to the results (what the suite's subsets mean).
        progress: show tqdm progress bars.

    Raises:
        BenchError: on construction, as `check_config` (a dataset must be
            registered with `fastconv.bench.models.register_model` first).
    """

    datasets: Sequence[str] = ("mnist",)
    variants: Sequence[str] | None = None
    epochs: int = 2
    train_subset: int | Mapping[str, int] | None = None
    test_subset: int | Mapping[str, int] | None = None
    repeats: int = 20
    warmup: int = 3
    batch_size: int = 128
    inference_batch_size: int = 256
    precision: str = "float32"
    jit: bool | None = None
    device: str = "auto"
    distribute: str = "none"
    out: str | os.PathLike | None = None
    seed: int = 0
    finetune_epochs: int = 1
    finetune_learning_rate: float = 1e-4
    suite: str = "custom"
    notes: Sequence[str] = ()
    progress: bool = True

    def __post_init__(self):
        check_config(self)


def quick_config(**overrides) -> BenchConfig:
    """The default suite (``fastconv bench``, ``make bench``): MNIST only, on a
    seeded subset of 12,000 training and 5,000 test images, 1 warm-up + 3
    timed epochs; about three minutes on a 2-core CPU (docs/benchmarks.md).

    The subsets are per dataset (the three built-in ones); a dataset added
    with `register_model` uses all of its data unless told otherwise.
    """
    settings = {
        "datasets": ("mnist",),
        "train_subset": {"mnist": 12000, "fashion_mnist": 12000, "cifar10": 3000},
        "test_subset": {"mnist": 5000, "fashion_mnist": 5000, "cifar10": 2000},
        "epochs": 3,
        "repeats": 30,
        "suite": "quick",
        "notes": (
            "quick suite (`fastconv bench`, `make bench`): a subset of the data and "
            "few epochs, so accuracies are lower and noisier than with all of it; "
            "`--full` for more",
        ),
    }
    settings.update(overrides)
    return BenchConfig(**settings)


def full_config(**overrides) -> BenchConfig:
    """``--full``: the three datasets: 30,000 training and all 10,000 test
    images of MNIST and Fashion-MNIST; 6,000 training and 5,000 test images of
    CIFAR-10; 1 warm-up + 3 timed epochs each. 15 minutes on a 2-core CPU
    (docs/benchmarks.md has the measured run)."""
    settings = {
        "datasets": ("mnist", "fashion_mnist", "cifar10"),
        "train_subset": {"mnist": 30000, "fashion_mnist": 30000, "cifar10": 6000},
        "test_subset": {"cifar10": 5000},
        "epochs": 3,
        "repeats": 30,
        "suite": "full",
        "notes": (
            "full suite (`fastconv bench --full`): sized to run in about 15 minutes "
            "on a 2-core CPU, so MNIST and Fashion-MNIST train on half of their "
            "training images and CIFAR-10 on 6,000 of them, for 4 epochs: CIFAR-10 "
            "is far from converged",
        ),
    }
    settings.update(overrides)
    return BenchConfig(**settings)


# --------------------------------------------------------------- validation
def _positive(name: str, value) -> None:
    if not is_int_at_least(value, 1):
        raise BenchError(f"{name} must be an integer >= 1, received {value!r}")


def _names(option: str, value) -> list[str]:
    """``value`` as a list of str; refuses a bare str or an item of another type."""
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise BenchError(
            f"{option} must be a list or tuple of str, received {option}={value!r}"
        )
    strange = [item for item in value if not isinstance(item, str)]
    if strange:
        raise BenchError(
            f"{option} must hold only str, received {strange[0]!r} in "
            f"{option}={value!r}"
        )
    return list(value)


def _repeated(option: str, names: list[str]) -> None:
    repeated = [n for n in dict.fromkeys(names) if names.count(n) > 1]
    if repeated:
        raise BenchError(
            f"{option}: {', '.join(map(repr, repeated))} given more than once; "
            f"received {option}={names!r}"
        )


def _per_dataset(value, dataset: str):
    if isinstance(value, Mapping):
        return value.get(dataset)
    return value


def _variants(config: BenchConfig) -> list[str]:
    if config.variants is None:
        return [_models.BASELINE] + [
            n for n in _models.VARIANTS if n != _models.BASELINE
        ]
    names = _names("variants", config.variants)
    unknown = [name for name in names if name not in _models.VARIANTS]
    if unknown:
        raise BenchError(
            f"unknown variant(s) {', '.join(map(repr, unknown))}; valid: "
            f"{', '.join(_models.VARIANTS)}"
        )
    if not names:
        raise BenchError("no variants given; valid: " + ", ".join(_models.VARIANTS))
    _repeated("variants", names)
    return [_models.BASELINE] + [n for n in names if n != _models.BASELINE]


def check_config(config: BenchConfig) -> list[str]:
    """Checks everything that needs no data and no backend; returns the variants.

    Raises:
        BenchError: naming the option, the value received and the valid ones.
    """
    datasets = _names("datasets", config.datasets)
    if not datasets:
        raise BenchError("no datasets given; valid: " + ", ".join(_models.MODELS))
    unknown = [d for d in datasets if d not in _models.MODELS]
    if unknown:
        raise BenchError(
            f"unknown dataset(s) {', '.join(map(repr, unknown))}; valid: "
            f"{', '.join(_models.MODELS)} (or all)"
        )
    repeated = [d for d in dict.fromkeys(datasets) if datasets.count(d) > 1]
    if repeated:
        raise BenchError(
            f"dataset(s) {', '.join(map(repr, repeated))} given more than once; "
            f"received datasets={tuple(datasets)!r}"
        )
    variants = _variants(config)
    for name in ("epochs", "repeats", "batch_size", "inference_batch_size"):
        _positive(name.replace("_", "-"), getattr(config, name))
    if (
        isinstance(config.warmup, bool)
        or not isinstance(config.warmup, int)
        or (config.warmup < 0)
    ):
        raise BenchError(f"warmup must be an integer >= 0, received {config.warmup!r}")
    _positive("finetune-epochs", config.finetune_epochs)
    rate = config.finetune_learning_rate
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real):
        rate = None
    if rate is None or not 0 < rate < math.inf:
        raise BenchError(
            "finetune learning rate must be > 0, received "
            f"{config.finetune_learning_rate!r}"
        )
    for option in ("train_subset", "test_subset"):
        value = getattr(config, option)
        values = value.values() if isinstance(value, Mapping) else [value]
        if isinstance(value, Mapping):
            unknown = [key for key in value if key not in _models.MODELS]
            if unknown:
                raise BenchError(
                    f"{option.replace('_', '-')}: unknown dataset {unknown[0]!r}; "
                    f"valid: {', '.join(_models.MODELS)}; received {value!r}"
                )
        for v in values:
            if v is not None:
                _positive(option.replace("_", "-"), v)
    if config.precision not in PRECISIONS:
        raise BenchError(
            f"precision must be one of {', '.join(PRECISIONS)}, received "
            f"{config.precision!r}"
        )
    if config.device not in DEVICES:
        raise BenchError(
            f"device must be one of {', '.join(DEVICES)}, received {config.device!r}"
        )
    if config.distribute not in DISTRIBUTIONS:
        raise BenchError(
            f"distribute must be one of {', '.join(DISTRIBUTIONS)}, received "
            f"{config.distribute!r}"
        )
    if config.jit is not None and not isinstance(config.jit, bool):
        raise BenchError(f"jit must be True, False or None, received {config.jit!r}")
    if not is_int_at_least(config.seed, 0):
        raise BenchError(f"seed must be an integer >= 0, received {config.seed!r}")
    if not isinstance(config.out, (str, os.PathLike, type(None))):
        raise BenchError(
            f"out must be a path (str or os.PathLike) or None, received {config.out!r}"
        )
    if not isinstance(config.suite, str) or not config.suite:
        raise BenchError(f"suite must be a non-empty str, received {config.suite!r}")
    _names("notes", config.notes)
    if not isinstance(config.progress, bool):
        raise BenchError(
            f"progress must be True or False, received {config.progress!r}"
        )
    return variants


def default_out(suite: str) -> Path:
    """``bench-out/<UTC date and time>-<suite>`` (git ignores ``bench-out/``)."""
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%d-%H%M%S")
    return Path("bench-out") / f"{stamp}-{suite}"


def check_out(out: str | os.PathLike) -> Path:
    """Creates the results folder and checks that a file can be written in it.

    Raises:
        BenchError: the folder cannot be created or written.
    """
    path = Path(out)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise BenchError(
            f"output directory {str(path)!r} is not writable: {exc.strerror or exc}"
        ) from None
    return path
