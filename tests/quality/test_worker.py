"""Validation in its own process gives what validation in the run's process gives, and a
process that dies, fails or is orphaned is reported or ends, never hangs a run."""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from pipeline.quality import worker
from pipeline.quality.validate import DEFAULT_EXPECTATIONS, SuiteError, load_specs, validate_publication
from tests.conftest import SAMPLE, TODAY, build_tables

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("clean")
    build_tables(SAMPLE, work).close()
    return work / "publication"


@pytest.fixture(autouse=True)
def no_processes_left():
    yield
    worker.stop_all()


def _validate(publication: Path, expectations: Path, report_dir: Path, run_id: str):
    """`publication` validated in the validation process for these suites."""
    return worker.validate(
        expectations, report_dir, publication=publication, run_id=run_id, files_seen=40, today=TODAY
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat", encoding="utf-8") as stat:  # a zombie is not alive
        return stat.read().split(") ")[-1][0] != "Z"


def test_the_process_reports_what_validation_in_this_process_reports(clean, tmp_path):
    there = _validate(clean, DEFAULT_EXPECTATIONS, tmp_path / "there", "run-1")
    here = validate_publication(clean, tmp_path / "here", "run-1", 40, TODAY)
    assert there.passed and [asdict(o) for o in there.outcomes] == [asdict(o) for o in here.outcomes]
    assert (
        json.loads(there.report_path.read_text())["outcomes"]
        == json.loads(here.report_path.read_text())["outcomes"]
    )
    # The report comes back first; the Data Docs follow, listing the run.
    assert there.docs_index == tmp_path / "there" / "docs" / "index.html"
    worker.finish_docs(DEFAULT_EXPECTATIONS)
    assert "run-1" in there.docs_index.read_text(encoding="utf-8")
    process = worker.start(DEFAULT_EXPECTATIONS, tmp_path / "there" / "docs")
    assert process is not None and process.process.pid != os.getpid()
    # The same process serves the next validation (GX imported and its context built once).
    again = _validate(clean, DEFAULT_EXPECTATIONS, tmp_path / "there", "run-2")
    assert again.passed and worker.start(DEFAULT_EXPECTATIONS, tmp_path / "there" / "docs") is process


def test_a_failure_in_the_process_is_raised_here_as_itself(clean, tmp_path):
    shutil.copytree(DEFAULT_EXPECTATIONS, tmp_path / "exp")
    suite = json.loads((tmp_path / "exp" / "events.json").read_text())
    suite["expectations"][0]["type"] = "expect_column_values_to_be_glorious"
    (tmp_path / "exp" / "events.json").write_text(json.dumps(suite))
    with pytest.raises(SuiteError, match="expect_column_values_to_be_glorious"):
        _validate(clean, tmp_path / "exp", tmp_path / "v", "run-1")
    process = worker.start(tmp_path / "exp", tmp_path / "v" / "docs")
    assert process is not None and process.alive  # a failed request leaves it serving


def test_a_process_that_dies_while_validating_is_an_error_and_the_next_call_starts_another(clean, tmp_path):
    process = worker.start(DEFAULT_EXPECTATIONS, tmp_path / "v" / "docs")
    assert process is not None
    # Killed while it still imports Great Expectations, the request already sent.
    threading.Timer(0.3, os.kill, (process.process.pid, signal.SIGKILL)).start()
    with pytest.raises(worker.ValidationProcessDied, match=r"exit code -9"):
        _validate(clean, DEFAULT_EXPECTATIONS, tmp_path / "v", "run-1")
    report = _validate(clean, DEFAULT_EXPECTATIONS, tmp_path / "v", "run-2")
    assert report.passed
    assert worker.start(DEFAULT_EXPECTATIONS, tmp_path / "v" / "docs") is not process


def test_the_process_ends_when_the_run_that_started_it_is_killed(tmp_path):
    script = (
        "import sys, time; from pathlib import Path; from pipeline.quality import worker; "
        f"p = worker.start(Path({str(DEFAULT_EXPECTATIONS)!r}), Path({str(tmp_path / 'docs')!r})); "
        "print(p.process.pid, flush=True); time.sleep(60)"
    )
    run = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert run.stdout is not None
    child = int(run.stdout.readline())
    assert _alive(child)
    run.kill()  # SIGKILL: no exit handler runs
    run.wait()
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def test_data_docs_that_cannot_be_written_are_raised_by_finish_docs_and_the_process_serves_on(
    clean, tmp_path
):
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "docs").write_text("a file where the docs folder goes")
    report = _validate(clean, DEFAULT_EXPECTATIONS, tmp_path / "v", "run-1")
    assert report.passed
    with pytest.raises(Exception, match="docs"):
        worker.finish_docs(DEFAULT_EXPECTATIONS)
    (tmp_path / "v" / "docs").unlink()
    again = _validate(clean, DEFAULT_EXPECTATIONS, tmp_path / "v", "run-2")
    worker.finish_docs(DEFAULT_EXPECTATIONS)
    assert again.passed and again.docs_index is not None and "run-2" in again.docs_index.read_text("utf-8")


def test_a_validation_that_fails_midway_leaves_nothing_in_the_next_data_docs(clean, tmp_path):
    """Results of suites that ran before the error are not listed with the next run's."""
    broken = tmp_path / "broken"
    shutil.copytree(clean, broken)
    shutil.rmtree(broken / "tags")  # suites that read `tags` cannot run; those before them did
    with pytest.raises(Exception, match="tags"):
        _validate(broken, DEFAULT_EXPECTATIONS, tmp_path / "v", "run-broken")
    report = _validate(clean, DEFAULT_EXPECTATIONS, tmp_path / "v", "run-good")
    worker.finish_docs(DEFAULT_EXPECTATIONS)
    assert report.passed and report.docs_index is not None
    pages = {p.name for p in (tmp_path / "v" / "docs" / "validations").rglob("*.html")}
    runs = {p.parent.parent.name for p in (tmp_path / "v" / "docs" / "validations").rglob("*.html")}
    assert (
        pages
        and "run-broken" not in " ".join(runs)
        and "run-broken" not in report.docs_index.read_text("utf-8")
    )


def test_suites_begun_early_and_the_rest_report_what_one_validation_reports(clean, tmp_path):
    """A watcher's batch begins the suites over the year-part tables while the tags and
    storylines are computed and validates the rest after: the second report holds both
    outcomes, as one validation of every suite gives them, and one failing suite in either
    half fails it."""
    from pipeline.quality.validate import suites_within
    from pipeline.transform.normalize import PARTS_TABLES

    first = suites_within(PARTS_TABLES)
    rest = ["event_storylines", "event_tags", "relation_tags", "storylines", "tags"]
    assert set(first) | set(rest) == {s.name for s in load_specs()} and not set(first) & set(rest)
    whole = validate_publication(clean, tmp_path / "whole", "r", 40, TODAY, build_docs=False)
    arguments = {"publication": clean, "run_id": "r", "files_seen": 40, "today": TODAY, "build_docs": False}
    waiting = worker.begin(
        DEFAULT_EXPECTATIONS, tmp_path / "split", only=first, tables=PARTS_TABLES, **arguments
    )
    report = worker.validate(
        DEFAULT_EXPECTATIONS, tmp_path / "split", only=rest, prior=waiting(), **arguments
    )
    assert report.passed and [asdict(o) for o in report.outcomes] == [asdict(o) for o in whole.outcomes]
    assert json.loads(report.report_path.read_text())["outcomes"] == [asdict(o) for o in whole.outcomes]

    broken = tmp_path / "broken"  # an event twice: its id is not unique (critical)
    shutil.copytree(clean, broken)
    import duckdb

    events = f"read_parquet('{clean}/events/*.parquet')"
    duckdb.connect().execute(
        f"COPY (SELECT * FROM {events} UNION ALL (SELECT * FROM {events} LIMIT 1)) "
        f"TO '{broken}/events/all.parquet' (FORMAT parquet)"
    )
    for part in (broken / "events").glob("*.parquet"):
        if part.name != "all.parquet":
            part.unlink()
    arguments["publication"] = broken
    waiting = worker.begin(
        DEFAULT_EXPECTATIONS, tmp_path / "broken-v", only=first, tables=PARTS_TABLES, **arguments
    )
    report = worker.validate(
        DEFAULT_EXPECTATIONS, tmp_path / "broken-v", only=rest, prior=waiting(), **arguments
    )
    assert not report.passed and {o.suite for o in report.critical_failures} >= {"events"}


def test_a_begun_validation_nobody_waited_for_does_not_answer_the_next(clean, tmp_path):
    """A run that fails between beginning its first suites and asking for the rest leaves a
    reply in the pipe: the next request gets its own report, and the abandoned waiter says
    its report is gone rather than returning another's."""
    arguments = {"run_id": "r", "files_seen": 40, "today": TODAY, "build_docs": False}
    abandoned = worker.begin(
        DEFAULT_EXPECTATIONS, tmp_path / "a", publication=clean, only=["files"], **arguments
    )
    report = worker.validate(
        DEFAULT_EXPECTATIONS, tmp_path / "b", publication=clean, only=["events"], **arguments
    )
    assert {o.suite for o in report.outcomes} == {"events"}
    with pytest.raises(RuntimeError, match="dropped"):
        abandoned()


def test_suites_begun_for_data_docs_show_in_the_data_docs_of_the_rest(clean, tmp_path):
    """A run's first suites, begun while it computes the tags and storylines, keep their
    results in the process for the Data Docs built after the other suites: those show every
    suite. A run that never asked for the rest leaves nothing in the next run's."""
    from pipeline.quality.validate import suites_within
    from pipeline.transform.normalize import PARTS_TABLES

    first = suites_within(PARTS_TABLES)
    rest = [s.name for s in load_specs() if s.name not in first]
    arguments = {"publication": clean, "files_seen": 40, "today": TODAY}
    worker.begin(
        DEFAULT_EXPECTATIONS, tmp_path / "v", run_id="run-gone", only=first, tables=PARTS_TABLES, **arguments
    )
    waiting = worker.begin(
        DEFAULT_EXPECTATIONS, tmp_path / "v", run_id="run-1", only=first, tables=PARTS_TABLES, **arguments
    )
    report = worker.validate(
        DEFAULT_EXPECTATIONS, tmp_path / "v", run_id="run-1", only=rest, prior=waiting(), **arguments
    )
    worker.finish_docs(DEFAULT_EXPECTATIONS)
    assert report.passed and report.docs_index is not None
    assert {o.suite for o in report.outcomes} == {s.name for s in load_specs()}
    pages = list((tmp_path / "v" / "docs" / "validations").rglob("*.html"))
    shown = " ".join(str(p.relative_to(tmp_path / "v" / "docs" / "validations")) for p in pages)
    assert all(name in shown for name in first + rest)
    assert "run-1" in shown and "run-gone" not in shown
    with pytest.raises(ValueError, match="slot 0"):
        worker.begin(DEFAULT_EXPECTATIONS, tmp_path / "w", slot=1, run_id="r", only=rest, **arguments)
