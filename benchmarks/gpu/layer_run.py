"""The layer benchmark of the GPU run: every precision in one process, one file.

Runs ``benchmarks.layers.run_point`` at the reference shape, then the short
grid's points, alternating the precisions (float32 and bfloat16 by default),
until ``--budget-s`` is spent: a point is started only while time is left, and
the file is rewritten after each, so a run stopped by ``timeout`` keeps what it
measured. ``--rehearse`` measures one tiny point of ``CPConv2D`` alone (every
implementation, against ``Conv2D``) with few repeats: the CPU rehearsal, where
compiling every layer twice would take most of its minute and a half.

The output is one JSON object: ``{"<precision>": <benchmarks.layers payload>}``,
each payload as ``python -m benchmarks.layers`` writes it.

Usage:
    KERAS_BACKEND=jax python -m benchmarks.gpu.layer_run --out layers-jax.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from benchmarks import layers
from benchmarks.gpu.common import fill_commit, update_json

#: The short grid after the reference point: small and large spatial sizes,
#: channel counts and batches, and k = 5.
SHORT_GRID = (
    {**layers.REFERENCE, "batch": 1, "size": 32},
    {**layers.REFERENCE, "batch": 64, "size": 56, "channels": 32},
    {**layers.REFERENCE, "batch": 64, "size": 8, "channels": 512},
    {**layers.REFERENCE, "batch": 1, "k": 5},
)
#: The rehearsal's point: a few microseconds per call on a CPU.
TINY = {"batch": 2, "size": 8, "channels": 16, "k": 3, "ratio": 0.25}


def schedule(points, precisions) -> list[tuple[dict, str]]:
    """(point, precision) in the order run: each point in every precision
    before the next point."""
    return [(p, precision) for p in points for precision in precisions]


def rehearsal_only(name: str) -> None:
    """Makes ``benchmarks.layers`` build and summarise the layer ``name`` alone,
    with at most 5 measured rounds of about 50 ms."""
    every = layers.layer_kwargs
    layers.LAYERS = (name,)
    layers.layer_kwargs = lambda p: {name: every(p)[name]}
    layers.MAX_REPEATS, layers.TARGET_S = 5, 0.05


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="the JSON file to write")
    parser.add_argument(
        "--precisions",
        nargs="+",
        default=["float32", "bfloat16"],
        choices=layers.PRECISIONS,
    )
    parser.add_argument("--budget-s", type=float, default=60.0)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--rehearse", action="store_true", help="one tiny point, few repeats"
    )
    args = parser.parse_args(argv)
    if args.rehearse:
        points = [TINY]
        rehearsal_only("CPConv2D")
    else:
        points = [dict(layers.REFERENCE), *SHORT_GRID]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    payloads = {}
    for point, precision in schedule(points, args.precisions):
        elapsed = time.perf_counter() - start
        if elapsed > args.budget_s:
            print(f"layers: budget spent after {elapsed:.0f} s", file=sys.stderr)
            break
        _, jit, env = layers.start_run("default", True, precision=precision)
        payload = payloads.setdefault(
            precision,
            {
                "environment": fill_commit(env),
                "grid_subsampled": True,
                "warmup": args.warmup,
                "repeats": args.repeats,
                "results": [],
                "summary": [],
            },
        )
        t0 = time.perf_counter()
        result = layers.run_point(
            point, jit=jit, warmup=args.warmup, repeats=args.repeats
        )
        payload["results"].append(result)
        payload["summary"] += layers.summarise(result)
        update_json(out, precision, payload)
        print(
            f"layers: {precision} {point} {time.perf_counter() - t0:.1f} s",
            file=sys.stderr,
            flush=True,
        )
    return 0 if payloads else 1


if __name__ == "__main__":
    raise SystemExit(main())
