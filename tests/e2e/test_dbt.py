"""`dbt-sources`: a real dbt-duckdb project on our catalog gets docs and tests, and `dbt build`
runs them (real dbt, in its own environment made by dev.py: its dependencies are not ours)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

DBT = REPO / ".venv" / "compat" / "dbt" / "bin" / "dbt"


def dbt() -> Path:
    """dbt in its own environment: made by dev.py's set-up, or here for a bare pytest run."""
    if not DBT.exists():
        import venv

        from dev import DBT_PACKAGES

        venv.create(DBT.parent.parent, with_pip=True)
        subprocess.run(
            [str(DBT.parent / "python"), "-m", "pip", "install", "--quiet", *DBT_PACKAGES], check=True
        )
    return DBT


def project(root: Path, catalog: Path) -> Path:
    (root / "models").mkdir(parents=True)
    (root / "dbt_project.yml").write_text(
        "name: news_analytics\nversion: '1.0'\nconfig-version: 2\nprofile: news_analytics\n"
        "model-paths: ['models']\n"
    )
    (root / "profiles.yml").write_text(
        yaml.safe_dump(
            {
                "news_analytics": {
                    "target": "dev",
                    "outputs": {
                        "dev": {
                            "type": "duckdb",
                            "path": str(root / "analytics.duckdb"),
                            "attach": [{"path": str(catalog), "alias": "news", "read_only": True}],
                        }
                    },
                }
            }
        )
    )
    (root / "models" / "events_per_year.sql").write_text(
        "select year(event_date) as year, count(*) as events from {{ source('news', 'events') }} group by 1\n"
    )
    return root


@pytest.mark.flow
def test_dbt_build_runs_the_generated_tests_on_a_real_catalog(sample_build, tmp_path):
    root = project(tmp_path / "dbt", Path(sample_build["catalog"]))
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "dbt-sources", "--to", str(root / "models" / "sources.yml")],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    declared = int(done.stdout.split(", ")[1].split()[0])
    sources = yaml.safe_load((root / "models" / "sources.yml").read_text())
    tables = {t["name"]: t for t in sources["sources"][0]["tables"]}
    assert {"events", "sources", "files", "tags", "daily_counts"} <= set(tables)
    assert all(t["description"] for t in tables.values())
    env = {**os.environ, "DBT_PROFILES_DIR": str(root), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    build = subprocess.run(
        [str(dbt()), "build", "--project-dir", str(root)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stdout[-3000:]
    summary = next(line for line in build.stdout.splitlines() if "Done. PASS=" in line)
    passed = int(summary.split("PASS=")[1].split()[0])
    assert passed == declared + 1  # every generated test, and the model
