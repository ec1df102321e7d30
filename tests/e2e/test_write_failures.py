"""Write failures (disk full, permission lost on the output): a clear error, the previous
publication intact, and the next run succeeds."""

import errno
import json
import os
import shutil
from pathlib import Path

import pytest

from pipeline import cli
from pipeline.publish.catalog import current_run_id
from tests.conftest import SAMPLE

pytestmark = pytest.mark.flow


def run_cli(output: Path, capsys, *extra: str) -> tuple[int, str]:
    code = cli.main(["run", "--input", str(SAMPLE), "--output", str(output), "--no-progress", *extra])
    return code, capsys.readouterr().err


def state(output: Path) -> tuple[bytes, str | None, list[str]]:
    from pipeline.core.config import OutputLayout

    layout = OutputLayout(output.resolve())
    return (
        layout.catalog.read_bytes(),
        current_run_id(layout),
        sorted(p.name for p in layout.publications.iterdir()),
    )


def test_disk_full_while_swapping_the_catalog(prefect_server, tmp_path, monkeypatch, capsys):
    from pipeline.publish import catalog as publish

    out = tmp_path / "out"
    assert run_cli(out, capsys)[0] == 0
    before = state(out)
    real_replace = os.replace

    def full_disk(src, dst, *args, **kwargs):
        if str(dst).endswith("news.duckdb"):
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(publish.os, "replace", full_disk)
    code, err = run_cli(out, capsys, "--full-refresh")
    assert code == 1
    assert err.strip().splitlines() == [
        f"error: No space left on device ({out.resolve() / 'news.duckdb'}); the previous publication is intact"
    ]
    # the catalog, `current` and the kept publications are untouched: the failed one is gone
    assert state(out) == before
    monkeypatch.undo()
    assert run_cli(out, capsys)[0] == 0


def test_permission_lost_while_writing_staging_files(prefect_server, tmp_path, monkeypatch, capsys):
    from pipeline.parse import stage

    out = tmp_path / "out"
    assert run_cli(out, capsys)[0] == 0
    before = state(out)
    (SAMPLE / "news").stat()  # the input is fine; the output is what fails

    def denied(target, table, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(target))

    monkeypatch.setattr(stage, "save_parquet", denied)
    code, err = run_cli(out, capsys, "--full-refresh")
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1
    assert lines[0].startswith("error: Permission denied (") and lines[0].endswith(
        "; the previous publication is intact"
    )
    assert state(out) == before  # nothing new was published or left behind
    monkeypatch.undo()
    assert run_cli(out, capsys)[0] == 0


def test_an_unexpected_error_is_one_line_too(prefect_server, tmp_path, monkeypatch, capsys):
    from pipeline.transform import normalize

    real_connect = normalize.connect

    def failing(*args, **kwargs):
        con = real_connect(*args, **kwargs)
        con.execute("SET memory_limit = '1MB'")  # a real DuckDB error, raised inside the flow
        return con

    monkeypatch.setattr(normalize, "connect", failing)
    out = tmp_path / "out"
    code, err = run_cli(out, capsys)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1, err
    assert lines[0].startswith("error: ") and lines[0].endswith("; the previous publication is intact")
    assert lines[0].startswith("error: OutOfMemoryException: Out of Memory Error")
    assert not (out / "news.duckdb").exists()


def test_a_run_report_that_cannot_be_written_after_the_publish_is_a_warning(
    prefect_server, tmp_path, monkeypatch, capsys
):
    """The report is written once the publication is current (off a watcher's path to a
    queryable change): the run has published, so it exits 0 and says what is missing."""
    from pipeline.core.config import OutputLayout
    from pipeline.publish import report

    out = tmp_path / "out"
    real_save = report.save_bytes

    def full_disk(target, data, *args, **kwargs):
        if target.suffix == ".html":
            raise OSError(errno.ENOSPC, "No space left on device", str(target))
        return real_save(target, data, *args, **kwargs)

    monkeypatch.setattr(report, "save_bytes", full_disk)
    code = cli.main(["run", "--input", str(SAMPLE), "--output", str(out), "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0
    assert current_run_id(OutputLayout(out.resolve())) is not None
    assert "run report (HTML)" in printed and "not written (see the warning)" in printed
    assert "warning: run report not written: [Errno 28] No space left on device" in printed


def test_a_run_waits_for_its_report_and_says_so_when_it_is_late(
    prefect_server, tmp_path, monkeypatch, capsys
):
    """`run` writes its report in the background while the flow run ends; it waits for it
    before it exits (the page is there), and a page not written in time is a warning."""
    import threading
    import time

    from pipeline.publish import report

    out = tmp_path / "out"
    code = cli.main(["run", "--input", str(SAMPLE), "--output", str(out), "--no-progress", "--json"])
    first = json.loads(capsys.readouterr().out)
    assert code == 0 and Path(first["report"]).is_file() and not first["warnings"]

    release = threading.Event()
    real_write = report.write_report

    def slow(*args, **kwargs):
        release.wait(30)
        return real_write(*args, **kwargs)

    monkeypatch.setattr(report, "write_report", slow)
    monkeypatch.setattr(cli, "REPORT_TIMEOUT", 0.2)
    started = time.monotonic()
    code = cli.main(["run", "--input", str(SAMPLE), "--output", str(out), "--no-progress", "--full-refresh"])
    release.set()
    printed = capsys.readouterr().out
    assert code == 0 and time.monotonic() - started < 25
    assert "not written (see the warning)" in printed
    assert "warning: run report not written within 0.2 s" in printed


def test_data_docs_that_cannot_be_written_are_a_warning_after_the_publish(prefect_server, tmp_path, capsys):
    """Data Docs are built by the validation process while the run publishes: a failure to
    write them comes after the publish, so the run exits 0, says so, and links no missing page."""
    from pipeline.core.config import OutputLayout

    out = tmp_path / "out"
    assert cli.main(["run", "--input", str(SAMPLE), "--output", str(out), "--no-progress"]) == 0
    first = current_run_id(OutputLayout(out.resolve()))
    docs = out / "validation" / "docs"
    shutil.rmtree(docs)
    docs.write_text("a file where the docs folder goes")
    capsys.readouterr()
    code = cli.main(["run", "--input", str(SAMPLE), "--output", str(out), "--no-progress", "--full-refresh"])
    printed = capsys.readouterr().out
    assert code == 0 and current_run_id(OutputLayout(out.resolve())) not in (None, first)
    assert "warning: Data Docs not written: " in printed
    assert "validation report" in printed and str(docs / "index.html") not in printed
