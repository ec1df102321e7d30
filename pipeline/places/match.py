"""The countries a text mentions (contract section 5), by longest match over words.

Names are matched case-sensitively (proper nouns), longest phrase first, so "New Mexico"
is the US and "Papua New Guinea" is not Guinea, and a phrase that names no country
("Islamic State of Iraq", "Bank of America") consumes its words. Then the few rules the
rule needs: "Georgia" is the US state when the text has US cues; a name that is also a
first name or surname ("Jordan", "Chad") does not count beside another capitalised word
that is not a place ("Michael Jordan"); a demonym used as a language ("in French") does
not count.

Two scans give the same answer: `_scan_words` splits the whole text into words and is the
plain statement of the rule; `_scan` visits only the words that begin like a name's first
word (`starts_pattern`'s regex) and splits just the words a match needs around them: 16%
less time on titles and summaries (issue 24's cost target). Compiling that regex takes
0.4-0.5 s, which pays off over tens of thousands of texts: a parse worker compiles it, a
batch of a few files staged in the run's own process (a watcher's, a small incremental
run's) takes `_scan_words` unless it is compiled already. tests/places/test_match.py
holds the two equal."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from itertools import islice

from pipeline.places.gazetteer import TOKEN, Gazetteer, gazetteer, starts_pattern, tokens

Found = tuple[str, str]  # (country code, the text matched)

# A capital right after an abbreviation ("U.S.Army"): TOKEN starts a word there that the
# starts pattern cannot tell from the inside of a word; such rare texts take `_scan_words`.
# (Spelled from its literal period so the engine can skip ahead to periods.)
ABBREVIATION_THEN_WORD = re.compile(r"\.[A-Z]\.\w")
BEFORE = 80  # characters looked back for the word before a match


def mentions(text: str) -> list[Found]:
    """Every country the text mentions, in order of first mention, with the words matched."""
    if not text:
        return []
    return list(_mentions(text))


class _Around:
    """The words around a match, split only when a rule asks for them."""

    __slots__ = ("text", "start", "end", "following")

    def __init__(self, text: str, start: int, end: int, following: list[str] | None) -> None:
        self.text, self.start, self.end, self.following = text, start, end, following

    def before(self) -> str:
        """The last word in the BEFORE characters before the match. A word holds no
        whitespace, so splitting starts afresh after a space: the words after the last
        space are the window's last words, and most matches ("in Fallujah") need only
        those few characters split rather than all eighty."""
        low = max(0, self.start - BEFORE)
        space = self.text.rfind(" ", low, self.start - 1) if self.start > 1 else -1
        if space >= 0:
            words = TOKEN.findall(self.text, space + 1, self.start)
            if words:
                return words[-1]
        words = TOKEN.findall(self.text, low, self.start)
        return words[-1] if words else ""

    def after(self) -> str:
        if self.following is not None:
            return self.following[0] if self.following else ""
        word = TOKEN.search(self.text, self.end)
        return word.group() if word else ""

    def words(self) -> list[str]:
        return tokens(self.text)


@lru_cache(maxsize=1)
def _starts() -> re.Pattern[str]:
    """The words of a text that may start a name (`starts_pattern`), compiled on first use."""
    g = gazetteer()
    return starts_pattern(g.first, g.follows)


def _scan(text: str) -> tuple[Found, ...]:
    g = gazetteer()
    if ABBREVIATION_THEN_WORD.search(text):
        return _scan_words(text)
    first, names, follows, conditional, plain = g.first, g.names, g.follows, g.conditional, g.plain
    found: dict[str, str] = {}
    consumed = 0
    for m in _starts().finditer(text):
        if m.start() < consumed:
            continue
        word = m.group()
        code = plain.get(word)
        if code is not None:  # a one-word name, nothing to decide (it consumes only itself)
            if code not in found:
                found[code] = word
            continue
        start = m.start()
        lengths = first.get(word)
        if not lengths:
            head, _, tail = word.partition("-")  # "British-flagged", "Greek-owned", "US-led"
            if tail and tail not in g.language_cues and names.get(head):
                code = _decide(g, head, names[head], _Around(text, start, m.end(), None))
                if code is not None and code not in found:
                    found[code] = head
            continue
        # The words after this one, as many as its longest name needs, if the next one can
        # continue a name at all ("New" + "Zealand"; most words start one-word names only).
        spans = [(word, m.end())]
        if lengths[0] > 1:
            after = TOKEN.search(text, m.end())
            if after is not None and after.group() in follows[word]:
                spans.append((after.group(), after.end()))
                if lengths[0] > 2:
                    spans += [
                        (w.group(), w.end())
                        for w in islice(TOKEN.finditer(text, after.end()), lengths[0] - 2)
                    ]
        for length in lengths:
            if length > len(spans):
                continue
            phrase = " ".join(w for w, _ in spans[:length]) if length > 1 else word
            if phrase in names:
                code = names[phrase]
                end = spans[length - 1][1]
                if code is not None and phrase in conditional:
                    code = _decide(g, phrase, code, _Around(text, start, end, None))
                if code is not None and code not in found:
                    found[code] = phrase
                consumed = end
                break
    return tuple(found.items())


def _scan_words(text: str) -> tuple[Found, ...]:
    """The same answer as `_scan`, from every word of the text."""
    g = gazetteer()
    words = tokens(text)
    spans = [(m.start(), m.end()) for m in TOKEN.finditer(text)]
    first = g.first
    found: dict[str, str] = {}
    consumed = 0
    for i, w in enumerate(words):
        if i < consumed or not (w in first or "-" in w):
            continue
        lengths = first.get(w)
        if not lengths:
            head, _, tail = w.partition("-")
            if tail and tail not in g.language_cues and g.names.get(head):
                around = _Around(text, *spans[i], None)
                code = _decide(g, head, g.names[head], around)
                if code is not None and code not in found:
                    found[code] = head
            continue
        for length in lengths:
            if length > len(words) - i:
                continue
            phrase = " ".join(words[i : i + length])
            if phrase in g.names:
                around = _Around(text, spans[i][0], spans[i + length - 1][1], words[i + length :])
                code = _decide(g, phrase, g.names[phrase], around)
                if code is not None and code not in found:
                    found[code] = phrase
                consumed = i + length
                break
    return tuple(found.items())


# Contexts repeat (about 8,800 distinct ones over 110,000 events): their mentions are cached.
# Titles and summaries are nearly all distinct: caching them only cost time.
_mentions = lru_cache(maxsize=50_000)(_scan)
_mentions_words = lru_cache(maxsize=50_000)(_scan_words)  # the same answers


def _decide(g: Gazetteer, phrase: str, code: str | None, around: _Around) -> str | None:
    if code is None:
        return None
    rule = g.ambiguous.get(phrase)
    if rule:
        text = around.text
        if rule.get("cues_skip") and _any_of(phrase, "cues_skip").search(text):
            return None
        if (
            rule.get("cues")
            and _any_of(phrase, "cues").search(text)
            and any(_has_word(around, cue) for cue in rule["cues"])
        ):
            return str(rule["alternative"])
        if rule.get("person") and _beside_a_name(g, around):
            return None
    if phrase in g.demonyms and _as_language(g, around):
        return None
    if g.kinds.get(phrase) == "city" and _beside_a_name(g, around):
        return None  # "Vladimir Putin", "Meng Wanzhou": a person, not the city
    return code


@lru_cache(maxsize=64)
def _any_of(phrase: str, kind: str) -> re.Pattern[str]:
    """One regex for a rule's cues (Georgia has 27): one pass over a text that has none."""
    cues = sorted(gazetteer().ambiguous[phrase][kind], key=len, reverse=True)
    return re.compile("|".join(map(re.escape, cues)))


def _has_word(around: _Around, cue: str) -> bool:
    """`cue` as whole words of the text."""
    if cue not in around.text:
        return False
    words = around.words()
    size = cue.count(" ") + 1
    return any(" ".join(words[k : k + size]) == cue for k in range(len(words)))


def _beside_a_name(g: Gazetteer, around: _Around) -> bool:
    """A capitalised word right before or after that is not a place (nor a word like "Airport"
    or "Oblast" that follows a place): a person's name."""
    return any(
        w[:1].isupper() and w not in g.names and w not in _CONNECTORS and w not in g.geographic_nouns
        for w in (around.before(), around.after())
        if w
    )


_CONNECTORS = frozenset(
    {"The", "In", "On", "At", "From", "To", "And", "Of", "For", "With", "By", "King", "Queen"}
)


def _as_language(g: Gazetteer, around: _Around) -> bool:
    return around.before() in g.language_cues or around.after() in g.language_cues


def event_places(
    title: str, summary: str | None, contexts: Iterable[str], few: bool = False
) -> list[tuple[str, str, str]]:
    """(country code, where, matched) for each country an event mentions: its title, its
    summary or a context of its own Related items; the first place found is the evidence.
    `few`: one of a few events, not worth compiling `_scan`'s regex for (the same answer)."""
    quick = few and _starts.cache_info().currsize == 0
    scan, context_scan = (_scan_words, _mentions_words) if quick else (_scan, _mentions)
    seen = {code: ("title", matched) for code, matched in scan(title)} if title else {}
    if summary:
        for code, matched in scan(summary):
            if code not in seen:
                seen[code] = ("summary", matched)
    for context in contexts:
        if context:
            for code, matched in context_scan(context):  # contexts repeat: cached
                if code not in seen:
                    seen[code] = ("context", matched)
    return [(code, where, matched) for code, (where, matched) in seen.items()]
