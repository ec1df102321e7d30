"""The Prefect API a command-line run reports to.

With `PREFECT_API_URL` set, that server. Without it, Prefect would start a temporary server
itself, as a child in our process group: a Ctrl-C then killed it before the run's client had
drained (the run hung ~100 s in Prefect's exit path), and a SIGTERM to the run left it
running with no parent. We start that same temporary server ourselves instead, in its own
session (a terminal's Ctrl-C reaches only the run) and bound to our life (Linux: it gets
SIGTERM when we die, SIGKILL included), and stop it when the command ends.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from types import SimpleNamespace
from typing import Any

_LINUX_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent dies (Linux only; else nothing)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_LINUX_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


_servers: list[Any] = []


@contextmanager
def prefect_api() -> Iterator[None]:
    """Within the block Prefect reports to `PREFECT_API_URL`, or to a temporary server we own.

    Flow-run heartbeats are off within it: they let a server notice a worker's run that died,
    but our runs are in this process, which records its own end (the run log, the lock), and
    Prefect joins the heartbeat thread at the end of every flow run, which cost up to 1 s per
    run (0.77 s in a profile of a watcher's one-file batch)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY as HEARTBEAT

    with temporary_settings(updates={HEARTBEAT: None}):
        if PREFECT_API_URL.value():
            yield
            return
        with _own_server():
            yield


@contextmanager
def _own_server() -> Iterator[None]:
    """A temporary Prefect server in its own session, bound to our life, drained and stopped."""
    from prefect.server.api import server as prefect_server
    from prefect.settings import PREFECT_API_URL, temporary_settings

    server = prefect_server.SubprocessASGIServer()
    popen = subprocess.Popen

    def own_session(*args: Any, **kwargs: Any) -> subprocess.Popen[Any]:
        kwargs.setdefault("start_new_session", True)
        if os.name == "posix":
            kwargs.setdefault("preexec_fn", _die_with_parent)
        return popen(*args, **kwargs)

    # Only the server module sees the wrapped Popen (a namespace standing in for `subprocess`).
    real = prefect_server.subprocess
    prefect_server.subprocess = SimpleNamespace(**{**vars(real), "Popen": own_session})  # type: ignore[assignment]
    try:
        server.start()
    finally:
        prefect_server.subprocess = real
    _servers.append(server)
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            try:
                yield
            finally:
                drain()
    finally:
        stop_servers()


def drain(timeout: float = 5.0) -> None:
    """Send the logs and events Prefect still queues while the server is up (otherwise they
    are retried against a stopped server at exit, for minutes)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with suppress(Exception):
            worker.drain_all(timeout=timeout)


def stop_servers(timeout: float = 5.0) -> None:
    """Stop the temporary servers we started (also from the signal watchdog)."""
    while _servers:
        server = _servers.pop()
        process = getattr(server, "server_process", None)
        if process is None:
            continue
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
        server.server_process = None
        server.running = False
