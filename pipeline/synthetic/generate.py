"""A realistic synthetic archive, deterministic for a seed.

Shaped like the real portal, by the counts it is known to have (one fact per
constant below): about 15 events a day (up to 60) from 2004 on, three in four
events with no summary, 1.25 sources per event from a few hundred publishers
with name variants and public suffixes such as .co.uk and .com.au, about 30%
cover images, 3.3 related items per event drawn from the same story, contexts
from a long-tailed vocabulary of thousands of story names (episodes active for
months of one year, and themes that recur every year) plus broad ones
(countries), titles mostly of 40-300 characters with non-ASCII text, a few
under 10 and a very few over 400. Optionally a share of malformed files of
every kind the contract rejects or quarantines.

The shape matters beyond realism: what a step costs per event (the place scan
reads titles and summaries; normalize and validate grow with sources and
related items) is measured on these archives, so a count far from the portal's
misstates every benchmark.

`documents()` yields each file with what the pipeline should make of it, so
tests can compare generator and pipeline exactly; `generate()` writes them.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from pipeline.parse.ids import make_event_id, slugify

START = dt.date(2004, 1, 1)
# Bumped whenever the same seed yields a different archive (benchmarks cache archives by it).
# 2: stories live in time (episodes of a year, themes), unresolved targets near the event.
# 3: the portal's counts: summaries, sources and related items per event, very short and
#    very long titles, about 8,700 distinct tags in 110,000 events (the portal: ~8,800 contexts).
VERSION = 3

# The portal's counts (the developers' guide, measured on 110,000 real events).
SUMMARY_SHARE = 0.24  # ~76% of events are one sentence: no summary
SHORT_TITLE_SHARE = 0.014  # titles under 10 characters
LONG_TITLE_SHARE = 0.001  # titles over 400 characters
SOURCE_COUNTS, SOURCE_WEIGHTS = (1, 2, 3), (78, 19, 3)  # 1.25 per event
RELATED_COUNTS = (0, 1, 1, 2, 2, 3, 3, 4, 5, 6, 9)  # 3.3 per event
STORY_PLACES = 66  # episode stories per year and kind: ~8,700 distinct tags in 110,000 events
SHORT_TITLES = ("Coup.", "Quake.", "Floods.", "Truce.", "Riots.", "Strike.", "Vote.", "Storm.", "Blast.")

# The vocabulary: places, countries, subjects, verbs, tails of titles, story kinds, paper
# names, public suffixes and real publishers (name variants, hosts), kept as data.
_WORDS = json.loads(resources.files("pipeline.synthetic").joinpath("words.json").read_text(encoding="utf-8"))
PLACES: list[str] = _WORDS["PLACES"]
COUNTRIES: list[str] = _WORDS["COUNTRIES"]
SUBJECTS: list[str] = _WORDS["SUBJECTS"]
VERBS: list[str] = _WORDS["VERBS"]
TAILS: list[str] = _WORDS["TAILS"]
KINDS: list[str] = _WORDS["KINDS"]
PAPERS: list[str] = _WORDS["PAPERS"]
SUFFIXES: list[str] = _WORDS["SUFFIXES"]
REAL_PUBLISHERS: list[tuple[tuple[str, ...], tuple[str, ...]]] = [
    (tuple(names), tuple(hosts)) for names, hosts in _WORDS["REAL_PUBLISHERS"]
]
MALFORMED_KINDS = (
    "empty",
    "encoding",
    "missing_date",
    "invalid_date",
    "date_out_of_range",
    "missing_title",
    "duplicate",
    "bad_url",
    "bad_link",
)


@dataclass(frozen=True)
class Publisher:
    names: tuple[str, ...]
    hosts: tuple[str, ...]


@dataclass
class ExpectedEvent:
    event_id: str
    event_date: dt.date
    title: str
    cover_image_url: str | None
    sources: list[tuple[str, str]]  # (name, url) in order
    relations: list[tuple[str, str, dt.date, tuple[str, ...]]]  # (related_event_id, title, date, contexts)
    bad_lines: list[str] = field(default_factory=list)  # quarantine reasons, in order


@dataclass
class Document:
    rel_path: str
    data: bytes
    kind: str  # event | duplicate | rejected | day_index
    reason: str | None = None
    event: ExpectedEvent | None = None


@dataclass(frozen=True)
class Written:
    events: int
    malformed: int
    files: int


class _Skeleton:
    """Dates, unique titles and stories of every event, decided before any file is written.

    Stories live in time like the portal's contexts: most are episodes of one year
    ("2014 Mosul offensive"), active for one to twelve months of it, and a quarter of
    events belong to long-running themes ("Iraq protests") that recur over every year.
    Within what is active, popularity is Zipf-like."""

    THEME_SHARE = 0.25

    def __init__(self, n: int, rng: random.Random, today: dt.date) -> None:
        self.dates: list[dt.date] = []
        self.titles: list[str] = []
        self.stories: list[int] = []
        self.countries: list[int] = []
        total_days = (today - START).days + 1
        self.story_names = _story_names(rng)
        themes: list[int] = []
        active: dict[tuple[int, int], list[int]] = {}
        for index, name in enumerate(self.story_names):
            year = name[:4]
            if not year.isdigit():
                themes.append(index)
                continue
            first = rng.randint(1, 12)
            length = rng.choice((1, 1, 2, 3, 3, 6, 12))
            for month in range(first, min(12, first + length - 1) + 1):
                active.setdefault((int(year), month), []).append(index)

        def zipf(indices: list[int]) -> tuple[list[int], list[float]]:
            # Weight 1/(rank+10) by position in the shuffled name list: a few popular stories.
            cum, total = [], 0.0
            for rank in range(len(indices)):
                total += 1.0 / (rank + 10)
                cum.append(total)
            return indices, cum

        theme_pool = zipf(themes)
        pools = {key: zipf(indices) for key, indices in active.items()}
        seen: set[tuple[dt.date, str]] = set()
        day = 0
        days_used = max(1, min(total_days, n // 15 or 1))
        stride = max(1, total_days // days_used)
        while len(self.dates) < n:
            date = START + dt.timedelta(days=(day * stride) % total_days)
            day += 1
            count = min(60, max(1, int(rng.gauss(15, 7))))
            episode_pool = pools.get((date.year, date.month))
            for _ in range(min(count, n - len(self.dates))):
                indices, cum = (
                    theme_pool if episode_pool is None or rng.random() < self.THEME_SHARE else episode_pool
                )
                story = rng.choices(indices, cum_weights=cum)[0]
                country = rng.randrange(len(COUNTRIES))
                while True:
                    title = _title(rng, self.story_names[story])
                    key = (date, slugify(title))
                    if key not in seen:
                        seen.add(key)
                        break
                self.dates.append(date)
                self.titles.append(title)
                self.stories.append(story)
                self.countries.append(country)

    def event_id(self, i: int) -> str:
        return make_event_id(self.dates[i], slugify(self.titles[i]))


def _story_names(rng: random.Random) -> list[str]:
    places = [p for p in PLACES if ", " not in p][:STORY_PLACES]  # a context holds no ", D.C."
    names = {f"{y} {p} {k}" for y in range(2004, 2027) for p in places for k in KINDS[:6]}
    names.update(f"{c} {k}" for c in COUNTRIES for k in KINDS)
    ordered = sorted(names)
    rng.shuffle(ordered)
    return ordered


def _title(rng: random.Random, story: str) -> str:
    shape = rng.random()
    if shape < SHORT_TITLE_SHARE:
        return rng.choice(SHORT_TITLES)
    place = rng.choice(PLACES)
    tail = rng.choice(TAILS).format(
        n=rng.randint(2, 999), m=rng.randint(2, 99), y=rng.randint(1950, 2020), p=rng.choice(PLACES)
    )
    title = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {place}, {tail}"
    if rng.random() < 0.4:
        title += f", in the latest development of the {story}"
    if rng.random() < 0.15:
        title += (
            f"; officials in {rng.choice(PLACES)} say the situation in {rng.choice(COUNTRIES)} remains tense"
        )
    if rng.random() < 0.05:
        title += f" [{rng.choice(KINDS)}]"
    if shape > 1 - LONG_TITLE_SHARE:  # a whole paragraph as one event
        while len(title) <= 400:
            title += (
                f"; {rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(PLACES)} as the {story} goes on"
            )
        return title + "."
    return title[:299].rstrip() + "."


def _publishers(rng: random.Random) -> list[Publisher]:
    pubs = [Publisher(names, hosts) for names, hosts in REAL_PUBLISHERS]
    cities = [p for p in PLACES if p.isascii() and "," not in p and "'" not in p]
    for city in cities:
        for paper in rng.sample(PAPERS, 3):
            stem = (city + paper).lower().replace(" ", "").replace(".", "")
            suffix = rng.choice(SUFFIXES)
            name = f"The {city} {paper}"
            pubs.append(
                Publisher((name, f"{city} {paper}"), (f"www.{stem}.{suffix}", f"news.{stem}.{suffix}"))
            )
    return pubs


def _url(rng: random.Random, pub: Publisher, date: dt.date, slug: str) -> str:
    host = rng.choice(pub.hosts)
    if host == "en.wikipedia.org":
        return f"https://en.wikipedia.org/wiki/{slug[:40].title().replace('-', '_')}_({date.year})"
    scheme = "https" if rng.random() < 0.8 else rng.choice(["http", "HTTPS", "Http"])
    return f"{scheme}://{host}/news/{date:%Y/%m/%d}/{slug[:60]}-{rng.randint(10_000, 99_999_999)}.html"


def _path(date: dt.date, slug: str) -> str:
    return f"news/{date.year}/{date.month:02d}/{date.day}/{slug}.md"


def _render(date: dt.date, title: str, summary: str, sources: list[str], related: list[str], nl: str) -> str:
    lines = [
        f"### [{date.isoformat()}](/news/{date:%Y/%m/%d}/index.md)",
        "",
        f"# {title} ",
        "",
        summary,
        "",
        "",
        "### Source:",
        "",
        *sources,
        "",
        "### Related:",
        "",
        *related,
        "",
    ]
    return nl.join(lines)


def documents(
    n: int, seed: int = 0, malformed: float = 0.0, today: dt.date | None = None
) -> Iterator[Document]:
    """Every file of the archive, in a deterministic order, with its expected outcome."""
    today = today or dt.date(2026, 1, 1)
    rng = random.Random(seed)
    sk = _Skeleton(n, rng, today)
    pubs = _publishers(rng)
    by_story: dict[int, list[int]] = {}
    for i, story_index in enumerate(sk.stories):
        by_story.setdefault(story_index, []).append(i)
    day_pages: set[tuple[int, int, int]] = set()

    for i in range(n):
        date, title = sk.dates[i], sk.titles[i]
        slug = slugify(title)
        story = sk.story_names[sk.stories[i]]
        country = COUNTRIES[sk.countries[i]]
        place = rng.choice(PLACES)
        summary = (
            f"Reports from {place} describe the situation as [{story}](https://en.wikipedia.org/wiki/"
            f"{story.replace(' ', '_')}) continues.  Local  officials\tgive updates."
            if rng.random() < SUMMARY_SHARE
            else ""
        )
        if summary and rng.random() < 0.3:
            summary += f"\n\nA second paragraph about {rng.choice(COUNTRIES)}."
        source_lines, sources = [], []
        for _ in range(rng.choices(SOURCE_COUNTS, SOURCE_WEIGHTS)[0]):
            pub = rng.choice(pubs)
            name, url = rng.choice(pub.names), _url(rng, pub, date, slug)
            sources.append((name, url))
            source_lines.append(f"1. [{name}]({url})")
        cover = None
        if rng.random() < 0.3:
            cover = f"https://images.example-media.com/{date:%Y/%m}/{slug[:30]}.jpg"
            source_lines.insert(
                rng.randrange(len(source_lines) + 1),
                f"1. [{rng.choice(['Cover Image', 'cover image'])}]({cover})",
            )

        related_lines: list[str] = []
        relations: list[tuple[str, str, dt.date, tuple[str, ...]]] = []
        peers = by_story[sk.stories[i]]
        for position in range(rng.choice(RELATED_COUNTS)):
            if len(peers) > 1 and rng.random() < 0.85:
                j = peers[rng.randrange(len(peers))]
                while j == i:  # not itself: every drawn item is a related event
                    j = peers[rng.randrange(len(peers))]
                rdate, rtitle = sk.dates[j], sk.titles[j]
            else:  # a target outside the archive (unresolved), from around the same time
                rdate = min(today, max(START, date + dt.timedelta(days=rng.randint(-90, 90))))
                rtitle = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(PLACES)} ({position})."
            story_spelling = (
                story
                if rng.random() < 0.9
                else rng.choice((story.lower(), story.upper(), story.replace(" ", "  ")))
            )
            contexts = [story_spelling] + ([country] if rng.random() < 0.5 else [])
            rslug = slugify(rtitle)
            rid = make_event_id(rdate, rslug)
            related_lines.append(
                f"{len(relations) + 1}. [{rtitle} ](/news/{rdate.year}/{rdate.month:02d}/{rdate.day}/{rslug}.md)"
                f" _Context: {', '.join(contexts)}_"
            )
            relations.append((rid, rtitle, rdate, tuple(contexts)))

        expected = ExpectedEvent(sk.event_id(i), date, title, cover, sources, relations)
        nl = "\r\n" if rng.random() < 0.02 else "\n"
        text = _render(date, title, summary, source_lines, related_lines, nl)
        path = _path(date, slug)
        yield Document(path, text.encode("utf-8"), "event", event=expected)

        key = (date.year, date.month, date.day)
        if key not in day_pages:
            day_pages.add(key)
            yield Document(
                f"news/{date.year}/{date.month:02d}/{date.day}/index.md",
                f"# {date.isoformat()}\n".encode(),
                "day_index",
                reason="day_index",
            )

        if malformed and rng.random() < malformed:
            yield from _malformed(rng, i, sk, text, expected, path)


def _malformed(
    rng: random.Random, i: int, sk: _Skeleton, text: str, event: ExpectedEvent, path: str
) -> Iterator[Document]:
    kind = MALFORMED_KINDS[i % len(MALFORMED_KINDS)]
    base = f"news/{sk.dates[i].year}/{sk.dates[i].month:02d}/{sk.dates[i].day}/malformed-{i}"
    if kind == "empty":
        yield Document(f"{base}.md", b"", "rejected", "empty")
    elif kind == "encoding":
        yield Document(
            f"{base}.md", text.encode("utf-8")[:40] + b"\xff\xfe caf\xe9\n", "rejected", "encoding"
        )
    elif kind == "missing_date":
        yield Document(f"{base}.md", text.split("\n", 1)[1].encode(), "rejected", "missing_date")
    elif kind == "invalid_date":
        yield Document(
            f"{base}.md",
            b"### [2015-02-30](/news/2015/02/30/index.md)\n\n# A day that never was.\n",
            "rejected",
            "invalid_date",
        )
    elif kind == "date_out_of_range":
        yield Document(
            f"{base}.md",
            b"### [2999-01-01](/news/2999/01/01/index.md)\n\n# A date far ahead.\n",
            "rejected",
            "date_out_of_range",
        )
    elif kind == "missing_title":
        yield Document(
            f"{base}.md",
            text.split("\n", 1)[0].encode() + b"\n\nNo title here.\n",
            "rejected",
            "missing_title",
        )
    elif kind == "duplicate":  # the same document again under a mirror folder
        yield Document(f"mirror/{path}", text.encode("utf-8"), "duplicate", event=event)
    elif kind in ("bad_url", "bad_link"):
        # a valid event whose one extra item is quarantined
        date = sk.dates[i] + dt.timedelta(days=0)
        title = f"Malformed-item event number {i} in {rng.choice(PLACES)}."
        slug = slugify(title)
        bad = "1. [Share](javascript:void(0))" if kind == "bad_url" else "1. [Elsewhere](/wiki/Elsewhere)"
        good = f"1. [Reuters](https://www.reuters.com/world/{slug}.html)"
        sources = [good, bad] if kind == "bad_url" else [good]
        related = [bad] if kind == "bad_link" else []
        doc = _render(date, title, "", sources, related, "\n")
        ev = ExpectedEvent(
            make_event_id(date, slug),
            date,
            title,
            None,
            [("Reuters", f"https://www.reuters.com/world/{slug}.html")],
            [],
            [kind],
        )
        yield Document(_path(date, slug), doc.encode(), "event", event=ev)


def generate(
    n: int, output: Path, seed: int = 0, malformed: float = 0.0, today: dt.date | None = None
) -> Written:
    """Write the archive under `output` (created if needed)."""
    events = bad = files = 0
    made: set[str] = set()
    for doc in documents(n, seed, malformed, today):
        target = os.path.join(output, doc.rel_path)
        parent = os.path.dirname(target)
        if parent not in made:
            os.makedirs(parent, exist_ok=True)
            made.add(parent)
        with open(target, "wb") as handle:
            handle.write(doc.data)
        files += 1
        if doc.kind == "event" and not (doc.event and doc.event.bad_lines):
            events += 1
        elif doc.kind != "day_index":
            bad += 1
    return Written(events, bad, files)
