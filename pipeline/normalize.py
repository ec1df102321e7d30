"""Derive the published tables from the staging Parquet with DuckDB (models in pipeline/sql/).

Every model is a SELECT in its own `.sql` file; it is written to Parquet in the
new publication folder and then exposed under its own name, so later models
read what was actually written. DuckDB spills to disk under a memory limit, so
a million events stay inside the process's budget.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import duckdb

from pipeline.faults import checkpoint
from pipeline.schema import STAGING

# In dependency order: each model may read the staging views and the models before it.
MODELS: tuple[str, ...] = (
    "events",
    "files",
    "sources",
    "relations",
    "relation_tags",
    "event_tags",
    "tags",
    "quarantine",
)

PARQUET_OPTIONS = "FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880"


def sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def model_sql(name: str) -> str:
    return resources.files("pipeline").joinpath("sql", f"{name}.sql").read_text(encoding="utf-8")


def connect(work_dir: Path, threads: int, memory_limit: str) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that spills to `work_dir` rather than exceed `memory_limit`."""
    spill = work_dir / "duckdb-spill"
    spill.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(config={"threads": threads, "memory_limit": memory_limit})
    con.execute("SET enable_progress_bar = false")
    con.execute(f"SET temp_directory = {sql_literal(str(spill))}")
    return con


def normalize(
    staging_dir: Path,
    publication_dir: Path,
    work_dir: Path,
    live: Path | None = None,
    threads: int = 2,
    memory_limit: str = "1GB",
) -> dict[str, int]:
    """Write every model as `<publication_dir>/<model>.parquet`; return row counts.

    With `live` (a manifest: file_path, batch), only each file's current batch counts;
    without it every staged row does. Rather than semi-joining every staging view with the
    live manifest (a hash table of every file, probed again in each model: DuckDB ran out of
    its 1 GB at 1M events), the dead (file, batch) pairs, those of replaced or removed files,
    are found once from stg_files and anti-joined; on a full build there are none."""
    publication_dir.mkdir(parents=True, exist_ok=True)
    con = connect(work_dir, threads, memory_limit)
    try:
        dead = ""
        if live is not None:
            files = sql_literal(str(staging_dir / "stg_files-*.parquet"))
            con.execute(
                f"""CREATE TEMP TABLE dead AS
                SELECT file_path, batch FROM read_parquet({files})
                ANTI JOIN (SELECT file_path, batch FROM read_parquet({sql_literal(str(live))}))
                USING (file_path, batch)"""
            )
            if con.execute("SELECT count(*) FROM dead").fetchone()[0]:
                dead = " ANTI JOIN dead USING (file_path, batch)"
        for name in STAGING:
            pattern = sql_literal(str(staging_dir / f"{name}-*.parquet"))
            con.execute(f"CREATE VIEW {name} AS SELECT * EXCLUDE (batch) FROM read_parquet({pattern}){dead}")
        counts: dict[str, int] = {}
        for name in MODELS:
            target = publication_dir / f"{name}.parquet"
            tmp = target.with_suffix(".parquet.tmp")
            con.execute(f"COPY ({model_sql(name)}) TO {sql_literal(str(tmp))} ({PARQUET_OPTIONS})")
            tmp.replace(target)
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet({sql_literal(str(target))})")
            counts[name] = con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
            checkpoint(f"normalize:{name}")
        return counts
    finally:
        con.close()
