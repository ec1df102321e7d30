"""The analytical views in the catalog, checked on the bundled sample with rows worked out by hand
from its Markdown files (examples/news/)."""

import datetime as dt

import duckdb
import pytest

from pipeline.core.tables import VIEWS

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


def test_country_timeline(catalog):
    """Ukraine: Crimea (2014-03), MH17 near Donetsk (2014-07), Minsk II (2015-02), the
    invasion (2022-02); one event each. Every (event, country) row is counted once."""
    rows = catalog.execute(
        "SELECT name, month, events FROM country_timeline WHERE country_code = 'UA' ORDER BY month"
    ).fetchall()
    assert rows == [
        ("Ukraine", D(2014, 3, 1), 1),
        ("Ukraine", D(2014, 7, 1), 1),
        ("Ukraine", D(2015, 2, 1), 1),
        ("Ukraine", D(2022, 2, 1), 1),
    ]
    assert (
        catalog.execute("SELECT sum(events) FROM country_timeline").fetchone()
        == catalog.execute("SELECT count(*) FROM event_places").fetchone()
    )


def test_country_pairs(catalog):
    """Russia and Ukraine share three events (Crimea, Minsk II, the invasion); Minsk II's four
    leaders make six pairs; Liberia and Sierra Leone two (the 2014 Ebola emergency, whose
    summary names Guinea, Liberia, Sierra Leone and Nigeria, and the 2016 end of the
    epidemic); MH370 (Kuala Lumpur to Beijing) and the Brussels bombings with their
    Paris-attacks context one each."""
    top = catalog.execute("SELECT country_a, country_b, events FROM country_pairs LIMIT 1").fetchall()
    assert top == [("RU", "UA", 3)]
    pairs = dict(
        ((a, b), n)
        for a, b, n in catalog.execute("SELECT country_a, country_b, events FROM country_pairs").fetchall()
    )
    for pair in [("DE", "FR"), ("DE", "RU"), ("DE", "UA"), ("FR", "RU"), ("FR", "UA")]:
        assert pairs[pair] == 1, pair
    assert pairs[("LR", "SL")] == 2
    assert pairs[("GN", "NG")] == pairs[("CN", "MY")] == pairs[("BE", "FR")] == 1
    assert catalog.execute("SELECT count(*) FROM country_pairs WHERE country_a >= country_b").fetchone() == (
        0,
    )
    names = catalog.execute(
        "SELECT name_a, name_b FROM country_pairs WHERE country_a = 'RU' AND country_b = 'UA'"
    )
    assert names.fetchone() == ("Russia", "Ukraine")


def test_the_data_dictionary_matches_the_catalog_and_the_readme(catalog):
    from pipeline.publish.dictionary import DICTIONARY, markdown
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
    page = (REPO / "docs" / "dictionary.md").read_text(encoding="utf-8")
    start, end = page.index("<!-- dictionary:start -->\n"), page.index("<!-- dictionary:end -->")
    assert page[start + len("<!-- dictionary:start -->\n") : end] == markdown()


def _storyline_id(first_event_id: str) -> str:
    import hashlib

    return hashlib.md5(first_event_id.encode()).hexdigest()[:16]


def test_storylines(catalog):
    # Worked out from the sample's Related items with the default rule (a context is specific
    # when the events it reaches lie within 730 days): Islamic State (2014-2017), Brexit
    # (2016-2020), Russo-Ukrainian War, Tsunamis, Notre-Dame de Paris (2019-2024) and the
    # other themes are broad; Battle of Mosul, Financial crisis and Fukushima reach only one
    # event of the archive.
    rows = catalog.execute(
        "SELECT storyline_id, name, size, first_date, last_date, top_tags FROM storylines ORDER BY first_date"
    ).fetchall()
    iraq = "2014-06-21/islamic-state-of-iraq-and-the-levant-captures-the-towns-of-al-qa-im-anah-and-rawa-in-western-iraq"
    assert rows == [
        (
            _storyline_id(
                "2014-03-08/malaysia-airlines-flight-370-disappears-en-route-from-kuala-lumpur-to-beijing-with-239-people-on-board"
            ),
            "Malaysia Airlines",
            2,
            D(2014, 3, 8),
            D(2014, 7, 17),
            ["Malaysia Airlines", "Russo-Ukrainian War", "Ukraine"],
        ),
        # 06-21, 06-27, 06-29 and 08-03 name the offensive (the 08/3 copy is a duplicate)
        (
            _storyline_id(iraq),
            "2014 Northern Iraq offensive",
            4,
            D(2014, 6, 21),
            D(2014, 8, 3),
            ["2014 Northern Iraq offensive", "Islamic State", "Al Qaim"],
        ),
        (
            _storyline_id(
                "2014-08-08/the-world-health-organization-declares-the-ebola-outbreak-in-west-africa-a-public-health-emergency-of-international-concern"
            ),
            "Ebola virus epidemic in West Africa",
            2,
            D(2014, 8, 8),
            D(2016, 1, 14),
            ["Ebola virus epidemic in West Africa", "Public Health Emergency of International Concern"],
        ),
        (
            _storyline_id(
                "2015-11-13/coordinated-terrorist-attacks-in-paris-france-including-at-the-bataclan-theatre-and-the-stade-de-france-kill-130-people"
            ),
            "November 2015 Paris attacks",
            2,
            D(2015, 11, 13),
            D(2016, 3, 22),
            ["Islamic State", "November 2015 Paris attacks"],
        ),
        # Brexit reaches 2020-01-31, so only the UK-EU relations context joins the two
        (
            _storyline_id(
                "2016-06-24/the-united-kingdom-votes-to-leave-the-european-union-in-a-referendum-51-9-to-48-1-prime-minister-david-cameron-announces-his-resignation"
            ),
            "United Kingdom–European Union relations",
            2,
            D(2016, 6, 24),
            D(2017, 3, 29),
            ["Brexit", "United Kingdom–European Union relations"],
        ),
        # the Olympics name COVID-19 (2020-01-30 to 2021-07-23: 540 days)
        (
            _storyline_id(
                "2020-01-30/the-world-health-organization-declares-the-covid-19-outbreak-a-public-health-emergency-of-international-concern"
            ),
            "COVID-19 pandemic",
            3,
            D(2020, 1, 30),
            D(2021, 7, 23),
            ["COVID-19 pandemic", "2020 Summer Olympics", "Public Health Emergency of International Concern"],
        ),
    ]


def test_event_storylines(catalog):
    rows = catalog.execute(
        """SELECT left(event_id, 10), storyline_id FROM event_storylines
           WHERE storyline_id = (SELECT storyline_id FROM storylines WHERE name = '2014 Northern Iraq offensive')
           ORDER BY event_id"""
    ).fetchall()
    iraq = _storyline_id(
        "2014-06-21/islamic-state-of-iraq-and-the-levant-captures-the-towns-of-al-qa-im-anah-and-rawa-in-western-iraq"
    )
    assert rows == [("2014-06-21", iraq), ("2014-06-27", iraq), ("2014-06-29", iraq), ("2014-08-03", iraq)]
    assert catalog.execute("SELECT count(*), count(DISTINCT event_id) FROM event_storylines").fetchone() == (
        15,
        15,
    )
