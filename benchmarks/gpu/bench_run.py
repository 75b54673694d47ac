"""``fastconv bench`` for the GPU run: carried or synthetic data, one file.

Runs ``fastconv bench`` (the command line's own code, in this process) on one
dataset, into a scratch folder, and stores its ``results.json`` under the
dataset's name in ``--out``, so that a backend's bench runs share one file.

Where the data comes from:
    * MNIST: the ``fastconv.datasets`` cache, which ``run.sh`` points at the
      carried ``.gpu-carry/data`` (``FASTCONV_DATA_DIR``);
    * ``--data FILE``: an ``.npz`` with ``x_train``, ``y_train``, ``x_test``,
      ``y_test``, such as the CIFAR-10 subset ``make gpu-carry`` writes (the
      whole of CIFAR-10 is larger than what may travel to the device);
    * ``--synthetic N_TRAIN N_TEST``: seeded random images of the dataset's
      shape, for the CPU rehearsal, which must not need the network.

Usage:
    python -m benchmarks.gpu.bench_run --dataset mnist --out bench-jax.json \\
        -- --batch-size 512 --precision mixed_bfloat16
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.gpu.common import fill_commit, update_json

#: Image shape and classes of the datasets ``--synthetic`` imitates.
SHAPES = {"mnist": ((28, 28), 10), "cifar10": ((32, 32, 3), 10)}


def load_npz(path: str):
    """A loader for ``register_model``: the arrays of ``path``."""

    def load(dataset):
        with np.load(path, allow_pickle=False) as f:
            return (f["x_train"], f["y_train"]), (f["x_test"], f["y_test"])

    return load


def synthetic(n_train: int, n_test: int):
    """A loader for ``register_model``: seeded uint8 noise of the dataset's
    shape, with labels cycling through its classes."""

    def load(dataset):
        shape, classes = SHAPES[dataset]
        rng = np.random.default_rng(0)

        def split(n):
            x = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
            return x, (np.arange(n) % classes).astype("uint8")

        return split(n_train), split(n_test)

    return load


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, choices=sorted(SHAPES))
    parser.add_argument("--out", required=True, help="the JSON file to update")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--data", metavar="NPZ", help="arrays to use instead")
    source.add_argument("--synthetic", nargs=2, type=int, metavar=("N_TRAIN", "N_TEST"))
    parser.add_argument(
        "bench_args", nargs="*", help="options for fastconv bench, after --"
    )
    args = parser.parse_args(argv)

    from fastconv import cli
    from fastconv.bench import models

    if args.data or args.synthetic:
        load = load_npz(args.data) if args.data else synthetic(*args.synthetic)
        models.register_model(
            args.dataset, models.MODELS[args.dataset].builder, load=load
        )
    with tempfile.TemporaryDirectory(prefix="fastconv-gpu-bench-") as scratch:
        code = cli.main(
            ["bench", "--dataset", args.dataset, "--out", scratch, *args.bench_args]
        )
        results = Path(scratch) / "results.json"
        if code or not results.is_file():
            return code or 1
        data = json.loads(results.read_text())
    fill_commit(data["environment"])
    data["data_source"] = (
        f"npz {Path(args.data).name}"
        if args.data
        else "synthetic (seeded noise)"
        if args.synthetic
        else "fastconv.datasets"
    )
    update_json(Path(args.out), args.dataset, data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
