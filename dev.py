#!/usr/bin/env python3
"""Set-up and entry points that need nothing but Python 3.11.

    python3 dev.py run           # make .venv if needed, then run the pipeline on examples/news into output/
    python3 dev.py test          # make .venv if needed, then run the whole test suite
    python3 dev.py test --fast   # the unit tests only (no end-to-end, no Prefect flow): under a minute
    python3 dev.py lint          # ruff check, ruff format --check and mypy, all clean

The virtual environment is (re)installed only when pyproject.toml or
constraints.txt changed since the last install; constraints.txt pins every
dependency to the versions the suite was run with.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PYTHON = VENV / "bin" / "python"
STAMP = VENV / ".installed"
COMPAT_DUCKDB_VERSION = "1.5.6"
COMPAT_DUCKDB = VENV / "compat" / "duckdb-1.5"
# dbt, in its own environment (its dependencies are not ours): the dbt-sources test runs
# `dbt build` with it against a real catalog.
DBT_VENV = VENV / "compat" / "dbt"
DBT_PACKAGES = ["dbt-core==1.10.23", "dbt-duckdb==1.10.1"]


def ensure_env() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py runs under whatever python3 the user has
        sys.exit(f"Python 3.11 or newer is required, this is {sys.version.split()[0]}")
    if not PYTHON.exists():
        print("creating .venv ...", flush=True)
        venv.create(VENV, with_pip=True)
    want = hashlib.sha256(
        (ROOT / "pyproject.toml").read_bytes() + (ROOT / "constraints.txt").read_bytes()
    ).hexdigest()
    if STAMP.exists() and STAMP.read_text() == want:
        return
    print("installing dependencies into .venv (first run only) ...", flush=True)
    pip = [str(PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-c", str(ROOT / "constraints.txt"), "-e", f"{ROOT}[test]"], check=True)
    # The catalog must open in DuckDB 1.x readers: the tests read it with this one.
    if not (COMPAT_DUCKDB / "duckdb").is_dir():
        subprocess.run([*pip, "--target", str(COMPAT_DUCKDB), f"duckdb=={COMPAT_DUCKDB_VERSION}"], check=True)
    if not (DBT_VENV / "bin" / "dbt").exists():
        venv.create(DBT_VENV, with_pip=True)
        dbt_pip = [
            str(DBT_VENV / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ]
        subprocess.run([*dbt_pip, *DBT_PACKAGES], check=True)
    STAMP.write_text(want)


def ensure_chromium() -> None:
    """The report test drives Debian's headless Chromium; install it when missing and we may."""
    if shutil.which("chromium"):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        print(
            "note: chromium is missing and cannot be installed here (needs root and apt-get); "
            "tests/test_report.py will fail",
            flush=True,
        )
        return
    print("installing Debian's chromium for the report test (first run only) ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(
        ["apt-get", "install", "-y", "-q", "chromium"], env=env, stdout=subprocess.DEVNULL
    ).returncode:
        subprocess.run(["apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL, check=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "chromium"], env=env, stdout=subprocess.DEVNULL, check=True
        )


def main() -> int:
    command, args = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("", [])
    if command not in ("run", "test", "lint"):
        print(__doc__)
        return 2
    ensure_env()
    os.chdir(ROOT)
    if command == "run":
        return subprocess.call([str(PYTHON), "-m", "pipeline", "run", *args])
    if command == "lint":
        return lint()
    if "--fast" in args:
        args = [a for a in args if a != "--fast"]
        return subprocess.call(
            [str(PYTHON), "-m", "pytest", "-m", "not e2e and not flow and not slow", *args]
        )
    ensure_chromium()
    return subprocess.call([str(PYTHON), "-m", "pytest", *args])


LINTED = ["pipeline", "flows", "tests", "benchmarks", "expectations", "dev.py"]


def lint() -> int:
    """Every check, each reported; non-zero if any fails."""
    checks = [
        [str(PYTHON), "-m", "ruff", "check", *LINTED],
        [str(PYTHON), "-m", "ruff", "format", "--check", *LINTED],
        [str(PYTHON), "-m", "mypy"],
    ]
    failed = 0
    for check in checks:
        print("$", " ".join(check[2:]), flush=True)
        failed |= subprocess.call(check)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
