"""Benchmark results as files: ``results.json``, ``results.md`` and PNG plots.

Everything here reads the results dictionary that `fastconv.bench.runner`
builds (and ``results.json`` holds), so a table or a plot can be made again
from a saved run: ``python -m fastconv.bench.report results.json`` prints the
Markdown table, ``--plots`` also redraws the PNG files next to it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path

__all__ = [
    "markdown",
    "plot_accuracy_vs_speedup",
    "plot_times",
    "write_all",
    "write_json",
]

JSON_NAME = "results.json"
MD_NAME = "results.md"
ACCURACY_PNG = "accuracy_vs_speedup.png"
TIMES_PNG = "times.png"


def write_json(results: Mapping, path: str | os.PathLike) -> None:
    """Writes ``results`` as indented JSON, atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    tmp.replace(path)


def write_all(results: Mapping, out: str | os.PathLike) -> dict[str, Path]:
    """Writes results.json, results.md and the two plots into ``out``."""
    out = Path(out)
    paths = {
        "json": out / JSON_NAME,
        "markdown": out / MD_NAME,
        "accuracy_plot": out / ACCURACY_PNG,
        "times_plot": out / TIMES_PNG,
    }
    write_json(results, paths["json"])
    paths["markdown"].write_text(markdown(results))
    plot_accuracy_vs_speedup(results, paths["accuracy_plot"])
    plot_times(results, paths["times_plot"])
    return paths


# ------------------------------------------------------------------ markdown
def _num(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.{digits}f}"


def _count(value) -> str:
    if value is None:
        return "—"
    if value >= 1e6:
        return f"{value / 1e6:.2f} M"
    if value >= 1e3:
        return f"{value / 1e3:.1f} k"
    return str(int(value))


def _spread(timing: Mapping | None, scale: float, digits: int) -> str:
    if not timing:
        return "—"
    return (
        f"{timing['median_s'] * scale:.{digits}f} "
        f"({timing['p10_s'] * scale:.{digits}f}–{timing['p90_s'] * scale:.{digits}f})"
    )


def _rows(name: str, entry: Mapping, large: str) -> list[list[str]]:
    summary, vs = entry["summary"], entry["vs_baseline"]
    train = entry.get("train")
    b1, bl = entry["inference"]["1"], entry["inference"][large]
    cells = [
        _count(entry["params"]),
        _num(entry["macs"] / 1e6),
        _num(vs["flop_ratio"]),
        _spread(train["epochs"] if train else None, 1, 2),
        _count(summary["train_examples_per_s"]),
        _num(vs["train_speedup"]),
        _spread(b1, 1e3, 2),
        _spread(bl, 1e3, 1),
        _count(summary["inference_examples_per_s"][large]),
        f"{_num(vs['inference_speedup']['1'])} / "
        f"{_num(vs['inference_speedup'][large])}",
        f"{_num(vs['train_efficiency'])} / {_num(vs['inference_efficiency'][large])}",
    ]
    accuracy = entry["accuracy"]
    base_accuracy = accuracy - vs["accuracy_diff_points"] / 100
    converted = entry.get("converted")
    if converted is None:
        return [
            [name, *cells, _num(100 * accuracy), _signed(vs["accuracy_diff_points"])]
        ]
    before = converted["accuracy_after_conversion"]
    ft = converted["finetune"]
    return [
        [
            f"{name} (as converted)",
            *cells,
            _num(100 * before),
            _signed(100 * (before - base_accuracy)),
        ],
        [
            f"{name} (+{ft['epochs']} ep. fine-tune)",
            *cells,
            _num(100 * accuracy),
            _signed(vs["accuracy_diff_points"]),
        ],
    ]


def _signed(points) -> str:
    return "—" if points is None else f"{points:+.2f}"


def _table(info: Mapping) -> str:
    large = str(info["inference_batch_size"])
    header = [
        "variant",
        "params",
        "MMACs/ex",
        "FLOP ratio",
        "s/epoch (p10–p90)",
        "train ex/s",
        "train speedup",
        "b1 ms (p10–p90)",
        f"b{large} ms (p10–p90)",
        f"b{large} ex/s",
        f"infer speedup b1 / b{large}",
        "efficiency train / infer",
        "accuracy %",
        "Δ acc (points)",
    ]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["--:"] * (len(header) - 1)) + "|",
    ]
    for name, entry in info["variants"].items():
        for row in _rows(name, entry, large):
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _dataset_header(name: str, info: Mapping) -> str:
    return (
        f"## {name}: `{info['model']}`\n\n"
        f"{info['train_examples']:,} of {info['train_available']:,} training "
        f"images, {info['test_examples']:,} of {info['test_available']:,} test "
        f"images; 1 warm-up + {info['epochs']} timed epochs, batch "
        f"{info['batch_size']}, trained round-robin; inference at batch 1 and "
        f"{info['inference_batch_size']}, interleaved; jit_compile "
        f"{info['jit_compile']}."
    )


def _dataset_notes(info: Mapping) -> list[str]:
    notes = []
    for variant, entry in info["variants"].items():
        converted = entry.get("converted")
        if converted:
            ft = converted["finetune"]
            notes.append(
                f"`{variant}`: converted in {converted['convert_s']:.1f} s with "
                f"{converted['options']}; fine-tuned {ft['epochs']} epoch(s) at "
                f"learning rate {ft['learning_rate']:g} in {ft['total_s']:.1f} s "
                "(compilation included). Not trained from scratch, so no training "
                "columns; both rows share the inference times of the fine-tuned "
                "model (same layers)."
            )
    for variant, reason in info["skipped"].items():
        notes.append(f"`{variant}` not run: {reason}.")
    return notes


def _autotune(env: Mapping) -> str:
    if "autotune" not in env:
        return ""
    return ", fastconv autotune " + ("on" if env["autotune"] else "off")


def markdown(results: Mapping) -> str:
    """The Markdown a user pastes in a README: one table per dataset."""
    env = results["environment"]
    versions = ", ".join(
        f"{k} {v}" for k, v in env["versions"].items() if v and k != "fastconv"
    )
    parts = [
        "# fastconv benchmark",
        "",
        f"Suite `{results['config']['suite']}`, {env['date']}, git "
        f"`{env['git_commit']}`. Backend {env['backend']} on {env['device']} "
        f"({env['cpu_count']} CPUs), precision {env['precision']}, distribute "
        f"{env['distribute']} ({env['replicas']} replica(s)){_autotune(env)}. "
        f"{versions}.",
        "",
    ]
    parts += [f"- {note}" for note in results.get("notes", [])]
    for name, info in results["datasets"].items():
        parts += ["", _dataset_header(name, info), "", _table(info), ""]
        parts += [f"- {note}" for note in _dataset_notes(info)]
    parts += [
        "",
        "Times are medians (p10–p90) of raw samples in results.json. Speedup = "
        "baseline time / variant time, FLOP ratio = baseline multiply-adds / the "
        "variant's, efficiency = speedup / FLOP ratio (1: the FLOP saving is all "
        "realised), Δ acc = variant − baseline accuracy, all from this run. See "
        "docs/benchmarks.md.",
        "",
    ]
    return "\n".join(parts)


# --------------------------------------------------------------------- plots
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_accuracy_vs_speedup(results: Mapping, path: str | os.PathLike) -> None:
    """Accuracy against training and inference speedup, one row per dataset."""
    plt = _pyplot()
    names = list(results["datasets"])
    fig, axes = plt.subplots(len(names), 2, figsize=(11, 4 * len(names)), squeeze=False)
    for row, name in zip(axes, names, strict=True):
        info = results["datasets"][name]
        large = str(info["inference_batch_size"])
        for ax, label, speedup in (
            (row[0], "training speedup", lambda vs: vs["train_speedup"]),
            (
                row[1],
                f"inference speedup (batch {large})",
                lambda vs, large=large: vs["inference_speedup"][large],
            ),
        ):
            base = info["variants"]["baseline"]["accuracy"] * 100
            for variant, entry in info["variants"].items():
                x = speedup(entry["vs_baseline"])
                if x is None:
                    continue
                y = entry["accuracy"] * 100
                marker = "s" if entry["kind"] == "converted" else "o"
                ax.scatter([x], [y], marker=marker)
                ax.annotate(variant, (x, y), textcoords="offset points", xytext=(4, 4))
            ax.axvline(1.0, color="grey", lw=0.8, ls="--")
            ax.axhline(base, color="grey", lw=0.8, ls="--")
            ax.set_xlabel(f"{label} vs baseline (x)")
            ax.set_ylabel("test accuracy (%)")
            ax.set_title(f"{name}: accuracy vs {label}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_times(results: Mapping, path: str | os.PathLike) -> None:
    """Bars of per-variant time, median with p10–p90 whiskers."""
    plt = _pyplot()
    names = list(results["datasets"])
    fig, axes = plt.subplots(len(names), 3, figsize=(15, 4 * len(names)), squeeze=False)
    for row, name in zip(axes, names, strict=True):
        info = results["datasets"][name]
        large = str(info["inference_batch_size"])
        panels = (
            (
                "training: seconds per epoch",
                1,
                lambda e: (e["train"] or {}).get("epochs"),
            ),
            ("inference, batch 1: ms", 1e3, lambda e: e["inference"]["1"]),
            (
                f"inference, batch {large}: ms",
                1e3,
                lambda e, large=large: e["inference"][large],
            ),
        )
        for ax, (title, scale, get) in zip(row, panels, strict=True):
            labels, medians, low, high = [], [], [], []
            for variant, entry in info["variants"].items():
                t = get(entry)
                if not t:
                    continue
                labels.append(variant)
                medians.append(t["median_s"] * scale)
                low.append((t["median_s"] - t["p10_s"]) * scale)
                high.append((t["p90_s"] - t["median_s"]) * scale)
            ax.bar(range(len(labels)), medians, yerr=[low, high], capsize=3)
            ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
            ax.set_title(f"{name}: {title}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """``python -m fastconv.bench.report results.json [--plots]``."""
    parser = argparse.ArgumentParser(
        prog="python -m fastconv.bench.report",
        description="Print the Markdown table of a saved benchmark run.",
    )
    parser.add_argument("results", type=Path, help="a results.json")
    parser.add_argument(
        "--plots", action="store_true", help="also redraw the PNG files next to it"
    )
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text())
    sys.stdout.write(markdown(results))
    if args.plots:
        plot_accuracy_vs_speedup(results, args.results.with_name(ACCURACY_PNG))
        plot_times(results, args.results.with_name(TIMES_PNG))
    return 0


if __name__ == "__main__":
    sys.exit(main())
