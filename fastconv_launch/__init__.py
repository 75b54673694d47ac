"""The ``fastconv`` console script: a quiet start, then `fastconv.cli.main`.

TensorFlow prints C++ lines while it is imported (oneDNN, "Could not find cuda
drivers", absl's "All log messages before absl::InitializeLog()") and on its
first operation (CPU features, ``cuInit`` errors). ``import fastconv`` imports
Keras and so TensorFlow, before any code in ``fastconv.cli`` can run; this
package lives outside ``fastconv`` so that its code runs first. Unless
``--verbose`` is given it sets ``TF_CPP_MIN_LOG_LEVEL=3`` (if the user has not
set it) for the lines TensorFlow filters, and imports ``fastconv`` with
stderr's file descriptor captured, writing back every captured line that is
not a C++ log line. ``import fastconv`` from a program is unchanged.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import tempfile

_CPP_LOG_LINE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|[IWEF]\d{4} [\d:.]+ +\d+ [\w.-]+:\d+\] "
    r"|\d{4}-\d\d-\d\d [\d:.]+: [IWEF] [\w./-]+:\d+\] "
    r"|To enable the following instructions: "
)


#: The backends Keras 3 can import (``keras/src/backend/__init__.py``) -> the
#: packages each one imports as Keras starts (the numpy backend's nn uses jax).
KERAS_BACKENDS = {
    "tensorflow": ("tensorflow",),
    "jax": ("jax",),
    "torch": ("torch",),
    "numpy": ("jax",),
    "openvino": ("openvino",),
}


def keras_backend_problem() -> str | None:
    """Why Keras cannot start on ``KERAS_BACKEND``, in one line, or None.

    Keras fails with a traceback while ``import fastconv`` imports it when the
    variable names no backend, or one whose package is not installed; this
    looks for the packages without importing them, so it costs no start-up
    time. An unset or empty variable leaves the choice to Keras.
    """
    backend = os.environ.get("KERAS_BACKEND")
    if not backend:
        return None
    if backend not in KERAS_BACKENDS:
        return (
            f"KERAS_BACKEND={backend!r} is not a Keras backend; set it to one of "
            f"{', '.join(KERAS_BACKENDS)}"
        )
    missing = [name for name in KERAS_BACKENDS[backend] if not _installed(name)]
    if not missing:
        return None
    usable = [
        name
        for name, packages in KERAS_BACKENDS.items()
        if all(_installed(package) for package in packages)
    ]
    return (
        f"KERAS_BACKEND={backend!r} needs the {', '.join(missing)} package, which "
        f"is not installed; install it, or set KERAS_BACKEND to one of those "
        f"installed: {', '.join(usable) or 'none'}"
    )


def refuse_unusable_backend() -> bool:
    """Prints `keras_backend_problem` as a one-line user error, if there is
    one, and says whether it did; the caller then exits with code 2."""
    problem = keras_backend_problem()
    if problem is not None:
        print(f"fastconv: error: {problem}", file=sys.stderr)
    return problem is not None


def _installed(package: str) -> bool:
    """Whether ``package`` can be imported, found without importing it."""
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def main(argv: list[str] | None = None) -> int:
    """Runs ``fastconv ARGV``; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if refuse_unusable_backend():
        return 2
    options = argv[: argv.index("--")] if "--" in argv else argv
    if "--verbose" in options:
        from fastconv.cli import main as run
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        run = _import_quietly()
    return run(argv)


def _import_quietly():
    """Imports `fastconv.cli.main` with TensorFlow's C++ lines left out."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:
        from fastconv.cli import main as run

        return run
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            from fastconv.cli import main as run
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode(errors="replace").splitlines(True)
            sys.stderr.write("".join(x for x in lines if not _CPP_LOG_LINE.match(x)))
    return run
