"""Validate a finished (not yet published) publication with Great Expectations.

Each suite in `expectations/` is a pair of reviewed files:
`<name>.sql` selects the frame to check from the publication (a table's key
columns plus derived check columns such as `event_exists`, computed by DuckDB
over the whole table so that uniqueness and foreign keys stay correct when the
frame is validated in chunks), and `<name>.json` lists the expectations, each
with `meta.severity` (`critical` blocks publishing, `warning` is reported) and
`meta.protects` (what it guards). GX is imported lazily: it costs seconds.
"""

from __future__ import annotations

import datetime as dt
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import queue
import re
import sys
import threading
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from pipeline.core.config import DEFAULT_EXPECTATIONS
from pipeline.core.sqltext import sql_list, sql_literal
from pipeline.core.tables import (
    TOUCHED_ROWS,
    part_path,
    parts,
    row_count_of,
    table_glob,
    touched_rows,
    write_part,
)
from pipeline.transform.normalize import Touched, connect
from pipeline.transform.scoped import scoped_query

CRITICAL = "critical"
WARNING = "warning"
SEVERITIES = (CRITICAL, WARNING)


class SuiteError(Exception):
    """A suite file is malformed, or GX did not load every expectation it lists."""


@dataclass(frozen=True)
class SuiteSpec:
    name: str
    frame_sql: str
    expectations: list[dict[str, Any]]
    key: tuple[str, ...] = ()  # frame columns naming a row: a failure quotes a few offending keys
    # A whole-table frame's scope: (column, tables). The frame's rows for a set of that
    # column's values are the frame computed over those tables' rows with those values
    # alone, so an incremental run checks the values its build recomputed (Touched.keys).
    scope: tuple[str, tuple[str, ...]] | None = None
    # Whole-table totals the frame reads as `totals_<table>` (one row): per table, column name
    # -> an additive aggregate (a count or a sum) of its rows. Each part's totals are kept with
    # the publication, so a part that is the previous publication's (hard-linked) is not read
    # again (`run_summary` read three whole tables for each one-file batch).
    totals: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass
class Outcome:
    suite: str
    expectation: str
    kwargs: dict[str, Any]
    severity: str
    protects: str
    success: bool
    unexpected_count: int = 0
    examples: list[str] = field(default_factory=list)

    def line(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.kwargs.items())
        detail = f"{self.unexpected_count} unexpected" if self.unexpected_count else "failed"
        if self.examples:
            detail += f", e.g. {', '.join(self.examples[:3])}"
        return f"[{self.severity}] {self.suite}: {self.expectation}({args}): {detail} ({self.protects})"


@dataclass
class ValidationReport:
    passed: bool
    outcomes: list[Outcome]
    report_path: Path
    docs_index: Path | None

    @property
    def critical_failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.success and o.severity == CRITICAL]

    @property
    def warnings(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.success and o.severity == WARNING]


def load_specs(directory: Path = DEFAULT_EXPECTATIONS) -> list[SuiteSpec]:
    """Read every `<name>.json` suite with its `<name>.sql` frame; check severities."""
    specs = []
    for path in sorted(directory.glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        sql_path = path.with_suffix(".sql")
        if not sql_path.exists():
            raise SuiteError(f"{path.name}: no frame query {sql_path.name}")
        for exp in doc["expectations"]:
            meta = exp.get("meta", {})
            if meta.get("severity") not in SEVERITIES or not meta.get("protects"):
                raise SuiteError(f"{path.name}: {exp.get('type')} needs meta.severity and meta.protects")
        key = doc.get("key", [])
        if not isinstance(key, list) or not all(isinstance(k, str) for k in key):
            raise SuiteError(f"{path.name}: key must be a list of column names")
        specs.append(
            SuiteSpec(
                path.stem,
                sql_path.read_text(encoding="utf-8"),
                doc["expectations"],
                tuple(key),
                _scope(path, doc),
                _totals(path, doc),
            )
        )
    if not specs:
        raise SuiteError(f"no expectation suites in {directory}")
    return specs


def _scope(path: Path, doc: dict[str, Any]) -> tuple[str, tuple[str, ...]] | None:
    """A suite's `scope` ({"column": ..., "tables": [...]}), checked."""
    scope = doc.get("scope")
    if scope is None:
        return None
    column, tables = (scope.get("column"), scope.get("tables")) if isinstance(scope, dict) else (None, None)
    if not (isinstance(column, str) and column.isidentifier()) or not (
        isinstance(tables, list) and tables and all(isinstance(t, str) and t.isidentifier() for t in tables)
    ):
        raise SuiteError(f'{path.name}: scope must be {{"column": NAME, "tables": [NAME, ...]}}')
    return column, tuple(tables)


def _totals(path: Path, doc: dict[str, Any]) -> dict[str, dict[str, str]]:
    """A suite's `totals` ({TABLE: {COLUMN: AGGREGATE, ...}, ...}), checked."""
    totals = doc.get("totals", {})
    if not isinstance(totals, dict) or not all(
        isinstance(table, str)
        and table.isidentifier()
        and isinstance(columns, dict)
        and columns
        and all(
            isinstance(c, str) and c.isidentifier() and isinstance(e, str) and e for c, e in columns.items()
        )
        for table, columns in totals.items()
    ):
        raise SuiteError(f'{path.name}: totals must be {{TABLE: {{COLUMN: "count(*)", ...}}, ...}}')
    return totals


_WORD = re.compile(r"\b(?:checked_)?(\w+)")


def frame_tables(spec: SuiteSpec) -> frozenset[str]:
    """The publication's tables a suite's frame may read: every table name among its words
    (a column of the same name counts too: it can only make the set larger)."""
    from pipeline.core.tables import TABLE

    words = _WORD.findall(re.sub(r"--[^\n]*", "", spec.frame_sql))
    return frozenset(w for w in words if w in TABLE) | frozenset(spec.totals)


def suites_within(tables: Collection[str], expectations_dir: Path = DEFAULT_EXPECTATIONS) -> list[str]:
    """The suites whose frames read none but these tables."""
    return [s.name for s in load_specs(expectations_dir) if frame_tables(s) <= set(tables)]


# Packages that importing Great Expectations executes but our validation never uses: scipy's
# statistics (for a KL-divergence expectation) and altair (charts for Data Docs' profiling
# pages), 0.9 s of its 2.6 s import (`python -X importtime`). SQLAlchemy (0.27 s more) stays
# eager: Prefect's server imports its submodules piecemeal, which a lazy package breaks.
_DEFERRED = frozenset({"scipy.stats", "altair"})


class _Deferred(importlib.abc.MetaPathFinder):
    """Loads `_DEFERRED` modules imported by one thread with the standard library's
    `LazyLoader`: the module object exists at once and runs its code on first attribute use,
    so anything that does use it gets it whole, just later. Other threads import as usual."""

    def __init__(self) -> None:
        self.thread = threading.get_ident()

    def find_spec(self, name: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name not in _DEFERRED or threading.get_ident() != self.thread:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = importlib.util.LazyLoader(spec.loader)
        return spec


def import_gx(defer: bool = False) -> Any:
    """`great_expectations`, imported once; with `defer` (the validation process, which
    imports nothing else), without running the code of `_DEFERRED` until it is used."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    if defer and "great_expectations" not in sys.modules:
        finder = _Deferred()
        sys.meta_path.insert(0, finder)
        try:
            import great_expectations as gx
        finally:
            sys.meta_path.remove(finder)
        return gx
    import great_expectations as gx

    return gx


def build_suites(specs: list[SuiteSpec]) -> dict[str, Any]:
    """GX suites from the specs; raises unless every listed expectation was loaded."""
    gx = import_gx()
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    suites = {}
    for spec in specs:
        suite = gx.ExpectationSuite(name=spec.name)
        for exp in spec.expectations:
            config = ExpectationConfiguration(type=exp["type"], kwargs=exp["kwargs"], meta=exp["meta"])
            try:
                suite.add_expectation_configuration(config)
            except Exception as exc:  # GX raises several types here; all mean "not loaded"
                raise SuiteError(f"{spec.name}: cannot load {exp['type']}: {exc}") from exc
        if len(suite.expectations) != len(spec.expectations):
            raise SuiteError(
                f"{spec.name}: GX loaded {len(suite.expectations)} of {len(spec.expectations)} expectations"
            )
        suites[spec.name] = suite
    return suites


def _skip_frame_fingerprint() -> None:
    """GX fingerprints every in-memory batch (an MD5 over pandas' hash of every cell) only to
    label it in its metadata; on Arrow-backed columns that was 30% of validating a 1M-event
    build (profiled, BENCHMARKS.md). Our frames are labelled by suite and chunk instead, so
    the fingerprint is replaced by a constant. If GX moves the function, nothing is patched."""
    from great_expectations.execution_engine import pandas_execution_engine

    if hasattr(pandas_execution_engine, "hash_pandas_dataframe"):
        pandas_execution_engine.hash_pandas_dataframe = lambda df: f"rows-{len(df)}"


def _plain_metric_ids() -> None:
    """Make the JSON that Great Expectations hashes into a metric's id (`IDDict.to_id`) without
    its general converter where the values are plain (str, int, bool, float, None, and dicts
    and lists of those): the converter tries some twenty types on each value, numpy's among
    them, before it reaches None, and every metric configuration is hashed several times
    while GX plans a validation (py-spy put a sixth of GX's time in a watcher's batches
    there; validating the sample took 5% less process time, medians of 20). The JSON, and
    so every id, is the same as the converter's (tests/quality/test_validate.py); any other
    value goes to the converter. If GX moves the function, nothing is patched."""
    from great_expectations.core import id_dict

    convert = getattr(id_dict, "convert_to_json_serializable", None)
    if convert is None or getattr(convert, "plain", False):
        return
    mapping = (dict, id_dict.IDDict)

    def plain(data: Any) -> Any:
        kind = type(data)
        if kind is str or kind is int or kind is bool or data is None:
            return data
        if kind is float:
            return None if data != data else data  # NaN: None, as the converter gives
        if kind in mapping:
            return {str(key): plain(value) for key, value in data.items()}
        if kind is list or kind is tuple:
            return [plain(value) for value in data]
        return convert(data)

    plain.plain = True  # type: ignore[attr-defined]
    id_dict.convert_to_json_serializable = plain


_kept = threading.local()  # .configurations: {id(expectation): (expectation, configuration)}


def _keep_configurations() -> None:
    """Make `Expectation.configuration` computed once per expectation object while
    `_configurations_kept` is active (in this thread). GX builds it afresh on every read (a
    pydantic `dict()` and a new `ExpectationConfiguration`), and reads it about ten times per
    expectation object while it plans the metrics of a validation: 84,000 reads for 200
    validations of a watcher's batches, 45% of Great Expectations' time (profiled). Nothing
    changes an expectation object during a validation (GX makes fresh ones from the suite's
    configurations each time), and the cache is dropped when the validation ends, so its
    objects are never kept or mistaken for others. If GX changes the property, nothing is
    patched."""
    from great_expectations.expectations.expectation import Expectation

    original = Expectation.__dict__.get("configuration")
    if not isinstance(original, property) or original.fget is None or getattr(original.fget, "kept", False):
        return
    compute = original.fget

    def configuration(self: Any) -> Any:
        cache = getattr(_kept, "configurations", None)
        if cache is None:
            return compute(self)
        found = cache.get(id(self))
        if found is not None and found[0] is self:
            return found[1]
        value = compute(self)
        cache[id(self)] = (self, value)
        return value

    configuration.kept = True  # type: ignore[attr-defined]
    configuration.__doc__ = original.__doc__
    Expectation.configuration = property(configuration)  # type: ignore[method-assign,assignment]


@contextmanager
def _configurations_kept() -> Iterator[None]:
    """Within the block, each expectation object's configuration is built once (see above)."""
    _kept.configurations = {}
    try:
        yield
    finally:
        _kept.configurations = None


@dataclass
class _Checkpoints:
    """A Great Expectations context with one checkpoint per suite, built once per process and
    per (expectations folder, Data Docs folder) and reused by every run: a watcher's batches
    pay the import, the context and the suites once (about 1.3 s each time otherwise)."""

    specs: list[SuiteSpec]
    context: Any
    checkpoints: dict[str, Any]
    definitions: dict[str, Any]  # each suite's validation definition, for a quick first pass
    signature: tuple[tuple[str, int, int], ...]  # the suite files when built: edits rebuild

    def forget_results(self) -> None:
        """Drop the stored validation results (kept in memory by the ephemeral context for Data
        Docs), so a long-lived process does not grow with every run."""
        store = self.context.validation_results_store
        for key in list(store.list_keys()):
            store.remove_key(key)


_built: dict[tuple[Path, Path], _Checkpoints] = {}
KEPT_CONTEXTS = 2
_built_lock = threading.Lock()


def _signature(expectations_dir: Path) -> tuple[tuple[str, int, int], ...]:
    found = []
    for path in sorted(expectations_dir.glob("*")):
        if path.suffix in (".json", ".sql"):
            st = path.stat()
            found.append((path.name, st.st_mtime_ns, st.st_size))
    return tuple(found)


def _build_checkpoints(expectations_dir: Path, docs_dir: Path) -> _Checkpoints:
    gx = import_gx()

    signature = _signature(expectations_dir)
    specs = load_specs(expectations_dir)
    suites = build_suites(specs)
    context = _gx_context(docs_dir)
    source = context.data_sources.add_pandas("publication")
    checkpoints, definitions = {}, {}
    for spec in specs:
        suite = context.suites.add(suites[spec.name])
        batch = source.add_dataframe_asset(spec.name).add_batch_definition_whole_dataframe("frame")
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=spec.name, data=batch, suite=suite)
        )
        checkpoints[spec.name] = context.checkpoints.add(
            gx.Checkpoint(
                name=f"{spec.name}-checkpoint",
                validation_definitions=[definition],
                # No per-chunk docs action: every run stores its result, and the docs are
                # built once at the end (rebuilding them per chunk cost ~30% of validation at 1M).
                actions=[],
                result_format="SUMMARY",
            )
        )
        definitions[spec.name] = definition
    return _Checkpoints(specs, context, checkpoints, definitions, signature)


def _checkpoints(expectations_dir: Path, docs_dir: Path) -> _Checkpoints:
    """The checkpoints for these folders: those built before, unless the suite files changed
    since; else built now."""
    key = (expectations_dir, docs_dir)
    with _built_lock:
        built = _built.get(key)
    if built is not None and built.signature == _signature(expectations_dir):
        return built
    built = _build_checkpoints(expectations_dir, docs_dir)
    with _built_lock:
        _built.pop(key, None)
        _built[key] = built
        while len(_built) > KEPT_CONTEXTS:  # the oldest (tests validate into many folders)
            _built.pop(next(iter(_built)))
    return built


def _gx_context(docs_dir: Path) -> Any:
    gx = import_gx()

    _skip_frame_fingerprint()
    _keep_configurations()
    _plain_metric_ids()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    context.add_data_docs_site(
        site_name="pipeline",
        site_config={
            "class_name": "SiteBuilder",
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(docs_dir),
            },
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    return context


def validate_publication(
    publication: Path,
    report_dir: Path,
    run_id: str,
    files_seen: int,
    today: dt.date,
    expectations_dir: Path = DEFAULT_EXPECTATIONS,
    # Measured on a 1M-event publication (validation alone): groups of 250k events in 250k-row
    # chunks took 29.1 s at 1.18 GB; 400k/125k take 24.6 s at 1.32 GB (fewer frame queries and
    # GX runs); 500k/250k 22.8 s at 1.49 GB, too close to the build's 2 GB with the other
    # processes. 1M-row chunks peaked at 3.0 GB. A chunk is read as batches of `chunk_rows` and
    # holds as many as fit in `chunk_bytes` of Arrow memory: one batch of the wide frames
    # (125k rows of sources are 35 MB), two of the narrow ones (event_places: 18 MB), so those
    # pay half as many Great Expectations runs (~50 ms each, whatever their size).
    chunk_rows: int = 125_000,
    chunk_bytes: int = 40 * 2**20,
    threads: int = 2,
    memory_limit: str = "1GB",
    group_rows: int = 400_000,
    only: Collection[str] | None = None,
    build_docs: bool = True,
    rewritten: dict[str, list[str]] | None = None,
    touched: Touched | None = None,
    docs_later: bool = False,
    tables: Collection[str] | None = None,
    prior: ValidationReport | None = None,
) -> ValidationReport:
    """Run every suite (or those named in `only`) over the publication's Parquet; write a JSON
    report and, with `build_docs`, Data Docs.

    Frames read each table's rows under test as `checked_<table>` and other tables whole.
    All rows of an event id (of a file, for `files`) share a part, so uniqueness within the
    checked parts is uniqueness in the table. A full check walks the parts in groups of about
    `group_rows` events, which bounds DuckDB's and pandas' memory by the group, not the table.
    With `rewritten` (the parts an incremental build wrote, per table) only those parts are
    checked: every other part is a hard link to one that passed the same suites before; with
    `touched` too, only the rows of those parts that the build recomputed (so a one-file
    change checks its event's rows, not its year's), and of the whole-table suites only the
    frame rows that differ from the previous publication's; suites with a `mostly`
    expectation (a share of the whole) keep their parts or whole tables.
    Suites whose frame reads no `checked_` table (tags, storylines, run_summary, daily) run once,
    whole. With `docs_later`, the Data Docs are left to `write_data_docs`, which the caller
    runs after it has used the report (the validation process answers first).

    `tables` limits the publication's tables read to those (the others may still be being
    written: `suites_within` names the suites that need no other), and the report includes the
    outcomes of `prior`, a validation of the other suites of the same publication."""
    docs_dir = report_dir / "docs"
    allowed = None if tables is None else frozenset(tables)
    built = _checkpoints(expectations_dir, docs_dir)
    specs = [s for s in built.specs if only is None or s.name in only]

    # It keeps the Parquet footers it reads: `events` alone is read by five frames.
    con = connect(report_dir / ".work", threads, memory_limit)
    outcomes: dict[tuple[str, int], Outcome] = {}
    from great_expectations.core.run_identifier import RunIdentifier

    # Data Docs list each validation under our run id (GX's default is `__none__`).
    run_name = RunIdentifier(run_name=run_id, run_time=dt.datetime.now(dt.UTC))
    try:
        # Views only over the tables the suites read: binding each reads a footer, and a
        # watcher's batch validates five suites after the tags and storylines are written.
        needed = set().union(*(frame_tables(s) for s in specs))
        tables = [t for t in _tables(publication) if t in needed and (allowed is None or t in allowed)]
        for table in tables:
            con.execute(
                f"CREATE VIEW {table} AS SELECT * FROM read_parquet({sql_literal(table_glob(publication, table))})"
            )
        scopes = [rewritten] if rewritten is not None else _groups(publication, tables, group_rows)
        if rewritten is not None and touched is not None:
            import pyarrow as pa

            con.register("touched_events", pa.table({"event_id": pa.array(touched.event_ids, pa.string())}))
            con.register("touched_files", pa.table({"file_path": pa.array(touched.file_paths, pa.string())}))
            for column, values in touched.keys.items():
                keys = pa.array(values, pa.string())
                if column.endswith("_date"):  # the tables' DATE columns (`event_date`: daily)
                    keys = keys.cast(pa.date32())
                con.register(f"touched_key_{column}", pa.table({column: keys}))
        con.execute(
            "CREATE TABLE run_facts AS SELECT CAST(? AS BIGINT) AS files_seen, CAST(? AS DATE) AS max_date",
            [files_seen, today + dt.timedelta(days=1)],
        )
        touched_only = rewritten is not None and touched is not None
        base = touched.base if touched_only and touched is not None else None
        keyed = frozenset(touched.keys) if touched_only and touched is not None else frozenset()
        event_ids = touched.event_ids if touched_only and touched is not None else []
        frames = _frames(
            con, specs, publication, tables, scopes, base, chunk_rows, chunk_bytes, keyed, event_ids
        )
        # An incremental run's frames are small: DuckDB computes the next while Great
        # Expectations (pure Python) checks this one. A full build's are read one at a time,
        # so that no second chunk is held beside the one being checked (memory).
        with _ahead(frames, con) if touched_only else nullcontext(frames) as stream:
            for spec, frame in stream:
                if frame is None:
                    _unchanged(spec, outcomes)  # no row to check: they all passed before
                else:
                    _collect(spec, built, frame, outcomes, run_name, quick=not build_docs)
        if build_docs and not docs_later:
            _data_docs(built, docs_dir)
    except BaseException:
        built.forget_results()  # no Data Docs follow a failed validation: nothing stays behind
        raise
    finally:
        con.close()
        if not (build_docs and docs_later):
            built.forget_results()

    ordered = [outcomes[key] for key in sorted(outcomes)]
    index = docs_dir / "index.html"
    shown = index.exists() or (build_docs and docs_later)
    return _reported(report_dir, run_id, ordered, prior, index if shown else None)


def combined(first: ValidationReport, second: ValidationReport, run_id: str) -> ValidationReport:
    """One report of two validations of other suites of the same publication (a watcher's
    early and late suites, validated at once in two processes), its JSON written again."""
    return _reported(second.report_path.parent, run_id, second.outcomes, first, second.docs_index)


def _reported(
    report_dir: Path,
    run_id: str,
    ordered: list[Outcome],
    prior: ValidationReport | None,
    docs_index: Path | None,
) -> ValidationReport:
    """The report of `ordered` (and `prior`'s outcomes: other suites), written as JSON."""
    if prior is not None:  # other suites: by suite, each suite's in its own order (stable)
        ordered = sorted([*prior.outcomes, *ordered], key=lambda o: o.suite)
    passed = not any(not o.success and o.severity == CRITICAL for o in ordered)
    report_dir.mkdir(parents=True, exist_ok=True)
    report_path = report_dir / f"{run_id}.json"
    report_path.write_text(
        json.dumps(
            {"run_id": run_id, "passed": passed, "outcomes": [asdict(o) for o in ordered]},
            indent=1,
            default=str,
        ),
        encoding="utf-8",
    )
    return ValidationReport(passed, ordered, report_path, docs_index)


def write_data_docs(expectations_dir: Path, docs_dir: Path) -> None:
    """The Data Docs of the results a `validate_publication(..., docs_later=True)` left."""
    built = _checkpoints(expectations_dir, docs_dir)
    try:
        _data_docs(built, docs_dir)
    finally:
        built.forget_results()


def _data_docs(built: _Checkpoints, docs_dir: Path) -> None:
    built.context.build_data_docs(site_names=["pipeline"])
    from pipeline.quality.datadocs import make_offline

    make_offline(docs_dir)


def _frames(
    con: duckdb.DuckDBPyConnection,
    specs: list[SuiteSpec],
    publication: Path,
    tables: list[str],
    scopes: list[dict[str, list[str]]],
    base: Path | None,
    chunk_rows: int,
    chunk_bytes: int,
    keyed: frozenset[str] = frozenset(),
    event_ids: Sequence[str] = (),
) -> Iterator[tuple[SuiteSpec, Any]]:
    """Each suite's frame as pandas chunks, in order: (suite, chunk), or (suite, None) for a
    suite with no row to check among an incremental run's recomputed rows (with `base`, the
    previous publication, only those are checked). An empty table yields one empty frame
    (it is still checked: row-count expectations). `keyed`: the scope columns whose
    recomputed values are the tables `touched_key_<column>`; `event_ids`: the recomputed events
    (those of `touched_events`)."""
    touched_only = base is not None
    counted: dict[str, int] = {}  # rows of the incremental checked_<table> (one scope: rewritten)
    # The `checked_` views are made again only when the scope or their kind changes: a view
    # per table for each suite was 0.2 s of a one-file batch. The suites that check only
    # recomputed rows come first, those with a `mostly` expectation (whole parts) after.
    views: tuple[int, bool] | None = None
    for spec in sorted(specs, key=_has_mostly) if touched_only else specs:
        chunks = 0
        incremental = touched_only and not _has_mostly(spec)
        for number, scope in enumerate(scopes) if "checked_" in spec.frame_sql else [(-1, None)]:
            if scope is not None:
                if views != (number, incremental):
                    _scope_views(con, publication, tables, scope, incremental, event_ids)
                    views = (number, incremental)
                if incremental and _nothing_checked(con, spec, counted):
                    continue
            if spec.totals:
                _part_totals(con, spec, publication, base)
            frame = spec.frame_sql
            if scope is None and incremental and spec.scope is not None and spec.scope[0] in keyed:
                frame = _scoped_frame(con, spec, spec.scope)
            elif scope is None and not _has_mostly(spec):
                frame = _kept_frame(con, spec, publication, base if incremental else None)
            elif scope is None and spec.scope is not None:  # a share of a whole, scoped frame
                scoped = touched_only and spec.scope[0] in keyed
                frame = _whole_kept_frame(con, spec, publication, base if scoped else None)
            reader = con.sql(frame).to_arrow_reader(chunk_rows)
            for chunk in _chunks(reader, chunk_rows, chunk_bytes):
                chunks += 1
                yield spec, chunk.to_pandas()
        if chunks == 0 and incremental:
            yield spec, None
        elif chunks == 0:
            yield spec, reader.schema.empty_table().to_pandas()


_CHECKED = re.compile(r"\bchecked_(\w+)")


def _nothing_checked(con: duckdb.DuckDBPyConnection, spec: SuiteSpec, counted: dict[str, int]) -> bool:
    """Whether every `checked_` table the suite's frame reads is empty, so that its frame is:
    a frame that reads `checked_` tables has a row per checked row. Counting the few recomputed
    rows is cheaper than running the frame, whose joins read whole tables (each frame 10-50 ms
    in a one-file batch, at any size; six of them empty)."""
    names = sorted(set(_CHECKED.findall(re.sub(r"--[^\n]*", "", spec.frame_sql))))
    for name in names:
        if name not in counted:
            ((rows,),) = con.execute(f"SELECT count(*) FROM checked_{name}").fetchall()
            counted[name] = int(rows)
    return all(counted[name] == 0 for name in names)


_DONE = object()


@contextmanager
def _ahead(items: Iterator[Any], con: duckdb.DuckDBPyConnection, depth: int = 2) -> Iterator[Iterator[Any]]:
    """`items`, produced by a thread up to `depth` ahead of the consumer. The thread alone uses
    `con` until the block ends; leaving early (an error, a signal) stops it, interrupting
    its query, before the block returns, so the caller may close `con`."""
    found: queue.Queue[Any] = queue.Queue(depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        found.put(item, timeout=0.05)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            found.put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            found.put(exc)

    def consume() -> Iterator[Any]:
        while True:
            item = found.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    thread = threading.Thread(target=produce, name="validation-frames", daemon=True)
    thread.start()
    try:
        yield consume()
    finally:
        stop.set()
        while thread.is_alive():
            con.interrupt()
            with suppress(queue.Empty):
                found.get_nowait()  # make room, should it wait to put its error
            thread.join(timeout=0.05)


def _chunks(reader: Any, rows: int, max_bytes: int | None = None) -> Iterator[Any]:
    """The reader's record batches gathered into tables of at most `rows` rows or, with
    `max_bytes`, of as many rows as fit in that many Arrow bytes (a batch alone may be larger).
    DuckDB hands a parallel result over in pieces (a 8,000-row frame came as two), and every
    piece was a Great Expectations run of its own (50-180 ms each, whatever its size). Each
    table is one contiguous chunk: pandas' Arrow-backed columns over many pieces made GX's
    row filters slower (relations' suite: +2 s at 1M events with 16k-row pieces)."""
    import pyarrow as pa

    pending: list[Any] = []
    count = size = 0
    for batch in reader:
        if batch.num_rows == 0:
            continue
        full = size + batch.nbytes > max_bytes if max_bytes is not None else count + batch.num_rows > rows
        if pending and full:  # never more than the budget (memory)
            yield pa.Table.from_batches(pending).combine_chunks()
            pending, count, size = [], 0, 0
        pending.append(batch)
        count += batch.num_rows
        size += batch.nbytes
    if pending:
        yield pa.Table.from_batches(pending).combine_chunks()


def _keys_at(
    details: dict[str, Any], kwargs: dict[str, Any], frame: Any, key: tuple[str, ...]
) -> dict[str, Any]:
    """`details` with its first offending rows' positions replaced by their values in the
    expectation's columns and the key's, as Great Expectations gives them when asked for
    `unexpected_index_column_names`."""
    positions = (details.get("partial_unexpected_index_list") or [])[:3]
    if not positions or not all(isinstance(p, int) for p in positions):
        return details
    if "column" in kwargs:
        domain = [kwargs["column"]]
    elif "column_A" in kwargs:
        domain = [kwargs["column_A"], kwargs["column_B"]]
    else:
        domain = list(kwargs.get("column_list") or [])
    columns = list(dict.fromkeys([*domain, *key]))
    rows = frame.loc[positions, columns].to_dict("records")
    return details | {"partial_unexpected_index_list": rows}


def _examples(details: dict[str, Any], column: str | None) -> list[str]:
    """Up to three offending rows: by key (`file_path=a.md`) when GX names them, else values."""
    indexed = details.get("partial_unexpected_index_list") or []
    shown = []
    for item in indexed[:3]:
        if isinstance(item, dict):
            keys = [f"{k}={v}" for k, v in item.items() if k != column]
            shown.append(" ".join(keys) if keys else str(item))
    if shown:
        return shown
    return [str(v) for v in (details.get("partial_unexpected_list") or [])[:3]]


def _groups(publication: Path, tables: list[str], group_rows: int) -> list[dict[str, list[str]]]:
    """Every part of every table, in groups of about `group_rows` events (by part name, so
    the rows of one event id, in whichever table, land in the same group)."""
    names = sorted({p for t in tables for p in parts(publication, t)})
    weight = {name: 0 for name in names}
    for table in ("events", "files"):
        for name in parts(publication, table):
            if name in weight:  # (the tables read may not include events or files)
                weight[name] += row_count_of(part_path(publication, table, name))
    groups: list[list[str]] = [[]]
    size = 0
    for name in names:
        if groups[-1] and size + weight[name] > group_rows:
            groups.append([])
            size = 0
        groups[-1].append(name)
        size += weight[name]
    return [{t: [n for n in group if n in set(parts(publication, t))] for t in tables} for group in groups]


def _has_mostly(spec: SuiteSpec) -> bool:
    """A `mostly` expectation is a share of the whole: it cannot be checked on a subset."""
    return any("mostly" in e["kwargs"] for e in spec.expectations)


# Where a publication keeps the frames of its whole-table suites (not a table: a hidden folder).
FRAMES = ".frames"


def _tables(publication: Path) -> list[str]:
    """The tables of a publication: its folders but the hidden ones."""
    return sorted(p.name for p in publication.iterdir() if p.is_dir() and not p.name.startswith("."))


def _scoped_frame(con: duckdb.DuckDBPyConnection, spec: SuiteSpec, scope: tuple[str, tuple[str, ...]]) -> str:
    """A whole-table suite's frame rows for the scope column's values the build recomputed
    (`touched_key_<column>`), all of them checked: every other row is as in the previous
    publication, where it passed. At a million events the whole storylines frame took 0.26 s
    of a one-file batch; its rows for the few storylines a batch recomputes, milliseconds."""
    column, tables = scope
    scoped_query(
        con,
        spec.frame_sql,
        "frame_scoped",
        {
            t: f"SELECT * FROM main.{t} WHERE {column} IN (SELECT {column} FROM touched_key_{column})"
            for t in tables
        },
    )
    return "SELECT * FROM frame_scoped"


def _part_totals(
    con: duckdb.DuckDBPyConnection, spec: SuiteSpec, publication: Path, base: Path | None
) -> None:
    """`totals_<table>` for each table of the suite's `totals`: the sums of its parts' totals.
    A part that is the same file as `base`'s part of that name (an incremental build
    hard-links the parts it did not rewrite) has the totals `base` kept for it; the others
    are computed from their rows. Every part's totals are kept with the publication."""
    for table, columns in spec.totals.items():
        kept = publication / FRAMES / f"{spec.name}.{table}.parquet"
        names = parts(publication, table)
        before = base / FRAMES / f"{spec.name}.{table}.parquet" if base is not None else None
        known: list[str] = []
        if base is not None and before is not None and before.exists():
            with suppress(duckdb.Error):  # another release's totals: computed again
                had = {
                    r[0]
                    for r in con.execute(
                        f"SELECT part FROM read_parquet({sql_literal(str(before))})"
                    ).fetchall()
                }
                known = [
                    n
                    for n in names
                    if n in had and _same_file(part_path(base, table, n), part_path(publication, table, n))
                ]
        pieces = []
        if known:
            pieces.append(
                f"SELECT part, {', '.join(columns)} FROM read_parquet({sql_literal(str(before))}) "
                f"WHERE part IN (SELECT unnest({sql_list(known)}))"
            )
        fresh = [str(part_path(publication, table, n)) for n in names if n not in known]
        if fresh:
            aggregates = ", ".join(f"{expression} AS {column}" for column, expression in columns.items())
            pieces.append(
                f"SELECT parse_filename(filename, true) AS part, {aggregates} "
                f"FROM read_parquet({sql_list(fresh)}, filename = true) GROUP BY ALL"
            )
        rows = (
            " UNION ALL BY NAME ".join(pieces)
            or f"SELECT NULL::VARCHAR AS part, {', '.join(f'0 AS {c}' for c in columns)} WHERE false"
        )
        con.execute(f"CREATE OR REPLACE TEMP TABLE totals_parts_{table} AS {rows}")
        kept.parent.mkdir(exist_ok=True)
        write_part(con, f"SELECT * FROM totals_parts_{table} ORDER BY part", kept, "FORMAT parquet")
        sums = ", ".join(f"CAST(coalesce(sum({c}), 0) AS BIGINT) AS {c}" for c in columns)
        con.execute(f"CREATE OR REPLACE TEMP VIEW totals_{table} AS SELECT {sums} FROM totals_parts_{table}")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _whole_kept_frame(
    con: duckdb.DuckDBPyConnection, spec: SuiteSpec, publication: Path, base: Path | None
) -> str:
    """A `mostly` suite's whole frame (a share of all rows: it cannot be checked on a subset),
    kept with the publication. With `base`, the previous publication's kept frame with the
    rows of the scope's recomputed values computed again (`_scoped_frame`): `daily` counted
    every event of a million for each one-file batch. Rows come in the scope column's order,
    so that the offending rows a failure quotes are the same however the frame was made."""
    assert spec.scope is not None
    column = spec.scope[0]
    before = base / FRAMES / f"{spec.name}.parquet" if base is not None else None
    fresh = f"SELECT * FROM ({spec.frame_sql}) ORDER BY {column}"
    if before is not None and before.exists():
        scoped = _scoped_frame(con, spec, spec.scope)
        try:
            con.execute(
                f"""CREATE OR REPLACE TEMP TABLE frame_now AS
                    SELECT * FROM (
                        SELECT * FROM read_parquet({sql_literal(str(before))})
                        WHERE {column} NOT IN (SELECT {column} FROM touched_key_{column})
                        UNION ALL BY NAME {scoped}
                    ) ORDER BY {column}"""
            )
        except duckdb.Error:  # another frame kept (an earlier release): compute it whole
            con.execute(f"CREATE OR REPLACE TEMP TABLE frame_now AS {fresh}")
    else:
        con.execute(f"CREATE OR REPLACE TEMP TABLE frame_now AS {fresh}")
    _keep_frame(con, spec, publication)
    return "SELECT * FROM frame_now"


def _keep_frame(con: duckdb.DuckDBPyConnection, spec: SuiteSpec, publication: Path) -> None:
    """`frame_now`, kept with the publication for the next run's check."""
    kept = publication / FRAMES / f"{spec.name}.parquet"
    kept.parent.mkdir(exist_ok=True)
    write_part(con, "SELECT * FROM frame_now", kept, "FORMAT parquet")


def _kept_frame(con: duckdb.DuckDBPyConnection, spec: SuiteSpec, publication: Path, base: Path | None) -> str:
    """A whole-table suite's frame, kept with the publication for the next run. With `base`
    (the previous publication, whose rows passed), only its rows that differ from base's
    frame, so that Great Expectations checks what changed rather than every tag or
    storyline. Base's frame is the one it kept (computing it again over the previous tables
    took 0.6 s of a one-file batch at a million events), or computed when it kept none."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE frame_now AS {spec.frame_sql}")
    _keep_frame(con, spec, publication)
    if base is None:
        return "SELECT * FROM frame_now"
    before = base / FRAMES / f"{spec.name}.parquet"
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE frame_before AS SELECT * FROM read_parquet({sql_literal(str(before))})"
        )
        con.execute(
            "SELECT * FROM frame_now EXCEPT ALL SELECT * FROM frame_before LIMIT 0"
        )  # the same columns
    except duckdb.Error:  # none kept (an earlier release), or another frame: compute it
        _base_views(con, base, frame_tables(spec))
        con.execute("SET search_path = 'base,main'")
        try:
            con.execute(f"CREATE OR REPLACE TEMP TABLE frame_before AS {spec.frame_sql}")
        finally:
            con.execute("SET search_path = 'main'")
    return "SELECT * FROM frame_now EXCEPT ALL SELECT * FROM frame_before"


def _base_views(con: duckdb.DuckDBPyConnection, base: Path, tables: Collection[str]) -> None:
    """Views of the previous publication's `tables` in the schema `base`, made when a frame is
    computed over them (a whole-table suite whose frame that publication did not keep): each
    view reads a footer, and a watcher's one-file batch made a dozen it never used."""
    con.execute("CREATE SCHEMA IF NOT EXISTS base")
    for table in _tables(base):
        if table in tables:
            glob = sql_literal(table_glob(base, table))
            con.execute(f"CREATE OR REPLACE VIEW base.{table} AS SELECT * FROM read_parquet({glob})")


def _scope_views(
    con: duckdb.DuckDBPyConnection,
    publication: Path,
    tables: list[str],
    scope: dict[str, list[str]],
    touched_only: bool = False,
    event_ids: Sequence[str] = (),
) -> None:
    """`checked_<table>`: the table's parts named in `scope` (the whole table if not named);
    with `touched_only`, only their recomputed rows (`touched_rows`: those of `event_ids`)."""
    for table in tables:
        names = scope.get(table)
        if names is None:
            con.execute(f"CREATE OR REPLACE VIEW checked_{table} AS SELECT * FROM {table}")
        elif names:
            files = "[" + ", ".join(sql_literal(str(part_path(publication, table, n))) for n in names) + "]"
            rows = (
                f" WHERE {touched_rows(table, event_ids)}" if touched_only and table in TOUCHED_ROWS else ""
            )
            con.execute(
                f"CREATE OR REPLACE VIEW checked_{table} AS SELECT * FROM read_parquet({files}){rows}"
            )
        else:
            con.execute(f"CREATE OR REPLACE VIEW checked_{table} AS SELECT * FROM {table} LIMIT 0")


def _unchanged(spec: SuiteSpec, outcomes: dict[tuple[str, int], Outcome]) -> None:
    """Outcomes of a suite with no changed row to give Great Expectations (about 60 ms a
    checkpoint run, empty or not): each expectation passes, as it did on those rows before."""
    for number, expectation in enumerate(spec.expectations):
        meta = expectation.get("meta", {})
        outcomes.setdefault(
            (spec.name, number),
            Outcome(
                spec.name,
                expectation["type"],
                dict(expectation["kwargs"]),
                meta.get("severity", CRITICAL),
                meta.get("protects", ""),
                True,
                0,
                [],
            ),
        )


def _collect(
    spec: SuiteSpec,
    built: _Checkpoints,
    frame: Any,
    outcomes: dict[tuple[str, int], Outcome],
    run_name: Any,
    quick: bool = False,
) -> None:
    """Validate one chunk and fold its results into `outcomes` (failing in any chunk fails).

    `quick` (no Data Docs to show the results): a first pass asks Great Expectations for
    pass or fail alone (BOOLEAN_ONLY: 0.50 s instead of 0.78 s for every suite over small
    frames, measured), and only a suite with a failure runs again for its counts and
    examples. A suite with a `mostly` expectation runs in full at once: it may pass with
    unexpected rows, whose count the report gives. That full run names offending rows by
    position, and `_fold` looks up the keys of the few it quotes: asked for keys, Great
    Expectations looks up every offending row's, one at a time (0.42 s of a watcher's batch
    at a million events, whose `daily` has 8,000 days above the usual range)."""
    with _configurations_kept():
        _run_suite(spec, built, frame, outcomes, run_name, quick)


def _run_suite(
    spec: SuiteSpec,
    built: _Checkpoints,
    frame: Any,
    outcomes: dict[tuple[str, int], Outcome],
    run_name: Any,
    quick: bool,
) -> None:
    if quick:
        if not _has_mostly(spec):
            first = _unstored(built.definitions[spec.name], frame, "BOOLEAN_ONLY")
            if all(res.success for res in first.results):
                _fold(spec.name, first.results, outcomes)
                return
        full = _unstored(built.definitions[spec.name], frame, "SUMMARY")
        _fold(spec.name, full.results, outcomes, (frame, spec.key))
        return
    # SUMMARY without `unexpected_index_column_names`, whose key lookups cost 0.19 s of the
    # `daily` suite at a million events (8,000 days over the usual range): Data Docs render a
    # SUMMARY result's value counts, never its index list, so they are the same; `_fold`
    # names the report's few offending rows by key.
    result = built.checkpoints[spec.name].run(batch_parameters={"dataframe": frame}, run_id=run_name)
    for run_result in result.run_results.values():
        _fold(spec.name, run_result.results, outcomes, (frame, spec.key))


def _unstored(definition: Any, frame: Any, result_format: Any) -> Any:
    """A validation definition's result on `frame`, as `ValidationDefinition.run` gives it but
    neither stored nor checked against the stores first: a result no Data Docs will show is
    dropped anyway (`forget_results`), and storing it (serializing every result) and the
    freshness check were a fifth of Great Expectations' time per suite in a watcher's batch
    (profiled: 0.13 s and 0.09 s of 1.18 s for 20 runs). `run` does the same with the same
    Validator (GX 1.x); if GX moves it, `run` is used."""
    try:
        from great_expectations.validator.v1_validator import Validator
    except ImportError:  # pragma: no cover - another GX layout
        return definition.run(batch_parameters={"dataframe": frame}, result_format=result_format)
    validator = Validator(
        batch_definition=definition.batch_definition,
        batch_parameters={"dataframe": frame},
        result_format=result_format,
    )
    return validator.validate_expectation_suite(definition.suite)


def _fold(
    suite: str,
    results: list[Any],
    outcomes: dict[tuple[str, int], Outcome],
    keyed: tuple[Any, tuple[str, ...]] | None = None,
) -> None:
    """One validation's expectation results into `outcomes`, by the expectation's number.
    With `keyed` (the frame and the suite's key), offending rows named by position are named
    by key instead."""
    for number, res in enumerate(results):
        config = res.expectation_config
        key = (suite, number)
        details = res.result or {}
        if keyed is not None and keyed[1]:
            details = _keys_at(details, config.kwargs, *keyed)
        unexpected = int(details.get("unexpected_count") or 0)
        examples = _examples(details, config.kwargs.get("column"))
        found = outcomes.get(key)
        if found is None:
            kwargs = {k: v for k, v in config.kwargs.items() if k not in ("batch_id",)}
            outcomes[key] = Outcome(
                suite,
                config.type,
                kwargs,
                config.meta.get("severity", CRITICAL),
                config.meta.get("protects", ""),
                bool(res.success),
                unexpected,
                examples,
            )
        else:
            found.success = found.success and bool(res.success)
            found.unexpected_count += unexpected
            found.examples = (found.examples + examples)[:3]
