"""`status` and `history`: what is published in an output folder, read without the lock.

Every file read here may be missing, half-written by a crash or garbled: each is read on its
own, and what cannot be read is shown as unknown rather than ending in a traceback.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from pipeline.core.config import OutputLayout


class StatusError(Exception):
    """The folder is not an output folder of this pipeline."""


def _ago(moment: dt.datetime | None, now: dt.datetime) -> str:
    if moment is None:
        return "unknown"
    seconds = int((now - moment).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{max(seconds, 0)} s ago"


def _run_row(path: Path, run_id: str) -> dict[str, Any] | None:
    """The row of `run_id` in a runs file, None if the file cannot be read or lacks it."""
    from pipeline.publish.runs import read_log
    from pipeline.transform.incremental import StateError

    try:
        log = read_log(path)
    except StateError:
        return None
    return next((row for row in log.to_pylist() if row["run_id"] == run_id), None)


def status(root: Path) -> dict[str, Any]:
    """Current publication, last run and lock holder of the output folder `root`."""
    from pipeline.core.lock import is_ours
    from pipeline.core.tables import runs_file
    from pipeline.publish.catalog import current_run_id
    from pipeline.publish.runs import read_log
    from pipeline.transform.incremental import StateError

    layout = OutputLayout(root)
    if not is_ours(root):
        raise StatusError(f"{root} is not an output folder of this pipeline (no publication yet?)")
    now = dt.datetime.now(dt.UTC)
    info: dict[str, Any] = {"output": str(root), "catalog": str(layout.catalog)}
    current = current_run_id(layout)
    if current is None:
        info["current"] = None
    else:
        row = _run_row(runs_file(layout.publication(current)), current) or {}
        info["current"] = {
            "run_id": current,
            "published_at": row.get("finished_at"),
            "age": _ago(row.get("finished_at"), now),
            "events": row.get("events"),
            "validation_passed": row.get("validation_passed"),
        }
    try:
        log = read_log(layout.run_log).to_pylist()
        last = max(log, key=lambda r: r["started_at"]) if log else None
    except StateError as exc:
        last, info["run_log_error"] = None, str(exc)
    info["last_run"] = (
        None
        if last is None
        else {
            "run_id": last["run_id"],
            "finished_at": last["finished_at"],
            "age": _ago(last["finished_at"] or last["started_at"], now),
            "outcome": last.get("outcome") or ("published" if last["published"] else "failed"),
            "detail": last.get("detail"),
            "events_added": last["events_added"],
            "events_changed": last["events_changed"],
            "events_removed": last["events_removed"],
            "seconds": sum(last[f"seconds_{s}"] or 0 for s in ("discover", "parse", "normalize", "validate")),
        }
    )
    lock = _lock_state(layout)
    info["lock"] = lock
    if lock and lock.get("command") == "watch":
        info["watcher"] = _watcher(layout, lock)
    return info


def _lock_state(layout: OutputLayout) -> dict[str, Any] | None:
    """Who holds the output's lock now, None when nobody does."""
    import fcntl
    import os

    from pipeline.core.lock import holder

    try:
        fd = os.open(layout.lock, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return holder(layout.lock) or {"pid": "unknown"}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _watcher(layout: OutputLayout, lock: dict[str, Any]) -> dict[str, Any]:
    """A running watcher's state file (pipeline/watch.py), if it wrote one."""
    import json

    try:
        value = json.loads((layout.state / "watch.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"since": lock.get("since")}
    return value if isinstance(value, dict) else {"since": lock.get("since")}


def render(info: dict[str, Any]) -> str:
    lines = [f"output:  {info['output']}", f"catalog: {info['catalog']}"]
    current = info["current"]
    if current is None:
        lines.append("current publication: none")
    else:
        passed = {True: "passed", False: "FAILED", None: "unknown"}[current["validation_passed"]]
        lines.append(
            f"current publication: {current['run_id']} (published {current['age']}; "
            f"{current['events'] if current['events'] is not None else '?'} events; validation {passed})"
        )
    last = info["last_run"]
    if last is None:
        lines.append(
            "last run: none"
            + (f" (run log unreadable: {info['run_log_error']})" if info.get("run_log_error") else "")
        )
    else:
        detail = f": {last['detail']}" if last.get("detail") and last["outcome"] != "published" else ""
        lines.append(
            f"last run: {last['run_id']} ({last['age']}) {last['outcome']}{detail}; events added / changed / "
            f"removed {last['events_added']} / {last['events_changed']} / {last['events_removed']}"
        )
    lock = info["lock"]
    if lock is None:
        lines.append("lock: free")
    elif lock.get("command") == "watch":
        watcher = info.get("watcher") or {}
        batch = watcher.get("last_batch") or {}
        shown = f"; last batch: {batch.get('line')}" if batch else "; no batch yet"
        if watcher.get("busy"):
            shown += f"; running a batch ({watcher['busy']})"
        lines.append(f"watcher: running (pid {lock.get('pid')}, since {lock.get('since')}){shown}")
    else:
        lines.append(
            f"lock: held by {lock.get('command', 'a run')} (pid {lock.get('pid')}, since {lock.get('since')})"
        )
    return "\n".join(lines)


def history_lines(root: Path) -> list[str]:
    """The kept publications, most recently current first; `*` marks the current one."""
    from pipeline.core.lock import is_ours
    from pipeline.core.tables import runs_file
    from pipeline.publish.catalog import current_run_id, kept_publications

    layout = OutputLayout(root)
    if not is_ours(root):
        raise StatusError(f"no publications in {root} (not an output folder of this pipeline)")
    kept = kept_publications(layout)
    if not kept:
        raise StatusError(f"no publications in {root}")
    current = current_run_id(layout)
    lines = [f"{'':2}{'run_id':<34} {'finished_at (UTC)':<20} {'events':>9} {'rejected':>9}"]
    for run_id in kept:
        row = _run_row(runs_file(layout.publication(run_id)), run_id)
        if row is None:
            lines.append(f"{'*' if run_id == current else ' '} {run_id:<34} {'(runs file unreadable)':<20}")
            continue
        finished = row.get("finished_at")
        shown = f"{finished:%Y-%m-%d %H:%M:%S}" if finished else "?"
        lines.append(
            f"{'*' if run_id == current else ' '} {run_id:<34} {shown:<20} "
            f"{row.get('events', 0):>9} {row.get('rejected', 0):>9}"
        )
    return lines
