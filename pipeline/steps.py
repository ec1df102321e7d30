"""The run's stages as library functions, each returning a typed result; the Prefect flow
(flows/news_etl.py) only composes them.

What a run rebuilds is decided once, here, in `plan_run`: whether every file is parsed
again (a full refresh, another parser), which publication an incremental build starts from
(the one the committed manifest describes, built by this code), and whether that
publication's parts passed the same expectation suites.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core.arrow import among
from pipeline.core.cluster import DaskTarget, Pool, dask_pool
from pipeline.core.config import OutputLayout, RunConfig
from pipeline.core.faults import crash_point
from pipeline.core.storage import save_parquet
from pipeline.core.tables import row_count
from pipeline.extract.discover import (
    ROOT_KEY,
    ListingDelta,
    apply_delta,
    discover_table,
    known_rows,
    listing_delta,
    read_listing,
    release_arrow_memory,
    write_listing,
)
from pipeline.parse.progress import batch_progress
from pipeline.parse.stage import stage_all
from pipeline.publish import runs
from pipeline.publish.catalog import current_run_id, is_complete
from pipeline.transform import incremental
from pipeline.transform.normalize import BuildBase

# A run whose `events` would hold fewer than this share of the current publication's events
# is refused (an unmounted share looks like an empty archive), unless allowed.
SHRINK_FLOOR = 0.9


class ShrinkRefused(Exception):
    """The new publication would lose too many events; nothing was published."""


def check_state(layout: OutputLayout) -> list[str]:
    """Set aside state that cannot be read (the manifest, the run log) and rebuild it; one
    warning per file set aside. The registry does the same when it is loaded."""
    warnings = []
    current = current_run_id(layout)
    publication = layout.publication(current) if current else None
    for warning in (
        incremental.check_manifest(layout.manifest),
        runs.check_log(layout.run_log, publication if publication and is_complete(publication) else None),
    ):
        if warning:
            warnings.append(warning)
    return warnings


@dataclass(frozen=True)
class RunPlan:
    """What this run rebuilds, decided once before parsing."""

    current: str | None  # the current publication's run id
    reparse_all: str | None  # why every file is parsed again; None: only new and changed files
    base: BuildBase | None  # the publication an incremental build starts from; None: a full build
    checked: bool  # the base's parts passed this run's expectation suites
    expectations: str  # fingerprints this run records in its manifest
    code: str
    staged_on: str | None = None  # the day the committed manifest's files were staged against


def plan_run(config: RunConfig) -> RunPlan:
    layout = config.layout
    current = current_run_id(layout)
    origin = incremental.manifest_origin(layout.manifest)
    expectations = incremental.fingerprint(config.expectations_dir)
    code = incremental.code_fingerprint(config.build_options)
    reparse = None
    if config.full_refresh:
        reparse = "a full refresh was asked for"
    elif origin.parser is not None and origin.parser != incremental.parser_fingerprint():
        reparse = "the parser changed since the last run: parsing every file again"
    base = None
    if (
        reparse is None
        and current is not None
        and origin.run_id == current
        and origin.code == code
        and is_complete(layout.publication(current))
    ):
        base = BuildBase(layout.publication(current), layout.manifest)
    return RunPlan(
        current,
        reparse,
        base,
        base is not None and origin.expectations == expectations,
        expectations,
        code,
        origin.today,
    )


def warm_up_validation(config: RunConfig) -> None:
    """Start the validation process now, unless it runs already: it imports Great Expectations
    and builds its context on another core while this one lists, parses and normalizes
    (pipeline/quality/worker.py)."""
    from pipeline.quality import worker

    worker.start(config.expectations_dir, config.layout.validation / "docs")


def discover_input(config: RunConfig, listing: Path, changed: list[str] | None = None) -> int:
    """List (and stat) every *.md file under the input into the run's listing; the count.
    With `changed` (paths a watcher or a mirroring tool reports), only those are looked at:
    the rest of the listing is the incremental manifest's (no walk over the archive). Without
    a manifest to start from, or for a remote input, the archive is listed whole."""
    known = incremental.read_manifest(config.layout.manifest) if changed is not None else None
    if known is not None and known.num_rows and isinstance(config.input_dir, Path):
        # Only the changed paths' rows are written: the parse takes the rest from the
        # manifest (a whole listing cost 0.9 s of a one-file batch at a million files).
        delta = listing_delta(config.input_dir, changed or [])
        write_listing(delta.to_table(config.input_dir), listing)
        gone = pc.sum(delta.unlisted(known["file_path"])).as_py() or 0
        count = known.num_rows - gone + delta.fresh.num_rows
    else:
        files = discover_table(config.input_dir)
        write_listing(files, listing)
        count = files.num_rows
        del files
        release_arrow_memory()
    crash_point("discover:listed")
    return count


@contextmanager
def parse_pool(config: RunConfig) -> Iterator[Pool | None]:
    """The Dask cluster's executor with --dask; None means local worker processes."""
    if config.dask is None:
        yield None
        return
    with dask_pool(DaskTarget.parse(config.dask)) as pool:
        yield pool


@dataclass(frozen=True)
class ParseInfo:
    files_read: int
    unchanged: bool  # same files, same content, same code and suites as the current publication
    warnings: list[str] = field(default_factory=list)


def parse_changes(
    config: RunConfig, plan: RunPlan, listing: Path, run_id: str, next_manifest: Path
) -> ParseInfo:
    """Parse new and changed files (all of them when the plan says so) into staging batches
    and write the next manifest. When nothing changed, the manifest is committed at once and
    the run needs no new publication."""
    layout = config.layout
    files = read_listing(listing)
    state = incremental.stored.read(layout.manifest)
    previous = state.table
    delta = ListingDelta.of(files)
    if delta is not None and plan.reparse_all:  # every file is parsed: list them all
        assert isinstance(config.input_dir, Path)  # a delta is only listed for a local input
        files = apply_delta(config.input_dir, _known(previous), delta)
        delta = None
    live = incremental.live_batches(previous)
    incremental.collect_garbage(layout.staging, live)
    crash_point("parse:collected-garbage")
    warnings = []
    if plan.reparse_all:
        previous = incremental.MANIFEST_SCHEMA.empty_table()
        state = incremental.Manifest(previous, None)
        broken: set[str] = set()
    else:
        broken = incremental.broken_batches(layout.staging, live)
        if broken:
            warnings.append(
                f"{len(broken)} staging batch(es) in {layout.staging} could not be read; "
                "their files are parsed again"
            )
    known = previous
    if delta is not None:  # the plan needs only the known entries of the paths it looks at
        files = _delta_listing(config, previous, delta, broken, plan.staged_on)
        known = previous.filter(among(previous["file_path"], files["rel_path"]))
    todo, dropped_rows = incremental.planned(files, known, config.today, broken, plan.staged_on)
    # Validation's start-up (GX import and context, ~2 s) runs in its own process during the
    # parse and normalize whenever there is something to validate (unless `run` started it
    # already): at 1M events a run adding 100 files parsed and normalized for 6.6 s, then
    # waited 4 s for Great Expectations.
    if todo.num_rows or plan.base is None:
        warm_up_validation(config)
    with batch_progress(todo.num_rows, enabled=config.show_progress) as advance, parse_pool(config) as pool:
        results = stage_all(
            todo,
            layout.staging,
            config.today,
            config.batch_size,
            pool.slots if pool else config.workers,
            advance,
            prefix=run_id,
            executor=pool.executor if pool else None,
        )
    crash_point("parse:all-batches")
    manifest, changes, same, dropped, added = incremental.next_manifest(
        files,
        todo,
        previous,
        layout.staging,
        [r.batch for r in results],
        with_changes=plan.base is not None,
        delta=delta,
        dropped_rows=dropped_rows if delta is None else None,  # rows of `known`, not `previous`
    )
    if changes is not None:  # the incremental build's list of changed files
        save_parquet(incremental.changes_path(next_manifest), changes)
    unchanged = plan.base is not None and plan.checked and not broken and same
    origin = plan.current if unchanged and plan.current else run_id
    # An incremental run's manifest is written while it normalizes (the publish waits for it),
    # as an amendment of the committed base when it can be; a full build's whole and at once
    # (its memory would add to the build's).
    amendment = None
    if plan.base is not None and state.amendment is not None:
        amendment = state.amendment.then(dropped, added)
    incremental.write_manifest(
        manifest,
        next_manifest,
        origin,
        plan.expectations,
        plan.code,
        config.today,
        background=plan.base is not None and not unchanged,
        amendment=amendment,
    )
    crash_point("parse:manifest-written")
    if unchanged:
        commit_manifest(layout, next_manifest)
    count = todo.num_rows
    del files, previous, state, todo, dropped_rows, manifest, changes, dropped, added, amendment
    release_arrow_memory()
    return ParseInfo(count, unchanged, warnings)


def _known(manifest: pa.Table) -> pa.Table:
    """The manifest's files as a previous listing (rel_path, size, mtime_ns)."""
    return manifest.select(["file_path", "size", "mtime_ns"]).rename_columns(["rel_path", "size", "mtime_ns"])


def _delta_listing(
    config: RunConfig, previous: pa.Table, delta: ListingDelta, broken: set[str], staged_on: str | None
) -> pa.Table:
    """The listing rows a delta run's plan looks at: the delta's fresh rows, and the known
    files it does not replace that are parsed again unchanged (`incremental.stale`)."""
    assert isinstance(config.input_dir, Path)
    again = pc.and_(
        incremental.stale(previous, config.today, broken, staged_on),
        pc.invert(delta.unlisted(previous["file_path"])),
    )
    retried = known_rows(config.input_dir, _known(previous.filter(again)))
    rows = pa.concat_tables([delta.fresh, retried]).sort_by("rel_path")
    return rows.replace_schema_metadata({ROOT_KEY: os.fsencode(str(config.input_dir))})


def manifest_written(next_manifest: Path) -> None:
    """Wait for the run's manifest, if it is being written in the background."""
    incremental.manifest_written(next_manifest)


def forget_manifest(next_manifest: Path) -> None:
    """Let go of the run's manifest if it was not committed (no writer left on it after)."""
    incremental.manifest_forgotten(next_manifest)


def commit_manifest(layout: OutputLayout, next_manifest: Path) -> None:
    """Make the run's manifest the committed one and drop staging batches it does not name."""
    committed = incremental.stored.commit(next_manifest, layout.manifest)
    crash_point("publish:manifest-committed")
    if committed is not None:  # this process wrote it: its batches without reading it back
        live = incremental.live_batches(committed.table)
    else:
        live = incremental.committed_batches(layout.manifest)
    incremental.collect_garbage(layout.staging, live)


def check_shrink(config: RunConfig, plan: RunPlan, publication: Path) -> None:
    """Refuse a publication holding fewer than SHRINK_FLOOR of the current one's events."""
    if config.allow_shrink or plan.current is None:
        return
    current = config.layout.publication(plan.current)
    if not is_complete(current):
        return
    before, after = row_count(current, "events"), row_count(publication, "events")
    if after < SHRINK_FLOOR * before:
        raise ShrinkRefused(
            f"the new publication would hold {after} events, fewer than {SHRINK_FLOOR:.0%} of the "
            f"current publication's {before}; nothing published (an empty or half-mounted input "
            "folder?). Run with --allow-shrink if the archive really shrank"
        )


def file_counts(
    record: runs.RunRecord,
    publication: Path,
    base: Path | None = None,
    rewritten: Sequence[str] | None = None,
) -> dict[str, dict[str, int]]:
    """Fill the record's per-status file counts from the publication; {status: {reason: n}}.
    `base` and `rewritten`: see `runs.file_statuses`."""
    statuses = runs.file_statuses(publication, base, rewritten)
    record.parsed = sum(statuses.get("parsed", {}).values())
    record.rejected = sum(statuses.get("rejected", {}).values())
    record.skipped = sum(statuses.get("skipped", {}).values())
    record.duplicates = sum(statuses.get("duplicate", {}).values())
    return statuses


def empty_listing() -> pa.Table:
    from pipeline.extract.discover import LISTING_SCHEMA

    return LISTING_SCHEMA.empty_table()
