"""Great Expectations in a process of its own, started before the run needs it.

Importing GX and building its context is about 2 s of Python, and so is what a run does
before validating an empty or small change (importing Prefect, creating the flow run,
listing, normalizing). In one process the two only take turns holding the interpreter lock:
an empty-archive run took 5-6.5 s, most of it one waiting for the other. In a second process
they run on two cores at once: `run` starts it beside the temporary Prefect server, before
it imports anything heavy; a watcher keeps it for all its batches.

The process serves one request at a time over a pipe (`validate_publication`'s arguments in,
its `ValidationReport` or exception out) and ends when the pipe closes, when the run that
started it exits (daemon), or when its parent is gone, SIGKILL included. A run
interrupted while it validates kills it; the next validation starts another. Where no
process can be started, validation runs in this one, as before.
"""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: `run` starts the process before its heavy imports
    from pipeline.quality.validate import ValidationReport

KEPT = 3  # processes kept: a watcher's two (`slot`), or one per suites folder (tests use several)


class ValidationProcessDied(RuntimeError):
    """The validation process ended while it validated (killed, out of memory)."""


def _orphaned(parent: int) -> None:
    """End this process soon after its parent is gone (a SIGKILLed run leaves no validation
    running behind it; polling works wherever the parent ran, thread or platform)."""
    while os.getppid() == parent:
        time.sleep(0.2)
    os._exit(1)


def _serve(conn: Any, expectations_dir: Path, docs_dir: Path, parent: int) -> None:
    """The process's loop: build the suites' checkpoints at once, then validate on request."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the run's to act on
    threading.Thread(target=_orphaned, args=(parent,), name="orphaned", daemon=True).start()
    with suppress(ImportError):  # tqdm (GX's progress bars) would make a process-shared lock,
        from tqdm import std  # a semaphore left behind (and warned about) when we are stopped

        std.TqdmDefaultWriteLock.mp_lock = None
    from pipeline.core.databases import make_spares
    from pipeline.quality.validate import _checkpoints, import_gx, validate_publication, write_data_docs

    with suppress(Exception):  # met again, and reported, by the first request
        import_gx(defer=True)
        _checkpoints(expectations_dir, docs_dir)
    # The run whose results wait for its next request's Data Docs, and where they are kept.
    held: tuple[Any, Path, Path] | None = None
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if held is not None and request.get("run_id") != held[0]:  # that run never came back
            with suppress(Exception):
                _checkpoints(held[1], held[2]).forget_results()
        # `hold_docs`: the run's first suites (`begin`); their results join the Data Docs
        # built after its next request, the other suites.
        hold = bool(request.pop("hold_docs", False))
        # The report goes back before the Data Docs are built (0.7 s for an empty archive's
        # ten results): the run publishes meanwhile and asks for them at its end.
        later = bool(request.get("build_docs", True))
        try:
            reply: tuple[str, Any] = ("ok", validate_publication(**request, docs_later=later))
        except Exception as exc:
            later, reply = False, ("error", _picklable(exc))
        docs = Path(request["report_dir"]) / "docs"
        held = (request.get("run_id"), request["expectations_dir"], docs) if later and hold else None
        try:
            conn.send(reply)
            if later and not hold:
                try:
                    write_data_docs(request["expectations_dir"], docs)
                    conn.send(("docs", None))
                except Exception as exc:
                    conn.send(("docs", _picklable(exc)))
        except (BrokenPipeError, OSError):
            return
        with suppress(Exception):  # the next request's database, while none is waiting
            make_spares()


def _picklable(exc: Exception) -> Exception:
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


class ValidationProcess:
    """One validation process for a suites folder (see the module docstring)."""

    def __init__(self, expectations_dir: Path, docs_dir: Path) -> None:
        context = get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(
            target=_serve,
            args=(child, expectations_dir, docs_dir, os.getpid()),
            name="validation",
            daemon=True,
        )
        self.process.start()
        child.close()
        self.docs_pending = False
        self.unanswered = False  # a request was sent whose report nobody received (see `send`)
        self.sent = 0  # requests sent so far: `begin`'s waiter checks that its is the last

    def validate(self, **arguments: Any) -> ValidationReport:
        """`validate_publication(**arguments)` in the process; a dead process raises
        `ValidationProcessDied`, an interrupt kills it (its state is then unknown). The Data
        Docs are built after the report comes back: `finish_docs` waits for them."""
        self.send(**arguments)
        return self.receive(bool(arguments.get("build_docs", True)))

    def send(self, **arguments: Any) -> int:
        """Ask for `validate_publication(**arguments)` and return at once; `receive` gives the
        report. The replies to earlier requests nobody received (a run that failed between
        the two) are read and dropped first: each request's reply is the next one read."""
        try:
            if self.docs_pending:  # an earlier run's, which it did not wait for
                with suppress(Exception):
                    self.finish_docs()
            if self.unanswered:
                self._receive()
                self.unanswered = False
            self.conn.send(arguments)
            self.unanswered = True
            self.sent += 1
            return self.sent
        except BaseException:
            self.close()
            raise

    def receive(self, docs: bool = False) -> ValidationReport:
        """The report of the request sent last (`docs`: it asked for Data Docs)."""
        try:
            kind, value = self._receive()
            self.unanswered = False
        except BaseException:
            self.close()
            raise
        if kind == "error":
            raise value
        self.docs_pending = docs
        report: ValidationReport = value
        return report

    def finish_docs(self) -> None:
        """Wait until the last validation's Data Docs are written; raises what building met."""
        if not self.docs_pending:
            return
        try:
            _, error = self._receive()
        except BaseException:
            self.close()
            raise
        self.docs_pending = False
        if error is not None:
            raise error

    def _receive(self) -> tuple[str, Any]:
        try:
            while not self.conn.poll(0.05):
                if not self.process.is_alive():
                    raise EOFError
            reply: tuple[str, Any] = self.conn.recv()
            return reply
        except (EOFError, OSError):  # the pipe closed under us: the process is gone
            self.process.join(timeout=5)
            raise ValidationProcessDied(
                f"the validation process ended (exit code {self.process.exitcode}) while it validated"
            ) from None

    @property
    def alive(self) -> bool:
        return self.process.is_alive()

    def close(self) -> None:
        self.conn.close()
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)


# By suites folder and slot: a watcher validates a batch's early and late suites in two
# processes at once (flows/news_etl.py, EarlyChecks), a run in slot 0 alone.
_processes: dict[tuple[Path, int], ValidationProcess] = {}
_lock = threading.Lock()


def start(expectations_dir: Path, docs_dir: Path, slot: int = 0) -> ValidationProcess | None:
    """The running validation process for these suites (and `slot`), started now (and readied
    for Data Docs in `docs_dir`) if there is none; None: no process can be started here."""
    key = (Path(expectations_dir).resolve(), slot)
    with _lock:
        process = _processes.get(key)
        if process is not None and process.alive:
            return process
        _processes.pop(key, None)
        try:
            process = ValidationProcess(key[0], Path(docs_dir))
        except Exception:  # no process can be started (a sandbox, no semaphores)
            return None
        _processes[key] = process
        while len(_processes) > KEPT:
            _processes.pop(next(iter(_processes))).close()
        return process


def _forget_if_dead(key: tuple[Path, int], process: ValidationProcess) -> None:
    """Drop a process that ended (killed, interrupted) so that the next request starts another."""
    if not process.alive:
        with _lock:
            if _processes.get(key) is process:
                _processes.pop(key)


def validate(expectations_dir: Path, report_dir: Path, **arguments: Any) -> ValidationReport:
    """`validate_publication` in the validation process for these suites (started if needed),
    or in this process where none can be started."""
    key = (Path(expectations_dir).resolve(), 0)
    process = start(key[0], Path(report_dir) / "docs")
    if process is None:
        from pipeline.quality.validate import validate_publication

        return validate_publication(expectations_dir=key[0], report_dir=report_dir, **arguments)
    try:
        return process.validate(expectations_dir=key[0], report_dir=report_dir, **arguments)
    finally:
        _forget_if_dead(key, process)


def begin(
    expectations_dir: Path, report_dir: Path, slot: int = 0, **arguments: Any
) -> Callable[[], ValidationReport]:
    """Start `validate_publication` in the validation process of `slot` and return at once:
    the function returned waits for its report. Where no process can be started, the
    validation runs now and the function returns its report.

    With `build_docs`, the results wait for the Data Docs of the run's next validation in the
    same slot (`validate`, the other suites), which shows both; so only slot 0 takes them."""
    docs = bool(arguments.get("build_docs", True))
    if docs and slot != 0:
        raise ValueError("only slot 0 validates for Data Docs")
    key = (Path(expectations_dir).resolve(), slot)
    process = start(key[0], Path(report_dir) / "docs", slot)
    if process is None:
        from pipeline.quality.validate import validate_publication

        report = validate_publication(
            expectations_dir=key[0], report_dir=report_dir, docs_later=docs, **arguments
        )
        return lambda: report
    number = process.send(expectations_dir=key[0], report_dir=report_dir, hold_docs=docs, **arguments)

    def wait() -> ValidationReport:
        if process.sent != number or not process.unanswered:
            raise RuntimeError("this validation's report was dropped: another was asked for since")
        try:
            return process.receive()
        finally:
            _forget_if_dead(key, process)

    return wait


def finish_docs(expectations_dir: Path) -> None:
    """Wait for the Data Docs of the last validation with these suites (built already when
    validation ran in this process); raises what building them met."""
    key = (Path(expectations_dir).resolve(), 0)
    with _lock:
        process = _processes.get(key)
    if process is None:
        return
    try:
        process.finish_docs()
    finally:
        _forget_if_dead(key, process)


def stop_all() -> None:
    """End every validation process (a watcher's shutdown; tests)."""
    with _lock:
        while _processes:
            _processes.popitem()[1].close()
