"""Crash safety: SIGKILL a real run at 21 moments; the catalog always shows a complete
publication, and the next run completes and equals a clean full build."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.core.config import OutputLayout
from pipeline.core.faults import CRASH_POINTS
from pipeline.core.tables import PUBLISHED, runs_file
from pipeline.publish.catalog import current_run_id, list_publications, rollback
from tests.conftest import REPO, SAMPLE, build_tables, event_doc, write_archive

pytestmark = pytest.mark.flow

# Every published table but the run and change logs (which differ between any two runs).
TABLES = tuple(t for t in PUBLISHED if t not in ("runs", "changes"))

# Prints {table: sha256 of its sorted rows} for a catalog (or a folder of Parquet files).
# Run in a fresh process: within one process DuckDB may reuse an already-open database.
FINGERPRINT = r"""
import duckdb, hashlib, json, sys, pathlib
target = pathlib.Path(sys.argv[1])
con = duckdb.connect(str(target), read_only=True) if target.suffix == ".duckdb" else duckdb.connect()
out = {}
for t in sys.argv[2:]:
    src = t if target.suffix == ".duckdb" else f"read_parquet('{target / t}/*.parquet')"
    rows = con.execute(f"SELECT * FROM {src} ORDER BY ALL").fetchall()
    out[t] = hashlib.sha256(repr(rows).encode()).hexdigest()
print(json.dumps(out))
"""


def fingerprint(target: Path) -> dict[str, str]:
    out = subprocess.run(
        [sys.executable, "-c", FINGERPRINT, str(target), *TABLES], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def scenario(prefect_server, tmp_path_factory):
    """v1 = the sample; v2 = v1 plus an added event, an edited one and a deleted one."""
    from prefect.settings import PREFECT_API_URL

    from flows.news_etl import news_etl

    base = tmp_path_factory.mktemp("crash")
    v1, v2 = base / "v1", base / "v2"
    shutil.copytree(SAMPLE, v1)
    shutil.copytree(SAMPLE, v2)
    write_archive(
        v2, {"news/2025/01/5/an-added-event.md": event_doc(date="2025-01-05", title="An added event")}
    )
    crimea = next(v2.glob("news/2014/03/18/*.md"))
    crimea.write_bytes(crimea.read_bytes().replace(b"disputed referendum", b"contested referendum"))
    next(v2.glob("news/2020/03/11/*.md")).unlink()
    for version in (v1, v2):
        build_tables(version, base / f"full-{version.name}").close()
    template = base / "template"
    first = news_etl(input=str(v1), output=str(template), workers=1)
    return {
        "v1": v1,
        "v2": v2,
        "template": template,
        "v1_run": first["run_id"],
        "v1_print": fingerprint(base / "full-v1" / "publication"),
        "v2_print": fingerprint(base / "full-v2" / "publication"),
        "api": PREFECT_API_URL.value(),
    }


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_sigkill_at(point, scenario, tmp_path):
    from flows.news_etl import news_etl

    out = tmp_path / "out"
    shutil.copytree(scenario["template"], out, symlinks=True)
    layout = OutputLayout(out)
    rollback(layout, scenario["v1_run"])  # re-points the copied catalog at the copied Parquet
    assert fingerprint(layout.catalog) == scenario["v1_print"]

    env = os.environ | {"PIPELINE_CRASH_AT": point, "PREFECT_API_URL": scenario["api"]}
    killed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "run",
            "--input",
            str(scenario["v2"]),
            "--output",
            str(out),
            "--workers",
            "1",
            "--batch-size",
            "10",
            "--no-progress",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -9, f"{point} was not reached: {killed.stderr[-2000:]}"

    # a reader sees a complete publication: the old one or the new one, never a mix
    assert fingerprint(layout.catalog) in (scenario["v1_print"], scenario["v2_print"])
    assert current_run_id(layout) in list_publications(layout)

    # the next run completes, equals a clean full build, and leaves nothing of the killed run behind
    news_etl(input=str(scenario["v2"]), output=str(out), workers=1)
    assert fingerprint(layout.catalog) == scenario["v2_print"]
    assert fingerprint(out / "current") == scenario["v2_print"]
    assert not any(layout.work.iterdir()) if layout.work.exists() else True
    assert all(runs_file(p).exists() for p in layout.publications.iterdir())
    assert not list(out.glob(".*.tmp"))
