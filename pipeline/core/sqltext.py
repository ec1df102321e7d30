"""SQL text: the model files in pipeline/transform/sql/ and quoting of literals."""

from __future__ import annotations

from importlib import resources


def sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def sql_list(items: list[str]) -> str:
    return "[" + ", ".join(sql_literal(i) for i in items) + "]"


def model_sql(name: str) -> str:
    return resources.files("pipeline.transform").joinpath("sql", f"{name}.sql").read_text(encoding="utf-8")
