"""`python -m pipeline watch`: keep the publication current while files change under the input.

A long-running process that holds the output's lock. It starts with a sweep (a normal run:
the whole archive is listed, catching up on what changed while it was down), then a
filesystem watcher (watchdog: inotify on Linux, the native APIs elsewhere; polling when the
system has no watches left) collects the paths of created, modified, removed and moved
`*.md` files and folders. A batch closes once its files are complete (closed after writing,
moved or removed) and nothing new came for 0.02 s, else after a quiet period (a file still
open, or no close events: polling, macOS) or a maximum delay, and the
same flow runs on those paths alone (`changed_paths`: no walk over the archive), in this
process: the imports, the Prefect client and the temporary server are set up once. A full
sweep also runs periodically and after any watcher error, so nothing is missed. SIGINT or
SIGTERM stop it between batches, or abandon the batch in progress (the run is recorded as
interrupted, the previous publication stays); a SIGKILL loses nothing, since the next start
sweeps.

One line per batch goes to stdout; `state/watch.json` says since when the watcher runs and
how its last batch went (`python -m pipeline status` shows it).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import queue
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from watchdog import events as fs_events
from watchdog.events import FileSystemEvent, FileSystemEventHandler

from pipeline.core.config import OutputLayout
from pipeline.core.databases import make_spares
from pipeline.core.faults import crash_point
from pipeline.core.storage import save_json
from pipeline.extract.walk import escape
from pipeline.publish.catalog import current_run_id, drop_prepared, prepare_catalog
from pipeline.publish.report import reports_written

DEFAULT_QUIET = 0.3  # seconds without a new event before a batch runs
# Seconds without a new event before a batch runs when every path in it is complete: its
# file closed after writing, moved or removed. A burst's events come closer together (a
# script's writes, an unpacked archive, a folder moved in: well under a millisecond apart),
# and what comes while a batch runs goes with the next one. It is latency added to every
# change: 0.05 s until session 31.
SETTLE = 0.02
DEFAULT_MAX_DELAY = 2.0  # seconds after a batch's first event at the latest
POLL = 0.1  # the loop's longest wait for an event: how soon it sees a stop, a dead watcher
DEFAULT_SWEEP = 3600.0  # a full sweep this often, whatever the watcher saw


@dataclass
class Batch:
    """Paths reported since the last run, relative to the input root."""

    paths: set[str] = field(default_factory=set)
    first: float = 0.0
    last: float = 0.0
    sweep: bool = False  # the watcher failed or overflowed: list everything
    # Files created or written and not closed since: more may follow. The others are
    # complete (closed after writing, moved, removed).
    writing: set[str] = field(default_factory=set)

    def add(self, rel: str, now: float, writing: bool = False) -> None:
        if not self.paths and not self.sweep:
            self.first = now
        self.paths.add(rel)
        if writing:
            self.writing.add(rel)
        else:
            self.writing.discard(rel)
        self.last = now

    def wait(self, now: float, quiet: float, max_delay: float, settle: float = SETTLE) -> float:
        """Seconds from `now` until the batch is due if nothing new comes (0: due; `POLL` at
        most, so that the loop still looks at the watcher and the sweep clock)."""
        if not self.paths and not self.sweep:
            return POLL
        idle = self.last + (quiet if self.writing else min(settle, quiet))
        return max(0.0, min(POLL, idle - now, self.first + max_delay - now))

    def due(self, now: float, quiet: float, max_delay: float, settle: float = SETTLE) -> bool:
        """Quiet for `settle` with every file complete, else for `quiet` (a file still open, or
        a system that reports no closes: polling, macOS), or `max_delay` since the first event."""
        if not self.paths and not self.sweep:
            return False
        idle = now - self.last
        complete = not self.writing and idle >= min(settle, quiet)
        return complete or idle >= quiet or now - self.first >= max_delay


# Events after which a file may be written further: its batch waits for its close (or the
# quiet period). inotify reports the close of a file written (IN_CLOSE_WRITE).
_OPEN_KINDS = ("created", "modified")


class _Collector(FileSystemEventHandler):
    """watchdog's event handler: paths into a queue (watchdog's thread), nothing else. A path
    comes as ("writing", rel) while its file may still be written, else as ("path", rel)."""

    def __init__(self, root: Path, events: queue.Queue[tuple[str, str]]) -> None:
        super().__init__()
        self.root = os.fsencode(root)
        self.events = events

    def dispatch(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        if kind in ("opened", "closed_no_write"):
            return
        if kind == "modified" and event.is_directory:
            return  # a folder's entries changed: its files' own events say which
        for path in (event.src_path, event.dest_path):
            if not path:
                continue
            raw = os.fsencode(path)
            if not raw.startswith(self.root + b"/"):
                continue
            rel = raw[len(self.root) + 1 :]
            if event.is_directory or rel.endswith(b".md"):
                open_ = kind in _OPEN_KINDS and not event.is_directory
                self.events.put(("writing" if open_ else "path", escape(os.fsdecode(rel))[0]))


_WATCHDOG_LOGS = ("watchdog.observers.inotify", "watchdog.observers.inotify_c")


class _LostEvents(logging.Handler):
    """watchdog reports an inotify queue overflow (events were lost) only in its log: turn
    that into a sweep request."""

    def __init__(self, events: queue.Queue[tuple[str, str]]) -> None:
        super().__init__(logging.WARNING)
        self.events = events

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "overflow" in message or "Unable to rebuild" in message:
            self.events.put(("sweep", ""))


# The events that change the archive. Not opens, reads and closes without writing: a sweep
# reads every folder and many files, and on a real archive (8,000 day folders) those events
# overflowed inotify's queue (16,384), which asks for a sweep, which overflowed it again.
WATCHED = (
    fs_events.FileCreatedEvent,
    fs_events.DirCreatedEvent,
    fs_events.FileModifiedEvent,
    fs_events.FileClosedEvent,
    fs_events.FileDeletedEvent,
    fs_events.DirDeletedEvent,
    fs_events.FileMovedEvent,
    fs_events.DirMovedEvent,
)


def start_observer(root: Path, events: queue.Queue[tuple[str, str]], say: Callable[[str], None]) -> Any:
    """A watchdog observer over `root`, recursive; polling if the system refuses more watches."""
    from watchdog.observers import Observer
    from watchdog.observers.polling import PollingObserver

    # watchdog warns when a folder it watches is added again (renamed, or re-created), and the
    # warning holds the repr of every folder it watches: at the portal's ~8,000 day folders,
    # megabytes of stderr per renamed folder. It replaces the watch, as it says: nothing to tell.
    warnings.filterwarnings("ignore", message="Callback with id .* already exists", category=RuntimeWarning)
    handler = _Collector(root, events)
    observer = Observer()
    observer.schedule(handler, str(root), recursive=True, event_filter=list(WATCHED))
    try:
        observer.start()
        return observer
    except OSError as exc:
        say(
            f"warning: the system refuses more file watches ({exc.strerror or exc}; raise "
            "fs.inotify.max_user_watches); polling the input instead"
        )
    observer = PollingObserver(timeout=1.0)
    observer.schedule(handler, str(root), recursive=True, event_filter=list(WATCHED))
    observer.start()
    return observer


class Watcher:
    """The watch loop; `run_batch(changed)` runs the flow (`changed` None: a full sweep)."""

    def __init__(
        self,
        root: Path,
        layout: OutputLayout,
        run_batch: Callable[[list[str] | None], dict[str, Any]],
        say: Callable[[str], None] = print,
        quiet: float = DEFAULT_QUIET,
        max_delay: float = DEFAULT_MAX_DELAY,
        sweep_every: float = DEFAULT_SWEEP,
    ) -> None:
        self.root, self.layout, self.run_batch, self.say = root, layout, run_batch, say
        self.quiet, self.max_delay, self.sweep_every = quiet, max_delay, sweep_every
        self.events: queue.Queue[tuple[str, str]] = queue.Queue()
        self.since = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.batches = 0
        self.last: dict[str, Any] | None = None
        self.stopping = threading.Event()
        self.ahead: threading.Thread | None = None

    def status(self, busy: str | None = None) -> None:
        """`state/watch.json`: since when, batches so far, the last one, the one running."""
        save_json(
            self.layout.state / "watch.json",
            {
                "pid": os.getpid(),
                "since": self.since,
                "batches": self.batches,
                "last_batch": self.last,
                "busy": busy,
            },
        )

    def one(self, changed: list[str] | None) -> bool:
        """Run one batch and report it; False when it failed."""
        started = time.perf_counter()
        kind = "sweep" if changed is None else f"{len(changed)} paths"
        self.status(busy=kind)
        try:
            result = self.run_batch(changed)
        except Exception as exc:  # a failed batch is reported; the next sweep tries again
            line = f"batch {self.batches + 1} ({kind}): failed: {' '.join(str(exc).split())[:300]}"
            self.say(line)
            self.batches += 1
            self.last = {"line": line, "outcome": "failed"}
            self.status()
            return False
        self.batches += 1
        seconds = time.perf_counter() - started
        outcome = result.get("outcome", "published")
        where = result.get("publication", "")
        line = (
            f"batch {self.batches} ({kind}): {result['files_read']} files read, events added / changed / "
            f"removed {result['events_added']} / {result['events_changed']} / {result['events_removed']}, "
            f"{seconds:.2f} s, {outcome} {Path(where).name if where else ''}".rstrip()
        )
        self.say(line)
        for warning in reports_written(timeout=0):  # an earlier batch's, written since
            self.say(f"warning: {warning}")
        self.last = {
            "line": line,
            "outcome": outcome,
            "seconds": round(seconds, 3),
            "run_id": result.get("run_id"),
        }
        self.status()
        self.ahead = threading.Thread(target=self._ahead, name="ahead-of-next-batch", daemon=True)
        self.ahead.start()
        return True

    def _ahead(self) -> None:
        """Ready what the next batch needs while this one's tail runs: its in-memory databases
        (core/databases.py) and its catalog (`prepare_catalog`)."""
        make_spares()
        current = current_run_id(self.layout)
        if current is not None:
            prepare_catalog(self.layout.catalog, self.layout.publication(current))

    def loop(self) -> None:
        self.status()
        lost = _LostEvents(self.events)
        for name in _WATCHDOG_LOGS:
            logging.getLogger(name).addHandler(lost)
        # Watch first, then sweep: what changes during the sweep is queued, not missed.
        observer = start_observer(self.root, self.events, self.say)
        try:
            carried = not self.one(None)  # catch up on what changed while no watcher ran
        except BaseException:
            self._stop(observer, lost)
            raise
        last_sweep = time.monotonic()
        batch = Batch()
        # A failed batch published nothing and its paths are not in the manifest: they go
        # with the next batch (not retried on their own: the same input would fail again).
        carry: set[str] = set()
        carry_sweep = carried
        try:
            while not self.stopping.is_set():
                try:
                    # Woken by the next event or when the batch falls due: polling every 20 ms
                    # made a batch wait 0-20 ms past its settle time.
                    kind, rel = self.events.get(
                        timeout=max(0.001, batch.wait(time.monotonic(), self.quiet, self.max_delay))
                    )
                except queue.Empty:
                    pass
                else:
                    if kind == "sweep":  # events were lost (an inotify overflow)
                        batch.sweep = True
                    else:
                        batch.add(rel, time.monotonic(), writing=kind == "writing")
                now = time.monotonic()
                if not observer.is_alive():  # the watcher died (an error): watch again and sweep
                    self.say("warning: the file watcher stopped; sweeping the input and watching again")
                    observer = start_observer(self.root, self.events, self.say)
                    batch.sweep = True
                if now - last_sweep >= self.sweep_every:
                    batch.sweep = True
                if batch.due(now, self.quiet, self.max_delay) or (batch.sweep and not batch.paths):
                    paths, sweep = sorted(batch.paths | carry), batch.sweep or carry_sweep
                    batch = Batch()
                    crash_point("watch:batch-collected")
                    if sweep:
                        last_sweep = time.monotonic()
                    ok = self.one(None if sweep else paths)
                    carry, carry_sweep = (set(), False) if ok else (set(paths), sweep)
                    crash_point("watch:batch-done")
        finally:
            self._stop(observer, lost)

    def _stop(self, observer: Any, lost: logging.Handler) -> None:
        observer.stop()
        observer.join(timeout=5)
        for name in _WATCHDOG_LOGS:
            logging.getLogger(name).removeHandler(lost)
        if self.ahead is not None:
            self.ahead.join(timeout=5)
        drop_prepared(self.layout.catalog)  # before the output's lock goes
