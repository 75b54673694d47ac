"""The ``fastconv`` command line: ``demo``, ``data`` and the other commands.

Each command lives in its own module here with ``add_parser(subparsers)``,
which registers the command and sets its ``func``. `main` is the one place
where errors become exit codes: a user error (a bad argument or file) prints
one line, ``fastconv COMMAND: error: ...``, and returns 2; a programming error
keeps its traceback.

The console script starts in `fastconv_launch`, which keeps TensorFlow's C++
start-up lines off the terminal unless ``--verbose`` is given.
"""

from __future__ import annotations

import argparse

from fastconv.cli import bench, convert, data, demo, export, profile, sensitivity
from fastconv.cli._errors import Parser, UsageError, report

COMMANDS = {
    "demo": demo,
    "data": data,
    "convert": convert,
    "export": export,
    "profile": profile,
    "sensitivity": sensitivity,
    "bench": bench,
}


def build_parser() -> argparse.ArgumentParser:
    """The ``fastconv`` parser, with one subparser per command."""
    parser = Parser(
        prog="fastconv",
        description="Fast convolution building blocks for Keras 3.",
    )
    verbose = "let TensorFlow print its C++ start-up lines (CPU features, CUDA)"
    parser.add_argument("--verbose", action="store_true", help=verbose)
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=Parser
    )
    for module in COMMANDS.values():
        command = module.add_parser(subparsers)
        # Also after the command's name (fastconv demo --verbose), where the
        # console script looks for it too.
        command.add_argument(
            "--verbose", action="store_true", default=argparse.SUPPRESS, help=verbose
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs one command; returns its exit code (2 for a user error)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0), or a bad argument, already reported
        return exc.code
    try:
        return int(args.func(args) or 0)
    except (UsageError, ValueError, OSError) as exc:
        return report(f"fastconv {args.command}", exc)
