"""Hostile environments: permissions, symbolic links, crowded output folders, corrupted
state, a clock that goes back. Nothing is lost, nothing outside the input is read, nothing
the pipeline did not make is written or deleted, and every command ends in one line.

Tests run as root, which reads through file permissions: where a permission matters the
command runs under `setpriv` without the capabilities that bypass them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.core.config import OutputLayout
from pipeline.publish.catalog import current_run_id
from tests.conftest import REPO, build_tables, event_doc, write_archive
from tests.e2e_support import rows

NO_BYPASS = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner"]
needs_setpriv = pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs util-linux setpriv")


def cli(*args: str, caps: bool = True, cwd: Path = REPO) -> subprocess.CompletedProcess:
    prefix = [] if caps else NO_BYPASS
    return subprocess.run(
        [*prefix, sys.executable, "-m", "pipeline", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def small_archive(root: Path, n: int = 3) -> Path:
    return write_archive(
        root,
        {
            f"news/2019/05/{i + 1}/event-{i}.md": event_doc(date=f"2019-05-0{i + 1}", title=f"Event {i}")
            for i in range(n)
        },
    )


# --- 1. a folder the run cannot list ------------------------------------------------------------
@needs_setpriv
def test_an_unlistable_folder_fails_the_run_and_keeps_the_publication(tmp_path):
    archive = small_archive(tmp_path / "in")
    write_archive(archive, {"news/2020/01/1/later.md": event_doc(date="2020-01-01", title="Later")})
    out = tmp_path / "out"
    assert cli("run", "--input", str(archive), "--output", str(out)).returncode == 0
    before = current_run_id(OutputLayout(out))
    os.chmod(archive / "news/2019", 0)
    try:
        result = cli("run", "--input", str(archive), "--output", str(out), caps=False)
    finally:
        os.chmod(archive / "news/2019", 0o755)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: cannot list input folder {archive / 'news/2019'}: Permission denied; nothing published"
    ]
    assert current_run_id(OutputLayout(out)) == before
    assert rows(out / "news.duckdb", "SELECT count(*) FROM events") == [(4,)]


@needs_setpriv
def test_discover_names_every_folder_it_cannot_list(tmp_path):
    archive = small_archive(tmp_path / "in")
    os.chmod(archive / "news/2019/05", 0)
    script = (
        "import sys; from pathlib import Path; from pipeline.extract.discover import discover_table, InputUnlistable\n"
        "try: discover_table(Path(sys.argv[1]))\n"
        "except InputUnlistable as exc: print(exc.errors)\n"
    )
    try:
        out = subprocess.run(
            [*NO_BYPASS, sys.executable, "-c", script, str(archive)],
            capture_output=True,
            text=True,
            cwd=REPO,
            check=True,
        )
    finally:
        os.chmod(archive / "news/2019/05", 0o755)
    assert out.stdout.strip() == "[('news/2019/05', 'Permission denied')]"


def _deep_folder(root: Path, total: int) -> tuple[list[str], int]:
    """Make nested folders under `root` whose path exceeds `total` characters (made relative to
    each parent's descriptor: the whole path is too long for the OS)."""
    names, length = [], len(str(root))
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        while length <= total:
            name = f"{len(names):02d}" + "d" * 200
            os.mkdir(name, dir_fd=fd)
            child = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
            names.append(name)
            length += len(name) + 1
        file_fd = os.open("deep.md", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(file_fd, event_doc(title="Deep").encode())
        os.close(file_fd)
    finally:
        os.close(fd)
    return names, length


def test_a_path_over_the_os_limit_is_a_files_row_with_its_reason(tmp_path):
    archive = small_archive(tmp_path / "in")
    names, length = _deep_folder(archive, 4512)
    assert length > 4096
    con = build_tables(archive, tmp_path / "w")
    deep = "/".join(names) + "/deep.md"
    assert con.execute("SELECT status, reason, detail FROM files WHERE file_path = ?", [deep]).fetchall() == [
        ("rejected", "unreadable", "File name too long")
    ]
    assert con.execute("SELECT count(*) FROM files").fetchone() == (4,)
    shutil.rmtree(tmp_path / "in", ignore_errors=True)


# --- 2. symbolic links out of the input ---------------------------------------------------------
def test_links_to_files_outside_the_input_are_not_read(tmp_path):
    elsewhere = write_archive(tmp_path / "elsewhere", {"private-event.md": event_doc(title="Private memo")})
    archive = small_archive(tmp_path / "in")
    inbox = archive / "inbox"
    inbox.mkdir()
    (inbox / "memo.md").symlink_to(elsewhere / "private-event.md")
    (inbox / "passwd.md").symlink_to("/etc/passwd")
    (inbox / "env.md").symlink_to("/proc/self/environ")
    (inbox / "alias.md").symlink_to(archive / "news/2019/05/1/event-0.md")  # inside: read
    con = build_tables(archive, tmp_path / "w")
    outside = con.execute(
        "SELECT file_path, status, reason, content_sha256, bytes, event_id FROM files "
        "WHERE file_path LIKE 'inbox/%' ORDER BY 1"
    ).fetchall()
    assert outside[0][:3] == ("inbox/alias.md", "parsed", None)
    assert outside[1:] == [
        (f"inbox/{name}.md", "rejected", "outside_input", None, None, None)
        for name in ("env", "memo", "passwd")
    ]
    details = {
        d for (d,) in con.execute("SELECT detail FROM files WHERE reason = 'outside_input'").fetchall()
    }
    assert details == {"a symbolic link to a file outside the input folder"}
    assert con.execute("SELECT count(*) FROM events WHERE title = 'Private memo'").fetchone() == (0,)


# --- 3. an output folder holding someone else's files --------------------------------------------
def test_a_folder_that_is_not_ours_is_refused_untouched(tmp_path):
    out = write_archive(
        tmp_path / "thesis",
        {
            "publications/thesis/thesis.tex": "\\documentclass{article}",
            ".work/keep/w.txt": "keep me",
            "current": "a file",
            "news.duckdb": "not a database",
            "report/index.html": "<p>mine</p>",
        },
    )
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    result = cli("run", "--output", str(out))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: the output folder {out} is not empty and was not made by this pipeline "
        "(it holds .work, current, news.duckdb, ...); choose a new or empty folder"
    ]
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_cleanup_and_pruning_remove_only_what_runs_made(prefect_server, tmp_path):
    from flows.news_etl import news_etl

    archive = small_archive(tmp_path / "in")
    out = tmp_path / "out"
    news_etl(input=str(archive), output=str(out), retention="0")
    planted = write_archive(
        out,
        {
            "publications/thesis/thesis.tex": "x",
            ".work/keep/w.txt": "y",
            "publications/20200101T000000000000Z-1/runs/all.parquet": "z",
        },
    )
    for i in range(5):
        write_archive(
            archive,
            {f"news/2019/06/{i + 1}/more-{i}.md": event_doc(date=f"2019-06-0{i + 1}", title=f"More {i}")},
        )
        news_etl(input=str(archive), output=str(out), retention="0")
    for rel in (
        "publications/thesis/thesis.tex",
        ".work/keep/w.txt",
        "publications/20200101T000000000000Z-1/runs/all.parquet",
    ):
        assert (planted / rel).exists(), rel
    made = [
        p.name
        for p in (out / "publications").iterdir()
        if p.name not in ("thesis", "20200101T000000000000Z-1")
    ]
    assert len(made) == 3  # --keep 3 of the six publications made

    inside = cli("export", "--output", str(out), "--format", "csv", "--to", str(out / "publications" / "x"))
    assert inside.returncode == 1
    assert inside.stderr.strip().splitlines() == [
        f"error: export target {out / 'publications' / 'x'} is inside the output folder {out} (or holds it); "
        "the pipeline manages that folder: choose a folder outside it"
    ]
    assert not (out / "publications" / "x").exists()


# --- 5. file names that are not UTF-8 -------------------------------------------------------------
def test_names_that_escape_alike_keep_distinct_paths(prefect_server, tmp_path):
    from flows.news_etl import news_etl

    archive = small_archive(tmp_path / "in")
    folder = os.fsencode(archive / "inbox")
    os.mkdir(folder)
    for raw in (b"caf\xe9.md", b"caf\\xe9.md", b"back\\slash.md"):
        with open(os.path.join(folder, raw), "wb") as handle:
            handle.write(event_doc(title=raw.decode("latin-1")).encode())
    result = news_etl(input=str(archive), output=str(tmp_path / "out"))
    got = rows(
        Path(result["catalog"]),
        "SELECT file_path, status, reason FROM files WHERE file_path LIKE 'inbox/%' ORDER BY 1",
    )
    assert got == [
        ("inbox/back\\\\slash.md", "parsed", None),
        ("inbox/caf\\\\xe9.md", "parsed", None),
        ("inbox/caf\\xe9.md", "rejected", "bad_file_name"),
    ]


# --- 6. corrupted state -------------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["manifest", "run_log", "registry", "staging"])
def test_state_that_cannot_be_read_is_set_aside_and_rebuilt(prefect_server, tmp_path, damage):
    from flows.news_etl import news_etl

    archive = small_archive(tmp_path / "in")
    out = tmp_path / "out"
    layout = OutputLayout(out)
    first = news_etl(input=str(archive), output=str(out))
    target = {
        "manifest": layout.manifest,
        "run_log": layout.run_log,
        "registry": layout.registry,
        "staging": sorted(layout.staging.glob("stg_events-*.parquet"))[0],
    }[damage]
    target.write_bytes(target.read_bytes()[: len(target.read_bytes()) // 2] + b"garbage")
    write_archive(archive, {"news/2019/07/1/new.md": event_doc(date="2019-07-01", title="New")})
    second = news_etl(input=str(archive), output=str(out))
    assert second["published"] and second["events"] == first["events"] + 1
    if damage != "staging":
        assert [p.name for p in target.parent.glob(f"{target.name}.corrupt-*")], "set aside"
        assert any("could not be read" in w for w in second["warnings"])
    full = news_etl(input=str(archive), output=str(out), full_refresh=True)
    assert full["published"] and full["events"] == second["events"]
    assert rows(Path(full["catalog"]), "SELECT count(*) FROM runs")[0][0] >= 1


def test_a_garbled_staging_file_does_not_break_a_full_refresh(prefect_server, tmp_path):
    from flows.news_etl import news_etl

    archive = small_archive(tmp_path / "in")
    out = tmp_path / "out"
    news_etl(input=str(archive), output=str(out))
    for path in OutputLayout(out).staging.glob("stg_sources-*.parquet"):
        path.write_bytes(b"PAR1 garbled")
    result = news_etl(input=str(archive), output=str(out), full_refresh=True)
    assert result["published"] and result["events"] == 3


# --- 7. the clock going back ---------------------------------------------------------------------------
def test_an_event_dated_ahead_leaves_when_the_clock_returns(prefect_server, tmp_path, monkeypatch):
    import datetime as dt

    from flows.news_etl import news_etl
    from pipeline.core import config

    real_today = config.utc_today()
    ahead = real_today + dt.timedelta(days=2)
    archive = small_archive(tmp_path / "in")
    write_archive(archive, {"inbox/ahead.md": event_doc(date=ahead.isoformat(), title="From the future")})
    out = tmp_path / "out"
    monkeypatch.setattr(config, "utc_today", lambda: real_today + dt.timedelta(days=5))
    assert news_etl(input=str(archive), output=str(out))["events"] == 4
    monkeypatch.setattr(config, "utc_today", lambda: real_today)
    back = news_etl(input=str(archive), output=str(out), allow_shrink=True)  # 3 of 4: past the guard
    assert back["events"] == 3
    assert rows(Path(back["catalog"]), "SELECT reason FROM files WHERE file_path = 'inbox/ahead.md'") == [
        ("date_out_of_range",)
    ]


@pytest.mark.parametrize("reported", [False, True], ids=["listed", "reported-paths"])
def test_a_file_dated_too_far_ahead_is_read_again_on_another_day_only(
    prefect_server, tmp_path, monkeypatch, reported
):
    """Whether the archive is listed or only the changed paths are reported (a watcher)."""
    import datetime as dt

    from flows.news_etl import news_etl
    from pipeline.core import config

    real_today = config.utc_today()
    archive = small_archive(tmp_path / "in")
    ahead = real_today + dt.timedelta(days=2)
    write_archive(archive, {"inbox/ahead.md": event_doc(date=ahead.isoformat(), title="From the future")})
    out = tmp_path / "out"
    monkeypatch.setattr(config, "utc_today", lambda: real_today)
    first = news_etl(input=str(archive), output=str(out))
    assert (first["events"], first["rejected"]) == (3, 1)
    # The same day: its rejection stands, only the new file is read.
    write_archive(archive, {"news/2019/07/1/new.md": event_doc(date="2019-07-01", title="New")})
    same_day = news_etl(
        input=str(archive), output=str(out), changed_paths=["news/2019/07/1/new.md"] if reported else None
    )
    assert (same_day["files_read"], same_day["events"], same_day["rejected"]) == (1, 4, 1)
    # The next day its date is tomorrow's: read again, and accepted.
    monkeypatch.setattr(config, "utc_today", lambda: real_today + dt.timedelta(days=1))
    next_day = news_etl(input=str(archive), output=str(out), changed_paths=[] if reported else None)
    assert (next_day["files_read"], next_day["events"], next_day["rejected"]) == (1, 5, 0)


# --- 8. a run that failed after writing its runs file ----------------------------------------------------
def test_a_run_that_failed_to_publish_is_not_recorded_as_published(prefect_server, tmp_path, monkeypatch):
    import errno

    from flows.news_etl import news_etl
    from pipeline.publish import catalog as publish
    from pipeline.publish import runs
    from pipeline.publish.status import history_lines

    archive = small_archive(tmp_path / "in")
    out = tmp_path / "out"
    good = news_etl(input=str(archive), output=str(out))
    write_archive(archive, {"news/2019/07/1/new.md": event_doc(date="2019-07-01", title="New")})

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(out / "news.duckdb"))

    monkeypatch.setattr(publish, "build_catalog", read_only)
    with pytest.raises(Exception, match="Read-only"):
        news_etl(input=str(archive), output=str(out))
    monkeypatch.undo()
    log = runs.read_log(OutputLayout(out).run_log).to_pylist()
    failed = log[-1]
    assert (failed["published"], failed["outcome"]) == (False, "failed")
    assert "Read-only" in failed["detail"]
    shown = "\n".join(history_lines(out))
    assert failed["run_id"] not in shown and good["run_id"] in shown
    assert not OutputLayout(out).publication(failed["run_id"]).exists()


# --- 9. links planted in the output ------------------------------------------------------------------------
def test_links_planted_in_the_output_are_not_written_through(prefect_server, tmp_path):
    from flows.news_etl import news_etl

    archive = small_archive(tmp_path / "in")
    out = tmp_path / "out"
    news_etl(input=str(archive), output=str(out))
    decoy = tmp_path / "decoy.txt"
    decoy.write_text("precious")
    layout = OutputLayout(out)
    (out / ".lock").unlink()
    (out / ".lock").symlink_to(decoy)
    for name in ("runs.parquet", "manifest.parquet", "publications.json"):
        (layout.state / f".{name}.{os.getpid()}.tmp").symlink_to(decoy)
    write_archive(archive, {"news/2019/07/1/new.md": event_doc(date="2019-07-01", title="New")})
    assert news_etl(input=str(archive), output=str(out))["published"]
    assert decoy.read_text() == "precious"
    assert not (out / ".lock").is_symlink()


# --- 10. sparse files ---------------------------------------------------------------------------------------
def test_a_huge_sparse_file_is_rejected_from_its_size(tmp_path):
    archive = small_archive(tmp_path / "in")
    huge = archive / "inbox/huge.md"
    huge.parent.mkdir()
    with open(huge, "wb") as handle:
        handle.truncate(4 * 2**30)  # 4 GiB, nothing on disk: reading it would take seconds
    import time

    started = time.perf_counter()
    con = build_tables(archive, tmp_path / "w")
    assert time.perf_counter() - started < 60  # hashing it would read 4 GiB of zeros
    assert con.execute(
        "SELECT status, reason, bytes, content_sha256 FROM files WHERE file_path = 'inbox/huge.md'"
    ).fetchall() == [("rejected", "too_large", 4 * 2**30, None)]


# --- 13. titles without Latin letters --------------------------------------------------------------------------
def test_titles_without_latin_letters_keep_distinct_ids(tmp_path):
    import hashlib

    titles = ["Землетрясение в Турции", "トルコで地震", "زلزال في تركيا"]
    archive = write_archive(
        tmp_path / "in",
        {f"inbox/{i}.md": event_doc(date="2023-02-06", title=t) for i, t in enumerate(titles)},
    )
    con = build_tables(archive, tmp_path / "w")
    got = sorted(con.execute("SELECT event_id FROM events").fetchall())
    want = sorted(("2023-02-06/x" + hashlib.sha256(t.encode()).hexdigest()[:12],) for t in titles)
    assert got == want


# --- 14. a catalog build that fails ------------------------------------------------------------------------------
def test_a_failed_catalog_build_leaves_no_files_behind(tmp_path, monkeypatch):
    from pipeline.core.tables import runs_file
    from pipeline.publish import catalog as publish
    from pipeline.publish import runs

    build_tables(small_archive(tmp_path / "in"), tmp_path / "w").close()
    runs.write_table(runs.SCHEMA.empty_table(), runs_file(tmp_path / "w" / "publication"))
    out = tmp_path / "out"
    out.mkdir()
    real = publish.attach_tables

    def fail_half_way(con, publication, materialize=False):
        real(con, publication, materialize)
        con.execute("CREATE TABLE filler AS SELECT range AS x FROM range(1000)")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(publish, "attach_tables", fail_half_way)
    with pytest.raises(OSError):
        publish.build_catalog(out / "news.duckdb", tmp_path / "w" / "publication")
    assert sorted(p.name for p in out.iterdir()) == []
