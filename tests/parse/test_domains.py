import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.parse import domains
from pipeline.parse.domains import host_of, is_web_url, registered_domain


@pytest.mark.parametrize(
    ("url", "host", "registered"),
    [
        ("https://www.bbc.co.uk/news/x", "bbc.co.uk", "bbc.co.uk"),
        ("http://news.bbc.co.uk/2/hi/x.stm", "news.bbc.co.uk", "bbc.co.uk"),
        ("HTTPS://WWW.ABC.NET.AU/news", "abc.net.au", "abc.net.au"),
        ("https://www.news.com.au/world", "news.com.au", "news.com.au"),
        ("https://www1.folha.uol.com.br/x", "www1.folha.uol.com.br", "uol.com.br"),
        ("https://user:pw@Sub.Example.org:8080/p?q=1", "sub.example.org", "example.org"),
        ("http://192.168.0.1/x", "192.168.0.1", "192.168.0.1"),
        ("http://localhost/x", "localhost", "localhost"),
    ],
)
def test_host_and_registered_domain(url, host, registered):
    assert host_of(url) == host
    assert registered_domain(host) == registered


@pytest.mark.parametrize("url", ["https://a.com", "http://a.b", "HtTpS://x.org/(a)"])
def test_web_urls(url):
    assert is_web_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://a.com",
        "//a.com",
        "/wiki/x",
        "https://",
        "https://a.com/a b",
        "javascript:alert(1)",
        "https://[::1",
        "",
    ],
)
def test_not_web_urls(url):
    assert not is_web_url(url)


def test_public_suffixes_come_from_the_bundled_snapshot(monkeypatch):
    assert domains._EXTRACT.suffix_list_urls == ()
    registered_domain.cache_clear()

    def no_network(*args, **kwargs):
        raise AssertionError("network access at run time")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    assert registered_domain("www.example.co.uk") == "example.co.uk"


@settings(max_examples=500, deadline=None)
@given(
    scheme=st.sampled_from(["http", "https", "HTTP", "hTTps"]),
    netloc=st.text(alphabet="aZ09.-_@:[]%!~", min_size=0, max_size=20),
    rest=st.text(alphabet="/?#:@ab.()", max_size=10),
)
def test_the_fast_host_path_agrees_with_urlsplit(scheme, netloc, rest):
    """host_of skips urlsplit for plain hosts; it must give what urlsplit gives."""
    from urllib.parse import urlsplit

    url = f"{scheme}://{netloc}{rest}"
    try:
        expected = urlsplit(url).hostname
    except ValueError:
        expected = None
    if expected and expected.startswith("www."):
        expected = expected[4:]
    assert host_of(url) == (expected or None)
