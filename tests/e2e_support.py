"""Helpers for tests that drive `python -m pipeline` as a user would, in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def api_env(**extra: str) -> dict[str, str]:
    """The environment for a CLI subprocess reporting to the session's Prefect test server
    (no temporary server per command: seconds saved per test)."""
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, **extra}
    url = PREFECT_API_URL.value()
    if url:
        env["PREFECT_API_URL"] = url
    return env


def own_server_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment for a CLI subprocess that starts its own temporary Prefect server, with
    its own PREFECT_HOME (so its processes can be found by it)."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    home.mkdir(parents=True, exist_ok=True)
    env.update(PREFECT_HOME=str(home), **extra)
    return env


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def processes_with(marker: str) -> list[int]:
    """Live processes whose environment contains `marker` (Linux /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                environ = handle.read()
            with open(f"/proc/{entry}/stat", "rb") as handle:
                state = handle.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in environ and state != b"Z":
            found.append(int(entry))
    return found


def rows(catalog: Path, sql: str) -> list[tuple]:
    """The rows of `sql` on a catalog opened read-only (closed again)."""
    import duckdb

    con = duckdb.connect(str(catalog), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()
