"""Spare in-memory DuckDB databases: opened ahead, handed out once, always fresh."""

from pipeline.core import databases


def test_a_spare_is_handed_out_once_with_its_settings_and_nothing_of_earlier_use():
    databases.drop_spares()
    settings = {"threads": 1, "memory_limit": "256MB"}
    first = databases.open_memory(settings)
    first.execute("CREATE TABLE leftover AS SELECT 1 AS x")
    first.close()
    assert databases.make_spares() >= 1  # one for each setting asked for so far
    assert databases.make_spares() == 0  # they have theirs
    (spare,) = databases._spares[tuple(sorted(settings.items()))]
    taken = databases.open_memory(settings)
    assert taken is spare
    assert taken.execute("SELECT current_setting('threads')").fetchone()[0] == 1
    assert (
        taken.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'leftover'").fetchone()[0] == 0
    )
    again = databases.open_memory(settings)  # no spare left: a new one
    assert again is not taken
    for con in (taken, again):
        con.close()
    databases.drop_spares()
    assert not databases._spares


def test_as_many_spares_as_were_asked_for_at_once_up_to_the_cap():
    """A watcher's batch opens two databases with the same settings (normalize's and the change
    log's): both are spares the next time, and never more than `MAX_SPARES`."""
    databases.drop_spares()
    settings = {"threads": 1, "memory_limit": "128MB"}
    key = tuple(sorted(settings.items()))
    opened = [databases.open_memory(settings) for _ in range(databases.MAX_SPARES + 1)]
    for con in opened:
        con.close()
    databases.make_spares()
    assert len(databases._spares[key]) == databases.MAX_SPARES
    taken = [databases.open_memory(settings) for _ in range(databases.MAX_SPARES)]
    assert not databases._spares[key]  # both handed out, each once
    assert len({id(con) for con in taken}) == databases.MAX_SPARES
    for con in taken:
        con.close()
    databases.make_spares()  # refilled to the most asked for at once
    assert len(databases._spares[key]) == databases.MAX_SPARES
    databases.drop_spares()
    assert not databases._spares
