"""Incremental sync: decide, per page, whether to skip, (re)write or delete.

Pure bookkeeping over what the source yields and what the index holds
(``PageState``), so the rules are unit-tested without Ray or Qdrant:

- a page whose stored version is complete and has the same content hash (or
  that answered 304 Not Modified) is skipped: 0 points written;
- a new or changed page is written; its old version is deleted only after the
  new chunks are stored, so a page is never missing from the index;
- a stored page under the source's prefix that the source no longer yields is
  deleted, but only when the listing was complete: a crawl cut short by
  ``max_pages`` or a page that failed to fetch must not wipe good data;
- a page left half-written by a killed ingest is incomplete and is rewritten.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ragserve.documents import Document
from ragserve.store.base import PageState


@dataclass
class SyncPlan:
    """What one ingest run will do; filled while the source streams."""

    stored: Mapping[str, PageState]
    prefix: str
    #: url -> content hash of each page to (re)write: bookkeeping only, the pages
    #: themselves stream on to the embedder (memory stays flat in corpus size).
    to_write: dict[str, str] = field(default_factory=dict)
    #: url -> validators and ingest time of each page to write, stored with its chunks.
    page_meta: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)

    def offer(self, document: Document) -> bool:
        """Record a fetched page; True when it must be (re)written."""
        if document.url in self.seen:
            return False
        self.seen.add(document.url)
        state = self.stored.get(document.url)
        if state is not None and state.complete and document.content_hash in state.document_hashes:
            self.skipped.append(document.url)
            return False
        self.to_write[document.url] = document.content_hash
        return True

    def not_modified(self, url: str) -> None:
        """A 304: the stored version stays (validators are sent for complete pages only)."""
        self.seen.add(url)
        self.skipped.append(url)

    def problem(self, url: str) -> None:
        """A page that failed this time keeps whatever the index has."""
        self.failed.add(url)

    def vanished(self, listing_complete: bool) -> list[str]:
        """Stored pages under the prefix that the source no longer has."""
        if not listing_complete:
            return []
        return sorted(
            url
            for url in self.stored
            if url.startswith(self.prefix) and url not in self.seen and url not in self.failed
        )
