"""Benchmarks: `python benchmarks/run.py --sizes 10000 200000 --repeats 3`.

For each archive size (generated once with a fixed seed and cached under
benchmarks/.cache/), measured in the same session so the numbers compare:

- startup      `python -m pipeline run` over an empty archive (the fixed cost of a run)
- io_floor     reading every input file's bytes, nothing else (2 processes, like the parser)
- full         `python -m pipeline run --full-refresh` into a fresh output folder
- incremental  the same output after adding 100 new event files

Each is run `--repeats` times; the table shows medians and the peak resident
memory of the whole process tree (sampled every 50 ms from /proc). Results are
appended to BENCHMARKS.md with the command that produced them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "benchmarks" / ".cache"
PYTHON = sys.executable
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


def last_run(output: Path) -> dict:
    """Per-stage seconds the pipeline recorded for its latest run."""
    import pyarrow.parquet as pq

    return pq.read_table(output / "state" / "runs.parquet").to_pylist()[-1]


def io_floor(archive: Path) -> float:
    """Seconds to list and read every *.md file's bytes with 2 processes."""
    start = time.perf_counter()
    paths = [str(p) for p in archive.rglob("*.md")]
    half = len(paths) // 2
    with ProcessPoolExecutor(2) as pool:
        sum(pool.map(_read_all, [paths[:half], paths[half:]]))
    return time.perf_counter() - start


def archive_for(size: int) -> Path:
    path = CACHE / f"archive-{size}"
    if not (path / ".complete").exists():
        shutil.rmtree(path, ignore_errors=True)
        from pipeline.generate import generate

        generate(size, path, seed=2026, malformed=0.01, today=TODAY)
        (path / ".complete").write_text("ok")
    return path


def run_cmd(archive: Path, output: Path, full: bool) -> list[str]:
    cmd = [PYTHON, "-m", "pipeline", "run", "--input", str(archive), "--output", str(output), "--no-progress"]
    return cmd + (["--full-refresh"] if full else [])


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


def bench(size: int, repeats: int, work: Path) -> dict[str, tuple[float, int]]:
    archive = archive_for(size)
    empty = work / "empty"
    empty.mkdir(parents=True, exist_ok=True)
    samples: dict[str, list[tuple[float, int]]] = {
        "startup": [],
        "io_floor": [],
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
        samples["io_floor"].append((io_floor(archive), 0))
        out = work / f"out-{size}-{r}"
        shutil.rmtree(out, ignore_errors=True)
        samples["full"].append(timed(run_cmd(archive, out, full=True)))
        stages = last_run(out)
        for stage in ("parse", "normalize", "validate"):
            samples[stage].append((stages[f"seconds_{stage}"], 0))
        extra = add_files(archive, 100, f"r{r}")
        try:
            samples["incremental"].append(timed(run_cmd(archive, out, full=False)))
        finally:
            shutil.rmtree(extra)
        stages = last_run(out)
        samples["incr_normalize"].append((stages["seconds_normalize"], 0))
        samples["incr_validate"].append((stages["seconds_validate"], 0))
        shutil.rmtree(out, ignore_errors=True)
    return {
        name: (statistics.median(t for t, _ in values), max(m for _, m in values))
        for name, values in samples.items()
    }


def report(results: dict[int, dict[str, tuple[float, int]]], command: str, repeats: int) -> str:
    lines = [
        f"### {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores",
        "",
        f"Command: `{command}` (medians of {repeats} runs; memory is the peak RSS of the whole process tree)",
        "",
        "| events | startup s | I/O floor s | full s | (full - startup) / I/O floor | peak MB (full) "
        "| incremental +100 s | (incr - startup) / (full - startup) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size, r in sorted(results.items()):
        startup, floor, full, incr = (r[k][0] for k in ("startup", "io_floor", "full", "incremental"))
        lines.append(
            f"| {size:,} | {startup:.1f} | {floor:.1f} | {full:.1f} | {(full - startup) / floor:.2f} "
            f"| {r['full'][1] / 2**20:,.0f} | {incr:.1f} | {(incr - startup) / (full - startup):.1%} |"
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
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path, default=CACHE / "work")
    parser.add_argument("--no-write", action="store_true", help="print only, do not append to BENCHMARKS.md")
    args = parser.parse_args()
    command = (
        "python benchmarks/run.py --sizes " + " ".join(map(str, args.sizes)) + f" --repeats {args.repeats}"
    )
    results = {}
    for size in args.sizes:
        results[size] = bench(size, args.repeats, args.work)
        print(report({size: results[size]}, command, args.repeats), flush=True)
    text = report(results, command, args.repeats)
    if not args.no_write:
        with open(ROOT / "BENCHMARKS.md", "a", encoding="utf-8") as f:
            f.write("\n" + text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
