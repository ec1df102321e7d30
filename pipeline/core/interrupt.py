"""Stop cleanly on SIGINT or SIGTERM, within a deadline.

The first signal raises `Interrupted` in the main thread, so the run unwinds through its
normal failure path: the new publication is discarded, the work folder removed, the run
recorded as interrupted, the lock released. A signal arrives while the main thread may be
inside a long C call (a DuckDB query) where Python cannot raise: a watchdog thread, woken at
once through the signal wake-up descriptor, interrupts DuckDB and, if the run has still not
ended when the deadline is near, ends the process itself after the same clean-up (the
caller's `on_deadline`). A second signal is ignored: the first is already being acted on.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Leave a margin below the 10 s the contract allows for the process to exit.
DEADLINE_SECONDS = 8.0

_connections: weakref.WeakSet[Any] = weakref.WeakSet()


class Interrupted(BaseException):  # noqa: N818 - like KeyboardInterrupt, not an error
    """The run was asked to stop by a signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def track(connection: Any) -> Any:
    """Register a DuckDB connection to be interrupted on a signal; returns it."""
    _connections.add(connection)
    return connection


def ignore_in_worker() -> None:
    """Worker processes leave signals to the main process (no KeyboardInterrupt tracebacks
    from every worker on Ctrl-C: the main process shuts them down)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def stop_on_signals(on_deadline: Callable[[int], None]) -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise `Interrupted`; if the block has not ended
    `DEADLINE_SECONDS` after the signal, `on_deadline(signum)` is called from another thread
    (it must end the process)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    raised = threading.Event()
    done = threading.Event()
    reader, writer = socket.socketpair()
    writer.setblocking(False)

    def handler(signum: int, frame: Any) -> None:
        if not raised.is_set():  # the first signal raises once; later ones are already handled
            raised.set()
            raise Interrupted(signum)

    def watch() -> None:
        try:
            data = reader.recv(1)
        except OSError:
            return
        if done.is_set() or not data:
            return
        for connection in list(_connections):
            with suppress(Exception):  # closed meanwhile
                connection.interrupt()
        if not done.wait(DEADLINE_SECONDS):
            on_deadline(data[0])

    previous = {sig: signal.signal(sig, handler) for sig in SIGNALS}
    old_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    watcher = threading.Thread(target=watch, name="signal-watchdog", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        signal.set_wakeup_fd(old_fd)
        for sig, old in previous.items():
            signal.signal(sig, old)
        writer.shutdown(socket.SHUT_WR)  # wakes the watchdog if no signal came
        watcher.join(1)
        writer.close()
        reader.close()


def exit_now(code: int) -> None:
    os._exit(code)
