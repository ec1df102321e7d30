"""Installable: a wheel built from the checkout carries everything the runtime reads (SQL
models, expectation suites, Data Docs assets, the generator's words), and the installed copy
runs from any folder."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import REPO, SAMPLE
from tests.e2e_support import api_env


def test_the_installed_package_runs_from_any_folder(prefect_server, tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            str(wheels),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("news_pipeline-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "pipeline/quality/expectations/events.json",
        "pipeline/quality/expectations/events.sql",
        "pipeline/transform/sql/events.sql",
        "pipeline/transform/sql/views/daily_counts.sql",
        "pipeline/quality/static/datadocs/bootstrap-table.min.js",
        "pipeline/synthetic/words.json",
        "flows/news_etl.py",
    ):
        assert needed in names, needed
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = api_env(PYTHONPATH=str(target))
    where = subprocess.run(
        [sys.executable, "-c", "import pipeline, flows; print(pipeline.__file__); print(flows.__file__)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert all(Path(line).is_relative_to(target) for line in where.stdout.split()), where.stdout
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", "--input", str(SAMPLE), "--output", "out", "--json"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert (elsewhere / "out" / "news.duckdb").is_file()
    assert '"validation_passed": true' in done.stdout
    assert os.path.isdir(elsewhere / "out" / "validation" / "docs" / "static" / "vendor")
