"""`python -m pipeline dbt-sources --to FILE`: a dbt `sources.yml` for the catalog.

Every table and view with its description and column docs from the data dictionary, and dbt
tests matching our critical expectations: `not_null` and `accepted_values` where an
expectation checks a column as published, `unique` and `relationships` where it checks a
derived frame column (`event_id_occurrences` between 1 and 1 is the key's uniqueness,
`event_exists` is a foreign key to `events`). A dbt-duckdb project attaches the catalog
read-only under the alias `news` (the profile snippet is in the file's header).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.core.config import DEFAULT_EXPECTATIONS
from pipeline.publish.dictionary import DICTIONARY

SOURCE = "news"
DATABASE = "news"  # the alias the catalog is attached under
# Derived frame columns of the suites and the dbt test each one amounts to.
DERIVED: dict[str, tuple[str, str, str | None]] = {
    "event_id_occurrences": ("unique", "event_id", None),
    "file_path_occurrences": ("unique", "file_path", None),
    "tag_id_occurrences": ("unique", "tag_id", None),
    "storyline_id_occurrences": ("unique", "storyline_id", None),
    "event_exists": ("relationships", "event_id", "events.event_id"),
    "tag_exists": ("relationships", "tag_id", "tags.tag_id"),
    "storyline_exists": ("relationships", "storyline_id", "storylines.storyline_id"),
}
HEADER = """# dbt sources for the news-pipeline catalog (generated: python -m pipeline dbt-sources).
# In profiles.yml (dbt-duckdb), attach the catalog read-only under the alias `news`:
#   outputs:
#     dev:
#       type: duckdb
#       path: analytics.duckdb            # your models go here, not into the managed catalog
#       attach:
#         - path: /path/to/output/news.duckdb
#           alias: news
#           read_only: true
"""


def tests_by_column(expectations: Path = DEFAULT_EXPECTATIONS) -> dict[str, dict[str, list[Any]]]:
    """{table: {column: [dbt tests]}} from the critical expectations of each table's suite."""
    found: dict[str, dict[str, list[Any]]] = {}
    for path in sorted(expectations.glob("*.json")):
        table = path.stem
        if table not in DICTIONARY:
            continue
        columns = DICTIONARY[table].columns
        tests = found.setdefault(table, {})
        for exp in json.loads(path.read_text(encoding="utf-8"))["expectations"]:
            if exp["meta"].get("severity") != "critical":
                continue
            column = exp["kwargs"].get("column")
            kind = exp["type"]
            if column in columns:
                if kind == "expect_column_values_to_not_be_null":
                    _add(tests, column, "not_null")
                elif kind == "expect_column_values_to_be_in_set":
                    _add(
                        tests,
                        column,
                        {"accepted_values": {"arguments": {"values": exp["kwargs"]["value_set"]}}},
                    )
            elif column in DERIVED:
                test, target, reference = DERIVED[column]
                if test == "unique" and kind == "expect_column_values_to_be_between":
                    _add(tests, target, "unique")
                elif test == "relationships" and reference is not None:
                    other, field = reference.split(".")
                    to = f"source('{SOURCE}', '{other}')"
                    _add(tests, target, {"relationships": {"arguments": {"to": to, "field": field}}})
    return found


def _add(tests: dict[str, list[Any]], column: str, test: Any) -> None:
    if test not in tests.setdefault(column, []):
        tests[column].append(test)


def sources_yaml(expectations: Path = DEFAULT_EXPECTATIONS) -> str:
    import yaml

    tests = tests_by_column(expectations)
    tables = []
    for name, entry in DICTIONARY.items():
        columns = []
        for column, text in entry.columns.items():
            item: dict[str, Any] = {"name": column, "description": text}
            if tests.get(name, {}).get(column):
                item["data_tests"] = tests[name][column]
            columns.append(item)
        tables.append({"name": name, "description": entry.description, "columns": columns})
    document = {
        "version": 2,
        "sources": [
            {
                "name": SOURCE,
                "description": "News events published by news-pipeline (the catalog, attached read-only).",
                "database": DATABASE,
                "schema": "main",
                "tables": tables,
            }
        ],
    }
    return HEADER + yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)


def write_sources(target: Path, expectations: Path = DEFAULT_EXPECTATIONS) -> int:
    """Write the file; the number of dbt tests it declares."""
    from pipeline.core.storage import save_bytes

    save_bytes(target, sources_yaml(expectations).encode("utf-8"))
    return sum(len(t) for cols in tests_by_column(expectations).values() for t in cols.values())
