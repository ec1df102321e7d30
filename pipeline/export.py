"""`python -m pipeline export`: a self-contained snapshot of the current publication for tools
that cannot follow the catalog's Parquet paths.

The snapshot is read from the publication `current` points at when the export starts
(resolved once, so a run publishing meanwhile cannot mix two versions) and written into a
temporary folder beside the target, renamed into place when complete.
- `duckdb`: `news.duckdb` with every table materialized, the analytical views over those
  tables, and the data dictionary as comments; it does not refer to the output folder.
- `parquet` / `csv`: one file per table and per view.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import duckdb

from pipeline.config import OutputLayout
from pipeline.dictionary import comment_statements
from pipeline.publish import current_run_id
from pipeline.sqltext import sql_literal
from pipeline.tables import PUBLISHED, VIEWS, table_glob, view_sql

FORMATS = ("duckdb", "parquet", "csv")


class ExportError(Exception):
    """Nothing to export, or the target is in the way."""


def export(output: Path, fmt: str, target: Path) -> Path:
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    layout = OutputLayout(output.resolve())
    run_id = current_run_id(layout)
    if run_id is None:
        raise ExportError(f"no current publication in {output} (run the pipeline first)")
    publication = layout.publication(run_id)
    target = target.resolve()
    if target.exists() and any(target.iterdir()):
        raise ExportError(f"export target is not empty: {target}")
    staging = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        if fmt == "duckdb":
            _to_duckdb(publication, staging / "news.duckdb")
        else:
            _to_files(publication, staging, fmt)
        if target.exists():
            target.rmdir()
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _to_duckdb(publication: Path, path: Path) -> None:
    con = duckdb.connect(str(path))
    try:
        for table in PUBLISHED:
            con.execute(
                f"CREATE TABLE {table} AS SELECT * FROM read_parquet({sql_literal(table_glob(publication, table))})"
            )
        for view in VIEWS:
            con.execute(f"CREATE VIEW {view} AS {view_sql(view)}")
        for statement in comment_statements():
            con.execute(
                statement.replace("COMMENT ON VIEW", "COMMENT ON TABLE", 1)
                if _is_table(statement)
                else statement
            )
        con.execute("CHECKPOINT")
    finally:
        con.close()


def _is_table(statement: str) -> bool:
    words = statement.split()
    return words[:3] == ["COMMENT", "ON", "VIEW"] and words[3] in PUBLISHED


def _to_files(publication: Path, folder: Path, fmt: str) -> None:
    con = duckdb.connect()
    try:
        for table in PUBLISHED:
            con.execute(
                f"CREATE VIEW {table} AS SELECT * FROM read_parquet({sql_literal(table_glob(publication, table))})"
            )
        for view in VIEWS:
            con.execute(f"CREATE VIEW {view} AS {view_sql(view)}")
        options = "FORMAT parquet, COMPRESSION zstd" if fmt == "parquet" else "FORMAT csv, HEADER true"
        for name in (*PUBLISHED, *VIEWS):
            con.execute(
                f"COPY (SELECT * FROM {name}) TO {sql_literal(str(folder / f'{name}.{fmt}'))} ({options})"
            )
    finally:
        con.close()
