"""The countries an event mentions (contract section 5), case by case, and measured on the
labelled sets."""

import json
from pathlib import Path

import pycountry
import pytest

from pipeline.places import event_places
from pipeline.places.evaluate import load, score
from pipeline.places.gazetteer import TOKEN, countries_table, gazetteer
from pipeline.places.match import BEFORE, _Around, _scan, _scan_words, mentions

HERE = Path(__file__).parent


def codes(title: str, summary: str = "", contexts: tuple[str, ...] = ()) -> set[str]:
    return {code for code, _, _ in event_places(title, summary, contexts)}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # by name, any common name
        ("U.S. and British officials meet", {"US", "GB"}),
        ("Türkiye, Ivory Coast and DR Congo sign a deal", {"TR", "CI", "CD"}),
        ("Britain and the Republic of the Congo", {"GB", "CG"}),
        # people and adjectives; state institutions; places inside
        ("Iraqi police clash with insurgents in Fallujah", {"IQ"}),
        ("The Kremlin and Downing Street trade accusations", {"RU", "GB"}),
        ("Wildfires spread across California", {"US"}),
        ("Shelling in the Gaza Strip", {"PS"}),
        # territories keep their codes; Kosovo is XK
        ("Protests in Hong Kong, Puerto Rico and Greenland", {"HK", "PR", "GL"}),
        ("Kosovo declares independence", {"XK"}),
        # longest match: a longer name is not its shorter part
        ("Papua New Guinea and New Mexico", {"PG", "US"}),
        # not an organisation, a supranational body, a language, or another meaning
        ("The Islamic State of Iraq and the Levant claims an attack", set()),
        ("Bank of America is fined", set()),
        ("The European Union and the African Union meet", set()),
        ("The film is subtitled in French", set()),
        ("Georgia Governor Brian Kemp speaks in Atlanta", {"US"}),
        ("Russian troops leave Georgia", {"RU", "GE"}),
        ("Michael Jordan retires", set()),
        ("King Abdullah of Jordan visits Cairo", {"JO", "EG"}),
        ("Vladimir Putin speaks", set()),
        ("Greek-owned tanker seized in the Gulf of Aden", {"GR"}),
        # a place's own noun after a city is no person's name ("Meng Wanzhou" is)
        ("Flights cancelled at Incheon Airport", {"KR"}),
        ("Flooding in Nagoya City", {"JP"}),
        ("Boston Marathon bombing", {"US"}),
        ("Meng Wanzhou is released", set()),
    ],
)
def test_the_rule_case_by_case(text, expected):
    assert codes(text) == expected


def test_evidence_is_the_first_place_found_title_then_summary_then_contexts():
    found = event_places(
        "Talks in Cairo", "Egyptian and Iraqi envoys meet.", ["Iraq War", "Syrian civil war"]
    )
    assert found == [("EG", "title", "Cairo"), ("IQ", "summary", "Iraqi"), ("SY", "context", "Syrian")]
    assert mentions("") == [] and event_places("Nothing here", None, []) == []


def test_countries_are_every_iso_code_and_kosovo_with_m49_regions():
    table = countries_table().to_pylist()
    by_code = {row["country_code"]: row for row in table}
    assert set(by_code) == {c.alpha_2 for c in pycountry.countries} | {"XK"}
    assert by_code["FR"]["region"] == "Europe" and by_code["FR"]["subregion"] == "Western Europe"
    assert by_code["BR"]["region"] == "Americas" and by_code["NA"]["name"] == "Namibia"
    assert by_code["GB"]["alpha_3"] == "GBR" and by_code["GB"]["numeric_code"] == "826"
    assert abs(by_code["JP"]["latitude"] - 35.7) < 1 and abs(by_code["JP"]["longitude"] - 139.7) < 1
    assert {row["region"] for row in table} <= {"Africa", "Americas", "Asia", "Europe", "Oceania", None}
    assert all(code in by_code for code in {c for c in gazetteer().names.values() if c})


@pytest.mark.parametrize("name", ["portal_events.tsv", "held_out_events.tsv"])
def test_precision_and_recall_on_the_labelled_sets(name):
    """Issue 24's goal: precision >= 0.95, recall >= 0.90 over (event, country) pairs. The
    development set was used to tune words.json; the held-out set never was."""
    result = score(load(HERE / name))
    assert result.events >= 99
    assert result.precision >= 0.95 and result.recall >= 0.90, result.misses


EDGES = [
    "U.S.-led strikes on al-Qaeda in Iraq",
    "Talks in the U.S.Iraq office",  # a word right after an abbreviation
    "iPhone sales fall in China; xIran is no word",
    "Côte d'Ivoire and Guinea-Bissau, then 's-Hertogenbosch and 6th of October City",
    "Iran's president meets Iraq’s premier",
    "British-flagged tanker and Spanish-language press in French Polynesia",
    "Georgia votes; Atlanta counts",
    "New York-based firm opens in New, Zealand",
    "A.B.C.Paris O'Neill Jones'Paris A&B Berlin -Berlin x-.Berlin",
]


def test_the_fast_scan_equals_the_word_by_word_scan():
    """`_scan` visits only the words that can start a name; `_scan_words` splits every word:
    the same answers on every labelled text and on the tokenizer's edge cases."""
    texts = list(EDGES)
    for name in ("portal_events.tsv", "held_out_events.tsv"):
        for line in (HERE / name).read_text(encoding="utf-8").splitlines():
            texts += [part for part in line.split("\t") if part]
    assert len(texts) > 1000
    differing = [text for text in texts if _scan(text) != _scan_words(text)]
    assert differing == []
    assert _scan(EDGES[0]) == (("US", "U.S."), ("IQ", "Iraq"))


def test_a_few_events_get_the_same_places_without_compiling_the_scan_regex(monkeypatch):
    """A run's only batch staged in its own process (`few`) takes the word-by-word scan while
    the regex is not compiled (0.45 s to compile, for a watcher's one file), and the same
    answers; once compiled, the regex is used."""
    from pipeline.places import match

    rows = [
        line.split("\t")
        for line in (HERE / "portal_events.tsv").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    ]
    events = [(r[0], r[1] if len(r) > 1 else None, r[2].split(", ") if len(r) > 2 else []) for r in rows]
    match._starts.cache_clear()
    few = [event_places(title, summary, contexts, few=True) for title, summary, contexts in events]
    assert match._starts.cache_info().currsize == 0
    many = [event_places(title, summary, contexts) for title, summary, contexts in events]
    assert match._starts.cache_info().currsize == 1
    assert few == many and sum(map(len, few)) > 100
    used: list[str] = []
    monkeypatch.setattr(match, "_scan_words", lambda text: used.append(text) or ())
    event_places("Iraq", None, [], few=True)  # compiled now: the regex
    assert used == []


def test_the_shipped_gazetteer_is_what_the_packages_and_words_give():
    """gazetteer.json is derived data: it must equal a derivation from the installed packages
    and words.json (after editing words.json: `python -m pipeline.places`)."""
    from pipeline.places import gazetteer as gz

    shipped = json.loads(gz.SHIPPED.read_text(encoding="utf-8"))
    assert shipped == gz.derive(), "pipeline/places/gazetteer.json is stale: run python -m pipeline.places"


def test_a_stale_shipped_gazetteer_is_not_used(tmp_path, monkeypatch):
    from pipeline.places import gazetteer as gz

    stale = json.loads(gz.SHIPPED.read_text(encoding="utf-8"))
    stale["words_sha256"] = "0" * 64
    stale["names"] = [["Atlantis", "GR", "name"]]
    path = tmp_path / "gazetteer.json"
    path.write_text(json.dumps(stale), encoding="utf-8")
    monkeypatch.setattr(gz, "SHIPPED", path)
    gz.derived.cache_clear()
    try:
        names = {key for key, _, _ in gz.derived()["names"]}
        assert "Atlantis" not in names and "Iraq" in names
    finally:
        gz.derived.cache_clear()


def test_the_word_before_a_match_is_the_last_word_of_its_window():
    """`_Around.before` splits only the words after the last space; the answer is the last
    word of the whole window, at every position of texts with punctuation, double spaces,
    abbreviations and joined words."""
    texts = [
        *EDGES,
        "in  (Fallujah) and\tBaghdad — U.S. forces; al-Qa'im's  O'Neill Jones",
        " x",
        "",
        "word" * 30 + " Paris",
    ]
    for text in texts:
        for start in range(len(text) + 1):
            window = TOKEN.findall(text, max(0, start - BEFORE), start)
            assert _Around(text, start, start, None).before() == (window[-1] if window else ""), (text, start)
