"""Ranks chosen to a target: the search behind ``convert_model(..., data=...)``.

Four steps, all measured here (this device, this backend):

1. Measure. For each convolution `convert_model` would convert and each
   candidate ``(method, rank)``, the model is converted with only that layer
   replaced and its accuracy measured on the data (the table
   `fastconv.sensitivity` makes); the layer and its replacement are timed,
   interleaved, at the model's batch size.
2. Calibrate. Layers timed alone do not add up to the whole model: call
   overhead, fusions inside the model's graph and a load that changes during
   the measurements move them. So the whole original is timed, interleaved
   with the model that has every layer at its fastest candidate, and the
   per-layer savings are scaled so that their prediction for that model is its
   measured speedup (`calibrate`).
3. Choose. One candidate per layer, or "keep" (`choose`): the predicted time
   of the new model is the original's measured time minus the per-layer
   savings (calibrated), and its predicted accuracy drop the sum of the
   per-layer drops.
   For ``target_speedup``, the choice reaching the target with the least
   summed drop; for ``max_accuracy_drop``, the largest predicted speedup whose
   summed drop stays within the budget. Every combination is tried while there
   are at most `EXHAUSTIVE_LIMIT` of them, a greedy search (best saving per
   point of accuracy first) beyond.
4. Verify. `convert_model` builds the chosen model; its whole-model speedup is
   measured against the original's (interleaved) and its accuracy on the data;
   both stand in the report beside the prediction. A miss is reported, not
   raised: the per-layer effects do not add up exactly.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import warnings
from collections.abc import Sequence

from fastconv import timing
from fastconv._validation import is_number
from fastconv.convert import whole_model
from fastconv.convert.convert_model import (
    TIMING_WARMUP,
    ConversionAccuracyWarning,
    _is_dense,
    _time,
    convert_model,
)
from fastconv.convert.decompose import DENSE_METHODS, METHODS
from fastconv.convert.sensitivity import (
    _accuracy,
    _check_data,
    _check_ranks,
    _find,
    _layer,
)

__all__ = [
    "DEFAULT_MAX_ACCURACY_DROP",
    "DEFAULT_METHODS",
    "DEFAULT_RANKS",
    "EXHAUSTIVE_LIMIT",
    "Option",
    "SearchResult",
    "calibrate",
    "choose",
]

#: The accuracy budget when ``data`` is given with no target: one point.
DEFAULT_MAX_ACCURACY_DROP = 0.01
#: The methods tried by default.
DEFAULT_METHODS = ("cp", "tucker")
#: The ranks tried by default, for each method.
DEFAULT_RANKS = (0.1, 0.25, 0.5, "vbmf")
#: Up to this many combinations, `choose` tries them all.
EXHAUSTIVE_LIMIT = 4096


@dataclasses.dataclass(frozen=True)
class Option:
    """One candidate replacement of one layer, as measured.

    Attributes:
        layer: the layer's full name.
        method: the decomposition method.
        rank: the rank asked for, as given.
        resolved_rank: what it resolved to for this layer.
        accuracy_drop: the model's accuracy drop with only this layer replaced.
        time_before: the original layer's median forward time (s), at the
            model's batch size.
        time_after: the replacement's, at its fastest implementation.
    """

    layer: str
    method: str
    rank: object
    resolved_rank: object
    accuracy_drop: float
    time_before: float
    time_after: float

    @property
    def saved(self) -> float:
        """Seconds per batch the replacement saves (negative: it is slower)."""
        return self.time_before - self.time_after

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        for key in ("rank", "resolved_rank"):
            if isinstance(data[key], tuple):
                data[key] = list(data[key])
        return data


@dataclasses.dataclass
class SearchResult:
    """What the search measured, chose and achieved.

    Attributes:
        target: ``{"target_speedup": x}`` or ``{"max_accuracy_drop": x}``.
        options: every candidate measured.
        chosen: layer -> the chosen `Option`, or None where the layer is kept.
        model_time: the original model's median forward time (s) per batch.
        original_accuracy: the original model's accuracy on the data.
        predicted_speedup: the original model's time over the predicted time;
            ``math.inf`` when the layers' savings add up to the whole model's
            time or more (``None`` in `to_dict`).
        predicted_accuracy_drop: the sum of the chosen options' drops.
        achieved_speedup: measured on the chosen model, or None before.
        achieved_accuracy: likewise.
        met: whether the achieved values meet the target, or None before.
        calibration: what `calibrate` measured (``scale``,
            ``fastest_speedup``, ``fastest_predicted``), or None.
    """

    target: dict
    options: list[Option]
    chosen: dict
    model_time: float
    original_accuracy: float
    predicted_speedup: float
    predicted_accuracy_drop: float
    calibration: dict | None = None
    achieved_speedup: float | None = None
    achieved_accuracy: float | None = None
    met: bool | None = None

    @property
    def achieved_accuracy_drop(self) -> float | None:
        if self.achieved_accuracy is None:
            return None
        return self.original_accuracy - self.achieved_accuracy

    def to_dict(self) -> dict:
        predicted = self.predicted_speedup
        return {
            "target": dict(self.target),
            "model_time_s": self.model_time,
            "original_accuracy": self.original_accuracy,
            # JSON has no infinity: None stands for "more than the model's time".
            "predicted_speedup": predicted if math.isfinite(predicted) else None,
            "predicted_accuracy_drop": self.predicted_accuracy_drop,
            "achieved_speedup": self.achieved_speedup,
            "achieved_accuracy": self.achieved_accuracy,
            "achieved_accuracy_drop": self.achieved_accuracy_drop,
            "met": self.met,
            "calibration": self.calibration,
            "chosen": {
                layer: None if option is None else option.to_dict()
                for layer, option in self.chosen.items()
            },
            "options": [option.to_dict() for option in self.options],
        }

    def summary(self) -> str:
        """Predicted against achieved, in one paragraph."""
        ((name, value),) = self.target.items()
        if math.isfinite(self.predicted_speedup):
            predicted = f"{self.predicted_speedup:.2f}x faster"
        else:
            predicted = (
                "no speedup figure (the layers alone save more time than the whole "
                "model takes: timings too small or noisy to add up)"
            )
        lines = [
            f"search ({name}={value}): predicted {predicted}, accuracy drop "
            f"{100 * self.predicted_accuracy_drop:+.2f} points (sum of the layers' "
            "drops alone)"
        ]
        if self.achieved_speedup is not None:
            lines.append(
                f"achieved: {self.achieved_speedup:.2f}x faster (whole model, "
                f"interleaved medians), accuracy {100 * self.achieved_accuracy:.2f}% "
                f"(original {100 * self.original_accuracy:.2f}%, drop "
                f"{100 * self.achieved_accuracy_drop:+.2f} points)"
            )
            if not self.met:
                lines.append(
                    f"the target {name}={value} is NOT met by the measured model; "
                    "the per-layer measurements do not add up exactly: try again "
                    "with a stricter target"
                )
        return "\n".join(lines)


# ------------------------------------------------------------------ choosing
def _predicted(model_time: float, picks, scale: float = 1.0) -> tuple[float, float]:
    """The whole model's predicted speedup and accuracy drop with ``picks``.

    Each layer, timed alone, saves ``time_before - time_after`` of the model's
    time. Layers timed alone can add up to more than the whole model takes
    (call overhead, noise); their savings are then scaled by the share of the
    model they can account for, so that the prediction stays the layers' own
    ratio at most, never an infinite speedup. ``scale`` (`calibrate`'s)
    multiplies the savings after that.
    """
    chosen = [option for option in picks if option is not None]
    saved = sum(option.saved for option in chosen)
    before = sum(option.time_before for option in chosen)
    drop = sum(option.accuracy_drop for option in chosen)
    if before > model_time > 0:
        saved *= model_time / before
    saved *= scale
    left = model_time - saved
    return (math.inf if left <= 0 else model_time / left), drop


def _by_layer(options: Sequence[Option]) -> dict[str, list[Option]]:
    layers: dict[str, list[Option]] = {}
    for option in options:
        layers.setdefault(option.layer, []).append(option)
    return layers


def _better(target_speedup, max_accuracy_drop, speedup, drop, best) -> bool:
    """Whether ``(speedup, drop)`` beats ``best`` (``(speedup, drop)`` or None)."""
    if target_speedup is not None:
        if speedup < target_speedup:
            return False
        key, best_key = (drop, -speedup), None if best is None else (best[1], -best[0])
    else:
        if drop > max_accuracy_drop:
            return False
        key, best_key = (-speedup, drop), None if best is None else (-best[0], best[1])
    return best_key is None or key < best_key


def _greedy(layers, model_time, target_speedup, max_accuracy_drop, scale=1.0):
    """Upgrades one layer at a time, the most time saved per point of
    accuracy lost first, until the target is reached or the budget is spent."""
    picks = dict.fromkeys(layers)
    while True:
        speedup, drop = _predicted(model_time, picks.values(), scale)
        if target_speedup is not None and speedup >= target_speedup:
            return picks
        moves = []
        for layer, options in layers.items():
            current = picks[layer]
            now_saved = 0.0 if current is None else current.saved
            now_drop = 0.0 if current is None else current.accuracy_drop
            for option in options:
                gain = option.saved - now_saved
                cost = option.accuracy_drop - now_drop
                if gain <= 0:
                    continue
                if max_accuracy_drop is not None and drop + cost > max_accuracy_drop:
                    continue
                moves.append((gain / max(cost, 1e-12), gain, layer, option))
        if not moves:
            return picks
        *_, layer, option = max(moves, key=lambda move: move[:2])
        picks[layer] = option


def choose(
    options: Sequence[Option],
    model_time: float,
    *,
    target_speedup: float | None = None,
    max_accuracy_drop: float | None = None,
    scale: float = 1.0,
) -> dict:
    """One option per layer, or None to keep it, for one of the two targets.

    Args:
        options: the measured candidates (`Option`), any number per layer.
        model_time: the original model's forward time, in the options' unit.
        target_speedup: reach this predicted whole-model speedup with the
            least summed accuracy drop.
        max_accuracy_drop: the largest predicted speedup whose summed drop
            stays within this fraction (0.01: one point).
        scale: multiplies the layers' savings (`calibrate`'s scale).

    Returns:
        layer -> `Option` or None, every layer of ``options``, in their order.

    Raises:
        ValueError: both targets or none, or a ``target_speedup`` that even
            every layer at its fastest option does not reach (the message gives
            the best predicted speedup).

    Example:
        >>> from fastconv.convert.search import Option, choose
        >>> options = [
        ...     Option("a", "cp", 0.1, 4, 0.05, 3.0, 1.0),
        ...     Option("a", "cp", 0.5, 16, 0.0, 3.0, 2.0),
        ... ]
        >>> choose(options, 4.0, max_accuracy_drop=0.01)["a"].rank
        0.5
    """
    if (target_speedup is None) == (max_accuracy_drop is None):
        raise ValueError(
            "choose: give one of target_speedup and max_accuracy_drop, received "
            f"target_speedup={target_speedup!r}, "
            f"max_accuracy_drop={max_accuracy_drop!r}"
        )
    layers = _by_layer(options)
    if target_speedup is not None:
        best, _ = _predicted(model_time, fastest(options).values(), scale)
        if best < target_speedup:
            raise ValueError(
                f"target_speedup={target_speedup} cannot be reached: with every "
                "layer at its fastest measured candidate the predicted whole-model "
                f"speedup is {best:.2f}x; ask for at most that, or add faster "
                "candidates (lower ranks in ranks=, other methods in methods=)"
            )
    count = math.prod(len(opts) + 1 for opts in layers.values())
    if count > EXHAUSTIVE_LIMIT:
        return _greedy(layers, model_time, target_speedup, max_accuracy_drop, scale)
    best, best_picks = None, None
    for picks in itertools.product(*([None, *opts] for opts in layers.values())):
        speedup, drop = _predicted(model_time, picks, scale)
        if _better(target_speedup, max_accuracy_drop, speedup, drop, best):
            best, best_picks = (speedup, drop), picks
    if best_picks is None:  # only with a budget: keeping everything always fits
        best_picks = (None,) * len(layers)
    return dict(zip(layers, best_picks, strict=True))


# ----------------------------------------------------------------- measuring
def check_targets(target_speedup, max_accuracy_drop) -> None:
    """Refuses both targets at once and values of no valid form."""
    if target_speedup is not None and max_accuracy_drop is not None:
        raise ValueError(
            "convert_model: give target_speedup or max_accuracy_drop, not both "
            f"(received target_speedup={target_speedup!r}, "
            f"max_accuracy_drop={max_accuracy_drop!r})"
        )
    if target_speedup is not None and not (
        is_number(target_speedup) and 1 < target_speedup < math.inf
    ):
        raise ValueError(
            "convert_model: target_speedup must be a finite number above 1, "
            f"received target_speedup={target_speedup!r}"
        )
    if max_accuracy_drop is not None and not (
        is_number(max_accuracy_drop) and 0 <= max_accuracy_drop <= 1
    ):
        raise ValueError(
            "convert_model: max_accuracy_drop must be a fraction in [0, 1] "
            f"(0.01: one point), received max_accuracy_drop={max_accuracy_drop!r}"
        )


def check_candidates(methods, ranks) -> tuple[tuple, tuple]:
    """``methods`` and ``ranks`` as tuples, or a clear error."""
    if (
        not isinstance(methods, list | tuple)
        or not methods
        or any(m not in METHODS or m == "auto" for m in methods)
    ):
        raise ValueError(
            "convert_model: methods must be a non-empty list of "
            f"{', '.join(repr(m) for m in METHODS if m != 'auto')}, received "
            f"methods={methods!r}"
        )
    repeated = [m for m in dict.fromkeys(methods) if methods.count(m) > 1]
    if repeated:
        raise ValueError(
            f"convert_model: methods holds {repeated[0]!r} more than once, "
            f"received methods={methods!r}"
        )
    try:
        ranks = _check_ranks(ranks)
    except ValueError as exc:
        raise ValueError(f"convert_model: {exc}".replace("sensitivity: ", "")) from None
    return tuple(methods), ranks


def check_data(model, data):
    """``(x, labels)``, with sensitivity's checks, under convert_model's name."""
    try:
        return _check_data(model, data)
    except ValueError as exc:
        raise ValueError(str(exc).replace("sensitivity:", "convert_model:")) from None


def _model_times(models: dict, x, batch_size: int, repeats: int) -> dict:
    """Each model's median forward time on one batch of ``batch_size`` examples
    of ``x`` (repeated when ``x`` has fewer), interleaved, compiled as the
    layers' savings were timed (`timing.default_jit`)."""
    return whole_model.model_times(
        models,
        whole_model.first_batch(x, batch_size),
        warmup=TIMING_WARMUP,
        repeats=repeats,
        jit=timing.default_jit(),
    )


def measure(
    model,
    x,
    labels,
    layers,
    *,
    methods,
    ranks,
    batch_size,
    repeats,
    options,
    layer_types=("conv",),
) -> tuple[list[Option], float]:
    """Every candidate of every layer named, and the model's accuracy.

    A Dense layer (with ``"dense"`` in ``layer_types``) has one method,
    ``"svd"``, tried at each of ``ranks``. The whole model is timed by
    `calibrate`, beside the model with every layer at its fastest candidate.
    """
    original = _accuracy(model, x, labels, batch_size)
    found = []
    for name in layers:
        dense = _is_dense(_layer(model, name))
        for method, rank in itertools.product(
            DENSE_METHODS if dense else methods, ranks
        ):
            try:
                with warnings.catch_warnings():
                    # Low candidate ranks warn by design; the search weighs them.
                    warnings.simplefilter("ignore", ConversionAccuracyWarning)
                    new_model, report = convert_model(
                        model,
                        # A Dense layer takes "svd" whatever the conv method.
                        methods[0] if dense else method,
                        rank,
                        layers=[name],
                        skip_first=False,
                        batch_size=batch_size,
                        progress=False,
                        layer_types=layer_types,
                        **(options if method in ("cp", "tucker") else {}),
                    )
            except ValueError:
                continue  # this method or rank does not apply to this layer
            (row,) = report.converted
            accuracy = _accuracy(new_model, x, labels, batch_size)
            times, _ = _time(
                _layer(model, name),
                _find(new_model, row),
                row.input_shape,
                batch_size,
                repeats,
            )
            found.append(
                Option(
                    layer=name,
                    method=method,
                    rank=rank,
                    resolved_rank=row.rank,
                    accuracy_drop=original - accuracy,
                    time_before=times["original"]["median_s"],
                    time_after=times["replacement"]["median_s"],
                )
            )
    return found, original


def fastest(options: Sequence[Option]) -> dict:
    """Layer -> its candidate that saves the most time, where one saves any."""
    best = {
        layer: max(opts, key=lambda o: o.saved)
        for layer, opts in _by_layer(options).items()
    }
    return {layer: option for layer, option in best.items() if option.saved > 0}


def calibrate(
    model, options, x, *, batch_size, repeats, method_options, layer_types
) -> tuple[float, dict | None]:
    """The original model's time and the scale of the layers' savings.

    Builds the model with every layer at its fastest candidate (`fastest`)
    and times it interleaved with the original, at ``batch_size``. The scale
    makes `_predicted`'s speedup for that model equal to the measured one
    (0 when it was measured no faster: then no saving is trusted). Returns
    ``(model_time, calibration)``, the calibration None when no candidate
    saves time (nothing to build).
    """
    picks = fastest(options)
    if not picks:
        return _model_times({"original": model}, x, batch_size, repeats)[
            "original"
        ], None
    overrides = {
        layer: {
            "method": option.method,
            "rank": option.rank,
            **(method_options if option.method in ("cp", "tucker") else {}),
        }
        for layer, option in picks.items()
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConversionAccuracyWarning)
        new_model, _ = convert_model(
            model,
            layers=list(picks),
            overrides=overrides,
            skip_first=False,
            batch_size=batch_size,
            progress=False,
            layer_types=layer_types,
        )
    times = _model_times(
        {"original": model, "fastest": new_model}, x, batch_size, repeats
    )
    model_time = times["original"]
    measured = model_time / times["fastest"]
    predicted, _ = _predicted(model_time, picks.values())
    # Savings that would make the prediction the measured speedup, over the
    # savings the layers timed alone give.
    wanted = model_time * (1 - 1 / measured)
    given = model_time * (1 - 1 / predicted) if math.isfinite(predicted) else model_time
    scale = max(wanted, 0.0) / given
    return model_time, {
        "scale": scale,
        "fastest_speedup": measured,
        "fastest_predicted": predicted if math.isfinite(predicted) else None,
    }


def verify(result: SearchResult, model, new_model, x, labels, batch_size, repeats):
    """Measures the chosen model and records what it achieved."""
    times = _model_times({"original": model, "new": new_model}, x, batch_size, repeats)
    result.achieved_speedup = times["original"] / times["new"]
    result.achieved_accuracy = _accuracy(new_model, x, labels, batch_size)
    ((name, value),) = result.target.items()
    if name == "target_speedup":
        result.met = result.achieved_speedup >= value
    else:
        result.met = result.achieved_accuracy_drop <= value
