"""Every fastconv layer and implementation against keras.layers.Conv2D.

For each point of a grid (batch, spatial size, channels, kernel size, rank
ratio), builds a ``Conv2D`` and, for CP, Tucker-2, depthwise separable and
factorized (1 x k then k x 1) layers, one layer per concrete implementation
plus one with ``implementation="auto"``; times them interleaved with
``fastconv.timing`` (inference, then a training step: forward and backward),
and writes every raw sample, the environment, each layer's FLOP ratio to
``Conv2D`` and ``"auto"``'s choices to JSON, and a Markdown table.

The implementations named after the layer's structure (``depthwise`` for CP,
``tucker``, ``separable``, ``factorized``) are the plain Keras compositions
(``keras.ops.conv`` / ``depthwise_conv`` in a row): they are the baseline that
the fast implementations must beat.

The issue's grid (batch 1 and 64; spatial 8, 16, 32, 56; channels 32 to 512;
k 3, 5, 7; rank ratios 1/8 to 1/2) has hundreds of points and would take hours
on a 2-core CPU; ``grid()`` is a subsample of 16 points: the reference point
(batch 64, 32x32, 128 -> 128, k 3, rank ratio 1/4), every spatial size and
channel count at k = 3, rank ratio 1/4 for batch 1, five of them for batch 64
(the large ones would take seconds per call), k = 5 and 7 at batch 1, and rank
ratios 1/8 and 1/2 at the reference point. Points whose Conv2D needs more than
``--max-gmacs`` multiply-adds are dropped.

Usage:
    python -m benchmarks.layers --quick          # the reference shape alone
    python -m benchmarks.layers                  # the subsampled grid
    python -m benchmarks.layers --report benchmarks/results/layers-*.json
    KERAS_BACKEND=jax python -m benchmarks.layers --quick
    KERAS_BACKEND=torch python -m benchmarks.layers --quick --allocator default
    python -m benchmarks.layers --quick --precision bfloat16

Unless ``--allocator default`` is given, the run first calls
``fastconv.keep_freed_memory()``: without it JAX and PyTorch get fresh pages
from the OS for every large output, which costs a fast layer more than its
arithmetic (see ``fastconv/kernels/allocator.py``).

``"auto"`` measures on first use; the run uses a fresh autotune cache (a
temporary file) unless ``--cache`` is given, so its choices are made in the run.

``--precision`` sets the Keras dtype policy for the run (float32 unless given):
``bfloat16`` or ``float16`` make the variables, the input and the arithmetic
that type; the result files record it and add it to their name.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REFERENCE = {"batch": 64, "size": 32, "channels": 128, "k": 3, "ratio": 0.25}
#: Measured rounds are raised to about TARGET_S seconds per function, up to this.
MAX_REPEATS = 200
TARGET_S = 1.5
LAYERS = ("CPConv2D", "TuckerConv2D", "DepthwiseSeparableConv2D", "FactorizedConv2D")
#: The dtype policies ``--precision`` accepts; the first is the default.
PRECISIONS = ("float32", "bfloat16", "float16")


def grid() -> list[dict]:
    """The subsampled grid, reference point first."""
    points = [dict(REFERENCE)]
    for batch, size, channels in (
        (1, 8, 32),
        (1, 8, 512),
        (1, 16, 128),
        (1, 32, 128),
        (1, 56, 128),
        (1, 56, 512),
        (64, 8, 128),
        (64, 8, 512),
        (64, 16, 128),
        (64, 32, 32),
        (64, 56, 32),
    ):
        points.append({**REFERENCE, "batch": batch, "size": size, "channels": channels})
    for k in (5, 7):
        points.append({**REFERENCE, "batch": 1, "k": k})
    for ratio in (0.125, 0.5):
        points.append({**REFERENCE, "ratio": ratio})
    return points


def dense_gmacs(p: dict) -> float:
    return p["batch"] * p["size"] ** 2 * p["k"] ** 2 * p["channels"] ** 2 / 1e9


def rank_of(p: dict) -> int:
    """The grid point's rank: its channels times its rank ratio, at least 1."""
    return max(1, round(p["channels"] * p["ratio"]))


def layer_kwargs(p: dict) -> dict[str, dict]:
    """Each benchmarked layer's class name -> its arguments besides filters,
    kernel size and padding, at grid point ``p``."""
    rank = rank_of(p)
    return {
        "CPConv2D": {"rank": rank},
        "TuckerConv2D": {"rank": (rank, rank)},
        "DepthwiseSeparableConv2D": {},
        "FactorizedConv2D": {},
    }


def timed_rounds(fns: dict, *, warmup: int, repeats: int) -> dict:
    """``fastconv.timing.interleaved`` over ``fns``, with at least ``repeats``
    rounds: cheap functions get more (about TARGET_S seconds per function, at
    most MAX_REPEATS), because their times are short and noisy."""
    from fastconv.timing import interleaved

    probe = interleaved(fns, warmup=warmup, repeats=1)
    slowest = max(t.median for t in probe.values())
    rounds = min(MAX_REPEATS, max(repeats, int(TARGET_S / max(slowest, 1e-6))))
    return interleaved(fns, warmup=0, repeats=rounds)


def build_layers(p: dict):
    """name -> (layer, flop ratio) for one grid point; built, not called."""
    import keras

    import fastconv
    from fastconv.cost import conv2d_cost

    c, k = p["channels"], p["k"]
    shape = (p["batch"], p["size"], p["size"], c)
    dense_macs = conv2d_cost(shape[1:], c, k, padding="same").macs
    conv = keras.layers.Conv2D(c, k, padding="same")
    conv.build(shape)
    layers = {"Conv2D": (conv, 1.0)}
    for name, kwargs in layer_kwargs(p).items():
        cls = getattr(fastconv, name)
        for impl in ("auto", *cls.IMPLEMENTATIONS):
            layer = cls(c, k, padding="same", implementation=impl, **kwargs)
            layer.build(shape)
            ratio = dense_macs / layer.cost(shape[1:]).macs
            layers[f"{name}/{impl}"] = (layer, ratio)
    return layers, shape


def run_point(p: dict, *, jit: bool, warmup: int, repeats: int) -> dict:
    import keras

    from fastconv.timing import make_forward, make_grad_step

    dtype = keras.config.dtype_policy().compute_dtype
    result = {"point": p, "dense_gmacs": dense_gmacs(p), "modes": {}}
    for mode, make in (("forward", make_forward), ("train", make_grad_step)):
        layers, shape = build_layers(p)
        x = np.random.default_rng(0).standard_normal(shape).astype("float32")
        x = keras.ops.cast(x, dtype)
        fns = {}
        start = time.perf_counter()
        for name, (layer, _) in layers.items():
            fns[name] = make(layer, x, jit=jit)
            if name.endswith("/auto"):
                fns[name]()  # traces, and so lets "auto" choose, outside the clock
        setup_s = time.perf_counter() - start
        timings = timed_rounds(fns, warmup=warmup, repeats=repeats)
        rows = {}
        for name, (layer, ratio) in layers.items():
            row = {"flop_ratio": ratio, **timings[name].as_dict()}
            if name.endswith("/auto"):
                row["choice"] = sorted(set(layer._auto_choices.values()))
            rows[name] = row
        result["modes"][mode] = {"setup_s": setup_s, "layers": rows}
    return result


def summarise(result: dict) -> list[dict]:
    """Per layer and mode: speedups over Conv2D, efficiency, auto vs best."""
    out = []
    for mode, data in result["modes"].items():
        rows = data["layers"]
        base = rows["Conv2D"]["median_s"]
        for layer in LAYERS:
            impls = {
                n.split("/")[1]: r for n, r in rows.items() if n.startswith(layer + "/")
            }
            speed = {i: base / r["median_s"] for i, r in impls.items()}
            concrete = {i: s for i, s in speed.items() if i != "auto"}
            best = max(concrete, key=concrete.get)
            ratio = impls["auto"]["flop_ratio"]
            out.append(
                {
                    **result["point"],
                    "mode": mode,
                    "layer": layer,
                    "flop_ratio": ratio,
                    "speedups": speed,
                    "auto_choice": impls["auto"].get("choice"),
                    "efficiency_auto": speed["auto"] / ratio,
                    "auto_vs_best": speed["auto"] / concrete[best],
                    "best": best,
                }
            )
    return out


def markdown(results: list[dict], env: dict) -> str:
    lines = [
        f"# fastconv layers vs Conv2D: {env['backend']} on {env['device']}",
        "",
        f"{env['date']}, commit {env['git_commit']}, {env['precision']}; "
        "speedup = Conv2D median / layer median (interleaved, same run); "
        "efficiency = auto's speedup / FLOP ratio; auto/best = auto's speedup over "
        "the best concrete implementation's.",
        "",
        "| batch | size | C | k | ratio | mode | layer | FLOP ratio | speedup by "
        "implementation | auto (choice) | efficiency | auto/best |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        for s in summarise(result):
            impls = ", ".join(
                f"{i} {v:.2f}x" for i, v in s["speedups"].items() if i != "auto"
            )
            choice = "/".join(s["auto_choice"] or [])
            lines.append(
                f"| {s['batch']} | {s['size']} | {s['channels']} | {s['k']} | "
                f"{s['ratio']:g} | {s['mode']} | {s['layer']} | "
                f"{s['flop_ratio']:.1f} | {impls} | {s['speedups']['auto']:.2f}x "
                f"({choice}) | {s['efficiency_auto']:.2f} | "
                f"{s['auto_vs_best']:.2f} |"
            )
    return "\n".join(lines) + "\n"


PLAIN = {
    "CPConv2D": "depthwise",
    "TuckerConv2D": "tucker",
    "DepthwiseSeparableConv2D": "separable",
    "FactorizedConv2D": "factorized",
}
#: The issue's inference targets at the reference shape (TensorFlow).
TARGETS = {
    "CPConv2D": 8.8,
    "TuckerConv2D": 5.0,
    "DepthwiseSeparableConv2D": 5.0,
    "FactorizedConv2D": 1.35,
}


def _run_label(env: dict) -> str:
    if env["backend"] == "torch":
        mode = "eager"
    elif env["backend"] == "jax":
        mode = "XLA" if env.get("jit", True) else "eager"
    else:
        mode = "XLA" if env.get("jit") else "graph, no XLA"
    if env.get("keep_freed_memory") is False:  # recorded since the flag exists
        mode += ", default malloc"
    return f"{env['backend']} ({mode})"


def _point_label(s: dict) -> str:
    size = f"{s['size']}x{s['size']}x{s['channels']}"
    return f"b{s['batch']} {size} k{s['k']} r{s['ratio']:g}"


def _choice_vs_best(s: dict) -> float | None:
    """Speedup of the implementation "auto" chose, run as its own layer, over
    the best one's: the choice's quality, apart from the noise between two
    layer objects timed separately in the same rounds."""
    choice = s.get("auto_choice") or []
    if len(choice) != 1:
        return None
    concrete = {i: v for i, v in s["speedups"].items() if i != "auto"}
    return concrete[choice[0]] / max(concrete.values())


def _median_ci(values, confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free confidence interval of the median of ``values``: the
    order statistics ``j`` and ``n - 1 - j`` with the largest ``j`` for which
    ``Binomial(n, 1/2)`` puts at least ``confidence`` between them."""
    x = sorted(values)
    n = len(x)
    pmf = [math.comb(n, i) / 2**n for i in range(n + 1)]
    j = 0
    while j + 1 <= (n - 1) // 2 and sum(pmf[j + 1 : n - j]) >= confidence:
        j += 1
    return x[j], x[n - 1 - j]


def _paired_speedup_ci(run: dict, s: dict, impl: str = "auto") -> tuple[float, float]:
    """95% confidence interval of the median, over rounds, of ``Conv2D``'s
    time / the layer's in the same round (both ran in every round, in a
    shuffled order): the layer is slower than ``Conv2D`` beyond the run's
    noise when the interval's upper end is below 1."""
    point = {k: s[k] for k in REFERENCE}
    result = next(r for r in run["results"] if r["point"] == point)
    rows = result["modes"][s["mode"]]["layers"]
    base = rows["Conv2D"]["samples_ns"]
    mine = rows[f"{s['layer']}/{impl}"]["samples_ns"]
    return _median_ci([b / m for b, m in zip(base, mine, strict=True)])


def report(paths: list[str]) -> str:
    """Markdown computed from result files: the reference shape, the grid
    statistics and the issue's targets, each number read from the files."""
    runs = [(p, json.loads(Path(p).read_text())) for p in paths]
    out = ["# Layer benchmark report", ""]
    out.append(
        "Generated by `python benchmarks/layers.py --report` from: "
        + ", ".join(
            f"`{Path(p).name}` (commit {r['environment']['git_commit']})"
            for p, r in runs
        )
        + ". Speedup = `Conv2D` median / layer median, interleaved in one run; "
        'efficiency = `"auto"`\'s speedup / FLOP ratio; auto / plain = '
        "`\"auto\"`'s speedup over the plain Keras composition's."
    )
    out += [
        "",
        "## Reference shape (batch 64, 32x32, 128 -> 128, 3x3, rank ratio 1/4)",
        "",
        "| run | mode | layer | FLOP ratio | plain Keras | fastest other | auto "
        "(choice) | efficiency | auto / plain |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    ref_rows = {}
    for _, run in runs:
        label = _run_label(run["environment"])
        for s in run["summary"]:
            point = {k: s[k] for k in REFERENCE}
            if point != REFERENCE:
                continue
            ref_rows[(label, s["mode"], s["layer"])] = s
            sp = s["speedups"]
            plain = PLAIN[s["layer"]]
            others = {i: v for i, v in sp.items() if i not in ("auto", plain)}
            fast = max(others, key=others.get)
            choice = "/".join(s["auto_choice"] or [])
            out.append(
                f"| {label} | {s['mode']} | {s['layer']} | {s['flop_ratio']:.1f} | "
                f"{sp[plain]:.2f}x | {fast} {others[fast]:.2f}x | "
                f"{sp['auto']:.2f}x ({choice}) | {s['efficiency_auto']:.2f} | "
                f"{sp['auto'] / sp[plain]:.2f} |"
            )
    out += ["", "## Across the grid", ""]
    for path, run in runs:
        summary = run["summary"]
        points = {_point_label(s) for s in summary}
        if len(points) < 2:
            continue
        label = _run_label(run["environment"])
        out += [f"### {label}: `{Path(path).name}`, {len(points)} points", ""]
        for mode in ("forward", "train"):
            rows = [s for s in summary if s["mode"] == mode]
            ratios = sorted(s["auto_vs_best"] for s in rows)
            worst = min(rows, key=lambda s: s["auto_vs_best"])
            slower = [s for s in rows if s["speedups"]["auto"] < 1.0]
            ok = sum(r >= 0.95 for r in ratios)
            chosen = [_choice_vs_best(s) for s in rows]
            chosen = [c for c in chosen if c is not None]
            out.append(
                f'- {mode}: `"auto"` / best implementation: median '
                f"{float(np.median(ratios)):.2f}, at least 0.95 at {ok} of "
                f"{len(rows)} layer-points, worst {worst['auto_vs_best']:.2f} "
                f"({worst['layer']}, {_point_label(worst)}). The implementation "
                '`"auto"` chose, timed as its own layer in the same run, was the '
                f"best at {sum(c == 1.0 for c in chosen)} of {len(chosen)} and "
                f"at least 0.95x of the best at {sum(c >= 0.95 for c in chosen)} "
                f'(worst {min(chosen):.2f}). `"auto"` slower '
                f"than `Conv2D` at {len(slower)} of {len(rows)}"
                + (
                    ": "
                    + "; ".join(
                        f"{s['layer']} {_point_label(s)} {s['speedups']['auto']:.2f}x"
                        for s in slower
                    )
                    if slower
                    else ""
                )
                + "."
            )
            wins = []
            for layer in LAYERS:
                counts: dict[str, int] = {}
                for s in rows:
                    if s["layer"] == layer:
                        counts[s["best"]] = counts.get(s["best"], 0) + 1
                wins.append(
                    f"{layer} "
                    + ", ".join(
                        f"`{i}` {n}"
                        for i, n in sorted(counts.items(), key=lambda kv: -kv[1])
                    )
                )
            out.append(f"  Fastest implementation (points won): {'; '.join(wins)}.")
            best_eff = max(rows, key=lambda s: s["efficiency_auto"])
            out.append(
                f"  Highest efficiency: {best_eff['layer']} at "
                f"{_point_label(best_eff)}, {best_eff['speedups']['auto']:.2f}x "
                f"for a FLOP ratio of {best_eff['flop_ratio']:.1f} "
                f"({best_eff['efficiency_auto']:.2f})."
            )
        out.append("")
    out += [
        "## The issue's targets",
        "",
        "| target | run | measured | met |",
        "|---|---|---|---|",
    ]
    for (label, mode, layer), s in ref_rows.items():
        if label.startswith("tensorflow") and mode == "forward":
            goal = TARGETS[layer]
            got = s["speedups"]["auto"]
            out.append(
                f"| {layer} inference >= {goal}x | {label} | {got:.2f}x "
                f"(fastest concrete layer {s['speedups'][s['best']]:.2f}x, "
                f"{s['best']}) | "
                f"{'yes' if got >= goal else 'no'} |"
            )
    for (label, mode, layer), s in ref_rows.items():
        if mode == "train":
            gain = s["speedups"]["auto"] / s["speedups"][PLAIN[layer]]
            out.append(
                f"| {layer} training step >= 1.5x the plain composition's | "
                f"{label} | {gain:.2f} | {'yes' if gain >= 1.5 else 'no'} |"
            )
    for (label, mode, layer), s in ref_rows.items():
        if layer == "CPConv2D" and not label.startswith("tensorflow"):
            got = s["speedups"]["auto"]
            out.append(
                f"| CPConv2D >= 4x ({mode}) | {label} | {got:.2f}x | "
                f"{'yes' if got >= 4 else 'no'} |"
            )
    for path, run in runs:
        label = _run_label(run["environment"])
        rows = run["summary"]
        if not label.startswith("tensorflow"):
            slow = [s for s in rows if s["speedups"]["auto"] < 1.0]
            beyond = [s for s in rows if s["speedups"]["auto"] < 0.95]
            sure = [s for s in slow if _paired_speedup_ci(run, s)[1] < 1.0]
            verdict = "yes" if not slow else "within 5% noise" if not beyond else "no"
            out.append(
                f"| no layer slower than dense with auto | {label} "
                f"(`{Path(path).name}`) | lowest "
                f"{min(s['speedups']['auto'] for s in rows):.2f}x; "
                f"{len(slow)} of {len(rows)} below 1.0x ({len(sure)} with the "
                "95% interval of the paired per-round ratio below 1.0), "
                f"{len(beyond)} below 0.95x | {verdict} |"
            )
        worst = min(s["auto_vs_best"] for s in rows)
        out.append(
            f"| auto >= 0.95x of the best implementation | {label} "
            f"(`{Path(path).name}`) | worst {worst:.2f} | "
            f"{'yes' if worst >= 0.95 else 'no'} |"
        )
    return "\n".join(out) + "\n"


def plot(paths: list[str], out: str) -> None:
    """Efficiency vs FLOP ratio, one panel per result file and mode, to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [json.loads(Path(p).read_text()) for p in paths]
    fig, axes = plt.subplots(
        len(runs), 2, figsize=(11, 4 * len(runs)), squeeze=False, sharex=True
    )
    markers = dict(zip(LAYERS, "osD^", strict=True))
    for row, run in zip(axes, runs, strict=True):
        env = run["environment"]
        for ax, mode in zip(row, ("forward", "train"), strict=True):
            for layer in LAYERS:
                rows = [
                    s
                    for s in run["summary"]
                    if s["mode"] == mode and s["layer"] == layer
                ]
                ratio = [s["flop_ratio"] for s in rows]
                ax.scatter(
                    ratio,
                    [s["efficiency_auto"] for s in rows],
                    marker=markers[layer],
                    label=f"{layer} auto",
                )
                base = PLAIN[layer]
                ax.scatter(
                    ratio,
                    [s["speedups"][base] / s["flop_ratio"] for s in rows],
                    marker=markers[layer],
                    facecolors="none",
                    edgecolors="gray",
                    label=f"{layer} plain Keras ({base})",
                )
            ax.axhline(1.0, color="k", lw=0.5)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("FLOP ratio Conv2D / layer")
            ax.set_ylabel("efficiency = speedup / FLOP ratio")
            ax.set_title(f"{_run_label(env)}, {env['device']}: {mode}")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def start_run(
    jit: str, keep: bool, cache: str | None = None, precision: str = "float32"
):
    """What a measuring run does first: ``keep_freed_memory()`` if ``keep``,
    a fresh autotune cache unless ``cache`` names one, the Keras dtype policy
    ``precision``, and ``jit`` ("on", "off" or "default": XLA on JAX, and on
    TensorFlow only with a GPU, as Keras's ``fit``/``predict`` would) resolved.
    Returns the backend's name, the jit flag and
    ``fastconv.timing.environment()`` with both settings."""
    from fastconv.kernels.allocator import keep_freed_memory

    kept = keep and keep_freed_memory()
    os.environ["FASTCONV_AUTOTUNE_CACHE"] = cache or os.path.join(
        tempfile.mkdtemp(prefix="fastconv-bench-"), "autotune.json"
    )
    import keras

    from fastconv.timing import default_jit, environment

    keras.config.set_dtype_policy(precision)
    backend = keras.backend.backend()
    on = default_jit() if jit == "default" else jit == "on"
    env = environment()
    env["jit"] = on
    env["keep_freed_memory"] = kept
    return backend, on, env


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="the reference shape alone"
    )
    parser.add_argument(
        "--jit",
        choices=("default", "on", "off"),
        default="default",
        help="XLA on TensorFlow; default: as Keras's fit/predict "
        "would (off on a CPU-only machine, on with a GPU)",
    )
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--repeats",
        type=int,
        default=5,
        help="measured rounds at least (more for cheap points)",
    )
    parser.add_argument(
        "--max-gmacs",
        type=float,
        default=12.0,
        help="skip grid points whose Conv2D needs more multiply-adds",
    )
    parser.add_argument(
        "--allocator",
        choices=("keep", "default"),
        default="keep",
        help="keep: call fastconv.keep_freed_memory() first (recorded in the "
        "results), so that JAX and PyTorch do not pay for fresh pages on every "
        "call; default: leave the C library's malloc as it is",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=PRECISIONS[0],
        help="Keras dtype policy of the layers and their input (default float32)",
    )
    parser.add_argument("--cache", help="autotune cache file (default: a fresh one)")
    parser.add_argument(
        "--out",
        default="benchmarks/results",
        help="folder for layers-<backend>-<tag>.json/.md",
    )
    parser.add_argument(
        "--tag",
        default=None,
        help="file name tag (default: quick or grid, and the jit)",
    )
    parser.add_argument(
        "--plot",
        nargs="+",
        metavar="JSON",
        help="plot efficiency vs FLOP ratio from these result "
        "files instead of measuring",
    )
    parser.add_argument(
        "--plot-out", default="benchmarks/results/layers-efficiency.png"
    )
    parser.add_argument(
        "--report",
        nargs="+",
        metavar="JSON",
        help="write a Markdown report (reference shape, grid statistics, the "
        "issue's targets) computed from these result files instead of measuring",
    )
    parser.add_argument("--report-out", default="benchmarks/results/layers-report.md")
    args = parser.parse_args(argv)
    if args.plot:
        plot(args.plot, args.plot_out)
        return 0
    if args.report:
        text = report(args.report)
        Path(args.report_out).write_text(text)
        print(text)
        return 0

    backend, jit, env = start_run(
        args.jit, args.allocator == "keep", args.cache, args.precision
    )
    points = (
        [dict(REFERENCE)]
        if args.quick
        else [p for p in grid() if dense_gmacs(p) <= args.max_gmacs]
    )
    tag = args.tag or ("quick" if args.quick else "grid")
    if backend == "tensorflow":
        tag += "-xla" if jit else "-graph"
    if args.precision != PRECISIONS[0]:
        tag += f"-{args.precision}"
    stem = Path(args.out) / f"layers-{backend}-{tag}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    results = []
    for i, p in enumerate(points):
        start = time.perf_counter()
        results.append(run_point(p, jit=jit, warmup=args.warmup, repeats=args.repeats))
        print(
            f"[{i + 1}/{len(points)}] {p} {time.perf_counter() - start:.0f} s",
            file=sys.stderr,
            flush=True,
        )
        payload = {
            "environment": env,
            "grid_subsampled": not args.quick,
            "warmup": args.warmup,
            "repeats": args.repeats,
            "results": results,
            "summary": [s for r in results for s in summarise(r)],
        }
        stem.with_suffix(".json").write_text(json.dumps(payload, indent=1))
        stem.with_suffix(".md").write_text(markdown(results, env))
    print(stem.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
