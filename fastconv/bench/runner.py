"""The benchmark harness: train, evaluate, convert and time every variant.

For each dataset, every variant is built from the same reference network
(`fastconv.bench.models`), seeded alike, and trained *round-robin*: epoch ``e``
of every variant runs before epoch ``e + 1`` of any, in an order rotated from
epoch to epoch, so that the machine's drift hits every variant alike. The first
epoch is a warm-up (compilation, caches): it trains but is not timed. Then
test accuracy; the converted variants (the trained baseline through
``fastconv.convert_model``, then ``fastconv.finetune``); inference latency at
batch 1 and at a large batch with `fastconv.timing.interleaved`; parameters and
multiply-adds from `fastconv.cost.layer_cost`; and every ratio against the
baseline of the same run. Everything, raw samples included, goes to
``results.json``; `fastconv.bench.report` writes the table and the plots.

Every check of the configuration (names, counts, sizes, device, output folder)
runs before the first training step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import keras
import numpy as np

from fastconv import datasets, timing
from fastconv._validation import is_int_at_least
from fastconv.bench import models as _models
from fastconv.bench import report as _report
from fastconv.kernels import autotune

__all__ = [
    "BenchConfig",
    "BenchError",
    "DEVICES",
    "DISTRIBUTIONS",
    "PRECISIONS",
    "compare",
    "full_config",
    "quick_config",
    "run_benchmark",
    "select_device",
    "training_schedule",
]

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
DEVICES = ("auto", "cpu", "gpu")
DISTRIBUTIONS = ("none", "mirrored")


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
        distribute: ``none`` or ``mirrored`` (data parallel over every local
            device: ``tf.distribute.MirroredStrategy`` on TensorFlow,
            ``keras.distribution.DataParallel`` on JAX).
        out: results folder.
        seed: ``keras.utils.set_random_seed`` before building each model, and
            the subsets' seed.
        finetune_epochs: epochs of ``fastconv.finetune`` after a conversion.
        finetune_learning_rate: its learning rate.
        suite: a label for the results (``quick``, ``full``, ``custom``).
        notes: lines added to the results (what the suite's subsets mean).
        progress: show tqdm progress bars.
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


def _per_dataset(value, dataset: str):
    if isinstance(value, Mapping):
        return value.get(dataset)
    return value


def _variants(config: BenchConfig) -> list[str]:
    names = list(_models.VARIANTS) if config.variants is None else list(config.variants)
    unknown = [name for name in names if name not in _models.VARIANTS]
    if unknown:
        raise BenchError(
            f"unknown variant(s) {', '.join(map(repr, unknown))}; valid: "
            f"{', '.join(_models.VARIANTS)}"
        )
    if not names:
        raise BenchError("no variants given; valid: " + ", ".join(_models.VARIANTS))
    return [_models.BASELINE] + [
        n for n in dict.fromkeys(names) if n != _models.BASELINE
    ]


def check_config(config: BenchConfig) -> list[str]:
    """Checks everything that needs no data and no backend; returns the variants.

    Raises:
        BenchError: naming the option, the value received and the valid ones.
    """
    if not config.datasets:
        raise BenchError("no datasets given; valid: " + ", ".join(_models.MODELS))
    unknown = [d for d in config.datasets if d not in _models.MODELS]
    if unknown:
        raise BenchError(
            f"unknown dataset(s) {', '.join(map(repr, unknown))}; valid: "
            f"{', '.join(_models.MODELS)} (or all)"
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
    if any(_models.VARIANTS[v].kind == "converted" for v in variants):
        _positive("finetune-epochs", config.finetune_epochs)
        if not config.finetune_learning_rate > 0:
            raise BenchError(
                "finetune learning rate must be > 0, received "
                f"{config.finetune_learning_rate!r}"
            )
    for option in ("train_subset", "test_subset"):
        value = getattr(config, option)
        values = value.values() if isinstance(value, Mapping) else [value]
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
    if config.jit not in (None, True, False):
        raise BenchError(f"jit must be True, False or None, received {config.jit!r}")
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


# -------------------------------------------------------------------- device
def select_device(device: str) -> str:
    """Makes the Keras backend compute on ``device``; returns what it uses.

    ``cpu`` hides GPUs before the backend initialises them: the environment
    (``CUDA_VISIBLE_DEVICES``, ``KERAS_TORCH_DEVICE``) and
    ``tf.config.set_visible_devices`` / ``jax_platforms``. ``gpu`` checks that
    the backend sees one. Call it before any model is built.

    Raises:
        BenchError: ``gpu`` and no GPU visible, or GPUs that can no longer be
            hidden (the backend already initialised them); both name the backend.
    """
    backend = keras.backend.backend()
    if device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        os.environ["KERAS_TORCH_DEVICE"] = "cpu"
        _hide_gpus(backend)
    elif device == "gpu":
        found, how = _gpus(backend)
        if not found:
            raise BenchError(
                f"--device gpu: the {backend} backend sees no GPU ({how}); install "
                "the backend's CUDA build (pip install -e '.[gpu]' for TensorFlow) "
                "and check CUDA_VISIBLE_DEVICES, or use --device cpu/auto"
            )
    return timing.device_description()


def _gpus(backend: str) -> tuple[list, str]:
    if backend == "tensorflow":
        import tensorflow as tf

        found = tf.config.list_logical_devices("GPU")
        return found, f"tf.config.list_logical_devices('GPU') returned {found}"
    if backend == "jax":
        import jax

        try:
            found = jax.devices("gpu")
        except RuntimeError:
            found = []
        how = f"jax.devices('gpu') found none; platform {jax.default_backend()}"
        return found, how
    if backend == "torch":
        import torch

        found = list(range(torch.cuda.device_count()))
        return found, f"torch.cuda.device_count() is {len(found)}"
    return [], f"unsupported backend {backend!r}"


def _hide_gpus(backend: str) -> None:
    fix = "set CUDA_VISIBLE_DEVICES= in the environment before starting fastconv"
    if backend == "tensorflow":
        import tensorflow as tf

        with contextlib.suppress(RuntimeError):  # raised once devices are set up
            tf.config.set_visible_devices([], "GPU")
        if tf.config.list_logical_devices("GPU"):
            raise BenchError(
                "--device cpu: TensorFlow had already initialised its GPUs and can "
                f"no longer hide them; {fix}"
            )
    elif backend == "jax":
        import jax

        with contextlib.suppress(RuntimeError):  # raised once backends exist
            jax.config.update("jax_platforms", "cpu")
        if jax.default_backend() != "cpu":
            raise BenchError(
                f"--device cpu: JAX had already initialised its {jax.default_backend()}"
                f" backend and can no longer hide it; {fix} (or JAX_PLATFORMS=cpu)"
            )
    elif backend == "torch":
        from keras.src.backend.torch import core

        if core.get_device() != "cpu":
            raise BenchError(
                f"--device cpu: Keras' torch backend chose {core.get_device()!r} "
                f"when it was imported; {fix} (or KERAS_TORCH_DEVICE=cpu)"
            )


# -------------------------------------------------------------- distribution
@contextlib.contextmanager
def _distribution(kind: str):
    """Yields ``(scope, replicas)``: a context for building models, and the
    number of devices the data is split over."""
    if kind == "none":
        yield contextlib.nullcontext, 1
        return
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        devices = tf.config.list_logical_devices(
            "GPU"
        ) or tf.config.list_logical_devices("CPU")
        strategy = tf.distribute.MirroredStrategy([d.name for d in devices])
        yield strategy.scope, strategy.num_replicas_in_sync
    elif backend == "jax":
        devices = keras.distribution.list_devices()
        previous = keras.distribution.distribution()
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(devices=devices)
        )
        try:
            yield contextlib.nullcontext, len(devices)
        finally:
            keras.distribution.set_distribution(previous)
    else:
        raise BenchError(
            f"--distribute mirrored is not supported on the {backend} backend: Keras "
            "has data-parallel distribution for TensorFlow "
            "(tf.distribute.MirroredStrategy) and JAX "
            "(keras.distribution.DataParallel) only; use KERAS_BACKEND=tensorflow "
            "or jax, or --distribute none"
        )


# ---------------------------------------------------------------------- data
@dataclasses.dataclass
class _Data:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    train_available: int
    test_available: int

    @property
    def input_shape(self) -> tuple:
        return tuple(self.x_train.shape[1:])


def _images(x: np.ndarray, data_format: str) -> np.ndarray:
    x = np.asarray(x)
    x = x.astype("float32") / 255.0 if x.dtype == np.uint8 else x.astype("float32")
    if x.ndim == 3:
        x = x[..., None] if data_format == "channels_last" else x[:, None]
    return x


def _subset(n_available: int, n: int | None, what: str, rng, multiple: int):
    if n is not None and n > n_available:
        raise BenchError(
            f"{what} subset of {n:,} is larger than the data ({n_available:,} examples)"
        )
    n = n_available if n is None else n
    n -= n % multiple
    return np.sort(rng.permutation(n_available)[:n])


def _prepare(name: str, arrays, config: BenchConfig, replicas: int) -> _Data:
    (x_train, y_train), (x_test, y_test) = arrays
    rng = np.random.default_rng(config.seed)
    train = _subset(
        len(x_train),
        _per_dataset(config.train_subset, name),
        f"{name}: train",
        rng,
        replicas,
    )
    test = _subset(
        len(x_test),
        _per_dataset(config.test_subset, name),
        f"{name}: test",
        rng,
        replicas,
    )
    if len(test) < config.inference_batch_size:
        raise BenchError(
            f"{name}: the inference batch of {config.inference_batch_size} is larger "
            f"than the {len(test)} test examples; lower --inference-batch-size"
        )
    fmt = keras.config.image_data_format()
    y_train = np.asarray(y_train).reshape(-1).astype("int32")
    y_test = np.asarray(y_test).reshape(-1).astype("int32")
    return _Data(
        _images(x_train[train], fmt),
        y_train[train],
        _images(x_test[test], fmt),
        y_test[test],
        int(max(y_train.max(), y_test.max())) + 1,
        len(x_train),
        len(x_test),
    )


# ------------------------------------------------------------------ pure math
def training_schedule(names: Sequence[str], epochs: int) -> list[list[str]]:
    """The order of the round-robin: for each epoch (warm-up first), every
    variant once, rotated by one from epoch to epoch."""
    names = list(names)
    return [names[e % len(names) :] + names[: e % len(names)] for e in range(epochs)]


def _ratio(num, den):
    if num is None or den is None or den == 0:
        return None
    return float(num) / float(den)


def compare(variant: Mapping, baseline: Mapping) -> dict:
    """A variant against its baseline.

    Args:
        variant, baseline: ``macs`` (per example), ``train_epoch_s`` (median
            seconds per epoch, or None), ``latency_s`` (``{batch: median
            seconds}``) and ``accuracy`` (0..1) of each.

    Returns:
        ``flop_ratio`` (baseline multiply-adds / the variant's: above 1 means
        fewer), ``train_speedup`` (baseline time / the variant's),
        ``inference_speedup`` per batch, ``train_efficiency`` and
        ``inference_efficiency`` per batch (speedup / FLOP ratio: 1 means the
        FLOP saving is all realised), and ``accuracy_diff_points`` (100 times
        the accuracy difference). A missing measurement gives None.
    """
    flop_ratio = _ratio(baseline["macs"], variant["macs"])
    train_speedup = _ratio(baseline.get("train_epoch_s"), variant.get("train_epoch_s"))
    inference = {
        str(batch): _ratio(baseline["latency_s"].get(batch), seconds)
        for batch, seconds in variant.get("latency_s", {}).items()
    }
    acc, base_acc = variant.get("accuracy"), baseline.get("accuracy")
    return {
        "flop_ratio": flop_ratio,
        "train_speedup": train_speedup,
        "inference_speedup": inference,
        "train_efficiency": _ratio(train_speedup, flop_ratio),
        "inference_efficiency": {
            batch: _ratio(s, flop_ratio) for batch, s in inference.items()
        },
        "accuracy_diff_points": None
        if acc is None or base_acc is None
        else 100.0 * (acc - base_acc),
    }


# ------------------------------------------------------------------ training
def _bar(config: BenchConfig, total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit="step",
        disable=not config.progress,
        file=sys.stderr,
        dynamic_ncols=True,
    )


def _compile(model, config: BenchConfig) -> None:
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile="auto" if config.jit is None else config.jit,
    )


def _sync(model) -> None:
    timing.block([v.value for v in model.trainable_variables])


def _fit_epoch(model, data: _Data, config: BenchConfig) -> tuple[int, float]:
    start = time.perf_counter_ns()
    history = model.fit(
        data.x_train,
        data.y_train,
        batch_size=config.batch_size,
        epochs=1,
        shuffle=True,
        verbose=0,
    )
    _sync(model)
    return time.perf_counter_ns() - start, float(history.history["loss"][-1])


def _accuracy(model, data: _Data, config: BenchConfig) -> float:
    probs = model.predict(
        data.x_test, batch_size=config.inference_batch_size, verbose=0
    )
    return float(np.mean(np.argmax(np.asarray(probs), axis=-1) == data.y_test))


def _train(models: dict, data: _Data, config: BenchConfig, name: str) -> dict:
    schedule = training_schedule(list(models), config.epochs + 1)
    samples = {v: [] for v in models}
    losses = {v: [] for v in models}
    with _bar(config, len(schedule) * len(models), f"{name}: train") as bar:
        for epoch, order in enumerate(schedule):
            for variant in order:
                label = "warm-up" if epoch == 0 else f"epoch {epoch}/{config.epochs}"
                bar.set_postfix_str(f"{label} {variant}")
                elapsed, loss = _fit_epoch(models[variant], data, config)
                samples[variant].append(elapsed)
                losses[variant].append(loss)
                bar.update()
    return {
        "schedule": schedule,
        "train": {
            v: {
                "epochs": timing.Timing(tuple(samples[v][1:]), warmup=1).as_dict(),
                "warmup_ns": samples[v][:1],
                "loss": losses[v],
            }
            for v in models
        },
    }


def _convert_api():
    """``(convert_model, finetune)``, or the reason they cannot be used."""
    try:
        from fastconv.convert import convert_model, finetune
    except ImportError as exc:
        return None, (
            "fastconv.convert_model / fastconv.finetune are not importable "
            f"({type(exc).__name__}: {exc})"
        )
    return (convert_model, finetune), None


class _EpochTimes(keras.callbacks.Callback):
    """Keeps each epoch's wall time, in nanoseconds."""

    def __init__(self):
        super().__init__()
        self.samples_ns = []
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter_ns()

    def on_epoch_end(self, epoch, logs=None):
        self.samples_ns.append(time.perf_counter_ns() - self._start)


def _convert(baseline, variant, data: _Data, config: BenchConfig, api) -> tuple:
    convert_model, finetune = api
    options = dict(_models.VARIANTS[variant].convert)
    start = time.perf_counter_ns()
    model, conversion = convert_model(
        baseline, calibration_data=data.x_train[:64], progress=False, **options
    )
    convert_ns = time.perf_counter_ns() - start
    before = _accuracy(model, data, config)
    epoch_times = _EpochTimes()
    start = time.perf_counter_ns()
    finetune(
        model,
        data.x_train,
        data.y_train,
        epochs=config.finetune_epochs,
        learning_rate=config.finetune_learning_rate,
        batch_size=config.batch_size,
        shuffle=True,
        verbose=0,
        callbacks=[epoch_times],
    )
    _sync(model)
    finetune_ns = time.perf_counter_ns() - start
    details = {
        "options": options,
        "convert_s": convert_ns / 1e9,
        "accuracy_after_conversion": before,
        "finetune": {
            "epochs": config.finetune_epochs,
            "learning_rate": config.finetune_learning_rate,
            "total_s": finetune_ns / 1e9,
            "epoch_samples_ns": epoch_times.samples_ns,
        },
        "report": _jsonable(conversion.to_dict()),
    }
    return model, details


def _jsonable(value):
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _inference(models: dict, data: _Data, config: BenchConfig, name: str) -> dict:
    jit = config.jit
    if jit is None:
        jit = bool(models[_models.BASELINE].jit_compile)
    batches = (1, config.inference_batch_size)
    out = {}
    with _bar(config, len(batches), f"{name}: inference") as bar:
        for batch in batches:
            bar.set_postfix_str(
                f"batch {batch}, {config.warmup}+{config.repeats} interleaved rounds"
            )
            x = data.x_test[:batch]
            fns = {v: timing.make_forward(m, x, jit=jit) for v, m in models.items()}
            times = timing.interleaved(
                fns, warmup=config.warmup, repeats=config.repeats
            )
            out[str(batch)] = {v: t.as_dict() for v, t in times.items()}
            bar.update()
    return out


def _measure_dataset(
    name: str,
    data: _Data,
    built: dict,
    skipped: dict,
    config: BenchConfig,
    converted: list[str],
    api,
    scope,
) -> dict:
    info = {
        "model": built[_models.BASELINE].name,
        "input_shape": list(data.input_shape),
        "num_classes": data.num_classes,
        "train_examples": len(data.x_train),
        "train_available": data.train_available,
        "test_examples": len(data.x_test),
        "test_available": data.test_available,
        "epochs": config.epochs,
        "warmup_epochs": 1,
        "batch_size": config.batch_size,
        "inference_batch_size": config.inference_batch_size,
        "jit_compile": bool(built[_models.BASELINE].jit_compile),
        "skipped": dict(skipped),
    }
    trained = _train(built, data, config, name)
    info["train_order"] = trained["schedule"]
    results = {}
    for variant, model in built.items():
        spec = _models.VARIANTS[variant]
        results[variant] = {
            "kind": spec.kind,
            "description": spec.description,
            "train": trained["train"][variant],
            "accuracy": _accuracy(model, data, config),
        }
    models = dict(built)
    if converted:
        with _bar(config, len(converted), f"{name}: convert + fine-tune") as bar:
            for variant in converted:
                bar.set_postfix_str(variant)
                with scope():
                    model, details = _convert(
                        built[_models.BASELINE], variant, data, config, api
                    )
                models[variant] = model
                spec = _models.VARIANTS[variant]
                results[variant] = {
                    "kind": spec.kind,
                    "description": spec.description,
                    "train": None,
                    "accuracy": _accuracy(model, data, config),
                    "converted": details,
                }
                bar.update()
    inference = _inference(models, data, config, name)
    base = None
    for variant, model in models.items():
        entry = results[variant]
        cost = _models.model_cost(model)
        entry["params"] = cost.params
        entry["macs"] = cost.macs
        entry["layers"] = [type(layer).__name__ for layer in model.layers]
        entry["inference"] = {b: inference[b][variant] for b in inference}
        entry["summary"] = _summary(entry, len(data.x_train))
        if variant == _models.BASELINE:
            base = entry["summary"]
    for entry in results.values():
        entry["vs_baseline"] = compare(entry["summary"], base)
    info["variants"] = results
    return info


def _summary(entry: Mapping, train_examples: int) -> dict:
    train = entry["train"]
    epoch_s = train["epochs"]["median_s"] if train else None
    latency = {b: t["median_s"] for b, t in entry["inference"].items()}
    return {
        "macs": entry["macs"],
        "params": entry["params"],
        "accuracy": entry["accuracy"],
        "train_epoch_s": epoch_s,
        "train_examples_per_s": None if epoch_s is None else train_examples / epoch_s,
        "latency_s": latency,
        "inference_examples_per_s": {b: int(b) / s for b, s in latency.items()},
    }


def _build(dataset, variants, data: _Data, config: BenchConfig, scope):
    built, skipped = {}, {}
    for variant in variants:
        if _models.VARIANTS[variant].kind == "converted":
            continue
        keras.utils.set_random_seed(config.seed)
        try:
            with scope():
                model = _models.build_model(
                    dataset, variant, data.input_shape, data.num_classes
                )
                _compile(model, config)
        except _models.NotApplicableError as exc:
            skipped[variant] = str(exc)
            continue
        except Exception as exc:
            raise BenchError(
                f"{dataset}: building variant {variant!r} failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        built[variant] = model
    return built, skipped


def _say(config: BenchConfig, message: str) -> None:
    if config.progress:
        print(message, file=sys.stderr, flush=True)


def run_benchmark(
    config: BenchConfig, *, load: Callable[[str], tuple] | None = None
) -> dict:
    """Runs the benchmark and writes results.json, results.md and the plots.

    Args:
        config: what to run.
        load: ``load(dataset)`` for every dataset, instead of each registered
            loader / ``fastconv.datasets.load`` (tests inject data this way).

    Returns:
        The results, as written to ``results.json``.

    Raises:
        BenchError: a bad configuration, before any training.
    """
    variants = check_config(config)
    out = Path(config.out if config.out is not None else default_out(config.suite))
    created = not out.exists()
    check_out(out)
    policy = keras.config.dtype_policy()
    try:
        device = select_device(config.device)
        keras.config.set_dtype_policy(config.precision)
        with _distribution(config.distribute) as (scope, replicas):
            if config.batch_size % replicas or config.inference_batch_size % replicas:
                raise BenchError(
                    f"--distribute {config.distribute}: batch sizes must be multiples "
                    f"of the {replicas} devices, received --batch-size "
                    f"{config.batch_size} and --inference-batch-size "
                    f"{config.inference_batch_size}"
                )
            return _run(config, variants, out, device, load, scope, replicas)
    except BenchError:
        if created and not any(out.iterdir()):
            out.rmdir()  # leave no empty results folder behind a refused run
        raise
    finally:
        keras.config.set_dtype_policy(policy)


def _run(config, variants, out, device, load, scope, replicas) -> dict:
    converted = [v for v in variants if _models.VARIANTS[v].kind == "converted"]
    api, why_not = _convert_api() if converted else (None, None)
    data = {}
    for name in config.datasets:
        loader = load or _models.MODELS[name].load or datasets.load
        _say(config, f"{name}: loading")
        data[name] = _prepare(name, loader(name), config, replicas)
    built = {
        name: _build(name, variants, data[name], config, scope)
        for name in config.datasets
    }
    environment = timing.environment()
    environment.update(
        {
            "device_option": config.device,
            "device_used": device,
            "distribute": config.distribute,
            "replicas": replicas,
            "jit_option": config.jit,
            "autotune": autotune.autotune_enabled(),
            "autotune_cache": str(autotune.cache_path()),
        }
    )
    results = {
        "schema": 1,
        "environment": environment,
        "config": _jsonable(
            {
                **{
                    f.name: getattr(config, f.name)
                    for f in dataclasses.fields(config)
                    if f.name not in ("out", "progress")
                },
                "variants": variants,
            }
        ),
        "notes": list(config.notes),
        "datasets": {},
    }
    if why_not:
        results["notes"].append(
            f"converted variants ({', '.join(converted)}) skipped: {why_not}"
        )
        _say(config, f"skipping {', '.join(converted)}: {why_not}")
        converted = []
    for name in config.datasets:
        models, skipped = built[name]
        for variant, reason in skipped.items():
            _say(config, f"{name}: skipping {variant}: {reason}")
        d = data[name]
        _say(
            config,
            f"{name}: {len(d.x_train):,} of {d.train_available:,} training and "
            f"{len(d.x_test):,} of {d.test_available:,} test images; "
            f"{len(models)} variants, 1 warm-up + {config.epochs} timed epochs "
            f"each, round-robin; batch {config.batch_size}; {device}",
        )
        results["datasets"][name] = _measure_dataset(
            name, d, models, skipped, config, converted, api, scope
        )
        del built[name], data[name]  # free the dataset's models and arrays
        _report.write_all(results, out)
    results["out"] = str(out)
    _say(config, f"results: {out}")
    return results
