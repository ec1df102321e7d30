"""The data dictionary: every published table and analytical view, and every column, described
once, here. The catalog carries it as DuckDB comments (BI tools show them), README's
dictionary section is generated from it (`python -m pipeline dictionary`), and a test checks
it against a real catalog in both directions."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from pipeline.core.sqltext import sql_literal
from pipeline.core.tables import PUBLISHED, VIEWS


@dataclass(frozen=True)
class Entry:
    kind: str  # "table" or "view"
    description: str
    columns: dict[str, str]


DICTIONARY: dict[str, Entry] = {
    "events": Entry(
        "table",
        "One row per event document kept (the first relative path wins when two files share an event id).",
        {
            "event_id": "`YYYY-MM-DD/<slug>`, from the archive path when it is `news/YYYY/MM/D/<slug>.md`, "
            "else from the date line and title (primary key)",
            "event_date": "the date line's date",
            "title": "the first `# ` line after the date, trimmed",
            "summary": "plain text between the title and the first `### ` heading; links become their text, "
            "paragraphs joined by a blank line; may be empty",
            "slug": "the slug part of event_id",
            "cover_image_url": "URL of the Source item named `Cover Image`; NULL if none",
            "source_count": "rows of this event in sources",
            "related_count": "rows of this event in relations",
            "file_path": "the document, relative to the input root, `/`-separated",
            "content_sha256": "SHA-256 of the document's bytes",
        },
    ),
    "sources": Entry(
        "table",
        "One row per accepted Source link of an event (the cover image excluded).",
        {
            "event_id": "the event (foreign key to events)",
            "position": "1, 2, ... over the accepted items in order of appearance, without gaps",
            "name": "the link text as written",
            "url": "the absolute http(s) URL as written",
            "host": "the URL's host, lower-case, leading `www.` removed",
            "registered_domain": "the host's registered domain by the public-suffix list (offline), "
            "e.g. bbc.co.uk; the host itself when it has no public suffix",
        },
    ),
    "tags": Entry(
        "table",
        "One row per distinct context (tag), named by the Related items of published events.",
        {
            "tag_id": "first 16 hex digits of SHA-256 of the casefolded, whitespace-collapsed name "
            "(primary key)",
            "name": "the most frequent spelling (ties: smallest in code-point order)",
            "event_count": "events naming the tag in their own Related items",
            "first_date": "earliest event_date of those events",
            "last_date": "latest event_date of those events",
        },
    ),
    "event_tags": Entry(
        "table",
        "One row per (event, tag): the contexts named in the event's own accepted Related items.",
        {"event_id": "the event (foreign key to events)", "tag_id": "the tag (foreign key to tags)"},
    ),
    "relations": Entry(
        "table",
        "One row per accepted Related item of an event.",
        {
            "event_id": "the event whose document lists the item (foreign key to events)",
            "position": "1, 2, ... over the accepted items in order of appearance, without gaps",
            "related_event_id": "the event id the link points at",
            "related_title": "the link text as written, trimmed",
            "related_date": "the date in the link's path",
            "resolved": "true when related_event_id is in events",
            "days_apart": "related_date - event_date, in days",
        },
    ),
    "relation_tags": Entry(
        "table",
        "One row per (Related item, context): the contexts a relation names.",
        {
            "event_id": "the event listing the relation (foreign key to events)",
            "related_event_id": "the relation's target",
            "tag_id": "a context the item names (foreign key to tags)",
        },
    ),
    "files": Entry(
        "table",
        "One row per `*.md` file under the input: what became of it.",
        {
            "file_path": "relative to the input root, `/`-separated (primary key); in a name that is "
            "not valid UTF-8 each such byte is written `\\xNN` and a literal backslash is doubled, so "
            "no two files share a path",
            "content_sha256": "SHA-256 of the bytes (NULL if not read: unreadable, too large, outside the input)",
            "bytes": "size in bytes (NULL if unknown: unreadable, outside the input)",
            "status": "parsed, rejected, skipped or duplicate",
            "reason": "why not parsed (NULL when parsed): empty, encoding, missing_date, invalid_date, "
            "date_out_of_range, missing_title, day_index, duplicate_event_id, unreadable, vanished, "
            "not_a_regular_file, too_large, bad_file_name, outside_input (a symbolic link to a file "
            "outside the input folder: not read)",
            "event_id": "the event id, when parsed or duplicate",
            "duplicate_of": "for a duplicate, the file_path that won the event id",
            "detail": "a human-readable detail of the reason",
        },
    ),
    "quarantine": Entry(
        "table",
        "One row per list line of a published event that was not accepted.",
        {
            "file_path": "the document",
            "section": "`source` or `related`: the section the line is in",
            "raw": "the line as written",
            "reason": "bad_url, bad_link, extra_cover_image or not_a_list_item",
            "line_number": "1-based line number in the document",
            "event_id": "the event the document was published as",
        },
    ),
    "storylines": Entry(
        "table",
        "One row per storyline: a connected group of two or more events linked through specific "
        "contexts (see README, Storylines). An incremental run recomputes the storylines its changes can reach.",
        {
            "storyline_id": "first 16 hex digits of MD5 of the group's earliest event id (primary key)",
            "name": "the specific tag most of its events name (ties: smallest name)",
            "size": "events in the storyline (rows in event_storylines)",
            "first_date": "earliest event_date of its events",
            "last_date": "latest event_date of its events",
            "top_tags": "up to five tag names, broad ones included, by how many of its events name "
            "them (ties: by name)",
        },
    ),
    "event_storylines": Entry(
        "table",
        "One row per event in a storyline (an event belongs to at most one; most events to none).",
        {
            "event_id": "the event (foreign key to events; primary key)",
            "storyline_id": "its storyline (foreign key to storylines)",
        },
    ),
    "runs": Entry(
        "table",
        "One row per pipeline run up to this publication, published or not.",
        {
            "run_id": "start time (UTC) and process id (primary key)",
            "started_at": "when the run started",
            "finished_at": "when validation finished",
            "files_seen": "`*.md` files found under the input",
            "events": "rows in events",
            "rejected": "files rejected",
            "validation_passed": "no critical expectation failed",
            "parsed": "files parsed into an event",
            "skipped": "files skipped (day pages)",
            "duplicates": "files whose event id another file won",
            "quarantined": "rows in quarantine",
            "published": "the run's tables became current",
            "files_read": "files this run read and parsed (all on a full refresh)",
            "events_added": "event ids new since the previous publication",
            "events_changed": "event ids whose content or file changed",
            "events_removed": "event ids gone since the previous publication",
            "full_refresh": "the run rebuilt every table part (a first run, --full-refresh, new code)",
            "seconds_discover": "seconds listing the input",
            "seconds_parse": "seconds reading and parsing",
            "seconds_normalize": "seconds deriving the tables",
            "seconds_validate": "seconds validating",
            "outcome": "how the run ended: published, unchanged (nothing changed since the current "
            "publication: none made), validation_failed, shrink_refused, failed, interrupted; "
            "running while a run publishes",
            "detail": "why the run ended as it did, when it did not publish (one line)",
        },
    ),
    "changes": Entry(
        "table",
        "One row per event changed by each published run, up to this publication: what a "
        "downstream load since a given run has to replay (`python -m pipeline export --since RUN_ID` "
        "writes the change set of every table).",
        {
            "run_id": "the published run",
            "event_id": "an event whose rows changed in that run, in any event-keyed table",
            "change": "added (new event id), changed (rows differ), removed (event id gone)",
        },
    ),
    "event_places": Entry(
        "table",
        "One row per (event, country) the event mentions: by name, people or adjective, state "
        "institution, or a place inside the country, in its title, its summary or a context of its "
        "own Related items (contract section 5; docs/places.md).",
        {
            "event_id": "the event (foreign key to events)",
            "country_code": "ISO 3166-1 alpha-2, upper case (foreign key to countries); Kosovo is XK",
            "found_in": "title, summary or context: where the first mention is (in that order)",
            "matched": "the words matched there, e.g. `Iraqi`, `the Kremlin` as `Kremlin`, `Fallujah`",
        },
    ),
    "countries": Entry(
        "table",
        "One row per ISO 3166-1 country or territory (pycountry), plus Kosovo (XK).",
        {
            "country_code": "ISO 3166-1 alpha-2, upper case (primary key)",
            "alpha_3": "ISO 3166-1 alpha-3",
            "numeric_code": "ISO 3166-1 numeric, three digits; NULL for XK",
            "name": "common English short name (country_converter), e.g. `Russia`, `DR Congo`",
            "official_name": "official name (pycountry)",
            "region": "UN M49 region: Africa, Americas, Asia, Europe, Oceania; NULL for Antarctica "
            "and uninhabited territories",
            "subregion": "UN M49 sub-region, e.g. `Western Asia`",
            "latitude": "latitude of the capital (GeoNames): a representative point; NULL when the "
            "capital is not in GeoNames' cities of 15,000+",
            "longitude": "longitude of the capital",
            "capital": "the capital's name (GeoNames)",
        },
    ),
    "daily_counts": Entry(
        "view",
        "One row per day with events.",
        {
            "event_date": "the day",
            "events": "events that day",
            "sources": "their source links",
            "related": "their Related items",
        },
    ),
    "tag_timeline": Entry(
        "view",
        "One row per (tag, month) in which events name the tag.",
        {
            "tag_id": "the tag",
            "name": "its name",
            "month": "first day of the month",
            "events": "events that month naming the tag",
        },
    ),
    "publishers": Entry(
        "view",
        "One row per publisher (registered domain), with the names and hosts it appears under.",
        {
            "registered_domain": "the publisher",
            "names": "distinct link texts, sorted",
            "hosts": "distinct hosts, sorted",
            "links": "source links",
            "events": "events citing it",
            "first_date": "earliest citing event",
            "last_date": "latest citing event",
        },
    ),
    "publisher_share": Entry(
        "view",
        "One row per (year, publisher).",
        {
            "year": "year of the citing events",
            "registered_domain": "the publisher",
            "links": "its source links that year",
            "share": "links / all source links that year",
        },
    ),
    "country_timeline": Entry(
        "view",
        "One row per (country, month) in which events mention the country.",
        {
            "country_code": "the country",
            "name": "its name",
            "month": "first day of the month",
            "events": "events that month mentioning it",
        },
    ),
    "country_pairs": Entry(
        "view",
        "One row per pair of countries mentioned by the same event (country_a < country_b).",
        {
            "country_a": "first country code",
            "name_a": "its name",
            "country_b": "second country code",
            "name_b": "its name",
            "events": "events mentioning both",
        },
    ),
    "tag_cooccurrence": Entry(
        "view",
        "One row per pair of tags named by the same event (tag_a < tag_b).",
        {
            "tag_a": "first tag id",
            "name_a": "its name",
            "tag_b": "second tag id",
            "name_b": "its name",
            "events": "events naming both",
        },
    ),
}


if set(DICTIONARY) != {*PUBLISHED, *VIEWS}:  # the registry (pipeline/core/tables.py) names them
    raise RuntimeError(
        f"the data dictionary and the table registry differ: {set(DICTIONARY) ^ {*PUBLISHED, *VIEWS}}"
    )


def comment_statements(names: Collection[str] | None = None) -> list[str]:
    """`COMMENT ON` statements that put the dictionary into a DuckDB catalog (of the tables and
    views in `names`; None: all)."""
    out = []
    for name, entry in DICTIONARY.items():
        if names is not None and name not in names:
            continue
        out.append(f"COMMENT ON VIEW {name} IS {sql_literal(entry.description)}")
        for column, text in entry.columns.items():
            out.append(f"COMMENT ON COLUMN {name}.{column} IS {sql_literal(text)}")
    return out


def markdown() -> str:
    """The dictionary as Markdown (README's "Data dictionary" section)."""
    lines = []
    for name, entry in DICTIONARY.items():
        lines += [
            f"### `{name}` ({entry.kind})",
            "",
            entry.description,
            "",
            "| column | meaning |",
            "|---|---|",
        ]
        lines += [f"| `{c}` | {t.replace('|', '/')} |" for c, t in entry.columns.items()]
        lines.append("")
    return "\n".join(lines)
