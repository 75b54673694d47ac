"""The local cache: one compressed ``.npz`` per dataset, written atomically."""

import contextlib
import dataclasses
import datetime
import errno
import json
import os
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np

from fastconv._files import chmod_as_created
from fastconv.datasets.checks import NAMES, Arrays, DatasetFormatError

_CACHE_FORMAT = 1
_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


class DatasetCacheWarning(UserWarning):
    """A dataset's cache file could not be used or written: unreadable, not a
    genuine copy, or a folder that cannot be written. The data were fetched
    from the sources instead; the message names the file and what was wrong."""


@dataclasses.dataclass(frozen=True)
class CacheEntry:
    """A dataset in the local cache.

    Attributes:
        name: The dataset.
        path: The ``.npz`` file.
        size_bytes: Its size on disk.
        source: The source it was fetched from, or None if unreadable.
    """

    name: str
    path: Path
    size_bytes: int
    source: str | None


def default_cache_dir() -> Path:
    """Returns ``$FASTCONV_DATA_DIR``, or ``~/.cache/fastconv`` when it is unset."""
    configured = os.environ.get("FASTCONV_DATA_DIR")
    return Path(configured or Path.home() / ".cache" / "fastconv").expanduser()


def _cache_path(name: str, cache_dir: str | os.PathLike | None) -> Path:
    return Path(cache_dir or default_cache_dir()) / f"{name}.npz"


def _read_cache(path: Path) -> Arrays:
    """The cached arrays.

    Raises:
        FileNotFoundError: no cache file.
        OSError: the file cannot be opened (a folder in its place, no
            permission, a file where its folder should be).
        DatasetFormatError: the file opens but is not a cache (corrupt,
            truncated, another format, missing arrays).
    """
    with open(path, "rb") as file:
        if not zipfile.is_zipfile(file):
            raise DatasetFormatError(
                "unreadable cache file (not a valid .npz file: not a zip archive)"
            )
        file.seek(0)
        try:
            with np.load(file, allow_pickle=False) as f:
                return (f["x_train"], f["y_train"]), (f["x_test"], f["y_test"])
        except Exception as exc:
            raise DatasetFormatError(
                f"unreadable cache file ({type(exc).__name__}: {exc})"
            ) from exc


def _set_aside(path: Path) -> str:
    """Moves a corrupt cache file to ``<name>.corrupt``, for a post-mortem;
    returns what became of it, for a warning."""
    aside = path.with_name(path.name + ".corrupt")
    try:
        os.replace(path, aside)
    except OSError as exc:
        return f"could not be moved aside ({type(exc).__name__}: {exc})"
    return f"moved aside to {aside.name}"


def _write_cache(path: Path, arrays: Arrays, source: str) -> None:
    """Writes the cache file atomically: a temporary file beside it, then rename.

    On any failure, the temporary file is removed and an existing cache file is
    left as it was; an `OSError` names ``path``, not the temporary file.
    """
    (x_train, y_train), (x_test, y_test) = arrays
    meta = {
        "format": _CACHE_FORMAT,
        "source": source,
        "written": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
        )
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(
                f,
                x_train=x_train,
                y_train=y_train,
                x_test=x_test,
                y_test=y_test,
                meta=np.array(json.dumps(meta)),
            )
            f.flush()
            os.fsync(f.fileno())
        chmod_as_created(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno is not None:
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


def _npz_problem(path: Path) -> str | None:
    """What makes ``path`` no cache file (cheaply: its zip directory), or None."""
    try:
        if not zipfile.is_zipfile(path):
            return "is not a valid .npz file (not a zip archive)"
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (OSError, zipfile.BadZipFile) as exc:
        return f"cannot be read ({type(exc).__name__}: {exc})"
    missing = [key for key in _ARRAYS if f"{key}.npy" not in names]
    if missing:
        return f"is not a dataset cache: it lacks {', '.join(missing)}"
    return None


def cached(cache_dir: str | os.PathLike | None = None) -> list[CacheEntry]:
    """Lists the datasets present in the cache, without loading their arrays.

    Args:
        cache_dir: The cache folder; None means `default_cache_dir()`.

    Returns:
        One `CacheEntry` per cached dataset, in the order of `NAMES`.

    Warns:
        DatasetCacheWarning: a cache file that is no valid ``.npz`` or lacks
            the dataset's arrays, naming the file; it is not listed.

    Raises:
        NotADirectoryError: the cache folder is a file.
    """
    folder = Path(cache_dir or default_cache_dir())
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(
            errno.ENOTDIR, "the dataset cache folder is a file", str(folder)
        )
    entries = []
    for name in NAMES:
        path = _cache_path(name, cache_dir)
        if path.is_dir():
            warnings.warn(
                f"fastconv.datasets: {name}: the cache file {path} is a folder, "
                "not an .npz file; it is not listed",
                DatasetCacheWarning,
                stacklevel=2,
            )
            continue
        if not path.is_file():
            continue
        problem = _npz_problem(path)
        if problem is not None:
            warnings.warn(
                f"fastconv.datasets: {name}: the cache file {path} {problem}; it is "
                "not listed, and the next load fetches the data again",
                DatasetCacheWarning,
                stacklevel=2,
            )
            continue
        try:
            with np.load(path, allow_pickle=False) as f:
                source = json.loads(str(f["meta"]))["source"]
        except Exception:
            source = None
        entries.append(CacheEntry(name, path, path.stat().st_size, source))
    return entries
