"""``retrieve.section_by_meaning``: pages in fusion's order, each cited by its closest section."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.index import build_index, index_chunks, shared_embedder

from ragserve.config import RetrieveSettings
from ragserve.retrieve import Retriever
from ragserve.store.edge import EdgeStore

pytestmark = pytest.mark.integration

QUESTIONS = [
    "How do I scale a deployment when traffic grows?",
    "Scaling a deployment onto GPUs",
    "stream tokens from an HTTP ingress",
    "how do deployments call each other?",
]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeStore]:
    data_dir: Path = tmp_path_factory.mktemp("sections")
    build_index(data_dir)
    opened = EdgeStore(data_dir, "docs")
    yield opened
    opened.close()


@pytest.mark.parametrize("question", QUESTIONS)
def test_pages_keep_their_order_and_each_cites_its_closest_section(
    store: EdgeStore, question: str
) -> None:
    embedder = shared_embedder()
    plain = Retriever(store, embedder, RetrieveSettings(k=3)).retrieve(question)
    by_meaning = Retriever(
        store, embedder, RetrieveSettings(k=3, section_by_meaning=True)
    ).retrieve(question)

    assert [c.chunk.url for c in by_meaning.chunks] == [c.chunk.url for c in plain.chunks]
    assert [c.score for c in by_meaning.chunks] == [c.score for c in plain.chunks]
    query = embedder.embed_query(question)
    chunks = index_chunks()
    vectors = embedder.embed_documents([chunk.text for chunk in chunks])
    for cited in by_meaning.chunks:
        on_page = [i for i, chunk in enumerate(chunks) if chunk.url == cited.chunk.url]
        closest = max(on_page, key=lambda i: float(vectors[i] @ query))
        assert cited.chunk.section_url == chunks[closest].section_url


def test_off_by_default() -> None:
    assert RetrieveSettings().section_by_meaning is False
