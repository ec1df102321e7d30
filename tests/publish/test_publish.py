"""Publishing: versioned folders, atomic catalog swap, history and rollback."""

import datetime as dt
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from pipeline.core.config import OutputLayout
from pipeline.core.tables import runs_file
from pipeline.publish import runs
from pipeline.publish.catalog import current_run_id, list_publications, publish
from tests.conftest import REPO, SAMPLE, build_tables, event_doc, write_archive


def make_publication(layout: OutputLayout, run_id: str, archive: Path, tmp: Path) -> None:
    from pipeline.core.lock import claim_output

    claim_output(layout.root)
    build_tables(archive, tmp / run_id).close()
    shutil.copytree(tmp / run_id / "publication", layout.publication(run_id))
    import datetime as dt

    record = runs.RunRecord(
        run_id=run_id, started_at=dt.datetime.now(dt.UTC), finished_at=dt.datetime.now(dt.UTC)
    )
    runs.write_table(runs.append(layout.run_log, record), runs_file(layout.publication(run_id)))


def events(catalog: Path) -> int:
    con = duckdb.connect(str(catalog), read_only=True)
    try:
        return con.execute("SELECT count(*) FROM events").fetchone()[0]
    finally:
        con.close()


def test_publish_keeps_the_newest_and_rollback_restores_an_older_one(tmp_path):
    layout = OutputLayout(tmp_path / "out")
    small = write_archive(tmp_path / "small", {"news/2014/06/21/a.md": event_doc(title="A")})
    for i, archive in enumerate([SAMPLE, small, SAMPLE, small]):
        make_publication(layout, f"2026010{i}T000000Z-1", archive, tmp_path / "work")
        publish(layout, f"2026010{i}T000000Z-1", keep=3, retention=dt.timedelta(0))
    assert list_publications(layout) == ["20260101T000000Z-1", "20260102T000000Z-1", "20260103T000000Z-1"]
    assert current_run_id(layout) == "20260103T000000Z-1" and events(layout.catalog) == 1
    assert pq.read_table(layout.current / "events").num_rows == 1

    cli = [sys.executable, "-m", "pipeline"]
    history = subprocess.run(
        [*cli, "history", "--output", str(layout.root)], capture_output=True, text=True, cwd=REPO
    )
    assert history.returncode == 0
    lines = history.stdout.splitlines()[1:]
    assert [line.split()[0 if not line.startswith("*") else 1] for line in lines] == [
        "20260103T000000Z-1",
        "20260102T000000Z-1",
        "20260101T000000Z-1",
    ]
    assert lines[0].startswith("*")

    back = subprocess.run(
        [*cli, "rollback", "20260102T000000Z-1", "--output", str(layout.root)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert back.returncode == 0, back.stderr
    assert current_run_id(layout) == "20260102T000000Z-1" and events(layout.catalog) == 32
    assert pq.read_table(layout.current / "events").num_rows == 32

    missing = subprocess.run(
        [*cli, "rollback", "20200101T000000Z-9", "--output", str(layout.root)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert missing.returncode == 1 and missing.stderr.startswith(
        "error: no kept publication '20200101T000000Z-9'"
    )
    assert current_run_id(layout) == "20260102T000000Z-1"


def test_a_reader_holding_the_old_catalog_keeps_a_complete_view(tmp_path):
    layout = OutputLayout(tmp_path / "out")
    small = write_archive(tmp_path / "small", {"news/2014/06/21/a.md": event_doc(title="A")})
    make_publication(layout, "20260101T000000Z-1", SAMPLE, tmp_path / "work")
    publish(layout, "20260101T000000Z-1", keep=3)
    reader = duckdb.connect(str(layout.catalog), read_only=True)
    make_publication(layout, "20260102T000000Z-1", small, tmp_path / "work")
    publish(layout, "20260102T000000Z-1", keep=3)
    # the open connection still sees the whole previous publication ...
    assert reader.execute(
        "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM files)"
    ).fetchone() == (32, 40)
    # ... while another process opening the catalog now sees the new one (within one process DuckDB
    # reuses the open database instance, see README)
    script = "import duckdb,sys; print(duckdb.connect(sys.argv[1], read_only=True).execute('SELECT count(*) FROM events').fetchone()[0])"
    fresh = subprocess.run(
        [sys.executable, "-c", script, str(layout.catalog)], capture_output=True, text=True, check=True
    )
    assert fresh.stdout.strip() == "1"
    reader.close()


def test_the_change_log_is_read_again_where_it_changed(tmp_path):
    """Transitions are remembered between reads (a watcher reads them all each batch), but a
    transition forgotten and recorded again under the same number, or removed, is seen as it
    is now."""
    from pipeline.core.storage import save_json
    from pipeline.publish import changes

    layout = OutputLayout(tmp_path / "out")
    folder = changes.log_folder(layout)

    def write(seq: int, target: str) -> None:
        (folder / f"{seq:09d}").mkdir(parents=True, exist_ok=True)
        save_json(folder / f"{seq:09d}" / "meta.json", {"from": None, "to": target, "at": "t", "parts": {}})

    write(1, "run-a")
    write(2, "run-b")
    assert [t.target for t in changes.transitions(layout)] == ["run-a", "run-b"]
    shutil.rmtree(folder / f"{2:09d}")  # forgotten (a publish that failed)
    assert [t.target for t in changes.transitions(layout)] == ["run-a"]
    write(2, "run-c")  # the next transition takes its number
    assert [t.target for t in changes.transitions(layout)] == ["run-a", "run-c"]
    (folder / f"{3:09d}").mkdir()  # being written: no meta yet
    assert [t.target for t in changes.transitions(layout)] == ["run-a", "run-c"]


def test_a_pruned_publication_takes_its_report_pages_with_it(tmp_path):
    """A watcher writes a run report page and a validation report per batch: they go when
    the publication they describe is pruned; a failed run's (never published) stay."""
    layout = OutputLayout(tmp_path / "out")
    small = write_archive(tmp_path / "small", {"news/2014/06/21/a.md": event_doc(title="A")})
    ids = [f"2026010{i}T000000Z-1" for i in range(3)]
    make_publication(layout, ids[0], small, tmp_path / "work")  # claims the folder
    layout.report.mkdir(parents=True)
    layout.validation.mkdir(parents=True)
    for run_id in [*ids, "20260109T000000Z-1"]:  # the last: a run whose validation failed
        (layout.report / f"{run_id}.html").write_text("page")
        (layout.validation / f"{run_id}.json").write_text("{}")
    for run_id in ids:
        if run_id != ids[0]:
            make_publication(layout, run_id, small, tmp_path / "work")
        publish(layout, run_id, keep=2, retention=dt.timedelta(0))
    assert list_publications(layout) == ids[1:]
    assert sorted(p.name for p in layout.report.glob("2026*.html")) == [
        f"{r}.html" for r in [*ids[1:], "20260109T000000Z-1"]
    ]
    assert sorted(p.name for p in layout.validation.glob("*.json")) == [
        f"{r}.json" for r in [*ids[1:], "20260109T000000Z-1"]
    ]


def _files_part(path: Path, rows: list[tuple[str, str | None]]) -> None:
    import pyarrow as pa

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.table(
            {"status": [s for s, _ in rows], "reason": [r for _, r in rows]},
            schema=pa.schema([("status", pa.string()), ("reason", pa.string())]),
        ),
        path,
    )


def test_file_statuses_count_only_the_rewritten_parts_against_the_base(tmp_path):
    base, new = tmp_path / "base", tmp_path / "new"
    _files_part(base / "files" / "2024.parquet", [("parsed", None)] * 3 + [("rejected", "encoding")])
    _files_part(base / "files" / "2025.parquet", [("parsed", None)] * 2)
    _files_part(base / "files" / "none.parquet", [("skipped", "day_index")])
    whole_base = runs.file_statuses(base)
    assert whole_base == {"parsed": {"": 5}, "rejected": {"encoding": 1}, "skipped": {"day_index": 1}}
    # The new publication rewrote 2025 (one event more, one file rejected) and `none` went empty;
    # its 2024 part differs from base's here only to show that it is not read again.
    _files_part(new / "files" / "2024.parquet", [("parsed", None)])
    _files_part(new / "files" / "2025.parquet", [("parsed", None)] * 3 + [("rejected", "missing_title")])
    _files_part(new / "files" / "none.parquet", [])
    counted = runs.file_statuses(new, base, ["2025", "none"])
    assert counted == {"parsed": {"": 6}, "rejected": {"encoding": 1, "missing_title": 1}}
    # Where base was not counted in this process (a run's first), the whole table is.
    runs.file_statuses(tmp_path / "elsewhere")
    assert runs.file_statuses(new, base, ["2025", "none"]) == {
        "parsed": {"": 4},
        "rejected": {"missing_title": 1},
    }


def _catalog_shape(catalog: Path) -> list[tuple]:
    """Every view of a catalog with its SQL and comment, and every column's comment."""
    con = duckdb.connect(str(catalog), read_only=True)
    try:
        views = con.execute(
            "SELECT view_name, sql, comment FROM duckdb_views() WHERE NOT internal"
        ).fetchall()
        columns = con.execute(
            "SELECT table_name, column_name, comment FROM duckdb_columns() WHERE NOT internal"
        ).fetchall()
        macros = con.execute(
            "SELECT function_name, macro_definition FROM duckdb_functions() WHERE function_type = 'macro' AND NOT internal"
        ).fetchall()
        return sorted(views) + sorted(columns) + sorted(macros)
    finally:
        con.close()


def test_a_catalog_begun_beside_validation_is_the_catalog_built_whole(tmp_path):
    """A run begins its catalog while it validates (every view but those of the tables written
    after validation) and completes it at the publish: the same views, SQL and comments as a
    catalog built whole. A draft of another publication is not used, and a discarded one
    leaves no file."""
    from pipeline.publish.catalog import CatalogDraft, build_catalog

    layout = OutputLayout(tmp_path / "out")
    make_publication(layout, "20260101T000000Z-1", SAMPLE, tmp_path / "work")
    make_publication(layout, "20260102T000000Z-1", SAMPLE, tmp_path / "work")
    publication = layout.publication("20260101T000000Z-1")
    build_catalog(tmp_path / "whole.duckdb", publication)

    draft = CatalogDraft(layout.catalog, publication)
    taken = draft.take()
    assert taken is not None and draft.take() is None  # taken once
    taken.close()
    draft.discard()
    assert not draft.tmp.exists()
    draft = CatalogDraft(layout.catalog, publication)
    build_catalog(layout.catalog, publication, draft)
    assert not draft.tmp.exists()
    assert _catalog_shape(layout.catalog) == _catalog_shape(tmp_path / "whole.duckdb")
    assert events(layout.catalog) == 32

    other = CatalogDraft(layout.catalog, layout.publication("20260102T000000Z-1"))
    build_catalog(layout.catalog, publication, other)  # not its draft: built whole
    assert other.tmp.exists()
    other.discard()
    assert sorted(p.name for p in layout.root.glob(".*.tmp*")) == []
    assert _catalog_shape(layout.catalog) == _catalog_shape(tmp_path / "whole.duckdb")


def _with_changes(publication: Path) -> None:
    """A publication as a run leaves it: with its `changes` table (build_tables makes none)."""
    from pipeline.publish.changes import CHANGES_SCHEMA

    (publication / "changes").mkdir()
    pq.write_table(CHANGES_SCHEMA.empty_table(), publication / "changes" / "all.parquet")


def test_a_catalog_prepared_ahead_is_pointed_at_the_next_publication(tmp_path):
    """A watcher makes its next catalog between batches, over the current publication, and the
    publish points it at the new one: the same views, SQL, comments and macro as a catalog
    built whole for the new publication, the file renamed into place. Its file outlives a
    run's clean-up of leftovers, and goes when the watcher drops it; a publication missing a
    table gets none, and a catalog is never pointed at one (it is built whole, and fails as
    a whole build does)."""
    from pipeline.publish import catalog as catalog_module
    from pipeline.publish import registry as reg
    from pipeline.publish.catalog import (
        CatalogDraft,
        build_catalog,
        clean_leftovers,
        drop_prepared,
        prepare_catalog,
    )

    layout = OutputLayout(tmp_path / "out")
    small = write_archive(tmp_path / "small", {"news/2014/06/21/a.md": event_doc(title="A")})
    old, new = "20260101T000000Z-1", "20260102T000000Z-1"
    make_publication(layout, old, SAMPLE, tmp_path / "work")
    make_publication(layout, new, small, tmp_path / "work")
    for run_id in (old, new):
        _with_changes(layout.publication(run_id))
    build_catalog(tmp_path / "whole.duckdb", layout.publication(new))

    assert prepare_catalog(layout.catalog, layout.publication(old))
    assert not prepare_catalog(layout.catalog, layout.publication(old))  # one is ready
    (prepared,) = layout.root.glob(".news.duckdb.*.next.tmp")
    stray = layout.root / ".news.duckdb.999.tmp"  # a killed run's
    stray.write_bytes(b"x")
    clean_leftovers(layout, reg.Registry.load(layout.registry, dict))
    assert not stray.exists() and prepared.exists()
    inode = prepared.stat().st_ino

    draft = CatalogDraft(layout.catalog, layout.publication(new))
    assert draft.repoint
    build_catalog(layout.catalog, layout.publication(new), draft)
    assert layout.catalog.stat().st_ino == inode  # the prepared file, pointed and renamed
    assert _catalog_shape(layout.catalog) == _catalog_shape(tmp_path / "whole.duckdb")
    assert events(layout.catalog) == 1
    assert sorted(p.name for p in layout.root.glob(".*.tmp*")) == []
    assert not CatalogDraft(layout.catalog, layout.publication(new)).repoint  # used once
    CatalogDraft(layout.catalog, layout.publication(new)).discard()

    # The catalog this process swapped in is copied, not built, and pointed the same way.
    build_catalog(tmp_path / "whole-old.duckdb", layout.publication(old))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(catalog_module, "attach_tables", None)  # building would fail
        assert prepare_catalog(layout.catalog, layout.publication(new))
    build_catalog(
        layout.catalog, layout.publication(old), CatalogDraft(layout.catalog, layout.publication(old))
    )
    assert _catalog_shape(layout.catalog) == _catalog_shape(tmp_path / "whole-old.duckdb")
    assert events(layout.catalog) == 32

    assert prepare_catalog(layout.catalog, layout.publication(old))
    drop_prepared(layout.catalog)  # a watcher that stops
    assert sorted(p.name for p in layout.root.glob(".*.tmp*")) == []

    broken = layout.publication("20260103T000000Z-1")
    shutil.copytree(layout.publication(new), broken)
    for part in (broken / "quarantine").iterdir():
        part.unlink()
    assert not prepare_catalog(layout.catalog, broken)  # nothing to point from
    assert sorted(p.name for p in layout.root.glob(".*.tmp*")) == []
    assert prepare_catalog(layout.catalog, layout.publication(old))
    draft = CatalogDraft(layout.catalog, broken)
    assert draft.repoint
    try:
        build_catalog(layout.catalog, broken, draft)
    except duckdb.Error as exc:
        assert "quarantine" in str(exc)
    else:
        raise AssertionError("a catalog was pointed at a publication with no quarantine files")
    assert sorted(p.name for p in layout.root.glob(".*.tmp*")) == []
    assert events(layout.catalog) == 32  # the catalog before stays
