"""Hosts and public-suffix-aware registered domains of source URLs, offline.

tldextract is built with `suffix_list_urls=()` so it only ever uses the public
suffix snapshot bundled with the package: no network at run time.
"""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import urlsplit

import tldextract

_WEB_URL = re.compile(r"^[Hh][Tt][Tt][Pp][Ss]?://\S+$")
_EXTRACT = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


def host_of(url: str) -> str | None:
    """Lower-case host without a leading `www.`; None when the URL has no usable host."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    if host and host.startswith("www."):
        host = host[4:]
    return host or None


def is_web_url(url: str) -> bool:
    """Absolute http(s) URL (scheme in any case) with a host and no whitespace."""
    return _WEB_URL.match(url) is not None and host_of(url) is not None


@lru_cache(maxsize=65536)
def registered_domain(host: str) -> str:
    """`news.bbc.co.uk` -> `bbc.co.uk`. Hosts without a known public suffix (IP addresses,
    `localhost`, internal names) are their own registered domain, so grouping never drops them."""
    parts = _EXTRACT(host)
    if parts.suffix and parts.domain:
        return f"{parts.domain}.{parts.suffix}"
    return host
