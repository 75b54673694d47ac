"""What a genuine copy of a dataset looks like, and the checks against it.

The sha256 of files and archives, then the decoded arrays' shapes, dtypes,
per-class label counts, first labels and, for CIFAR-10, channel means.
"""

import dataclasses
import functools
import hashlib
from pathlib import Path

import numpy as np

NAMES = ("mnist", "fashion_mnist", "cifar10")
"""The dataset names `load` accepts, as in `keras.datasets`."""

Arrays = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


class DatasetFormatError(ValueError):
    """A file is not what it should be: corrupt, truncated or of the wrong shape."""


class ChecksumError(DatasetFormatError):
    """A file's sha256 differs from the pinned one."""


@dataclasses.dataclass(frozen=True)
class _Facts:
    """What a genuine copy of a dataset looks like (DATA.md, checked)."""

    image_shape: tuple[int, ...]
    label_shape: tuple[int, ...]
    train_counts: tuple[int, ...]
    test_counts: tuple[int, ...]
    first_train: tuple[int, ...] = ()
    first_test: tuple[int, ...] = ()
    channel_means: tuple[float, ...] = ()


_FACTS = {
    "mnist": _Facts(
        image_shape=(28, 28),
        label_shape=(),
        train_counts=(5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949),
        test_counts=(980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009),
        first_train=(5, 0, 4, 1, 9),
        first_test=(7, 2, 1, 0, 4),
    ),
    "fashion_mnist": _Facts(
        image_shape=(28, 28),
        label_shape=(),
        train_counts=(6000,) * 10,
        test_counts=(1000,) * 10,
    ),
    "cifar10": _Facts(
        image_shape=(32, 32, 3),
        label_shape=(1,),
        train_counts=(5000,) * 10,
        test_counts=(1000,) * 10,
        first_train=(6, 9, 9, 4, 1, 1, 2, 7, 8, 3),
        first_test=(3, 8, 8, 0, 6, 6, 1, 6, 3, 1),
        channel_means=(125.306918046875, 122.950394140625, 113.86538318359375),
    ),
}


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(functools.partial(f.read, 1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify_sha256(actual: str, expected: str, what: str) -> None:
    if actual != expected:
        raise ChecksumError(
            f"{what}: sha256 mismatch, expected {expected}, got {actual}"
        )


def _check(name: str, arrays: Arrays, *, thorough: bool) -> None:
    """Raises DatasetFormatError unless ``arrays`` look like the real dataset.

    Shapes, dtypes, per-class label counts and first labels are always checked;
    ``thorough`` adds the channel means (a fraction of a second for CIFAR-10).
    """
    facts = _FACTS[name]
    (x_train, y_train), (x_test, y_test) = arrays
    splits = (
        ("train", x_train, y_train, facts.train_counts, facts.first_train),
        ("test", x_test, y_test, facts.test_counts, facts.first_test),
    )
    for split, x, y, counts, first in splits:
        n = sum(counts)
        for key, array, shape in (
            (f"x_{split}", x, (n, *facts.image_shape)),
            (f"y_{split}", y, (n, *facts.label_shape)),
        ):
            if not isinstance(array, np.ndarray) or array.dtype != np.uint8:
                raise DatasetFormatError(
                    f"{name} {key}: expected a uint8 NumPy array, got "
                    f"{type(array).__name__} {getattr(array, 'dtype', '')}"
                )
            if array.shape != shape:
                raise DatasetFormatError(
                    f"{name} {key}: expected shape {shape}, got {array.shape}"
                )
        labels = y.reshape(-1)
        got = tuple(int(c) for c in np.bincount(labels, minlength=len(counts)))
        if got != counts:
            raise DatasetFormatError(
                f"{name} y_{split}: per-class counts {got}, expected {counts}"
            )
        if first and tuple(int(v) for v in labels[: len(first)]) != first:
            raise DatasetFormatError(
                f"{name} y_{split}: first labels {labels[: len(first)].tolist()}, "
                f"expected {list(first)}"
            )
    if thorough and facts.channel_means:
        means = x_train.mean(axis=tuple(range(x_train.ndim - 1)), dtype=np.float64)
        if not np.allclose(means, facts.channel_means, rtol=0, atol=1e-9):
            raise DatasetFormatError(
                f"{name} x_train: channel means {means.tolist()}, expected "
                f"{list(facts.channel_means)}"
            )
