"""The baseline for the parser benchmark: a straightforward markdown-it-py parser of the format.

This is how one would write the parser with a Markdown library: tokenize the
document with CommonMark rules, then walk the tokens (date heading, title,
summary paragraphs, Source and Related lists). It extracts the same fields as
`pipeline.parse.document.parse_document` for well-formed documents (checked on a sample
by the benchmark) but none of its reject and quarantine rules, so it is, if
anything, flattered by the comparison.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from markdown_it import MarkdownIt

_MD = MarkdownIt("commonmark")
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_CONTEXT = re.compile(r"_Context:\s*(.*?)_\s*$")


@dataclass
class BaselineEvent:
    date: dt.date | None = None
    title: str = ""
    summary: str = ""
    sources: list[tuple[str, str]] = field(default_factory=list)
    cover_image_url: str | None = None
    related: list[tuple[str, str, list[str]]] = field(default_factory=list)


def _inline_text(token) -> str:
    """Plain text of an inline token: link text kept, markup dropped."""
    parts = []
    for child in token.children or []:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
    return " ".join("".join(parts).split())


def _first_link(token) -> tuple[str, str] | None:
    children = token.children or []
    for i, child in enumerate(children):
        if child.type == "link_open":
            text = []
            for inner in children[i + 1 :]:
                if inner.type == "link_close":
                    break
                if inner.type == "text":
                    text.append(inner.content)
            return "".join(text), child.attrs.get("href", "")
    return None


def parse_baseline(data: bytes) -> BaselineEvent:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:  # rejected (`encoding`)
        return BaselineEvent()
    tokens = _MD.parse(text)
    event = BaselineEvent()
    section = "head"
    paragraphs: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.type == "heading_open":
            inline = tokens[i + 1]
            if tok.tag == "h3":
                if event.date is None and section == "head":
                    match = _DATE.search(inline.content)
                    if match:
                        try:
                            event.date = dt.date(int(match[1]), int(match[2]), int(match[3]))
                        except ValueError:  # not a calendar day: the document is rejected
                            event.date = None
                    section = "date"
                else:
                    name = inline.content.strip().rstrip(":").lower()
                    section = {"source": "sources", "sources": "sources", "related": "related"}.get(
                        name, "other"
                    )
            elif tok.tag == "h1" and not event.title:
                event.title = inline.content.strip()
                section = "summary"
            i += 3
            continue
        if tok.type == "inline":
            if section == "summary":
                paragraphs.append(_inline_text(tok))
            elif section in ("sources", "related"):
                link = _first_link(tok)
                if link is not None:
                    name, url = link
                    if section == "sources":
                        if name.strip().lower() == "cover image":
                            event.cover_image_url = url
                        else:
                            event.sources.append((name, url))
                    else:
                        match = _CONTEXT.search(tok.content)
                        contexts = [c.strip() for c in match[1].split(", ")] if match else []
                        event.related.append((name, url, contexts))
        i += 1
    event.summary = "\n\n".join(p for p in paragraphs if p)
    return event
