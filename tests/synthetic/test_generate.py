"""The generator is deterministic, realistic, and the pipeline returns exactly what it wrote."""

import collections
import statistics
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.parse.ids import tag_id, tag_key
from pipeline.synthetic.generate import MALFORMED_KINDS, documents, generate
from tests.conftest import TODAY, build_tables


def test_same_seed_same_archive_other_seed_other_archive():
    def snapshot(seed):
        return [(d.rel_path, d.data) for d in documents(200, seed=seed, malformed=0.2, today=TODAY)]

    assert snapshot(7) == snapshot(7)
    assert snapshot(7) != snapshot(8)


def test_distributions_look_like_the_portal():
    """The portal's known counts (developers' guide): benchmarks measure per-event costs on
    these archives, so a count far from the portal's would misstate them."""
    docs = [d for d in documents(20_000, seed=1, today=TODAY) if d.kind == "event"]
    events = [d.event for d in docs]
    per_day = collections.Counter(e.event_date for e in events)
    assert 10 <= statistics.mean(per_day.values()) <= 20 and max(per_day.values()) <= 60
    assert {len(e.sources) for e in events} == {1, 2, 3}
    assert 1.2 <= statistics.mean(len(e.sources) for e in events) <= 1.3
    assert 0.2 <= sum(e.cover_image_url is not None for e in events) / len(events) <= 0.4
    assert 3.1 <= statistics.mean(len(e.relations) for e in events) <= 3.5
    assert max(len(e.relations) for e in events) == 9 and min(len(e.relations) for e in events) == 0
    summaries = sum(d.data.split(b"\n")[4].strip() != b"" for d in docs if b"\r\n" not in d.data)
    assert 0.2 <= summaries / sum(b"\r\n" not in d.data for d in docs) <= 0.28  # ~76% one sentence
    lengths = [len(e.title) for e in events]
    assert 0.01 <= sum(n < 10 for n in lengths) / len(events) <= 0.02
    assert 0.0003 <= sum(n > 400 for n in lengths) / len(events) <= 0.002
    assert all(40 <= n <= 300 for n in lengths if 10 <= n <= 400)
    assert any(not e.title.isascii() for e in events)
    hosts = {url.split("/")[2].lower() for e in events for _, url in e.sources}
    assert any(h.endswith(".co.uk") for h in hosts) and any(h.endswith(".com.au") for h in hosts)
    names = {name for e in events for name, _ in e.sources}
    assert {"BBC", "BBC News"} <= names and len(names) > 100
    contexts = collections.Counter(tag_key(c) for e in events for r in e.relations for c in r[3])
    assert len(contexts) > 1000  # a long tail of story names
    assert min(e.event_date for e in events).year == 2004


def test_every_malformed_kind_is_generated():
    kinds = {
        d.reason or (d.event.bad_lines[0] if d.event and d.event.bad_lines else d.kind)
        for d in documents(400, seed=2, malformed=0.5, today=TODAY)
    }
    assert set(MALFORMED_KINDS) <= kinds


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.integers(min_value=1, max_value=120),
    seed=st.integers(0, 10_000),
    malformed=st.sampled_from([0.0, 0.3]),
)
def test_pipeline_returns_exactly_what_the_generator_wrote(tmp_path_factory, n, seed, malformed):
    root = tmp_path_factory.mktemp("gen")
    generate(n, root / "in", seed=seed, malformed=malformed, today=TODAY)
    docs = list(documents(n, seed=seed, malformed=malformed, today=TODAY))
    con = build_tables(root / "in", root / "work")

    kept = {}
    for d in sorted(docs, key=lambda d: d.rel_path):
        if d.event and d.kind in ("event", "duplicate"):
            kept.setdefault(d.event.event_id, (d.rel_path, d.event))
    expected_ids = set(kept)

    assert sorted(
        con.execute("SELECT event_id, event_date, title, cover_image_url, file_path FROM events").fetchall()
    ) == sorted((e.event_id, e.event_date, e.title, e.cover_image_url, path) for path, e in kept.values())
    assert sorted(con.execute("SELECT event_id, position, name, url FROM sources").fetchall()) == sorted(
        (e.event_id, i, name, url) for _, e in kept.values() for i, (name, url) in enumerate(e.sources, 1)
    )
    assert sorted(
        con.execute(
            "SELECT event_id, position, related_event_id, related_title, related_date, resolved FROM relations"
        ).fetchall()
    ) == sorted(
        (e.event_id, i, rid, title, date, rid in expected_ids)
        for _, e in kept.values()
        for i, (rid, title, date, _) in enumerate(e.relations, 1)
    )

    tag_events = collections.defaultdict(set)
    for _, e in kept.values():
        for r in e.relations:
            for c in r[3]:
                tag_events[tag_id(tag_key(c))].add(e.event_id)
    assert dict(con.execute("SELECT tag_id, event_count FROM tags").fetchall()) == {
        t: len(ids) for t, ids in tag_events.items()
    }

    status = {"event": "parsed", "rejected": "rejected", "day_index": "skipped", "duplicate": "duplicate"}
    expected_files = {}
    for d in docs:
        s = status[d.kind]
        if d.event and kept[d.event.event_id][0] != d.rel_path:
            s = "duplicate"
        elif d.event:
            s = "parsed"
        expected_files[d.rel_path] = (
            s,
            d.reason
            if s in ("rejected", "skipped")
            else ("duplicate_event_id" if s == "duplicate" else None),
        )
    assert {
        p: (s, r) for p, s, r in con.execute("SELECT file_path, status, reason FROM files").fetchall()
    } == expected_files

    assert sorted(con.execute("SELECT file_path, reason FROM quarantine").fetchall()) == sorted(
        (path, reason) for path, e in kept.values() for reason in e.bad_lines
    )


def test_generate_writes_the_real_layout(tmp_path: Path):
    written = generate(50, tmp_path, seed=1, malformed=0.0, today=TODAY)
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.md"))
    assert written.events == 50 and written.files == len(files)
    event_files = [f for f in files if not f.endswith("/index.md")]
    assert all(f.split("/")[0] == "news" and len(f.split("/")[2]) == 2 for f in event_files)
    assert all(not f.split("/")[3].startswith("0") for f in event_files)  # day not padded
