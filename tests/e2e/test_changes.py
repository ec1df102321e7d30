"""Downstream loading (contract, section 4): `export --since RUN_ID` change sets, applied to a
warehouse holding the tables as RUN_ID published them, give the current tables exactly; the
`changes` table lists each published run's events."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import duckdb
import pytest

from pipeline import cli
from pipeline.core.config import OutputLayout
from pipeline.core.tables import PUBLISHED, TABLE, table_glob
from pipeline.parse.ids import slugify
from tests.conftest import SAMPLE, event_doc

pytestmark = pytest.mark.flow


def snapshot(publication: Path, warehouse: Path) -> None:
    """A warehouse (a DuckDB file) holding a publication's tables, as a loader would keep them."""
    con = duckdb.connect(str(warehouse))
    for table in PUBLISHED:
        if (publication / table).is_dir():
            con.execute(
                f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM read_parquet('{table_glob(publication, table)}')"
            )
        else:
            con.execute(
                f"CREATE OR REPLACE TABLE {table} AS SELECT NULL::VARCHAR AS run_id, NULL::VARCHAR AS event_id, NULL::VARCHAR AS change WHERE false"
            )
    con.close()


def apply(change_set: Path, warehouse: Path) -> None:
    """The contract's recipe: delete the rows whose key is deleted or inserted, then insert; a
    table whose key is [] is replaced whole."""
    manifest = json.loads((change_set / "manifest.json").read_text())
    con = duckdb.connect(str(warehouse))
    for table, entry in manifest["tables"].items():
        inserted = f"read_parquet('{change_set / f'{table}.parquet'}')"
        key = entry["key"]
        if not key:
            con.execute(f"DELETE FROM {table}")
        else:
            columns = ", ".join(key)
            deleted = f"read_parquet('{change_set / f'{table}.deleted.parquet'}')"
            con.execute(
                f"DELETE FROM {table} WHERE ({columns}) IN "
                f"(SELECT ({columns}) FROM {deleted} UNION SELECT ({columns}) FROM {inserted})"
                if len(key) > 1
                else f"DELETE FROM {table} WHERE {columns} IN (SELECT {columns} FROM {deleted} UNION SELECT {columns} FROM {inserted})"
            )
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {inserted}")
    con.close()


def tables(catalog: Path) -> dict[str, list]:
    con = duckdb.connect(str(catalog), read_only=True)
    try:
        return {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in PUBLISHED}
    finally:
        con.close()


def export_since(out: Path, run_id: str, to: Path, capsys, fmt: str = "parquet") -> tuple[int, str]:
    code = cli.main(["export", "--output", str(out), "--since", run_id, "--format", fmt, "--to", str(to)])
    return code, capsys.readouterr().err


def touch(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000_000))


def test_change_sets_replay_every_kind_of_change(prefect_server, tmp_path, capsys):
    from flows.news_etl import news_etl

    archive = tmp_path / "archive"
    shutil.copytree(SAMPLE, archive)
    out = tmp_path / "out"
    first = news_etl(input=str(archive), output=str(out), keep=1, retention="0")
    warehouse = tmp_path / "warehouse.duckdb"
    snapshot(Path(first["publication"]), warehouse)
    previous = first["run_id"]
    published = [first["run_id"]]

    target_title = "The Iraqi Army and Kurdish Peshmerga begin an offensive to recapture Mosul from ISIL [Battle of Mosul]."
    sinjar = archive / "news/2014/08/03/the-islamic-state-seizes-the-yazidi-dominated-town-of-sinjar.md"
    crimea = next(archive.glob("news/2014/03/18/*.md"))
    odd, odd_title = archive / "extra" / "odd-one.md", "An event filed outside the day folders"
    steps = {
        "add, and a relation becomes resolved": lambda: touch(
            archive / f"news/2016/10/17/{slugify(target_title)}.md",
            event_doc(date="2016-10-17", title=target_title),
        ),
        "edit": lambda: touch(
            crimea,
            crimea.read_text(encoding="utf-8-sig").replace(
                "Russo-Ukrainian War, Ukraine", "Annexation of Crimea"
            ),
        ),
        "the kept copy of a duplicate goes: the other wins": lambda: sinjar.unlink(),
        "delete": lambda: next(archive.glob("news/2020/03/11/*.md")).unlink(),
        "spellings merge: a tag's name changes": lambda: [
            touch(
                archive / f"news/2015/0{i + 1}/1/spelling-{i}.md",
                event_doc(
                    date=f"2015-0{i + 1}-01",
                    title=f"Spelling {i}",
                    related=("1. [X](/news/2014/06/21/x.md) _Context: islamic state_",),
                ),
            )
            for i in range(9)
        ],
        # A file outside the day folders takes its event id from its date line. Changing it
        # under a full refresh, which compares every part one year at a time, moves the file's
        # `files` row to another year's part under the same key.
        "a file outside the day folders": lambda: touch(odd, event_doc(date="2015-05-05", title=odd_title)),
        "full refresh: its date changes": lambda: touch(odd, event_doc(date="2016-06-06", title=odd_title)),
    }
    for name, change in steps.items():
        change()
        full = name.startswith("full refresh")
        result = news_etl(input=str(archive), output=str(out), keep=1, retention="0", full_refresh=full)
        assert result["published"], name
        published.append(result["run_id"])
        code, err = export_since(out, previous, tmp_path / f"set-{len(published)}", capsys)
        assert code == 0, err
        apply(tmp_path / f"set-{len(published)}", warehouse)
        assert tables(warehouse) == tables(Path(result["catalog"])), name
        previous = result["run_id"]

    # a change set from the first run, whose publication was pruned long ago (--keep 1)
    assert not OutputLayout(out).publication(first["run_id"]).exists()
    code, err = export_since(out, first["run_id"], tmp_path / "since-first", capsys)
    assert code == 0, err
    manifest = json.loads((tmp_path / "since-first" / "manifest.json").read_text())
    assert manifest["from_run_id"] == first["run_id"] and manifest["to_run_id"] == published[-1]
    assert {t: e["key"] for t, e in manifest["tables"].items()} == {t: list(TABLE[t].key) for t in PUBLISHED}

    # the changes table: one row per event each published run changed
    con = duckdb.connect(str(out / "news.duckdb"), read_only=True)
    rows = con.execute("SELECT run_id, change, count(*) FROM changes GROUP BY ALL ORDER BY ALL").fetchall()
    con.close()
    by_run = {}
    for run_id, change, n in rows:
        by_run.setdefault(run_id, {})[change] = n
    assert by_run[published[0]] == {"added": 32}
    assert (
        by_run[published[1]].get("added") == 1
    )  # the Mosul offensive (and its resolved relation's event changes)
    assert by_run[published[3]].get("changed", 0) >= 1  # the duplicate's other copy won
    assert by_run[published[4]].get("removed") == 1


def test_a_change_set_from_the_first_run_replays_everything_at_once(prefect_server, tmp_path, capsys):
    from flows.news_etl import news_etl

    archive = tmp_path / "archive"
    shutil.copytree(SAMPLE, archive)
    out = tmp_path / "out"
    first = news_etl(input=str(archive), output=str(out), keep=1, retention="0")
    warehouse = tmp_path / "w.duckdb"
    snapshot(Path(first["publication"]), warehouse)
    next(archive.glob("news/2020/03/11/*.md")).unlink()
    news_etl(input=str(archive), output=str(out), keep=1, retention="0")
    touch(archive / "news/2025/01/5/late.md", event_doc(date="2025-01-05", title="Late"))
    last = news_etl(input=str(archive), output=str(out), keep=1, retention="0")
    assert not OutputLayout(out).publication(first["run_id"]).exists()  # pruned
    code, err = export_since(out, first["run_id"], tmp_path / "set", capsys, fmt="parquet")
    assert code == 0, err
    # the change set and nothing else (DuckDB's spill folder, for one, is gone)
    assert {p.name for p in (tmp_path / "set").iterdir()} == {"manifest.json"} | {
        f"{t}{suffix}.parquet"
        for t in PUBLISHED
        for suffix in ("", ".deleted")
        if suffix == "" or TABLE[t].key
    }
    apply(tmp_path / "set", warehouse)
    assert tables(warehouse) == tables(Path(last["catalog"]))
    code, err = export_since(out, first["run_id"], tmp_path / "csv", capsys, fmt="csv")
    assert code == 0, err
    assert (tmp_path / "csv" / "events.csv").is_file() and (tmp_path / "csv" / "events.deleted.csv").is_file()


def test_change_set_errors_are_one_line(prefect_server, tmp_path, capsys):
    from flows.news_etl import news_etl

    out = tmp_path / "out"
    news_etl(input=str(SAMPLE), output=str(out))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(Exception, match="fewer than 90%"):
        news_etl(input=str(empty), output=str(out))
    refused = [
        r
        for r in duckdb.sql(
            f"SELECT run_id, outcome FROM read_parquet('{out}/state/runs.parquet')"
        ).fetchall()
        if r[1] == "shrink_refused"
    ]
    cases = {
        "20200101T000000000000Z-1": "unknown run '20200101T000000000000Z-1'",
        refused[0][0]: "never published (outcome: shrink_refused)",
    }
    for run_id, message in cases.items():
        code, err = export_since(out, run_id, tmp_path / "x", capsys)
        assert code == 1 and len(err.strip().splitlines()) == 1 and message in err, err
    shutil.rmtree(out / "state" / "changes")  # a log that begins after the run
    current = duckdb.sql(
        f"SELECT run_id FROM read_parquet('{out}/state/runs.parquet') WHERE published"
    ).fetchall()[0][0]
    code, err = export_since(out, current, tmp_path / "y", capsys)
    assert code == 1 and "before the change log began" in err
    code, err = export_since(out, current, tmp_path / "z", capsys, fmt="duckdb")
    assert code == 1 and "parquet or csv" in err


def test_the_changes_table_equals_the_whole_log_through_a_rollback(prefect_server, tmp_path, monkeypatch):
    """Each run's `changes` table is its predecessor's parts plus one with its own rows when it
    follows the publication it started from (not every transition read again), its parts put
    back together past a limit; after a rollback it is built from the whole log. Either way it
    equals the log read whole."""
    from flows.news_etl import news_etl
    from pipeline.core.tables import parts
    from pipeline.publish import changes
    from pipeline.publish.catalog import rollback

    monkeypatch.setattr(changes, "MAX_CHANGES_PARTS", 3)
    archive = tmp_path / "archive"
    shutil.copytree(SAMPLE, archive)
    out = tmp_path / "out"
    layout = OutputLayout(out)

    def published_changes() -> list[tuple]:
        con = duckdb.connect(str(out / "news.duckdb"), read_only=True)
        try:
            return con.execute("SELECT * FROM changes ORDER BY ALL").fetchall()
        finally:
            con.close()

    def whole_log() -> list[tuple]:
        return sorted(tuple(r.values()) for r in changes.changes_table(layout).to_pylist())

    runs = []
    counts = []
    for step in range(8):
        if step == 3:
            rollback(layout, runs[1])  # back over run 2: the next run reads the whole log
        touch(
            archive / f"news/2015/0{step + 1}/1/step-{step}.md",
            event_doc(date=f"2015-0{step + 1}-01", title=f"Step {step}"),
        )
        result = news_etl(input=str(archive), output=str(out))
        runs.append(result["run_id"])
        assert published_changes() == whole_log(), step
        counts.append(len(parts(Path(result["publication"]), "changes")))
    # one part after the first run and after the rollback; one more per run, at most three
    assert counts == [1, 2, 3, 1, 2, 3, 2, 3]
    # every published run's events, the run rolled back over included (as the log has them)
    assert {row[0] for row in published_changes()} == set(runs)
