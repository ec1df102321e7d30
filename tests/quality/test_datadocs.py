"""GX Data Docs work with no network (pipeline/quality/datadocs.py), in real headless Chromium."""

import re
from pathlib import Path

import pytest

from tests.publish.test_report import browse, console_errors

pytestmark = pytest.mark.flow  # over the real flow's output (the session's sample build)


def test_data_docs_work_offline_and_list_the_run(sample_build, tmp_path):
    """GX Data Docs: no page loads anything from the network, and in real Chromium (any
    network request fails through a dead proxy) the index's table of validation results is
    filled by its scripts, each row naming our run."""
    docs = Path(sample_build["data_docs"])
    remote = re.compile(r"<(script|link|img)\b[^>]*\b(src|href)=\"https?://", re.I)
    pages = list(docs.parent.rglob("*.html"))
    assert len(pages) > 10
    assert [p for p in pages if remote.search(p.read_text(encoding="utf-8"))] == []
    out = browse(docs, tmp_path, "--virtual-time-budget=10000", "--dump-dom")
    assert out.returncode == 0, out.stderr[-2000:]
    assert console_errors(out.stderr) == []
    rows = re.findall(r'<tr class="clickable-row" data-href="(validations/[^"]+)"', out.stdout)
    assert len(rows) == 10  # the first page of the table
    total = re.search(r"of (\d+) rows", out.stdout)
    assert total is not None and int(total[1]) >= 12  # one per suite at least
    assert all(f"/{sample_build['run_id']}/" in row for row in rows)
    assert "__none__" not in out.stdout


def test_the_run_report_links_the_data_docs(sample_build):
    page = Path(sample_build["report"])
    href = re.search(r'<a id="data-docs" href="([^"]+)"', page.read_text(encoding="utf-8"))
    assert href is not None
    assert (page.parent / href[1]).resolve() == Path(sample_build["data_docs"]).resolve()
