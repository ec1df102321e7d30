"""Change sets are proportional to the change: `python benchmarks/changes.py [--events 1000000] [--repeats 3]`.

On a generated archive (cached under benchmarks/.cache/), a full build, then per repeat: add
100 new event files, run incrementally, and time `python -m pipeline export --since
<the previous run> --format parquet` (the change set of a run that changed 100 events) in a
fresh process, and the same export in-process (without interpreter start-up). Saved as kind
`changes` (BENCHMARKS.md is generated from the results).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.results import save  # noqa: E402
from benchmarks.run import CACHE, PYTHON, add_files, archive_for, last_run  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print only, save no result")
    args = parser.parse_args()
    archive = archive_for(args.events)
    work = Path(tempfile.mkdtemp(prefix="changes-", dir=CACHE))
    out = work / "out"
    run = [PYTHON, "-m", "pipeline", "run", "--input", str(archive), "--output", str(out), "--no-progress"]
    subprocess.run(run, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    samples: dict[str, list[float]] = {}
    added: list[Path] = []
    try:
        for r in range(args.repeats):
            since = last_run(out)["run_id"]
            added.append(add_files(archive, 100, f"c{r}"))
            start = time.perf_counter()
            subprocess.run(run, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
            samples.setdefault("incremental_run", []).append(time.perf_counter() - start)
            row = last_run(out)
            samples.setdefault("events_added", []).append(row["events_added"])
            target = work / f"set-{r}"
            start = time.perf_counter()
            subprocess.run(
                [
                    PYTHON,
                    "-m",
                    "pipeline",
                    "export",
                    "--output",
                    str(out),
                    "--since",
                    since,
                    "--format",
                    "parquet",
                    "--to",
                    str(target),
                ],
                check=True,
                stdout=subprocess.DEVNULL,
                cwd=ROOT,
            )
            samples.setdefault("export_since_process", []).append(time.perf_counter() - start)
            from pipeline.publish.export import export_since

            start = time.perf_counter()
            export_since(out, since, "parquet", work / f"set-in-{r}")
            samples.setdefault("export_since", []).append(time.perf_counter() - start)
    finally:
        for folder in added:
            shutil.rmtree(folder, ignore_errors=True)
    values = {name: statistics.median(v) for name, v in samples.items()}
    for name, value in sorted(values.items()):
        print(f"{name:24} {value:8.2f}")
    if not args.no_write:
        save(
            "changes",
            args.events,
            f"python benchmarks/changes.py --events {args.events} --repeats {args.repeats}",
            values,
        )
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
