"""`python benchmarks/traced.py run ...`: `python -m pipeline run` that also records when the
run passes each of its checkpoints (pipeline/core/faults.py), for benchmarks/breakdown.py.

The times go, as JSON `[[checkpoint, seconds since start], ...]`, to the file named by
`PIPELINE_TRACE`. Only the main process is traced (parse workers are not).
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import time
from pathlib import Path

STARTED = time.perf_counter()
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's pipeline

import pipeline.core.faults as faults  # noqa: E402  (patched before any module imports `crash_point`)

_marks: list[tuple[str, float]] = []
_original = faults.crash_point


def _traced(name: str) -> None:
    _marks.append((name, time.perf_counter() - STARTED))
    _original(name)


def _write() -> None:
    _marks.append(("exit", time.perf_counter() - STARTED))
    Path(os.environ["PIPELINE_TRACE"]).write_text(json.dumps(_marks), encoding="utf-8")


faults.crash_point = _traced

if __name__ == "__main__":
    atexit.register(_write)
    from pipeline.cli import main

    sys.exit(main(sys.argv[1:]))
