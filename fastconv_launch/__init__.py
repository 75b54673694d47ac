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


#: The backends Keras 3 can import (``keras/src/backend/__init__.py``).
KERAS_BACKENDS = ("tensorflow", "jax", "torch", "numpy", "openvino")


def main(argv: list[str] | None = None) -> int:
    """Runs ``fastconv ARGV``; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    backend = os.environ.get("KERAS_BACKEND")
    if backend is not None and backend not in KERAS_BACKENDS:
        # Keras would fail while ``import fastconv`` imports it, with a
        # traceback; a user error is one line and exit code 2.
        print(
            f"fastconv: error: KERAS_BACKEND={backend!r} is not a Keras backend; "
            f"set it to one of {', '.join(KERAS_BACKENDS)}",
            file=sys.stderr,
        )
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
