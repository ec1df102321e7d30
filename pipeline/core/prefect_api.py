"""The Prefect API a command-line run reports to.

With `PREFECT_API_URL` set, that server. Without it, Prefect would start a temporary server
itself, as a child in our process group: a Ctrl-C then killed it before the run's client had
drained (the run hung ~100 s in Prefect's exit path), and a SIGTERM to the run left it
running with no parent. We start that same temporary server ourselves instead (the command
Prefect's `SubprocessASGIServer` runs), in its own session (a terminal's Ctrl-C reaches only
the run) and bound to our life (Linux: it gets SIGTERM when we die, SIGKILL included), and
stop it when the command ends.

`start_early()` launches it before the run imports anything heavy, so the server boots
(about 3.5 s) while the run imports Prefect, pandas and the flow (about 2 s); it does not
import `prefect.server` into the run's process at all (2 s more, measured in a profile of a
run over an empty archive).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

_LINUX_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent dies (Linux only; else nothing)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_LINUX_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


class _Server:
    """A temporary Prefect server process (what `stop_servers` stops)."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.server_process: subprocess.Popen[bytes] | None = _launch(self.port)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def wait_healthy(self, timeout: float) -> None:
        """Until `/health` answers; a new port if this one was taken (uvicorn exits with 3)."""
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            process = self.server_process
            assert process is not None
            code = process.poll()
            if code == 3:
                self.port = _free_port()
                self.server_process = _launch(self.port)
                continue
            if code is not None:
                raise RuntimeError(f"the temporary Prefect server exited with code {code} while starting")
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"the temporary Prefect server did not answer within {timeout:g} s")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _launch(port: int) -> subprocess.Popen[bytes]:
    """The command and environment of Prefect's SubprocessASGIServer, in our own session."""
    spec = importlib.util.find_spec("prefect")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("prefect is not installed")
    app_dir = str(Path(next(iter(spec.submodule_search_locations))).parent)
    command = [sys.executable, "-m", "uvicorn", "--app-dir", app_dir, "--factory"]
    command += ["prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--log-level", "error", "--lifespan", "on"]
    env = {
        **os.environ,
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
        # No network at run time: the server's telemetry service would call home (and log an
        # ERROR line to the run's console when there is no network).
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
    return subprocess.Popen(
        command,
        env=env,
        start_new_session=True,
        preexec_fn=_die_with_parent if os.name == "posix" else None,  # noqa: PLW1509
    )


_servers: list[_Server] = []
_early: list[_Server] = []


def start_early() -> None:
    """Start the temporary server now, unless the environment names an API; `prefect_api()`
    takes it (or stops it, when a Prefect profile names an API after all)."""
    if not os.environ.get("PREFECT_API_URL") and not _early:
        _early.append(_Server())


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
            stop_servers()  # one started early for nothing: a profile names an API
            try:
                yield
            finally:
                drain()  # here, with a deadline, rather than in Prefect's exit hook without one
            return
        with _own_server():
            yield


@contextmanager
def one_client() -> Iterator[None]:
    """Within the block, the flow runs of this thread share one API client. Prefect otherwise
    opens a client for each flow run and asks the server for its version: 26 ms before a
    watcher's batch can begin its first stage (profiled over 30 empty flow runs against a
    running API). Enter it inside `prefect_api()`, which names the API."""
    from prefect.context import SyncClientContext

    with SyncClientContext.get_or_create():
        yield


@contextmanager
def _own_server() -> Iterator[None]:
    """A temporary Prefect server in its own session, bound to our life, drained and stopped."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        temporary_settings,
    )

    server = _early.pop() if _early else _Server()
    _servers.append(server)
    try:
        server.wait_healthy(float(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()))
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
    while _servers or _early:
        server = (_servers or _early).pop()
        process = server.server_process
        if process is None:
            continue
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
        server.server_process = None
