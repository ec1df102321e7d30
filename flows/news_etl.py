"""news-etl: discover -> parse -> normalize -> validate -> publish, each stage a Prefect task.

The flow only composes `pipeline` functions; tasks pass paths and counts, never
DataFrames. Retries are on the I/O tasks only. Nothing is cached between runs
(NO_CACHE): incrementality is the pipeline's own state, not Prefect's cache.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from pipeline import incremental, runs
from pipeline import publish as publishing
from pipeline.cluster import DaskTarget, Pool, dask_pool
from pipeline.config import DEFAULT_INPUT, DEFAULT_OUTPUT, RunConfig
from pipeline.discover import discover_table, read_listing, release_arrow_memory, write_listing
from pipeline.faults import checkpoint
from pipeline.lock import output_lock
from pipeline.normalize import NormalizeResult, Previous, normalize
from pipeline.progress import batch_progress
from pipeline.report import Validation, write_report
from pipeline.stage import stage_all
from pipeline.storylines import StorylineRule
from pipeline.tables import runs_file
from pipeline.validate import ValidationReport, validate_publication


class ValidationFailed(Exception):
    """Critical expectations failed; nothing was published."""

    def __init__(self, report: ValidationReport) -> None:
        self.report = report
        lines = [o.line() for o in report.critical_failures]
        super().__init__(
            f"validation failed ({len(lines)} critical expectations); nothing published\n" + "\n".join(lines)
        )


# --- Discover: list the archive's files --------------------------------------------------------
@task(name="discover-files", retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def discover_files(config: RunConfig, listing: Path) -> int:
    """List (and stat) every *.md file under the input into the run's file listing."""
    files = discover_table(config.input_dir)
    write_listing(files, listing)
    checkpoint("discover:listed")
    count = files.num_rows
    del files
    release_arrow_memory()
    return count


# --- Parse: new and changed documents to staging Parquet --------------------------------------
@contextmanager
def parse_pool(config: RunConfig) -> Iterator[Pool | None]:
    """The Dask cluster's executor with --dask; None means local worker processes."""
    if config.dask is None:
        yield None
        return
    with dask_pool(DaskTarget.parse(config.dask)) as pool:
        yield pool


@task(name="parse-documents", cache_policy=NO_CACHE)
def parse_documents(config: RunConfig, listing: Path, run_id: str, next_manifest: Path) -> int:
    """Parse new and changed files (all on a full refresh), on all cores, into staging batches."""
    layout = config.layout
    files = read_listing(listing)
    previous = incremental.read_manifest(layout.manifest)
    incremental.collect_garbage(layout.staging, incremental.live_batches(previous))
    checkpoint("parse:collected-garbage")
    if config.full_refresh:
        previous = incremental.MANIFEST_SCHEMA.empty_table()
    elif previous.num_rows and not incremental.same_parser(layout.manifest):
        get_run_logger().info("the parser changed since the last run: parsing every file again")
        previous = incremental.MANIFEST_SCHEMA.empty_table()
    todo = incremental.plan(files, previous)
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
    checkpoint("parse:all-batches")
    manifest = incremental.next_manifest(files, todo, previous, layout.staging, [r.batch for r in results])
    incremental.write_manifest(
        manifest, next_manifest, run_id, incremental.fingerprint(config.expectations_dir)
    )
    checkpoint("parse:manifest-written")
    count = todo.num_rows
    del files, previous, todo, manifest
    release_arrow_memory()
    return count


# --- Normalize: staging to the published tables -----------------------------------------------
@task(name="normalize-tables", cache_policy=NO_CACHE)
def normalize_tables(
    config: RunConfig, live: Path, publication: Path, work: Path, previous: Previous | None
) -> NormalizeResult:
    """Derive the tables from the live staged rows: only what changed since `previous`, if any."""
    return normalize(
        config.layout.staging,
        publication,
        work,
        live=live,
        previous=previous,
        threads=config.workers,
        storylines=config.storylines,
    )


# --- Validate: Great Expectations over the new publication ------------------------------------
@task(name="validate-tables", cache_policy=NO_CACHE)
def validate_tables(
    config: RunConfig,
    publication: Path,
    run_id: str,
    files_seen: int,
    rewritten: dict[str, list[str]] | None,
) -> ValidationReport:
    """Run the expectation suites over the rewritten parts; critical failures block the publish."""
    return validate_publication(
        publication,
        config.layout.validation,
        run_id,
        files_seen,
        config.today,
        expectations_dir=config.expectations_dir,
        threads=config.workers,
        rewritten=rewritten,
    )


# --- Report: the HTML run report -----------------------------------------------------------------
@task(name="write-report", cache_policy=NO_CACHE)
def write_run_report(config: RunConfig, publication: Path, run_id: str, report: ValidationReport) -> Path:
    """Charts of the new tables and the validation outcome, as one offline HTML page."""
    validation = Validation(
        passed=report.passed,
        checked=len(report.outcomes),
        critical_failures=[o.line() for o in report.critical_failures],
        warnings=[o.line() for o in report.warnings],
    )
    return write_report(publication, config.layout.report, run_id, validation)


# --- Publish: make the publication current -----------------------------------------------------
@task(name="publish-tables", retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def publish_tables(config: RunConfig, run_id: str, next_manifest: Path) -> Path:
    """Swap the catalog and `current` to the new publication, then commit the incremental state."""
    layout = config.layout
    publication = publishing.publish(layout, run_id, config.keep_publications)
    if next_manifest.exists():
        os.replace(next_manifest, layout.manifest)
    checkpoint("publish:manifest-committed")
    incremental.collect_garbage(layout.staging, incremental.committed_batches(layout.manifest))
    return publication


def incremental_base(config: RunConfig) -> tuple[Previous | None, bool]:
    """(The publication to build on, if any; whether its checks still hold for unchanged parts).

    Only the publication the committed manifest was built for qualifies (not one made current
    by a rollback, nor one of an older layout, nor one whose rows another parser staged), and
    never on a full refresh. Its parts count as checked only if they passed the same
    expectation suites as this run's."""
    layout = config.layout
    current = publishing.current_run_id(layout)
    origin = incremental.manifest_origin(layout.manifest)
    if config.full_refresh or current is None or origin.run_id != current:
        return None, False
    if origin.parser != incremental.parser_fingerprint():
        return None, False
    if not publishing.is_complete(layout.publication(current)):
        return None, False
    checked = origin.expectations == incremental.fingerprint(config.expectations_dir)
    return Previous(layout.publication(current), layout.manifest), checked


@flow(name="news-etl", log_prints=False)
def news_etl(
    input: str = str(DEFAULT_INPUT),
    output: str = str(DEFAULT_OUTPUT),
    full_refresh: bool = False,
    wait_for_lock: bool = False,
    workers: int | None = None,
    batch_size: int = 2000,
    show_progress: bool = False,
    expectations: str | None = None,
    storyline_max_tag_events: int = StorylineRule.max_tag_events,
    storyline_max_span_days: int = StorylineRule.max_tag_span_days,
    dask: str | None = None,
) -> dict[str, Any]:
    """Build, validate and publish the news tables from an event archive (incrementally by default)."""
    options: dict[str, Any] = {
        "full_refresh": full_refresh,
        "batch_size": batch_size,
        "storylines": StorylineRule(storyline_max_tag_events, storyline_max_span_days),
        "dask": dask,
    }
    if workers:
        options["workers"] = workers
    if expectations:
        options["expectations_dir"] = Path(expectations)
    config = RunConfig(input, output, show_progress=show_progress, **options)
    layout = config.layout
    with output_lock(layout.lock, wait=wait_for_lock):
        publishing.clean_leftovers(layout)
        started = dt.datetime.now(dt.UTC)
        record = runs.RunRecord(
            run_id=runs.new_run_id(started), started_at=started, full_refresh=full_refresh
        )
        work = layout.run_work(record.run_id)
        publication = layout.publication(record.run_id)
        next_manifest = work / "manifest.parquet"
        publishing_started = False
        try:
            clock = time.perf_counter()
            record.files_seen = discover_files(config, work / "discovered.arrow")
            record.seconds_discover, clock = time.perf_counter() - clock, time.perf_counter()
            listing = work / "discovered.arrow"
            record.files_read = parse_documents(config, listing, record.run_id, next_manifest)
            record.seconds_parse, clock = time.perf_counter() - clock, time.perf_counter()
            previous, checked = incremental_base(config)
            normalized = normalize_tables(config, next_manifest, publication, work, previous)
            counts = normalized.counts
            record.seconds_normalize, clock = time.perf_counter() - clock, time.perf_counter()
            statuses = runs.file_statuses(publication)
            record.events = counts["events"]
            record.parsed = sum(statuses.get("parsed", {}).values())
            record.rejected = sum(statuses.get("rejected", {}).values())
            record.skipped = sum(statuses.get("skipped", {}).values())
            record.duplicates = sum(statuses.get("duplicate", {}).values())
            record.quarantined = counts["quarantine"]
            record.events_added = normalized.added
            record.events_changed = normalized.changed
            record.events_removed = normalized.removed
            report = validate_tables(
                config,
                publication,
                record.run_id,
                record.files_seen,
                normalized.rewritten if checked else None,
            )
            record.seconds_validate = time.perf_counter() - clock
            checkpoint("validate:done")
            record.validation_passed = report.passed
            record.finished_at = dt.datetime.now(dt.UTC)
            record.published = report.passed
            page = write_run_report(config, publication, record.run_id, report)
            log = runs.append(layout.run_log, record)
            if not report.passed:
                publishing.discard(publication)
                _report(record, report, None, page)
                raise ValidationFailed(report)
            runs.write_table(log, runs_file(publication))
            checkpoint("publish:runs-written")
            publishing_started = True
            publish_tables(config, record.run_id, next_manifest)
        except BaseException:
            # Once publishing started the catalog may already point at this (complete)
            # publication: keep it; pruning removes it in time.
            if not publishing_started:
                publishing.discard(publication)
            raise
        finally:
            publishing.discard(work)
        _report(record, report, layout.catalog, page)
        get_run_logger().info("published %s events to %s", record.events, layout.catalog)
        return asdict(record) | {
            "catalog": str(layout.catalog),
            "publication": str(publication),
            "current": str(layout.current),
            "validation_report": str(report.report_path),
            "report": str(page),
            # Parquet parts written by this run and hard-linked from the previous publication.
            "parts_rewritten": None
            if normalized.rewritten is None
            else sum(len(p) for p in normalized.rewritten.values()),
            "parts_reused": normalized.linked,
            "data_docs": str(report.docs_index) if report.docs_index else None,
            "warnings": [o.line() for o in report.warnings],
            "not_published_by_reason": {
                reason: n
                for status, reasons in sorted(statuses.items())
                if status != "parsed"
                for reason, n in sorted(reasons.items())
            },
        }


def _report(record: runs.RunRecord, report: ValidationReport, catalog: Path | None, page: Path) -> None:
    """Prefect artifacts: the run's counts as a table, and a markdown summary with the paths."""
    create_table_artifact(
        key="news-etl-counts",
        table=[
            {"measure": name, "value": value}
            for name, value in asdict(record).items()
            if isinstance(value, int | bool) or value is None
        ],
        description=f"Counts of run {record.run_id}",
    )
    status = "published" if record.published else "NOT published (critical validation failures)"
    failures = "\n".join(f"- {o.line()}" for o in report.critical_failures + report.warnings) or "- none"
    create_markdown_artifact(
        key="news-etl-summary",
        markdown=(
            f"# news-etl run {record.run_id}\n\n"
            f"**{status}**: {record.events} events from {record.files_seen} files "
            f"({record.rejected} rejected, {record.duplicates} duplicates, {record.skipped} skipped).\n\n"
            f"- Catalog: `{catalog}`\n- Validation report: `{report.report_path}`\n"
            f"- Data Docs: `{report.docs_index}`\n- Run report (HTML): `{page}`\n\n"
            f"## Failed expectations\n{failures}\n"
        ),
        description=f"Summary of run {record.run_id}",
    )
