"""Make a finished publication current, atomically.

A publication is a folder `OUTPUT/publications/<run_id>/` of Parquet files that
is complete before anything points at it. The catalog `news.duckdb` (views
over absolute Parquet paths, so it works from any working directory) is built
beside the old one and swapped in with a rename; `OUTPUT/current` is a symlink
swapped the same way. A reader sees the previous publication or the new one,
never a mix.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import duckdb

from pipeline.config import OutputLayout
from pipeline.dictionary import comment_statements
from pipeline.faults import checkpoint
from pipeline.sqltext import sql_literal
from pipeline.tables import PUBLISHED, VIEWS, runs_file, table_glob, view_sql


def build_catalog(catalog: Path, publication: Path) -> None:
    """Write a DuckDB file with one view per table over the publication's Parquet, and the
    analytical views of pipeline/sql/views/ over those."""
    tmp = catalog.with_name(f".{catalog.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    con = duckdb.connect(str(tmp))
    try:
        for table in PUBLISHED:
            path = sql_literal(table_glob(publication, table))
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet({path})")
        for view in VIEWS:
            con.execute(f"CREATE VIEW {view} AS {view_sql(view)}")
        for statement in comment_statements():
            con.execute(statement)
        con.execute("CHECKPOINT")
    finally:
        con.close()
    checkpoint("publish:catalog-built")
    os.replace(tmp, catalog)


def point_current(layout: OutputLayout, run_id: str) -> None:
    tmp = layout.root / f".current.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(Path("publications") / run_id, tmp)
    os.replace(tmp, layout.current)


def publish(layout: OutputLayout, run_id: str, keep: int) -> Path:
    """Make `run_id`'s publication current and drop all but the newest `keep` publications."""
    publication = layout.publication(run_id)
    build_catalog(layout.catalog, publication)
    checkpoint("publish:catalog-swapped")
    point_current(layout, run_id)
    checkpoint("publish:current-swapped")
    prune(layout, keep, protect=run_id)
    checkpoint("publish:pruned")
    return publication


def list_publications(layout: OutputLayout) -> list[str]:
    """Complete publications, oldest first (run ids sort by time)."""
    if not layout.publications.is_dir():
        return []
    return sorted(p.name for p in layout.publications.iterdir() if is_complete(p))


def is_complete(publication: Path) -> bool:
    return runs_file(publication).exists()


def current_run_id(layout: OutputLayout) -> str | None:
    try:
        return Path(os.readlink(layout.current)).name
    except OSError:
        return None


def rollback(layout: OutputLayout, run_id: str) -> Path:
    """Make a kept publication current again (catalog and `current` swapped as on publish)."""
    if run_id not in list_publications(layout):
        kept = ", ".join(list_publications(layout)) or "none"
        raise LookupError(f"no kept publication {run_id!r} in {layout.root} (kept: {kept})")
    publication = layout.publication(run_id)
    build_catalog(layout.catalog, publication)
    point_current(layout, run_id)
    return publication


def prune(layout: OutputLayout, keep: int, protect: str) -> None:
    for run_id in list_publications(layout)[:-keep]:
        if run_id != protect:
            shutil.rmtree(layout.publication(run_id), ignore_errors=True)


def clean_leftovers(layout: OutputLayout) -> None:
    """Remove what a killed run left behind: its work folder, a publication it never finished
    (no runs file), half-built catalog and link files. Call only while holding the lock."""
    shutil.rmtree(layout.work, ignore_errors=True)
    current = current_run_id(layout)
    if layout.publications.is_dir():
        for folder in layout.publications.iterdir():
            if folder.name != current and not is_complete(folder):
                shutil.rmtree(folder, ignore_errors=True)
    for pattern in (f".{layout.catalog.name}.*.tmp", ".current.*.tmp"):
        for leftover in layout.root.glob(pattern):
            leftover.unlink(missing_ok=True)


def discard(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
