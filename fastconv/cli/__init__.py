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
import sys

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


def _check_flags(parser: argparse.ArgumentParser, command: str, given) -> None:
    """Refuses both forms of an on/off flag (``--jit --no-jit``): argparse
    keeps the last, and the help shows them as exclusive."""
    subparsers = next(
        a for a in parser._actions if isinstance(a, argparse._SubParsersAction)
    )
    for action in subparsers.choices[command]._actions:
        if isinstance(action, argparse.BooleanOptionalAction):
            both = [flag for flag in action.option_strings if flag in given]
            if len(both) > 1:
                raise UsageError(
                    both[0], None, f"and {both[1]} cannot be given together"
                )


def main(argv: list[str] | None = None) -> int:
    """Runs one command; returns its exit code (2 for a user error)."""
    argv = sys.argv[1:] if argv is None else [str(arg) for arg in argv]
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0), or a bad argument, already reported
        return exc.code
    try:
        _check_flags(parser, args.command, set(argv))
        if getattr(args, "list", False):
            others = [
                arg
                for arg in argv
                if arg.startswith("--") and arg not in ("--list", "--verbose")
            ]
            if others:
                raise UsageError(
                    "--list", None, f"lists and exits, and takes no {others[0]}"
                )
        return int(args.func(args) or 0)
    except (UsageError, ValueError, OSError) as exc:
        return report(f"fastconv {args.command}", exc)
