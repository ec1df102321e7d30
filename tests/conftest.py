"""Shared fixtures. Prefect runs against one session-wide test server with a throwaway
PREFECT_HOME, so no state or cached result outlives the session."""

from __future__ import annotations

import atexit
import datetime as dt
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
_PREFECT_HOME = tempfile.mkdtemp(prefix="prefect-home-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
atexit.register(shutil.rmtree, _PREFECT_HOME, ignore_errors=True)  # ~6 MB per session otherwise

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "examples" / "news"
TODAY = dt.date(2026, 11, 24)


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture(scope="session")
def sample_build(prefect_server: None, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The real flow run once over the bundled sample archive."""
    from flows.news_etl import news_etl

    output = tmp_path_factory.mktemp("sample-output")
    return news_etl(input=str(SAMPLE), output=str(output))


def write_archive(root: Path, files: dict[str, bytes | str]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return root


def event_doc(
    date: str = "2014-06-21",
    title: str = "Something happens somewhere",
    summary: str = "A summary.",
    sources: tuple[str, ...] = ("1. [BBC](https://www.bbc.co.uk/news/1)",),
    related: tuple[str, ...] = (),
) -> str:
    parts = [f"### [{date}](/news/{date.replace('-', '/')}/index.md)", "", f"# {title}", "", summary, ""]
    parts += ["### Source:", "", *sources, ""]
    if related:
        parts += ["### Related:", "", *related, ""]
    return "\n".join(parts)


def build_tables(input_root: Path, work: Path, batch_size: int = 2000, workers: int = 1):
    """discover -> stage -> normalize without Prefect; a DuckDB connection with every table as a view."""
    import duckdb

    from pipeline.core.tables import table_glob
    from pipeline.extract.discover import discover
    from pipeline.parse.stage import stage_all
    from pipeline.transform.normalize import MODELS, normalize

    files = discover(input_root)
    stage_all(files, work / "staging", TODAY, batch_size, workers)
    normalize(work / "staging", work / "publication", work)
    con = duckdb.connect()
    for name in MODELS:
        con.execute(
            f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{table_glob(work / 'publication', name)}')"
        )
    return con
