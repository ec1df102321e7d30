"""What places cost a full build: `python benchmarks/places.py [--events 1000000] [--repeats 1]`.

Places are found while parsing (pipeline/places, called per event by the parser), so their
cost is the parse stage's CPU time with them minus without them (the same staging code with
`event_places` replaced by a function that finds nothing), measured in one process on the
same archive, alternating. The share is that difference spread over the build's parse
workers, over the wall time of a full build (`run --full-refresh` into a fresh output, with
a running Prefect API) measured in the same session:

- parse_cpu_with / parse_cpu_without   seconds of one process staging every file
- places_cpu                          the difference
- gazetteer_build                      seconds to build the gazetteer once (per worker process)
- full_build                           wall seconds of the full build
- places_share                         (places_cpu / workers + gazetteer_build) / full_build
- precision_* / recall_*               over (event, country) pairs of the labelled sets in
                                       tests/places/ (development, and held out from tuning)

Issue 24's targets: places_share <= 0.10 at 1M events; precision >= 0.95, recall >= 0.90.
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


def parse_seconds(archive: Path, work: Path, places: bool) -> float:
    """CPU-bound seconds to stage every file in this process (one worker)."""
    from pipeline.core.config import utc_today
    from pipeline.extract.discover import discover
    from pipeline.parse import stage

    real = stage.event_places
    if not places:
        stage.event_places = lambda title, summary, contexts: []
    try:
        listing = discover(archive)
        shutil.rmtree(work, ignore_errors=True)
        started = time.process_time()
        stage.stage_all(listing, work, utc_today(), 2000, 1)
        return time.process_time() - started
    finally:
        stage.event_places = real
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2, help="parse workers of the full build")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    archive = archive_for(args.events)
    work = Path(tempfile.mkdtemp(prefix="places-", dir=CACHE))
    home = work / "prefect-home"
    server, url = start_api(home)
    env = {**os.environ, "PREFECT_API_URL": url, "PREFECT_HOME": str(home)}
    samples: dict[str, list[float]] = {}
    try:
        from pipeline.places import gazetteer as gz

        started = time.perf_counter()
        gz.gazetteer()
        samples["gazetteer_build"] = [time.perf_counter() - started]
        for r in range(args.repeats):
            samples.setdefault("parse_cpu_with", []).append(parse_seconds(archive, work / "stage", True))
            samples.setdefault("parse_cpu_without", []).append(parse_seconds(archive, work / "stage", False))
            out = work / f"out-{r}"
            started = time.perf_counter()
            subprocess.run(
                run(archive, out, "--full-refresh", "--workers", str(args.workers)),
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
                cwd=ROOT,
            )
            samples.setdefault("full_build", []).append(time.perf_counter() - started)
            shutil.rmtree(out, ignore_errors=True)
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    values = {name: statistics.median(v) for name, v in samples.items()}
    values["places_cpu"] = values["parse_cpu_with"] - values["parse_cpu_without"]
    from pipeline.places.evaluate import load, score

    for label, name in (("development", "portal_events.tsv"), ("held_out", "held_out_events.tsv")):
        result = score(load(ROOT / "tests" / "places" / name))
        values[f"precision_{label}"] = result.precision
        values[f"recall_{label}"] = result.recall
    values["places_share"] = (values["places_cpu"] / args.workers + values["gazetteer_build"]) / values[
        "full_build"
    ]
    for name, value in values.items():
        print(f"{name:20} {value:8.3f}")
    if not args.no_write:
        command = f"python benchmarks/places.py --events {args.events} --repeats {args.repeats}"
        save("places", args.events, command, values)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
