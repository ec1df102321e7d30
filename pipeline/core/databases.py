"""In-memory DuckDB databases, opened ahead of need by long-lived processes.

Opening an in-memory database costs 12-15 ms of CPU with DuckDB 2.0 (a new database
instance: its buffer manager, thread pool and catalog). A watcher's one-file batch opened
five in its own process, two of them on the path to a queryable change, and one in each
validation process, also on that path. A long-lived process calls `make_spares` when it is
idle (a watcher after each batch, a validation process after each answer); `open_memory`
then takes the spare instead of opening one. A spare is a fresh database nobody used: nothing
of one batch reaches the next. A `run`'s own process makes none and opens as before (its
validation process makes one after each answer, as a watcher's does).
"""

from __future__ import annotations

import threading

import duckdb

Value = str | int | float
Settings = tuple[tuple[str, Value], ...]

# The most spares kept for one setting: a watcher's batch opens two with the same settings
# (normalize's and the change log's, which runs beside validation on the path to a
# queryable change, where a fresh one took 30-40 ms at a million events).
MAX_SPARES = 2

_lock = threading.Lock()
_spares: dict[Settings, list[duckdb.DuckDBPyConnection]] = {}
_wanted: dict[Settings, int] = {}  # per setting asked for so far: the most asked for between two makes
_asked: dict[Settings, int] = {}  # per setting: how many were asked for since the last make


def open_memory(config: dict[str, Value] | None = None) -> duckdb.DuckDBPyConnection:
    """A new in-memory database with `config` (DuckDB's settings at start-up): a spare if
    one was made with the same settings, else one opened now."""
    key: Settings = tuple(sorted((config or {}).items()))
    with _lock:
        _asked[key] = _asked.get(key, 0) + 1
        _wanted[key] = max(_wanted.get(key, 0), min(_asked[key], MAX_SPARES))
        kept = _spares.get(key)
        spare = kept.pop() if kept else None
    return spare if spare is not None else duckdb.connect(config=dict(key))


def make_spares() -> int:
    """Open spare databases, for each setting asked for so far, up to as many as were asked
    for at once (between two calls, at most `MAX_SPARES`); how many were opened."""
    with _lock:
        missing = [(key, wanted - len(_spares.get(key, []))) for key, wanted in _wanted.items()]
        _asked.clear()
    made = 0
    for key, count in missing:
        for _ in range(count):
            con = duckdb.connect(config=dict(key))
            with _lock:
                kept = _spares.setdefault(key, [])
                if len(kept) >= _wanted[key]:  # made meanwhile by another thread
                    con.close()
                    continue
                kept.append(con)
            made += 1
    return made


def drop_spares() -> None:
    """Close the spares (a process about to end, or a test)."""
    with _lock:
        spares = [con for kept in _spares.values() for con in kept]
        _spares.clear()
    for con in spares:
        con.close()
