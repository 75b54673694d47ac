"""Issue 15's network targets: a Dense MLP, a 1-D char-CNN and a 3-D conv.

Three workloads, each a dense original against its fastconv counterparts,
timed interleaved (``fastconv.timing.interleaved``, every variant of a
workload once per round, in a shuffled order) in one process:

1. *mlp*: the MLP of examples/why_cnn_slower_than_mlp.py (784-512-512-10,
   669,706 parameters) against ``fastconv.convert_model(mlp,
   layer_types=("dense",), rank=64)`` (each hidden ``Dense`` a
   ``LowRankDense``; the classifier is kept). Both compiled with RMSprop and
   sparse cross-entropy; the training step is ``model.train_on_batch`` at
   batch 128 (Keras's compiled train function, optimizer update included).
   Target: the training step >= 2x faster. A yardstick beside them,
   ``keras-factored``: the same factorization built from plain Keras layers
   (each hidden ``Dense`` as ``Dense(rank, use_bias=False)`` then the
   ``Dense`` of its units, the dropout kept), which tells ``LowRankDense``'s
   own cost from what any factorization of this network gets.
2. *char_cnn*: a char-CNN in the style of Zhang et al. 2015 ("small"): one-hot
   input (batch 32, length 256, 70 characters), six ``Conv1D`` of 256
   channels (kernels 7, 7, 3, 3, 3, 3, ReLU, max-pool 3 after the 1st, 2nd and
   6th), a Dense head; against ``convert_model(model, "cp", rank)`` for each
   rank of ``CHAR_RANKS`` (the first convolution, on 70 input channels, is
   kept, as ``convert_model`` does by default) and, to show what that kept
   layer costs, that first rank's model with ``conv1`` converted too (the
   ``-all`` variant). The CP factors come from ``CP_SWEEPS`` ALS sweeps: the
   weights are random, and the time does not depend on them. Inference
   (``fastconv.timing.make_forward``) and a ``train_on_batch`` step. Target:
   CP inference >= 3x the whole model's.
3. *conv3d*: ``FactorizedConv3D(64, 3, padding="same")`` (R(2+1)D, its
   default width keeps ``Conv3D``'s parameters and multiply-adds) and one with
   ``mid_filters=64``, against ``keras.layers.Conv3D(64, 3, padding="same")``
   on a 16 x 56 x 56 x 64 input at batch 1: forward (``make_forward``) and a
   training step (``make_grad_step``, as benchmarks/layers.py times layers).
   Target: >= 1.5x in both.

Each variant's ``"auto"`` choices are recorded, and the char-CNN's dense and
CP models are profiled layer by layer in inference (``fastconv.profile_model``)
to show where the whole-model time goes. Ratios are dense median / variant
median, with the 95% interval of the median of the per-round ratios.

Writes ``network-targets.json`` (every raw sample and
``fastconv.timing.environment()``) and ``network-targets.md`` under ``--out``;
docs/benchmarks.md ("Dense, 1-D and 3-D targets") quotes them.

Usage:
    python -m benchmarks.network_targets --quick      # tiny shapes, a smoke run
    python -m benchmarks.network_targets --repeats 5 \\
        --out benchmarks/results/network-targets
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from benchmarks.layers import _median_ci, start_run, timed_rounds

#: The full run's shapes; ``QUICK`` is a tiny version for the smoke test.
FULL = {
    "mlp": {"batch": 128, "rank": 64},
    "char_cnn": {
        "batch": 32,
        "length": 256,
        "alphabet": 70,
        "filters": 256,
        "kernels": (7, 7, 3, 3, 3, 3),
        "pool_after": (0, 1, 5),
        "head": 256,
        "classes": 4,
        "ranks": (32, 0.1),
    },
    "conv3d": {"batch": 1, "depth": 16, "size": 56, "channels": 64, "mid": 64},
}
QUICK = {
    "mlp": {"batch": 16, "rank": 8},
    "char_cnn": {
        **FULL["char_cnn"],
        "batch": 4,
        "length": 128,
        "filters": 16,
        "head": 16,
        "ranks": (4,),
    },
    "conv3d": {"batch": 1, "depth": 4, "size": 8, "channels": 8, "mid": 4},
}
#: ALS sweeps of each CP decomposition. The weights are random and only speed
#: is measured, which the factors' values do not change. With TensorLy's ALS
#: on the 2-core CPU, one 7 x 256 x 256 kernel at rank 32 took 4.5 s of SVD
#: initialisation and about 1.4 s per sweep: the default 200 sweeps would take
#: about 5 minutes per layer.
CP_SWEEPS = 1
#: A 1-minute load average at the start of the run from which the result
#: says the machine was shared (the run itself has not started working yet).
SHARED_LOAD = 0.5
#: The issue's targets: (workload, mode, variant family) -> speedup over dense.
TARGETS = {
    ("mlp", "train", "lowrank"): 2.0,
    ("char_cnn", "forward", "cp"): 3.0,
    ("conv3d", "forward", "factorized"): 1.5,
    ("conv3d", "train", "factorized"): 1.5,
}


def _compile(model) -> None:
    import keras

    model.compile(
        optimizer=keras.optimizers.RMSprop(), loss="sparse_categorical_crossentropy"
    )


def _train_step(model, x, y):
    """``model.train_on_batch`` on ``(x, y)``, as a function of no arguments
    (its loss comes back as a Python float, so the step is done on return)."""
    return lambda: model.train_on_batch(x, y)


def _auto_choices(model) -> list[str]:
    """``"layer: implementation"`` for every fastconv layer that chose one."""
    return sorted(
        f"{layer.name}: {impl}"
        for layer in model.layers
        for impl in set(getattr(layer, "_auto_choices", {}).values())
    )


@contextlib.contextmanager
def _random_weights():
    """Silences ``ConversionAccuracyWarning``: the models are untrained (random
    weights have no low-rank structure), and only their speed is measured."""
    from fastconv import ConversionAccuracyWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConversionAccuracyWarning)
        yield


def mlp_models(shape: dict) -> tuple[dict, tuple]:
    """The example's MLP and its ``LowRankDense`` conversion, compiled."""
    import fastconv
    from examples.why_cnn_slower_than_mlp import mlp

    dense = mlp()
    with _random_weights():
        lowrank = fastconv.convert_model(
            dense, layer_types=("dense",), rank=shape["rank"], progress=False
        ).model
    rng = np.random.default_rng(0)
    x = rng.random((shape["batch"], 784), dtype="float32")
    y = rng.integers(0, 10, shape["batch"])
    models = {"dense": dense, "lowrank": lowrank}
    models["keras-factored"] = _keras_factored(dense, shape["rank"])
    return models, (x, y)


def _keras_factored(mlp, rank: int):
    """``mlp`` with each hidden ``Dense`` as two plain Keras ``Dense`` layers
    through ``rank`` units (the first without bias): ``LowRankDense``'s
    arithmetic without fastconv. Random weights; other layers as they are."""
    import keras

    layers = [keras.Input(mlp.input_shape[1:])]
    for layer in mlp.layers:
        config = layer.get_config()
        if isinstance(layer, keras.layers.Dense) and layer is not mlp.layers[-1]:
            name = f"{layer.name}_in"
            layers.append(keras.layers.Dense(rank, use_bias=False, name=name))
        layers.append(type(layer).from_config(config))
    return keras.Sequential(layers, name="keras_factored")


def char_cnn(shape: dict):
    """Zhang et al.'s small char-CNN on ``shape``'s length and widths."""
    import keras

    layers = [keras.Input((shape["length"], shape["alphabet"]))]
    for i, k in enumerate(shape["kernels"]):
        layers.append(
            keras.layers.Conv1D(
                shape["filters"], k, activation="relu", name=f"conv{i + 1}"
            )
        )
        if i in shape["pool_after"]:
            layers.append(keras.layers.MaxPooling1D(3, name=f"pool{i + 1}"))
    layers += [
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(shape["head"], activation="relu", name="fc"),
        keras.layers.Dense(shape["classes"], activation="softmax", name="classifier"),
    ]
    return keras.Sequential(layers, name="char_cnn")


def char_cnn_models(shape: dict) -> tuple[dict, tuple]:
    """The char-CNN and its CP conversions, compiled, and a one-hot batch."""
    import keras

    import fastconv

    keras.utils.set_random_seed(0)
    dense = char_cnn(shape)
    models = {"dense": dense}
    first = f"cp-r{shape['ranks'][0]:g}"
    with _random_weights():
        for rank in shape["ranks"]:
            models[f"cp-r{rank:g}"] = fastconv.convert_model(
                dense, "cp", rank, progress=False, n_iter_max=CP_SWEEPS
            ).model
        models[f"{first}-all"] = fastconv.convert_model(
            models[first],
            "cp",
            shape["ranks"][0],
            layers=["conv1"],
            skip_first=False,
            progress=False,
            n_iter_max=CP_SWEEPS,
        ).model
    rng = np.random.default_rng(0)
    chars = rng.integers(0, shape["alphabet"], (shape["batch"], shape["length"]))
    x = np.eye(shape["alphabet"], dtype="float32")[chars]
    y = rng.integers(0, shape["classes"], shape["batch"])
    return models, (x, y)


def conv3d_layers(shape: dict) -> tuple[dict, np.ndarray]:
    """``Conv3D`` and two ``FactorizedConv3D``, built, and an input batch."""
    import keras

    import fastconv

    c = shape["channels"]
    x = np.random.default_rng(0).standard_normal(
        (shape["batch"], shape["depth"], shape["size"], shape["size"], c),
        dtype="float32",
    )
    layers = {
        "dense": keras.layers.Conv3D(c, 3, padding="same"),
        "factorized": fastconv.FactorizedConv3D(c, 3, padding="same"),
        f"factorized-mid{shape['mid']}": fastconv.FactorizedConv3D(
            c, 3, padding="same", mid_filters=shape["mid"]
        ),
    }
    for layer in layers.values():
        layer.build(x.shape)
    return layers, x


def _rows(timings: dict, extra: dict) -> dict:
    """Each variant's timing, its speedup over ``dense`` and the interval."""
    base = timings["dense"]
    rows = {}
    for name, timing in timings.items():
        paired = [
            b / m for b, m in zip(base.samples_ns, timing.samples_ns, strict=True)
        ]
        low, high = _median_ci(paired)
        rows[name] = {
            **timing.as_dict(),
            "speedup": base.median / timing.median,
            "paired_median": float(np.median(paired)),
            "speedup_ci95": [low, high],
            **extra.get(name, {}),
        }
    return rows


def _timed(fns: dict, *, warmup: int, repeats: int, exact: bool, extra: dict) -> dict:
    """Interleaved rounds of ``fns``: ``repeats`` of them if ``exact`` (a
    ``--quick`` run), else at least ``repeats``, more for cheap workloads
    (``benchmarks.layers.timed_rounds``)."""
    from fastconv.timing import interleaved

    for fn in fns.values():  # traces, so that "auto" chooses outside the clock
        fn()
    if exact:
        timings = interleaved(fns, warmup=warmup, repeats=repeats)
    else:
        timings = timed_rounds(fns, warmup=warmup, repeats=repeats)
    return _rows(timings, extra)


def run_mlp(shape: dict, *, jit: bool, warmup: int, repeats: int, exact: bool) -> dict:
    from fastconv.timing import make_forward

    models, (x, y) = mlp_models(shape)
    for model in models.values():
        _compile(model)
    info = {n: {"params": int(m.count_params())} for n, m in models.items()}
    return {
        "shape": shape,
        "modes": {
            "train": _timed(
                {n: _train_step(m, x, y) for n, m in models.items()},
                warmup=warmup,
                repeats=repeats,
                exact=exact,
                extra=info,
            ),
            "forward": _timed(
                {n: make_forward(m, x, jit=jit) for n, m in models.items()},
                warmup=warmup,
                repeats=repeats,
                exact=exact,
                extra=info,
            ),
        },
    }


def _profile_rows(model, x, *, jit: bool, repeats: int) -> list[dict]:
    """Inference time and multiply-adds of each layer, from ``profile_model``."""
    import fastconv

    result = fastconv.profile_model(
        model, x, mode="inference", warmup=1, repeats=repeats, jit=jit
    )
    return [
        {
            "path": row.path,
            "class_name": row.class_name,
            "macs": row.macs,
            "forward_s": row.forward_s,
        }
        for row in result.layers
    ]


def run_char_cnn(
    shape: dict, *, jit: bool, warmup: int, repeats: int, exact: bool
) -> dict:
    from fastconv.timing import make_forward

    models, (x, y) = char_cnn_models(shape)
    for model in models.values():
        _compile(model)
    forward = {n: make_forward(m, x, jit=jit) for n, m in models.items()}
    train = {n: _train_step(m, x, y) for n, m in models.items()}
    modes = {}
    for mode, fns in (("forward", forward), ("train", train)):
        for fn in fns.values():
            fn()
        info = {
            n: {"params": int(m.count_params()), "auto_choices": _auto_choices(m)}
            for n, m in models.items()
        }
        modes[mode] = _timed(
            fns, warmup=warmup, repeats=repeats, exact=exact, extra=info
        )
    best = max(
        (n for n in models if n.startswith("cp") and not n.endswith("-all")),
        key=lambda n: modes["forward"][n]["speedup"],
    )
    profiles = {
        n: _profile_rows(models[n], x, jit=jit, repeats=repeats)
        for n in ("dense", best)
    }
    return {"shape": shape, "modes": modes, "profiles": profiles}


def run_conv3d(
    shape: dict, *, jit: bool, warmup: int, repeats: int, exact: bool
) -> dict:
    from fastconv.timing import make_forward, make_grad_step

    modes = {}
    for mode, make in (("forward", make_forward), ("train", make_grad_step)):
        layers, x = conv3d_layers(shape)
        fns = {n: make(layer, x, jit=jit) for n, layer in layers.items()}
        for fn in fns.values():
            fn()
        info = {
            n: {
                "params": int(layer.count_params()),
                "auto_choices": sorted(
                    set(getattr(layer, "_auto_choices", {}).values())
                ),
            }
            for n, layer in layers.items()
        }
        modes[mode] = _timed(
            fns, warmup=warmup, repeats=repeats, exact=exact, extra=info
        )
    return {"shape": shape, "modes": modes}


RUNS = {"mlp": run_mlp, "char_cnn": run_char_cnn, "conv3d": run_conv3d}


def judge(results: dict) -> list[dict]:
    """Each target against every variant of its family (``cp`` is every CP
    rank, ``factorized`` every width): the speedup (ratio of medians), met or
    not, and whether the 95% interval of the paired per-round ratio lies
    wholly above the target (``interval_above``)."""
    out = []
    for (workload, mode, family), goal in TARGETS.items():
        if workload not in results:
            continue
        rows = results[workload]["modes"][mode]
        for name, row in rows.items():
            if name != family and not name.startswith(f"{family}-"):
                continue
            out.append(
                {
                    "workload": workload,
                    "mode": mode,
                    "variant": name,
                    "target": goal,
                    "speedup": row["speedup"],
                    "paired_median": row["paired_median"],
                    "speedup_ci95": row["speedup_ci95"],
                    "met": row["speedup"] >= goal,
                    "interval_above": row["speedup_ci95"][0] >= goal,
                }
            )
    return out


def markdown(payload: dict) -> str:
    env = payload["environment"]
    cpu = env["cpu"]
    start, end = payload["load_average"]["start"], payload["load_average"]["end"]
    lines = [
        "# Dense, 1-D and 3-D targets (issue 15)",
        "",
        f"{env['date']}, commit {env['git_commit']}, {env['backend']} "
        f"({'XLA' if env['jit'] else 'no XLA'}), {env['precision']}, on "
        f"{cpu['model']} ({cpu['cores']} cores; "
        f"{', '.join(cpu['vector_extensions'])}). "
        + (
            "Tiny shapes (`--quick`): the numbers mean nothing. "
            if payload["quick"]
            else ""
        )
        + (
            "The machine was shared: other jobs were running when this run started"
            if payload["shared_machine"]
            else "No other job was running when this run started"
        )
        + f" (load average {start[0]:.1f} at the start, {end[0]:.1f} at the end, "
        f"on {env['cpu_count']} CPUs); each workload's variants ran interleaved, "
        "so the ratios are what to read, not the absolute times. Speedup = "
        "dense median / variant median; paired = the median of the per-round "
        "ratios (dense / variant in the same round), with its 95% interval. "
        "Met: speedup >= target; sure: the interval is above the target too.",
        "",
        "| target | variant | speedup | paired [95%] | met | sure |",
        "|---|---|---|---|---|---|",
    ]
    for t in payload["targets"]:
        low, high = t["speedup_ci95"]
        lines.append(
            f"| {t['workload']} {t['mode']} >= {t['target']}x | {t['variant']} | "
            f"{t['speedup']:.2f}x | {t['paired_median']:.2f}x [{low:.2f}, "
            f"{high:.2f}] | {'yes' if t['met'] else 'no'} | "
            f"{'yes' if t['interval_above'] else 'no'} |"
        )
    lines += [
        "",
        "| workload | mode | variant | params | median ms | p10-p90 ms | speedup "
        "| paired [95%] | auto's choices |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for workload, result in payload["results"].items():
        for mode, rows in result["modes"].items():
            for name, r in rows.items():
                low, high = r["speedup_ci95"]
                lines.append(
                    f"| {workload} | {mode} | {name} | {r['params']:,} | "
                    f"{r['median_s'] * 1e3:.2f} | {r['p10_s'] * 1e3:.2f}-"
                    f"{r['p90_s'] * 1e3:.2f} | {r['speedup']:.2f}x | "
                    f"{r['paired_median']:.2f}x [{low:.2f}, {high:.2f}] | "
                    f"{'; '.join(r.get('auto_choices', [])) or '-'} |"
                )
    for name, rows in payload["results"]["char_cnn"].get("profiles", {}).items():
        total = sum(r["forward_s"] or 0.0 for r in rows)
        lines += [
            "",
            f"char_cnn {name}, per layer (inference, `fastconv.profile_model`): "
            + ", ".join(
                f"{r['path']} {(r['forward_s'] or 0.0) * 1e3:.2f} ms "
                f"({(r['forward_s'] or 0.0) / total:.0%})"
                for r in rows
                if r["forward_s"] is not None
            )
            + ".",
        ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny shapes and one CP rank: checks that the run works, measures "
        "nothing meaningful",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=2,
        help="unmeasured rounds before the measured ones",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=5,
        help="measured rounds at least (cheap workloads get more)",
    )
    parser.add_argument(
        "--jit",
        choices=("default", "on", "off"),
        default="default",
        help="XLA on TensorFlow for the inference and layer timings; default: as "
        "Keras's fit/predict would (off on a CPU-only machine)",
    )
    parser.add_argument(
        "--only",
        choices=tuple(RUNS),
        nargs="+",
        help="these workloads alone (only their targets are judged)",
    )
    parser.add_argument(
        "--out",
        default="benchmarks/results/network-targets",
        help="folder for network-targets.json/.md",
    )
    args = parser.parse_args(argv)
    _, jit, env = start_run(args.jit, keep=True)
    shapes = QUICK if args.quick else FULL
    load = os.getloadavg()
    results = {}
    for name in args.only or RUNS:
        start = time.perf_counter()
        results[name] = RUNS[name](
            shapes[name],
            jit=jit,
            warmup=args.warmup,
            repeats=args.repeats,
            exact=args.quick,
        )
        print(f"{name}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    payload = {
        "environment": env,
        "quick": args.quick,
        "shared_machine": load[0] >= SHARED_LOAD,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "results": results,
        "load_average": {"start": load, "end": os.getloadavg()},
        "targets": judge(results),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "network-targets.json").write_text(json.dumps(payload, indent=1))
    text = markdown(payload)
    (out / "network-targets.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
