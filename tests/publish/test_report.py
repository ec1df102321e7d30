"""The HTML run report, opened in real headless Chromium (Debian's package; `python3 dev.py test`
installs it): it loads from a file with no console errors and no network, the charts are there,
a screenshot is not blank, and archive text is escaped."""

import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import duckdb
import pytest

from pipeline.publish.report import Validation, write_report
from tests.conftest import build_tables, event_doc, write_archive

CHARTS = ("events-per-month", "top-countries", "top-tags", "top-publishers", "rejects", "validation")


def chromium() -> str:
    path = shutil.which("chromium")
    assert path, "Debian's chromium is required (python3 dev.py test installs it)"
    return path


def browse(page: Path, tmp_path: Path, *mode: str) -> subprocess.CompletedProcess:
    """Headless Chromium on a file URL, no network, console messages logged to stderr."""
    return subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--proxy-server=127.0.0.1:9",  # any request for the network would fail and be logged
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1200,1800",
            *mode,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def console_errors(stderr: str) -> list[str]:
    return [
        line
        for line in stderr.splitlines()
        if "CONSOLE" in line or "Uncaught" in line or "net::ERR" in line or "Failed to load" in line
    ]


def png_colors(path: Path) -> tuple[set[bytes], float]:
    """(distinct colours as RGB bytes, share of pixels that are not white) of an 8-bit RGB(A) PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, channels = 8, b"", 0, 0, 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and colour in (2, 6)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    previous = bytearray(stride)
    colours, non_white = set(), 0
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            up_left = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - up_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else up_left)) & 0xFF
        for x in range(0, stride, channels * 4):  # every 4th pixel is plenty
            pixel = bytes(line[x : x + 3])
            colours.add(pixel)
            non_white += pixel != b"\xff\xff\xff"
        previous = line
    return colours, non_white / (width * height / 4)


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory) -> Path:
    """A report over an archive whose tag names and publisher names are HTML and script."""
    tmp = tmp_path_factory.mktemp("report")
    nasty = "<script>alert('x')</script> & </svg><b>bold</b>"
    archive = write_archive(
        tmp / "in",
        {
            "news/2014/06/21/a.md": event_doc(
                title="A <img src=x onerror=alert(1)> title",
                sources=("1. [<i>Evil</i> News](https://evil.example.com/x)",),
                related=(f"1. [B](/news/2014/06/22/b.md) _Context: {nasty}, Ordinary_",),
            ),
            "news/2014/06/22/b.md": event_doc(date="2014-06-22", title="B"),
            "news/2014/06/23/index.md": "# day page",
        },
    )
    build_tables(archive, tmp / "work").close()
    validation = Validation(False, 12, [f"[critical] tags: name {nasty}"], ["[warning] something <odd>"])
    return write_report(tmp / "work" / "publication", tmp / "report", "run-<1>", validation)


@pytest.mark.flow
def test_the_sample_report_renders_offline_with_every_chart(sample_build, tmp_path):
    page = Path(sample_build["report"])
    assert page.exists() and (page.parent / "index.html").exists()
    text = page.read_text(encoding="utf-8")
    assert not re.search(r"<script|<link|@import|url\(|https?://", text)  # nothing to fetch, nothing to run
    dom = browse(page, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert console_errors(dom.stderr) == []
    for chart in CHARTS:
        section = re.search(rf'<section id="{chart}" class="chart">.*?</section>', dom.stdout, re.S)
        assert section and ("<rect" in section.group(0)), chart
    assert "32 events" in dom.stdout and "Islamic State" in dom.stdout
    shot = tmp_path / "report.png"
    result = browse(page, tmp_path, f"--screenshot={shot}")
    assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
    colours, inked = png_colors(shot)
    assert len(colours) >= 3 and inked > 0.01, (len(colours), inked)


def test_archive_text_is_escaped(hostile_report, tmp_path):
    text = hostile_report.read_text(encoding="utf-8")
    assert "<script" not in text and "<b>bold" not in text and "<i>Evil" not in text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in text
    dom = browse(hostile_report, tmp_path, "--dump-dom")
    assert dom.returncode == 0 and console_errors(dom.stderr) == []
    assert "<script" not in dom.stdout.split("</head>", 1)[1]  # the browser saw text, not elements
    assert "run-&lt;1&gt;" in dom.stdout


@pytest.mark.flow
def test_the_report_maps_events_by_country_in_a_real_browser(sample_build, tmp_path):
    """The world map: every Natural Earth country drawn, those the sample's events mention
    shaded by their count (the busiest darkest), the others grey; the browser renders them."""
    from pipeline.publish.report import SHADES, world_shapes

    page = Path(sample_build["report"])
    dom = browse(page, tmp_path, "--dump-dom")
    assert dom.returncode == 0 and console_errors(dom.stderr) == []
    section = re.search(r'<section id="world-map" class="chart">.*?</section>', dom.stdout, re.S)
    assert section
    paths = re.findall(
        r'<path d="[^"]+" fill="([^"]+)" data-code="([A-Z]{2})" data-events="(\d+)">', section.group(0)
    )
    assert {code for _, code, _ in paths} == set(world_shapes()["countries"])
    events = {code: int(n) for _, code, n in paths}
    fills = {code: fill for fill, code, _ in paths}
    catalog = duckdb.connect(sample_build["catalog"], read_only=True)
    try:
        expected = dict(
            catalog.execute("SELECT country_code, count(*) FROM event_places GROUP BY 1").fetchall()
        )
        names = dict(catalog.execute("SELECT country_code, name FROM countries").fetchall())
    finally:
        catalog.close()
    busiest = max(expected, key=lambda code: (expected[code], code))
    assert len(expected) >= 10 and {"IQ", "UA", "US"} <= set(expected)
    assert all(events[c] == n for c, n in expected.items() if c in events)
    assert all(events[c] == 0 for c in events if c not in expected)
    assert fills[busiest] == SHADES[-1] and fills["AQ"] == "#eceff3"
    top = re.search(r'<section id="top-countries" class="chart">.*?</section>', dom.stdout, re.S)
    assert top and names[busiest] in top.group(0)
    shot = tmp_path / "map.png"
    result = browse(page, tmp_path, f"--screenshot={shot}", "--window-size=1200,2600")
    assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
    colours, _ = png_colors(shot)
    assert bytes.fromhex(SHADES[-1][1:]) in colours and bytes.fromhex("eceff3") in colours


def test_the_background_report_thread_yields_the_cpu(tmp_path):
    import os
    import sys
    import threading

    import pytest

    from pipeline.publish import report

    if not sys.platform.startswith("linux"):
        pytest.skip("a thread's own nice value is Linux's")
    seen: list[int] = []
    ready = threading.Event()

    def probe() -> None:
        report._yield_cpu()
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        ready.set()

    threading.Thread(target=probe).start()
    assert ready.wait(5)
    assert seen == [max(os.nice(0), report.REPORT_NICE)]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == os.nice(0)  # this thread's is not
