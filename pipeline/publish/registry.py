"""What the pipeline made in its output folder, and when each publication was current.

`state/publications.json` records every run that created a work folder or a publication
(before it creates them), and for each publication the times it became and stopped being
current. Cleanup and pruning remove only folders named here, so a file a user put in the
output folder is never deleted; pruning goes by recency of being current, not by name, so a
rollback is not undone by the next run; and a publication that was current within the
retention window stays on disk for readers and exports that opened it before.

A registry that cannot be read is set aside (`publications.json.corrupt-<time>`) and rebuilt
from the run log: nothing the log does not name as published is ever deleted.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.core.storage import read_no_follow, save_json

FORMAT = 1
RUN_ID = re.compile(r"^\d{8}T\d{6,12}Z-\d+$")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# `2026-11-24T14:26:00.123456Z`. A watcher's registry holds every publication of the retention
# window and is read once and written three or four times in every batch: the texts are
# remembered (formatting every entry's times was 2.4% of a batch after 340 batches), and
# made by isoformat / fromisoformat rather than strftime / strptime (1% at 400 entries).
@functools.lru_cache(maxsize=16384)
def _iso(moment: dt.datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(dt.UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


@functools.lru_cache(maxsize=16384)
def _parse(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    if not text.endswith("Z") or len(text) != 27:
        raise ValueError(f"not a time: {text!r}")
    return dt.datetime.fromisoformat(text[:-1]).replace(tzinfo=dt.UTC)


@dataclass
class Entry:
    run_id: str
    started: dt.datetime
    current_from: dt.datetime | None = None  # when it last became current
    current_until: dt.datetime | None = None  # when it last stopped being current

    def to_json(self) -> dict:
        return {
            "started": _iso(self.started),
            "current_from": _iso(self.current_from),
            "current_until": _iso(self.current_until),
        }

    @classmethod
    def from_json(cls, run_id: str, value: dict) -> Entry:
        started = _parse(value.get("started"))
        if started is None:
            raise ValueError(f"{run_id}: no start time")
        return cls(run_id, started, _parse(value.get("current_from")), _parse(value.get("current_until")))


@dataclass
class Registry:
    path: Path
    entries: dict[str, Entry] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    # --- reading and writing ---------------------------------------------------------------
    @classmethod
    def load(cls, path: Path, published: Callable[[], dict[str, dt.datetime]]) -> Registry:
        """The registry at `path`. If it is missing or unreadable, one is rebuilt from
        `published()` (run id -> finished time of the runs the log says were published)."""
        registry = cls(path)
        if path.is_symlink() or path.exists():
            try:
                value = json.loads(read_no_follow(path))
                if value.get("format") != FORMAT:
                    raise ValueError(f"format {value.get('format')!r}")
                for run_id, item in value["runs"].items():
                    if RUN_ID.match(run_id):
                        registry.entries[run_id] = Entry.from_json(run_id, item)
                return registry
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                aside = path.with_name(f"{path.name}.corrupt-{_now():%Y%m%dT%H%M%S}")
                os.replace(path, aside)
                registry.warnings.append(
                    f"the publication registry {path} could not be read ({exc}); set aside as "
                    f"{aside.name} and rebuilt from the run log"
                )
        for run_id, finished in published().items():
            if RUN_ID.match(run_id):
                registry.entries[run_id] = Entry(run_id, finished, finished, finished)
        return registry

    def save(self) -> None:
        runs = {run_id: entry.to_json() for run_id, entry in sorted(self.entries.items())}
        save_json(self.path, {"format": FORMAT, "runs": runs})

    # --- changes -----------------------------------------------------------------------------
    def start(self, run_id: str) -> None:
        """Record a run before it creates its work folder and publication."""
        self.entries[run_id] = Entry(run_id, _now())
        self.save()

    def made_current(self, run_id: str) -> None:
        """Record `run_id` as current from now; whichever was current stops being so."""
        now = _now()
        for other in self.entries.values():
            if other.current_from is not None and other.current_until is None:
                other.current_until = now
        entry = self.entries.setdefault(run_id, Entry(run_id, now))
        entry.current_from, entry.current_until = now, None
        self.save()

    def snapshot(self) -> dict[str, Entry]:
        return {run_id: Entry(**vars(entry)) for run_id, entry in self.entries.items()}

    def restore(self, entries: dict[str, Entry]) -> None:
        self.entries = entries
        self.save()

    def forget(self, run_id: str) -> None:
        if self.entries.pop(run_id, None) is not None:
            self.save()

    # --- questions ---------------------------------------------------------------------------
    def was_current(self, run_id: str) -> bool:
        entry = self.entries.get(run_id)
        return entry is not None and entry.current_from is not None

    def last_current(self, run_id: str) -> dt.datetime:
        """When the publication was last current (now, for the current one)."""
        entry = self.entries[run_id]
        if entry.current_from is None:
            return entry.started
        return entry.current_until or _now()


def prunable(
    registry: Registry, existing: list[str], current: str | None, keep: int, retention: dt.timedelta
) -> list[str]:
    """Publications to delete: those the pipeline made, other than the current one, beyond the
    `keep` most recently current ones (the current one counts) and not current within
    `retention`. A publication never made current is not a rollback point: it goes too."""
    now = _now()
    ours = [run_id for run_id in existing if run_id in registry.entries and run_id != current]
    never = [run_id for run_id in ours if not registry.was_current(run_id)]
    points = sorted(
        (run_id for run_id in ours if registry.was_current(run_id)),
        key=registry.last_current,
        reverse=True,
    )
    room = max(0, keep - (1 if current else 0))
    old = [run_id for run_id in points[room:] if now - registry.last_current(run_id) > retention]
    return never + old


def remove_tree(path: Path) -> None:
    """Delete a folder the registry names (a link in its place is removed, not followed)."""
    if path.is_symlink():
        path.unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)


def parse_duration(text: str) -> dt.timedelta:
    """`90s`, `30m`, `1h`, `2d` or a number of seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if match is None:
        raise ValueError(f"not a duration: {text!r} (use for example 90s, 30m, 1h, 0)")
    unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]
    return dt.timedelta(seconds=float(match[1]) * unit)
