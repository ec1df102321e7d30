"""Incremental runs of the real flow equal a full rebuild after every add, edit and delete."""

import datetime as dt
import os
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pytest

from pipeline.core.tables import PUBLISHED
from pipeline.parse.ids import slugify
from pipeline.synthetic.generate import generate
from tests.conftest import SAMPLE, TODAY, build_tables, event_doc

pytestmark = pytest.mark.flow

# Every published table but the run and change logs (which differ between any two runs).
TABLES = tuple(t for t in PUBLISHED if t not in ("runs", "changes"))


def published(result: dict) -> dict[str, list]:
    con = duckdb.connect(result["catalog"], read_only=True)
    try:
        return {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in TABLES}
    finally:
        con.close()


def full_build(archive: Path, work: Path) -> dict[str, list]:
    con = build_tables(archive, work)
    return {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in TABLES}


def retried(result: dict) -> int:
    """Files any run re-reads: rejected for a reason that can change without an edit (a date
    out of range only on another day: these runs are on one day)."""
    from pipeline.transform.incremental import DATED_REASON, RETRY_REASONS

    con = duckdb.connect(result["catalog"], read_only=True)
    try:
        return con.execute(
            "SELECT count(*) FROM files WHERE list_contains(?, reason)",
            [sorted(RETRY_REASONS - {DATED_REASON})],
        ).fetchone()[0]
    finally:
        con.close()


def touch(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000_000))


def test_adds_edits_and_deletes_equal_a_full_refresh(prefect_server, tmp_path):
    from flows.news_etl import news_etl

    archive = tmp_path / "archive"
    shutil.copytree(SAMPLE, archive)
    generate(150, archive / "gen", seed=11, malformed=0.1, today=TODAY)
    out = tmp_path / "out"

    def step(name: str) -> dict:
        result = news_etl(input=str(archive), output=str(out))
        assert published(result) == full_build(archive, tmp_path / f"full-{name}"), name
        return result

    first = step("initial")
    assert first["files_read"] == first["files_seen"]

    # add: a new event that resolves a previously unresolved relation of the Ebola event
    touch(
        archive / "news/2014/08/8/u-s-aircraft-carry-out-airstrikes.md",
        event_doc(date="2014-08-08", title="U.S. aircraft carry out airstrikes."),
    )
    target_title = "The Iraqi Army and Kurdish Peshmerga begin an offensive to recapture Mosul from ISIL [Battle of Mosul]."
    touch(
        archive / f"news/2016/10/17/{slugify(target_title)}.md",
        event_doc(date="2016-10-17", title=target_title),
    )
    base = (out / "state" / "manifest.parquet").stat().st_ino
    added = step("add")
    # the incremental run committed an amendment of the manifest, not a new base
    assert (out / "state" / "manifest-delta.parquet").exists()
    assert (out / "state" / "manifest.parquet").stat().st_ino == base
    assert (added["files_read"], added["events_added"], added["events_changed"], added["events_removed"]) == (
        2 + retried(first),
        2,
        0,
        0,
    )
    con = duckdb.connect(added["catalog"], read_only=True)
    resolved = con.execute(
        "SELECT resolved FROM relations WHERE related_event_id = '2016-10-17/' || ?", [slugify(target_title)]
    ).fetchall()
    assert resolved == [(True,)]  # an old relation resolves once its target arrives
    con.close()

    # edit: change a title's context so tag counts move; make a rejected file valid
    crimea = next(archive.glob("news/2014/03/18/*.md"))
    touch(
        crimea,
        crimea.read_text(encoding="utf-8-sig").replace(
            "Russo-Ukrainian War, Ukraine", "Annexation of Crimea"
        ),
    )
    touch(archive / "news/2016/01/1/no-title.md", event_doc(date="2016-01-01", title="Now it has a title"))
    edited = step("edit")
    assert (
        edited["files_read"],
        edited["events_added"],
        edited["events_changed"],
        edited["events_removed"],
    ) == (2 + retried(added), 1, 1, 0)

    # delete: the kept copy of a duplicate (the other copy takes over), an event, a day index
    (archive / "news/2014/08/03/the-islamic-state-seizes-the-yazidi-dominated-town-of-sinjar.md").unlink()
    next(archive.glob("news/2020/03/11/*.md")).unlink()
    (archive / "news/2014/06/21/index.md").unlink()
    deleted = step("delete")
    assert (
        deleted["files_read"],
        deleted["events_added"],
        deleted["events_changed"],
        deleted["events_removed"],
    ) == (retried(edited), 0, 1, 1)

    # each incremental step rewrote a few year parts and linked the rest from the previous run
    for result in (added, edited, deleted):
        assert result["parts_rewritten"] is not None and result["parts_reused"] > result["parts_rewritten"]

    # nothing changed: nothing is read, the tables stay the same
    again = step("noop")
    assert (again["files_read"], again["events_added"], again["events_changed"], again["events_removed"]) == (
        retried(deleted),
        0,
        0,
        0,
    )

    assert again["parts_rewritten"] <= 1  # at most files/none.parquet (rejected files re-read)

    # after a rollback the manifest no longer describes the current publication: a run rebuilds
    # every part (nothing to re-read) and still equals a full build
    from pipeline.core.config import OutputLayout
    from pipeline.publish.catalog import rollback

    rollback(OutputLayout(out), edited["run_id"])
    after_rollback = step("rollback")
    assert after_rollback["parts_rewritten"] is None and after_rollback["parts_reused"] == 0

    # full refresh reads everything and publishes the same tables
    full = news_etl(input=str(archive), output=str(out), full_refresh=True)
    assert full["files_read"] == full["files_seen"] and published(full) == published(again)
    assert full["parts_rewritten"] is None
    staged = {p.name.split("-", 1)[1] for p in (out / "state" / "staging").iterdir()}
    assert all(name.startswith(full["run_id"]) for name in staged)  # older batches were collected


def test_manifest_records_the_parser_that_staged_its_rows(tmp_path):
    import pyarrow.parquet as pq

    from pipeline.transform import incremental

    path = tmp_path / "manifest.parquet"
    assert not incremental.same_parser(path)  # no manifest: nothing staged can be trusted
    incremental.write_manifest(incremental.MANIFEST_SCHEMA.empty_table(), path, "run-1", "suites", "code")
    assert incremental.manifest_origin(path) == (
        "run-1",
        "suites",
        incremental.parser_fingerprint(),
        "code",
        None,
    )
    day = dt.date(2026, 11, 26)
    incremental.write_manifest(incremental.MANIFEST_SCHEMA.empty_table(), path, "run-2", "s", "c", day)
    assert incremental.manifest_origin(path).today == "2026-11-26"
    assert incremental.same_parser(path)
    table = pq.read_table(path)
    pq.write_table(
        table.replace_schema_metadata({**table.schema.metadata, incremental.PARSER_KEY: b"old"}), path
    )
    assert not incremental.same_parser(path)


def test_the_fingerprints_cover_the_data_files_that_decide_rows(tmp_path):
    """The places' gazetteer and words are JSON beside the code: a release that changes them
    changes `event_places`, so it must re-parse (and rebuild) like a code change."""
    import hashlib

    from pipeline.transform import incremental

    def digest(folder: Path) -> str:
        value = hashlib.sha256()
        incremental._hash_files(value, [folder])
        return value.hexdigest()

    data = tmp_path / "places"
    data.mkdir()
    (data / "gazetteer.json").write_text('{"FR": ["France"]}', encoding="utf-8")
    (data / "notes.txt").write_text("not read", encoding="utf-8")
    before = digest(data)
    (data / "notes.txt").write_text("still not read", encoding="utf-8")
    assert digest(data) == before
    (data / "gazetteer.json").write_text('{"FR": ["France", "French Republic"]}', encoding="utf-8")
    assert digest(data) != before
    shipped = {p.name for p in (Path(incremental.__file__).parents[1] / "places").glob("*.json")}
    assert {"gazetteer.json", "words.json"} <= shipped  # the files this is about


def test_a_remembered_manifest_is_never_stale(tmp_path):
    """A watcher keeps the last manifest in memory: what it returns is always the file's
    content, through a rename into place, a replacement, an in-place truncation and removal."""
    import os

    import pyarrow as pa

    from pipeline.transform import incremental

    def manifest(*paths: str) -> pa.Table:
        rows = [
            {
                "file_path": p,
                "content_sha256": "x",
                "size": 1,
                "mtime_ns": 1,
                "status": "parsed",
                "reason": None,
                "batch": "b",
                "event_id": None,
            }
            for p in paths
        ]
        return pa.Table.from_pylist(rows, schema=incremental.MANIFEST_SCHEMA)

    def files(path: Path) -> list[str]:
        return incremental.read_manifest(path)["file_path"].to_pylist()

    incremental.remember_manifests()
    try:
        committed, written = tmp_path / "manifest.parquet", tmp_path / "next.parquet"
        incremental.write_manifest(manifest("a.md"), written, "run-1", "s", "c")
        os.replace(written, committed)  # as a publish commits it
        assert files(committed) == ["a.md"]
        incremental.write_manifest(manifest("a.md", "b.md"), written, "run-2", "s", "c")
        assert files(committed) == ["a.md"]  # the next one is not committed yet
        os.replace(written, committed)
        assert files(committed) == ["a.md", "b.md"]
        incremental.write_manifest(manifest("c.md"), written, "run-3", "s", "c")
        with open(committed, "r+b") as handle:  # damaged in place: read again, and refused
            handle.truncate(100)
        with pytest.raises(incremental.StateError):
            incremental.read_manifest(committed)
        committed.unlink()
        assert files(committed) == []
    finally:
        incremental.remember_manifests(False)


def test_a_run_reads_its_manifest_once_and_does_not_hold_it(tmp_path, monkeypatch):
    """The state check's read is handed to the parse's (one read per run, not two), and then
    let go: a third read goes to the file again, and a manifest replaced meanwhile is read anew."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.transform import incremental

    reads: list[str] = []
    real = pq.ParquetFile

    def counting(path, *args, **kwargs):
        reads.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(pq, "ParquetFile", counting)

    def manifest(*paths: str) -> pa.Table:
        row = {"size": 1, "mtime_ns": 1, "status": "parsed", "reason": None, "batch": "b", "event_id": None}
        rows = [{"file_path": p, "content_sha256": "x", **row} for p in paths]
        return pa.Table.from_pylist(rows, schema=incremental.MANIFEST_SCHEMA)

    committed, written = tmp_path / "manifest.parquet", tmp_path / "next.parquet"
    incremental.write_manifest(manifest("a.md"), written, "run-1", "s", "c")
    os.replace(written, committed)
    assert incremental.check_manifest(committed) is None
    assert incremental.read_manifest(committed)["file_path"].to_pylist() == ["a.md"]
    assert len(reads) == 1  # the parse took the check's table
    assert incremental.read_manifest(committed)["file_path"].to_pylist() == ["a.md"]
    assert len(reads) == 2  # not held after that read
    assert incremental.check_manifest(committed) is None
    incremental.write_manifest(manifest("a.md", "b.md"), written, "run-2", "s", "c")
    os.replace(written, committed)  # replaced between the check and the parse
    assert incremental.read_manifest(committed)["file_path"].to_pylist() == ["a.md", "b.md"]
    assert len(reads) == 4


def test_a_new_parser_parses_every_file_again(prefect_server, tmp_path):
    """Rows staged by another release's parser are not kept: the next (incremental) run parses
    every file again and equals a full build, as if the old parser had read one title wrongly."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from flows.news_etl import news_etl
    from pipeline.core.config import OutputLayout
    from pipeline.transform import incremental

    archive = tmp_path / "archive"
    shutil.copytree(SAMPLE, archive)
    out = tmp_path / "out"
    first = news_etl(input=str(archive), output=str(out))
    layout = OutputLayout(out)

    # what an older release left behind: a title parsed differently, its fingerprint in the manifest
    staged = next(layout.staging.glob("stg_events-*.parquet"))
    events = pq.read_table(staged)
    titles = pc.binary_join_element_wise(events["title"], pa.scalar(" (old parser)"), "")
    pq.write_table(events.set_column(events.schema.get_field_index("title"), "title", titles), staged)
    manifest = pq.read_table(layout.manifest)
    metadata = {**manifest.schema.metadata, incremental.PARSER_KEY: b"an older release"}
    pq.write_table(manifest.replace_schema_metadata(metadata), layout.manifest)

    upgraded = news_etl(input=str(archive), output=str(out))
    assert upgraded["files_read"] == upgraded["files_seen"] == first["files_seen"]
    assert upgraded["parts_rewritten"] is None  # a full build, not one on the old publication
    assert published(upgraded) == full_build(archive, tmp_path / "full")
    assert incremental.same_parser(layout.manifest)


def test_a_run_on_the_changed_paths_alone_equals_a_full_refresh(prefect_server, tmp_path, monkeypatch):
    """`changed_paths` (what a watcher or a mirroring tool reports): no walk over the archive,
    the same tables as a full build."""
    from flows.news_etl import news_etl
    from pipeline.extract import walk

    archive = tmp_path / "archive"
    shutil.copytree(SAMPLE, archive)
    out = tmp_path / "out"
    news_etl(input=str(archive), output=str(out))
    touch(archive / "news/2025/01/5/late.md", event_doc(date="2025-01-05", title="Late"))
    crimea = next(archive.glob("news/2014/03/18/*.md"))
    touch(
        crimea,
        crimea.read_text(encoding="utf-8-sig").replace(
            "Russo-Ukrainian War, Ukraine", "Annexation of Crimea"
        ),
    )
    gone = next(archive.glob("news/2020/03/11/*.md"))
    gone.unlink()
    (archive / "news/2021").rename(archive / "news/2021-moved")
    changed = [
        "news/2025/01/5/late.md",
        str(crimea.relative_to(archive)),
        str(gone.relative_to(archive)),
        "news/2021",
        "news/2021-moved",
    ]
    folders = []
    real_walk = walk.walk

    def spy(pending, chunks, stop_after=-1):
        folders.extend(path for path, _ in pending)
        return real_walk(pending, chunks, stop_after)

    monkeypatch.setattr(walk, "walk", spy)
    result = news_etl(input=str(archive), output=str(out), changed_paths=changed)
    monkeypatch.undo()
    assert str(archive) not in folders and folders == [str(archive / "news/2021-moved")]
    assert result["published"] and result["files_seen"] == len(list(archive.rglob("*.md")))
    assert published(result) == full_build(archive, tmp_path / "full")


def test_same_content_compares_files_whatever_their_order_and_batches():
    import pyarrow as pa

    from pipeline.transform.incremental import same_content

    def manifest(rows: list[tuple[str, str]], batch: str = "b1") -> pa.Table:
        return pa.table(
            {
                "file_path": [p for p, _ in rows],
                "content_sha256": [sha for _, sha in rows],
                "status": ["parsed"] * len(rows),
                "reason": pa.array([None] * len(rows), pa.string()),
                "event_id": [f"2020-01-01/{p}" for p, _ in rows],
                "batch": [batch] * len(rows),
            }
        )

    base = manifest([("a.md", "1"), ("b.md", "2"), ("c.md", "3")])
    assert same_content(base, manifest([("a.md", "1"), ("b.md", "2"), ("c.md", "3")], "b2"))
    assert same_content(base, manifest([("c.md", "3"), ("a.md", "1"), ("b.md", "2")]))  # listed otherwise
    assert not same_content(base, manifest([("a.md", "1"), ("b.md", "9"), ("c.md", "3")]))  # an edit
    assert not same_content(base, manifest([("c.md", "3"), ("b.md", "9"), ("a.md", "1")]))  # edit, reordered
    assert not same_content(base, manifest([("a.md", "1"), ("b.md", "2"), ("d.md", "3")]))  # c out, d in
    assert not same_content(base, manifest([("a.md", "1"), ("b.md", "2")]))  # one fewer


@pytest.mark.parametrize("dropped", [[], [0], [9], [0, 9], [3, 4, 5], [1, 3, 7], list(range(10))])
def test_a_manifest_without_some_rows_keeps_the_others_in_order(dropped, monkeypatch):
    """Dropped rows in a few runs are cut out by slicing (no copy of the manifest), else filtered:
    both keep every other row, in order; a table sliced again and again is put back in one
    piece before its pieces pile up."""
    import numpy as np
    import pyarrow as pa

    from pipeline.transform import incremental

    table = pa.table({"file_path": [f"{i}.md" for i in range(10)], "size": list(range(10))})
    want = [f"{i}.md" for i in range(10) if i not in dropped]
    rows = np.array(dropped, dtype=np.int64)
    for limit in (64, 0):  # sliced, then filtered
        monkeypatch.setattr(incremental, "_MAX_PIECES", limit)
        assert incremental._without_rows(table, rows).column("file_path").to_pylist() == want
    monkeypatch.setattr(incremental, "_MAX_PIECES", 64)
    monkeypatch.setattr(incremental, "_MAX_CHUNKS", 4)
    cut = incremental._without_rows(table, np.array([1, 3, 5, 7], dtype=np.int64))
    assert cut.column("file_path").to_pylist() == ["0.md", "2.md", "4.md", "6.md", "8.md", "9.md"]
    assert cut.column(0).num_chunks == 1


def test_a_delta_listing_gives_the_manifest_a_whole_listing_gives(tmp_path):
    """A watcher's batch lists only the changed paths: the next manifest, its list of changed
    entries and whether anything changed are those of the same run over a whole listing."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.extract.discover import LISTING_SCHEMA, ListingDelta, apply_delta
    from pipeline.parse.schema import STAGING
    from pipeline.transform import incremental

    def entries(paths: list[str], batch: str, sha: str = "0") -> pa.Table:
        n = len(paths)
        return pa.table(
            {
                "file_path": paths,
                "content_sha256": [sha] * n,
                "size": [10] * n,
                "mtime_ns": [1] * n,
                "status": ["parsed"] * n,
                "reason": pa.array([None] * n, pa.string()),
                "batch": [batch] * n,
                "event_id": [f"2020-01-01/{p}" for p in paths],
            },
            schema=incremental.MANIFEST_SCHEMA,
        )

    def listing(paths: list[str], size: int = 10) -> pa.Table:
        n = len(paths)
        return pa.table(
            {
                "rel_path": paths,
                "os_path": pa.nulls(n, pa.binary()),
                "bad_name": [False] * n,
                "size": [size] * n,
                "mtime_ns": [1] * n,
            },
            schema=LISTING_SCHEMA,
        )

    previous = pa.concat_tables(
        [entries(["a.md", "b.md", "c.md", "d/1.md", "d/2.md", "e/1.md"], "old"), entries(["f.md"], "older")]
    )
    # b.md removed, c.md edited, folder d/ replaced by d/2.md and d/3.md, x.md new.
    delta = ListingDelta(
        listing(["c.md", "x.md", "d/2.md", "d/3.md"], size=11), ["b.md", "c.md", "x.md"], ["d/"]
    )
    whole = apply_delta(
        tmp_path,
        previous.select(["file_path", "size", "mtime_ns"]).rename_columns(["rel_path", "size", "mtime_ns"]),
        delta,
    )
    assert whole.column("rel_path").to_pylist() == [
        "a.md",
        "c.md",
        "d/2.md",
        "d/3.md",
        "e/1.md",
        "f.md",
        "x.md",
    ]
    parsed = listing(["c.md", "d/2.md", "d/3.md", "x.md"], size=11)
    staging = tmp_path / "staging"
    staging.mkdir()
    staged = entries(["c.md", "d/2.md", "d/3.md", "x.md"], "new", sha="1")
    columns = [*STAGING["stg_files"].names, "batch"]
    pq.write_table(
        pa.table(
            {
                c: staged[c] if c in staged.column_names else pa.nulls(4, STAGING["stg_files"].field(c).type)
                for c in columns
            }
        ),
        staging / "stg_files-new.parquet",
    )

    def run(files: pa.Table, with_delta: ListingDelta | None, dropped=None) -> incremental.NextManifest:
        return incremental.next_manifest(files, parsed, previous, staging, ["new"], True, with_delta, dropped)

    # The entries a whole listing drops, found by hand: gone from it, or parsed again.
    listed, again = set(whole["rel_path"].to_pylist()), set(parsed["rel_path"].to_pylist())
    by_hand = np.array(
        [i for i, p in enumerate(previous["file_path"].to_pylist()) if p not in listed or p in again],
        np.int64,
    )
    by_listing, by_delta = run(whole, None, by_hand), run(delta.fresh, delta)
    # A run's plan finds the files to parse and the entries to drop in one join: the same
    # manifest as those entries give.
    planned = incremental.planned(whole, previous)
    assert planned.todo.equals(parsed)
    assert planned.dropped.tolist() == [1, 2, 3, 4]  # b.md gone, c.md and d/2.md parsed again, d/1.md gone
    by_plan = incremental.next_manifest(
        whole, planned.todo, previous, staging, ["new"], True, None, planned.dropped
    )
    assert by_plan.table.equals(by_listing.table) and by_plan.same == by_listing.same
    assert by_plan.changes.sort_by("file_path").equals(by_listing.changes.sort_by("file_path"))
    assert by_plan.dropped.equals(by_listing.dropped)
    assert by_delta.table.sort_by("file_path").equals(by_listing.table.sort_by("file_path"))
    assert by_delta.table.column("file_path").to_pylist() == [
        "a.md",
        "e/1.md",
        "f.md",
        "c.md",
        "d/2.md",
        "d/3.md",
        "x.md",
    ]
    assert by_delta.changes.sort_by("file_path").equals(by_listing.changes.sort_by("file_path"))
    assert sorted(by_delta.changes.column("file_path").to_pylist()) == [
        "b.md",
        "c.md",
        "d/1.md",
        "d/2.md",
        "d/3.md",
        "x.md",
    ]
    assert not by_delta.same and not by_listing.same
    # Parsed again with the same outcome (a touched file): the same content.
    again = entries(["c.md"], "new2")
    pq.write_table(
        pa.table(
            {
                c: again[c] if c in again.column_names else pa.nulls(1, STAGING["stg_files"].field(c).type)
                for c in columns
            }
        ),
        staging / "stg_files-new2.parquet",
    )
    touched = ListingDelta(listing(["c.md"]), ["c.md"], [])
    same = incremental.next_manifest(
        touched.fresh, listing(["c.md"]), previous, staging, ["new2"], True, touched
    )
    assert same.same and same.table.num_rows == previous.num_rows


def test_a_manifest_written_in_the_background_is_read_from_memory_until_written(tmp_path, monkeypatch):
    """An incremental run's manifest is written while it normalizes: meanwhile it is read from
    memory (never as the empty table a missing file means), and waiting for it raises what
    the write met."""
    import threading

    from pipeline.transform import incremental
    from pipeline.transform import manifest as stored

    table = pa_manifest(["a.md", "b.md"])
    gate = threading.Event()
    real = stored.save_parquet

    def slow(path, data, **options):
        gate.wait(10)
        real(path, data, **options)

    monkeypatch.setattr(stored, "save_parquet", slow)
    path = tmp_path / "manifest.parquet"
    incremental.write_manifest(table, path, "run-1", "s", "c", background=True)
    assert not path.exists()
    assert incremental.read_manifest(path).column("file_path").to_pylist() == ["a.md", "b.md"]
    assert incremental.manifest_in_memory(path) is not None
    gate.set()
    incremental.manifest_written(path)
    assert path.exists() and incremental.manifest_origin(path).run_id == "run-1"
    assert incremental.manifest_in_memory(path) is not None  # held for its commit
    incremental.manifest_forgotten(path)  # (a failed run's)
    assert incremental.manifest_in_memory(path) is None  # not a watcher: nothing remembered

    def failing(path, data, **options):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(stored, "save_parquet", failing)
    other = tmp_path / "other.parquet"
    incremental.write_manifest(table, other, "run-2", "s", "c", background=True)
    with pytest.raises(OSError, match="No space"):
        incremental.manifest_written(other)
    incremental.manifest_forgotten(other)
    assert incremental.manifest_in_memory(other) is None


def pa_manifest(paths: list[str]):
    import pyarrow as pa

    from pipeline.transform.incremental import MANIFEST_SCHEMA

    n = len(paths)
    return pa.table(
        {
            "file_path": paths,
            "content_sha256": ["0"] * n,
            "size": [1] * n,
            "mtime_ns": [1] * n,
            "status": ["parsed"] * n,
            "reason": pa.array([None] * n, pa.string()),
            "batch": ["b"] * n,
            "event_id": [f"2020-01-01/{p}" for p in paths],
        },
        schema=MANIFEST_SCHEMA,
    )


def test_a_watchers_manifest_holds_no_more_memory_than_its_rows(tmp_path):
    """A watcher keeps its manifest in memory from batch to batch, each batch adding a file:
    the table must not keep buffers beyond its rows (Acero's join gave each batch's new rows
    ~0.8 MB of them, which the manifest then held as one of its chunks)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.extract.discover import LISTING_SCHEMA, ListingDelta
    from pipeline.parse.schema import STAGING
    from pipeline.transform import incremental

    staging = tmp_path / "staging"
    staging.mkdir()
    n = 2000
    manifest = pa.table(
        {
            "file_path": [f"news/2020/01/1/e{i}.md" for i in range(n)],
            "content_sha256": ["0" * 64] * n,
            "size": [10] * n,
            "mtime_ns": [1] * n,
            "status": ["parsed"] * n,
            "reason": pa.array([None] * n, pa.string()),
            "batch": ["first"] * n,
            "event_id": [f"2020-01-01/e{i}" for i in range(n)],
        },
        schema=incremental.MANIFEST_SCHEMA,
    )
    schema = STAGING["stg_files"]
    for k in range(30):
        path, batch = f"news/2026/11/25/new-{k}.md", f"b{k}"
        row = {
            "file_path": [path],
            "content_sha256": ["1" * 64],
            "status": ["parsed"],
            "event_id": [f"2026-11-25/new-{k}"],
        }
        pq.write_table(
            pa.table(
                {c: row[c] if c in row else pa.nulls(1, schema.field(c).type) for c in schema.names}
                | {"batch": [batch]}
            ),
            staging / f"stg_files-{batch}.parquet",
        )
        listed = pa.table(
            {
                "rel_path": [path],
                "os_path": pa.nulls(1, pa.binary()),
                "bad_name": [False],
                "size": [20],
                "mtime_ns": [2],
            },
            schema=LISTING_SCHEMA,
        )
        delta = ListingDelta(listed, [path], [])
        manifest = incremental.next_manifest(listed, listed, manifest, staging, [batch], True, delta).table
        assert manifest.column("file_path")[-1].as_py() == path
        assert manifest.column("size")[-1].as_py() == 20
    assert manifest.num_rows == n + 30
    assert manifest.get_total_buffer_size() < 2 * manifest.nbytes + 2**16


def test_a_staging_file_damaged_after_a_check_is_found_broken(tmp_path, monkeypatch):
    """Staging files found whole are not read again while they keep their identity (a watcher
    checks every live batch in each batch): one garbled in place afterwards, same size, is
    still found broken."""
    import time

    import pyarrow.parquet as pq

    from pipeline.parse.schema import STAGING
    from pipeline.transform import incremental

    for name, schema in STAGING.items():
        pq.write_table(schema.empty_table(), tmp_path / f"{name}-b1.parquet")
    time.sleep(0.05)  # past the clock's tick: the damage below changes the file's times
    later = time.time_ns() + 10 * 10**9  # the files' times have settled
    monkeypatch.setattr(incremental.time, "time_ns", lambda: later)
    assert incremental.broken_batches(tmp_path, {"b1"}) == set()
    assert incremental.broken_batches(tmp_path, {"b1"}) == set()
    victim = tmp_path / f"{next(iter(STAGING))}-b1.parquet"
    size = victim.stat().st_size
    with victim.open("r+b") as handle:
        handle.seek(size - 4)
        handle.write(b"XXXX")
    assert victim.stat().st_size == size
    assert incremental.broken_batches(tmp_path, {"b1"}) == {"b1"}
    victim.unlink()
    assert incremental.broken_batches(tmp_path, {"b1"}) == {"b1"}


def test_events_dated_ahead_are_looked_for_only_when_the_clock_went_back():
    """A manifest accepted nothing dated after the day after the day it names (`staged_on`):
    a run on that day or later need not look for such files; a run on an earlier day must."""
    import pyarrow as pa

    from pipeline.transform.incremental import stale

    previous = pa_manifest(["a.md", "b.md"]).set_column(
        7, "event_id", pa.array(["2026-12-01/a", "2026-12-09/b"], pa.string())
    )
    today = dt.date(2026, 12, 7)
    assert stale(previous, today, staged_on="2026-12-10").to_pylist() == [False, True]  # clock back
    assert stale(previous, today, staged_on=None).to_pylist() == [False, True]  # an older manifest
    assert stale(previous, today, staged_on="2026-12-07").to_pylist() == [False, False]


def test_a_part_write_that_fails_beside_the_models_fails_the_run(prefect_server, tmp_path, monkeypatch):
    """An incremental build writes each table's parts in threads while it computes the next
    table's rows: a write that fails there (a full disk) fails the run with that error, after
    the writes queued behind it are dropped and the threads are gone; nothing is published, and
    the next run publishes the tables a full build gives."""
    import threading

    from flows.news_etl import news_etl
    from pipeline.transform import normalize

    archive = tmp_path / "archive"
    shutil.copytree(SAMPLE, archive)
    out = tmp_path / "out"
    first = news_etl(input=str(archive), output=str(out))
    touch(archive / "news/2025/01/5/late.md", event_doc(date="2025-01-05", title="Late"))
    real, written = normalize._write_parts, []

    def full_disk(con, publication, name, *args, **kwargs):
        if name == "relations":
            raise OSError(28, "No space left on device")
        written.append(name)
        return real(con, publication, name, *args, **kwargs)

    monkeypatch.setattr(normalize, "_write_parts", full_disk)
    with pytest.raises(OSError, match="No space left"):
        news_etl(input=str(archive), output=str(out), changed_paths=["news/2025/01/5/late.md"])
    monkeypatch.undo()
    # None after the failed one but the one the other writer may have begun meanwhile.
    assert sorted(written[:2]) == ["events", "sources"] and written[2:] in ([], ["relation_tags"])
    assert not [t for t in threading.enumerate() if t.name.startswith("write-parts")]
    catalog = duckdb.connect(str(out / "news.duckdb"), read_only=True)
    try:
        assert catalog.execute("SELECT count(*) FROM events").fetchone()[0] == first["events"]
    finally:
        catalog.close()
    result = news_etl(input=str(archive), output=str(out), changed_paths=["news/2025/01/5/late.md"])
    assert result["published"] and published(result) == full_build(archive, tmp_path / "full")
