"""Make a finished publication current, atomically; keep and prune rollback points.

A publication is a folder `OUTPUT/publications/<run_id>/` of Parquet files that
is complete before anything points at it. The catalog `news.duckdb` (views
over absolute Parquet paths, so it works from any working directory: the
publication's folder is the macro `news_publication()`) is built
beside the old one and swapped in with a rename; `OUTPUT/current` is a symlink
swapped the same way. A reader sees the previous publication or the new one,
never a mix.

The catalog is written in DuckDB's v1.0 storage format, so DuckDB 1.x readers (the `duckdb`
shell pip offers, BI drivers) open it as well as the DuckDB the pipeline uses.

What may be deleted is decided by the registry (pipeline/registry.py): only folders a run
recorded, never the current publication, and no publication current within the retention
window.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import threading
from collections.abc import Collection
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import duckdb

from pipeline.core.config import OutputLayout
from pipeline.core.faults import crash_point
from pipeline.core.sqltext import sql_literal
from pipeline.core.tables import PUBLISHED, VIEWS, runs_file, table_glob, view_sql
from pipeline.publish import registry as reg
from pipeline.publish.dictionary import comment_statements

# The storage format of every DuckDB file we write: readable by DuckDB 1.0 and newer.
STORAGE_VERSION = "v1.0.0"
DEFAULT_KEEP = 3
DEFAULT_RETENTION = dt.timedelta(hours=1)


def connect_file(path: Path) -> duckdb.DuckDBPyConnection:
    """A new DuckDB database file that DuckDB 1.x can open."""
    return duckdb.connect(str(path), config={"storage_compatibility_version": STORAGE_VERSION})


# The catalog's table views read the folder this macro names (`SELECT news_publication()` says
# which publication a catalog shows): a catalog is pointed at another publication of the same
# shape by one statement (`prepare_catalog`), instead of being built again.
PUBLICATION_MACRO = "news_publication"


def attach_tables(
    con: duckdb.DuckDBPyConnection,
    publication: Path,
    materialize: bool = False,
    tables: Collection[str] = PUBLISHED,
    views: bool = True,
) -> None:
    """Every published table of `publication` (views over its Parquet, or with `materialize`
    tables holding the rows), the analytical views over them and the dictionary's comments;
    or only `tables` (in the registry's order), and the analytical views if `views`."""
    kind = "TABLE" if materialize else "VIEW"
    if not materialize:
        _point_at(con, publication)
    for table in (t for t in PUBLISHED if t in tables):
        if table == "changes" and not (publication / table).is_dir():  # made by an earlier release
            con.execute(
                f"CREATE {kind} changes AS SELECT NULL::VARCHAR AS run_id, NULL::VARCHAR AS event_id, "
                "NULL::VARCHAR AS change WHERE false"
            )
            continue
        files = sql_literal(f"/{table}/*.parquet")
        path = (
            sql_literal(table_glob(publication, table))
            if materialize
            else f"{PUBLICATION_MACRO}() || {files}"
        )
        con.execute(f"CREATE {kind} {table} AS SELECT * FROM read_parquet({path})")
    for view in VIEWS if views else ():
        con.execute(f"CREATE VIEW {view} AS {view_sql(view)}")
    for statement in comment_statements({*tables, *(VIEWS if views else ())}):
        words = statement.split()
        if materialize and words[:3] == ["COMMENT", "ON", "VIEW"] and words[3] in PUBLISHED:
            statement = statement.replace("COMMENT ON VIEW", "COMMENT ON TABLE", 1)
        con.execute(statement)


def _point_at(con: duckdb.DuckDBPyConnection, publication: Path) -> None:
    """The table views read `publication` from now on (their SQL stays: they are bound when
    queried)."""
    folder = sql_literal(str(publication.resolve()))
    con.execute(f"CREATE OR REPLACE MACRO {PUBLICATION_MACRO}() AS {folder}")


# The tables a run writes after its validation (flows/news_etl.py): a catalog begun before
# then (`CatalogDraft`) leaves their views to the publish.
WRITTEN_LAST: tuple[str, ...] = ("changes", "runs")


class CatalogDraft:
    """The next catalog, begun in a thread once the tables are written, while the run validates
    them: its file, the views of every table but `WRITTEN_LAST`, the analytical views and the
    comments, in a transaction that `build_catalog` completes. Building it whole took 0.08 s
    of a watcher's one-file batch between its validation and its publish (at 110k events):
    with a draft, that step creates two views and commits. In a watcher, the draft is the
    catalog `prepare_catalog` made between batches, which the publish points at the new
    publication (`repoint`). `discard` removes what a run that does not publish began; a
    killed run's file is a leftover `clean_leftovers` removes."""

    def __init__(self, catalog: Path, publication: Path) -> None:
        self.publication = publication
        self._con: duckdb.DuckDBPyConnection | None = None
        self._thread: threading.Thread | None = None
        ready = _take_prepared(catalog)
        self.repoint = ready is not None
        if ready is not None:
            self.tmp, self._con = ready.tmp, ready.con
            return
        self.tmp = catalog.with_name(f".{catalog.name}.{os.getpid()}.{publication.name}.tmp")
        self._thread = threading.Thread(target=self._begin, name="catalog-draft", daemon=True)
        self._thread.start()

    def _begin(self) -> None:
        try:
            _remove_catalog_files(self.tmp)
            con = connect_file(self.tmp)
            self._con = con
            con.execute("BEGIN TRANSACTION")
            attach_tables(con, self.publication, tables=[t for t in PUBLISHED if t not in WRITTEN_LAST])
        except Exception:  # the publish builds the catalog whole instead
            self.discard(wait=False)

    def take(self) -> duckdb.DuckDBPyConnection | None:
        """The draft's connection, for `build_catalog` to complete (once); None when the draft
        failed or was taken before."""
        if self._thread is not None:
            self._thread.join()
        con, self._con = self._con, None
        return con

    def discard(self, wait: bool = True) -> None:
        """Close the draft and remove its file (a run that does not publish it)."""
        if wait and self._thread is not None:
            self._thread.join()
        con, self._con = self._con, None
        if con is not None:
            with suppress(Exception):
                con.close()
        with suppress(OSError):
            _remove_catalog_files(self.tmp)


@dataclass
class _Prepared:
    """A complete catalog at a temporary name, kept open (`con` None while it is being made)."""

    tmp: Path
    con: duckdb.DuckDBPyConnection | None = None


_prepared: dict[Path, _Prepared] = {}  # by the catalog it will replace
_prepared_lock = threading.Lock()
# The catalog file this process last swapped in, by its path: (inode, size, mtime). The next
# one is a copy of it while it is still that file (built by this code, pointing at one
# publication), else built.
_swapped_in: dict[Path, tuple[int, int, int]] = {}


def _identity(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def prepare_catalog(catalog: Path, publication: Path) -> bool:
    """Make the next publish's catalog ahead of it (a watcher, between batches): a complete
    catalog of `publication` (the current one) at a temporary name, kept open; the next
    `CatalogDraft` of this catalog takes it, and the publish points its macro at the new
    publication, one statement. Building a catalog (a file, 17 views, 149 comments) took
    0.15 s of CPU in each one-file batch, beside its validation on two busy cores. False when
    one is ready already or it could not be made (the publish then builds one as before).
    The catalog this process swapped in last, if it is still in place, is copied instead of
    built: in a watcher that overlaps the next batch when changes come one after another,
    and a copy and its opening took 0.02 s of CPU where building took 0.1 s."""
    tmp = catalog.with_name(f".{catalog.name}.{os.getpid()}.next.tmp")
    with _prepared_lock:
        if catalog in _prepared:
            return False
        entry = _prepared[catalog] = _Prepared(tmp)  # named first: `clean_leftovers` spares it
    con = None
    try:
        if not _all_tables(publication):
            raise FileNotFoundError(publication)  # an earlier release's, or a broken one
        _remove_catalog_files(tmp)
        ours = _swapped_in.get(catalog)
        if ours is not None and ours == _identity(catalog):
            shutil.copyfile(catalog, tmp)  # checkpointed and closed: the file is whole
            con = connect_file(tmp)
        else:
            con = connect_file(tmp)
            con.execute("BEGIN TRANSACTION")
            attach_tables(con, publication)
            con.execute("COMMIT")
    except Exception:
        _close(con)
        con = None
    with _prepared_lock:
        if con is not None and _prepared.get(catalog) is entry:
            entry.con = con
            return True
        if _prepared.get(catalog) is entry:
            del _prepared[catalog]
    _close(con)
    with suppress(OSError):
        _remove_catalog_files(tmp)
    return False


def drop_prepared(catalog: Path) -> None:
    """Close and remove the catalog prepared for `catalog` (a watcher that stops); one being
    made is removed by its maker."""
    with _prepared_lock:
        entry = _prepared.pop(catalog, None)
    if entry is not None and entry.con is not None:
        _close(entry.con)
        with suppress(OSError):
            _remove_catalog_files(entry.tmp)


def _take_prepared(catalog: Path) -> _Prepared | None:
    with _prepared_lock:
        entry = _prepared.get(catalog)
        if entry is None or entry.con is None:
            return None
        del _prepared[catalog]
        return entry


def _all_tables(publication: Path) -> bool:
    """Every published table of `publication` has a Parquet file: a catalog pointed at it
    reads what a catalog built for it would (building one fails on a table with none)."""
    for table in PUBLISHED:
        try:
            with os.scandir(publication / table) as entries:
                if not any(e.name.endswith(".parquet") for e in entries):
                    return False
        except OSError:
            return False
    return True


def _close(con: duckdb.DuckDBPyConnection | None) -> None:
    if con is not None:
        with suppress(Exception):
            con.close()


def build_catalog(catalog: Path, publication: Path, draft: CatalogDraft | None = None) -> None:
    """Write a DuckDB file with one view per table over the publication's Parquet, and the
    analytical views of pipeline/transform/sql/views/ over those; swap it in by rename. With
    `draft` (begun for this publication, or prepared for any: `repoint`), complete that one."""
    tmp = catalog.with_name(f".{catalog.name}.{os.getpid()}.tmp")
    begun = draft.take() if draft is not None and draft.publication == publication else None
    repoint = draft is not None and draft.repoint
    if begun is not None and repoint and not _all_tables(publication):
        _close(begun)  # built whole below, which says what is missing
        begun = None
        if draft is not None:
            draft.discard()
    if begun is not None and draft is not None:
        tmp = draft.tmp
    try:
        if begun is None:
            _remove_catalog_files(tmp)
        con = begun or connect_file(tmp)
        try:
            # One transaction: the views and 149 column comments each committed on their own
            # took 0.13 s of every publish, 0.07 s together.
            if begun is None:
                con.execute("BEGIN TRANSACTION")
                attach_tables(con, publication)
            elif repoint:  # committed when prepared
                con.execute("BEGIN TRANSACTION")
                _point_at(con, publication)
            else:
                attach_tables(con, publication, tables=WRITTEN_LAST, views=False)
            con.execute("COMMIT")
            con.execute("CHECKPOINT")
        finally:
            con.close()
        crash_point("publish:catalog-built")
        os.replace(tmp, catalog)
        found = _identity(catalog)
        if found is not None:
            _swapped_in[catalog] = found
    except BaseException:
        _remove_catalog_files(tmp)  # the write-ahead log too: a full disk leaves one behind
        raise


def _remove_catalog_files(path: Path) -> None:
    for leftover in (path, path.with_name(path.name + ".wal")):
        if leftover.is_symlink() or leftover.exists():
            leftover.unlink()


def point_current(layout: OutputLayout, run_id: str) -> None:
    tmp = layout.root / f".current.{os.getpid()}.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(Path("publications") / run_id, tmp)
    os.replace(tmp, layout.current)


def load_registry(layout: OutputLayout) -> reg.Registry:
    """The output's registry; rebuilt from the run log's published runs if missing or corrupt."""
    from pipeline.publish import runs

    def published() -> dict[str, dt.datetime]:
        log = runs.read_log(layout.run_log)
        return {
            row["run_id"]: row["finished_at"] or row["started_at"]
            for row in log.select(["run_id", "started_at", "finished_at", "published"]).to_pylist()
            if row["published"] and is_complete(layout.publication(row["run_id"]))
        }

    return reg.Registry.load(layout.registry, published)


def publish(
    layout: OutputLayout,
    run_id: str,
    keep: int = DEFAULT_KEEP,
    retention: dt.timedelta = DEFAULT_RETENTION,
    registry: reg.Registry | None = None,
    draft: CatalogDraft | None = None,
) -> Path:
    """Make `run_id`'s publication current, then prune (see `prune`). `draft`: its catalog,
    begun while the run validated."""
    registry = registry or load_registry(layout)
    publication = layout.publication(run_id)
    swap_catalog(layout, registry, run_id, draft)
    crash_point("publish:catalog-swapped")
    point_current(layout, run_id)
    crash_point("publish:current-swapped")
    prune(layout, registry, keep, retention)
    crash_point("publish:pruned")
    return publication


def swap_catalog(
    layout: OutputLayout, registry: reg.Registry, run_id: str, draft: CatalogDraft | None = None
) -> None:
    """Record `run_id` as current, then swap the catalog to its publication (completing `draft`,
    if one was begun). Recorded first: a process killed between the catalog and `current`
    swaps leaves a catalog pointing at this publication, which must then not be cleaned away;
    if the catalog cannot be built, the record is undone (it never became current)."""
    before = registry.snapshot()
    registry.made_current(run_id)
    try:
        build_catalog(layout.catalog, layout.publication(run_id), draft)
    except BaseException:
        registry.restore(before)
        raise


def is_complete(publication: Path) -> bool:
    return runs_file(publication).exists()


def current_run_id(layout: OutputLayout) -> str | None:
    try:
        return Path(os.readlink(layout.current)).name
    except OSError:
        return None


def kept_publications(layout: OutputLayout, registry: reg.Registry | None = None) -> list[str]:
    """Complete publications that were current at some point (rollback points), most recently
    current first."""
    registry = registry or load_registry(layout)
    found = [
        run_id
        for run_id in registry.entries
        if registry.was_current(run_id) and is_complete(layout.publication(run_id))
    ]
    return sorted(found, key=registry.last_current, reverse=True)


def list_publications(layout: OutputLayout) -> list[str]:
    """Rollback points, oldest first by name (run ids sort by start time)."""
    return sorted(kept_publications(layout))


def rollback(layout: OutputLayout, run_id: str) -> Path:
    """Make a kept publication current again (catalog and `current` swapped as on publish)."""
    registry = load_registry(layout)
    kept = kept_publications(layout, registry)
    if run_id not in kept:
        shown = ", ".join(sorted(kept)) or "none"
        raise LookupError(f"no kept publication {run_id!r} in {layout.root} (kept: {shown})")
    from pipeline.publish import changes

    publication = layout.publication(run_id)
    transition = changes.record(layout, current_run_id(layout), run_id, None)
    try:
        swap_catalog(layout, registry, run_id)
    except BaseException:
        reg.remove_tree(transition.folder)  # it never happened
        raise
    point_current(layout, run_id)
    return publication


def prune(
    layout: OutputLayout,
    registry: reg.Registry,
    keep: int = DEFAULT_KEEP,
    retention: dt.timedelta = DEFAULT_RETENTION,
) -> list[str]:
    """Delete publications beyond the `keep` most recently current ones, except any that was
    current within `retention` (open readers and exports may still read it) and the current
    one. Only publications the registry names are candidates."""
    existing = [p.name for p in layout.publications.iterdir()] if layout.publications.is_dir() else []
    gone = reg.prunable(registry, existing, current_run_id(layout), keep, retention)
    for run_id in gone:
        reg.remove_tree(layout.publication(run_id))
        # Its run report page (charts of tables no longer on disk) and validation report go
        # with it: a watcher makes both for every batch (~0.2 MB together).
        for page in (layout.report / f"{run_id}.html", layout.validation / f"{run_id}.json"):
            if page.is_file() and not page.is_symlink():
                page.unlink()
        registry.entries.pop(run_id, None)
    if gone:
        registry.save()
    return gone


def clean_leftovers(layout: OutputLayout, registry: reg.Registry) -> None:
    """Remove what a killed run left behind: its work folder, a publication that never became
    current, half-built catalog and link files. Only what the registry names, and the
    temporary files of our own naming. Call only while holding the lock."""
    from pipeline.publish import changes

    current = current_run_id(layout)
    never = {r for r in registry.entries if r != current and not registry.was_current(r)}
    changes.forget(layout, never)  # their transitions were recorded but never happened
    # The work folders there are (a watcher's registry names every publication of the retention
    # window: stat-ing a work folder for each took a share of every batch that grew with it).
    working = [p.name for p in layout.work.iterdir()] if layout.work.is_dir() else []
    for run_id in working:
        if run_id in registry.entries:
            reg.remove_tree(layout.run_work(run_id))
    for run_id in never:
        reg.remove_tree(layout.publication(run_id))
        del registry.entries[run_id]
    if never:
        registry.save()
    if layout.work.is_dir() and not any(layout.work.iterdir()):
        layout.work.rmdir()
    # Under the lock: a catalog being prepared (this process's own, for its next publish) is
    # named before its file is made, so a file this finds is a leftover or named.
    with _prepared_lock:
        kept = {entry.tmp.name for entry in _prepared.values()}
        for pattern in (
            f".{layout.catalog.name}.*.tmp",
            f".{layout.catalog.name}.*.tmp.wal",
            ".current.*.tmp",
        ):
            for leftover in layout.root.glob(pattern):
                if leftover.name.removesuffix(".wal") not in kept:
                    leftover.unlink(missing_ok=True)


def discard(path: Path) -> None:
    reg.remove_tree(path)
