"""`python -m pipeline ...`: the contract's command line.

Exit status 0 when the command did its work; otherwise 1 (2 when argparse rejects the command
line, 130/143 when interrupted by SIGINT/SIGTERM) with a one-line reason on stderr, followed by details where
there are some (one failed expectation per line). No command ends in a traceback
(`--verbose` shows one for `run`).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from pipeline.core.config import DEFAULT_INPUT, DEFAULT_OUTPUT, StorylineRule
from pipeline.core.faults import stall_exit

DEFAULT_CRON = "*/30 * * * *"
INTACT = "the previous publication is intact"


class UsageError(Exception):
    """An argument the command cannot use."""


def _add_run_options(run: argparse.ArgumentParser) -> None:
    """Options of a run, shared by `run` and `serve` (which passes them to every scheduled run)."""
    run.add_argument(
        "--input",
        default=str(DEFAULT_INPUT),
        help="archive root: a folder or an fsspec URL such as s3://bucket/news (default: %(default)s)",
    )
    run.add_argument(
        "--output", default=str(DEFAULT_OUTPUT), help="output folder or file:// URL (default: %(default)s)"
    )
    run.add_argument(
        "--dask",
        default=None,
        metavar="ADDRESS",
        help="parse on a Dask cluster: a scheduler address (tcp://HOST:8786) or local:N for a "
        "LocalCluster of N workers (default: local processes)",
    )
    run.add_argument("--full-refresh", action="store_true", help="rebuild from scratch")
    run.add_argument(
        "--allow-shrink",
        action="store_true",
        help="publish even when the new events table holds fewer than 90%% of the current one's events",
    )
    run.add_argument("--workers", type=int, default=None, help="parser processes (default: CPU count)")
    run.add_argument(
        "--batch-size", type=int, default=2000, help="files per parse batch (default: %(default)s)"
    )
    run.add_argument(
        "--keep",
        type=int,
        default=3,
        help="publications kept for rollback, the current one included (default: %(default)s)",
    )
    run.add_argument(
        "--retention",
        default="1h",
        help="never prune a publication that was current this recently, so open readers and exports "
        "finish: 90s, 30m, 1h, 0 (default: %(default)s)",
    )
    run.add_argument(
        "--expectations", type=Path, default=None, help="GX suites folder (default: the bundled suites)"
    )
    run.add_argument(
        "--storyline-max-tag-events",
        type=int,
        default=StorylineRule.max_tag_events,
        help="a context reaching more events is broad and joins no storylines (default: %(default)s)",
    )
    run.add_argument(
        "--storyline-max-span-days",
        type=int,
        default=StorylineRule.max_tag_span_days,
        help="a context whose events span more days is broad (default: %(default)s)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="build, validate and publish the tables (runs the Prefect flow)")
    _add_run_options(run)
    run.add_argument("--wait", action="store_true", help="wait for a run in progress instead of exiting")
    run.add_argument(
        "--changed",
        metavar="FILE",
        default=None,
        help="look only at these paths (one per line, relative to the input, files or folders; - for "
        "stdin), as a mirroring tool reports its changes, instead of listing the whole archive",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar even in a terminal")
    run.add_argument("--json", action="store_true", help="print the run summary as JSON (for scripts)")
    run.add_argument("--verbose", action="store_true", help="show Prefect's logs on the console")

    watch = sub.add_parser("watch", help="keep the publication current while files change (long-running)")
    _add_run_options(watch)
    watch.add_argument(
        "--quiet",
        type=float,
        default=0.3,
        help="seconds without a change before a batch runs while a file is still open, or where the "
        "system reports no closes (default: %(default)s); a batch whose files are all closed, "
        "moved or removed runs after 0.05 s",
    )
    watch.add_argument(
        "--max-delay",
        type=float,
        default=2.0,
        help="seconds after a batch's first change at the latest (default: %(default)s)",
    )
    watch.add_argument(
        "--sweep-every",
        default="1h",
        help="list the whole input this often, whatever was seen (default: %(default)s)",
    )
    watch.add_argument("--verbose", action="store_true", help="show Prefect's logs on the console")

    serve = sub.add_parser("serve", help="serve the flow on a schedule (Prefect deployment)")
    serve.add_argument(
        "--cron", default=DEFAULT_CRON, help='schedule, cron syntax, UTC (default: "%(default)s")'
    )
    serve.add_argument("--name", default="news-etl-scheduled", help="deployment name (default: %(default)s)")
    _add_run_options(serve)

    status = sub.add_parser("status", help="which publication is current, how the last run ended")
    status.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="output folder (default: %(default)s)"
    )
    status.add_argument("--json", action="store_true", help="print the status as JSON")

    history = sub.add_parser("history", help="list the kept publications")
    history.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="output folder (default: %(default)s)"
    )
    back = sub.add_parser("rollback", help="make a kept publication current again")
    back.add_argument("run_id", help="a run id from `history`")
    back.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="output folder (default: %(default)s)"
    )
    back.add_argument("--wait", action="store_true", help="wait for a run in progress instead of exiting")

    gen = sub.add_parser("generate", help="write a realistic synthetic archive")
    gen.add_argument("--events", type=int, required=True, help="number of event files")
    gen.add_argument("--output", type=Path, required=True, help="folder to write the archive into")
    gen.add_argument("--seed", type=int, default=0, help="random seed (same seed, same archive)")
    gen.add_argument("--malformed", type=float, default=0.0, help="share of malformed files (0..1)")

    sub.add_parser("dictionary", help="print the data dictionary (every table, view and column) as Markdown")

    dbt = sub.add_parser("dbt-sources", help="write a dbt sources.yml for the catalog (docs and tests)")
    dbt.add_argument("--to", type=Path, required=True, help="the sources.yml file to write")

    exp = sub.add_parser(
        "export", help="write the current publication (or the changes since a run) for other tools"
    )
    exp.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="the pipeline's output folder")
    exp.add_argument(
        "--format",
        choices=("duckdb", "csv", "parquet"),
        default="duckdb",
        help="duckdb: one self-contained .duckdb file; parquet or csv: a file per table and view "
        "(default: %(default)s)",
    )
    exp.add_argument(
        "--to", type=Path, required=True, help="folder to write into (new or empty, unless --force)"
    )
    exp.add_argument(
        "--force", action="store_true", help="replace an existing target folder (atomically, when complete)"
    )
    exp.add_argument(
        "--since",
        metavar="RUN_ID",
        default=None,
        help="write the change set from the publication of RUN_ID to the current one (parquet or csv): "
        "NAME.<format> rows to insert, NAME.deleted.<format> keys removed, manifest.json",
    )
    exp.add_argument(
        "--csv-raw",
        action="store_true",
        help="CSV cells exactly as stored; by default a cell starting with = + - @ (a spreadsheet "
        "formula) gets a leading ' and NUL bytes are dropped",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    stall_exit()  # a fault for the tests: a hang in the interpreter's exit (`__main__` bounds it)
    commands = {
        "run": _run,
        "serve": _serve,
        "watch": _watch,
        "status": _status,
        "history": _history,
        "rollback": _rollback,
        "generate": _generate,
        "export": _export,
        "dictionary": _dictionary,
        "dbt-sources": _dbt_sources,
    }
    try:
        return commands[args.command](args)
    except UsageError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(_os_error(exc))
    except Exception as exc:  # a bug or an environment we did not foresee: one line, not a traceback
        if getattr(args, "verbose", False):
            import traceback

            traceback.print_exc()
        return _fail(_one_line(exc))


def _os_error(exc: OSError) -> str:
    where = f" ({exc.filename})" if exc.filename else ""
    return f"{exc.strerror or exc}{where}"


def _one_line(exc: BaseException) -> str:
    reason = " ".join(str(exc).split()) or "no message"
    return f"{type(exc).__name__}: {reason[:500]}"


def _fail(message: str) -> int:
    first, _, rest = message.partition("\n")
    print(f"error: {first}", file=sys.stderr)
    if rest:
        print(rest, file=sys.stderr)
    return 1


def _dbt_sources(args: argparse.Namespace) -> int:
    from pipeline.publish.dbt import write_sources

    tests = write_sources(args.to)
    print(f"wrote {args.to} (every table and view, {tests} dbt tests from the critical expectations)")
    return 0


def _dictionary(args: argparse.Namespace) -> int:
    from pipeline.publish.dictionary import markdown

    print(markdown(), end="")
    return 0


def quiet_prefect(verbose: bool) -> None:
    """No telemetry; Prefect's console logs only with --verbose (the API and UI still get them all),
    so that a failure ends in the one-line reason the contract promises."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")  # Prefect's SDK telemetry: no network at run time
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")


# --- run ------------------------------------------------------------------------------------------
def run_parameters(args: argparse.Namespace) -> dict[str, Any]:
    """The flow's parameters from a run's options, checked before anything else happens (no
    lock, no Prefect, no folder made) by building the run's configuration, the one place every
    input is checked; UsageError says what is wrong."""
    from pipeline.core.config import ConfigError, RunConfig, StorylineRule
    from pipeline.publish.registry import parse_duration

    try:
        config = RunConfig(
            args.input,
            args.output,
            full_refresh=args.full_refresh,
            batch_size=args.batch_size,
            **({"workers": args.workers} if args.workers is not None else {}),
            keep_publications=args.keep,
            retention=parse_duration(args.retention),
            storylines=StorylineRule(args.storyline_max_tag_events, args.storyline_max_span_days),
            dask=args.dask,
            allow_shrink=args.allow_shrink,
            **({"expectations_dir": args.expectations} if args.expectations else {}),
        )
    except (ConfigError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    try:
        changed = changed_paths(getattr(args, "changed", None))
    except OSError as exc:
        raise UsageError(f"cannot read --changed {args.changed}: {exc.strerror or exc}") from None
    return {
        "changed_paths": changed,
        "input": str(config.input_dir),
        "output": str(config.output_dir),
        "full_refresh": config.full_refresh,
        "workers": args.workers,
        "batch_size": config.batch_size,
        "expectations": str(config.expectations_dir) if args.expectations else None,
        "storyline_max_tag_events": config.storylines.max_tag_events,
        "storyline_max_span_days": config.storylines.max_tag_span_days,
        "dask": config.dask,
        "allow_shrink": config.allow_shrink,
        "keep": config.keep_publications,
        "retention": args.retention,
    }


def _run(args: argparse.Namespace) -> int:
    from pipeline.core.config import OutputLayout
    from pipeline.core.interrupt import Interrupted, stop_on_signals
    from pipeline.core.lock import NotOurFolder, OutputLocked, claim_output, output_lock

    parameters = run_parameters(args)
    layout = OutputLayout(Path(parameters["output"]))
    with ExitStack() as stack:
        # The lock before anything slow (imports, the Prefect server): a second run is refused
        # at once.
        try:
            claim_output(layout.root)
            stack.enter_context(output_lock(layout.lock, wait=args.wait, command="run"))
        except (NotOurFolder, OutputLocked) as exc:
            return _fail(str(exc))
        from pipeline.core.prefect_api import start_early, stop_servers

        quiet_prefect(verbose=args.verbose)  # before the server starts: it inherits the settings
        start_early()  # boots while the flow's modules are imported
        stack.callback(stop_servers)
        if validation_ahead(parameters, layout):
            _start_validation(parameters, layout)
        stack.enter_context(stop_on_signals(lambda signum: _deadline(layout, signum)))
        from pipeline.publish.report import reports_written

        stack.callback(reports_written, 5.0)  # written before the output's lock is let go
        try:
            result = _run_flow(args, parameters)
            _report_written(result)
        except Interrupted as exc:
            return _interrupted(exc.exit_code)
        except BaseException as exc:
            signum = getattr(exc, "signal", None)  # Prefect's TerminationSignal
            if isinstance(exc, KeyboardInterrupt):
                return _interrupted(130)
            if isinstance(signum, int):
                return _interrupted(128 + signum)
            return _run_failure(exc, args.verbose)
    if args.json:
        print(json.dumps(result, default=str, indent=1, sort_keys=True))
    else:
        from pipeline.publish.summary import print_summary

        print_summary(result)
    return 0


# A committed manifest this large (about 250,000 files) means a listing long enough to hide
# the validation process's start-up (benchmarks/run.py, 1M files: listing and reading the
# manifest 2-3 s, the start-up about 2 s of CPU on the other core).
LARGE_MANIFEST_BYTES = 32 * 2**20


def validation_ahead(parameters: dict[str, Any], layout: Any) -> bool:
    """Whether `run` starts the validation process before it knows there is work: when it will
    validate (no publication yet, a full refresh, reported changes), and for a large archive,
    where a run adding 100 files to a million spent 0.3-0.4 s of its 4 s after the listing
    with Great Expectations starting beside it (the start-up had begun only then). A run of
    a small archive that finds nothing to do would pay it for nothing (110k events: 2.0 s,
    with the process started 2.25 s)."""
    if parameters["full_refresh"] or parameters["changed_paths"] or not os.path.lexists(layout.current):
        return True
    try:
        return os.stat(layout.manifest).st_size >= LARGE_MANIFEST_BYTES
    except OSError:  # no manifest: the run rebuilds, and validates
        return True


def _start_validation(parameters: dict[str, Any], layout: Any, slots: int = 1) -> None:
    """Start the validation process (Great Expectations' import and context, ~2 s of Python)
    now, on the other core, while this one imports Prefect and the flow and lists the archive
    (pipeline/quality/worker.py). Only for a run that will validate: a run that may find
    nothing to do starts it once it knows (at 110k events, a run with nothing to do took
    0.3-0.5 s longer with the process importing beside it). A watcher starts two (`slots`):
    its batches check their early and late suites at once."""
    from pipeline.core.config import DEFAULT_EXPECTATIONS
    from pipeline.quality import worker

    for slot in range(slots):
        worker.start(
            Path(parameters["expectations"] or DEFAULT_EXPECTATIONS), layout.validation / "docs", slot
        )


REPORT_TIMEOUT = 30.0  # seconds a run waits for its report before it lets go of the output


def _report_written(result: dict[str, Any]) -> None:
    """Wait for the run report, written in a background thread while the flow run ended and
    the temporary Prefect server stopped (at 1M events, a run adding 100 files spent 0.12 s
    on the one and then 0.17 s on the other); a page not written is a warning."""
    from pipeline.publish.report import reports_written

    failures = reports_written(REPORT_TIMEOUT)
    page = result.get("report")
    if not failures and page and not os.path.exists(page):
        failures = [f"run report not written within {REPORT_TIMEOUT:g} s"]
    if failures:
        result["warnings"] = [*result.get("warnings", []), *failures]
        result["report"] = None


def _run_flow(args: argparse.Namespace, parameters: dict[str, Any]) -> dict[str, Any]:
    quiet_prefect(verbose=args.verbose)
    from flows.news_etl import news_etl
    from pipeline.core.prefect_api import prefect_api

    # The imports above leave a few hundred thousand long-lived objects that every full
    # collection would scan again; frozen, they are skipped (full collections in a run over an
    # empty archive went from 1.18 s to 0.81 s).
    gc.freeze()
    with prefect_api():
        return news_etl(
            **parameters,
            wait_for_lock=args.wait,
            show_progress=not args.no_progress and sys.stderr.isatty() and not args.json,
            report_later=True,  # waited for by `_report_written`
        )


def changed_paths(source: str | None) -> list[str] | None:
    """The paths of `--changed` (a file, or - for stdin), one per line, blank lines skipped."""
    if source is None:
        return None
    text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def _run_failure(exc: BaseException, verbose: bool) -> int:
    from flows.news_etl import ValidationFailed
    from pipeline.core.cluster import ClusterError
    from pipeline.core.config import ConfigError
    from pipeline.core.lock import NotOurFolder, OutputLocked
    from pipeline.extract.discover import BadChangedPath, InputMissing, InputUnlistable
    from pipeline.steps import ShrinkRefused

    if isinstance(exc, ValidationFailed | ShrinkRefused | InputUnlistable | BadChangedPath):
        return _fail(str(exc))
    if isinstance(exc, OutputLocked | InputMissing | ClusterError | NotOurFolder | ConfigError):
        return _fail(str(exc))
    if verbose:
        import traceback

        traceback.print_exception(exc)
    if isinstance(exc, OSError):
        return _fail(f"{_os_error(exc)}; {INTACT}")
    if not isinstance(exc, Exception):
        raise exc
    return _fail(f"{_one_line(exc)}; {INTACT}")


def _interrupted(code: int) -> int:
    print(f"error: interrupted; {INTACT}", file=sys.stderr)
    return code


def _deadline(layout: Any, signum: int) -> None:
    """The run did not unwind in time after a signal: clean up what we can and exit."""
    from pipeline.core.interrupt import exit_now
    from pipeline.core.prefect_api import stop_servers
    from pipeline.publish.registry import remove_tree

    try:
        print(f"error: interrupted; {INTACT}", file=sys.stderr, flush=True)
        stop_servers(timeout=1.0)
        if layout.work.is_dir():
            from pipeline.publish.catalog import load_registry

            for run_id in load_registry(layout).entries:
                remove_tree(layout.run_work(run_id))
    finally:
        exit_now(128 + signum)


# --- watch ------------------------------------------------------------------------------------------
def _watch(args: argparse.Namespace) -> int:
    import faulthandler
    import signal

    from pipeline.core.config import OutputLayout
    from pipeline.core.interrupt import Interrupted, stop_on_signals
    from pipeline.core.lock import NotOurFolder, OutputLocked, claim_output, output_lock
    from pipeline.publish.registry import parse_duration

    parameters = run_parameters(args)
    if args.quiet < 0 or args.max_delay <= 0:
        raise UsageError("--quiet must be >= 0 and --max-delay > 0")
    try:
        sweep_every = parse_duration(args.sweep_every).total_seconds()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not isinstance(parameters["input"], str) or "://" in parameters["input"]:
        raise UsageError("watch needs a local input folder")
    layout = OutputLayout(Path(parameters["output"]))
    if hasattr(signal, "SIGUSR1"):  # `kill -USR1 PID`: a watcher that seems stuck says where
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    with ExitStack() as stack:
        try:
            claim_output(layout.root)
            stack.enter_context(output_lock(layout.lock, command="watch"))
        except (NotOurFolder, OutputLocked) as exc:
            return _fail(str(exc))
        from pipeline.core.prefect_api import start_early, stop_servers

        quiet_prefect(verbose=args.verbose)  # before the server starts: it inherits the settings
        start_early()
        stack.callback(stop_servers)
        _start_validation(parameters, layout, slots=2)
        stack.enter_context(stop_on_signals(lambda signum: _deadline(layout, signum)))
        try:
            quiet_prefect(verbose=args.verbose)
            from flows.news_etl import news_etl
            from pipeline.core.prefect_api import one_client, prefect_api
            from pipeline.transform.incremental import remember_manifests
            from pipeline.watch import Watcher

            remember_manifests()  # each batch would read the whole manifest three times
            gc.freeze()
            with prefect_api(), one_client():
                watcher = Watcher(
                    Path(parameters["input"]),
                    layout,
                    lambda changed: news_etl(
                        **(
                            parameters
                            | {
                                "changed_paths": changed,
                                "data_docs": changed is None,
                                "report_later": True,
                                "split_validation": True,
                                "task_runs": False,  # flows/news_etl.py: _Stages
                            }
                        )
                    ),
                    say=lambda line: print(line, flush=True),
                    quiet=args.quiet,
                    max_delay=args.max_delay,
                    sweep_every=sweep_every,
                )
                print(f"watching {parameters['input']} -> {layout.catalog} (Ctrl-C to stop)", flush=True)
                watcher.loop()
        except BaseException as exc:
            signum = getattr(exc, "signal", None) if not isinstance(exc, Interrupted) else exc.signum
            if isinstance(exc, KeyboardInterrupt):
                signum = 2
            if isinstance(signum, int):
                print(f"watch stopped ({signal_name(signum)}); the publication is intact", flush=True)
                return 0
            if isinstance(exc, Exception):
                return _fail(f"watch failed: {_one_line(exc)}")
            raise
    return 0


def signal_name(signum: int) -> str:
    import signal

    return signal.Signals(signum).name


# --- serve ------------------------------------------------------------------------------------------
def serve_options(args: argparse.Namespace) -> dict:
    """What `serve` passes to Prefect: a cron schedule in UTC and the run options with absolute
    paths, so scheduled runs do not depend on the directory the server was started from."""
    return {
        "name": args.name,
        "cron": args.cron,
        "parameters": run_parameters(args),
        "description": "Build, validate and publish the news tables on a schedule.",
        "tags": ["news-pipeline"],
    }


def _serve(args: argparse.Namespace) -> int:
    options = serve_options(args)
    quiet_prefect(verbose=True)
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        return _fail(
            "serve needs a Prefect server to schedule runs: start one with `prefect server start` "
            "and set PREFECT_API_URL=http://127.0.0.1:4200/api"
        )
    from flows.news_etl import news_etl

    # pause_on_shutdown=False: stopping this process must not pause the schedule in Prefect.
    news_etl.serve(**options, pause_on_shutdown=False)
    return 0


# --- status, history, rollback ---------------------------------------------------------------------
def _status(args: argparse.Namespace) -> int:
    from pipeline.publish.status import StatusError, render, status

    try:
        info = status(args.output.resolve())
    except StatusError as exc:
        return _fail(str(exc))
    print(json.dumps(info, default=str, indent=1, sort_keys=True) if args.json else render(info))
    return 0


def _history(args: argparse.Namespace) -> int:
    from pipeline.publish.status import StatusError, history_lines

    try:
        lines = history_lines(args.output.resolve())
    except StatusError as exc:
        return _fail(str(exc))
    print("\n".join(lines))
    return 0


def _rollback(args: argparse.Namespace) -> int:
    import duckdb

    from pipeline.core.config import OutputLayout
    from pipeline.core.lock import OutputLocked, is_ours, output_lock
    from pipeline.publish.catalog import rollback

    layout = OutputLayout(args.output.resolve())
    if not is_ours(layout.root):
        return _fail(f"no publications in {args.output} (not an output folder of this pipeline)")
    try:
        with output_lock(layout.lock, wait=args.wait, command="rollback"):
            rollback(layout, args.run_id)
    except (OutputLocked, LookupError) as exc:
        return _fail(str(exc).strip("'\""))
    except OSError as exc:
        return _fail(f"rollback failed: {_os_error(exc)}; the current publication is unchanged")
    except duckdb.Error as exc:  # the catalog could not be written (read-only output, full disk)
        return _fail(f"rollback failed: {_one_line(exc)}; the current publication is unchanged")
    print(f"current publication: {args.run_id} ({layout.catalog})")
    return 0


# --- generate, export ---------------------------------------------------------------------------------
def _generate(args: argparse.Namespace) -> int:
    from pipeline.synthetic.generate import generate

    if args.events < 0 or not 0.0 <= args.malformed <= 1.0:
        return _fail("--events must be >= 0 and --malformed within 0..1")
    written = generate(args.events, args.output, seed=args.seed, malformed=args.malformed)
    print(f"wrote {written.events} events ({written.malformed} malformed) under {args.output}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from pipeline.publish.export import ExportError, export, export_since

    if args.since is not None:
        try:
            manifest = export_since(args.output, args.since, args.format, args.to, args.force, args.csv_raw)
        except ExportError as exc:
            return _fail(str(exc))
        except OSError as exc:
            return _fail(f"export failed: {_os_error(exc)}; nothing was written to {args.to}")
        tables = manifest["tables"]
        rows = sum(t["rows"] for t in tables.values())
        deleted = sum(t["deleted"] for t in tables.values())
        print(
            f"exported the changes from {manifest['from_run_id']} to {manifest['to_run_id']} as {args.format} "
            f"to {args.to.resolve()}: {rows} rows to insert, {deleted} keys deleted"
        )
        return 0
    try:
        target = export(args.output, args.format, args.to, force=args.force, csv_raw=args.csv_raw)
    except ExportError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"export failed: {_os_error(exc)}; nothing was written to {args.to}")
    print(f"exported the current publication as {args.format} to {target}")
    return 0
