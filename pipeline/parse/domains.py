"""Hosts and public-suffix-aware registered domains of source URLs, offline.

tldextract is built with `suffix_list_urls=()` so it only ever uses the public
suffix snapshot bundled with the package: no network at run time.
"""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import urlsplit

# Imported with this module, not on first use: imported lazily (during the parse), it printed
# urllib3's SOCKS DependencyWarning on a run's stderr, which requests normally silences with a
# global warnings filter (caught by tests/e2e/test_operations.py, session 14; most likely
# another thread, such as the validation warm-up importing Great Expectations, had swapped the
# filters at that moment: not confirmed). The eager import costs a run with nothing to parse
# about 0.08 s.
import tldextract

_WEB_URL = re.compile(r"^[Hh][Tt][Tt][Pp][Ss]?://\S+$")
_EXTRACT = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


# `http(s)://host` followed by a path, query, fragment or the end, where the host is plain
# letters, digits, dots and hyphens: most URLs. urlsplit would give the same host, 5x slower.
_PLAIN_HOST = re.compile(r"[Hh][Tt][Tt][Pp][Ss]?://([A-Za-z0-9.-]+)(?=[/?#]|$)")


def host_of(url: str) -> str | None:
    """Lower-case host without a leading `www.`; None when the URL has no usable host."""
    plain = _PLAIN_HOST.match(url)
    if plain is not None:
        return plain_host(plain[1])
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    if host and host.startswith("www."):
        host = host[4:]
    return host or None


def plain_host(host: str) -> str | None:
    """A host of letters, digits, dots and hyphens as host_of gives it: lower-case, no `www.`."""
    host = host.lower()
    if host.startswith("www."):
        host = host[4:]
    return host or None


def is_web_url(url: str) -> bool:
    """Absolute http(s) URL (scheme in any case) with a host and no whitespace."""
    return web_host(url) is not None


def web_host(url: str) -> str | None:
    """The host (as host_of) of an absolute http(s) URL without whitespace; None otherwise."""
    return host_of(url) if _WEB_URL.match(url) is not None else None


@lru_cache(maxsize=65536)
def registered_domain(host: str) -> str:
    """`news.bbc.co.uk` -> `bbc.co.uk`. Hosts without a known public suffix (IP addresses,
    `localhost`, internal names) are their own registered domain, so grouping never drops them."""
    parts = _EXTRACT(host)
    if parts.suffix and parts.domain:
        return f"{parts.domain}.{parts.suffix}"
    return host
