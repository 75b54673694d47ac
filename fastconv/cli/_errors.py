"""The CLI's one error path: user errors become one line on stderr and exit 2.

A user error is a `UsageError` (raised by the CLI's own checks; `Parser`
reports argparse's errors the same way), a `ValueError` from fastconv's API
(its messages name the argument) or an `OSError` (a file that cannot be read
or written). Anything else is a programming error: it keeps its traceback and
exits 1.
"""

from __future__ import annotations

import argparse
import re
import sys

USER_ERROR = 2


class UsageError(Exception):
    """A bad argument or file, reported as ``ARGUMENT PROBLEM, received VALUE``.

    Args:
        argument: What the user gave, as they gave it: ``--batch-size``,
            ``MODEL.keras``; None where the problem is with the whole command.
        value: The value received, or None to leave it out of the message.
        problem: What is wrong with it, a phrase that follows the argument.

    Example:
        >>> str(UsageError("--batch-size", 0, "must be >= 1"))
        '--batch-size must be >= 1, received 0'
    """

    def __init__(self, argument: str | None, value, problem: str):
        self.argument = argument
        self.value = value
        self.problem = problem
        message = " ".join(part for part in (argument, problem) if part)
        if value is not None:
            message += f", received {value!r}"
        super().__init__(message)


_ARGPARSE_MESSAGE = re.compile(r"argument (?P<argument>[^:]+): (?P<problem>.*)", re.S)


class Parser(argparse.ArgumentParser):
    """An `argparse.ArgumentParser` whose errors are one line, through `report`.

    argparse's own messages (``argument --method: invalid choice: ...``) keep
    their wording; the messages of the types in `fastconv.cli._args`, which
    start with "must", read as one phrase after the argument's name. As
    argparse's contract asks, `error` exits (code 2) after printing.
    """

    def error(self, message: str):
        match = _ARGPARSE_MESSAGE.fullmatch(message)
        if match is None:
            exc = UsageError(None, None, message)
        else:
            argument, problem = match["argument"].split("/")[-1], match["problem"]
            if not problem.startswith("must "):
                argument = f"argument {argument}:"
            exc = UsageError(argument, None, problem)
        sys.exit(report(self.prog, exc))


#: Terminal escape sequences (colours, bold) that Keras puts in its messages.
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
#: The start of the call arguments that Keras appends to a layer's error.
_KERAS_ARGUMENTS = re.compile(r"\n\s*Arguments received by ")


def one_line(exc: Exception) -> str:
    """``exc``'s message on one line; an ``OSError`` names its file first.

    Terminal escape codes are removed, and so is the list of call arguments
    that Keras appends to an error raised inside a layer.
    """
    if isinstance(exc, OSError) and exc.filename is not None:
        message = f"{exc.filename}: {exc.strerror or exc}"
    else:
        message = str(exc)
    message = _KERAS_ARGUMENTS.split(_ANSI.sub("", message), maxsplit=1)[0]
    return " ".join(message.split())


def report(prog: str, exc: Exception) -> int:
    """Prints ``PROG: error: MESSAGE`` on one line; returns 2."""
    print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
    return USER_ERROR
