"""Discovery: the listing is the same whether a helper process lists part of it or not."""

from __future__ import annotations

import os
from concurrent.futures import Future

import pytest

from pipeline.extract import discover as discovering
from pipeline.extract.discover import discover_table
from tests.conftest import write_archive


def _tree(root):
    """Nested folders with events, a day index, a non-Markdown file, an undecodable name,
    a dangling symlink and a directory loop."""
    for year in range(2004, 2010):
        for month in (1, 6, 12):
            folder = root / "news" / str(year) / f"{month:02d}" / str(month % 9 + 1)
            folder.mkdir(parents=True)
            for n in range(3):
                (folder / f"event-{n}.md").write_text(f"### [{year}-01-01](/x)\n\n# E {n}\n")
            (folder / "index.md").write_text("day")
            (folder / "notes.txt").write_text("not listed")
    (root / "top.md").write_text("top")
    os.symlink("nowhere.md", root / "news" / "dangling.md")
    os.symlink("..", root / "news" / "2004" / "up")  # a directory loop: not followed
    bad = os.fsencode(str(root / "news" / "2005")) + b"/caf\xe9.md"
    with open(bad, "wb") as f:
        f.write(b"x")


def _rows(table):
    return table.to_pylist()


def test_a_helper_process_lists_the_same_files(tmp_path, monkeypatch):
    _tree(tmp_path)
    alone = discover_table(tmp_path, helper_after=10**9)
    shares = []

    class Spy(discovering._Helper):
        def result(self):
            chunks = self.future.result()  # from the helper process, not the fallback
            shares.append(sum(len(c) for c in chunks))
            self.shutdown()
            return chunks

    monkeypatch.setattr(discovering, "_Helper", Spy)
    shared = discover_table(tmp_path, helper_after=1)
    assert len(shares) == 1 and 0 < shares[0] < shared.num_rows
    rows = _rows(alone)
    assert _rows(shared) == rows
    paths = [r["rel_path"] for r in rows]
    assert paths == sorted(paths, key=lambda p: p.encode())
    assert len(paths) == 6 * 3 * 4 + 3  # events and index pages, top.md, dangling, café
    assert "news/2005/caf\\xe9.md" in paths and not any(p.endswith(".txt") for p in paths)
    assert not any("/up/" in p for p in paths)
    by_path = {r["rel_path"]: r for r in rows}
    assert by_path["news/2005/caf\\xe9.md"]["bad_name"] is True
    assert by_path["news/2005/caf\\xe9.md"]["os_path"].endswith(b"caf\xe9.md")
    assert by_path["news/dangling.md"]["size"] == -1
    assert by_path["top.md"]["size"] == 3 and by_path["top.md"]["os_path"] is None


class _BrokenPool:
    """A pool whose one task fails, as when the helper process is killed."""

    def __init__(self, *args, **kwargs):
        pass

    def submit(self, fn, *args):
        future: Future = Future()
        future.set_exception(RuntimeError("helper killed"))
        return future

    def shutdown(self, **kwargs):
        pass


class _NoProcesses:
    def __init__(self, *args, **kwargs):
        raise OSError("cannot start a process here")


@pytest.mark.parametrize("pool", [_BrokenPool, _NoProcesses])
def test_a_failed_helper_loses_no_file(tmp_path, monkeypatch, pool):
    _tree(tmp_path)
    alone = discover_table(tmp_path, helper_after=10**9)
    monkeypatch.setattr(discovering, "ProcessPoolExecutor", pool)
    assert _rows(discover_table(tmp_path, helper_after=1)) == _rows(alone)


def test_a_listed_batch_names_the_same_files_as_the_listing(tmp_path):
    """What a parse worker is sent (`Listed`: the root and plain relative paths) opens the
    same paths as the listing itself, undecodable names included, in every slice."""
    _tree(tmp_path)
    table = discover_table(tmp_path, helper_after=10**9)
    whole = [(f.rel_path, f.os_path, f.bad_name) for f in discovering.to_files(table)]
    sent = []
    for offset in range(0, table.num_rows, 7):
        rows = discovering.listed(table, offset, 7)
        sent += [(f.rel_path, f.os_path, f.bad_name) for f in rows.files()]
    assert sent == whole
    bad = [f for f in sent if f[2]]
    assert len(bad) == 1 and os.path.exists(os.fsencode(bad[0][1]))
    assert all(os.path.lexists(os_path) for _, os_path, _ in sent)


def _listing_rows(table):
    return sorted(
        zip(
            *(table[c].to_pylist() for c in ("rel_path", "os_path", "bad_name", "size", "mtime_ns")),
            strict=True,
        )
    )


def test_a_listing_updated_from_the_changed_paths_equals_a_full_listing(tmp_path):
    """Adds, edits, deletes, a move between day folders, a folder renamed, a folder deleted, an
    editor's save (write beside, then rename), a name that is not UTF-8: the updated listing
    equals a fresh walk when the reported paths cover the changes."""
    import os

    from pipeline.extract.discover import discover_table, update_listing

    root = write_archive(
        tmp_path / "in",
        {
            "news/2014/06/21/a.md": "a",
            "news/2014/06/21/b.md": "b",
            "news/2014/06/22/c.md": "c",
            "news/2015/01/1/d.md": "d",
            "news/2015/01/1/e.md": "e",
            "news/2016/03/5/f.md": "f",
        },
    )
    before = discover_table(root)
    known = before.select(["rel_path", "size", "mtime_ns"])
    (root / "news/2014/06/21/a.md").write_text("edited a")  # edit
    (root / "news/2014/06/21/new.md").write_text("new")  # add
    (root / "news/2014/06/22/c.md").unlink()  # delete
    (root / "news/2016/03/5/f.md").rename(root / "news/2014/06/21/f.md")  # move between days
    (root / "news/2015/01").rename(root / "news/2015/02")  # folder renamed
    (root / "news/2014/06/21/.b.md.swp").write_text("b2")  # an editor's save
    (root / "news/2014/06/21/.b.md.swp").rename(root / "news/2014/06/21/b.md")
    with open(os.path.join(os.fsencode(root / "news/2014/06/21"), b"caf\xe9.md"), "wb") as handle:
        handle.write(b"x")
    changed = [
        "news/2014/06/21/a.md",
        "news/2014/06/21/new.md",
        "news/2014/06/22/c.md",
        "news/2016/03/5/f.md",
        "news/2014/06/21/f.md",
        "news/2015/01",
        "news/2015/02",
        "news/2014/06/21/b.md",
        "news/2014/06/21/.b.md.swp",
        "news/2014/06/21/caf\\xe9.md",
    ]
    updated = update_listing(root, known, changed)
    assert _listing_rows(updated) == _listing_rows(discover_table(root))
    import shutil

    shutil.rmtree(root / "news/2015")  # a folder deleted
    again = update_listing(root, updated.select(["rel_path", "size", "mtime_ns"]), ["news/2015"])
    assert _listing_rows(again) == _listing_rows(discover_table(root))


def test_changed_paths_outside_the_input_are_refused(tmp_path):
    import pytest

    from pipeline.extract.discover import BadChangedPath, discover_table, update_listing

    root = write_archive(tmp_path / "in", {"news/a.md": "a"})
    known = discover_table(root).select(["rel_path", "size", "mtime_ns"])
    for bad in ("../elsewhere.md", "news/../../x.md", "/etc/passwd"):
        with pytest.raises(BadChangedPath):
            update_listing(root, known, [bad])


def test_a_new_folder_reported_with_its_files_is_listed_once(tmp_path):
    """A watcher reports a new folder tree and every file in it: each file is listed once."""
    from pipeline.extract.discover import discover_table, update_listing

    root = write_archive(tmp_path / "in", {"news/2014/06/21/a.md": "a"})
    known = discover_table(root).select(["rel_path", "size", "mtime_ns"])
    write_archive(root, {"news/2025/01/5/x.md": "x", "news/2025/01/6/y.md": "y"})
    changed = ["news/2025", "news/2025/01", "news/2025/01/5", "news/2025/01/5/x.md", "news/2025/01/6/y.md"]
    assert _listing_rows(update_listing(root, known, changed)) == _listing_rows(discover_table(root))
