"""What places cost a full build: `python benchmarks/places.py [--events 1000000] [--repeats 1]`.

Places are found while parsing (pipeline/places, called per event by the parser), then
become the `event_places` table (normalize) and its suite (validate). Their cost is measured
against the same pipeline with `event_places` replaced by a function that finds nothing
(in-process for the parse; in the full build through a `sitecustomize` on PYTHONPATH that
only this benchmark installs, so the parse workers get it too), alternating, in one session:

- places_cpu_per_file                  CPU seconds places add per file to one process
                                       staging files: the fastest of alternating stagings
                                       with, less the fastest without, of a sample spread
                                       over the archive (--parse-sample, --parse-repeats; a
                                       wall-clock difference of two builds is not precise)
- parse_cpu_with / parse_cpu_without   those stagings' CPU per file, times the archive's files
- places_cpu                           places_cpu_per_file times the archive's files
- gazetteer_build                      seconds to build the gazetteer once (per worker process)
- full_build / full_build_without      wall seconds of `run --full-refresh` into a fresh
                                       output with a running Prefect API, with and without
- parse_with / _without,               the builds' own stage seconds (runs table); the parse's
  normalize_with / _without,           wall difference cross-checks places_cpu / workers
  validate_with / _without
- places_share                         (places_cpu / workers + gazetteer_build
                                        + normalize and validate with minus without) / full_build
- build_share                          (full_build - full_build_without) / full_build: the same
                                       cost seen end to end, noisier (a cross-check)
- places_added                         the same cost as a share of the build without places
                                       (what places add to it: the issue's wording, stricter)
- precision_* / recall_*               over (event, country) pairs of the labelled sets in
                                       tests/places/ (development, and held out from tuning)

Issue 24's targets: places add at most 10 % to a full build at 1M events (places_added from
build_share, the builds themselves); precision >= 0.95, recall >= 0.90. places_share is an
upper bound: it counts places' parse CPU divided by the workers as wall time, but the parse at
1M also waits for storage, and its own wall difference (parse_with - parse_without: 1.0-6.2 s
in three runs) stayed below places_cpu / workers (7.5-10 s).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.lean import run, start_api  # noqa: E402
from benchmarks.results import save  # noqa: E402
from benchmarks.run import CACHE, archive_for  # noqa: E402


def parse_seconds(listing: list, work: Path, places: bool) -> float:
    """CPU-bound seconds to stage the listed files in this process (one worker)."""
    from pipeline.core.config import utc_today
    from pipeline.parse import stage

    real = stage.event_places
    if not places:
        stage.event_places = lambda title, summary, contexts: []
    try:
        shutil.rmtree(work, ignore_errors=True)
        started = time.process_time()
        stage.stage_all(listing, work, utc_today(), 2000, 1)
        return time.process_time() - started
    finally:
        stage.event_places = real
        shutil.rmtree(work, ignore_errors=True)


def places_cpu_per_file(
    archive: Path, work: Path, sample: int, repeats: int
) -> tuple[float, float, float, int]:
    """Places' CPU seconds per file of the parse, and the parse's with and without them, from
    `repeats` alternating stagings, with and without, of every k-th file (`sample` in all,
    spread over the years), and the archive's file count. Each is the fastest of its
    repeats: on this shared machine interference only ever adds CPU time (stagings of the
    same files varied by up to 40 %), so the minimum is the closest to the undisturbed cost,
    as `timeit` takes it. Places cost the same per file whatever the archive's size; the
    difference of two whole-archive stagings (about 100 CPU seconds each at 1M) moved by
    50 % between sessions."""
    from pipeline.extract.discover import discover

    listing = discover(archive)
    step = max(1, len(listing) // sample)
    chosen = listing[::step]
    pairs = [(parse_seconds(chosen, work, True), parse_seconds(chosen, work, False)) for _ in range(repeats)]
    with_places = min(w for w, _ in pairs) / len(chosen)
    without = min(wo for _, wo in pairs) / len(chosen)
    return with_places - without, with_places, without, len(listing)


# Installed on PYTHONPATH for the "without" build only: every process of the run (the parse
# workers are spawned) imports it at start-up, before the parser binds `event_places`.
NO_PLACES = "import pipeline.places\npipeline.places.event_places = lambda title, summary, contexts: []\n"


def stage_seconds(output: Path) -> dict[str, float]:
    """The full build's own parse, normalize and validate seconds, from its runs table."""
    import duckdb

    row = (
        duckdb.connect()
        .execute(
            f"SELECT seconds_parse, seconds_normalize, seconds_validate FROM '{output}/current/runs/*.parquet' "
            "ORDER BY started_at DESC LIMIT 1"
        )
        .fetchone()
    )
    assert row is not None
    return {"parse": float(row[0]), "normalize": float(row[1]), "validate": float(row[2])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2, help="parse workers of the full build")
    parser.add_argument("--parse-sample", type=int, default=200_000, help="files staged for places' CPU")
    parser.add_argument("--parse-repeats", type=int, default=5, help="stagings of that sample each way")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    archive = archive_for(args.events)
    work = Path(tempfile.mkdtemp(prefix="places-", dir=CACHE))
    home = work / "prefect-home"
    server, url = start_api(home)
    env = {**os.environ, "PREFECT_API_URL": url, "PREFECT_HOME": str(home)}
    (work / "no-places").mkdir()
    (work / "no-places" / "sitecustomize.py").write_text(NO_PLACES)
    stubbed = {
        **env,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(work / "no-places"), env.get("PYTHONPATH")])),
    }
    samples: dict[str, list[float]] = {}
    try:
        from pipeline.places import gazetteer as gz

        started = time.perf_counter()
        gz.gazetteer()
        samples["gazetteer_build"] = [time.perf_counter() - started]
        per_file, with_per_file, without_per_file, files = places_cpu_per_file(
            archive, work / "stage", args.parse_sample, args.parse_repeats
        )
        samples["places_cpu_per_file"] = [per_file]
        samples["files"] = [files]
        samples["parse_cpu_with"] = [with_per_file * files]
        samples["parse_cpu_without"] = [without_per_file * files]
        for r in range(args.repeats):
            for suffix, build_env in (("", env), ("_without", stubbed)):
                out = work / f"out-{r}{suffix}"
                started = time.perf_counter()
                subprocess.run(
                    run(archive, out, "--full-refresh", "--workers", str(args.workers)),
                    env=build_env,
                    check=True,
                    stdout=subprocess.DEVNULL,
                    cwd=ROOT,
                )
                samples.setdefault(f"full_build{suffix}", []).append(time.perf_counter() - started)
                for stage, seconds in stage_seconds(out).items():
                    samples.setdefault(f"{stage}{suffix or '_with'}", []).append(seconds)
                shutil.rmtree(out, ignore_errors=True)
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    values = {name: statistics.median(v) for name, v in samples.items()}
    values["places_cpu"] = values["places_cpu_per_file"] * values["files"]
    from pipeline.places.evaluate import load, score

    for label, name in (("development", "portal_events.tsv"), ("held_out", "held_out_events.tsv")):
        result = score(load(ROOT / "tests" / "places" / name))
        values[f"precision_{label}"] = result.precision
        values[f"recall_{label}"] = result.recall
    later = sum(values[f"{stage}_with"] - values[f"{stage}_without"] for stage in ("normalize", "validate"))
    values["normalize_validate_delta"] = later
    values["places_share"] = (
        values["places_cpu"] / args.workers + values["gazetteer_build"] + max(0.0, later)
    ) / values["full_build"]
    values["build_share"] = (values["full_build"] - values["full_build_without"]) / values["full_build"]
    cost = values["places_share"] * values["full_build"]
    values["places_added"] = cost / (values["full_build"] - cost)
    for name, value in values.items():
        print(f"{name:20} {value:8.3f}")
    if not args.no_write:
        command = (
            f"python benchmarks/places.py --events {args.events} --repeats {args.repeats} "
            f"--parse-sample {args.parse_sample} --parse-repeats {args.parse_repeats}"
        )
        save("places", args.events, command, values)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
