"""URL normalisation, crawl scope and the private-address guard."""

from __future__ import annotations

import pytest

from ragserve.errors import FetchError, ScopeError
from ragserve.ingest.robots import RobotRules, parse_sitemap
from ragserve.ingest.urls import (
    Scope,
    check_addresses,
    crawl_url,
    guard_host,
    is_public_address,
    looks_like_page,
    normalize_url,
    page_key,
    public_url,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("link", "base", "expected"),
    [
        ("guide.html#install", "https://h/docs/", "https://h/docs/guide.html"),
        ("../api/", "https://h/docs/guide/x.html", "https://h/docs/api/"),
        ("HTTPS://Docs.Example.COM:443/a", None, "https://docs.example.com/a"),
        ("http://h:80/a", None, "http://h/a"),
        ("http://h:8080/a", None, "http://h:8080/a"),
        ("https://h", None, "https://h/"),
        ("https://user:pw@h/a", None, "https://h/a"),
        ("https://h/a b.html", None, "https://h/a%20b.html"),
        ("https://h/a%20b.html", None, "https://h/a%20b.html"),
        ("https://h/./a/../b", None, "https://h/b"),
        ("https://h/s?q=1&utm_source=x&gclid=2&page=3", None, "https://h/s?q=1&page=3"),
        ("https://h/s?utm_medium=mail", None, "https://h/s"),
        ("http://[::1]:8000/x", None, "http://[::1]:8000/x"),
        ("b.html", "https://h", "https://h/b.html"),
        ("b.html", "https://h/a/?next=/x/y", "https://h/a/b.html"),
        ("?page=2", "https://h/a/list.html?page=1", "https://h/a/list.html?page=2"),
    ],
)
def test_links_normalise_to_one_canonical_url(link: str, base: str | None, expected: str) -> None:
    assert normalize_url(link, base) == expected


@pytest.mark.parametrize(
    "link", ["mailto:a@b.c", "javascript:void(0)", "ftp://h/x", "tel:123", "http://h:99999/"]
)
def test_non_web_links_are_not_crawlable(link: str) -> None:
    assert normalize_url(link, "https://h/") is None


def test_directory_and_its_index_html_are_one_page() -> None:
    assert page_key("https://h/docs/index.html") == page_key("https://h/docs/") == "https://h/docs/"
    assert page_key("https://h/docs/index.htm") == "https://h/docs/"
    assert page_key("https://h/docs/guide.html") == "https://h/docs/guide.html"


@pytest.mark.parametrize(
    ("start", "prefix"),
    [
        ("https://h/docs/guide/", "/docs/guide/"),
        ("https://h/docs/index.html", "/docs/"),
        ("https://h/docs", "/docs/"),
        ("https://h", "/"),
    ],
)
def test_scope_prefix_is_the_start_urls_directory(start: str, prefix: str) -> None:
    assert Scope.from_start_url(start).prefix == prefix


def test_scope_keeps_to_origin_and_prefix() -> None:
    scope = Scope.from_start_url("https://h/docs/index.html")
    assert scope.contains("https://h/docs/a/b.html")
    assert scope.contains("https://h/docs")
    assert not scope.contains("https://h/docs-old/a.html")
    assert not scope.contains("https://h/blog/")
    assert not scope.contains("http://h/docs/a.html")
    assert not scope.contains("https://h:8443/docs/a.html")
    assert not scope.contains("https://evil.example/docs/a.html")


@pytest.mark.parametrize("start", ["ftp://h/docs/", "file:///etc/passwd", "docs/", "https:///x"])
def test_start_url_that_is_not_http_is_refused(start: str) -> None:
    with pytest.raises(ScopeError, match="http"):
        Scope.from_start_url(start)


def test_assets_are_not_pages() -> None:
    assert looks_like_page("https://h/docs/guide.html")
    assert looks_like_page("https://h/docs/guide/")
    assert looks_like_page("https://h/docs/v1.2/")
    assert looks_like_page("https://h/docs/page?x=1")
    for asset in ("logo.png", "site.css", "app.js", "manual.pdf", "_sources/a.rst.txt"):
        assert not looks_like_page(f"https://h/docs/{asset}")


def test_base_url_rewrites_the_crawl_root_both_ways() -> None:
    scope = Scope.from_start_url("http://127.0.0.1:8000/serve/index.html")
    base = "https://docs.ray.io/en/master/serve/"
    local = "http://127.0.0.1:8000/serve/api/index.html"
    public = public_url(local, scope, base)
    assert public == "https://docs.ray.io/en/master/serve/api/index.html"
    assert crawl_url(public, scope, base) == local
    assert public_url(local, scope, None) == local


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "::1",
        "fe80::1",
        "fd00::1",
        "::ffff:127.0.0.1",
        "not-an-ip",
    ],
)
def test_private_and_special_addresses_are_not_public(address: str) -> None:
    assert not is_public_address(address)


def test_public_addresses_pass_the_guard() -> None:
    assert is_public_address("93.184.216.34")
    assert is_public_address("2606:4700::6810:85e5")
    check_addresses("example.com", ["93.184.216.34"], allow_private=False)


def test_private_address_is_refused_with_the_flag_that_allows_it() -> None:
    with pytest.raises(ScopeError, match="--allow-private"):
        check_addresses("intranet", ["93.184.216.34", "10.0.0.5"], allow_private=False)
    check_addresses("intranet", ["10.0.0.5"], allow_private=True)


def test_localhost_is_refused_unless_allowed() -> None:
    with pytest.raises(ScopeError, match="--allow-private"):
        guard_host("localhost", 80, allow_private=False)
    assert guard_host("127.0.0.1", 80, allow_private=True) == ["127.0.0.1"]


def test_unresolvable_host_is_a_fetch_error_that_says_so() -> None:
    with pytest.raises(FetchError, match="cannot resolve host"):
        guard_host("no-such-host.invalid", 80, allow_private=True)


def test_robots_rules_apply_to_our_user_agent() -> None:
    rules = RobotRules.parse(
        "User-agent: *\nDisallow: /docs/private/\nCrawl-delay: 2\nSitemap: https://h/sm.xml\n",
        "ragserve/0.1 (+https://example.org)",
    )
    assert not rules.allows("https://h/docs/private/a.html")
    assert rules.allows("https://h/docs/a.html")
    assert rules.crawl_delay_s == 2
    assert rules.sitemaps == ["https://h/sm.xml"]


def test_sitemap_and_sitemap_index_are_told_apart() -> None:
    urlset = parse_sitemap(
        b'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        b"<url><loc> https://h/a.html </loc></url><url><loc>https://h/b/</loc></url></urlset>"
    )
    assert urlset.pages == ["https://h/a.html", "https://h/b/"]
    index = parse_sitemap(
        b"<sitemapindex><sitemap><loc>https://h/s1.xml</loc></sitemap></sitemapindex>"
    )
    assert index.sitemaps == ["https://h/s1.xml"]
    assert index.pages == []
    assert parse_sitemap(b"<html>not xml").pages == []
