"""Read and parse batches of input files into staging Parquet, on all cores.

Each batch is parsed into column lists (no per-row dicts) and written as one
Parquet file per staging table, temp-then-rename, so a batch is either
complete on disk or absent.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import os
import stat
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from functools import lru_cache
from multiprocessing import get_context
from pathlib import Path

import pyarrow as pa

from pipeline.core.faults import crash_point
from pipeline.core.interrupt import ignore_in_worker
from pipeline.core.locations import is_url
from pipeline.core.storage import save_parquet
from pipeline.extract.discover import InputFile, Listed, listed
from pipeline.parse.document import ParsedEvent, Rejected, parse_document
from pipeline.parse.domains import registered_domain
from pipeline.parse.ids import tag_id, tag_key
from pipeline.parse.schema import PLACE, STAGING
from pipeline.places import event_places

DAY_INDEX = "day_index"
UNREADABLE = "unreadable"
VANISHED = "vanished"
BAD_FILE_NAME = "bad_file_name"
NOT_A_FILE = "not_a_regular_file"
TOO_LARGE = "too_large"
OUTSIDE_INPUT = "outside_input"
# Real event documents are a few KB; 32 MiB still admits 100,000 related items in one file
# while keeping a hostile file from taking a worker's memory.
MAX_DOCUMENT_BYTES = 32 * 2**20
# Files of a batch held open and announced to the kernel ahead of the one being parsed,
# refilled in bursts of half as many (measured on 98k files evicted from the page cache:
# 128 -> 5.6 s, 256 -> 5.5 s, 512 -> 5.2-5.4 s, 1024 -> 5.2 s, the whole batch -> 5.3-5.5 s).
# Capped by a quarter of the process's descriptor limit: each one is a descriptor.
READ_AHEAD = 512
_FADVISE = hasattr(os, "posix_fadvise")


class _Unusable(Exception):
    def __init__(self, reason: str, detail: str, sha: str | None = None, size: int | None = None) -> None:
        super().__init__(detail)
        self.reason, self.detail, self.sha, self.size = reason, detail, sha, size


def read_document(os_path: str, root: str = "") -> bytes:
    """The bytes of a regular file, or `_Unusable` with the reason (see `_read_open`); with a
    `root`, a symbolic link is followed only to a file inside it (see `_open`)."""
    if is_url(os_path):
        return _read_url(os_path)
    return _read_open(_open(os_path, _Inside(root)))


class _Inside:
    """Whether a path resolves inside the input root (resolved once, on first use)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self._real: str | None = None

    def __call__(self, path: str) -> bool:
        if not self.root:
            return True
        if self._real is None:
            self._real = os.path.realpath(self.root)
        real = os.path.realpath(path)
        return real == self._real or real.startswith(self._real.rstrip(os.sep) + os.sep)


def read_ahead(
    os_paths: Sequence[str], window: int = READ_AHEAD, root: str = ""
) -> Iterator[bytes | _Unusable]:
    """Each file's bytes (or the `_Unusable` it raised), in order, while up to `window` of the
    next files are already open and announced to the kernel (POSIX_FADV_WILLNEED), so the
    disk works while this process parses. Reading one file at a time left a core idle on every
    disk read: staging 98k files evicted from the page cache took 10.0 s, and 5.2-5.4 s with
    read-ahead (4.9-5.1 s when they were cached). Announcements go out in bursts of half the
    window, which lets the kernel merge neighbouring reads: announcing one file per file read
    (same window) took 6.3-6.6 s."""
    pending: deque[int | str | _Unusable] = deque()
    announced = 0
    inside = _Inside(root)

    def announce(count: int) -> None:
        nonlocal announced
        for path in os_paths[announced : announced + count]:
            if is_url(path):
                pending.append(path)
                continue
            try:
                pending.append(_open(path, inside))
            except _Unusable as exc:
                pending.append(exc)
        announced += count

    try:
        window = max(2, min(window, _descriptor_budget()))
        announce(window)
        while pending:
            if len(pending) <= window // 2 and announced < len(os_paths):
                announce(window - len(pending))
            item = pending.popleft()
            if isinstance(item, _Unusable):
                yield item
                continue
            try:
                yield _read_url(item) if isinstance(item, str) else _read_open(item)
            except _Unusable as exc:
                yield exc
    finally:
        for item in pending:
            if isinstance(item, int):
                os.close(item)


def _descriptor_budget() -> int:
    """A quarter of the soft limit on open descriptors (a common default is 1024)."""
    try:
        import resource
    except ImportError:  # not a POSIX system
        return READ_AHEAD
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return READ_AHEAD if soft == resource.RLIM_INFINITY else soft // 4


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _open(os_path: str, inside: Callable[[str], bool] = lambda path: True) -> int:
    """A read-only descriptor, opened non-blocking (a FIFO or device named `*.md` can never
    block a worker), with the kernel told to start reading the file in.

    The name is opened without following a symbolic link; a link is followed only when the
    file it resolves to is inside the input root (`inside`). One that leads outside (to
    /etc/passwd, /proc/self/environ, another user's files) is `outside_input`: nothing of it
    is read, hashed or quoted."""
    try:
        fd = os.open(os_path, os.O_RDONLY | os.O_NONBLOCK | _NOFOLLOW)
    except FileNotFoundError as exc:
        raise _Unusable(VANISHED, "the file disappeared before it could be read") from exc
    except OSError as exc:
        if exc.errno != errno.ELOOP or not _NOFOLLOW:
            raise _Unusable(UNREADABLE, exc.strerror or str(exc)) from exc
        fd = _open_link(os_path, inside)
    if _FADVISE:
        with suppress(OSError):  # a pipe or device: only a hint, nothing to read ahead
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
    return fd


def _open_link(os_path: str, inside: Callable[[str], bool]) -> int:
    """Open a symbolic link's target when it is inside the input root."""
    if not inside(os_path):
        raise _Unusable(OUTSIDE_INPUT, "a symbolic link to a file outside the input folder")
    try:
        return os.open(os.path.realpath(os_path), os.O_RDONLY | os.O_NONBLOCK | _NOFOLLOW)
    except FileNotFoundError as exc:
        raise _Unusable(VANISHED, "a symbolic link to a file that does not exist") from exc
    except OSError as exc:
        raise _Unusable(UNREADABLE, exc.strerror or str(exc)) from exc


def _read_open(fd: int) -> bytes:
    """The bytes of the regular file open at `fd`, which is closed. Checked with fstat; read
    with one `os.read` of the size fstat gave plus one byte (a short read is the end of a
    regular file): a file object's `read()` costs two more system calls, 4 µs of the ~100 µs
    a file takes (measured over 40k files of the benchmark archive)."""
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _Unusable(NOT_A_FILE, "not a regular file (a pipe, device or socket)")
        if st.st_size > MAX_DOCUMENT_BYTES:
            # Decided from the size alone: hashing a 1 TiB sparse file (nothing on disk) would
            # take most of an hour; a rejected file's hash is not needed to account for it.
            raise _Unusable(TOO_LARGE, _too_large(st.st_size), None, st.st_size)
        data = os.read(fd, st.st_size + 1)
        if len(data) <= st.st_size:
            return data
        chunks = [data]  # the file grew since fstat: read on to its end
        while chunk := os.read(fd, 2**20):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise _Unusable(UNREADABLE, exc.strerror or str(exc)) from exc
    finally:
        os.close(fd)


def _read_url(url: str) -> bytes:
    """A remote document through fsspec (pipeline/locations.py), with the same size limit."""
    import fsspec

    try:
        with fsspec.open(url, "rb") as handle:
            size = getattr(handle, "size", None)
            if isinstance(size, int) and size > MAX_DOCUMENT_BYTES:
                raise _Unusable(TOO_LARGE, _too_large(size), None, size)
            data = handle.read(MAX_DOCUMENT_BYTES + 1)
            if len(data) > MAX_DOCUMENT_BYTES:
                raise _Unusable(TOO_LARGE, _too_large(None), None, None)
            return data
    except FileNotFoundError as exc:
        raise _Unusable(VANISHED, "the file disappeared before it could be read") from exc
    except OSError as exc:
        raise _Unusable(UNREADABLE, exc.strerror or str(exc)) from exc


def _too_large(size: int | None) -> str:
    shown = f"{size} bytes" if size is not None else "more bytes than that"
    return f"{shown}; the limit is {MAX_DOCUMENT_BYTES} (rejected from its size, not read)"


@dataclass(frozen=True)
class BatchResult:
    batch: str
    files: int
    parsed: int
    rejected: int
    skipped: int


@lru_cache(maxsize=200_000)
def _tag_id_of(context: str) -> str:
    return tag_id(tag_key(context))


class _Columns:
    """Column lists for every staging table of one batch."""

    def __init__(self) -> None:
        self.cols: dict[str, dict[str, list[object]]] = {
            name: {f.name: [] for f in schema} for name, schema in STAGING.items()
        }
        # Each event's texts, scanned for places when the batch is written (`places`).
        self.texts: list[tuple[str, str | None, list[str]]] = []

    def file(
        self,
        path: str,
        sha: str | None,
        size: int | None,
        status: str,
        reason: str | None,
        detail: str | None,
        event_id: str | None,
    ) -> None:
        c = self.cols["stg_files"]
        c["file_path"].append(path)
        c["content_sha256"].append(sha)
        c["bytes"].append(size)
        c["status"].append(status)
        c["reason"].append(reason)
        c["detail"].append(detail)
        c["event_id"].append(event_id)

    def event(self, path: str, sha: str, ev: ParsedEvent) -> None:
        c = self.cols["stg_events"]
        c["file_path"].append(path)
        c["event_id"].append(ev.event_id)
        c["event_date"].append(ev.event_date)
        c["title"].append(ev.title)
        c["summary"].append(ev.summary)
        c["slug"].append(ev.slug)
        c["cover_image_url"].append(ev.cover_image_url)
        c["source_count"].append(len(ev.sources))
        c["related_count"].append(len(ev.relations))
        c["content_sha256"].append(sha)

        s = self.cols["stg_sources"]
        for src in ev.sources:
            host = src.host
            s["file_path"].append(path)
            s["position"].append(src.position)
            s["name"].append(src.name)
            s["url"].append(src.url)
            s["host"].append(host)
            s["registered_domain"].append(registered_domain(host) if host else None)

        r = self.cols["stg_relations"]
        rc = self.cols["stg_relation_contexts"]
        for rel in ev.relations:
            r["file_path"].append(path)
            r["position"].append(rel.position)
            r["related_event_id"].append(rel.related_event_id)
            r["related_title"].append(rel.related_title)
            r["related_date"].append(rel.related_date)
            for context in rel.contexts:
                rc["file_path"].append(path)
                rc["position"].append(rel.position)
                rc["related_event_id"].append(rel.related_event_id)
                rc["context"].append(context)
                rc["tag_id"].append(_tag_id_of(context))

        self.texts.append((ev.title, ev.summary, [c for rel in ev.relations for c in rel.contexts]))

        q = self.cols["stg_quarantine"]
        for line in ev.quarantine:
            q["file_path"].append(path)
            q["section"].append(line.section)
            q["line_number"].append(line.line_number)
            q["raw"].append(line.raw)
            q["reason"].append(line.reason)

    def places(self, few: bool = False) -> None:
        """The countries each event of the batch mentions (stg_events' `places`, one list per
        row). Found in one pass over the batch's texts after parsing it, not event by event
        between parses: the scan's regex and dictionaries stay in the CPU's caches (staging
        40,000 files in one process: 106.5 -> 96.3 us per file, about 40% of what places cost
        the parse)."""
        offsets, codes, found, matched = [0], [], [], []
        for title, summary, contexts in self.texts:
            for code, where, text in event_places(title, summary, contexts, few):
                codes.append(code)
                found.append(where)
                matched.append(text)
            offsets.append(len(codes))
        self.texts.clear()
        fields = [pa.array(column, pa.string()) for column in (codes, found, matched)]
        self.cols["stg_events"]["places"] = pa.ListArray.from_arrays(
            pa.array(offsets, pa.int32()), pa.StructArray.from_arrays(fields, fields=list(PLACE))
        )

    def write(self, directory: Path, batch: str, few: bool = False) -> None:
        """One Parquet file per staging table, each row tagged with the batch key; written
        temp-then-rename, stg_files last, so a batch whose stg_files exists is complete.
        `few`: the run's only batch (see `event_places`)."""
        self.places(few)
        for name, schema in sorted(STAGING.items(), key=lambda item: item[0] == "stg_files"):
            table = pa.table(self.cols[name], schema=schema)
            table = table.append_column("batch", pa.array([batch] * table.num_rows, pa.string()))
            save_parquet(directory / f"{name}-{batch}.parquet", table, compression="zstd")
            if name == "stg_sources":
                crash_point("stage:partial-batch")


def stage_batch(
    batch: str, files: Sequence[InputFile], directory: Path, today: dt.date, few: bool = False
) -> BatchResult:
    """Read, hash and parse one batch of files; write its staging Parquet files. `few`: the
    run's only batch, staged in its own process (places then skip compiling a regex that
    pays off only over many batches: 0.45 s of a run adding 100 files)."""
    cols = _Columns()
    parsed = rejected = skipped = 0
    root = files[0].root if files else ""
    for f, data in zip(files, read_ahead([f.os_path for f in files], root=root), strict=True):
        if isinstance(data, _Unusable):
            cols.file(f.rel_path, data.sha, data.size, "rejected", data.reason, data.detail, None)
            rejected += 1
            continue
        sha = hashlib.sha256(data).hexdigest()
        if f.bad_name:
            cols.file(
                f.rel_path,
                sha,
                len(data),
                "rejected",
                BAD_FILE_NAME,
                "the file name is not valid UTF-8",
                None,
            )
            rejected += 1
            continue
        if f.rel_path == "index.md" or f.rel_path.endswith("/index.md"):
            cols.file(f.rel_path, sha, len(data), "skipped", DAY_INDEX, "a day page, not an event", None)
            skipped += 1
            continue
        result = parse_document(data, f.rel_path, today)
        if isinstance(result, Rejected):
            cols.file(f.rel_path, sha, len(data), "rejected", result.reason, result.detail, None)
            rejected += 1
            continue
        cols.file(f.rel_path, sha, len(data), "parsed", None, None, result.event_id)
        cols.event(f.rel_path, sha, result)
        parsed += 1
    cols.write(directory, batch, few)
    return BatchResult(batch, len(files), parsed, rejected, skipped)


def stage_listed(batch: str, rows: Listed, directory: Path, today: dt.date, few: bool = False) -> BatchResult:
    """`stage_batch` over rows of a discover listing (what a worker process is sent)."""
    return stage_batch(batch, rows.files(), directory, today, few)


def stage_all(
    files: Sequence[InputFile] | pa.Table,
    directory: Path,
    today: dt.date,
    batch_size: int,
    workers: int,
    on_batch: Callable[[BatchResult], None] | None = None,
    prefix: str = "b",
    executor: Executor | None = None,
) -> list[BatchResult]:
    """Stage every file in batches keyed `<prefix>-<n>`; a process pool when there is more than
    one batch. An empty file list still writes one (empty) batch, so the staging globs match.

    `files` may be a discover listing (Arrow). Batches are made as they are submitted, and
    only a few are in flight at a time, so a million files never exist as Python objects at
    once (they would stay in the main process's heap for the rest of the run). A batch is
    sent as a `Listed` (plain strings), not as an Arrow slice: pickling a slice sends the
    buffers of the whole listing (a 1M-file build spent minutes and gigabytes on that).

    With `executor` (a Dask cluster's, pipeline/cluster.py) the batches run there instead,
    `workers` of them in flight per worker slot; `directory` must then be shared storage."""
    directory.mkdir(parents=True, exist_ok=True)
    total = files.num_rows if isinstance(files, pa.Table) else len(files)
    count = max(1, -(-total // batch_size))
    keys = [f"{prefix}-{n:06d}" for n in range(count)]

    def batch(n: int) -> tuple[Callable[..., BatchResult], Listed | list[InputFile]]:
        if isinstance(files, pa.Table):
            return stage_listed, listed(files, n * batch_size, batch_size)
        return stage_batch, list(files[n * batch_size : (n + 1) * batch_size])

    results: list[BatchResult] = []
    if executor is not None:
        return _run_on(executor, 2 * workers, keys, batch, directory, today, results, on_batch)
    if workers == 1 or count == 1:
        for n, key in enumerate(keys):
            stage, rows = batch(n)
            results.append(stage(key, rows, directory, today, count == 1))
            crash_point("parse:first-batch")
            if on_batch:
                on_batch(results[-1])
        return results
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=get_context("spawn"), initializer=ignore_in_worker
    )
    try:
        return _run_on(pool, 2 * workers, keys, batch, directory, today, results, on_batch)
    except BaseException:  # interrupted or failed: batches not started yet are dropped
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)


def _run_on(
    pool: Executor,
    window: int,
    keys: list[str],
    batch: Callable[[int], tuple[Callable[..., BatchResult], Listed | list[InputFile]]],
    directory: Path,
    today: dt.date,
    results: list[BatchResult],
    on_batch: Callable[[BatchResult], None] | None,
) -> list[BatchResult]:
    """Submit the batches with at most `window` in flight; results in batch order."""
    in_flight: deque[Future[BatchResult]] = deque()
    for n, key in enumerate(keys):
        stage, rows = batch(n)
        in_flight.append(pool.submit(stage, key, rows, directory, today))
        if len(in_flight) >= window:
            _collect_one(in_flight, results, on_batch)
    while in_flight:
        _collect_one(in_flight, results, on_batch)
    return results


def _collect_one(
    in_flight: deque[Future[BatchResult]],
    results: list[BatchResult],
    on_batch: Callable[[BatchResult], None] | None,
) -> None:
    results.append(in_flight.popleft().result())
    crash_point("parse:first-batch")
    if on_batch:
        on_batch(results[-1])
