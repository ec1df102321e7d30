"""`python benchmarks/breakdown.py --sizes 200000`: where the time of a run goes, step by step.

For each size, `--repeats` times: a run over an empty archive (the fixed start-up cost), a
full build into a fresh output, then the incremental runs of benchmarks/run.py (after adding
100 event files with sources only, then 100 that relate to earlier events). Every run goes
through benchmarks/traced.py, which records when it passes each checkpoint of
pipeline/core/faults.py. Prints, and saves to benchmarks/results/, the median seconds per step and
what an incremental run spends beyond the empty run's start-up: the budget of issue #3 is 5%
of the full build beyond start-up.
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
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402  (benchmarks/run.py: archives, added files, the runs table)

TRACED = Path(__file__).resolve().parent / "traced.py"

# Steps, each ending at the first of its checkpoints (pipeline/core/faults.py) a run passes after
# the previous step; a full build passes more checkpoints per step than an incremental one.
STEPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("before the flow: interpreter, imports, Prefect server, flow run", ()),
    ("discover: list and stat every file", ("discover:listed",)),
    ("read the manifest, delete dead staging files", ("parse:collected-garbage",)),
    (
        "plan and parse new or changed files",
        ("stage:partial-batch", "parse:first-batch", "parse:all-batches"),
    ),
    ("write the next manifest", ("parse:manifest-written",)),
    ("normalize: change set and events", ("normalize:events",)),
    (
        "normalize: the other event and file tables",
        (
            "normalize:sources",
            "normalize:relations",
            "normalize:relation_tags",
            "normalize:event_tags",
            "normalize:event_places",
            "normalize:quarantine",
            "normalize:tag_spellings",
            "normalize:relation_targets",
            "normalize:files",
        ),
    ),
    ("normalize: tags and countries (whole)", ("normalize:tags", "normalize:countries")),
    ("normalize: storylines (whole)", ("normalize:storylines",)),
    ("validate (Great Expectations)", ("validate:done",)),
    (
        "HTML report, runs, publish",
        (
            "publish:runs-written",
            "publish:catalog-built",
            "publish:catalog-swapped",
            "publish:current-swapped",
            "publish:pruned",
            "publish:manifest-committed",
        ),
    ),
    ("summary, artifacts, Prefect shutdown", ("exit",)),
)
STEP_OF = {mark: label for label, marks in STEPS for mark in marks}


def traced_run(archive: Path, output: Path, full: bool) -> dict[str, float]:
    """Seconds per step of one run (and `total`), from its trace and the `runs` table."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        trace = Path(handle.name)
    cmd = bench.run_cmd(archive, output, full)
    cmd[1:3] = [str(TRACED)]  # `python -m pipeline run ...` -> `python traced.py run ...`
    try:
        subprocess.run(
            cmd, check=True, stdout=subprocess.DEVNULL, env=os.environ | {"PIPELINE_TRACE": str(trace)}
        )
        marks = json.loads(trace.read_text(encoding="utf-8"))
    finally:
        trace.unlink(missing_ok=True)
    return steps_of(marks, bench.last_run(output)["seconds_discover"])


def steps_of(marks: list[tuple[str, float]], seconds_discover: float) -> dict[str, float]:
    """Seconds per step from a trace (checkpoint, seconds since start) ending at `exit`; the
    flow's own discover timer splits the time before `discover:listed` into start-up and
    discovery. A checkpoint missing from STEPS is an error, not time put in the wrong step."""
    steps = {label: 0.0 for label, _ in STEPS}
    previous = 0.0
    for name, at in marks:
        steps[STEP_OF[name]] += at - previous
        previous = at
    discover = STEPS[1][0]
    steps[discover] = min(seconds_discover, steps[discover])
    steps[STEPS[0][0]] = marks[0][1] - steps[discover]
    steps["total"] = previous
    return steps


def measure(size: int, repeats: int, work: Path) -> dict[str, dict[str, float]]:
    archive = bench.archive_for(size)
    empty = work / "empty"
    empty.mkdir(parents=True, exist_ok=True)
    samples: dict[str, list[dict[str, float]]] = {"empty": [], "full": [], "+100": [], "+100 related": []}
    for r in range(repeats):
        samples["empty"].append(traced_run(empty, work / f"breakdown-empty-{r}", full=True))
        out = work / f"breakdown-{size}-{r}"
        shutil.rmtree(out, ignore_errors=True)
        samples["full"].append(traced_run(archive, out, full=True))
        for kind, add in (("+100", bench.add_files), ("+100 related", bench.add_related_files)):
            extra = add(archive, 100, f"b{r}")
            try:
                samples[kind].append(traced_run(archive, out, full=False))
            finally:
                shutil.rmtree(extra)
        shutil.rmtree(out, ignore_errors=True)
    return {
        kind: {step: statistics.median(s[step] for s in runs) for step in runs[0]}
        for kind, runs in samples.items()
    }


def report(size: int, medians: dict[str, dict[str, float]], command: str, repeats: int) -> str:
    empty = medians["empty"]
    beyond = medians["full"]["total"] - empty["total"]
    lines = [
        f"### {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores: "
        f"where a run's time goes, {size:,} events",
        "",
        f"Command: `{command}` (medians of {repeats} runs per column, seconds; each run's steps "
        "from its checkpoints, benchmarks/traced.py)",
        "",
        "| step | empty archive | full build | incremental +100 | +100 beyond empty "
        "| incremental +100 related | related beyond empty |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label in [*(label for label, _ in STEPS), "total"]:
        e, f, i, r = (medians[k][label] for k in ("empty", "full", "+100", "+100 related"))
        name = f"**{label}**" if label == "total" else label
        lines.append(f"| {name} | {e:.2f} | {f:.2f} | {i:.2f} | {i - e:+.2f} | {r:.2f} | {r - e:+.2f} |")
    extra, related = (medians[k]["total"] - empty["total"] for k in ("+100", "+100 related"))
    lines += [
        "",
        f"Beyond start-up: full build {beyond:.1f} s; incremental +100 {extra:.2f} s "
        f"({extra / beyond:.1%}), +100 related {related:.2f} s ({related / beyond:.1%}); "
        f"#3's 5% budget is {0.05 * beyond:.2f} s.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path, default=bench.CACHE / "work")
    parser.add_argument("--no-write", action="store_true", help="print only, save no result")
    args = parser.parse_args()
    command = (
        f"python benchmarks/breakdown.py --sizes {' '.join(map(str, args.sizes))} --repeats {args.repeats}"
    )
    for size in args.sizes:
        medians = measure(size, args.repeats, args.work)
        print(report(size, medians, command, args.repeats), flush=True)
        if not args.no_write:
            bench.save(
                "breakdown",
                size,
                command,
                {
                    f"{run}: {step}": seconds
                    for run, steps in medians.items()
                    for step, seconds in steps.items()
                },
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
