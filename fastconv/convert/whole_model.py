"""The whole-model check of ``convert_model(..., min_speedup=...)``.

Each layer is replaced only where it was measured faster alone, but layers
measured alone do not add up to a model: in a network their inputs come from
the layer before (in cache, or not), the framework fuses some operations and
not others, and a few per-layer gains of a few microseconds are within the
noise. On keras.applications models, per-layer decisions predicted 1.84x for
MobileNet and the whole model measured 0.75x (benchmarks/applications.py,
the run recorded at b588562, before this check).

So, after the per-layer decisions, the new model is timed whole against the
original, interleaved, on one batch. Where it is slower than
``min(1, min_speedup)`` times the original, the half of the replaced layers
that save the fewest multiply-adds go back to their original form and the
model is timed again, at most `WHOLE_MODEL_ROUNDS` times; when even that fails,
every replacement goes back and the new model is a copy of the original. The
layers put back say so in their report rows, and ``report.whole_model`` keeps
every round.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np

from fastconv import timing

#: Timings of the whole new model, each after reverting half of the replaced
#: layers, before every replacement is reverted.
WHOLE_MODEL_ROUNDS = 4
#: Warm-up rounds before the measured ones (compilation and first-call costs).
WHOLE_MODEL_WARMUP = 2


def first_batch(data, batch_size: int):
    """The first ``batch_size`` examples of ``data`` (an array, or a list or
    dict of arrays), repeated when it holds fewer."""

    def batch(x):
        x = np.asarray(x)[:batch_size]
        if len(x) < batch_size:
            x = np.resize(x, (batch_size, *x.shape[1:]))
        return x

    return keras.tree.map_structure(batch, data)


def example_inputs(model, data, batch_size: int):
    """One batch of ``batch_size`` inputs for ``model``: `first_batch` of
    ``data``, or random ones when ``data`` is None."""
    if data is not None:
        return first_batch(data, batch_size)
    rng = np.random.default_rng(0)
    arrays = []
    for tensor in model.inputs:
        shape = tuple(tensor.shape[1:])
        if any(size is None for size in shape):
            raise ValueError(
                "convert_model: the whole-model check (verify_whole_model=True) "
                f"needs the input size of model {model.name!r}, which leaves it "
                f"unknown ({tuple(tensor.shape)}); pass calibration_data, or "
                "verify_whole_model=False"
            )
        dtype = keras.backend.standardize_dtype(tensor.dtype)
        if "float" in dtype:
            x = rng.standard_normal((batch_size, *shape)).astype(dtype)
        else:
            x = np.zeros((batch_size, *shape), dtype=dtype)
        arrays.append(x)
    return arrays[0] if len(arrays) == 1 else arrays


def model_times(
    models: dict, inputs, *, repeats: int, jit: bool, warmup: int = WHOLE_MODEL_WARMUP
) -> dict:
    """Each model's median forward time (s) on ``inputs``, interleaved: the
    whole-model timing of this check and of the search
    (`fastconv.convert.search`)."""
    found = timing.interleaved(
        {name: timing.make_forward(m, inputs, jit=jit) for name, m in models.items()},
        warmup=warmup,
        repeats=repeats,
    )
    return {name: found[name].median for name in models}


def speedup(original, new, inputs, *, repeats: int, jit: bool) -> float:
    """The original's median forward time over the new model's, interleaved."""
    times = model_times(
        {"original": original, "new": new}, inputs, repeats=repeats, jit=jit
    )
    return times["original"] / times["new"]


def check(
    original,
    new_model,
    replaced: list,
    replacements: dict,
    clone: Callable,
    inputs,
    *,
    min_speedup: float,
    batch_size: int,
    repeats: int,
    jit: bool,
    rounds: int = WHOLE_MODEL_ROUNDS,
):
    """Times ``new_model`` against ``original`` and reverts replacements until
    it is not slower than ``min(1, min_speedup)`` times the original.

    ``replaced``: ``(row, layer id)`` of each replaced layer; ``replacements``:
    layer id -> new layer, the map ``clone(original, replacements)`` builds the
    new model from (reverted layers leave it). The rows of reverted layers get
    ``converted=False`` and a decision that says why. Returns the new model
    (re-cloned when anything was reverted) and the record of every round.
    """
    limit = min(1.0, float(min_speedup))
    # Most multiply-adds saved first: the last half is reverted first.
    active = sorted(replaced, key=lambda pair: -_saved(pair[0]))
    record = {
        "threshold": limit,
        "batch_size": batch_size,
        "jit": jit,
        "repeats": repeats,
        "rounds": [],
        "reverted": [],
    }
    while active:
        measured = speedup(original, new_model, inputs, repeats=repeats, jit=jit)
        record["rounds"].append({"replaced": len(active), "speedup": measured})
        if measured >= limit:
            break
        last = len(record["rounds"]) >= rounds
        keep = 0 if last else len(active) // 2
        for row, layer_id in active[keep:]:
            del replacements[layer_id]
            row.converted = False
            row.decision = (
                f"kept: reverted by the whole-model check (whole model "
                f"{measured:.2f}x < {limit:g}x with {len(active)} layers replaced)"
            )
            record["reverted"].append(row.full_name)
        active = active[:keep]
        new_model = clone(original, replacements)
    record["replaced"] = len(active)
    record["speedup"] = record["rounds"][-1]["speedup"] if active else None
    return new_model, record


def _saved(row) -> int:
    if row.macs_before is None or row.macs_after is None:
        return 0
    return row.macs_before - row.macs_after
