"""The countries a text mentions (contract section 5), by longest match over words.

Names are matched case-sensitively (proper nouns), longest phrase first, so "New Mexico"
is the US and "Papua New Guinea" is not Guinea, and a phrase that names no country
("Islamic State of Iraq", "Bank of America") consumes its words. Then the few rules the
rule needs: "Georgia" is the US state when the text has US cues; a name that is also a
first name or surname ("Jordan", "Chad") does not count beside another capitalised word
that is not a place ("Michael Jordan"); a demonym used as a language ("in French") does
not count."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache

from pipeline.places.gazetteer import Gazetteer, gazetteer, tokens

Found = tuple[str, str]  # (country code, the text matched)
ORDER = ("title", "summary", "context")  # where evidence is looked for first


def mentions(text: str) -> list[Found]:
    """Every country the text mentions, in order of first mention, with the words matched."""
    if not text:
        return []
    return list(_mentions(text))


def _scan(text: str) -> tuple[Found, ...]:
    g = gazetteer()
    words = tokens(text)
    first = g.first
    # Only words that start a known phrase, or hyphenated ones, are looked at (a list
    # comprehension: most words are neither, and this runs for a million titles).
    starts = [k for k, w in enumerate(words) if w in first or "-" in w]
    found: dict[str, str] = {}
    consumed = 0
    for i in starts:
        if i < consumed:
            continue
        lengths = first.get(words[i])
        if not lengths:
            head, _, tail = words[i].partition("-")  # "British-flagged", "Greek-owned", "US-led"
            if tail and tail not in g.language_cues and g.names.get(head):
                code = _decide(g, head, g.names[head], words, i, 1, text)
                if code is not None and code not in found:
                    found[code] = head
            continue
        for length in lengths:
            if length > len(words) - i:
                continue
            phrase = " ".join(words[i : i + length]) if length > 1 else words[i]
            if phrase in g.names:
                code = _decide(g, phrase, g.names[phrase], words, i, length, text)
                if code is not None and code not in found:
                    found[code] = phrase
                consumed = i + length
                break
    return tuple(found.items())


# Contexts repeat (about 8,800 distinct ones over 110,000 events): their mentions are cached.
# Titles and summaries are nearly all distinct: caching them only cost time.
_mentions = lru_cache(maxsize=50_000)(_scan)


def _decide(
    g: Gazetteer, phrase: str, code: str | None, words: Sequence[str], i: int, length: int, text: str
) -> str | None:
    if code is None:
        return None
    rule = g.ambiguous.get(phrase)
    if rule:
        if any(cue in text for cue in rule.get("cues_skip", ())):
            return None
        if rule.get("cues") and any(_has_word(words, text, cue) for cue in rule["cues"]):
            return str(rule["alternative"])
        if rule.get("person") and _beside_a_name(g, words, i, length):
            return None
    if phrase in g.demonyms and _as_language(g, words, i, length):
        return None
    if g.kinds.get(phrase) == "city" and _beside_a_name(g, words, i, length):
        return None  # "Vladimir Putin", "Meng Wanzhou": a person, not the city
    return code


def _has_word(words: Sequence[str], text: str, cue: str) -> bool:
    """`cue` as whole words of `text` (already split into `words`)."""
    if cue not in text:
        return False
    size = cue.count(" ") + 1
    return any(" ".join(words[k : k + size]) == cue for k in range(len(words)))


def _beside_a_name(g: Gazetteer, words: Sequence[str], i: int, length: int) -> bool:
    """A capitalised word right before or after that is not a place: a person's name."""
    before = words[i - 1] if i > 0 else ""
    after = words[i + length] if i + length < len(words) else ""
    return any(
        w[:1].isupper() and w not in g.names and w not in _CONNECTORS for w in (before, after) if w
    ) and (i > 0 or bool(after))


_CONNECTORS = frozenset(
    {"The", "In", "On", "At", "From", "To", "And", "Of", "For", "With", "By", "King", "Queen"}
)


def _as_language(g: Gazetteer, words: Sequence[str], i: int, length: int) -> bool:
    before = words[i - 1] if i > 0 else ""
    after = words[i + length] if i + length < len(words) else ""
    return before in g.language_cues or after in g.language_cues


def event_places(title: str, summary: str | None, contexts: Iterable[str]) -> list[tuple[str, str, str]]:
    """(country code, where, matched) for each country an event mentions: its title, its
    summary or a context of its own Related items; the first place found is the evidence."""
    seen: dict[str, tuple[str, str]] = {}
    for where, texts, scan in (
        ("title", [title], _scan),
        ("summary", [summary or ""], _scan),
        ("context", contexts, _mentions),
    ):
        for text in texts:
            if text:
                for code, matched in scan(text):
                    if code not in seen:
                        seen[code] = (where, matched)
    return [(code, where, matched) for code, (where, matched) in seen.items()]
