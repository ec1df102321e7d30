"""`python -m pipeline watch`, the real command: after any sequence of watched changes the
tables equal a full build; it holds the lock, shows in `status`, stops on SIGTERM, and a
SIGKILL at any moment of a batch loses nothing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pipeline.core.config import OutputLayout
from pipeline.core.faults import WATCH_CRASH_POINTS
from pipeline.core.tables import PUBLISHED
from pipeline.publish import runs
from pipeline.publish.catalog import current_run_id
from pipeline.synthetic.generate import generate
from tests.conftest import REPO, SAMPLE, TODAY, build_tables, event_doc
from tests.e2e_support import api_env, cli, rows

pytestmark = pytest.mark.flow

# Every published table but the run and change logs (which differ between any two runs).
TABLES = tuple(t for t in PUBLISHED if t not in ("runs", "changes"))


class Watching:
    """A `watch` subprocess; its stdout lines collected by a thread."""

    def __init__(self, archive: Path, out: Path, env: dict[str, str] | None = None) -> None:
        self.out = out
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "watch", "--input", str(archive), "--output", str(out)]
            + ["--quiet", "0.3", "--max-delay", "2"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env or api_env(),
        )
        self.errors: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        # stderr drained too: a watcher blocked on a full pipe would look like one that hangs
        self.err_reader = threading.Thread(
            target=lambda: self.errors.extend(self.proc.stderr or []), daemon=True
        )
        self.err_reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def batches(self) -> list[str]:
        return [line for line in self.lines if line.startswith("batch ")]

    def wait_batches(self, count: int, timeout: float = 120.0) -> None:
        end = time.monotonic() + timeout
        while len(self.batches()) < count:
            if self.proc.poll() is not None:
                raise AssertionError(f"watch exited {self.proc.returncode}: {self.lines} {self.stderr()}")
            assert time.monotonic() < end, f"waited for batch {count}: {self.lines}"
            time.sleep(0.05)

    def settle(self, timeout: float = 120.0) -> None:
        """Wait until the changes just made are published: a batch after them, then none
        running and none new for a while."""
        before = len(self.batches())
        self.wait_batches(before + 1, timeout)
        state = self.out / "state" / "watch.json"
        seen, since = len(self.batches()), time.monotonic()
        end = time.monotonic() + timeout
        while time.monotonic() - since < 1.5:
            assert time.monotonic() < end, f"never settled: {self.lines}"
            busy = json.loads(state.read_text(encoding="utf-8")).get("busy")
            if busy or len(self.batches()) != seen:
                seen, since = len(self.batches()), time.monotonic()
            time.sleep(0.05)

    def stderr(self) -> str:
        return "".join(self.errors)

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, float]:
        started = time.monotonic()
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # say where it is stuck: every thread's stack
            self.proc.send_signal(signal.SIGUSR1)
            time.sleep(1.0)
            self.proc.kill()
            self.proc.wait()
            time.sleep(0.5)
            raise AssertionError(
                f"watch did not stop within 30 s of {signal.Signals(sig).name}: {self.lines[-5:]}\n"
                + self.stderr()[-20000:]
            ) from None
        self.reader.join(timeout=5)
        self.err_reader.join(timeout=5)
        return code, time.monotonic() - started


def published(out: Path) -> dict[str, list]:
    catalog = OutputLayout(out).catalog
    return {t: rows(catalog, f"SELECT * FROM {t} ORDER BY ALL") for t in TABLES}


def full_build(archive: Path, work: Path) -> dict[str, list]:
    shutil.rmtree(work, ignore_errors=True)
    con = build_tables(archive, work)
    return {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in TABLES}


def test_watched_changes_equal_a_full_build(prefect_server, tmp_path):
    archive = tmp_path / "archive"
    shutil.copytree(SAMPLE, archive)
    out = tmp_path / "out"
    work = tmp_path / "full"
    watch = Watching(archive, out)
    try:
        watch.wait_batches(1)  # the start-up sweep published the archive
        assert "published" in watch.batches()[0]
        assert published(out) == full_build(archive, work)

        # A run meanwhile is refused at once, naming the watcher; status shows it.
        refused = cli("run", "--input", str(archive), "--output", str(out), env=api_env())
        assert refused.returncode != 0 and "a watcher holds the output" in refused.stderr
        status = cli("status", "--output", str(out), env=api_env())
        assert "watcher: running" in status.stdout and "last batch: batch 1 (sweep)" in status.stdout

        day = archive / "news/2025/01/5"
        day.mkdir(parents=True)
        (day / "late.md").write_text(event_doc(date="2025-01-05", title="A late event"), encoding="utf-8")
        watch.settle()
        assert ("A late event",) in rows(OutputLayout(out).catalog, "SELECT title FROM events")
        assert published(out) == full_build(archive, work)

        # The next batch's catalog, made meanwhile, is pointed at its publication and renamed in.
        (prepared,) = out.glob(".news.duckdb.*.next.tmp")
        inode = prepared.stat().st_ino
        (day / "later.md").write_text(event_doc(date="2025-01-05", title="A later event"), encoding="utf-8")
        watch.settle()
        assert OutputLayout(out).catalog.stat().st_ino == inode
        assert ("A later event",) in rows(OutputLayout(out).catalog, "SELECT title FROM events")

        edited = next(archive.glob("news/2014/03/18/*.md"))
        edited.write_text(edited.read_text(encoding="utf-8-sig").replace("Crimea", "Krym"), encoding="utf-8")
        next(archive.glob("news/2020/03/11/*.md")).unlink()
        moved = next(archive.glob("news/2016/**/*.md"))
        moved.rename(day / moved.name)
        watch.settle()
        assert published(out) == full_build(archive, work)

        (archive / "news/2021").rename(archive / "news/2021-renamed")
        target = next(archive.glob("news/2019/**/*.md"))  # an editor's save: a temporary, renamed over
        temp = target.with_name(f".{target.name}.swp")
        temp.write_text(
            target.read_text(encoding="utf-8-sig").replace("# ", "# Saved: ", 1), encoding="utf-8"
        )
        temp.replace(target)
        watch.settle()
        assert published(out) == full_build(archive, work)

        slow = day / "slow.md"  # written in pieces, with pauses longer than the quiet period
        text = event_doc(date="2025-01-05", title="Written slowly", summary="Line one. " * 50)
        with slow.open("w", encoding="utf-8") as handle:
            for start in range(0, len(text), len(text) // 3 + 1):
                handle.write(text[start : start + len(text) // 3 + 1])
                handle.flush()
                time.sleep(0.8)
        generate(120, archive / "burst", seed=5, malformed=0.05, today=TODAY)  # a burst
        watch.settle()
        assert published(out) == full_build(archive, work)
        assert all("failed" not in line for line in watch.batches()), watch.batches()

        watch.proc.send_signal(signal.SIGUSR1)  # every thread's stack on stderr; it watches on
        time.sleep(0.5)
        code, seconds = watch.stop(signal.SIGTERM)
        assert code == 0 and seconds < 10
        assert watch.lines[-1] == "watch stopped (SIGTERM); the publication is intact"
        assert "most recent call first" in watch.stderr()
        assert "already exists" not in watch.stderr()  # watchdog's re-watch warnings, megabytes at scale
        assert sorted(p.name for p in out.glob(".*.tmp*")) == []  # the next catalog too
    finally:
        if watch.proc.poll() is None:
            watch.proc.kill()
    assert "lock: free" in cli("status", "--output", str(out), env=api_env()).stdout
    # the last batch's run report (written after the batch) was written before the watcher stopped
    layout = OutputLayout(out)
    last = layout.report / f"{current_run_id(layout)}.html"
    assert last.exists() and (layout.report / "index.html").read_bytes() == last.read_bytes()


def test_a_term_signal_mid_batch_stops_within_ten_seconds_and_keeps_the_publication(prefect_server, tmp_path):
    archive = tmp_path / "archive"
    shutil.copytree(SAMPLE, archive)
    out = tmp_path / "out"
    assert cli("run", "--input", str(archive), "--output", str(out), env=api_env()).returncode == 0
    before = published(out)
    flag = tmp_path / "stalled"
    watch = Watching(
        archive, out, api_env(PIPELINE_STALL_AT="normalize:events", PIPELINE_STALL_FLAG=str(flag))
    )
    try:
        watch.wait_batches(1)  # the start-up sweep: nothing changed, nothing normalized
        (archive / "news/2025/01/5").mkdir(parents=True)
        (archive / "news/2025/01/5/late.md").write_text(event_doc(date="2025-01-05"), encoding="utf-8")
        end = time.monotonic() + 60
        while not flag.exists():
            assert time.monotonic() < end and watch.proc.poll() is None, watch.lines
            time.sleep(0.05)
        code, seconds = watch.stop(signal.SIGTERM)
    finally:
        if watch.proc.poll() is None:
            watch.proc.kill()
    assert code == 0 and seconds < 10, (code, seconds, watch.lines)
    assert published(out) == before
    assert "lock: free" in cli("status", "--output", str(out), env=api_env()).stdout
    assert runs.read_log(OutputLayout(out).run_log).to_pylist()[-1]["outcome"] == "interrupted"


def test_a_term_signal_stops_the_watcher_within_ten_seconds_when_its_exit_hangs(prefect_server, tmp_path):
    """A watcher stopped after ~130 batches hung in Prefect's exit hook (it waits for its
    services without a deadline); the same hang, made on purpose, is cut short."""
    archive = tmp_path / "archive"
    shutil.copytree(SAMPLE, archive)
    out = tmp_path / "out"
    flag = tmp_path / "exit-stalled"
    watch = Watching(archive, out, api_env(PIPELINE_STALL_AT="exit", PIPELINE_STALL_FLAG=str(flag)))
    try:
        watch.wait_batches(1)
        code, seconds = watch.stop(signal.SIGTERM)
    finally:
        if watch.proc.poll() is None:
            watch.proc.kill()
    assert flag.exists()  # the exit did stall
    assert code == 0 and seconds < 10, (code, seconds, watch.lines)
    assert watch.lines[-1] == "watch stopped (SIGTERM); the publication is intact"
    assert "lock: free" in cli("status", "--output", str(out), env=api_env()).stdout


@pytest.mark.parametrize("point", [*WATCH_CRASH_POINTS, "normalize:events", "publish:catalog-swapped"])
def test_a_kill_at_any_moment_of_a_batch_loses_nothing(prefect_server, tmp_path, point):
    archive = tmp_path / "archive"
    shutil.copytree(SAMPLE, archive)
    out = tmp_path / "out"
    assert cli("run", "--input", str(archive), "--output", str(out), env=api_env()).returncode == 0
    once = tmp_path / "crashed-once"
    watch = Watching(archive, out, api_env(PIPELINE_CRASH_AT=point, PIPELINE_CRASH_ONCE=str(once)))
    try:
        watch.wait_batches(1)  # the start-up sweep publishes nothing: no crash point reached
        day = archive / "news/2025/01/5"
        day.mkdir(parents=True)
        (day / "first.md").write_text(event_doc(date="2025-01-05", title="Before the kill"), encoding="utf-8")
        next(archive.glob("news/2020/03/11/*.md")).unlink()
        assert watch.proc.wait(timeout=120) == -signal.SIGKILL
    finally:
        if watch.proc.poll() is None:
            watch.proc.kill()
    assert once.exists()
    # While no watcher runs, more changes; the next start's sweep catches up on all of them.
    (day / "second.md").write_text(event_doc(date="2025-01-05", title="While down"), encoding="utf-8")
    again = Watching(archive, out)
    try:
        again.wait_batches(1)
        assert published(out) == full_build(archive, tmp_path / "full")
        (day / "third.md").write_text(event_doc(date="2025-01-05", title="After"), encoding="utf-8")
        again.settle()
        assert published(out) == full_build(archive, tmp_path / "full")
        assert again.stop()[0] == 0
    finally:
        if again.proc.poll() is None:
            again.proc.kill()
    assert os.path.exists(OutputLayout(out).catalog)
