"""news-etl: discover -> parse -> normalize -> validate -> publish, each stage a Prefect task
(a watcher's batches call them as plain functions inside their flow run: `_Stages`).

The flow only composes `pipeline` functions (pipeline/steps.py and the stage modules);
tasks pass paths and counts, never DataFrames. Retries are on the I/O tasks only. Nothing
is cached between runs (NO_CACHE): incrementality is the pipeline's own state, not
Prefect's cache.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import wait as futures_wait
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import TerminationSignal
from prefect.utilities.annotations import BaseAnnotation, quote

from pipeline import steps
from pipeline.core.config import DEFAULT_INPUT, DEFAULT_OUTPUT, RunConfig, StorylineRule
from pipeline.core.faults import crash_point
from pipeline.core.locations import output_location
from pipeline.core.lock import claim_output, output_lock
from pipeline.core.tables import runs_file
from pipeline.extract.discover import InputMissing, InputUnlistable
from pipeline.publish import catalog as publishing
from pipeline.publish import changes, runs
from pipeline.publish.registry import Registry, parse_duration
from pipeline.publish.report import Validation, write_report, write_report_later
from pipeline.quality import worker as validation_process
from pipeline.quality.validate import ValidationReport, combined, load_specs, suites_within
from pipeline.transform.normalize import PARTS_TABLES, NormalizeResult, PartsWritten, Touched, normalize


class ValidationFailed(Exception):
    """Critical expectations failed; nothing was published."""

    def __init__(self, report: ValidationReport) -> None:
        self.report = report
        lines = [o.line() for o in report.critical_failures]
        super().__init__(
            f"validation failed ({len(lines)} critical expectations); nothing published\n" + "\n".join(lines)
        )


def _retryable(exc: BaseException) -> bool:
    """I/O errors are retried, a missing or unlistable input is not (retrying cannot help)."""
    return isinstance(exc, Exception) and not isinstance(exc, InputMissing | InputUnlistable)


def _transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect's retry condition: `_retryable` of what the task run raised."""
    try:
        state.result()
    except BaseException as exc:
        return _retryable(exc)
    return False


# --- Discover: list the archive's files --------------------------------------------------------
@task(
    name="discover-files",
    retries=2,
    retry_delay_seconds=[1, 5],
    retry_condition_fn=_transient,
    cache_policy=NO_CACHE,
)
def discover_files(config: RunConfig, listing: Path, changed: list[str] | None = None) -> int:
    """List (and stat) the input's *.md files: all of them, or the reported changed paths."""
    return steps.discover_input(config, listing, changed)


# --- Parse: new and changed documents to staging Parquet --------------------------------------
@task(name="parse-documents", cache_policy=NO_CACHE)
def parse_documents(
    config: RunConfig, plan: steps.RunPlan, listing: Path, run_id: str, next_manifest: Path
) -> steps.ParseInfo:
    """Parse new and changed files (all when the plan says so), on all cores, into staging batches."""
    if plan.reparse_all and not config.full_refresh:
        get_run_logger().info(plan.reparse_all)
    return steps.parse_changes(config, plan, listing, run_id, next_manifest)


# --- Normalize: staging to the published tables -----------------------------------------------
@task(name="normalize-tables", cache_policy=NO_CACHE)
def normalize_tables(
    config: RunConfig,
    plan: steps.RunPlan,
    live_manifest: Path,
    publication: Path,
    work: Path,
    on_parts: PartsWritten | None = None,
) -> NormalizeResult:
    """Derive the tables from the live staged rows: only what changed since the plan's base, if any."""
    return normalize(
        config.layout.staging,
        publication,
        work,
        live_manifest=live_manifest,
        previous=plan.base,
        threads=config.workers,
        storylines=config.storylines,
        on_parts=on_parts,
    )


# --- Validate: Great Expectations over the new publication ------------------------------------
@task(name="validate-tables", cache_policy=NO_CACHE)
def validate_tables(
    config: RunConfig,
    publication: Path,
    run_id: str,
    files_seen: int,
    rewritten: dict[str, list[str]] | None,
    touched: Touched | None = None,
    early: EarlyChecks | None = None,
) -> ValidationReport:
    """Run the expectation suites over the rewritten rows; critical failures block the publish."""
    prior = None
    if early is not None and config.split_validation and not config.data_docs:
        return early.finish(rewritten, touched)
    if early is not None:  # the suites begun while the tags and storylines were computed
        prior = early.report()
    return validation_process.validate(
        config.expectations_dir,
        config.layout.validation,
        publication=publication,
        run_id=run_id,
        files_seen=files_seen,
        today=config.today,
        threads=config.workers,
        build_docs=config.data_docs,
        rewritten=rewritten,
        touched=touched,
        only=early.later if early is not None else None,
        prior=prior,
    )


class EarlyChecks:
    """An incremental run begins the suites that read only the tables an incremental build
    completes first (`PARTS_TABLES`) as soon as they are written, in the validation process,
    while this one computes the tags and storylines; `validate_tables` runs the others and
    reports both. A watcher's one-file batch spent a third of its build on those two, with
    the validation process idle. With Data Docs (a run's), the first suites' results wait in
    that process for the others', and the Data Docs show both."""

    def __init__(self, config: RunConfig, publication: Path, run_id: str, files_seen: int) -> None:
        self.config, self.publication, self.run_id, self.files_seen = config, publication, run_id, files_seen
        self.first = suites_within(PARTS_TABLES, config.expectations_dir)
        self.later = [s.name for s in load_specs(config.expectations_dir) if s.name not in self.first]
        self.waiting: Callable[[], ValidationReport] | None = None

    def begin(self, rewritten: dict[str, list[str]], touched: Touched) -> None:
        """`normalize`'s `on_parts`: start the first suites over what it has written."""
        self.waiting = self._begin(
            0, self.first, rewritten, touched, self.config.data_docs, tables=PARTS_TABLES
        )

    def report(self) -> ValidationReport | None:
        """The first suites' report (None: they were not begun)."""
        return self.waiting() if self.waiting is not None else None

    def finish(self, rewritten: dict[str, list[str]] | None, touched: Touched | None) -> ValidationReport:
        """The other suites in the second validation process while the first may still be
        checking its own (`split_validation`: a watcher's), then one report of both. At a
        million events the first suites were not done when the storylines were, and the
        others waited for them: 0.16 s of a one-file batch."""
        later = self._begin(1, self.later, rewritten, touched, False)
        first = self.report()
        second = later()
        return second if first is None else combined(first, second, self.run_id)

    def _begin(
        self,
        slot: int,
        suites: list[str],
        rewritten: dict[str, list[str]] | None,
        touched: Touched | None,
        docs: bool,
        **more: Any,
    ) -> Callable[[], ValidationReport]:
        """Start `suites` in the validation process of `slot` (`docs`: for Data Docs)."""
        return validation_process.begin(
            self.config.expectations_dir,
            self.config.layout.validation,
            slot=slot,
            publication=self.publication,
            run_id=self.run_id,
            files_seen=self.files_seen,
            today=self.config.today,
            threads=self.config.workers,
            build_docs=docs,
            rewritten=rewritten,
            touched=touched,
            only=suites,
            **more,
        )


# --- Report: the HTML run report -----------------------------------------------------------------
@task(name="write-report", cache_policy=NO_CACHE)
def write_run_report(config: RunConfig, publication: Path, run_id: str, report: ValidationReport) -> Path:
    """Charts of the new tables and the validation outcome, as one offline HTML page."""
    return write_report(publication, config.layout.report, run_id, _validation(report))


def _validation(report: ValidationReport) -> Validation:
    """What the run report says of the validation."""
    return Validation(
        passed=report.passed,
        checked=len(report.outcomes),
        critical_failures=[o.line() for o in report.critical_failures],
        warnings=[o.line() for o in report.warnings],
        data_docs=report.docs_index,
    )


# --- Changes: what this publication changes, for incremental loads -------------------------------
@task(name="record-changes", cache_policy=NO_CACHE)
def record_changes(
    config: RunConfig,
    plan: steps.RunPlan,
    run_id: str,
    rewritten: dict[str, list[str]] | None,
    touched: Touched | None = None,
) -> None:
    """Log the keys this publication changes against the current one (the change log)."""
    changes.record(config.layout, plan.current, run_id, rewritten, touched)


@task(name="write-changes", cache_policy=NO_CACHE)
def write_changes(config: RunConfig, plan: steps.RunPlan, run_id: str, publication: Path) -> int:
    """The publication's `changes` table: every published run, with what the log says of it."""
    layout = config.layout
    base = layout.publication(plan.current) if plan.current else None
    return changes.write_changes_table(layout, run_id, base, publication)


# --- Publish: make the publication current -----------------------------------------------------
@task(name="publish-tables", retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def publish_tables(
    config: RunConfig,
    run_id: str,
    next_manifest: Path,
    registry: Registry,
    draft: publishing.CatalogDraft | None = None,
) -> Path:
    """Swap the catalog and `current` to the new publication, then commit the incremental state."""
    layout = config.layout
    steps.manifest_written(next_manifest)  # an incremental run's, written in the background
    publication = publishing.publish(
        layout, run_id, config.keep_publications, config.retention, registry=registry, draft=draft
    )
    steps.commit_manifest(layout, next_manifest)
    return publication


# --- How the flow runs its stages ---------------------------------------------------------------
class _Stages:
    """The stages as Prefect task runs (a run's, a deployment's: each shows in the UI with its
    state and timing), or as plain calls inside the flow run (a watcher's batches). A task run
    costs about 26 ms of the flow's own CPU and 22 ms of the Prefect server's (measured with an
    empty task against a running API): a one-file batch runs seven, about a third of a CPU
    second on two cores that the batch, its validation processes and the server share. Plain
    calls keep the task's retries on I/O errors; the stage times stay in the run's counts
    artifact and the run log either way."""

    def __init__(self, task_runs: bool) -> None:
        self.task_runs = task_runs

    def __call__(self, stage: Any, *args: Any) -> Any:
        if self.task_runs:
            return stage(*args)
        delays = list(stage.retry_delay_seconds or [])
        for attempt in range(stage.retries + 1):
            try:
                return stage.fn(*(_unwrapped(a) for a in args))
            except Exception as exc:
                if attempt == stage.retries or not _retryable(exc):
                    raise
                get_run_logger().warning(
                    "%s failed (%s); retrying", stage.name, " ".join(str(exc).split())[:300]
                )
                time.sleep(delays[min(attempt, len(delays) - 1)] if delays else 0)
        raise AssertionError("unreachable")  # the last attempt returned or raised

    def submit(self, stage: Any, *args: Any) -> _Pending:
        """The stage in a thread beside the flow (a task run's future, or a plain thread's)."""
        if self.task_runs:
            future = stage.submit(*args)
            return _Pending(future.result, lambda timeout: future.wait(timeout=timeout))
        done: Future[Any] = Future()
        context = contextvars.copy_context()  # the flow run's: its logger, its settings

        def work() -> None:
            try:
                done.set_result(context.run(self, stage, *args))
            except BaseException as exc:
                done.set_exception(exc)

        threading.Thread(target=work, name=stage.name, daemon=True).start()
        return _Pending(done.result, lambda timeout: futures_wait([done], timeout=timeout))


@dataclass(frozen=True)
class _Pending:
    """A stage running beside the flow: its result (raising what it raised), or a bounded wait."""

    result: Callable[[], Any]
    wait: Callable[[float], Any]


def _unwrapped(value: Any) -> Any:
    """A parameter as the task's function gets it (Prefect unwraps `quote` for task runs)."""
    return value.unwrap() if isinstance(value, BaseAnnotation) else value


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
    allow_shrink: bool = False,
    keep: int = 3,
    retention: str = "1h",
    changed_paths: list[str] | None = None,
    data_docs: bool = True,
    report_later: bool = False,
    split_validation: bool = False,
    task_runs: bool = True,
) -> dict[str, Any]:
    """Build, validate and publish the news tables from an event archive (incrementally by default)."""
    options: dict[str, Any] = {
        "full_refresh": full_refresh,
        "batch_size": batch_size,
        "storylines": StorylineRule(storyline_max_tag_events, storyline_max_span_days),
        "dask": dask,
        "allow_shrink": allow_shrink,
        "keep_publications": keep,
        "retention": parse_duration(retention),
        "data_docs": data_docs,
        "report_later": report_later,
        "split_validation": split_validation,
    }
    if workers:
        options["workers"] = workers
    if expectations:
        options["expectations_dir"] = Path(expectations)
    config = RunConfig(input, output_location(output), show_progress=show_progress, **options)
    layout = config.layout
    claim_output(layout.root)
    with output_lock(layout.lock, wait=wait_for_lock):
        return _run(config, _Stages(task_runs), changed_paths)


def _run(config: RunConfig, stage: _Stages, changed: list[str] | None = None) -> dict[str, Any]:
    layout = config.layout
    logger = get_run_logger()
    warnings = steps.check_state(layout)
    registry = publishing.load_registry(layout)
    warnings += registry.warnings
    for warning in warnings:
        logger.warning(warning)
    publishing.clean_leftovers(layout, registry)
    started = dt.datetime.now(dt.UTC)
    record = runs.RunRecord(run_id=runs.new_run_id(started), started_at=started)
    registry.start(record.run_id)
    work = layout.run_work(record.run_id)
    publication = layout.publication(record.run_id)
    next_manifest = work / "manifest.parquet"
    listing = work / "discovered.arrow"
    logged: _Pending | None = None  # the change log, recorded beside validation
    draft: publishing.CatalogDraft | None = None  # the catalog, begun beside validation
    try:
        with record.timed("discover"):
            record.files_seen = stage(discover_files, config, listing, changed)
        plan = steps.plan_run(config)
        record.full_refresh = plan.base is None
        with record.timed("parse"):
            parsed = stage(parse_documents, config, plan, listing, record.run_id, next_manifest)
        record.files_read = parsed.files_read
        warnings += parsed.warnings
        if parsed.unchanged:
            return _unchanged(config, record, registry, warnings)
        early = None
        if plan.base is not None and plan.checked:
            early = EarlyChecks(config, publication, record.run_id, record.files_seen)
        with record.timed("normalize"):
            normalized = stage(
                normalize_tables,
                config,
                plan,
                next_manifest,
                publication,
                work,
                early.begin if early else None,
            )
        record.events = normalized.counts["events"]
        record.quarantined = normalized.counts["quarantine"]
        record.events_added = normalized.added
        record.events_changed = normalized.changed
        record.events_removed = normalized.removed
        statuses = steps.file_counts(
            record,
            publication,
            plan.base.publication if plan.base is not None else None,
            normalized.rewritten.get("files") if normalized.rewritten is not None else None,
        )
        steps.check_shrink(config, plan, publication)
        draft = publishing.CatalogDraft(layout.catalog, publication)
        # An incremental build's change log is computed while validation runs: it is DuckDB
        # work, mostly outside the GIL (0.4 s of a one-file watch batch at 110k events, 1.1 s
        # of a run adding 100 files at 1M). A full build's compares whole tables, and its
        # memory would add to validation's: it runs after. A failed validation forgets it.
        if plan.base is not None:
            logged = stage.submit(
                record_changes, config, plan, record.run_id, normalized.rewritten, normalized.touched
            )
        with record.timed("validate"):
            report = stage(
                validate_tables,
                config,
                publication,
                record.run_id,
                record.files_seen,
                normalized.rewritten if plan.checked else None,
                normalized.touched if plan.checked else None,
                quote(early) if early is not None and early.waiting is not None else None,
            )
        crash_point("validate:done")
        record.validation_passed = report.passed
        record.finished_at = dt.datetime.now(dt.UTC)
        if not report.passed:
            with suppress(Exception):  # the page links them; a failure to write them is beside it
                validation_process.finish_docs(config.expectations_dir)
            _artifacts(
                record, report, None, stage(write_run_report, config, publication, record.run_id, report)
            )
            raise ValidationFailed(report)
        if logged is not None:
            logged.result()  # raises what the change log met
        else:
            stage(record_changes, config, plan, record.run_id, None)
        stage(write_changes, config, plan, record.run_id, publication)
        # The publication's own `runs` table shows this run as published (it is only ever
        # seen once it is); the run log says so only after the swap succeeded.
        record.published, record.outcome = True, runs.PUBLISHED
        log = runs.append(layout.run_log, _pending(record))
        runs.write_table(runs.with_record(log, record), runs_file(publication))
        crash_point("publish:runs-written")
        # Not introspected: Prefect walks a task's parameters for futures, and the registry
        # names every publication of the retention window (a watcher's hundreds).
        stage(publish_tables, config, record.run_id, next_manifest, quote(registry), quote(draft))
        runs.append(layout.run_log, record)
    except BaseException as exc:
        if logged is not None:  # nothing may write the change log behind the clean-up below
            with suppress(BaseException):
                logged.wait(5)
        record.published = False
        _record_failure(layout, record, exc)
        if publishing.current_run_id(layout) != record.run_id:
            publishing.discard(publication)
            changes.forget(layout, {record.run_id})
            registry.forget(record.run_id)
        raise
    finally:
        with suppress(BaseException):  # no writer left in the folder removed below
            steps.forget_manifest(next_manifest)
        if draft is not None:  # published (taken), or not to be: its file goes
            draft.discard()
        publishing.discard(work)
    logger.info("published %s events to %s", record.events, layout.catalog)
    # The report after the publish, off the path to a queryable change (a watcher's batches):
    # the publication it charts is current and stays so while it is read. The run published:
    # a report it could not write is a warning, not a failure.
    page: Path | None = None
    try:  # built by the validation process while this one published
        validation_process.finish_docs(config.expectations_dir)
    except Exception as exc:
        report.docs_index = None  # the page and the summary point at the JSON report instead
        warnings.append(f"Data Docs not written: {' '.join(str(exc).split())[:300]}")
        logger.warning(warnings[-1])
    try:
        if config.report_later:  # a watcher's: written while it takes up the next change
            page = write_report_later(publication, layout.report, record.run_id, _validation(report))
        else:
            page = stage(write_run_report, config, publication, record.run_id, report)
    except Exception as exc:
        warnings.append(f"run report not written: {' '.join(str(exc).split())[:300]}")
        logger.warning(warnings[-1])
    _artifacts(record, report, layout.catalog, page)
    return _result(config, record, warnings) | {
        "publication": str(publication),
        "validation_report": str(report.report_path),
        "report": str(page) if page else None,
        # Parquet parts written by this run and hard-linked from the previous publication.
        "parts_rewritten": None
        if normalized.rewritten is None
        else sum(len(p) for p in normalized.rewritten.values()),
        "parts_reused": normalized.linked,
        "data_docs": str(report.docs_index) if report.docs_index else None,
        "warnings": warnings + [o.line() for o in report.warnings],
        "not_published_by_reason": {
            reason: n
            for status, reasons in sorted(statuses.items())
            if status != "parsed"
            for reason, n in sorted(reasons.items())
        },
    }


def _pending(record: runs.RunRecord) -> runs.RunRecord:
    """The record as the run log holds it until the publication is current."""
    return runs.RunRecord(**(asdict(record) | {"published": False, "outcome": runs.RUNNING}))


def _unchanged(
    config: RunConfig, record: runs.RunRecord, registry: Registry, warnings: list[str]
) -> dict[str, Any]:
    """Nothing changed since the current publication: record the run, publish nothing."""
    layout = config.layout
    current = publishing.current_run_id(layout)
    assert current is not None
    log = runs.read_log(layout.run_log)
    previous = {row["run_id"]: row for row in log.to_pylist()}.get(current, {})
    for name in ("events", "rejected", "parsed", "skipped", "duplicates", "quarantined"):
        setattr(record, name, previous.get(name) or 0)
    record.validation_passed = previous.get("validation_passed")
    record.outcome, record.detail = runs.UNCHANGED, f"no change since {current}"
    record.finished_at = dt.datetime.now(dt.UTC)
    runs.append(layout.run_log, record)
    registry.forget(record.run_id)
    get_run_logger().info("nothing changed since publication %s: no new publication", current)
    return _result(config, record, warnings) | {
        "publication": str(layout.publication(current)),
        "current_run_id": current,
        "validation_report": None,
        "report": str(layout.report / "index.html"),
        "parts_rewritten": 0,
        "parts_reused": 0,
        "data_docs": None,
        "not_published_by_reason": {},
    }


def _result(config: RunConfig, record: runs.RunRecord, warnings: list[str]) -> dict[str, Any]:
    layout = config.layout
    return asdict(record) | {
        "catalog": str(layout.catalog),
        "current": str(layout.current),
        "warnings": list(warnings),
    }


def _record_failure(layout: Any, record: runs.RunRecord, exc: BaseException) -> None:
    """Add the failed or interrupted run to the run log (best effort: the disk may be full)."""
    from pipeline.core.interrupt import Interrupted

    if isinstance(exc, ValidationFailed):
        record.outcome, record.detail = runs.VALIDATION_FAILED, str(exc).splitlines()[0]
    elif isinstance(exc, steps.ShrinkRefused):
        record.outcome, record.detail = runs.SHRINK_REFUSED, str(exc)
    elif isinstance(exc, Interrupted | KeyboardInterrupt | TerminationSignal):
        record.outcome, record.detail = runs.INTERRUPTED, "interrupted by a signal"
    else:
        record.outcome = runs.FAILED
        record.detail = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
    record.finished_at = record.finished_at or dt.datetime.now(dt.UTC)
    with suppress(Exception):  # the failure being recorded may be a full disk
        runs.append(layout.run_log, record)


def _artifacts(
    record: runs.RunRecord, report: ValidationReport, catalog: Path | None, page: Path | None
) -> None:
    """Prefect artifacts: the run's counts as a table, and a markdown summary with the paths."""
    create_table_artifact(
        key="news-etl-counts",
        table=[
            {"measure": name, "value": round(value, 3) if isinstance(value, float) else value}
            for name, value in asdict(record).items()
            if isinstance(value, int | float | bool) or value is None  # the stage seconds too
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
