"""The profile as a terminal table, a JSON file and a PNG bar chart.

Every function here takes the JSON form of a profile (``ProfileResult.as_dict()``
or ``load_json(path)``), so a saved profile can be printed and drawn again
without the model.

Example:
    >>> from fastconv.profile import report
    >>> data = report.load_json("profile.json")  # doctest: +SKIP
    >>> print(report.format_table(data))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

__all__ = ["format_table", "format_suggestions", "write_json", "load_json", "plot"]


def _count(value: float) -> str:
    """1234 -> '1.2K', 12345678 -> '12.3M'."""
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= limit:
            return f"{value / limit:.1f}{suffix}"
    return f"{value:.0f}"


def _bytes(value: float) -> str:
    for limit, suffix in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if value >= limit:
            return f"{value / limit:.1f} {suffix}"
    return f"{value:.0f} B"


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.2f}"


def _pct(share: float) -> str:
    return f"{share * 100:.1f}"


def _shape(shape) -> str:
    return "x".join(str(v) for v in shape[1:]) if len(shape) > 1 else "-"


def format_suggestions(suggestions) -> str:
    """The closing lines: one per ``Conv2D``, best replacement first."""
    return "\n".join(s["line"] for s in suggestions)


def format_table(data: Mapping) -> str:
    """The terminal table of a profile (its JSON form), footer included."""
    env = data.get("environment", {})
    settings = data.get("settings", {})
    train = data["mode"] == "train"
    head = (
        f"fastconv profile: {data['model']}, {data['mode']} mode, batch "
        f"{data['batch_size']}; backend {env.get('backend')}, {env.get('device')}; "
        f"medians of {settings.get('repeats')} interleaved runs after "
        f"{settings.get('warmup')} warm-up"
        + ("" if settings.get("jit", True) else ", no jit")
    )
    rows = data["layers"]
    width = max([len("layer")] + [len(r["path"]) for r in rows]) + 2
    kinds = max([len("type")] + [len(r["class_name"]) for r in rows]) + 2
    columns = [
        ("output", 12),
        ("params", 9),
        ("MACs/ex", 9),
        ("act.mem", 11),
        ("fwd ms", 9),
    ]
    if train:
        columns.append(("bwd ms", 9))
    columns += [("time %", 8), ("param %", 8), ("MAC %", 7), ("MAC/B", 7)]
    header = f"{'layer':<{width}}{'type':<{kinds}}" + "".join(
        f"{name:>{w}}" for name, w in columns
    )
    lines = [head, header, "-" * len(header)]
    unmodelled = []
    notes = []
    for r in rows:
        macs = _count(r["macs_per_example"])
        if not r["macs_modelled"]:
            macs += "*"
            unmodelled.append(r["class_name"])
        values = [
            _shape(r["output_shape"]),
            _count(r["params"]),
            macs,
            _bytes(r["activation_bytes"]),
            _ms(r["forward_s"]),
        ]
        if train:
            values.append(_ms(r["backward_s"]))
        values += [
            _pct(r["time_share"]),
            _pct(r["params_share"]),
            _pct(r["macs_share"]),
            f"{r['arithmetic_intensity']:.1f}",
        ]
        lines.append(
            f"{r['path']:<{width}}{r['class_name']:<{kinds}}"
            + "".join(f"{v:>{w}}" for v, (_, w) in zip(values, columns, strict=True))
        )
        if r["note"]:
            notes.append(f"  {r['path']}: {r['note']}")
    total = data["total"]
    lines.append("-" * len(header))
    what = "forward + backward" if train else "forward"
    lines.append(
        f"total: {total['params']:,} parameters, {total['macs_per_example']:,} "
        "multiply-adds per example"
    )
    lines.append(
        f"sum of the per-layer times ({what}): "
        f"{_ms(total['sum_of_layers_s'])} ms per batch"
    )
    if total["model_s"] is not None:
        gap = total["gap_s"]
        lines.append(
            f"whole model, measured the same way:   {_ms(total['model_s'])} ms per "
            f"batch; gap {gap * 1e3:+.2f} ms ({total['gap_fraction'] * 100:+.0f}% "
            "of the whole model)"
        )
        lines.append(
            "  gap > 0: time spent outside the layers run alone (loss, glue between "
            "ops); gap < 0: the whole model fuses or overlaps work that the "
            "layers alone cannot"
        )
    lines.append(
        "MACs/ex: multiply-adds per example; act.mem: output size at this batch; "
        "MAC/B: multiply-adds per byte moved (inputs + weights + outputs), low = "
        "memory-bound"
    )
    if train:
        lines.append(
            "bwd ms = median(forward + backward) - median(forward); time % is the "
            "share of forward + backward"
        )
    if unmodelled:
        lines.append(
            "* multiply-adds not modelled for "
            + ", ".join(sorted(set(unmodelled)))
            + " (counted as 0)"
        )
    if notes:
        lines.append("notes:")
        lines.extend(notes)
    suggestions = data.get("suggestions") or []
    if suggestions:
        lines.append("")
        lines.append("suggestions (fast layers at this layer's input shape):")
        lines.append(format_suggestions(suggestions))
    return "\n".join(lines)


def write_json(data: Mapping, path) -> None:
    """Write a profile's JSON form to ``path`` (parent folders created)."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.write("\n")


def load_json(path) -> dict:
    """Read a profile written by ``write_json``.

    Raises:
        ValueError: if the file is not a fastconv profile.
    """
    with open(os.fspath(path), encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict) or data.get("kind") != "fastconv.profile":
        raise ValueError(
            f"load_json: {os.fspath(path)!r} is not a fastconv profile (no "
            "'kind': 'fastconv.profile')"
        )
    return data


def plot(data: Mapping, path, *, title: str | None = None) -> None:
    """Draw time share vs parameter share vs multiply-add share per layer.

    Uses Matplotlib's Agg canvas directly, so it changes no global backend and
    needs no display.

    Args:
        data: a profile's JSON form.
        path: the PNG to write (parent folders created).
        title: the chart title; default names the model, mode and batch size.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = data["layers"]
    names = [r["path"] for r in rows]
    series = [
        ("measured time", [r["time_share"] * 100 for r in rows], "#d62728"),
        ("parameters", [r["params_share"] * 100 for r in rows], "#1f77b4"),
        ("multiply-adds", [r["macs_share"] * 100 for r in rows], "#7f7f7f"),
    ]
    height = 1.6 + 0.5 * len(rows)
    fig = Figure(figsize=(8, height), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    bar = 0.8 / len(series)
    for k, (label, values, color) in enumerate(series):
        ys = [i + (k - 1) * bar for i in range(len(rows))]
        ax.barh(ys, values, height=bar, label=label, color=color)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(names)
    ax.invert_yaxis()
    ax.set_xlabel("share of the model (%)")
    what = "forward + backward" if data["mode"] == "train" else "forward"
    env = data.get("environment", {})
    ax.set_title(
        title
        or (
            f"{data['model']}: parameters are not cost\n"
            f"{what} time, batch {data['batch_size']}, {env.get('backend')} on "
            f"{env.get('device')}"
        ),
        fontsize=10,
    )
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, format="png")
