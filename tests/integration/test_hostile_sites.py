"""The crawler against hostile and broken sites, all served on 127.0.0.1.

Each case must finish within a bounded time and memory and name the page in
what the crawl yields (a ``PageProblem`` the ingest summary lists); nothing of
a refused page reaches the index. Bombs are scaled to be meaningful (hundreds of
MB when expanded) yet take a second to build and serve.
"""

from __future__ import annotations

import gzip
import os
import random
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from tests.support.site_server import Page, SiteServer

from ragserve.config import IngestSettings
from ragserve.documents import Document
from ragserve.errors import FetchError
from ragserve.ingest.extract import extract_sections
from ragserve.ingest.items import PageProblem, SourceItem
from ragserve.ingest.sources import iter_source

pytestmark = pytest.mark.integration

LIMIT = 1_000_000  # max_page_bytes in these tests
EXPANDED = 64 * 1024 * 1024  # what each bomb expands to (~64 KiB compressed: one network read)
RSS_BOUND = 24 * 1024 * 1024  # the most one crawl of a bomb may add to RSS (limit: 1 MB)


def settings(**overrides: Any) -> IngestSettings:
    values: dict[str, Any] = {
        "allow_private": True,
        "retries": 0,
        "timeout_s": 3.0,
        "max_page_bytes": LIMIT,
    }
    values.update(overrides)
    return IngestSettings(**values)


def crawl_all(start: str, **overrides: Any) -> list[SourceItem]:
    return list(iter_source(start, settings(**overrides)))


def docs(items: list[SourceItem]) -> dict[str, Document]:
    return {item.url: item for item in items if isinstance(item, Document)}


def problems(items: list[SourceItem]) -> dict[str, str]:
    return {item.url: item.reason for item in items if isinstance(item, PageProblem)}


def page(*links: str, body: str = "") -> str:
    anchors = "".join(f'<a href="{link}">{link}</a> ' for link in links)
    return f"<html><head><title>t</title></head><body>{anchors}{body}</body></html>"


@pytest.fixture
def site() -> Iterator[SiteServer]:
    with SiteServer() as server:
        yield server


# --- a server whose handlers write whatever bytes they like, at any pace ----------------

Handler = Callable[[BaseHTTPRequestHandler], None]


class RawServer:
    """Routes path -> a function that writes the raw response (status line and all)."""

    def __init__(self, routes: dict[str, Handler], fallback: Handler | None = None) -> None:
        self.routes = routes
        self.fallback = fallback
        self.hits: list[str] = []
        self.stopped = threading.Event()
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                server.hits.append(self.path)
                route = server.routes.get(self.path.split("?", 1)[0], server.fallback)
                try:
                    if route is None:
                        self.send_response(404)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                    else:
                        route(self)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True

    def __enter__(self) -> RawServer:
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopped.set()
        self._server.shutdown()
        self._server.server_close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"


def html_response(body: bytes, **headers: str) -> Handler:
    def handle(request: BaseHTTPRequestHandler) -> None:
        request.send_response(200)
        request.send_header("Content-Type", headers.pop("content_type", "text/html"))
        for name, value in headers.items():
            request.send_header(name.replace("_", "-"), value)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    return handle


class RssPeak:
    """Samples this process's resident memory while a block runs; ``growth`` in bytes."""

    def __init__(self) -> None:
        self.growth = 0
        self._stop = threading.Event()

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self) -> RssPeak:
        self._base = self.rss()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.growth = max(self.growth, self.rss() - self._base)
            time.sleep(0.002)

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


# --- compression bombs --------------------------------------------------------------------


def _bomb(wbits: int) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, wbits)
    zeros = b"\0" * (1 << 20)
    parts = [compressor.compress(zeros) for _ in range(EXPANDED >> 20)]
    return b"".join([*parts, compressor.flush()])


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    return {
        "gzip": _bomb(zlib.MAX_WBITS | 16),
        "deflate": _bomb(zlib.MAX_WBITS),  # zlib-wrapped, as RFC 9110 means it
        "raw-deflate": _bomb(-zlib.MAX_WBITS),  # what some servers send instead
    }


@pytest.mark.parametrize("kind", ["gzip", "deflate", "raw-deflate"])
def test_compression_bomb_is_cut_at_the_byte_limit_with_bounded_memory(
    kind: str, bombs: dict[str, bytes]
) -> None:
    encoding = "gzip" if kind == "gzip" else "deflate"
    routes = {
        "/docs/": html_response(page("bomb.html").encode()),
        "/docs/bomb.html": html_response(bombs[kind], Content_Encoding=encoding),
    }
    with RawServer(routes) as server, RssPeak() as memory:
        started = time.monotonic()
        items = crawl_all(server.url("/docs/"))
        elapsed = time.monotonic() - started

    assert len(bombs[kind]) < EXPANDED // 500  # a real bomb: > 500x expansion
    assert problems(items) == {
        server.url("/docs/bomb.html"): f"page is larger than {LIMIT} bytes; "
        "raise --max-page-bytes to ingest it"
    }
    assert list(docs(items)) == [server.url("/docs/")]
    assert memory.growth < RSS_BOUND, f"RSS grew {memory.growth >> 20} MiB"
    assert elapsed < 5


def test_nested_gzip_bomb_is_cut_too(bombs: dict[str, bytes]) -> None:
    twice = gzip.compress(bombs["gzip"])
    routes = {
        "/docs/": html_response(page("bomb.html").encode()),
        "/docs/bomb.html": html_response(twice, Content_Encoding="gzip, gzip"),
    }
    with RawServer(routes) as server, RssPeak() as memory:
        items = crawl_all(server.url("/docs/"))

    assert "larger than" in problems(items)[server.url("/docs/bomb.html")]
    assert memory.growth < RSS_BOUND


def test_brotli_or_unknown_encoding_is_not_requested_and_refused_unread() -> None:
    # brotli is not advertised (the crawler decodes, and bounds, only gzip and deflate), so
    # a server that sends it anyway, or zstd, or a made-up coding, gets a named refusal.
    garbage = random.Random(1).randbytes(200_000)
    routes = {
        "/docs/": html_response(page("br.html", "zstd.html").encode()),
        "/docs/br.html": html_response(garbage, Content_Encoding="br"),
        "/docs/zstd.html": html_response(garbage, Content_Encoding="zstd"),
    }
    with RawServer(routes) as server:
        items = crawl_all(server.url("/docs/"))

    assert problems(items) == {
        server.url("/docs/br.html"): "unsupported Content-Encoding br; skipped",
        server.url("/docs/zstd.html"): "unsupported Content-Encoding zstd; skipped",
    }


def test_crawler_asks_only_for_encodings_it_bounds(site: SiteServer) -> None:
    site.set("/docs/", page())
    crawl_all(site.url("/docs/"))
    assert {r.headers.get("accept-encoding") for r in site.requests} == {"gzip, deflate"}


def test_corrupt_gzip_is_a_named_problem_not_a_crash() -> None:
    routes = {
        "/docs/": html_response(page("bad.html").encode()),
        "/docs/bad.html": html_response(b"\x1f\x8b\x08\x00garbage" * 100, Content_Encoding="gzip"),
    }
    with RawServer(routes) as server:
        items = crawl_all(server.url("/docs/"))

    assert "compressed body is corrupt" in problems(items)[server.url("/docs/bad.html")]


def test_ordinary_gzip_pages_still_decode(site: SiteServer) -> None:
    body = page(body="<p>compressed but fine</p>").encode()
    site.set("/docs/", Page(body=gzip.compress(body), headers={"Content-Encoding": "gzip"}))

    items = crawl_all(site.url("/docs/"))

    assert "compressed but fine" in docs(items)[site.url("/docs/")].content


# --- endless and slow responses -------------------------------------------------------------


def endless(request: BaseHTTPRequestHandler) -> None:
    request.send_response(200)
    request.send_header("Content-Type", "text/html")
    request.send_header("Connection", "close")
    request.end_headers()
    chunk = b"<p>" + b"more " * 4000 + b"</p>"
    while True:
        request.wfile.write(chunk)


def slow_body(request: BaseHTTPRequestHandler) -> None:
    request.send_response(200)
    request.send_header("Content-Type", "text/html")
    request.send_header("Content-Length", "100000")
    request.end_headers()
    for _ in range(100_000):
        request.wfile.write(b"x")
        request.wfile.flush()
        time.sleep(0.2)


def slow_headers(request: BaseHTTPRequestHandler) -> None:
    request.wfile.write(b"HTTP/1.1 200 OK\r\n")
    for n in range(10_000):
        request.wfile.write(f"X-Slow-{n}: y\r\n".encode())
        request.wfile.flush()
        time.sleep(0.2)


def test_response_that_never_ends_is_cut_at_the_byte_limit() -> None:
    routes = {"/docs/": html_response(page("endless.html").encode()), "/docs/endless.html": endless}
    with RawServer(routes) as server, RssPeak() as memory:
        started = time.monotonic()
        items = crawl_all(server.url("/docs/"))
        elapsed = time.monotonic() - started

    assert "larger than" in problems(items)[server.url("/docs/endless.html")]
    assert elapsed < 5
    assert memory.growth < RSS_BOUND


@pytest.mark.parametrize("handler", [slow_body, slow_headers], ids=["body", "headers"])
def test_slowloris_is_cut_by_a_total_time_limit_not_only_per_read(handler: Handler) -> None:
    # A byte every 0.2 s never trips a per-read timeout of 1.5 s; the total limit must.
    routes = {"/docs/": html_response(page("slow.html").encode()), "/docs/slow.html": handler}
    with RawServer(routes) as server:
        started = time.monotonic()
        items = crawl_all(server.url("/docs/"), timeout_s=1.5)
        elapsed = time.monotonic() - started

    assert problems(items) == {server.url("/docs/slow.html"): "timed out after 1.5 s"}
    assert elapsed < 4


# --- link traps and sitemaps -------------------------------------------------------------------


def trap(request: BaseHTTPRequestHandler) -> None:
    """An infinite site: every page links to three new ones, one a directory deeper.

    Pages are numbered as a ternary heap (``?n=``), so every URL is new.
    """
    _, _, query = request.path.partition("?")
    n = int(query.split("=")[1]) if query else 0
    links = (f"trap.html?n={3 * n + 1}", f"trap.html?n={3 * n + 2}", f"x/trap.html?n={3 * n + 3}")
    html_response(page(*links).encode())(request)


def test_link_trap_is_bounded_by_max_pages() -> None:
    with RawServer({}, fallback=trap) as server:
        started = time.monotonic()
        items = crawl_all(server.url("/docs/trap.html"), max_pages=60, max_depth=100)
        elapsed = time.monotonic() - started

    assert len(docs(items)) == 60
    assert len(server.hits) == 60 + 3  # + robots.txt and the two usual sitemap places
    assert elapsed < 10


def test_link_trap_is_bounded_by_max_depth_and_the_summary_names_the_cut() -> None:
    with RawServer({}, fallback=trap) as server:
        items = crawl_all(server.url("/docs/trap.html"), max_pages=10_000, max_depth=3)

    assert len(docs(items)) == 1 + 3 + 9 + 27  # depths 0..3
    [(cut_url, reason)] = [(i.url, i.reason) for i in items if isinstance(i, PageProblem)]
    assert "more than max_depth=3 links from the start page" in reason
    assert cut_url.startswith(server.url("/docs/"))


def test_huge_sitemap_cannot_spend_max_pages_before_the_sites_own_links(site: SiteServer) -> None:
    site.set("/docs/", page(*(f"linked{n}.html" for n in range(5))))
    for n in range(5):
        site.set(f"/docs/linked{n}.html", page("deeper.html"))
    site.set("/docs/deeper.html", page())
    site.sitemap(site.url(f"/docs/listed{n}.html") for n in range(20_000))
    for n in range(20_000):
        site.set(f"/docs/listed{n}.html", page())

    started = time.monotonic()
    items = crawl_all(site.url("/docs/"), max_pages=20, max_page_bytes=5_000_000)
    elapsed = time.monotonic() - started

    found = docs(items)
    assert len(found) == 20
    linked = {site.url(f"/docs/linked{n}.html") for n in range(5)} | {site.url("/docs/deeper.html")}
    assert linked <= set(found)
    assert "more entries than max_pages=20" in problems(items)[site.url("/sitemap.xml")]
    assert elapsed < 10


def test_million_entry_gzipped_sitemap_is_read_only_as_far_as_needed(site: SiteServer) -> None:
    entries = "".join(f"<url><loc>{site.url('/docs/p')}{n}.html</loc></url>" for n in range(10**6))
    xml = f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entries}</urlset>'
    packed = gzip.compress(xml.encode(), compresslevel=1)
    del entries, xml
    site.set("/docs/", page())
    site.set("/sitemap.xml", Page(body=packed, content_type="application/x-gzip"))
    site.set("/docs/p0.html", page())

    with RssPeak() as memory:
        items = crawl_all(site.url("/docs/"), max_pages=50, max_page_bytes=len(packed) + 1)

    assert len(docs(items)) == 2  # the start page and p0; the other 48 answer 404
    assert "more entries than max_pages=50" in problems(items)[site.url("/sitemap.xml")]
    assert memory.growth < RSS_BOUND


def test_oversized_sitemap_is_named_not_dropped_silently(site: SiteServer) -> None:
    site.set("/docs/", page())
    site.sitemap([site.url("/docs/x.html")] * 40_000)  # ~2 MB of XML

    items = crawl_all(site.url("/docs/"))

    assert (
        "sitemap only partly used: page is larger than" in problems(items)[site.url("/sitemap.xml")]
    )


def test_endless_chain_of_sitemap_indexes_is_bounded(site: SiteServer) -> None:
    site.set("/docs/", page())
    for n in range(100):
        site.sitemap_index(
            [site.url(f"/sm{n + 1}.xml")], path="/sitemap.xml" if n == 0 else f"/sm{n}.xml"
        )

    started = time.monotonic()
    items = crawl_all(site.url("/docs/"))

    assert "more than 20 sitemaps" in next(iter(problems(items).values()))
    assert sum(site.hits(f"/sm{n}.xml") for n in range(100)) <= 20
    assert time.monotonic() - started < 5


# --- robots.txt (RFC 9309) -----------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503])
def test_robots_txt_server_error_means_disallow_all(status: int, site: SiteServer) -> None:
    site.set("/robots.txt", Page(body="oops", status=status, content_type="text/plain"))
    site.set("/docs/", page("a.html"))

    with pytest.raises(FetchError, match="RFC 9309"):
        crawl_all(site.url("/docs/"))

    assert site.hits("/docs/") == 0


@pytest.mark.parametrize("status", [401, 403, 404, 410])
def test_robots_txt_client_error_means_allow_all(status: int, site: SiteServer) -> None:
    site.set("/robots.txt", Page(body="Disallow: /", status=status, content_type="text/plain"))
    site.set("/docs/", page("a.html"))
    site.set("/docs/a.html", page())

    items = crawl_all(site.url("/docs/"))

    assert set(docs(items)) == {site.url("/docs/"), site.url("/docs/a.html")}


def test_redirected_robots_txt_is_followed_and_honoured(site: SiteServer) -> None:
    site.redirect("/robots.txt", "/real/robots.txt")
    site.set("/real/robots.txt", Page(body="User-agent: *\nDisallow: /docs/secret.html\n"))
    site.set("/docs/", page("secret.html", "open.html"))
    site.set("/docs/secret.html", page())
    site.set("/docs/open.html", page())

    items = crawl_all(site.url("/docs/"))

    assert set(docs(items)) == {site.url("/docs/"), site.url("/docs/open.html")}
    assert site.hits("/docs/secret.html") == 0


def test_robots_txt_redirect_loop_is_bounded_and_allows_all(site: SiteServer) -> None:
    site.redirect("/robots.txt", "/r1.txt")
    site.redirect("/r1.txt", "/robots.txt")
    site.set("/docs/", page())

    items = crawl_all(site.url("/docs/"))

    assert list(docs(items)) == [site.url("/docs/")]
    assert site.hits("/robots.txt") + site.hits("/r1.txt") <= 6


def test_x_robots_tag_noindex_and_nofollow_are_honoured(site: SiteServer) -> None:
    site.set("/docs/", page("hidden.html", "nofollow.html", "other-bot.html"))
    site.set("/docs/hidden.html", Page(body=page(), headers={"X-Robots-Tag": "noindex"}))
    site.set(
        "/docs/nofollow.html",
        Page(body=page("beyond.html"), headers={"X-Robots-Tag": "ragserve: nofollow"}),
    )
    site.set(
        "/docs/other-bot.html", Page(body=page(), headers={"X-Robots-Tag": "otherbot: noindex"})
    )
    site.set("/docs/beyond.html", page())

    items = crawl_all(site.url("/docs/"))

    assert "noindex" in problems(items)[site.url("/docs/hidden.html")]
    assert site.url("/docs/hidden.html") not in docs(items)
    assert {site.url("/docs/nofollow.html"), site.url("/docs/other-bot.html")} <= set(docs(items))
    assert site.hits("/docs/beyond.html") == 0


# --- redirects -----------------------------------------------------------------------------


def test_redirect_loop_is_named_in_the_summary(site: SiteServer) -> None:
    site.set("/docs/", page("a.html"))
    site.redirect("/docs/a.html", "/docs/b.html")
    site.redirect("/docs/b.html", "/docs/a.html")

    items = crawl_all(site.url("/docs/"))

    assert "redirect loop" in problems(items)[site.url("/docs/a.html")]


def test_redirect_loop_between_two_linked_pages_is_named(site: SiteServer) -> None:
    site.set("/docs/", page("a.html", "b.html"))
    site.redirect("/docs/a.html", "/docs/b.html")
    site.redirect("/docs/b.html", "/docs/a.html")

    items = crawl_all(site.url("/docs/"), concurrency=1)

    assert any("redirect loop" in reason for reason in problems(items).values())


def test_self_redirect_is_a_loop(site: SiteServer) -> None:
    site.set("/docs/", page("a.html"))
    site.redirect("/docs/a.html", "/docs/a.html")

    items = crawl_all(site.url("/docs/"))

    assert "redirect loop" in problems(items)[site.url("/docs/a.html")]


# --- content that is not what it says -----------------------------------------------------------


def test_binary_served_as_html_is_refused_not_indexed(site: SiteServer) -> None:
    noise = random.Random(7).randbytes(300_000)
    png = b"\x89PNG\r\n\x1a\n" + noise[:50_000]
    no_nul = bytes(b for b in noise if b not in (0, 10, 13))[:100_000]  # no NUL: the odd-char test
    site.set("/docs/", page("blob.html", "image.html", "nonul.html"))
    site.set("/docs/blob.html", Page(body=noise))
    site.set("/docs/image.html", Page(body=png))
    site.set("/docs/nonul.html", Page(body=no_nul, content_type="text/html; charset=utf-8"))

    items = crawl_all(site.url("/docs/"))

    found = problems(items)
    for name in ("blob", "image", "nonul"):
        assert "but binary" in found[site.url(f"/docs/{name}.html")], name
    assert list(docs(items)) == [site.url("/docs/")]


def test_mislabelled_content_types_are_named(site: SiteServer) -> None:
    site.set("/docs/", page("octet.html", "json.html", "nolabel.html"))
    site.set("/docs/octet.html", Page(body=page(), content_type="application/octet-stream"))
    site.set("/docs/json.html", Page(body='{"a": 1}', content_type="application/json"))
    site.set("/docs/nolabel.html", Page(body=page(body="<p>no type</p>"), content_type=None))

    items = crawl_all(site.url("/docs/"))

    found = problems(items)
    assert "Content-Type application/octet-stream" in found[site.url("/docs/octet.html")]
    assert "Content-Type application/json" in found[site.url("/docs/json.html")]
    assert "no type" in docs(items)[site.url("/docs/nolabel.html")].content  # sniffed as HTML


def test_invalid_utf8_decodes_with_replacements_and_garbage_is_refused(site: SiteServer) -> None:
    bad = page(body="<p>caf\udce9 ok</p>").encode("utf-8", "surrogateescape")  # a stray 0xE9 byte
    site.set("/docs/", page("bad.html", "worse.html"))
    site.set("/docs/bad.html", Page(body=bad))
    site.set("/docs/worse.html", Page(body=b"<p>" + b"\xc3\x28\xa0\xa1" * 5000 + b"</p>"))

    items = crawl_all(site.url("/docs/"))

    assert "caf\ufffd ok" in docs(items)[site.url("/docs/bad.html")].content
    assert "but binary" in problems(items)[site.url("/docs/worse.html")]


@pytest.mark.parametrize("depth", [500, 100_000])
def test_pathologically_nested_html_is_crawled_and_extracted_quickly(
    depth: int, site: SiteServer
) -> None:
    # ~500 levels overflowed the extraction walk; 100,000 took lexbor ~100 s to parse.
    body = "<div>" * depth + '<p>deep text</p><a href="after.html">after</a>' + "</div>" * depth
    site.set("/docs/", page(body=body))
    site.set("/docs/after.html", page(body="<p>after</p>"))

    started = time.monotonic()
    items = crawl_all(site.url("/docs/"), max_page_bytes=5_000_000)
    sections = extract_sections(docs(items)[site.url("/docs/")])
    elapsed = time.monotonic() - started

    assert site.url("/docs/after.html") in docs(items)  # its links were still found
    assert "deep text" in " ".join(section.text for section in sections)
    assert elapsed < 10
