"""The change log's comparison of two sets of Parquet rows (pipeline/publish/changes.py)."""

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.publish.changes import _diff_sql

OLD = [
    ("a", 1, None),  # unchanged, with a NULL
    ("b", 1, "x"),  # changed below
    ("c", 1, "x"),  # removed below
    ("d", 1, "x"),  # two equal rows, one goes below
    ("d", 1, "x"),
    ("e", 1, "x"),  # a row moves between keys' values: same multiset, other order
    ("e", 2, "y"),
]
NEW = [
    ("a", 1, None),
    ("b", 1, "z"),
    ("d", 1, "x"),
    ("e", 2, "y"),
    ("e", 1, "x"),
    ("f", 1, "x"),  # added
]


def _write(path: Path, rows: list[tuple]) -> str:
    names = ["event_id", "position", "name"]
    pq.write_table(pa.table({n: [r[i] for r in rows] for i, n in enumerate(names)}), path)
    return str(path)


@pytest.mark.parametrize("where", [None, "event_id <> 'e'"])
def test_grouped_comparison_finds_the_keys_except_all_finds(tmp_path, where):
    """Both ways of comparing name the same keys: changed, added, removed, a repeated row
    gone, NULLs equal, order ignored; and with one side without files (a new year's part)."""
    old, new = _write(tmp_path / "old.parquet", OLD), _write(tmp_path / "new.parquet", NEW)
    con = duckdb.connect()

    def keys(a: list[str], b: list[str], grouped: bool) -> list[str]:
        return sorted(r[0] for r in con.sql(_diff_sql(con, a, b, ["event_id"], where, grouped)).fetchall())

    expected = ["b", "c", "d", "f"]
    assert keys([old], [new], grouped=False) == expected
    assert keys([old], [new], grouped=True) == expected
    everything = sorted({r[0] for r in NEW} - ({"e"} if where else set()))
    assert keys([], [new], grouped=True) == keys([], [new], grouped=False) == everything
    assert keys([old], [], grouped=True) == keys([old], [], grouped=False)
    assert keys([old], [old], grouped=True) == []
