"""What `convert_model` did, layer by layer: `ConversionReport`.

One `LayerReport` row per 2-D convolution of the model (converted or not), with
the method and ranks, parameters and multiply-adds before and after, the
kernel's reconstruction error, the output error on the calibration batch, the
measured forward times and the decision. ``str(report)`` is a table;
``to_dict()`` and ``to_json(path)`` keep everything, raw timing samples
included.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence

from fastconv._validation import is_int_at_least, is_number

__all__ = ["ConversionReport", "LayerReport"]


@dataclasses.dataclass
class LayerReport:
    """One convolution of the model and what happened to it.

    Attributes:
        name: the layer's name in the original model.
        path: the names of the models it sits in, outermost first, joined by
            ``/`` (``""`` for a layer of the top-level model).
        type: the original layer's class name.
        calls: how many times the model calls it (more than 1 for a shared layer).
        input_shape: the input shape of its first call, batch axis first (sizes
            from the calibration batch when the graph leaves them unknown).
        converted: whether the new model has a replacement for it.
        decision: why it was or was not converted, in words.
        method: the decomposition method used or tried, or None.
        rank: the resolved rank (int, or ``[R_in, R_out]`` for Tucker), or None.
        new_name: the replacement's name, or None.
        new_type: the replacement's class name, or None.
        params_before: parameters of the original (bias included).
        params_after: parameters of the replacement, or None.
        macs_before: multiply-adds per example of the first call, or None when
            the input size is unknown.
        macs_after: the same for the replacement.
        kernel_error: ``||K - K_hat||_F / ||K||_F`` of the kernel.
        output_error: relative error of the replacement's output against the
            original's, on this layer's inputs from the calibration batch.
        time_before: forward-time summary of the original (seconds; median,
            p10, p90, min, max, n) and its raw samples, when measured.
        time_after: the same for the replacement.
        speedup: ``time_before.median / time_after.median``, when measured.
        candidates: for ``method="auto"``, every method tried.
    """

    name: str
    path: str
    type: str
    calls: int
    input_shape: tuple | None
    converted: bool = False
    decision: str = ""
    method: str | None = None
    rank: int | tuple | None = None
    new_name: str | None = None
    new_type: str | None = None
    params_before: int | None = None
    params_after: int | None = None
    macs_before: int | None = None
    macs_after: int | None = None
    kernel_error: float | None = None
    output_error: float | None = None
    time_before: dict | None = None
    time_after: dict | None = None
    speedup: float | None = None
    candidates: tuple = ()

    @property
    def full_name(self) -> str:
        """``path/name``, or the name for a top-level layer."""
        return f"{self.path}/{self.name}" if self.path else self.name

    def to_dict(self) -> dict:
        """The row as plain JSON-ready values."""
        data = dataclasses.asdict(self)
        data["input_shape"] = _listify(self.input_shape)
        data["rank"] = _listify(self.rank)
        data["candidates"] = [
            {key: _listify(value) for key, value in c.items()} for c in self.candidates
        ]
        return data


def _real(value) -> bool:
    """Whether ``value`` is a real number or None (an error not measured)."""
    return value is None or is_number(value)


def _listify(value):
    if isinstance(value, tuple | list):
        return [_listify(v) for v in value]
    return value


def _count(value) -> str:
    if value is None:
        return "?"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.3g}{unit}"
    return str(value)


def _ratio(before, after) -> str:
    if before is None or after is None or after == 0:
        return ""
    return f" ({before / after:.2f}x)"


def _error(value) -> str:
    return "" if value is None else f"{value:.3g}"


def _rank(value) -> str:
    if value is None:
        return ""
    if isinstance(value, tuple | list):
        return ",".join(str(v) for v in value)
    return str(value)


@dataclasses.dataclass
class ConversionReport:
    """Everything `convert_model` measured and decided.

    Attributes:
        rows: one `LayerReport` per 2-D convolution, in graph order.
        settings: the arguments of the conversion (method, rank, skip_first,
            min_speedup, batch_size, ...).
        params_before: parameters of the whole original model.
        params_after: parameters of the whole new model.
        output_error: per model output, the relative error of the new model's
            output against the original's on the calibration batch, or None.
        environment: backend, device, versions and git commit
            (`fastconv.timing.environment`).
        search: with ``data=``, what the search measured, chose, predicted and
            achieved (`fastconv.convert.search.SearchResult.to_dict`), or None.
        search_summary: the search's prediction against what was achieved, in
            words, or None.
        advice: what to do next when converted layers have large errors (the
            `ConversionAccuracyWarning`'s text), or None.
        folded_batchnorm: with ``fold_batchnorm=True``, the ``(convolution,
            batch normalization)`` name pairs folded before converting
            (`fastconv.fold_batchnorm`), or None.
        whole_model: with ``min_speedup``, the whole-model check
            (`fastconv.convert.whole_model.check`): its threshold, each
            round's replaced layers and measured speedup, the layers reverted
            and the final speedup (None when every replacement was reverted);
            or None.
    """

    rows: list[LayerReport]
    settings: dict
    params_before: int
    params_after: int
    output_error: list[float] | None = None
    environment: dict = dataclasses.field(default_factory=dict)
    search: dict | None = None
    search_summary: str | None = None
    advice: str | None = None
    folded_batchnorm: list[tuple[str, str]] | None = None
    whole_model: dict | None = None

    def __post_init__(self):
        problems = {
            "rows": (
                isinstance(self.rows, list | tuple)
                and all(isinstance(row, LayerReport) for row in self.rows),
                "a list of LayerReport",
            ),
            "settings": (isinstance(self.settings, dict), "a dict"),
            "params_before": (is_int_at_least(self.params_before, 0), "an int >= 0"),
            "params_after": (is_int_at_least(self.params_after, 0), "an int >= 0"),
            "output_error": (
                self.output_error is None
                or (
                    isinstance(self.output_error, list | tuple)
                    and all(_real(v) for v in self.output_error)
                ),
                "None or a list of numbers",
            ),
            "environment": (isinstance(self.environment, dict), "a dict"),
            "search": (isinstance(self.search, dict | None), "None or a dict"),
            "whole_model": (
                isinstance(self.whole_model, dict | None),
                "None or a dict",
            ),
        }
        for name in ("search_summary", "advice"):
            problems[name] = (
                isinstance(getattr(self, name), str | None),
                "None or a str",
            )
        for name, (ok, expected) in problems.items():
            if not ok:
                raise ValueError(
                    f"ConversionReport: {name} must be {expected}, received "
                    f"{name}={getattr(self, name)!r}"
                )

    @property
    def converted(self) -> list[LayerReport]:
        """The rows of the layers that were replaced."""
        return [row for row in self.rows if row.converted]

    def __getitem__(self, name: str) -> LayerReport:
        """The row of the layer with this name (or ``path/name``)."""
        for row in self.rows:
            if name in (row.name, row.full_name):
                return row
        raise KeyError(
            f"no convolution named {name!r} in the report; its layers are "
            f"{[row.full_name for row in self.rows]}"
        )

    def to_dict(self) -> dict:
        """The whole report as plain JSON-ready values."""
        return {
            "settings": {k: _listify(v) for k, v in self.settings.items()},
            "params_before": self.params_before,
            "params_after": self.params_after,
            "output_error": self.output_error,
            "layers": [row.to_dict() for row in self.rows],
            "search": self.search,
            "advice": self.advice,
            "folded_batchnorm": _listify(self.folded_batchnorm),
            "whole_model": self.whole_model,
            "environment": self.environment,
        }

    def to_json(self, path: str | os.PathLike | None = None, *, indent: int = 2) -> str:
        """The report as JSON text, also written to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=indent, default=str)
        if path is not None:
            with open(path, "w", encoding="utf-8") as file:
                file.write(text + "\n")
        return text

    def table(self) -> str:
        """The per-layer table that ``str(report)`` shows."""
        timed = any(row.speedup is not None for row in self.rows)
        calibrated = any(row.output_error is not None for row in self.rows)
        header = ["layer", "method", "rank", "params", "MACs", "kernel err"]
        if calibrated:
            header.append("output err")
        if timed:
            header.append("speedup")
        header.append("decision")
        lines = []
        for row in self.rows:
            method = row.method or ""
            if row.new_type and row.converted:
                method = f"{method} ({row.new_type})"
            params = _count(row.params_before)
            macs = _count(row.macs_before)
            if row.params_after is not None:
                params += f" -> {_count(row.params_after)}"
                params += _ratio(row.params_before, row.params_after)
                macs += f" -> {_count(row.macs_after)}"
                macs += _ratio(row.macs_before, row.macs_after)
            cells = [
                row.full_name + (f" (x{row.calls})" if row.calls > 1 else ""),
                method,
                _rank(row.rank),
                params,
                macs,
                _error(row.kernel_error),
            ]
            if calibrated:
                cells.append(_error(row.output_error))
            if timed:
                cells.append("" if row.speedup is None else f"{row.speedup:.2f}x")
            cells.append(row.decision)
            lines.append(cells)
        return _format_table(header, lines)

    def __str__(self) -> str:
        settings = ", ".join(
            f"{key}={value!r}"
            for key, value in self.settings.items()
            if key in ("method", "rank") or value not in (None, {}, ())
        )
        done = len(self.converted)
        dense = sum(row.type in ("Dense", "LowRankDense") for row in self.rows)
        kinds = (
            "convolutions"
            if not dense
            else ("Dense layers" if dense == len(self.rows) else "layers")
        )
        parts = [
            f"fastconv.convert_model: {done} of {len(self.rows)} {kinds} "
            f"converted ({settings})",
            self.table(),
            f"model parameters: {self.params_before:,} -> {self.params_after:,}"
            + _ratio(self.params_before, self.params_after),
        ]
        if self.output_error is not None:
            errors = ", ".join(f"{e:.3g}" for e in self.output_error)
            parts.append(
                f"model output relative error on the calibration batch: {errors}"
            )
        if any(row.speedup is not None for row in self.rows):
            env = self.environment
            parts.append(
                "speedup: forward time of the original layer / the replacement, "
                "medians of interleaved runs at batch "
                f"{self.settings.get('batch_size')} on {env.get('backend', '?')}, "
                f"{env.get('device', '?')}"
            )
        if self.whole_model is not None:
            parts.append(_whole_model_line(self.whole_model))
        if self.folded_batchnorm:
            pairs = ", ".join(f"{bn} into {conv}" for conv, bn in self.folded_batchnorm)
            parts.append(f"batch normalization folded first: {pairs}")
        if self.search_summary is not None:
            parts.append(self.search_summary)
        if self.advice is not None:
            parts.append(self.advice)
        return "\n".join(parts)


def _format_table(header: Sequence[str], lines: Sequence[Sequence[str]]) -> str:
    widths = [
        max(len(str(cells[i])) for cells in [header, *lines])
        for i in range(len(header))
    ]

    def render(cells):
        return "  ".join(
            str(c).ljust(w) for c, w in zip(cells, widths, strict=True)
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([render(header), rule, *(render(cells) for cells in lines)])


def _whole_model_line(record: dict) -> str:
    """The whole-model check in words."""
    rounds = "; ".join(
        f"{r['replaced']} replaced: {r['speedup']:.2f}x" for r in record["rounds"]
    )
    line = (
        f"whole-model check (not slower than {record['threshold']:g}x the "
        f"original, batch {record['batch_size']}): {rounds or 'nothing replaced'}"
    )
    if record["reverted"]:
        line += f"; {len(record['reverted'])} layer(s) put back"
    if record["speedup"] is None and record["rounds"]:
        line += "; every replacement put back, the new model is a copy"
    return line
