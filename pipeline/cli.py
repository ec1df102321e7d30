"""`python -m pipeline {run,generate}`: the contract's command line.

Exit status 0 when published; otherwise 1 (2 for usage errors) with a one-line
reason on stderr, followed by details (one failed expectation per line).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from pathlib import Path

from pipeline.config import DEFAULT_INPUT, DEFAULT_OUTPUT
from pipeline.storylines import StorylineRule

DEFAULT_CRON = "*/30 * * * *"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="build, validate and publish the tables (runs the Prefect flow)")
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
    run.add_argument("--wait", action="store_true", help="wait for a run in progress instead of exiting")
    run.add_argument("--workers", type=int, default=None, help="parser processes (default: CPU count)")
    run.add_argument(
        "--batch-size", type=int, default=2000, help="files per parse batch (default: %(default)s)"
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar even in a terminal")
    run.add_argument(
        "--expectations", type=Path, default=None, help="GX suites folder (default: expectations/)"
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
    run.add_argument("--verbose", action="store_true", help="show Prefect's logs on the console")

    serve = sub.add_parser("serve", help="serve the flow on a schedule (Prefect deployment)")
    serve.add_argument(
        "--cron", default=DEFAULT_CRON, help='schedule, cron syntax, UTC (default: "%(default)s")'
    )
    serve.add_argument(
        "--input", type=Path, default=DEFAULT_INPUT, help="archive root (default: %(default)s)"
    )
    serve.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="output folder (default: %(default)s)"
    )
    serve.add_argument("--name", default="news-etl-scheduled", help="deployment name (default: %(default)s)")

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

    exp = sub.add_parser("export", help="write a self-contained snapshot of the current publication")
    exp.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="the pipeline's output folder")
    exp.add_argument("--format", choices=("duckdb", "csv", "parquet"), default="duckdb")
    exp.add_argument(
        "--to", type=Path, required=True, help="folder to write the snapshot into (new or empty)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "generate":
        return _generate(args)
    if args.command == "serve":
        return _serve(args)
    if args.command == "history":
        return _history(args)
    if args.command == "rollback":
        return _rollback(args)
    if args.command == "export":
        return _export(args)
    if args.command == "dictionary":
        from pipeline.dictionary import markdown

        print(markdown(), end="")
        return 0
    return _run(args)


def _export(args: argparse.Namespace) -> int:
    from pipeline.export import ExportError, export

    try:
        target = export(args.output, args.format, args.to)
    except ExportError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"export failed: {exc}")
    print(f"exported the current publication as {args.format} to {target}")
    return 0


def _fail(message: str) -> int:
    first, _, rest = message.partition("\n")
    print(f"error: {first}", file=sys.stderr)
    if rest:
        print(rest, file=sys.stderr)
    return 1


def quiet_prefect(verbose: bool) -> None:
    """No telemetry; Prefect's console logs only with --verbose (the API and UI still get them all),
    so that a failure ends in the one-line reason the contract promises."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")


def serve_options(args: argparse.Namespace) -> dict:
    """What `serve` passes to Prefect: a cron schedule in UTC and absolute paths, so scheduled
    runs do not depend on the directory the server was started from."""
    return {
        "name": args.name,
        "cron": args.cron,
        "parameters": {"input": str(args.input.resolve()), "output": str(args.output.resolve())},
        "description": "Build, validate and publish the news tables on a schedule.",
        "tags": ["news-pipeline"],
    }


def _serve(args: argparse.Namespace) -> int:
    if not args.input.is_dir():
        return _fail(f"input folder not found: {args.input}")
    quiet_prefect(verbose=True)
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        return _fail(
            "serve needs a Prefect server to schedule runs: start one with `prefect server start` "
            "and set PREFECT_API_URL=http://127.0.0.1:4200/api"
        )
    from flows.news_etl import news_etl

    # pause_on_shutdown=False: stopping this process must not pause the schedule in Prefect.
    news_etl.serve(**serve_options(args), pause_on_shutdown=False)
    return 0


def _history(args: argparse.Namespace) -> int:
    import pyarrow.parquet as pq

    from pipeline.config import OutputLayout
    from pipeline.publish import current_run_id, list_publications
    from pipeline.tables import runs_file

    layout = OutputLayout(args.output.resolve())
    kept = list_publications(layout)
    if not kept:
        return _fail(f"no publications in {args.output}")
    current = current_run_id(layout)
    print(f"{'':2}{'run_id':<34} {'finished_at (UTC)':<20} {'events':>9} {'rejected':>9}")
    for run_id in reversed(kept):
        runs = pq.read_table(runs_file(layout.publication(run_id))).to_pylist()
        row = next((r for r in runs if r["run_id"] == run_id), {})
        finished = row.get("finished_at")
        print(
            f"{'*' if run_id == current else ' '} {run_id:<34} {finished:%Y-%m-%d %H:%M:%S} "
            f"{row.get('events', 0):>9} {row.get('rejected', 0):>9}"
        )
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from pipeline.config import OutputLayout
    from pipeline.lock import OutputLocked, output_lock
    from pipeline.publish import rollback

    layout = OutputLayout(args.output.resolve())
    try:
        with output_lock(layout.lock, wait=args.wait):
            rollback(layout, args.run_id)
    except (OutputLocked, LookupError) as exc:
        return _fail(str(exc).strip("'\""))
    print(f"current publication: {args.run_id} ({layout.catalog})")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from pipeline.generate import generate

    if args.events < 0 or not 0.0 <= args.malformed <= 1.0:
        return _fail("--events must be >= 0 and --malformed within 0..1")
    written = generate(args.events, args.output, seed=args.seed, malformed=args.malformed)
    print(f"wrote {written.events} events ({written.malformed} malformed) under {args.output}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from pipeline.cluster import ClusterError, DaskTarget
    from pipeline.locations import LocationError, input_location, output_location

    try:
        source = input_location(args.input)
        output_location(args.output)
        if args.dask is not None:
            DaskTarget.parse(args.dask)
    except (LocationError, ClusterError) as exc:
        return _fail(str(exc))
    if isinstance(source, Path) and not source.is_dir():
        return _fail(f"input folder not found: {args.input}")
    if args.storyline_max_tag_events < 1 or args.storyline_max_span_days < 0:
        return _fail("--storyline-max-tag-events must be >= 1 and --storyline-max-span-days >= 0")
    quiet_prefect(verbose=args.verbose)
    from flows.news_etl import ValidationFailed, news_etl
    from pipeline.discover import InputMissing
    from pipeline.lock import OutputLocked

    # The imports above leave a few hundred thousand long-lived objects that every full
    # collection would scan again; frozen, they are skipped (full collections in a run over an
    # empty archive went from 1.18 s to 0.81 s).
    gc.freeze()
    try:
        result = news_etl(
            input=str(args.input),
            output=str(args.output),
            full_refresh=args.full_refresh,
            wait_for_lock=args.wait,
            workers=args.workers,
            batch_size=args.batch_size,
            show_progress=not args.no_progress and sys.stderr.isatty(),
            expectations=str(args.expectations) if args.expectations else None,
            storyline_max_tag_events=args.storyline_max_tag_events,
            storyline_max_span_days=args.storyline_max_span_days,
            dask=args.dask,
        )
    except ValidationFailed as exc:
        return _fail(str(exc))
    except (OutputLocked, InputMissing, ClusterError) as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(
            f"{exc.strerror or exc} ({exc.filename or 'output'}); the previous publication is intact"
        )
    except Exception as exc:  # anything else (a DuckDB I/O error, a bug): one line, not a traceback
        if args.verbose:
            import traceback

            traceback.print_exc()
        reason = " ".join(str(exc).split()) or "no message"
        return _fail(f"{type(exc).__name__}: {reason[:500]}; the previous publication is intact")
    from pipeline.summary import print_summary

    print_summary(result)
    return 0
