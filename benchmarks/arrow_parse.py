"""Probe: could a parser vectorized with pyarrow compute beat pipeline/parse.py?

`python benchmarks/arrow_parse.py ARCHIVE [--documents 50000] [--repeats 3]`

Issue #6 asks for a full build within 3x the I/O floor, and the pure-Python parser is the
largest step of a build. Arrow's string kernels (RE2 regexes, splits, filters) run in
compiled code we would not have to write. This probe times only the cheap half of such a
parser (decode, split every document into lines, pick the heading, title and list-item
lines, regex the date heading and every item as a source and as a related link) against
`parse_document` on the same documents, one core, files already in memory. It leaves out
the summary's plain text, section bookkeeping, identities, quarantine and the fallback a
real one would need for every line its regexes do not cover, so the Arrow figure is a lower
bound. It prints a Markdown table of medians per document.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.parse.document import parse_document  # noqa: E402

# What parse.py's fast item regexes accept, in RE2 syntax (named groups, no possessives).
DATE = r"^### \[(?P<y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})\]"
SOURCE = (
    r"^1\. \[(?P<name>[^\[\]\\]*)\]\((?P<url>[Hh][Tt][Tt][Pp][Ss]?://(?P<host>[A-Za-z0-9.-]+)"
    r"(?:[/?#](?:[^()\s\\]+|\([^()\s\\]*\))*)?)\)[ \t]*$"
)
RELATED = (
    r"^1\. \[(?P<title>[^\[\]\\]*)\]\(/?news/(?P<y>\d{4})/(?P<m>\d{1,2})/(?P<d>\d{1,2})/"
    r"(?P<slug>[a-z0-9-]+)\.md\)(?:[ \t]*_Context:[ \t]*(?P<ctx>[^\n]*)_[ \t]*)?$"
)


def documents(archive: Path, count: int) -> tuple[list[str], list[bytes]]:
    """The first `count` event files in path order, read into memory."""
    paths = sorted(
        os.path.join(folder, name)
        for folder, _, names in os.walk(archive)
        for name in names
        if name.endswith(".md") and name != "index.md"
    )[:count]
    datas = []
    for path in paths:
        with open(path, "rb") as handle:
            datas.append(handle.read())
    return [os.path.relpath(p, archive) for p in paths], datas


def python_parse(rel_paths: list[str], datas: list[bytes]) -> None:
    today = dt.date.today()
    for data, rel_path in zip(datas, rel_paths, strict=True):
        parse_document(data, rel_path, today)


def arrow_parse(datas: list[bytes], steps: dict[str, list[float]]) -> None:
    def step(name: str, work: Callable[[], object]) -> object:
        start = time.perf_counter()
        result = work()
        steps.setdefault(name, []).append(time.perf_counter() - start)
        return result

    def decode() -> list[str | None]:
        texts: list[str | None] = []
        for data in datas:
            try:
                texts.append(data.decode("utf-8"))
            except UnicodeDecodeError:
                texts.append(None)
        return texts

    texts = step("decode (Python)", decode)
    array = step("to an Arrow array", lambda: pa.array(texts, pa.string()))
    lines = step("split into lines", lambda: pc.split_pattern(array, "\n"))
    flat = pc.list_flatten(lines)
    step("line -> document index", lambda: pc.list_parent_indices(lines))
    headings = step("pick heading lines", lambda: pc.filter(flat, pc.starts_with(flat, "### ")))
    step("date regex", lambda: pc.extract_regex(headings, DATE))
    step(
        "pick and trim title lines",
        lambda: pc.utf8_trim_whitespace(pc.filter(flat, pc.starts_with(flat, "# "))),
    )
    items = step("pick item lines", lambda: pc.filter(flat, pc.starts_with(flat, "1. ")))
    step("source regex (every item)", lambda: pc.extract_regex(items, SOURCE))
    related = step("related regex (every item)", lambda: pc.extract_regex(items, RELATED))
    step("split contexts", lambda: pc.split_pattern(related.field("ctx"), ", "))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("archive", type=Path)
    parser.add_argument("--documents", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rel_paths, datas = documents(args.archive, args.documents)
    n = len(datas)
    python_times, arrow_times, steps = [], [], {}
    for _ in range(args.repeats):
        start = time.perf_counter()
        python_parse(rel_paths, datas)
        python_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        arrow_parse(datas, steps)
        arrow_times.append(time.perf_counter() - start)
    per_doc = lambda seconds: f"{seconds / n * 1e6:.1f}"  # noqa: E731
    print(f"{n:,} documents of {args.archive}, medians of {args.repeats} (µs per document)\n")
    print("| step | µs per document |\n|---|---:|")
    print(
        f"| pipeline/parse.py `parse_document` (whole parse) | {per_doc(statistics.median(python_times))} |"
    )
    print(f"| Arrow, partial parse (sum of the steps below) | {per_doc(statistics.median(arrow_times))} |")
    for name, times in steps.items():
        print(f"| &nbsp;&nbsp;{name} | {per_doc(statistics.median(times))} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
