"""What the atomic writers share: a temporary file gets the mode of a new one.

``tempfile.mkstemp`` creates its file with mode 0600 whatever the umask, and
``os.replace`` keeps that mode; a file written that way should instead get what
a plain ``open(path, "w")`` would give it.
"""

from __future__ import annotations

import os


def created_mode() -> int:
    """``0o666`` less the process's umask: the mode ``open()`` gives a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def chmod_as_created(path: str | os.PathLike) -> None:
    """Gives ``path`` (a temporary file about to replace another) the mode that
    ``open()`` gives a new file."""
    os.chmod(path, created_mode())
