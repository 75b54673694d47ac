"""``make gpu-carry``'s data and commit: what the device cannot fetch itself.

Writes into ``.gpu-carry/`` (ignored by git):
    * ``data/mnist.npz``: the ``fastconv.datasets`` cache file, fetched first if
      absent (11 MiB), which ``run.sh`` uses as the device's cache;
    * ``data/cifar10-subset.npz``: a seeded random subset of CIFAR-10 (8,000
      training and 2,000 test images by default, 28 MiB). The whole dataset is
      162 MiB compressed, and everything that travels to the device must fit
      in 64 MiB;
    * ``commit.txt``: the commit of this checkout (``-dirty`` if it has
      uncommitted changes), since the device gets the working tree without
      ``.git``.

Then it prints what will travel (the repository's tracked files and
``.gpu-carry``) and fails if that is over the device's 64 MiB.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

import numpy as np

from benchmarks.gpu.common import CARRY, carried_commit

LIMIT_BYTES = 64 * 2**20


def cifar10_subset(path: Path, n_train: int, n_test: int, seed: int = 0) -> None:
    from fastconv import datasets

    (x_train, y_train), (x_test, y_test) = datasets.load(
        "cifar10", data_format="channels_last", progress=True
    )
    rng = np.random.default_rng(seed)
    train = np.sort(rng.permutation(len(x_train))[:n_train])
    test = np.sort(rng.permutation(len(x_test))[:n_test])
    np.savez_compressed(
        path,
        x_train=x_train[train],
        y_train=y_train[train],
        x_test=x_test[test],
        y_test=y_test[test],
    )


def travelling_bytes(root: Path) -> int:
    """Tracked files plus ``.gpu-carry``: what a device call sends."""
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True
    ).stdout.split(b"\0")
    total = sum(
        (root / name.decode()).stat().st_size
        for name in tracked
        if name and (root / name.decode()).is_file()
    )
    return total + sum(p.stat().st_size for p in CARRY.rglob("*") if p.is_file())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cifar-train", type=int, default=8000)
    parser.add_argument("--cifar-test", type=int, default=2000)
    args = parser.parse_args(argv)
    from fastconv import datasets

    data = CARRY / "data"
    data.mkdir(parents=True, exist_ok=True)
    (CARRY / "commit.txt").unlink(missing_ok=True)
    (CARRY / "commit.txt").write_text((carried_commit() or "unknown") + "\n")
    shutil.copyfile(datasets.fetch("mnist"), data / "mnist.npz")
    cifar = data / "cifar10-subset.npz"
    cifar10_subset(cifar, args.cifar_train, args.cifar_test)
    for path in sorted(CARRY.rglob("*")):
        if path.is_file():
            print(f"{path.stat().st_size / 2**20:8.1f} MiB  {path}")
    total = travelling_bytes(CARRY.parent)
    print(f"{total / 2**20:8.1f} MiB travel (tracked files + .gpu-carry)")
    if total > LIMIT_BYTES:
        print(f"over the device's {LIMIT_BYTES // 2**20} MiB: lower --cifar-train")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
