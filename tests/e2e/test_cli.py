"""`python -m pipeline` as a user runs it: exit codes and one-line reasons."""

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def run_cli(*args: str, cwd: Path = REPO, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_missing_input_fails_with_one_line(tmp_path):
    out = run_cli("run", "--input", str(tmp_path / "nope"), "--output", str(tmp_path / "o"))
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [f"error: input folder not found: {tmp_path / 'nope'}"]
    assert not (tmp_path / "o").exists()


def test_locked_output_exits_at_once(tmp_path):
    import fcntl
    import os

    from pipeline.core.lock import claim_output

    claim_output(tmp_path / "o")  # an output folder of ours, held by another run
    fd = os.open(tmp_path / "o" / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        out = run_cli("run", "--input", str(REPO / "examples" / "news"), "--output", str(tmp_path / "o"))
    finally:
        os.close(fd)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[0].startswith("error: a run is in progress on")


def test_generate_then_run_from_another_directory(tmp_path):
    gen = run_cli(
        "generate", "--events", "60", "--output", str(tmp_path / "arch"), "--seed", "5", cwd=tmp_path
    )
    assert gen.returncode == 0, gen.stderr
    out = run_cli("run", "--input", "arch", "--output", "out", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "events published" in out.stdout
    import duckdb

    con = duckdb.connect(str(tmp_path / "out" / "news.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM events").fetchone() == (60,)


def test_wait_blocks_until_the_running_one_finishes(tmp_path):
    import fcntl
    import os
    import time

    from pipeline.core.lock import claim_output

    claim_output(tmp_path / "o")
    fd = os.open(tmp_path / "o" / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline",
            "run",
            "--input",
            str(REPO / "examples" / "news"),
            "--output",
            str(tmp_path / "o"),
            "--wait",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # wait until the kernel lists the run as blocked on the lock (/proc/locks: `->`)
        inode = os.stat(tmp_path / "o" / ".lock").st_ino
        deadline = time.monotonic() + 120
        while not any(
            line.split()[1] == "->" and line.split()[-3].endswith(f":{inode}")
            for line in Path("/proc/locks").read_text().splitlines()
        ):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        assert proc.poll() is None  # still waiting for the lock
        assert not (tmp_path / "o" / "news.duckdb").exists()
    finally:
        os.close(fd)  # the "other run" ends
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert (tmp_path / "o" / "news.duckdb").exists()
