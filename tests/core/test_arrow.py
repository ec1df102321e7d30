"""`among` answers as `is_in` does, by whichever way is cheaper for the number of keys."""

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from pipeline.core import arrow
from pipeline.core.arrow import among

VALUES = pa.chunked_array([["a.md", "b.md", None], [], ["c.md", "a.md", "news/x.md"]], pa.string())


@pytest.mark.parametrize(
    "keys",
    [
        [],
        ["a.md"],
        ["a.md", "zz.md"],
        ["news/x.md", "c.md", "b.md"],
        [f"{i}.md" for i in range(30)] + ["b.md"],
    ],
)
def test_among_is_is_in(keys):
    expected = pc.is_in(VALUES, value_set=pa.array(keys, pa.string())).to_pylist()
    assert among(VALUES, pa.array(keys, pa.string())).to_pylist() == expected
    assert among(VALUES.combine_chunks(), pa.array(keys, pa.string())).to_pylist() == expected


def test_among_takes_the_hash_lookup_past_a_few_keys(monkeypatch):
    calls = []
    real = pc.is_in
    monkeypatch.setattr(pc, "is_in", lambda *a, **k: calls.append(1) or real(*a, **k))
    among(VALUES, pa.array(["a.md"] * arrow.FEW_KEYS))
    assert calls == []
    among(VALUES, pa.array(["a.md"] * (arrow.FEW_KEYS + 1)))
    assert calls == [1]
