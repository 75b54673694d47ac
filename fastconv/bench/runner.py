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
runs before the first training step. The configuration and its checks live in
`fastconv.bench.config`; the device and the distribution strategy in
`fastconv.bench.device`.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import keras
import numpy as np

from fastconv import datasets, timing
from fastconv.bench import models as _models
from fastconv.bench import report as _report
from fastconv.bench.config import (
    BenchConfig,
    BenchError,
    _per_dataset,
    check_config,
    check_out,
    default_out,
)
from fastconv.bench.device import _distribution, _join_cluster, select_device
from fastconv.convert import cluster
from fastconv.kernels import autotune

__all__ = ["compare", "run_benchmark", "training_schedule"]


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


def _fit_epoch(
    model, data: _Data, config: BenchConfig, epoch: int
) -> tuple[int, float]:
    start = time.perf_counter_ns()
    if config.distribute == "multi-worker":
        history = cluster.join_cluster().fit(
            model,
            data.x_train,
            data.y_train,
            batch_size=config.batch_size,
            seed=config.seed + epoch,
        )
    else:
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
                elapsed, loss = _fit_epoch(models[variant], data, config, epoch)
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


def _convert(baseline, variant, data: _Data, config: BenchConfig, api, scope) -> tuple:
    convert_model, finetune = api
    options = dict(_models.VARIANTS[variant].convert)
    start = time.perf_counter_ns()
    with scope():  # built and trained in the scope, evaluated outside it
        model, conversion = convert_model(
            baseline, calibration_data=data.x_train[:64], progress=False, **options
        )
    convert_ns = time.perf_counter_ns() - start
    before = _accuracy(model, data, config)
    epoch_times = _EpochTimes()
    start = time.perf_counter_ns()
    with scope():
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
            distribution="multi-worker"
            if config.distribute == "multi-worker"
            else None,
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
                model, details = _convert(
                    built[_models.BASELINE], variant, data, config, api, scope
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
        if config.distribute == "multi-worker":
            _join_cluster()  # before the backend computes anything
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
    if config.distribute == "multi-worker":
        joined = cluster.join_cluster().cluster
        environment["processes"] = joined.num_processes
        environment["process_id"] = joined.process_id
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
