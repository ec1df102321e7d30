"""A rich progress bar over staged batches, for long runs in a terminal."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from pipeline.parse.stage import BatchResult


@contextmanager
def batch_progress(total_files: int, enabled: bool) -> Iterator[Callable[[BatchResult], None] | None]:
    if not enabled or total_files == 0:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("parsing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task("files", total=total_files)
        yield lambda result: progress.advance(task, result.files)
