"""Benchmarks: `python benchmarks/run.py` (default sizes 10k, 100k, 200k and 1M events, 3 repeats).

For each archive size (generated once with a fixed seed and cached under
benchmarks/.cache/), measured in the same session so the numbers compare:

- startup      `python -m pipeline run` over an empty archive (the fixed cost of a run)
- io_floor     reading every input file's bytes, nothing else (2 processes, like the parser),
               from storage: the archive is evicted from the page cache first, and again before
               the full build. Read with the pipeline's own read-ahead (pipeline.parse.stage.read_ahead),
               the fastest reader we have; the naive floor (one open-and-read at a time, the
               floor of earlier BENCHMARKS.md sections) is shown beside it
- full         `python -m pipeline run --full-refresh` into a fresh output folder
- queries      benchmarks/queries/*.sql on that build's catalog, in a fresh read-only process
- incremental  the same output after adding 100 new event files (sources only), then after
               adding 100 that relate to earlier events and name their contexts; for the
               first, also the seconds from the end of its listing (discover) to its exit
- parse speed  our parser against the markdown-it-py baseline (baseline_parser.py), per document
- storylines   the storyline size distribution of the full build
- dask         with `--dask local:2`: the full build again on a Dask LocalCluster

Each is run `--repeats` times; the table shows medians and the peak resident
memory of the whole process tree (sampled every 50 ms from /proc). Results are
saved to benchmarks/results/ with the command that produced them, and BENCHMARKS.md is
regenerated from them (benchmarks/results.py).
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
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's pipeline, even if another one is installed
CACHE = ROOT / "benchmarks" / ".cache"
PYTHON = sys.executable

from benchmarks.results import save  # noqa: E402

TODAY = dt.date(2026, 1, 1)


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of `pid` and all its descendants."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        total += rss.get(p, 0)
        stack.extend(children.get(p, []))
    return total


def timed(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds and peak process-tree RSS of a command, which must succeed."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss_bytes(proc.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    elapsed = time.perf_counter() - start
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err}")
    return elapsed, peak


def _read_all(paths: list[str]) -> int:
    total = 0
    for p in paths:
        with open(p, "rb") as f:
            total += len(f.read())
    return total


def _read_ahead_all(paths: list[str], batch: int = 2000) -> int:
    from pipeline.parse.stage import read_ahead

    total = 0
    for start in range(0, len(paths), batch):
        for data in read_ahead(paths[start : start + batch]):
            total += len(data) if isinstance(data, bytes) else 0
    return total


def evict(archive: Path) -> None:
    """Drop the archive's file contents from the page cache (POSIX_FADV_DONTNEED on every
    file; no privileges needed), so what follows reads from storage. At 1M events the archive
    (4.1 GB on disk) no longer fits the cache here, so without this the floor and the build
    each found a different, unknown share of it cached. Without posix_fadvise (macOS) the
    floor and the build read whatever the cache holds."""
    if not hasattr(os, "posix_fadvise"):
        return
    for folder, _, names in os.walk(archive):
        for name in names:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY | os.O_NONBLOCK)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def last_run(output: Path) -> dict:
    """Per-stage seconds the pipeline recorded for its latest run."""
    import pyarrow.parquet as pq

    return pq.read_table(output / "state" / "runs.parquet").to_pylist()[-1]


def io_floor(
    archive: Path, reader: Callable[[list[str]], int] = _read_ahead_all, evict_first: bool = True
) -> float:
    """Seconds to list and read every *.md file's bytes with 2 processes: from storage, or
    with `evict_first=False` from whatever the page cache holds (warm after a build)."""
    if evict_first:
        evict(archive)
    start = time.perf_counter()
    paths = [str(p) for p in archive.rglob("*.md")]
    half = len(paths) // 2
    with ProcessPoolExecutor(2) as pool:
        sum(pool.map(reader, [paths[:half], paths[half:]]))
    return time.perf_counter() - start


def archive_for(size: int) -> Path:
    from pipeline.synthetic.generate import VERSION

    path = CACHE / f"archive-{size}-v{VERSION}"
    if not (path / ".complete").exists():
        shutil.rmtree(path, ignore_errors=True)
        from pipeline.synthetic.generate import generate

        generate(size, path, seed=2026, malformed=0.01, today=TODAY)
        (path / ".complete").write_text("ok")
    return path


def parse_speed(archive: Path, documents: int = 3000, repeats: int = 7) -> dict[str, float]:
    """Microseconds per document for our parser and the markdown-it-py baseline, one core,
    over the same documents already in memory (medians of `repeats` passes, ours and the
    baseline alternating), and how often the baseline agrees with ours on title, date,
    summary and item counts (a fairness check). One pass of ours takes ~0.15 s, so a burst
    of other load can spoil a pass: with 3 passes one 200k run read 90 us instead of 43."""
    from baseline_parser import parse_baseline

    from pipeline.parse.document import ParsedEvent, parse_document

    paths = sorted(p for p in (archive / "news").rglob("*.md") if p.name != "index.md")
    step = max(1, len(paths) // documents)
    docs = [(p.read_bytes(), str(p.relative_to(archive))) for p in paths[::step][:documents]]
    ours, baseline = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        parsed = [parse_document(data, rel, TODAY) for data, rel in docs]
        ours.append((time.perf_counter() - start) / len(docs) * 1e6)
        start = time.perf_counter()
        base = [parse_baseline(data) for data, _ in docs]
        baseline.append((time.perf_counter() - start) / len(docs) * 1e6)
    pairs = [(a, b) for a, b in zip(parsed, base, strict=True) if isinstance(a, ParsedEvent)]
    agree = sum(
        a.title == b.title
        and a.event_date == b.date
        and a.summary == b.summary
        and len(a.sources) == len(b.sources)
        and len(a.relations) == len(b.related)
        for a, b in pairs
    )
    return {
        "ours_us": statistics.median(ours),
        "baseline_us": statistics.median(baseline),
        "agreement": agree / max(1, len(pairs)),
    }


QUERIES = sorted((ROOT / "benchmarks" / "queries").glob("*.sql"))


def query_times(catalog: Path, repeats: int = 3) -> dict[str, float]:
    """Median seconds of each query in benchmarks/queries/, in a fresh process, read-only."""
    script = (
        "import duckdb, json, statistics, sys, time\n"
        "con = duckdb.connect(sys.argv[1], read_only=True)\n"
        "out = {}\n"
        "for path in sys.argv[3:]:\n"
        "    sql = open(path, encoding='utf-8').read()\n"
        "    times = []\n"
        "    for _ in range(int(sys.argv[2])):\n"
        "        start = time.perf_counter(); con.execute(sql).fetchall(); times.append(time.perf_counter() - start)\n"
        "    out[path.rsplit('/', 1)[-1].removesuffix('.sql')] = statistics.median(times)\n"
        "print(json.dumps(out))\n"
    )
    result = subprocess.run(
        [PYTHON, "-c", script, str(catalog), str(repeats), *map(str, QUERIES)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)


def run_cmd(archive: Path, output: Path, full: bool, dask: str | None = None) -> list[str]:
    cmd = [PYTHON, "-m", "pipeline", "run", "--input", str(archive), "--output", str(output), "--no-progress"]
    return cmd + (["--full-refresh"] if full else []) + (["--dask", dask] if dask else [])


def storyline_stats(catalog: Path) -> dict[str, float]:
    """The storyline size distribution of a build (README, Storylines)."""
    import duckdb

    con = duckdb.connect(str(catalog), read_only=True)
    try:
        row = con.execute(
            """SELECT count(*), coalesce(sum(size), 0), (SELECT count(*) FROM events),
                      quantile_disc(size, 0.5), quantile_disc(size, 0.9), quantile_disc(size, 0.99), max(size)
               FROM storylines"""
        ).fetchone()
    finally:
        con.close()
    keys = ("storylines", "in_storylines", "events", "p50", "p90", "p99", "max")
    return {k: float(v or 0) for k, v in zip(keys, row, strict=True)}


def add_files(archive: Path, count: int, tag: str) -> Path:
    extra = archive / f"added-{tag}"
    for i in range(count):
        path = extra / f"news/2025/06/{1 + i % 28}/added-{tag}-event-{i}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            f"### [2025-06-{1 + i % 28:02d}](/x)\n\n# Added event {tag} number {i} for the benchmark.\n\nText.\n\n"
            f"### Source:\n\n1. [BBC](https://www.bbc.co.uk/news/{tag}-{i})\n",
            encoding="utf-8",
        )
    return extra


def add_related_files(archive: Path, count: int, tag: str) -> Path:
    """`count` new events as the portal adds them: each relates to an earlier event of the
    archive and names that event's own contexts, so tags, relations, `resolved` and the
    storylines of earlier years change too (add_files' events touch only their own year)."""
    from pipeline.parse.document import ParsedEvent, parse_document
    from pipeline.parse.ids import slugify

    paths = sorted((archive / "news").rglob("*.md"))
    step = max(1, len(paths) // (count * 4))
    extra = archive / f"related-{tag}"
    written = 0
    for path in paths[::step]:
        target = parse_document(path.read_bytes(), str(path.relative_to(archive)), TODAY)
        if written == count or not isinstance(target, ParsedEvent) or not target.relations:
            if written == count:
                break
            continue
        contexts = ", ".join(target.relations[0].contexts) or "Benchmark"
        day = 1 + written % 28
        title = f"Follow-up {tag} {written}: {target.title}"
        folder = extra / f"news/2025/07/{day}"
        folder.mkdir(parents=True, exist_ok=True)
        y, m, d = (int(part) for part in target.event_id[:10].split("-"))
        (folder / f"{slugify(title)}.md").write_text(
            f"### [2025-07-{day:02d}](/x)\n\n# {title}\n\nText.\n\n"
            f"### Source:\n\n1. [BBC](https://www.bbc.co.uk/news/{tag}-{written})\n\n"
            f"### Related:\n\n1. [{target.title}](/news/{y}/{m:02d}/{d}/{target.event_id[11:]}.md) _Context: {contexts}_\n",
            encoding="utf-8",
        )
        written += 1
    return extra


def bench(size: int, repeats: int, work: Path, dask: str | None = None) -> dict[str, tuple[float, int]]:
    archive = archive_for(size)
    empty = work / "empty"
    empty.mkdir(parents=True, exist_ok=True)
    samples: dict[str, list[tuple[float, int]]] = {
        "startup": [],
        "io_floor": [],
        "io_floor_naive": [],
        "full": [],
        "incremental": [],
        "parse": [],
        "normalize": [],
        "validate": [],
        "incr_normalize": [],
        "incr_validate": [],
    }
    for r in range(repeats):
        samples["startup"].append(timed(run_cmd(empty, work / f"empty-out-{r}", full=True)))
        samples["io_floor_naive"].append((io_floor(archive, _read_all), 0))
        samples["io_floor"].append((io_floor(archive), 0))
        evict(archive)
        out = work / f"out-{size}-{r}"
        shutil.rmtree(out, ignore_errors=True)
        samples["full"].append(timed(run_cmd(archive, out, full=True)))
        stages = last_run(out)
        for stage in ("parse", "normalize", "validate"):
            samples[stage].append((stages[f"seconds_{stage}"], 0))
        for name, seconds in query_times(out / "news.duckdb").items():
            samples.setdefault(f"query:{name}", []).append((seconds, 0))
        if r == 0:
            for name, value in storyline_stats(out / "news.duckdb").items():
                samples[f"storylines:{name}"] = [(value, 0)]
        if dask:
            out_dask = work / f"out-{size}-{r}-dask"
            shutil.rmtree(out_dask, ignore_errors=True)
            evict(archive)  # from storage, as the local build
            samples.setdefault("dask_full", []).append(
                timed(run_cmd(archive, out_dask, full=True, dask=dask))
            )
            samples.setdefault("dask_parse", []).append((last_run(out_dask)["seconds_parse"], 0))
            shutil.rmtree(out_dask, ignore_errors=True)
        extra = add_files(archive, 100, f"r{r}")
        try:
            samples["incremental"].append(timed(run_cmd(archive, out, full=False)))
            exited = dt.datetime.now(dt.UTC)
        finally:
            shutil.rmtree(extra)
        stages = last_run(out)
        # Issue 21's "everything after listing": from the end of discover (the flow body's
        # start plus its discover seconds, as the run recorded them) to the process's exit.
        listed = stages["started_at"] + dt.timedelta(seconds=stages["seconds_discover"])
        samples.setdefault("incremental_after_listing", []).append(((exited - listed).total_seconds(), 0))
        samples["incr_normalize"].append((stages["seconds_normalize"], 0))
        samples["incr_validate"].append((stages["seconds_validate"], 0))
        extra = add_related_files(archive, 100, f"r{r}")
        try:
            samples.setdefault("incremental_related", []).append(timed(run_cmd(archive, out, full=False)))
        finally:
            shutil.rmtree(extra)
        shutil.rmtree(out, ignore_errors=True)
    speed = parse_speed(archive)
    samples["parse_ours_us"] = [(speed["ours_us"], 0)]
    samples["parse_baseline_us"] = [(speed["baseline_us"], 0)]
    samples["parse_agreement"] = [(speed["agreement"], 0)]
    return {
        name: (statistics.median(t for t, _ in values), max(m for _, m in values))
        for name, values in samples.items()
    }


def report(
    results: dict[int, dict[str, tuple[float, int]]], command: str, repeats: int, dask: str | None = None
) -> str:
    lines = [
        f"### {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores",
        "",
        f"Command: `{command}` (medians of {repeats} runs; memory is the peak RSS of the whole process tree)",
        "",
        "I/O floor: the archive read from storage with the pipeline's read-ahead; naive floor: the same, "
        "one open-and-read at a time (the floor of sections before 2026-11-25 03:00). The archive is "
        "evicted from the page cache before each floor and before the full build.",
        "",
        "| events | startup s | I/O floor s | naive floor s | full s | (full - startup) / I/O floor "
        "| (full - startup) / naive floor | µs per event beyond startup "
        "| peak MB (full) | incremental +100 s | (incr - startup) / (full - startup) "
        "| incremental +100 related s | (related - startup) / (full - startup) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size, r in sorted(results.items()):
        startup, floor, full, incr = (r[k][0] for k in ("startup", "io_floor", "full", "incremental"))
        related = r["incremental_related"][0] if "incremental_related" in r else float("nan")
        naive = r["io_floor_naive"][0]
        lines.append(
            f"| {size:,} | {startup:.1f} | {floor:.1f} | {naive:.1f} | {full:.1f} | {(full - startup) / floor:.2f} "
            f"| {(full - startup) / naive:.2f} "
            f"| {(full - startup) / size * 1e6:.0f} | {r['full'][1] / 2**20:,.0f} | {incr:.1f} "
            f"| {(incr - startup) / (full - startup):.1%} | {related:.1f} "
            f"| {(related - startup) / (full - startup):.1%} |"
        )
    lines += [
        "",
        "Stages of the full build and of the incremental run, from the `runs` table (medians, seconds):",
        "",
        "| events | parse | normalize | validate | validate / full | incremental: normalize | incremental: validate |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size, r in sorted(results.items()):
        lines.append(
            f"| {size:,} | {r['parse'][0]:.1f} | {r['normalize'][0]:.1f} | {r['validate'][0]:.1f} "
            f"| {r['validate'][0] / r['full'][0]:.1%} | {r['incr_normalize'][0]:.1f} | {r['incr_validate'][0]:.1f} |"
        )
    lines += [
        "",
        "Parsing one document on one core (µs, median of 7 passes over ~3,000 documents of the archive), "
        "ours against the markdown-it-py baseline (benchmarks/baseline_parser.py); agreement: share of "
        "parsed documents where both find the same title, date, summary and item counts:",
        "",
        "| events | ours µs | baseline µs | baseline / ours | agreement |",
        "|---:|---:|---:|---:|---:|",
    ]
    for size, r in sorted(results.items()):
        ours, base = r["parse_ours_us"][0], r["parse_baseline_us"][0]
        lines.append(
            f"| {size:,} | {ours:.0f} | {base:.0f} | {base / ours:.1f}x | {r['parse_agreement'][0]:.1%} |"
        )
    names = sorted({k.removeprefix("query:") for r in results.values() for k in r if k.startswith("query:")})
    lines += [
        "",
        "Queries (benchmarks/queries/*.sql) on the full build's catalog, seconds, median of 3 runs "
        "in each of the repeats (a fresh read-only process per repeat):",
        "",
        "| events | " + " | ".join(names) + " |",
        "|---:|" + "---:|" * len(names),
    ]
    for size, r in sorted(results.items()):
        lines.append(f"| {size:,} | " + " | ".join(f"{r[f'query:{n}'][0]:.3f}" for n in names) + " |")
    lines += [
        "",
        "Storylines of the full build (default rule; sizes in events):",
        "",
        "| events | storylines | events in one | median size | p90 | p99 | largest |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size, r in sorted(results.items()):
        st = {k.removeprefix("storylines:"): v[0] for k, v in r.items() if k.startswith("storylines:")}
        lines.append(
            f"| {size:,} | {st['storylines']:,.0f} | {st['in_storylines'] / st['events']:.1%} | {st['p50']:.0f} "
            f"| {st['p90']:.0f} | {st['p99']:.0f} | {st['max']:,.0f} |"
        )
    if any("dask_full" in r for r in results.values()):
        lines += [
            "",
            f"Full build with `--dask {dask}` against the default local run (2 worker processes), seconds:",
            "",
            "| events | local full | dask full | dask / local | local parse | dask parse | peak MB (dask: flow, scheduler and workers) |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for size, r in sorted(results.items()):
            local, remote = r["full"][0], r["dask_full"][0]
            lines.append(
                f"| {size:,} | {local:.1f} | {remote:.1f} | {remote / local:.2f} | {r['parse'][0]:.1f} "
                f"| {r['dask_parse'][0]:.1f} | {r['dask_full'][1] / 2**20:,.0f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 200_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path, default=CACHE / "work")
    parser.add_argument("--no-write", action="store_true", help="print only, save no result")
    parser.add_argument("--dask", default=None, help="also time a full build with --dask (e.g. local:2)")
    args = parser.parse_args()
    command = (
        "python benchmarks/run.py --sizes " + " ".join(map(str, args.sizes)) + f" --repeats {args.repeats}"
    ) + (f" --dask {args.dask}" if args.dask else "")
    results = {}
    for size in args.sizes:
        results[size] = bench(size, args.repeats, args.work, args.dask)
        print(report({size: results[size]}, command, args.repeats, args.dask), flush=True)
        if not args.no_write:
            save("run", size, command, flatten(results[size]))
    print(report(results, command, args.repeats, args.dask))
    return 0


def flatten(medians: dict[str, tuple[float, int]]) -> dict[str, float]:
    """name -> median, plus name_peak_mb where memory was sampled."""
    values: dict[str, float] = {}
    for name, (median, peak) in medians.items():
        values[name] = median
        if peak:
            values[f"{name}_peak_mb"] = peak / 2**20
    return values


if __name__ == "__main__":
    sys.exit(main())
