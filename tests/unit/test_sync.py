"""Incremental sync rules, without Ray or a store."""

from __future__ import annotations

import pytest

from ragserve.documents import Document
from ragserve.ingest.sync import SyncPlan
from ragserve.store.base import PageState

pytestmark = pytest.mark.unit


def state(url: str, *hashes: str, points: int = 3, chunk_count: int = 3) -> PageState:
    return PageState(
        url=url, document_hashes=frozenset(hashes), points=points, chunk_count=chunk_count
    )


def test_unchanged_complete_page_is_skipped() -> None:
    doc = Document(url="https://s/a", content="same")
    plan = SyncPlan(stored={doc.url: state(doc.url, doc.content_hash)}, prefix="https://s/")
    assert plan.offer(doc) is False
    assert plan.skipped == [doc.url]
    assert plan.to_write == {}


def test_changed_page_is_written() -> None:
    doc = Document(url="https://s/a", content="new text")
    plan = SyncPlan(stored={doc.url: state(doc.url, "oldhash")}, prefix="https://s/")
    assert plan.offer(doc) is True
    assert plan.to_write == {doc.url: doc.content_hash}


def test_half_written_page_from_a_killed_ingest_is_rewritten() -> None:
    doc = Document(url="https://s/a", content="text")
    half = state(doc.url, doc.content_hash, points=2, chunk_count=5)
    plan = SyncPlan(stored={doc.url: half}, prefix="https://s/")
    assert plan.offer(doc) is True


def test_page_with_two_stored_versions_is_rewritten() -> None:
    doc = Document(url="https://s/a", content="text")
    both = state(doc.url, doc.content_hash, "old", points=6, chunk_count=3)
    plan = SyncPlan(stored={doc.url: both}, prefix="https://s/")
    assert plan.offer(doc) is True


def test_vanished_pages_are_limited_to_the_source_prefix() -> None:
    stored = {
        "https://s/docs/a": state("https://s/docs/a", "h"),
        "https://s/docs/gone": state("https://s/docs/gone", "h"),
        "https://other/x": state("https://other/x", "h"),
    }
    plan = SyncPlan(stored=stored, prefix="https://s/docs/")
    plan.not_modified("https://s/docs/a")
    assert plan.vanished(listing_complete=True) == ["https://s/docs/gone"]


def test_incomplete_listing_deletes_nothing() -> None:
    plan = SyncPlan(stored={"https://s/a": state("https://s/a", "h")}, prefix="https://s/")
    assert plan.vanished(listing_complete=False) == []


def test_failed_page_is_never_reported_vanished() -> None:
    plan = SyncPlan(stored={"https://s/a": state("https://s/a", "h")}, prefix="https://s/")
    plan.problem("https://s/a")
    assert plan.vanished(listing_complete=True) == []


def test_duplicate_offers_of_a_url_write_once() -> None:
    doc = Document(url="https://s/a", content="x")
    plan = SyncPlan(stored={}, prefix="https://s/")
    assert plan.offer(doc) is True
    assert plan.offer(doc) is False
    assert len(plan.to_write) == 1
