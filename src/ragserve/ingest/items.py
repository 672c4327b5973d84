"""What a source yields, shared by the folder reader and the crawler.

These types live below both :mod:`ragserve.ingest.sources` and
:mod:`ragserve.ingest.crawl` so that neither imports the other for them
(``sources`` dispatches to ``crawl``; ``crawl`` only needs the item types).
"""

from __future__ import annotations

from dataclasses import dataclass

from ragserve.documents import Document

GONE_PREFIXES = ("HTTP 404", "HTTP 410")


@dataclass(frozen=True, slots=True)
class PageProblem:
    """A page that could not be ingested, with a reason a human understands.

    ``limit`` marks a crawl bound reached (max_depth, a sitemap cap) rather than a
    failure: it is reported, but hides no indexed page, so vanished pages may
    still be deleted.
    """

    url: str
    reason: str
    limit: bool = False


@dataclass(frozen=True, slots=True)
class NotModified:
    """A conditional request said the page is unchanged: keep what the index has."""

    url: str


SourceItem = Document | PageProblem | NotModified


@dataclass(frozen=True, slots=True)
class Validators:
    """What the index knows of a page's version, for conditional requests on re-crawl."""

    etag: str | None
    last_modified: str | None


def is_gone(problem: PageProblem) -> bool:
    """True when the site says the page no longer exists (HTTP 404 or 410)."""
    return problem.reason.startswith(GONE_PREFIXES)


def too_large_reason(limit: int) -> str:
    """The one reason given for a page over ``max_page_bytes``, from a folder or a crawl."""
    return f"page is larger than {limit} bytes; raise --max-page-bytes to ingest it"
