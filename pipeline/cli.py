"""`python -m pipeline {run,generate}`: the contract's command line.

Exit status 0 when published; otherwise 1 (2 for usage errors) with a one-line
reason on stderr, followed by details (one failed expectation per line).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pipeline.config import DEFAULT_INPUT, DEFAULT_OUTPUT


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="build, validate and publish the tables (runs the Prefect flow)")
    run.add_argument("--input", type=Path, default=DEFAULT_INPUT, help="archive root (default: %(default)s)")
    run.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="output folder (default: %(default)s)"
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
    run.add_argument("--verbose", action="store_true", help="show Prefect's logs on the console")

    gen = sub.add_parser("generate", help="write a realistic synthetic archive")
    gen.add_argument("--events", type=int, required=True, help="number of event files")
    gen.add_argument("--output", type=Path, required=True, help="folder to write the archive into")
    gen.add_argument("--seed", type=int, default=0, help="random seed (same seed, same archive)")
    gen.add_argument("--malformed", type=float, default=0.0, help="share of malformed files (0..1)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "generate":
        return _generate(args)
    return _run(args)


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


def _generate(args: argparse.Namespace) -> int:
    from pipeline.generate import generate

    if args.events < 0 or not 0.0 <= args.malformed <= 1.0:
        return _fail("--events must be >= 0 and --malformed within 0..1")
    written = generate(args.events, args.output, seed=args.seed, malformed=args.malformed)
    print(f"wrote {written.events} events ({written.malformed} malformed) under {args.output}")
    return 0


def _run(args: argparse.Namespace) -> int:
    if not args.input.is_dir():
        return _fail(f"input folder not found: {args.input}")
    quiet_prefect(verbose=args.verbose)
    from flows.news_etl import ValidationFailed, news_etl
    from pipeline.lock import OutputLocked

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
        )
    except ValidationFailed as exc:
        return _fail(str(exc))
    except OutputLocked as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(
            f"{exc.strerror or exc} ({exc.filename or 'output'}); the previous publication is intact"
        )
    from pipeline.summary import print_summary

    print_summary(result)
    return 0
