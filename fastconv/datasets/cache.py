"""The local cache: one compressed ``.npz`` per dataset, written atomically."""

import contextlib
import dataclasses
import datetime
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from fastconv.datasets.checks import NAMES, Arrays, DatasetFormatError

_CACHE_FORMAT = 1


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
    """Raises FileNotFoundError when absent, DatasetFormatError when unreadable."""
    try:
        with np.load(path, allow_pickle=False) as f:
            return (f["x_train"], f["y_train"]), (f["x_test"], f["y_test"])
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise DatasetFormatError(
            f"unreadable cache file ({type(exc).__name__}: {exc})"
        ) from exc


def _write_cache(path: Path, arrays: Arrays, source: str) -> None:
    """Writes the cache file atomically: a temporary file beside it, then rename.

    On any failure, the temporary file is removed and an existing cache file is
    left as it was.
    """
    (x_train, y_train), (x_test, y_test) = arrays
    meta = {
        "format": _CACHE_FORMAT,
        "source": source,
        "written": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
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
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def cached(cache_dir: str | os.PathLike | None = None) -> list[CacheEntry]:
    """Lists the datasets present in the cache, without loading their arrays.

    Args:
        cache_dir: The cache folder; None means `default_cache_dir()`.

    Returns:
        One `CacheEntry` per cached dataset, in the order of `NAMES`.
    """
    entries = []
    for name in NAMES:
        path = _cache_path(name, cache_dir)
        if not path.is_file():
            continue
        try:
            with np.load(path, allow_pickle=False) as f:
                source = json.loads(str(f["meta"]))["source"]
        except Exception:
            source = None
        entries.append(CacheEntry(name, path, path.stat().st_size, source))
    return entries
