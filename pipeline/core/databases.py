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

_lock = threading.Lock()
_spares: dict[Settings, duckdb.DuckDBPyConnection] = {}
_opened: set[Settings] = set()  # the settings asked for so far: those a spare is made for


def open_memory(config: dict[str, Value] | None = None) -> duckdb.DuckDBPyConnection:
    """A new in-memory database with `config` (DuckDB's settings at start-up): a spare if
    one was made with the same settings, else one opened now."""
    key: Settings = tuple(sorted((config or {}).items()))
    with _lock:
        _opened.add(key)
        spare = _spares.pop(key, None)
    return spare if spare is not None else duckdb.connect(config=dict(key))


def make_spares() -> int:
    """Open one spare database for each setting asked for so far that has none; how many."""
    with _lock:
        missing = [key for key in _opened if key not in _spares]
    for key in missing:
        con = duckdb.connect(config=dict(key))
        with _lock:
            if key in _spares:  # made meanwhile by another thread
                con.close()
            else:
                _spares[key] = con
    return len(missing)


def drop_spares() -> None:
    """Close the spares (a process about to end, or a test)."""
    with _lock:
        spares = list(_spares.values())
        _spares.clear()
    for con in spares:
        con.close()
