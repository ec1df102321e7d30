"""Named points where a crash test can kill the process (`PIPELINE_CRASH_AT=<name>`).

The crash-safety test SIGKILLs a real run at each of these moments and checks
that the catalog still shows a complete publication and that the next run
completes. With `PIPELINE_CRASH_ONCE=<file>` only the first process to reach the
point dies (it creates the file): the Dask test kills one worker mid-batch and
expects the retried batch to succeed.

`PIPELINE_STALL_AT=<name>` makes the run stop at the point as if a step took minutes (the
interrupt tests send their signal then; `PIPELINE_STALL_FLAG=<file>` is created on arrival).
With `PIPELINE_STALL_SIGNALS=blocked` the stall also blocks SIGINT and SIGTERM in the main
thread, like a long C call that Python cannot interrupt. Without the variables a crash point
costs two dictionary lookups. `PIPELINE_STALL_AT=exit` stalls the interpreter's exit instead,
in a thread exit hook like the one where Prefect waits for its services without a deadline.
"""

from __future__ import annotations

import os
import signal
import threading
import time

CRASH_POINTS = (
    "discover:listed",
    "parse:collected-garbage",
    "stage:partial-batch",
    "parse:first-batch",
    "parse:all-batches",
    "parse:manifest-written",
    "normalize:events",
    "normalize:files",
    "normalize:sources",
    "normalize:relations",
    "normalize:relation_tags",
    "normalize:event_tags",
    "normalize:event_places",
    "normalize:tags",
    "normalize:countries",
    "normalize:quarantine",
    "normalize:tag_spellings",
    "normalize:relation_targets",
    "normalize:storylines",
    "validate:done",
    "publish:runs-written",
    "publish:catalog-built",
    "publish:catalog-swapped",
    "publish:current-swapped",
    "publish:manifest-committed",
    "publish:pruned",
)

# The watcher's own moments, around each batch (tests/e2e/test_watch_command.py).
WATCH_CRASH_POINTS = ("watch:batch-collected", "watch:batch-done")


def crash_point(name: str) -> None:
    if os.environ.get("PIPELINE_STALL_AT") == name:
        _stall()
    if os.environ.get("PIPELINE_CRASH_AT") == name:
        once = os.environ.get("PIPELINE_CRASH_ONCE")
        if once:
            try:
                os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return
        os.kill(os.getpid(), signal.SIGKILL)


def stall_exit() -> None:
    """With `PIPELINE_STALL_AT=exit`, make the interpreter's exit hang (see the module doc)."""
    if os.environ.get("PIPELINE_STALL_AT") == "exit":
        threading._register_atexit(_stall)  # type: ignore[attr-defined]  # Prefect's hook, too


def _stall(seconds: float = 120.0) -> None:
    if os.environ.get("PIPELINE_STALL_SIGNALS") == "blocked":
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    flag = os.environ.get("PIPELINE_STALL_FLAG")
    if flag:
        os.close(os.open(flag, os.O_CREAT | os.O_WRONLY))
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.05)
