"""URLs of a crawl: normalisation, the crawl scope, and the private-address guard.

Normalisation decides when two links are the same page, so it is also what
keeps document URLs (and therefore chunk ids) stable from one crawl to the
next. The rules, in order:

* relative links are resolved against the page (or its ``<base href>``);
* only ``http`` and ``https`` are followed; user info (``user:pass@``) and the
  fragment are dropped; scheme and host are lower-cased; default ports go;
* dot segments are resolved and unsafe characters percent-encoded, so
  ``a b.html`` and ``a%20b.html`` are one page;
* the query string is kept (some sites route pages by it) minus tracking
  parameters (``utm_*``, ``gclid``, ``fbclid``, ...);
* ``dir/index.html`` and ``dir/index.htm`` are the same page as ``dir/``:
  :func:`page_key` strips the file name, and the crawler fetches each key
  once, using whichever form it met first (so it only ever requests URLs the
  site itself links to) and names the document by the key. Servers that do
  not serve ``index.html`` for ``dir/`` are rare; on them the document URL
  ``dir/`` would not open, which is the price of stable, duplicate-free ids.

The scope of a crawl is the start URL's scheme, host and port plus a path
prefix: the start URL's directory. A last path segment with a dot in it is a
file name (``/docs/index.html`` → ``/docs/``); one without is a directory
(``/docs`` → ``/docs/``, and ``/docs`` itself stays in scope).
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import socket
from dataclasses import dataclass
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

from ragserve.errors import FetchError, ScopeError

logger = logging.getLogger(__name__)

ALLOW_PRIVATE_HINT = (
    "pass --allow-private (ingest.allow_private=true) if you trust this address, "
    "e.g. for a docs site on localhost or your intranet"
)

_TRACKING_PARAMS = frozenset(
    {"gclid", "fbclid", "dclid", "msclkid", "mc_cid", "mc_eid", "_ga", "_gl", "yclid", "ref_src"}
)
_INDEX_FILES = ("index.html", "index.htm")
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Links ending in these are assets or downloads, not pages: never followed, never reported.
_NON_PAGE_SUFFIXES = (
    ".png .jpg .jpeg .gif .svg .webp .ico .bmp .tif .tiff .avif .css .js .mjs .map .json "
    ".xml .txt .rst .md .csv .tsv .pdf .zip .gz .tgz .bz2 .xz .tar .whl .egg .exe .dmg .deb "
    ".rpm .msi .woff .woff2 .ttf .otf .eot .mp3 .mp4 .webm .ogg .wav .mov .avi .ipynb .py "
    ".yaml .yml .toml .doc .docx .xls .xlsx .ppt .pptx .epub .iso .bin"
)
_NON_PAGE_EXTENSIONS = frozenset(_NON_PAGE_SUFFIXES.split())
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"


def normalize_url(url: str, base: str | None = None) -> str | None:
    """The canonical form of ``url`` (resolved against ``base``), or None.

    None means "not a crawlable web URL": another scheme (``mailto:``,
    ``javascript:``), a bad port, or no host. See the module docstring.
    """
    raw = url.strip()
    if base and raw and raw[0] not in "?#":
        # Such links resolve the same against any page of a directory, so the
        # cache below is shared by the pages of a directory (their nav bars).
        without_query = base.split("?", 1)[0].split("#", 1)[0]
        if without_query.count("/") >= 3:  # scheme://host/...
            base = without_query[: without_query.rfind("/") + 1]
    return _normalize(raw, base)


@functools.lru_cache(maxsize=65_536)
def _normalize(raw: str, base: str | None) -> str | None:
    try:
        joined = urljoin(base, raw) if base else raw
        parts = urlsplit(joined)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = quote(_remove_dot_segments(parts.path or "/"), safe=_PATH_SAFE)
    return urlunsplit((scheme, netloc, path, _clean_query(parts.query), ""))


def page_key(url: str) -> str:
    """The identity of a normalised URL's page: ``dir/index.html`` → ``dir/``."""
    parts = urlsplit(url)
    path = parts.path
    for name in _INDEX_FILES:
        if path.endswith("/" + name):
            path = path[: -len(name)]
            break
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def looks_like_page(url: str) -> bool:
    """False for links to images, stylesheets, scripts, downloads: not worth a request."""
    last_segment = urlsplit(url).path.rsplit("/", 1)[-1].lower()
    dot = last_segment.rfind(".")
    return dot < 0 or last_segment[dot:] not in _NON_PAGE_EXTENSIONS


@dataclass(frozen=True, slots=True)
class Scope:
    """Where a crawl may go: one origin (scheme, host, port) and a path prefix."""

    origin: str
    prefix: str

    @classmethod
    def from_start_url(cls, start_url: str) -> Scope:
        """The scope rooted at ``start_url``; ScopeError if it is not an http(s) URL."""
        normalized = normalize_url(start_url)
        if normalized is None:
            raise ScopeError(
                f"cannot crawl {start_url!r}: only http:// and https:// URLs with a host "
                "are crawled; pass a URL like https://docs.example.com/ or a local folder path"
            )
        parts = urlsplit(normalized)
        return cls(origin=f"{parts.scheme}://{parts.netloc}", prefix=_directory_of(parts.path))

    @property
    def root(self) -> str:
        """The URL every in-scope URL starts with (``https://host/docs/``)."""
        return self.origin + self.prefix

    @property
    def host(self) -> str:
        return urlsplit(self.origin).hostname or ""

    @property
    def port(self) -> int:
        parts = urlsplit(self.origin)
        return parts.port or _DEFAULT_PORTS[parts.scheme]

    def contains(self, url: str) -> bool:
        """True if the normalised ``url`` is on this origin under the prefix."""
        parts = urlsplit(url)
        if f"{parts.scheme}://{parts.netloc}" != self.origin:
            return False
        return parts.path.startswith(self.prefix) or parts.path == self.prefix.rstrip("/")


def _directory_of(path: str) -> str:
    if path.endswith("/"):
        return path
    head, _, last = path.rpartition("/")
    return f"{head}/" if "." in last else f"{path}/"


def public_url(url: str, scope: Scope, base_url: str | None) -> str:
    """``url`` as the public site names it: the crawl root replaced by ``base_url``.

    Lets a crawl of a local or staging copy index the URLs readers will open.
    """
    if not base_url or not url.startswith(scope.origin):
        return url
    root = scope.root
    if url.startswith(root):
        return _with_slash(base_url) + url[len(root) :]
    if url == root.rstrip("/"):
        return base_url.rstrip("/")
    return url


def crawl_url(url: str, scope: Scope, base_url: str | None) -> str:
    """The inverse of :func:`public_url`: where to fetch a URL the index knows."""
    if not base_url:
        return url
    base = _with_slash(base_url)
    if url.startswith(base):
        return scope.root + url[len(base) :]
    if url == base.rstrip("/"):
        return scope.root.rstrip("/")
    return url


def _with_slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"


def _remove_dot_segments(path: str) -> str:
    output: list[str] = []
    segments = path.split("/")
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == ".":
            if last:
                output.append("")
        elif segment == "..":
            if len(output) > 1:
                output.pop()
            if last:
                output.append("")
        else:
            output.append(segment)
    result = "/".join(output)
    return result if result.startswith("/") else "/" + result


def _clean_query(query: str) -> str:
    if not query:
        return ""
    kept = [
        pair
        for pair in query.split("&")
        if pair and not _is_tracking(pair.split("=", 1)[0].lower())
    ]
    return "&".join(kept)


def _is_tracking(name: str) -> bool:
    return name.startswith("utm_") or name in _TRACKING_PARAMS


# --- the private-address (SSRF) guard ------------------------------------------------


#: Ranges that ``ipaddress``'s ``is_global`` lets through on some Python versions, or
#: that only carry other addresses: documentation, benchmarking, 6to4 relays, IETF
#: assignments, IPv4-compatible and -translated IPv6, local-use NAT64, Teredo,
#: site-local, SRv6 SIDs. Judged not public whatever they embed.
_NEVER_PUBLIC = tuple(
    ipaddress.ip_network(network)
    for network in [
        *["0.0.0.0/8", "100.64.0.0/10", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24"],
        *["198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4"],
        *["::/96", "::ffff:0:0:0/96", "64:ff9b:1::/48", "100::/64", "2001::/32"],
        *["2001:db8::/32", "3fff::/20", "5f00::/16", "fec0::/10"],
    ]
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def is_public_address(address: str) -> bool:
    """True for globally routable unicast addresses.

    Refuses loopback, private (RFC 1918, ULA), link-local (cloud metadata at
    169.254.169.254 lives there), CGNAT, multicast, reserved, documentation
    and unspecified addresses. An IPv6 address that carries an IPv4 one
    (IPv4-mapped ``::ffff:a.b.c.d``, NAT64 ``64:ff9b::a.b.c.d``, 6to4
    ``2002:aabb:ccdd::``) is judged as the IPv4 it reaches; the deprecated
    or local forms that embed one (IPv4-compatible ``::a.b.c.d``, translated
    ``::ffff:0:a.b.c.d``, local-use NAT64, Teredo) are never public.
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            ip = embedded
    if any(ip.version == network.version and ip in network for network in _NEVER_PUBLIC):
        return False
    return ip.is_global and not ip.is_multicast


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a packet to ``ip`` is delivered to, for the forms that route one."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to; FetchError if it does not resolve."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchError(
            f"cannot resolve host {host!r} ({exc}); check the URL's spelling and your "
            "network or DNS settings"
        ) from exc
    return sorted({str(info[4][0]) for info in infos})


def check_addresses(host: str, addresses: list[str], allow_private: bool) -> None:
    """ScopeError unless every address of ``host`` is public (or private is allowed).

    All addresses must pass, not just one: a host resolving to both a public and
    a private address would otherwise let a request land on the private one.
    """
    if allow_private:
        return
    private = [address for address in addresses if not is_public_address(address)]
    if private:
        raise ScopeError(
            f"refusing to crawl {host}: it resolves to a private or local address "
            f"({', '.join(private)}); {ALLOW_PRIVATE_HINT}"
        )


def guard_host(host: str, port: int, allow_private: bool) -> list[str]:
    """Resolve ``host`` and apply :func:`check_addresses`; returns the addresses."""
    addresses = resolve_host(host, port)
    check_addresses(host, addresses, allow_private)
    return addresses
