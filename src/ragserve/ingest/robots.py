"""What a site tells crawlers: robots.txt rules and sitemap page lists.

Parsing only; the crawler fetches (through its guarded client) and decides.
robots.txt follows RFC 9309 as far as ``urllib.robotparser`` goes: a missing
file (4xx) allows everything. Sitemaps may be plain or gzipped XML, a
``urlset`` of pages or a ``sitemapindex`` of further sitemaps.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field
from urllib.robotparser import RobotFileParser
from xml.etree import ElementTree

logger = logging.getLogger(__name__)

#: A gzipped sitemap may not expand beyond this (the sitemap protocol caps files at 50 MB).
MAX_SITEMAP_BYTES = 50_000_000


@dataclass(slots=True)
class RobotRules:
    """The rules of one robots.txt for one user agent."""

    user_agent: str
    _parser: RobotFileParser | None = None
    sitemaps: list[str] = field(default_factory=list)
    crawl_delay_s: float | None = None

    @classmethod
    def allow_all(cls, user_agent: str) -> RobotRules:
        return cls(user_agent=user_agent)

    @classmethod
    def parse(cls, text: str, user_agent: str) -> RobotRules:
        parser = RobotFileParser()
        parser.parse(text.splitlines())
        delay = parser.crawl_delay(user_agent)
        return cls(
            user_agent=user_agent,
            _parser=parser,
            sitemaps=list(parser.site_maps() or []),
            crawl_delay_s=float(delay) if delay is not None else None,
        )

    def allows(self, url: str) -> bool:
        return self._parser is None or self._parser.can_fetch(self.user_agent, url)


@dataclass(frozen=True, slots=True)
class Sitemap:
    """The ``<loc>`` entries of one sitemap file."""

    pages: list[str]
    sitemaps: list[str]


def parse_sitemap(raw: bytes) -> Sitemap:
    """Pages and child sitemaps listed in ``raw``; empty if it is not a sitemap.

    A broken sitemap only costs its seeds, so parse errors are logged, not raised.
    """
    try:
        data = _gunzip(raw) if raw[:2] == b"\x1f\x8b" else raw
        root = ElementTree.fromstring(data)
    except (ElementTree.ParseError, zlib.error, ValueError) as exc:
        logger.info("ignoring a sitemap that is not valid XML: %s", exc)
        return Sitemap(pages=[], sitemaps=[])
    locs = [
        (element.text or "").strip()
        for element in root.iter()
        if _local_name(element.tag) == "loc" and (element.text or "").strip()
    ]
    if _local_name(root.tag) == "sitemapindex":
        return Sitemap(pages=[], sitemaps=locs)
    return Sitemap(pages=locs, sitemaps=[])


def _gunzip(raw: bytes) -> bytes:
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
    data = inflater.decompress(raw, MAX_SITEMAP_BYTES)
    if inflater.unconsumed_tail:
        raise ValueError(f"gzipped sitemap expands beyond {MAX_SITEMAP_BYTES} bytes")
    return data


def _local_name(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]
