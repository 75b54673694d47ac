"""Checks on the CLI's arguments and files, shared by every command.

The argparse types (`positive_int`, `non_negative_int`, `regex`,
`input_file`) raise `argparse.ArgumentTypeError` with a message that starts
with "must", which `fastconv.cli._errors.Parser` puts after the argument's
name. The ``add_`` functions declare the arguments that several commands
take alike. The other checks run before a command's work and raise
`UsageError`.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path

from fastconv.cli._errors import UsageError


def positive_int(text: str) -> int:
    """An argparse type: an int >= 1.

    Example:
        >>> positive_int("8")
        8
    """
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """An argparse type: an int >= 0."""
    return _int_at_least(text, 0)


def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be an integer >= {low}, received {text!r}"
        ) from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be >= {low}, received {value}")
    return value


def regex(text: str) -> str:
    """An argparse type: a regular expression that compiles; returns the text."""
    try:
        re.compile(text)
    except re.error as exc:
        raise argparse.ArgumentTypeError(
            f"must be a regular expression ({exc}), received {text!r}"
        ) from None
    return text


def input_file(text: str) -> Path:
    """An argparse type: a file that exists and can be read."""
    path = Path(text)
    if path.is_dir():
        problem = "must be a file, not a folder"
    elif not path.exists():
        problem = "must be an existing file: no such file"
    elif not os.access(path, os.R_OK):
        problem = "must be a readable file: permission denied"
    else:
        return path
    raise argparse.ArgumentTypeError(f"{problem}, received {text!r}")


def add_model(parser: argparse.ArgumentParser, help: str) -> None:
    """Adds the positional ``MODEL.keras``, a readable file, as ``args.model``."""
    parser.add_argument("model", type=input_file, metavar="MODEL.keras", help=help)


def add_no_progress(
    parser: argparse.ArgumentParser, help: str = "no progress bar"
) -> None:
    """Adds ``--no-progress``, which sets ``args.progress`` to False."""
    parser.add_argument(
        "--no-progress", dest="progress", action="store_false", help=help
    )


def add_batch_size(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    """Adds ``--batch-size``, an int >= 1, 32 by default."""
    parser.add_argument("--batch-size", type=positive_int, default=32, help=help)


def add_limit(parser: argparse.ArgumentParser, help: str) -> None:
    """Adds ``--limit N``, an int >= 1 or None: how many examples to use."""
    parser.add_argument(
        "--limit", type=positive_int, default=None, metavar="N", help=help
    )


def add_random_state(parser: argparse.ArgumentParser, help: str) -> None:
    """Adds ``--random-state``, an int >= 0 or None, for `seed_options`."""
    parser.add_argument(
        "--random-state", type=non_negative_int, default=None, help=help
    )


def check_outputs(
    outputs: Mapping[str, Path | None],
    inputs: Mapping[str, Path | None],
    *,
    force: bool,
    suffixes: Mapping[str, str] | None = None,
    may_replace_input: tuple[str, ...] = (),
) -> None:
    """Checks, before any work, that every output can be written where asked.

    Args:
        outputs: Argument name -> output path (None: not asked for).
        inputs: Argument name -> input path, which no output may replace.
        force: Whether existing outputs may be replaced.
        suffixes: Argument name -> the suffix its path must end in.
        may_replace_input: the outputs that may replace an input with
            ``force`` (a converted model in place of its original); any other
            output (a report, a plot) never replaces an input.

    Raises:
        UsageError: naming the first output that cannot be written.
    """
    seen: dict[Path, str] = {}
    for argument, path in outputs.items():
        if path is None:
            continue
        suffix = (suffixes or {}).get(argument)
        if suffix is not None and path.suffix != suffix:
            raise UsageError(argument, str(path), f"must end in {suffix}")
        parent = path.parent
        if path.is_dir():
            raise UsageError(argument, str(path), "is a folder, not a file name")
        if not parent.is_dir():
            raise UsageError(argument, str(path), "is in a folder that does not exist")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise UsageError(
                argument, str(path), "is in a folder that cannot be written"
            )
        resolved = path.resolve()
        if resolved in seen:
            raise UsageError(argument, str(path), f"is also given as {seen[resolved]}")
        seen[resolved] = argument
        for name, source in inputs.items():
            if source is None or not _same_file(path, source):
                continue
            if argument not in may_replace_input:
                raise UsageError(argument, str(path), f"would replace the input {name}")
            if not force:
                raise UsageError(
                    argument,
                    str(path),
                    f"would replace the input {name}; give --force to replace it",
                )
        if path.exists() and not force:
            raise UsageError(
                argument, str(path), "already exists; give --force to replace it"
            )


def check_output_folder(
    argument: str, folder: Path, *, force: bool, holds: tuple[str, ...] = ()
) -> None:
    """Checks, before any work, that ``folder`` can be made or written into.

    Args:
        argument: The option that names the folder, for the message.
        folder: A folder that exists, or that can be made in one that does.
        force: Whether the files in ``holds`` may be replaced.
        holds: The files the command writes in the folder.

    Raises:
        UsageError: naming ``argument`` and ``folder``.
    """
    if folder.exists() and not folder.is_dir():
        raise UsageError(
            argument, str(folder), "is not writable: it is a file, not a folder"
        )
    if not folder.exists():
        if folder.parent.exists() and not folder.parent.is_dir():
            raise UsageError(
                argument,
                str(folder),
                f"is not writable: {folder.parent} is a file, not a folder",
            )
        if not folder.parent.is_dir():
            raise UsageError(
                argument, str(folder), "is in a folder that does not exist"
            )
        if not os.access(folder.parent, os.W_OK | os.X_OK):
            raise UsageError(
                argument, str(folder), "is in a folder that cannot be written"
            )
        return
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(argument, str(folder), "is a folder that cannot be written")
    for name in holds:
        if (folder / name).exists() and not force:
            raise UsageError(
                argument,
                str(folder),
                f"already holds {name}; give --force to replace it",
            )


def seed_options(method: str | None, random_state: int | None, uses_seed: bool):
    """``{"random_state": seed}`` for a method that takes a seed (0 when
    ``--random-state`` is not given), else ``{}``.

    Raises:
        UsageError: naming ``--random-state`` when it is given for a method
            that uses no seed, which would otherwise ignore it.
    """
    if uses_seed:
        return {"random_state": 0 if random_state is None else random_state}
    if random_state is not None:
        raise UsageError(
            "--random-state",
            str(random_state),
            f"does not apply to --method {method}, which uses no random seed",
        )
    return {}


def _same_file(path: Path, other: Path) -> bool:
    """Whether two paths name one file (a link or another spelling included)."""
    if path.exists() and other.exists():
        return os.path.samefile(path, other)
    return path.resolve() == other.resolve()


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation, or None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as file:
            for line in file:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def check_batch_memory(
    argument: str, batch_size: int, bytes_per_example: int, available=None
) -> None:
    """Refuses a batch whose tensors alone would not fit in available memory.

    Args:
        argument: The option that sets the batch size, for the message.
        batch_size: Examples in one batch.
        bytes_per_example: A lower bound of the memory one example needs.
        available: Bytes available; default: `available_memory()`.

    Raises:
        UsageError: when ``batch_size * bytes_per_example`` exceeds it.
    """
    available = available_memory() if available is None else available
    needed = batch_size * bytes_per_example
    if available is not None and needed > available:
        raise UsageError(
            argument,
            batch_size,
            f"needs at least {_in_units(needed)} for one batch "
            f"({bytes_per_example:,} bytes an example), more than the "
            f"{_in_units(available)} available",
        )


def _in_units(size: float) -> str:
    """``size`` bytes in the largest binary unit that keeps it >= 1."""
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.1f} {unit}" if unit != "bytes" else f"{size:.0f} bytes"
        size /= 1024
    return f"{size:.1f} TiB"


def float32_bytes(shape) -> int:
    """Bytes of one float32 tensor of ``shape`` (its known sizes)."""
    return 4 * math.prod(int(size) for size in shape if size is not None)


def example_shape(model, given: tuple[int, ...] | None) -> tuple[int, ...]:
    """The shape of one example: ``--input-shape`` (``given``), or the model's.

    Raises:
        UsageError: naming ``--input-shape`` when it has the wrong number of
            sizes or a size other than the model's input has, or when it is
            needed: the model's input sizes are unknown.
    """
    inputs = getattr(model, "inputs", None) or []
    shapes = [tuple(tensor.shape[1:]) for tensor in inputs]
    if given is not None:
        text = ",".join(map(str, given))
        if len(shapes) == 1 and len(given) != len(shapes[0]):
            raise UsageError(
                "--input-shape",
                text,
                f"must have {len(shapes[0])} sizes, as the model's input "
                f"{shapes[0]} has",
            )
        if len(shapes) == 1 and any(
            want is not None and have != want
            for have, want in zip(given, shapes[0], strict=True)
        ):
            raise UsageError(
                "--input-shape",
                text,
                f"does not fit the model's input {(None, *shapes[0])}",
            )
        return given
    if not shapes:
        raise UsageError(
            "--input-shape", None, "is needed: the model does not say its input shape"
        )
    for shape in shapes:
        if None in shape:
            raise UsageError(
                "--input-shape",
                None,
                f"is needed: the model's input shape {shape} has unknown sizes",
            )
    return shapes[0]


def check_fits(argument: str, value: str, array, model, label: str = "") -> None:
    """Refuses ``array`` unless its examples fit the model's one input.

    Args:
        argument: The option that gave the array, for the message.
        value: The option's value as given (a file name).
        array: The examples, batch axis first.
        model: The model whose input they must fit (None sizes fit any).
        label: What the array is, before "of shape" (``"x "``).

    Raises:
        UsageError: naming ``argument``, ``value``, the shapes.
    """
    inputs = getattr(model, "inputs", None) or []
    if len(inputs) != 1:
        return
    expected = tuple(inputs[0].shape[1:])
    shape = tuple(array.shape[1:])
    if len(shape) != len(expected) or any(
        want is not None and have != want
        for have, want in zip(shape, expected, strict=True)
    ):
        raise UsageError(
            argument,
            value,
            f"holds {label or 'an array '}of shape {array.shape}; the model takes "
            f"(N, {', '.join(str(size) for size in expected)})",
        )


def largest_activation_bytes(model) -> int:
    """Bytes of the largest float32 output, of one example, among the layers."""
    sizes = [0]
    for layer in getattr(model, "layers", []):
        try:
            shape = tuple(layer.output.shape[1:])
        except (AttributeError, ValueError):
            continue
        if None not in shape:
            sizes.append(float32_bytes(shape))
    return max(sizes)


def model_example_bytes(model) -> int:
    """A lower bound of one example's memory in ``model``: its inputs' known
    sizes and its largest activation, in float32."""
    inputs = getattr(model, "inputs", None) or []
    size = sum(float32_bytes(tuple(tensor.shape[1:])) for tensor in inputs)
    return size + largest_activation_bytes(model)


#: The files `keras.saving.load_model` reads as a whole model.
_MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")


def load_model(argument: str, path: Path, *, compile: bool = True):
    """Loads a saved Keras model, or raises `UsageError` naming ``path``.

    A ``.keras`` file is checked as a zip archive first (its members' CRCs
    included), so a truncated or corrupt file says so.
    """
    import keras

    if path.suffix not in _MODEL_SUFFIXES:
        raise UsageError(
            argument,
            str(path),
            "must be a saved Keras model: a .keras file (or a legacy .h5), not "
            f"{path.suffix or 'a file without a suffix'}",
        )
    if path.suffix == ".keras":
        if not zipfile.is_zipfile(path):
            raise UsageError(
                argument,
                str(path),
                "is not a .keras model: not a zip archive (truncated or corrupt?)",
            )
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise UsageError(argument, str(path), f"is a corrupt zip: {exc}") from None
        if bad is not None:
            raise UsageError(argument, str(path), f"is a corrupt zip: bad {bad!r}")
    try:
        with warnings.catch_warnings():
            # A model saved after training carries optimizer state that Keras
            # skips, with a warning, when the optimizer is not built yet; the
            # commands never train the loaded model, so it is noise.
            warnings.filterwarnings(
                "ignore", message="Skipping variable loading for optimizer"
            )
            return keras.saving.load_model(path, compile=compile)
    except (zipfile.BadZipFile, OSError, ValueError, KeyError, EOFError) as exc:
        problem = " ".join(str(exc).split()) or type(exc).__name__
        raise UsageError(
            argument, str(path), f"could not be loaded as a Keras model: {problem}"
        ) from None


def _numpy_format(path: Path) -> str | None:
    """``"npy"`` or ``"npz"`` as the file's first bytes say, else None."""
    try:
        with open(path, "rb") as file:
            head = file.read(6)
    except OSError:
        return None
    if head == b"\x93NUMPY":
        return "npy"
    if head[:4] == b"PK\x03\x04" or (head[:4] == b"PK\x05\x06"):
        return "npz"
    return None


def _numbers(argument: str, path: Path, array, label: str = "") -> None:
    """Refuses ``array`` unless it holds numbers (bool included)."""
    import numpy as np

    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise UsageError(
            argument, str(path), f"holds {label}{array.dtype} values, not numbers"
        )


def _load_problem(exc: Exception, kind: str) -> str:
    """What `numpy.load` found wrong in a ``kind`` (.npy, .npz) file, in words."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if "allow_pickle" in text:
        return "holds Python objects (pickled), not numbers"
    return f"is not a readable {kind} file: {text}"


def load_array(argument: str, path: Path, *, npz_name: str | None = None):
    """Loads a numeric NumPy array, or raises `UsageError` naming ``argument``
    and ``path``.

    Args:
        argument: The option that gave the file, for the message.
        path: A ``.npy`` file; with ``npz_name``, also an ``.npz`` archive,
            whose array of that name is returned.
        npz_name: The array to read from an ``.npz`` archive; None refuses
            an archive.
    """
    import numpy as np

    kind = _numpy_format(path)
    if kind is None:
        wanted = ".npy array" if npz_name is None else ".npy or .npz"
        raise UsageError(argument, str(path), f"is not a NumPy {wanted} file")
    if kind == "npz":
        if npz_name is None:
            raise UsageError(
                argument, str(path), "is an .npz archive, not one .npy array"
            )
        return _load_npz(argument, path, (npz_name,))[0]
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise UsageError(argument, str(path), _load_problem(exc, ".npy")) from None
    _numbers(argument, path, array)
    return array


def _load_npz(argument: str, path: Path, names: tuple[str, ...], limit=None):
    """The numeric arrays ``names`` of an ``.npz`` archive, their first
    ``limit`` rows (all with None), or a `UsageError`."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as archive:
            if not set(names) <= set(archive.files):
                wanted = (
                    f"an array named {names[0]}"
                    if len(names) == 1
                    else f"arrays named {' and '.join(names)}"
                )
                raise UsageError(
                    argument, str(path), f"must hold {wanted}; it holds {archive.files}"
                )
            arrays = [
                archive[name] if limit is None else archive[name][:limit]
                for name in names
            ]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise UsageError(argument, str(path), _load_problem(exc, ".npz")) from None
    for name, array in zip(names, arrays, strict=True):
        _numbers(argument, path, array, f"{name} of ")
    return arrays


def load_xy(argument: str, path: Path, limit: int | None = None):
    """``(x, y)``: the arrays named x and y of an ``.npz`` file, their first
    ``limit`` rows; uint8 images become floats in [0, 1].

    Raises:
        UsageError: naming ``argument`` and ``path`` when the file is not an
            .npz archive, lacks x or y, holds something other than numbers, or
            x and y differ in length.
    """
    import numpy as np

    if _numpy_format(path) != "npz":
        raise UsageError(argument, str(path), "is not a NumPy .npz file")
    x, y = _load_npz(argument, path, ("x", "y"), limit)
    if x.ndim == 0 or y.ndim == 0 or len(x) != len(y):
        raise UsageError(
            argument,
            str(path),
            f"must hold x and y of the same length; x has shape {x.shape} and y "
            f"{y.shape}",
        )
    if x.dtype == np.uint8:
        x = x.astype("float32") / 255.0
    return x, y
