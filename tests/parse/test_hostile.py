"""Hostile and broken input: nothing crashes the run, everything is accounted for."""

import datetime as dt
import os
import random
import time

import pytest

from pipeline.extract.discover import discover
from pipeline.parse import stage
from pipeline.parse.document import ParsedEvent, Rejected, parse_document
from tests.conftest import SAMPLE, TODAY, build_tables, event_doc, write_archive


def statuses(con) -> dict[str, tuple[str, str | None]]:
    return {p: (s, r) for p, s, r in con.execute("SELECT file_path, status, reason FROM files").fetchall()}


def test_a_50_mb_document_is_rejected_as_too_large_from_its_size(tmp_path):
    big = tmp_path / "in" / "news/2014/06/21/huge.md"
    big.parent.mkdir(parents=True)
    with open(big, "wb") as f:
        f.write(event_doc().encode())
        f.write(b"x" * (50 * 2**20))
    con = build_tables(tmp_path / "in", tmp_path / "w")
    assert con.execute("SELECT status, reason, bytes, content_sha256 FROM files").fetchall() == [
        ("rejected", "too_large", big.stat().st_size, None)
    ]


@pytest.mark.parametrize("size", [0, 1, 4096, 3 * 2**20 + 7])
def test_a_document_is_read_whole(tmp_path, size):
    path = tmp_path / "doc.md"
    data = bytes(random.Random(size).getrandbits(8) for _ in range(min(size, 5000))) * (size // 5000 + 1)
    path.write_bytes(data[:size])
    assert stage.read_document(str(path)) == data[:size]


def test_a_document_that_grows_after_fstat_is_read_to_its_end(tmp_path, monkeypatch):
    """fstat gave the size before a writer appended: the read goes on past that size."""
    path = tmp_path / "doc.md"
    path.write_bytes(b"a" * 3000 + b"b" * (2**20 + 5))
    real_fstat = os.fstat

    class Smaller:
        def __init__(self, st):
            self.st_mode, self.st_size = st.st_mode, 1000

    monkeypatch.setattr(stage.os, "fstat", lambda fd: Smaller(real_fstat(fd)))
    assert stage.read_document(str(path)) == path.read_bytes()


def _outcome(value):
    return value if isinstance(value, bytes) else (value.reason, value.detail)


def _read_one(path):
    try:
        return stage.read_document(path)
    except stage._Unusable as exc:
        return exc


def test_read_ahead_gives_each_file_what_reading_it_alone_gives(tmp_path):
    """In order, with refills (window 4 over 13 entries), whatever each entry is."""
    paths = []
    for i in range(10):
        path = tmp_path / f"doc{i}.md"
        path.write_bytes(bytes([65 + i]) * (i * 1000))
        paths.append(str(path))
    os.mkfifo(tmp_path / "pipe.md")
    (tmp_path / "folder.md").mkdir()
    paths[3:3] = [str(tmp_path / "missing.md"), str(tmp_path / "pipe.md"), str(tmp_path / "folder.md")]
    got = [_outcome(v) for v in stage.read_ahead(paths, window=4)]
    assert got == [_outcome(_read_one(p)) for p in paths]
    assert [g[0] for g in got[3:6]] == ["vanished", "not_a_regular_file", "not_a_regular_file"]


def test_read_ahead_announces_the_next_files_before_reading(tmp_path, monkeypatch):
    paths = [str(write_archive(tmp_path, {f"{i}.md": "x" * i}) / f"{i}.md") for i in range(20)]
    announced = []
    monkeypatch.setattr(stage, "_FADVISE", True)
    monkeypatch.setattr(stage.os, "posix_fadvise", lambda fd, *a: announced.append(fd), raising=False)
    reader = stage.read_ahead(paths, window=8)
    assert next(reader) == b""
    assert len(announced) == 8  # the first eight were announced before the first was read
    assert [len(d) for d in reader] == list(range(1, 20))
    assert len(announced) == 20


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc")
def test_read_ahead_stays_within_the_descriptor_limit_and_closes_all(tmp_path):
    import resource

    paths = [str(write_archive(tmp_path, {f"{i}.md": str(i)}) / f"{i}.md") for i in range(300)]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    before = len(os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(before + 40, 64), hard))
    try:
        most = 0
        got = []
        for data in stage.read_ahead(paths, window=512):
            most = max(most, len(os.listdir("/proc/self/fd")) - before)
            got.append(data)
        early = stage.read_ahead(paths, window=512)
        next(early)
        early.close()  # a batch abandoned part-way closes what it announced
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert got == [str(i).encode() for i in range(300)]  # no file failed with EMFILE
    assert 0 < most <= max(before + 40, 64) // 4 + 1  # +1: listdir's own descriptor
    assert len(os.listdir("/proc/self/fd")) == before


def test_100000_related_items_in_one_file(tmp_path):
    items = tuple(
        f"1. [Item {i}](/news/2014/06/{1 + i % 28}/item-{i}.md) _Context: Story {i % 7}_"
        for i in range(100_000)
    )
    write_archive(tmp_path / "in", {"news/2014/06/21/many.md": event_doc(related=items)})
    start = time.perf_counter()
    con = build_tables(tmp_path / "in", tmp_path / "w")
    assert time.perf_counter() - start < 120  # generous: guards against quadratic behaviour, not a benchmark
    assert con.execute("SELECT related_count FROM events").fetchall() == [(100_000,)]
    assert con.execute("SELECT count(*), max(position) FROM relations").fetchone() == (100_000, 100_000)
    assert con.execute("SELECT count(*) FROM tags").fetchone() == (7,)


def test_deeply_nested_brackets_everywhere(tmp_path):
    deep = "[" * 50_000 + "x" + "]" * 50_000
    doc = event_doc(
        title=f"Nested {deep}",
        summary=f"{deep}({'(' * 50_000}",
        sources=(f"1. {deep}(https://a.com)", "1. " + "[" * 50_000),
        related=(f"1. {deep}(/news/2014/06/1/x.md)", "2. " + "[" * 50_000 + "](" * 10),
    )
    write_archive(
        tmp_path / "in", {"news/2014/06/21/nested.md": doc, "news/2014/06/21/bad.md": "### [" + "1" * 200_000}
    )
    con = build_tables(tmp_path / "in", tmp_path / "w")
    assert statuses(con) == {
        "news/2014/06/21/nested.md": ("parsed", None),
        "news/2014/06/21/bad.md": ("rejected", "missing_date"),
    }
    assert (
        con.execute("SELECT count(*) FROM quarantine").fetchone()[0]
        + con.execute("SELECT (SELECT count(*) FROM sources) + (SELECT count(*) FROM relations)").fetchone()[
            0
        ]
        == 4
    )


def test_binary_data_named_md(tmp_path):
    rng = random.Random(1)
    write_archive(
        tmp_path / "in",
        {
            "a.md": bytes(rng.randrange(256) for _ in range(10_000)),
            "b.md": b"\x00\x01\x02 valid utf-8 but binary \x00" * 100,
            "c.md": b"\x89PNG\r\n\x1a\n" + bytes(range(256)),
        },
    )
    con = build_tables(tmp_path / "in", tmp_path / "w")
    assert statuses(con) == {
        "a.md": ("rejected", "encoding"),
        "b.md": ("rejected", "missing_date"),
        "c.md": ("rejected", "encoding"),
    }


def test_unreadable_file(tmp_path, monkeypatch):
    write_archive(tmp_path / "in", {"ok.md": event_doc(), "secret.md": event_doc(title="Secret")})
    secret = tmp_path / "in" / "secret.md"
    if os.geteuid() == 0:  # root reads through permissions: make the open fail the way it would
        real_open = os.open

        def deny(path, *args, **kwargs):
            if str(path).endswith("secret.md"):
                raise PermissionError(13, "Permission denied", str(path))
            return real_open(path, *args, **kwargs)

        monkeypatch.setattr(stage.os, "open", deny)
    else:
        secret.chmod(0)
    con = build_tables(tmp_path / "in", tmp_path / "w")
    assert statuses(con)["secret.md"] == ("rejected", "unreadable")
    assert con.execute("SELECT detail FROM files WHERE file_path = 'secret.md'").fetchone() == (
        "Permission denied",
    )


def test_a_file_that_vanishes_during_the_run(tmp_path):
    write_archive(tmp_path / "in", {"a.md": event_doc(title="A"), "b.md": event_doc(title="B")})
    files = discover(tmp_path / "in")
    (tmp_path / "in" / "b.md").unlink()
    stage.stage_all(files, tmp_path / "staging", TODAY, 10, 1)
    from pipeline.transform.normalize import normalize

    normalize(tmp_path / "staging", tmp_path / "pub", tmp_path)
    import duckdb

    rows = (
        duckdb.connect()
        .execute(
            f"SELECT file_path, status, reason FROM read_parquet('{tmp_path}/pub/files/*.parquet') ORDER BY 1"
        )
        .fetchall()
    )
    assert rows == [("a.md", "parsed", None), ("b.md", "rejected", "vanished")]


def test_symlink_loops_and_special_files(tmp_path):
    root = tmp_path / "in"
    write_archive(root, {"news/ok.md": event_doc()})
    os.symlink("loop-b.md", root / "loop-a.md")
    os.symlink("loop-a.md", root / "loop-b.md")
    os.symlink("..", root / "news" / "up")  # a directory loop: not followed
    os.symlink("nowhere.md", root / "dangling.md")
    os.mkfifo(root / "pipe.md")  # would block a plain open() forever
    con = build_tables(root, tmp_path / "w")
    assert statuses(con) == {
        "news/ok.md": ("parsed", None),
        "loop-a.md": ("rejected", "unreadable"),
        "loop-b.md": ("rejected", "unreadable"),
        "dangling.md": ("rejected", "vanished"),
        "pipe.md": ("rejected", "not_a_regular_file"),
    }


def test_a_file_name_that_is_not_utf8(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    with open(os.path.join(os.fsencode(root), b"caf\xe9.md"), "wb") as f:
        f.write(event_doc().encode())
    con = build_tables(root, tmp_path / "w")
    assert statuses(con) == {"caf\\xe9.md": ("rejected", "bad_file_name")}


def test_html_and_script_in_titles_are_stored_as_text(tmp_path):
    title = '<script>alert("x")</script> <b>Bold</b> & "quotes"'
    write_archive(
        tmp_path / "in", {"inbox/x.md": event_doc(title=title, summary="<img src=x onerror=alert(1)>")}
    )
    con = build_tables(tmp_path / "in", tmp_path / "w")
    assert con.execute("SELECT title, summary FROM events").fetchall() == [
        (title, "<img src=x onerror=alert(1)>")
    ]


def test_fuzz_the_parser_with_100000_mutated_documents():
    """Mutations of real documents (byte flips, cuts, splices, markdown tokens); no exception may escape."""
    seeds = [p.read_bytes() for p in sorted(SAMPLE.rglob("*.md"))]
    tokens = [
        b"[",
        b"]",
        b"(",
        b")",
        b"\n",
        b"\r",
        b"### ",
        b"# ",
        b"1. ",
        b"_Context: ",
        b", ",
        b"\xff",
        b"\xef\xbb\xbf",
        b"https://",
        b"javascript:",
        b"/news/2014/06/1/",
        b".md",
        b"\\",
        b"\x00",
        "é".encode(),
    ]
    rng = random.Random(20261124)
    today = dt.date(2026, 11, 24)
    outcomes = {"parsed": 0, "rejected": 0}
    for _ in range(100_000):
        data = bytearray(rng.choice(seeds)[: rng.randrange(1, 3000)])
        for _ in range(rng.randrange(1, 6)):
            at = rng.randrange(len(data) + 1)
            kind = rng.random()
            if kind < 0.4:
                data[at:at] = rng.choice(tokens)
            elif kind < 0.6 and data:
                data[min(at, len(data) - 1)] = rng.randrange(256)
            elif kind < 0.8:
                del data[at : at + rng.randrange(1, 40)]
            else:
                other = rng.choice([s for s in seeds if s])
                start = rng.randrange(len(other))
                data[at:at] = other[start : start + rng.randrange(1, 200)]
        result = parse_document(bytes(data), "news/2014/06/21/x.md", today)
        assert isinstance(result, ParsedEvent | Rejected)
        outcomes["parsed" if isinstance(result, ParsedEvent) else "rejected"] += 1
    assert outcomes["parsed"] > 10_000 and outcomes["rejected"] > 10_000  # both paths were exercised


@pytest.mark.parametrize("name", ["index.md", "news/2014/06/21/index.md"])
def test_day_index_anywhere_is_skipped(tmp_path, name):
    write_archive(tmp_path / "in", {name: event_doc()})
    assert statuses(build_tables(tmp_path / "in", tmp_path / "w")) == {name: ("skipped", "day_index")}
