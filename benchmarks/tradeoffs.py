"""Accuracy against speed: rank sweeps of trained references, beside controls.

For each dataset's cached reference model (`fastconv.bench.references`), for
each method x rank: ``fastconv.convert_model``; the test accuracy right after
conversion; whole-model inference time at batch 1 and 256 and the time of a
training step (forward and backward, no optimizer update) at the recipe's
batch size, the original and the converted model interleaved in one
``fastconv.timing.interleaved`` run, as ratios (original / converted); then,
for each seed, ``controlled_finetune``: the converted model fine-tuned and the
original given exactly the same extra training (the control), both measured
on the test set. Writes every raw sample, the environment and the config to
``tradeoffs-<dataset>.json``, a table to ``tradeoffs-<dataset>.md`` and the
accuracy gap to the control against the inference speedup at batch 256, with
its Pareto front, to ``tradeoffs-<dataset>.png``.

A reference that is not cached is trained with ``reference_model`` (minutes
on MNIST), except CIFAR-10's, which takes hours on a small CPU: cifar10 is
refused unless its reference is already cached.

Usage:
    python -m benchmarks.tradeoffs --datasets mnist --quick
    python -m benchmarks.tradeoffs --datasets mnist --methods cp tucker --seeds 0
    python -m benchmarks.tradeoffs --report benchmarks/results/tradeoffs/*.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

METHODS = ("cp", "tucker", "factorized", "separable")
RANKS = ("0.1", "0.25", "0.5", "vbmf", "energy:0.9", "energy:0.99")
#: Inference batch sizes; the training step uses the fine-tuning batch size.
INFERENCE_BATCHES = (1, 256)


@dataclasses.dataclass(frozen=True)
class Target:
    """Issue 13's target for a dataset: at least ``speedup`` times faster
    inference at batch 256 (and at least ``train_speedup`` times faster
    training steps, where set), at most ``points`` below the control."""

    speedup: float
    points: float
    train_speedup: float | None = None

    def __str__(self) -> str:
        train = (
            ""
            if self.train_speedup is None
            else f" and >= {self.train_speedup:g}x training step"
        )
        return (
            f">= {self.speedup:g}x inference (batch 256){train} at <= "
            f"{self.points:g} point below the control"
        )


#: MNIST and Fashion-MNIST: 2x at half a point.
TARGET = Target(2.0, 0.5)
#: Per dataset, where it differs from `TARGET`.
TARGETS = {"cifar10": Target(2.5, 1.0, train_speedup=2.0)}
#: Datasets whose reference takes hours to train here: used only when cached.
NEVER_TRAIN = ("cifar10",)


def parse_rank(text: str):
    """A rank as typed on the command line: ``"0.25"`` -> 0.25, ``"8"`` -> 8,
    anything else (``"vbmf"``, ``"energy:0.9"``) as the string."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both coordinates.

    Both coordinates are to be maximised (speedup, accuracy). A point is on
    the front unless another is at least as good on both and better on one.
    Returned in order of increasing first coordinate.
    """
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any(
            (ox >= x and oy >= y) and (ox > x or oy > y)
            for j, (ox, oy) in enumerate(points)
            if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (points[i][0], points[i][1]))


def _mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    mean = float(statistics.fmean(values))
    return mean, (float(statistics.stdev(values)) if len(values) > 1 else None)


def time_models(
    original, converted, x, *, train_batch: int, jit: bool, warmup: int, repeats: int
) -> dict:
    """Inference at each of `INFERENCE_BATCHES` and a training step at
    ``train_batch``, both models, all interleaved in one run.

    Returns ``{"timings": {name: Timing.as_dict()}, "speedups": {what: ratio}}``
    with names ``<what>/original`` and ``<what>/converted`` and ratios of the
    medians, original over converted.
    """
    from fastconv import timing

    fns = {}
    for label, model in (("original", original), ("converted", converted)):
        for batch in INFERENCE_BATCHES:
            xb = _batch(x, batch)
            fns[f"forward_b{batch}/{label}"] = timing.make_forward(model, xb, jit=jit)
        fns[f"train_b{train_batch}/{label}"] = timing.make_grad_step(
            model, _batch(x, train_batch), jit=jit
        )
    measured = timing.interleaved(fns, warmup=warmup, repeats=repeats)
    whats = dict.fromkeys(name.split("/")[0] for name in fns)
    return {
        "timings": {name: t.as_dict() for name, t in measured.items()},
        "speedups": {
            what: measured[f"{what}/original"].median
            / measured[f"{what}/converted"].median
            for what in whats
        },
    }


def _batch(x: np.ndarray, n: int) -> np.ndarray:
    """The first ``n`` examples of ``x``, repeated if it holds fewer."""
    reps = -(-n // len(x))
    return np.concatenate([x] * reps)[:n] if reps > 1 else x[:n]


def sweep(
    original,
    train_data,
    test_data,
    *,
    methods: Sequence[str],
    ranks: Sequence,
    seeds: Sequence[int],
    epochs: int = 1,
    batch_size: int = 128,
    jit: bool = False,
    warmup: int = 2,
    repeats: int = 10,
    search_targets: Sequence[float] = (),
    search_data=None,
    search_batch_size: int = 256,
    augment_shift: int | None = None,
    finetune: dict | None = None,
    layer_types: Sequence[str] = ("conv",),
    keep: Callable[[dict, object], None] | None = None,
    say: Callable[[str], None] = lambda message: None,
    points: list | None = None,
) -> list[dict]:
    """Every method x rank of ``original``: conversion, timing, fine-tuning.

    ``train_data`` and ``test_data`` are ``(x, y)`` arrays, ``x`` ready for
    the model. Each target of ``search_targets`` adds a point of method
    ``"search"``: ``fastconv.convert_model(original, data=search_data,
    target_speedup=target, methods=methods)``, the layers' methods and ranks
    chosen from their measured times at ``search_batch_size`` and their
    accuracy on ``search_data`` (examples kept apart from both others), then
    measured like the others. A conversion that fails is recorded with its
    error and the sweep goes on. The control is trained once per seed and
    shared by every point (``controlled_finetune(control=...)``);
    ``augment_shift`` (random crops and flips of the training images) and
    ``finetune`` (``optimizer``, ``learning_rate``, ``distill``) are passed
    to it, the same for the control. ``layer_types`` goes to every
    ``convert_model`` call: ``("conv", "dense")`` converts the Dense layers
    too (the last one, the classifier, is kept), at the same rank. ``keep``,
    if given, is called with each point and its first seed's fine-tuned
    model. Returns one dict per point (see the module docstring), appended
    to ``points`` if given as each starts (``say`` can then save them).
    """
    import fastconv
    from fastconv.bench.references import controlled_finetune

    x_test, y_test = test_data
    candidates = [
        (
            {"method": method, "rank": rank},
            {"method": method, "rank": rank, "layer_types": tuple(layer_types)},
        )
        for method in methods
        for rank in ranks
    ] + [
        (
            {"method": "search", "rank": f"target {target:g}x"},
            {
                "data": search_data,
                "target_speedup": target,
                "methods": methods,
                "batch_size": search_batch_size,
                "layer_types": tuple(layer_types),
            },
        )
        for target in search_targets
    ]
    if search_targets and search_data is None:
        raise ValueError("tradeoffs.sweep: search_targets need search_data")
    controls = {}
    points = [] if points is None else points
    for point, arguments in candidates:
        method, rank = point["method"], point["rank"]
        points.append(point)
        start = time.perf_counter()
        try:
            result = fastconv.convert_model(original, progress=False, **arguments)
        except Exception as exc:
            point["error"] = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
            say(f"{method} rank={rank}: conversion failed: {point['error']}")
            continue
        point["convert_s"] = time.perf_counter() - start
        point["conversion"] = result.report.to_dict()
        if result.report.search is not None:
            point["search"] = result.report.search
        point["params"] = {
            "original": int(original.count_params()),
            "converted": int(result.model.count_params()),
        }
        point["accuracy_converted"] = _accuracy(result.model, x_test, y_test)
        point.update(
            time_models(
                original,
                result.model,
                x_test,
                train_batch=batch_size,
                jit=jit,
                warmup=warmup,
                repeats=repeats,
            )
        )
        runs = []
        for seed in seeds:
            start = time.perf_counter()
            tuned = controlled_finetune(
                original,
                result.model,
                train_data,
                test_data,
                epochs=epochs,
                seed=seed,
                batch_size=batch_size,
                control=controls.get(seed),
                augment_shift=augment_shift,
                **(finetune or {}),
            )
            controls[seed] = tuned
            if keep is not None and seed == seeds[0]:
                keep(point, tuned.converted_model)
            runs.append(
                {
                    "seed": seed,
                    "seconds": time.perf_counter() - start,
                    "original_accuracy": tuned.original_accuracy,
                    "converted_accuracy_before": tuned.converted_accuracy_before,
                    "converted_accuracy": tuned.converted_accuracy,
                    "control_accuracy": tuned.control_accuracy,
                    "steps": tuned.steps,
                    "same_batches": tuned.served["converted"]
                    == tuned.served["control"],
                    "control_reused": tuned.control_reused,
                    "histories": tuned.histories,
                }
            )
        point["finetune"] = runs
        point["summary"] = summarise(point)
        say(
            f"{method} rank={rank}: x{point['speedups']['forward_b256']:.2f} "
            f"(b256), gap to control {point['summary']['gap_points']:+.2f} "
            f"points, {time.perf_counter() - start:.0f} s last seed"
        )
    return points


def _accuracy(model, x, y, batch_size: int = 256) -> float:
    from fastconv.bench import references

    return references._accuracy(model, x, y, batch_size)


def summarise(point: dict) -> dict:
    """Means (and standard deviations over seeds) of a measured point."""
    runs = point["finetune"]
    tuned, tuned_std = _mean_std([r["converted_accuracy"] for r in runs])
    control, control_std = _mean_std([r["control_accuracy"] for r in runs])
    gap, gap_std = _mean_std(
        [100 * (r["converted_accuracy"] - r["control_accuracy"]) for r in runs]
    )
    return {
        "seeds": len(runs),
        "finetuned_accuracy": tuned,
        "finetuned_accuracy_std": tuned_std,
        "control_accuracy": control,
        "control_accuracy_std": control_std,
        "gap_points": gap,
        "gap_points_std": gap_std,
        "finetune_s_max": max(r["seconds"] for r in runs),
    }


def _measured(run: dict) -> list[dict]:
    return [p for p in run["points"] if "error" not in p]


def front_of(run: dict) -> list[dict]:
    """The measured points on the Pareto front of (speedup at batch 256,
    gap to the control)."""
    points = _measured(run)
    coords = [
        (p["speedups"]["forward_b256"], p["summary"]["gap_points"]) for p in points
    ]
    return [points[i] for i in pareto_front(coords)]


def target_of(dataset: str) -> Target:
    """The dataset's `Target`."""
    return TARGETS.get(dataset, TARGET)


def meets_target(point: dict, target: Target = TARGET) -> bool:
    """Whether a measured point reaches ``target``."""
    speedups = point["speedups"]
    train = [v for k, v in speedups.items() if k.startswith("train_")]
    return (
        speedups["forward_b256"] >= target.speedup
        and point["summary"]["gap_points"] >= -target.points
        and (target.train_speedup is None or train[0] >= target.train_speedup)
    )


def best_point(run: dict) -> dict | None:
    """The point whose fine-tuned model is worth keeping: the fastest (batch
    256) within the dataset's accuracy target, else the one closest to the
    control; None when no point was measured."""
    points = _measured(run)
    if not points:
        return None
    target = target_of(run["dataset"])
    within = [p for p in points if p["summary"]["gap_points"] >= -target.points]
    if within:
        return max(within, key=lambda p: p["speedups"]["forward_b256"])
    return max(points, key=lambda p: p["summary"]["gap_points"])


def search_against_uniform(run: dict) -> list[str]:
    """Markdown lines comparing each search point with the uniform-rank points
    at least 90% as fast (batch 256): accuracy right after conversion and
    fine-tuned, and the verdict."""
    points = _measured(run)
    searched = [p for p in points if p["method"] == "search"]
    uniform = [p for p in points if p["method"] != "search"]
    out = []
    for s in searched:
        speed = s["speedups"]["forward_b256"]
        rivals = [u for u in uniform if u["speedups"]["forward_b256"] >= 0.9 * speed]
        out += [
            "",
            f"Search ({s['rank']}): measured x{speed:.2f} at batch 256 "
            f"(predicted {_times(s['search']['predicted_speedup'])}), "
            f"{100 * s['accuracy_converted']:.2f}% right after conversion, "
            f"{100 * s['summary']['finetuned_accuracy']:.2f}% fine-tuned."
            f"{_calibration(s['search'])} Uniform ranks at least 90% as fast:",
            "",
        ]
        if not rivals:
            out.append("none: no uniform rank was that fast.")
            continue
        out += [
            "| uniform | inference x (b256) | acc. converted % | acc. fine-tuned % "
            "| search better after conversion | search better fine-tuned |",
            "|---|---|---|---|---|---|",
        ]
        for u in sorted(rivals, key=lambda p: -p["speedups"]["forward_b256"]):
            tuned = s["summary"]["finetuned_accuracy"]
            out.append(
                f"| {u['method']} {u['rank']} | {u['speedups']['forward_b256']:.2f} | "
                f"{100 * u['accuracy_converted']:.2f} | "
                f"{100 * u['summary']['finetuned_accuracy']:.2f} | "
                f"{_yes(s['accuracy_converted'] > u['accuracy_converted'])} | "
                f"{_yes(tuned > u['summary']['finetuned_accuracy'])} |"
            )
    return out


def _calibration(search: dict) -> str:
    """The search's calibration and verification, in a sentence ("" for a
    result recorded before the search calibrated)."""
    found = search.get("calibration")
    if not found:
        return ""
    return (
        " Its calibration: the model with every layer at its fastest candidate "
        f"measured x{found['fastest_speedup']:.2f} "
        f"(the layers alone predicted {_times(found['fastest_predicted'])}, "
        f"scale {found['scale']:.4f}); the search's own check measured the "
        f"chosen model at x{search['achieved_speedup']:.2f}."
    )


def _times(predicted: float | None) -> str:
    return "without bound" if predicted is None else f"x{predicted:.2f}"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _pm(mean: float, std: float | None, scale: float = 1.0) -> str:
    text = f"{scale * mean:.2f}"
    return text if std is None else f"{text} ± {scale * std:.2f}"


def _recipe(config: dict) -> str:
    """How the fine-tuning trained: optimizer, learning rate, augmentation,
    distillation (the same for the control)."""
    optimizer = {"adam": "Adam", "sgd": "SGD with momentum 0.9"}.get(
        config.get("optimizer", "adam"), config.get("optimizer")
    )
    rate = config.get("learning_rate", "fastconv.finetune's default")
    text = f", {optimizer} at learning rate " + (
        f"{rate:g}" if isinstance(rate, int | float) else "1e-4 (finetune's default)"
    )
    shift = config.get("augment_shift")
    if shift:
        text += f", with random crops (shifts of up to {shift} pixels) and flips"
    if config.get("distill"):
        text += (
            f", learning the reference's predictions mixed in at weight "
            f"{config['distill']:g} (distillation)"
        )
    return text


def markdown(run: dict) -> str:
    """The Markdown table of one dataset's run."""
    env, config = run["environment"], run["config"]
    seeds = len(config["seeds"])
    out = [
        f"# Accuracy/speed trade-off: {run['dataset']}",
        "",
        f"Reference `{run['reference']['path']}`: test accuracy "
        f"{100 * run['reference']['test_accuracy']:.2f}%. "
        f"{env['backend']}, {env['cpu']['model']} "
        f"({', '.join(env['cpu']['vector_extensions'])}), commit "
        f"`{env['git_commit']}`. "
        + (
            "Converted: the convolutions and the Dense layers but the classifier "
            "(`layer_types=('conv', 'dense')`), at the same rank. "
            if "dense" in config.get("layer_types", ("conv",))
            else ""
        )
        + f"Fine-tuning: {config['epochs']} epoch(s), batch "
        f"{config['batch_size']}, on {config['train_examples']} training examples"
        f"{_recipe(config)}; "
        f"accuracies on {config['test_examples']} test examples; {seeds} seed(s) "
        f"({', '.join(map(str, config['seeds']))}), mean ± standard deviation "
        "where there are several. Control: the original given the same extra "
        "training. Speedups: median time of the original over the converted "
        f"model, interleaved, {config['repeats']} rounds after {config['warmup']} "
        "warm-up.",
        "",
        "| method | rank | params | inference x (b1) | inference x (b256) | "
        f"train step x (b{config['batch_size']}) | acc. converted % | "
        "acc. fine-tuned % | control % | gap (points) | seeds | Pareto |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    front = {id(p) for p in front_of(run)}
    train = f"train_b{config['batch_size']}"
    for p in run["points"]:
        if "error" in p:
            out.append(
                f"| {p['method']} | {p['rank']} | failed: {p['error']} |" + " |" * 9
            )
            continue
        s, x = p["summary"], p["speedups"]
        out.append(
            f"| {p['method']} | {p['rank']} | "
            f"{p['params']['converted']:,} / {p['params']['original']:,} | "
            f"{x['forward_b1']:.2f} | {x['forward_b256']:.2f} | "
            f"{x[train]:.2f} | "
            f"{100 * p['accuracy_converted']:.2f} | "
            f"{_pm(s['finetuned_accuracy'], s['finetuned_accuracy_std'], 100)} | "
            f"{_pm(s['control_accuracy'], s['control_accuracy_std'], 100)} | "
            f"{_pm(s['gap_points'], s['gap_points_std'])} | {s['seeds']} | "
            f"{'yes' if id(p) in front else ''} |"
        )
    target = target_of(run["dataset"])
    hits = [p for p in _measured(run) if meets_target(p, target)]
    verdict = (
        ", ".join(f"{p['method']} rank {p['rank']}" for p in hits) + " meet it."
        if hits
        else "no point meets it."
    )
    out += ["", f"Target: {target}: {verdict}"]
    out += search_against_uniform(run)
    return "\n".join(out) + "\n"


def plot(run: dict, out: str | Path) -> None:
    """Gap to the control against the inference speedup at batch 256, the
    Pareto front joined, to ``out`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, marker in zip((*METHODS, "search"), "osD^*", strict=True):
        points = [p for p in _measured(run) if p["method"] == method]
        if not points:
            continue
        xs = [p["speedups"]["forward_b256"] for p in points]
        ys = [p["summary"]["gap_points"] for p in points]
        ax.scatter(xs, ys, marker=marker, label=method)
        for p, x, y in zip(points, xs, ys, strict=True):
            ax.annotate(
                str(p["rank"]),
                (x, y),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
    front = front_of(run)
    ax.plot(
        [p["speedups"]["forward_b256"] for p in front],
        [p["summary"]["gap_points"] for p in front],
        "k--",
        lw=1,
        label="Pareto front",
    )
    target = target_of(run["dataset"])
    ax.axhline(-target.points, color="r", lw=0.5)
    ax.axvline(target.speedup, color="r", lw=0.5, label="target")
    ax.set_xlabel("whole-model inference speedup, batch 256")
    ax.set_ylabel("fine-tuned minus control accuracy (points)")
    seeds = len(run["config"]["seeds"])
    ax.set_title(f"{run['dataset']}: {run['environment']['backend']}, {seeds} seed(s)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def write_outputs(run: dict, stem: str | Path) -> None:
    """``<stem>.md`` and ``<stem>.png`` from a run."""
    stem = Path(stem)
    stem.with_suffix(".md").write_text(markdown(run), encoding="utf-8")
    plot(run, stem.with_suffix(".png"))


def report(paths: Sequence[str | Path]) -> list[Path]:
    """Regenerates the Markdown and the plot beside each result JSON."""
    written = []
    for path in map(Path, paths):
        write_outputs(json.loads(path.read_text(encoding="utf-8")), path)
        written += [path.with_suffix(".md"), path.with_suffix(".png")]
    return written


def refuse_untrained(datasets: Sequence[str]) -> None:
    """Raises SystemExit, naming the file, for a dataset of `NEVER_TRAIN`
    whose reference is not cached."""
    from fastconv.bench import references

    for dataset in datasets:
        path = references.reference_path(dataset)
        if dataset in NEVER_TRAIN and not path.exists():
            raise SystemExit(
                f"tradeoffs: the {dataset} reference is not cached ({path}); "
                "training it takes hours on this machine, so this benchmark will "
                "not: train it first with "
                f"fastconv.bench.references.reference_model({dataset!r})"
            )


def load_reference(dataset: str):
    """The cached (or freshly trained) reference and its test and train data."""
    from fastconv import datasets
    from fastconv.bench import references

    refuse_untrained([dataset])
    ref = references.reference_model(dataset)
    data = references._prepare(datasets.load(dataset))
    return ref, data


def run_dataset(dataset: str, args, env: dict, jit: bool) -> dict:
    """Measures one dataset, writing its JSON after every point."""
    ref, (x_train, y_train, x_test, y_test) = load_reference(dataset)
    search = {}
    if args.search_targets:
        held = args.val_examples
        search["search_data"] = (x_train[-held:], y_train[-held:])
        x_train, y_train = x_train[:-held], y_train[:-held]
    x_train, y_train = x_train[: args.train_examples], y_train[: args.train_examples]
    x_test, y_test = x_test[: args.test_examples], y_test[: args.test_examples]
    config = {
        "methods": args.methods,
        "ranks": args.ranks,
        "seeds": args.seeds,
        "epochs": args.finetune_epochs,
        "batch_size": ref.info["recipe"]["batch_size"],
        "train_examples": len(x_train),
        "test_examples": len(x_test),
        "search_targets": args.search_targets,
        "search_examples": args.val_examples if args.search_targets else 0,
        "search_batch_size": args.search_batch_size,
        "augment_shift": args.augment_shift,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "quick": args.quick,
        "jit": jit,
        "optimizer": args.optimizer,
        "learning_rate": args.learning_rate
        if args.learning_rate is not None
        else "fastconv.finetune's default",
        "distill": args.distill,
        "layer_types": args.layer_types,
        "argv": sys.argv[1:],
    }
    stem = Path(args.out) / f"tradeoffs-{dataset}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    run = {
        "dataset": dataset,
        "reference": {
            "path": ref.path.name,
            "test_accuracy": ref.test_accuracy,
            "info": {k: v for k, v in ref.info.items() if k != "environment"},
        },
        "environment": env,
        "config": config,
        "points": [],
    }

    def say(message: str) -> None:
        print(f"[{dataset}] {message}", file=sys.stderr, flush=True)
        stem.with_suffix(".json").write_text(json.dumps(run, indent=1, default=str))

    tuned = {}
    sweep(
        ref.model,
        (x_train, y_train),
        (x_test, y_test),
        methods=args.methods,
        ranks=[parse_rank(r) for r in args.ranks],
        seeds=args.seeds,
        epochs=args.finetune_epochs,
        batch_size=config["batch_size"],
        jit=jit,
        warmup=args.warmup,
        repeats=args.repeats,
        search_targets=args.search_targets,
        search_batch_size=args.search_batch_size,
        augment_shift=args.augment_shift,
        finetune={
            "optimizer": args.optimizer,
            "learning_rate": args.learning_rate,
            "distill": args.distill,
        },
        layer_types=args.layer_types,
        keep=(lambda point, model: tuned.update({id(point): model}))
        if args.save_best
        else None,
        say=say,
        points=run["points"],
        **search,
    )
    stem.with_suffix(".json").write_text(json.dumps(run, indent=1, default=str))
    write_outputs(run, stem)
    if args.save_best:
        save_best(run, ref.model, tuned, Path(args.save_best), (x_test, y_test))
    return run


def save_best(run: dict, original, tuned: dict, folder: Path, test_data) -> None:
    """Saves the reference and the fine-tuned model of `best_point` into
    ``folder``, uncompiled, each with a JSON sidecar
    (`benchmarks.checkpoints` turns them into the folder's README)."""
    from benchmarks import checkpoints

    best = best_point(run)
    folder.mkdir(parents=True, exist_ok=True)
    dataset = run["dataset"]
    checkpoints.save(
        original,
        folder / f"{dataset}-reference.keras",
        test_data,
        {
            "dataset": dataset,
            "what": "the reference, as trained",
            # What `checkpoints.install` checks before caching it as the reference.
            "reference": {
                k: run["reference"]["info"][k]
                for k in ("architecture", "seed", "recipe_hash")
            },
            "run": _brief(run),
        },
    )
    if best is None:
        return
    rank = str(best["rank"]).replace(" ", "-").replace(":", "")
    checkpoints.save(
        tuned[id(best)],
        folder / f"{dataset}-{best['method']}-{rank}.keras",
        test_data,
        {
            "dataset": dataset,
            "what": f"{best['method']} rank {best['rank']}, converted from the "
            f"reference and fine-tuned {run['config']['epochs']} epoch(s) (seed "
            f"{run['config']['seeds'][0]}): the fastest point within "
            f"{target_of(dataset).points:g} point of the control, or else the "
            "closest to it",
            "speedups": best["speedups"],
            "summary": best["summary"],
            "run": _brief(run),
        },
    )


def _brief(run: dict) -> dict:
    env = run["environment"]
    return {
        "command": "python -m benchmarks.tradeoffs " + " ".join(run["config"]["argv"]),
        "commit": env.get("git_commit"),
        "cpu": env.get("cpu"),
        "backend": env.get("backend"),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["mnist"])
    parser.add_argument(
        "--methods", nargs="+", choices=METHODS, default=["cp", "tucker"]
    )
    parser.add_argument("--ranks", nargs="+", default=list(RANKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--finetune-epochs", type=int, default=1, choices=(1, 2))
    parser.add_argument(
        "--augment-shift",
        type=int,
        default=None,
        metavar="PIXELS",
        help="fine-tune on random crops (shifts of up to PIXELS) and flips of the "
        "training images, the same for the control (default: the images as they "
        "are)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="the first method and the first two ranks, 5,000 training and "
        "1,000 test examples, 3 timing rounds",
    )
    parser.add_argument(
        "--search-targets",
        nargs="+",
        type=float,
        default=[],
        metavar="SPEEDUP",
        help="add a point per target: convert_model(target_speedup=...), searched "
        "on --val-examples training examples kept out of fine-tuning",
    )
    parser.add_argument("--val-examples", type=int, default=2000)
    parser.add_argument("--search-batch-size", type=int, default=256)
    parser.add_argument(
        "--save-best",
        metavar="FOLDER",
        help="save the reference and the best fine-tuned model there (e.g. "
        "benchmarks/models), each with a JSON sidecar",
    )
    parser.add_argument(
        "--optimizer",
        choices=("adam", "sgd"),
        default="adam",
        help="the fine-tuning optimizer (sgd: momentum 0.9), for the control too",
    )
    parser.add_argument(
        "--learning-rate",
        type=float,
        default=None,
        help="the fine-tuning learning rate (default: fastconv.finetune's, 1e-4)",
    )
    parser.add_argument(
        "--distill",
        type=float,
        default=None,
        metavar="WEIGHT",
        help="learn from the reference's predictions mixed in at this weight "
        "(controlled_finetune's distill), the control too",
    )
    parser.add_argument(
        "--layer-types",
        nargs="+",
        choices=("conv", "dense"),
        default=["conv"],
        help="what convert_model converts (its layer_types): conv, or conv and "
        "dense for LowRankDense on every Dense layer but the classifier",
    )
    parser.add_argument("--train-examples", type=int, default=None)
    parser.add_argument("--test-examples", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument(
        "--jit",
        choices=("default", "on", "off"),
        default="default",
        help="as benchmarks.layers: XLA on JAX, and on TensorFlow only with a GPU",
    )
    parser.add_argument("--out", default="benchmarks/results/tradeoffs")
    parser.add_argument(
        "--report",
        nargs="+",
        metavar="JSON",
        help="regenerate the Markdown and the plots from these result files",
    )
    args = parser.parse_args(argv)
    if args.report:
        for path in report(args.report):
            print(path)
        return 0
    if args.quick:
        args.methods, args.ranks = args.methods[:1], args.ranks[:2]
        args.train_examples = args.train_examples or 5000
        args.test_examples = args.test_examples or 1000
        args.repeats = min(args.repeats, 3)

    refuse_untrained(args.datasets)
    from benchmarks.layers import start_run

    _, jit, env = start_run(args.jit, keep=True)
    for dataset in args.datasets:
        run = run_dataset(dataset, args, env, jit)
        print(markdown(run))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
