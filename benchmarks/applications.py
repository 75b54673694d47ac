"""Every keras.applications CNN through ``fastconv.convert_model``.

Each model of `MODELS` is built with ``weights=None`` (random weights: nothing
is downloaded) and ``classes=10`` at the smallest input size it accepts, and
converted twice: with ``convert_model``'s default settings and with
``min_speedup=1.1``. Per model and conversion it records the conversion time;
the convolutions converted and kept, counted by the report's decision; the
parameters and multiply-adds of the whole model before and after
(``count_params`` and `macs`); whether the converted model saved to
``.keras`` and loaded back gives the same outputs (within `TOLERANCE`); and the
inference time of the original and both converted models at batch 1 and 32,
all six interleaved in one ``fastconv.timing.interleaved`` run, as speedups
(the original's median over the converted one's). With ``min_speedup`` a
layer is replaced only where it was measured faster, so the converted model
should not be slower than the original at batch 32 (the batch the layers were
timed at): `verdict` says whether that held, telling a slowdown apart from the
spread of the timings.

Writes ``applications.json`` (every raw sample, the reports and
``fastconv.timing.environment()``, rewritten after each model),
``applications.md`` (the table) and ``applications.png`` (the speedups) to
``--out``. A model that fails to build, convert or reload is recorded with its
error and the run goes on.

Usage:
    python -m benchmarks.applications --models MobileNetV2 ResNet50 --repeats 5
    python -m benchmarks.applications --report results/applications.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: keras.applications constructor -> the input side it is built at: 32, the
#: smallest most of them accept, or the documented minimum of the others
#: (InceptionV3 75, Xception 71).
MODELS = {
    "VGG16": 32,
    "VGG19": 32,
    "ResNet50": 32,
    "ResNet101": 32,
    "ResNet152": 32,
    "ResNet50V2": 32,
    "ResNet101V2": 32,
    "ResNet152V2": 32,
    "MobileNet": 32,
    "MobileNetV2": 32,
    "MobileNetV3Small": 32,
    "MobileNetV3Large": 32,
    "EfficientNetB0": 32,
    "EfficientNetV2B0": 32,
    "DenseNet121": 32,
    "InceptionV3": 75,
    "Xception": 71,
    "ConvNeXtTiny": 32,
    "NASNetMobile": 32,
}
#: The two conversions: ``convert_model``'s defaults, and layers replaced only
#: where measured at least 1.1 times faster.
CONVERSIONS = {"default": {}, "min_speedup": {"min_speedup": 1.1}}
BATCHES = (1, 32)
CLASSES = 10
#: Largest absolute difference allowed between the outputs of a converted
#: model and of its ``.keras`` copy.
TOLERANCE = 1e-5


def build(name: str, size: int):
    """``keras.applications.<name>`` at ``size`` x ``size``, random weights."""
    import keras

    constructor = getattr(keras.applications, name)
    return constructor(weights=None, input_shape=(size, size, 3), classes=CLASSES)


def macs(model) -> int:
    """Multiply-adds per example: `fastconv.cost.layer_cost` of each layer
    (nested models' included) at the input shape of its call. Layers of
    several inputs (``Add``, ``Concatenate``) and operations count none."""
    import keras

    from fastconv.cost import layer_cost

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += macs(layer)
        elif not isinstance(layer, keras.layers.InputLayer) and not isinstance(
            layer.input, list
        ):
            total += layer_cost(layer, tuple(layer.input.shape)).macs
    return int(total)


def reason(decision: str) -> str:
    """A report decision without its measured speedup and implementation, so
    that layers kept or converted for the same reason count together:
    ``"kept: 0.95x (dense) < min_speedup 1.1x"`` -> ``"kept: < min_speedup
    1.1x"``; a layer the whole-model check put back counts as ``"kept:
    reverted by the whole-model check"``, and one kept for doing no fewer
    multiply-adds loses the two counts."""
    decision = re.sub(r" \(whole model .*\)$", "", decision)
    decision = re.sub(r" \([\d,]+ >= [\d,]+\)", "", decision)
    return re.sub(r"\d+(\.\d+)?x \(\w+\) ", "", decision)


def reload_difference(model, x: np.ndarray) -> float:
    """Largest absolute difference between ``model``'s outputs on ``x`` and
    those of its copy saved to ``.keras`` and loaded back."""
    import keras

    with tempfile.TemporaryDirectory(prefix="fastconv-apps-") as folder:
        path = os.path.join(folder, "model.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)
    before = np.asarray(model.predict(x, verbose=0))
    after = np.asarray(loaded.predict(x, verbose=0))
    return float(np.max(np.abs(before - after)))


def _error(exc: Exception) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def convert(original, x: np.ndarray, settings: dict) -> tuple[dict, object]:
    """One conversion of ``original``: ``(record, new model or None)``."""
    import fastconv

    start = time.perf_counter()
    try:
        model, report = fastconv.convert_model(original, progress=False, **settings)
    except Exception as exc:
        return {"error": _error(exc)}, None
    record = {"convert_s": time.perf_counter() - start}
    rows = report.rows
    record["converted"] = sum(row.converted for row in rows)
    record["kept"] = len(rows) - record["converted"]
    record["decisions"] = dict(Counter(reason(row.decision) for row in rows))
    record["params_after"] = report.params_after
    record["macs_after"] = macs(model)
    try:
        record["reload_max_abs_diff"] = reload_difference(model, x)
        record["reload_same"] = record["reload_max_abs_diff"] <= TOLERANCE
    except Exception as exc:
        record["reload_error"] = _error(exc)
        record["reload_same"] = False
    record["report"] = report.to_dict()
    return record, model


def measure(name: str, size: int, *, jit: bool, warmup: int, repeats: int) -> dict:
    """Builds, converts both ways, checks reloading and times one model."""
    from fastconv import timing

    entry = {"model": name, "input_size": size}
    try:
        original = build(name, size)
    except Exception as exc:
        entry["error"] = f"build: {_error(exc)}"
        return entry
    entry["params"], entry["macs"] = int(original.count_params()), macs(original)
    x = np.random.default_rng(0).standard_normal(
        (max(BATCHES), size, size, 3), dtype=np.float32
    )
    models = {"original": original}
    entry["conversions"] = {}
    for label, settings in CONVERSIONS.items():
        record, model = convert(original, x, settings)
        entry["conversions"][label] = record
        if model is not None:
            models[label] = model
    fns = {
        f"b{batch}/{label}": timing.make_forward(model, x[:batch], jit=jit)
        for label, model in models.items()
        for batch in BATCHES
    }
    measured = timing.interleaved(fns, warmup=warmup, repeats=repeats)
    entry["timings"] = {key: t.as_dict() for key, t in measured.items()}
    for label, record in entry["conversions"].items():
        if label not in models:
            continue
        record["speedups"] = {
            f"b{batch}": measured[f"b{batch}/original"].median
            / measured[f"b{batch}/{label}"].median
            for batch in BATCHES
        }
        record["not_slower_b32"] = verdict(entry, label) != "NO"
    return entry


def verdict(entry: dict, label: str) -> str | None:
    """Whether conversion ``label`` came out slower than the original at batch
    32: ``"same model"`` when it replaced no layer (the graph and weights are
    the original's, so any difference is the clock's); ``"yes"`` (not slower)
    when its median is at most the original's; ``"within noise"`` when it is
    above it but the two timings' p10-p90 ranges overlap; ``"NO"`` when the
    converted model's p10 is above the original's p90. None when either
    timing is missing."""
    record = entry.get("conversions", {}).get(label, {})
    timings = entry.get("timings", {})
    original, new = timings.get("b32/original"), timings.get(f"b32/{label}")
    if original is None or new is None or "converted" not in record:
        return None
    if record["converted"] == 0:
        return "same model"
    if new["median_s"] <= original["median_s"]:
        return "yes"
    return "within noise" if new["p10_s"] <= original["p90_s"] else "NO"


def _count(value: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.3g}{unit}"
    return f"{value:.3g}"


def _check(record: dict) -> str:
    """The whole-model check's cells: its last measured speedup (``copy`` when
    it put every replacement back) and how many layers it put back; empty
    for a conversion without the check."""
    whole = record.get("report", {}).get("whole_model")
    if whole is None:
        return " | "
    if whole["speedup"] is not None:
        measured = f"{whole['speedup']:.2f}"
    else:
        measured = "copy" if whole["rounds"] else "nothing replaced"
    return f"{measured} | {len(whole['reverted'])}"


def _kept(record: dict) -> str:
    kept = {k: n for k, n in record["decisions"].items() if k.startswith("kept")}
    return "; ".join(f"{n} {k.removeprefix('kept: ')}" for k, n in kept.items())


def layer_prediction(entry: dict, label: str = "min_speedup") -> dict | None:
    """What the per-layer times of a ``min_speedup`` conversion predict, beside
    what the whole model measured: the layers replaced, how many of them have
    more multiply-adds than the original, and the batch-32 speedup predicted
    as the original's median over it minus the time each replaced layer saved
    (its median alone, at batch 32, before minus after). None when the
    conversion failed or saved nothing measurable."""
    record = entry.get("conversions", {}).get(label, {})
    if "report" not in record or "speedups" not in record:
        return None
    replaced = [row for row in record["report"]["layers"] if row["converted"]]
    saved = sum(
        row["time_before"]["median_s"] - row["time_after"]["median_s"]
        for row in replaced
    )
    original = entry["timings"]["b32/original"]["median_s"]
    return {
        "replaced": len(replaced),
        "more_macs": sum(row["macs_after"] > row["macs_before"] for row in replaced),
        "predicted_b32": original / (original - saved) if saved < original else None,
        "measured_b32": record["speedups"]["b32"],
    }


def markdown(run: dict) -> str:
    """The Markdown tables of a run."""
    env, config = run["environment"], run["config"]
    out = [
        "# Every keras.applications CNN through fastconv.convert_model",
        "",
        f"{env['backend']} (jit {'on' if config['jit'] else 'off'}), "
        f"{env['cpu']['model']} ({', '.join(env['cpu']['vector_extensions'])}), "
        f"{env['cpu_count']} cores, Keras {env['versions']['keras']}, commit "
        f"`{env['git_commit']}`. Random weights (`weights=None`), "
        f"`classes={CLASSES}`. Speedups: median forward time of the original "
        "over the converted model, the original and both conversions "
        f"interleaved, {config['repeats']} rounds after {config['warmup']} "
        "warm-up. `default`: `convert_model(model)`; `min 1.1`: "
        "`convert_model(model, min_speedup=1.1)`, whose whole-model check "
        "(`check x b32`, its last timing of the new model at batch 32, in its "
        "own run) put back `reverted` layers. Reload: the converted model "
        f"saved to `.keras` and loaded back gives the same outputs within "
        f"{TOLERANCE:g}. Not slower b32: `same model` (no layer replaced), "
        "`yes` (median at most the original's), `within noise` (slower median, "
        "overlapping p10-p90 ranges) or `NO` (the converted model's p10 above "
        "the original's p90).",
        "",
        "| model | input | params | MACs | conversion | convert s | converted "
        "/ kept | params after | MACs after | x b1 | x b32 | check x b32 | "
        "reverted | reload | not slower b32 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    reasons = []
    for entry in run["models"]:
        head = f"| {entry['model']} | {entry['input_size']} |"
        if "error" in entry:
            out.append(f"{head} failed: {entry['error']} |" + " |" * 12)
            continue
        head += f" {_count(entry['params'])} | {_count(entry['macs'])} |"
        for label, record in entry["conversions"].items():
            name = "default" if label == "default" else "min 1.1"
            if "error" in record:
                out.append(f"{head} {name} | failed: {record['error']} |" + " |" * 9)
                head = "| | | | |"
                continue
            speed = record.get("speedups", {})
            judged = verdict(entry, label) or ""
            out.append(
                f"{head} {name} | {record['convert_s']:.1f} | "
                f"{record['converted']} / {record['kept']} | "
                f"{_count(record['params_after'])} | "
                f"{_count(record['macs_after'])} | "
                f"{speed.get('b1', float('nan')):.2f} | "
                f"{speed.get('b32', float('nan')):.2f} | "
                f"{_check(record)} | "
                f"{'same' if record['reload_same'] else 'DIFFERENT'} | "
                f"{judged} |"
            )
            head = "| | | | |"
            reasons.append((entry["model"], name, _kept(record)))
    out += [
        "",
        "`min_speedup=1.1`, per layer against the whole model: the layers "
        "replaced, those of them with more multiply-adds than the original, the "
        "batch-32 speedup their per-layer times predict (the original's median "
        "over it minus what each replaced layer saved alone) and the one "
        "measured:",
        "",
        "| model | replaced | with more MACs | predicted x b32 | measured x b32 |",
        "|---|---|---|---|---|",
    ]
    for entry in run["models"]:
        found = layer_prediction(entry)
        if found is None:
            continue
        predicted = found["predicted_b32"]
        out.append(
            f"| {entry['model']} | {found['replaced']} | {found['more_macs']} | "
            f"{'n/a' if predicted is None else f'{predicted:.2f}'} | "
            f"{found['measured_b32']:.2f} |"
        )
    out += [
        "",
        "Convolutions kept, by reason:",
        "",
        "| model | conversion | kept |",
        "|---|---|---|",
        *(f"| {model} | {name} | {kept} |" for model, name, kept in reasons),
    ]
    return "\n".join(out) + "\n"


def plot(run: dict, out: str | Path) -> None:
    """Speedup of each conversion at batch 1 and 32, one bar per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = [e for e in run["models"] if "error" not in e]
    names = [e["model"] for e in entries]
    fig, axes = plt.subplots(1, len(BATCHES), figsize=(11, 4.5), sharey=True)
    width = 0.4
    for ax, batch in zip(axes, BATCHES, strict=True):
        for i, label in enumerate(CONVERSIONS):
            values = [
                e["conversions"][label].get("speedups", {}).get(f"b{batch}", np.nan)
                for e in entries
            ]
            positions = np.arange(len(entries)) + (i - 0.5) * width
            ax.bar(positions, values, width, label=label)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xticks(np.arange(len(entries)), names, rotation=70, fontsize=7)
        ax.set_title(f"batch {batch}")
    axes[0].set_ylabel("inference speedup (original / converted)")
    axes[0].legend(fontsize=8)
    env = run["environment"]
    fig.suptitle(f"keras.applications, {env['backend']}, {env['cpu']['model']}")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def write_outputs(run: dict, stem: str | Path) -> None:
    """``<stem>.md`` and ``<stem>.png`` from a run."""
    stem = Path(stem)
    stem.with_suffix(".md").write_text(markdown(run), encoding="utf-8")
    plot(run, stem.with_suffix(".png"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        nargs="+",
        choices=list(MODELS),
        default=list(MODELS),
        metavar="MODEL",
        help=f"keras.applications models (default: all of {', '.join(MODELS)})",
    )
    parser.add_argument(
        "--repeats", type=int, default=10, help="measured rounds (default 10)"
    )
    parser.add_argument(
        "--warmup", type=int, default=2, help="warm-up rounds (default 2)"
    )
    parser.add_argument(
        "--jit",
        choices=("default", "on", "off"),
        default="default",
        help="as benchmarks.layers: XLA on JAX, and on TensorFlow only with a GPU",
    )
    parser.add_argument(
        "--out",
        default="benchmarks/results/applications",
        help="folder of applications.json, .md and .png",
    )
    parser.add_argument(
        "--report",
        metavar="JSON",
        help="regenerate the Markdown and the plot from this result file",
    )
    args = parser.parse_args(argv)
    if args.report:
        write_outputs(
            json.loads(Path(args.report).read_text(encoding="utf-8")), args.report
        )
        return 0
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be >= 1 and --warmup >= 0")

    from benchmarks.layers import start_run

    _, jit, env = start_run(args.jit, keep=True)
    stem = Path(args.out) / "applications"
    stem.parent.mkdir(parents=True, exist_ok=True)
    config = {
        "models": {name: MODELS[name] for name in args.models},
        "conversions": CONVERSIONS,
        "batches": BATCHES,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "jit": jit,
        "argv": sys.argv[1:] if argv is None else list(argv),
    }
    run = {"environment": env, "config": config, "models": []}
    for name in args.models:
        start = time.perf_counter()
        entry = measure(
            name, MODELS[name], jit=jit, warmup=args.warmup, repeats=args.repeats
        )
        entry["seconds"] = time.perf_counter() - start
        run["models"].append(entry)
        stem.with_suffix(".json").write_text(json.dumps(run, indent=1, default=str))
        print(f"{name}: {entry['seconds']:.0f} s", file=sys.stderr, flush=True)
    write_outputs(run, stem)
    print(markdown(run))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
