"""Identity rules of the data contract (section 2): slugs, event ids, archive paths, tag ids.

Everything that decides *which row is which* lives here, so the parser, the
generator and the tests share one definition.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from functools import lru_cache

SLUG_TITLE_CHARS = 140
EMPTY_SLUG_HEX = 12

_NON_SLUG = re.compile(r"[^a-z0-9]+")
_SLUG_SHAPE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
# `news/YYYY/M/D/<slug>.md` anywhere at the end of a path; month and day may be padded or not.
_ARCHIVE_PATH = re.compile(r"(?:^|/)news/(\d{4})/(\d{1,2})/(\d{1,2})/([^/]+)\.md$")
# A related link: `/news/YYYY/M/D/<slug>.md` (the leading slash is optional).
_ARCHIVE_LINK = re.compile(r"^/?news/(\d{4})/(\d{1,2})/(\d{1,2})/([^/]+)\.md$")


def slugify(title: str) -> str:
    """Slug rule: first 140 characters, lowercase, non-[a-z0-9] runs to '-', strip '-'.

    A title with no Latin letter or digit would give an empty slug, so that every Russian,
    Japanese or Arabic title of a day shared one event id: its slug is `x` and the first 12
    hex digits of SHA-256 of the trimmed title instead (contract, section 2)."""
    slug = _NON_SLUG.sub("-", title[:SLUG_TITLE_CHARS].lower()).strip("-")
    if slug:
        return slug
    return "x" + hashlib.sha256(title.strip().encode("utf-8")).hexdigest()[:EMPTY_SLUG_HEX]


def is_slug(text: str) -> bool:
    """True when `text` could have been produced by the slug rule (and is not empty)."""
    return _SLUG_SHAPE.match(text) is not None


def make_event_id(date: dt.date, slug: str) -> str:
    return f"{_iso(date)}/{slug}"


@lru_cache(maxsize=65536)
def _iso(date: dt.date) -> str:
    return date.isoformat()


@lru_cache(maxsize=65536)  # dates repeat across related links; building one costs more than a lookup
def date_or_none(year: str, month: str, day: str) -> dt.date | None:
    try:
        return dt.date(int(year), int(month), int(day))
    except ValueError:
        return None


def _dated_slug(match: re.Match[str] | None) -> tuple[dt.date, str] | None:
    if match is None:
        return None
    date = date_or_none(match[1], match[2], match[3])
    slug = match[4]
    if date is None or slug == "index" or not is_slug(slug):
        return None
    return date, slug


def event_path_identity(rel_path: str) -> tuple[dt.date, str] | None:
    """(date, slug) when a file's relative path ends in `news/YYYY/MM/D/<slug>.md`, else None.

    A path whose date is not a calendar day or whose file name is not a slug does
    not carry an identity; the caller then derives it from the document.
    """
    return _dated_slug(_ARCHIVE_PATH.search(rel_path))


def related_link_identity(link: str) -> tuple[dt.date, str] | None:
    """(date, slug) of a related link `/news/YYYY/M/D/<slug>.md`, or None when it is not one."""
    return _dated_slug(_ARCHIVE_LINK.match(link))


def tag_key(context: str) -> str:
    """Tag identity: Unicode casefolding plus whitespace collapsed to single spaces."""
    return " ".join(context.casefold().split())


def tag_id(key: str) -> str:
    """Stable id derived from the normalized name only (64 bits of SHA-256, hex)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
