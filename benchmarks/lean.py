"""How lean a run is at the portal's real size: `python benchmarks/lean.py [--events 110000] [--repeats 3]`.

Measured in one session, alternating, so the ratios compare (medians of `--repeats`):

- naive        benchmarks/naive.py: the contract as a user would script it (one process,
               regexes, pandas, Parquet), the baseline of "3x faster"
- run_api      `python -m pipeline run --full-refresh` into a fresh output, with a running
               Prefect API (a `prefect server start` this script starts once)
- full_api     the same run's own time beyond its start-up: finished_at - started_at of the
               runs table (the flow body)
- empty_api / empty_temp   a run over an empty archive: with the running API, and with the
               temporary server `run` starts when no PREFECT_API_URL is set (the fixed cost)
- noop_api     a second run on the same output with nothing changed, running API
- io_floor_warm   reading every file's bytes with the pipeline's reader, page cache warm

The archive is generated once with a fixed seed (benchmarks/.cache/). Results are saved as
kind `lean` (BENCHMARKS.md is generated from them).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.results import save  # noqa: E402
from benchmarks.run import CACHE, PYTHON, archive_for, io_floor, last_run  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_api(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    proc = subprocess.Popen(
        [PYTHON, "-m", "prefect", "server", "start", "--port", str(port), "--no-ui"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/api"
    import urllib.request

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("the Prefect server did not start")


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    return time.perf_counter() - start


def run(archive: Path, output: Path, *extra: str) -> list[str]:
    return [
        PYTHON,
        "-m",
        "pipeline",
        "run",
        "--input",
        str(archive),
        "--output",
        str(output),
        "--no-progress",
        *extra,
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=110_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print only, save no result")
    args = parser.parse_args()
    archive = archive_for(args.events)
    empty = CACHE / "empty-archive"
    empty.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="lean-", dir=CACHE))
    home = work / "prefect-home"
    server, url = start_api(home)
    api = {**os.environ, "PREFECT_API_URL": url, "PREFECT_HOME": str(home)}
    temp = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"} | {
        "PREFECT_HOME": str(work / "temp-home")
    }
    samples: dict[str, list[float]] = {}
    try:
        timed(run(empty, work / "warm-up"), api)  # imports compiled, server warm
        for r in range(args.repeats):
            samples.setdefault("naive", []).append(
                timed(
                    [PYTHON, str(ROOT / "benchmarks" / "naive.py"), str(archive), str(work / f"naive-{r}")],
                    api,
                )
            )
            out = work / f"out-{r}"
            samples.setdefault("run_api", []).append(timed(run(archive, out, "--full-refresh"), api))
            row = last_run(out)
            samples.setdefault("full_api", []).append(
                (row["finished_at"] - row["started_at"]).total_seconds()
            )
            for stage in ("discover", "parse", "normalize", "validate"):
                samples.setdefault(f"full_api_{stage}", []).append(row[f"seconds_{stage}"])
            samples.setdefault("noop_api", []).append(timed(run(archive, out), api))
            samples.setdefault("empty_api", []).append(timed(run(empty, work / f"empty-api-{r}"), api))
            samples.setdefault("empty_temp", []).append(timed(run(empty, work / f"empty-temp-{r}"), temp))
            samples.setdefault("io_floor_warm", []).append(io_floor(archive, evict_first=False))
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(work / f"naive-{r}", ignore_errors=True)
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
    values = {name: statistics.median(v) for name, v in samples.items()}
    values["naive / run_api"] = values["naive"] / values["run_api"]
    for name, value in sorted(values.items()):
        print(f"{name:24} {value:8.2f}")
    if not args.no_write:
        command = f"python benchmarks/lean.py --events {args.events} --repeats {args.repeats}"
        save("lean", args.events, command, values)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
