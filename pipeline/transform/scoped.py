"""Run a model over some of its rows: the incremental builds' way to recompute part of a table."""

from __future__ import annotations

from typing import Any

import duckdb

from pipeline.core.sqltext import model_sql

_SCOPE = "model_scope"


def scoped_model(
    con: duckdb.DuckDBPyConnection,
    model: str,
    target: str,
    views: dict[str, str],
    params: dict[str, Any] | None = None,
) -> None:
    """`CREATE OR REPLACE TABLE main.<target>` from model `model` (pipeline/transform/sql/),
    with each table it reads that `views` names replaced by that SELECT (say, the rows of a
    few tags): the views sit in a schema searched before `main`, so the model's text stays
    the one a full build runs."""
    scoped_query(con, model_sql(model), target, views, params)


def scoped_query(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    target: str,
    views: dict[str, str],
    params: dict[str, Any] | None = None,
) -> None:
    """`scoped_model` for any query text `sql` (say, a suite's frame)."""
    con.execute(f"DROP SCHEMA IF EXISTS {_SCOPE} CASCADE")
    con.execute(f"CREATE SCHEMA {_SCOPE}")
    try:
        for name, select in views.items():
            con.execute(f"CREATE VIEW {_SCOPE}.{name} AS {select}")
        con.execute(f"SET search_path = '{_SCOPE},main'")
        try:
            con.execute(f"CREATE OR REPLACE TABLE main.{target} AS {sql}", params or {})
        finally:
            con.execute("SET search_path = 'main'")
    finally:
        con.execute(f"DROP SCHEMA {_SCOPE} CASCADE")
