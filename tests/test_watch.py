"""The watcher's batching, on a real watchdog observer, with the flow replaced by a recorder
(tests/e2e/test_watch_command.py runs the real command)."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pipeline.core.config import OutputLayout
from pipeline.watch import Watcher


class Recorder:
    """Stands in for the flow: records each batch's paths (None: a sweep)."""

    def __init__(self, fail: int = 0) -> None:
        self.calls: list[tuple[float, list[str] | None]] = []
        self.fail = fail  # the first `fail` batches after the start-up sweep raise

    def __call__(self, changed: list[str] | None) -> dict[str, Any]:
        self.calls.append((time.monotonic(), changed))
        if changed is not None and self.fail:
            self.fail -= 1
            raise RuntimeError("validation failed: 1 critical expectation")
        return {"files_read": len(changed or []), "events_added": 0, "events_changed": 0, "events_removed": 0}

    def wait(self, count: int, timeout: float = 10.0) -> None:
        end = time.monotonic() + timeout
        while len(self.calls) < count:
            assert time.monotonic() < end, f"{len(self.calls)} batches, expected {count}"
            time.sleep(0.02)


@pytest.fixture
def watching(tmp_path: Path):
    started: list[tuple[Watcher, threading.Thread]] = []

    def start(recorder: Recorder, **options: float) -> tuple[Path, Watcher, list[str]]:
        root = tmp_path / "input"
        root.mkdir(exist_ok=True)
        layout = OutputLayout(tmp_path / "out")
        layout.state.mkdir(parents=True, exist_ok=True)
        said: list[str] = []
        watcher = Watcher(root, layout, recorder, say=said.append, **options)
        thread = threading.Thread(target=watcher.loop, daemon=True)
        thread.start()
        started.append((watcher, thread))
        recorder.wait(1)  # the start-up sweep
        time.sleep(0.2)  # the observer is scheduled before the sweep; let inotify settle
        return root, watcher, said

    yield start
    for watcher, thread in started:
        watcher.stopping.set()
        thread.join(timeout=10)
        assert not thread.is_alive()


def test_a_quiet_period_closes_a_batch_of_md_paths(watching):
    recorder = Recorder()
    root, watcher, said = watching(recorder, quiet=0.3, max_delay=5.0)
    (root / "2024").mkdir()
    (root / "2024" / "a.md").write_text("x")
    (root / "notes.txt").write_text("not an event")
    recorder.wait(2)
    changed = recorder.calls[1][1]
    assert changed is not None and "2024" in changed and "notes.txt" not in changed
    state = watcher.layout.state / "watch.json"
    end = time.monotonic() + 5  # the batch is recorded when it starts; its line comes after
    while json.loads(state.read_text())["batches"] < 2:
        assert time.monotonic() < end
        time.sleep(0.02)
    assert (
        said[-1].startswith("batch 2 (") and json.loads(state.read_text())["last_batch"]["line"] == said[-1]
    )


def test_a_closed_file_goes_at_once_and_an_open_one_waits_for_its_close(watching):
    """A file closed after writing is complete: its batch need not wait the quiet period. One
    still open may get more: it waits for its close (or the quiet period)."""
    recorder = Recorder()
    root, _, _ = watching(recorder, quiet=2.0, max_delay=10.0)
    written = time.monotonic()
    (root / "a.md").write_text("x")
    recorder.wait(2)
    assert recorder.calls[1][1] == ["a.md"] and recorder.calls[1][0] - written < 1.5

    with (root / "b.md").open("w") as handle:
        handle.write("first half")
        handle.flush()
        time.sleep(0.8)  # longer than the settling time, shorter than the quiet period
        assert len(recorder.calls) == 2, "a batch ran while its file was being written"
        handle.write(", second half")
    closed = time.monotonic()
    recorder.wait(3)
    assert recorder.calls[2][1] == ["b.md"] and recorder.calls[2][0] - closed < 1.5


def test_a_steady_stream_is_cut_at_the_maximum_delay(watching):
    recorder = Recorder()
    root, _, _ = watching(recorder, quiet=0.5, max_delay=1.0)
    first = time.monotonic()
    with (root / "stream.md").open("w") as handle:
        for _ in range(30):  # a write every 0.1 s for 3 s, the file open: never quiet
            handle.write("x")
            handle.flush()
            time.sleep(0.1)
    assert len(recorder.calls) >= 3  # the sweep and at least two cut batches
    assert recorder.calls[1][0] - first < 2.0


def test_a_failed_batch_goes_again_with_the_next_one(watching):
    recorder = Recorder(fail=1)
    root, _, said = watching(recorder, quiet=0.2, max_delay=2.0)
    (root / "bad.md").write_text("x")
    recorder.wait(2)
    time.sleep(1.0)
    assert len(recorder.calls) == 2, "a failed batch is not retried on its own"
    assert "failed: validation failed" in said[-1]
    (root / "next.md").write_text("x")
    recorder.wait(3)
    assert recorder.calls[2][1] == ["bad.md", "next.md"]


def test_lost_events_and_the_period_bring_a_sweep(watching):
    recorder = Recorder()
    watching(recorder, quiet=0.2, max_delay=2.0, sweep_every=3600)
    logging.getLogger("watchdog.observers.inotify_c").warning(
        "Inotify queue overflowed; filesystem events were lost"
    )
    recorder.wait(2)
    assert recorder.calls[1][1] is None

    periodic = Recorder()
    watching(periodic, quiet=0.2, max_delay=2.0, sweep_every=0.5)
    periodic.wait(3, timeout=5)
    assert [changed for _, changed in periodic.calls[:3]] == [None, None, None]


def test_reading_the_archive_does_not_reach_the_watcher(tmp_path, monkeypatch):
    """A sweep opens every folder and many files; those reads are not changes and must not
    even be delivered: on an archive of 8,000 folders, opens and closes overflowed inotify's
    queue (16,384 events) while a batch ran, the overflow asked for a sweep, and the sweep's
    reads overflowed it again, for ever (seen in benchmarks/watch.py at 110k events)."""
    import os
    import queue

    from pipeline import watch

    delivered: list[str] = []
    real = watch._Collector.dispatch

    def counting(self, event):
        delivered.append(event.event_type)
        real(self, event)

    monkeypatch.setattr(watch._Collector, "dispatch", counting)
    root = tmp_path / "input"
    for d in range(20):
        (root / f"d{d}").mkdir(parents=True)
        for f in range(20):
            (root / f"d{d}" / f"{f}.md").write_text("x")
    found: queue.Queue[tuple[str, str]] = queue.Queue()
    observer = watch.start_observer(root, found, print)
    try:
        time.sleep(0.3)
        for folder, _, names in os.walk(root):
            for name in names:
                (Path(folder) / name).read_bytes()
        time.sleep(0.5)
        assert delivered == [] and found.empty(), sorted(set(delivered))
        (root / "d0" / "new.md").write_text("y")  # a change still is
        time.sleep(0.5)
        assert "created" in delivered and found.get_nowait() == ("writing", "d0/new.md")
        assert ("path", "d0/new.md") in [found.get_nowait() for _ in range(found.qsize())]  # closed
    finally:
        observer.stop()
        observer.join(timeout=5)


def test_the_loop_waits_exactly_until_a_batch_falls_due():
    """The loop sleeps until the next event or the moment its batch is due (settled, quiet or
    at its maximum delay), never longer than POLL: a batch does not wait past its time."""
    from pipeline.watch import POLL, SETTLE, Batch

    batch = Batch()
    assert batch.wait(100.0, quiet=0.3, max_delay=2.0) == POLL  # nothing to run: look again soon
    batch.add("a.md", 100.0)  # complete (closed): due once settled
    assert batch.wait(100.01, quiet=0.3, max_delay=2.0) == pytest.approx(SETTLE - 0.01)
    assert batch.wait(100.0 + SETTLE, quiet=0.3, max_delay=2.0) == 0.0
    assert batch.due(100.0 + SETTLE + 1e-9, quiet=0.3, max_delay=2.0)
    batch.add("b.md", 100.02, writing=True)  # still open: the quiet period, capped by POLL
    assert batch.wait(100.25, quiet=0.3, max_delay=2.0) == pytest.approx(0.07)
    assert not batch.due(100.25, quiet=0.3, max_delay=2.0)
    assert batch.wait(100.03, quiet=0.3, max_delay=2.0) == POLL
    for t in (100.5, 101.0, 101.5, 101.95):  # a file written on and on: the maximum delay
        batch.add("b.md", t, writing=True)
    assert batch.wait(101.96, quiet=0.3, max_delay=2.0) == pytest.approx(0.04)
    assert batch.due(102.0, quiet=0.3, max_delay=2.0)
