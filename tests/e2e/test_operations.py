"""Safe to leave running (contract, section 4), through the real command line: the shrink
guard, the lock taken first, clean stops on SIGINT and SIGTERM, any DuckDB reader, and the
smaller things a user meets (status, --json, full paths, exports)."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from pipeline.core.config import OutputLayout
from pipeline.publish.catalog import current_run_id
from tests.conftest import REPO, SAMPLE, event_doc, write_archive
from tests.e2e_support import api_env, cli, own_server_env, processes_with, rows

pytestmark = pytest.mark.flow


@pytest.fixture(scope="module")
def sample_output(prefect_server, tmp_path_factory) -> Path:
    """One published output of the sample, made through the command line."""
    out = tmp_path_factory.mktemp("ops") / "out"
    done = cli("run", "--input", str(SAMPLE), "--output", str(out), env=api_env())
    assert done.returncode == 0, done.stderr
    return out


# --- 1. shrink guard -----------------------------------------------------------------------------
def test_an_empty_input_does_not_replace_the_publication(prefect_server, tmp_path):
    out = tmp_path / "out"
    assert cli("run", "--input", str(SAMPLE), "--output", str(out), env=api_env()).returncode == 0
    before = current_run_id(OutputLayout(out))
    empty = tmp_path / "unmounted"
    empty.mkdir()
    refused = cli("run", "--input", str(empty), "--output", str(out), env=api_env())
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        "error: the new publication would hold 0 events, fewer than 90% of the current publication's 32; "
        "nothing published (an empty or half-mounted input folder?). Run with --allow-shrink if the "
        "archive really shrank"
    ]
    assert current_run_id(OutputLayout(out)) == before
    allowed = cli("run", "--input", str(empty), "--output", str(out), "--allow-shrink", env=api_env())
    assert allowed.returncode == 0, allowed.stderr
    assert rows(out / "news.duckdb", "SELECT count(*) FROM events") == [(0,)]
    log = rows(out / "news.duckdb", "SELECT outcome FROM runs ORDER BY started_at")
    assert log == [("published",), ("shrink_refused",), ("published",)]


# --- 3. the lock first ------------------------------------------------------------------------------
@pytest.mark.parametrize("holder", ["run", "watch"])
def test_a_locked_output_is_refused_before_anything_starts(tmp_path, holder):
    from pipeline.core.lock import claim_output

    out = tmp_path / "out"
    claim_output(out)
    fd = os.open(out / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, json.dumps({"pid": 4242, "command": holder, "since": "2026-11-25T10:00:00Z"}).encode())
    home = tmp_path / "prefect-home"
    try:
        started = time.monotonic()
        refused = cli("run", "--input", str(SAMPLE), "--output", str(out), env=own_server_env(home))
        elapsed = time.monotonic() - started
    finally:
        os.close(fd)
    assert refused.returncode == 1
    who = "a watcher holds the output" if holder == "watch" else "a run is in progress on"
    assert refused.stderr.strip().splitlines()[0].startswith(f"error: {who}")
    assert "pid 4242" in refused.stderr
    # nothing else happened: no Prefect server was started (its database would be in PREFECT_HOME)
    assert list(home.iterdir()) == []
    assert elapsed < 10, elapsed  # a sanity bound; the 2 s promise is measured in benchmarks/


# --- 4. interrupts --------------------------------------------------------------------------------
def _interrupted_run(tmp_path: Path, published: Path, sig: int, group: bool, **stall: str) -> tuple:
    home = tmp_path / "prefect-home"
    flag = tmp_path / "stalled"
    env = own_server_env(home, PIPELINE_STALL_AT="normalize:events", PIPELINE_STALL_FLAG=str(flag), **stall)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline",
            "run",
            "--input",
            str(SAMPLE),
            "--output",
            str(published),
            "--full-refresh",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not flag.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.1)
        sent = time.monotonic()
        if group:
            os.killpg(proc.pid, sig)  # what a terminal's Ctrl-C does
        else:
            os.kill(proc.pid, sig)
        _, err = proc.communicate(timeout=30)
        return proc.returncode, err, time.monotonic() - sent, str(home)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.parametrize(
    ("sig", "group", "stall"),
    [
        (signal.SIGINT, True, {}),
        (signal.SIGTERM, False, {}),
        (signal.SIGTERM, False, {"PIPELINE_STALL_SIGNALS": "blocked"}),  # stuck in C: the watchdog ends it
    ],
    ids=["ctrl-c", "sigterm", "sigterm-stuck"],
)
def test_a_signal_stops_the_run_cleanly(prefect_server, tmp_path, sig, group, stall):
    from pipeline.publish import runs

    out = tmp_path / "out"
    assert cli("run", "--input", str(SAMPLE), "--output", str(out), env=api_env()).returncode == 0
    layout = OutputLayout(out)
    before = (current_run_id(layout), layout.catalog.read_bytes())
    code, err, seconds, home = _interrupted_run(tmp_path, out, sig, group, **stall)
    assert code == 128 + sig
    assert err.strip().splitlines() == ["error: interrupted; the previous publication is intact"]
    assert seconds < 10
    assert (current_run_id(layout), layout.catalog.read_bytes()) == before
    time.sleep(0.5)
    assert processes_with(home) == []  # the temporary Prefect server is gone, no orphan
    fd = os.open(layout.lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released
    finally:
        os.close(fd)
    assert not layout.work.exists() or list(layout.work.iterdir()) == []
    assert sorted(p.name for p in layout.publications.iterdir()) == [before[0]]
    if not stall:  # the watchdog's hard exit cannot write the log; the next run's cleanup copes
        assert runs.read_log(layout.run_log).to_pylist()[-1]["outcome"] == "interrupted"
    again = cli("run", "--input", str(SAMPLE), "--output", str(out), "--full-refresh", env=api_env())
    assert again.returncode == 0, again.stderr


def test_a_hang_in_the_interpreters_exit_does_not_keep_a_finished_run_alive(prefect_server, tmp_path):
    """Prefect waits for its log and event services in a thread exit hook, without a deadline;
    a run whose work is done exits with its own status a few seconds later all the same."""
    from pipeline.core.interrupt import EXIT_GRACE_SECONDS

    out = tmp_path / "out"
    flag = tmp_path / "exit-stalled"
    done = cli(
        "run", "--input", str(SAMPLE), "--output", str(out),
        env=api_env(PIPELINE_STALL_AT="exit", PIPELINE_STALL_FLAG=str(flag)),
    )  # fmt: skip
    ended = time.time()
    assert done.returncode == 0, done.stderr
    assert flag.exists()  # the exit did stall (for 120 s, had nothing cut it short)
    assert ended - flag.stat().st_mtime < EXIT_GRACE_SECONDS + 3
    assert "published" in done.stdout  # the summary was flushed before the cut
    assert rows(out / "news.duckdb", "SELECT count(*) FROM events") == [(32,)]


# --- 5. any DuckDB reader ---------------------------------------------------------------------------
def duckdb_15() -> Path:
    """A DuckDB 1.5 Python package in its own folder (installed by dev.py, or here)."""
    target = REPO / ".venv" / "compat" / "duckdb-1.5"
    if not (target / "duckdb").is_dir():
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(target), "duckdb==1.5.6"],
            check=True,
        )
    return target


def read_with_duckdb_15(path: Path) -> dict:
    script = (
        "import duckdb, json, sys\n"
        "con = duckdb.connect(sys.argv[1], read_only=True)\n"
        "names = [r[0] for r in con.execute('SELECT table_name FROM duckdb_tables() UNION ALL "
        "SELECT view_name FROM duckdb_views() WHERE NOT internal').fetchall()]\n"
        "print(json.dumps({'version': duckdb.__version__, "
        "'counts': {n: con.execute(f'SELECT count(*) FROM {n}').fetchone()[0] for n in names}}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-S", "-c", script, str(path)],
        env={"PYTHONPATH": str(duckdb_15()), "PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        cwd="/",
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_duckdb_1_5_reads_the_catalog_and_an_export(sample_output, tmp_path):
    from pipeline.core.tables import PUBLISHED, VIEWS

    catalog = read_with_duckdb_15(sample_output / "news.duckdb")
    assert catalog["version"].startswith("1.5.")
    assert set(catalog["counts"]) == {*PUBLISHED, *VIEWS}
    assert catalog["counts"]["events"] == 32
    exported = cli(
        "export", "--output", str(sample_output), "--format", "duckdb", "--to", str(tmp_path / "x")
    )
    assert exported.returncode == 0, exported.stderr
    snapshot = read_with_duckdb_15(tmp_path / "x" / "news.duckdb")
    assert snapshot["counts"] == catalog["counts"]


# --- 9. smaller things -----------------------------------------------------------------------------------
def test_an_output_that_is_a_file_is_refused_at_once(tmp_path):
    target = tmp_path / "out"
    target.write_text("mine")
    refused = cli("run", "--output", str(target))
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [f"error: the output {target} is a file, not a folder"]
    assert target.read_text() == "mine"


def test_json_summary_full_paths_and_status(prefect_server, tmp_path):
    out = tmp_path / ("a-long-folder-name-" * 4) / "out"
    done = cli("run", "--input", str(SAMPLE), "--output", str(out), "--json", env=api_env(COLUMNS="40"))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["published"] is True and result["events"] == 32 and result["full_refresh"] is True
    assert Path(result["report"]).is_file() and Path(result["catalog"]) == out / "news.duckdb"
    again = cli("run", "--input", str(SAMPLE), "--output", str(out), env=api_env(COLUMNS="40"))
    assert again.returncode == 0
    assert f"  catalog                           {out / 'news.duckdb'}" in again.stdout.splitlines()
    assert "no change since publication" in again.stdout
    status = cli("status", "--output", str(out))
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert lines[2].startswith(f"current publication: {result['run_id']} (published ")
    assert "32 events; validation passed" in lines[2]
    assert lines[3].startswith("last run: ") and " unchanged: no change since " in lines[3]
    assert lines[4] == "lock: free"
    as_json = json.loads(cli("status", "--output", str(out), "--json").stdout)
    assert as_json["current"]["run_id"] == result["run_id"] and as_json["last_run"]["outcome"] == "unchanged"
    assert rows(out / "news.duckdb", "SELECT full_refresh FROM runs") == [(True,)]


def test_status_of_a_folder_that_is_not_an_output(tmp_path):
    done = cli("status", "--output", str(tmp_path))
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1


def test_help_names_the_export_default(tmp_path):
    done = cli("export", "--help")
    assert "(default: duckdb)" in " ".join(done.stdout.split())


def test_csv_export_is_safe_in_a_spreadsheet_and_lists_are_json(prefect_server, tmp_path):
    archive = write_archive(
        tmp_path / "in",
        {
            "news/2019/05/1/a.md": event_doc(date="2019-05-01", title='=HYPERLINK("http://evil","x")'),
            "news/2019/05/2/b.md": event_doc(date="2019-05-02", title="-1 dead\x00 in raid"),
        },
    )
    out = tmp_path / "out"
    assert cli("run", "--input", str(archive), "--output", str(out), env=api_env()).returncode == 0
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    done = cli("export", "--output", str(out), "--format", "csv", "--to", str(private))
    assert done.returncode == 0, done.stderr
    assert private.stat().st_mode & 0o777 == 0o700
    events = (private / "events.csv").read_text(encoding="utf-8")
    assert "'=HYPERLINK(" in events and "'-1 dead in raid" in events and "\x00" not in events
    storylines = (private / "publishers.csv").read_text(encoding="utf-8").splitlines()
    assert any('["' in line for line in storylines[1:]), storylines[:3]
    raw = tmp_path / "raw"
    assert (
        cli("export", "--output", str(out), "--format", "csv", "--to", str(raw), "--csv-raw").returncode == 0
    )
    assert '"=HYPERLINK(' in (raw / "events.csv").read_text(encoding="utf-8")
    again = cli("export", "--output", str(out), "--format", "parquet", "--to", str(private))
    assert again.returncode == 1 and "--force" in again.stderr
    forced = cli("export", "--output", str(out), "--format", "parquet", "--to", str(private), "--force")
    assert forced.returncode == 0, forced.stderr
    assert sorted(p.suffix for p in private.iterdir()) == [".parquet"] * len(list(private.iterdir()))
    assert private.stat().st_mode & 0o777 == 0o700


def test_rollback_is_not_undone_by_the_next_run(prefect_server, tmp_path):
    from pipeline.publish.catalog import kept_publications

    archive = write_archive(tmp_path / "in", {"news/2019/05/1/a.md": event_doc(date="2019-05-01", title="A")})
    out = tmp_path / "out"
    made = []
    for i in range(4):
        write_archive(
            archive, {f"news/2019/06/{i + 1}/n{i}.md": event_doc(date=f"2019-06-0{i + 1}", title=f"N{i}")}
        )
        done = cli(
            "run", "--input", str(archive), "--output", str(out), "--retention", "0", "--json", env=api_env()
        )
        made.append(json.loads(done.stdout)["run_id"])
    layout = OutputLayout(out)
    oldest_kept = kept_publications(layout)[-1]
    assert cli("rollback", oldest_kept, "--output", str(out)).returncode == 0
    write_archive(archive, {"news/2019/07/1/late.md": event_doc(date="2019-07-01", title="Late")})
    done = cli(
        "run", "--input", str(archive), "--output", str(out), "--retention", "0", "--json", env=api_env()
    )
    assert done.returncode == 0, done.stderr
    newest = json.loads(done.stdout)["run_id"]
    # kept: the new one, the one rolled back to, and the one that was current before the rollback
    assert kept_publications(layout) == [newest, oldest_kept, made[-1]]


def test_a_reader_of_the_previous_publication_keeps_working_after_a_run(prefect_server, tmp_path):
    """With --keep 1, the publication a reader opened stays for the retention window."""
    archive = write_archive(tmp_path / "in", {"news/2019/05/1/a.md": event_doc(date="2019-05-01", title="A")})
    out = tmp_path / "out"
    assert (
        cli("run", "--input", str(archive), "--output", str(out), "--keep", "1", env=api_env()).returncode
        == 0
    )
    reader = duckdb.connect(str(out / "news.duckdb"), read_only=True)
    for i in range(2):
        write_archive(
            archive, {f"news/2019/06/{i + 1}/n{i}.md": event_doc(date=f"2019-06-0{i + 1}", title=f"N{i}")}
        )
        assert (
            cli("run", "--input", str(archive), "--output", str(out), "--keep", "1", env=api_env()).returncode
            == 0
        )
    assert reader.execute("SELECT count(*) FROM events").fetchone() == (1,)
    reader.close()


# --- 12. one line, whatever goes wrong -------------------------------------------------------------------
def test_history_and_rollback_over_a_corrupt_runs_file(sample_output, tmp_path):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(sample_output, out, symlinks=True)
    from pipeline.publish.catalog import build_catalog, kept_publications

    layout = OutputLayout(out)
    run_id = kept_publications(layout)[0]
    build_catalog(layout.catalog, layout.publication(run_id))  # absolute paths of the copy
    (layout.publication(run_id) / "runs" / "all.parquet").write_bytes(b"PAR1 not really")
    history = cli("history", "--output", str(out))
    assert history.returncode == 0 and "(runs file unreadable)" in history.stdout
    back = cli("rollback", "20200101T000000000000Z-1", "--output", str(out))
    assert back.returncode == 1 and len(back.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="drops root's capabilities with setpriv")
def test_rollback_on_a_read_only_output_is_one_line(sample_output, tmp_path):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(sample_output, out, symlinks=True)
    from pipeline.publish.catalog import kept_publications

    run_id = kept_publications(OutputLayout(out))[0]
    os.chmod(out, 0o555)
    try:
        done = subprocess.run(
            [
                "setpriv",
                "--bounding-set",
                "-dac_override,-dac_read_search,-fowner",
                sys.executable,
                "-m",
                "pipeline",
                "rollback",
                run_id,
                "--output",
                str(out),
            ],
            capture_output=True,
            text=True,
            cwd=REPO,
        )
    finally:
        os.chmod(out, 0o755)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr


def test_export_on_a_full_disk_is_one_line(sample_output, tmp_path, monkeypatch, capsys):
    import errno

    from pipeline import cli as command_line
    from pipeline.publish import export

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x"))

    monkeypatch.setattr(export, "_to_files", full)
    code = command_line.main(
        ["export", "--output", str(sample_output), "--format", "csv", "--to", str(tmp_path / "x")]
    )
    err = capsys.readouterr().err
    assert code == 1 and err.strip().splitlines() == [
        f"error: export failed: No space left on device ({tmp_path / 'x'}); nothing was written to {tmp_path / 'x'}"
    ]
    assert (
        not (tmp_path / "x").exists()
        and [p.name for p in tmp_path.iterdir() if p.name.startswith(".x")] == []
    )


def test_reading_commands_exit_cleanly_every_time(sample_output):
    """`history` and `status` read the state's Parquet by path: reading it through a Python
    buffer made pyarrow abort the interpreter at exit now and then (`terminate called without
    an active exception`, exit -6)."""
    codes = [
        cli(command, "--output", str(sample_output)).returncode
        for _ in range(8)
        for command in ("history", "status")
    ]
    assert codes == [0] * 16


def test_run_on_changed_paths_from_stdin(prefect_server, tmp_path):
    import shutil as sh

    archive = tmp_path / "in"
    sh.copytree(SAMPLE, archive)
    out = tmp_path / "out"
    assert cli("run", "--input", str(archive), "--output", str(out), env=api_env()).returncode == 0
    write_archive(archive, {"news/2025/01/5/late.md": event_doc(date="2025-01-05", title="Late")})

    def run(paths: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "pipeline",
                "run",
                "--input",
                str(archive),
                "--output",
                str(out),
                "--changed",
                "-",
                "--json",
            ],
            input=paths,
            capture_output=True,
            text=True,
            cwd=REPO,
            env=api_env(),
            timeout=300,
        )

    done = run("news/2025/01/5/late.md\n")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["events_added"] == 1
    refused = run("../outside.md\n")
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        "error: not a relative path inside the input: '../outside.md'"
    ]


def test_the_temporary_server_serves_the_run_and_a_profile_api_wins(prefect_server, tmp_path):
    """Without PREFECT_API_URL the run starts its temporary server before importing the flow;
    the run reports to it and leaves no process behind. When the Prefect profile names an
    API (not the environment), the run reports there and the early server is stopped."""
    from prefect.settings import PREFECT_API_URL

    home = tmp_path / "home"
    run = cli("run", "--input", str(SAMPLE), "--output", str(tmp_path / "a"), env=own_server_env(home))
    assert run.returncode == 0, run.stderr
    assert processes_with(str(home)) == []

    profiled = tmp_path / "profiled"
    profiled.mkdir()
    api = PREFECT_API_URL.value()
    (profiled / "profiles.toml").write_text(f'active = "t"\n\n[profiles.t]\nPREFECT_API_URL = "{api}"\n')
    out = tmp_path / "b"
    run = cli("run", "--input", str(SAMPLE), "--output", str(out), "--json", env=own_server_env(profiled))
    assert run.returncode == 0, run.stderr
    assert processes_with(str(profiled)) == []

    import asyncio

    from prefect.client.orchestration import get_client

    async def outputs() -> list[str]:
        async with get_client() as client:
            return [
                str(r.parameters.get("output"))
                for r in await client.read_flow_runs(limit=200, sort="EXPECTED_START_TIME_DESC")
            ]

    assert str(out) in asyncio.run(outputs())  # reported to the profile's API


def test_the_temporary_server_never_calls_home(monkeypatch):
    """No network at run time: the temporary server's telemetry is off even when the caller's
    environment says nothing about it (a run once logged `Failed to send telemetry`)."""
    from pipeline.core import prefect_api

    for name in ("PREFECT_SERVER_ANALYTICS_ENABLED", "DO_NOT_TRACK", "PREFECT_API_URL"):
        monkeypatch.delenv(name, raising=False)
    prefect_api.start_early()
    try:
        server = prefect_api._early[0]
        assert server.server_process is not None
        environ = Path(f"/proc/{server.server_process.pid}/environ").read_bytes().split(b"\0")
        assert b"PREFECT_SERVER_ANALYTICS_ENABLED=false" in environ
        assert b"DO_NOT_TRACK=1" in environ
    finally:
        prefect_api.stop_servers()
    assert not prefect_api._early
