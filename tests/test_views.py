"""The analytical views in the catalog, checked on the bundled sample with rows worked out by hand
from its Markdown files (examples/news/)."""

import datetime as dt

import duckdb
import pytest

from pipeline.tables import VIEWS

pytestmark = pytest.mark.flow

D = dt.date


@pytest.fixture(scope="module")
def catalog(sample_build):
    con = duckdb.connect(sample_build["catalog"], read_only=True)
    yield con
    con.close()


def test_every_view_is_in_the_catalog(catalog):
    names = {
        r[0] for r in catalog.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
    }
    assert set(VIEWS) <= names


def test_daily_counts(catalog):
    rows = catalog.execute(
        "SELECT * FROM daily_counts WHERE event_date IN ('2014-06-21', '2020-03-11') ORDER BY 1"
    ).fetchall()
    # 2014-06-21: one source besides the cover image, ten related items; 2020-03-11: two and two
    assert rows == [(D(2014, 6, 21), 1, 1, 10), (D(2020, 3, 11), 1, 2, 2)]
    assert catalog.execute("SELECT sum(events), count(*) FROM daily_counts").fetchone() == (32, 32)


def test_tag_timeline(catalog):
    rows = catalog.execute(
        "SELECT name, month, events FROM tag_timeline WHERE name = 'Islamic State' ORDER BY month"
    ).fetchall()
    # events naming Islamic State: 2014-06-21, -27, -29; 2014-08-03; 2015-11; 2016-03; 2017-07
    assert rows == [
        ("Islamic State", D(2014, 6, 1), 3),
        ("Islamic State", D(2014, 8, 1), 1),
        ("Islamic State", D(2015, 11, 1), 1),
        ("Islamic State", D(2016, 3, 1), 1),
        ("Islamic State", D(2017, 7, 1), 1),
    ]
    assert (
        catalog.execute("SELECT sum(events) FROM tag_timeline").fetchone()
        == catalog.execute("SELECT count(*) FROM event_tags").fetchone()
    )


def test_publishers_group_name_variants_under_a_registered_domain(catalog):
    row = catalog.execute("SELECT * FROM publishers WHERE registered_domain = 'bbc.co.uk'").fetchone()
    assert row == (
        "bbc.co.uk",
        ["BBC", "BBC Mundo", "BBC News"],
        ["bbc.co.uk", "news.bbc.co.uk"],
        7,
        7,
        D(2004, 12, 26),
        D(2022, 2, 24),
    )
    assert (
        catalog.execute("SELECT sum(links) FROM publishers").fetchone()
        == catalog.execute("SELECT count(*) FROM sources").fetchone()
    )


def test_publisher_share(catalog):
    rows = catalog.execute(
        "SELECT registered_domain, links, round(share, 4) FROM publisher_share WHERE year = 2014 LIMIT 3"
    ).fetchall()
    # 13 source links in 2014 events; Al Jazeera and the Guardian have two each
    assert rows == [("aljazeera.com", 2, 0.1538), ("theguardian.com", 2, 0.1538), ("abc.net.au", 1, 0.0769)]
    shares = catalog.execute("SELECT year, sum(share) FROM publisher_share GROUP BY year").fetchall()
    assert all(abs(total - 1) < 1e-9 for _, total in shares)


def test_tag_cooccurrence(catalog):
    rows = catalog.execute("SELECT name_a, name_b, events FROM tag_cooccurrence LIMIT 4").fetchall()
    assert sorted(rows[:2]) == [
        ("Islamic State", "2014 Northern Iraq offensive", 4),
        ("Russo-Ukrainian War", "Ukraine", 4),
    ]
    assert rows[2:] == [
        ("United Kingdom–European Union relations", "Brexit", 2),
        ("November 2015 Paris attacks", "Islamic State", 2),
    ]
    assert catalog.execute("SELECT count(*) FROM tag_cooccurrence WHERE tag_a >= tag_b").fetchone() == (0,)


def test_the_data_dictionary_matches_the_catalog_and_the_readme(catalog):
    from pipeline.dictionary import DICTIONARY, markdown
    from tests.conftest import REPO

    rows = catalog.execute(
        "SELECT table_name, column_name, comment FROM duckdb_columns() WHERE NOT internal"
    ).fetchall()
    in_catalog: dict[str, dict[str, str]] = {}
    for table, column, comment in rows:
        in_catalog.setdefault(table, {})[column] = comment
    assert set(in_catalog) == set(DICTIONARY)  # every table and view described, nothing stale
    for name, entry in DICTIONARY.items():
        assert in_catalog[name] == entry.columns, name  # every column, with its description
    kinds = dict(
        catalog.execute("SELECT view_name, comment FROM duckdb_views() WHERE NOT internal").fetchall()
    )
    assert kinds == {name: entry.description for name, entry in DICTIONARY.items()}
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    start, end = readme.index("<!-- dictionary:start -->\n"), readme.index("<!-- dictionary:end -->")
    assert readme[start + len("<!-- dictionary:start -->\n") : end] == markdown()
