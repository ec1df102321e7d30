"""`python -m pipeline export`: a self-contained snapshot of the current publication for tools
that cannot follow the catalog's Parquet paths.

The snapshot is read from the publication `current` points at when the export starts
(resolved once, so a run publishing meanwhile cannot mix two versions; the retention window
keeps that publication on disk while the export reads it) and written into a temporary
folder beside the target, renamed into place when complete.
- `duckdb`: `news.duckdb` with every table materialized, the analytical views over those
  tables, and the data dictionary as comments; it does not refer to the output folder. Written
  in DuckDB's v1.0 storage format: DuckDB 1.x opens it too.
- `parquet` / `csv`: one file per table and per view. In CSV, list columns are JSON arrays,
  and by default text is made safe to open in a spreadsheet (OWASP's advice on CSV
  injection): a cell starting with `=`, `+`, `-`, `@`, a tab or a carriage return gets a
  leading `'`, and NUL bytes are dropped. `csv_raw` writes cells exactly as stored.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import duckdb

from pipeline.core.config import OutputLayout
from pipeline.core.lock import is_ours
from pipeline.core.sqltext import sql_list, sql_literal
from pipeline.core.tables import PUBLISHED, TABLE, VIEWS, part_path, table_glob
from pipeline.publish.catalog import attach_tables, connect_file, current_run_id

FORMATS = ("duckdb", "parquet", "csv")
# Leading characters a spreadsheet reads as a formula (OWASP, "CSV Injection").
FORMULA_START = "=+-@\t\r"


class ExportError(Exception):
    """Nothing to export, or the target is in the way."""


def check_target(layout: OutputLayout, target: Path, force: bool) -> None:
    if target == layout.root or target.is_relative_to(layout.root) or layout.root.is_relative_to(target):
        raise ExportError(
            f"export target {target} is inside the output folder {layout.root} (or holds it); "
            "the pipeline manages that folder: choose a folder outside it"
        )
    if target.exists() and not target.is_dir():
        raise ExportError(f"export target is a file: {target}")
    if target.exists() and any(target.iterdir()) and not force:
        raise ExportError(f"export target is not empty: {target} (use --force to replace it)")


def export(output: Path, fmt: str, target: Path, force: bool = False, csv_raw: bool = False) -> Path:
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    layout = OutputLayout(output.resolve())
    run_id = current_run_id(layout) if is_ours(layout.root) else None
    if run_id is None:
        raise ExportError(f"no current publication in {output} (run the pipeline first)")
    publication = layout.publication(run_id)
    target = target.resolve()
    staging = staging_for(layout, target, force)
    try:
        if fmt == "duckdb":
            _to_duckdb(publication, staging / "news.duckdb")
        else:
            _to_files(publication, staging, fmt, csv_raw)
        replace_folder(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def staging_for(layout: OutputLayout, target: Path, force: bool) -> Path:
    """A fresh temporary folder beside `target` (checked first), with the target's permissions
    if it exists (a private 700 folder stays private)."""
    check_target(layout, target, force)
    staging = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    if target.is_dir():
        os.chmod(staging, target.stat().st_mode & 0o7777)
    return staging


def replace_folder(staging: Path, target: Path) -> None:
    """Put a complete folder in place of `target`: an empty target is replaced by rename; a
    full one is renamed aside first and deleted only once the new one is in place."""
    if not target.exists():
        os.replace(staging, target)
        return
    if not any(target.iterdir()):
        target.rmdir()
        os.replace(staging, target)
        return
    aside = target.with_name(f".{target.name}.{os.getpid()}.old")
    os.replace(target, aside)
    try:
        os.replace(staging, target)
    except BaseException:
        os.replace(aside, target)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def _to_duckdb(publication: Path, path: Path) -> None:
    con = connect_file(path)
    try:
        attach_tables(con, publication, materialize=True)
        con.execute("CHECKPOINT")
    finally:
        con.close()


def csv_select(con: duckdb.DuckDBPyConnection, name: str, raw: bool) -> str:
    """A SELECT of `name` for CSV: lists and structs as JSON; text neutralised unless `raw`."""
    columns = []
    for column, kind in con.execute(f"SELECT column_name, column_type FROM (DESCRIBE {name})").fetchall():
        quoted = '"' + column.replace('"', '""') + '"'
        if kind.endswith("[]") or kind.startswith(("STRUCT", "MAP")):
            columns.append(f"to_json({quoted})::VARCHAR AS {quoted}")
        elif kind == "VARCHAR" and not raw:
            cell = f"replace({quoted}, chr(0), '')"
            starts = sql_literal(FORMULA_START)
            columns.append(
                f"CASE WHEN contains({starts}, left({cell}, 1)) AND {cell} <> '' "
                f"THEN '''' || {cell} ELSE {cell} END AS {quoted}"
            )
        else:
            columns.append(quoted)
    return f"SELECT {', '.join(columns)} FROM {name}"


def _to_files(publication: Path, folder: Path, fmt: str, csv_raw: bool) -> None:
    con = duckdb.connect()
    try:
        attach_tables(con, publication)
        options = "FORMAT parquet, COMPRESSION zstd" if fmt == "parquet" else "FORMAT csv, HEADER true"
        for name in (*PUBLISHED, *VIEWS):
            select = f"SELECT * FROM {name}" if fmt == "parquet" else csv_select(con, name, csv_raw)
            con.execute(f"COPY ({select}) TO {sql_literal(str(folder / f'{name}.{fmt}'))} ({options})")
    finally:
        con.close()


# --- Change sets -------------------------------------------------------------------------------
def export_since(
    output: Path, since: str, fmt: str, target: Path, force: bool = False, csv_raw: bool = False
) -> dict[str, Any]:
    """Write the change set from the publication of run `since` to the current one (contract,
    section 4): per table `NAME.<fmt>` (rows to insert: every current row of a changed key) and
    `NAME.deleted.<fmt>` (changed keys with no current row), and `manifest.json`. Applied to
    the tables as `since` published them (delete the rows whose key is deleted or inserted,
    then insert; a table with key [] is replaced whole) it gives the current tables."""
    from pipeline.publish import changes

    if fmt not in ("parquet", "csv"):
        raise ExportError(f"a change set is written as parquet or csv, not {fmt}")
    layout = OutputLayout(output.resolve())
    current = current_run_id(layout) if is_ours(layout.root) else None
    if current is None:
        raise ExportError(f"no current publication in {output} (run the pipeline first)")
    try:
        path = changes.path_since(layout, since, current)
    except changes.ChangeLogError as exc:
        raise ExportError(str(exc)) from None
    publication = layout.publication(current)
    target = target.resolve()
    staging = staging_for(layout, target, force)
    manifest: dict[str, Any] = {"from_run_id": since, "to_run_id": current, "tables": {}}
    con = duckdb.connect(config={"threads": 2, "memory_limit": "1GB"})
    # DuckDB spills to `.tmp` in the working directory by default: inside the change set's
    # staging folder instead, removed before it becomes the target.
    spill = staging / ".duckdb-spill"
    try:
        con.execute(f"SET temp_directory = {sql_literal(str(spill))}")
        for table in PUBLISHED:
            key = list(TABLE[table].key)
            rows, deleted = _change_set(con, layout, publication, table, key, path)
            _write(con, rows, staging / f"{table}.{fmt}", fmt, csv_raw)
            entry: dict[str, Any] = {"key": key, "rows": _count(con, rows), "deleted": 0}
            if key:
                _write(con, deleted, staging / f"{table}.deleted.{fmt}", fmt, csv_raw)
                entry["deleted"] = _count(con, deleted)
            manifest["tables"][table] = entry
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        con.close()
        shutil.rmtree(spill, ignore_errors=True)
        replace_folder(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        con.close()
    return manifest


def _change_set(
    con: duckdb.DuckDBPyConnection,
    layout: OutputLayout,
    publication: Path,
    table: str,
    key: list[str],
    path: list[Any],
) -> tuple[str, str]:
    """(SELECT of the rows to insert, SELECT of the deleted keys) of `table` along `path`."""
    if not (publication / table).is_dir():
        empty = (
            "SELECT NULL::VARCHAR AS run_id, NULL::VARCHAR AS event_id, NULL::VARCHAR AS change WHERE false"
        )
        return empty, "SELECT NULL::VARCHAR AS run_id WHERE false"
    if not key:  # replaced whole
        return f"SELECT * FROM read_parquet({sql_literal(table_glob(publication, table))})", ""
    logs = [
        str(step.folder / f"{table}.parquet") for step in path if (step.folder / f"{table}.parquet").exists()
    ]
    columns = ", ".join(key)
    if not logs:
        keys = f"(SELECT {', '.join(f'NULL::VARCHAR AS {k}' for k in key)} WHERE false)"
    else:
        keys = f"(SELECT DISTINCT {columns} FROM read_parquet({sql_list(logs)}))"
    # Only the parts the transitions touched can hold changed rows (all, if any step says all).
    touched: set[str] | None = set()
    for step in path:
        names = step.parts.get(table)
        if names is None:
            touched = None
            break
        assert touched is not None
        touched.update(names)
    if touched is None:
        files = [table_glob(publication, table)]
    else:
        files = [
            str(part_path(publication, table, n))
            for n in sorted(touched)
            if part_path(publication, table, n).exists()
        ]
    current = (
        f"(SELECT * FROM read_parquet({sql_list(files)}))"
        if files
        else f"(SELECT * FROM read_parquet({sql_literal(table_glob(publication, table))}) WHERE false)"
    )
    rows = f"SELECT * FROM {current} SEMI JOIN {keys} k USING ({columns})"
    deleted = f"SELECT * FROM {keys} k ANTI JOIN (SELECT {columns} FROM {current}) USING ({columns})"
    return rows, deleted


def _count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.execute(f"SELECT count(*) FROM ({sql})").fetchone()
    return int(row[0]) if row else 0


def _write(con: duckdb.DuckDBPyConnection, sql: str, path: Path, fmt: str, csv_raw: bool) -> None:
    con.execute(f"CREATE OR REPLACE TEMP VIEW change_rows AS {sql}")
    if fmt == "parquet":
        con.execute(
            f"COPY (SELECT * FROM change_rows) TO {sql_literal(str(path))} (FORMAT parquet, COMPRESSION zstd)"
        )
    else:
        select = csv_select(con, "change_rows", csv_raw)
        con.execute(f"COPY ({select}) TO {sql_literal(str(path))} (FORMAT csv, HEADER true)")
