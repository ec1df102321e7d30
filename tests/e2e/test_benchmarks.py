"""benchmarks/breakdown.py: a traced run records every checkpoint it passes, and the steps it
reports add up to the run's time."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from pipeline.core.faults import CRASH_POINTS
from tests.conftest import REPO, SAMPLE


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def breakdown():
    saved = list(sys.path)  # breakdown.py puts benchmarks/ first, to import run.py as `run`
    try:
        yield _load("breakdown")
    finally:
        sys.path[:] = saved


def test_every_checkpoint_belongs_to_a_step(breakdown):
    assert set(CRASH_POINTS) | {"exit"} == set(breakdown.STEP_OF)


def test_steps_add_up_and_split_startup_from_discovery(breakdown):
    marks = [
        ("discover:listed", 6.0),
        ("parse:collected-garbage", 6.5),
        ("parse:first-batch", 7.0),
        ("parse:manifest-written", 7.25),
        ("normalize:events", 8.0),
        ("normalize:storylines", 9.0),
        ("validate:done", 12.0),
        ("publish:runs-written", 12.5),
        ("exit", 13.0),
    ]
    steps = breakdown.steps_of(marks, seconds_discover=1.5)
    assert steps["total"] == 13.0
    assert sum(v for k, v in steps.items() if k != "total") == pytest.approx(13.0)
    assert steps["discover: list and stat every file"] == 1.5
    assert steps["before the flow: interpreter, imports, Prefect server, flow run"] == 4.5
    assert steps["normalize: storylines (whole)"] == 1.0
    assert steps["validate (Great Expectations)"] == 3.0
    with pytest.raises(KeyError):
        breakdown.steps_of([("a:new-checkpoint", 1.0), ("exit", 2.0)], 0.5)


def test_traced_run_records_the_checkpoints_of_a_real_run(tmp_path, breakdown):
    trace = tmp_path / "trace.json"
    cmd = [sys.executable, str(REPO / "benchmarks" / "traced.py"), "run", "--input", str(SAMPLE)]
    done = subprocess.run(
        [*cmd, "--output", str(tmp_path / "out"), "--no-progress"],
        capture_output=True,
        text=True,
        env=os.environ | {"PIPELINE_TRACE": str(trace)},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    marks = json.loads(trace.read_text())
    names = [name for name, _ in marks]
    assert names[0] == "discover:listed" and names[-1] == "exit"
    assert {"normalize:events", "normalize:storylines", "validate:done", "publish:manifest-committed"} <= set(
        names
    )
    times = [at for _, at in marks]
    assert times == sorted(times)
    steps = breakdown.steps_of(marks, 0.0)
    assert steps["total"] == pytest.approx(times[-1])


def test_results_are_data_and_the_summary_marks_each_target(tmp_path, monkeypatch):
    """A saved result lands in benchmarks/results/ as JSON and the generated BENCHMARKS.md
    marks each target met or not from it (here in a scratch folder, not the repository's)."""
    results = _load("results")
    monkeypatch.setattr(results, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(results, "ROOT", tmp_path)
    results.save("lean", 110_000, "cmd", {"naive": 30.0, "run_api": 8.0, "empty_api": 5.0, "noop_api": 2.5})
    page = (tmp_path / "BENCHMARKS.md").read_text(encoding="utf-8")
    rows = {line.split(" | ")[0].lstrip("| "): line for line in page.splitlines() if line.startswith("| ")}
    assert (
        "3.75 x | met" in rows["110k events, running Prefect API: at least 3x faster than the naive script"]
    )
    assert "5.00 s | **not met**" in rows["Empty archive, running Prefect API"]
    assert "2.50 s | met" in rows["Nothing to do at 110k events, running API"]
    assert "not measured" in rows["Peak memory of the process tree, 1M full build"]
    saved = json.loads(next((tmp_path / "results").glob("*-lean-110000.json")).read_text())
    assert saved["values"]["naive"] == 30.0 and saved["command"] == "cmd"


def test_the_watch_probe_queries_when_the_catalog_is_replaced(tmp_path):
    """benchmarks/watch.py measures latency with a fresh read-only connection, queried when the
    catalog file changes rather than every 20 ms (which took CPU from the watcher measured):
    a catalog swapped in by rename is seen within milliseconds, though the periodic query
    is minutes away."""
    import threading
    import time

    import duckdb

    saved = list(sys.path)
    try:
        watch = _load("watch")
    finally:
        sys.path[:] = saved
    catalog = tmp_path / "news.duckdb"
    for path, rows in ((catalog, 0), (tmp_path / "next.duckdb", 1)):
        con = duckdb.connect(str(path))
        con.execute("CREATE TABLE events AS SELECT 'e' AS event_id FROM range(?)", [rows])
        con.close()

    def publish() -> None:
        time.sleep(0.3)
        os.replace(tmp_path / "next.duckdb", catalog)

    threading.Thread(target=publish).start()
    seconds = watch.wait_visible(
        catalog, "SELECT count(*) FROM events WHERE event_id = ?", ["e"], 1, every=600
    )
    assert 0.3 <= seconds < 5
