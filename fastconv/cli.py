"""The ``fastconv`` command line: ``demo``, ``data`` and the other commands.

Each command lives in a ``fastconv/cli_<name>.py`` module with
``add_parser(subparsers)``, which registers the command and sets its ``func``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ("demo", "data", "convert", "profile", "bench")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastconv",
        description="Fast convolution building blocks for Keras 3.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"fastconv.cli_{name}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError) as exc:
        print(f"fastconv {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
