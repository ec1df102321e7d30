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
from contextlib import suppress
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: `run` starts the process before its heavy imports
    from pipeline.quality.validate import ValidationReport

KEPT = 2  # processes kept, one per suites folder (tests validate with several)


class ValidationProcessDied(RuntimeError):
    """The validation process ended while it validated (killed, out of memory)."""


class Abandoned(RuntimeError):
    """The run stopped before the tables its validation waited for were written."""


LATER = "later"  # the message that hands a pending validation the parts of its later tables


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
    from pipeline.quality.validate import _checkpoints, import_gx, validate_publication, write_data_docs

    with suppress(Exception):  # met again, and reported, by the first request
        import_gx(defer=True)
        _checkpoints(expectations_dir, docs_dir)

    def wait_later() -> dict[str, list[str]]:
        """The parts of the tables a run was still writing (`Pending.finish`), or Abandoned."""
        while True:
            message = conn.recv()
            if isinstance(message, tuple) and message[:1] == (LATER,):
                if message[1] is None:
                    raise Abandoned("the run abandoned this validation")
                parts: dict[str, list[str]] = message[1]
                return parts

    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if not isinstance(request, dict):  # a `later` message for a validation that failed early
            continue
        # The report goes back before the Data Docs are built (0.7 s for an empty archive's
        # ten results): the run publishes meanwhile and asks for them at its end.
        later = bool(request.get("build_docs", True))
        waits = request.get("later") or ()
        try:
            reply: tuple[str, Any] = (
                "ok",
                validate_publication(**request, docs_later=later, wait_later=wait_later if waits else None),
            )
        except Exception as exc:
            later, reply = False, ("error", _picklable(exc))
        try:
            conn.send(reply)
            if later:
                try:
                    write_data_docs(request["expectations_dir"], Path(request["report_dir"]) / "docs")
                    conn.send(("docs", None))
                except Exception as exc:
                    conn.send(("docs", _picklable(exc)))
        except (BrokenPipeError, OSError):
            return


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

    def validate(self, **arguments: Any) -> ValidationReport:
        """`validate_publication(**arguments)` in the process; a dead process raises
        `ValidationProcessDied`, an interrupt kills it (its state is then unknown). The Data
        Docs are built after the report comes back: `finish_docs` waits for them."""
        try:
            if self.docs_pending:  # an earlier run's, which it did not wait for
                with suppress(Exception):
                    self.finish_docs()
            self.conn.send(arguments)
            kind, value = self._receive()
        except BaseException:
            self.close()
            raise
        if kind == "error":
            raise value
        self.docs_pending = bool(arguments.get("build_docs", True))
        report: ValidationReport = value
        return report

    def submit(self, **arguments: Any) -> None:
        """Start `validate_publication(**arguments)` without waiting: with `later` (tables the
        run still writes) it checks the other tables' suites, then waits for `finish`."""
        try:
            if self.docs_pending:
                with suppress(Exception):
                    self.finish_docs()
            self.conn.send(arguments)
        except BaseException:
            self.close()
            raise
        self.docs_pending = False

    def finish(self, parts: dict[str, list[str]], build_docs: bool) -> ValidationReport:
        """Hand a submitted validation the parts written of its later tables; its report."""
        try:
            self.conn.send((LATER, parts))
            kind, value = self._receive()
        except BaseException:
            self.close()
            raise
        if kind == "error":
            raise value
        self.docs_pending = build_docs
        report: ValidationReport = value
        return report

    def abandon(self, timeout: float = 10.0) -> None:
        """Stop a submitted validation (its report is dropped); a process that does not answer
        within `timeout` is killed (the next validation starts another)."""
        try:
            self.conn.send((LATER, None))
            self._receive(deadline=time.monotonic() + timeout)
        except BaseException:
            self.close()

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

    def _receive(self, deadline: float | None = None) -> tuple[str, Any]:
        try:
            while not self.conn.poll(0.05):
                if not self.process.is_alive():
                    raise EOFError
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError("the validation process did not answer")
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


_processes: dict[Path, ValidationProcess] = {}
_lock = threading.Lock()


def start(expectations_dir: Path, docs_dir: Path) -> ValidationProcess | None:
    """The running validation process for these suites, started now (and readied for Data
    Docs in `docs_dir`) if there is none; None: no process can be started here."""
    key = Path(expectations_dir).resolve()
    with _lock:
        process = _processes.get(key)
        if process is not None and process.alive:
            return process
        _processes.pop(key, None)
        try:
            process = ValidationProcess(key, Path(docs_dir))
        except Exception:  # no process can be started (a sandbox, no semaphores)
            return None
        _processes[key] = process
        while len(_processes) > KEPT:
            _processes.pop(next(iter(_processes))).close()
        return process


def validate(expectations_dir: Path, report_dir: Path, **arguments: Any) -> ValidationReport:
    """`validate_publication` in the validation process for these suites (started if needed),
    or in this process where none can be started."""
    key = Path(expectations_dir).resolve()
    process = start(key, Path(report_dir) / "docs")
    if process is None:
        from pipeline.quality.validate import validate_publication

        return validate_publication(expectations_dir=key, report_dir=report_dir, **arguments)
    try:
        return process.validate(expectations_dir=key, report_dir=report_dir, **arguments)
    finally:
        if not process.alive:
            with _lock:
                if _processes.get(key) is process:
                    _processes.pop(key)


class Pending:
    """A validation started before the run has written every table (`begin`)."""

    def __init__(
        self, key: Path, report_dir: Path, process: ValidationProcess | None, arguments: dict[str, Any]
    ) -> None:
        self.key, self.report_dir, self.process, self.arguments = key, report_dir, process, arguments
        self.open = True

    def finish(self, parts: dict[str, list[str]]) -> ValidationReport:
        """The report, once the later tables are written (`parts`: the parts written of each)."""
        self.open = False
        if self.process is None:  # no process: everything is validated here, now
            from pipeline.quality.validate import validate_publication

            arguments = dict(self.arguments)
            arguments.pop("later", None)
            if arguments.get("rewritten") is not None:
                arguments["rewritten"] = arguments["rewritten"] | parts
            return validate_publication(expectations_dir=self.key, report_dir=self.report_dir, **arguments)
        try:
            return self.process.finish(parts, bool(self.arguments.get("build_docs", True)))
        finally:
            _forget_if_dead(self.key, self.process)

    def abandon(self) -> None:
        """Drop it (the run failed or was interrupted before the later tables were written)."""
        if not self.open:
            return
        self.open = False
        if self.process is not None:
            self.process.abandon()
            _forget_if_dead(self.key, self.process)


def begin(expectations_dir: Path, report_dir: Path, later: tuple[str, ...], **arguments: Any) -> Pending:
    """Start validating the tables written so far while the run writes `later` ones (their
    suites wait for `Pending.finish`): at a million events, a one-file batch's storylines
    took 0.6 s, and validating the other tables 0.45 s of the 0.75 s validation took after."""
    key = Path(expectations_dir).resolve()
    process = start(key, Path(report_dir) / "docs")
    arguments = dict(arguments, later=later)
    if process is not None:
        try:
            process.submit(expectations_dir=key, report_dir=report_dir, **arguments)
        finally:
            _forget_if_dead(key, process)
    return Pending(key, Path(report_dir), process, arguments)


def _forget_if_dead(key: Path, process: ValidationProcess) -> None:
    if not process.alive:
        with _lock:
            if _processes.get(key) is process:
                _processes.pop(key)


def finish_docs(expectations_dir: Path) -> None:
    """Wait for the Data Docs of the last validation with these suites (built already when
    validation ran in this process); raises what building them met."""
    key = Path(expectations_dir).resolve()
    with _lock:
        process = _processes.get(key)
    if process is None:
        return
    try:
        process.finish_docs()
    finally:
        if not process.alive:
            with _lock:
                if _processes.get(key) is process:
                    _processes.pop(key)


def stop_all() -> None:
    """End every validation process (a watcher's shutdown; tests)."""
    with _lock:
        while _processes:
            _processes.popitem()[1].close()
