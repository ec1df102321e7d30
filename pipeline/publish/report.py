"""The HTML run report: one self-contained page per run under `OUTPUT/report/`.

Charts are inline SVG drawn here (no script, no CDN, no web font), so the page
works offline, from a file, in any browser, and there is nothing to fail in a
console. Every piece of archive text (tag names, publishers, reasons, run ids)
is HTML-escaped.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
import os
import queue
import sys
import threading
from concurrent.futures import Future, wait
from contextlib import suppress
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb

from pipeline.core.sqltext import sql_literal
from pipeline.core.storage import save_bytes
from pipeline.core.tables import table_glob


@dataclass(frozen=True)
class Validation:
    passed: bool
    checked: int
    critical_failures: list[str]
    warnings: list[str]
    data_docs: Path | None = None  # GX Data Docs index of this run, linked from the page


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple]:
    return con.execute(sql).fetchall()


def gather(publication: Path) -> dict[str, list[tuple]]:
    """The figures the charts show, from the publication's Parquet."""
    import duckdb

    con = duckdb.connect()
    try:
        for table in ("events", "tags", "sources", "files", "event_places", "countries"):
            con.execute(
                f"CREATE VIEW {table} AS SELECT * FROM read_parquet({sql_literal(table_glob(publication, table))})"
            )
        return {
            "months": _rows(
                con,
                "SELECT strftime(date_trunc('month', event_date), '%Y-%m') AS m, count(*) FROM events GROUP BY m ORDER BY m",
            ),
            "tags": _rows(con, "SELECT name, event_count FROM tags ORDER BY event_count DESC, name LIMIT 15"),
            "publishers": _rows(
                con,
                "SELECT registered_domain, count(*) AS n FROM sources GROUP BY 1 ORDER BY n DESC, 1 LIMIT 15",
            ),
            "rejects": _rows(
                con,
                "SELECT status || ': ' || coalesce(reason, ''), count(*) AS n FROM files "
                "WHERE status <> 'parsed' GROUP BY 1 ORDER BY n DESC, 1",
            ),
            "countries": _rows(
                con,
                "SELECT p.country_code, c.name, count(*) AS n FROM event_places p "
                "JOIN countries c USING (country_code) GROUP BY ALL ORDER BY n DESC, 1",
            ),
            "totals": _rows(
                con,
                "SELECT (SELECT count(*) FROM files), (SELECT count(*) FROM events), (SELECT count(*) FROM sources), "
                "(SELECT count(*) FROM tags)",
            ),
        }
    finally:
        con.close()


def hbars(chart_id: str, title: str, rows: list[tuple], width: int = 720) -> str:
    """A horizontal bar chart: one labelled bar per (label, value) row."""
    esc = html.escape
    if not rows:
        return (
            f'<section id="{chart_id}" class="chart"><h2>{esc(title)}</h2><p class="empty">none</p></section>'
        )
    label_w, bar_h, gap = 260, 18, 6
    top = max(v for _, v in rows) or 1
    height = len(rows) * (bar_h + gap)
    bars = []
    for i, (label, value) in enumerate(rows):
        y = i * (bar_h + gap)
        w = max(1.0, (width - label_w - 70) * value / top)
        text = str(label)
        short = text if len(text) <= 38 else text[:37] + "…"
        bars.append(
            f"<g><title>{esc(text)}: {value:,}</title>"
            f'<text x="{label_w - 8}" y="{y + 13}" text-anchor="end">{esc(short)}</text>'
            f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" rx="2"></rect>'
            f'<text x="{label_w + w + 6:.1f}" y="{y + 13}">{value:,}</text></g>'
        )
    return (
        f'<section id="{chart_id}" class="chart"><h2>{esc(title)}</h2>'
        f'<svg role="img" aria-label="{esc(title)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">{"".join(bars)}</svg></section>'
    )


def columns(chart_id: str, title: str, rows: list[tuple], width: int = 960, height: int = 220) -> str:
    """A column chart over time: one column per (month, value), labelled by year."""
    esc = html.escape
    if not rows:
        return (
            f'<section id="{chart_id}" class="chart"><h2>{esc(title)}</h2><p class="empty">none</p></section>'
        )
    top = max(v for _, v in rows) or 1
    plot_h = height - 30
    step = width / len(rows)
    cols, labels, last_year = [], [], None
    for i, (month, value) in enumerate(rows):
        h = max(1.0, plot_h * value / top)
        x = i * step
        cols.append(
            f'<rect x="{x:.2f}" y="{plot_h - h:.2f}" width="{max(step - 1, 0.5):.2f}" height="{h:.2f}">'
            f"<title>{esc(str(month))}: {value:,}</title></rect>"
        )
        year = str(month)[:4]
        if year != last_year and (last_year is None or int(year) % 5 == 0 or len(rows) < 60):
            labels.append(f'<text x="{x:.2f}" y="{height - 8}">{esc(year)}</text>')
        last_year = year
    return (
        f'<section id="{chart_id}" class="chart"><h2>{esc(title)}</h2>'
        f'<svg role="img" aria-label="{esc(title)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">{"".join(cols)}{"".join(labels)}'
        f'<text x="{width - 4}" y="12" text-anchor="end">max {top:,}</text></svg></section>'
    )


# Shades for the map, lightest to darkest.
SHADES = ("#dbe6f6", "#aac4ea", "#7aa2dc", "#4a7fcc", "#2458a8")


@lru_cache(maxsize=1)
def world_shapes() -> dict[str, Any]:
    """Country outlines (Natural Earth 1:110m, public domain; static/world/build_map.py)."""
    text = (
        resources.files("pipeline.publish").joinpath("static", "world", "world-110m.json").read_text("utf-8")
    )
    return dict(json.loads(text))


def world_map(chart_id: str, title: str, rows: list[tuple]) -> str:
    """A choropleth of events by country: inline SVG paths, shaded on a log scale; each
    country's name and count in its tooltip. Territories too small for the 1:110m map (Hong
    Kong, Singapore, ...) are in the top-countries chart only."""
    esc = html.escape
    shapes = world_shapes()
    counts = {code: (name, n) for code, name, n in rows}
    top = max((n for _, n in counts.values()), default=0)
    low = min((n for _, n in counts.values()), default=0)
    span = math.log(top) - math.log(low) if low else 0.0
    paths = []
    for code, d in shapes["countries"].items():
        name, n = counts.get(code, (code, 0))
        if n:  # the least mentioned lightest, the most darkest, on a log scale between them
            share = (math.log(n) - math.log(low)) / span if span else 1.0
            shade = SHADES[min(len(SHADES) - 1, int(share * len(SHADES)))]
        else:
            shade = "#eceff3"
        paths.append(
            f'<path d="{d}" fill="{shade}" data-code="{esc(code)}" data-events="{n}">'
            f"<title>{esc(str(name))}: {n:,} events</title></path>"
        )
    legend = (
        f'<text x="8" y="{shapes["height"] - 10}">{len(counts):,} countries mentioned; '
        f"darkest: {top:,} events</text>"
    )
    return (
        f'<section id="{chart_id}" class="chart"><h2>{esc(title)}</h2>'
        f'<svg class="map" role="img" aria-label="{esc(title)}" width="{shapes["width"]}" '
        f'height="{shapes["height"]}" viewBox="0 0 {shapes["width"]} {shapes["height"]}">'
        f"{''.join(paths)}{legend}</svg></section>"
    )


STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1d2330; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 24px 0 8px; }
.meta, .empty { color: #5b6475; } .ok { color: #1b7a3a; } .bad { color: #b3261e; }
.totals span { display: inline-block; margin-right: 24px; }
svg rect { fill: #3b6fc4; } svg text { font-size: 12px; fill: #1d2330; }
svg.map path { stroke: #fff; stroke-width: 0.4; } svg.map { max-width: 100%; height: auto; }
ul.findings li { margin: 2px 0; }
"""


def render(
    run_id: str,
    figures: dict[str, list[tuple]],
    validation: Validation,
    generated: dt.datetime,
    docs_href: str | None = None,
) -> str:
    esc = html.escape
    docs = (
        f' <a id="data-docs" href="{esc(docs_href)}">Validation results (Data Docs)</a>.' if docs_href else ""
    )
    files, events, sources, tags = figures["totals"][0] if figures["totals"] else (0, 0, 0, 0)
    status = (
        '<strong class="ok">passed</strong>'
        if validation.passed
        else '<strong class="bad">failed: nothing was published</strong>'
    )
    findings = [f'<li class="bad">{esc(line)}</li>' for line in validation.critical_failures]
    findings += [f"<li>{esc(line)}</li>" for line in validation.warnings]
    failed = len(validation.critical_failures) + len(validation.warnings)
    val_rows = [
        ("passed", validation.checked - failed),
        ("critical failures", len(validation.critical_failures)),
        ("warnings", len(validation.warnings)),
    ]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>news-etl run {esc(run_id)}</title><style>{STYLE}</style></head>
<body>
<h1>news-etl run {esc(run_id)}</h1>
<p class="meta">Generated {esc(generated.strftime("%Y-%m-%d %H:%M:%S UTC"))}. Validation {status}.{docs}</p>
<p class="totals"><span>{files:,} files</span><span>{events:,} events</span><span>{sources:,} source links</span><span>{tags:,} tags</span></p>
{columns("events-per-month", "Events per month", figures["months"])}
{world_map("world-map", "Where the news happens: events by country mentioned", figures["countries"])}
{hbars("top-countries", "Top countries (events mentioning them)", [(name, n) for _, name, n in figures["countries"][:15]])}
{hbars("top-tags", "Top tags (events naming them)", figures["tags"])}
{hbars("top-publishers", "Top publishers (source links)", figures["publishers"])}
{hbars("rejects", "Files not published, by status and reason", figures["rejects"])}
{hbars("validation", "Validation: expectations", val_rows)}
<section id="findings"><h2>Failed expectations</h2>
{"<ul class='findings'>" + "".join(findings) + "</ul>" if findings else '<p class="empty">none</p>'}
</section>
</body></html>
"""


def write_report(publication: Path, report_dir: Path, run_id: str, validation: Validation) -> Path:
    """Write `report_dir/<run_id>.html` and point `report_dir/index.html` at the newest one."""
    href = None
    if validation.data_docs is not None:
        href = Path(os.path.relpath(validation.data_docs, report_dir)).as_posix()
    page = render(run_id, gather(publication), validation, dt.datetime.now(dt.UTC), href)
    report_dir.mkdir(parents=True, exist_ok=True)
    target = report_dir / f"{run_id}.html"
    save_bytes(target, page.encode("utf-8"))
    save_bytes(report_dir / "index.html", page.encode("utf-8"))
    return target


# --- A watcher's reports: written after its batches ---------------------------------------------
class _Later:
    """One thread writes a watcher's run reports, in order, after the batches that publish them:
    at a million events a report is 0.1 s of whole-table queries, and a batch spent it after
    its publish but before the next change could be taken up. A daemon thread: the watcher
    waits for it (bounded) before it lets go of the output, and its exit never waits on it."""

    jobs: queue.Queue[tuple[Future[Path], tuple[Any, ...]]] = queue.Queue()
    thread: threading.Thread | None = None
    pending: list[Future[Path]] = []
    failures: list[str] = []

    @classmethod
    def work(cls) -> None:
        _yield_cpu()
        while True:
            done, job = cls.jobs.get()
            try:
                done.set_result(write_report(*job))
            except BaseException as exc:  # kept for the watcher's warning
                done.set_exception(exc)


# The background report's nice value. Its 0.08 s of CPU per batch (at a million events, 0.15 s
# at 110k: whole-table queries) ran beside the next batch on two cores that the batch, its
# validation processes and the Prefect server already filled. At 10 it still had a tenth of a
# busy core's time (the scheduler's weight 110 against 1024); at 19, 15 against 1024, and it
# runs when a core is free. Not SCHED_IDLE: under a load that never lets go it would starve,
# and the watcher waits for its last report before it lets go of the output.
REPORT_NICE = 19


def _yield_cpu() -> None:
    """Lower this thread's CPU priority (Linux, where a thread has its own nice value, and the
    DuckDB threads it starts inherit it; elsewhere nothing: `setpriority` would name a process)."""
    if sys.platform.startswith("linux"):
        with suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), REPORT_NICE)


def write_report_later(publication: Path, report_dir: Path, run_id: str, validation: Validation) -> Path:
    """`write_report` in the background; the page it will write. See `reports_written`."""
    if _Later.thread is None or not _Later.thread.is_alive():
        _Later.thread = threading.Thread(target=_Later.work, name="run-report", daemon=True)
        _Later.thread.start()
    done: Future[Path] = Future()
    _Later.pending = [f for f in _Later.pending if not f.done() or _note_failure(f)] + [done]
    _Later.jobs.put((done, (publication, report_dir, run_id, validation)))
    return report_dir / f"{run_id}.html"


def _note_failure(done: Future[Path]) -> bool:
    """Keep what a finished background write met, as a warning; False (it is no longer pending)."""
    error = done.exception()
    if error is not None:
        _Later.failures.append(f"run report not written: {' '.join(str(error).split())[:300]}")
    return False


def reports_written(timeout: float | None = None) -> list[str]:
    """Wait (at most `timeout` seconds) for the reports being written in the background; the
    warnings of those that failed since the last call. A watcher calls it after each batch
    (without waiting) and before it lets go of the output folder."""
    wait(_Later.pending, timeout=timeout)
    _Later.pending = [f for f in _Later.pending if not f.done() or _note_failure(f)]
    failures, _Later.failures = _Later.failures, []
    return failures
