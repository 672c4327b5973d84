"""What a site tells crawlers: robots.txt rules and sitemap page lists.

Parsing only; the crawler fetches (through its guarded client) and decides.
robots.txt follows RFC 9309 as far as ``urllib.robotparser`` goes: a missing
file (4xx) allows everything. Sitemaps may be plain or gzipped XML, a
``urlset`` of pages or a ``sitemapindex`` of further sitemaps.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import cast
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
    """The ``<loc>`` entries of one sitemap file; ``truncated`` if it listed more."""

    pages: list[str]
    sitemaps: list[str]
    truncated: bool = False


#: How much XML (or gzip) is handed to the parser at a time.
_PARSE_STEP = 64 * 1024


def parse_sitemap(raw: bytes, max_entries: int | None = None) -> Sitemap:
    """Pages and child sitemaps listed in ``raw``; empty if it is not a sitemap.

    Parsed as a stream and stopped after ``max_entries`` locations, so a
    million-entry file costs no more memory than the entries kept. A broken
    sitemap only costs its seeds, so parse errors are logged, not raised.
    """
    parser: ElementTree.XMLPullParser[ElementTree.Element] = ElementTree.XMLPullParser(
        events=("start", "end")
    )
    locs: list[str] = []
    root_tag = ""
    try:
        for piece in _xml_pieces(raw):
            parser.feed(piece)
            for queued in parser.read_events():
                # "start"/"end" events are (event, element) pairs.
                event, element = cast(tuple[str, ElementTree.Element], queued)
                name = _local_name(element.tag)
                if event == "start":
                    root_tag = root_tag or name
                    continue
                text = (element.text or "").strip()
                if name == "loc" and text:
                    locs.append(text)
                    if max_entries is not None and len(locs) > max_entries:
                        return _sitemap(root_tag, locs[:max_entries], truncated=True)
                if name in ("url", "sitemap"):
                    element.clear()
        parser.close()
    except (ElementTree.ParseError, zlib.error, ValueError) as exc:
        logger.info("ignoring a sitemap that is not valid XML: %s", exc)
        return Sitemap(pages=[], sitemaps=[])
    return _sitemap(root_tag, locs, truncated=False)


def _sitemap(root_tag: str, locs: list[str], *, truncated: bool) -> Sitemap:
    if root_tag == "sitemapindex":
        return Sitemap(pages=[], sitemaps=locs, truncated=truncated)
    return Sitemap(pages=locs, sitemaps=[], truncated=truncated)


def _xml_pieces(raw: bytes) -> Iterator[bytes]:
    """``raw`` in parser-sized pieces, gunzipped on the fly (never past MAX_SITEMAP_BYTES)."""
    if raw[:2] != b"\x1f\x8b":
        for offset in range(0, len(raw), _PARSE_STEP):
            yield raw[offset : offset + _PARSE_STEP]
        return
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
    produced = 0
    pending = raw
    while pending:
        piece = inflater.decompress(pending, _PARSE_STEP)
        pending = inflater.unconsumed_tail
        produced += len(piece)
        if produced > MAX_SITEMAP_BYTES:
            raise ValueError(f"gzipped sitemap expands beyond {MAX_SITEMAP_BYTES} bytes")
        yield piece
    yield inflater.flush()


def _local_name(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]
