"""Copy the committed ``fastconv bench`` results into docs/benchmarks.md.

docs/benchmarks.md holds the ``results.md`` of ``bench-quick-cpu/`` and
``bench-full-cpu/`` between ``<!-- quick:begin -->``/``<!-- quick:end -->`` and
``<!-- full:begin -->``/``<!-- full:end -->``, without the file's title and with
its headings moved down two levels (``##`` becomes ``####``), so that they sit
under the page's own ``###`` headings. ``python -m benchmarks.bench_docs``
rewrites those sections from the committed files (``--check``: only say
whether they are current).
"""

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
RESULTS = ROOT / "benchmarks" / "results"
SECTIONS = {"quick": "bench-quick-cpu", "full": "bench-full-cpu"}
TITLE = "# fastconv benchmark"


def doc_section(results_md: str) -> str:
    """A run's results.md as the doc quotes it: no title, headings two down."""
    lines = results_md.strip("\n").splitlines()
    if lines and lines[0] == TITLE:
        lines = lines[1:]
    while lines and not lines[0].strip():
        lines = lines[1:]
    return "\n".join("##" + ln if ln.startswith("#") else ln for ln in lines)


def sync_bench_tables(doc_text: str, results: Path = RESULTS) -> str:
    """``doc_text`` with each marked section replaced by the current results."""
    for marker, folder in SECTIONS.items():
        begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
        pattern = re.compile(re.escape(begin) + r"\n.*?" + re.escape(end), re.S)
        if len(pattern.findall(doc_text)) != 1:
            raise ValueError(f"expected one {begin} ... {end} section")
        body = doc_section((results / folder / "results.md").read_text())
        section = f"{begin}\n{body}\n{end}"
        doc_text = pattern.sub(lambda _, section=section: section, doc_text)
    return doc_text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing")
    args = parser.parse_args(argv)
    old = DOC.read_text()
    new = sync_bench_tables(old)
    if new == old:
        print(f"{DOC.relative_to(ROOT)} is current")
        return 0
    if args.check:
        print(f"{DOC.relative_to(ROOT)} is stale: python -m benchmarks.bench_docs")
        return 1
    DOC.write_text(new)
    print(f"rewrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
