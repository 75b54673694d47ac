"""How much each convolution can take: `sensitivity`.

For every convolution that `convert_model` would convert by default, and for
every rank asked, the model is converted with *only that layer* replaced
(``convert_model(model, layers=[name], method=..., rank=...)``, which never
touches the original) and its accuracy measured on the data given; the layer's
replacement is timed against the original on this device, interleaved, with the
measurement ``convert_model(..., min_speedup=...)`` makes. Layers where the
accuracy drops little and the speedup is large are the ones to convert first.

The result, `SensitivityResult`, has one row per layer and rank, a Markdown
``table()``, ``to_json(path)`` (and `SensitivityResult.from_json`) and
``plot(path)``: accuracy drop against speedup, one line per layer.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import warnings
from collections.abc import Sequence

import keras
import numpy as np

from fastconv import timing
from fastconv._validation import is_int_at_least, is_number
from fastconv.convert.convert_model import (
    ConversionAccuracyWarning,
    _check_layer_types,
    _check_model,
    _plan,
    _time,
    _walk,
    convert_model,
)
from fastconv.convert.decompose import METHODS, _option_names

__all__ = ["DEFAULT_RANKS", "SensitivityResult", "SensitivityRow", "sensitivity"]

#: The ranks `sensitivity` tries when none are given: fractions of the
#: original layer's parameters.
DEFAULT_RANKS = (0.1, 0.25, 0.5)


def _refuse(owner: str, name: str, expected: str, value) -> None:
    raise ValueError(f"{owner}: {name} must be {expected}, received {name}={value!r}")


def _check_fraction(owner: str, name: str, value, low: float) -> None:
    """Refuses ``value`` unless it is a number in ``[low, 1]``."""
    if not (is_number(value) and low <= value <= 1):
        _refuse(owner, name, f"a number in [{low:g}, 1]", value)


@dataclasses.dataclass
class SensitivityRow:
    """One layer converted alone at one rank.

    Attributes:
        layer: the layer's name (``model/layer`` inside a nested model).
        rank: the rank asked for, as given.
        resolved_rank: the rank it resolved to (an int, or ``[R_in, R_out]``
            for Tucker).
        params_before: the original layer's parameters.
        params: the replacement's parameters.
        macs_before: the original layer's multiply-adds per example, or None
            when its input size is unknown.
        macs: the replacement's, likewise.
        accuracy: the model's accuracy on the data with only this layer
            converted, in [0, 1].
        accuracy_drop: the original model's accuracy minus ``accuracy``.
        speedup: the original layer's median forward time over the
            replacement's (at its fastest implementation), or None when speed
            was not measured.
        interval: ``(low, high)`` spread of the speedup: the original's 10th
            percentile over the replacement's 90th, and the other way round;
            None when not measured.
        implementation: the replacement's fastest implementation, when timed.
    """

    layer: str
    rank: object
    resolved_rank: object
    params_before: int
    params: int
    macs_before: int | None
    macs: int | None
    accuracy: float
    accuracy_drop: float
    speedup: float | None = None
    interval: tuple[float, float] | None = None
    implementation: str | None = None

    def __post_init__(self):
        owner = "SensitivityRow"
        if not isinstance(self.layer, str) or not self.layer:
            _refuse(owner, "layer", "a non-empty str", self.layer)
        for name in ("params_before", "params", "macs_before", "macs"):
            value = getattr(self, name)
            if not (value is None and name.startswith("macs")) and not (
                is_int_at_least(value, 0)
            ):
                _refuse(owner, name, "an int >= 0", value)
        _check_fraction(owner, "accuracy", self.accuracy, 0.0)
        _check_fraction(owner, "accuracy_drop", self.accuracy_drop, -1.0)
        if self.speedup is not None and not (
            is_number(self.speedup) and 0 < self.speedup < math.inf
        ):
            _refuse(owner, "speedup", "None or a finite number > 0", self.speedup)
        if self.interval is not None and not (
            isinstance(self.interval, (tuple, list))
            and len(self.interval) == 2
            and all(is_number(v) and 0 < v < math.inf for v in self.interval)
        ):
            _refuse(owner, "interval", "None or a pair of numbers > 0", self.interval)
        if self.implementation is not None and not isinstance(self.implementation, str):
            _refuse(owner, "implementation", "None or a str", self.implementation)

    def to_dict(self) -> dict:
        """The row as plain JSON-ready values."""
        data = dataclasses.asdict(self)
        for key in ("rank", "resolved_rank", "interval"):
            if isinstance(data[key], tuple):
                data[key] = list(data[key])
        return data


@dataclasses.dataclass
class SensitivityResult:
    """What `sensitivity` measured.

    Attributes:
        rows: one `SensitivityRow` per layer and rank, layers in the model's
            order, ranks in the order given.
        original_accuracy: the unconverted model's accuracy on the data.
        method: the decomposition method.
        ranks: the ranks tried, as given.
        examples: how many examples the accuracies are measured on.
        skipped: convolutions not tried, and why (``convert_model``'s reasons).
        settings: the other arguments (batch size, timing rounds, options).
        environment: device, backend and versions (`fastconv.timing.environment`).
    """

    rows: list[SensitivityRow]
    original_accuracy: float
    method: str
    ranks: tuple
    examples: int
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)
    settings: dict = dataclasses.field(default_factory=dict)
    environment: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        owner = "SensitivityResult"
        if isinstance(self.rows, (str, bytes)) or not isinstance(self.rows, Sequence):
            _refuse(owner, "rows", "a list of SensitivityRow", self.rows)
        for index, row in enumerate(self.rows):
            if not isinstance(row, SensitivityRow):
                _refuse(owner, f"rows[{index}]", "a SensitivityRow", row)
        _check_fraction(owner, "original_accuracy", self.original_accuracy, 0.0)
        if not isinstance(self.method, str) or self.method not in METHODS:
            _refuse(owner, "method", f"one of {', '.join(METHODS)}", self.method)
        if (
            isinstance(self.ranks, (str, bytes))
            or not isinstance(self.ranks, Sequence)
            or not self.ranks
        ):
            _refuse(owner, "ranks", "a non-empty tuple of ranks", self.ranks)
        if not is_int_at_least(self.examples, 1):
            _refuse(owner, "examples", "an int >= 1", self.examples)
        for name in ("skipped", "settings", "environment"):
            if not isinstance(getattr(self, name), dict):
                _refuse(owner, name, "a dict", getattr(self, name))

    @property
    def layers(self) -> list[str]:
        """The layers tried, in the model's order."""
        return list(dict.fromkeys(row.layer for row in self.rows))

    def to_dict(self) -> dict:
        """Everything as plain JSON-ready values."""
        return {
            "method": self.method,
            "ranks": [list(r) if isinstance(r, tuple) else r for r in self.ranks],
            "examples": self.examples,
            "original_accuracy": self.original_accuracy,
            "rows": [row.to_dict() for row in self.rows],
            "skipped": dict(self.skipped),
            "settings": self.settings,
            "environment": self.environment,
        }

    def to_json(self, path: str | os.PathLike | None = None, *, indent: int = 2) -> str:
        """The result as JSON text, also written to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=indent, default=str)
        if path is not None:
            with open(path, "w", encoding="utf-8") as file:
                file.write(text + "\n")
        return text

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> SensitivityResult:
        """Reads back what `to_json` wrote (lists stand for tuples); a file that
        is not such a result raises a `ValueError` naming it."""
        with open(path, encoding="utf-8") as file:
            try:
                data = json.load(file)
                rows = []
                for row in data["rows"]:
                    row = {key: _tuple(value) for key, value in row.items()}
                    rows.append(SensitivityRow(**row))
                return cls(
                    rows=rows,
                    original_accuracy=data["original_accuracy"],
                    method=data["method"],
                    ranks=tuple(_tuple(r) for r in data["ranks"]),
                    examples=data["examples"],
                    skipped=data["skipped"],
                    settings=data["settings"],
                    environment=data["environment"],
                )
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                raise ValueError(
                    f"SensitivityResult.from_json: {os.fspath(path)!r} is not a "
                    f"result that to_json wrote ({type(exc).__name__}: {exc})"
                ) from None

    def table(self) -> str:
        """A Markdown table: one line per layer and rank."""
        header = [
            "layer",
            "rank",
            "resolved",
            "params",
            "MACs",
            "accuracy",
            "drop (points)",
            "speedup",
            "p10-p90",
        ]
        lines = [
            "| " + " | ".join(header) + " |",
            "|" + "|".join("---" for _ in header) + "|",
        ]
        for row in self.rows:
            cells = [
                row.layer,
                _rank_text(row.rank),
                _rank_text(row.resolved_rank),
                f"{row.params_before:,} -> {row.params:,}",
                "?"
                if row.macs is None or row.macs_before is None
                else f"{row.macs_before:,} -> {row.macs:,}",
                f"{100 * row.accuracy:.2f}%",
                f"{100 * row.accuracy_drop:+.2f}",
                "-" if row.speedup is None else f"{row.speedup:.2f}x",
                "-"
                if row.interval is None
                else f"{row.interval[0]:.2f}-{row.interval[1]:.2f}x",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def __str__(self) -> str:
        parts = [
            f"fastconv.sensitivity: method={self.method!r}, "
            f"{len(self.layers)} layer(s) x {len(self.ranks)} rank(s), "
            f"original accuracy {100 * self.original_accuracy:.2f}% on "
            f"{self.examples:,} examples",
            self.table(),
        ]
        parts += [f"skipped {name}: {reason}" for name, reason in self.skipped.items()]
        return "\n".join(parts)

    def plot(self, path: str | os.PathLike) -> None:
        """Accuracy drop against speedup, one line per layer, ranks marked.

        Without speed measurements the x axis is the multiply-add ratio
        (original / replacement) instead.
        """
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        timed = all(row.speedup is not None for row in self.rows)
        fig = Figure(figsize=(7, 4.5))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        for layer in self.layers:
            rows = [row for row in self.rows if row.layer == layer]
            xs = [_x(row, timed) for row in rows]
            ys = [100 * row.accuracy_drop for row in rows]
            (line,) = ax.plot(xs, ys, marker="o", label=layer)
            for row, x, y in zip(rows, xs, ys, strict=True):
                if x is not None:
                    ax.annotate(
                        _rank_text(row.rank),
                        (x, y),
                        textcoords="offset points",
                        xytext=(4, 4),
                        fontsize=7,
                        color=line.get_color(),
                    )
        ax.axhline(0.0, color="grey", linewidth=0.8)
        if timed:
            ax.axvline(1.0, color="grey", linewidth=0.8, linestyle=":")
        ax.set_xlabel(
            "measured forward speedup of the layer (x)"
            if timed
            else "multiply-adds of the layer, original / replacement (x)"
        )
        ax.set_ylabel("accuracy drop (points)")
        ax.set_title(
            f"sensitivity: {self.method}, {self.examples:,} examples, "
            f"original {100 * self.original_accuracy:.2f}%"
        )
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path)


def _x(row: SensitivityRow, timed: bool):
    if timed:
        return row.speedup
    if row.macs and row.macs_before:
        return row.macs_before / row.macs
    return None


def _rank_text(rank) -> str:
    if isinstance(rank, list | tuple):
        return ",".join(str(r) for r in rank)
    return str(rank)


def _tuple(value):
    return tuple(value) if isinstance(value, list) else value


# ---------------------------------------------------------------- arguments
def _check_ranks(ranks) -> tuple:
    if not isinstance(ranks, list | tuple) or not ranks:
        raise ValueError(
            "sensitivity: ranks must be a non-empty list or tuple of ranks, "
            f"received ranks={ranks!r}"
        )
    for rank in ranks:
        if isinstance(rank, list | tuple):
            good = len(rank) == 2 and all(is_int_at_least(r, 1) for r in rank)
        elif is_int_at_least(rank, 1):
            good = True
        elif is_number(rank):
            good = 0 < rank <= 1
        else:
            good = isinstance(rank, str) and bool(rank)
        if not good:
            raise ValueError(
                "sensitivity: each of ranks must be a positive int, a fraction in "
                "(0, 1], a pair of positive ints (Tucker) or a rule such as "
                f"'vbmf', received {rank!r} in ranks={ranks!r}"
            )
    ranks = tuple(tuple(r) if isinstance(r, list) else r for r in ranks)
    # 1 (a rank) and 1.0 (all the parameters) are equal but differ: keep types.
    keys = [(type(rank), rank) for rank in ranks]
    repeated = [key for key in dict.fromkeys(keys) if keys.count(key) > 1]
    if repeated:
        raise ValueError(
            f"sensitivity: ranks holds {repeated[0][1]!r} more than once, received "
            f"ranks={ranks!r}"
        )
    return ranks


def _check_data(model, data) -> tuple[np.ndarray, np.ndarray]:
    """``data`` as ``(x, labels)``: one input array and integer labels."""
    if not isinstance(data, list | tuple) or len(data) != 2:
        raise ValueError(
            "sensitivity: data must be a pair (x, y) of arrays, received "
            f"{type(data).__name__}"
            + (f" of length {len(data)}" if isinstance(data, list | tuple) else "")
        )
    x, y = (np.asarray(part) for part in data)
    if x.dtype.kind not in "iuf" or y.dtype.kind not in "iuf":
        raise ValueError(
            f"sensitivity: data must hold numbers, received x of dtype {x.dtype} "
            f"and y of dtype {y.dtype}"
        )
    if x.ndim == 0 or len(x) == 0:
        raise ValueError(
            f"sensitivity: data holds no examples, received x of shape {x.shape}"
        )
    if y.ndim == 0 or len(y) != len(x):
        raise ValueError(
            f"sensitivity: data's x and y must hold as many examples, received x of "
            f"shape {x.shape} and y of shape {y.shape}"
        )
    for name, part in (("x", x), ("y", y)):
        if part.dtype.kind == "f" and not np.all(np.isfinite(part)):
            raise ValueError(f"sensitivity: data's {name} holds NaN or Inf")
    inputs = model.inputs or []
    if len(inputs) != 1:
        raise ValueError(
            f"sensitivity: model {model.name!r} must have one input, it has "
            f"{len(inputs)}"
        )
    expected = tuple(inputs[0].shape[1:])
    if len(expected) != x.ndim - 1 or any(
        want is not None and have != want
        for have, want in zip(x.shape[1:], expected, strict=False)
    ):
        raise ValueError(
            f"sensitivity: data's x has shape {x.shape}; model {model.name!r} takes "
            f"(N, {', '.join(str(size) for size in expected)})"
        )
    if len(model.outputs) != 1 or len(model.outputs[0].shape) != 2:
        raise ValueError(
            f"sensitivity: model {model.name!r} must have one output of shape "
            "(N, classes) to measure accuracy"
        )
    classes = model.outputs[0].shape[-1]
    if y.ndim == 2 and y.shape[1] > 1:
        if classes is not None and y.shape[1] != classes:
            raise ValueError(
                f"sensitivity: data's y has one-hot rows of {y.shape[1]} columns; "
                f"model {model.name!r} has {classes} classes"
            )
        labels = np.argmax(y, axis=1)
    else:
        labels = y.reshape(len(y))
        if labels.dtype.kind == "f" and not np.all(labels == np.round(labels)):
            raise ValueError(
                "sensitivity: data's y must hold class labels (integers) or "
                "one-hot rows"
            )
    labels = labels.astype("int64")
    if classes is not None and (labels.min() < 0 or labels.max() >= classes):
        raise ValueError(
            f"sensitivity: data's y holds labels from {labels.min()} to "
            f"{labels.max()}; model {model.name!r} has {classes} classes"
        )
    return x, labels


#: Measured rounds per replacement when ``timing_repeats`` is not given.
TIMING_REPEATS = 10


def _check_args(method, batch_size, timing_repeats, measure_speed, skip_first):
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(
            f"sensitivity: method must be one of {', '.join(map(repr, METHODS))}, "
            f"received method={method!r}"
        )
    for name, value in (("measure_speed", measure_speed), ("skip_first", skip_first)):
        if not isinstance(value, bool):
            raise ValueError(
                f"sensitivity: {name} must be a bool, received {name}={value!r}"
            )
    if timing_repeats is None:
        timing_repeats = TIMING_REPEATS if measure_speed else None
    elif not measure_speed:
        raise ValueError(
            f"sensitivity: timing_repeats={timing_repeats!r} does not apply with "
            "measure_speed=False, which times nothing; leave timing_repeats None"
        )
    for name, value in (("batch_size", batch_size), ("timing_repeats", timing_repeats)):
        if value is not None and not is_int_at_least(value, 1):
            raise ValueError(
                f"sensitivity: {name} must be a positive int, received {name}={value!r}"
            )
    return timing_repeats


def _candidates(model, method, layers, skip_first, layer_types) -> tuple[list, dict]:
    """The layers `convert_model` converts by default (full names), and the
    others with the reason each is kept."""
    sites, everything = {}, {}
    _walk(_check_model(model), False, (), sites, everything, layer_types)
    plans = _plan(
        list(sites.values()),
        everything,
        None,
        skip_first,
        None,
        method,
        None,
        {},
        layer_types,
    )
    chosen = [plan.site.full_name for plan in plans if plan.selected]
    skipped = {plan.site.full_name: plan.reason for plan in plans if not plan.selected}
    if layers is None:
        return chosen, skipped
    if not isinstance(layers, list | tuple) or not all(
        isinstance(name, str) for name in layers
    ):
        raise ValueError(
            "sensitivity: layers must be None or a list of layer names, received "
            f"layers={layers!r}"
        )
    by_name = {}
    for plan in plans:
        by_name[plan.site.name] = plan
        by_name[plan.site.full_name] = plan
    for name in layers:
        plan = by_name.get(name)
        if plan is None or not plan.selected:
            why = "is no convolution" if plan is None else plan.reason
            raise ValueError(
                f"sensitivity: layers names {name!r}, which {why}; the convertible "
                f"convolutions are {chosen}"
            )
    wanted = {by_name[name].site.full_name for name in layers}
    return [name for name in chosen if name in wanted], {
        **skipped,
        **{name: "not in layers" for name in chosen if name not in wanted},
    }


# ---------------------------------------------------------------- measuring
def _accuracy(model, x, labels, batch_size: int) -> float:
    correct = 0
    for start in range(0, len(x), batch_size):
        probs = model(x[start : start + batch_size], training=False)
        predicted = np.argmax(keras.ops.convert_to_numpy(probs), axis=-1)
        correct += int(np.sum(predicted == labels[start : start + batch_size]))
    return correct / len(x)


def _find(model, row):
    """The original layer and its replacement in the converted model."""
    for name in filter(None, row.path.split("/")):
        model = model.get_layer(name)
    return model.get_layer(row.new_name)


def _layer(model, path: str):
    *outer, name = path.split("/")
    for part in outer:
        model = model.get_layer(part)
    return model.get_layer(name)


def _speed(old, new, shape, batch_size, repeats) -> dict:
    times, implementation = _time(old, new, shape, batch_size, repeats)
    before = timing.timing_from_dict(times["original"])
    after = timing.timing_from_dict(times["replacement"])
    return {
        "speedup": before.median / after.median,
        "interval": (before.p10 / after.p90, before.p90 / after.p10),
        "implementation": implementation,
    }


def _bar(total: int, progress):
    from tqdm.auto import tqdm

    if progress not in (None, True, False):
        raise ValueError(
            "sensitivity: progress must be None, True or False, received "
            f"progress={progress!r}"
        )
    return tqdm(
        total=total,
        desc="sensitivity",
        unit="conversion",
        disable=progress is False,
        delay=0 if progress else 1.0,
        leave=False,
    )


# ---------------------------------------------------------------------- API
def sensitivity(
    model,
    data,
    *,
    method: str = "cp",
    ranks: Sequence = DEFAULT_RANKS,
    layers: Sequence[str] | None = None,
    skip_first: bool = True,
    batch_size: int = 32,
    measure_speed: bool = True,
    timing_repeats: int | None = None,
    progress: bool | None = None,
    layer_types: Sequence[str] = ("conv",),
    **options,
) -> SensitivityResult:
    """The accuracy and speed of converting each convolution alone, per rank.

    For each convolution `convert_model` converts by default (the first ones,
    grouped ones and, for ``"cp"``, 1x1 kernels are skipped, with the reason in
    ``.skipped``) and each of ``ranks``: ``convert_model(model, layers=[name],
    method=method, rank=rank, **options)``, the converted model's accuracy on
    ``data``, and, with ``measure_speed``, the replacement's forward time
    against the original layer's on a batch of ``batch_size`` inputs of the
    layer's input shape, interleaved, at the replacement's fastest
    implementation (the measurement of ``convert_model(..., min_speedup=...)``).
    The model itself is never modified. With ``layer_types=("conv",
    "dense")`` (or ``("dense",)``) the Dense layers `convert_model` converts by
    default (all but the last) are measured too, each by truncated SVD into a
    `LowRankDense` (``method="svd"``, whatever ``method`` says; ``options``
    are the convolutions' alone).

    Args:
        model: a built Functional or Sequential ``keras.Model`` with one input
            and one output of shape ``(N, classes)`` (probabilities or logits).
        data: ``(x, y)``: inputs the model takes and their labels, integer
            classes (``(N,)`` or ``(N, 1)``) or one-hot rows.
        method: ``"cp"`` (default), ``"tucker"``, ``"factorized"``,
            ``"separable"`` or ``"auto"``.
        ranks: the ranks to try, each in any form `convert_model` takes (a
            fraction of the parameters, an int, a Tucker pair, ``"vbmf"``).
        layers: None (every convertible convolution) or some of their names.
        skip_first: leave out the first convolutions, as `convert_model` does.
        batch_size: batch size of the accuracy runs and the timed runs.
        measure_speed: time each replacement (default True).
        timing_repeats: measured rounds per replacement; None (default) is
            `TIMING_REPEATS` when measuring. Refused with
            ``measure_speed=False``, which times nothing.
        progress: a tqdm bar: None shows one only after a second, True
            always, False never.
        layer_types: ``("conv",)`` (default), ``("dense",)`` or
            ``("conv", "dense")``, as for `convert_model`.
        **options: passed to `fastconv.decompose` (``random_state``, ...).

    Returns:
        A `SensitivityResult`; ``print(result)`` shows the table.

    Raises:
        ValueError: a bad argument (named, with the value received), data the
            model cannot take, no examples, NaN or Inf, or any `convert_model`
            error.

    Example:
        >>> import keras, numpy as np, fastconv
        >>> inputs = keras.Input((8, 8, 3))
        >>> x = keras.layers.Conv2D(8, 3, padding="same", name="c1")(inputs)
        >>> x = keras.layers.Conv2D(8, 3, padding="same", name="c2")(x)
        >>> x = keras.layers.GlobalAveragePooling2D()(x)
        >>> model = keras.Model(inputs, keras.layers.Dense(3)(x))
        >>> rng = np.random.default_rng(0)
        >>> data = (rng.random((16, 8, 8, 3), "float32"), np.arange(16) % 3)
        >>> result = fastconv.sensitivity(
        ...     model, data, method="tucker", ranks=[(2, 2), (8, 8)],
        ...     measure_speed=False, progress=False,
        ... )
        >>> [(row.layer, row.resolved_rank) for row in result.rows]
        [('c2', (2, 2)), ('c2', (8, 8))]
        >>> abs(result.rows[-1].accuracy_drop) < 1e-9
        True
    """
    timing_repeats = _check_args(
        method, batch_size, timing_repeats, measure_speed, skip_first
    )
    layer_types = _check_layer_types(layer_types, "sensitivity")
    ranks = _check_ranks(ranks)
    pairs = [rank for rank in ranks if isinstance(rank, tuple)]
    if pairs and method != "tucker":
        raise ValueError(
            f"sensitivity: a pair of ranks is Tucker-2's alone, received "
            f"{pairs[0]!r} in ranks={ranks!r} with method={method!r}"
        )
    accepted = _option_names(method) if method != "auto" else None
    if accepted is not None and set(options) - set(accepted):
        unknown = sorted(set(options) - set(accepted))[0]
        raise ValueError(
            f"sensitivity: method {method!r} takes no option {unknown!r}; it takes "
            f"{', '.join(accepted) if accepted else 'no options'}"
        )
    if not isinstance(model, keras.Model):
        raise ValueError(
            "sensitivity: model must be a keras.Model, received an object of type "
            f"{type(model).__name__}"
        )
    x, labels = _check_data(model, data)
    names, skipped = _candidates(model, method, layers, skip_first, layer_types)
    if not names:
        raise ValueError(
            f"sensitivity: model {model.name!r} has no convolution to convert "
            f"with method={method!r}; kept: {skipped}"
        )
    calibration = None
    if any(size is None for size in model.inputs[0].shape[1:]):
        calibration = x[:batch_size]
    original = _accuracy(model, x, labels, batch_size)
    rows = []
    with _bar(len(names) * len(ranks), progress) as bar:
        for name in names:
            for rank in ranks:
                bar.set_postfix_str(f"{name} rank {_rank_text(rank)}", refresh=False)
                with warnings.catch_warnings():
                    # Measuring the accuracy a low rank costs is the point here.
                    warnings.simplefilter("ignore", ConversionAccuracyWarning)
                    new_model, report = convert_model(
                        model,
                        method,
                        rank,
                        layers=[name],
                        skip_first=skip_first,
                        calibration_data=calibration,
                        batch_size=batch_size,
                        progress=False,
                        layer_types=layer_types,
                        **options,
                    )
                (row,) = [r for r in report.rows if r.converted]
                accuracy = _accuracy(new_model, x, labels, batch_size)
                measured = {}
                if measure_speed:
                    measured = _speed(
                        _layer(model, name),
                        _find(new_model, row),
                        row.input_shape,
                        batch_size,
                        timing_repeats,
                    )
                rows.append(
                    SensitivityRow(
                        layer=name,
                        rank=rank,
                        resolved_rank=row.rank,
                        params_before=row.params_before,
                        params=row.params_after,
                        macs_before=row.macs_before,
                        macs=row.macs_after,
                        accuracy=accuracy,
                        accuracy_drop=original - accuracy,
                        **measured,
                    )
                )
                bar.update()
    return SensitivityResult(
        rows=rows,
        original_accuracy=original,
        method=method,
        ranks=ranks,
        examples=len(x),
        skipped=skipped,
        settings={
            "skip_first": skip_first,
            "batch_size": batch_size,
            "measure_speed": measure_speed,
            "timing_repeats": timing_repeats,
            "layer_types": list(layer_types),
            "options": {key: repr(value) for key, value in options.items()},
        },
        environment=timing.environment(),
    )
