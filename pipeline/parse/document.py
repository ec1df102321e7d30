"""Parse one event document (contract section 1) into plain Python values.

Pure: bytes in, a `ParsedEvent` or a `Rejected` out; no I/O, never raises on
any input (property-tested). Items that cannot be accepted are returned as
quarantine entries so that nothing in a kept event is lost.
"""

from __future__ import annotations

import datetime as dt
import re
from itertools import chain
from typing import NamedTuple

from pipeline.parse.domains import plain_host, web_host
from pipeline.parse.ids import (
    date_or_none,
    event_path_identity,
    make_event_id,
    related_link_identity,
    slugify,
)
from pipeline.parse.links import match_link, strip_links

MIN_DATE = dt.date(1900, 1, 1)
BOM = "\ufeff"

# Reject reasons (files.reason) and quarantine reasons (quarantine.reason).
EMPTY = "empty"
ENCODING = "encoding"
MISSING_DATE = "missing_date"
INVALID_DATE = "invalid_date"
DATE_OUT_OF_RANGE = "date_out_of_range"
MISSING_TITLE = "missing_title"
BAD_URL = "bad_url"
BAD_LINK = "bad_link"
EXTRA_COVER_IMAGE = "extra_cover_image"
NOT_A_LIST_ITEM = "not_a_list_item"

SECTION_SOURCE = "source"
SECTION_RELATED = "related"

_DATE_LINE = re.compile(r"^###[ \t]+\[[ \t]*(\d{4})-(\d{2})-(\d{2})[ \t]*\](?:\(.*\))?[ \t]*$")
# A date heading whose bracket holds something that is not YYYY-MM-DD (`### [2015-2-30](..)`).
_DATE_LIKE_LINE = re.compile(r"^###[ \t]+\[[^\]\d]*\d[^\]]*\]")  # one split point: linear time
# A well-formed date followed by something other than a link (`### [2014-06-21] Iraq`): the
# date is fine, the line is not a date line.
_DATE_THEN_MORE = re.compile(r"^###[ \t]+\[[ \t]*\d{4}-\d{2}-\d{2}[ \t]*\]")
_TITLE_LINE = re.compile(r"^#(?:[ \t]|$)")
_ITEM = re.compile(r"^[ \t]*(?:\d+[.)]|[-*+])(?:[ \t]+(.*))?$")
_CONTEXT = re.compile(r"[ \t]*[_*]Context:[ \t]*(.*)[_*][ \t]*$")
_LINE_BREAKS = re.compile(r"\r\n?")


class Source(NamedTuple):
    position: int
    name: str
    url: str
    host: str  # lower-case, leading `www.` removed (found while checking the URL)


class Relation(NamedTuple):
    position: int
    related_event_id: str
    related_title: str
    related_date: dt.date
    contexts: tuple[str, ...]


class QuarantinedLine(NamedTuple):
    section: str
    line_number: int
    raw: str
    reason: str


class ParsedEvent(NamedTuple):
    event_id: str
    event_date: dt.date
    title: str
    summary: str
    slug: str
    cover_image_url: str | None
    sources: list[Source]
    relations: list[Relation]
    quarantine: list[QuarantinedLine]


class Rejected(NamedTuple):
    reason: str
    detail: str


def decode(data: bytes) -> str | Rejected:
    """UTF-8 text with the BOM dropped and every line ending turned into LF."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejected(ENCODING, f"not valid UTF-8 at byte {exc.start}")
    if text.startswith(BOM):
        text = text[1:]
    if "\r" in text:
        text = _LINE_BREAKS.sub("\n", text)
    return text


def parse_document(data: bytes, rel_path: str, today: dt.date) -> ParsedEvent | Rejected:
    """Parse one file's bytes; `today` is the UTC date the date range is checked against."""
    text = decode(data)
    if isinstance(text, Rejected):
        return text
    if not text.strip():
        return Rejected(EMPTY, "the file has no content")
    lines = text.split("\n")

    first = next(i for i, line in enumerate(lines) if line.strip())  # the text is not blank
    date_match = _DATE_LINE.match(lines[first].strip())
    if date_match is None:
        line = lines[first].strip()
        if _DATE_LIKE_LINE.match(line) and not _DATE_THEN_MORE.match(line):
            return Rejected(INVALID_DATE, f"not a YYYY-MM-DD date: {line[:80]!r}")
        return Rejected(
            MISSING_DATE, f"the first non-blank line is not '### [YYYY-MM-DD](...)': {line[:80]!r}"
        )
    try:
        event_date = dt.date(int(date_match[1]), int(date_match[2]), int(date_match[3]))
    except ValueError:
        return Rejected(INVALID_DATE, f"not a calendar day: {date_match[1]}-{date_match[2]}-{date_match[3]}")
    if event_date < MIN_DATE or event_date > today + dt.timedelta(days=1):
        return Rejected(DATE_OUT_OF_RANGE, f"{event_date} is before 1900-01-01 or after tomorrow")

    title_at = next((i for i in range(first + 1, len(lines)) if _TITLE_LINE.match(lines[i])), None)
    title = lines[title_at][1:].strip() if title_at is not None else ""
    if title_at is None or not title:
        return Rejected(MISSING_TITLE, "no non-empty '# ' title line after the date")

    body_end = next((i for i in range(title_at + 1, len(lines)) if lines[i].startswith("### ")), len(lines))
    summary = _plain_text(lines[title_at + 1 : body_end])

    identity = event_path_identity(rel_path)
    if identity is not None:
        id_date, slug = identity
    else:
        id_date, slug = event_date, slugify(title)

    sources: list[Source] = []
    relations: list[Relation] = []
    quarantine: list[QuarantinedLine] = []
    cover_image_url: str | None = None
    section: str | None = None
    # Sections may come before the title too (`### Source:` right under the date): their items
    # count like any others. Only the title line and the summary below it are not items.
    for number in chain(range(first + 1, title_at), range(body_end, len(lines))):
        line = lines[number]
        if line.startswith("### "):
            section = _section_name(line)
            continue
        if section is None or not line.strip():
            continue
        if line.startswith("1. "):  # how the archive writes every item: skip the regex
            content = line[3:].strip(" \t")
        else:
            item = _ITEM.match(line)
            if item is None:
                quarantine.append(QuarantinedLine(section, number + 1, line, NOT_A_LIST_ITEM))
                continue
            content = (item[1] or "").rstrip(" \t")
        if section == SECTION_SOURCE:
            source = source_item(content)
            if source is None:
                quarantine.append(QuarantinedLine(section, number + 1, line, BAD_URL))
                continue
            name, url, host = source
            if name.casefold() == "cover image":
                if cover_image_url is None:
                    cover_image_url = url
                else:
                    quarantine.append(QuarantinedLine(section, number + 1, line, EXTRA_COVER_IMAGE))
                continue
            sources.append(Source(len(sources) + 1, name, url, host))
        else:
            related = related_item(content)
            if related is None:
                quarantine.append(QuarantinedLine(section, number + 1, line, BAD_LINK))
                continue
            related_title, related_date, related_slug, contexts = related
            relations.append(
                Relation(
                    len(relations) + 1,
                    make_event_id(related_date, related_slug),
                    related_title,
                    related_date,
                    contexts,
                )
            )

    return ParsedEvent(
        event_id=make_event_id(id_date, slug),
        event_date=event_date,
        title=title,
        summary=summary,
        slug=slug,
        cover_image_url=cover_image_url,
        sources=sources,
        relations=relations,
        quarantine=quarantine,
    )


# One regex for an item as the archive writes it, instead of the link scanner, the URL or
# path check and the context pattern one after another (about a fifth of parsing time).
# Whatever it accepts, the general path (`*_general`) gives the same result; anything else
# goes to the general path (tests/test_parse.py checks both on generated items).
_FAST_SOURCE = re.compile(
    r"\[([^\[\]\\]*+)\]\(([Hh][Tt][Tt][Pp][Ss]?://([A-Za-z0-9.-]++)"
    r"(?:[/?#](?:[^()\s\\]++|\([^()\s\\]*+\))*+)?)\)"
)
_FAST_RELATED = re.compile(
    r"\[([^\[\]\\]*+)\]\(/?news/(\d{4})/(\d{1,2})/(\d{1,2})/([a-z0-9]++(?:-[a-z0-9]++)*+)\.md\)"
    r"(?:[ \t]*[_*]Context:[ \t]*(.*)[_*][ \t]*$)?"
)


def source_item(content: str) -> tuple[str, str, str] | None:
    """(name, url, host) of a Source item's text (after the bullet), None when it is not a
    link to an absolute http(s) URL."""
    fast = _FAST_SOURCE.match(content)
    if fast is not None:
        host = plain_host(fast[3])
        if host is not None:
            return fast[1].strip(), fast[2], host
    return source_item_general(content)


def source_item_general(content: str) -> tuple[str, str, str] | None:
    link = match_link(content) if content.startswith("[") else None
    if link is None:
        return None
    url = link[1].strip()
    host = web_host(url)
    return (link[0].strip(), url, host) if host is not None else None


def related_item(content: str) -> tuple[str, dt.date, str, tuple[str, ...]] | None:
    """(title, date, slug, contexts) of a Related item's text, None when its link is not an
    archive event path."""
    fast = _FAST_RELATED.match(content)
    if fast is not None and fast[5] != "index":
        date = date_or_none(fast[2], fast[3], fast[4])
        if date is not None:
            contexts = _split_contexts(fast[6].rstrip(" \t")) if fast[6] is not None else ()
            return fast[1].strip(), date, fast[5], contexts
    return related_item_general(content)


def related_item_general(content: str) -> tuple[str, dt.date, str, tuple[str, ...]] | None:
    link = match_link(content) if content.startswith("[") else None
    target = related_link_identity(link[1].strip()) if link else None
    if link is None or target is None:
        return None
    context = _CONTEXT.match(content, link[2])
    contexts = _split_contexts(context[1].rstrip(" \t")) if context else ()
    return link[0].strip(), target[0], target[1], contexts


def _section_name(heading: str) -> str | None:
    """`### Source:` / `### Sources:` / `### Related:` (any case, colon optional); others None."""
    name = heading[4:].strip().rstrip(":").strip().casefold()
    if name in ("source", "sources"):
        return SECTION_SOURCE
    if name == "related":
        return SECTION_RELATED
    return None


# A piece of a context list that cannot stand alone as a context name: digits only
# (`French presidential election, 2017`) or an abbreviation of at most 5 characters ending in
# `.` (`Washington, D.C.`, `Greenville, SC.`). It is joined back onto the piece before it.
_CONTEXT_TAIL = re.compile(r"\d+|.{0,4}\.")


def _split_contexts(text: str) -> tuple[str, ...]:
    """Contexts split on `, ` and trimmed; a tail piece (`2017`, `D.C.`) rejoins the piece before
    it with `, ` (contract, section 1: context names are Wikipedia-style titles)."""
    names: list[str] = []
    for piece in text.split(", "):
        piece = piece.strip()
        if not piece:
            continue
        if names and _CONTEXT_TAIL.fullmatch(piece):
            names[-1] = f"{names[-1]}, {piece}"
        else:
            names.append(piece)
    return tuple(names)


def _plain_text(lines: list[str]) -> str:
    """Links become their text, whitespace in a paragraph collapses, paragraphs join by a blank line."""
    paragraphs: list[str] = []
    current: list[str] = []
    for line in lines:
        if line.strip():
            current.append(line)
        elif current:
            paragraphs.append(" ".join(strip_links(" ".join(current)).split()))
            current = []
    if current:
        paragraphs.append(" ".join(strip_links(" ".join(current)).split()))
    return "\n\n".join(p for p in paragraphs if p)
