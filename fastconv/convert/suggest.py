"""What the fast layers would change, for each ``Conv2D`` of a profile.

For every ``Conv2D`` row of a ``ProfileResult``, ``suggest_replacements`` builds
each fast layer for the same configuration (filters, kernel, strides, padding,
dilation, data format, activation, bias) at a sensible size, counts its
parameters and multiply-adds at the row's input shape and, with
``measure=True``, times it against the ``Conv2D`` on that shape, interleaved,
in the profile's mode. The profile then ends with lines such as "replace
conv2d_1 with TuckerConv2D(rank=(8, 16)): 2.9x faster here". A measured
"replace" needs the fast layer's p90 time below the ``Conv2D``'s p10 (their
spreads do not overlap) as well as a speed-up of at least ``MIN_SPEEDUP``;
otherwise the line says "keep" and why.

It lives in ``fastconv.convert`` (floor 3 of STYLE.md), above both floor-2
packages it joins: it reads a profile (``fastconv.profile``) and builds the
fast layers (``fastconv.layers``) with their ``like`` classmethod.

The sizes, one rule for all: a quarter of the channels (``fraction=0.25``),
``Layer.like(conv, fraction)`` of each fast layer (see
``BaseFastConv.like_size``). CP rank ``filters / 4`` (at most the kernel's
largest CP rank); Tucker ranks ``(C_in / 4, filters / 4)``; bottleneck width
``filters / 4``; factorized intermediate channels ``filters / 4``; depthwise
separable has no size. A fast layer is a different model with random
weights here: the speed is real, the accuracy has to be earned by training it
or by converting the trained ``Conv2D`` (``fastconv.convert_model``). Callers
may also pass their own factories.

Example:
    >>> from fastconv.convert import suggest_replacements
    >>> from fastconv.profile import profile
    >>> result = profile(model, (28, 28, 1), batch_size=128)  # doctest: +SKIP
    >>> result = result.with_suggestions(
    ...     suggest_replacements(result, measure=True))  # doctest: +SKIP
    >>> print(result)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import keras
import numpy as np

from fastconv import layers
from fastconv._validation import is_number
from fastconv.cost import layer_cost
from fastconv.timing import Timing, block, interleaved, make_forward, make_grad_step

__all__ = [
    "DEFAULT_CANDIDATES",
    "Candidate",
    "Suggestion",
    "candidate_layer",
    "suggest_replacements",
]

#: The fast layers tried for each ``Conv2D``, by class name.
DEFAULT_CANDIDATES = (
    "CPConv2D",
    "TuckerConv2D",
    "DepthwiseSeparableConv2D",
    "FactorizedConv2D",
    "BottleneckConv2D",
)

#: A speed-up below this is reported as "no faster": timing noise on a
#: shared machine is of that order.
MIN_SPEEDUP = 1.05


@dataclass(frozen=True)
class Candidate:
    """One fast layer standing for one ``Conv2D``.

    Attributes:
        label: the layer and its size, e.g. ``"CPConv2D(rank=16)"``.
        params: its parameters.
        macs_per_example: its multiply-adds for one example.
        macs_ratio: the ``Conv2D``'s multiply-adds divided by its own.
        timing: its measured time at the row's input shape, or None.
        speedup: the ``Conv2D``'s median time divided by its own, or None.
        error: why it could not be built or run here, else ``""``.
    """

    label: str
    params: int = 0
    macs_per_example: int = 0
    macs_ratio: float = 0.0
    timing: Timing | None = None
    speedup: float | None = None
    error: str = ""

    def as_dict(self) -> dict:
        return {
            "label": self.label,
            "params": self.params,
            "macs_per_example": self.macs_per_example,
            "macs_ratio": self.macs_ratio,
            "time_s": None if self.timing is None else self.timing.median,
            "timing": None if self.timing is None else self.timing.as_dict(),
            "speedup": self.speedup,
            "error": self.error,
        }


@dataclass(frozen=True)
class Suggestion:
    """The candidates for one ``Conv2D`` row, and the verdict.

    Attributes:
        path: the row's path in the profile.
        description: the ``Conv2D`` in short, e.g. ``"Conv2D 32->64, 3x3"``.
        input_shape: the row's input shape, batch axis included.
        params: the ``Conv2D``'s parameters.
        macs_per_example: the ``Conv2D``'s multiply-adds for one example.
        time_share: the row's share of the profiled time.
        timing: the ``Conv2D``'s time measured with the candidates, or None.
        candidates: every candidate, in the order tried.
        mode: ``"train"`` (forward + backward timed) or ``"inference"``.
    """

    path: str
    description: str
    input_shape: tuple[int, ...]
    params: int
    macs_per_example: int
    time_share: float
    timing: Timing | None
    candidates: tuple[Candidate, ...]
    mode: str

    @property
    def measured(self) -> bool:
        return self.timing is not None

    def clearly_faster(self, candidate: Candidate) -> bool:
        """True if ``candidate`` was measured here, is at least ``MIN_SPEEDUP``
        times faster, and its p90 time is below the ``Conv2D``'s p10 (their
        spreads do not overlap)."""
        if self.timing is None or candidate.timing is None:
            return False
        return (
            candidate.speedup is not None
            and candidate.speedup >= MIN_SPEEDUP
            and candidate.timing.p90 < self.timing.p10
        )

    @property
    def best(self) -> Candidate | None:
        """The fastest candidate when measured, else the one with fewest
        multiply-adds; None when no candidate could be built."""
        usable = [c for c in self.candidates if not c.error]
        if self.measured:
            usable = [c for c in usable if c.speedup is not None]
            return max(usable, key=lambda c: c.speedup, default=None)
        return max(usable, key=lambda c: c.macs_ratio, default=None)

    @property
    def line(self) -> str:
        """The verdict in one sentence."""
        best = self.best
        what = f"{self.path} ({self.description})"
        if best is None:
            return f"{what}: no fast layer could be built for this layer"
        if not self.measured:
            if best.macs_ratio < MIN_SPEEDUP:
                return (
                    f"keep {what}: no fast layer has fewer multiply-adds here "
                    f"(best {best.label}, {best.macs_ratio:.2f}x)"
                )
            return (
                f"replace {what} with {best.label}: {_fewer(best.macs_ratio)} "
                "here (time not measured: use measure=True)"
            )
        if best.speedup < MIN_SPEEDUP:
            return (
                f"keep {what}: no fast layer is faster here (best {best.label}, "
                f"{best.speedup:.2f}x measured, {_fewer(best.macs_ratio)})"
            )
        if not self.clearly_faster(best):
            return (
                f"keep {what}: no fast layer is clearly faster here (best "
                f"{best.label}, {best.speedup:.2f}x measured, but its p90 time "
                f"{best.timing.p90 * 1e3:.2f} ms is not below the Conv2D's p10 "
                f"{self.timing.p10 * 1e3:.2f} ms; {_fewer(best.macs_ratio)})"
            )
        share = self.time_share
        whole = 1.0 / (1.0 - share + share / best.speedup)
        step = "training step" if self.mode == "train" else "forward pass"
        return (
            f"replace {what} with {best.label}: {best.speedup:.1f}x faster here "
            f"(measured; {_fewer(best.macs_ratio)}); this layer "
            f"is {share * 100:.0f}% of the {step}, which would be about "
            f"{whole:.2f}x faster"
        )

    def as_dict(self) -> dict:
        best = self.best
        return {
            "path": self.path,
            "description": self.description,
            "input_shape": list(self.input_shape),
            "params": self.params,
            "macs_per_example": self.macs_per_example,
            "time_share": self.time_share,
            "mode": self.mode,
            "time_s": None if self.timing is None else self.timing.median,
            "timing": None if self.timing is None else self.timing.as_dict(),
            "candidates": [c.as_dict() for c in self.candidates],
            "best": None if best is None else best.label,
            "clearly_faster": best is not None and self.clearly_faster(best),
            "line": self.line,
        }


def _channels(shape, data_format: str) -> int:
    return int(shape[-1] if data_format == "channels_last" else shape[1])


def candidate_layer(name: str, conv, input_shape, fraction: float = 0.25):
    """Build the fastconv layer ``name`` standing for ``conv`` on ``input_shape``.

    Args:
        name: a fastconv layer's class name (``"CPConv2D"``, ...).
        conv: the ``keras.layers.Conv2D`` to stand for.
        input_shape: its input shape, batch axis included.
        fraction: the size rule: ranks and inner widths are this fraction of
            the channels (``Layer.like``).

    Returns:
        ``(label, layer)``; the layer is not built.

    Raises:
        ValueError: if ``name`` is not a fastconv layer, or the layer rejects
            this configuration.
        TypeError: if the layer cannot stand for one ``Conv2D``
            (``WideConv2D``).
    """
    cls = getattr(layers, name, None) if isinstance(name, str) else None
    if (
        not isinstance(cls, type)
        or not issubclass(cls, layers.BaseFastConv)
        or cls is layers.BaseFastConv
    ):
        raise ValueError(
            f"{name} is not a fastconv layer class, received name={name!r}"
        )
    c_in = _channels(input_shape, conv.data_format)
    size = cls.like_size(conv, fraction, input_channels=c_in)
    layer = cls.like(conv, fraction, input_channels=c_in)
    label = name + (
        "(" + ", ".join(f"{k}={v!r}" for k, v in size.items()) + ")" if size else ""
    )
    return label, layer


def _fewer(ratio: float) -> str:
    """'7.4x fewer multiply-adds', or '1.1x more' when the ratio is below 1."""
    if ratio >= 1:
        return f"{ratio:.1f}x fewer multiply-adds"
    return f"{1 / ratio:.1f}x more multiply-adds"


def _describe(conv, input_shape) -> str:
    c_in = _channels(input_shape, conv.data_format)
    kh, kw = conv.kernel_size
    text = f"Conv2D {c_in}->{conv.filters}, {kh}x{kw}"
    if tuple(conv.strides) != (1, 1):
        text += f", strides {tuple(conv.strides)}"
    return text


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"


def suggest_replacements(
    result,
    candidates: Sequence[str | Callable] = DEFAULT_CANDIDATES,
    *,
    measure: bool = False,
    fraction: float = 0.25,
    warmup: int | None = None,
    repeats: int | None = None,
) -> tuple[Suggestion, ...]:
    """For each ``Conv2D`` row of ``result``, what each fast layer would change.

    Args:
        result: a ``ProfileResult`` from ``profile`` (not a loaded JSON: the
            layers themselves are needed).
        candidates: fastconv layer class names (built with ``Layer.like``, the
            size rule of the module docstring) or factories
            ``f(conv, input_shape) -> layer``.
        measure: also time each candidate against the ``Conv2D`` at the row's
            input shape, interleaved, forward + backward in train mode.
        fraction: the size rule's fraction of the channels, in (0, 1].
        warmup: warm-up rounds; default: the profile's. Only with ``measure``.
        repeats: measured rounds; default: the profile's. Only with ``measure``.

    Returns:
        One ``Suggestion`` per ``Conv2D`` call (grouped ``Conv2D`` layers are
        skipped: the fast layers have no groups), in the profile's order.

    Raises:
        ValueError: on a ``fraction`` outside (0, 1], ``warmup`` or ``repeats``
            without ``measure``, a result without layers,
            or no ``candidates`` (a name that is no fastconv layer is kept,
            with its error, in each suggestion).
    """
    if not (is_number(fraction) and 0 < fraction <= 1):
        raise ValueError(
            f"suggest_replacements: fraction must be a number in (0, 1], received "
            f"fraction={fraction!r}"
        )
    for name, value in (("warmup", warmup), ("repeats", repeats)):
        if value is not None and not measure:
            raise ValueError(
                f"suggest_replacements: {name} applies only to measure=True, "
                f"received {name}={value!r} with measure={measure!r}"
            )
    if isinstance(candidates, str) or not candidates:
        raise ValueError(
            "suggest_replacements: candidates must be a non-empty list of fastconv "
            f"layer class names or factories, received candidates={candidates!r}"
        )
    if not hasattr(result, "layers") or not hasattr(result, "mode"):
        raise ValueError(
            "suggest_replacements: result must be a ProfileResult from profile(), "
            f"received result of type {type(result).__name__}"
        )
    settings = getattr(result, "settings", {})
    warmup = settings.get("warmup", 2) if warmup is None else warmup
    repeats = settings.get("repeats", 10) if repeats is None else repeats
    jit = settings.get("jit", True)
    make = make_grad_step if result.mode == "train" else make_forward
    shares = {r["path"]: r["time_share"] for r in result.as_dict()["layers"]}
    rng = np.random.default_rng(0)
    suggestions = []
    for row in result.layers:
        conv = row.layer
        if not isinstance(conv, keras.layers.Conv2D) or conv.groups != 1:
            continue
        shape = tuple(row.input_shape)
        base = layer_cost(conv, shape)
        built = []
        for candidate in candidates:
            try:
                if isinstance(candidate, str):
                    label, layer = candidate_layer(candidate, conv, shape, fraction)
                else:
                    layer = candidate(conv, shape)
                    label = type(layer).__name__
                cost = layer_cost(layer, shape)
            except (ValueError, TypeError) as exc:
                name = candidate if isinstance(candidate, str) else repr(candidate)
                built.append((Candidate(label=name, error=_error_text(exc)), None))
                continue
            entry = Candidate(
                label=label,
                params=int(cost.params),
                macs_per_example=int(cost.macs),
                macs_ratio=base.macs / cost.macs if cost.macs else float("inf"),
            )
            built.append((entry, layer))
        base_timing = None
        if measure:
            x = rng.standard_normal(shape).astype(conv.compute_dtype)
            fns = {"__conv__": make(conv, x, jit=jit)}
            for i, (entry, layer) in enumerate(built):
                if layer is None:
                    continue
                try:
                    fn = make(layer, x, jit=jit)
                    block(fn())
                except Exception as exc:  # reported per candidate, not fatal
                    built[i] = (
                        Candidate(label=entry.label, error=_error_text(exc)),
                        None,
                    )
                    continue
                fns[str(i)] = fn
            times = interleaved(fns, warmup=warmup, repeats=repeats)
            base_timing = times["__conv__"]
            built = [
                (
                    dataclasses.replace(
                        entry,
                        timing=times[str(i)],
                        speedup=base_timing.median / times[str(i)].median,
                    )
                    if str(i) in times
                    else entry,
                    layer,
                )
                for i, (entry, layer) in enumerate(built)
            ]
        suggestions.append(
            Suggestion(
                path=row.path,
                description=_describe(conv, shape),
                input_shape=shape,
                params=int(base.params),
                macs_per_example=int(base.macs),
                time_share=shares.get(row.path, 0.0),
                timing=base_timing,
                candidates=tuple(entry for entry, _ in built),
                mode=result.mode,
            )
        )
    return tuple(suggestions)
