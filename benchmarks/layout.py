"""Parquet layout benchmark: `python benchmarks/layout.py OUTPUT [--repeats 3]`.

Takes a built output folder (e.g. a 1M-event full build), rewrites its current
publication under several Parquet layouts, and for each one reports the size on
disk and the median time of every query in benchmarks/queries/ (in a fresh
read-only process, like an analyst's session). The pipeline's layout is
`year-parts/zstd/8192` (pipeline/transform/normalize.py); the others are the
alternatives it was chosen against. Results are saved to benchmarks/results/ (BENCHMARKS.md is
generated from them).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
QUERIES = sorted((ROOT / "benchmarks" / "queries").glob("*.sql"))
TABLES = (
    "events",
    "files",
    "sources",
    "relations",
    "relation_tags",
    "event_tags",
    "tags",
    "quarantine",
    "runs",
    "storylines",
    "event_storylines",
)

# name: (one file per table instead of year parts, compression, row-group rows, dictionary encoding)
VARIANTS: dict[str, tuple[bool, str, int, bool]] = {
    "year-parts/zstd/122880": (False, "zstd", 122_880, True),
    "year-parts/snappy/122880": (False, "snappy", 122_880, True),
    "year-parts/uncompressed/122880": (False, "uncompressed", 122_880, True),
    "year-parts/zstd/16384": (False, "zstd", 16_384, True),
    "year-parts/zstd/8192": (False, "zstd", 8_192, True),
    "year-parts/zstd/1048576": (False, "zstd", 1_048_576, True),
    "year-parts/zstd/no-dictionary": (False, "zstd", 122_880, False),
    "one-file/zstd/122880": (True, "zstd", 122_880, True),
}

RUN_QUERIES = r"""
import duckdb, json, statistics, sys, time
con = duckdb.connect(sys.argv[1], read_only=True)
out = {}
for path in sys.argv[3:]:
    sql = open(path, encoding='utf-8').read()
    times = []
    for _ in range(int(sys.argv[2])):
        start = time.perf_counter(); con.execute(sql).fetchall(); times.append(time.perf_counter() - start)
    out[path.rsplit('/', 1)[-1].removesuffix('.sql')] = statistics.median(times)
print(json.dumps(out))
"""


def rewrite(source: Path, target: Path, one_file: bool, codec: str, row_group: int, dictionary: bool) -> int:
    """Copy every table of `source` into `target` in the given layout; return bytes on disk."""
    con = duckdb.connect()
    options = f"FORMAT parquet, COMPRESSION {codec}, ROW_GROUP_SIZE {row_group}"
    if not dictionary:
        options += ", DICTIONARY_SIZE_LIMIT 0"  # plain encoding only
    for table in TABLES:
        (target / table).mkdir(parents=True)
        parts = sorted((source / table).glob("*.parquet"))
        groups = [("all", parts)] if one_file else [(p.stem, [p]) for p in parts]
        for name, files in groups:
            listed = "[" + ", ".join(f"'{f}'" for f in files) + "]"
            con.execute(
                f"COPY (SELECT * FROM read_parquet({listed})) TO '{target / table / name}.parquet' ({options})"
            )
    con.close()
    return sum(f.stat().st_size for f in target.rglob("*.parquet"))


def catalog(publication: Path, path: Path) -> None:
    con = duckdb.connect(str(path))
    for table in TABLES:
        con.execute(
            f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{publication.resolve() / table}/*.parquet')"
        )
    con.close()


def _chosen(variants: list[str]) -> str:
    return "" if variants == list(VARIANTS) else " --variants " + " ".join(variants)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="a built output folder (its current publication is used)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / ".cache" / "layout")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument(
        "--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS), help="the layouts to compare"
    )
    args = parser.parse_args()
    source = (args.output / "current").resolve()
    events = duckdb.execute(f"SELECT count(*) FROM read_parquet('{source}/events/*.parquet')").fetchone()[0]
    results = {}
    for name in args.variants:
        one_file, codec, row_group, dictionary = VARIANTS[name]
        work = args.work / name.replace("/", "_")
        shutil.rmtree(work, ignore_errors=True)
        size = rewrite(source, work / "pub", one_file, codec, row_group, dictionary)
        catalog(work / "pub", work / "news.duckdb")
        runs = []
        for _ in range(args.repeats):
            out = subprocess.run(
                [sys.executable, "-c", RUN_QUERIES, str(work / "news.duckdb"), "3", *map(str, QUERIES)],
                capture_output=True,
                text=True,
                check=True,
            )
            runs.append(json.loads(out.stdout))
        results[name] = (size, {q: statistics.median(r[q] for r in runs) for q in runs[0]})
        shutil.rmtree(work, ignore_errors=True)
        print(name, size, results[name][1], flush=True)
    names = list(next(iter(results.values()))[1])
    lines = [
        f"### Parquet layout, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, {events:,} events",
        "",
        f"Command: `python benchmarks/layout.py OUTPUT --repeats {args.repeats}{_chosen(args.variants)}` "
        "(query seconds: medians of "
        f"{args.repeats} fresh read-only processes, each the median of 3 runs)",
        "",
        "| layout | MB on disk | " + " | ".join(names) + " | sum |",
        "|---|---:|" + "---:|" * (len(names) + 1),
    ]
    for name, (size, times) in results.items():
        lines.append(
            f"| {name} | {size / 2**20:,.0f} | "
            + " | ".join(f"{times[q]:.3f}" for q in names)
            + f" | {sum(times.values()):.3f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        sys.path.insert(0, str(ROOT))
        from benchmarks.results import save

        values = {f"{name}: MB": size / 2**20 for name, (size, _) in results.items()}
        values |= {f"{name}: {q} s": t for name, (_, times) in results.items() for q, t in times.items()}
        command = f"python benchmarks/layout.py OUTPUT --repeats {args.repeats}{_chosen(args.variants)}"
        save("layout", events, command, values)
    return 0


if __name__ == "__main__":
    sys.exit(main())
