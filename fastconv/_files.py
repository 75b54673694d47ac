"""Writing files atomically.

`write_atomically` writes next to the target, then moves the file onto it, so
a failure (an error or an interrupt) leaves the target as it was and no
temporary file behind. ``tempfile.mkstemp`` creates its file with mode 0600
whatever the umask, and ``os.replace`` keeps that mode; `chmod_as_created`
gives the file what a plain ``open(path, "w")`` would give it instead.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def created_mode() -> int:
    """``0o666`` less the process's umask: the mode ``open()`` gives a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def chmod_as_created(path: str | os.PathLike) -> None:
    """Gives ``path`` (a temporary file about to replace another) the mode that
    ``open()`` gives a new file."""
    os.chmod(path, created_mode())


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Calls ``write(temporary)`` next to ``path``, then moves it onto ``path``.

    On any failure, an interrupt included, the temporary file is removed and
    ``path`` is as it was; an `OSError` names ``path``, not the temporary file.
    """
    path = Path(path)
    handle, name = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.stem}-", suffix=path.suffix
    )
    os.close(handle)
    temporary = Path(name)
    try:
        write(temporary)
        chmod_as_created(temporary)
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
