"""One or more tests per parsing rule of the contract (section 1)."""

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.parse.document import ParsedEvent, Rejected, parse_document
from tests.conftest import TODAY, event_doc

PATH = "news/2014/06/21/something-happens-somewhere.md"


def parse(text: str | bytes, path: str = PATH, today: dt.date = TODAY) -> ParsedEvent | Rejected:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return parse_document(data, path, today)


def ok(text: str | bytes, path: str = PATH) -> ParsedEvent:
    result = parse(text, path)
    assert isinstance(result, ParsedEvent), result
    return result


def reason(text: str | bytes) -> str:
    result = parse(text)
    assert isinstance(result, Rejected), result
    return result.reason


# --- encoding and line endings -----------------------------------------------------------------
def test_bom_is_ignored():
    assert ok(b"\xef\xbb\xbf" + event_doc().encode()).title == "Something happens somewhere"


@pytest.mark.parametrize("newline", ["\r\n", "\r"])
def test_crlf_and_cr_line_endings_parse_like_lf(newline):
    doc = event_doc(summary="One\ntwo.", related=("1. [T](/news/2014/06/20/t.md) _Context: A, B_",))
    assert ok(doc.replace("\n", newline)) == ok(doc)


def test_invalid_utf8_is_rejected_as_encoding():
    assert reason(event_doc().encode() + b"\xff\xfe") == "encoding"
    assert reason("# Café".encode("latin-1")) == "encoding"


@pytest.mark.parametrize("text", ["", "   \n\n  \t\n", "\ufeff"])
def test_empty_files_are_rejected(text):
    assert reason(text) == "empty"


# --- date ----------------------------------------------------------------------------------------
def test_missing_date_line():
    assert reason("# Title only\n\nText\n") == "missing_date"
    assert reason("Some preamble\n### [2014-06-21](/x)\n# T\n") == "missing_date"


@pytest.mark.parametrize(
    "line", ["### [2014-06-21](/x) Iraq", "### [2014-06-21] (/x)", "### [2014-06-21]: x"]
)
def test_a_date_followed_by_more_than_a_link_is_not_a_date_line(line):
    result = parse(line + "\n# T\n")
    assert isinstance(result, Rejected) and result.reason == "missing_date", result
    assert line in result.detail


def test_date_line_may_follow_blank_lines():
    assert ok("\n\n   \n" + event_doc()).event_date == dt.date(2014, 6, 21)


@pytest.mark.parametrize("date", ["2015-02-30", "2015-13-01", "2015-2-3", "2015-00-10"])
def test_invalid_dates(date):
    assert reason(event_doc(date=date)) == "invalid_date"


@pytest.mark.parametrize("date", ["1899-12-31", "0001-01-01", "2026-11-26", "2999-01-01"])
def test_dates_out_of_range(date):
    assert reason(event_doc(date=date)) == "date_out_of_range"


@pytest.mark.parametrize("date", ["1900-01-01", "2026-11-24", "2026-11-25"])
def test_dates_in_range_include_tomorrow(date):
    assert ok(event_doc(date=date)).event_date == dt.date.fromisoformat(date)


# --- title ---------------------------------------------------------------------------------------
def test_title_is_trimmed():
    assert ok(event_doc(title="  Spaced title.  ")).title == "Spaced title."


@pytest.mark.parametrize(
    "doc",
    [
        "### [2014-06-21](/x)\n\nNo title\n",
        "### [2014-06-21](/x)\n\n#   \n\nText\n",
        "### [2014-06-21](/x)\n\n## Not a level-1 title\n",
    ],
)
def test_missing_or_empty_title(doc):
    assert reason(doc) == "missing_title"


# --- summary -------------------------------------------------------------------------------------
def test_summary_is_plain_text():
    summary = (
        "Fighters [led by](https://x.org/a_(b)) ISIL\ncapture   more\tterritory.\n\n\n"
        "Second [paragraph [with] brackets](https://y.org) here.\n"
    )
    assert ok(event_doc(summary=summary)).summary == (
        "Fighters led by ISIL capture more territory.\n\nSecond paragraph [with] brackets here."
    )


def test_summary_may_be_empty():
    assert ok(event_doc(summary="")).summary == ""


# --- sources -------------------------------------------------------------------------------------
def test_sources_positions_number_accepted_items_without_gaps():
    ev = ok(
        event_doc(
            sources=(
                "1. [A](https://a.com/1)",
                "1. [Bad](javascript:alert(1))",
                "1. [Cover Image](https://img.com/c.jpg)",
                "- [B](HTTP://B.COM/2)",
                "* [C](https://en.wikipedia.org/wiki/Battle_of_Mosul_(2016–2017))",
            )
        )
    )
    assert [(s.position, s.name, s.url) for s in ev.sources] == [
        (1, "A", "https://a.com/1"),
        (2, "B", "HTTP://B.COM/2"),
        (3, "C", "https://en.wikipedia.org/wiki/Battle_of_Mosul_(2016–2017)"),
    ]
    assert ev.cover_image_url == "https://img.com/c.jpg"
    assert [(q.section, q.raw, q.reason) for q in ev.quarantine] == [
        ("source", "1. [Bad](javascript:alert(1))", "bad_url")
    ]


def test_sources_heading_variant_and_cover_image_any_case():
    doc = event_doc(sources=("1. [COVER IMAGE](https://img.com/c.jpg)", "1. [A](https://a.com)"))
    ev = ok(doc.replace("### Source:", "### Sources:"))
    assert ev.cover_image_url == "https://img.com/c.jpg"
    assert [s.url for s in ev.sources] == ["https://a.com"]


@pytest.mark.parametrize(
    "item",
    [
        "1. [Wiki](/wiki/x)",
        "1. [Mail](mailto:a@b.c)",
        "1. [FTP](ftp://a.com/x)",
        "1. No link at all",
        "1. [Empty]()",
        "1. [Spaces](https://a.com/x y)",
        "1. [Host-less](https://)",
        "1.",
        "1. [Unclosed](https://a.com/x",
    ],
)
def test_bad_source_urls_are_quarantined_and_the_event_kept(item):
    ev = ok(event_doc(sources=(item, "1. [A](https://a.com)")))
    assert [s.name for s in ev.sources] == ["A"]
    assert [(q.raw, q.reason) for q in ev.quarantine] == [(item, "bad_url")]


def test_second_cover_image_is_quarantined():
    ev = ok(
        event_doc(sources=("1. [Cover Image](https://a.com/1.jpg)", "1. [Cover Image](https://a.com/2.jpg)"))
    )
    assert ev.cover_image_url == "https://a.com/1.jpg"
    assert [q.reason for q in ev.quarantine] == ["extra_cover_image"]


def test_stray_text_in_a_list_section_is_quarantined():
    ev = ok(event_doc(sources=("1. [A](https://a.com)", "some stray text")))
    assert [(q.raw, q.reason) for q in ev.quarantine] == [("some stray text", "not_a_list_item")]


# --- related -------------------------------------------------------------------------------------
def test_related_items_with_contexts_and_brackets():
    ev = ok(
        event_doc(
            related=(
                "1. [Strike on [Al Qaim] kills two. ](/news/2017/04/1/strike-on-al-qaim-kills-two.md) _Context: Al Qaim,  Islamic State_",
                "2. [No context](/news/2014/08/03/no-context.md)",
                "3. [Outside](https://example.org/news/2014/08/3/x.md) _Context: X_",
                "4. [Traversal](/news/2014/08/3/../../x.md)",
            )
        )
    )
    assert [
        (r.position, r.related_event_id, r.related_title, r.related_date, r.contexts) for r in ev.relations
    ] == [
        (
            1,
            "2017-04-01/strike-on-al-qaim-kills-two",
            "Strike on [Al Qaim] kills two.",
            dt.date(2017, 4, 1),
            ("Al Qaim", "Islamic State"),
        ),
        (2, "2014-08-03/no-context", "No context", dt.date(2014, 8, 3), ()),
    ]
    assert [q.reason for q in ev.quarantine] == ["bad_link", "bad_link"]
    assert ev.quarantine[0].line_number < ev.quarantine[1].line_number


def test_contexts_split_only_on_comma_space():
    ev = ok(event_doc(related=("1. [T](/news/2014/08/3/t.md) _Context: Washington,D.C., ,  Iraq _",)))
    assert ev.relations[0].contexts == ("Washington,D.C.", "Iraq")


def test_unknown_sections_are_ignored():
    doc = event_doc() + "\n### Notes:\n\n1. [x](javascript:1)\nfree text\n"
    ev = ok(doc)
    assert ev.quarantine == [] and len(ev.sources) == 1


def test_sections_before_the_title_keep_their_items():
    doc = "\n".join(
        [
            "### [2014-06-21](/news/2014/06/21/index.md)",
            "### Source:",
            "1. [A](https://a.com/1)",
            "1. [Cover Image](https://a.com/c.jpg)",
            "### Related:",
            "1. [R](/news/2014/06/1/r.md) _Context: X_",
            "1. [Bad](javascript:1)",
            "# The title",
            "The summary.",
            "### Source:",
            "1. [B](https://b.com/2)",
        ]
    )
    ev = ok(doc)
    assert (ev.title, ev.summary) == ("The title", "The summary.")
    assert [(s.position, s.name) for s in ev.sources] == [(1, "A"), (2, "B")]
    assert ev.cover_image_url == "https://a.com/c.jpg"
    assert [(r.related_event_id, r.contexts) for r in ev.relations] == [("2014-06-01/r", ("X",))]
    assert [(q.section, q.line_number, q.reason) for q in ev.quarantine] == [("related", 7, "bad_link")]


_item_lines = st.sampled_from(
    [
        "1. [A](https://a.com/x)",
        "1. [Cover Image](https://a.com/c.jpg)",
        "- [R](/news/2014/06/1/r.md) _Context: X, Y_",
        "1. [Bad](javascript:1)",
        "1. [R](/news/2014/06/31/bad-day.md)",
        "stray text",
        "2) [B](http://b.org)",
    ]
)
_blocks = st.lists(
    st.tuples(
        st.sampled_from(["### Source:", "### Sources:", "### Related:"]), st.lists(_item_lines, max_size=4)
    ),
    max_size=4,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(before=_blocks, after=_blocks, summary=st.sampled_from(["", "Text [x](http://y.z).", "a\n\nb"]))
def test_every_item_of_a_list_section_is_accounted_for(before, after, summary):
    """Nothing lost: each non-blank line of a Source or Related section, before or after the
    title, is a source, a relation, the cover image or a quarantine row."""
    lines = ["### [2014-06-21](/x)", ""]
    for heading, items in before:
        lines += [heading, "", *items, ""]
    lines += ["# Title", "", summary, ""]
    for heading, items in after:
        lines += [heading, "", *items, ""]
    ev = ok("\n".join(lines))
    items = sum(len(items) for _, items in before + after)
    cover = ev.cover_image_url is not None
    assert len(ev.sources) + len(ev.relations) + cover + len(ev.quarantine) == items
    assert len({q.line_number for q in ev.quarantine}) == len(ev.quarantine)


# --- identity ------------------------------------------------------------------------------------
def test_event_id_from_archive_path():
    ev = ok(event_doc(title="Another title entirely"), path="news/2014/06/21/the-file-slug.md")
    assert ev.event_id == "2014-06-21/the-file-slug" and ev.slug == "the-file-slug"


def test_event_id_from_date_and_title_elsewhere():
    ev = ok(event_doc(title="Quake strikes [Hatay], Türkiye."), path="inbox/anything.md")
    assert ev.event_id == "2014-06-21/quake-strikes-hatay-t-rkiye"


# --- robustness ----------------------------------------------------------------------------------
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_parser_never_raises_on_arbitrary_bytes(data):
    assert isinstance(parse_document(data, PATH, TODAY), ParsedEvent | Rejected)


_md = st.sampled_from(
    [
        "### ",
        "# ",
        "[",
        "]",
        "(",
        ")",
        "1. ",
        "- ",
        "_Context: ",
        ", ",
        "\n",
        "\r\n",
        "### [2014-06-21](/x)\n",
        "### Source:\n",
        "### Related:\n",
        "/news/2014/06/1/a.md",
        "https://a.com",
        "javascript:",
        "\ufeff",
        "é",
        " ",
        "\\",
    ]
)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(_md, st.text(max_size=8)), max_size=60).map("".join))
def test_parser_never_raises_on_markdown_like_text(text):
    result = parse(text)
    assert isinstance(result, ParsedEvent | Rejected)
    if isinstance(result, ParsedEvent):
        assert [s.position for s in result.sources] == list(range(1, len(result.sources) + 1))
        assert [r.position for r in result.relations] == list(range(1, len(result.relations) + 1))


# --- the one-regex fast paths for items agree with the general path ------------------------------
_link_texts = st.one_of(
    st.sampled_from(["BBC", " BBC ", "A [nested] title", "", "t\\]x", "é", "Cover Image"]),
    st.text(max_size=6),
)
_targets = st.one_of(
    st.sampled_from(
        [
            "https://www.bbc.co.uk/news/a_(b)_c",
            "HTTP://WWW.Example.COM",
            "http://www.",
            "http://www.x",
            "https://x.com?q=1#f",
            "https:///nohost",
            "https://a b",
            "javascript:alert(1)",
            "/news/2014/08/3/a-b.md",
            "news/2014/8/03/x1.md",
            "/news/2014/02/30/bad-date.md",
            "/news/2014/08/3/index.md",
            "/news/2014/08/3/Upper.md",
            "/news/2014/08/3/a--b.md",
            "/news/٢٠١٤/08/3/digits.md",
            "/news/2014/08/3/a.md(x)",
            " /news/2014/08/3/a.md",
        ]
    ),
    st.text(max_size=8),
)
_tails = st.one_of(
    st.sampled_from(
        ["", " _Context: A, B_", "_Context: ", " *Context: X*", " _Context: A , B _ \t", " x", "(y)"]
    ),
    st.text(max_size=6),
)
_items = st.one_of(
    st.builds(lambda text, target, tail: f"[{text}]({target}){tail}", _link_texts, _targets, _tails),
    st.lists(
        st.sampled_from(["[", "]", "(", ")", "_Context: ", "\\", " "]) | st.text(max_size=4), max_size=8
    ).map("".join),
)


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(_items)
def test_fast_item_paths_equal_the_general_ones(content):
    from pipeline.parse.document import related_item, related_item_general, source_item, source_item_general

    assert source_item(content) == source_item_general(content)
    assert related_item(content) == related_item_general(content)


def test_fast_item_paths_take_the_common_items():
    from pipeline.parse.document import _FAST_RELATED, _FAST_SOURCE, related_item, source_item

    source = "[AlJazeera](http://www.aljazeera.com/news/middleeast/2014/06/sunni-rebels.html)"
    related = "[The Islamic State seizes Sinjar. ](/news/2014/08/3/the-islamic-state-seizes-sinjar.md) _Context: 2014 Northern Iraq offensive, Islamic State_"
    assert _FAST_SOURCE.match(source) and _FAST_RELATED.match(related)
    assert source_item(source) == (
        "AlJazeera",
        "http://www.aljazeera.com/news/middleeast/2014/06/sunni-rebels.html",
        "aljazeera.com",
    )
    assert related_item(related) == (
        "The Islamic State seizes Sinjar.",
        dt.date(2014, 8, 3),
        "the-islamic-state-seizes-sinjar",
        ("2014 Northern Iraq offensive", "Islamic State"),
    )


@pytest.mark.parametrize(
    ("written", "names"),
    [
        ("French presidential election, 2017", ["French presidential election, 2017"]),
        (
            "COVID-19 pandemic in Washington, D.C., Islamic State",
            ["COVID-19 pandemic in Washington, D.C.", "Islamic State"],
        ),
        ("Greenville, SC., Storms", ["Greenville, SC.", "Storms"]),
        ("2017, Elections", ["2017", "Elections"]),  # a first piece is never joined
        ("Iraq, Syria", ["Iraq", "Syria"]),
        ("Iraq,  2014 , U.K.", ["Iraq, 2014, U.K."]),  # trimmed, then joined
        ("St. Louis, Jr. , Tornado", ["St. Louis, Jr.", "Tornado"]),  # "Jr." joins onto "St. Louis"
        ("Long abbreviation, Abcdef.", ["Long abbreviation", "Abcdef."]),  # 7 characters: stands alone
    ],
)
def test_context_names_that_contain_a_comma(written, names):
    """Contract, section 1: a digits-only piece or an abbreviation of at most 5 characters
    ending in `.` joins the piece before it with `, `."""
    ev = ok(event_doc(related=(f"1. [T](/news/2014/06/21/t.md) _Context: {written}_",)))
    assert list(ev.relations[0].contexts) == names
