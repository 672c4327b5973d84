"""Point ids: deterministic, one per chunk (the tutorial kept one per page)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ragserve.documents import Chunk, chunk_id, content_hash

pytestmark = pytest.mark.unit


@given(url=st.text(min_size=1), ordinal=st.integers(0, 10_000), doc=st.text())
def test_chunk_id_is_deterministic(url: str, ordinal: int, doc: str) -> None:
    digest = content_hash(doc)
    assert chunk_id(url, ordinal, digest) == chunk_id(url, ordinal, digest)


def test_every_chunk_of_a_page_gets_its_own_id() -> None:
    digest = content_hash("page")
    ids = {chunk_id("https://s/a", ordinal, digest) for ordinal in range(500)}
    assert len(ids) == 500


def test_a_changed_page_gets_new_ids() -> None:
    assert chunk_id("https://s/a", 0, content_hash("v1")) != chunk_id(
        "https://s/a", 0, content_hash("v2")
    )


def test_payload_round_trip() -> None:
    chunk = Chunk(
        id=chunk_id("u", 0, "h"),
        text="t",
        url="u",
        section_url="u#s",
        title="T",
        heading_path=("A", "B"),
        ordinal=0,
        document_hash="h",
        chunk_count=1,
    )
    assert Chunk.from_payload(chunk.id, chunk.payload()) == chunk
