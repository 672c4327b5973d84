"""A real HTTP server on 127.0.0.1 for crawler tests and benchmarks.

Serves an in-memory site (path → ``Page``) and/or a directory, from a
background thread on an ephemeral port, over HTTP/1.1 with keep-alive. Pages
can redirect, fail N times before recovering, answer slowly, and carry an
ETag / Last-Modified that the server honours with 304 on conditional GETs.
Every request is recorded, so tests can assert on what a crawler fetched.

    with SiteServer({"/docs/": "<a href='a.html'>a</a>", "/docs/a.html": "hi"}) as site:
        crawl(site.url("/docs/"))
        assert site.hits("/docs/a.html") == 1

Run standalone to serve a folder: ``python tests/support/site_server.py DIR [PORT]``.
"""

from __future__ import annotations

import mimetypes
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

HTML = "text/html; charset=utf-8"


@dataclass
class Page:
    """One in-memory response. ``body`` str is encoded as UTF-8."""

    body: str | bytes = b""
    status: int = 200
    content_type: str | None = HTML
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    #: Answer ``fail_status`` this many times before answering normally.
    fail_first: int = 0
    fail_status: int = 500
    fail_headers: dict[str, str] = field(default_factory=dict)
    #: Hold the answer until this event is set (at most ``wait_timeout_s``; a
    #: timeout is counted in ``SiteServer.wait_timeouts`` and sets the event), so
    #: a test can make a crawl wait for something else to happen first.
    wait_for: threading.Event | None = None
    wait_timeout_s: float = 60.0

    def body_bytes(self) -> bytes:
        return self.body.encode("utf-8") if isinstance(self.body, str) else self.body


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]


class SiteServer:
    """An HTTP server for tests; use as a context manager."""

    def __init__(
        self,
        pages: Mapping[str, Page | str | bytes] | None = None,
        root: Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.pages: dict[str, Page] = {}
        for path, page in (pages or {}).items():
            self.set(path, page)
        self.root = root
        self.requests: list[Request] = []
        #: Answers given because a page's ``wait_for`` event never came.
        self.wait_timeouts = 0
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server = _Server((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------

    def start(self) -> SiteServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="site-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> SiteServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.base_url + path

    # --- content -------------------------------------------------------------------

    def set(self, path: str, page: Page | str | bytes) -> None:
        self.pages[path] = page if isinstance(page, Page) else Page(body=page)

    def redirect(self, path: str, location: str, status: int = 301) -> None:
        self.set(path, Page(status=status, content_type=None, headers={"Location": location}))

    def robots(self, text: str) -> None:
        self.set("/robots.txt", Page(body=text, content_type="text/plain"))

    def sitemap(self, urls: Iterable[str], path: str = "/sitemap.xml") -> None:
        entries = "".join(f"<url><loc>{url}</loc></url>" for url in urls)
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entries}</urlset>'
        )
        self.set(path, Page(body=xml, content_type="application/xml"))

    def sitemap_index(self, sitemap_urls: Iterable[str], path: str = "/sitemap.xml") -> None:
        entries = "".join(f"<sitemap><loc>{url}</loc></sitemap>" for url in sitemap_urls)
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?><sitemapindex '
            f'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entries}</sitemapindex>'
        )
        self.set(path, Page(body=xml, content_type="application/xml"))

    # --- what was asked ------------------------------------------------------------

    def hits(self, path: str) -> int:
        with self._lock:
            return self._counts[path]

    def fetched_paths(self) -> set[str]:
        with self._lock:
            return {request.path for request in self.requests}

    def _record(self, path: str, headers: dict[str, str]) -> int:
        with self._lock:
            self.requests.append(Request(path, headers))
            self._counts[path] += 1
            return self._counts[path]

    # --- answering -----------------------------------------------------------------

    def respond(self, target: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        """Status, headers and body for a GET of ``target`` (path + query)."""
        path = urlsplit(target).path
        count = self._record(target if target in self.pages else path, headers)
        page = self.pages.get(target) or self.pages.get(path) or self._from_root(path)
        if page is None:
            return 404, {"Content-Type": "text/plain"}, b"not found"
        if page.delay_s:
            time.sleep(page.delay_s)
        if page.wait_for is not None and not page.wait_for.wait(page.wait_timeout_s):
            with self._lock:
                self.wait_timeouts += 1
            page.wait_for.set()  # one timeout is enough to fail a test: release the rest
        if count <= page.fail_first:
            return page.fail_status, {"Content-Type": "text/plain", **page.fail_headers}, b"oops"
        out_headers = dict(page.headers)
        if page.content_type:
            out_headers["Content-Type"] = page.content_type
        if page.status == 200 and _not_modified(out_headers, headers):
            return 304, {k: v for k, v in out_headers.items() if k != "Content-Type"}, b""
        return page.status, out_headers, page.body_bytes()

    def _from_root(self, path: str) -> Page | None:
        if self.root is None:
            return None
        relative = unquote(path).lstrip("/")
        candidate = (self.root / relative).resolve()
        if not candidate.is_relative_to(self.root.resolve()):
            return None
        if candidate.is_dir():
            candidate = candidate / "index.html"
        if not candidate.is_file():
            return None
        stat = candidate.stat()
        content_type = mimetypes.guess_type(candidate.name)[0] or "application/octet-stream"
        if content_type.startswith("text/"):
            content_type += "; charset=utf-8"
        return Page(
            body=candidate.read_bytes(),
            content_type=content_type,
            headers={
                "ETag": f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"',
                "Last-Modified": formatdate(stat.st_mtime, usegmt=True),
            },
        )


def _not_modified(response_headers: Mapping[str, str], request_headers: Mapping[str, str]) -> bool:
    etag = response_headers.get("ETag")
    if_none_match = request_headers.get("if-none-match")
    if etag and if_none_match:
        return etag in [tag.strip() for tag in if_none_match.split(",")] or if_none_match == "*"
    last_modified = response_headers.get("Last-Modified")
    if_modified_since = request_headers.get("if-modified-since")
    if last_modified and if_modified_since:
        try:
            return parsedate_to_datetime(last_modified) <= parsedate_to_datetime(if_modified_since)
        except (TypeError, ValueError):
            return False
    return False


class _Server(ThreadingHTTPServer):
    """Quiet when a client hangs up: a crawler drops idle keep-alive connections."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


def _handler_for(site: SiteServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._answer(send_body=True)

        def do_HEAD(self) -> None:
            self._answer(send_body=False)

        def _answer(self, send_body: bool) -> None:
            request_headers = {key.lower(): value for key, value in self.headers.items()}
            status, headers, body = site.respond(self.path, request_headers)
            try:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if send_body and body:
                    self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


if __name__ == "__main__":
    folder = Path(sys.argv[1])
    port_wanted = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    with SiteServer(root=folder, port=port_wanted) as server:
        print(f"serving {folder} at {server.base_url}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
