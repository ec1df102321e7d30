"""Great Expectations Data Docs that work with no network.

GX's pages load jQuery, Bootstrap, bootstrap-table, Font Awesome and others from public
CDNs; offline, the index's list of validation results stays empty and the pages are
unstyled. After GX builds the site, every page is rewritten to load those files from
`docs/static/vendor/`, copied from packages: jQuery, Bootstrap (with Popper, in its bundle)
and Font Awesome from their XStatic packages on PyPI, bootstrap-table (with its filter
control) and bootstrap-datepicker from our own package data (pipeline/static/datadocs/,
taken from their npm releases; see SOURCES.md there). Scripts only GX's charts use (Vega) and
the dark-mode stylesheet are dropped: no expectation of ours draws a chart. The GX logo comes
from the site's own static folder. A page left with any script, stylesheet or image
pointing off the machine is an error.
"""

from __future__ import annotations

import re
import shutil
from importlib import resources
from pathlib import Path

VENDOR = "static/vendor"

# The file name a CDN address ends in (as GX writes them; versions vary between pages) ->
# our file under VENDOR; None: the tag is dropped.
_ASSETS: dict[str, str | None] = {
    "jquery-3.7.1.min.js": "jquery.min.js",
    "popper.min.js": None,  # inside bootstrap.bundle.min.js
    "bootstrap.min.js": "bootstrap.bundle.min.js",
    "bootstrap.min.css": "bootstrap.min.css",
    "bootstrap-table.min.js": "bootstrap-table.min.js",
    "bootstrap-table.min.css": "bootstrap-table.min.css",
    "bootstrap-table-filter-control.min.js": "bootstrap-table-filter-control.min.js",
    "bootstrap-table-filter-control.min.css": "bootstrap-table-filter-control.min.css",
    "bootstrap-table-filter-control.css": "bootstrap-table-filter-control.min.css",
    "bootstrap-datepicker.min.js": "bootstrap-datepicker.min.js",
    "bootstrap-datepicker.min.css": "bootstrap-datepicker.min.css",
    "all.min.css": "fontawesome/css/all.min.css",
    "bootstrap-prefers-dark.css": None,
    "vega@5": None,
    "vega-lite@5": None,
    "vega-embed@6": None,
}
_TAG = re.compile(r"<(script|link|img)\b[^>]*?\b(src|href)=\"(https?://[^\"]*)\"[^>]*>(\s*</script>)?", re.I)
_INTEGRITY = re.compile(r"\s+(?:integrity|crossorigin)=\"[^\"]*\"", re.I)
_LOGO = re.compile(
    r"https://great-expectations-web-assets\.s3\.[a-z0-9-]+\.amazonaws\.com/logo-long\.png[^\"]*"
)


class OfflineError(Exception):
    """A Data Docs page still loads something from the network."""


def _copy_assets(docs: Path) -> None:
    import xstatic.pkg.bootstrap as bootstrap
    import xstatic.pkg.font_awesome as font_awesome
    import xstatic.pkg.jquery as jquery

    vendor = docs / VENDOR
    vendor.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(jquery.BASE_DIR) / "jquery.min.js", vendor / "jquery.min.js")
    for name in ("css/bootstrap.min.css", "js/bootstrap.bundle.min.js"):
        shutil.copyfile(Path(bootstrap.BASE_DIR) / name, vendor / Path(name).name)
    awesome = vendor / "fontawesome"
    for folder in ("css", "webfonts"):
        shutil.rmtree(awesome / folder, ignore_errors=True)
        shutil.copytree(Path(font_awesome.BASE_DIR) / folder, awesome / folder)
    ours = resources.files("pipeline.quality").joinpath("static", "datadocs")
    for item in ours.iterdir():
        if item.name.endswith((".js", ".css")):
            (vendor / item.name).write_bytes(item.read_bytes())


def _rewrite(page: Path, docs: Path) -> None:
    text = page.read_text(encoding="utf-8")
    depth = len(page.relative_to(docs).parts) - 1
    up = "../" * depth

    def local(match: re.Match[str]) -> str:
        url = match[3]
        name = url.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
        if name not in _ASSETS:
            return match[0]
        target = _ASSETS[name]
        if target is None:
            return ""
        # A subresource-integrity hash names the CDN's file, and `crossorigin` blocks a file://
        # page from running it: both go.
        tag = _INTEGRITY.sub("", match[0])
        return tag.replace(url, f"{up}{VENDOR}/{target}")

    text = _TAG.sub(local, text)
    text = _LOGO.sub(f"{up}static/images/logo-long.png", text)
    left = [m[3] for m in _TAG.finditer(text)]
    if left:
        raise OfflineError(f"{page}: still loads {left[0]}")
    page.write_text(text, encoding="utf-8")


def make_offline(docs: Path) -> None:
    """Rewrite every page of the Data Docs site at `docs` to load only local files."""
    if not docs.is_dir():
        return
    _copy_assets(docs)
    for page in docs.rglob("*.html"):
        if VENDOR not in page.relative_to(docs).as_posix():
            _rewrite(page, docs)
