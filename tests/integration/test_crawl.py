"""The crawler against real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.site_server import Page, SiteServer

from ragserve.config import IngestSettings
from ragserve.documents import Document
from ragserve.errors import FetchError, ScopeError
from ragserve.ingest.crawl import _GuardedBackend
from ragserve.ingest.items import NotModified, PageProblem, SourceItem, Validators, is_gone
from ragserve.ingest.sources import iter_source

pytestmark = pytest.mark.integration

SAMPLE_CORPUS = Path(__file__).resolve().parents[2] / "examples" / "ray-serve-docs-2023.tar.gz"


def settings(**overrides: Any) -> IngestSettings:
    values: dict[str, Any] = {"allow_private": True, "retries": 1, "timeout_s": 5.0}
    values.update(overrides)
    return IngestSettings(**values)


@pytest.fixture
def site() -> Iterator[SiteServer]:
    with SiteServer() as server:
        yield server


def crawl_all(start: str, **overrides: Any) -> list[SourceItem]:
    return list(iter_source(start, settings(**overrides)))


def docs(items: list[SourceItem]) -> dict[str, Document]:
    return {item.url: item for item in items if isinstance(item, Document)}


def problems(items: list[SourceItem]) -> dict[str, str]:
    return {item.url: item.reason for item in items if isinstance(item, PageProblem)}


def page(*links: str, body: str = "") -> str:
    anchors = "".join(f'<a href="{link}">{link}</a> ' for link in links)
    return f"<html><head><title>t</title></head><body>{anchors}{body}</body></html>"


def test_crawl_stays_in_scope_and_ignores_assets(site: SiteServer) -> None:
    site.set(
        "/docs/",
        page("guide.html", "/blog/post.html", "https://example.com/x", "logo.png", "mailto:a@b"),
    )
    site.set("/docs/guide.html", page("index.html#top", "api/", "../docs/api/?utm_source=x"))
    site.set("/docs/api/", page())
    site.set("/blog/post.html", page())

    items = crawl_all(site.url("/docs/"))

    assert set(docs(items)) == {site.url(p) for p in ("/docs/", "/docs/guide.html", "/docs/api/")}
    assert problems(items) == {}
    assert site.hits("/blog/post.html") == 0
    assert site.hits("/docs/logo.png") == 0
    assert site.hits("/docs/api/") == 1


def test_directory_and_its_index_html_are_fetched_once(site: SiteServer) -> None:
    site.set("/docs/index.html", page("a.html", "./", "index.html"))
    site.set("/docs/a.html", page("../docs/", "index.html"))

    items = crawl_all(site.url("/docs/index.html"))

    assert list(docs(items)) == [site.url("/docs/"), site.url("/docs/a.html")]
    assert site.hits("/docs/index.html") + site.hits("/docs/") == 1


def test_max_pages_caps_the_number_of_pages_fetched(site: SiteServer) -> None:
    site.set("/", page(*(f"p{n}.html" for n in range(20))))
    for n in range(20):
        site.set(f"/p{n}.html", page())

    items = crawl_all(site.url("/"), max_pages=5)

    assert len(docs(items)) == 5
    assert sum(site.hits(f"/p{n}.html") for n in range(20)) == 4


def test_max_depth_stops_following_links(site: SiteServer) -> None:
    for depth in range(5):
        site.set(f"/d{depth}.html", page(f"d{depth + 1}.html"))

    items = crawl_all(site.url("/d0.html"), max_depth=2)

    assert set(docs(items)) == {site.url(f"/d{n}.html") for n in range(3)}


def test_robots_txt_disallow_is_honoured(site: SiteServer) -> None:
    site.robots("User-agent: *\nDisallow: /docs/private/\n")
    site.set("/docs/", page("private/secret.html", "public.html"))
    site.set("/docs/public.html", page())
    site.set("/docs/private/secret.html", page())

    items = crawl_all(site.url("/docs/"))

    assert site.url("/docs/public.html") in docs(items)
    assert site.url("/docs/private/secret.html") not in docs(items)
    assert site.hits("/docs/private/secret.html") == 0


def test_robots_txt_is_ignored_when_respect_robots_is_off(site: SiteServer) -> None:
    site.robots("User-agent: *\nDisallow: /\n")
    site.set("/docs/", page("private.html"))
    site.set("/docs/private.html", page())

    items = crawl_all(site.url("/docs/"), respect_robots=False)

    assert set(docs(items)) == {site.url("/docs/"), site.url("/docs/private.html")}
    assert site.hits("/robots.txt") == 0


def test_start_url_disallowed_by_robots_says_how_to_override(site: SiteServer) -> None:
    site.robots("User-agent: ragserve\nDisallow: /\n")
    site.set("/docs/", page())

    with pytest.raises(ScopeError, match="respect_robots"):
        crawl_all(site.url("/docs/"))


def test_sitemap_pages_are_crawled_even_when_nothing_links_to_them(site: SiteServer) -> None:
    site.set("/docs/", page())
    site.set("/docs/orphan.html", page("linked-from-orphan.html"))
    site.set("/docs/linked-from-orphan.html", page())
    site.set("/docs/second.html", page())
    site.robots(f"User-agent: *\nAllow: /\nSitemap: {site.url('/maps/index.xml')}\n")
    site.sitemap_index([site.url("/maps/docs.xml")], path="/maps/index.xml")
    site.sitemap([site.url("/docs/orphan.html"), site.url("/elsewhere/x.html")], "/maps/docs.xml")
    site.sitemap([site.url("/docs/second.html")], path="/docs/sitemap.xml")

    items = crawl_all(site.url("/docs/"))

    assert set(docs(items)) == {
        site.url(p)
        for p in (
            "/docs/",
            "/docs/orphan.html",
            "/docs/linked-from-orphan.html",
            "/docs/second.html",
        )
    }
    assert site.hits("/elsewhere/x.html") == 0


def test_redirect_inside_scope_is_followed_and_named_by_its_target(site: SiteServer) -> None:
    site.set("/docs/", page("old.html", "new.html"))
    site.redirect("/docs/old.html", "/docs/moved/")
    site.redirect("/docs/new.html", "/docs/moved/", status=302)
    site.set("/docs/moved/", page())

    items = crawl_all(site.url("/docs/"))

    assert set(docs(items)) == {site.url("/docs/"), site.url("/docs/moved/")}
    assert site.hits("/docs/moved/") == 1
    assert problems(items) == {}


def test_redirect_outside_scope_is_reported_not_followed(site: SiteServer) -> None:
    site.set("/docs/", page("away.html"))
    site.redirect("/docs/away.html", "/blog/")
    site.set("/blog/", page())

    items = crawl_all(site.url("/docs/"))

    assert "outside the crawl scope" in problems(items)[site.url("/docs/away.html")]
    assert site.hits("/blog/") == 0


def test_server_error_that_recovers_is_retried(site: SiteServer) -> None:
    site.set("/docs/", page("flaky.html", "busy.html"))
    site.set("/docs/flaky.html", Page(body=page(), fail_first=2, fail_status=503))
    site.set(
        "/docs/busy.html",
        Page(body=page(), fail_first=1, fail_status=429, fail_headers={"Retry-After": "0"}),
    )

    items = crawl_all(site.url("/docs/"), retries=2)

    assert site.url("/docs/flaky.html") in docs(items)
    assert site.url("/docs/busy.html") in docs(items)
    assert site.hits("/docs/flaky.html") == 3


def test_server_error_that_persists_is_reported_after_retries(site: SiteServer) -> None:
    site.set("/docs/", page("broken.html"))
    site.set("/docs/broken.html", Page(body=page(), fail_first=99))

    items = crawl_all(site.url("/docs/"), retries=1)

    assert problems(items)[site.url("/docs/broken.html")] == "HTTP 500 Internal Server Error"
    assert site.hits("/docs/broken.html") == 2


def test_missing_page_is_reported_as_gone(site: SiteServer) -> None:
    site.set("/docs/", page("missing.html"))

    items = crawl_all(site.url("/docs/"))

    problem = next(item for item in items if isinstance(item, PageProblem))
    assert problem.url == site.url("/docs/missing.html")
    assert problem.reason.startswith("HTTP 404")
    assert is_gone(problem)


def test_page_link_that_is_not_html_is_reported_with_its_type(site: SiteServer) -> None:
    site.set("/docs/", page("data", "diagram.svg"))
    site.set("/docs/data", Page(body=b"{}", content_type="application/json"))
    site.set("/docs/diagram.svg", Page(body=b"<svg/>", content_type="image/svg+xml"))

    items = crawl_all(site.url("/docs/"))

    assert problems(items) == {
        site.url("/docs/data"): "not an HTML page (Content-Type application/json); skipped"
    }


def test_oversized_page_is_reported_with_the_setting_to_raise(site: SiteServer) -> None:
    site.set("/docs/", page("big.html", "chunked.html"))
    site.set("/docs/big.html", page(body="x" * 5000))

    items = crawl_all(site.url("/docs/"), max_page_bytes=2048)

    reason = problems(items)[site.url("/docs/big.html")]
    assert reason == "page is larger than 2048 bytes; raise --max-page-bytes to ingest it"


def test_broken_html_still_yields_a_document(site: SiteServer) -> None:
    site.set("/docs/", "<html><body><div><p>unclosed <b>tags <a href='next.html'>next")
    site.set("/docs/next.html", "<<<>>> </div></div></html> text & more")

    items = crawl_all(site.url("/docs/"))

    assert set(docs(items)) == {site.url("/docs/"), site.url("/docs/next.html")}


def test_pages_in_other_charsets_decode_and_bad_bytes_do_not_crash(site: SiteServer) -> None:
    site.set("/docs/", page("latin.html", "meta.html", "garbage.html"))
    site.set(
        "/docs/latin.html",
        Page(body="<p>café</p>".encode("cp1252"), content_type="text/html; charset=windows-1252"),
    )
    site.set(
        "/docs/meta.html",
        Page(
            body='<meta charset="iso-8859-1"><p>naïve</p>'.encode("latin-1"),
            content_type="text/html",
        ),
    )
    site.set("/docs/garbage.html", Page(body=b"<p>ok \xff\xfe\x80 bytes</p>", content_type=None))

    found = docs(crawl_all(site.url("/docs/")))

    assert "café" in found[site.url("/docs/latin.html")].content
    assert "naïve" in found[site.url("/docs/meta.html")].content
    assert "ok" in found[site.url("/docs/garbage.html")].content


def test_unchanged_pages_answer_not_modified_and_changed_pages_are_refetched(
    site: SiteServer,
) -> None:
    site.set("/docs/", Page(body=page("a.html"), headers={"ETag": '"v1"'}))
    site.set("/docs/a.html", Page(body=page("b.html"), headers={"ETag": '"a1"'}))
    site.set(
        "/docs/b.html",
        Page(body=page(), headers={"Last-Modified": "Mon, 01 Jan 2024 00:00:00 GMT"}),
    )
    first = docs(crawl_all(site.url("/docs/")))
    known = {url: Validators(doc.etag, doc.last_modified) for url, doc in first.items()}
    site.set("/docs/a.html", Page(body=page("b.html", "c.html"), headers={"ETag": '"a2"'}))
    site.set("/docs/c.html", page())

    second = list(iter_source(site.url("/docs/"), settings(), known))

    not_modified = {item.url for item in second if isinstance(item, NotModified)}
    assert not_modified == {site.url("/docs/"), site.url("/docs/b.html")}
    assert set(docs(second)) == {site.url("/docs/a.html"), site.url("/docs/c.html")}
    assert docs(second)[site.url("/docs/a.html")].etag == '"a2"'


def test_known_page_linked_only_from_an_unchanged_page_is_still_revisited(
    site: SiteServer,
) -> None:
    site.set("/docs/", Page(body=page("deep.html"), headers={"ETag": '"root"'}))
    site.set("/docs/deep.html", page())  # no validators: always fetched in full
    known = {
        site.url("/docs/"): Validators('"root"', None),
        site.url("/docs/deep.html"): Validators(None, None),
    }

    items = list(iter_source(site.url("/docs/"), settings(), known))

    assert [type(item).__name__ for item in items] == ["NotModified", "Document"]
    assert items[1].url == site.url("/docs/deep.html")
    assert "if-none-match" not in site.requests[-1].headers


def test_every_known_page_gets_an_item_even_past_max_pages(site: SiteServer) -> None:
    site.set("/docs/", Page(body=page(*(f"p{n}.html" for n in range(6))), headers={"ETag": '"r"'}))
    for n in range(6):
        site.set(f"/docs/p{n}.html", Page(body=page(), headers={"ETag": f'"{n}"'}))
    known = {site.url("/docs/"): Validators('"r"', None)}
    known |= {site.url(f"/docs/p{n}.html"): Validators(f'"{n}"', None) for n in range(6)}

    items = list(iter_source(site.url("/docs/"), settings(max_pages=3), known))

    assert sorted(item.url for item in items) == sorted(known)
    skipped = [item for item in items if isinstance(item, PageProblem)]
    assert len(skipped) == 4
    assert all("not revisited" in item.reason and not is_gone(item) for item in skipped)


def test_base_url_names_documents_by_the_public_site(site: SiteServer) -> None:
    site.set("/local/serve/index.html", page("api/index.html"))
    site.set("/local/serve/api/index.html", page())

    items = list(
        iter_source(
            site.url("/local/serve/index.html"),
            settings(base_url="https://docs.example.org/en/serve/"),
        )
    )

    assert set(docs(items)) == {
        "https://docs.example.org/en/serve/",
        "https://docs.example.org/en/serve/api/",
    }


def test_requests_carry_the_configured_user_agent(site: SiteServer) -> None:
    site.set("/docs/", page())

    crawl_all(site.url("/docs/"), user_agent="ragserve-test/1.0 (+mailto:ops@example.org)")

    assert {r.headers["user-agent"] for r in site.requests} == {
        "ragserve-test/1.0 (+mailto:ops@example.org)"
    }


def test_per_host_delay_spaces_out_requests(site: SiteServer) -> None:
    site.set("/docs/", page("a.html", "b.html", "c.html"))
    for name in "abc":
        site.set(f"/docs/{name}.html", page())

    started = time.monotonic()
    crawl_all(site.url("/docs/"), per_host_delay_s=0.1, use_sitemap=False, respect_robots=False)

    assert time.monotonic() - started >= 0.3


def test_items_stream_out_before_the_crawl_ends(site: SiteServer) -> None:
    site.set("/docs/", page("slow.html"))
    site.set("/docs/slow.html", Page(body=page(), delay_s=1.0))

    started = time.monotonic()
    items = iter_source(site.url("/docs/"), settings())
    first = next(items)
    first_after = time.monotonic() - started
    rest = list(items)
    all_after = time.monotonic() - started

    assert first.url == site.url("/docs/")
    assert first_after < all_after - 0.5  # not held back until the slow page came
    assert [item.url for item in rest] == [site.url("/docs/slow.html")]


def test_consumer_can_stop_the_crawl_early(site: SiteServer) -> None:
    site.set("/", page(*(f"p{n}.html" for n in range(50))))
    for n in range(50):
        site.set(f"/p{n}.html", Page(body=page(), delay_s=0.05))

    items = iter_source(site.url("/"), settings(concurrency=2))
    next(items)
    next(items)
    items.close()  # type: ignore[attr-defined]
    time.sleep(0.2)
    hits_after_close = len(site.requests)
    time.sleep(0.3)

    assert len(site.requests) == hits_after_close < 20


def test_slow_page_times_out_as_a_problem(site: SiteServer) -> None:
    site.set("/docs/", page("slow.html"))
    site.set("/docs/slow.html", Page(body=page(), delay_s=2.0))

    items = crawl_all(site.url("/docs/"), timeout_s=0.3, retries=0)

    assert problems(items) == {site.url("/docs/slow.html"): "timed out after 0.3 s"}


def test_unreachable_start_url_fails_fast_with_an_actionable_message() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]

    started = time.monotonic()
    with pytest.raises(FetchError, match=r"cannot reach .*check that the server is up"):
        list(
            iter_source(f"http://127.0.0.1:{closed_port}/docs/", IngestSettings(allow_private=True))
        )

    assert time.monotonic() - started < 3.0


def test_start_url_that_answers_404_is_a_fetch_error(site: SiteServer) -> None:
    with pytest.raises(FetchError, match="HTTP 404"):
        crawl_all(site.url("/nothing/here.html"))


def test_start_url_redirecting_out_of_scope_is_a_scope_error(site: SiteServer) -> None:
    site.redirect("/docs/", "/elsewhere/")

    with pytest.raises(ScopeError, match="outside the crawl scope"):
        crawl_all(site.url("/docs/"))


def test_non_http_source_is_refused_with_what_is_accepted() -> None:
    with pytest.raises(ScopeError, match="http:// or https://"):
        iter_source("ftp://example.com/docs/", settings())


def test_private_address_is_refused_without_allow_private(site: SiteServer) -> None:
    site.set("/docs/", page())

    with pytest.raises(ScopeError, match="--allow-private"):
        iter_source(site.url("/docs/"), IngestSettings())
    assert site.requests == []


def test_connections_to_private_addresses_are_refused_at_connect_time(site: SiteServer) -> None:
    # What stops DNS rebinding: the check runs on the address actually dialled.
    with pytest.raises(ScopeError, match="--allow-private"):
        asyncio.run(_GuardedBackend().connect_tcp("127.0.0.1", site.port))


@pytest.mark.slow
def test_sample_ray_serve_corpus_is_crawled_through_its_links(tmp_path: Path) -> None:
    with tarfile.open(SAMPLE_CORPUS) as archive:
        archive.extractall(tmp_path, filter="data")
    html_files = list(tmp_path.rglob("*.html"))

    with SiteServer(root=tmp_path) as site:
        items = crawl_all(site.url("/serve/index.html"), concurrency=4)

    found = docs(items)
    # 43 files ship; every one is reachable by links from serve/index.html.
    assert len(html_files) == 43
    assert len(found) == 43
    assert site.url("/serve/") in found
    assert all(url.startswith(site.url("/serve/")) for url in found)
    assert problems(items) == {}
