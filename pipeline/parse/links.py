"""Markdown inline links `[text](target)` with balanced brackets and parentheses.

The archive's link texts may contain `[...]` and its URLs `(...)`
(`https://en.wikipedia.org/wiki/Battle_of_Mosul_(2016–2017)`). A regex handles
the common flat case; a small scanner handles nesting of any depth without
recursion, so hostile input (thousands of nested brackets) cannot blow the stack.
"""

from __future__ import annotations

import re

# Flat text, target with at most one level of parentheses: the overwhelmingly common case.
# Possessive quantifiers (the alternatives never overlap, so nothing is lost by not giving
# characters back) make it about 4x faster than one alternation per character.
_FAST_LINK = re.compile(r"\[([^\[\]\\]*+)\]\(((?:[^()\s\\]++|\([^()\s\\]*+\))*+)\)")
# In running text `![alt](src)` is an image; its text is the alt text.
_FAST_LINK_OR_IMAGE = re.compile("!?" + _FAST_LINK.pattern)


def match_link(text: str, pos: int = 0) -> tuple[str, str, int] | None:
    """Parse a link starting exactly at `text[pos] == '['`: (link text, target, end index)."""
    fast = _FAST_LINK.match(text, pos)
    if fast is not None:
        return fast[1], fast[2], fast.end()
    if pos >= len(text) or text[pos] != "[":
        return None
    close_bracket = _pairs(text, "[", "]").get(pos, -1)
    if close_bracket < 0 or close_bracket + 1 >= len(text) or text[close_bracket + 1] != "(":
        return None
    close_paren = _pairs(text, "(", ")").get(close_bracket + 1, -1)
    if close_paren < 0:
        return None
    return text[pos + 1 : close_bracket], text[close_bracket + 2 : close_paren], close_paren + 1


_DELIMITERS = {
    ("[", "]"): re.compile(r"\\.|[\[\]]", re.S),
    ("(", ")"): re.compile(r"\\.|[()]", re.S),
}


def _pairs(text: str, open_ch: str, close_ch: str) -> dict[int, int]:
    """Index of each opening delimiter -> its closing one, in one pass (escapes honoured).
    The scan jumps from delimiter to delimiter (a regex finds them) instead of looking at
    every character in Python."""
    pairs: dict[int, int] = {}
    stack: list[int] = []
    for match in _DELIMITERS[(open_ch, close_ch)].finditer(text):
        ch = match[0]
        if ch == open_ch:
            stack.append(match.start())
        elif ch == close_ch and stack:
            pairs[stack.pop()] = match.start()
    return pairs


def strip_links(text: str) -> str:
    """Replace every inline link (and image) `[text](url)` by its text, in linear time."""
    if "](" not in text:
        return text
    text = _FAST_LINK_OR_IMAGE.sub(_link_text, text)
    if "](" not in text:
        return text
    # Nested brackets or parentheses: match delimiters once, then walk the text.
    brackets, parens = _pairs(text, "[", "]"), _pairs(text, "(", ")")
    out: list[str] = []
    i = 0
    for j in sorted(brackets):
        if j < i:
            continue
        close = brackets[j]
        if close + 1 < len(text) and text[close + 1] == "(" and close + 1 in parens:
            prefix = text[i:j]
            out.append(prefix[:-1] if prefix.endswith("!") else prefix)
            out.append(text[j + 1 : close])
            i = parens[close + 1] + 1
    out.append(text[i:])
    return "".join(out)


def _link_text(match: re.Match[str]) -> str:
    return match[1]
