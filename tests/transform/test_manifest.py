"""The manifest on disk: a base and a cumulative amendment, committed by one rename each."""

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from pipeline.transform import incremental
from pipeline.transform import manifest as stored


def entries(paths: list[str], batch: str) -> pa.Table:
    n = len(paths)
    return pa.table(
        {
            "file_path": paths,
            "content_sha256": [f"{batch}:{p}" for p in paths],
            "size": [1] * n,
            "mtime_ns": [1] * n,
            "status": ["parsed"] * n,
            "reason": pa.array([None] * n, pa.string()),
            "batch": [batch] * n,
            "event_id": [f"2020-01-01/{p}" for p in paths],
        },
        schema=stored.MANIFEST_SCHEMA,
    )


def rows(table: pa.Table) -> list[tuple]:
    return sorted(tuple(r.values()) for r in table.to_pylist())


def run(previous: stored.Manifest, drop: list[str], stage: pa.Table) -> tuple[pa.Table, stored.Amendment]:
    """What a run's next manifest is (previous minus `drop`, plus `stage`) and its amendment."""
    dropped = pa.array(drop, pa.string())
    kept = previous.table.filter(pc.invert(pc.is_in(previous.table["file_path"], value_set=dropped)))
    assert previous.amendment is not None
    return pa.concat_tables([kept, stage]), previous.amendment.then(dropped, stage)


def commit(table: pa.Table, amendment: stored.Amendment | None, work: Path, state: Path, run_id: str) -> None:
    origin = stored.Origin(run_id, "suites", "parser", "code", "2026-12-07")
    stored.write(table, work / "manifest.parquet", origin, amendment, background=True)
    stored.written(work / "manifest.parquet")  # as the publish waits for it before the swap
    stored.commit(work / "manifest.parquet", state / "manifest.parquet")


def amended(work: Path, state: Path) -> Path:
    """A committed base (a.md, b.md: run-0) and an amendment adding c.md (run-1)."""
    commit(entries(["a.md", "b.md"], "b0"), None, work, state, "run-0")
    table, amendment = run(stored.read(state / "manifest.parquet"), [], entries(["c.md"], "b1"))
    commit(table, amendment, work, state, "run-1")
    return state / "manifest.parquet"


@pytest.fixture
def folders(tmp_path):
    work, state = tmp_path / "work", tmp_path / "state"
    work.mkdir()
    state.mkdir()
    return work, state


def test_amended_manifests_read_back_as_written_until_the_base_is_rewritten(folders, monkeypatch):
    """Each run writes only its amendment (the base file untouched); read from disk, base and
    amendment give the manifest the run had in memory, and the publication the amendment names.
    Past its share of the manifest, the base is written whole and the amendment removed."""
    monkeypatch.setattr(stored, "AMEND_MIN_ROWS", 10)
    work, state = folders
    committed = state / "manifest.parquet"
    commit(entries([f"{i}.md" for i in range(200)], "b0"), None, work, state, "run-0")
    base = os.stat(committed).st_ino
    assert not stored.delta_path(committed).exists()

    steps = [
        ([], entries(["new-1.md"], "b1")),  # an add
        (["5.md"], entries(["5.md"], "b2")),  # an edit
        (["7.md", "new-1.md"], entries([], "b3")),  # deletes, one of a file the base never had
        (["new-2.md"], entries(["new-2.md", "8.md"], "b4")),  # a path dropped that nobody had
    ]
    for number, (drop, stage) in enumerate(steps, start=1):
        table, amendment = run(stored.read(committed), drop, stage)
        commit(table, amendment, work, state, f"run-{number}")
        assert os.stat(committed).st_ino == base, "the base is not rewritten"
        assert stored.delta_path(committed).exists()
        assert rows(stored.read(committed).table) == rows(table)
        assert stored.origin(committed).run_id == f"run-{number}"
        assert stored.batches(committed) == set(table["batch"].to_pylist())

    # 5.md replaced (b2), 7.md gone, 8.md replaced (b4), new-2.md added
    final = {r["file_path"]: r["batch"] for r in stored.read(committed).table.to_pylist()}
    assert (final["5.md"], final["8.md"], final["new-2.md"]) == ("b2", "b4", "b4")
    assert "7.md" not in final and "new-1.md" not in final and len(final) == 200

    # a change larger than the amendment's share rewrites the base
    table, amendment = run(stored.read(committed), [f"{i}.md" for i in range(20)], entries(["x.md"], "b5"))
    commit(table, amendment, work, state, "run-5")
    assert os.stat(committed).st_ino != base and not stored.delta_path(committed).exists()
    assert rows(stored.read(committed).table) == rows(table)
    assert stored.origin(committed).run_id == "run-5"


def test_an_amendment_left_beside_a_newer_base_is_ignored(folders):
    """A kill between committing a new base and removing the old amendment: the amendment
    names the old base's id, so the manifest is the new base alone."""
    work, state = folders
    committed = state / "manifest.parquet"
    commit(entries(["a.md", "b.md"], "b0"), None, work, state, "run-0")
    table, amendment = run(stored.read(committed), ["a.md"], entries(["a.md", "c.md"], "b1"))
    commit(table, amendment, work, state, "run-1")
    origin = stored.Origin("run-2", "suites", "parser", "code")
    stored.write(entries(["z.md"], "b2"), work / "manifest.parquet", origin)  # whole
    os.replace(work / "manifest.parquet", committed)  # killed before the old amendment went
    assert stored.delta_path(committed).exists()
    assert rows(stored.read(committed).table) == rows(entries(["z.md"], "b2"))
    assert stored.origin(committed).run_id == "run-2"


def test_an_unreadable_amendment_is_set_aside_and_the_base_describes_an_older_publication(folders):
    committed = amended(*folders)
    state = committed.parent
    delta = stored.delta_path(committed)
    delta.write_bytes(delta.read_bytes()[:40] + b"garbage")

    warning = incremental.check_manifest(committed)
    assert warning is not None and "could not be read" in warning and "manifest-delta.parquet" in warning
    assert [p.name.split(".corrupt-")[0] for p in state.glob("*.corrupt-*")] == [delta.name]
    assert rows(incremental.read_manifest(committed)) == rows(entries(["a.md", "b.md"], "b0"))
    assert stored.origin(committed).run_id == "run-0"  # not the current one: tables built whole


def test_an_unreadable_base_is_set_aside_with_its_amendment(folders):
    committed = amended(*folders)
    state = committed.parent
    committed.write_bytes(committed.read_bytes()[:40] + b"garbage")

    assert "could not be read" in (incremental.check_manifest(committed) or "")
    assert sorted(p.name.split(".corrupt-")[0] for p in state.glob("*.corrupt-*")) == [
        "manifest-delta.parquet",
        "manifest.parquet",
    ]
    assert incremental.read_manifest(committed).num_rows == 0  # every file parsed again
    assert incremental.check_manifest(committed) is None


def test_an_amendment_without_its_base_is_refused_not_read_as_the_manifest(folders):
    committed = amended(*folders)
    committed.unlink()  # removed by hand
    with pytest.raises(stored.StateError, match="without its base"):
        stored.read(committed)
    assert "could not be read" in (incremental.check_manifest(committed) or "")
    assert incremental.read_manifest(committed).num_rows == 0


def test_a_watcher_keeps_the_committed_manifest_and_notices_a_replaced_amendment(folders, monkeypatch):
    """Remembered after its commit (no read back), keyed by both files: an amendment replaced
    behind the watcher's back is read anew."""
    import pyarrow.parquet as pq

    work, state = folders
    committed = state / "manifest.parquet"
    stored.remember()
    try:
        commit(entries(["a.md", "b.md"], "b0"), None, work, state, "run-0")
        table, amendment = run(stored.read(committed), ["a.md"], entries(["a.md"], "b1"))
        reads: list[str] = []
        real = pq.ParquetFile
        monkeypatch.setattr(
            pq, "ParquetFile", lambda path, *a, **k: reads.append(str(path)) or real(path, *a, **k)
        )
        commit(table, amendment, work, state, "run-1")
        assert rows(stored.read(committed).table) == rows(table) and reads == []
        other, amendment = run(stored.read(committed), ["b.md"], entries([], "b2"))
        origin = stored.Origin("run-x", "s", "p", "c")
        stored.write(other, work / "other.parquet", origin, amendment)
        os.replace(stored.delta_path(work / "other.parquet"), stored.delta_path(committed))
        assert rows(stored.read(committed).table) == rows(other) and reads
    finally:
        stored.remember(False)
        stored._writing.clear()


def test_live_batches_answer_for_each_table_and_hand_out_copies():
    """The batches a manifest names are remembered by table (a watcher asks twice a batch);
    each table gets its own answer, and changing an answer changes nothing remembered."""
    live_batches = stored.live_batches
    first = pa.table({"batch": ["b1", "b2", "b1"]})
    second = pa.table({"batch": ["b3"]})
    answer = live_batches(first)
    assert answer == {"b1", "b2"}
    answer.add("b9")
    assert live_batches(first) == {"b1", "b2"}
    assert live_batches(second) == {"b3"}
    assert live_batches(pa.table({"batch": pa.array([], pa.string())})) == set()
    assert live_batches(first) == {"b1", "b2"}
