"""The SSRF guard against real loopback servers: spellings, redirects, DNS rebinding.

Only 127.0.0.1 is ever dialled. Where a test needs a name that resolves to a
public address, the resolver is replaced for that one name, and the code under
test is arranged so that a broken guard would dial loopback, never the public
address.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from tests.support.site_server import SiteServer
from tests.unit.test_address_guard import LOOPBACK_SPELLINGS

from ragserve.config import IngestSettings
from ragserve.documents import Document
from ragserve.errors import ScopeError
from ragserve.ingest.crawl import _GuardedBackend
from ragserve.ingest.items import PageProblem
from ragserve.ingest.sources import iter_source

pytestmark = pytest.mark.integration

PUBLIC = "93.184.216.34"  # example.com; never dialled, only returned by the fake resolver


class Listener:
    """A bare TCP listener on 127.0.0.1 that counts the connections it is offered."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]

    def connections(self) -> int:
        count = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return count
            conn.close()
            count += 1


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.sock.close()


@pytest.fixture
def site() -> Iterator[SiteServer]:
    with SiteServer() as server:
        yield server


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
def test_crawl_of_any_loopback_spelling_is_refused_before_a_request(
    host: str, site: SiteServer
) -> None:
    site.set("/docs/", "<p>secret</p>")

    with pytest.raises(ScopeError, match="--allow-private"):
        list(iter_source(f"http://{url_host(host)}:{site.port}/docs/", IngestSettings()))

    assert site.requests == []


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
def test_connect_time_guard_refuses_every_loopback_spelling(host: str, listener: Listener) -> None:
    with pytest.raises(ScopeError, match="--allow-private"):
        asyncio.run(_GuardedBackend().connect_tcp(host, listener.port))

    assert listener.connections() == 0


def fake_resolver(
    monkeypatch: pytest.MonkeyPatch, name: str, answers: list[list[str]]
) -> list[int]:
    """Resolve ``name`` to ``answers[i]`` on the i-th call (the last one repeats)."""
    real = socket.getaddrinfo
    calls = [0]

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != name:
            return real(host, port, *args, **kwargs)
        addresses = answers[min(calls[0], len(answers) - 1)]
        calls[0] += 1
        family: Callable[[str], socket.AddressFamily] = lambda a: (  # noqa: E731
            socket.AF_INET6 if ":" in a else socket.AF_INET
        )
        return [(family(a), socket.SOCK_STREAM, 6, "", (a, int(port or 0))) for a in addresses]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return calls


def test_dns_rebinding_to_loopback_is_refused_at_connect_time(
    monkeypatch: pytest.MonkeyPatch, site: SiteServer
) -> None:
    # The up-front check sees a public address; the connection would go to loopback.
    site.set("/docs/", "<p>secret</p>")
    calls = fake_resolver(monkeypatch, "docs.rebind.test", [[PUBLIC], ["127.0.0.1"]])

    with pytest.raises(ScopeError, match=r"docs\.rebind\.test.*127\.0\.0\.1"):
        list(iter_source(f"http://docs.rebind.test:{site.port}/docs/", IngestSettings()))

    assert calls[0] >= 2  # resolved again when connecting
    assert site.requests == []


def test_a_name_with_a_private_address_among_its_answers_is_refused_without_dialling(
    monkeypatch: pytest.MonkeyPatch, listener: Listener
) -> None:
    # Loopback first: if the guard let the name through, it would dial loopback, not PUBLIC.
    fake_resolver(monkeypatch, "mixed.test", [["127.0.0.1", PUBLIC]])

    with pytest.raises(ScopeError, match=r"127\.0\.0\.1"):
        asyncio.run(_GuardedBackend().connect_tcp("mixed.test", listener.port))
    with pytest.raises(ScopeError, match="--allow-private"):
        list(iter_source(f"http://mixed.test:{listener.port}/", IngestSettings()))

    assert listener.connections() == 0


@pytest.mark.parametrize(
    "location",
    [
        "http://2130706433:{port}/docs/b.html",
        "http://0x7f.1:{port}/docs/b.html",
        "http://[::ffff:127.0.0.1]:{port}/docs/b.html",
        "http://localhost:{port}/docs/b.html",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
    ],
)
def test_redirect_to_another_spelling_or_the_metadata_service_is_not_followed(
    location: str, site: SiteServer
) -> None:
    # Even with private addresses allowed (a local docs site), a redirect leaves the scope's
    # one origin only as a reported problem: no hop goes to another host.
    site.set("/docs/", '<a href="a.html">a</a>')
    site.redirect("/docs/a.html", location.format(port=site.port))
    site.set("/docs/b.html", "<p>b</p>")

    items = list(iter_source(site.url("/docs/"), IngestSettings(allow_private=True, retries=0)))

    reasons = {item.url: item.reason for item in items if isinstance(item, PageProblem)}
    assert "outside the crawl scope" in reasons[site.url("/docs/a.html")]
    assert [item.url for item in items if isinstance(item, Document)] == [site.url("/docs/")]
    assert site.hits("/docs/b.html") == 0
