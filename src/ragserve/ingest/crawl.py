"""The website crawler behind ``iter_source(url, ...)``.

An httpx ``AsyncClient`` with ``settings.concurrency`` workers runs in its own
event loop on a background thread, so callers stay synchronous (and may even
be inside another event loop) while items stream out through a bounded queue
as pages arrive; a slow consumer slows the crawl instead of filling memory.
Closing the iterator early stops the crawl.

Order of work: robots.txt, then the start URL alone (a failure there is a
whole-job error), then the frontier, breadth first: URLs the index already
knows (``known``) and links as they are found, then sitemap entries that no
link reached (so a sitemap of a million entries cannot spend ``max_pages``
before the site's own links; it seeds at most ``max_pages`` of them).

Hostile sites: bodies are decoded by the crawler itself (gzip, deflate) and
never past ``max_page_bytes``, so a compression bomb costs about that much
memory; other encodings are refused unread. ``timeout_s`` bounds each
request in total, not per read, so a server trickling a byte at a time is cut
too. Binary bodies served as HTML, redirect loops and the ``max_depth`` cut
are reported as ``PageProblem`` items, never dropped silently.

Re-crawls and 304: a page that answers 304 Not Modified is not downloaded, so
its links are unknown. Rather than re-fetching it (which would defeat the
point), every in-scope URL in ``known`` is itself a seed, queued ahead of new
links and exempt from ``max_depth``; so unchanged pages are revisited (and
answered ``NotModified``) even when the pages linking to them were 304 too,
and new pages are found through changed pages (a page that gains a link has
changed) and the sitemap. The one blind spot: a page linked only from an
unchanged page that was never indexed before (say it failed last time) waits
until its linking page changes or it appears in the sitemap. When
``max_pages`` stops the crawl, each known URL not yet visited gets a
``PageProblem`` ("not revisited"), never silence, so it is not mistaken for
a vanished page.

Private addresses: the start host is resolved and checked up front for a
clear error, and, unless ``allow_private``, every connection the client opens
is checked again at connect time against the addresses it actually dials, so
a DNS answer that changes mid-crawl (DNS rebinding) cannot reach a private
address either. Redirects are followed by hand and only within scope, and
links are only followed within scope, which is one host.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import socket
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import httpcore
import httpx
from selectolax.lexbor import LexborHTMLParser

from ragserve.config import IngestSettings
from ragserve.documents import Document
from ragserve.errors import ContentError, FetchError, ScopeError, SourceError
from ragserve.ingest.decode import binary_reason, decode_bytes
from ragserve.ingest.html_depth import flatten_deep_nesting
from ragserve.ingest.items import (
    NotModified,
    PageProblem,
    SourceItem,
    Validators,
    too_large_reason,
)
from ragserve.ingest.robots import RobotRules, parse_sitemap
from ragserve.ingest.urls import (
    Scope,
    check_addresses,
    crawl_url,
    guard_host,
    looks_like_page,
    normalize_url,
    page_key,
    public_url,
)
from ragserve.retry import backoff_s, retry_after_s

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
HTML_TYPES = ("text/html", "application/xhtml+xml")
MAX_REDIRECTS = 10
#: RFC 9309 asks crawlers to follow at least five redirects for robots.txt.
MAX_ROBOTS_REDIRECTS = 5
MAX_SITEMAPS = 20
#: Encodings the crawler decodes itself (see ``_Inflater``), so it can bound what they expand to.
ACCEPT_ENCODING = "gzip, deflate"
BACKOFF_BASE_S = 0.25
BACKOFF_CAP_S = 8.0
RETRY_AFTER_CAP_S = 30.0
CRAWL_DELAY_CAP_S = 30.0

Emit = Callable[[SourceItem], Awaitable[None]]


def crawl(
    start_url: str, settings: IngestSettings, known: Mapping[str, Validators] | None = None
) -> Iterator[SourceItem]:
    """Stream the pages in scope of ``start_url``; see the module docstring.

    The scope and the start host's addresses are checked now (ScopeError,
    FetchError for DNS); the start page is fetched on the first ``next()``.
    """
    scope = Scope.from_start_url(start_url)
    guard_host(scope.host, scope.port, settings.allow_private)
    start = normalize_url(start_url)
    assert start is not None  # Scope.from_start_url accepted it
    return _stream(_Crawler(start, scope, settings, known or {}))


# --- the sync/async bridge ------------------------------------------------------------


class _StoppedError(Exception):
    """The consumer closed the iterator: unwind the crawl."""


_DONE = object()


def _stream(crawler: _Crawler) -> Iterator[SourceItem]:
    items: queue.Queue[object] = queue.Queue(maxsize=4 * crawler.settings.concurrency + 16)
    stop = threading.Event()
    failures: list[BaseException] = []

    async def emit(item: SourceItem) -> None:
        while True:
            if stop.is_set():
                raise _StoppedError
            try:
                items.put_nowait(item)
                return
            except queue.Full:
                await asyncio.sleep(0.01)

    def produce() -> None:
        try:
            asyncio.run(crawler.run(emit, stop))
        except BaseException as exc:
            failures.append(_unwrap(exc))
        finally:
            while not stop.is_set():
                try:
                    items.put(_DONE, timeout=0.1)
                    break
                except queue.Full:
                    continue

    thread = threading.Thread(target=produce, name="ragserve-crawl", daemon=True)
    thread.start()
    try:
        while (item := items.get()) is not _DONE:
            yield cast(SourceItem, item)
        if failures and not isinstance(failures[0], _StoppedError):
            raise failures[0]
    finally:
        stop.set()
        thread.join(timeout=5)


def _unwrap(exc: BaseException) -> BaseException:
    """The first real error inside TaskGroup's exception groups."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


async def _watch(stop: threading.Event) -> None:
    while not stop.is_set():
        await asyncio.sleep(0.05)
    raise _StoppedError


# --- fetching ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Response:
    url: str
    status: int
    reason: str
    headers: httpx.Headers
    body: bytes = b""
    #: Why the body was not read (too large, unknown encoding); None when it was.
    problem: str | None = None

    @property
    def content_type(self) -> str:
        content_type: str = self.headers.get("content-type", "")
        return content_type.split(";")[0].strip().lower()

    @property
    def charset(self) -> str | None:
        for parameter in self.headers.get("content-type", "").split(";")[1:]:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "charset":
                return value.strip().strip("\"'") or None
        return None


@dataclass(slots=True)
class _Visit:
    """What one page gave: an item (None if it was a duplicate) and its links.

    ``error`` is the exception class to raise when the page is the start URL.
    """

    item: SourceItem | None
    links: list[str] = field(default_factory=list)
    error: type[SourceError] | None = None


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Refuses to dial private addresses, judged on the addresses actually dialled."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        check_addresses(host, addresses, allow_private=False)
        last_error: Exception = httpcore.ConnectError(f"no address for {host}")
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                last_error = exc
        raise last_error


def _client(settings: IngestSettings) -> httpx.AsyncClient:
    limits = httpx.Limits(
        max_connections=settings.concurrency, max_keepalive_connections=settings.concurrency
    )
    transport = httpx.AsyncHTTPTransport(limits=limits)
    if not settings.allow_private:
        # httpx has no public hook for the network backend; swap in a pool that has one.
        transport._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=settings.concurrency,
            max_keepalive_connections=settings.concurrency,
            network_backend=_GuardedBackend(),
        )
    return httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(settings.timeout_s),
        headers={"User-Agent": settings.user_agent, "Accept-Encoding": ACCEPT_ENCODING},
        follow_redirects=False,
    )


def _backoff_s(attempt: int) -> float:
    """Exponential backoff with jitter: ~0.25 s, 0.5 s, 1 s, ... capped."""
    return backoff_s(attempt + 1, base_s=BACKOFF_BASE_S, cap_s=BACKOFF_CAP_S)


def _retry_after_s(headers: httpx.Headers) -> float | None:
    return retry_after_s(headers, cap_s=RETRY_AFTER_CAP_S)


def _describe_transport_error(exc: Exception, timeout_s: float) -> str:
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return f"timed out after {timeout_s:g} s"
    if isinstance(exc, httpx.ConnectError):
        return f"could not connect ({exc or type(exc).__name__})"
    return f"network error ({type(exc).__name__}: {exc})"


class _Inflater:
    """Decodes a ``Content-Encoding`` chain without ever producing more than a limit.

    httpx's own decoders expand a whole network read at once: a 64 KiB read of a
    deflate bomb is ~64 MiB in memory before any size check. Here each step asks
    zlib for at most the room left, so memory stays near ``max_page_bytes``.
    """

    def __init__(self, content_encoding: str) -> None:
        names = [name.strip().lower() for name in content_encoding.split(",")]
        names = [name for name in names if name and name != "identity"]
        self.unsupported = [name for name in names if name not in _ZLIB_ENCODINGS]
        self._steps = [_ZlibStep(name) for name in names if name in _ZLIB_ENCODINGS]

    def feed(self, data: bytes, room: int) -> bytes | None:
        """The decoded bytes of ``data``; None once they exceed ``room``."""
        for step in reversed(self._steps):  # the last encoding applied is undone first
            data = step.decompress(data, room + 1)
            if len(data) > room:
                return None
        return data if len(data) <= room else None


_ZLIB_ENCODINGS = ("gzip", "x-gzip", "deflate")


class _ZlibStep:
    """One gzip or deflate layer; "deflate" may be zlib-wrapped or raw (servers send both)."""

    def __init__(self, name: str) -> None:
        self._gzip = name != "deflate"
        self._inflate: Any = zlib.decompressobj(zlib.MAX_WBITS | 16) if self._gzip else None

    def decompress(self, data: bytes, max_length: int) -> bytes:
        if self._inflate is None:
            if not data:
                return b""
            zlib_header = (
                len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
            )
            self._inflate = zlib.decompressobj(zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS)
        return bytes(self._inflate.decompress(data, max_length))


async def _read_limited(response: httpx.Response, limit: int) -> tuple[bytes, str | None]:
    """The decoded body, or why it was not read: too large (checked as it arrives), encoding."""
    declared = response.headers.get("content-length", "")
    inflater = _Inflater(response.headers.get("content-encoding", ""))
    if inflater.unsupported:
        return b"", f"unsupported Content-Encoding {', '.join(inflater.unsupported)}; skipped"
    if declared.isdigit() and int(declared) > limit:
        return b"", too_large_reason(limit)
    body = bytearray()
    async for piece in response.aiter_raw():
        try:
            decoded = inflater.feed(piece, limit - len(body))
        except zlib.error as exc:
            return b"", f"its compressed body is corrupt ({exc}); skipped"
        if decoded is None:
            return b"", too_large_reason(limit)
        body += decoded
    return bytes(body), None


# --- the crawler ------------------------------------------------------------------------


class _Crawler:
    def __init__(
        self,
        start_url: str,
        scope: Scope,
        settings: IngestSettings,
        known: Mapping[str, Validators],
    ) -> None:
        self.start_url = start_url
        self.scope = scope
        self.settings = settings
        self.validators = self._validators_by_key(known)
        self.rules = RobotRules.allow_all(settings.user_agent)
        self.seen: set[str] = set()
        self.pages_claimed = 0
        self.delay_s = settings.per_host_delay_s
        self._next_turn = 0.0
        self._limit_logged = False
        self._depth_reported = False
        self.depth_cut = ""  # the first in-scope link left beyond max_depth
        self.sitemap_only: set[str] = set()  # queued from a sitemap, not (yet) linked
        self.visited: set[str] = set()
        self._order = 0
        #: page key -> the key it redirects to, as met; finds loops between crawled pages.
        self.redirects: dict[str, str] = {}

    def _validators_by_key(self, known: Mapping[str, Validators]) -> dict[str, Validators]:
        by_key: dict[str, Validators] = {}
        for url, validators in known.items():
            fetch_url = normalize_url(crawl_url(url, self.scope, self.settings.base_url))
            if fetch_url is not None and self.scope.contains(fetch_url):
                by_key[page_key(fetch_url)] = validators
        return by_key

    def public(self, url: str) -> str:
        return public_url(page_key(url), self.scope, self.settings.base_url)

    async def run(self, emit: Emit, stop: threading.Event) -> None:
        self.emit = emit
        # (priority, order, url, depth): links and known pages (0) before sitemap-only
        # entries (1), so a huge sitemap cannot spend max_pages before the site's own links.
        self.frontier: asyncio.PriorityQueue[tuple[int, int, str, int]] = asyncio.PriorityQueue()
        self._turn_lock = asyncio.Lock()
        started = time.monotonic()
        async with _client(self.settings) as client, asyncio.TaskGroup() as group:
            self.client = client
            watcher = group.create_task(_watch(stop))
            await self._crawl()
            watcher.cancel()
        logger.info(
            "crawled %d pages under %s in %.1f s",
            self.pages_claimed,
            self.scope.root,
            time.monotonic() - started,
        )

    async def _crawl(self) -> None:
        if self.settings.respect_robots:
            await self._load_robots()
        start_links = await self._crawl_start()
        for key in self.validators:
            self._enqueue(key, min(1, self.settings.max_depth), known=True)
        for url in start_links:
            self._enqueue(url, 1)
        if self.settings.use_sitemap and self.settings.max_depth >= 1:
            for url in await self._sitemap_pages():
                self._enqueue(url, 1, from_sitemap=True)
        async with asyncio.TaskGroup() as group:
            workers = [group.create_task(self._work()) for _ in range(self.settings.concurrency)]
            await self.frontier.join()
            for worker in workers:
                worker.cancel()

    async def _crawl_start(self) -> list[str]:
        url = self.start_url
        self.seen.add(page_key(url))
        self.visited.add(page_key(url))
        if not self.rules.allows(url):
            raise ScopeError(
                f"robots.txt of {self.scope.origin} disallows {url} for user agent "
                f"{self.settings.user_agent!r}; set ingest.respect_robots=false to crawl anyway"
            )
        self.pages_claimed = 1
        visit = await self._visit(url)
        if isinstance(visit.item, PageProblem) and visit.error is not None:
            hint = (
                "start the crawl at the URL it redirects to"
                if visit.error is ScopeError
                else "check the URL and that the site is up"
            )
            raise visit.error(f"cannot crawl from the start URL {url}: {visit.item.reason}; {hint}")
        if visit.item is not None:
            await self.emit(visit.item)
        return visit.links

    def _enqueue(
        self, url: str, depth: int, *, known: bool = False, from_sitemap: bool = False
    ) -> None:
        key = page_key(url)
        if key in self.sitemap_only and not from_sitemap:
            self.sitemap_only.discard(key)  # linked after all: move it up the queue
        elif key in self.seen or not self.scope.contains(url):
            return
        if not known and not looks_like_page(url):
            return
        if not known and depth > self.settings.max_depth:
            self.depth_cut = self.depth_cut or url
            return
        self.seen.add(key)
        if from_sitemap:
            self.sitemap_only.add(key)
        self._order += 1
        self.frontier.put_nowait((1 if from_sitemap else 0, self._order, url, depth))

    async def _work(self) -> None:
        while True:
            _, _, url, depth = await self.frontier.get()
            try:
                if page_key(url) not in self.visited:
                    self.visited.add(page_key(url))
                    await self._process(url, depth)
            finally:
                self.frontier.task_done()

    async def _process(self, url: str, depth: int) -> None:
        known = page_key(url) in self.validators
        if not self.rules.allows(url):
            if known:
                await self.emit(PageProblem(self.public(url), "disallowed by robots.txt"))
            return
        if self.pages_claimed >= self.settings.max_pages:
            self._log_limit()
            if known:
                reason = (
                    f"not revisited: the crawl stopped at max_pages={self.settings.max_pages}; "
                    "the indexed version is kept"
                )
                await self.emit(PageProblem(self.public(url), reason))
            return
        self.pages_claimed += 1
        visit = await self._visit(url)
        if visit.item is not None:
            await self.emit(visit.item)
        for link in visit.links:
            self._enqueue(link, depth + 1)
        if self.depth_cut and not self._depth_reported:
            self._depth_reported = True
            reason = (
                f"not crawled: more than max_depth={self.settings.max_depth} links from the "
                "start page (the first such page; raise --max-depth to go deeper)"
            )
            await self.emit(PageProblem(self.public(self.depth_cut), reason, limit=True))

    def _log_limit(self) -> None:
        if not self._limit_logged:
            self._limit_logged = True
            logger.warning(
                "stopped following links at max_pages=%d; raise --max-pages to crawl more",
                self.settings.max_pages,
            )

    # --- one page -------------------------------------------------------------------

    async def _visit(self, url: str) -> _Visit:
        fetched = await self._fetch_following_redirects(url)
        if isinstance(fetched, _Visit):
            return fetched
        public = self.public(fetched.url)
        if fetched.status == 304:
            return _Visit(NotModified(public))
        if fetched.status != 200:
            reason = f"HTTP {fetched.status} {fetched.reason}".strip()
            return _Visit(PageProblem(public, reason), error=FetchError)
        if fetched.content_type and fetched.content_type not in HTML_TYPES:
            reason = f"not an HTML page (Content-Type {fetched.content_type}); skipped"
            return _Visit(PageProblem(public, reason), error=ContentError)
        if fetched.problem is not None:
            return _Visit(PageProblem(public, fetched.problem), error=ContentError)
        return self._page(fetched, public)

    def _page(self, fetched: _Response, public: str) -> _Visit:
        text = decode_bytes(fetched.body, fetched.charset, sniff_html=True)
        binary = binary_reason(fetched.body, text)
        if binary is not None:
            served_as = fetched.content_type or "no Content-Type"
            reason = f"not an HTML page: served as {served_as} but binary ({binary}); skipped"
            return _Visit(PageProblem(public, reason), error=ContentError)
        links, robots_meta = _links_and_robots_meta(text, fetched.url)
        robots_meta |= _robots_header_words(fetched.headers, self.settings.user_agent)
        if self.settings.respect_robots and robots_meta & {"nofollow", "none"}:
            links = []
        if self.settings.respect_robots and robots_meta & {"noindex", "none"}:
            reason = "the page asks not to be indexed (robots noindex)"
            return _Visit(PageProblem(public, reason), links)
        document = Document(
            url=public,
            content=text,
            kind="html",
            fetched_at=time.time(),
            etag=fetched.headers.get("etag"),
            last_modified=fetched.headers.get("last-modified"),
        )
        return _Visit(document, links)

    async def _fetch_following_redirects(self, url: str) -> _Response | _Visit:
        current = url
        chain = [page_key(url)]
        for _ in range(MAX_REDIRECTS + 1):
            key = page_key(current)
            response = await self._request(current, self._conditional_headers(key))
            if isinstance(response, str):
                return _Visit(PageProblem(self.public(current), response), error=FetchError)
            location = response.headers.get("location")
            if response.status not in REDIRECT_STATUSES or not location:
                return response
            target = normalize_url(location, current)
            if target is None or not self.scope.contains(target):
                reason = f"redirects to {location}, outside the crawl scope {self.scope.root}"
                return _Visit(PageProblem(self.public(url), reason), error=ScopeError)
            if not self.rules.allows(target):
                reason = f"redirects to {target}, which robots.txt disallows"
                return _Visit(PageProblem(self.public(url), reason), error=ScopeError)
            target_key = page_key(target)
            if target_key in chain[:-1] or (target_key == key and target == current):
                reason = f"redirect loop ({' -> '.join([*chain, target_key])})"
                return _Visit(PageProblem(self.public(url), reason), error=FetchError)
            chain.append(target_key)
            if target_key != key:
                self.redirects[key] = target_key
                if target_key in self.seen:
                    looped = self._redirects_back(target_key, chain)
                    if looped is not None:
                        reason = f"redirect loop ({' -> '.join([*chain, *looped])})"
                        return _Visit(PageProblem(self.public(url), reason), error=FetchError)
                    return _Visit(None)  # that page is crawled under its own URL
                self.seen.add(target_key)
            current = target
        reason = f"more than {MAX_REDIRECTS} redirects"
        return _Visit(PageProblem(self.public(url), reason), error=FetchError)

    def _redirects_back(self, key: str, chain: list[str]) -> list[str] | None:
        """The redirects already seen from ``key`` if they lead back into ``chain``."""
        path: list[str] = []
        while (key := self.redirects.get(key, "")) and len(path) <= MAX_REDIRECTS:
            path.append(key)
            if key in chain:
                return path
        return None

    def _conditional_headers(self, key: str) -> dict[str, str]:
        validators = self.validators.get(key)
        headers: dict[str, str] = {}
        if validators is not None and validators.etag:
            headers["If-None-Match"] = validators.etag
        if validators is not None and validators.last_modified:
            headers["If-Modified-Since"] = validators.last_modified
        return headers

    async def _request(
        self, url: str, headers: Mapping[str, str], *, any_body: bool = False
    ) -> _Response | str:
        """GET ``url`` with retries; a response, or the reason no response came."""
        attempt = 0
        while True:
            await self._wait_turn()
            outcome: _Response | str
            try:
                async with asyncio.timeout(self.settings.timeout_s):
                    outcome = await self._get_once(url, headers, any_body)
            except (httpx.TransportError, TimeoutError) as exc:
                outcome = _describe_transport_error(exc, self.settings.timeout_s)
                retry_after = None
            else:
                if outcome.status not in RETRY_STATUSES:
                    return outcome
                retry_after = _retry_after_s(outcome.headers)
            if attempt >= self.settings.retries:
                return outcome
            delay = retry_after if retry_after is not None else _backoff_s(attempt)
            status = outcome if isinstance(outcome, str) else f"HTTP {outcome.status}"
            logger.info("%s: %s; retrying in %.2f s", url, status, delay)
            await asyncio.sleep(delay)
            attempt += 1

    async def _get_once(self, url: str, headers: Mapping[str, str], any_body: bool) -> _Response:
        async with self.client.stream("GET", url, headers=headers) as response:
            fetched = _Response(url, response.status_code, response.reason_phrase, response.headers)
            wanted = any_body or not fetched.content_type or fetched.content_type in HTML_TYPES
            if fetched.status == 200 and wanted:
                limit = self.settings.max_page_bytes
                fetched.body, fetched.problem = await _read_limited(response, limit)
            return fetched

    async def _wait_turn(self) -> None:
        """Per-host politeness: request starts are at least ``delay_s`` apart."""
        if self.delay_s <= 0:
            return
        async with self._turn_lock:
            now = time.monotonic()
            if self._next_turn > now:
                await asyncio.sleep(self._next_turn - now)
                now = self._next_turn
            self._next_turn = now + self.delay_s

    # --- robots.txt and sitemaps ----------------------------------------------------

    async def _load_robots(self) -> None:
        robots_url = self.scope.origin + "/robots.txt"
        response = await self._request(robots_url, {}, any_body=True)
        for _ in range(MAX_ROBOTS_REDIRECTS):  # RFC 9309 2.3.1.2: follow redirects
            location = "" if isinstance(response, str) else response.headers.get("location", "")
            target = normalize_url(location, robots_url) if location else None
            if isinstance(response, str) or response.status not in REDIRECT_STATUSES or not target:
                break
            robots_url = target
            response = await self._request(robots_url, {}, any_body=True)
        if isinstance(response, str):
            raise FetchError(
                f"cannot reach {self.scope.origin} (robots.txt: {response}); check that the "
                "server is up and the URL's host and port are right"
            )
        if response.status >= 500:
            raise FetchError(
                f"{robots_url} answered HTTP {response.status}; while robots.txt fails, "
                "crawlers must stay away (RFC 9309). Retry later, or set "
                "ingest.respect_robots=false if you own the site"
            )
        if response.status != 200 or response.problem is not None:
            # No robots.txt (4xx), too many redirects, or too large: everything is allowed.
            return
        self.rules = RobotRules.parse(decode_bytes(response.body), self.settings.user_agent)
        if self.rules.crawl_delay_s:
            wanted = min(self.rules.crawl_delay_s, CRAWL_DELAY_CAP_S)
            self.delay_s = max(self.delay_s, wanted)
            logger.info("robots.txt asks for %.1f s between requests", wanted)

    async def _sitemap_pages(self) -> list[str]:
        """In-scope page URLs from robots.txt sitemaps or the usual sitemap.xml places."""
        candidates = [
            *self.rules.sitemaps,
            self.scope.origin + "/sitemap.xml",
            self.scope.root + "sitemap.xml",
        ]
        pending = [url for url in map(normalize_url, candidates) if url]
        visited: set[str] = set()
        in_scope: list[str] = []
        budget = self.settings.max_pages  # more seeds than pages to fetch would be wasted
        while pending and len(in_scope) < budget:
            sitemap_url = pending.pop(0)
            # Only the start host: a sitemap elsewhere is another origin to trust.
            if sitemap_url in visited or not sitemap_url.startswith(self.scope.origin + "/"):
                continue
            if len(visited) >= MAX_SITEMAPS:
                await self._sitemap_problem(sitemap_url, f"more than {MAX_SITEMAPS} sitemaps")
                break
            visited.add(sitemap_url)
            response = await self._request(sitemap_url, {}, any_body=True)
            if isinstance(response, str) or response.status != 200:
                continue  # a missing sitemap is the common case, not a problem
            if response.problem is not None:
                await self._sitemap_problem(sitemap_url, response.problem)
                continue
            sitemap = parse_sitemap(response.body, max_entries=budget - len(in_scope))
            urls = (normalize_url(url) for url in sitemap.pages)
            in_scope += [url for url in urls if url and self.scope.contains(url)]
            pending += [url for url in map(normalize_url, sitemap.sitemaps) if url]
            if sitemap.truncated:
                await self._sitemap_problem(sitemap_url, f"more entries than max_pages={budget}")
        if in_scope:
            logger.info("sitemaps list %d pages in scope", len(in_scope))
        return in_scope[:budget]

    async def _sitemap_problem(self, sitemap_url: str, what: str) -> None:
        reason = f"sitemap only partly used: {what}; the crawl follows links beyond it"
        await self.emit(PageProblem(sitemap_url, reason, limit=True))


_ROBOTS_DIRECTIVES = frozenset({"all", "noindex", "nofollow", "none", "noarchive", "nosnippet"})


def _robots_header_words(headers: httpx.Headers, user_agent: str) -> set[str]:
    """``X-Robots-Tag`` directives meant for every crawler or for ours.

    ``X-Robots-Tag: otherbot: noindex`` addresses another crawler and is ignored.
    """
    product = user_agent.split("/", 1)[0].strip().lower()
    words: set[str] = set()
    for value in headers.get_list("x-robots-tag"):
        target, colon, rest = value.partition(":")
        if colon and target.strip().lower() not in _ROBOTS_DIRECTIVES | {"unavailable_after"}:
            if target.strip().lower() not in (product, "*"):
                continue
            value = rest
        words.update(word.strip().lower() for word in value.split(","))
    return words


def _links_and_robots_meta(html: str, page_url: str) -> tuple[list[str], set[str]]:
    """Absolute, normalised ``<a href>`` targets of a page and its meta robots words."""
    tree = LexborHTMLParser(flatten_deep_nesting(html))
    base = page_url
    base_node = tree.css_first("base[href]")
    if base_node is not None:
        base = normalize_url(base_node.attributes.get("href") or "", page_url) or page_url
    links: list[str] = []
    for anchor in tree.css("a[href]"):
        url = normalize_url(anchor.attributes.get("href") or "", base)
        if url is not None:
            links.append(url)
    robots_meta: set[str] = set()
    for meta in tree.css("meta[name]"):
        if (meta.attributes.get("name") or "").strip().lower() == "robots":
            content = (meta.attributes.get("content") or "").lower()
            robots_meta.update(word.strip() for word in content.split(","))
    return links, robots_meta
