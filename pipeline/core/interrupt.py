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
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Leave a margin below the 10 s the contract allows for the process to exit.
DEADLINE_SECONDS = 8.0
# What the interpreter's own exit may take (Prefect drains its log and event services there,
# waiting without a deadline), and how long after a signal the process must be gone.
EXIT_GRACE_SECONDS = 3.0
SIGNAL_EXIT_SECONDS = 9.5

_signalled_at: list[float] = []  # when the first signal arrived (monotonic), if one did

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
            _signalled_at.append(time.monotonic())
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


def exit_within(code: int) -> None:
    """Bound the interpreter's exit: if it has not ended `EXIT_GRACE_SECONDS` from now (or
    `SIGNAL_EXIT_SECONDS` after a signal, whichever comes first), end the process with `code`.

    Python joins threads and runs exit hooks after `main` returns, outside any block of ours:
    Prefect's hook waits for its log and event services without a deadline, and a watcher
    stopped by SIGTERM after ~130 batches hung there for good (py-spy: `threading._shutdown`
    -> `_QueueServiceBase._at_exit` -> `Future.result`). The command's work is done and its
    lock released by then; only the exit itself is cut short."""
    now = time.monotonic()
    deadline = now + EXIT_GRACE_SECONDS
    if _signalled_at:
        deadline = max(now + 0.3, min(deadline, _signalled_at[0] + SIGNAL_EXIT_SECONDS))

    def cut_short() -> None:
        time.sleep(max(0.0, deadline - time.monotonic()))
        for stream in (sys.stdout, sys.stderr):
            with suppress(Exception):
                stream.flush()
        exit_now(code)

    threading.Thread(target=cut_short, name="exit-deadline", daemon=True).start()
