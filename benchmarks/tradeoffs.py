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
#: The issue's target: at least this inference speedup ...
TARGET_SPEEDUP = 2.0
#: ... at most this many accuracy points below the control.
TARGET_POINTS = 0.5
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
    say: Callable[[str], None] = lambda message: None,
) -> list[dict]:
    """Every method x rank of ``original``: conversion, timing, fine-tuning.

    ``train_data`` and ``test_data`` are ``(x, y)`` arrays, ``x`` ready for
    the model. A conversion that fails is recorded with its error and the
    sweep goes on. Returns one dict per point (see the module docstring).
    """
    import fastconv
    from fastconv.bench.references import controlled_finetune

    x_test, y_test = test_data
    points = []
    for method in methods:
        for rank in ranks:
            point = {"method": method, "rank": rank}
            points.append(point)
            start = time.perf_counter()
            try:
                result = fastconv.convert_model(original, method, rank, progress=False)
            except Exception as exc:
                point["error"] = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
                say(f"{method} rank={rank}: conversion failed: {point['error']}")
                continue
            point["convert_s"] = time.perf_counter() - start
            point["conversion"] = result.report.to_dict()
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
                )
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
    probs = model.predict(x, batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(np.asarray(probs), axis=-1) == y))


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


def meets_target(point: dict) -> bool:
    """>= `TARGET_SPEEDUP` at batch 256 at <= `TARGET_POINTS` below the control."""
    return (
        point["speedups"]["forward_b256"] >= TARGET_SPEEDUP
        and point["summary"]["gap_points"] >= -TARGET_POINTS
    )


def _pm(mean: float, std: float | None, scale: float = 1.0) -> str:
    text = f"{scale * mean:.2f}"
    return text if std is None else f"{text} ± {scale * std:.2f}"


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
        f"`{env['git_commit']}`. Fine-tuning: {config['epochs']} epoch(s), batch "
        f"{config['batch_size']}, on {config['train_examples']} training examples; "
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
    hits = [p for p in _measured(run) if meets_target(p)]
    verdict = (
        ", ".join(f"{p['method']} rank {p['rank']}" for p in hits) + " meet it."
        if hits
        else "no point meets it."
    )
    out += [
        "",
        f"Target: >= {TARGET_SPEEDUP:g}x inference (batch 256) at <= "
        f"{TARGET_POINTS:g} point below the control: {verdict}",
    ]
    return "\n".join(out) + "\n"


def plot(run: dict, out: str | Path) -> None:
    """Gap to the control against the inference speedup at batch 256, the
    Pareto front joined, to ``out`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, marker in zip(METHODS, "osD^", strict=True):
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
    ax.axhline(-TARGET_POINTS, color="r", lw=0.5)
    ax.axvline(TARGET_SPEEDUP, color="r", lw=0.5, label="target")
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
        "warmup": args.warmup,
        "repeats": args.repeats,
        "quick": args.quick,
        "jit": jit,
        "optimizer": "adam",
        "learning_rate": "fastconv.finetune's default",
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

    run["points"] = sweep(
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
        say=say,
    )
    stem.with_suffix(".json").write_text(json.dumps(run, indent=1, default=str))
    write_outputs(run, stem)
    return run


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
        "--quick",
        action="store_true",
        help="the first method and the first two ranks, 5,000 training and "
        "1,000 test examples, 3 timing rounds",
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
