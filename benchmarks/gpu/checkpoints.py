"""Inference speedup of the trained CIFAR-10 checkpoints, if any exist.

Loads every ``benchmarks/models/*.keras`` and times inference at batch 1, 64
and 1024, all models interleaved in the same rounds
(``fastconv.timing.interleaved``); each model's speedup is the median time of
the checkpoint whose name contains ``baseline`` over its own. With no
checkpoint it prints why and writes nothing: the part is skipped, not failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from benchmarks.gpu.common import fill_commit, update_json

MODELS = Path(__file__).resolve().parents[1] / "models"
BATCHES = (1, 64, 1024)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="the JSON file to write")
    parser.add_argument("--models", default=str(MODELS))
    parser.add_argument("--batches", nargs="+", type=int, default=list(BATCHES))
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    paths = sorted(Path(args.models).glob("*.keras"))
    if not paths:
        print(
            f"checkpoints: skipped: no trained checkpoints ({args.models}/*.keras "
            "is absent)",
            file=sys.stderr,
        )
        return 0
    import keras

    from fastconv import timing

    models = {p.stem: keras.saving.load_model(p) for p in paths}
    baseline = next((name for name in models if "baseline" in name), None)
    out = Path(args.out)
    update_json(out, "environment", fill_commit(timing.environment()))
    rng = np.random.default_rng(0)
    for batch in args.batches:
        fns = {}
        for name, model in models.items():
            shape = (batch, *model.input_shape[1:])
            x = rng.random(shape, dtype=np.float32)
            fns[name] = timing.make_forward(model, x)
        times = timing.interleaved(fns, warmup=args.warmup, repeats=args.repeats)
        rows = {name: t.as_dict() for name, t in times.items()}
        if baseline:
            for name, row in rows.items():
                row["speedup"] = times[baseline].median / times[name].median
        update_json(out, f"batch_{batch}", {"baseline": baseline, "models": rows})
        print(f"checkpoints: batch {batch} done", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
