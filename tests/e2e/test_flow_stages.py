"""The flow's stages as plain calls (`task_runs=False`, a watcher's batches): the same tables as
with task runs, no task run in the API, the stage times in the counts artifact, retries on
I/O errors kept, and a failure beside validation still blocks the publish."""

import json
import shutil
from pathlib import Path

import duckdb
import pytest

from tests.conftest import SAMPLE, event_doc

pytestmark = pytest.mark.flow

BATCH = {"data_docs": False, "report_later": True, "split_validation": True}


def _tables(publication: str) -> dict[str, list[tuple]]:
    from pipeline.core.tables import PUBLISHED

    return {
        t: duckdb.sql(f"SELECT * FROM read_parquet('{publication}/{t}/*.parquet') ORDER BY ALL").fetchall()
        for t in PUBLISHED
        if t not in ("runs", "changes")  # these name the run: they differ by design
    }


def _archive(tmp_path: Path, name: str) -> Path:
    archive = tmp_path / name
    shutil.copytree(SAMPLE, archive)
    return archive


def _add(archive: Path, n: int) -> str:
    rel = f"news/2016/03/{n}/event-{n}.md"
    (archive / rel).parent.mkdir(parents=True, exist_ok=True)
    (archive / rel).write_text(
        event_doc(
            f"2016-03-0{n}",
            f"Event {n} happens",
            related=(
                "1. [WHO](/news/2020/03/11/the-world-health-organization-characterizes-covid-19-as-a-pandemic.md)"
                " _Context: COVID-19 pandemic_",
            ),
        ),
        encoding="utf-8",
    )
    return rel


def test_plain_stages_build_what_task_runs_build_and_record_no_task_run(prefect_server, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterKey,
        FlowRunFilter,
        FlowRunFilterId,
    )

    from flows.news_etl import news_etl

    results = {}
    flow_runs = {}
    for task_runs in (True, False):
        archive, out = _archive(tmp_path, f"archive-{task_runs}"), tmp_path / f"out-{task_runs}"
        news_etl(input=str(archive), output=str(out), task_runs=task_runs)
        rel = _add(archive, 4)
        state = news_etl(
            input=str(archive),
            output=str(out),
            changed_paths=[rel],
            task_runs=task_runs,
            return_state=True,
            **BATCH,
        )
        results[task_runs] = state.result()
        flow_runs[task_runs] = state.state_details.flow_run_id
    assert results[False]["published"] and results[False]["events_added"] == 1
    assert _tables(results[False]["publication"]) == _tables(results[True]["publication"])

    with get_client(sync_client=True) as client:
        task_runs_of = {
            mode: client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
            for mode, run_id in flow_runs.items()
        }
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["news-etl-counts"])),
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_runs[False]])),
        )
    assert {t.name.rsplit("-", 1)[0] for t in task_runs_of[True]} >= {"parse-documents", "publish-tables"}
    assert task_runs_of[False] == []
    (counts,) = artifacts
    table = json.loads(counts.data) if isinstance(counts.data, str) else counts.data
    measures = {row["measure"]: row["value"] for row in table}
    assert measures["events_added"] == 1 and measures["seconds_normalize"] > 0


def test_plain_stages_retry_io_errors_and_fail_on_the_change_log(prefect_server, tmp_path, monkeypatch):
    from flows.news_etl import news_etl
    from pipeline.publish import catalog, changes

    archive, out = _archive(tmp_path, "archive"), tmp_path / "out"
    first = news_etl(input=str(archive), output=str(out), task_runs=False)
    published = (out / "current").resolve()
    assert published == Path(first["publication"]).resolve()

    # The publish's first attempt meets an I/O error: retried after a second, published.
    real, attempts = catalog.publish, []

    def flaky(*args, **kwargs):
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError(5, "Input/output error")
        return real(*args, **kwargs)

    monkeypatch.setattr(catalog, "publish", flaky)
    second = news_etl(
        input=str(archive), output=str(out), changed_paths=[_add(archive, 5)], task_runs=False, **BATCH
    )
    assert len(attempts) == 2 and second["published"]
    published = (out / "current").resolve()

    # The change log (a thread beside validation) fails: nothing is published.
    def broken(*args, **kwargs):
        raise RuntimeError("change log broken")

    monkeypatch.setattr(changes, "record", broken)
    with pytest.raises(RuntimeError, match="change log broken"):
        news_etl(
            input=str(archive), output=str(out), changed_paths=[_add(archive, 6)], task_runs=False, **BATCH
        )
    assert (out / "current").resolve() == published

    # An input that cannot be listed is not retried (retrying cannot help): it fails at once.
    monkeypatch.undo()
    from pipeline import steps
    from pipeline.extract.discover import InputUnlistable

    listed = []

    def unlistable(config, listing, changed):
        listed.append(1)
        raise InputUnlistable(archive, [("news/2016", "Permission denied")])

    monkeypatch.setattr(steps, "discover_input", unlistable)
    with pytest.raises(InputUnlistable):
        news_etl(input=str(archive), output=str(out), task_runs=False)
    assert len(listed) == 1 and (out / "current").resolve() == published
