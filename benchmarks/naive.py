"""The baseline #21 measures us against: the contract as a user would script it.

`python benchmarks/naive.py INPUT OUTPUT`: one process, plain Python and pandas. It walks the
archive, reads each file, parses it with regular expressions, builds the contract's tables
as pandas DataFrames (events, sources, relations, relation_tags, event_tags, tags, files,
quarantine) and writes each as one Parquet file. No validation, no incremental state, no
versioned publication, no catalog. Written to be reasonable, not slow: compiled regexes,
one pass per file, vectorised pandas where it is natural.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import sys
import time
from pathlib import Path

import pandas as pd

DATE = re.compile(r"^### \[(\d{4})-(\d{2})-(\d{2})\]\([^)]*\)\s*$")
TITLE = re.compile(r"^# (.*)$")
ITEM = re.compile(r"^\s*(?:\d+\.|[-*])\s+(.*)$")
SOURCE = re.compile(r"^\[(.*?)\]\((https?://.*)\)\s*$", re.I)
RELATED = re.compile(
    r"^\[(.*)\]\(/?news/(\d{4})/(\d{1,2})/(\d{1,2})/([a-z0-9-]+)\.md\)\s*(?:_Context:\s*(.*)_)?\s*$"
)
LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
PATH = re.compile(r"(?:^|/)news/(\d{4})/(\d{1,2})/(\d{1,2})/([a-z0-9-]+)\.md$")
NON_SLUG = re.compile(r"[^a-z0-9]+")
TAIL = re.compile(r"\d+|.{0,4}\.")


def slugify(title: str) -> str:
    slug = NON_SLUG.sub("-", title[:140].lower()).strip("-")
    return slug or "x" + hashlib.sha256(title.strip().encode()).hexdigest()[:12]


def contexts(text: str) -> list[str]:
    names: list[str] = []
    for piece in (p.strip() for p in text.split(", ")):
        if not piece:
            continue
        if names and TAIL.fullmatch(piece):
            names[-1] += ", " + piece
        else:
            names.append(piece)
    return names


def main(root: Path, out: Path) -> int:
    started = time.perf_counter()
    today = dt.date.today()
    rows: dict[str, list[dict]] = {
        k: [] for k in ("events", "sources", "relations", "contexts", "files", "quarantine")
    }
    paths = sorted(
        os.path.relpath(os.path.join(d, f), root).replace(os.sep, "/")
        for d, _, fs in os.walk(root)
        for f in fs
        if f.endswith(".md")
    )
    for rel in paths:
        data = (root / rel).read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        file = {
            "file_path": rel,
            "content_sha256": sha,
            "bytes": len(data),
            "status": "parsed",
            "reason": None,
            "event_id": None,
        }
        rows["files"].append(file)
        if rel.endswith("/index.md") or rel == "index.md":
            file.update(status="skipped", reason="day_index")
            continue
        try:
            text = data.decode("utf-8").lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
        except UnicodeDecodeError:
            file.update(status="rejected", reason="encoding")
            continue
        lines = text.split("\n")
        nonblank = [i for i, line in enumerate(lines) if line.strip()]
        if not nonblank:
            file.update(status="rejected", reason="empty")
            continue
        m = DATE.match(lines[nonblank[0]].strip())
        if not m:
            file.update(status="rejected", reason="missing_date")
            continue
        try:
            date = dt.date(int(m[1]), int(m[2]), int(m[3]))
        except ValueError:
            file.update(status="rejected", reason="invalid_date")
            continue
        if not dt.date(1900, 1, 1) <= date <= today + dt.timedelta(days=1):
            file.update(status="rejected", reason="date_out_of_range")
            continue
        title_at = next((i for i in range(nonblank[0] + 1, len(lines)) if TITLE.match(lines[i])), None)
        title = lines[title_at][2:].strip() if title_at is not None else ""
        if not title:
            file.update(status="rejected", reason="missing_title")
            continue
        end = next((i for i in range(title_at + 1, len(lines)) if lines[i].startswith("### ")), len(lines))
        paragraphs = "\n".join(lines[title_at + 1 : end]).split("\n\n")
        summary = "\n\n".join(p for p in (" ".join(LINK.sub(r"\1", p).split()) for p in paragraphs) if p)
        pm = PATH.search(rel)
        event_id = (
            f"{int(pm[1]):04d}-{int(pm[2]):02d}-{int(pm[3]):02d}/{pm[4]}"
            if pm
            else f"{date}/{slugify(title)}"
        )
        file["event_id"] = event_id
        section, cover, sources, relations = None, None, 0, 0
        for number in list(range(nonblank[0] + 1, title_at)) + list(range(end, len(lines))):
            line = lines[number]
            if line.startswith("### "):
                name = line[4:].strip().rstrip(":").lower()
                section = (
                    "source" if name in ("source", "sources") else "related" if name == "related" else None
                )
                continue
            if section is None or not line.strip():
                continue
            item = ITEM.match(line)
            if not item:
                rows["quarantine"].append(
                    {"file_path": rel, "section": section, "raw": line, "reason": "not_a_list_item"}
                )
                continue
            body = item[1].strip()
            if section == "source":
                s = SOURCE.match(body)
                if not s:
                    rows["quarantine"].append(
                        {"file_path": rel, "section": section, "raw": line, "reason": "bad_url"}
                    )
                elif s[1].strip().lower() == "cover image" and cover is None:
                    cover = s[2]
                else:
                    sources += 1
                    host = re.sub(r"^www\.", "", s[2].split("/")[2].lower())
                    rows["sources"].append(
                        {
                            "event_id": event_id,
                            "position": sources,
                            "name": s[1].strip(),
                            "url": s[2],
                            "host": host,
                        }
                    )
            else:
                r = RELATED.match(body)
                if not r:
                    rows["quarantine"].append(
                        {"file_path": rel, "section": section, "raw": line, "reason": "bad_link"}
                    )
                    continue
                relations += 1
                target = f"{r[2]}-{int(r[3]):02d}-{int(r[4]):02d}/{r[5]}"
                rows["relations"].append(
                    {
                        "event_id": event_id,
                        "position": relations,
                        "related_event_id": target,
                        "related_title": r[1].strip(),
                        "related_date": dt.date(int(r[2]), int(r[3]), int(r[4])),
                    }
                )
                for name in contexts(r[6] or ""):
                    rows["contexts"].append({"event_id": event_id, "related_event_id": target, "name": name})
        rows["events"].append(
            {
                "event_id": event_id,
                "event_date": date,
                "title": title,
                "summary": summary,
                "slug": event_id[11:],
                "cover_image_url": cover,
                "source_count": sources,
                "related_count": relations,
                "file_path": rel,
                "content_sha256": sha,
            }
        )
    frames = {k: pd.DataFrame(v) for k, v in rows.items()}
    events = frames["events"].drop_duplicates("event_id", keep="first")
    files = frames["files"]
    dup = files["event_id"].notna() & files["event_id"].duplicated(keep="first")
    files.loc[dup, ["status", "reason"]] = ["duplicate", "duplicate_event_id"]
    keep = set(events["file_path"])
    relations = frames["relations"]
    relations = relations[relations["event_id"].isin(events["event_id"])] if len(relations) else relations
    if len(relations):
        relations["resolved"] = relations["related_event_id"].isin(events["event_id"])
        dates = pd.to_datetime(events.set_index("event_id")["event_date"])
        relations["days_apart"] = (
            pd.to_datetime(relations["related_date"]) - relations["event_id"].map(dates)
        ).dt.days
    ctx = frames["contexts"]
    if len(ctx):
        ctx["tag_id"] = ctx["name"].map(
            lambda n: hashlib.sha256(" ".join(n.casefold().split()).encode()).hexdigest()[:16]
        )
        ctx = ctx[ctx["event_id"].isin(events["event_id"])]
        event_tags = ctx[["event_id", "tag_id"]].drop_duplicates()
        tags = (
            ctx.merge(events[["event_id", "event_date"]], on="event_id")
            .groupby("tag_id")
            .agg(
                name=("name", lambda s: s.value_counts().sort_index().idxmax()),
                event_count=("event_id", "nunique"),
                first_date=("event_date", "min"),
                last_date=("event_date", "max"),
            )
            .reset_index()
        )
        frames["relation_tags"] = ctx[["event_id", "related_event_id", "tag_id"]].drop_duplicates()
    else:
        event_tags = tags = pd.DataFrame()
    out.mkdir(parents=True, exist_ok=True)
    sources = frames["sources"]
    quarantine = frames["quarantine"]
    tables = {
        "events": events,
        "sources": sources[sources["event_id"].isin(events["event_id"])] if len(sources) else sources,
        "relations": relations,
        "relation_tags": frames.get("relation_tags", pd.DataFrame()),
        "event_tags": event_tags,
        "tags": tags,
        "files": files,
        "quarantine": quarantine[quarantine["file_path"].isin(keep)] if len(quarantine) else quarantine,
    }
    for name, frame in tables.items():
        frame.to_parquet(out / f"{name}.parquet", index=False)
    print(f"{len(events)} events from {len(paths)} files in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
